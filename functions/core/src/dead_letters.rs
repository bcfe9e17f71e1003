//! The dead-letter admin port: what an operator does with parked messages (list them, send them
//! back to their stage's queue, delete them), with the filters that pick which. The SQS
//! adapter (`enroll_aws::dead_letters`) and the embedded one (`enroll_embedded::dead_letters`)
//! implement it; the operator tools and `enroll dev`'s admin listener use only this port.
//!
//! Listing never consumes. A replay sends each selected message to its stage's queue and only
//! then deletes it from the dead-letter queue: a crash in between leaves a copy in both, which
//! provision and align absorb (they are idempotent per event), never a lost message.

use crate::event::{AlignRequest, OrderEvent};
use crate::history::{self, HistoryEntry};
use crate::ids::BuyerEmail;
use crate::ports::{HistoryLog, RateBudget};
use crate::redact::mask_if_email;
use crate::Failure;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Message attributes a parked message carries, on SQS and in the embedded queues alike.
pub const ATTR_REASON: &str = "enroll.reason";
pub const ATTR_EVENT_KEY: &str = "enroll.event_key";
pub const ATTR_BUYER: &str = "enroll.buyer";
pub const ATTR_SOURCE: &str = "enroll.source";
pub const ATTR_PARKED_AT: &str = "enroll.parked_at";
pub const ATTR_RECEIVES: &str = "enroll.receives";
/// The tenant whose message it is; absent for a single seller's.
pub const ATTR_TENANT: &str = "enroll.tenant";

/// Which stage's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueStage {
    Provision,
    Align,
    /// Outbound events ([`crate::outbound`]).
    Notify,
}

impl QueueStage {
    pub const ALL: [QueueStage; 3] = [QueueStage::Provision, QueueStage::Align, QueueStage::Notify];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueStage::Provision => "provision",
            QueueStage::Align => "align",
            QueueStage::Notify => "notify",
        }
    }

    /// The dead-letter queue's name in the embedded default.
    pub fn dlq_name(self) -> &'static str {
        match self {
            QueueStage::Provision => "provision-dlq",
            QueueStage::Align => "align-dlq",
            QueueStage::Notify => "notify-dlq",
        }
    }
}

/// One parked message as the operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedMessage {
    pub queue: QueueStage,
    pub id: String,
    pub age_secs: i64,
    pub receive_count: u32,
    pub reason: Option<String>,
    pub event_key: Option<String>,
    /// Masked, never the address.
    pub buyer: Option<String>,
    pub parked_at: Option<DateTime<Utc>>,
    /// The tenant whose message it is: the `enroll.tenant` attribute, else the body's `tenant`
    /// field; `None` for a single seller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// A parked message as an adapter holds it, before it is described for the operator.
pub struct RawParked<'a> {
    pub id: String,
    pub body: &'a str,
    pub attributes: &'a BTreeMap<String, String>,
    pub receive_count: u32,
    pub sent_at: Option<DateTime<Utc>>,
}

impl ParkedMessage {
    /// Describes a parked message from its attributes, or from its body when it was parked
    /// without them (SQS's own redrive after maxReceiveCount records no reason).
    pub fn describe(stage: QueueStage, raw: RawParked<'_>, now: DateTime<Utc>) -> Self {
        let attrs = raw.attributes;
        let (body_key, body_buyer) = match buyer_of(stage, raw.body) {
            Some((buyer, key)) => (Some(key), Some(buyer.to_string())),
            None => (None, None),
        };
        let parked_at = attrs.get(ATTR_PARKED_AT).and_then(|t| t.parse().ok());
        let since = raw.sent_at.or(parked_at);
        let body_key = body_key.or_else(|| event_key_of(stage, raw.body));
        ParkedMessage {
            queue: stage,
            id: raw.id,
            age_secs: since.map(|t| (now - t).num_seconds().max(0)).unwrap_or(0),
            receive_count: raw.receive_count,
            reason: attrs.get(ATTR_REASON).cloned().or_else(|| {
                attrs
                    .get(ATTR_SOURCE)
                    .is_none()
                    .then(|| "ran out of receives (redriven by the queue)".to_owned())
            }),
            event_key: attrs.get(ATTR_EVENT_KEY).cloned().or(body_key),
            buyer: attrs
                .get(ATTR_BUYER)
                .cloned()
                .or(body_buyer)
                .map(|b| mask_if_email(&b)),
            parked_at,
            tenant: attrs
                .get(ATTR_TENANT)
                .filter(|t| !t.is_empty())
                .cloned()
                .or_else(|| {
                    crate::tenant::tenant_of_message(raw.body)
                        .ok()
                        .filter(|t| !t.is_default())
                        .map(|t| t.as_str().to_owned())
                }),
        }
    }

    pub fn moved(&self) -> MovedMessage {
        MovedMessage {
            id: self.id.clone(),
            event_key: self.event_key.clone(),
            reason: self.reason.clone(),
        }
    }
}

/// Which parked messages a replay or delete takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// A substring of the reason, compared ignoring case.
    #[serde(default)]
    pub reason: Option<String>,
    /// One event key, exactly.
    #[serde(default)]
    pub key: Option<String>,
}

impl Selection {
    pub fn is_everything(&self) -> bool {
        self.reason.is_none() && self.key.is_none()
    }

    pub fn matches(&self, m: &ParkedMessage) -> bool {
        let reason_ok = self.reason.as_ref().is_none_or(|want| {
            m.reason
                .as_deref()
                .is_some_and(|r| r.to_lowercase().contains(&want.to_lowercase()))
        });
        let key_ok = self
            .key
            .as_ref()
            .is_none_or(|k| m.event_key.as_deref() == Some(k.as_str()));
        reason_ok && key_ok
    }
}

/// What a replay or delete asks; also the body of `POST /admin/dlq/replay` and
/// `POST /admin/dlq/delete`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplayRequest {
    /// Both stages when absent.
    #[serde(default)]
    pub queue: Option<QueueStage>,
    #[serde(default)]
    pub selection: Selection,
    /// Messages per second (replay only).
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub dry_run: bool,
}

/// One message a replay moved or a delete removed (or, in a dry run, would have).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovedMessage {
    pub id: String,
    pub event_key: Option<String>,
    pub reason: Option<String>,
}

/// What a replay (or delete) did on one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    pub queue: QueueStage,
    pub dry_run: bool,
    /// `receive-send-delete`, `move-task`, `embedded` or `delete`.
    pub method: String,
    pub moved: Vec<MovedMessage>,
    /// Counted by SQS for a move task, whose messages are not listed one by one.
    pub moved_count: usize,
    /// Messages the selection left parked.
    pub kept: usize,
    /// Messages that could not be moved; they are still parked (or, if only the delete
    /// failed, in both queues).
    pub failed: Vec<String>,
    /// The buyer and event key of each message moved, for their histories; never reported.
    #[serde(skip)]
    pub replayed: Vec<(BuyerEmail, String)>,
}

impl ReplayReport {
    /// An empty report for one queue and method, filled in as messages move.
    pub fn new(queue: QueueStage, dry_run: bool, method: &str) -> Self {
        Self {
            queue,
            dry_run,
            method: method.to_owned(),
            moved: Vec::new(),
            moved_count: 0,
            kept: 0,
            failed: Vec::new(),
            replayed: Vec::new(),
        }
    }
}

/// One stage's dead-letter queue, as the operator reaches it.
#[async_trait]
pub trait DeadLetterAdmin: Send + Sync {
    fn stage(&self) -> QueueStage;

    /// Every parked message, consuming nothing.
    async fn list(&self, now: DateTime<Utc>) -> Result<Vec<ParkedMessage>, Failure>;

    /// Sends the selected messages back to the stage's queue, taking one unit of `pace` before
    /// each; a dry run only says which it would send.
    async fn replay(
        &self,
        req: &ReplayRequest,
        pace: Option<&dyn RateBudget>,
        now: DateTime<Utc>,
    ) -> Result<ReplayReport, Failure>;

    /// Deletes the selected messages for good; a dry run only says which.
    async fn delete(
        &self,
        req: &ReplayRequest,
        now: DateTime<Utc>,
    ) -> Result<ReplayReport, Failure>;
}

/// The admins a request names (both stages when it names none).
fn wanted(
    admins: &[Arc<dyn DeadLetterAdmin>],
    queue: Option<QueueStage>,
) -> impl Iterator<Item = &Arc<dyn DeadLetterAdmin>> {
    admins
        .iter()
        .filter(move |a| queue.is_none_or(|q| q == a.stage()))
}

/// Every message parked on the stages `queue` names.
pub async fn list_all(
    admins: &[Arc<dyn DeadLetterAdmin>],
    queue: Option<QueueStage>,
    now: DateTime<Utc>,
) -> Result<Vec<ParkedMessage>, Failure> {
    let mut out = Vec::new();
    for a in wanted(admins, queue) {
        out.extend(a.list(now).await?);
    }
    Ok(out)
}

/// Replays each stage the request names, in turn, and records each message sent back in its
/// buyer's history.
pub async fn replay_all(
    admins: &[Arc<dyn DeadLetterAdmin>],
    req: &ReplayRequest,
    pace: Option<&dyn RateBudget>,
    history: Option<&dyn HistoryLog>,
    now: DateTime<Utc>,
) -> Result<Vec<ReplayReport>, Failure> {
    let mut out = Vec::new();
    for a in wanted(admins, req.queue) {
        out.push(a.replay(req, pace, now).await?);
    }
    if let Some(log) = history {
        record(log, &out, "replayed from the dead-letter queue", now).await;
    }
    Ok(out)
}

/// Deletes on each stage the request names, and records each deletion in its buyer's history.
pub async fn delete_all(
    admins: &[Arc<dyn DeadLetterAdmin>],
    req: &ReplayRequest,
    history: Option<&dyn HistoryLog>,
    now: DateTime<Utc>,
) -> Result<Vec<ReplayReport>, Failure> {
    let mut out = Vec::new();
    for a in wanted(admins, req.queue) {
        out.push(a.delete(req, now).await?);
    }
    if let Some(log) = history {
        record(log, &out, "deleted from the dead-letter queue", now).await;
    }
    Ok(out)
}

/// Records each message a report moved in its buyer's history. Best-effort, as all history is.
async fn record(log: &dyn HistoryLog, reports: &[ReplayReport], what: &str, now: DateTime<Utc>) {
    for r in reports {
        for (buyer, key) in &r.replayed {
            let line = format!("{what} ({} {key})", r.queue.as_str());
            let entry = HistoryEntry::new(now, history::Stage::Operator, line);
            history::record(log, buyer, vec![entry]).await;
        }
    }
}

/// The buyer a parked body belongs to, with its event key, when the body names one.
pub fn buyer_of(stage: QueueStage, body: &str) -> Option<(BuyerEmail, String)> {
    match stage {
        QueueStage::Provision => {
            let e = serde_json::from_str::<OrderEvent>(body).ok()?;
            Some((e.buyer?.email, e.key.as_string()))
        }
        QueueStage::Align => {
            let a = serde_json::from_str::<AlignRequest>(body).ok()?;
            Some((a.email, a.source.as_string()))
        }
        QueueStage::Notify => {
            let d = serde_json::from_str::<crate::outbound::Delivery>(body).ok()?;
            Some((d.buyer, d.webhook_id))
        }
    }
}

/// The event key of a body that names no buyer (a refund does not).
fn event_key_of(stage: QueueStage, body: &str) -> Option<String> {
    match stage {
        QueueStage::Provision => serde_json::from_str::<OrderEvent>(body)
            .ok()
            .map(|e| e.key.as_string()),
        QueueStage::Align | QueueStage::Notify => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(reason: Option<&str>, key: Option<&str>) -> ParkedMessage {
        ParkedMessage {
            queue: QueueStage::Provision,
            id: "m".into(),
            age_secs: 0,
            receive_count: 0,
            reason: reason.map(str::to_owned),
            event_key: key.map(str::to_owned),
            buyer: None,
            parked_at: None,
            tenant: None,
        }
    }

    #[test]
    fn selection_by_reason_ignores_case_and_by_key_is_exact() {
        let m = parked(
            Some("SCIM add members: 503 Service Unavailable"),
            Some("stripe:evt_1"),
        );
        let by_reason = Selection {
            reason: Some("service unavailable".into()),
            key: None,
        };
        assert!(by_reason.matches(&m));
        let by_key = Selection {
            reason: None,
            key: Some("stripe:evt_".into()),
        };
        assert!(!by_key.matches(&m));
        assert!(Selection::default().matches(&parked(None, None)));
        assert!(!by_reason.matches(&parked(None, None)));
    }

    #[test]
    fn a_body_without_attributes_still_names_its_event_and_masks_its_buyer() {
        let body = r#"{"key":{"platform":"stripe","event_id":"evt_9"},"kind":"purchase","order":{"platform":"stripe","order_id":"o"},
            "buyer":{"email":"ada@example.com"},"items":[],"occurred_at":"2026-01-01T00:00:00Z"}"#;
        let raw = RawParked {
            id: "id".into(),
            body,
            attributes: &BTreeMap::new(),
            receive_count: 3,
            sent_at: None,
        };
        let m = ParkedMessage::describe(QueueStage::Provision, raw, Utc::now());
        assert_eq!(m.event_key.as_deref(), Some("stripe:evt_9"));
        assert_eq!(m.buyer.as_deref(), Some("a***@e***.com"));
        assert!(m.reason.unwrap().contains("ran out of receives"));
    }
}
