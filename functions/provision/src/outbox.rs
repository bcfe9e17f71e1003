//! The outbox of outbound events ([`enroll_core::outbound`] explains the design): a confirmed
//! change of a buyer's Groups becomes a [`Notification`] in the buyer's ledger record, written
//! with the change itself, then is sent to the notify queue once per subscribed endpoint and
//! removed from the record.
//!
//! [`Provisioner::note_change`] derives the notification from the transition of the applied
//! Groups (so a retried event derives the same one, with the same sequence number, whenever
//! the record of the change was not written); [`Provisioner::flush_outbox`] sends what waits,
//! before a reconcile (what a crash left behind goes first, keeping the buyer's order) and
//! after it.

use crate::Provisioner;
use chrono::{DateTime, Utc};
use enroll_core::event::OrderEvent;
use enroll_core::history::{self, HistoryEntry, Stage};
use enroll_core::ids::GroupId;
use enroll_core::ledger::{BuyerRecord, OrderRecord};
use enroll_core::outbound::{Cause, Delivery, DeliveryQueue, EventData, EventType, Notification};
use enroll_core::Failure;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What brought a buyer to be reconciled, for the event's type and its `product`, `order` and
/// `platform` fields.
#[derive(Clone, Copy)]
pub enum Trigger<'a> {
    /// One of the buyer's order events.
    Event(&'a OrderEvent, &'a OrderRecord),
    /// The expiry pass: a grant ended or began.
    Expiry,
    /// An operator's act (a link of two emails).
    Operator,
}

/// If the outbox cannot be sent at once, the expiry pass comes back for the buyer this soon.
const OUTBOX_RETRY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

impl Provisioner {
    /// Sends outbound events to `queue` after every confirmed change of a buyer's access, for
    /// the endpoints `[[outbound]]` configures.
    pub fn with_outbound(mut self, queue: Arc<dyn DeliveryQueue>) -> Self {
        self.outbound = Some(queue);
        self
    }

    /// Adds the notification for the change from `before` to the buyer's applied Groups to the
    /// buyer's outbox, when an endpoint wants it. Call before the write that records the
    /// change, after SCIM confirmed it.
    pub(crate) fn note_change(
        &self,
        buyer: &mut BuyerRecord,
        before: &BTreeSet<GroupId>,
        trigger: Trigger<'_>,
        at: DateTime<Utc>,
    ) {
        if self.outbound.is_none() || self.config.outbound.is_empty() {
            return;
        }
        let after = &buyer.applied_groups;
        let cause = match trigger {
            Trigger::Expiry => Cause::Expiry,
            _ => Cause::Event,
        };
        let Some(event_type) =
            EventType::of_transition(before.len(), after.len(), before != after, cause)
        else {
            return;
        };
        if !self.config.outbound.iter().any(|o| o.wants(event_type)) {
            return;
        }
        let names = |set: &mut dyn Iterator<Item = &GroupId>| -> Vec<String> {
            set.map(|g| self.groups.name_or_id(g)).collect()
        };
        let (product, order, platform) = match trigger {
            Trigger::Event(event, order) => (
                order.grants.first().map(|g| g.product.to_string()),
                Some(order.order.order_id.to_string()),
                Some(event.key.platform.as_str().to_owned()),
            ),
            _ => (None, None, None),
        };
        buyer.outbound_seq += 1;
        buyer.outbox.push(Notification {
            seq: buyer.outbound_seq,
            event_type,
            at,
            data: EventData {
                email: buyer.email.clone(),
                notion_user_id: buyer.notion_user_id.as_ref().map(|u| u.to_string()),
                groups: names(&mut after.iter()),
                added: names(&mut after.difference(before)),
                removed: names(&mut before.difference(after)),
                product,
                order,
                platform,
            },
        });
        // Should the queue be unreachable after the write, the expiry pass comes back soon.
        let retry_at = at + OUTBOX_RETRY;
        buyer.next_change_at = Some(buyer.next_change_at.map_or(retry_at, |t| t.min(retry_at)));
    }

    /// Sends the buyer's waiting notifications to the notify queue, one delivery per endpoint
    /// that wants each, in sequence order, then empties the outbox with one conditional write.
    /// A failure leaves them in the record, for the event's retry or the expiry pass.
    pub(crate) async fn flush_outbox(&self, buyer: &mut BuyerRecord) -> Result<(), Failure> {
        let Some(queue) = &self.outbound else {
            return Ok(());
        };
        if buyer.outbox.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::new();
        for n in &buyer.outbox {
            let endpoints: Vec<_> = self
                .config
                .outbound
                .iter()
                .filter(|o| o.wants(n.event_type))
                .collect();
            for endpoint in &endpoints {
                queue
                    .send_delivery(&Delivery::new(n, &endpoint.key()))
                    .await
                    .map_err(|f| f.context("enqueue outbound event"))?;
            }
            lines.push(HistoryEntry::new(
                self.clock.now(),
                Stage::Notify,
                format!(
                    "{} queued for {} endpoint(s) (webhook-id {})",
                    n.event_type.as_str(),
                    endpoints.len(),
                    n.webhook_id()
                ),
            ));
        }
        tracing::info!(
            buyer = %buyer.email,
            events = buyer.outbox.len(),
            "outbound events queued"
        );
        buyer.outbox.clear();
        buyer.version = self.ledger.put_buyer(buyer).await?;
        history::record(self.history.as_ref(), &buyer.email, lines).await;
        Ok(())
    }
}
