//! The verdict: what the data directory and the simulator say about the plan at one moment
//! (applied, lost, parked and why, duplicate accounts and sales records, Groups against the
//! ledger).

use super::{read_queues, read_store, Plan, ALIGN_DLQ, PROVISION_DLQ};
use chrono::Utc;
use enroll_core::catalog::GroupRef;
use enroll_core::config::Config;
use enroll_core::event::{AlignRequest, OrderEvent};
use enroll_core::idempotency::Status;
use enroll_core::ids::BuyerEmail;
use enroll_core::ledger::{self, OrderRecord};
use enroll_embedded::queue::{Message, ATTR_EVENT_KEY, ATTR_REASON};
use enroll_simulator::{PropertyValue, SimHandle};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Event key of a parked message, from its attributes or its body.
fn parked_key(queue: &str, m: &Message) -> Option<String> {
    if let Some(k) = m.attributes.get(ATTR_EVENT_KEY) {
        return Some(k.clone());
    }
    if queue == PROVISION_DLQ {
        serde_json::from_str::<OrderEvent>(&m.body)
            .ok()
            .map(|e| e.key.as_string())
    } else {
        serde_json::from_str::<AlignRequest>(&m.body)
            .ok()
            .map(|a| a.source.as_string())
    }
}

/// What the data directory and the simulator say at one moment.
#[derive(Debug, Default)]
pub(super) struct Verdict {
    pub(super) applied: usize,
    pub(super) lost: usize,
    pub(super) parked: usize,
    pub(super) parked_without_reason: usize,
    /// Buyers with an event in a dead-letter queue.
    pub(super) buyers_parked: BTreeSet<String>,
    pub(super) mismatched: BTreeSet<String>,
    pub(super) duplicate_creates: usize,
    pub(super) ledger_disagreements: usize,
    pub(super) unaligned: usize,
    pub(super) duplicate_records: usize,
    /// Parked because a killed process held the claim, or never settled: a crash's doing.
    pub(super) parked_by_crash: usize,
}

/// Whether a parking reason says the message's only trouble was a process that died: the
/// queue's never-settled backstop, or a wait for a dead holder's claim or lease.
fn parked_by_crash(reason: &str) -> bool {
    reason.contains("never settled")
        || reason.contains("another invocation is applying")
        || reason.contains("another align request")
}

/// Reads the data directory and the simulator against the plan; `keys` maps each accepted
/// event key to its event in the plan.
pub(super) fn verdict(
    sim: &SimHandle,
    dir: &Path,
    config: &Config,
    plan: &Plan,
    keys: &BTreeMap<String, usize>,
) -> anyhow::Result<Verdict> {
    let mut v = Verdict::default();
    let store = read_store(dir)?;
    let completed: BTreeMap<String, Option<String>> = store
        .idempotency_records()
        .into_iter()
        .filter(|r| r.status == Status::Completed)
        .map(|r| (r.key, r.outcome))
        .collect();
    let journal = read_queues(dir)?;
    let mut parked_keys = BTreeSet::new();
    for q in [PROVISION_DLQ, ALIGN_DLQ] {
        for (_, m) in journal.all::<Message>(q) {
            v.parked += 1;
            let reason = m
                .attributes
                .get(ATTR_REASON)
                .filter(|r| !r.trim().is_empty());
            let key = parked_key(q, &m);
            match reason {
                None => v.parked_without_reason += 1,
                Some(r) if parked_by_crash(r) => v.parked_by_crash += 1,
                Some(_) => {}
            }
            if let Some(k) = key {
                if let Some(&e) = keys.get(&k) {
                    v.buyers_parked.insert(plan.buyer_of[e].clone());
                }
                if reason.is_some() {
                    parked_keys.insert(k);
                }
            }
        }
    }
    let mut created_per_buyer: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, &e) in keys {
        match completed.get(key) {
            Some(outcome) => {
                v.applied += 1;
                if outcome
                    .as_deref()
                    .is_some_and(|o| o.contains("member created"))
                {
                    *created_per_buyer.entry(&plan.buyer_of[e]).or_default() += 1;
                }
            }
            None if parked_keys.contains(key) => {}
            None => v.lost += 1,
        }
    }

    let state = sim.state();
    let group_ids: BTreeMap<String, String> = state
        .groups
        .iter()
        .map(|g| (g.display_name.to_lowercase(), g.id.clone()))
        .collect();
    let resolve = |g: &GroupRef| match g {
        GroupRef::Id(id) => Some(id.as_str().to_owned()),
        GroupRef::Name(n) => group_ids.get(&n.to_lowercase()).cloned(),
    };
    let managed: BTreeSet<String> = config
        .catalog
        .managed_groups()
        .iter()
        .filter_map(resolve)
        .collect();
    let mut accounts: BTreeMap<String, usize> = BTreeMap::new();
    for u in &state.users {
        *accounts.entry(u.user_name.to_lowercase()).or_default() += 1;
    }
    v.duplicate_creates = accounts.values().map(|n| n - 1).sum::<usize>()
        + created_per_buyer
            .values()
            .map(|n| n.saturating_sub(1))
            .sum::<usize>();

    let orders = store.all_orders();
    let records: BTreeMap<String, _> = store
        .buyers()
        .into_iter()
        .map(|b| (b.email.as_str().to_owned(), b))
        .collect();
    let now = Utc::now();
    let user_prop = &config.notion.properties.notion_user_id;
    let mut records_per_user: BTreeMap<String, usize> = BTreeMap::new();
    for p in state.pages.iter().filter(|p| !p.in_trash) {
        if let Some(PropertyValue::RichText(parts)) = p.properties.get(user_prop) {
            let id = parts.concat();
            if !id.is_empty() {
                *records_per_user.entry(id).or_default() += 1;
            }
        }
    }
    v.duplicate_records = records_per_user.values().filter(|n| **n > 1).count();
    for (email, expected) in &plan.expected {
        let buyer = BuyerEmail::parse(email)?;
        let mine: Vec<&OrderRecord> = match records.get(buyer.as_str()) {
            Some(r) => orders
                .iter()
                .filter(|o| r.orders.contains(&o.order))
                .collect(),
            None => orders
                .iter()
                .filter(|o| o.buyer.as_ref() == Some(&buyer))
                .collect(),
        };
        let desired_refs = ledger::desired_groups(mine, now);
        if &desired_refs != expected {
            v.ledger_disagreements += 1;
        }
        let desired: BTreeSet<String> = desired_refs.iter().filter_map(resolve).collect();
        let user = sim.user_by_email(email).filter(|u| u.is_member());
        let actual: BTreeSet<String> = match &user {
            Some(u) => state
                .groups
                .iter()
                .filter(|g| managed.contains(&g.id) && g.members.contains(&u.id))
                .map(|g| g.id.clone())
                .collect(),
            None => BTreeSet::new(),
        };
        if desired != actual {
            v.mismatched.insert(email.clone());
        }
        if !desired.is_empty() {
            let written = user
                .as_ref()
                .is_some_and(|u| records_per_user.contains_key(&u.id));
            if !written {
                v.unaligned += 1;
            }
        }
    }
    Ok(v)
}
