//! Sellers for the multi-tenant tests: the shipped example configuration with a seller's own
//! Stripe secret and workspace, and a simulated workspace seeded from it.

use anyhow::Result;
use enroll_core::config::Config;
use enroll_simulator::{FaultAction, FaultRule, Faults, SimConfig, SimHandle};

pub const EXAMPLE: &str = include_str!("../../infra/enroll.example.toml");

/// The example configuration with its own Stripe secret and, when given, its own workspace.
pub fn tenant_toml(stripe_secret: &str, workspace: Option<(&SimHandle, &str)>) -> String {
    let mut text = EXAMPLE.replace("whsec_example_stripe_signing_secret", stripe_secret);
    if let Some((sim, token)) = workspace {
        text = text
            .replacen(
                "base_url = \"https://api.notion.com/scim/v2\"",
                &format!(
                    "base_url = \"{}\"\ntoken = \"{token}\"",
                    sim.scim_base_url()
                ),
                1,
            )
            .replacen(
                "base_url = \"https://api.notion.com/v1\"",
                &format!(
                    "base_url = \"{}\"\ntoken = \"{token}\"",
                    sim.notion_base_url()
                ),
                1,
            );
    }
    text
}

pub fn parse(text: &str) -> Config {
    Config::from_toml(text, |_| None).expect("a tenant configuration")
}

pub async fn workspace(token: &str) -> Result<SimHandle> {
    let state = enroll_embedded::seed::from_config(&parse(EXAMPLE));
    Ok(enroll_simulator::start(
        SimConfig {
            scim_token: token.into(),
            notion_token: token.into(),
            scim_rate_limit: None,
            notion_rate_limit: None,
            admin_token: Some("t".into()),
            max_members_per_patch: None,
            state,
        },
        "127.0.0.1:0".parse()?,
    )
    .await?)
}

/// A seller's Notion down: 503 to every SCIM request.
pub fn scim_down() -> Faults {
    Faults {
        rules: vec![FaultRule {
            method: None,
            path_prefix: Some("/scim".into()),
            probability: 1.0,
            remaining: None,
            action: FaultAction::Status {
                code: 503,
                retry_after_secs: None,
            },
        }],
        seed: 7,
    }
}
