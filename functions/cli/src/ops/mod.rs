//! The operator's tools, on the embedded default or a deployed stack.
//!
//! - [`target`]: where a command acts (a data directory, the `enroll dev` that owns it, or a
//!   stack's queues and table) and the queue pair, ledger and workspace it acts on.
//! - [`dlq`]: `enroll dlq list` and `enroll dlq replay`.
//! - [`backfill`]: `enroll backfill plan` and `enroll backfill apply`.
//! - [`audit`]: `enroll audit [--fix]`.
//!
//! Every report has a table view and `--json`; neither ever shows a full email address.

pub mod audit;
pub mod backfill;
pub mod dlq;
pub mod target;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use enroll_core::ids::Platform;
use std::path::PathBuf;
use std::time::Duration;
use target::{QueuePair, Stage, Target, TargetArgs, Workspace};

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
        queue: Option<Stage>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Send parked messages back to their stage's queue, then delete them from the DLQ.
    Replay {
        #[arg(long, value_enum)]
        queue: Option<Stage>,
        /// Only messages whose reason contains this (ignoring case).
        #[arg(long, conflicts_with = "key")]
        reason: Option<String>,
        /// Only the message of this event key (e.g. stripe:evt_123).
        #[arg(long)]
        key: Option<String>,
        /// Messages per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Say what would move; move nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
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

fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(&s.to_lowercase()).ok_or_else(|| format!("unknown platform `{s}`"))
}

/// Runs one operator command.
pub async fn run(cmd: OpsCommand) -> anyhow::Result<()> {
    match cmd {
        OpsCommand::Dlq { command } => run_dlq(command).await,
        OpsCommand::Backfill { command } => run_backfill(command).await,
        OpsCommand::Audit(args) => run_audit(args).await,
    }
}

fn stages(queue: Option<Stage>) -> Vec<Stage> {
    queue
        .map(|q| vec![q])
        .unwrap_or_else(|| Stage::ALL.to_vec())
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn run_dlq(cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List {
            queue,
            json,
            target,
        } => {
            let target = target.resolve().await?;
            let mut msgs = Vec::new();
            if let Some(dev) = target.dev() {
                for s in stages(queue) {
                    let got: Vec<dlq::ParkedMessage> = dev
                        .call(
                            dev.get("/admin/dlq").query(&[("queue", s.as_str())]),
                            DEV_TIMEOUT,
                        )
                        .await?;
                    msgs.extend(got);
                }
            } else {
                for pair in pairs(&target, queue)? {
                    msgs.extend(dlq::list(&pair).await?);
                }
            }
            if json {
                print_json(&msgs)
            } else {
                dlq::print_list(&msgs);
                Ok(())
            }
        }
        DlqCommand::Replay {
            queue,
            reason,
            key,
            rate,
            dry_run,
            json,
            target,
        } => {
            let req = dlq::ReplayRequest {
                queue,
                selection: dlq::Selection { reason, key },
                rate,
                dry_run,
            };
            let target = target.resolve().await?;
            let reports = match target.dev() {
                Some(dev) => {
                    dev.call(dev.post("/admin/dlq/replay").json(&req), DEV_TIMEOUT)
                        .await?
                }
                None => {
                    let reports = replay_all(&pairs(&target, queue)?, &req).await?;
                    if let Some(log) = replay_history(&target) {
                        dlq::record_replays(log.as_ref(), &reports).await;
                    }
                    reports
                }
            };
            if json {
                print_json(&reports)?;
            } else {
                dlq::print_replay(&reports);
            }
            let failed: usize = reports.iter().map(|r| r.failed.len()).sum();
            anyhow::ensure!(failed == 0, "{failed} message(s) could not be replayed");
            Ok(())
        }
    }
}

/// Where a replay run here records itself in buyers' histories: the data directory's store, or
/// the stack's table. None when there is neither (history is best-effort).
fn replay_history(target: &Target) -> Option<std::sync::Arc<dyn enroll_core::ports::HistoryLog>> {
    let days = |args: &target::TargetArgs| {
        args.load_config()
            .map_or(enroll_core::history::DEFAULT_RETENTION_DAYS, |c| {
                c.history.retention_days
            })
    };
    match target {
        Target::Embedded(e) => {
            let path = e.args.data_dir.join("store.log");
            if !path.exists() {
                return None;
            }
            let store = enroll_embedded::store::FileStore::open(&path).ok()?;
            Some(std::sync::Arc::new(
                store.with_history_retention(days(&e.args)),
            ))
        }
        Target::Aws(a) => a.ledger().ok().map(|l| l.history(days(&a.args))),
    }
}

fn pairs(target: &Target, queue: Option<Stage>) -> anyhow::Result<Vec<QueuePair>> {
    let wanted = stages(queue);
    let all = match target {
        Target::Embedded(e) => e.open_queues()?,
        Target::Aws(a) => a.queues(&wanted)?,
    };
    Ok(all
        .into_iter()
        .filter(|p| wanted.contains(&p.stage()))
        .collect())
}

/// Replays each pair in turn.
pub async fn replay_all(
    pairs: &[QueuePair],
    req: &dlq::ReplayRequest,
) -> anyhow::Result<Vec<dlq::ReplayReport>> {
    let mut out = Vec::new();
    for p in pairs {
        if req.queue.is_none_or(|q| q == p.stage()) {
            out.push(dlq::replay(p, req).await?);
        }
    }
    Ok(out)
}

/// How long a DLQ listing or replay through `enroll dev` may take.
const DEV_TIMEOUT: Duration = Duration::from_secs(600);

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
            let target = target.resolve().await?;
            let ws = Workspace::open(&target, false, rate, None).await?;
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
            if let Target::Embedded(e) = &target {
                e.ensure_exclusive("enroll backfill apply")?;
            }
            let ws = Workspace::open(&target, true, rate, batch_size).await?;
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
    if let (true, Target::Embedded(e)) = (args.fix, &target) {
        e.ensure_exclusive("enroll audit --fix")?;
    }
    let ws = Workspace::open(&target, args.fix, args.rate, None).await?;
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

/// Masks anything that looks like an address and is not masked already.
pub fn mask_if_email(s: &str) -> String {
    if s.contains('@') && !s.contains("***") {
        enroll_core::redact::mask_email(s)
    } else {
        s.to_owned()
    }
}

/// Prints rows under headers, each column as wide as its widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_once() {
        assert_eq!(mask_if_email("ada@example.com"), "a***@e***.com");
        assert_eq!(mask_if_email("a***@e***.com"), "a***@e***.com");
        assert_eq!(mask_if_email("stripe:evt_1"), "stripe:evt_1");
    }
}
