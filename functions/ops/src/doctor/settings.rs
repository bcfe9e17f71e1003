//! What needs no request: a secret for every platform, the webhook URL to register on each,
//! and the two rate budgets against Notion's documented limits.

use super::Check;
use enroll_core::config::{AuthScheme, Config, RateLimit};
use enroll_core::ids::Platform;
use std::collections::BTreeSet;

/// A check per configured platform; none at all is a failure, since every webhook would be
/// refused. A platform the catalog maps product ids for but that has no settings is a warning.
pub(super) fn platforms(config: &Config) -> Vec<Check> {
    if config.platforms.is_empty() {
        return vec![Check::fail(
            "Platforms",
            "no platform configured: every webhook would be refused",
            "add a [platforms.<name>] table with the platform's signing secret (secrets = \
             [\"...\"]), or set ENROLL_<PLATFORM>_SECRETS, e.g. ENROLL_STRIPE_SECRETS",
        )];
    }
    let mut out: Vec<Check> = config
        .platforms
        .iter()
        .map(|(p, pc)| {
            let name = format!("Platform {p}");
            match pc.secrets.len() {
                0 => Check::fail(
                    name,
                    format!("no secret: {p}'s webhooks would be refused (401)"),
                    format!(
                        "copy the signing secret from {p} into [platforms.{p}] secrets, or set \
                         ENROLL_{}_SECRETS (on AWS: platforms.{p} in the stack's secret)",
                        env_name(*p)
                    ),
                ),
                1 => Check::pass(name, "1 secret"),
                n => Check::pass(name, format!("{n} secrets (a rotation in progress)")),
            }
        })
        .collect();
    let mapped: BTreeSet<Platform> = config
        .catalog
        .products
        .iter()
        .flat_map(|p| p.platform_ids.keys().copied())
        .collect();
    for p in mapped {
        if !config.platforms.contains_key(&p) {
            out.push(Check::warn(
                format!("Platform {p}"),
                format!("the catalog maps {p} product ids, but {p} has no settings and no secret"),
                format!(
                    "add [platforms.{p}] with its signing secret, or set ENROLL_{}_SECRETS, if \
                     you sell on {p}",
                    env_name(p)
                ),
            ));
        }
    }
    out
}

/// The `<NAME>` of `ENROLL_<NAME>_SECRETS`: a mapped name's hyphens become underscores.
fn env_name(p: Platform) -> String {
    p.as_str().to_uppercase().replace('-', "_")
}

/// The URL to register on each configured platform. Informational: always passes.
pub(super) fn webhooks(config: &Config, webhook_base: Option<&str>) -> Vec<Check> {
    let base = webhook_base.map(|b| b.trim().trim_end_matches('/'));
    let mut out: Vec<Check> = config
        .platforms
        .iter()
        .map(|(p, pc)| {
            let mut url = format!("{}/webhooks/{p}", base.unwrap_or(""));
            if *p == Platform::Gumroad {
                // Gumroad signs nothing: the secret in the URL is the only proof.
                url.push_str("?secret=<your secret>");
            }
            if !p.is_mapped() {
                return Check::pass(format!("Webhook URL {p}"), url);
            }
            // A mapped platform is configured by hand, so the seller also sees the body its
            // pointers describe, to compare with the platform's own test delivery.
            if let Some(AuthScheme::Query(param)) = pc.auth.as_ref().and_then(|a| a.scheme().ok()) {
                url.push_str(&format!("?{param}=<your secret>"));
            }
            let body = enroll_platforms::mapped::sample_body(pc);
            Check::pass(
                format!("Webhook URL {p}"),
                format!("{url}\nsample purchase body:\n{body}"),
            )
        })
        .collect();
    if base.is_none() && !out.is_empty() {
        out.push(Check::pass(
            "Webhook base URL",
            "not known here: prefix each path above with your public endpoint, i.e. the \
             tunnel in front of `enroll dev` (pass it with --webhook-base) or, on AWS, the \
             stack's ingest function URL (its WebhookBaseUrl output; `enroll doctor --stack \
             NAME` prints the full URLs)",
        ));
    }
    out
}

/// Notion's public API documents an average of 3 requests per second per integration (later:
/// a per-plan budget per minute); SCIM publishes no limit, and the seller's own scripts, run
/// against Notion for years, keep to 1-2 per second.
const API_DOCUMENTED: f64 = 3.0;
const SCIM_OBSERVED: f64 = 3.0;

/// A check per budget: above what Notion documents (or what is known to work) is a warning,
/// since a faster plan may allow it and enroll honours every 429's Retry-After.
pub(super) fn rates(config: &Config) -> Vec<Check> {
    let scim = config.rate.scim();
    let api = config.rate.api();
    vec![
        rate_check(
            "Rate SCIM",
            scim,
            SCIM_OBSERVED,
            "Notion publishes no SCIM limit; scripts run against Notion for years keep to 1-2 \
             requests per second",
            "rate.scim.requests_per_second",
        ),
        rate_check(
            "Rate public API",
            api,
            API_DOCUMENTED,
            "Notion documents an average of 3 requests per second per integration",
            "rate.api.requests_per_second",
        ),
    ]
}

fn rate_check(name: &str, limit: RateLimit, known: f64, source: &str, field: &str) -> Check {
    let rate = limit.requests_per_second;
    let what = format!("{rate} requests per second, bursts of {}", limit.burst);
    if rate > known {
        return Check::warn(
            name,
            format!(
                "{what}: above {known} per second ({source}); expect 429s, which slow every caller"
            ),
            format!("set {field} to {known} or less unless your Notion plan allows more"),
        );
    }
    if f64::from(limit.burst) > (rate * 10.0).max(known) {
        return Check::warn(
            name,
            format!("{what}: a burst over ten seconds' worth of requests is likely to meet 429s"),
            format!(
                "lower {} to at most {}",
                field.replace("requests_per_second", "burst"),
                (rate * 10.0).max(known).floor()
            ),
        );
    }
    Check::pass(name, format!("{what} ({source})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests_per_second: f64, burst: u32) -> RateLimit {
        RateLimit {
            requests_per_second,
            burst,
        }
    }

    #[test]
    fn rates_above_notions_limits_warn_and_within_pass() {
        let ok = rate_check(
            "r",
            limit(3.0, 3),
            3.0,
            "docs",
            "rate.api.requests_per_second",
        );
        assert!(ok.ok && !ok.warn, "{ok:?}");
        let fast = rate_check(
            "r",
            limit(10.0, 3),
            3.0,
            "docs",
            "rate.api.requests_per_second",
        );
        assert!(fast.ok && fast.warn, "{fast:?}");
        assert!(fast.fix.unwrap().contains("rate.api.requests_per_second"));
        let bursty = rate_check(
            "r",
            limit(1.0, 50),
            3.0,
            "docs",
            "rate.api.requests_per_second",
        );
        assert!(bursty.warn && bursty.fix.unwrap().contains("rate.api.burst"));
    }

    #[test]
    fn a_mapped_platform_shows_its_url_sample_body_and_env_name() {
        let toml = r#"
[notion]
database_id = "db1"

[[products]]
id = "course"
name = "Course"
groups = [{ name = "Course" }]
platform_ids = { home-made = ["offer_1"] }

[platforms.home-made]
kind = "mapped"
body = "json"
auth = { query = "key" }
[platforms.home-made.fields]
event_id = "/id"
kind = "/event"
email = "/buyer/email"
product = "/offer/id"
order = "/purchase/id"
[platforms.home-made.kinds]
"sale" = "purchase"
"#;
        let config = Config::from_toml(toml, |_| None).unwrap();
        let urls = webhooks(&config, Some("https://hooks.example/"));
        let line = urls
            .iter()
            .find(|c| c.name == "Webhook URL home-made")
            .expect("a line for the mapped platform");
        assert!(
            line.detail
                .starts_with("https://hooks.example/webhooks/home-made?key=<your secret>"),
            "{line:?}"
        );
        assert!(line.detail.contains("\"buyer\""), "{line:?}");
        assert!(line.detail.contains("\"buyer@example.com\""), "{line:?}");
        // No secret configured: the fix names the variable a shell can actually set.
        let secret = platforms(&config);
        let missing = secret
            .iter()
            .find(|c| !c.ok)
            .expect("no secret is a failure");
        assert!(
            missing
                .fix
                .as_deref()
                .unwrap()
                .contains("ENROLL_HOME_MADE_SECRETS"),
            "{missing:?}"
        );
    }
}
