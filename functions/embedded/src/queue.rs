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
pub const ATTR_REASON: &str = "enroll.reason";
pub const ATTR_EVENT_KEY: &str = "enroll.event_key";
pub const ATTR_BUYER: &str = "enroll.buyer";
pub const ATTR_SOURCE: &str = "enroll.source";
pub const ATTR_PARKED_AT: &str = "enroll.parked_at";

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
        let id = self.next_key();
        let now = now_ms();
        let msg = Message {
            id: id.clone(),
            body: body.to_owned(),
            attributes,
            receive_count: 0,
            sent_at_ms: now,
            visible_at_ms: now,
        };
        self.lock().put(&self.name, &id, &msg)?;
        self.arrived.notify_waiters();
        Ok(id)
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
                    attrs.entry(ATTR_REASON.into()).or_insert_with(|| {
                        format!(
                            "received {} times without success (maxReceiveCount {})",
                            msg.receive_count, self.settings.max_receives
                        )
                    });
                    attrs.insert(ATTR_SOURCE.into(), self.name.clone());
                    // Into the DLQ first, then out of here: never lost, at worst briefly in both.
                    dlq.send_with(&msg.body, attrs)?;
                    j.remove(&self.name, &key)?;
                    continue;
                }
            }
            msg.receive_count += 1;
            msg.visible_at_ms = now + self.settings.visibility.as_millis() as i64;
            j.put(&self.name, &key, &msg)?;
            got.push(msg);
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

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send(&self, body: &str) -> Result<(), Failure> {
        self.send_with(body, BTreeMap::new())
            .map(drop)
            .map_err(|e| Failure::transient(format!("queue {} unavailable: {e}", self.name)))
    }
}

/// Parks messages in a stage's dead-letter queue with the reason as attributes.
pub struct QueueDeadLetters {
    pub dlq: Arc<EmbeddedQueue>,
    pub source: String,
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
        self.dlq
            .send_with(body, parked_attributes(why, &self.source))
            .map(drop)
            .map_err(|e| Failure::transient(format!("dead-letter queue unavailable: {e}")))
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
}
