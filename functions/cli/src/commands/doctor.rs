//! `enroll doctor`: the configuration checked against the live services it names (the checks
//! are `enroll_ops::doctor`); this reads the flags and finds the configuration to check.

use anyhow::{anyhow, Context};
use clap::Args;
use enroll_core::config::{Config, Secret};
use enroll_embedded::{config_file, runtime, seed};
use enroll_ops::doctor::{self, Check, Report};
use enroll_simulator::{SimConfig, SimHandle, SimState};
use std::path::{Path, PathBuf};

use crate::target::{parse_tenant, stack_outputs, AwsResources, StackTenant};
use enroll_core::tenant::TenantId;

/// The stack parameter that holds the deployed configuration (template.yaml), and the output
/// that holds the webhook base (`<function URL>webhooks/`).
const PARAM_CONFIG: &str = "EnrollConfig";
const OUT_WEBHOOK_BASE: &str = "WebhookBaseUrl";

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The configuration file; the commented example in infra/ when left out, as `enroll dev`.
    #[arg(long, conflicts_with = "stack")]
    config: Option<PathBuf>,
    /// A deployed stack: its configuration (the EnrollConfig parameter), its secret and its
    /// webhook URL (standard AWS credential chain and region).
    #[arg(long)]
    stack: Option<String>,
    /// With --stack: check this tenant's configuration and secrets (as the functions load
    /// them from the table and its secret) and its webhook URLs, /t/<name>/webhooks/...
    #[arg(long, requires = "stack", value_parser = parse_tenant)]
    tenant: Option<TenantId>,
    /// Without tokens `enroll dev` runs the Notion simulator; its workspace, saved in this
    /// data directory, is the one checked.
    #[arg(long, default_value = ".enroll")]
    data_dir: PathBuf,
    /// The public base URL webhooks arrive at (a tunnel in front of `enroll dev`), to print the
    /// full URL to register on each platform.
    #[arg(long)]
    webhook_base: Option<String>,
    /// Machine-readable output: {"checks":[{"name","ok","warn","detail","fix"}],"passed"}.
    #[arg(long)]
    json: bool,
}

pub async fn doctor(args: DoctorArgs) -> anyhow::Result<()> {
    let (mut config, stack_base) = match (&args.stack, &args.tenant) {
        (Some(stack), Some(tenant)) => tenant_config(stack, tenant).await?,
        (Some(stack), None) => stack_config(stack).await?,
        (None, _) => (config_file::load(args.config.as_deref())?, None),
    };
    let base = args.webhook_base.clone().or(stack_base);
    // Kept alive until the checks are done.
    let mut _simulator = None;
    let mut first = None;
    if args.stack.is_none() && runtime::needs_simulator(&config) {
        let (sim, from) = simulated_workspace(&config, &args.data_dir).await?;
        config.scim.base_url = sim.scim_base_url();
        config.notion.base_url = sim.notion_base_url();
        config.scim.token = Secret::new(SIM_SCIM_TOKEN);
        config.notion.token = Secret::new(SIM_NOTION_TOKEN);
        _simulator = Some(sim);
        first = Some(Check::warn(
            "Workspace",
            format!(
                "simulated: no SCIM and Notion tokens are configured, so `enroll dev` runs the \
                 Notion simulator, and these checks ran against its workspace ({from})"
            ),
            "set ENROLL_SCIM_TOKEN and ENROLL_NOTION_TOKEN (or scim.token and notion.token) to \
             check your real Notion workspace",
        ));
    }
    let mut report = doctor::run(&config, base.as_deref()).await;
    if let Some(check) = first {
        report.checks.insert(0, check);
    }
    if args.json {
        crate::print_json(&serde_json::json!({
            "checks": report.checks,
            "passed": report.passed(),
        }))?;
    } else {
        print_report(&report);
    }
    anyhow::ensure!(report.passed(), "{} check(s) failed", report.failures());
    Ok(())
}

fn print_report(report: &Report) {
    for c in &report.checks {
        println!("{} {}: {}", c.mark(), c.name, c.detail);
        if let Some(fix) = &c.fix {
            println!("    fix: {fix}");
        }
    }
    println!(
        "\n{} checks: {} failed, {} warning(s)",
        report.checks.len(),
        report.failures(),
        report.warnings()
    );
}

const SIM_SCIM_TOKEN: &str = "doctor-scim-token";
const SIM_NOTION_TOKEN: &str = "doctor-notion-token";

/// The workspace `enroll dev` simulates for this configuration: the one saved in the data
/// directory, or else the one it would seed. Started here, on a free loopback port, for the
/// length of the checks; nothing is written back.
async fn simulated_workspace(
    config: &Config,
    data_dir: &Path,
) -> anyhow::Result<(SimHandle, String)> {
    let saved = runtime::sim_state_path(data_dir);
    let (state, from): (SimState, String) = if saved.exists() {
        let bytes =
            std::fs::read(&saved).with_context(|| format!("reading {}", saved.display()))?;
        let state = serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}", saved.display()))?;
        (state, format!("saved in {}", saved.display()))
    } else {
        (
            seed::from_config(config),
            "seeded from the configuration, as a first `enroll dev` would".into(),
        )
    };
    let sim = enroll_simulator::start(
        SimConfig {
            scim_token: SIM_SCIM_TOKEN.into(),
            notion_token: SIM_NOTION_TOKEN.into(),
            scim_rate_limit: None,
            notion_rate_limit: None,
            admin_token: Some(uuid::Uuid::new_v4().simple().to_string()),
            max_members_per_patch: None,
            state,
        },
        "127.0.0.1:0".parse()?,
    )
    .await
    .context("starting the Notion simulator")?;
    Ok((sim, from))
}

/// A deployed stack's configuration, as its functions load it (the `EnrollConfig` parameter,
/// the stack's secret, then the `ENROLL_*` environment), and its webhook base URL.
async fn stack_config(stack: &str) -> anyhow::Result<(Config, Option<String>)> {
    let sdk = enroll_aws::sdk_config().await;
    let outputs = stack_outputs(&sdk, stack).await?;
    let described = aws_sdk_cloudformation::Client::new(&sdk)
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .with_context(|| format!("reading the parameters of stack `{stack}`"))?;
    let text = described
        .stacks()
        .first()
        .into_iter()
        .flat_map(|s| s.parameters())
        .find(|p| p.parameter_key() == Some(PARAM_CONFIG))
        .and_then(|p| p.parameter_value())
        .ok_or_else(|| anyhow!("stack `{stack}` has no {PARAM_CONFIG} parameter"))?;
    let env = |k: &str| std::env::var(k).ok();
    let mut config = Config::from_toml(text, env)
        .with_context(|| format!("in stack `{stack}`'s {PARAM_CONFIG} parameter"))?;
    if let Some(id) = AwsResources::from_outputs(&outputs).secret_id {
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        let doc = enroll_aws::load_secrets(&client, &id)
            .await
            .map_err(|f| anyhow!("reading the stack's secret: {}", f.reason))?;
        doc.apply(&mut config);
        // The environment wins over the secret, as in the functions.
        config.apply_env(env);
    }
    let base = outputs.get(OUT_WEBHOOK_BASE).map(|u| webhook_base(u));
    Ok((config, base))
}

/// A tenant of a deployed stack: its configuration as the functions load it (the table item
/// and its own secret, never the `ENROLL_*` environment), and its webhook base,
/// `<function URL>t/<name>`.
async fn tenant_config(stack: &str, tenant: &TenantId) -> anyhow::Result<(Config, Option<String>)> {
    let sdk = enroll_aws::sdk_config().await;
    let outputs = stack_outputs(&sdk, stack).await?;
    let loaded = StackTenant::load(&sdk, &AwsResources::of_stack(stack, &outputs), tenant).await?;
    let base = outputs
        .get(OUT_WEBHOOK_BASE)
        .map(|u| format!("{}{}", webhook_base(u), tenant.path_prefix()));
    Ok((loaded.config, base))
}

/// The stack's `WebhookBaseUrl` (`<function URL>webhooks/`) without its `webhooks/` path,
/// since the checks add `/webhooks/<platform>`.
fn webhook_base(output: &str) -> String {
    let url = output.trim().trim_end_matches('/');
    url.strip_suffix("/webhooks").unwrap_or(url).to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stack_output_loses_its_webhooks_path() {
        let url = "https://abc.lambda-url.us-east-1.on.aws";
        assert_eq!(super::webhook_base(&format!("{url}/webhooks/")), url);
        assert_eq!(super::webhook_base(&format!("{url}/")), url);
    }
}
