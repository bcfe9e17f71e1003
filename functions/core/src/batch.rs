//! One queue batch with partial failures, shared by every queue-driven stage.
//!
//! Each body is parsed on its own, so one malformed message never fails its neighbours. A
//! message that succeeds is acknowledged; one that fails permanently (including a body that does
//! not parse) is parked in the dead-letter queue with its reason and then acknowledged, burning no
//! retries; one that fails transiently is reported as a batch item failure and comes back after
//! the stage's backoff, until its last allowed receive, when it is parked with that failure as
//! its reason (so an operator reads the real cause, not "received 5 times"). One whose key is
//! held by another invocation is *deferred*: it comes back when that claim runs out, and the
//! deferral does not count as a failed receive ([`crate::timings`]). Nothing is acknowledged
//! before it is safely elsewhere: if parking fails, the message is reported as failed instead.

use crate::error::{ErrorClass, Failure};
use crate::event::{AlignRequest, OrderEvent};
use crate::metrics::{self, Function, Metric};
use crate::ports::{DeadLetters, ParkedReason};
use crate::timings::StageTimings;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::time::Duration;

/// A received message: its queue id (only for reporting failures) and body.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub id: String,
    pub body: String,
    /// How many times the queue has handed this message out, this receive included.
    pub receive_count: u32,
}

/// A message to bring back after `delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redelivery {
    pub id: String,
    pub delay: Duration,
}

/// What a message body says about itself for the dead-letter record.
pub trait Describe {
    /// The stage that handles these messages, for the parked-events metric.
    const FUNCTION: Function;
    fn event_key(&self) -> Option<String>;
    /// Masked: never the address itself.
    fn masked_buyer(&self) -> Option<String>;
}

impl Describe for OrderEvent {
    const FUNCTION: Function = Function::Provision;
    fn event_key(&self) -> Option<String> {
        Some(self.key.as_string())
    }
    fn masked_buyer(&self) -> Option<String> {
        self.buyer.as_ref().map(|b| b.email.to_string())
    }
}

impl Describe for AlignRequest {
    const FUNCTION: Function = Function::Align;
    fn event_key(&self) -> Option<String> {
        Some(self.source.as_string())
    }
    fn masked_buyer(&self) -> Option<String> {
        Some(self.email.to_string())
    }
}

/// How a batch went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Messages to deliver again (batch item failures), each with the wait before its next
    /// attempt: the stage's backoff, or the server's `Retry-After` when longer.
    pub retries: Vec<Redelivery>,
    /// Messages whose key another invocation holds: bring them back after the claim runs out
    /// without counting this receive (a new message on SQS, an uncounted one embedded). They
    /// are not batch item failures.
    pub deferred: Vec<Redelivery>,
    pub succeeded: usize,
    pub parked: usize,
}

impl BatchReport {
    /// The ids to report as batch item failures.
    pub fn failed(&self) -> Vec<String> {
        self.retries.iter().map(|r| r.id.clone()).collect()
    }
}

/// Describes a JSON error without quoting the input (it may hold an email).
pub fn describe_json_error(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// Runs `handle` on each message of a batch, in order.
pub async fn run<T, F, Fut>(
    messages: &[Incoming],
    dead: &dyn DeadLetters,
    timings: &StageTimings,
    handle: F,
) -> BatchReport
where
    T: DeserializeOwned + Describe,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let mut report = BatchReport::default();
    for msg in messages {
        let (why, result) = match serde_json::from_str::<T>(&msg.body) {
            Err(e) => {
                let reason = format!("message body is not valid: {}", describe_json_error(&e));
                (
                    ParkedReason {
                        reason,
                        event_key: None,
                        buyer: None,
                    },
                    Err(Failure::permanent("")),
                )
            }
            Ok(item) => {
                let key = item.event_key();
                let buyer = item.masked_buyer();
                let result = handle(item).await;
                let reason = result
                    .as_ref()
                    .err()
                    .map(|f| f.reason.clone())
                    .unwrap_or_default();
                (
                    ParkedReason {
                        reason,
                        event_key: key,
                        buyer,
                    },
                    result,
                )
            }
        };
        let result = match result {
            // The last allowed receive: park it now with the real cause, rather than let the
            // queue's redrive move it later with none.
            Err(f)
                if !f.is_permanent()
                    && !f.is_in_progress()
                    && msg.receive_count >= timings.max_receives =>
            {
                let reason = format!(
                    "gave up after {} receives (limit {}); last failure: {}",
                    msg.receive_count, timings.max_receives, f.reason
                );
                Err(Failure::permanent(reason))
            }
            other => other,
        };
        match result {
            Ok(()) => report.succeeded += 1,
            Err(f) if f.is_permanent() => {
                // A body that does not parse carries its reason in `why`; a handled message's
                // reason is its failure's, which the receive limit above may have rewritten.
                let why = ParkedReason {
                    reason: if f.reason.is_empty() {
                        why.reason
                    } else {
                        f.reason.clone()
                    },
                    ..why
                };
                match dead.park(&msg.body, &why).await {
                    Ok(()) => {
                        tracing::warn!(event_key = why.event_key.as_deref().unwrap_or("-"), reason = %why.reason, "parked in the dead-letter queue");
                        report.parked += 1;
                        metrics::count(T::FUNCTION, Metric::EventsParked);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not park a permanent failure: leaving it for redelivery");
                        report.retries.push(Redelivery {
                            id: msg.id.clone(),
                            delay: timings.retry_delay(msg.receive_count, None),
                        });
                    }
                }
            }
            Err(f) => match f.class {
                ErrorClass::InProgress { claim_left } => {
                    let delay = timings.defer_delay(claim_left);
                    tracing::info!(event_key = why.event_key.as_deref().unwrap_or("-"), delay_ms = delay.as_millis() as u64, reason = %f.reason, "held elsewhere: deferred until the claim runs out");
                    report.deferred.push(Redelivery {
                        id: msg.id.clone(),
                        delay,
                    });
                }
                ErrorClass::Transient { retry_after } => {
                    let delay = timings.retry_delay(msg.receive_count, retry_after);
                    tracing::info!(event_key = why.event_key.as_deref().unwrap_or("-"), class = f.class.name(), receives = msg.receive_count, delay_ms = delay.as_millis() as u64, reason = %f.reason, "will retry");
                    report.retries.push(Redelivery {
                        id: msg.id.clone(),
                        delay,
                    });
                }
                ErrorClass::Permanent => unreachable!("parked in the arm above"),
            },
        }
    }
    report
}

/// [`run`], with the messages in *lanes* running at once: messages whose `keys` share a key
/// (the same order, the same buyer) form one lane and run one after another, in message order,
/// as a lone worker would run them; different lanes interleave at every await, on this task
/// (nothing is spawned, so a task-local set around the call covers every message). With
/// Notion answering in a tenth of a second, one message at a time cannot keep a budget busy.
pub async fn run_in_lanes<T, K, F, Fut>(
    messages: &[Incoming],
    dead: &dyn DeadLetters,
    timings: &StageTimings,
    keys: K,
    handle: F,
) -> BatchReport
where
    T: DeserializeOwned + Describe,
    K: Fn(&T) -> Vec<String>,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let items: Vec<Option<T>> = messages
        .iter()
        .map(|m| serde_json::from_str(&m.body).ok())
        .collect();
    let lane_keys: Vec<Option<Vec<String>>> = items.iter().map(|i| i.as_ref().map(&keys)).collect();
    let handle = &handle;
    let mut items: Vec<Option<T>> = items;
    let runs = lanes(&lane_keys).into_iter().map(|lane| {
        let lane_items: Vec<(usize, T)> = lane
            .into_iter()
            .filter_map(|i| items[i].take().map(|item| (i, item)))
            .collect();
        async move {
            let mut out = Vec::with_capacity(lane_items.len());
            for (i, item) in lane_items {
                out.push((i, handle(item).await));
            }
            out
        }
    });
    let mut results: Vec<(usize, Result<(), Failure>)> = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    results.sort_by_key(|(i, _)| *i);
    // `run` parses the same bodies in the same order, so it asks for exactly these results,
    // one per parsed message.
    let results = std::sync::Mutex::new(
        results
            .into_iter()
            .map(|(_, r)| r)
            .collect::<std::collections::VecDeque<_>>(),
    );
    run(messages, dead, timings, |_: T| {
        let result = results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .unwrap_or_else(|| {
                Err(Failure::transient(
                    "batch: no result recorded for this message",
                ))
            });
        async move { result }
    })
    .await
}

/// Groups indices into lanes: items sharing a key share a lane; `None` (unparsed) is in none.
pub fn lanes(keys: &[Option<Vec<String>>]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..keys.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut first_with: std::collections::HashMap<&str, usize> = Default::default();
    for (i, k) in keys.iter().enumerate() {
        for key in k.iter().flatten() {
            let j = *first_with.entry(key.as_str()).or_insert(i);
            let (a, b) = (root(&mut parent, i), root(&mut parent, j));
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut lanes: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, k) in keys.iter().enumerate() {
        if k.is_some() {
            let r = root(&mut parent, i);
            lanes.entry(r).or_default().push(i);
        }
    }
    lanes.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timings::PROVISION;

    #[test]
    fn items_sharing_a_key_share_a_lane() {
        let k = |keys: &[&str]| Some(keys.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let keys = vec![
            k(&["order o1", "buyer a"]),
            k(&["order o2", "buyer b"]),
            k(&["order o3", "buyer a"]),
            None,
            k(&["order o2"]),
            k(&["order o4", "buyer c"]),
        ];
        assert_eq!(lanes(&keys), vec![vec![0, 2], vec![1, 4], vec![5]]);
    }
    use std::sync::Mutex;

    /// Records what was parked.
    #[derive(Default)]
    struct Parked(Mutex<Vec<ParkedReason>>);

    #[async_trait::async_trait]
    impl DeadLetters for Parked {
        async fn park(&self, _body: &str, why: &ParkedReason) -> Result<(), Failure> {
            self.0.lock().unwrap().push(why.clone());
            Ok(())
        }
    }

    fn align_body() -> String {
        serde_json::json!({
            "source": {"platform": "stripe", "event_id": "evt_1"},
            "order": {"platform": "stripe", "order_id": "pi_1"},
            "email": "a@example.com",
            "notion_user_id": "11111111-2222-4333-8444-555555555555",
        })
        .to_string()
    }

    fn msg(receive_count: u32) -> Incoming {
        Incoming {
            id: "m1".into(),
            body: align_body(),
            receive_count,
        }
    }

    async fn run_one(m: Incoming, outcome: Failure) -> (BatchReport, Vec<ParkedReason>) {
        let dead = Parked::default();
        let report = run(&[m], &dead, &PROVISION, |_: AlignRequest| {
            let outcome = outcome.clone();
            async move { Err(outcome) }
        })
        .await;
        let parked = dead.0.lock().unwrap().clone();
        (report, parked)
    }

    #[tokio::test]
    async fn a_held_key_is_deferred_for_the_claim_not_failed() {
        let held = Failure::held_for("busy", Some(Duration::from_secs(20)));
        // Even on what would be the last receive: waiting for a claim is no failure.
        let (report, parked) = run_one(msg(PROVISION.max_receives), held).await;
        assert!(parked.is_empty());
        assert!(report.failed().is_empty(), "{report:?}");
        assert_eq!(report.deferred.len(), 1);
        assert_eq!(report.deferred[0].delay, Duration::from_secs(22));
    }

    #[tokio::test]
    async fn a_transient_failure_backs_off_then_parks_with_its_cause_on_the_last_receive() {
        let (report, parked) = run_one(msg(2), Failure::transient("SCIM 503")).await;
        assert!(parked.is_empty());
        assert_eq!(report.failed(), vec!["m1".to_owned()]);
        assert_eq!(report.retries[0].delay, PROVISION.retry_delay(2, None));

        let last = PROVISION.max_receives;
        let (report, parked) = run_one(msg(last), Failure::transient("SCIM 503")).await;
        assert!(report.failed().is_empty());
        assert_eq!(report.parked, 1);
        assert_eq!(
            parked[0].reason,
            format!("gave up after {last} receives (limit {last}); last failure: SCIM 503")
        );
        assert_eq!(parked[0].event_key.as_deref(), Some("stripe:evt_1"));
    }

    #[tokio::test]
    async fn a_body_that_does_not_parse_is_parked_with_why() {
        let dead = Parked::default();
        let bad = Incoming {
            id: "m2".into(),
            body: "{".into(),
            receive_count: 1,
        };
        let report = run(&[bad], &dead, &PROVISION, |_: AlignRequest| async {
            Ok(())
        })
        .await;
        assert_eq!(report.parked, 1);
        let parked = dead.0.lock().unwrap();
        assert!(
            parked[0].reason.starts_with("message body is not valid"),
            "{parked:?}"
        );
    }
}
