//! The whole pipeline in one process, on the embedded default.
//!
//! The store and the four queues (provision, align, and their dead-letter queues) are journals
//! in the data directory, so a restart, or a hard kill, loses nothing acknowledged. Workers call
//! the same batch functions the Lambda functions call. With no SCIM or Notion token configured,
//! an in-process simulator stands in for Notion and its state is kept in the data directory too.
//!
//! With `[[outbound]]` endpoints configured, a notify queue (journaled like the others, with its
//! dead-letter queue) and its own worker deliver the outbound events ([`crate::outbound`]), so
//! a slow or failing endpoint never holds up provisioning.

use crate::dead_letters::EmbeddedDeadLetters;
use crate::journal::Journal;
use crate::outbound::{eligible, EmbeddedDeliveryQueue, JournalEndpoints};
use crate::queue::{EmbeddedQueue, Message, QueueDeadLetters, QueueSettings};
use crate::store::FileStore;
use align::Aligner;
use anyhow::Context;
use chrono::{DateTime, Utc};
use enroll_core::batch::{BatchReport, Incoming};
use enroll_core::clock::{Clock, SystemClock};
use enroll_core::config::{Config, Secret};
use enroll_core::dead_letters::{DeadLetterAdmin, QueueStage};
use enroll_core::timings::{StageTimings, Timings};
use enroll_notion::sales::SalesClient;
use enroll_notion::scim::ScimClient;
use enroll_simulator::{SimConfig, SimHandle, SimState};
use ingest::Ingest;
use provision::Provisioner;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const SIM_SCIM_TOKEN: &str = "simulated-scim-token";
const SIM_NOTION_TOKEN: &str = "simulated-notion-token";

/// How to start a runtime.
pub struct Options {
    pub config: Config,
    /// `None` keeps everything in memory (tests, the demo).
    pub data_dir: Option<PathBuf>,
    /// Claims, visibility, receive limits and backoff: [`Timings::default`] is what ships, the
    /// same numbers as `template.yaml`.
    pub timings: Timings,
    /// Forces the simulator even when tokens are configured.
    pub simulate: bool,
}

pub struct Runtime {
    pub config: Arc<Config>,
    pub store: FileStore,
    pub provision_queue: Arc<EmbeddedQueue>,
    pub align_queue: Arc<EmbeddedQueue>,
    /// Outbound events; empty unless `[[outbound]]` endpoints are configured.
    pub notify_queue: Arc<EmbeddedQueue>,
    /// Delivers the notify queue's events; `None` without `[[outbound]]` endpoints.
    pub notifier: Option<Arc<notify::Notifier>>,
    /// The endpoints a 410 answer disabled.
    pub outbound_endpoints: Arc<JournalEndpoints>,
    pub ingest: Arc<Ingest>,
    pub provisioner: Arc<Provisioner>,
    pub aligner: Arc<Aligner>,
    pub simulator: Option<SimHandle>,
    pub timings: Timings,
    data_dir: Option<PathBuf>,
    /// Set once by `enroll dev --tenants`: whose runtime this is (parked messages name it).
    tenant: std::sync::OnceLock<enroll_core::tenant::TenantId>,
}

/// The fewest batches each stage handles at once, as Lambda runs several instances: two, so a
/// buyer's events can meet on two workers here exactly as on two Lambda instances.
pub const WORKERS_PER_STAGE: usize = 2;

/// Requests per second one worker keeps a budget busy with: a batch of 10 events, each a
/// round trip of ~120 ms to Notion and the batch waiting for its slowest, sustains about 17
/// (measured with `enroll bench`: 4 workers kept a 100/s SCIM budget 93% busy, 6 kept it 99%).
const RPS_PER_WORKER: f64 = 17.0;

/// Workers a stage needs to keep a budget of `requests_per_second` busy at Notion's latency,
/// never fewer than [`WORKERS_PER_STAGE`]: 2 at Notion's documented 3/s, 6 at 100/s. More
/// would only wait on the budget, in arrival order. `template.yaml`'s MaximumConcurrency
/// follows the same rule (infra/DEPLOY.md).
pub fn workers_for(requests_per_second: f64) -> usize {
    let n = (requests_per_second / RPS_PER_WORKER).ceil();
    if n.is_finite() {
        (n as usize).clamp(WORKERS_PER_STAGE, 32)
    } else {
        WORKERS_PER_STAGE
    }
}

fn queue_settings(t: &StageTimings) -> QueueSettings {
    QueueSettings {
        visibility: t.visibility,
        max_receives: t.max_receives,
    }
}

/// The simulator runs when the configuration names no real workspace.
pub fn needs_simulator(config: &Config) -> bool {
    config.scim.token.is_empty() || config.notion.token.is_empty()
}

impl Runtime {
    pub async fn start(opts: Options) -> anyhow::Result<Arc<Self>> {
        Self::start_with_clock(opts, Arc::new(SystemClock)).await
    }

    /// [`Runtime::start`], with provision, align and the batch deadlines reading the time from
    /// `clock` (a test's [`enroll_core::clock::ManualClock`]); the queues' visibility timeouts
    /// still run on the wall clock.
    pub async fn start_with_clock(
        opts: Options,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<Self>> {
        // The crash guarantees rest on these relations: refuse to run without them.
        opts.timings.check()?;
        let timings = opts.timings;
        let mut config = opts.config;
        let data_dir = opts.data_dir;
        if let Some(dir) = &data_dir {
            // The store and queues hold buyers' addresses: a directory enroll makes is its
            // owner's alone. An existing one is left as the operator set it.
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        }
        let simulator = if opts.simulate || needs_simulator(&config) {
            let state = match data_dir
                .as_deref()
                .map(sim_state_path)
                .filter(|p| p.exists())
            {
                Some(p) => serde_json::from_slice(&std::fs::read(&p)?)
                    .with_context(|| format!("reading {}", p.display()))?,
                None => crate::seed::from_config(&config),
            };
            let sim = enroll_simulator::start(
                SimConfig {
                    scim_token: SIM_SCIM_TOKEN.into(),
                    notion_token: SIM_NOTION_TOKEN.into(),
                    scim_rate_limit: None,
                    notion_rate_limit: None,
                    // `/_sim/` shows every member: it takes the admin listener's token.
                    admin_token: Some(match &data_dir {
                        Some(dir) => crate::admin::admin_token(dir)?.expose().to_owned(),
                        None => uuid::Uuid::new_v4().simple().to_string(),
                    }),
                    max_members_per_patch: None,
                    state,
                },
                "127.0.0.1:0".parse()?,
            )
            .await
            .context("starting the Notion simulator")?;
            config.scim.base_url = sim.scim_base_url();
            config.scim.token = Secret::new(SIM_SCIM_TOKEN);
            config.notion.base_url = sim.notion_base_url();
            config.notion.token = Secret::new(SIM_NOTION_TOKEN);
            Some(sim)
        } else {
            None
        };
        let config = Arc::new(config);

        let (store, journal) = match &data_dir {
            Some(dir) => (
                FileStore::open(&dir.join("store.log")).context("opening the store")?,
                Journal::open(&dir.join("queues.log")).context("opening the queues")?,
            ),
            None => (FileStore::in_memory(), Journal::in_memory()),
        };
        let store = store.with_history_retention(config.history.retention_days);
        let journal = Arc::new(Mutex::new(journal));
        let dlq_settings = QueueSettings {
            visibility: Duration::from_secs(30),
            max_receives: u32::MAX,
        };
        let provision_dlq =
            EmbeddedQueue::new("provision-dlq", journal.clone(), dlq_settings, None);
        let align_dlq = EmbeddedQueue::new("align-dlq", journal.clone(), dlq_settings, None);
        let provision_queue = EmbeddedQueue::new(
            "provision",
            journal.clone(),
            queue_settings(&timings.provision),
            Some(provision_dlq),
        );
        let align_queue = EmbeddedQueue::new(
            "align",
            journal.clone(),
            queue_settings(&timings.align),
            Some(align_dlq),
        );
        let notify_dlq = EmbeddedQueue::new("notify-dlq", journal.clone(), dlq_settings, None);
        let notify_queue = EmbeddedQueue::new(
            "notify",
            journal.clone(),
            QueueSettings {
                // Longer than one attempt can take (at most 60 s by configuration).
                visibility: Duration::from_secs(120),
                // The last allowed attempt parks a failing delivery with its reason.
                max_receives: enroll_core::outbound::MAX_ATTEMPTS + 1,
            },
            Some(notify_dlq),
        );
        let outbound_endpoints = Arc::new(JournalEndpoints(journal));
        if data_dir.is_some() {
            // This process is the journal's one writer: whatever is still in flight was held
            // by a process that is gone (killed, say), so it comes back now, uncounted. Its
            // claims still run out on their own; the messages wait for them (deferral).
            let back = provision_queue.recover_in_flight()?
                + align_queue.recover_in_flight()?
                + notify_queue.recover_in_flight()?;
            if back > 0 {
                tracing::info!(
                    messages = back,
                    "messages a stopped process held are back in their queues"
                );
            }
        }

        // One budget per token, each at its own limit: SCIM and the public API use different
        // tokens ([rate.scim], [rate.api]).
        let scim_budget = enroll_notion::rate::from_config(config.rate.scim());
        let notion_budget = enroll_notion::rate::from_config(config.rate.api());
        let directory =
            ScimClient::new(&config.scim, scim_budget).map_err(|f| anyhow::anyhow!(f.reason))?;
        let sales = SalesClient::new(&config.notion, notion_budget)
            .map_err(|f| anyhow::anyhow!(f.reason))?;
        let store_arc = Arc::new(store.clone());
        let mut provisioner = Provisioner::new(
            config.clone(),
            store_arc.clone(),
            store_arc.clone(),
            Arc::new(directory),
            align_queue.clone(),
        )
        .with_history(store_arc.clone())
        .with_clock(clock.clone());
        provisioner.timings = timings.provision;
        let notifier = if config.outbound.is_empty() {
            None
        } else {
            provisioner =
                provisioner.with_outbound(Arc::new(EmbeddedDeliveryQueue(notify_queue.clone())));
            let n = notify::Notifier::new(config.clone(), outbound_endpoints.clone())
                .map_err(|f| anyhow::anyhow!(f.reason))?
                .with_history(store_arc.clone())
                .with_clock(clock.clone());
            Some(Arc::new(n))
        };
        let mut aligner = Aligner::new(Arc::new(sales), store_arc.clone())
            .with_history(store_arc)
            .with_clock(clock);
        aligner.timings = timings.align;
        Ok(Arc::new(Self {
            ingest: Arc::new(Ingest::new(config.clone(), provision_queue.clone())),
            provisioner: Arc::new(provisioner),
            aligner: Arc::new(aligner),
            timings,
            config,
            store,
            provision_queue,
            align_queue,
            notify_queue,
            notifier,
            outbound_endpoints,
            simulator,
            data_dir,
            tenant: std::sync::OnceLock::new(),
        }))
    }

    /// Marks this runtime as `tenant`'s (once; a later call changes nothing).
    pub fn set_tenant(&self, tenant: enroll_core::tenant::TenantId) {
        let _ = self.tenant.set(tenant);
    }

    /// Both stages' dead-letter queues, for the operator.
    pub fn dead_letters(&self) -> Vec<Arc<dyn DeadLetterAdmin>> {
        [
            (QueueStage::Provision, &self.provision_queue),
            (QueueStage::Align, &self.align_queue),
            (QueueStage::Notify, &self.notify_queue),
        ]
        .into_iter()
        .map(|(stage, source)| {
            let dlq = source
                .dead_letter_queue()
                .expect("a stage queue has a DLQ")
                .clone();
            Arc::new(EmbeddedDeadLetters::new(stage, source.clone(), dlq))
                as Arc<dyn DeadLetterAdmin>
        })
        .collect()
    }

    pub fn provision_dlq(&self) -> &Arc<EmbeddedQueue> {
        self.provision_queue
            .dead_letter_queue()
            .expect("provision has a DLQ")
    }

    pub fn align_dlq(&self) -> &Arc<EmbeddedQueue> {
        self.align_queue
            .dead_letter_queue()
            .expect("align has a DLQ")
    }

    pub fn notify_dlq(&self) -> &Arc<EmbeddedQueue> {
        self.notify_queue
            .dead_letter_queue()
            .expect("notify has a DLQ")
    }

    /// Delivers one batch from the notify queue (each group's oldest delivery only); false
    /// when nothing was due or no endpoint is configured.
    pub async fn notify_once(&self, wait: Duration) -> anyhow::Result<bool> {
        let Some(notifier) = &self.notifier else {
            return Ok(false);
        };
        let dead = QueueDeadLetters {
            dlq: self.notify_dlq().clone(),
            source: "notify".into(),
            tenant: self.tenant.get().map(|t| t.as_str().to_owned()),
        };
        let queue = &self.notify_queue;
        let received = queue.receive(10, wait).await?;
        if received.is_empty() {
            return Ok(false);
        }
        let msgs = eligible(queue, received)?;
        let report = notifier.run_batch(&dead, &incoming(&msgs)).await;
        settle_batch(queue, &msgs, &report)?;
        Ok(true)
    }

    /// Receives and handles one batch from the provision queue; false when the queue was empty.
    pub async fn provision_once(&self, wait: Duration) -> anyhow::Result<bool> {
        let dead = QueueDeadLetters {
            dlq: self.provision_dlq().clone(),
            source: "provision".into(),
            tenant: self.tenant.get().map(|t| t.as_str().to_owned()),
        };
        let queue = &self.provision_queue;
        let msgs = queue.receive(10, wait).await?;
        if msgs.is_empty() {
            return Ok(false);
        }
        // The deadline a Lambda invocation would have: a claim left by a kill is taken over
        // after it, and messages that find it held wait for exactly that moment.
        let claim = chrono::TimeDelta::from_std(self.timings.provision.claim)
            .unwrap_or(chrono::TimeDelta::seconds(60));
        let report = provision::batch::run(
            &self.provisioner,
            &dead,
            &incoming(&msgs),
            self.provisioner.clock.now() + claim,
        )
        .await;
        settle_batch(queue, &msgs, &report)?;
        Ok(true)
    }

    /// Receives and handles one batch from the align queue; false when the queue was empty.
    pub async fn align_once(&self, wait: Duration) -> anyhow::Result<bool> {
        let dead = QueueDeadLetters {
            dlq: self.align_dlq().clone(),
            source: "align".into(),
            tenant: self.tenant.get().map(|t| t.as_str().to_owned()),
        };
        let queue = &self.align_queue;
        let msgs = queue.receive(10, wait).await?;
        if msgs.is_empty() {
            return Ok(false);
        }
        let report = self.aligner.run_batch(&dead, &incoming(&msgs)).await;
        settle_batch(queue, &msgs, &report)?;
        Ok(true)
    }

    /// Starts provision and align workers, as many as each stage's budget needs
    /// ([`workers_for`]); they stop when `stop` turns true.
    pub fn spawn_workers(self: &Arc<Self>, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut workers = Vec::new();
        for _ in 0..workers_for(self.config.rate.scim().requests_per_second) {
            let rt = self.clone();
            let stop_p = stop.clone();
            workers.push(tokio::spawn(async move {
                while !*stop_p.borrow() {
                    if let Err(e) = rt.provision_once(Duration::from_millis(200)).await {
                        tracing::error!(error = %e, "provision worker");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }));
        }
        if self.notifier.is_some() {
            // One worker: groups in a batch go at once, and a slow endpoint holds up only
            // this worker, never provision or align.
            let rt = self.clone();
            let stop_n = stop.clone();
            workers.push(tokio::spawn(async move {
                while !*stop_n.borrow() {
                    if let Err(e) = rt.notify_once(Duration::from_millis(200)).await {
                        tracing::error!(error = %e, "notify worker");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }));
        }
        for _ in 0..workers_for(self.config.rate.api().requests_per_second) {
            let rt = self.clone();
            let stop_a = stop.clone();
            workers.push(tokio::spawn(async move {
                while !*stop_a.borrow() {
                    if let Err(e) = rt.align_once(Duration::from_millis(200)).await {
                        tracing::error!(error = %e, "align worker");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }));
        }
        workers
    }

    /// Drives provision and align by hand, without workers, until both queues are empty; an
    /// error if they are not after 400 rounds. For tests that step the pipeline themselves.
    pub async fn run_until_idle(&self) -> anyhow::Result<()> {
        for _ in 0..400 {
            let p = self.provision_once(Duration::from_millis(20)).await?;
            let a = self.align_once(Duration::from_millis(20)).await?;
            if !p && !a && self.provision_queue.is_empty() && self.align_queue.is_empty() {
                return Ok(());
            }
        }
        anyhow::bail!("the queues did not drain")
    }

    /// Waits until both queues are empty (nothing waiting, nothing in flight), up to `timeout`.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            if self.provision_queue.is_empty() && self.align_queue.is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Runs the expiry pass once, as the scheduled `expire` function does on AWS.
    pub async fn expire(&self, now: DateTime<Utc>) -> anyhow::Result<provision::ExpiryReport> {
        self.provisioner
            .expire_due(now)
            .await
            .map_err(|f| anyhow::anyhow!(f.to_string()))
    }

    /// Writes the simulator's state into the data directory, so `enroll dev` resumes with the
    /// same simulated workspace.
    pub fn save_simulator(&self) -> anyhow::Result<()> {
        if let (Some(sim), Some(dir)) = (&self.simulator, &self.data_dir) {
            let path = sim_state_path(dir);
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&sim.state())?)?;
            std::fs::rename(tmp, path)?;
        }
        Ok(())
    }

    pub fn simulator_state(&self) -> Option<SimState> {
        self.simulator.as_ref().map(SimHandle::state)
    }
}

pub fn sim_state_path(dir: &Path) -> PathBuf {
    dir.join("simulator.json")
}

fn incoming(msgs: &[Message]) -> Vec<Incoming> {
    msgs.iter()
        .map(|m| Incoming {
            id: m.id.clone(),
            body: m.body.clone(),
            receive_count: m.receive_count,
        })
        .collect()
}

/// Deletes what succeeded or was parked; brings transient failures back after the stage's
/// backoff (or the server's `Retry-After`), as the Lambda functions do with
/// ChangeMessageVisibility; brings deferred messages back when the claim they wait for runs
/// out, without counting the receive.
fn settle_batch(
    queue: &EmbeddedQueue,
    msgs: &[Message],
    report: &BatchReport,
) -> anyhow::Result<()> {
    for m in msgs {
        if let Some(d) = report.deferred.iter().find(|d| d.id == m.id) {
            queue.defer(&m.id, d.delay)?;
        } else if let Some(r) = report.retries.iter().find(|r| r.id == m.id) {
            queue.change_visibility(&m.id, r.delay)?;
        } else {
            queue.delete(&m.id)?;
        }
    }
    Ok(())
}
