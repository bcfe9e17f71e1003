//! The operator's commands: `enroll dlq list|replay|delete`, `enroll backfill plan|apply` and
//! `enroll audit`, on the embedded default or a deployed stack (see [`crate::target`]).

use crate::target::{LocalTarget, StageArg, TargetArgs};
use crate::{parse_platform, print_json};
use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use enroll_core::dead_letters::{
    self, ParkedMessage, QueueStage, ReplayReport, ReplayRequest, Selection,
};
use enroll_core::ids::Platform;
use enroll_core::ports::RateBudget;
use enroll_ops::{audit, backfill, dlq};
use std::path::PathBuf;
use std::time::Duration;

/// The operator subcommands, flattened into `enroll`'s own.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Dead-letter queues: list what is parked, replay it after the cause is fixed.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Put existing customers in their Groups from a sales export: plan, review, apply.
    Backfill {
        #[command(subcommand)]
        command: BackfillCommand,
    },
    /// Compare the workspace with the ledger: members with no purchase, drifted buyers, unknown
    /// members of managed Groups.
    Audit(AuditArgs),
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Each parked message's age, receive count, reason, event key and masked buyer. Consumes
    /// nothing (on SQS each listing adds one to the receive counts: SQS has no peek).
    List {
        /// One stage's dead-letter queue; both when left out.
        #[arg(long, value_enum)]
        queue: Option<StageArg>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Send parked messages back to their stage's queue, then delete them from the DLQ.
    Replay {
        #[command(flatten)]
        picked: Picked,
        /// Messages per second.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Delete parked messages for good (an event that must never be applied). Needs a
    /// selection, or --all.
    Delete {
        #[command(flatten)]
        picked: Picked,
        /// Every parked message of the queue(s).
        #[arg(long, conflicts_with_all = ["reason", "key"])]
        all: bool,
    },
}

/// Which parked messages a replay or delete takes, and where.
#[derive(Debug, Args)]
pub struct Picked {
    #[arg(long, value_enum)]
    queue: Option<StageArg>,
    /// Only messages whose reason contains this (ignoring case).
    #[arg(long, conflicts_with = "key")]
    reason: Option<String>,
    /// Only the message of this event key (e.g. stripe:evt_123).
    #[arg(long)]
    key: Option<String>,
    /// Say what would happen; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: TargetArgs,
}

impl Picked {
    fn request(&self, rate: Option<f64>) -> ReplayRequest {
        ReplayRequest {
            queue: self.queue.map(QueueStage::from),
            selection: Selection {
                reason: self.reason.clone(),
                key: self.key.clone(),
            },
            rate,
            dry_run: self.dry_run,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// Read a sales export and the workspace, and write a plan to review. Changes nothing.
    Plan {
        /// The sales export (CSV with a header row).
        #[arg(long)]
        sales: PathBuf,
        /// Which headers hold what, e.g. `email=Email,product=SKU,order=Order,date=Date`.
        /// Defaults: email, product (or sku), order_id, date; optional platform and name.
        #[arg(long)]
        columns: Option<String>,
        /// The platform of orders whose row names none: webhooks for them (a refund) must find
        /// the same order.
        #[arg(long, default_value = "standard", value_parser = parse_platform)]
        platform: Platform,
        /// Also remove members of managed Groups that neither the export nor the ledger
        /// justifies (owners and admins are never removed).
        #[arg(long)]
        prune: bool,
        /// Create buyers who have no Notion account; otherwise they are only reported.
        #[arg(long)]
        create_missing: bool,
        #[arg(short = 'o', long, default_value = "backfill-plan.json")]
        output: PathBuf,
        /// SCIM requests per second while reading the workspace.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Apply a reviewed plan: batched Group PATCHes, checkpointed; run it again to resume.
    Apply {
        plan: PathBuf,
        /// SCIM requests per second; the configured rate when left out.
        #[arg(long)]
        rate: Option<f64>,
        /// Members per Group PATCH; the configured batch size when left out.
        #[arg(long)]
        batch_size: Option<usize>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Make drifted buyers' Groups match the ledger.
    #[arg(long)]
    pub fix: bool,
    /// With --fix, also take members the ledger does not know out of managed Groups.
    #[arg(long, requires = "fix")]
    pub remove_unknown: bool,
    /// Go ahead even when the fix removes access from more than --max-removal-share.
    #[arg(long)]
    pub yes: bool,
    #[arg(long, default_value_t = audit::DEFAULT_MAX_REMOVAL_SHARE)]
    pub max_removal_share: f64,
    /// SCIM requests per second; the configured rate when left out.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs one operator command.
pub async fn run(cmd: OpsCommand) -> anyhow::Result<()> {
    match cmd {
        OpsCommand::Dlq { command } => run_dlq(command).await,
        OpsCommand::Backfill { command } => run_backfill(command).await,
        OpsCommand::Audit(args) => run_audit(args).await,
    }
}

/// How long a DLQ listing, replay or delete through `enroll dev` may take.
const DEV_TIMEOUT: Duration = Duration::from_secs(600);

async fn run_dlq(cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List {
            queue,
            json,
            target,
        } => {
            let queue = queue.map(QueueStage::from);
            let msgs: Vec<ParkedMessage> = match target.resolve().await? {
                LocalTarget::Dev { dev, .. } => {
                    let q: Vec<_> = queue.map(|q| ("queue", q.as_str())).into_iter().collect();
                    dev.call(dev.get("/admin/dlq").query(&q), DEV_TIMEOUT)
                        .await?
                }
                here => {
                    dead_letters::list_all(&here.dead_letters(queue)?, queue, Utc::now()).await?
                }
            };
            if json {
                print_json(&msgs)
            } else {
                dlq::print_list(&msgs);
                Ok(())
            }
        }
        DlqCommand::Replay { picked, rate } => {
            let req = picked.request(rate);
            // A running `enroll dev` owns the journal: it replays; otherwise it is done here.
            let reports: Vec<ReplayReport> = match picked.target.resolve().await? {
                LocalTarget::Dev { dev, .. } => {
                    let call = dev.post("/admin/dlq/replay").json(&req);
                    dev.call(call, DEV_TIMEOUT).await?
                }
                here => {
                    let pace = enroll_embedded::pace(req.rate)?;
                    let pace = pace.as_ref().map(|p| p as &dyn RateBudget);
                    let admins = here.dead_letters(req.queue)?;
                    let history = here.history();
                    dead_letters::replay_all(&admins, &req, pace, history.as_deref(), Utc::now())
                        .await?
                }
            };
            finish(&reports, picked.json, "replayed")
        }
        DlqCommand::Delete { picked, all } => {
            let req = picked.request(None);
            anyhow::ensure!(
                all || !req.selection.is_everything(),
                "say which parked messages to delete (--reason or --key), or --all"
            );
            let reports: Vec<ReplayReport> = match picked.target.resolve().await? {
                LocalTarget::Dev { dev, .. } => {
                    let call = dev.post("/admin/dlq/delete").json(&req);
                    dev.call(call, DEV_TIMEOUT).await?
                }
                here => {
                    let admins = here.dead_letters(req.queue)?;
                    let history = here.history();
                    dead_letters::delete_all(&admins, &req, history.as_deref(), Utc::now()).await?
                }
            };
            finish(&reports, picked.json, "deleted")
        }
    }
}

fn finish(reports: &[ReplayReport], json: bool, what: &str) -> anyhow::Result<()> {
    if json {
        print_json(&reports)?;
    } else {
        dlq::print_replay(reports);
    }
    let failed: usize = reports.iter().map(|r| r.failed.len()).sum();
    anyhow::ensure!(failed == 0, "{failed} message(s) could not be {what}");
    Ok(())
}

async fn run_backfill(cmd: BackfillCommand) -> anyhow::Result<()> {
    match cmd {
        BackfillCommand::Plan {
            sales,
            columns,
            platform,
            prune,
            create_missing,
            output,
            rate,
            json,
            target,
        } => {
            let columns = match columns {
                Some(spec) => backfill::Columns::parse(&spec)?,
                None => backfill::Columns::default(),
            };
            let ws = target.resolve().await?.workspace(false, rate, None).await?;
            let file = std::fs::File::open(&sales)
                .with_context(|| format!("opening {}", sales.display()))?;
            let rows = backfill::read_sales(file, &columns, &ws.config.catalog, platform)?;
            let spinner = backfill::spinner(!json);
            let plan = backfill::plan(
                &ws,
                rows,
                &backfill::PlanOptions {
                    sales_file: sales.display().to_string(),
                    prune,
                    create_missing,
                },
                Utc::now(),
                &spinner,
            )
            .await?;
            spinner.finish_and_clear();
            ws.finish()?;
            std::fs::write(&output, serde_json::to_vec_pretty(&plan)?)
                .with_context(|| format!("writing {}", output.display()))?;
            let summary = plan.summary(&output, ws.config.scim.batch_size);
            if json {
                print_json(&summary)
            } else {
                backfill::print_plan_summary(&summary);
                if !plan.no_account.is_empty() {
                    println!(
                        "buyers with no Notion account (not created; plan with --create-missing to create them): {}",
                        backfill::masked(&plan.no_account).join(", ")
                    );
                }
                Ok(())
            }
        }
        BackfillCommand::Apply {
            plan,
            rate,
            batch_size,
            json,
            target,
        } => {
            let target = target.resolve().await?;
            target.ensure_exclusive("enroll backfill apply")?;
            let ws = target.workspace(true, rate, batch_size).await?;
            let result = backfill::apply(
                &ws,
                &plan,
                &backfill::ApplyOptions {
                    show_progress: !json,
                },
            )
            .await;
            ws.finish()?;
            let report = result?;
            if json {
                print_json(&report)
            } else {
                backfill::print_apply(&report);
                Ok(())
            }
        }
    }
}

async fn run_audit(args: AuditArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.max_removal_share),
        "--max-removal-share is a share between 0 and 1, e.g. 0.05"
    );
    let target = args.target.resolve().await?;
    if args.fix {
        target.ensure_exclusive("enroll audit --fix")?;
    }
    let ws = target.workspace(args.fix, args.rate, None).await?;
    let spinner = backfill::spinner(!args.json);
    let result = audit::run(
        &ws,
        &audit::AuditOptions {
            fix: args.fix,
            remove_unknown: args.remove_unknown,
            yes: args.yes,
            max_removal_share: args.max_removal_share,
        },
        Utc::now(),
        &spinner,
    )
    .await;
    spinner.finish_and_clear();
    ws.finish()?;
    let report = result?;
    if args.json {
        print_json(&report)?;
    } else {
        audit::print(&report);
    }
    anyhow::ensure!(
        !report.stopped_by_guard(),
        "the fix was stopped by the mass-removal guard; nothing was changed"
    );
    Ok(())
}
