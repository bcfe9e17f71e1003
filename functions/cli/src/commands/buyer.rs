//! The commands about buyers: `enroll status` (and `status --summary`), `enroll link` and
//! `enroll expire`. Each resolves one [`LocalTarget`] and acts there.

use crate::print_json;
use crate::target::{LocalTarget, TargetArgs};
use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use clap::Args;
use enroll_core::config::Config;
use enroll_embedded::admin::{parse_emails, LinkQuery};
use enroll_embedded::runtime::{Options, Runtime};
use enroll_embedded::status::{self, StatusReport};
use enroll_notion::scim::ScimClient;
use enroll_ops::summary::{self, SummaryReport};
use provision::link::LinkReport;
use provision::{Provisioner, ReconcileOnly};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// An email, an order id or a Notion user id.
    #[arg(required_unless_present = "summary")]
    query: Option<String>,
    /// The counters (webhooks, events, SCIM, time to access) of the running `enroll dev`, or
    /// of a deployed stack with --stack.
    #[arg(long, conflicts_with = "query")]
    summary: bool,
    /// With --summary --stack: the hours to look back.
    #[arg(long, default_value_t = 24)]
    hours: u32,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: TargetArgs,
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let target = args.target.resolve().await?;
    if args.summary {
        let report = match &target {
            LocalTarget::Dev { dev, .. } => SummaryReport {
                summary: dev
                    .call(dev.get("/admin/metrics"), Duration::from_secs(10))
                    .await?,
                lambda_errors: BTreeMap::new(),
            },
            LocalTarget::Stack(aws) => {
                let stack = aws.args.stack.as_deref().ok_or_else(|| {
                    anyhow!("the summary of a deployed stack needs its name: --stack NAME")
                })?;
                let tenant = aws.tenant.as_ref().map(|t| t.id.as_str().to_owned());
                summary::from_cloudwatch(&aws.sdk, stack, args.hours, tenant.as_deref()).await?
            }
            LocalTarget::DataDir { args } => bail!(
                "no `enroll dev` is running on {}: its counters live in its memory. Start it, or \
                 pass --stack NAME for a deployed stack",
                args.data_dir.display()
            ),
        };
        return if args.json {
            print_json(&report)
        } else {
            summary::print(&report);
            Ok(())
        };
    }
    let query = args.query.unwrap_or_default();
    let report: StatusReport = match &target {
        LocalTarget::Dev { dev, .. } => {
            let req = dev.get("/admin/status").query(&[("q", &query)]);
            dev.call(req, Duration::from_secs(30)).await?
        }
        LocalTarget::DataDir { args } => {
            // The configuration matters only to name Groups on a real workspace.
            let config = match &args.config {
                Some(_) => Some(args.load_config()?),
                None => None,
            };
            status::from_data_dir(&query, &args.data_dir, config.as_ref()).await?
        }
        LocalTarget::Stack(_) => bail!(
            "`enroll status` reads the embedded default; for a stack, use `enroll status \
             --summary --stack NAME`, or the buyer's history in the table"
        ),
    };
    if args.json {
        print_json(&report)
    } else {
        status::print(&report);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct LinkArgs {
    /// The second email (the one to link).
    alias: String,
    /// The email of the existing buyer.
    existing: String,
    /// Move the second email's own orders to the existing buyer (refused without it).
    #[arg(long)]
    merge: bool,
    #[command(flatten)]
    target: TargetArgs,
}

pub async fn link(args: LinkArgs) -> anyhow::Result<()> {
    let (alias, existing) = parse_emails(&args.alias, &args.existing)?;
    let report: LinkReport = match args.target.resolve().await? {
        LocalTarget::Dev { dev, .. } => {
            let query = LinkQuery {
                alias: alias.as_str().to_owned(),
                buyer: existing.as_str().to_owned(),
                merge: args.merge,
            };
            let req = dev.post("/admin/link").query(&query);
            dev.call(req, Duration::from_secs(60)).await?
        }
        LocalTarget::DataDir { args: t } => {
            let rt = start(&t, t.load_config()?).await?;
            let report = rt
                .provisioner
                .link(&alias, &existing, args.merge, Utc::now())
                .await;
            rt.save_simulator()?;
            report.map_err(|f| anyhow!(f.reason))?
        }
        LocalTarget::Stack(aws) => {
            let provisioner = on_dynamo(aws.config().await?, &aws).await?;
            provisioner
                .link(&alias, &existing, args.merge, Utc::now())
                .await
                .map_err(|f| anyhow!(f.reason))?
        }
    };
    print_json(&report)
}

/// A provisioner on the stack's table, for a link that may change the member's Groups.
async fn on_dynamo(config: Config, aws: &crate::target::Aws) -> anyhow::Result<Provisioner> {
    anyhow::ensure!(
        !config.scim.token.is_empty(),
        "no SCIM token: set ENROLL_SCIM_TOKEN (a merge may change the member's Groups)"
    );
    // The tenant's keys with --tenant.
    let history = aws.dynamo_history(config.history.retention_days)?;
    let store = Arc::new(aws.store()?);
    let budget = enroll_notion::rate::from_config(config.rate.scim());
    let scim = ScimClient::new(&config.scim, budget)
        .map_err(|f| anyhow!(f.reason))
        .context("building the SCIM client")?;
    Ok(Provisioner::new(
        Arc::new(config),
        store.clone(),
        store,
        Arc::new(scim),
        Arc::new(ReconcileOnly),
    )
    .with_history(Arc::new(history)))
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    /// Pretend it is this moment (RFC 3339), e.g. to rehearse next year's expiry.
    #[arg(long)]
    now: Option<DateTime<Utc>>,
    #[command(flatten)]
    target: TargetArgs,
}

pub async fn expire(args: ExpireArgs) -> anyhow::Result<()> {
    let report: provision::ExpiryReport = match args.target.resolve().await? {
        // A running `enroll dev` owns the data directory: ask it.
        LocalTarget::Dev { dev, .. } => {
            let mut req = dev.post("/admin/expire");
            if let Some(t) = args.now {
                req = req.query(&[("now", t.to_rfc3339())]);
            }
            dev.call(req, Duration::from_secs(600)).await?
        }
        LocalTarget::DataDir { args: t } => {
            let rt = start(&t, t.load_config()?).await?;
            let report = rt.expire(args.now.unwrap_or_else(Utc::now)).await?;
            // The changes the pass queued are applied before the command returns.
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let workers = rt.spawn_workers(stop_rx);
            rt.settle(Duration::from_secs(300)).await;
            let _ = stop_tx.send(true);
            for w in workers {
                let _ = w.await;
            }
            rt.save_simulator()?;
            report
        }
        LocalTarget::Stack(_) => bail!(
            "on a stack the expire function runs on its schedule; invoke it with `aws lambda \
             invoke` to run a pass now"
        ),
    };
    println!("{}", serde_json::to_string(&report)?);
    anyhow::ensure!(
        report.failed == 0,
        "{} buyers could not be reconciled; they stay due",
        report.failed
    );
    Ok(())
}

/// The embedded runtime on the data directory, with the shipped timings.
async fn start(args: &TargetArgs, config: Config) -> anyhow::Result<Arc<Runtime>> {
    Runtime::start(Options {
        config,
        data_dir: Some(args.data_dir.clone()),
        timings: Default::default(),
        simulate: false,
    })
    .await
}
