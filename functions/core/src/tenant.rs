//! A tenant: one seller on a deployment that serves several.
//!
//! A single seller needs no tenant at all: [`TenantId::default_tenant`] has an empty key prefix,
//! so a single-seller deployment keeps its paths (`/webhooks/{platform}`) and every key it ever
//! stored. A named tenant's name is lowercase letters, digits and hyphens (it is a file name
//! locally, a path segment in webhook URLs and part of a Secrets Manager name on AWS), and every
//! key it stores starts with [`TenantId::key_prefix`], so the same platform event id in two
//! tenants is two events.

use crate::ids::InvalidId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One seller's name; the empty name is the single seller of a deployment with no tenants.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Longest name: it ends up in queue attributes, secret names and metric dimensions.
    pub const MAX_LEN: usize = 48;

    /// The single seller of a deployment without tenants: no prefix on any key.
    pub fn default_tenant() -> Self {
        Self(String::new())
    }

    /// A named tenant: 1 to 48 lowercase letters, digits and hyphens, starting with a letter
    /// or digit and not ending with a hyphen.
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let bad = |reason: &str| InvalidId {
            what: "tenant name",
            why: reason.to_owned(),
        };
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(bad("must be 1 to 48 characters"));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("may hold only lowercase letters, digits and hyphens"));
        }
        if raw.starts_with('-') || raw.ends_with('-') {
            return Err(bad("may not start or end with a hyphen"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn is_default(&self) -> bool {
        self.0.is_empty()
    }

    /// The name; empty for the default tenant.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What every stored key and idempotency key of this tenant starts with: empty for the
    /// default tenant (its keys are exactly today's), `t#<name>#` otherwise.
    pub fn key_prefix(&self) -> String {
        if self.is_default() {
            String::new()
        } else {
            format!("t#{}#", self.0)
        }
    }

    /// `key` scoped to this tenant.
    pub fn scope(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix())
    }

    /// The webhook path prefix: empty for the default tenant, `/t/<name>` otherwise.
    pub fn path_prefix(&self) -> String {
        if self.is_default() {
            String::new()
        } else {
            format!("/t/{}", self.0)
        }
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::default_tenant()
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_default() {
            "(default)"
        } else {
            &self.0
        })
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        if s.is_empty() {
            Ok(Self::default_tenant())
        } else {
            Self::parse(&s)
        }
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

/// Splits `/t/{tenant}/rest` into the tenant's raw name and `/rest`; `None` for any other path.
pub fn split_tenant_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/t/")?;
    match rest.find('/') {
        Some(i) => Some((&rest[..i], &rest[i..])),
        None => Some((rest, "")),
    }
}

/// The field a queue message names its tenant by. Messages of a single seller have none, so a
/// message enqueued before tenants existed, or by a single-seller deployment, is the default
/// tenant's.
pub const MESSAGE_FIELD: &str = "tenant";

/// The tenant a queue message (a JSON object) belongs to. A message that is not a JSON object,
/// or names no tenant, is the default tenant's: the stage's own parsing then says what is
/// wrong with it. A tenant name that is not one is an error.
pub fn tenant_of_message(body: &str) -> Result<TenantId, InvalidId> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        tenant: Option<String>,
    }
    match serde_json::from_str::<Envelope>(body) {
        Ok(Envelope { tenant: Some(t) }) => TenantId::try_from(t),
        _ => Ok(TenantId::default_tenant()),
    }
}

/// `body` (a JSON object) with `tenant` named in it; unchanged for the default tenant or when
/// the body is not a JSON object. Stages add the field when they enqueue and read it with
/// [`tenant_of_message`]; every message type ignores it otherwise.
pub fn stamp_message(body: &str, tenant: &TenantId) -> String {
    if tenant.is_default() {
        return body.to_owned();
    }
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert(MESSAGE_FIELD.into(), tenant.as_str().into());
            serde_json::Value::Object(map).to_string()
        }
        _ => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_letters_digits_and_hyphens() {
        for ok in ["a", "acme", "course-co-2", "9lives"] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Acme",
            "a_b",
            "a.b",
            "-a",
            "a-",
            "a/b",
            "é",
            &"a".repeat(49),
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_tenant_keeps_todays_keys_and_paths() {
        let d = TenantId::default_tenant();
        assert_eq!(d.scope("stripe:evt_1"), "stripe:evt_1");
        assert_eq!(d.path_prefix(), "");
        let a = TenantId::parse("acme").unwrap();
        assert_eq!(a.scope("stripe:evt_1"), "t#acme#stripe:evt_1");
        assert_ne!(a.scope("stripe:evt_1"), d.scope("stripe:evt_1"));
        assert_eq!(a.path_prefix(), "/t/acme");
    }

    #[test]
    fn tenant_paths_split_off_their_prefix() {
        assert_eq!(
            split_tenant_path("/t/acme/webhooks/stripe"),
            Some(("acme", "/webhooks/stripe"))
        );
        assert_eq!(split_tenant_path("/webhooks/stripe"), None);
        assert_eq!(split_tenant_path("/t/acme"), Some(("acme", "")));
    }

    #[test]
    fn messages_carry_their_tenant() {
        let a = TenantId::parse("acme").unwrap();
        let body = r#"{"key":"stripe:evt_1","kind":"purchase"}"#;
        let stamped = stamp_message(body, &a);
        assert_eq!(tenant_of_message(&stamped).unwrap(), a);
        // The default tenant's messages are today's, byte for byte.
        assert_eq!(stamp_message(body, &TenantId::default_tenant()), body);
        assert!(tenant_of_message(body).unwrap().is_default());
        assert!(tenant_of_message("not json").unwrap().is_default());
        assert!(tenant_of_message(r#"{"tenant":"Not/A/Name"}"#).is_err());
        let v: serde_json::Value = serde_json::from_str(&stamped).unwrap();
        assert_eq!(v["key"], "stripe:evt_1");
    }

    #[test]
    fn serde_round_trips_both_kinds() {
        let a = TenantId::parse("acme").unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"acme\"");
        assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), a);
        assert!(serde_json::from_str::<TenantId>("\"Bad\"").is_err());
        let d: TenantId = serde_json::from_str("\"\"").unwrap();
        assert!(d.is_default());
    }
}
