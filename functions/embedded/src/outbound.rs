//! Outbound events on the embedded default ([`enroll_core::outbound`]): the notify queue is an
//! [`EmbeddedQueue`] in the queues' journal, so deliveries survive a kill -9 of `enroll dev`;
//! the endpoints a 410 disabled are kept in the same journal.
//!
//! Ordering: each delivery carries its group ([`Delivery::group`], endpoint and buyer) as an
//! attribute. [`eligible`] lets through only the oldest queued delivery of each group and
//! defers the others, uncounted, until it is settled, so a buyer's events reach an endpoint in
//! the order they happened, while other groups go on.

use crate::journal::Journal;
use crate::queue::{EmbeddedQueue, Message};
use async_trait::async_trait;
use enroll_core::outbound::{Delivery, DeliveryQueue, DisabledEndpoint, EndpointRegistry};
use enroll_core::Failure;
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The local receiver of `enroll dev --outbound-echo`.
pub use notify::echo;

/// The attribute holding a delivery's ordering group.
pub const ATTR_GROUP: &str = "group";
/// The journal table of disabled endpoints.
const DISABLED: &str = "outbound-disabled";

/// The notify queue, as provision fills it.
pub struct EmbeddedDeliveryQueue(pub Arc<EmbeddedQueue>);

#[async_trait]
impl DeliveryQueue for EmbeddedDeliveryQueue {
    async fn send_delivery(&self, delivery: &Delivery) -> Result<(), Failure> {
        let body = serde_json::to_string(delivery)
            .map_err(|e| Failure::permanent(format!("delivery does not serialise: {e}")))?;
        let attrs = BTreeMap::from([(ATTR_GROUP.to_owned(), delivery.group())]);
        self.0.send_with(&body, attrs).map(drop).map_err(|e| {
            Failure::transient(format!("queue {} unavailable: {e}", self.0.name())).caused_by(&e)
        })
    }
}

/// Disabled endpoints in the journal.
pub struct JournalEndpoints(pub Arc<Mutex<Journal>>);

#[async_trait]
impl EndpointRegistry for JournalEndpoints {
    async fn disabled(&self, endpoint: &str) -> Result<Option<DisabledEndpoint>, Failure> {
        let j = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(j.get(DISABLED, endpoint))
    }

    async fn disable(&self, record: &DisabledEndpoint) -> Result<(), Failure> {
        let mut j = self.0.lock().unwrap_or_else(|p| p.into_inner());
        j.put(DISABLED, &record.endpoint, record).map_err(|e| {
            Failure::transient(format!("could not record the disabled endpoint: {e}")).caused_by(&e)
        })
    }
}

impl JournalEndpoints {
    /// Every disabled endpoint, for the operator.
    pub fn all(&self) -> Vec<DisabledEndpoint> {
        let j = self.0.lock().unwrap_or_else(|p| p.into_inner());
        j.all(DISABLED).into_iter().map(|(_, d)| d).collect()
    }
}

/// Of the messages just received, those that are the oldest queued of their group; the
/// others are deferred (uncounted) until that one may be settled.
pub fn eligible(queue: &EmbeddedQueue, received: Vec<Message>) -> io::Result<Vec<Message>> {
    let queued = queue.peek();
    let in_hand: Vec<String> = received.iter().map(|m| m.id.clone()).collect();
    let mut out = Vec::new();
    for m in received {
        let group = m.attributes.get(ATTR_GROUP);
        // Message ids sort by arrival.
        let older: Vec<&Message> = queued
            .iter()
            .filter(|q| q.id < m.id && group.is_some() && q.attributes.get(ATTR_GROUP) == group)
            .collect();
        if older.is_empty() {
            out.push(m);
            continue;
        }
        // An older one handled in this very batch settles soon; one waiting for its retry
        // settles no earlier than its next attempt.
        let wait = if older.iter().any(|q| in_hand.contains(&q.id)) {
            Duration::from_millis(500)
        } else {
            let at = older.iter().map(|q| q.visible_at_ms).min().unwrap_or(0);
            let ms = at - chrono::Utc::now().timestamp_millis();
            Duration::from_millis(ms.clamp(200, 3_600_000) as u64)
        };
        queue.defer(&m.id, wait)?;
    }
    Ok(out)
}
