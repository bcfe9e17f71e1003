//! Outbound events: what enroll tells the seller's other tools after SCIM confirmed a change of
//! a buyer's access, as signed Standard Webhooks.
//!
//! # The outbox (durability)
//!
//! A change is *derived from the ledger transition*: provision compares the Groups enroll had
//! applied for the buyer with the Groups it has just applied ([`EventType::of_transition`]), and
//! only after every SCIM request of the reconcile succeeded. The resulting [`Notification`]s
//! are written into the buyer's ledger record (`BuyerRecord::outbox`) in the same conditional
//! write that records the new applied Groups. Only then are they sent to the notify queue, one
//! [`Delivery`] per subscribed endpoint, and removed from the record by a second write. So:
//!
//! - a crash after SCIM but before that write leaves the applied Groups unchanged: the event's
//!   retry computes the same transition again, with the same sequence number, hence the same
//!   `webhook-id`;
//! - a crash after the write but before the queue has them leaves them in the outbox: the
//!   next reconcile of the buyer (the event's retry, or the expiry pass, which the record is
//!   made due for) sends them first;
//! - a crash between the send and the removal sends them twice, with the same `webhook-id`,
//!   which is what at-least-once means: receivers drop a `webhook-id` they have seen.
//!
//! No event is derived when nothing changed (a duplicate delivery, a replay, a refund of an
//! order whose Groups another order still grants).
//!
//! # Ordering
//!
//! Each buyer's notifications carry a sequence number (`seq`, from the buyer record). A
//! delivery's ordering group is the endpoint and the buyer ([`Delivery::group`]): on AWS it is
//! the `MessageGroupId` of a FIFO queue; the embedded worker holds a delivery back while an
//! older one of its group is still queued. One endpoint's outage never holds up another's.
//!
//! # Retries
//!
//! [`classify`] decides what an answer means; [`retry_delay`] spaces the attempts
//! exponentially with jitter, and [`MAX_ATTEMPTS`] makes them span more than 24 hours.

use crate::error::Failure;
use crate::ids::BuyerEmail;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The event types an endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// The buyer's first Groups.
    #[serde(rename = "access.granted")]
    Granted,
    /// Groups added or removed while some remain: an upgrade, a move to alumni.
    #[serde(rename = "access.changed")]
    Changed,
    /// Every Group removed by a refund, chargeback or cancellation (or an operator).
    #[serde(rename = "access.revoked")]
    Revoked,
    /// Every Group removed because the access ran out.
    #[serde(rename = "access.expired")]
    Expired,
}

/// What caused a reconcile: the buyer's event, or the expiry pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Event,
    Expiry,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::Granted,
        EventType::Changed,
        EventType::Revoked,
        EventType::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Granted => "access.granted",
            EventType::Changed => "access.changed",
            EventType::Revoked => "access.revoked",
            EventType::Expired => "access.expired",
        }
    }

    /// The event for a buyer whose applied Groups went from `before` to `after` (both counts of
    /// managed Groups, `changed` whether the sets differ); `None` when nothing changed.
    pub fn of_transition(before: usize, after: usize, changed: bool, cause: Cause) -> Option<Self> {
        if !changed {
            return None;
        }
        Some(match (before, after, cause) {
            (0, _, _) => EventType::Granted,
            (_, 0, Cause::Expiry) => EventType::Expired,
            (_, 0, Cause::Event) => EventType::Revoked,
            _ => EventType::Changed,
        })
    }
}

/// One change of a buyer's access, waiting in the buyer's outbox until it is queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The buyer's sequence number for this change, from 1.
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When SCIM confirmed the change.
    pub at: DateTime<Utc>,
    pub data: EventData,
}

/// The `data` of an event body, in the order the body shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    pub email: BuyerEmail,
    pub notion_user_id: Option<String>,
    /// Every Group the buyer is in now (the managed ones), by name where enroll knows it.
    pub groups: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// The product and order of the event that caused the change; `null` for expiry.
    pub product: Option<String>,
    pub order: Option<String>,
    pub platform: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    event_type: EventType,
    timestamp: String,
    data: &'a EventData,
}

impl Notification {
    /// The exact body sent, the same bytes on every attempt (the signature covers them).
    pub fn body(&self) -> String {
        serde_json::to_string(&Body {
            event_type: self.event_type,
            timestamp: self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            data: &self.data,
        })
        .unwrap_or_default()
    }

    /// `msg_` and 32 hex digits of SHA-256 over the buyer and the sequence number: the same on
    /// every retry and every re-derivation of this change, different for any other change.
    pub fn webhook_id(&self) -> String {
        webhook_id(&self.data.email, self.seq)
    }
}

pub fn webhook_id(buyer: &BuyerEmail, seq: u64) -> String {
    let digest = Sha256::digest(format!("enroll-outbound:{}:{seq}", buyer.as_str()));
    format!("msg_{}", hex::encode(&digest[..16]))
}

/// One event for one endpoint: the notify queue's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub webhook_id: String,
    /// [`crate::config::OutboundConfig::key`] of the endpoint.
    pub endpoint: String,
    pub buyer: BuyerEmail,
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The body to sign and send, as built once.
    pub body: String,
}

impl Delivery {
    pub fn new(n: &Notification, endpoint: &str) -> Self {
        Self {
            webhook_id: n.webhook_id(),
            endpoint: endpoint.to_owned(),
            buyer: n.data.email.clone(),
            seq: n.seq,
            event_type: n.event_type,
            body: n.body(),
        }
    }

    /// The ordering group: endpoint and buyer, hashed so no address reaches a queue attribute.
    pub fn group(&self) -> String {
        let digest = Sha256::digest(format!("{}:{}", self.endpoint, self.buyer.as_str()));
        hex::encode(&digest[..16])
    }

    /// A deduplication id for the queue: the same for a re-sent copy of this delivery.
    pub fn dedup_id(&self) -> String {
        hex::encode(&Sha256::digest(format!("{}:{}", self.webhook_id, self.endpoint))[..20])
    }
}

impl crate::batch::Describe for Delivery {
    const FUNCTION: crate::metrics::Function = crate::metrics::Function::Notify;
    fn event_key(&self) -> Option<String> {
        Some(self.webhook_id.clone())
    }
    fn masked_buyer(&self) -> Option<String> {
        Some(self.buyer.to_string())
    }
}

/// The notify queue, as provision fills it. An adapter sends the delivery's JSON with its
/// ordering group ([`Delivery::group`]) and deduplication id ([`Delivery::dedup_id`]) where the
/// queue takes them (SQS FIFO), or as attributes (the embedded queue).
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    async fn send_delivery(&self, delivery: &Delivery) -> Result<(), Failure>;
}

/// What one attempt's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Delivered,
    /// 410 Gone: the receiver says the endpoint is no more; it is disabled.
    Disable,
    /// A 4xx that will not change by retrying: parked with its reason.
    Park,
    /// 5xx, 408, 409, 425, 429, another status, or no answer at all.
    Retry,
}

/// The verdict on an HTTP status; `None` (no answer: a timeout, a refused connection) retries.
pub fn classify(status: Option<u16>) -> Verdict {
    match status {
        Some(200..=299) => Verdict::Delivered,
        Some(410) => Verdict::Disable,
        Some(408 | 409 | 425 | 429) => Verdict::Retry,
        Some(400..=499) => Verdict::Park,
        _ => Verdict::Retry,
    }
}

/// The first retry waits about this long; each further one twice as long.
pub const FIRST_RETRY: Duration = Duration::from_secs(30);
/// The longest wait between two attempts.
pub const MAX_RETRY: Duration = Duration::from_secs(3600);
/// Attempts before a delivery is parked: with the shortest jitter the waits add up to more
/// than 24 hours (a unit test holds this). Also the notify queue's `maxReceiveCount`.
pub const MAX_ATTEMPTS: u32 = 40;

/// The wait after failed attempt `attempt` (1 for the first): 30 s doubling to at most an hour,
/// times a jitter factor between 0.8 and 1.2 (`jitter` in 0..1) so that receivers recovering
/// from an outage are not hit by every sender at the same second.
pub fn retry_delay(attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let base = FIRST_RETRY
        .saturating_mul(1u32 << exp)
        .min(MAX_RETRY)
        .as_secs_f64();
    Duration::from_secs_f64(base * (0.8 + 0.4 * jitter.clamp(0.0, 1.0)))
}

/// Why an endpoint was disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisabledEndpoint {
    pub endpoint: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// Endpoints switched off by a 410 answer, kept across restarts (the store locally, the table
/// on AWS). Re-enabling is an operator's act: change the endpoint's URL in the configuration
/// (a new URL is a new endpoint) or delete the record.
#[async_trait]
pub trait EndpointRegistry: Send + Sync {
    async fn disabled(&self, endpoint: &str) -> Result<Option<DisabledEndpoint>, Failure>;
    async fn disable(&self, record: &DisabledEndpoint) -> Result<(), Failure>;
}

/// For callers that keep no registry (tests).
#[derive(Debug, Default)]
pub struct MemoryRegistry(std::sync::Mutex<Vec<DisabledEndpoint>>);

#[async_trait]
impl EndpointRegistry for MemoryRegistry {
    async fn disabled(&self, endpoint: &str) -> Result<Option<DisabledEndpoint>, Failure> {
        let list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(list.iter().find(|d| d.endpoint == endpoint).cloned())
    }

    async fn disable(&self, record: &DisabledEndpoint) -> Result<(), Failure> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification() -> Notification {
        Notification {
            seq: 1,
            event_type: EventType::Granted,
            at: "2026-01-02T03:04:05.678Z".parse().unwrap(),
            data: EventData {
                email: BuyerEmail::parse("ada@example.com").unwrap(),
                notion_user_id: Some("u1".into()),
                groups: vec!["Notion Mastery".into()],
                added: vec!["Notion Mastery".into()],
                removed: vec![],
                product: Some("notion-mastery".into()),
                order: Some("ord_1".into()),
                platform: Some("stripe".into()),
            },
        }
    }

    #[test]
    fn the_body_is_the_documented_shape_in_order() {
        assert_eq!(
            notification().body(),
            r#"{"type":"access.granted","timestamp":"2026-01-02T03:04:05.678Z","data":{"email":"ada@example.com","notion_user_id":"u1","groups":["Notion Mastery"],"added":["Notion Mastery"],"removed":[],"product":"notion-mastery","order":"ord_1","platform":"stripe"}}"#
        );
    }

    #[test]
    fn webhook_ids_are_stable_per_change_and_differ_between_changes() {
        let n = notification();
        assert_eq!(n.webhook_id(), n.clone().webhook_id());
        assert!(n.webhook_id().starts_with("msg_"));
        let next = Notification {
            seq: 2,
            ..n.clone()
        };
        assert_ne!(n.webhook_id(), next.webhook_id());
        let d = Delivery::new(&n, "abc");
        assert!(!d.group().contains('@'));
        assert_ne!(d.dedup_id(), Delivery::new(&n, "def").dedup_id());
    }

    #[test]
    fn transitions_name_the_change() {
        use EventType::*;
        assert_eq!(
            EventType::of_transition(0, 1, true, Cause::Event),
            Some(Granted)
        );
        assert_eq!(
            EventType::of_transition(1, 2, true, Cause::Event),
            Some(Changed)
        );
        assert_eq!(
            EventType::of_transition(1, 1, true, Cause::Expiry),
            Some(Changed)
        );
        assert_eq!(
            EventType::of_transition(2, 0, true, Cause::Event),
            Some(Revoked)
        );
        assert_eq!(
            EventType::of_transition(2, 0, true, Cause::Expiry),
            Some(Expired)
        );
        assert_eq!(EventType::of_transition(1, 1, false, Cause::Event), None);
    }

    #[test]
    fn answers_are_classified_as_the_issue_says() {
        assert_eq!(classify(Some(204)), Verdict::Delivered);
        assert_eq!(classify(Some(410)), Verdict::Disable);
        for s in [400, 401, 403, 404, 413, 422] {
            assert_eq!(classify(Some(s)), Verdict::Park, "{s}");
        }
        for s in [408, 409, 425, 429, 500, 502, 503] {
            assert_eq!(classify(Some(s)), Verdict::Retry, "{s}");
        }
        assert_eq!(classify(None), Verdict::Retry);
    }

    #[test]
    fn retries_span_more_than_a_day_even_with_the_shortest_jitter() {
        let total: Duration = (1..MAX_ATTEMPTS).map(|a| retry_delay(a, 0.0)).sum();
        assert!(total >= Duration::from_secs(24 * 3600), "{total:?}");
        assert!(retry_delay(1, 0.5) < retry_delay(2, 0.5));
        assert!(retry_delay(30, 1.0) <= MAX_RETRY.mul_f64(1.2));
        assert!(retry_delay(1, 0.0) >= Duration::from_secs(24));
    }
}
