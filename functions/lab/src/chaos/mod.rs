//! `enroll chaos`: evidence that no purchase is lost or applied twice when Notion fails,
//! platforms deliver twice or out of order, and the worker dies mid-batch.
//!
//! The driver (this process) starts the Notion simulator, signs every webhook of a seeded plan
//! (purchases across products and platforms, refunds before and after their purchases,
//! duplicate deliveries) and posts it to the local endpoint, which queues it in a data
//! directory. It then runs `enroll dev` itself as a child process, with the shipped timings
//! (claim, visibility, receive limit, backoff: [`enroll_core::timings::SHIPPED`]) and the
//! shipped worker count, exactly as a seller runs it; makes the simulator fault a share of
//! requests; and kills the child with SIGKILL in the middle of batches, restarting it on the
//! same data directory each time. The embedded journals have one writer, so while a child runs
//! the driver only reads the data directory. Once the queues drain it checks the outcome, stops
//! the faults, replays the dead-letter queues, runs `enroll dev` again and checks once more.
//!
//! With `tenants` above 1 the same run serves several sellers from one `enroll dev --tenants`
//! child: see [`tenants`].
//!
//! By job: `scenario` (the seeded plan), `faults` (what the simulator injects), `deliver` (the
//! signed webhooks posted), `workers` (the `enroll dev` children and their kills), `verdict`
//! (what the data directory and the simulator say), `report` (the outcome and its summary),
//! `tenants` (the run with several sellers).

mod deliver;
mod faults;
mod report;
mod scenario;
mod tenants;
mod verdict;
mod workers;

pub use faults::fault_rules;
pub use report::{print, ChaosReport, TenantReport};
pub use scenario::{plan, plan_for, Delivery, Plan};

use anyhow::Context;
use chrono::Utc;
use enroll_core::config::{Config, Secret};
use enroll_core::dead_letters::{self, ReplayRequest};
use enroll_embedded::dead_letters::EmbeddedDeadLetters;
use enroll_embedded::journal::Journal;
use enroll_embedded::store::FileStore;
use enroll_simulator::{Faults, SimConfig, SimHandle};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The queue names the runtime's journal holds.
const PROVISION: &str = "provision";
const ALIGN: &str = "align";
const PROVISION_DLQ: &str = "provision-dlq";
const ALIGN_DLQ: &str = "align-dlq";

/// What `enroll chaos` runs.
pub struct ChaosOptions {
    pub config: Config,
    /// Distinct webhook events: purchases and refunds.
    pub events: usize,
    /// Share of SCIM and Notion requests the simulator faults.
    pub fault_rate: f64,
    /// Extra deliveries of events already sent, as a share of `events`.
    pub duplicates: f64,
    /// Refunds delivered before their purchase, as a share of `events`; as many refunds again
    /// arrive after their purchase.
    pub early_refunds: f64,
    /// Hard kills of the worker process while batches are in flight.
    pub kills: usize,
    pub seed: u64,
    /// The `enroll` executable the worker child runs.
    pub enroll: PathBuf,
    /// Kept after the run when given; a temporary directory, removed afterwards, otherwise.
    pub data_dir: Option<PathBuf>,
    /// The longest each worker phase may take to drain the queues.
    pub timeout: Duration,
    /// Sellers served by one `enroll dev --tenants` child, each with `events` events of its
    /// own; 1 is the single seller of `enroll dev --config`.
    pub tenants: usize,
}

/// The data directory; a temporary one is removed when dropped.
struct DataDir {
    path: PathBuf,
    remove: bool,
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The queue journal, read without taking it over (a running worker is its one writer).
fn read_queues(dir: &Path) -> anyhow::Result<Journal> {
    Journal::open_read_only(&dir.join("queues.log")).context("reading the queue journal")
}

/// The store, read without taking it over.
fn read_store(dir: &Path) -> anyhow::Result<FileStore> {
    FileStore::open_read_only(&dir.join("store.log")).context("reading the store")
}

/// Moves every parked message back to its source queue, as `enroll dlq replay` does on a data
/// directory. Only while no worker runs: the journal has one writer.
async fn replay_dead_letters(dir: &Path) -> anyhow::Result<usize> {
    let journal = Arc::new(Mutex::new(
        Journal::open(&dir.join("queues.log")).context("opening the queues to replay")?,
    ));
    let admins = EmbeddedDeadLetters::on_journal(&journal);
    let req = ReplayRequest::default();
    let reports = dead_letters::replay_all(&admins, &req, None, None, Utc::now())
        .await
        .map_err(|f| anyhow::anyhow!(f.reason))?;
    Ok(reports.iter().map(|r| r.moved_count).sum())
}

/// The data directory of the run: the one given (which must not hold a run), else a new
/// temporary one.
fn scratch(o: &ChaosOptions) -> anyhow::Result<DataDir> {
    match &o.data_dir {
        Some(p) => {
            anyhow::ensure!(
                !p.join("queues.log").exists() && !p.join("tenants").exists(),
                "{} already holds a run: give an empty directory",
                p.display()
            );
            std::fs::create_dir_all(p)?;
            Ok(DataDir {
                path: p.clone(),
                remove: false,
            })
        }
        None => {
            let p = std::env::temp_dir().join(format!("enroll-chaos-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p)?;
            Ok(DataDir {
                path: p,
                remove: true,
            })
        }
    }
}

/// A simulated Notion workspace and the configuration pointed at it.
struct Workspace {
    sim: SimHandle,
    /// `config` with the simulator's addresses and tokens, short client timeouts and a high
    /// budget.
    config: Config,
    scim_token: String,
    notion_token: String,
}

async fn workspace(config: &Config) -> anyhow::Result<Workspace> {
    let scim_token = format!("chaos-scim-{}", uuid::Uuid::new_v4().simple());
    let notion_token = format!("chaos-notion-{}", uuid::Uuid::new_v4().simple());
    let sim = enroll_simulator::start(
        SimConfig {
            scim_token: scim_token.clone(),
            notion_token: notion_token.clone(),
            scim_rate_limit: None,
            notion_rate_limit: None,
            admin_token: None,
            max_members_per_patch: None,
            state: enroll_embedded::seed::from_config(config),
        },
        "127.0.0.1:0".parse()?,
    )
    .await
    .context("starting the Notion simulator")?;

    let mut config = config.clone();
    config.scim.base_url = sim.scim_base_url();
    config.scim.token = Secret::new(scim_token.clone());
    config.notion.base_url = sim.notion_base_url();
    config.notion.token = Secret::new(notion_token.clone());
    // A short client timeout makes the simulator's slow answers real timeouts; the budget
    // is raised so the run measures faults, not the 3 requests/second of production.
    config.scim.timeout_secs = 1;
    config.notion.timeout_secs = 1;
    config.rate = enroll_core::config::RateConfig::uniform(500.0, 100);
    Ok(Workspace {
        sim,
        config,
        scim_token,
        notion_token,
    })
}

/// Makes the simulator slow and faulty as the run wants it. Notion answers in about 120 ms
/// (the bench's default too): batches are in flight as long as on the real service, so a
/// kill lands mid-batch however many workers `enroll dev` sizes for the budget.
fn unleash(sim: &SimHandle, fault_rate: f64, seed: u64) {
    sim.set_latency(Some(Duration::from_millis(120)));
    sim.set_faults(fault_rules(fault_rate, seed, Duration::from_secs(1)));
}

/// Keeps the simulated workspace next to the store and queues of a kept data directory, so a
/// failed run can be examined.
fn keep_workspace(
    sim: &SimHandle,
    dir: &Path,
    mismatched: &BTreeSet<String>,
) -> anyhow::Result<()> {
    std::fs::write(
        enroll_embedded::runtime::sim_state_path(dir),
        serde_json::to_vec_pretty(&sim.state())?,
    )?;
    for email in mismatched {
        tracing::warn!(buyer = %enroll_core::redact::mask_email(email), "Groups differ from the ledger");
    }
    Ok(())
}

/// What one data directory's run came to: its plan, the deliveries accepted and the verdicts
/// before and after the replay.
struct Tally<'a> {
    plan: &'a Plan,
    keys: &'a BTreeMap<String, usize>,
    refused: usize,
    before: &'a verdict::Verdict,
    after: &'a verdict::Verdict,
    /// The requests its workspace answered before the replay.
    requests: u64,
}

/// The report of one data directory; `first` and `second` are the worker phases before and
/// after the replay.
fn figures(
    o: &ChaosOptions,
    t: &Tally,
    first: &workers::Phase,
    second: &workers::Phase,
    started: Instant,
) -> ChaosReport {
    let (plan, before, after) = (t.plan, t.before, t.after);
    ChaosReport {
        events: o.events,
        buyers: plan.expected.len(),
        mismatched_buyers: after.mismatched.len(),
        duplicate_creates: after.duplicate_creates,
        lost: after.lost + (o.events.saturating_sub(t.keys.len())),
        dlq_before_replay: before.parked,
        applied_after_replay: after.applied,
        seed: o.seed,
        fault_rate: o.fault_rate,
        deliveries: plan.deliveries.len(),
        duplicate_deliveries: plan.duplicates,
        early_refunds: plan.early_refunds,
        late_refunds: plan.late_refunds,
        refused_deliveries: t.refused,
        kills: first.kills,
        kills_mid_batch: first.kills_mid_batch,
        unexpected_exits: first.unexpected_exits + second.unexpected_exits,
        requests: t.requests,
        lost_before_replay: before.lost,
        applied_before_replay: before.applied,
        parked_without_reason: before.parked_without_reason,
        mismatched_before_replay: before.mismatched.difference(&before.buyers_parked).count(),
        ledger_disagreements: after.ledger_disagreements,
        unaligned_buyers: after.unaligned,
        duplicate_records: after.duplicate_records,
        parked_by_crash: before.parked_by_crash + after.parked_by_crash,
        drained: first.drained && second.drained,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        tenants: Vec::new(),
    }
}

/// Runs the whole scenario.
pub async fn run(o: ChaosOptions) -> anyhow::Result<ChaosReport> {
    anyhow::ensure!(o.tenants >= 1, "--tenants must be at least 1");
    if o.tenants > 1 {
        return tenants::run(o).await;
    }
    let started = Instant::now();
    let dir = scratch(&o)?;
    let Workspace {
        sim,
        config,
        scim_token,
        notion_token,
    } = workspace(&o.config).await?;

    let plan = plan(&config, o.events, o.duplicates, o.early_refunds, o.seed)?;
    let (keys, refused) = deliver::ingest(&config, &dir.path, &plan).await?;
    // Secrets serialise as placeholders: the worker takes its tokens from the environment.
    std::fs::write(
        dir.path.join("worker.toml"),
        toml::to_string(&config).context("writing the worker configuration")?,
    )?;
    let tokens = [
        ("ENROLL_SCIM_TOKEN", scim_token.as_str()),
        ("ENROLL_NOTION_TOKEN", notion_token.as_str()),
    ];
    let arg = |s: &str| OsString::from(s);
    let w = workers::Workers {
        enroll: &o.enroll,
        args: vec![
            arg("--config"),
            dir.path.join("worker.toml").into(),
            arg("--data-dir"),
            dir.path.clone().into(),
            arg("--port"),
            arg("0"),
        ],
        tokens: &tokens,
        env_remove: Vec::new(),
        dirs: vec![dir.path.clone()],
        sims: vec![&sim],
    };

    unleash(&sim, o.fault_rate, o.seed);
    let first = workers::run(&w, None, o.kills, o.timeout).await?;
    let before = verdict::verdict(&sim, &dir.path, &config, &plan, &keys)?;
    let requests = workers::total_requests(&sim);

    // The operator's part: the cause is gone (faults stop), the dead-letter queues replay.
    sim.set_faults(Faults::default());
    replay_dead_letters(&dir.path).await?;
    let second = workers::run(&w, None, 0, o.timeout).await?;
    let after = verdict::verdict(&sim, &dir.path, &config, &plan, &keys)?;
    let tally = Tally {
        plan: &plan,
        keys: &keys,
        refused,
        before: &before,
        after: &after,
        requests,
    };
    let report = figures(&o, &tally, &first, &second, started);
    if !dir.remove {
        keep_workspace(&sim, &dir.path, &after.mismatched)?;
    }
    sim.shutdown().await;
    Ok(report)
}
