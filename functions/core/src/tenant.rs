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
