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
//!
//! `--tenant NAME` narrows any target to one seller: locally its data directory under
//! `<data-dir>/tenants/<name>/`; on a stack its configuration (the tenant's item and secret,
//! never `--config` or the `ENROLL_*` variables, which are the single seller's), its keys in
//! the table (`t#<name>#...`) and its parked messages.

use anyhow::{anyhow, bail, Context};
use aws_config::SdkConfig;
use clap::{Args, ValueEnum};
use enroll_aws::dead_letters::SqsDeadLetterAdmin;
use enroll_aws::tenants::TenantRegistry;
use enroll_aws::{DynamoHistory, DynamoStore};
use enroll_core::config::{Config, Secret};
use enroll_core::dead_letters::{DeadLetterAdmin, QueueStage};
use enroll_core::ports::HistoryLog;
use enroll_core::tenant::TenantId;
use enroll_embedded::admin_client::{running_dev, DevAdmin, SimulatedScim};
use enroll_embedded::dead_letters::EmbeddedDeadLetters;
use enroll_embedded::journal::Journal;
use enroll_embedded::runtime::{self, Options, Runtime};
use enroll_embedded::store::FileStore;
use enroll_notion::rate::TokenBucket;
use enroll_notion::ScimClient;
use enroll_ops::workspace::{Ledger, Workspace};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Stack output names, as `template.yaml` declares them.
pub const OUT_PROVISION_QUEUE: &str = "ProvisionQueueUrl";
pub const OUT_PROVISION_DLQ: &str = "ProvisionDeadLetterQueueUrl";
pub const OUT_ALIGN_QUEUE: &str = "AlignQueueUrl";
pub const OUT_ALIGN_DLQ: &str = "AlignDeadLetterQueueUrl";
pub const OUT_NOTIFY_QUEUE: &str = "NotifyQueueUrl";
pub const OUT_NOTIFY_DLQ: &str = "NotifyDeadLetterQueueUrl";
pub const OUT_TABLE: &str = "TableName";
pub const OUT_SECRET: &str = "SecretArn";
pub const OUT_WEBHOOK_BASE: &str = "WebhookBaseUrl";
/// Tenants' secrets are this prefix and the tenant's name.
pub const OUT_TENANT_SECRET_PREFIX: &str = "TenantSecretPrefix";

/// The stack's tenant secret prefix: its output, else the template's form `<stack>/tenant/`
/// (a stack deployed before the output existed).
pub fn tenant_secret_prefix(stack: &str, outputs: &HashMap<String, String>) -> String {
    outputs
        .get(OUT_TENANT_SECRET_PREFIX)
        .filter(|p| !p.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("{stack}/tenant/"))
}

/// Which stage's queues, as the flag `--queue` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StageArg {
    Provision,
    Align,
    /// Outbound events to the seller's endpoints.
    Notify,
}

impl From<StageArg> for QueueStage {
    fn from(s: StageArg) -> Self {
        match s {
            StageArg::Provision => QueueStage::Provision,
            StageArg::Align => QueueStage::Align,
            StageArg::Notify => QueueStage::Notify,
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
    /// One tenant. Locally (`enroll dev --tenants DIR`): its data, `<data-dir>/tenants/<name>/`
    /// (and its running admin listener); pass its `<name>.toml` as `--config` where a command
    /// reads the catalog without `enroll dev` running. On a stack: its configuration and
    /// secret (`enroll tenant add`), its ledger and its parked messages.
    #[arg(long, value_parser = parse_tenant)]
    pub tenant: Option<enroll_core::tenant::TenantId>,
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
    #[arg(long, env = "ENROLL_NOTIFY_QUEUE_URL")]
    pub notify_queue_url: Option<String>,
    #[arg(long, env = "ENROLL_NOTIFY_DLQ_URL")]
    pub notify_dlq_url: Option<String>,
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
    pub notify_queue_url: Option<String>,
    pub notify_dlq_url: Option<String>,
    pub secret_id: Option<String>,
    pub tenant_secret_prefix: Option<String>,
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
            notify_queue_url: get(OUT_NOTIFY_QUEUE),
            notify_dlq_url: get(OUT_NOTIFY_DLQ),
            secret_id: get(OUT_SECRET),
            tenant_secret_prefix: get(OUT_TENANT_SECRET_PREFIX),
        }
    }

    /// A deployed stack's resources, with the tenant secret prefix the template gives when the
    /// stack predates its output ([`tenant_secret_prefix`]).
    pub fn of_stack(stack: &str, outputs: &HashMap<String, String>) -> Self {
        Self {
            tenant_secret_prefix: Some(tenant_secret_prefix(stack, outputs)),
            ..Self::from_outputs(outputs)
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
        pick(&mut self.notify_queue_url, &args.notify_queue_url);
        pick(&mut self.notify_dlq_url, &args.notify_dlq_url);
        pick(&mut self.secret_id, &args.secret_id);
        self
    }

    fn queues(&self, stage: QueueStage) -> (Option<&String>, Option<&String>) {
        match stage {
            QueueStage::Provision => (
                self.provision_queue_url.as_ref(),
                self.provision_dlq_url.as_ref(),
            ),
            QueueStage::Align => (self.align_queue_url.as_ref(), self.align_dlq_url.as_ref()),
            QueueStage::Notify => (self.notify_queue_url.as_ref(), self.notify_dlq_url.as_ref()),
        }
    }
}

/// A `--tenant` value: a tenant name (lowercase letters, digits and hyphens).
pub(crate) fn parse_tenant(raw: &str) -> Result<enroll_core::tenant::TenantId, String> {
    enroll_core::tenant::TenantId::parse(raw).map_err(|e| e.to_string())
}

impl TargetArgs {
    /// These flags with the data directory narrowed to `--tenant`'s, when one is given.
    pub fn scoped(&self) -> Self {
        let mut args = self.clone();
        if let Some(t) = args.tenant.take() {
            args.data_dir = enroll_embedded::tenants::tenant_dir(&args.data_dir, &t);
        }
        args
    }

    fn names_aws(&self) -> bool {
        [
            &self.stack,
            &self.table,
            &self.provision_queue_url,
            &self.provision_dlq_url,
            &self.align_queue_url,
            &self.align_dlq_url,
            &self.notify_queue_url,
            &self.notify_dlq_url,
        ]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
    }

    pub fn load_config(&self) -> anyhow::Result<Config> {
        enroll_embedded::config_file::load(self.config.as_deref())
    }

    /// Decides where the command acts: a stack when any AWS resource is named, else the
    /// running `enroll dev` that owns the data directory, else the data directory itself. For
    /// a stack its outputs are read once.
    pub async fn resolve(&self) -> anyhow::Result<LocalTarget> {
        if !self.names_aws() {
            let args = self.scoped();
            return Ok(
                match running_dev(&args.data_dir, args.url.as_deref()).await? {
                    Some(dev) => LocalTarget::Dev { dev, args },
                    None => LocalTarget::DataDir { args },
                },
            );
        }
        let sdk = enroll_aws::sdk_config().await;
        let from_stack = match &self.stack {
            Some(name) => AwsResources::of_stack(name, &stack_outputs(&sdk, name).await?),
            None => AwsResources::default(),
        };
        let res = from_stack.overridden_by(self);
        let tenant = match &self.tenant {
            Some(t) => Some(StackTenant::load(&sdk, &res, t).await?),
            None => None,
        };
        Ok(LocalTarget::Stack(Box::new(Aws {
            res,
            endpoint_override: sdk.endpoint_url().is_some()
                || std::env::var_os("AWS_ENDPOINT_URL_SQS").is_some(),
            sdk,
            args: self.clone(),
            tenant,
        })))
    }
}

/// The tenant a stack command acts on, loaded once: its configuration as the functions load it.
pub struct StackTenant {
    pub id: TenantId,
    pub config: Config,
}

impl StackTenant {
    pub(crate) async fn load(
        sdk: &SdkConfig,
        res: &AwsResources,
        tenant: &TenantId,
    ) -> anyhow::Result<Self> {
        let (Some(table), Some(prefix)) = (&res.table, &res.tenant_secret_prefix) else {
            bail!("--tenant {tenant} on AWS needs the stack's tenants: pass --stack NAME");
        };
        let registry = TenantRegistry::new(sdk, table, prefix);
        let config = registry
            .load(tenant)
            .await
            .map_err(|f| anyhow!(f.reason))?
            .ok_or_else(|| {
                anyhow!("no tenant {tenant} on this stack (enroll tenant list --stack NAME)")
            })?;
        Ok(Self {
            id: tenant.clone(),
            config,
        })
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

/// Where an operator command acts. Every command resolves one ([`TargetArgs::resolve`]) and
/// asks it for what it needs: the dead-letter queues, the ledger, the workspace.
pub enum LocalTarget {
    /// The running `enroll dev` that owns the data directory: commands go through its admin
    /// listener, reports read the files without taking them over, and commands that write the
    /// ledger refuse.
    Dev { dev: DevAdmin, args: TargetArgs },
    /// The data directory, opened here: no `enroll dev` runs on it.
    DataDir { args: TargetArgs },
    /// A deployed stack (boxed: it is much larger than the others).
    Stack(Box<Aws>),
}

pub struct Aws {
    pub sdk: SdkConfig,
    pub res: AwsResources,
    /// An endpoint override (moto, LocalStack): SQS's message move task is not tried there.
    pub endpoint_override: bool,
    pub args: TargetArgs,
    /// `--tenant`'s configuration, loaded when the target was resolved.
    pub tenant: Option<StackTenant>,
}

impl LocalTarget {
    /// Refuses while `enroll dev` runs: for commands that write the ledger.
    pub fn ensure_exclusive(&self, what: &str) -> anyhow::Result<()> {
        if let LocalTarget::Dev { dev, args } = self {
            bail!(
                "`enroll dev` is running at {} and owns {}: stop it (Ctrl-C) and run `{what}` again",
                dev.url,
                args.data_dir.display()
            );
        }
        Ok(())
    }

    /// The dead-letter queues of `queue` (both stages when `None`), opened here, not through a
    /// running `enroll dev`.
    pub fn dead_letters(
        &self,
        queue: Option<QueueStage>,
    ) -> anyhow::Result<Vec<Arc<dyn DeadLetterAdmin>>> {
        match self {
            LocalTarget::Dev { dev, args } => bail!(
                "`enroll dev` is running at {} and owns {}",
                dev.url,
                args.data_dir.display()
            ),
            LocalTarget::DataDir { args } => {
                let path = args.data_dir.join("queues.log");
                anyhow::ensure!(
                    path.exists(),
                    "no queues in {} (run `enroll dev` there first, or pass --data-dir)",
                    args.data_dir.display()
                );
                let journal =
                    Journal::open(&path).with_context(|| format!("opening {}", path.display()))?;
                Ok(EmbeddedDeadLetters::on_journal(&Arc::new(Mutex::new(
                    journal,
                ))))
            }
            LocalTarget::Stack(aws) => aws.dead_letters(queue),
        }
    }

    /// Where an operator action here is recorded in buyers' histories: the data directory's
    /// store, or the stack's table. None when there is neither (history is best-effort).
    pub fn history(&self) -> Option<Arc<dyn HistoryLog>> {
        let days = |args: &TargetArgs| {
            args.load_config()
                .map_or(enroll_core::history::DEFAULT_RETENTION_DAYS, |c| {
                    c.history.retention_days
                })
        };
        match self {
            LocalTarget::Dev { .. } => None,
            LocalTarget::DataDir { args } => {
                let path = args.data_dir.join("store.log");
                if !path.exists() {
                    return None;
                }
                let store = FileStore::open(&path).ok()?;
                Some(Arc::new(store.with_history_retention(days(args))))
            }
            LocalTarget::Stack(aws) => {
                let days = match &aws.tenant {
                    Some(t) => t.config.history.retention_days,
                    None => days(&aws.args),
                };
                Some(Arc::new(aws.dynamo_history(days).ok()?))
            }
        }
    }

    /// The workspace backfill and audit act on. `writes` says whether the command changes the
    /// ledger; `rate` (requests per second) overrides the configured budget; `batch_size` the
    /// configured members per Group PATCH.
    pub async fn workspace(
        &self,
        writes: bool,
        rate: Option<f64>,
        batch_size: Option<usize>,
    ) -> anyhow::Result<Workspace> {
        if writes {
            self.ensure_exclusive("this command")?;
        }
        let mut runtime = None;
        let (mut config, ledger) = match self {
            LocalTarget::Stack(aws) => (aws.config().await?, aws.ledger()?),
            LocalTarget::Dev { dev, args } => {
                let mut config = args.load_config()?;
                if runtime::needs_simulator(&config) {
                    let sim: SimulatedScim = dev
                        .call(dev.get("/admin/notion"), Duration::from_secs(10))
                        .await
                        .context("asking `enroll dev` for its simulated workspace")?;
                    config.scim.base_url = sim.scim_base_url;
                    config.scim.token = Secret::new(sim.scim_token);
                }
                let path = args.data_dir.join("store.log");
                let store = FileStore::open_read_only(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let history = store
                    .clone()
                    .with_history_retention(config.history.retention_days);
                (config, Ledger::new(store, Arc::new(history)))
            }
            LocalTarget::DataDir { args } => {
                let rt = Runtime::start(Options {
                    config: args.load_config()?,
                    data_dir: Some(args.data_dir.clone()),
                    timings: Default::default(),
                    simulate: false,
                })
                .await?;
                let config = (*rt.config).clone();
                let history = rt
                    .store
                    .clone()
                    .with_history_retention(config.history.retention_days);
                let ledger = Ledger::new(rt.store.clone(), Arc::new(history));
                runtime = Some(rt);
                (config, ledger)
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
            None => Arc::new(TokenBucket::from_config(config.rate.scim())),
        };
        let scim = ScimClient::new(&config.scim, budget).map_err(|f| anyhow!(f.reason))?;
        let ws = Workspace::new(config, ledger, scim);
        Ok(match runtime {
            // The simulated workspace this process ran is saved when the command is done.
            Some(rt) => ws.on_finish(move || rt.save_simulator()),
            None => ws,
        })
    }
}

impl Aws {
    /// The stages' queues on SQS; an error names the flag a missing URL needs.
    pub fn dead_letters(
        &self,
        queue: Option<QueueStage>,
    ) -> anyhow::Result<Vec<Arc<dyn DeadLetterAdmin>>> {
        let client = aws_sdk_sqs::Client::new(&self.sdk);
        QueueStage::ALL
            .iter()
            .filter(|s| queue.is_none_or(|q| q == **s))
            // A stack from before outbound events has no notify queue: only a request naming
            // it needs one.
            .filter(|s| {
                queue.is_some() || **s != QueueStage::Notify || self.res.queues(**s).1.is_some()
            })
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
                let admin = SqsDeadLetterAdmin {
                    stage,
                    client: client.clone(),
                    source_url: source.ok_or_else(|| missing("queue"))?.clone(),
                    dlq_url: dlq.ok_or_else(|| missing("dead-letter queue"))?.clone(),
                    move_task: !self.endpoint_override,
                };
                Ok(match &self.tenant {
                    Some(t) => Arc::new(admin.for_tenant(t.id.clone())) as Arc<dyn DeadLetterAdmin>,
                    None => Arc::new(admin),
                })
            })
            .collect()
    }

    fn table(&self) -> anyhow::Result<&String> {
        self.res
            .table
            .as_ref()
            .ok_or_else(|| anyhow!("no table: pass --stack or --table"))
    }

    /// The store on the stack's table: the tenant's keys with `--tenant`.
    pub fn store(&self) -> anyhow::Result<DynamoStore> {
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&self.sdk), self.table()?);
        Ok(match &self.tenant {
            Some(t) => store.for_tenant(t.id.clone()),
            None => store,
        })
    }

    /// Buyers' histories on the stack's table: the tenant's with `--tenant`.
    pub fn dynamo_history(&self, retention_days: u32) -> anyhow::Result<DynamoHistory> {
        let history = DynamoHistory::new(aws_sdk_dynamodb::Client::new(&self.sdk), self.table()?)
            .with_retention(retention_days);
        Ok(match &self.tenant {
            Some(t) => history.for_tenant(t.id.clone()),
            None => history,
        })
    }

    pub fn ledger(&self) -> anyhow::Result<Ledger> {
        let days = match &self.tenant {
            Some(t) => t.config.history.retention_days,
            None => self.args.load_config()?.history.retention_days,
        };
        Ok(Ledger::new(
            self.store()?,
            Arc::new(self.dynamo_history(days)?),
        ))
    }

    /// The tenant's configuration with `--tenant`; otherwise the configuration file with the
    /// stack's secrets (the SCIM token) and then the `ENROLL_*` environment applied.
    pub async fn config(&self) -> anyhow::Result<Config> {
        if let Some(t) = &self.tenant {
            return Ok(t.config.clone());
        }
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
