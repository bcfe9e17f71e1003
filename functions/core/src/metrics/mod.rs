//! The metrics enroll emits, by name: one list shared by the code that records them, the
//! CloudWatch dashboard and alarms in `template.yaml` (a test checks the template names only
//! these), and the local summaries. Namespace [`NAMESPACE`]; every metric carries the dimension
//! `Function`. No metric or dimension ever carries personal data.
//!
//! Recording is in memory and costs no request: [`count`], [`rejected`] and [`observe`] add to a
//! process-global [`Recorder`], whatever the log level. Every dimension value is one of the
//! fixed words of [`Function`] or [`Reason`], so no address, name or id can become a dimension.
//! The Lambda functions [`Recorder::take`] the aggregate at the end of each invocation and print
//! it as Embedded Metric Format lines ([`Aggregate::emf_lines`]); `enroll dev` shows a
//! [`Summary`] of the same counters.

use crate::tenant::TenantId;

mod emf;
pub use emf::EMF_MAX_VALUES;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// The CloudWatch namespace of every enroll metric.
pub const NAMESPACE: &str = "Enroll";

/// One metric enroll emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    WebhooksAccepted,
    /// With the dimension `Reason`: signature, stale, malformed or too_large.
    WebhooksRejected,
    EventsApplied,
    EventsDuplicate,
    EventsParked,
    ScimRequests,
    ScimThrottled,
    ScimAuthFailures,
    NotionApiRequests,
    RecordsAligned,
    /// From webhook accepted to member in every Group, in milliseconds.
    TimeToAccessMs,
    ExpiryReconciled,
    /// Outbound events an endpoint answered 2xx.
    OutboundDelivered,
    /// Outbound delivery attempts that failed (retried, parked, or the endpoint disabled).
    OutboundFailed,
}

/// The CloudWatch unit of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

impl Metric {
    pub const ALL: [Metric; 14] = [
        Metric::WebhooksAccepted,
        Metric::WebhooksRejected,
        Metric::EventsApplied,
        Metric::EventsDuplicate,
        Metric::EventsParked,
        Metric::ScimRequests,
        Metric::ScimThrottled,
        Metric::ScimAuthFailures,
        Metric::NotionApiRequests,
        Metric::RecordsAligned,
        Metric::TimeToAccessMs,
        Metric::ExpiryReconciled,
        Metric::OutboundDelivered,
        Metric::OutboundFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::WebhooksAccepted => "WebhooksAccepted",
            Metric::WebhooksRejected => "WebhooksRejected",
            Metric::EventsApplied => "EventsApplied",
            Metric::EventsDuplicate => "EventsDuplicate",
            Metric::EventsParked => "EventsParked",
            Metric::ScimRequests => "ScimRequests",
            Metric::ScimThrottled => "ScimThrottled",
            Metric::ScimAuthFailures => "ScimAuthFailures",
            Metric::NotionApiRequests => "NotionApiRequests",
            Metric::RecordsAligned => "RecordsAligned",
            Metric::TimeToAccessMs => "TimeToAccessMs",
            Metric::ExpiryReconciled => "ExpiryReconciled",
            Metric::OutboundDelivered => "OutboundDelivered",
            Metric::OutboundFailed => "OutboundFailed",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Metric::TimeToAccessMs => Unit::Milliseconds,
            _ => Unit::Count,
        }
    }
}

/// The stage a metric comes from: the value of the `Function` dimension, on AWS (where each
/// stage is one Lambda function) and locally alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    Ingest,
    Provision,
    Align,
    Expire,
    /// Outbound events to the seller's endpoints.
    Notify,
}

impl Function {
    pub const ALL: [Function; 5] = [
        Function::Ingest,
        Function::Provision,
        Function::Align,
        Function::Expire,
        Function::Notify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Function::Ingest => "ingest",
            Function::Provision => "provision",
            Function::Align => "align",
            Function::Expire => "expire",
            Function::Notify => "notify",
        }
    }
}

/// Why ingest refused a webhook: the `Reason` dimension of [`Metric::WebhooksRejected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No valid signature (or shared secret), or no secret configured.
    Signature,
    /// Correctly signed, but the signed timestamp is outside the tolerance.
    Stale,
    /// Genuine but unusable: a body that does not parse, a missing field.
    Malformed,
    /// Over the body size limit (413).
    TooLarge,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::Signature,
        Reason::Stale,
        Reason::Malformed,
        Reason::TooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Signature => "signature",
            Reason::Stale => "stale",
            Reason::Malformed => "malformed",
            Reason::TooLarge => "too_large",
        }
    }
}

impl Metric {
    /// The functions that emit this metric (the expiry pass spends the SCIM token too).
    pub fn emitted_by(self) -> &'static [Function] {
        use Function::*;
        match self {
            Metric::WebhooksAccepted | Metric::WebhooksRejected => &[Ingest],
            Metric::EventsApplied | Metric::EventsDuplicate | Metric::TimeToAccessMs => {
                &[Provision]
            }
            Metric::EventsParked => &[Provision, Align, Notify],
            Metric::ScimRequests | Metric::ScimThrottled | Metric::ScimAuthFailures => {
                &[Provision, Expire]
            }
            Metric::NotionApiRequests | Metric::RecordsAligned => &[Align],
            Metric::ExpiryReconciled => &[Expire],
            Metric::OutboundDelivered | Metric::OutboundFailed => &[Notify],
        }
    }
}

/// One time series: a metric and its dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Series {
    pub function: Function,
    pub metric: Metric,
    /// Only for [`Metric::WebhooksRejected`].
    pub reason: Option<Reason>,
}

/// Values kept per value metric (such as [`Metric::TimeToAccessMs`]): the most recent ones, so
/// a long-running `enroll dev` stays small. A Lambda invocation takes them long before this.
pub const MAX_VALUES: usize = 10_000;

/// What was recorded since the last [`Recorder::take`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate {
    pub counts: BTreeMap<Series, u64>,
    /// Milliseconds, oldest first, per function and metric.
    pub values: BTreeMap<(Function, Metric), VecDeque<u64>>,
}

/// The in-memory aggregator. [`global`] is the one the code records into.
#[derive(Debug, Default)]
pub struct Recorder {
    state: Mutex<Aggregate>,
    /// What was recorded inside [`for_tenant`], by tenant name.
    tenants: Mutex<BTreeMap<String, Aggregate>>,
}

tokio::task_local! {
    /// The tenant the running future records for (see [`for_tenant`]).
    static TENANT: String;
}

/// Runs `fut` with everything it records counted for `tenant` as well: the `Tenant` dimension
/// of its EMF lines ([`Recorder::take_tenants`]). A single seller's (default tenant's) records
/// are today's. A future spawned from `fut` does not inherit the tenant.
pub async fn for_tenant<F: std::future::Future>(tenant: &TenantId, fut: F) -> F::Output {
    if tenant.is_default() {
        fut.await
    } else {
        TENANT.scope(tenant.as_str().to_owned(), fut).await
    }
}

fn current_tenant() -> Option<String> {
    TENANT.try_with(Clone::clone).ok()
}

static GLOBAL: Recorder = Recorder::new();

/// The counters of this process, as `enroll dev`'s admin listener serves them.
pub fn this_process() -> Summary {
    global()
        .snapshot()
        .summary("since this `enroll dev` started")
}

/// The process-wide recorder.
pub fn global() -> &'static Recorder {
    &GLOBAL
}

/// Counts one occurrence of `metric` in `function`.
pub fn count(function: Function, metric: Metric) {
    GLOBAL.add(function, metric, 1);
}

/// Counts one webhook refused by ingest.
pub fn rejected(reason: Reason) {
    GLOBAL.add_series(
        Series {
            function: Function::Ingest,
            metric: Metric::WebhooksRejected,
            reason: Some(reason),
        },
        1,
    );
}

/// Records one value (milliseconds) of a value metric.
pub fn observe(function: Function, metric: Metric, value: u64) {
    GLOBAL.observe(function, metric, value);
}

impl Recorder {
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(Aggregate {
                counts: BTreeMap::new(),
                values: BTreeMap::new(),
            }),
            tenants: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Aggregate> {
        // A panic elsewhere while holding the lock leaves whole counters: keep counting.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_tenants(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Aggregate>> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records into the current tenant's aggregate inside [`for_tenant`], else the default one.
    fn record(&self, f: impl FnOnce(&mut Aggregate)) {
        match current_tenant() {
            Some(t) => f(self.lock_tenants().entry(t).or_default()),
            None => f(&mut self.lock()),
        }
    }

    pub fn add(&self, function: Function, metric: Metric, n: u64) {
        self.add_series(
            Series {
                function,
                metric,
                reason: None,
            },
            n,
        );
    }

    pub fn add_series(&self, series: Series, n: u64) {
        if n == 0 {
            return;
        }
        self.record(|a| *a.counts.entry(series).or_default() += n);
    }

    pub fn observe(&self, function: Function, metric: Metric, value: u64) {
        self.record(|state| {
            let values = state.values.entry((function, metric)).or_default();
            if values.len() >= MAX_VALUES {
                values.pop_front();
            }
            values.push_back(value);
        });
    }

    /// A copy of everything recorded so far, every tenant's included.
    pub fn snapshot(&self) -> Aggregate {
        let mut all = self.lock().clone();
        for a in self.lock_tenants().values() {
            all.merge(a.clone());
        }
        all
    }

    /// Everything recorded outside [`for_tenant`] so far, leaving that part empty.
    pub fn take(&self) -> Aggregate {
        std::mem::take(&mut *self.lock())
    }

    /// Everything recorded inside [`for_tenant`] so far, by tenant, leaving that part empty.
    pub fn take_tenants(&self) -> BTreeMap<String, Aggregate> {
        std::mem::take(&mut *self.lock_tenants())
    }
}

impl Aggregate {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.values.values().all(VecDeque::is_empty)
    }

    /// Adds `other`'s counts and values to this one.
    pub fn merge(&mut self, other: Aggregate) {
        for (s, n) in other.counts {
            *self.counts.entry(s).or_default() += n;
        }
        for (k, v) in other.values {
            self.values.entry(k).or_default().extend(v);
        }
    }

    /// The counters of this aggregate, summed as an operator reads them.
    pub fn summary(&self, scope: impl Into<String>) -> Summary {
        let mut s = Summary::empty(scope);
        for (series, n) in &self.counts {
            s.add(series.function.as_str(), series.metric, series.reason, *n);
        }
        let all: Vec<u64> = self
            .values
            .iter()
            .filter(|((_, m), _)| *m == Metric::TimeToAccessMs)
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        s.time_to_access_ms = Latency::of(all);
        s
    }
}

/// Time to access over a set of values, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// Nearest-rank percentiles; `None` for no values.
    pub fn of(mut values: Vec<u64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let rank = |p: f64| {
            let i = ((p / 100.0) * values.len() as f64).ceil() as usize;
            values[i.clamp(1, values.len()) - 1] as f64
        };
        Some(Self {
            count: values.len() as u64,
            p50: rank(50.0),
            p99: rank(99.0),
            max: *values.last().unwrap_or(&0) as f64,
        })
    }
}

/// The counters as `enroll dev`, its admin listener and `enroll status --summary` show them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// What the numbers cover, e.g. "since enroll dev started at ..." or "last 24 h".
    pub scope: String,
    /// Every counted metric by name, zeros included.
    pub totals: BTreeMap<String, u64>,
    /// `WebhooksRejected` by reason, zeros included.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Non-zero counts per function (stage) and metric.
    pub by_function: BTreeMap<String, BTreeMap<String, u64>>,
    pub time_to_access_ms: Option<Latency>,
}

impl Summary {
    pub fn empty(scope: impl Into<String>) -> Self {
        Self {
            scope: scope.into(),
            totals: Metric::ALL
                .iter()
                .filter(|m| m.unit() == Unit::Count)
                .map(|m| (m.name().to_owned(), 0))
                .collect(),
            rejected_by_reason: Reason::ALL
                .iter()
                .map(|r| (r.as_str().to_owned(), 0))
                .collect(),
            by_function: BTreeMap::new(),
            time_to_access_ms: None,
        }
    }

    /// Adds `n` to a counted metric of `function`.
    pub fn add(&mut self, function: &str, metric: Metric, reason: Option<Reason>, n: u64) {
        if n == 0 || metric.unit() != Unit::Count {
            return;
        }
        *self.totals.entry(metric.name().to_owned()).or_default() += n;
        if let Some(r) = reason {
            *self
                .rejected_by_reason
                .entry(r.as_str().to_owned())
                .or_default() += n;
        }
        *self
            .by_function
            .entry(function.to_owned())
            .or_default()
            .entry(metric.name().to_owned())
            .or_default() += n;
    }

    pub fn total(&self, metric: Metric) -> u64 {
        self.totals.get(metric.name()).copied().unwrap_or(0)
    }

    /// One line of text with every counter.
    pub fn line(&self) -> String {
        let t = |m| self.total(m);
        let rejected: Vec<String> = self
            .rejected_by_reason
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let rejected = if rejected.is_empty() {
            String::new()
        } else {
            format!(" ({})", rejected.join(", "))
        };
        let access = match &self.time_to_access_ms {
            Some(l) => format!(
                "time to access p50 {} ms, p99 {} ms over {}",
                l.p50.round(),
                l.p99.round(),
                l.count
            ),
            None => "time to access -".to_owned(),
        };
        format!(
            "webhooks {} accepted, {} rejected{rejected}; events {} applied, {} duplicate, {} parked; \
             SCIM {} requests, {} throttled, {} auth failures; Notion API {} requests; \
             {} records aligned; {} expiry reconciled; outbound {} delivered, {} failed; {access}",
            t(Metric::WebhooksAccepted),
            t(Metric::WebhooksRejected),
            t(Metric::EventsApplied),
            t(Metric::EventsDuplicate),
            t(Metric::EventsParked),
            t(Metric::ScimRequests),
            t(Metric::ScimThrottled),
            t(Metric::ScimAuthFailures),
            t(Metric::NotionApiRequests),
            t(Metric::RecordsAligned),
            t(Metric::ExpiryReconciled),
            t(Metric::OutboundDelivered),
            t(Metric::OutboundFailed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Recorder {
        let r = Recorder::new();
        r.add(Function::Ingest, Metric::WebhooksAccepted, 3);
        r.add_series(
            Series {
                function: Function::Ingest,
                metric: Metric::WebhooksRejected,
                reason: Some(Reason::Stale),
            },
            2,
        );
        r.add(Function::Provision, Metric::ScimRequests, 5);
        for v in 1..=250 {
            r.observe(Function::Provision, Metric::TimeToAccessMs, v);
        }
        r
    }

    #[test]
    fn emf_splits_values_and_reasons_onto_their_own_lines() {
        let lines = sample()
            .snapshot()
            .emf_lines(Function::Ingest, 1_700_000_000_000);
        let parsed: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // Main line, one reason line, two more chunks of values (250 = 100 + 100 + 50).
        assert_eq!(parsed.len(), 4, "{lines:#?}");
        assert_eq!(parsed[0]["WebhooksAccepted"], 3);
        assert_eq!(parsed[0]["ScimRequests"], 5);
        assert_eq!(parsed[0]["TimeToAccessMs"].as_array().unwrap().len(), 100);
        assert_eq!(parsed[0]["Function"], "ingest");
        assert_eq!(parsed[1]["Reason"], "stale");
        assert_eq!(parsed[1]["WebhooksRejected"], 2);
        assert_eq!(
            parsed[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Function", "Reason"]])
        );
        assert_eq!(parsed[3]["TimeToAccessMs"].as_array().unwrap().len(), 50);
        assert!(lines.iter().all(|l| !l.contains('\n')));
    }

    #[test]
    fn take_empties_and_nothing_recorded_prints_nothing() {
        let r = sample();
        assert!(!r.take().is_empty());
        assert!(r.snapshot().is_empty());
        assert!(r.take().emf_lines(Function::Align, 0).is_empty());
    }

    #[test]
    fn summary_totals_reasons_and_percentiles() {
        let s = sample().snapshot().summary("test");
        assert_eq!(s.total(Metric::WebhooksRejected), 2);
        assert_eq!(s.rejected_by_reason["stale"], 2);
        assert_eq!(s.rejected_by_reason["signature"], 0);
        assert_eq!(s.by_function["provision"]["ScimRequests"], 5);
        let l = s.time_to_access_ms.clone().unwrap();
        assert_eq!((l.count, l.p50, l.p99, l.max), (250, 125.0, 248.0, 250.0));
        assert!(
            s.line().contains("3 accepted, 2 rejected (stale 2)"),
            "{}",
            s.line()
        );
        assert!(!s.totals.contains_key("TimeToAccessMs"));
    }

    #[test]
    fn values_are_capped() {
        let r = Recorder::new();
        for v in 0..(MAX_VALUES as u64 + 5) {
            r.observe(Function::Provision, Metric::TimeToAccessMs, v);
        }
        let a = r.snapshot();
        let v = &a.values[&(Function::Provision, Metric::TimeToAccessMs)];
        assert_eq!(v.len(), MAX_VALUES);
        assert_eq!(v.front(), Some(&5));
    }

    #[tokio::test]
    async fn a_tenants_records_carry_its_dimension_and_still_add_up() {
        let r = Recorder::new();
        let acme = TenantId::parse("acme").unwrap();
        r.add(Function::Ingest, Metric::WebhooksAccepted, 1);
        for_tenant(&acme, async {
            r.add(Function::Ingest, Metric::WebhooksAccepted, 2);
            r.observe(Function::Provision, Metric::TimeToAccessMs, 40);
        })
        .await;
        assert_eq!(r.snapshot().summary("t").total(Metric::WebhooksAccepted), 3);
        let tenants = r.take_tenants();
        let lines = tenants["acme"].tenant_emf_lines(Function::Ingest, "acme", 0);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["Tenant"], "acme");
        assert_eq!(v["WebhooksAccepted"], 2);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Function"], ["Function", "Tenant"]])
        );
        // What was recorded outside any tenant stays the default's, without the dimension.
        let rest = r.take().emf_lines(Function::Ingest, 0);
        let v: serde_json::Value = serde_json::from_str(&rest[0]).unwrap();
        assert_eq!(v["WebhooksAccepted"], 1);
        assert!(v.get("Tenant").is_none());
    }
}
