//! Applying a plan: members created, Group PATCHes in batches through one request budget,
//! the checkpoint saved after every request, then the grants recorded in the ledger.

use super::checkpoint::{checkpoint_path, ops_of, Checkpoint, Inflight, Op};
use super::failure;
use super::mapping::{order_from_rows, rows_by_order};
use super::plan::{group_members, NewMember, Plan, PLAN_FORMAT};
use super::render::progress_bar;
use crate::workspace::Workspace;
use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use enroll_core::ids::{BuyerEmail, NotionUserId, OrderKey};
use enroll_core::ledger::{self, BuyerRecord};
use enroll_core::ports::{Created, Directory};
use enroll_core::redact::short_hash;
use enroll_core::Failure;
use enroll_notion::retry::{retry, RetryPolicy};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Attempts at a ledger write that lost a race with the pipeline.
const LEDGER_RETRY: RetryPolicy = RetryPolicy {
    attempts: 5,
    max_wait: std::time::Duration::from_secs(2),
    first_backoff: std::time::Duration::from_millis(100),
};

pub struct ApplyOptions {
    pub show_progress: bool,
}

/// What `apply` did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApplyReport {
    pub plan_file: String,
    pub resumed: bool,
    /// Requests this run sent (creates and Group PATCHes).
    pub requests: usize,
    pub requests_all_runs: usize,
    pub created: usize,
    pub added: usize,
    pub removed: usize,
    /// Members of an interrupted request found already applied, so it was not resent.
    pub verified_after_interruption: usize,
    pub ledger_orders: usize,
    pub ledger_buyers: usize,
}

/// Applies a plan file, resuming from its checkpoint.
pub async fn apply(
    ws: &Workspace,
    plan_path: &Path,
    opts: &ApplyOptions,
) -> anyhow::Result<ApplyReport> {
    let (plan, hash) = read_plan(plan_path)?;
    let cp_path = checkpoint_path(plan_path);
    let loaded = Checkpoint::load(&cp_path, &hash)?;
    let report = ApplyReport {
        plan_file: plan_path.display().to_string(),
        resumed: loaded.is_some(),
        ..ApplyReport::default()
    };
    let cp = loaded.unwrap_or_else(|| Checkpoint {
        plan_hash: hash,
        ..Checkpoint::default()
    });
    let mut run = Run {
        ws,
        dir: ws.scim.as_ref(),
        plan: &plan,
        batch_size: ws.config.scim.batch_size.max(1),
        cp,
        cp_path,
        report,
        bar: progress_bar(0, opts.show_progress),
    };

    // Work left: creates, then per Group the members not yet done, in batches.
    let creates: Vec<&NewMember> = plan
        .create
        .iter()
        .filter(|c| !run.cp.created.contains_key(&c.email))
        .collect();
    run.bar
        .set_length((creates.len() + run.pending_batches()) as u64);
    run.create_members(creates).await?;
    run.check_interrupted_request().await?;
    run.bar
        .set_length((run.bar.position() as usize + run.pending_batches()) as u64);
    run.send_batches().await?;
    if !run.cp.ledger_done {
        run.bar.set_message("recording grants in the ledger");
        let (orders, buyers) = record_ledger(ws, &plan, &run.cp.created, Utc::now()).await?;
        run.report.ledger_orders = orders;
        run.report.ledger_buyers = buyers;
        run.cp.ledger_done = true;
        run.save()?;
    }
    run.bar.finish_and_clear();
    run.report.requests_all_runs = run.cp.requests;
    Ok(run.report)
}

/// Reads a plan file and the hash its checkpoint is tied to.
fn read_plan(path: &Path) -> anyhow::Result<(Plan, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let plan: Plan = serde_json::from_slice(&bytes).context("the plan is not a backfill plan")?;
    anyhow::ensure!(
        plan.format == PLAN_FORMAT,
        "plan format {} is not {PLAN_FORMAT}: make the plan again with this version",
        plan.format
    );
    Ok((plan, short_hash(&bytes)))
}

/// One apply of one plan: the checkpoint is saved before every request is sent and after
/// its answer is recorded.
struct Run<'a> {
    ws: &'a Workspace,
    dir: &'a dyn Directory,
    plan: &'a Plan,
    batch_size: usize,
    cp: Checkpoint,
    cp_path: PathBuf,
    report: ApplyReport,
    bar: ProgressBar,
}

impl Run<'_> {
    fn save(&self) -> anyhow::Result<()> {
        self.cp.save(&self.cp_path)
    }

    fn pending_batches(&self) -> usize {
        ops_of(self.plan, &self.cp)
            .iter()
            .map(|(_, _, m)| m.len().div_ceil(self.batch_size))
            .sum()
    }

    async fn create_members(&mut self, creates: Vec<&NewMember>) -> anyhow::Result<()> {
        let dir = self.dir;
        if let Some(email) = self.cp.creating.clone() {
            // A create was sent before the kill: the member may exist now.
            if let Some(u) = dir.find_user(&email).await.map_err(failure)? {
                self.cp.created.insert(email.clone(), u.id);
            }
            self.cp.creating = None;
            self.save()?;
        }
        for c in creates {
            if self.cp.created.contains_key(&c.email) {
                self.bar.inc(1);
                continue;
            }
            self.bar.set_message("creating members");
            self.cp.creating = Some(c.email.clone());
            self.save()?;
            let id = match dir
                .create_user(&c.email, c.name.as_deref())
                .await
                .map_err(failure)?
            {
                Created::Created(u) => u.id,
                Created::AlreadyExists => {
                    dir.find_user(&c.email)
                        .await
                        .map_err(failure)?
                        .ok_or_else(|| {
                            anyhow!("SCIM says {} exists but does not find it", c.email)
                        })?
                        .id
                }
            };
            self.cp.created.insert(c.email.clone(), id);
            self.cp.creating = None;
            self.cp.requests += 1;
            self.report.requests += 1;
            self.report.created += 1;
            self.save()?;
            self.bar.inc(1);
        }
        Ok(())
    }

    /// The kill may have come after Notion applied the request in flight and before its answer
    /// was recorded: look at the Group instead of resending.
    async fn check_interrupted_request(&mut self) -> anyhow::Result<()> {
        let Some(inflight) = self.cp.inflight.take() else {
            return Ok(());
        };
        self.bar.set_message("checking the interrupted request");
        let now_in = group_members(self.ws, &inflight.group).await?;
        let landed: Vec<&NotionUserId> = inflight
            .members
            .iter()
            .filter(|m| match inflight.op {
                Op::Add => now_in.contains(*m),
                Op::Remove => !now_in.contains(*m),
            })
            .collect();
        self.report.verified_after_interruption += landed.len();
        self.cp.mark_done(inflight.op, &inflight.group, landed);
        self.save()
    }

    async fn send_batches(&mut self) -> anyhow::Result<()> {
        for (group, op, members) in ops_of(self.plan, &self.cp) {
            let name = self
                .plan
                .groups
                .iter()
                .find(|g| g.id == group)
                .map(|g| g.name.as_str())
                .unwrap_or(group.as_str());
            let doing = match op {
                Op::Add => "adding to",
                Op::Remove => "removing from",
            };
            self.bar.set_message(format!("{doing} {name}"));
            for batch in members.chunks(self.batch_size) {
                self.cp.inflight = Some(Inflight {
                    group: group.clone(),
                    op,
                    members: batch.to_vec(),
                });
                self.save()?;
                match op {
                    Op::Add => self.dir.add_members(&group, batch).await,
                    Op::Remove => self.dir.remove_members(&group, batch).await,
                }
                .map_err(|f| {
                    anyhow!(
                        "{} (progress is saved in {}: run the same command again to resume)",
                        f.reason,
                        self.cp_path.display()
                    )
                })?;
                self.cp.inflight = None;
                self.cp.mark_done(op, &group, batch);
                self.cp.requests += 1;
                self.report.requests += 1;
                match op {
                    Op::Add => self.report.added += batch.len(),
                    Op::Remove => self.report.removed += batch.len(),
                }
                self.save()?;
                self.bar.inc(1);
            }
        }
        Ok(())
    }
}

/// Records the backfill in the ledger: each sales order as a purchase, each buyer with their
/// orders, Notion user id and the Groups they are now in, so the pipeline's next event for them
/// starts from the truth. Safe to repeat.
async fn record_ledger(
    ws: &Workspace,
    plan: &Plan,
    created: &BTreeMap<BuyerEmail, NotionUserId>,
    now: DateTime<Utc>,
) -> anyhow::Result<(usize, usize)> {
    let store = ws.ledger.store.clone();
    let store = &store;
    let catalog = &ws.config.catalog;
    let by_order = rows_by_order(&plan.sales);
    let mut orders_written = 0;
    for (key, rows) in &by_order {
        let wrote = retry_ledger(move || async move {
            let existing = store.order(key).await?;
            if existing.as_ref().is_some_and(|o| o.purchased_by.is_some()) {
                return Ok(false);
            }
            let next = order_from_rows(existing, key, rows, catalog);
            store.put_order(&next).await?;
            Ok(true)
        })
        .await?;
        orders_written += usize::from(wrote);
    }
    let mut buyers_written = 0;
    for b in &plan.buyers {
        let user = b.user_id.clone().or_else(|| created.get(&b.email).cloned());
        let user = &user;
        retry_ledger(move || async move {
            let mut rec = store
                .buyer(&b.email)
                .await?
                .unwrap_or_else(|| BuyerRecord::new(b.email.clone()));
            rec.orders.extend(b.orders.iter().cloned());
            if let Some(u) = user {
                if rec.notion_user_id.is_none() {
                    rec.notion_user_id = Some(u.clone());
                }
                rec.applied_groups.extend(b.desired.iter().cloned());
            }
            let keys: Vec<OrderKey> = rec.orders.iter().cloned().collect();
            let orders = store.orders(&keys).await?;
            rec.next_change_at = ledger::next_change(&orders, now);
            store.put_buyer(&rec).await?;
            Ok(())
        })
        .await?;
        buyers_written += 1;
    }
    // Removed members the ledger knows no longer hold what was removed.
    for g in &plan.groups {
        for m in &g.remove {
            retry_ledger(move || async move {
                let Some(email) = store.buyer_by_user(&m.user_id).await? else {
                    return Ok(());
                };
                let Some(mut rec) = store.buyer(&email).await? else {
                    return Ok(());
                };
                if rec.applied_groups.remove(&g.id) {
                    store.put_buyer(&rec).await?;
                }
                Ok(())
            })
            .await?;
        }
    }
    Ok((orders_written, buyers_written))
}

/// Retries a read-modify-write that lost a race with the pipeline (a transient failure).
async fn retry_ledger<T, F, Fut>(f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    retry(&LEDGER_RETRY, f)
        .await
        .map_err(|e| anyhow!("ledger: {}", e.reason))
}
