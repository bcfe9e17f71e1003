//! The commands that drive the pipeline from outside: `enroll send`, `enroll demo`, `enroll
//! bench` and `enroll chaos`. The work is `enroll_lab`'s; these read the flags and print.

use crate::{parse_platform, print_json};
use anyhow::Context;
use clap::{Args, ValueEnum};
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use enroll_embedded::{admin, config_file};
use enroll_lab::{bench, chaos, demo, send};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Purchase,
    Refund,
    Chargeback,
    Cancel,
}

impl From<Kind> for EventKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Purchase => EventKind::Purchase,
            Kind::Refund => EventKind::Refund,
            Kind::Chargeback => EventKind::Chargeback,
            Kind::Cancel => EventKind::Cancel,
        }
    }
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[arg(value_parser = parse_platform)]
    platform: Platform,
    #[arg(long)]
    product: String,
    #[arg(long)]
    email: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long, value_enum, default_value = "purchase")]
    kind: Kind,
    /// The order a refund or cancellation refers to (a new one for purchases by default).
    #[arg(long)]
    order: Option<String>,
    #[arg(long)]
    event_id: Option<String>,
    /// Where to post: by default the webhook address the running `enroll dev` recorded in the
    /// data directory, else http://127.0.0.1:8787.
    #[arg(long)]
    url: Option<String>,
    #[arg(long)]
    config: Option<PathBuf>,
    /// The data directory of the `enroll dev` to post to.
    #[arg(long, default_value = ".enroll")]
    data_dir: PathBuf,
}

pub async fn send(a: SendArgs) -> anyhow::Result<()> {
    let config = config_file::load(a.config.as_deref())?;
    let sample = enroll_platforms::Sample {
        kind: a.kind.into(),
        product: a.product,
        email: a.email,
        name: a.name,
        order_id: a.order,
        event_id: a.event_id,
    };
    let out = send::request(&config, a.platform, &sample)?;
    let url = a.url.unwrap_or_else(|| {
        let base = admin::read_dev_record(&a.data_dir)
            .map_or_else(|| "http://127.0.0.1:8787".to_owned(), |r| r.webhook_url);
        send::webhook_url(&base, a.platform)
    });
    let http = reqwest::Client::new();
    let (status, body) = send::post_signed(&http, &url, &out).await?;
    println!("{status} {body}");
    anyhow::ensure!(
        (200..300).contains(&status),
        "the endpoint refused the webhook"
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[arg(long)]
    json: bool,
    #[arg(long)]
    config: Option<PathBuf>,
    /// The simulated Notion request budget (requests per second).
    #[arg(long, default_value_t = 25.0)]
    rate: f64,
}

pub async fn demo(a: DemoArgs) -> anyhow::Result<()> {
    let config = config_file::load(a.config.as_deref())?;
    let report = demo::run(config, a.rate).await?;
    if a.json {
        print_json(&report)?;
    } else {
        demo::print(&report);
    }
    anyhow::ensure!(
        report.checks.failed == 0,
        "{} check(s) failed",
        report.checks.failed
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(long)]
    json: bool,
    /// New buyers provisioned.
    #[arg(long, default_value_t = 1000)]
    purchases: usize,
    /// Existing members backfilled into three Groups.
    #[arg(long, default_value_t = 10_000)]
    members: usize,
    /// The simulated Notion limit, which the budget is set to (requests per second).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Webhooks timed for ingest.
    #[arg(long, default_value_t = 20_000)]
    webhooks: usize,
    /// Where the release binaries are (target/release by default).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Skip starting the function binaries.
    #[arg(long)]
    skip_functions: bool,
    /// How long the simulated Notion takes to answer each request (milliseconds).
    #[arg(long, default_value_t = 120)]
    latency_ms: u64,
    /// Purchases posted at once in the time-to-access spike.
    #[arg(long, default_value_t = 2000)]
    spike: usize,
}

pub async fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let report = bench::run(&bench::BenchOptions {
        purchases: a.purchases,
        members: a.members,
        rate: a.rate,
        webhooks: a.webhooks,
        bin_dir: a.bin_dir,
        skip_functions: a.skip_functions,
        latency_ms: a.latency_ms,
        spike: a.spike,
    })
    .await?;
    if a.json {
        print_json(&report)
    } else {
        bench::print(&report);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct ChaosArgs {
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// Share of SCIM and Notion requests that fail (5xx, 429, timeouts, dropped connections).
    #[arg(long, default_value_t = 0.2)]
    fault_rate: f64,
    /// Extra deliveries of events already sent, as a share of the events.
    #[arg(long, default_value_t = 0.1)]
    duplicates: f64,
    /// Refunds delivered before their purchase, as a share of the events (as many again arrive
    /// after their purchase).
    #[arg(long, default_value_t = 0.05)]
    early_refunds: f64,
    /// Hard kills (SIGKILL) of the worker process mid-batch.
    #[arg(long, default_value_t = 2)]
    kills: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    config: Option<PathBuf>,
    /// Keep the store and queues here (an empty directory) instead of a temporary one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The longest each worker phase may take to drain the queues.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
    /// Sellers served by one `enroll dev --tenants` child (up to 4: alpha, beta, ...), each
    /// with its own workspace, secrets and --events events, sharing event ids; 1 is the
    /// single seller.
    #[arg(long, default_value_t = 1)]
    tenants: usize,
}

pub async fn chaos(a: ChaosArgs) -> anyhow::Result<()> {
    let report = chaos::run(chaos::ChaosOptions {
        config: config_file::load(a.config.as_deref())?,
        events: a.events,
        fault_rate: a.fault_rate,
        duplicates: a.duplicates,
        early_refunds: a.early_refunds,
        kills: a.kills,
        seed: a.seed,
        enroll: std::env::current_exe().context("locating the enroll executable")?,
        data_dir: a.data_dir,
        timeout: Duration::from_secs(a.timeout_secs),
        tenants: a.tenants,
    })
    .await?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        chaos::print(&report);
    }
    anyhow::ensure!(report.passed(), "chaos run failed: see the report");
    Ok(())
}
