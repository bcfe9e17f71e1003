//! `enroll bench`: the numbers behind "as close to Notion's limit as physics allows", measured
//! against the Notion simulator in this process.
//!
//! - ingest: Stripe webhooks are signed first; then [`Ingest::handle`] runs on one thread with an
//!   in-memory queue, so the rate is per core, with the handler's p50 and p99 latency.
//! - provision: `purchases` new buyers in batches of 10, two workers (the stack's default
//!   `MaximumConcurrency`) sharing one budget set to the simulator's limit. The rate efficiency
//!   is the requests Notion accepted divided by what the limit allows over the time from the
//!   first request to the last one (the idle tail, events finishing in the store, is not
//!   Notion's time).
//! - backfill: `members` workspace members who bought one of three products, through
//!   `enroll backfill plan` and `apply`, against a script that looks each member up and PATCHes
//!   them alone (two requests per member); the floor is the requests at the limit.
//! - functions: each Lambda binary under a fake Lambda Runtime API, with DynamoDB and SQS from
//!   moto (`AWS_ENDPOINT_URL`, else `.venv/bin/moto_server`): the time from process start to
//!   its first request for an event, and its peak RSS (VmHWM) once it has handled ten events.
//!
//! The simulator's limit is the budget's rate; the budget keeps a smaller burst than the
//! simulator (3 against a tenth of a second of the rate) so jitter on a busy machine cannot
//! turn into 429s that a real client with the same settings would not get either.

use anyhow::{bail, Context};
use async_trait::async_trait;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use enroll_core::batch::Incoming;
use enroll_core::config::{Config, Secret};
use enroll_core::event::{AlignRequest, Buyer, EventKind, OrderEvent};
use enroll_core::ids::{
    BuyerEmail, EventId, EventKey, NotionUserId, OrderId, OrderKey, Platform, PlatformProductRef,
};
use enroll_core::ports::{DeadLetters, ParkedReason, Queue, RateBudget};
use enroll_core::Failure;
use enroll_embedded::seed;
use enroll_embedded::store::FileStore;
use enroll_notion::scim::ScimClient;
use enroll_ops::backfill::{self, ApplyOptions, Columns, PlanOptions};
use enroll_ops::workspace::{Ledger, Workspace};
use enroll_simulator::{Email, RateLimit, SimConfig, SimHandle, User};
use ingest::{Ingest, WebhookRequest};
use provision::Provisioner;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
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

async fn simulator(cfg: &Config, limit: Option<RateLimit>) -> anyhow::Result<SimHandle> {
    Ok(enroll_simulator::start(
        SimConfig {
            scim_token: SCIM_TOKEN.into(),
            notion_token: NOTION_TOKEN.into(),
            scim_rate_limit: limit,
            notion_rate_limit: limit,
            admin_token: None,
            max_members_per_patch: None,
            state: seed::from_config(cfg),
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

fn metered(cfg: &Config) -> Arc<Metered> {
    Arc::new(Metered {
        inner: enroll_notion::rate::from_config(&cfg.rate),
        last: Mutex::new(None),
        throttled: AtomicU64::new(0),
    })
}

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
    let ingest = tokio::task::spawn_blocking(move || ingest_bench(webhooks)).await??;
    report.extend(ingest);
    report.extend(provision_bench(opts.purchases, opts.rate).await?);
    report.extend(backfill_bench(opts.members, opts.rate).await?);
    if opts.skip_functions {
        for f in FUNCTIONS {
            report.insert(format!("functions.{f}.init_ms"), Value::Null);
            report.insert(format!("functions.{f}.peak_rss_mb"), Value::Null);
            report.insert(format!("functions.{f}.skipped"), json!("--skip-functions"));
        }
    } else {
        report.extend(functions_bench(opts).await?);
    }
    Ok(report)
}

fn stripe_purchase(i: usize, product: &str) -> enroll_platforms::Sample {
    enroll_platforms::Sample {
        kind: EventKind::Purchase,
        product: product.to_owned(),
        email: format!("buyer{i}@example.com"),
        name: Some(format!("Buyer {i}")),
        order_id: Some(format!("cs_bench_{i}")),
        event_id: Some(format!("evt_bench_{i}")),
    }
}

fn webhook(out: enroll_platforms::Outgoing) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: "/webhooks/stripe".into(),
        query: out.query,
        headers: out
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        body: out.body,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// One thread, one core: signing happens first and is not timed.
fn ingest_bench(n: usize) -> anyhow::Result<Report> {
    let cfg = Arc::new(config(3.0, None, PROVISION_PRODUCTS)?);
    let now = Utc::now();
    let requests: Vec<WebhookRequest> = (0..n)
        .map(|i| {
            webhook(enroll_platforms::sample(
                Platform::Stripe,
                &stripe_purchase(i, "course"),
                STRIPE_SECRET,
                now,
            ))
        })
        .collect();
    let queue = Arc::new(Counting::default());
    let ingest = Ingest::new(cfg, queue.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    rt.block_on(async {
        for req in &requests {
            let t = Instant::now();
            let resp = ingest.handle(req, now).await;
            latencies.push(t.elapsed());
            if resp.status != 202 {
                bail!("ingest answered {} {}", resp.status, resp.body);
            }
        }
        Ok(())
    })?;
    let wall = started.elapsed().as_secs_f64();
    latencies.sort();
    anyhow::ensure!(
        queue.0.load(Ordering::Relaxed) == n,
        "not every webhook was queued"
    );
    Ok(Report::from([
        ("ingest.webhooks".into(), json!(n)),
        (
            "ingest.webhooks_per_sec_per_core".into(),
            json!(round(n as f64 / wall, 0)),
        ),
        (
            "ingest.p50_ms".into(),
            json!(round(percentile(&latencies, 0.5), 3)),
        ),
        (
            "ingest.p99_ms".into(),
            json!(round(percentile(&latencies, 0.99), 3)),
        ),
    ]))
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn purchase_event(i: usize, product: &str) -> OrderEvent {
    OrderEvent {
        key: EventKey::new(
            Platform::Stripe,
            EventId::parse(&format!("evt_bench_{i}")).expect("a valid id"),
        ),
        kind: EventKind::Purchase,
        order: OrderKey {
            platform: Platform::Stripe,
            order_id: OrderId::parse(&format!("cs_bench_{i}")).expect("a valid id"),
        },
        buyer: Some(Buyer {
            email: BuyerEmail::parse(&format!("buyer{i}@example.com")).expect("a valid email"),
            name: Some(format!("Buyer {i}")),
        }),
        items: vec![PlatformProductRef::parse(product).expect("a valid reference")],
        occurred_at: Utc::now(),
        accepted_at: Some(Utc::now()),
    }
}

fn incoming(i: usize, body: String) -> Incoming {
    Incoming {
        receive_count: 1,
        id: format!("msg-{i}"),
        body,
    }
}

async fn provision_bench(n: usize, rate: f64) -> anyhow::Result<Report> {
    let seed_cfg = config(rate, None, PROVISION_PRODUCTS)?;
    let sim = simulator(&seed_cfg, Some(limit(rate))).await?;
    let cfg = Arc::new(config(rate, Some(&sim), PROVISION_PRODUCTS)?);
    let budget = metered(&cfg);
    let scim = ScimClient::new(&cfg.scim, budget.clone()).map_err(|f| anyhow::anyhow!(f.reason))?;
    let store = Arc::new(FileStore::in_memory());
    let align = Arc::new(Counting::default());
    let provisioner = Provisioner::new(
        cfg.clone(),
        store.clone(),
        store,
        Arc::new(scim),
        align.clone(),
    );
    let messages: Vec<Incoming> = (0..n)
        .map(|i| {
            incoming(
                i,
                serde_json::to_string(&purchase_event(i, "course")).unwrap_or_default(),
            )
        })
        .collect();
    let batches: Mutex<VecDeque<&[Incoming]>> = Mutex::new(messages.chunks(BATCH).collect());
    let dead = Counting::default();
    let failed = AtomicUsize::new(0);
    sim.reset_counters();
    let started = Instant::now();
    let worker = || async {
        loop {
            let Some(batch) = batches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
            else {
                return;
            };
            let deadline = Utc::now() + chrono::TimeDelta::seconds(60);
            let r = provision::batch::run(&provisioner, &dead, batch, deadline).await;
            failed.fetch_add(r.retries.len() + r.parked, Ordering::Relaxed);
        }
    };
    // PROVISION_WORKERS instances, interleaving at every await and sharing the budget.
    tokio::join!(worker(), worker());
    let wall = started.elapsed().as_secs_f64();
    let last = budget
        .last
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .map_or(wall, |t| t.duration_since(started).as_secs_f64());
    let requests = scim_requests(&sim);
    let throttled = budget.throttled.load(Ordering::Relaxed);
    let accepted = requests.saturating_sub(throttled) as f64;
    // The last request holds the budget for one interval too.
    let busy = last + 1.0 / rate;
    let in_groups = ["Course", "Course Community"]
        .iter()
        .map(|g| sim.group_members(g).len())
        .min()
        .unwrap_or(0);
    let mut failed = failed.load(Ordering::Relaxed);
    // A buyer missing from a Group is a failure whatever the reports said.
    failed = failed.max(n.saturating_sub(in_groups));
    let created = *sim.counters().get("POST /scim/v2/Users").unwrap_or(&0);
    Ok(Report::from([
        ("provision.purchases".into(), json!(n)),
        ("provision.workers".into(), json!(PROVISION_WORKERS)),
        (
            "provision.groups_per_product".into(),
            json!(GROUPS_PER_PRODUCT),
        ),
        ("provision.requests".into(), json!(requests)),
        ("provision.members_created".into(), json!(created)),
        ("provision.busy_s".into(), json!(round(busy, 3))),
        ("provision.wall_s".into(), json!(round(wall, 3))),
        (
            "provision.achieved_rps".into(),
            json!(round(accepted / busy, 2)),
        ),
        (
            "provision.rate_efficiency".into(),
            json!(round(accepted / busy / rate, 4)),
        ),
        (
            "provision.requests_per_new_buyer".into(),
            json!(round(requests as f64 / n.max(1) as f64, 3)),
        ),
        ("provision.throttled_429".into(), json!(throttled)),
        ("provision.failed".into(), json!(failed)),
        (
            "provision.align_requests".into(),
            json!(align.0.load(Ordering::Relaxed)),
        ),
    ]))
}

async fn backfill_bench(m: usize, rate: f64) -> anyhow::Result<Report> {
    let seed_cfg = config(rate, None, BACKFILL_PRODUCTS)?;
    let mut state = seed::from_config(&seed_cfg);
    let now = Utc::now();
    let mut csv = String::from("email,product,order_id,date\n");
    for i in 0..m {
        let email = format!("member{i}@example.com");
        state.users.push(User {
            id: uuid::Uuid::new_v4().to_string(),
            user_name: email.clone(),
            external_id: None,
            name: None,
            display_name: None,
            emails: vec![Email {
                value: email.clone(),
                kind: Some("work".into()),
                primary: true,
            }],
            active: true,
            deleted: false,
            role: "member".into(),
            created: now,
            last_modified: now,
        });
        let product = BACKFILL_PRODUCT_IDS[i % BACKFILL_PRODUCT_IDS.len()];
        csv.push_str(&format!(
            "{email},{product},bf_{i},{}\n",
            now.format("%Y-%m-%d")
        ));
    }
    let sim = enroll_simulator::start(
        SimConfig {
            scim_token: SCIM_TOKEN.into(),
            notion_token: NOTION_TOKEN.into(),
            scim_rate_limit: Some(limit(rate)),
            notion_rate_limit: Some(limit(rate)),
            admin_token: None,
            max_members_per_patch: None,
            state,
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let cfg = config(rate, Some(&sim), BACKFILL_PRODUCTS)?;
    let budget = metered(&cfg);
    let scim = ScimClient::new(&cfg.scim, budget.clone()).map_err(|f| anyhow::anyhow!(f.reason))?;
    let catalog = cfg.catalog.clone();
    let store = FileStore::in_memory();
    let ledger = Ledger::new(store.clone(), Arc::new(store));
    let ws = Workspace::new(cfg, ledger, scim);
    let dir = tempfile_dir()?;
    let plan_path = dir.join("backfill-plan.json");

    sim.reset_counters();
    let started = Instant::now();
    let sales = backfill::read_sales(
        csv.as_bytes(),
        &Columns::default(),
        &catalog,
        Platform::Stripe,
    )?;
    let plan = backfill::plan(
        &ws,
        sales,
        &PlanOptions {
            sales_file: "bench.csv".into(),
            prune: false,
            create_missing: false,
        },
        Utc::now(),
        &indicatif::ProgressBar::hidden(),
    )
    .await?;
    std::fs::write(&plan_path, serde_json::to_vec(&plan)?)?;
    let planned = started.elapsed().as_secs_f64();
    let plan_requests = scim_requests(&sim);
    let applied = backfill::apply(
        &ws,
        &plan_path,
        &ApplyOptions {
            show_progress: false,
        },
    )
    .await?;
    let wall = started.elapsed().as_secs_f64();
    let last_request = budget
        .last
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .map_or(wall, |t| t.duration_since(started).as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);

    let requests = scim_requests(&sim);
    let per_member = 2 * m as u64;
    let floor = requests as f64 / rate;
    let in_groups: usize = ["Templates", "Coaching", "Workshop"]
        .iter()
        .map(|g| sim.group_members(g).len())
        .sum();
    Ok(Report::from([
        ("backfill.members".into(), json!(m)),
        ("backfill.groups".into(), json!(3)),
        ("backfill.members_added".into(), json!(in_groups)),
        ("backfill.requests".into(), json!(requests)),
        ("backfill.apply_requests".into(), json!(applied.requests)),
        ("backfill.per_member_requests".into(), json!(per_member)),
        (
            "backfill.fewer_requests_x".into(),
            json!(round(per_member as f64 / requests.max(1) as f64, 1)),
        ),
        (
            "backfill.throttled_429".into(),
            json!(budget.throttled.load(Ordering::Relaxed)),
        ),
        ("backfill.wall_s".into(), json!(round(wall, 3))),
        ("backfill.plan_s".into(), json!(round(planned, 3))),
        ("backfill.plan_requests".into(), json!(plan_requests)),
        (
            "backfill.last_request_s".into(),
            json!(round(last_request, 3)),
        ),
        ("backfill.floor_s".into(), json!(round(floor, 3))),
        (
            "backfill.wall_over_floor".into(),
            json!(round(wall / floor.max(1e-9), 3)),
        ),
    ]))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("enroll-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

// ------------------------------------------------------------------------------------------
// Function binaries under a fake Lambda Runtime API.
// ------------------------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn bin_dir(opts: &BenchOptions) -> PathBuf {
    opts.bin_dir.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("release")
    })
}

/// What the fake Runtime API hands out and records.
struct Invocations {
    events: Mutex<VecDeque<Value>>,
    first_poll: Mutex<Option<Instant>>,
    answered: AtomicUsize,
    errors: AtomicUsize,
    init_error: Mutex<Option<String>>,
    changed: tokio::sync::Notify,
}

async fn next(State(inv): State<Arc<Invocations>>) -> Response {
    inv.first_poll
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Instant::now);
    inv.changed.notify_waiters();
    let event = inv
        .events
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_front();
    let Some(event) = event else {
        // No more work: hold the poll open, as Lambda does between invocations.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let mut headers = HeaderMap::new();
    let id = uuid::Uuid::new_v4().to_string();
    let deadline = (Utc::now() + chrono::TimeDelta::seconds(60)).timestamp_millis();
    for (k, v) in [
        ("lambda-runtime-aws-request-id", id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:bench".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        if let Ok(v) = HeaderValue::try_from(v) {
            headers.insert(k, v);
        }
    }
    (headers, event.to_string()).into_response()
}

async fn answered(
    State(inv): State<Arc<Invocations>>,
    UrlPath(_id): UrlPath<String>,
    body: String,
) -> StatusCode {
    // An SQS batch response naming failed items is a partial failure, not a success.
    let item_failures = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("batchItemFailures")?.as_array().map(Vec::len))
        .unwrap_or(0);
    inv.errors.fetch_add(item_failures, Ordering::SeqCst);
    inv.answered.fetch_add(1, Ordering::SeqCst);
    inv.changed.notify_waiters();
    StatusCode::ACCEPTED
}

async fn failed(
    State(inv): State<Arc<Invocations>>,
    UrlPath(_id): UrlPath<String>,
    body: String,
) -> StatusCode {
    tracing::warn!(body = %body, "function reported an invocation error");
    inv.errors.fetch_add(1, Ordering::SeqCst);
    inv.answered.fetch_add(1, Ordering::SeqCst);
    inv.changed.notify_waiters();
    StatusCode::ACCEPTED
}

async fn init_failed(State(inv): State<Arc<Invocations>>, body: String) -> StatusCode {
    *inv.init_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
    inv.changed.notify_waiters();
    StatusCode::ACCEPTED
}

struct FunctionRun {
    init_ms: f64,
    peak_rss_mb: f64,
    invocations: usize,
    errors: usize,
    /// Metric names the binary printed as Embedded Metric Format in namespace `Enroll`.
    emf_metrics: std::collections::BTreeSet<String>,
    /// Messages the function parked: a run that parks measured the wrong path.
    parked: usize,
}

/// The `Enroll` metric names in the EMF lines of a function's log.
fn emf_metric_names(log: &str) -> std::collections::BTreeSet<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|v| {
            v["_aws"]["CloudWatchMetrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|d| d["Namespace"] == enroll_core::metrics::NAMESPACE)
        .flat_map(|d| d["Metrics"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m["Name"].as_str().map(str::to_owned))
        .collect()
}

/// Starts `binary` against a fresh fake Runtime API serving `events`, waits until every event
/// is answered, then reads the process's peak RSS.
async fn run_function(
    binary: &Path,
    env: &[(String, String)],
    events: Vec<Value>,
) -> anyhow::Result<FunctionRun> {
    let expected = events.len();
    let inv = Arc::new(Invocations {
        events: Mutex::new(events.into()),
        first_poll: Mutex::new(None),
        answered: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        init_error: Mutex::new(None),
        changed: tokio::sync::Notify::new(),
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(answered),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(failed))
        .route("/2018-06-01/runtime/init/error", post(init_failed))
        .with_state(inv.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let log_path = std::env::temp_dir().join(format!(
        "enroll-bench-{}-{}.log",
        binary
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("function"),
        addr.port()
    ));
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env(
            "AWS_LAMBDA_FUNCTION_NAME",
            binary.file_name().unwrap_or_default(),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().context("the function exited at once")?;
    let until = tokio::time::Instant::now() + Duration::from_secs(120);
    let outcome = loop {
        let notified = inv.changed.notified();
        if let Some(e) = inv
            .init_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            break Err(anyhow::anyhow!("{} failed to start: {e}", binary.display()));
        }
        if inv.answered.load(Ordering::SeqCst) >= expected {
            break Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(anyhow::anyhow!("{} exited with {status}", binary.display()));
        }
        if tokio::time::timeout_at(until, async {
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        })
        .await
        .is_err()
        {
            break Err(anyhow::anyhow!(
                "{} did not answer within 2 minutes",
                binary.display()
            ));
        }
    };
    let peak = peak_rss_kb(pid);
    let _ = child.kill().await;
    server.abort();
    if let Err(e) = outcome {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{e}; its log ({}) ends:\n{}",
            log_path.display(),
            tail.join("\n")
        );
    }
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let emf_metrics = emf_metric_names(&log_text);
    let parked = log_text
        .lines()
        .filter(|l| l.contains("parked in the dead-letter queue"))
        .count();
    if std::env::var_os("ENROLL_BENCH_KEEP_LOGS").is_none() {
        let _ = std::fs::remove_file(&log_path);
    }
    let ready = (*inv.first_poll.lock().unwrap_or_else(|e| e.into_inner()))
        .context("the function never asked for an event")?;
    Ok(FunctionRun {
        init_ms: ready.duration_since(started).as_secs_f64() * 1e3,
        peak_rss_mb: peak? as f64 / 1024.0,
        invocations: inv.answered.load(Ordering::SeqCst),
        errors: inv.errors.load(Ordering::SeqCst),
        emf_metrics,
        parked,
    })
}

/// VmHWM: the most resident memory the process ever had, in kB.
fn peak_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}

fn sqs_event(bodies: Vec<String>) -> Value {
    let records: Vec<Value> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            json!({
                "messageId": format!("00000000-0000-0000-0000-{i:012}"),
                "receiptHandle": format!("handle-{i}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1700000000000",
                    "SenderId": "bench",
                    "ApproximateFirstReceiveTimestamp": "1700000000000"
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn function_url_event(req: &WebhookRequest) -> Value {
    let headers: serde_json::Map<String, Value> = req
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .chain([(
            "host".to_owned(),
            Value::from("bench.lambda-url.us-east-1.on.aws"),
        )])
        .collect();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": req.path,
        "rawQueryString": req.query.clone().unwrap_or_default(),
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "bench",
            "domainName": "bench.lambda-url.us-east-1.on.aws",
            "domainPrefix": "bench",
            "http": {
                "method": req.method,
                "path": req.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "Stripe/1.0"
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000u64
        },
        "body": String::from_utf8_lossy(&req.body),
        "isBase64Encoded": false
    })
}

/// A moto server this bench started, stopped when dropped.
struct Moto {
    endpoint: String,
    _child: Option<tokio::process::Child>,
}

async fn moto() -> anyhow::Result<Moto> {
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
        if !url.is_empty() {
            return Ok(Moto {
                endpoint: url,
                _child: None,
            });
        }
    }
    let server = std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/moto_server"));
    anyhow::ensure!(
        server.exists(),
        "no AWS_ENDPOINT_URL and no {}: the functions need DynamoDB and SQS (moto)",
        server.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = tokio::process::Command::new(&server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", server.display()))?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{endpoint}/moto-api/")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        anyhow::ensure!(
            Instant::now() < until,
            "moto did not answer within a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Moto {
        endpoint,
        _child: Some(child),
    })
}

async fn functions_bench(opts: &BenchOptions) -> anyhow::Result<Report> {
    let dir = bin_dir(opts);
    let mut report = Report::new();
    let present: Vec<&str> = FUNCTIONS
        .into_iter()
        .filter(|f| dir.join(f).is_file())
        .collect();
    for f in FUNCTIONS.iter().filter(|f| !present.contains(f)) {
        report.insert(format!("functions.{f}.init_ms"), Value::Null);
        report.insert(format!("functions.{f}.peak_rss_mb"), Value::Null);
        report.insert(
            format!("functions.{f}.skipped"),
            json!(format!(
                "no {} (cargo build --release -p {f})",
                dir.join(f).display()
            )),
        );
    }
    if present.is_empty() {
        return Ok(report);
    }
    let moto = moto().await?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "bench", "bench", None, None, "bench",
        ))
        .endpoint_url(&moto.endpoint)
        .load()
        .await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let table = format!("enroll-bench-{suffix}");
    enroll_aws::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .map_err(|e| anyhow::anyhow!("creating the bench table: {e}"))?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = |name: &'static str| {
        let sqs = sqs.clone();
        let suffix = suffix.clone();
        async move {
            sqs.create_queue()
                .queue_name(format!("enroll-bench-{name}-{suffix}"))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("creating a bench queue: {e}"))?
                .queue_url
                .context("CreateQueue returned no URL")
        }
    };
    let provision_queue = queue("provision").await?;
    let provision_dlq = queue("provision-dlq").await?;
    let align_queue = queue("align").await?;
    let align_dlq = queue("align-dlq").await?;

    // No rate limit here: this part measures the functions, not the budget.
    let seed_cfg = config(opts.rate, None, PROVISION_PRODUCTS)?;
    let sim = simulator(&seed_cfg, None).await?;
    let cfg_text = config_text(
        opts.rate,
        &sim.scim_base_url(),
        &sim.notion_base_url(),
        PROVISION_PRODUCTS,
    );
    let base_env: Vec<(String, String)> = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "bench".into()),
        ("AWS_SECRET_ACCESS_KEY", "bench".into()),
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("RUST_LOG", "warn".into()),
        ("ENROLL_CONFIG", cfg_text),
        ("ENROLL_SCIM_TOKEN", SCIM_TOKEN.into()),
        ("ENROLL_NOTION_TOKEN", NOTION_TOKEN.into()),
        ("ENROLL_TABLE", table.clone()),
        ("ENROLL_PROVISION_QUEUE_URL", provision_queue),
        ("ENROLL_PROVISION_DLQ_URL", provision_dlq),
        ("ENROLL_ALIGN_QUEUE_URL", align_queue),
        ("ENROLL_ALIGN_DLQ_URL", align_dlq),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    let now = Utc::now();
    for name in present {
        let events: Vec<Value> = match name {
            "ingest" => (0..BATCH)
                .map(|i| {
                    function_url_event(&webhook(enroll_platforms::sample(
                        Platform::Stripe,
                        &stripe_purchase(900_000 + i, "course"),
                        STRIPE_SECRET,
                        now,
                    )))
                })
                .collect(),
            "provision" => vec![sqs_event(
                (0..BATCH)
                    .map(|i| serde_json::to_string(&purchase_event(900_000 + i, "course")))
                    .collect::<Result<_, _>>()?,
            )],
            "align" => vec![sqs_event(
                (0..BATCH)
                    .map(|i| {
                        let e = purchase_event(900_000 + i, "course");
                        let buyer = e.buyer.clone().context("bench purchases name a buyer")?;
                        Ok(serde_json::to_string(&AlignRequest {
                            source: e.key,
                            order: e.order,
                            email: buyer.email,
                            name: buyer.name,
                            notion_user_id: NotionUserId::parse(&uuid::Uuid::new_v4().to_string())?,
                            products: Vec::new(),
                        })?)
                    })
                    .collect::<anyhow::Result<_>>()?,
            )],
            _ => vec![json!({
                "version": "0", "id": uuid::Uuid::new_v4().to_string(),
                "detail-type": "Scheduled Event", "source": "aws.events",
                "account": "123456789012", "time": now.to_rfc3339(), "region": "us-east-1",
                "resources": [], "detail": {}
            })],
        };
        let run = run_function(&dir.join(name), &base_env, events).await?;
        report.insert(
            format!("functions.{name}.init_ms"),
            json!(round(run.init_ms, 1)),
        );
        report.insert(
            format!("functions.{name}.peak_rss_mb"),
            json!(round(run.peak_rss_mb, 1)),
        );
        report.insert(
            format!("functions.{name}.invocations"),
            json!(run.invocations),
        );
        report.insert(
            format!("functions.{name}.failed"),
            json!(run.errors + run.parked),
        );
        // The release binary's own stdout: what CloudWatch would turn into metrics.
        report.insert(
            format!("functions.{name}.emf_metrics"),
            json!(run
                .emf_metrics
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(",")),
        );
    }
    Ok(report)
}

/// The report as a table, grouped by part.
pub fn print(report: &Report) {
    let mut part = "";
    for (k, v) in report {
        let (p, rest) = k.split_once('.').unwrap_or((k, ""));
        if p != part {
            println!("{p}");
            part = p;
        }
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("  {rest:<40} {v}");
    }
}
