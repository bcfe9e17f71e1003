//! The align stage: per [`AlignRequest`], find the buyer's row in the seller's sales/students
//! database (by order id, then by Notion user id, then by email), create it when missing, and
//! write the buyer's Notion user id into it. Idempotent by content: a row that already holds the
//! id is left alone, so a second run changes nothing.
//!
//! # One row per buyer
//!
//! Two align requests for one buyer running at once (two purchases, or a redelivery racing the
//! original on another instance) would both find no row and both create one. So each request
//! first takes the buyer's *lease*: a claim in the idempotency store under the buyer's key that
//! lasts one function timeout. A request that finds the lease held is deferred until it runs
//! out ([`enroll_core::timings`]), without counting as a failed receive. And a create whose
//! answer was lost (a timeout, a 5xx after the write) is followed by a lookup by order id and
//! Notion user id before anything is created again.
//!
//! What a request did to the sales record is recorded in the buyer's history, best-effort.
//!
//! - [`Aligner`]: the per-request logic over the [`SalesDatabase`] port.
//! - [`lambda`]: the Lambda wiring (SQS event source, partial batch responses).

pub mod lambda;

use chrono::TimeDelta;
use enroll_core::batch::{self, BatchReport, Incoming};
use enroll_core::clock::{Clock, SystemClock};
use enroll_core::event::AlignRequest;
use enroll_core::history::{self, HistoryEntry, NoHistory, Stage};
use enroll_core::idempotency::{Claim, IdempotencyRecord};
use enroll_core::ids::BuyerEmail;
use enroll_core::metrics::{self, Function, Metric};
use enroll_core::ports::{
    DeadLetters, HistoryLog, IdempotencyStore, NewSalesRecord, SalesDatabase, SalesRecord,
};
use enroll_core::timings::{self, StageTimings};
use enroll_core::Failure;
use std::sync::Arc;
use std::time::Duration;

/// What aligning one request did to the sales database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aligned {
    Created,
    Updated,
    Unchanged,
}

pub struct Aligner {
    pub sales: Arc<dyn SalesDatabase>,
    /// Where per-buyer leases are claimed: the same store, and the same rules, as event keys.
    pub leases: Arc<dyn IdempotencyStore>,
    pub timings: StageTimings,
    /// Every buyer's provisioning log; written best-effort, never failing a request.
    pub history: Arc<dyn HistoryLog>,
    /// When a lease is taken and runs out, and the time of history lines.
    pub clock: Arc<dyn Clock>,
}

/// How soon a request that found the buyer's lease held looks again (plus the stage's
/// deferral margin).
const LEASE_RECHECK: Duration = Duration::from_secs(1);

/// The lease key of a buyer. The table already holds the buyer's record under the address.
fn lease_key(email: &BuyerEmail) -> String {
    format!("align-lease#{}", email.as_str())
}

impl Aligner {
    pub fn new(sales: Arc<dyn SalesDatabase>, leases: Arc<dyn IdempotencyStore>) -> Self {
        Self {
            sales,
            leases,
            timings: timings::ALIGN,
            history: Arc::new(NoHistory),
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads the time from `clock` (the wall clock by default).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps buyers' histories in `history`.
    pub fn with_history(mut self, history: Arc<dyn HistoryLog>) -> Self {
        self.history = history;
        self
    }

    /// Aligns one request while holding the buyer's lease.
    #[tracing::instrument(skip_all, fields(event_key = %req.source, order = %req.order), err)]
    pub async fn align(&self, req: &AlignRequest) -> Result<Aligned, Failure> {
        let key = lease_key(&req.email);
        let owner = uuid::Uuid::new_v4().to_string();
        let now = self.clock.now();
        let until = now + TimeDelta::from_std(self.timings.claim).unwrap_or(TimeDelta::seconds(30));
        let lease = IdempotencyRecord::in_progress(&key, "align", &owner, now, until);
        match self.leases.claim(&lease, now).await? {
            Claim::Acquired => {}
            // A lease is never completed, only released; a completed record under this key
            // is not ours to trust, so it is waited out like a held one.
            Claim::InProgress(held) | Claim::Completed(held) => {
                // A live holder releases within a second or so, a dead one at the lease's
                // end: look again soon, never later than the end. Deferrals cost no receive.
                let left = Duration::from_millis(
                    (held.in_progress_expiration - now.timestamp_millis()).max(0) as u64,
                );
                return Err(Failure::held_for(
                    "another align request for this buyer is running",
                    Some(left.min(LEASE_RECHECK)),
                ));
            }
        }
        let result = self.align_leased(req).await;
        if let Ok(outcome) = &result {
            let what = match outcome {
                Aligned::Created => "sales record created",
                Aligned::Updated => "sales record updated",
                Aligned::Unchanged => "sales record unchanged",
            };
            let entry = HistoryEntry::new(self.clock.now(), Stage::Align, what);
            history::record(self.history.as_ref(), &req.email, vec![entry]).await;
        }
        // Release even after a failure, so the retry need not wait out the lease; a release
        // that fails only delays the next request until the lease expires.
        if let Err(e) = self.leases.release(&key, &owner).await {
            tracing::warn!(error = %e, "could not release the buyer's align lease; it expires by itself");
        }
        result
    }

    /// The buyer's existing row: by order id, then by Notion user id (a row this buyer got
    /// from another order, or from a create whose answer was lost), then by email.
    async fn find(&self, req: &AlignRequest) -> Result<Option<SalesRecord>, Failure> {
        self.sales
            .find_row(req.order.order_id.as_str(), &req.notion_user_id, &req.email)
            .await
    }

    async fn align_leased(&self, req: &AlignRequest) -> Result<Aligned, Failure> {
        let order_id = req.order.order_id.as_str();
        let found = self.find(req).await?;
        let outcome = match found {
            Some(r) if r.notion_user_id.as_deref() == Some(req.notion_user_id.as_str()) => {
                Aligned::Unchanged
            }
            Some(r) => {
                self.sales
                    .set_user_id(&r.page_id, &req.notion_user_id)
                    .await?;
                Aligned::Updated
            }
            None => {
                let products = req
                    .products
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let title = req
                    .name
                    .clone()
                    .unwrap_or_else(|| req.email.as_str().to_owned());
                let created = self
                    .sales
                    .create(&NewSalesRecord {
                        title: &title,
                        email: &req.email,
                        order_id,
                        notion_user_id: &req.notion_user_id,
                        products: &products,
                    })
                    .await;
                match created {
                    Ok(_) => Aligned::Created,
                    // The answer was lost but the row may exist: look before the retry
                    // creates a second one. A lookup that fails too leaves the retry to the
                    // queue, whose next attempt starts with the same lookups.
                    Err(e) if e.is_retryable() => match self.find(req).await {
                        Ok(Some(_)) => {
                            tracing::info!("create answer lost, but the row exists");
                            Aligned::Created
                        }
                        _ => return Err(e),
                    },
                    Err(e) => return Err(e),
                }
            }
        };
        tracing::info!(outcome = ?outcome, "sales record aligned");
        if outcome != Aligned::Unchanged {
            metrics::count(Function::Align, Metric::RecordsAligned);
        }
        Ok(outcome)
    }

    /// One queue batch of align requests. Requests for different buyers run at once, so the
    /// budget stays busy while each waits on Notion's answer; one buyer's requests run in
    /// order, as they would only wait on each other's lease.
    pub async fn run_batch(&self, dead: &dyn DeadLetters, messages: &[Incoming]) -> BatchReport {
        batch::run_in_lanes(
            messages,
            dead,
            &self.timings,
            |req: &AlignRequest| vec![lease_key(&req.email)],
            |req: AlignRequest| async move { self.align(&req).await.map(drop) },
        )
        .await
    }
}
