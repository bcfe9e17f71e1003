//! `enroll bench`: the numbers behind "as close to Notion's limit as physics allows", measured
//! against the Notion simulator in this process.
//!
//! - ingest: Stripe webhooks are signed first; then [`Ingest::handle`](::ingest::Ingest::handle)
//!   runs on one thread with an in-memory queue, so the rate is per core, with the handler's p50
//!   and p99 latency.
//! - provision: `purchases` new buyers in batches of 10, two workers (the stack's default
//!   `MaximumConcurrency`) sharing one budget set to the simulator's limit. The rate efficiency
//!   is the requests Notion accepted divided by what the limit allows over the time from the
//!   first request to the last one (the idle tail, events finishing in the store, is not
//!   Notion's time).
//! - backfill: `members` workspace members who bought one of three products, through
//!   `enroll backfill plan` and `apply`, against a script that looks each member up and PATCHes
//!   them alone (two requests per member); the floor is the requests at the limit.
//! - latency: time to access through the embedded pipeline against a simulator answering
//!   after `latency_ms`, at a trickle and in a spike, with both budgets busy ([`latency`]).
//! - functions: each Lambda binary under a fake Lambda Runtime API, with DynamoDB and SQS from
//!   moto (`AWS_ENDPOINT_URL`, else `.venv/bin/moto_server`): the time from process start to
//!   its first request for an event, and its peak RSS (VmHWM) once it has handled ten events.
//! - cost: dollars per 1,000 purchases at AWS list prices, from the functions' measured
//!   durations and AWS requests and the provision part's busy time ([`cost`]).
//!
//! The simulator's limit is the budget's rate; the budget keeps a smaller burst than the
//! simulator (3 against a tenth of a second of the rate) so jitter on a busy machine cannot
//! turn into 429s that a real client with the same settings would not get either.
//!
//! By job: `ingest`, `provision`, `backfill` and `functions` (each part above), `runtime_api`
//! (the fake Lambda Runtime API the functions run under), `aws_meter` (the proxy counting their
//! AWS requests), `cost` (`cost.*`: dollars per 1,000 purchases from the measurements), `report`
//! (rounding and the table).

mod aws_meter;
mod backfill;
mod cost;
mod functions;
mod ingest;
mod latency;
mod provision;
mod report;
mod runtime_api;

pub use report::print;

use async_trait::async_trait;
use enroll_core::config::{Config, Secret};
use enroll_core::ports::{DeadLetters, ParkedReason, Queue, RateBudget};
use enroll_core::Failure;
use enroll_simulator::{RateLimit, SimConfig, SimHandle, SimState};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The flat report: dotted keys, as `--json` prints them.
pub type Report = BTreeMap<String, Value>;

pub struct BenchOptions {
    pub purchases: usize,
    pub members: usize,
    /// The simulated limit and the budget's rate, requests per second.
    pub rate: f64,
    /// Webhooks timed in the ingest part.
    pub webhooks: usize,
    /// Where the release binaries are; `target/release` of this workspace by default.
    pub bin_dir: Option<PathBuf>,
    pub skip_functions: bool,
    /// How long the simulator takes to answer each request, milliseconds.
    pub latency_ms: u64,
    /// Purchases posted at once in the time-to-access spike.
    pub spike: usize,
}

const SCIM_TOKEN: &str = "bench-scim-token";
const NOTION_TOKEN: &str = "bench-notion-token";
const STRIPE_SECRET: &str = "whsec_bench_signing_secret";
/// A UUID, as Notion's ids are: the simulator refuses anything else in a path.
const DATABASE: &str = "0b3e1f9a-2c4d-4e5f-8a6b-7c8d9e0f1a2b";
/// Groups each provision purchase opens.
const GROUPS_PER_PRODUCT: usize = 2;
const PROVISION_WORKERS: usize = 2;
const BATCH: usize = 10;
const FUNCTIONS: [&str; 4] = ["ingest", "provision", "align", "expire"];

/// The bench's configuration: `products` as TOML `[[products]]` tables.
fn config_text(rate: f64, scim: &str, notion: &str, products: &str) -> String {
    format!(
        r#"
[scim]
base_url = "{scim}"
batch_size = 100

[notion]
base_url = "{notion}"
database_id = "{DATABASE}"

[rate]
requests_per_second = {rate:?}
burst = 3

[platforms.stripe]
secrets = ["{STRIPE_SECRET}"]
{products}"#
    )
}

const PROVISION_PRODUCTS: &str = r#"
[[products]]
id = "course"
name = "Course"
groups = [{ name = "Course" }, { name = "Course Community" }]
"#;

const BACKFILL_PRODUCTS: &str = r#"
[[products]]
id = "templates"
name = "Templates"
groups = [{ name = "Templates" }]

[[products]]
id = "coaching"
name = "Coaching"
groups = [{ name = "Coaching" }]

[[products]]
id = "workshop"
name = "Workshop"
groups = [{ name = "Workshop" }]
"#;
const BACKFILL_PRODUCT_IDS: [&str; 3] = ["templates", "coaching", "workshop"];

fn config(rate: f64, sim: Option<&SimHandle>, products: &str) -> anyhow::Result<Config> {
    let (scim, notion) = sim.map_or(
        (
            "http://127.0.0.1:9/scim/v2".to_owned(),
            "http://127.0.0.1:9/v1".to_owned(),
        ),
        |s| (s.scim_base_url(), s.notion_base_url()),
    );
    let mut cfg = Config::from_toml(&config_text(rate, &scim, &notion, products), |_| None)?;
    cfg.scim.token = Secret::new(SCIM_TOKEN);
    cfg.notion.token = Secret::new(NOTION_TOKEN);
    Ok(cfg)
}

/// The simulator, holding `state` (the configuration's Groups: `seed::from_config`).
async fn simulator(state: SimState, limit: Option<RateLimit>) -> anyhow::Result<SimHandle> {
    Ok(enroll_simulator::start(
        SimConfig {
            scim_token: SCIM_TOKEN.into(),
            notion_token: NOTION_TOKEN.into(),
            scim_rate_limit: limit,
            notion_rate_limit: limit,
            admin_token: None,
            max_members_per_patch: None,
            state,
        },
        "127.0.0.1:0".parse()?,
    )
    .await?)
}

/// The simulator's limit: the budget's rate, with a tenth of a second of burst.
fn limit(rate: f64) -> RateLimit {
    RateLimit {
        per_second: rate,
        burst: ((rate / 10.0).ceil() as u32).max(5),
    }
}

fn scim_requests(sim: &SimHandle) -> u64 {
    sim.counters()
        .iter()
        .filter(|(k, _)| k.split(' ').nth(1).is_some_and(|p| p.starts_with("/scim")))
        .map(|(_, v)| *v)
        .sum()
}

/// A queue that only counts.
#[derive(Default)]
struct Counting(AtomicUsize);

#[async_trait]
impl Queue for Counting {
    async fn send(&self, _: &str) -> Result<(), Failure> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[async_trait]
impl DeadLetters for Counting {
    async fn park(&self, _: &str, _: &ParkedReason) -> Result<(), Failure> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The budget, watched: when the last request went out, and how many 429s came back.
struct Metered {
    inner: Arc<dyn RateBudget>,
    last: Mutex<Option<Instant>>,
    throttled: AtomicU64,
}

#[async_trait]
impl RateBudget for Metered {
    async fn acquire(&self) {
        self.inner.acquire().await;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    async fn back_off(&self, retry_after: Duration) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        self.inner.back_off(retry_after).await;
    }
}

impl Metered {
    /// Seconds from `started` to the last request; `otherwise` if none went out.
    fn last_request_s(&self, started: Instant, otherwise: f64) -> f64 {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(otherwise, |t| t.duration_since(started).as_secs_f64())
    }
}

fn metered(cfg: &Config) -> Arc<Metered> {
    Arc::new(Metered {
        inner: enroll_notion::rate::from_config(cfg.rate.scim()),
        last: Mutex::new(None),
        throttled: AtomicU64::new(0),
    })
}

/// Runs every part and returns the flat report.
pub async fn run(opts: &BenchOptions) -> anyhow::Result<Report> {
    anyhow::ensure!(
        opts.rate.is_finite() && opts.rate > 0.0,
        "--rate must be positive"
    );
    let mut report = Report::new();
    report.insert(
        "machine.cores".into(),
        json!(std::thread::available_parallelism().map_or(1, |n| n.get())),
    );
    report.insert("rate.limit_rps".into(), json!(opts.rate));
    let webhooks = opts.webhooks;
    let ingest = tokio::task::spawn_blocking(move || ingest::bench(webhooks)).await??;
    report.extend(ingest);
    report.extend(provision::bench(opts.purchases, opts.rate).await?);
    let latency = Duration::from_millis(opts.latency_ms);
    report.extend(latency::bench(opts.rate, latency, opts.spike).await?);
    report.extend(backfill::bench(opts.members, opts.rate).await?);
    if opts.skip_functions {
        for f in FUNCTIONS {
            functions::skipped(&mut report, f, "--skip-functions".into());
        }
    } else {
        report.extend(functions::bench(opts).await?);
    }
    let cost = cost::estimate(&report);
    report.extend(cost);
    Ok(report)
}
