//! [`DynamoRateBudget`]: one Notion request budget per token, shared by every Lambda instance
//! through one item of the enroll table.
//!
//! # The item
//!
//! `pk = rate#<short sha256 of the token>`, `sk = rate`, holding a token bucket refilled lazily:
//! `tokens` (N, may be negative), `refilled_at` (N, epoch µs: the moment `tokens` was true),
//! `blocked_until` (N, epoch µs: nobody sends before it, set after a 429) and `version` (N).
//! Every change is one conditional `UpdateItem` on the `version` this instance last saw, with
//! `ReturnValuesOnConditionCheckFailure = ALL_OLD`: a lost race hands back the current item at
//! no extra read, and the change is recomputed from it.
//!
//! # Reservations instead of polling
//!
//! Taking `k` tokens from a bucket holding `a` leaves `a - k`; when that is negative the bucket
//! is in debt, and the `j`-th token taken becomes due at the moment the refill would have
//! produced it, `start + max(0, j - a) / rate`. So one write hands the instance `k` *slots*,
//! exact future moments, and its callers sleep until them. Nobody polls an empty bucket, and
//! instances never wake together to race for the same token: the shared schedule is split into
//! disjoint slots by the order of the (linearisable) conditional writes.
//!
//! # Why the rate holds across instances
//!
//! The slots handed out are exactly the moments at which a single token bucket of capacity
//! `burst` and refill `rate` would let a request through, whoever asked: so the slots falling in
//! any window of length `W` number at most `burst + rate·W`. A caller never sends before its
//! slot; a slot left unused longer than `grace` (at most one refill interval, 50 ms at most) is
//! thrown away rather than spent late, so sends in a window use slots from at most `grace`
//! earlier: at most `burst + 1 + rate·W` requests in any window, across any number of instances.
//!
//! # Few DynamoDB requests
//!
//! An instance reserves slots for all its callers waiting at that moment (a *lease*), up to a
//! quarter second of the rate: at 3 requests/s that is one write per Notion request, at 100/s
//! one write per up to 25 requests. Only one task per instance talks to the table at a time; the
//! others wait for its lease. When an instance works alone its cached copy of the item is
//! current and a lease is exactly one `UpdateItem`.
//!
//! # 429s
//!
//! [`RateBudget::back_off`] pauses this instance at once and writes `blocked_until` (never
//! shortening one already there). Reservations start after it, with no burst on resuming: the
//! bucket is left with at most one token at `blocked_until`. Other instances see it at their next
//! lease, and a caller whose slot was reserved over a second ago re-reads the item before
//! sending, so a long wait cannot carry it across someone else's pause.
//!
//! Clocks: instances compare wall-clock times. Lambda's clocks are kept by NTP to within
//! milliseconds; an instance whose clock runs ahead by `δ` can over-refill by `δ·rate` once, and
//! one that runs behind refills nothing until it catches up (`refilled_at` never goes back).

use crate::error::classify;
use crate::item::{n, s, Item};
use crate::schema::{PK, SK};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
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
const TOKENS: &str = "tokens";
const REFILLED_AT: &str = "refilled_at";
const BLOCKED_UNTIL: &str = "blocked_until";
const VERSION: &str = "version";

/// A lease covers at most this much of the rate.
const LEASE_SPAN_SECS: f64 = 0.25;
const LEASE_MAX: usize = 100;
/// Longest a reserved slot may lie unused before it is thrown away.
const GRACE_MAX_US: i64 = 50_000;
/// A slot reserved longer ago than this is checked against `blocked_until` before it is used.
const RECHECK_US: i64 = 1_000_000;
/// Lost races in a row before a lease gives up (and the caller paces itself locally once).
const MAX_RACES: u32 = 16;

/// The partition key of the budget item for a token: a short hash, never the token.
pub fn rate_pk(token: &Secret) -> String {
    format!("rate#{}", short_hash(token.expose().as_bytes()))
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The budget item as last seen. `version` 0: not stored yet.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    tokens: f64,
    refilled_at: i64,
    blocked_until: i64,
    version: u64,
}

impl Bucket {
    fn full(burst: f64) -> Self {
        Self {
            tokens: burst,
            refilled_at: 0,
            blocked_until: 0,
            version: 0,
        }
    }

    /// Tokens at `at` (not before `refilled_at`), capped at the burst.
    fn tokens_at(&self, at: i64, rate: f64, burst: f64) -> f64 {
        let elapsed = (at - self.refilled_at).max(0) as f64 / 1e6;
        (self.tokens + elapsed * rate).min(burst)
    }

    /// Takes `k` tokens at `now`: the new state and the moment each token is due.
    fn take(&self, now: i64, k: usize, rate: f64, burst: f64) -> (Bucket, Vec<i64>) {
        let start = now.max(self.refilled_at).max(self.blocked_until);
        let available = self.tokens_at(start, rate, burst);
        let slots = (1..=k)
            .map(|j| {
                let wait = (j as f64 - available).max(0.0) / rate;
                start + (wait * 1e6).ceil() as i64
            })
            .collect();
        let next = Bucket {
            tokens: available - k as f64,
            refilled_at: start,
            blocked_until: self.blocked_until,
            version: self.version + 1,
        };
        (next, slots)
    }

    /// Nobody sends before `until`; afterwards the steady rate resumes with no burst. `None`
    /// when a pause at least as long is already in place.
    fn block(&self, now: i64, until: i64, rate: f64, burst: f64) -> Option<Bucket> {
        if until <= self.blocked_until {
            return None;
        }
        Some(Bucket {
            tokens: self.tokens_at(now, rate, burst).min(1.0),
            refilled_at: until.max(self.refilled_at),
            blocked_until: until,
            version: self.version + 1,
        })
    }

    fn from_item(item: &Item) -> Option<Self> {
        let num = |name: &str| match item.get(name) {
            Some(AttributeValue::N(v)) => Some(v.as_str()),
            _ => None,
        };
        Some(Self {
            tokens: num(TOKENS)?.parse().ok()?,
            refilled_at: num(REFILLED_AT)?.parse().ok()?,
            blocked_until: num(BLOCKED_UNTIL)?.parse().ok()?,
            version: num(VERSION)?.parse().ok()?,
        })
    }
}

#[derive(Debug)]
struct Local {
    /// Moments reserved in the shared schedule and not yet handed to a caller, in order.
    slots: VecDeque<i64>,
    /// When the slots at the front were reserved.
    reserved_at: i64,
    /// The last item state written or read.
    seen: Option<Bucket>,
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
    lease_max: usize,
    grace_us: i64,
    local: Mutex<Local>,
    /// One lease at a time per instance: the others wait for it instead of racing each other.
    leasing: tokio::sync::Mutex<()>,
    /// Callers waiting for a slot: the size of the next lease.
    waiting: AtomicUsize,
    /// DynamoDB requests made, for `enroll bench` and tests.
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
        let interval_us = (1e6 / rate).ceil() as i64;
        Self {
            client,
            table: table.into(),
            pk: rate_pk(token),
            rate,
            burst: f64::from(limit.burst.max(1)),
            lease_max: ((rate * LEASE_SPAN_SECS).floor() as usize).clamp(1, LEASE_MAX),
            grace_us: interval_us.min(GRACE_MAX_US),
            local: Mutex::new(Local {
                slots: VecDeque::new(),
                reserved_at: 0,
                seen: None,
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

    /// DynamoDB requests this instance has made.
    pub fn table_requests(&self) -> u64 {
        self.table_requests.load(Ordering::Relaxed)
    }

    pub fn table_writes(&self) -> u64 {
        self.table_writes.load(Ordering::Relaxed)
    }
    pub fn leases(&self) -> u64 {
        self.leases.load(Ordering::Relaxed)
    }
    pub async fn acquire_slot(&self) -> i64 {
        loop {
            let (slot, reserved_at) = self.slot().await;
            sleep_until_us(slot).await;
            let _ = reserved_at;
            let blocked_until = self.local().blocked_until;
            if slot >= blocked_until {
                return slot;
            }
            sleep_until_us(blocked_until).await;
        }
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

    /// Writes `next` if the item is still `seen`. `Ok(Err(current))` when another instance
    /// changed it first.
    async fn swap(&self, seen: &Bucket, next: &Bucket) -> Result<Result<(), Bucket>, Failure> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key()))
            .update_expression("SET #t = :t, #r = :r, #b = :b, #v = :next")
            .expression_attribute_names("#t", TOKENS)
            .expression_attribute_names("#r", REFILLED_AT)
            .expression_attribute_names("#b", BLOCKED_UNTIL)
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":t", n(next.tokens))
            .expression_attribute_values(":r", n(next.refilled_at))
            .expression_attribute_values(":b", n(next.blocked_until))
            .expression_attribute_values(":next", n(next.version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        req = if seen.version == 0 {
            req.condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
        } else {
            req.condition_expression("#v = :seen")
                .expression_attribute_values(":seen", n(seen.version))
        };
        self.table_requests.fetch_add(1, Ordering::Relaxed);
        self.table_writes.fetch_add(1, Ordering::Relaxed);
        match req.send().await {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(lost)) => Ok(Err(lost
                    .item()
                    .and_then(Bucket::from_item)
                    .unwrap_or_else(|| Bucket::full(self.burst)))),
                _ => Err(classify("UpdateItem", e).into()),
            },
        }
    }

    /// Applies `change` to the item, recomputing it from the current item after a lost race.
    async fn update<T>(
        &self,
        change: impl Fn(&Bucket, i64) -> Option<(Bucket, T)>,
    ) -> Result<Option<T>, Failure> {
        let mut current = self
            .local()
            .seen
            .unwrap_or_else(|| Bucket::full(self.burst));
        for _ in 0..MAX_RACES {
            let Some((next, out)) = change(&current, now_us()) else {
                self.remember(current);
                return Ok(None);
            };
            match self.swap(&current, &next).await? {
                Ok(()) => {
                    self.remember(next);
                    return Ok(Some(out));
                }
                Err(now_stored) => current = now_stored,
            }
        }
        Err(Failure::transient(format!(
            "rate budget: lost {MAX_RACES} races in a row for the budget item"
        )))
    }

    fn remember(&self, b: Bucket) {
        let mut l = self.local();
        l.blocked_until = l.blocked_until.max(b.blocked_until);
        l.seen = Some(b);
    }

    /// Reserves `k` slots in the shared schedule.
    async fn lease(&self, k: usize) -> Result<Vec<i64>, Failure> {
        let (rate, burst) = (self.rate, self.burst);
        let slots = self
            .update(|b, now| Some(b.take(now, k, rate, burst)))
            .await?;
        Ok(slots.unwrap_or_default())
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
        if let Some(b) = out.item().and_then(Bucket::from_item) {
            self.remember(b);
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
                    self.leases.fetch_add(1, Ordering::Relaxed);
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
                    l.fallback_next = slot + (1e6 / self.rate).ceil() as i64;
                    return (slot, now);
                }
            }
        }
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
                return;
            }
            sleep_until_us(blocked_until).await;
        }
    }

    async fn back_off(&self, retry_after: Duration) {
        let until = now_us() + retry_after.as_micros() as i64;
        {
            let mut l = self.local();
            l.blocked_until = l.blocked_until.max(until);
        }
        let (rate, burst) = (self.rate, self.burst);
        let written = self
            .update(|b, now| b.block(now, until, rate, burst).map(|next| (next, ())))
            .await;
        if let Err(f) = written {
            tracing::warn!(reason = %f.reason, "rate budget: could not share the pause; this instance still honours it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f64 = 10.0;
    const BURST: f64 = 3.0;

    #[test]
    fn a_full_bucket_gives_its_burst_at_once_then_one_slot_per_interval() {
        let (next, slots) = Bucket::full(BURST).take(1_000_000, 5, RATE, BURST);
        assert_eq!(
            slots,
            [1_000_000, 1_000_000, 1_000_000, 1_100_000, 1_200_000]
        );
        assert_eq!(next.tokens, -2.0);
        // The next taker continues the schedule rather than sharing a slot.
        let (_, more) = next.take(1_000_000, 2, RATE, BURST);
        assert_eq!(more, [1_300_000, 1_400_000]);
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_the_burst() {
        let (b, _) = Bucket::full(BURST).take(0, 3, RATE, BURST);
        let (_, slots) = b.take(60_000_000, 4, RATE, BURST);
        assert_eq!(slots, [60_000_000, 60_000_000, 60_000_000, 60_100_000]);
    }

    #[test]
    fn slots_in_any_window_never_exceed_burst_plus_rate() {
        // Several takers interleaving leases of different sizes on one shared item.
        let mut b = Bucket::full(BURST);
        let mut all = Vec::new();
        let mut now = 0;
        for (i, k) in [1usize, 4, 2, 7, 1, 3, 5, 2]
            .iter()
            .cycle()
            .take(40)
            .enumerate()
        {
            now += (i as i64 % 3) * 37_000;
            let (next, slots) = b.take(now, *k, RATE, BURST);
            b = next;
            all.extend(slots);
        }
        all.sort();
        for (i, a) in all.iter().enumerate() {
            for (j, z) in all.iter().enumerate().skip(i) {
                let w = (z - a) as f64 / 1e6;
                assert!(
                    (j - i + 1) as f64 <= BURST + RATE * w + 1e-6,
                    "{} slots in {w} s",
                    j - i + 1
                );
            }
        }
    }

    #[test]
    fn a_block_delays_the_schedule_and_removes_the_burst() {
        let b = Bucket::full(BURST);
        let blocked = b.block(0, 5_000_000, RATE, BURST).unwrap();
        let (_, slots) = blocked.take(100, 3, RATE, BURST);
        assert_eq!(slots, [5_000_000, 5_100_000, 5_200_000]);
        assert!(blocked.block(0, 4_000_000, RATE, BURST).is_none());
    }

    #[test]
    fn the_key_hides_the_token() {
        let pk = rate_pk(&Secret::new("secret_abcdef"));
        assert!(pk.starts_with("rate#") && !pk.contains("secret"), "{pk}");
        assert_ne!(pk, rate_pk(&Secret::new("secret_abcdeg")));
    }
}
