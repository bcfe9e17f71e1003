//! One queue batch with partial failures, shared by every queue-driven stage.
//!
//! Each body is parsed on its own, so one malformed message never fails its neighbours. A
//! message that succeeds is acknowledged; one that fails permanently (including a body that does
//! not parse) is parked in the dead-letter queue with its reason and then acknowledged, burning no
//! retries; one that fails transiently or is in progress elsewhere is reported as a batch item
//! failure and comes back after the visibility timeout. Nothing is acknowledged before it is
//! safely elsewhere: if parking fails, the message is reported as failed instead.

use crate::error::{ErrorClass, Failure};
use crate::event::{AlignRequest, OrderEvent};
use crate::ports::{DeadLetters, ParkedReason};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::time::Duration;

/// A received message: its queue id (only for reporting failures) and body.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub id: String,
    pub body: String,
}

/// What a message body says about itself for the dead-letter record.
pub trait Describe {
    fn event_key(&self) -> Option<String>;
    /// Masked: never the address itself.
    fn masked_buyer(&self) -> Option<String>;
}

impl Describe for OrderEvent {
    fn event_key(&self) -> Option<String> {
        Some(self.key.as_string())
    }
    fn masked_buyer(&self) -> Option<String> {
        self.buyer.as_ref().map(|b| b.email.to_string())
    }
}

impl Describe for AlignRequest {
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
    /// Ids to report as batch item failures: they will be delivered again.
    pub failed: Vec<String>,
    pub succeeded: usize,
    pub parked: usize,
    /// The longest `Retry-After` any transient failure asked for.
    pub retry_after: Option<Duration>,
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
pub async fn run<T, F, Fut>(messages: &[Incoming], dead: &dyn DeadLetters, handle: F) -> BatchReport
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
        match result {
            Ok(()) => report.succeeded += 1,
            Err(f) if f.is_permanent() => match dead.park(&msg.body, &why).await {
                Ok(()) => {
                    tracing::warn!(event_key = why.event_key.as_deref().unwrap_or("-"), reason = %why.reason, "parked in the dead-letter queue");
                    report.parked += 1;
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not park a permanent failure: leaving it for redelivery");
                    report.failed.push(msg.id.clone());
                }
            },
            Err(f) => {
                if let ErrorClass::Transient {
                    retry_after: Some(d),
                } = f.class
                {
                    report.retry_after = Some(report.retry_after.map_or(d, |r| r.max(d)));
                }
                tracing::info!(event_key = why.event_key.as_deref().unwrap_or("-"), class = f.class.name(), reason = %f.reason, "will retry");
                report.failed.push(msg.id.clone());
            }
        }
    }
    report
}
