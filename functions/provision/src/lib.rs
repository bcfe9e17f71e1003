//! The provision stage. Per order event it claims the event's idempotency key, applies the event
//! to the entitlement ledger, makes the buyer's Notion Groups match the ledger through SCIM,
//! stores the buyer's Notion user id, asks align to write it into the sales database, and
//! completes the key. What each event, expiry pass and link did is recorded in the buyer's
//! history ([`enroll_core::history`]), best-effort.
//!
//! - [`Provisioner`]: the per-event pipeline and [`Provisioner::reconcile`], which the expiry pass
//!   and the operator tools reuse.
//! - [`link`]: [`Provisioner::link`], the seller's way to say two emails are one buyer.
//! - [`outbox`]: the outbound events a confirmed change of access produces, kept in the buyer's
//!   record until the notify queue has them.
//! - [`batch`]: one queue batch with partial failures; permanent failures are parked in the
//!   dead-letter queue with their reason, transient ones are left for redelivery.
//! - [`lambda`]: the Lambda wiring (environment, secrets, SDK clients, `SqsEvent`).

pub mod batch;
mod groups;
pub mod lambda;
pub mod link;
pub mod outbox;

pub use groups::GroupResolver;
pub use outbox::Trigger;

use chrono::{DateTime, Utc};
use enroll_core::catalog::GroupRef;
use enroll_core::clock::{Clock, SystemClock};
use enroll_core::config::{Config, Deprovision};
use enroll_core::event::{AlignRequest, EventKind, OrderEvent};
use enroll_core::history::{self, HistoryEntry, NoHistory, Stage};
use enroll_core::idempotency::{Claim, IdempotencyRecord};
use enroll_core::ids::{BuyerEmail, GroupId, NotionUserId};
use enroll_core::ledger::{self, Applied, BuyerRecord, GroupPlan, OrderRecord};
use enroll_core::metrics::{self, Function, Metric};
use enroll_core::outbound::DeliveryQueue;
use enroll_core::ports::{Created, Directory, HistoryLog, IdempotencyStore, LedgerStore, Queue};
use enroll_core::timings::StageTimings;
use enroll_core::Failure;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Links are followed this far; a longer chain can only come from a loop.
const MAX_LINK_HOPS: usize = 4;

/// What processing one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The event changed the ledger and Notion was brought in line.
    Applied(Reconciled),
    /// The event was recorded (e.g. a refund for an order not yet seen); nothing to provision.
    Recorded(String),
    /// The key was already completed: a duplicate delivery, nothing done.
    Duplicate,
}

/// What reconciling one buyer changed in Notion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub user: Option<NotionUserId>,
    pub created: bool,
    pub added: BTreeSet<GroupId>,
    pub removed: BTreeSet<GroupId>,
    pub removed_from_workspace: bool,
}

impl Outcome {
    fn summary(&self) -> String {
        match self {
            Outcome::Applied(r) => format!(
                "applied: {} Group(s) added, {} removed{}{}",
                r.added.len(),
                r.removed.len(),
                if r.created { ", member created" } else { "" },
                if r.removed_from_workspace {
                    ", member removed"
                } else {
                    ""
                }
            ),
            Outcome::Recorded(why) => format!("recorded: {why}"),
            Outcome::Duplicate => "duplicate".into(),
        }
    }
}

/// What one expiry pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExpiryReport {
    pub reconciled: usize,
    pub failed: usize,
    pub groups_added: usize,
    pub groups_removed: usize,
}

/// The align queue of a caller that only reconciles (the expiry function, `enroll link`):
/// reconciling never enqueues, so a send here is a wiring mistake and says so.
pub struct ReconcileOnly;

#[async_trait::async_trait]
impl Queue for ReconcileOnly {
    async fn send(&self, _body: &str) -> Result<(), Failure> {
        Err(Failure::permanent(
            "no align queue configured: this process only reconciles buyers",
        ))
    }
}

/// Everything provision needs, built once per process (per cold start on Lambda).
pub struct Provisioner {
    pub config: Arc<Config>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub ledger: Arc<dyn LedgerStore>,
    pub directory: Arc<dyn Directory>,
    pub align: Arc<dyn Queue>,
    pub groups: GroupResolver,
    pub timings: StageTimings,
    /// Every buyer's provisioning log; written best-effort, never failing an event.
    pub history: Arc<dyn HistoryLog>,
    /// Where "now" comes from when the caller does not say: the time a batch's events are
    /// applied at, the expiry pass of the expire function, the settle window of an uncertain
    /// change, history lines and `TimeToAccessMs`.
    pub clock: Arc<dyn Clock>,
    /// The notify queue, when `[[outbound]]` endpoints are configured ([`outbox`]).
    pub outbound: Option<Arc<dyn DeliveryQueue>>,
}

impl Provisioner {
    pub fn new(
        config: Arc<Config>,
        idempotency: Arc<dyn IdempotencyStore>,
        ledger: Arc<dyn LedgerStore>,
        directory: Arc<dyn Directory>,
        align: Arc<dyn Queue>,
    ) -> Self {
        Self {
            config,
            idempotency,
            ledger,
            // Inside a queue batch, adds to one Group become one PATCH (see `batch`).
            directory: batch::coalescing(directory),
            align,
            groups: GroupResolver::default(),
            timings: enroll_core::timings::PROVISION,
            history: Arc::new(NoHistory),
            clock: Arc::new(SystemClock),
            outbound: None,
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

    /// The lines a buyer's history gets for what a reconcile changed in Notion.
    pub fn changes(&self, r: &Reconciled) -> Vec<String> {
        let mut out = Vec::new();
        if r.created {
            out.push("member created".to_owned());
        }
        for g in &r.added {
            out.push(format!("added to Group {}", self.groups.label(g)));
        }
        for g in &r.removed {
            out.push(format!("removed from Group {}", self.groups.label(g)));
        }
        if r.removed_from_workspace {
            out.push("removed from workspace".to_owned());
        }
        out
    }

    /// Records in the buyer's history that the event was received (at ingest's time) and what
    /// provision made of it. Best-effort: a failure is logged and the event stands.
    async fn record_event(
        &self,
        event: &OrderEvent,
        buyer: Option<&BuyerEmail>,
        outcome: &Outcome,
    ) {
        let Some(buyer) = buyer.or(event.buyer.as_ref().map(|b| &b.email)) else {
            return;
        };
        let mut entries = Vec::new();
        if let Some(at) = event.accepted_at {
            entries.push(HistoryEntry::new(
                at,
                Stage::Ingest,
                format!(
                    "received and verified ({} {})",
                    event.order.platform.as_str(),
                    event.kind.as_str()
                ),
            ));
        }
        let now = self.clock.now();
        let line = |what: String| HistoryEntry::new(now, Stage::Provision, what);
        match outcome {
            Outcome::Duplicate => entries.push(line("duplicate delivery".into())),
            Outcome::Recorded(why) => entries.push(line(format!("recorded: {why}"))),
            Outcome::Applied(r) => {
                entries.push(line(format!(
                    "applied ({} of order {})",
                    event.kind.as_str(),
                    event.order
                )));
                entries.extend(self.changes(r).into_iter().map(line));
            }
        }
        history::record(self.history.as_ref(), buyer, entries).await;
    }

    /// Applies one event exactly once. `deadline` is when this invocation runs out of time: a
    /// claim left behind by a crash can be taken over after it.
    #[tracing::instrument(skip_all, fields(event_key = %event.key, kind = event.kind.as_str()), err)]
    pub async fn process(
        &self,
        event: &OrderEvent,
        now: DateTime<Utc>,
        deadline: DateTime<Utc>,
    ) -> Result<Outcome, Failure> {
        let key = event.key.as_string();
        let hash = event.payload_hash();
        let owner = uuid::Uuid::new_v4().to_string();
        let claim = IdempotencyRecord::in_progress(&key, &hash, &owner, now, deadline);
        match self.idempotency.claim(&claim, now).await? {
            Claim::Acquired => {}
            Claim::Completed(done) if done.payload_hash != hash => {
                return Err(Failure::permanent(
                    "event key already applied with a different payload: the platform reused an event id",
                ));
            }
            Claim::Completed(_) => {
                tracing::info!("duplicate delivery: already applied");
                self.record_event(event, None, &Outcome::Duplicate).await;
                metrics::count(Function::Provision, Metric::EventsDuplicate);
                return Ok(Outcome::Duplicate);
            }
            Claim::InProgress(held) => {
                let left = held.in_progress_expiration - now.timestamp_millis();
                return Err(Failure::held_for(
                    "another invocation is applying this event",
                    Some(std::time::Duration::from_millis(left.max(0) as u64)),
                ));
            }
        }
        match self.apply(event, now, deadline).await {
            Ok((outcome, buyer)) => {
                self.idempotency
                    .complete(&key, &owner, &outcome.summary())
                    .await?;
                tracing::info!(outcome = %outcome.summary(), "event applied");
                metrics::count(Function::Provision, Metric::EventsApplied);
                self.record_event(event, buyer.as_ref(), &outcome).await;
                Ok(outcome)
            }
            Err(failure) => {
                // Free the key so the redelivery can claim it at once; the effects so far are
                // idempotent and will be repeated safely.
                if let Err(e) = self.idempotency.release(&key, &owner).await {
                    tracing::warn!(error = %e, "could not release idempotency key; it expires at the deadline");
                }
                Err(failure)
            }
        }
    }

    /// What the event did, and the (canonical) buyer it did it to.
    async fn apply(
        &self,
        event: &OrderEvent,
        now: DateTime<Utc>,
        deadline: DateTime<Utc>,
    ) -> Result<(Outcome, Option<BuyerEmail>), Failure> {
        let catalog = &self.config.catalog;
        let mut order = self
            .ledger
            .order(&event.order)
            .await?
            .unwrap_or_else(|| OrderRecord::new(event.order.clone()));
        let changed = order.apply(event, catalog) == Applied::Changed;
        let Some(email) = order.buyer.clone() else {
            if changed {
                self.ledger.put_order(&order).await?;
            }
            let outcome = Outcome::Recorded(format!(
                "{} for an order not seen yet; kept so its purchase stays revoked",
                event.kind.as_str()
            ));
            return Ok((outcome, None));
        };
        if changed {
            order.version = self.ledger.put_order(&order).await?;
        }
        if !order.unknown_items.is_empty() && order.grants.is_empty() {
            tracing::warn!(
                items = ?order.unknown_items.iter().map(|i| i.as_str()).collect::<Vec<_>>(),
                "purchase of products the catalog does not know: recorded, not provisioned"
            );
        }
        let mut buyer = self.buyer_record(&email).await?;
        if let Some(name) = event.buyer.as_ref().and_then(|b| b.name.clone()) {
            buyer.name.get_or_insert(name);
        }
        buyer.orders.insert(order.order.clone());
        let trigger = Trigger::Event(event, &order);
        let reconciled = self
            .reconcile_record(&mut buyer, now, Some(deadline), trigger)
            .await?;
        if event.kind == EventKind::Purchase && !order.grants.is_empty() {
            if let Some(user) = &buyer.notion_user_id {
                self.request_align(event, &order, &buyer, user).await?;
            }
        }
        self.record_time_to_access(event, &order, &buyer, now);
        Ok((Outcome::Applied(reconciled), Some(buyer.email)))
    }

    /// The buyer record for an email, following seller-made links to the canonical buyer.
    async fn buyer_record(&self, email: &BuyerEmail) -> Result<BuyerRecord, Failure> {
        let mut email = email.clone();
        for _ in 0..MAX_LINK_HOPS {
            match self.ledger.buyer(&email).await? {
                Some(BuyerRecord {
                    alias_of: Some(canonical),
                    ..
                }) => email = canonical,
                Some(b) => return Ok(b),
                None => return Ok(BuyerRecord::new(email)),
            }
        }
        Err(Failure::permanent(
            "buyer links form a loop or a chain too long to follow: fix them with `enroll link`",
        ))
    }

    /// The expiry pass: reconciles every buyer whose access changes at or before `now` (a grant
    /// ended, or a follow-on grant began). A buyer that fails is reported and retried on the
    /// next pass, since their `next_change_at` stays due.
    #[tracing::instrument(skip_all, err)]
    pub async fn expire_due(&self, now: DateTime<Utc>) -> Result<ExpiryReport, Failure> {
        let mut report = ExpiryReport::default();
        for email in self.ledger.buyers_due(now).await? {
            match self.reconcile(&email, now).await {
                Ok(r) => {
                    report.reconciled += 1;
                    metrics::count(Function::Expire, Metric::ExpiryReconciled);
                    report.groups_added += r.added.len();
                    report.groups_removed += r.removed.len();
                    let changes = self.changes(&r);
                    if !changes.is_empty() {
                        let what = format!("access changed by expiry: {}", changes.join(", "));
                        let entry = HistoryEntry::new(self.clock.now(), Stage::Expire, what);
                        history::record(self.history.as_ref(), &email, vec![entry]).await;
                    }
                }
                Err(f) => {
                    tracing::warn!(buyer = %email, reason = %f.reason, "expiry reconcile failed; retried next pass");
                    report.failed += 1;
                }
            }
        }
        tracing::info!(
            reconciled = report.reconciled,
            failed = report.failed,
            "expiry pass done"
        );
        Ok(report)
    }

    /// Makes one buyer's Groups in Notion match the ledger at `now`, and stores the result.
    #[tracing::instrument(skip_all, fields(buyer = %email), err)]
    pub async fn reconcile(
        &self,
        email: &BuyerEmail,
        now: DateTime<Utc>,
    ) -> Result<Reconciled, Failure> {
        let mut buyer = self.buyer_record(email).await?;
        self.reconcile_record(&mut buyer, now, None, Trigger::Expiry)
            .await
    }

    /// Makes Notion match the ledger for one buyer. `sends_by` is the latest moment a request
    /// of this call may still be sent (the invocation's deadline): a PATCH can wait in a batch
    /// behind other events' requests before it leaves, so a lost answer may land up to that
    /// moment plus the settle window, not just the settle window after planning.
    pub(crate) async fn reconcile_record(
        &self,
        buyer: &mut BuyerRecord,
        now: DateTime<Utc>,
        sends_by: Option<DateTime<Utc>>,
        trigger: Trigger<'_>,
    ) -> Result<Reconciled, Failure> {
        // What a crash left in the outbox goes first, keeping the buyer's events in order.
        self.flush_outbox(buyer).await?;
        let before = buyer.applied_groups.clone();
        let keys: Vec<_> = buyer.orders.iter().cloned().collect();
        let orders = self.ledger.orders(&keys).await?;
        let mut desired = BTreeSet::new();
        for group in ledger::desired_groups(&orders, now) {
            desired.insert(self.groups.resolve(self.directory.as_ref(), &group).await?);
        }
        let mut plan = GroupPlan::between(&buyer.applied_groups, &desired);
        for group in buyer.pending_groups.keys() {
            if desired.contains(group) {
                plan.add.insert(group.clone());
            } else {
                plan.remove.insert(group.clone());
            }
        }
        let mut done = Reconciled::default();
        // Only a member enroll brought in is removed, and only on the change from some managed
        // Groups to none: later events for a buyer without access do not call SCIM again.
        let leaving = desired.is_empty()
            && self.config.provision.deprovision == Deprovision::Remove
            && buyer.member_added
            && !buyer.applied_groups.is_empty();

        let user = if plan.add.is_empty() {
            None
        } else {
            Some(self.ensure_member(buyer, &mut done).await?)
        };
        // Recorded before the PATCHes: a change whose answer is lost may still be applied by
        // Notion later, even after a later change of the same membership. Until it must have
        // landed, each reconcile sends the Group's wanted state again, and the expiry pass
        // comes back once more after that moment (see `settled`).
        let settled_before = buyer.pending_groups.clone();
        let planned = self.clock.now();
        let uncertain_until = sends_by.unwrap_or(planned).max(planned) + self.settle_window();
        let mut touched: Vec<GroupId> = plan.add.iter().cloned().collect();
        if buyer.notion_user_id.is_some() {
            touched.extend(plan.remove.iter().cloned());
        }
        for group in &touched {
            buyer.pending_groups.insert(group.clone(), uncertain_until);
        }
        if !touched.is_empty() {
            buyer.next_change_at = earliest(ledger::next_change(&orders, now), uncertain_until);
            buyer.version = self.ledger.put_buyer(buyer).await?;
        }
        if let Some(user) = user {
            // All at once: each add waits a round trip, and inside a batch they join the
            // batch's PATCHes together.
            let adds = plan.add.iter().map(|group| async {
                let added = self
                    .directory
                    .add_members(group, std::slice::from_ref(&user));
                added.await.map(|()| group.clone())
            });
            for added in futures::future::join_all(adds).await {
                done.added.insert(added?);
            }
        }
        if !plan.remove.is_empty() {
            if let Some(user) = buyer.notion_user_id.clone() {
                for group in &plan.remove {
                    self.directory
                        .remove_members(group, std::slice::from_ref(&user))
                        .await?;
                    done.removed.insert(group.clone());
                }
            }
        }
        if leaving {
            if let Some(user) = buyer.notion_user_id.clone() {
                match self.directory.get_user(&user).await? {
                    Some(u) if u.is_privileged() => {
                        tracing::warn!(
                            "last grant ended for an owner or admin: left in the workspace"
                        )
                    }
                    Some(_) => {
                        self.directory.remove_user(&user).await?;
                        buyer.member_added = false;
                        done.removed_from_workspace = true;
                    }
                    None => {}
                }
            }
        }
        buyer.applied_groups = desired;
        // What was sent now got its answer; what an earlier lost change may still overturn
        // stays uncertain until its moment, and brings the buyer back then.
        let after = self.clock.now();
        buyer.pending_groups = settled_before
            .into_iter()
            .filter(|(_, until)| *until > after)
            .collect();
        buyer.next_change_at = ledger::next_change(&orders, now);
        if let Some(until) = buyer.pending_groups.values().min() {
            buyer.next_change_at = earliest(buyer.next_change_at, *until);
        }
        done.user = buyer.notion_user_id.clone();
        self.note_change(buyer, &before, trigger, after);
        buyer.version = self.ledger.put_buyer(buyer).await?;
        self.flush_outbox(buyer).await?;
        Ok(done)
    }

    /// How long Notion may still apply a change whose answer was lost: twice the time the
    /// client waits for an answer.
    fn settle_window(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(2 * self.config.scim.timeout_secs.max(1) as i64)
    }

    /// The buyer's Notion user id, adding the member when needed. A stored id comes first, as
    /// it survives a change of email: it is trusted while enroll has Groups applied, and a
    /// buyer coming back from no Groups is checked once, as they may have left the workspace.
    async fn ensure_member(
        &self,
        buyer: &mut BuyerRecord,
        done: &mut Reconciled,
    ) -> Result<NotionUserId, Failure> {
        if let Some(id) = &buyer.notion_user_id {
            if !buyer.applied_groups.is_empty() {
                return Ok(id.clone());
            }
            match self.directory.get_user(id).await? {
                Some(u) if u.active => return Ok(u.id),
                // Deactivated: a POST with the account's current userName brings this same
                // account back, even when its email changed since the buyer paid.
                Some(u) => {
                    if let Ok(current) = BuyerEmail::parse(&u.user_name) {
                        return self.add_to_workspace(buyer, &current, done).await;
                    }
                }
                None => {}
            }
        }
        // A new buyer costs one request fewer when the member is asked for at once: POST
        // answers 409 for an existing member, which add_to_workspace then looks up. Only when
        // enroll may remove members later must it look first: a POST that succeeded for
        // someone already a member would mark them as added by enroll.
        if self.config.provision.deprovision == Deprovision::Keep {
            let email = buyer.email.clone();
            return self.add_to_workspace(buyer, &email, done).await;
        }
        match self.directory.find_user(&buyer.email).await? {
            Some(u) if u.active => {
                buyer.notion_user_id = Some(u.id.clone());
                Ok(u.id)
            }
            // Absent, or deactivated: POST adds the account (back) to the workspace.
            _ => {
                let email = buyer.email.clone();
                self.add_to_workspace(buyer, &email, done).await
            }
        }
    }

    async fn add_to_workspace(
        &self,
        buyer: &mut BuyerRecord,
        user_name: &BuyerEmail,
        done: &mut Reconciled,
    ) -> Result<NotionUserId, Failure> {
        let user = match self
            .directory
            .create_user(user_name, buyer.name.as_deref())
            .await?
        {
            Created::Created(u) => {
                done.created = true;
                buyer.member_added = true;
                u
            }
            Created::AlreadyExists => {
                self.directory.find_user(user_name).await?.ok_or_else(|| {
                    Failure::transient(
                        "SCIM answered 409 on create but the member is not found yet",
                    )
                })?
            }
        };
        buyer.notion_user_id = Some(user.id.clone());
        Ok(user.id)
    }

    async fn request_align(
        &self,
        event: &OrderEvent,
        order: &OrderRecord,
        buyer: &BuyerRecord,
        user: &NotionUserId,
    ) -> Result<(), Failure> {
        let mut products: Vec<_> = order.grants.iter().map(|g| g.product.clone()).collect();
        products.dedup();
        let request = AlignRequest {
            source: event.key.clone(),
            order: order.order.clone(),
            email: buyer.email.clone(),
            name: buyer.name.clone(),
            notion_user_id: user.clone(),
            products,
        };
        let body = serde_json::to_string(&request)
            .map_err(|e| Failure::permanent(format!("align request does not serialise: {e}")))?;
        self.align
            .send(&body)
            .await
            .map_err(|f| f.context("enqueue align"))
    }
}

fn earliest(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Provisioner {
    /// Records `TimeToAccessMs` for a purchase whose buyer is now a member of every Group the
    /// order grants at `now`: from the moment ingest accepted the webhook (it travels with the
    /// event) to now. The Groups were resolved by the reconcile just done, so this asks
    /// nothing of Notion.
    fn record_time_to_access(
        &self,
        event: &OrderEvent,
        order: &OrderRecord,
        buyer: &BuyerRecord,
        now: DateTime<Utc>,
    ) {
        let Some(accepted_at) = event.accepted_at else {
            return;
        };
        if event.kind != EventKind::Purchase
            || order.revoked.is_some()
            || buyer.notion_user_id.is_none()
        {
            return;
        }
        let granted: Vec<&GroupRef> = order
            .grants
            .iter()
            .filter(|g| g.is_current(now))
            .flat_map(|g| &g.groups)
            .collect();
        let cached = |g: &GroupRef| match g {
            GroupRef::Id(id) => Some(id.clone()),
            GroupRef::Name(n) => self
                .groups
                .cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(n)
                .cloned(),
        };
        let member_of_all = !granted.is_empty()
            && granted
                .iter()
                .all(|g| cached(g).is_some_and(|id| buyer.applied_groups.contains(&id)));
        if member_of_all {
            let waited = (self.clock.now() - accepted_at).num_milliseconds().max(0) as u64;
            metrics::observe(Function::Provision, Metric::TimeToAccessMs, waited);
        }
    }
}
