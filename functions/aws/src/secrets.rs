//! The deployment's secrets from Secrets Manager, fetched once per cold start.
//!
//! The secret string is one JSON document:
//! `{"scim_token": "...", "notion_token": "...", "platforms": {"stripe": ["whsec_..."]},
//! "outbound": ["whsec_..."]}` (`outbound`: the `[[outbound]]` entries' secrets, by position).
//! Every field is optional; one left out keeps what the configuration already holds.

use crate::error::{classify, AwsError};
use crate::item::json_why;
use aws_sdk_secretsmanager::Client;
use enroll_core::config::{Config, Secret};
use enroll_core::ids::Platform;
use enroll_core::Failure;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The secret document. `Debug` shows no secret: [`Secret`] redacts itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsDoc {
    #[serde(default)]
    pub scim_token: Option<Secret>,
    #[serde(default)]
    pub notion_token: Option<Secret>,
    /// Every signing secret currently valid per platform: more than one while rotating.
    #[serde(default)]
    pub platforms: BTreeMap<Platform, Vec<Secret>>,
    /// The signing secret of each `[[outbound]]` entry, in the configuration's order; an empty
    /// string keeps the entry's own.
    #[serde(default)]
    pub outbound: Vec<Secret>,
}

impl SecretsDoc {
    /// Parses the secret string. Errors give the position, never the text: serde quotes the
    /// offending value, which here is a secret.
    pub fn parse(text: &str) -> Result<Self, Failure> {
        serde_json::from_str(text)
            .map_err(|e| AwsError::malformed("secret document", json_why(&e)).into())
    }

    /// Fills the configuration's secrets from the document; absent or empty fields change
    /// nothing.
    pub fn apply(&self, cfg: &mut Config) {
        let given = |s: &Option<Secret>| s.clone().filter(|s| !s.is_empty());
        if let Some(t) = given(&self.scim_token) {
            cfg.scim.token = t;
        }
        if let Some(t) = given(&self.notion_token) {
            cfg.notion.token = t;
        }
        for (platform, secrets) in &self.platforms {
            let secrets: Vec<Secret> = secrets.iter().filter(|s| !s.is_empty()).cloned().collect();
            if !secrets.is_empty() {
                cfg.platforms.entry(*platform).or_default().secrets = secrets;
            }
        }
        for (entry, secret) in cfg.outbound.iter_mut().zip(&self.outbound) {
            if !secret.is_empty() {
                entry.secret = secret.clone();
            }
        }
    }
}

/// Reads and parses the secret `secret_id` (a name or an ARN).
#[tracing::instrument(skip_all, err)]
pub async fn load_secrets(client: &Client, secret_id: &str) -> Result<SecretsDoc, Failure> {
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| classify("GetSecretValue", e))?;
    let text = out.secret_string().ok_or_else(|| {
        Failure::permanent("secret has no string value: store the JSON document as text")
    })?;
    SecretsDoc::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_never_quote_the_secret() {
        let err = SecretsDoc::parse(r#"{"platforms": {"stripe": "whsec_leak"}}"#).unwrap_err();
        assert!(err.is_permanent());
        assert!(!err.reason.contains("whsec_leak"), "{}", err.reason);
    }

    #[test]
    fn parses_the_documented_shape() {
        let doc = SecretsDoc::parse(
            r#"{"scim_token": "s", "notion_token": "n", "platforms": {"stripe": ["a", "b"]}}"#,
        )
        .unwrap();
        assert_eq!(doc.scim_token.as_ref().map(Secret::expose), Some("s"));
        assert_eq!(doc.platforms[&Platform::Stripe].len(), 2);
    }
}
