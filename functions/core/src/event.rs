//! The normalised event every platform's webhook becomes, and the messages between stages.

use crate::ids::{BuyerEmail, EventKey, NotionUserId, OrderKey, PlatformProductRef, ProductId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What an event does to access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Purchase,
    Refund,
    Chargeback,
    Cancel,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Purchase => "purchase",
            EventKind::Refund => "refund",
            EventKind::Chargeback => "chargeback",
            EventKind::Cancel => "cancel",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "purchase" => Some(EventKind::Purchase),
            "refund" => Some(EventKind::Refund),
            "chargeback" => Some(EventKind::Chargeback),
            "cancel" => Some(EventKind::Cancel),
            _ => None,
        }
    }

    pub fn revokes(self) -> bool {
        self != EventKind::Purchase
    }
}

/// Who bought. The name is personal data: never logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buyer {
    pub email: BuyerEmail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One webhook, verified and normalised. This is the body of a provision queue message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub key: EventKey,
    pub kind: EventKind,
    pub order: OrderKey,
    /// Absent on some refunds and cancellations: the order's purchase names the buyer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer: Option<Buyer>,
    /// The platform's references to what was bought, one per order line. Resolved against the
    /// catalog by provision, so a product added to the catalog later applies on replay.
    #[serde(default)]
    pub items: Vec<PlatformProductRef>,
    /// When the platform says the event happened (from the payload, never the delivery time).
    pub occurred_at: DateTime<Utc>,
    /// When ingest accepted the webhook: time to access is measured from here. Absent on
    /// messages enqueued before it was added, and left out of [`OrderEvent::payload_hash`]:
    /// a redelivery is accepted at another moment but is the same event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<DateTime<Utc>>,
}

impl OrderEvent {
    /// A hash of the fields that define the event's effect. A second delivery of the same key
    /// with a different hash is refused rather than silently treated as a duplicate.
    pub fn payload_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.kind.as_str());
        h.update([0]);
        h.update(self.order.to_string());
        h.update([0]);
        if let Some(b) = &self.buyer {
            h.update(b.email.as_str());
        }
        for item in &self.items {
            h.update([0]);
            h.update(item.as_str());
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// The body of an align queue message: write this buyer's Notion user id into the seller's
/// sales database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlignRequest {
    /// The event that led here; align's own idempotency is by content, this is for tracing.
    pub source: EventKey,
    pub order: OrderKey,
    pub email: BuyerEmail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub notion_user_id: NotionUserId,
    #[serde(default)]
    pub products: Vec<ProductId>,
}
