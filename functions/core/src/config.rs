//! The one configuration format, shared by `enroll dev` (a TOML file) and the Lambda functions
//! (the same TOML, from an environment variable, with secrets from Secrets Manager).
//!
//! Any secret may be left out of the file and given in the environment instead:
//! `ENROLL_SCIM_TOKEN`, `ENROLL_NOTION_TOKEN`, and `ENROLL_<PLATFORM>_SECRETS` (comma-separated,
//! e.g. `ENROLL_STRIPE_SECRETS`; a mapped platform's name uppercased with hyphens as underscores,
//! e.g. `ENROLL_KIT_COMMERCE_SECRETS`). The environment wins over the file.

use crate::catalog::Catalog;
use crate::event::EventKind;
use crate::ids::Platform;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

mod mapped;
pub mod outbound;
mod rate;
pub use mapped::{
    pointer_segments, valid_pointer, AuthScheme, BodyFormat, MappedAuth, MappedFields,
    PlatformKind, SignatureEncoding,
};
pub use outbound::OutboundConfig;
pub use rate::{RateConfig, RateLimit, RateOverride};

/// A secret value: never printed, never serialised back out by accident, wiped from memory
/// when dropped.
///
/// A thin newtype over [`secrecy::SecretString`] rather than the bare type: the configuration
/// derives `PartialEq` and `Serialize`, which `SecretString` refuses on purpose, so this type
/// adds them in the one safe form each (equality of the values, for comparing configurations;
/// serialisation as a placeholder). Deserialises from a plain string.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The value, for the one place that must send or check it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl ExposeSecret<str> for Secret {
    fn expose_secret(&self) -> &str {
        self.expose()
    }
}

/// For comparing configurations only; a credential is checked in constant time where it is
/// received (the webhook signatures, the admin token).
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Serialises as a placeholder so a dumped configuration never holds a secret.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// How a member leaves a Group, since which forms Notion accepts is unconfirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoveForm {
    /// RFC 7644 §3.5.2.2: `{"op":"remove","path":"members[value eq \"<id>\"]"}`.
    #[default]
    PathFilter,
    /// `{"op":"remove","path":"members","value":[{"value":"<id>"}]}`. Dangerous on a server that
    /// ignores the value list (it would empty the Group): only when the workspace needs it.
    ValueList,
}

/// What happens to a member whose last active grant ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deprovision {
    /// Keep the workspace member, in none of the Groups enroll manages.
    #[default]
    Keep,
    /// Remove the member from the workspace (SCIM DELETE; the Notion account survives).
    Remove,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    #[serde(default = "default_scim_url")]
    pub base_url: String,
    #[serde(default)]
    pub token: Secret,
    /// The attribute a user is found by; Notion's docs and clients disagree, so it is a setting.
    #[serde(default = "default_filter_attribute")]
    pub user_filter_attribute: String,
    #[serde(default)]
    pub remove_form: RemoveForm,
    /// Members per Group PATCH; a 413 splits the batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Notion's role for the members enroll creates (e.g. `restricted_member`), sent in Notion's
    /// User extension. Left out, the create body carries the core schema only and the
    /// workspace's default role applies; any RFC 7643 server accepts that body.
    #[serde(default)]
    pub role: Option<String>,
}

impl Default for ScimConfig {
    fn default() -> Self {
        Self {
            base_url: default_scim_url(),
            token: Secret::default(),
            user_filter_attribute: default_filter_attribute(),
            remove_form: RemoveForm::default(),
            batch_size: default_batch_size(),
            timeout_secs: default_timeout_secs(),
            role: None,
        }
    }
}

/// Property names in the seller's sales/students database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesProperties {
    #[serde(default = "default_title")]
    pub title: String,
    #[serde(default = "default_email")]
    pub email: String,
    #[serde(default = "default_order_id")]
    pub order_id: String,
    /// A rich_text property: a `people` property cannot hold a user of another workspace.
    #[serde(default = "default_user_id")]
    pub notion_user_id: String,
    /// Optional rich_text property listing the products bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub products: Option<String>,
}

impl Default for SalesProperties {
    fn default() -> Self {
        Self {
            title: default_title(),
            email: default_email(),
            order_id: default_order_id(),
            notion_user_id: default_user_id(),
            products: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotionConfig {
    #[serde(default = "default_notion_url")]
    pub base_url: String,
    #[serde(default)]
    pub token: Secret,
    #[serde(default = "default_notion_version")]
    pub version: String,
    /// The sales/students database; its first data source is used unless one is named.
    pub database_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source_id: Option<String>,
    #[serde(default)]
    pub properties: SalesProperties,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// Every secret that is currently valid: more than one while rotating.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// How old a signed timestamp may be, where the platform signs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_secs: Option<u64>,
    /// Standard Webhooks only: the sender's event types and what they mean.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub event_types: BTreeMap<String, EventKind>,
    /// `"mapped"` on a platform described here rather than built in; the settings below are
    /// for mapped platforms only (see `config/mapped.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<PlatformKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<MappedAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<MappedFields>,
    /// The platform's event names and what they mean.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kinds: BTreeMap<String, EventKind>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Bodies above this size are refused with 413 before any verification work.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProvisionConfig {
    #[serde(default)]
    pub deprovision: Deprovision,
}

/// Every buyer's provisioning log ([`crate::history`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Days an entry is kept (a TTL on DynamoDB); a year and a bit covers a yearly renewal.
    #[serde(default = "default_history_retention")]
    pub retention_days: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            retention_days: default_history_retention(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub scim: ScimConfig,
    pub notion: NotionConfig,
    #[serde(default)]
    pub rate: RateConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub provision: ProvisionConfig,
    #[serde(default)]
    pub history: HistoryConfig,
    /// `[[outbound]]`: endpoints told about access changes ([`outbound`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<OutboundConfig>,
    #[serde(default)]
    pub platforms: BTreeMap<Platform, PlatformConfig>,
    #[serde(flatten)]
    pub catalog: Catalog,
}

/// A configuration that cannot run. The message names the bad field or variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, or not a configuration's shape. `origin` names where the text came from when
    /// that is not the file the user passed (e.g. `ENROLL_CONFIG`).
    #[error("invalid configuration: {}{syntax}", origin.map(|o| format!("{o}: ")).unwrap_or_default())]
    Syntax {
        origin: Option<&'static str>,
        syntax: toml::de::Error,
    },
    /// A value that cannot run.
    #[error("invalid configuration: {field}: {why}")]
    Invalid { field: String, why: String },
    /// A variable the deployed function needs is not set.
    #[error("invalid configuration: environment variable {0} is not set")]
    MissingVariable(String),
    /// The secrets named by `ENROLL_SECRET_ID` could not be read; the failure says why
    /// (transient or not) and keeps its cause.
    #[error("invalid configuration: ENROLL_SECRET_ID: {}", .0.reason)]
    Secrets(#[source] crate::Failure),
}

impl ConfigError {
    pub fn invalid(field: impl Into<String>, why: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            why: why.into(),
        }
    }
}

impl Config {
    /// Parses TOML, applies environment overrides through `env`, and validates.
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|syntax| ConfigError::Syntax {
            origin: None,
            syntax,
        })?;
        cfg.apply_env(env);
        cfg.validate()?;
        Ok(cfg)
    }

    /// The documented environment variables override secrets from the file.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        if let Some(t) = env("ENROLL_SCIM_TOKEN").filter(|t| !t.is_empty()) {
            self.scim.token = Secret::new(t);
        }
        if let Some(t) = env("ENROLL_NOTION_TOKEN").filter(|t| !t.is_empty()) {
            self.notion.token = Secret::new(t);
        }
        let mapped: Vec<Platform> = self
            .platforms
            .keys()
            .copied()
            .filter(|p| p.is_mapped())
            .collect();
        for p in Platform::ALL.into_iter().chain(mapped) {
            let var = p.secrets_variable();
            if let Some(list) = env(&var).filter(|t| !t.is_empty()) {
                self.platforms.entry(p).or_default().secrets = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Secret::new)
                    .collect();
            }
        }
        outbound::apply_env(&mut self.outbound, &env);
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, why: &str| Err(ConfigError::invalid(field, why));
        for (field, url) in [
            ("scim.base_url", &self.scim.base_url),
            ("notion.base_url", &self.notion.base_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return bad(field, "must be an http:// or https:// URL");
            }
        }
        if self.scim.batch_size == 0 || self.scim.batch_size > 1000 {
            return bad("scim.batch_size", "must be between 1 and 1000");
        }
        if self.scim.user_filter_attribute.is_empty()
            || !self
                .scim
                .user_filter_attribute
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            return bad(
                "scim.user_filter_attribute",
                "must be a SCIM attribute name such as userName",
            );
        }
        if self.notion.database_id.trim().is_empty() {
            return bad("notion.database_id", "must name the sales database");
        }
        self.rate.validate()?;
        if self.ingest.max_body_bytes < 1024 {
            return bad("ingest.max_body_bytes", "must be at least 1024");
        }
        if self.history.retention_days == 0 {
            return bad("history.retention_days", "must be at least 1");
        }
        for (p, pc) in &self.platforms {
            if pc.secrets.iter().any(Secret::is_empty) {
                return bad(
                    &format!("platforms.{p}.secrets"),
                    "contains an empty secret",
                );
            }
            mapped::validate(*p, pc)?;
            if !pc.event_types.is_empty() && *p != Platform::Standard {
                return bad(
                    &format!("platforms.{p}.event_types"),
                    "only Standard Webhooks take an event type mapping",
                );
            }
        }
        outbound::validate(&self.outbound)?;
        if self.catalog.products.is_empty() {
            return bad("products", "the catalog needs at least one product");
        }
        // A mapped name in platform_ids that is not configured is a typo that would never match.
        for (i, product) in self.catalog.products.iter().enumerate() {
            for p in product.platform_ids.keys() {
                if p.is_mapped() && !self.platforms.contains_key(p) {
                    return bad(
                        &format!("products[{i}] ({}).platform_ids.{p}", product.id),
                        "no such platform: add [platforms.<name>] with kind = \"mapped\"",
                    );
                }
            }
        }
        self.catalog.validate()
    }

    pub fn platform(&self, p: Platform) -> Option<&PlatformConfig> {
        self.platforms.get(&p)
    }

    /// The platform a webhook path names: a built-in one, or a mapped one this configuration
    /// declares. Nothing else, so an unknown name is a 404.
    pub fn platform_named(&self, name: &str) -> Option<Platform> {
        Platform::builtin(name).or_else(|| {
            self.platforms
                .keys()
                .copied()
                .find(|p| p.is_mapped() && p.as_str() == name)
        })
    }
}

fn default_scim_url() -> String {
    "https://api.notion.com/scim/v2".into()
}
fn default_notion_url() -> String {
    "https://api.notion.com/v1".into()
}
fn default_notion_version() -> String {
    "2025-09-03".into()
}
fn default_filter_attribute() -> String {
    "userName".into()
}
fn default_batch_size() -> usize {
    100
}
fn default_timeout_secs() -> u64 {
    10
}
fn default_title() -> String {
    "Name".into()
}
fn default_email() -> String {
    "Email".into()
}
fn default_order_id() -> String {
    "Order ID".into()
}
fn default_user_id() -> String {
    "Notion User ID".into()
}
fn default_max_body() -> usize {
    256 * 1024
}
fn default_history_retention() -> u32 {
    crate::history::DEFAULT_RETENTION_DAYS
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[notion]
database_id = "db1"

[platforms.stripe]
secrets = ["whsec_file"]

[[products]]
id = "notion-mastery"
name = "Notion Mastery"
groups = [{ name = "Notion Mastery" }]
access_months = 12
"#;

    #[test]
    fn minimal_configuration_takes_documented_defaults() {
        let c = Config::from_toml(MINIMAL, |_| None).unwrap();
        assert_eq!(c.scim.user_filter_attribute, "userName");
        assert_eq!(c.notion.version, "2025-09-03");
        assert_eq!(c.rate.requests_per_second, 3.0);
        assert_eq!(c.catalog.products.len(), 1);
        assert_eq!(c.history.retention_days, 400);
    }

    #[test]
    fn environment_secrets_override_the_file() {
        let c = Config::from_toml(MINIMAL, |k| match k {
            "ENROLL_STRIPE_SECRETS" => Some("whsec_a, whsec_b".into()),
            "ENROLL_SCIM_TOKEN" => Some("scim-token".into()),
            _ => None,
        })
        .unwrap();
        let s = &c.platforms[&Platform::Stripe].secrets;
        assert_eq!(
            s.iter().map(Secret::expose).collect::<Vec<_>>(),
            ["whsec_a", "whsec_b"]
        );
        assert_eq!(c.scim.token.expose(), "scim-token");
        assert!(!format!("{c:?}").contains("scim-token"));
    }

    #[test]
    fn secrets_read_from_a_string_and_never_print_or_serialise() {
        let c = Config::from_toml(
            &MINIMAL.replace("[notion]", "[notion]\ntoken = \"notion-file-token\""),
            |_| None,
        )
        .unwrap();
        assert_eq!(c.notion.token.expose(), "notion-file-token");
        assert_eq!(format!("{:?}", c.notion.token), "Secret(<redacted>)");
        let dumped = toml::to_string(&c).unwrap();
        assert!(!dumped.contains("notion-file-token"), "{dumped}");
        assert!(dumped.contains("token = \"<redacted>\""), "{dumped}");
        assert_eq!(Secret::new("a"), Secret::new("a"));
        assert_ne!(Secret::new("a"), Secret::new("b"));
    }

    #[test]
    fn errors_name_the_bad_field() {
        let e = Config::from_toml(&MINIMAL.replace("db1", ""), |_| None).unwrap_err();
        assert!(e.to_string().contains("notion.database_id"), "{e}");
        let e = Config::from_toml(
            &format!("{MINIMAL}\n[rate]\nrequests_per_second = 0\n"),
            |_| None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("rate.requests_per_second"), "{e}");
        let e = Config::from_toml(&MINIMAL.replace("[notion]", "[notion]\nbogus = 1"), |_| {
            None
        })
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
