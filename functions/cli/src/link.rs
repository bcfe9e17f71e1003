//! `enroll link <alias> <existing buyer>`: the seller tells enroll that a second email belongs
//! to a buyer it already knows, so later purchases with it reach the same Notion member.
//!
//! Where it acts: the DynamoDB table when `ENROLL_TABLE` is set (with the SCIM token from
//! `ENROLL_SCIM_TOKEN`, since `--merge` may change Groups); otherwise the embedded default,
//! through a running `enroll dev` (which owns the data directory) or directly on the data
//! directory.

use crate::ops::target::running_dev;
use crate::runtime::{Options, Runtime};
use anyhow::{anyhow, Context};
use chrono::Utc;
use enroll_core::config::Config;
use enroll_core::ids::BuyerEmail;
use enroll_notion::scim::ScimClient;
use provision::link::LinkReport;
use provision::{Provisioner, ReconcileOnly};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct LinkArgs {
    pub alias: String,
    pub existing: String,
    pub merge: bool,
    pub config: Config,
    pub data_dir: PathBuf,
    /// The admin address of a running `enroll dev`; the one recorded in the data directory
    /// when `None`.
    pub url: Option<String>,
    /// The DynamoDB table; the embedded default when `None`.
    pub table: Option<String>,
}

/// The query `/admin/link` takes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LinkQuery {
    pub alias: String,
    pub buyer: String,
    #[serde(default)]
    pub merge: bool,
}

pub fn parse_emails(alias: &str, existing: &str) -> anyhow::Result<(BuyerEmail, BuyerEmail)> {
    let parse = |what: &str, e: &str| {
        BuyerEmail::parse(e).map_err(|err| anyhow!("{what} `{e}` is not an email address: {err}"))
    };
    Ok((
        parse("the second email", alias)?,
        parse("the existing buyer", existing)?,
    ))
}

pub async fn run(args: LinkArgs) -> anyhow::Result<LinkReport> {
    let (alias, existing) = parse_emails(&args.alias, &args.existing)?;
    if let Some(table) = args.table.filter(|t| !t.is_empty()) {
        let provisioner = on_dynamo(args.config, table).await?;
        return link(&provisioner, &alias, &existing, args.merge).await;
    }
    let query = LinkQuery {
        alias: alias.as_str().to_owned(),
        buyer: existing.as_str().to_owned(),
        merge: args.merge,
    };
    if let Some(dev) = running_dev(&args.data_dir, args.url.as_deref()).await? {
        return dev
            .call(
                dev.post("/admin/link").query(&query),
                Duration::from_secs(60),
            )
            .await;
    }
    let rt = Runtime::start(Options {
        config: args.config,
        data_dir: Some(args.data_dir),
        timings: Default::default(),
        simulate: false,
    })
    .await?;
    let report = link(&rt.provisioner, &alias, &existing, args.merge).await;
    rt.save_simulator()?;
    report
}

pub async fn link(
    provisioner: &Provisioner,
    alias: &BuyerEmail,
    existing: &BuyerEmail,
    merge: bool,
) -> anyhow::Result<LinkReport> {
    provisioner
        .link(alias, existing, merge, Utc::now())
        .await
        .map_err(|f| anyhow!(f.reason))
}

async fn on_dynamo(config: Config, table: String) -> anyhow::Result<Provisioner> {
    anyhow::ensure!(
        !config.scim.token.is_empty(),
        "no SCIM token: set ENROLL_SCIM_TOKEN (a merge may change the member's Groups)"
    );
    let sdk = enroll_aws::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let history = enroll_aws::DynamoHistory::new(dynamo.clone(), &table)
        .with_retention(config.history.retention_days);
    let store = Arc::new(enroll_aws::DynamoStore::new(dynamo, table));
    let budget = enroll_notion::rate::from_config(&config.rate);
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
