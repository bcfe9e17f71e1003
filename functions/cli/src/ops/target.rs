//! Where the operator tools act: the embedded default (a data directory, or the `enroll dev` that
//! owns it) or a deployed stack (queue URLs and table from its CloudFormation outputs, or given
//! one by one), and the three things they act on there: a queue pair, the ledger, and the
//! Notion workspace.
//!
//! A running `enroll dev` owns its data directory: its journals are open for appending, and a
//! second writer would compact them from under it. So while it runs, `dlq list` and `dlq replay`
//! go through its admin listener, reports read the files without taking them over, and commands
//! that write the ledger (`backfill apply`, `audit --fix`) refuse and ask for it to be stopped.
//! [`running_dev`] is that rule for every command (`status`, `link` and `expire` too): it finds
//! the running `enroll dev` from the address and token in the data directory.

use crate::runtime::{self, Options, Runtime};
use anyhow::{anyhow, bail, Context};
use aws_config::SdkConfig;
use clap::{Args, ValueEnum};
use enroll_aws::{DynamoHistory, DynamoStore};
use enroll_core::config::{Config, Secret};
use enroll_core::ledger::{BuyerRecord, OrderRecord};
use enroll_core::ports::{HistoryLog, LedgerStore};
use enroll_embedded::journal::Journal;
use enroll_embedded::queue::{EmbeddedQueue, QueueSettings};
use enroll_embedded::store::FileStore;
use enroll_notion::rate::TokenBucket;
use enroll_notion::ScimClient;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Stack output names, as `template.yaml` declares them.
pub const OUT_PROVISION_QUEUE: &str = "ProvisionQueueUrl";
pub const OUT_PROVISION_DLQ: &str = "ProvisionDeadLetterQueueUrl";
pub const OUT_ALIGN_QUEUE: &str = "AlignQueueUrl";
pub const OUT_ALIGN_DLQ: &str = "AlignDeadLetterQueueUrl";
pub const OUT_TABLE: &str = "TableName";
pub const OUT_SECRET: &str = "SecretArn";

/// Which stage's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Provision,
    Align,
}

impl Stage {
    pub const ALL: [Stage; 2] = [Stage::Provision, Stage::Align];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Provision => "provision",
            Stage::Align => "align",
        }
    }

    pub fn dlq_name(self) -> &'static str {
        match self {
            Stage::Provision => "provision-dlq",
            Stage::Align => "align-dlq",
        }
    }
}

/// The flags every operator command takes to choose where it acts. Without `--stack` or any
/// AWS resource, the embedded default in `--data-dir` is used.
#[derive(Debug, Clone, Default, Args)]
pub struct TargetArgs {
    /// The configuration file (catalog, SCIM settings, rate); the built-in example when left out.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The embedded default's data directory.
    #[arg(long, default_value = ".enroll")]
    pub data_dir: PathBuf,
    /// The admin address of a running `enroll dev`, which owns the data directory while it
    /// runs; by default the one it recorded in the data directory (`dev.json`).
    #[arg(long)]
    pub url: Option<String>,
    /// A deployed stack: queue URLs, table and secret come from its outputs (standard AWS
    /// credential chain and region).
    #[arg(long, env = "ENROLL_STACK")]
    pub stack: Option<String>,
    /// The DynamoDB table, overriding the stack's.
    #[arg(long, env = "ENROLL_TABLE")]
    pub table: Option<String>,
    #[arg(long, env = "ENROLL_PROVISION_QUEUE_URL")]
    pub provision_queue_url: Option<String>,
    #[arg(long, env = "ENROLL_PROVISION_DLQ_URL")]
    pub provision_dlq_url: Option<String>,
    #[arg(long, env = "ENROLL_ALIGN_QUEUE_URL")]
    pub align_queue_url: Option<String>,
    #[arg(long, env = "ENROLL_ALIGN_DLQ_URL")]
    pub align_dlq_url: Option<String>,
    /// The Secrets Manager secret holding the SCIM token, overriding the stack's.
    #[arg(long, env = "ENROLL_SECRET_ID")]
    pub secret_id: Option<String>,
}

/// A deployed stack's resources; any may be missing when given one by one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsResources {
    pub table: Option<String>,
    pub provision_queue_url: Option<String>,
    pub provision_dlq_url: Option<String>,
    pub align_queue_url: Option<String>,
    pub align_dlq_url: Option<String>,
    pub secret_id: Option<String>,
}

impl AwsResources {
    /// Reads the resources from a stack's outputs (key to value).
    pub fn from_outputs(outputs: &HashMap<String, String>) -> Self {
        let get = |k: &str| outputs.get(k).filter(|v| !v.is_empty()).cloned();
        Self {
            table: get(OUT_TABLE),
            provision_queue_url: get(OUT_PROVISION_QUEUE),
            provision_dlq_url: get(OUT_PROVISION_DLQ),
            align_queue_url: get(OUT_ALIGN_QUEUE),
            align_dlq_url: get(OUT_ALIGN_DLQ),
            secret_id: get(OUT_SECRET),
        }
    }

    /// Explicit values win over the stack's.
    pub fn overridden_by(mut self, args: &TargetArgs) -> Self {
        let pick = |mine: &mut Option<String>, given: &Option<String>| {
            if let Some(v) = given.as_ref().filter(|v| !v.is_empty()) {
                *mine = Some(v.clone());
            }
        };
        pick(&mut self.table, &args.table);
        pick(&mut self.provision_queue_url, &args.provision_queue_url);
        pick(&mut self.provision_dlq_url, &args.provision_dlq_url);
        pick(&mut self.align_queue_url, &args.align_queue_url);
        pick(&mut self.align_dlq_url, &args.align_dlq_url);
        pick(&mut self.secret_id, &args.secret_id);
        self
    }

    fn queues(&self, stage: Stage) -> (Option<&String>, Option<&String>) {
        match stage {
            Stage::Provision => (
                self.provision_queue_url.as_ref(),
                self.provision_dlq_url.as_ref(),
            ),
            Stage::Align => (self.align_queue_url.as_ref(), self.align_dlq_url.as_ref()),
        }
    }
}

impl TargetArgs {
    fn names_aws(&self) -> bool {
        [
            &self.stack,
            &self.table,
            &self.provision_queue_url,
            &self.provision_dlq_url,
            &self.align_queue_url,
            &self.align_dlq_url,
        ]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
    }

    pub fn load_config(&self) -> anyhow::Result<Config> {
        crate::config_file::load(self.config.as_deref())
    }

    /// Decides the target; for a stack, reads its outputs once.
    pub async fn resolve(&self) -> anyhow::Result<Target> {
        if !self.names_aws() {
            let dev = running_dev(&self.data_dir, self.url.as_deref()).await?;
            return Ok(Target::Embedded(Box::new(Embedded {
                args: self.clone(),
                dev,
            })));
        }
        let sdk = enroll_aws::sdk_config().await;
        let from_stack = match &self.stack {
            Some(name) => AwsResources::from_outputs(&stack_outputs(&sdk, name).await?),
            None => AwsResources::default(),
        };
        Ok(Target::Aws(Box::new(Aws {
            res: from_stack.overridden_by(self),
            endpoint_override: sdk.endpoint_url().is_some()
                || std::env::var_os("AWS_ENDPOINT_URL_SQS").is_some(),
            sdk,
            args: self.clone(),
        })))
    }
}

/// A stack's outputs, key to value.
pub async fn stack_outputs(
    sdk: &SdkConfig,
    stack: &str,
) -> anyhow::Result<HashMap<String, String>> {
    let client = aws_sdk_cloudformation::Client::new(sdk);
    let out = client
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .with_context(|| format!("reading the outputs of stack `{stack}`"))?;
    let stack = out
        .stacks()
        .first()
        .ok_or_else(|| anyhow!("stack `{stack}` not found"))?;
    Ok(stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect())
}

/// The admin listener of a running `enroll dev`, with the token it wants.
#[derive(Clone)]
pub struct DevAdmin {
    /// E.g. `http://127.0.0.1:40123`.
    pub url: String,
    token: Secret,
    http: reqwest::Client,
}

impl DevAdmin {
    pub fn new(url: &str, token: Secret) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        }
    }

    /// A request to `path` (e.g. `/admin/status`) carrying the token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(self.token.expose())
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    /// Sends `req` and reads its JSON answer; an error carries what `enroll dev` said.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        let resp = req
            .timeout(timeout)
            .send()
            .await
            .with_context(|| format!("calling the running `enroll dev` at {}", self.url))?;
        if !resp.status().is_success() {
            bail!(
                "`enroll dev` answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(resp.json().await?)
    }
}

/// The `enroll dev` that owns `data_dir`, if one runs: every command that acts on a data
/// directory asks it when it runs and opens the directory itself otherwise.
///
/// Its address comes from `url` when given, else from the directory's `dev.json`; the token
/// from the directory's `admin.token`. A `dev.json` left by a killed process (nothing listens,
/// or something else does) counts as no `enroll dev`. One that answers but refuses the token is
/// an error, not a reason to open files it may own.
pub async fn running_dev(data_dir: &Path, url: Option<&str>) -> anyhow::Result<Option<DevAdmin>> {
    let url = match url.filter(|u| !u.is_empty()) {
        Some(u) => u.to_owned(),
        None => match crate::server::read_dev_record(data_dir) {
            Some(r) => r.admin_url,
            None => return Ok(None),
        },
    };
    let token_path = data_dir.join(crate::server::TOKEN_FILE);
    if !token_path.exists() {
        // No `enroll dev` has ever started on this directory, so none owns it.
        return Ok(None);
    }
    let dev = DevAdmin::new(&url, crate::server::read_token(&token_path)?);
    let probe = dev
        .get("/admin/healthz")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match probe {
        Ok(r) if r.status().is_success() => Ok(Some(dev)),
        Ok(r) if matches!(r.status().as_u16(), 401 | 403) => bail!(
            "an `enroll dev` answers at {url} but refuses the token in {}: is it running on another data directory (--data-dir)?",
            token_path.display()
        ),
        Ok(_) => Ok(None),
        Err(e) if e.is_timeout() => bail!(
            "the `enroll dev` at {url} does not answer; it owns {}: wait, or stop it",
            data_dir.display()
        ),
        Err(_) => Ok(None),
    }
}

/// Both boxed: a target is built once per command, and the two differ much in size.
pub enum Target {
    Embedded(Box<Embedded>),
    Aws(Box<Aws>),
}

impl Target {
    /// The running `enroll dev` that owns the embedded data directory, if any.
    pub fn dev(&self) -> Option<&DevAdmin> {
        match self {
            Target::Embedded(e) => e.dev.as_ref(),
            Target::Aws(_) => None,
        }
    }
}

pub struct Embedded {
    pub args: TargetArgs,
    /// The running `enroll dev` that owns the data directory, if any.
    pub dev: Option<DevAdmin>,
}

pub struct Aws {
    pub sdk: SdkConfig,
    pub res: AwsResources,
    /// An endpoint override (moto, LocalStack): SQS's message move task is not tried there.
    pub endpoint_override: bool,
    pub args: TargetArgs,
}

/// A stage's queue and its dead-letter queue.
pub enum QueuePair {
    Embedded {
        stage: Stage,
        source: Arc<EmbeddedQueue>,
        dlq: Arc<EmbeddedQueue>,
    },
    Sqs {
        stage: Stage,
        client: aws_sdk_sqs::Client,
        source_url: String,
        dlq_url: String,
        /// Try StartMessageMoveTask for an unfiltered replay.
        move_task: bool,
    },
}

impl QueuePair {
    pub fn stage(&self) -> Stage {
        match self {
            QueuePair::Embedded { stage, .. } | QueuePair::Sqs { stage, .. } => *stage,
        }
    }
}

impl Embedded {
    /// The data directory's queue journal, opened directly: only while no `enroll dev` owns it.
    pub fn open_queues(&self) -> anyhow::Result<Vec<QueuePair>> {
        let dir = &self.args.data_dir;
        if let Some(dev) = &self.dev {
            bail!(
                "`enroll dev` is running at {} and owns {}",
                dev.url,
                dir.display()
            );
        }
        let path = dir.join("queues.log");
        anyhow::ensure!(
            path.exists(),
            "no queues in {} (run `enroll dev` there first, or pass --data-dir)",
            dir.display()
        );
        let journal = Arc::new(Mutex::new(
            Journal::open(&path).with_context(|| format!("opening {}", path.display()))?,
        ));
        Ok(Stage::ALL
            .iter()
            .map(|&stage| {
                let (source, dlq) = embedded_pair(&journal, stage);
                QueuePair::Embedded { stage, source, dlq }
            })
            .collect())
    }

    /// Refuses while `enroll dev` runs: for commands that write the ledger.
    pub fn ensure_exclusive(&self, what: &str) -> anyhow::Result<()> {
        if let Some(dev) = &self.dev {
            bail!(
                "`enroll dev` is running at {} and owns {}: stop it (Ctrl-C) and run `{what}` again",
                dev.url,
                self.args.data_dir.display()
            );
        }
        Ok(())
    }
}

/// The two queues of a stage on a shared journal, named as the runtime names them. The
/// settings matter only for receiving, which the operator tools never do on these.
pub fn embedded_pair(
    journal: &Arc<Mutex<Journal>>,
    stage: Stage,
) -> (Arc<EmbeddedQueue>, Arc<EmbeddedQueue>) {
    let dlq = EmbeddedQueue::new(
        stage.dlq_name(),
        journal.clone(),
        QueueSettings::default(),
        None,
    );
    let source = EmbeddedQueue::new(
        stage.as_str(),
        journal.clone(),
        QueueSettings::default(),
        Some(dlq.clone()),
    );
    (source, dlq)
}

impl Aws {
    pub fn queues(&self, stages: &[Stage]) -> anyhow::Result<Vec<QueuePair>> {
        let client = aws_sdk_sqs::Client::new(&self.sdk);
        stages
            .iter()
            .map(|&stage| {
                let (source, dlq) = self.res.queues(stage);
                let missing = |what: &str| {
                    anyhow!(
                        "no {} {what} URL: pass --stack or --{}-{}-url",
                        stage.as_str(),
                        stage.as_str(),
                        if what == "queue" { "queue" } else { "dlq" }
                    )
                };
                Ok(QueuePair::Sqs {
                    stage,
                    client: client.clone(),
                    source_url: source.ok_or_else(|| missing("queue"))?.clone(),
                    dlq_url: dlq.ok_or_else(|| missing("dead-letter queue"))?.clone(),
                    move_task: !self.endpoint_override,
                })
            })
            .collect()
    }

    pub fn ledger(&self) -> anyhow::Result<Ledger> {
        let table = self
            .res
            .table
            .clone()
            .ok_or_else(|| anyhow!("no table: pass --stack or --table"))?;
        Ok(Ledger::Dynamo(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            table,
        )))
    }

    /// The configuration file with the stack's secrets (the SCIM token) and then the
    /// `ENROLL_*` environment applied.
    pub async fn config(&self) -> anyhow::Result<Config> {
        let mut cfg = self.args.load_config()?;
        if let Some(id) = &self.res.secret_id {
            let client = aws_sdk_secretsmanager::Client::new(&self.sdk);
            let doc = enroll_aws::load_secrets(&client, id)
                .await
                .map_err(|f| anyhow!("reading the stack's secret: {}", f.reason))?;
            doc.apply(&mut cfg);
        }
        cfg.apply_env(|k| std::env::var(k).ok());
        Ok(cfg)
    }
}

/// The entitlement ledger, embedded or on DynamoDB.
#[derive(Clone)]
pub enum Ledger {
    File(FileStore),
    Dynamo(DynamoStore),
}

impl Ledger {
    pub fn store(&self) -> Arc<dyn LedgerStore> {
        match self {
            Ledger::File(s) => Arc::new(s.clone()),
            Ledger::Dynamo(s) => Arc::new(s.clone()),
        }
    }

    /// Buyers' histories, kept beside the ledger for `retention_days`.
    pub fn history(&self, retention_days: u32) -> Arc<dyn HistoryLog> {
        match self {
            Ledger::File(s) => Arc::new(s.clone().with_history_retention(retention_days)),
            Ledger::Dynamo(s) => Arc::new(
                DynamoHistory::new(s.client.clone(), &s.table).with_retention(retention_days),
            ),
        }
    }

    pub async fn buyers(&self) -> anyhow::Result<Vec<BuyerRecord>> {
        match self {
            Ledger::File(s) => Ok(s.buyers()),
            Ledger::Dynamo(s) => s.all_buyers().await.map_err(|f| anyhow!(f.reason)),
        }
    }

    pub async fn orders(&self) -> anyhow::Result<Vec<OrderRecord>> {
        match self {
            Ledger::File(s) => Ok(s.all_orders()),
            Ledger::Dynamo(s) => s.all_orders().await.map_err(|f| anyhow!(f.reason)),
        }
    }
}

/// The ledger, the workspace's SCIM API and the configuration, for backfill and audit.
pub struct Workspace {
    pub config: Arc<Config>,
    pub ledger: Ledger,
    pub scim: Arc<ScimClient>,
    /// Kept to save the simulated workspace when the embedded default simulates Notion.
    runtime: Option<Arc<Runtime>>,
}

/// What `GET /admin/notion` tells about the workspace a running `enroll dev` simulates.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SimulatedScim {
    pub scim_base_url: String,
    pub scim_token: String,
}

impl Workspace {
    /// A workspace from parts already built (tests, embedding).
    pub fn new(config: Config, ledger: Ledger, scim: ScimClient) -> Self {
        Self {
            config: Arc::new(config),
            ledger,
            scim: Arc::new(scim),
            runtime: None,
        }
    }

    /// Opens the workspace of a target. `writes` says whether the command changes the ledger;
    /// `rate` (requests per second) overrides the configured budget; `batch_size` the
    /// configured members per Group PATCH.
    pub async fn open(
        target: &Target,
        writes: bool,
        rate: Option<f64>,
        batch_size: Option<usize>,
    ) -> anyhow::Result<Self> {
        let (mut config, ledger, runtime) = match target {
            Target::Aws(aws) => (aws.config().await?, aws.ledger()?, None),
            Target::Embedded(e) if e.dev.is_some() => {
                if writes {
                    e.ensure_exclusive("this command")?;
                }
                let mut config = e.args.load_config()?;
                if let (true, Some(dev)) = (runtime::needs_simulator(&config), target.dev()) {
                    let sim: SimulatedScim = dev
                        .call(dev.get("/admin/notion"), Duration::from_secs(10))
                        .await
                        .context("asking `enroll dev` for its simulated workspace")?;
                    config.scim.base_url = sim.scim_base_url;
                    config.scim.token = Secret::new(sim.scim_token);
                }
                let path = e.args.data_dir.join("store.log");
                let store = FileStore::open_read_only(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                (config, Ledger::File(store), None)
            }
            Target::Embedded(e) => {
                let rt = Runtime::start(Options {
                    config: e.args.load_config()?,
                    data_dir: Some(e.args.data_dir.clone()),
                    timings: Default::default(),
                    simulate: false,
                })
                .await?;
                let config = (*rt.config).clone();
                (config, Ledger::File(rt.store.clone()), Some(rt))
            }
        };
        if let Some(n) = batch_size {
            config.scim.batch_size = n.max(1);
        }
        anyhow::ensure!(
            !config.scim.token.is_empty(),
            "no SCIM token: set ENROLL_SCIM_TOKEN, the configuration's scim.token, or the stack's secret"
        );
        let budget = match rate {
            Some(r) => {
                anyhow::ensure!(r.is_finite() && r > 0.0, "--rate must be positive");
                Arc::new(TokenBucket::new(r, 1))
            }
            None => Arc::new(TokenBucket::from_config(&config.rate)),
        };
        let scim = ScimClient::new(&config.scim, budget).map_err(|f| anyhow!(f.reason))?;
        Ok(Self {
            config: Arc::new(config),
            ledger,
            scim: Arc::new(scim),
            runtime,
        })
    }

    /// Saves the simulated workspace, if this process ran it.
    pub fn finish(&self) -> anyhow::Result<()> {
        if let Some(rt) = &self.runtime {
            rt.save_simulator()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_outputs_map_to_resources_and_flags_override_them() {
        let outputs: HashMap<String, String> = [
            (OUT_PROVISION_QUEUE, "https://sqs/p"),
            (OUT_PROVISION_DLQ, "https://sqs/p-dlq"),
            (OUT_ALIGN_QUEUE, "https://sqs/a"),
            (OUT_ALIGN_DLQ, "https://sqs/a-dlq"),
            (OUT_TABLE, "enroll-prod"),
            (OUT_SECRET, "arn:aws:secretsmanager:x"),
            ("WebhookBaseUrl", "https://x/webhooks/"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let res = AwsResources::from_outputs(&outputs);
        assert_eq!(res.table.as_deref(), Some("enroll-prod"));
        assert_eq!(res.provision_dlq_url.as_deref(), Some("https://sqs/p-dlq"));
        assert_eq!(res.align_queue_url.as_deref(), Some("https://sqs/a"));
        assert_eq!(res.secret_id.as_deref(), Some("arn:aws:secretsmanager:x"));

        let args = TargetArgs {
            table: Some("enroll-test".into()),
            ..TargetArgs::default()
        };
        let res = res.overridden_by(&args);
        assert_eq!(res.table.as_deref(), Some("enroll-test"));
        assert_eq!(res.provision_queue_url.as_deref(), Some("https://sqs/p"));
    }

    #[test]
    fn only_named_aws_resources_leave_the_embedded_default() {
        assert!(!TargetArgs::default().names_aws());
        let args = TargetArgs {
            stack: Some("enroll".into()),
            ..TargetArgs::default()
        };
        assert!(args.names_aws());
    }
}
