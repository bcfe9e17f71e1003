//! `[rate]`, `[rate.scim]` and `[rate.api]`: the limits of the two Notion request budgets.

use super::ConfigError;
use serde::{Deserialize, Serialize};

/// The Notion request budgets. SCIM and the public API are separate credentials (the SCIM
/// token, the integration token), each with its own limit, so each has its own budget:
/// `[rate]` is the default for both, and `[rate.scim]` / `[rate.api]` override either field
/// for one of them. Read a budget's limit through [`RateConfig::scim`] or [`RateConfig::api`],
/// never the top-level fields, so an override is never missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    #[serde(default = "default_rate")]
    pub requests_per_second: f64,
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// The SCIM token's budget (provision, expiry, backfill, link).
    #[serde(default, skip_serializing_if = "RateOverride::is_empty")]
    pub scim: RateOverride,
    /// The integration token's budget: the public API, i.e. the sales database (align).
    #[serde(default, skip_serializing_if = "RateOverride::is_empty")]
    pub api: RateOverride,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self::uniform(default_rate(), default_burst())
    }
}

/// What one budget's sub-table sets; a field left out is taken from `[rate]`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl RateOverride {
    pub fn is_empty(&self) -> bool {
        self.requests_per_second.is_none() && self.burst.is_none()
    }
}

/// One budget's limit, resolved: `requests_per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub requests_per_second: f64,
    pub burst: u32,
}

impl RateConfig {
    /// One limit for both budgets, no override: for runs that set the pace themselves (the
    /// demo, chaos, tests).
    pub fn uniform(requests_per_second: f64, burst: u32) -> Self {
        Self {
            requests_per_second,
            burst,
            scim: RateOverride::default(),
            api: RateOverride::default(),
        }
    }

    /// The SCIM token's limit: `[rate.scim]` over `[rate]`.
    pub fn scim(&self) -> RateLimit {
        self.resolve(&self.scim)
    }

    /// The integration token's (public API's) limit: `[rate.api]` over `[rate]`.
    pub fn api(&self) -> RateLimit {
        self.resolve(&self.api)
    }

    fn resolve(&self, o: &RateOverride) -> RateLimit {
        RateLimit {
            requests_per_second: o.requests_per_second.unwrap_or(self.requests_per_second),
            burst: o.burst.unwrap_or(self.burst),
        }
    }

    /// Every value that is set, wherever it is set, so an error names the field to fix.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let tables = [
            ("rate", Some(self.requests_per_second), Some(self.burst)),
            ("rate.scim", self.scim.requests_per_second, self.scim.burst),
            ("rate.api", self.api.requests_per_second, self.api.burst),
        ];
        for (table, rate, burst) in tables {
            if let Some(r) = rate {
                if !(r > 0.0 && r.is_finite()) {
                    return Err(ConfigError::invalid(
                        format!("{table}.requests_per_second"),
                        "must be a positive number",
                    ));
                }
            }
            if burst == Some(0) {
                return Err(ConfigError::invalid(
                    format!("{table}.burst"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

fn default_rate() -> f64 {
    3.0
}
fn default_burst() -> u32 {
    3
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = r#"
[notion]
database_id = "db1"

[[products]]
id = "course"
name = "Course"
groups = [{ name = "Course" }]
"#;

    fn parse(rate: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_toml(&format!("{BASE}\n{rate}"), |_| None)
    }

    fn limit(requests_per_second: f64, burst: u32) -> super::RateLimit {
        super::RateLimit {
            requests_per_second,
            burst,
        }
    }

    #[test]
    fn without_sub_tables_both_budgets_take_rate() {
        let c = parse("").unwrap();
        assert_eq!(c.rate.scim(), limit(3.0, 3));
        assert_eq!(c.rate.api(), limit(3.0, 3));
        let c = parse("[rate]\nrequests_per_second = 10\nburst = 5").unwrap();
        assert_eq!(c.rate.scim(), limit(10.0, 5));
        assert_eq!(c.rate.api(), limit(10.0, 5));
    }

    #[test]
    fn each_sub_table_overrides_its_own_budget_field_by_field() {
        let c = parse(
            "[rate]\nrequests_per_second = 10\nburst = 5\n\
             [rate.scim]\nrequests_per_second = 50\n\
             [rate.api]\nburst = 1",
        )
        .unwrap();
        // A field a sub-table leaves out falls back to [rate], not to the built-in default.
        assert_eq!(c.rate.scim(), limit(50.0, 5));
        assert_eq!(c.rate.api(), limit(10.0, 1));
        // Without [rate], the sub-tables fall back to the built-in defaults.
        let c = parse("[rate.api]\nrequests_per_second = 2.5\nburst = 2").unwrap();
        assert_eq!(c.rate.scim(), limit(3.0, 3));
        assert_eq!(c.rate.api(), limit(2.5, 2));
    }

    #[test]
    fn errors_name_the_sub_table_field() {
        for (text, field) in [
            (
                "[rate.scim]\nrequests_per_second = 0",
                "rate.scim.requests_per_second",
            ),
            (
                "[rate.api]\nrequests_per_second = -1",
                "rate.api.requests_per_second",
            ),
            (
                "[rate.api]\nrequests_per_second = inf",
                "rate.api.requests_per_second",
            ),
            ("[rate.scim]\nburst = 0", "rate.scim.burst"),
            ("[rate]\nburst = 0", "rate.burst"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(&format!("{field}:")), "{text}: {e}");
        }
        let e = parse("[rate.scim]\nrps = 5").unwrap_err().to_string();
        assert!(e.contains("rps"), "{e}");
        let e = parse("[rate.public]\nburst = 5").unwrap_err().to_string();
        assert!(e.contains("public"), "{e}");
    }

    #[test]
    fn a_dumped_configuration_reads_back_the_same() {
        let c = parse("[rate.scim]\nburst = 9").unwrap();
        let dumped = toml::to_string(&c).unwrap();
        assert!(!dumped.contains("[rate.api]"), "{dumped}");
        let back: Config = toml::from_str(&dumped).unwrap();
        assert_eq!(back.rate, c.rate);
        // uniform() drops the overrides: one limit for both budgets.
        assert_eq!(super::RateConfig::uniform(7.0, 2).scim(), limit(7.0, 2));
    }
}
