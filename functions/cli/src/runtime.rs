//! The whole pipeline in one process, on the embedded default.
//!
//! The store and the four queues (provision, align, and their dead-letter queues) are journals
//! in the data directory, so a restart, or a hard kill, loses nothing acknowledged. Workers call
//! the same batch functions the Lambda functions call. With no SCIM or Notion token configured,
//! an in-process simulator stands in for Notion and its state is kept in the data directory too.

use align::Aligner;
use anyhow::Context;
use chrono::{DateTime, Utc};
use enroll_core::batch::{BatchReport, Incoming};
use enroll_core::config::{Config, Secret};
use enroll_embedded::journal::Journal;
use enroll_embedded::queue::{EmbeddedQueue, Message, QueueDeadLetters, QueueSettings};
use enroll_embedded::store::FileStore;
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
    pub queues: QueueSettings,
    /// Forces the simulator even when tokens are configured.
    pub simulate: bool,
}

pub struct Runtime {
    pub config: Arc<Config>,
    pub store: FileStore,
    pub provision_queue: Arc<EmbeddedQueue>,
    pub align_queue: Arc<EmbeddedQueue>,
    pub ingest: Arc<Ingest>,
    pub provisioner: Arc<Provisioner>,
    pub aligner: Arc<Aligner>,
    pub simulator: Option<SimHandle>,
    data_dir: Option<PathBuf>,
}

/// The simulator runs when the configuration names no real workspace.
pub fn needs_simulator(config: &Config) -> bool {
    config.scim.token.is_empty() || config.notion.token.is_empty()
}

impl Runtime {
    pub async fn start(opts: Options) -> anyhow::Result<Arc<Self>> {
        let mut config = opts.config;
        let data_dir = opts.data_dir;
        if let Some(dir) = &data_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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
                    rate_limit: None,
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
            opts.queues,
            Some(provision_dlq),
        );
        let align_queue = EmbeddedQueue::new("align", journal, opts.queues, Some(align_dlq));

        // One budget per token: SCIM and the public API use different tokens.
        let scim_budget = enroll_notion::rate::from_config(&config.rate);
        let notion_budget = enroll_notion::rate::from_config(&config.rate);
        let directory =
            ScimClient::new(&config.scim, scim_budget).map_err(|f| anyhow::anyhow!(f.reason))?;
        let sales = SalesClient::new(&config.notion, notion_budget)
            .map_err(|f| anyhow::anyhow!(f.reason))?;
        let store_arc = Arc::new(store.clone());
        let provisioner = Provisioner::new(
            config.clone(),
            store_arc.clone(),
            store_arc,
            Arc::new(directory),
            align_queue.clone(),
        );
        Ok(Arc::new(Self {
            ingest: Arc::new(Ingest::new(config.clone(), provision_queue.clone())),
            provisioner: Arc::new(provisioner),
            aligner: Arc::new(Aligner::new(Arc::new(sales))),
            config,
            store,
            provision_queue,
            align_queue,
            simulator,
            data_dir,
        }))
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

    /// Receives and handles one batch from the provision queue; false when the queue was empty.
    pub async fn provision_once(&self, wait: Duration) -> anyhow::Result<bool> {
        // The deadline a Lambda invocation would have: a claim left by a kill is taken over
        // after it.
        self.provision_once_claiming(wait, Duration::from_secs(60))
            .await
    }

    /// [`Runtime::provision_once`] with the time an event's claim is held: a worker that is
    /// killed leaves its claims to be taken over after `claim_for`, so a short claim (no longer
    /// than the visibility timeout) lets the restarted worker resume at once.
    pub async fn provision_once_claiming(
        &self,
        wait: Duration,
        claim_for: Duration,
    ) -> anyhow::Result<bool> {
        let dead = QueueDeadLetters {
            dlq: self.provision_dlq().clone(),
            source: "provision".into(),
        };
        let queue = &self.provision_queue;
        let msgs = queue.receive(10, wait).await?;
        if msgs.is_empty() {
            return Ok(false);
        }
        let deadline = Utc::now()
            + chrono::TimeDelta::from_std(claim_for).unwrap_or(chrono::TimeDelta::seconds(60));
        let report =
            provision::batch::run(&self.provisioner, &dead, &incoming(&msgs), deadline).await;
        settle_batch(queue, &msgs, &report)?;
        Ok(true)
    }

    /// Receives and handles one batch from the align queue; false when the queue was empty.
    pub async fn align_once(&self, wait: Duration) -> anyhow::Result<bool> {
        let dead = QueueDeadLetters {
            dlq: self.align_dlq().clone(),
            source: "align".into(),
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

    /// Starts the provision and align workers; they stop when `stop` turns true.
    pub fn spawn_workers(self: &Arc<Self>, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let provision = {
            let rt = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                while !*stop.borrow() {
                    if let Err(e) = rt.provision_once(Duration::from_millis(200)).await {
                        tracing::error!(error = %e, "provision worker");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            })
        };
        let align = {
            let rt = self.clone();
            tokio::spawn(async move {
                while !*stop.borrow() {
                    if let Err(e) = rt.align_once(Duration::from_millis(200)).await {
                        tracing::error!(error = %e, "align worker");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            })
        };
        vec![provision, align]
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
        })
        .collect()
}

/// Deletes what succeeded or was parked; brings failures back after their `Retry-After` (or a
/// second), as SQS would after the visibility timeout.
fn settle_batch(
    queue: &EmbeddedQueue,
    msgs: &[Message],
    report: &BatchReport,
) -> anyhow::Result<()> {
    let retry = report.retry_after.unwrap_or(Duration::from_secs(1));
    for m in msgs {
        if report.failed.contains(&m.id) {
            queue.change_visibility(&m.id, retry)?;
        } else {
            queue.delete(&m.id)?;
        }
    }
    Ok(())
}
