//! [`DynamoRateBudget`]: one Notion request budget per token, shared by every Lambda instance
//! through one item of the enroll table.
//!
//! # The item
//!
//! `pk = rate#<short sha256 of the token>`, `sk = rate`, holding a *schedule*:
//! `next_at` (N, epoch µs: the first point of the shared schedule nobody has taken yet) and
//! `blocked_until` (N, epoch µs: nobody sends before it, set after a 429).
//!
//! The schedule is a line of *points* one interval `T = 1/rate` apart (`T` rounded up to a
//! whole µs, so the rate is never exceeded by rounding). Taking `k` points is one unconditional
//! `UpdateItem`: `SET next_at = if_not_exists(next_at, :floor) + k·T` with `ALL_NEW`, which the
//! table applies atomically and never refuses, however many instances take at once. The write
//! that moves `next_at` from `e - k·T` to `e` owns the points `e - k·T, …, e - T`: the
//! (linearisable) writes cut the line into disjoint pieces, so a lease is exactly one write even
//! under contention. There is no version to race on and no lost race to recompute.
//!
//! # From points to slots
//!
//! A point `p` taken at local time `now` becomes the *slot* `max(p, now)`, the moment its
//! caller may send; points older than `floor = max(now - L, blocked_until)`, with
//! `L = (burst - 1)·T`, are thrown away. Those are the tokens a full bucket would have let
//! overflow: a schedule that lags `L` behind `now` is a bucket holding its whole burst, which
//! the first `burst` usable points spend at once (all at `now`), and nothing older.
//!
//! # Moving the schedule forward after an idle period
//!
//! When the bucket has been idle, `next_at` lies far in the past and a take would hand back
//! only overflowed points. So when the item as this instance last saw it says even the last
//! point of a take would be too old (`next_at + (k-1)·T < floor`), the lease is instead one
//! *conditional* write, `SET next_at = floor + k·T` if `next_at <= floor` and no pause later
//! than the one this instance knows of is stored, and it owns `floor, …, floor + (k-1)·T`.
//! Only an idle item passes that condition, so a busy schedule is never restarted.
//!
//! The guess is made from this instance's last view, so it is exact for an instance working
//! alone: one write per lease, busy or idle. Under contention, an instance that last saw a
//! queue kept up by others too (its points started ahead of the clock, and someone had taken
//! since its previous lease) trusts that queue for a second (`QUEUE_OUTLIVES_US`) past the
//! end it saw and takes: its callers come back within that time, so every lease is one write.
//! A wrong guess costs one more write, never a wrong slot: a restart refused (the bucket got busy)
//! returns the item (`ALL_OLD`) and the lease takes; a take that finds nothing usable (the
//! bucket went idle meanwhile) restarts. A lease gives up after `MAX_TRIES` (4) writes, and
//! the caller paces itself locally.
//!
//! # Why the rate holds across instances
//!
//! Invariants, whatever the interleaving of instances:
//! 1. `next_at` never decreases (a take adds, a restart and a pause only move it forward past
//!    every point already owned), so points owned by different writes never coincide, and any
//!    two points handed out are at least `T` apart.
//! 2. Every slot `s` of a point `p` has `p <= s <= p + L`, and `s >= blocked_until` as known
//!    to the instance that leased it.
//!
//! So the slots in any window `[a, a + W]` come from points in `[a - L, a + W]`, at most
//! `(W + L)/T + 1 <= burst + rate·W` of them: exactly a token bucket of capacity `burst` and
//! refill `rate`. A caller never sends before its slot; a slot left unused longer than `grace`
//! (at most one interval, 50 ms at most) is thrown away rather than spent late, so sends in a
//! window use slots from at most `grace` earlier: at most `burst + 1 + rate·W` requests in any
//! window, across any number of instances.
//!
//! # Few DynamoDB requests
//!
//! An instance reserves slots for all its callers waiting at that moment (a *lease*), up to a
//! quarter second of the rate: at 3 requests/s that is one write per Notion request, at 100/s
//! one write per up to 25 requests. Only one task per instance talks to the table at a time; the
//! others wait for its lease. [`DynamoRateBudget::table_writes`] and
//! [`DynamoRateBudget::leases`] count both, for `enroll bench` and tests.
//!
//! # 429s
//!
//! [`RateBudget::back_off`] pauses this instance at once and writes `blocked_until` (never
//! shortening one already there), moving `next_at` up to it when it was earlier: points start
//! again at `blocked_until`, one per interval, with no burst on resuming. Other instances see
//! it at their next lease (`ALL_NEW` carries it), and a caller whose slot was reserved over a
//! second ago re-reads the item before sending, so a long wait cannot carry it across someone
//! else's pause. Slots before a known pause are thrown away.
//!
//! Clocks: instances compare wall-clock times. Lambda's clocks are kept by NTP to within
//! milliseconds; an instance whose clock runs ahead by `δ` can restart an idle schedule `δ`
//! early, i.e. over-spend by `δ·rate` once; one that runs behind takes points that look
//! later to it, which only slows it.

use crate::error::classify;
use crate::item::{n, s, Item};
use crate::schema::{PK, SK};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use enroll_core::config::{RateLimit, Secret};
use enroll_core::ports::RateBudget;
use enroll_core::redact::short_hash;
use enroll_core::Failure;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

pub(crate) const SK_RATE: &str = "rate";
const NEXT_AT: &str = "next_at";
const BLOCKED_UNTIL: &str = "blocked_until";
/// The expression names of the two attributes.
const N: (&str, &str) = ("#n", NEXT_AT);
const B: (&str, &str) = ("#b", BLOCKED_UNTIL);

/// A lease covers at most this much of the rate.
const LEASE_SPAN_SECS: f64 = 0.25;
const LEASE_MAX: usize = 100;
/// Longest a reserved slot may lie unused before it is thrown away.
const GRACE_MAX_US: i64 = 50_000;
/// An instance that last saw callers queueing assumes for this long past the end of the
/// schedule it saw that other instances kept the queue going, and takes rather than restarts.
const QUEUE_OUTLIVES_US: i64 = 1_000_000;
/// A slot reserved longer ago than this is checked against `blocked_until` before it is used.
const RECHECK_US: i64 = 1_000_000;
/// Writes one lease may make before it gives up (and the caller paces itself locally once):
/// a lease is one write, two after a wrong guess about an idle bucket, more only when pauses
/// land in between.
const MAX_TRIES: u32 = 4;

/// The partition key of the budget item for a token: a short hash, never the token.
pub fn rate_pk(token: &Secret) -> String {
    format!("rate#{}", short_hash(token.expose().as_bytes()))
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The budget item as last seen; a missing attribute reads as 0 (long ago).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Schedule {
    next_at: i64,
    blocked_until: i64,
}

impl Schedule {
    fn from_item(item: &Item) -> Self {
        let num = |name: &str| match item.get(name) {
            Some(AttributeValue::N(v)) => v.parse::<f64>().map_or(0, |v| v as i64),
            _ => 0,
        };
        Self {
            next_at: num(NEXT_AT),
            blocked_until: num(BLOCKED_UNTIL),
        }
    }

    /// Both fields only move forward; a late answer never takes a newer one back.
    fn merge(self, other: Schedule) -> Schedule {
        Schedule {
            next_at: self.next_at.max(other.next_at),
            blocked_until: self.blocked_until.max(other.blocked_until),
        }
    }
}

/// One write a lease makes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    /// Unconditional: `next_at = if_not_exists(next_at, floor) + span`.
    Take { floor: i64, span: i64 },
    /// Conditional on `next_at <= floor`: `next_at = floor + span`.
    Restart { floor: i64, span: i64 },
}

/// The fixed numbers of one budget's schedule, all in µs.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// One point per `interval`: `1/rate`, rounded up.
    interval: i64,
    /// How far behind `now` a point may lie and still be used: `(burst - 1)·interval`.
    tolerance: i64,
}

impl Pace {
    fn new(rate: f64, burst: u32) -> Self {
        let interval = ((1e6 / rate).ceil() as i64).max(1);
        Self {
            interval,
            tolerance: i64::from(burst.max(1) - 1) * interval,
        }
    }

    /// The oldest point still usable at `now`.
    fn floor(&self, now: i64, blocked_until: i64) -> i64 {
        (now - self.tolerance).max(blocked_until)
    }

    /// The write a lease of `k` makes, given the item as last seen (`None`: never seen) and
    /// whether callers were queueing then.
    fn plan(&self, seen: Option<Schedule>, queued: bool, now: i64, blocked: i64, k: usize) -> Plan {
        let floor = self.floor(now, blocked);
        let span = k as i64 * self.interval;
        // A queue seen lately is most likely still there, kept up by other instances.
        let trust = if queued { QUEUE_OUTLIVES_US } else { 0 };
        match seen {
            // Even the last point a take would own is too old, unless someone took since:
            // restart.
            Some(s) if s.next_at + span - self.interval + trust < floor => {
                Plan::Restart { floor, span }
            }
            _ => Plan::Take { floor, span },
        }
    }

    /// Whether a write of `plan` at `now`, by an instance that had last seen `seen`, came back
    /// showing a queue that other instances share: callers queueing (its first point, or the
    /// first free point when refused, still ahead of `now`) and someone else having written
    /// since `seen` (the item moved on without us). A queue this instance keeps alone tells
    /// nothing about others, and its own view of it is exact.
    fn queued(&self, seen: Option<Schedule>, plan: Plan, written: &Written, now: i64) -> bool {
        let (Plan::Take { span, .. } | Plan::Restart { span, .. }) = plan;
        let (Written::Done(after) | Written::Refused(after)) = written;
        let others = match (plan, written) {
            (Plan::Take { .. }, _) => seen.is_none_or(|s| after.next_at - span != s.next_at),
            (Plan::Restart { .. }, Written::Done(_)) => false,
            (Plan::Restart { .. }, Written::Refused(_)) => true,
        };
        others && after.next_at - span > now
    }

    /// The slots a write of `plan`, planned at `now` knowing of a pause until `blocked_until`,
    /// granted, given what it came back with. Empty: try again with what it came back with.
    fn granted(&self, plan: Plan, written: &Written, now: i64, blocked_until: i64) -> Vec<i64> {
        match (plan, written) {
            (Plan::Take { span, .. }, Written::Done(after) | Written::Refused(after)) => {
                let floor = self.floor(now, blocked_until.max(after.blocked_until));
                self.slots(after.next_at - span, after.next_at, now, floor)
            }
            (Plan::Restart { floor, span }, Written::Done(_)) => {
                self.slots(floor, floor + span, now, floor)
            }
            // Someone used the bucket since, or paused it.
            (Plan::Restart { .. }, Written::Refused(_)) => Vec::new(),
        }
    }

    /// The slots of the points `[from, to)` leased at `now`: too old ones thrown away, the
    /// rest no earlier than `now`.
    fn slots(&self, from: i64, to: i64, now: i64, floor: i64) -> Vec<i64> {
        (from..to)
            .step_by(self.interval as usize)
            .filter(|p| *p >= floor)
            .map(|p| p.max(now))
            .collect()
    }
}

#[derive(Debug)]
struct Local {
    /// Moments reserved in the shared schedule and not yet handed to a caller, in order.
    slots: VecDeque<i64>,
    /// When the slots at the front were reserved.
    reserved_at: i64,
    /// The item as last written or read.
    seen: Option<Schedule>,
    /// Whether callers of other instances were queueing too when it was last seen.
    queued: bool,
    /// The latest pause this instance knows of, its own or another instance's.
    blocked_until: i64,
    /// Local pacing while the table cannot be reached.
    fallback_next: i64,
}

/// A [`RateBudget`] shared by every process holding the same token and table.
pub struct DynamoRateBudget {
    client: Client,
    table: String,
    pk: String,
    rate: f64,
    burst: f64,
    pace: Pace,
    lease_max: usize,
    grace_us: i64,
    local: Mutex<Local>,
    /// One lease at a time per instance: the others wait for it instead of racing each other.
    leasing: tokio::sync::Mutex<()>,
    /// Callers waiting for a slot: the size of the next lease.
    waiting: AtomicUsize,
    /// DynamoDB requests made (reads and writes), writes alone, and leases that got slots.
    table_requests: AtomicU64,
    table_writes: AtomicU64,
    leases: AtomicU64,
}

impl std::fmt::Debug for DynamoRateBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoRateBudget")
            .field("table", &self.table)
            .field("pk", &self.pk)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

/// Decrements the waiting count however the wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a write came back with: the item after it, or, when its condition failed, the item
/// that made it fail.
enum Written {
    Done(Schedule),
    Refused(Schedule),
}

impl DynamoRateBudget {
    /// The budget of `token`, kept in `table`, at that token's limit (`config.rate.scim()` for
    /// the SCIM token, `config.rate.api()` for the integration token).
    ///
    /// # Panics
    /// If the rate is not a positive finite number; configuration validation refuses such a
    /// value before it gets here.
    pub fn new(client: Client, table: impl Into<String>, token: &Secret, limit: RateLimit) -> Self {
        let rate = limit.requests_per_second;
        assert!(
            rate.is_finite() && rate > 0.0,
            "requests_per_second must be positive and finite"
        );
        let pace = Pace::new(rate, limit.burst);
        Self {
            client,
            table: table.into(),
            pk: rate_pk(token),
            rate,
            burst: f64::from(limit.burst.max(1)),
            pace,
            lease_max: ((rate * LEASE_SPAN_SECS).floor() as usize).clamp(1, LEASE_MAX),
            grace_us: pace.interval.min(GRACE_MAX_US),
            local: Mutex::new(Local {
                slots: VecDeque::new(),
                reserved_at: 0,
                seen: None,
                queued: false,
                blocked_until: 0,
                fallback_next: 0,
            }),
            leasing: tokio::sync::Mutex::new(()),
            waiting: AtomicUsize::new(0),
            table_requests: AtomicU64::new(0),
            table_writes: AtomicU64::new(0),
            leases: AtomicU64::new(0),
        }
    }

    /// DynamoDB requests this instance has made, reads included.
    pub fn table_requests(&self) -> u64 {
        self.table_requests.load(Ordering::Relaxed)
    }

    /// DynamoDB writes this instance has made (refused conditional writes included: they are
    /// billed too).
    pub fn table_writes(&self) -> u64 {
        self.table_writes.load(Ordering::Relaxed)
    }

    /// Leases this instance has taken: each handed out up to [`Self::lease_max`] slots.
    pub fn leases(&self) -> u64 {
        self.leases.load(Ordering::Relaxed)
    }

    /// The most slots one write reserves.
    pub fn lease_max(&self) -> usize {
        self.lease_max
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        // A few numbers updated together; a panic elsewhere cannot leave them torn.
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self) -> Item {
        Item::from([(PK.to_owned(), s(&self.pk)), (SK.to_owned(), s(SK_RATE))])
    }

    /// The next reserved slot still worth using, and when it was reserved.
    fn pop_slot(&self) -> Option<(i64, i64)> {
        let now = now_us();
        let mut l = self.local();
        while let Some(&slot) = l.slots.front() {
            l.slots.pop_front();
            // Late slots are dropped, not spent: spending them would bunch requests.
            if slot + self.grace_us >= now && slot >= l.blocked_until {
                return Some((slot, l.reserved_at));
            }
        }
        None
    }

    /// An `UpdateItem` of the budget item returning the item after it; `conditional` ones
    /// also return the item that refused them. Names `#n` and `#b` are the attributes the
    /// expressions use (DynamoDB refuses a name no expression uses).
    fn update(&self, names: &[(&str, &str)], conditional: bool) -> UpdateItemFluentBuilder {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key()))
            .return_values(ReturnValue::AllNew);
        for (alias, name) in names {
            req = req.expression_attribute_names(*alias, *name);
        }
        if conditional {
            req = req.return_values_on_condition_check_failure(
                ReturnValuesOnConditionCheckFailure::AllOld,
            );
        }
        req
    }

    /// Sends one write and remembers what it returned.
    async fn write(&self, req: UpdateItemFluentBuilder) -> Result<Written, Failure> {
        self.table_requests.fetch_add(1, Ordering::Relaxed);
        self.table_writes.fetch_add(1, Ordering::Relaxed);
        let written = match req.send().await {
            Ok(out) => Written::Done(
                out.attributes()
                    .map(Schedule::from_item)
                    .unwrap_or_default(),
            ),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                    Written::Refused(refused.item().map(Schedule::from_item).unwrap_or_default())
                }
                _ => return Err(classify("UpdateItem", e).into()),
            },
        };
        let (Written::Done(item) | Written::Refused(item)) = &written;
        self.remember(*item);
        Ok(written)
    }

    fn remember(&self, b: Schedule) {
        let mut l = self.local();
        l.blocked_until = l.blocked_until.max(b.blocked_until);
        l.seen = Some(l.seen.map_or(b, |seen| seen.merge(b)));
    }

    /// Reserves up to `k` slots in the shared schedule: one write, unless this instance
    /// guessed wrong about an idle bucket.
    async fn lease(&self, k: usize) -> Result<Vec<i64>, Failure> {
        for _ in 0..MAX_TRIES {
            let now = now_us();
            let (seen, queued, blocked) = {
                let l = self.local();
                (l.seen, l.queued, l.blocked_until)
            };
            let plan = self.pace.plan(seen, queued, now, blocked, k);
            let req = match plan {
                Plan::Take { floor, span } => self
                    .update(&[N], false)
                    .update_expression("SET #n = if_not_exists(#n, :floor) + :span")
                    .expression_attribute_values(":floor", n(floor))
                    .expression_attribute_values(":span", n(span)),
                Plan::Restart { floor, span } => self
                    .update(&[N, B], true)
                    .update_expression("SET #n = :next")
                    .condition_expression(
                        "(attribute_not_exists(#n) OR #n <= :floor) \
                         AND (attribute_not_exists(#b) OR #b <= :blocked)",
                    )
                    .expression_attribute_values(":next", n(floor + span))
                    .expression_attribute_values(":floor", n(floor))
                    .expression_attribute_values(":blocked", n(blocked)),
            };
            let written = self.write(req).await?;
            let slots = self.pace.granted(plan, &written, now, blocked);
            self.local().queued = self.pace.queued(seen, plan, &written, now);
            if !slots.is_empty() {
                self.leases.fetch_add(1, Ordering::Relaxed);
                return Ok(slots);
            }
        }
        Err(Failure::transient(format!(
            "rate budget: no usable slot after {MAX_TRIES} writes to the budget item"
        )))
    }

    /// Re-reads the item for a pause set by another instance.
    async fn refresh(&self) -> Result<(), Failure> {
        self.table_requests.fetch_add(1, Ordering::Relaxed);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        if let Some(item) = out.item() {
            self.remember(Schedule::from_item(item));
        }
        Ok(())
    }

    /// A slot for one request, leasing more when none is left.
    async fn slot(&self) -> (i64, i64) {
        let _waiting = Waiting::enter(&self.waiting);
        loop {
            if let Some(slot) = self.pop_slot() {
                return slot;
            }
            let _lease = self.leasing.lock().await;
            if let Some(slot) = self.pop_slot() {
                return slot;
            }
            let k = self.waiting.load(Ordering::SeqCst).clamp(1, self.lease_max);
            match self.lease(k).await {
                Ok(slots) => {
                    let mut l = self.local();
                    l.slots.extend(slots);
                    l.reserved_at = now_us();
                }
                Err(f) => {
                    // The budget must never stop provisioning outright: pace this instance
                    // alone at the full rate; a 429 still slows it through back_off.
                    tracing::warn!(reason = %f.reason, "rate budget table unavailable: pacing locally");
                    let now = now_us();
                    let mut l = self.local();
                    let slot = now.max(l.fallback_next).max(l.blocked_until);
                    l.fallback_next = slot + self.pace.interval;
                    return (slot, now);
                }
            }
        }
    }

    /// Waits for a slot like [`RateBudget::acquire`] and returns it (epoch µs): the moment
    /// the caller was let through, for tests and the bench to check the schedule.
    pub async fn acquire_slot(&self) -> i64 {
        loop {
            let (slot, reserved_at) = self.slot().await;
            sleep_until_us(slot).await;
            if slot - reserved_at > RECHECK_US {
                if let Err(f) = self.refresh().await {
                    tracing::warn!(reason = %f.reason, "rate budget: could not re-read the pause");
                }
            }
            // A pause that arrived while we slept moves us behind it too.
            let blocked_until = self.local().blocked_until;
            if slot >= blocked_until {
                return slot;
            }
            sleep_until_us(blocked_until).await;
        }
    }

    /// Shares a pause until `until`: `blocked_until` never goes back, and the schedule moves
    /// up to it so no point before it is handed out again.
    async fn share_pause(&self, until: i64) -> Result<(), Failure> {
        let both = self
            .update(&[N, B], true)
            .update_expression("SET #n = :until, #b = :until")
            .condition_expression(
                "(attribute_not_exists(#n) OR #n < :until) \
                 AND (attribute_not_exists(#b) OR #b < :until)",
            )
            .expression_attribute_values(":until", n(until));
        let Written::Refused(stored) = self.write(both).await? else {
            return Ok(());
        };
        if stored.blocked_until >= until {
            return Ok(());
        }
        // The schedule already runs past the pause: only the pause itself is missing.
        let pause = self
            .update(&[B], true)
            .update_expression("SET #b = :until")
            .condition_expression("attribute_not_exists(#b) OR #b < :until")
            .expression_attribute_values(":until", n(until));
        self.write(pause).await?;
        Ok(())
    }
}

async fn sleep_until_us(at: i64) {
    let wait = at - now_us();
    if wait > 0 {
        tokio::time::sleep_until(Instant::now() + Duration::from_micros(wait as u64)).await;
    }
}

#[async_trait]
impl RateBudget for DynamoRateBudget {
    async fn acquire(&self) {
        self.acquire_slot().await;
    }

    async fn back_off(&self, retry_after: Duration) {
        let until = now_us() + retry_after.as_micros() as i64;
        {
            let mut l = self.local();
            l.blocked_until = l.blocked_until.max(until);
        }
        if let Err(f) = self.share_pause(until).await {
            tracing::warn!(reason = %f.reason, "rate budget: could not share the pause; this instance still honours it");
        }
    }
}

#[cfg(test)]
mod tests;
