//! An in-process queue with the SQS semantics the pipeline relies on: a received message stays
//! hidden for the visibility timeout and comes back unless deleted; after `max_receives`
//! receives it moves to the dead-letter queue. Messages live in a [`Journal`], so a queue
//! survives a restart, and a worker killed mid-batch leaves its messages to be received again.

use crate::journal::Journal;
use async_trait::async_trait;
use enroll_core::ports::{DeadLetters, ParkedReason, Queue};
use enroll_core::Failure;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// Attribute names carried by parked messages, the same on SQS.
pub use enroll_core::dead_letters::{
    ATTR_BUYER, ATTR_EVENT_KEY, ATTR_PARKED_AT, ATTR_REASON, ATTR_RECEIVES, ATTR_SOURCE,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub body: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub receive_count: u32,
    pub sent_at_ms: i64,
    pub visible_at_ms: i64,
}

/// How a queue behaves; the defaults mirror the template's settings, scaled for a laptop.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub visibility: Duration,
    pub max_receives: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility: Duration::from_secs(30),
            max_receives: 5,
        }
    }
}

pub struct EmbeddedQueue {
    name: String,
    journal: Arc<Mutex<Journal>>,
    settings: QueueSettings,
    dlq: Option<Arc<EmbeddedQueue>>,
    seq: AtomicU64,
    arrived: Notify,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl EmbeddedQueue {
    /// A queue stored in `journal` under the table `name`. Several queues may share a journal.
    pub fn new(
        name: &str,
        journal: Arc<Mutex<Journal>>,
        settings: QueueSettings,
        dlq: Option<Arc<EmbeddedQueue>>,
    ) -> Arc<Self> {
        let next = journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .all::<Message>(name)
            .len() as u64;
        Arc::new(Self {
            name: name.to_owned(),
            journal,
            settings,
            dlq,
            seq: AtomicU64::new(next),
            arrived: Notify::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dead_letter_queue(&self) -> Option<&Arc<EmbeddedQueue>> {
        self.dlq.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sorts by arrival: the key starts with a zero-padded time and sequence number.
    fn next_key(&self) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        format!(
            "{:016}-{:010}-{}",
            now_ms(),
            seq,
            uuid::Uuid::new_v4().simple()
        )
    }

    pub fn send_with(
        &self,
        body: &str,
        attributes: BTreeMap<String, String>,
    ) -> io::Result<String> {
        let msg = self.new_message(body, attributes);
        self.lock().put(&self.name, &msg.id, &msg)?;
        self.arrived.notify_waiters();
        Ok(msg.id)
    }

    fn new_message(&self, body: &str, attributes: BTreeMap<String, String>) -> Message {
        let now = now_ms();
        Message {
            id: self.next_key(),
            body: body.to_owned(),
            attributes,
            receive_count: 0,
            sent_at_ms: now,
            visible_at_ms: now,
        }
    }

    /// Parks `body` in `dlq` while this queue's journal is locked as `j`. A dead-letter queue
    /// usually shares the journal, and its lock is not reentrant: taking it again here would
    /// deadlock the receiving thread, so the write goes through the guard already held.
    fn park_locked(
        &self,
        j: &mut Journal,
        dlq: &EmbeddedQueue,
        body: &str,
        attributes: BTreeMap<String, String>,
    ) -> io::Result<()> {
        if Arc::ptr_eq(&self.journal, &dlq.journal) {
            let msg = dlq.new_message(body, attributes);
            j.put(&dlq.name, &msg.id, &msg)
        } else {
            dlq.send_with(body, attributes).map(drop)
        }
    }

    /// Receives up to `max` visible messages, waiting up to `wait` for one to arrive. Messages
    /// past their receive limit move to the dead-letter queue instead of being returned.
    pub async fn receive(&self, max: usize, wait: Duration) -> io::Result<Vec<Message>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            let (got, next_visible) = self.receive_now(max)?;
            if !got.is_empty() {
                return Ok(got);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(got);
            }
            let mut nap = deadline - now;
            if let Some(at) = next_visible {
                let until = Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0));
                nap = nap.min(until.max(Duration::from_millis(5)));
            }
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    fn receive_now(&self, max: usize) -> io::Result<(Vec<Message>, Option<i64>)> {
        let now = now_ms();
        let mut j = self.lock();
        let mut got = Vec::new();
        let mut next_visible: Option<i64> = None;
        let mut parked = false;
        for (key, mut msg) in j.all::<Message>(&self.name) {
            if got.len() >= max {
                break;
            }
            if msg.visible_at_ms > now {
                next_visible =
                    Some(next_visible.map_or(msg.visible_at_ms, |n| n.min(msg.visible_at_ms)));
                continue;
            }
            if msg.receive_count >= self.settings.max_receives {
                if let Some(dlq) = &self.dlq {
                    let mut attrs = msg.attributes.clone();
                    // The batch runner parks failures itself, with their reason, on the last
                    // allowed receive; a message gets here only if no worker ever settled it,
                    // i.e. the worker died while handling it every time.
                    attrs.entry(ATTR_REASON.into()).or_insert_with(|| {
                        format!(
                            "received {} times and never settled: the worker stopped while handling it each time (maxReceiveCount {})",
                            msg.receive_count, self.settings.max_receives
                        )
                    });
                    attrs.insert(ATTR_SOURCE.into(), self.name.clone());
                    attrs.insert(ATTR_RECEIVES.into(), msg.receive_count.to_string());
                    attrs.insert(ATTR_PARKED_AT.into(), chrono::Utc::now().to_rfc3339());
                    // Into the DLQ first, then out of here: never lost, at worst briefly in both.
                    self.park_locked(&mut j, dlq, &msg.body, attrs)?;
                    j.remove(&self.name, &key)?;
                    parked = true;
                    continue;
                }
            }
            msg.receive_count += 1;
            msg.visible_at_ms = now + self.settings.visibility.as_millis() as i64;
            j.put(&self.name, &key, &msg)?;
            got.push(msg);
        }
        drop(j);
        if parked {
            if let Some(dlq) = &self.dlq {
                dlq.arrived.notify_waiters();
            }
        }
        Ok((got, next_visible))
    }

    pub fn delete(&self, id: &str) -> io::Result<()> {
        self.lock().remove(&self.name, id)
    }

    /// Makes a received message visible again after `after` (a retry honouring `Retry-After`).
    pub fn change_visibility(&self, id: &str, after: Duration) -> io::Result<()> {
        let mut j = self.lock();
        if let Some(mut msg) = j.get::<Message>(&self.name, id) {
            msg.visible_at_ms = now_ms() + after.as_millis() as i64;
            j.put(&self.name, id, &msg)?;
        }
        drop(j);
        self.arrived.notify_waiters();
        Ok(())
    }

    /// Brings a received message back after `after` without counting its receive: its key was
    /// held by another worker, which is no failure of the message (see
    /// `enroll_core::timings`).
    pub fn defer(&self, id: &str, after: Duration) -> io::Result<()> {
        let mut j = self.lock();
        if let Some(mut msg) = j.get::<Message>(&self.name, id) {
            msg.visible_at_ms = now_ms() + after.as_millis() as i64;
            msg.receive_count = msg.receive_count.saturating_sub(1);
            j.put(&self.name, id, &msg)?;
        }
        drop(j);
        self.arrived.notify_waiters();
        Ok(())
    }

    /// Makes every received, unsettled message visible again at once, uncounted. Only for the
    /// journal's one writer at start-up: any message still hidden then was held by a process
    /// that is gone, so waiting out its visibility would only delay its buyer. Returns how many
    /// came back.
    pub fn recover_in_flight(&self) -> io::Result<usize> {
        let now = now_ms();
        let mut j = self.lock();
        let mut back = 0;
        for (key, mut msg) in j.all::<Message>(&self.name) {
            if msg.receive_count > 0 && msg.visible_at_ms > now {
                msg.visible_at_ms = now;
                msg.receive_count -= 1;
                j.put(&self.name, &key, &msg)?;
                back += 1;
            }
        }
        drop(j);
        self.arrived.notify_waiters();
        Ok(back)
    }

    /// Every message, visible or not, without receiving anything: for `dlq list` and tests.
    pub fn peek(&self) -> Vec<Message> {
        self.lock()
            .all::<Message>(&self.name)
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.peek().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One message a replay sent back to its source queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// Its id in the dead-letter queue, now gone.
    pub dlq_id: String,
    /// Its id in the source queue: a replayed message is a new message, as on SQS.
    pub new_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_key: Option<String>,
}

impl EmbeddedQueue {
    /// Sends the parked message `id` back to `target` and only then deletes it here, so a crash
    /// in between leaves it in both (provision and align are idempotent) and never in neither.
    /// The `enroll.*` parking attributes stay behind: a message that fails again is parked with
    /// its new reason. `None` when no message has this id.
    pub fn redrive(&self, id: &str, target: &EmbeddedQueue) -> io::Result<Option<Replayed>> {
        let Some(msg) = self.lock().get::<Message>(&self.name, id) else {
            return Ok(None);
        };
        let attributes: BTreeMap<String, String> = msg
            .attributes
            .iter()
            .filter(|(k, _)| !k.starts_with("enroll."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let new_id = target.send_with(&msg.body, attributes)?;
        self.delete(id)?;
        Ok(Some(Replayed {
            dlq_id: msg.id,
            new_id,
            event_key: msg.attributes.get(ATTR_EVENT_KEY).cloned(),
        }))
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send(&self, body: &str) -> Result<(), Failure> {
        self.send_with(body, BTreeMap::new())
            .map(drop)
            .map_err(|e| {
                Failure::transient(format!("queue {} unavailable: {e}", self.name)).caused_by(&e)
            })
    }
}

/// Parks messages in a stage's dead-letter queue with the reason as attributes.
pub struct QueueDeadLetters {
    pub dlq: Arc<EmbeddedQueue>,
    pub source: String,
    /// The tenant of `enroll dev --tenants` whose queue this is: the `enroll.tenant` attribute.
    pub tenant: Option<String>,
}

pub fn parked_attributes(why: &ParkedReason, source: &str) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::from([
        (
            ATTR_REASON.to_owned(),
            why.reason.chars().take(1000).collect(),
        ),
        (ATTR_SOURCE.to_owned(), source.to_owned()),
        (ATTR_PARKED_AT.to_owned(), chrono::Utc::now().to_rfc3339()),
    ]);
    if let Some(k) = &why.event_key {
        attrs.insert(ATTR_EVENT_KEY.to_owned(), k.clone());
    }
    if let Some(b) = &why.buyer {
        attrs.insert(ATTR_BUYER.to_owned(), b.clone());
    }
    attrs
}

#[async_trait]
impl DeadLetters for QueueDeadLetters {
    async fn park(&self, body: &str, why: &ParkedReason) -> Result<(), Failure> {
        // Two deliveries of one event that both fail for good are one problem for the
        // operator: the second is dropped once the first is parked with the same body.
        if let Some(key) = &why.event_key {
            let already = self
                .dlq
                .peek()
                .into_iter()
                .any(|m| m.body == body && m.attributes.get(ATTR_EVENT_KEY) == Some(key));
            if already {
                tracing::info!(event_key = %key, "already parked: duplicate delivery dropped");
                return Ok(());
            }
        }
        let mut attributes = parked_attributes(why, &self.source);
        if let Some(t) = &self.tenant {
            attributes.insert(enroll_core::dead_letters::ATTR_TENANT.to_owned(), t.clone());
        }
        self.dlq.send_with(body, attributes).map(drop).map_err(|e| {
            Failure::transient(format!("dead-letter queue unavailable: {e}")).caused_by(&e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(max_receives: u32) -> (Arc<EmbeddedQueue>, Arc<EmbeddedQueue>) {
        let j = Arc::new(Mutex::new(Journal::in_memory()));
        let dlq = EmbeddedQueue::new("q-dlq", j.clone(), QueueSettings::default(), None);
        let settings = QueueSettings {
            visibility: Duration::from_millis(20),
            max_receives,
        };
        (EmbeddedQueue::new("q", j, settings, Some(dlq.clone())), dlq)
    }

    #[tokio::test]
    async fn undeleted_message_returns_then_moves_to_the_dlq() {
        let (q, dlq) = queues(2);
        q.send_with("m", BTreeMap::new()).unwrap();
        for expected in 1..=2 {
            let got = q.receive(10, Duration::from_secs(1)).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].receive_count, expected);
        }
        let got = q.receive(10, Duration::from_millis(100)).await.unwrap();
        assert!(got.is_empty());
        assert!(q.is_empty());
        let parked = dlq.peek();
        assert_eq!(parked.len(), 1);
        assert!(parked[0].attributes[ATTR_REASON].contains("maxReceiveCount"));
    }

    #[tokio::test]
    async fn deleted_message_is_gone_and_invisible_one_waits() {
        let (q, _) = queues(5);
        q.send_with("a", BTreeMap::new()).unwrap();
        let got = q.receive(1, Duration::ZERO).await.unwrap();
        assert!(q.receive(1, Duration::ZERO).await.unwrap().is_empty());
        q.delete(&got[0].id).unwrap();
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_deferral_does_not_count_as_a_receive() {
        let (q, dlq) = queues(2);
        q.send_with("m", BTreeMap::new()).unwrap();
        // Many more deferrals than the receive limit: the message is never parked.
        for _ in 0..5 {
            let got = q.receive(1, Duration::from_secs(1)).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].receive_count, 1);
            q.defer(&got[0].id, Duration::ZERO).unwrap();
        }
        assert!(dlq.is_empty());
        assert_eq!(q.len(), 1);
    }

    #[tokio::test]
    async fn a_restart_brings_back_what_a_dead_process_held_uncounted() {
        let j = Arc::new(Mutex::new(Journal::in_memory()));
        let settings = QueueSettings {
            visibility: Duration::from_secs(3600),
            max_receives: 5,
        };
        let q = EmbeddedQueue::new("q", j.clone(), settings, None);
        q.send_with("a", BTreeMap::new()).unwrap();
        q.send_with("b", BTreeMap::new()).unwrap();
        assert_eq!(q.receive(1, Duration::ZERO).await.unwrap().len(), 1);
        // The process that received it is gone; the next one opens the same journal.
        let q = EmbeddedQueue::new("q", j, settings, None);
        assert_eq!(q.recover_in_flight().unwrap(), 1);
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 2, "both visible at once, not after an hour");
        assert!(got.iter().all(|m| m.receive_count == 1));
    }

    #[tokio::test]
    async fn an_unsettled_message_is_parked_with_its_receives_and_time() {
        let (q, dlq) = queues(1);
        q.send_with("m", BTreeMap::new()).unwrap();
        q.receive(1, Duration::ZERO).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(q.receive(1, Duration::ZERO).await.unwrap().is_empty());
        let parked = &dlq.peek()[0];
        assert!(parked.attributes[ATTR_REASON].contains("never settled"));
        assert_eq!(parked.attributes[ATTR_RECEIVES], "1");
        assert!(parked.attributes.contains_key(ATTR_PARKED_AT));
    }

    #[tokio::test]
    async fn a_tenants_parked_message_names_the_tenant() {
        let (_, dlq) = queues(5);
        let why = ParkedReason {
            reason: "unknown Group".into(),
            event_key: Some("stripe:evt_1".into()),
            buyer: None,
        };
        for tenant in [Some("acme"), None] {
            let dead = QueueDeadLetters {
                dlq: dlq.clone(),
                source: "provision".into(),
                tenant: tenant.map(str::to_owned),
            };
            dead.park(&format!("body {tenant:?}"), &why).await.unwrap();
        }
        let parked = dlq.peek();
        let tenant = enroll_core::dead_letters::ATTR_TENANT;
        assert_eq!(
            parked[0].attributes.get(tenant).map(String::as_str),
            Some("acme")
        );
        assert!(!parked[1].attributes.contains_key(tenant));
    }

    #[tokio::test]
    async fn a_duplicate_delivery_that_fails_for_good_is_parked_once() {
        let (_, dlq) = queues(5);
        let dead = QueueDeadLetters {
            dlq: dlq.clone(),
            source: "provision".into(),
            tenant: None,
        };
        let why = ParkedReason {
            reason: "unknown Group".into(),
            event_key: Some("stripe:evt_1".into()),
            buyer: None,
        };
        dead.park("body", &why).await.unwrap();
        dead.park("body", &why).await.unwrap();
        assert_eq!(dlq.len(), 1);
        // Another event's failure is its own entry.
        let other = ParkedReason {
            event_key: Some("stripe:evt_2".into()),
            ..why
        };
        dead.park("other", &other).await.unwrap();
        assert_eq!(dlq.len(), 2);
    }
}
