//! What backfill and audit act on: the configuration, the ledger (through its ports) and the
//! workspace's SCIM API. Whoever runs the command builds it: the CLI from a data directory or a
//! stack, the bench and the tests from parts of their own.

use enroll_core::config::Config;
use enroll_core::ledger::{BuyerRecord, OrderRecord};
use enroll_core::ports::{HistoryLog, LedgerScan, LedgerStore};
use enroll_notion::ScimClient;
use std::sync::Arc;

/// The entitlement ledger as the operator tools reach it, embedded or on DynamoDB alike.
#[derive(Clone)]
pub struct Ledger {
    pub store: Arc<dyn LedgerStore>,
    pub scan: Arc<dyn LedgerScan>,
    /// Buyers' histories, kept beside the ledger for the configured retention.
    pub history: Arc<dyn HistoryLog>,
}

impl Ledger {
    /// A store that both keeps and scans the ledger (both adapters do), with the history log
    /// kept beside it.
    pub fn new<S>(store: S, history: Arc<dyn HistoryLog>) -> Self
    where
        S: LedgerStore + LedgerScan + 'static,
    {
        let store = Arc::new(store);
        Self {
            store: store.clone(),
            scan: store,
            history,
        }
    }

    pub async fn buyers(&self) -> anyhow::Result<Vec<BuyerRecord>> {
        self.scan
            .all_buyers()
            .await
            .map_err(|f| anyhow::anyhow!(f.reason))
    }

    pub async fn orders(&self) -> anyhow::Result<Vec<OrderRecord>> {
        self.scan
            .all_orders()
            .await
            .map_err(|f| anyhow::anyhow!(f.reason))
    }
}

/// Run when a command is done with a workspace (the embedded default saves its simulated
/// workspace then).
type Finish = Box<dyn Fn() -> anyhow::Result<()> + Send + Sync>;

/// The ledger, the workspace's SCIM API and the configuration, for backfill and audit.
pub struct Workspace {
    pub config: Arc<Config>,
    pub ledger: Ledger,
    pub scim: Arc<ScimClient>,
    finish: Option<Finish>,
}

impl Workspace {
    pub fn new(config: Config, ledger: Ledger, scim: ScimClient) -> Self {
        Self {
            config: Arc::new(config),
            ledger,
            scim: Arc::new(scim),
            finish: None,
        }
    }

    /// What [`Workspace::finish`] runs.
    pub fn on_finish(mut self, f: impl Fn() -> anyhow::Result<()> + Send + Sync + 'static) -> Self {
        self.finish = Some(Box::new(f));
        self
    }

    /// Called once the command is done (saves a simulated workspace this process ran).
    pub fn finish(&self) -> anyhow::Result<()> {
        self.finish.as_ref().map_or(Ok(()), |f| f())
    }
}
