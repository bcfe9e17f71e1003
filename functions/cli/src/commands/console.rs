//! `enroll console`: the seller console (`enroll_console`) on 127.0.0.1, reading and acting
//! through the same target as every operator command: a running `enroll dev` (through its admin
//! listener), its data directory, or a deployed stack.

use crate::target::{LocalTarget, TargetArgs};
use anyhow::bail;
use async_trait::async_trait;
use chrono::Utc;
use clap::Args;
use enroll_console::{Console, Source};
use enroll_core::config::{Config, Secret};
use enroll_core::dead_letters::{self, ParkedMessage, ReplayReport, ReplayRequest};
use enroll_embedded::admin::LinkQuery;
use enroll_embedded::admin_client::SimulatedScim;
use enroll_embedded::status::{self, StatusReport};
use enroll_embedded::store::FileStore;
use enroll_ops::doctor::Report;
use enroll_ops::workspace::{Ledger, Workspace};
use provision::link::LinkReport;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The port on 127.0.0.1; any free port when left out.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Also open the console in the default browser.
    #[arg(long)]
    open: bool,
    #[command(flatten)]
    target: TargetArgs,
}

pub async fn console(args: ConsoleArgs) -> anyhow::Result<()> {
    let target = args.target.resolve().await?;
    let source = Arc::new(TargetSource {
        target,
        args: args.target.clone(),
    });
    let console = Console::bind(source, args.port).await?;
    let url = console.url();
    println!("console: {url}");
    if args.open {
        open_browser(&url);
    }
    console
        .serve(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

/// Opens `url` in the default browser; a failure is a warning (the address is printed).
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        tracing::warn!("could not open a browser with {opener}: {e}; open the address above");
    }
}

/// How long a call through `enroll dev` may take (a replay of many messages is paced).
const DEV_TIMEOUT: Duration = Duration::from_secs(600);

struct TargetSource {
    target: LocalTarget,
    args: TargetArgs,
}

#[async_trait]
impl Source for TargetSource {
    fn describe(&self) -> String {
        match &self.target {
            LocalTarget::Dev { dev, args } => {
                format!("enroll dev at {} on {}", dev.url, args.data_dir.display())
            }
            LocalTarget::DataDir { args } => {
                format!("{} (no enroll dev running)", args.data_dir.display())
            }
            LocalTarget::Stack(aws) => match &aws.args.stack {
                Some(s) => format!("stack {s}"),
                None => "AWS resources".into(),
            },
        }
    }

    async fn config(&self) -> anyhow::Result<Config> {
        match &self.target {
            LocalTarget::Stack(aws) => aws.config().await,
            _ => self.args.load_config(),
        }
    }

    async fn ledger(&self) -> anyhow::Result<Ledger> {
        if let LocalTarget::Stack(aws) = &self.target {
            return aws.ledger();
        }
        // Read without taking the directory over, as reports do while `enroll dev` runs.
        let path = self.args.data_dir.join("store.log");
        anyhow::ensure!(
            path.exists(),
            "no data in {} yet: start `enroll dev --data-dir {}`",
            self.args.data_dir.display(),
            self.args.data_dir.display()
        );
        let store = FileStore::open_read_only(&path)?;
        let days = self.args.load_config()?.history.retention_days;
        let history = store.clone().with_history_retention(days);
        Ok(Ledger::new(store, Arc::new(history)))
    }

    async fn status(&self, query: &str) -> anyhow::Result<StatusReport> {
        match &self.target {
            LocalTarget::Dev { dev, .. } => {
                let req = dev.get("/admin/status").query(&[("q", query)]);
                dev.call(req, Duration::from_secs(30)).await
            }
            LocalTarget::DataDir { args } => {
                let config = match &args.config {
                    Some(_) => Some(args.load_config()?),
                    None => None,
                };
                status::from_data_dir(query, &args.data_dir, config.as_ref()).await
            }
            LocalTarget::Stack(_) => bail!(
                "buyer pages read the embedded default; on a stack use the Dead letters and Audit pages"
            ),
        }
    }

    async fn dead_letters(&self) -> anyhow::Result<Vec<ParkedMessage>> {
        match &self.target {
            LocalTarget::Dev { dev, .. } => dev.call(dev.get("/admin/dlq"), DEV_TIMEOUT).await,
            here => Ok(dead_letters::list_all(&here.dead_letters(None)?, None, Utc::now()).await?),
        }
    }

    async fn replay(&self, req: &ReplayRequest) -> anyhow::Result<Vec<ReplayReport>> {
        match &self.target {
            LocalTarget::Dev { dev, .. } => {
                dev.call(dev.post("/admin/dlq/replay").json(req), DEV_TIMEOUT)
                    .await
            }
            here => {
                let admins = here.dead_letters(req.queue)?;
                let history = here.history();
                Ok(
                    dead_letters::replay_all(&admins, req, None, history.as_deref(), Utc::now())
                        .await?,
                )
            }
        }
    }

    async fn link(&self, alias: &str, existing: &str, merge: bool) -> anyhow::Result<LinkReport> {
        let LocalTarget::Dev { dev, .. } = &self.target else {
            bail!(
                "the console links through a running `enroll dev`; here, run `enroll link {alias} {existing}{}`",
                if merge { " --merge" } else { "" }
            );
        };
        let query = LinkQuery {
            alias: alias.to_owned(),
            buyer: existing.to_owned(),
            merge,
        };
        dev.call(
            dev.post("/admin/link").query(&query),
            Duration::from_secs(60),
        )
        .await
    }

    async fn workspace(&self, writes: bool) -> anyhow::Result<Workspace> {
        self.target.workspace(writes, None, None).await
    }

    async fn doctor(&self) -> anyhow::Result<Option<Report>> {
        let mut config = self.config().await?;
        let simulated = enroll_embedded::runtime::needs_simulator(&config);
        let webhook_base = match &self.target {
            LocalTarget::Dev { dev, args } => {
                if simulated {
                    // The workspace this `enroll dev` simulates is the one to check.
                    let sim: SimulatedScim = dev
                        .call(dev.get("/admin/notion"), Duration::from_secs(10))
                        .await?;
                    if sim.notion_base_url.is_empty() {
                        return Ok(None);
                    }
                    config.scim.base_url = sim.scim_base_url;
                    config.scim.token = Secret::new(sim.scim_token);
                    config.notion.base_url = sim.notion_base_url;
                    config.notion.token = Secret::new(sim.notion_token);
                }
                enroll_embedded::admin::read_dev_record(&args.data_dir).map(|r| r.webhook_url)
            }
            // No simulator runs for a data directory alone: `enroll doctor` starts one.
            LocalTarget::DataDir { .. } if simulated => return Ok(None),
            _ => None,
        };
        Ok(Some(
            enroll_ops::doctor::run(&config, webhook_base.as_deref()).await,
        ))
    }
}
