//! One provision batch: each message an [`OrderEvent`], handled by [`Provisioner::process`],
//! with the batch's Group adds coalesced.
//!
//! # Concurrency
//!
//! Events run concurrently, all spending the one rate budget, so the budget stays busy while
//! some events wait on the store or on Notion. Events that could touch the same ledger records
//! (the same order, or the same buyer email) form a *lane* and run one after another, in
//! message order, as a lone worker would run them.
//!
//! # Coalescing
//!
//! Inside a batch the provisioner's directory ([`coalescing`]) does not send an add at once:
//! the event waits while the others run, and when every running event is either waiting on an
//! add or finished, one PATCH per Group carries all the members waiting for it. Each waiting
//! event then gets that PATCH's result as its own, so a failed PATCH fails exactly the events
//! whose members were in it: a transient failure makes them batch item failures (redelivered,
//! their keys released by [`Provisioner::process`]); a permanent one is first retried with one
//! PATCH per event, so a member the server refuses does not park its neighbours. Nothing is
//! stored as applied before its PATCH succeeded, so no event can be lost. Outside a batch (the
//! expiry pass, the operator tools) adds go straight through.

use crate::Provisioner;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enroll_core::batch::{self, BatchReport, Incoming};
use enroll_core::event::OrderEvent;
use enroll_core::ids::{BuyerEmail, GroupId, NotionUserId};
use enroll_core::ports::{Created, DeadLetters, Directory, ScimUser};
use enroll_core::Failure;
use futures::future::join_all;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

tokio::task_local! {
    /// The batch being run on this task, if any.
    static BATCH: Arc<Coalescer>;
    /// Which of the batch's messages an add comes from: an event adding to several Groups at
    /// once counts once among those waiting.
    static EVENT: usize;
}

/// Runs a batch; `deadline` is when the invocation runs out of time.
pub async fn run(
    provisioner: &Provisioner,
    dead: &dyn DeadLetters,
    messages: &[Incoming],
    deadline: DateTime<Utc>,
) -> BatchReport {
    let coalescer = Arc::new(Coalescer::default());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let handle = |event: OrderEvent| {
        let (coalescer, id) = (&coalescer, next.fetch_add(1, Ordering::Relaxed));
        async move {
            coalescer.enter();
            let result = EVENT
                .scope(
                    id,
                    provisioner.process(&event, provisioner.clock.now(), deadline),
                )
                .await
                .map(drop);
            coalescer.leave().await;
            result
        }
    };
    // The lanes run on this task (nothing is spawned), so the batch's task-local scope covers
    // them all.
    BATCH
        .scope(
            coalescer.clone(),
            batch::run_in_lanes(messages, dead, &provisioner.timings, lane_keys, handle),
        )
        .await
}

/// Events that could touch the same ledger records: the same order, or the same buyer email.
fn lane_keys(e: &OrderEvent) -> Vec<String> {
    std::iter::once(format!("order {}", e.order))
        .chain(
            e.buyer
                .as_ref()
                .map(|b| format!("buyer {}", b.email.as_str())),
        )
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An event's members waiting for one Group's PATCH, and where its result goes.
struct Waiter {
    users: Vec<NotionUserId>,
    done: oneshot::Sender<Result<(), Failure>>,
}

#[derive(Default)]
struct State {
    /// Events of this batch running right now.
    running: usize,
    /// Of those, the ones waiting on a Group add.
    waiting: HashSet<usize>,
    pending: BTreeMap<GroupId, Vec<Waiter>>,
    /// The directory the PATCHes go to, known from the first add.
    directory: Option<Arc<dyn Directory>>,
}

/// The Group adds of one batch.
#[derive(Default)]
struct Coalescer {
    state: Mutex<State>,
}

impl Coalescer {
    fn enter(&self) {
        lock(&self.state).running += 1;
    }

    async fn leave(&self) {
        lock(&self.state).running -= 1;
        self.flush_if_ready().await;
    }

    async fn add(
        &self,
        directory: &Arc<dyn Directory>,
        group: &GroupId,
        users: &[NotionUserId],
    ) -> Result<(), Failure> {
        let (done, result) = oneshot::channel();
        {
            let mut s = lock(&self.state);
            s.directory.get_or_insert_with(|| directory.clone());
            s.pending.entry(group.clone()).or_default().push(Waiter {
                users: users.to_vec(),
                done,
            });
            s.waiting
                .insert(EVENT.try_with(|e| *e).unwrap_or(usize::MAX));
        }
        // An event adding to several Groups at once registers them all before anyone looks:
        // its other adds run on this task and get their turn now.
        tokio::task::yield_now().await;
        self.flush_if_ready().await;
        result.await.unwrap_or_else(|_| {
            Err(Failure::transient(
                "the batch ended before this Group add was sent",
            ))
        })
    }

    /// Once no running event can still add a member, sends one PATCH per Group.
    async fn flush_if_ready(&self) {
        let (directory, pending) = {
            let mut s = lock(&self.state);
            if s.waiting.is_empty() || s.waiting.len() < s.running {
                return;
            }
            s.waiting.clear();
            let Some(directory) = s.directory.clone() else {
                return;
            };
            (directory, std::mem::take(&mut s.pending))
        };
        let patches = pending
            .into_iter()
            .map(|(group, waiters)| patch(directory.as_ref(), group, waiters));
        join_all(patches).await;
    }
}

async fn patch(directory: &dyn Directory, group: GroupId, waiters: Vec<Waiter>) {
    let users: Vec<NotionUserId> = waiters
        .iter()
        .flat_map(|w| w.users.iter().cloned())
        .collect();
    tracing::debug!(group = %group, members = users.len(), events = waiters.len(), "coalesced Group add");
    match directory.add_members(&group, &users).await {
        Err(f) if f.is_permanent() && waiters.len() > 1 => {
            tracing::warn!(group = %group, reason = %f.reason, "coalesced Group add refused: retrying per event");
            for w in waiters {
                let result = directory.add_members(&group, &w.users).await;
                let _ = w.done.send(result);
            }
        }
        result => {
            for w in waiters {
                let _ = w.done.send(result.clone());
            }
        }
    }
}

/// The provisioner's directory: inside [`run`], Group adds join the batch's PATCHes; anywhere
/// else every call goes straight to `inner`.
pub(crate) fn coalescing(inner: Arc<dyn Directory>) -> Arc<dyn Directory> {
    Arc::new(Coalescing { inner })
}

struct Coalescing {
    inner: Arc<dyn Directory>,
}

#[async_trait]
impl Directory for Coalescing {
    async fn find_user(&self, email: &BuyerEmail) -> Result<Option<ScimUser>, Failure> {
        self.inner.find_user(email).await
    }

    async fn get_user(&self, id: &NotionUserId) -> Result<Option<ScimUser>, Failure> {
        self.inner.get_user(id).await
    }

    async fn create_user(
        &self,
        email: &BuyerEmail,
        name: Option<&str>,
    ) -> Result<Created, Failure> {
        self.inner.create_user(email, name).await
    }

    async fn add_members(&self, group: &GroupId, users: &[NotionUserId]) -> Result<(), Failure> {
        match BATCH.try_with(Arc::clone) {
            Ok(batch) if !users.is_empty() => batch.add(&self.inner, group, users).await,
            _ => self.inner.add_members(group, users).await,
        }
    }

    async fn remove_members(&self, group: &GroupId, users: &[NotionUserId]) -> Result<(), Failure> {
        self.inner.remove_members(group, users).await
    }

    async fn find_group(&self, display_name: &str) -> Result<Option<GroupId>, Failure> {
        self.inner.find_group(display_name).await
    }

    async fn remove_user(&self, id: &NotionUserId) -> Result<(), Failure> {
        self.inner.remove_user(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enroll_core::event::{Buyer, EventKind};
    use enroll_core::ids::{EventId, EventKey, OrderId, OrderKey, Platform};

    fn event(order: &str, email: Option<&str>) -> Option<OrderEvent> {
        Some(OrderEvent {
            key: EventKey::new(Platform::Stripe, EventId::parse(order).unwrap()),
            kind: EventKind::Purchase,
            order: OrderKey {
                platform: Platform::Stripe,
                order_id: OrderId::parse(order).unwrap(),
            },
            buyer: email.map(|e| Buyer {
                email: BuyerEmail::parse(e).unwrap(),
                name: None,
            }),
            items: Vec::new(),
            occurred_at: Utc::now(),
            accepted_at: None,
        })
    }

    #[test]
    fn events_sharing_an_order_or_a_buyer_share_a_lane() {
        let events = [
            event("o1", Some("a@x.org")),
            event("o2", Some("b@x.org")),
            event("o3", Some("a@x.org")),
            None,
            event("o2", None),
            event("o4", Some("c@x.org")),
        ];
        let keys: Vec<_> = events.iter().map(|e| e.as_ref().map(lane_keys)).collect();
        assert_eq!(batch::lanes(&keys), vec![vec![0, 2], vec![1, 4], vec![5]]);
    }
}
