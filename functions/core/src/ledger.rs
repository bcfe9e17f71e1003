//! The entitlement ledger: who should be in which Group, derived only from the events seen.
//!
//! An order holds one grant per order line (plus follow-on grants, such as alumni access that
//! starts when a 12-month grant ends). A refund, chargeback or cancellation revokes the whole
//! order, and is kept even when it arrives before its purchase, so the late purchase stays
//! revoked. A buyer's desired Groups are the union of the Groups of their active grants.

use crate::catalog::{Catalog, GroupRef, Product};
use crate::event::{EventKind, OrderEvent};
use crate::ids::{
    BuyerEmail, EventKey, GroupId, NotionUserId, OrderKey, PlatformProductRef, ProductId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Follow-on chains longer than this are cut: the catalog forbids self-reference, this also
/// stops a cycle through several products.
const MAX_FOLLOW_ON: usize = 8;

/// Access to one product's Groups over a span of time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub product: ProductId,
    pub groups: Vec<GroupRef>,
    pub starts_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
}

impl Grant {
    pub fn is_current(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && self.ends_at.is_none_or(|end| now < end)
    }
}

/// The grants a product bought at `start` gives: its own, then its follow-ons.
pub fn grants_for(catalog: &Catalog, product: &Product, start: DateTime<Utc>) -> Vec<Grant> {
    let mut grants = Vec::new();
    let mut current = Some((product, start));
    while let Some((p, from)) = current.take() {
        let end = p.access_end(from);
        grants.push(Grant {
            product: p.id.clone(),
            groups: p.groups.clone(),
            starts_at: from,
            ends_at: end,
        });
        if grants.len() >= MAX_FOLLOW_ON {
            break;
        }
        if let (Some(next), Some(end)) = (p.then.as_ref().and_then(|t| catalog.product(t)), end) {
            current = Some((next, end));
        }
    }
    grants
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub kind: EventKind,
    pub by: EventKey,
    pub at: DateTime<Utc>,
}

/// Everything the ledger knows about one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order: OrderKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer: Option<BuyerEmail>,
    #[serde(default)]
    pub grants: Vec<Grant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchased_by: Option<EventKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
    /// Items the catalog did not know when the purchase arrived: visible to the operator,
    /// never provisioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_items: Vec<PlatformProductRef>,
    /// Optimistic-concurrency version, managed by the store (0 = never stored).
    #[serde(default)]
    pub version: u64,
}

/// Whether applying an event changed the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Unchanged,
}

impl OrderRecord {
    pub fn new(order: OrderKey) -> Self {
        Self {
            order,
            buyer: None,
            grants: Vec::new(),
            purchased_by: None,
            revoked: None,
            unknown_items: Vec::new(),
            version: 0,
        }
    }

    /// Applies one event. Purchases set the grants once; revocations are kept whatever the
    /// order of arrival; a second delivery of either changes nothing.
    pub fn apply(&mut self, event: &OrderEvent, catalog: &Catalog) -> Applied {
        let before = self.clone();
        if self.buyer.is_none() {
            self.buyer = event.buyer.as_ref().map(|b| b.email.clone());
        }
        match event.kind {
            EventKind::Purchase if self.purchased_by.is_none() => {
                self.purchased_by = Some(event.key.clone());
                // A platform may name one order line several ways (price and product, SKU and
                // variant): each product is granted once, and references are reported unknown
                // only when none of them names a product.
                let mut products: Vec<&Product> = Vec::new();
                for item in &event.items {
                    if let Some(p) = catalog.resolve(event.key.platform, item) {
                        if !products.iter().any(|q| q.id == p.id) {
                            products.push(p);
                        }
                    }
                }
                if products.is_empty() {
                    self.unknown_items = event.items.clone();
                }
                for p in products {
                    self.grants
                        .extend(grants_for(catalog, p, event.occurred_at));
                }
            }
            EventKind::Purchase => {}
            kind if self.revoked.is_none() => {
                self.revoked = Some(Revocation {
                    kind,
                    by: event.key.clone(),
                    at: event.occurred_at,
                });
            }
            _ => {}
        }
        if *self == before {
            Applied::Unchanged
        } else {
            Applied::Changed
        }
    }

    pub fn active_grants(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Grant> {
        let live = self.revoked.is_none();
        self.grants
            .iter()
            .filter(move |g| live && g.is_current(now))
    }
}

/// Everything the ledger knows about one buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerRecord {
    pub email: BuyerEmail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Once known, the buyer is found through this id first: it survives email changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notion_user_id: Option<NotionUserId>,
    #[serde(default)]
    pub orders: BTreeSet<OrderKey>,
    /// The managed Groups enroll last put this member in.
    #[serde(default)]
    pub applied_groups: BTreeSet<GroupId>,
    /// Groups whose membership is uncertain until the given moment: a change was sent and its
    /// answer lost (a timeout, a dropped connection), so Notion may still apply it late, even
    /// after a later change. Each reconcile sends such Groups again (add if wanted, remove if
    /// not), and the buyer is due again once the moment passes, to settle them for good.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending_groups: BTreeMap<GroupId, DateTime<Utc>>,
    /// The earliest future moment a grant starts or ends: when expiry must reconcile again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_change_at: Option<DateTime<Utc>>,
    /// Set when this email is an alias the seller linked to another buyer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias_of: Option<BuyerEmail>,
    /// Whether enroll made this account a workspace member. Only such members are ever removed
    /// from the workspace: someone who was a member before buying is not enroll's to remove.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub member_added: bool,
    /// The sequence number of the buyer's last outbound notification (0: none yet).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub outbound_seq: u64,
    /// Notifications derived from a confirmed change and not yet handed to the notify queue:
    /// the outbox of [`crate::outbound`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<crate::outbound::Notification>,
    #[serde(default)]
    pub version: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl BuyerRecord {
    pub fn new(email: BuyerEmail) -> Self {
        Self {
            email,
            name: None,
            notion_user_id: None,
            orders: BTreeSet::new(),
            applied_groups: BTreeSet::new(),
            pending_groups: BTreeMap::new(),
            next_change_at: None,
            alias_of: None,
            member_added: false,
            outbound_seq: 0,
            outbox: Vec::new(),
            version: 0,
        }
    }
}

/// The Groups a buyer should be in now: the union over active grants.
pub fn desired_groups<'a>(
    orders: impl IntoIterator<Item = &'a OrderRecord>,
    now: DateTime<Utc>,
) -> BTreeSet<GroupRef> {
    orders
        .into_iter()
        .flat_map(|o| o.active_grants(now))
        .flat_map(|g| g.groups.iter().cloned())
        .collect()
}

/// The next moment after `now` at which some unrevoked grant starts or ends.
pub fn next_change<'a>(
    orders: impl IntoIterator<Item = &'a OrderRecord>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    orders
        .into_iter()
        .filter(|o| o.revoked.is_none())
        .flat_map(|o| o.grants.iter())
        .flat_map(|g| [Some(g.starts_at), g.ends_at])
        .flatten()
        .filter(|t| *t > now)
        .min()
}

/// The Group changes that make Notion match the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPlan {
    pub add: BTreeSet<GroupId>,
    pub remove: BTreeSet<GroupId>,
}

impl GroupPlan {
    /// Adds what is desired and missing; removes only Groups enroll put the member in and no
    /// active grant still requires. Groups enroll does not manage are never in `applied`.
    pub fn between(applied: &BTreeSet<GroupId>, desired: &BTreeSet<GroupId>) -> Self {
        Self {
            add: desired.difference(applied).cloned().collect(),
            remove: applied.difference(desired).cloned().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Buyer;
    use crate::ids::{EventId, OrderId, Platform};
    use std::collections::BTreeMap;

    fn catalog() -> Catalog {
        let p = |id: &str, g: &str, months: Option<u32>, then: Option<&str>| Product {
            id: ProductId::parse(id).unwrap(),
            name: id.into(),
            platform_ids: BTreeMap::new(),
            groups: vec![GroupRef::Name(g.into())],
            access_months: months,
            access_days: None,
            then: then.map(|t| ProductId::parse(t).unwrap()),
        };
        Catalog {
            products: vec![
                p("nm", "Notion Mastery", Some(12), Some("alumni")),
                p("alumni", "Notion Mastery Alumni", None, None),
                p("ff", "Formula Fundamentals", None, None),
            ],
        }
    }

    fn event(id: &str, kind: EventKind, order: &str, items: &[&str], at: &str) -> OrderEvent {
        OrderEvent {
            key: EventKey::new(Platform::Stripe, EventId::parse(id).unwrap()),
            kind,
            order: OrderKey {
                platform: Platform::Stripe,
                order_id: OrderId::parse(order).unwrap(),
            },
            buyer: Some(Buyer {
                email: BuyerEmail::parse("ada@example.com").unwrap(),
                name: None,
            }),
            items: items
                .iter()
                .map(|i| PlatformProductRef::parse(i).unwrap())
                .collect(),
            occurred_at: at.parse().unwrap(),
            accepted_at: None,
        }
    }

    fn names(set: BTreeSet<GroupRef>) -> Vec<String> {
        set.into_iter().map(|g| g.to_string()).collect()
    }

    #[test]
    fn twelve_month_grant_hands_over_to_alumni() {
        let c = catalog();
        let mut o = OrderRecord::new(
            event("e1", EventKind::Purchase, "o1", &[], "2026-01-01T00:00:00Z").order,
        );
        o.apply(
            &event(
                "e1",
                EventKind::Purchase,
                "o1",
                &["nm"],
                "2026-01-01T00:00:00Z",
            ),
            &c,
        );
        let during = "2026-06-01T00:00:00Z".parse().unwrap();
        let after = "2027-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(names(desired_groups([&o], during)), ["Notion Mastery"]);
        assert_eq!(
            names(desired_groups([&o], after)),
            ["Notion Mastery Alumni"]
        );
        assert_eq!(next_change([&o], during), Some(after));
    }

    #[test]
    fn refund_before_purchase_keeps_the_purchase_revoked() {
        let c = catalog();
        let refund = event("r1", EventKind::Refund, "o1", &[], "2026-01-02T00:00:00Z");
        let purchase = event(
            "p1",
            EventKind::Purchase,
            "o1",
            &["ff"],
            "2026-01-01T00:00:00Z",
        );
        let mut o = OrderRecord::new(refund.order.clone());
        assert_eq!(o.apply(&refund, &c), Applied::Changed);
        assert_eq!(o.apply(&purchase, &c), Applied::Changed);
        assert!(desired_groups([&o], "2026-02-01T00:00:00Z".parse().unwrap()).is_empty());
        assert_eq!(o.apply(&purchase, &c), Applied::Unchanged);
        assert_eq!(o.apply(&refund, &c), Applied::Unchanged);
    }

    #[test]
    fn refunding_one_order_keeps_groups_another_order_grants() {
        let c = catalog();
        let now = "2026-03-01T00:00:00Z".parse().unwrap();
        let mut a = OrderRecord::new(
            event("a", EventKind::Purchase, "oa", &[], "2026-01-01T00:00:00Z").order,
        );
        a.apply(
            &event(
                "a",
                EventKind::Purchase,
                "oa",
                &["ff"],
                "2026-01-01T00:00:00Z",
            ),
            &c,
        );
        let mut b = OrderRecord::new(
            event("b", EventKind::Purchase, "ob", &[], "2026-01-01T00:00:00Z").order,
        );
        b.apply(
            &event(
                "b",
                EventKind::Purchase,
                "ob",
                &["nm", "ff"],
                "2026-02-01T00:00:00Z",
            ),
            &c,
        );
        b.apply(
            &event("rb", EventKind::Refund, "ob", &[], "2026-02-02T00:00:00Z"),
            &c,
        );
        assert_eq!(
            names(desired_groups([&a, &b], now)),
            ["Formula Fundamentals"]
        );
    }

    #[test]
    fn unknown_items_are_recorded_not_granted() {
        let c = catalog();
        let mut o = OrderRecord::new(
            event("a", EventKind::Purchase, "o", &[], "2026-01-01T00:00:00Z").order,
        );
        o.apply(
            &event(
                "a",
                EventKind::Purchase,
                "o",
                &["ebook"],
                "2026-01-01T00:00:00Z",
            ),
            &c,
        );
        assert!(o.grants.is_empty());
        assert_eq!(o.unknown_items[0].as_str(), "ebook");
    }

    #[test]
    fn several_references_to_one_product_grant_it_once() {
        let c = catalog();
        let mut o = OrderRecord::new(
            event("a", EventKind::Purchase, "o", &[], "2026-01-01T00:00:00Z").order,
        );
        o.apply(
            &event(
                "a",
                EventKind::Purchase,
                "o",
                &["ff", "ff", "sku-unknown"],
                "2026-01-01T00:00:00Z",
            ),
            &c,
        );
        assert_eq!(o.grants.len(), 1);
        assert!(o.unknown_items.is_empty());
    }

    #[test]
    fn plan_adds_missing_and_removes_only_what_was_applied() {
        let g = |s: &str| GroupId::parse(s).unwrap();
        let applied = BTreeSet::from([g("a"), g("b")]);
        let desired = BTreeSet::from([g("b"), g("c")]);
        let plan = GroupPlan::between(&applied, &desired);
        assert_eq!(plan.add, BTreeSet::from([g("c")]));
        assert_eq!(plan.remove, BTreeSet::from([g("a")]));
    }
}
