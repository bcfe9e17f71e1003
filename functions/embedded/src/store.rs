//! The idempotency store and the entitlement ledger on a [`Journal`], with the conditional-write
//! rules the DynamoDB adapter implements: one claim wins, owners alone complete or release, and a
//! ledger write on a stale version is refused. It also keeps every buyer's history
//! ([`HistoryLog`]): one row per entry, keyed by buyer and time, dropped once its retention has
//! passed.

use crate::journal::Journal;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use enroll_core::history::{self, HistoryEntry, DEFAULT_RETENTION_DAYS};
use enroll_core::idempotency::{Claim, IdempotencyRecord, Status, KEEP_COMPLETED};
use enroll_core::ids::{BuyerEmail, NotionUserId, OrderKey};
use enroll_core::ledger::{BuyerRecord, OrderRecord};
use enroll_core::ports::{HistoryLog, IdempotencyStore, LedgerScan, LedgerStore};
use enroll_core::Failure;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

const IDEM: &str = "idem";
const ORDERS: &str = "order";
const BUYERS: &str = "buyer";
const USERS: &str = "user";
const HISTORY: &str = "history";

/// The embedded store. Cloning shares the same state.
#[derive(Clone)]
pub struct FileStore {
    journal: Arc<Mutex<Journal>>,
    history_retention_days: u32,
}

/// A history entry as stored: the entry and the moment it may be dropped.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredEntry {
    #[serde(flatten)]
    entry: HistoryEntry,
    /// Epoch seconds, as DynamoDB's TTL attribute.
    expiration: i64,
}

/// Emails hold no whitespace, so a space ends the buyer's part of a history key; the time is
/// fixed-width, so key order is time order.
fn history_prefix(email: &BuyerEmail) -> String {
    format!("{} ", email.as_str())
}

fn io_failure(e: io::Error) -> Failure {
    Failure::transient(format!("embedded store write failed: {e}")).caused_by(&e)
}

impl FileStore {
    /// Opens the store and drops history entries past their retention.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut journal = Journal::open(path)?;
        let now = Utc::now().timestamp();
        let expired: Vec<String> = journal
            .all::<StoredEntry>(HISTORY)
            .into_iter()
            .filter(|(_, e)| e.expiration < now)
            .map(|(k, _)| k)
            .collect();
        for k in expired {
            journal.remove(HISTORY, &k)?;
        }
        Ok(Self::on(journal))
    }

    /// Reads a store another process owns, without taking it over.
    pub fn open_read_only(path: &Path) -> io::Result<Self> {
        Ok(Self::on(Journal::open_read_only(path)?))
    }

    pub fn in_memory() -> Self {
        Self::on(Journal::in_memory())
    }

    fn on(journal: Journal) -> Self {
        Self {
            journal: Arc::new(Mutex::new(journal)),
            history_retention_days: DEFAULT_RETENTION_DAYS,
        }
    }

    /// How long history entries written from now on are kept (`[history] retention_days`).
    pub fn with_history_retention(mut self, days: u32) -> Self {
        self.history_retention_days = days;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Journal> {
        // A panic while holding the lock leaves consistent data (each change is one insert).
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every buyer record, for status and audit reports.
    pub fn buyers(&self) -> Vec<BuyerRecord> {
        self.lock()
            .all::<BuyerRecord>(BUYERS)
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }

    /// Every order record.
    pub fn all_orders(&self) -> Vec<OrderRecord> {
        self.lock()
            .all::<OrderRecord>(ORDERS)
            .into_iter()
            .map(|(_, o)| o)
            .collect()
    }

    /// Every idempotency record, for reports and tests.
    pub fn idempotency_records(&self) -> Vec<IdempotencyRecord> {
        self.lock()
            .all::<IdempotencyRecord>(IDEM)
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    fn put_versioned<T: serde::Serialize>(
        &self,
        table: &str,
        key: &str,
        read_version: u64,
        stored_version: impl Fn(&Journal) -> Option<u64>,
        with_version: impl Fn(u64) -> T,
    ) -> Result<u64, Failure> {
        let mut j = self.lock();
        let current = stored_version(&j).unwrap_or(0);
        if current != read_version {
            return Err(Failure::transient(format!(
                "concurrent update of {table} record (read version {read_version}, stored {current})"
            )));
        }
        let next = read_version + 1;
        j.put(table, key, &with_version(next)).map_err(io_failure)?;
        Ok(next)
    }
}

#[async_trait]
impl IdempotencyStore for FileStore {
    async fn claim(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Claim, Failure> {
        let mut j = self.lock();
        if let Some(existing) = j.get::<IdempotencyRecord>(IDEM, &record.key) {
            if !existing.can_be_taken_over(now) {
                return Ok(Claim::from_existing(existing));
            }
        }
        j.put(IDEM, &record.key, record).map_err(io_failure)?;
        Ok(Claim::Acquired)
    }

    async fn complete(&self, key: &str, owner: &str, outcome: &str) -> Result<(), Failure> {
        let mut j = self.lock();
        let Some(mut rec) = j.get::<IdempotencyRecord>(IDEM, key) else {
            return Err(Failure::transient(
                "idempotency key vanished before completion",
            ));
        };
        if rec.owner != owner {
            return Err(Failure::transient(
                "idempotency key taken over before completion",
            ));
        }
        rec.status = Status::Completed;
        rec.outcome = Some(outcome.to_owned());
        rec.expiration = (Utc::now() + KEEP_COMPLETED).timestamp();
        j.put(IDEM, key, &rec).map_err(io_failure)
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), Failure> {
        let mut j = self.lock();
        match j.get::<IdempotencyRecord>(IDEM, key) {
            Some(rec) if rec.owner == owner => j.remove(IDEM, key).map_err(io_failure),
            _ => Ok(()),
        }
    }
}

fn order_key(k: &OrderKey) -> String {
    k.to_string()
}

#[async_trait]
impl LedgerStore for FileStore {
    async fn order(&self, key: &OrderKey) -> Result<Option<OrderRecord>, Failure> {
        Ok(self.lock().get(ORDERS, &order_key(key)))
    }

    async fn orders(&self, keys: &[OrderKey]) -> Result<Vec<OrderRecord>, Failure> {
        let j = self.lock();
        Ok(keys
            .iter()
            .filter_map(|k| j.get(ORDERS, &order_key(k)))
            .collect())
    }

    async fn put_order(&self, record: &OrderRecord) -> Result<u64, Failure> {
        let key = order_key(&record.order);
        self.put_versioned(
            ORDERS,
            &key,
            record.version,
            |j| j.get::<OrderRecord>(ORDERS, &key).map(|o| o.version),
            |v| OrderRecord {
                version: v,
                ..record.clone()
            },
        )
    }

    async fn buyer(&self, email: &BuyerEmail) -> Result<Option<BuyerRecord>, Failure> {
        Ok(self.lock().get(BUYERS, email.as_str()))
    }

    async fn put_buyer(&self, record: &BuyerRecord) -> Result<u64, Failure> {
        let key = record.email.as_str();
        let v = self.put_versioned(
            BUYERS,
            key,
            record.version,
            |j| j.get::<BuyerRecord>(BUYERS, key).map(|b| b.version),
            |v| BuyerRecord {
                version: v,
                ..record.clone()
            },
        )?;
        if let Some(user) = &record.notion_user_id {
            self.lock()
                .put(USERS, user.as_str(), &key)
                .map_err(io_failure)?;
        }
        Ok(v)
    }

    async fn buyer_by_user(&self, user: &NotionUserId) -> Result<Option<BuyerEmail>, Failure> {
        Ok(self
            .lock()
            .get::<String>(USERS, user.as_str())
            .and_then(|e| BuyerEmail::parse(&e).ok()))
    }

    async fn buyers_due(&self, now: DateTime<Utc>) -> Result<Vec<BuyerEmail>, Failure> {
        Ok(self
            .buyers()
            .into_iter()
            .filter(|b| b.next_change_at.is_some_and(|t| t <= now))
            .map(|b| b.email)
            .collect())
    }
}

#[async_trait]
impl LedgerScan for FileStore {
    async fn all_buyers(&self) -> Result<Vec<BuyerRecord>, Failure> {
        Ok(self.buyers())
    }

    async fn all_orders(&self) -> Result<Vec<OrderRecord>, Failure> {
        Ok(FileStore::all_orders(self))
    }
}

#[async_trait]
impl HistoryLog for FileStore {
    async fn append(&self, buyer: &BuyerEmail, entries: &[HistoryEntry]) -> Result<(), Failure> {
        let mut j = self.lock();
        let prefix = history_prefix(buyer);
        for (i, entry) in entries.iter().enumerate() {
            // The position keeps entries of one append in order when they share an instant;
            // the random part keeps two appends at one instant apart.
            let key = format!(
                "{prefix}{} {i:03}{}",
                entry.at.to_rfc3339_opts(SecondsFormat::Nanos, true),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            let stored = StoredEntry {
                entry: entry.clone(),
                expiration: history::expires_at(entry.at, self.history_retention_days).timestamp(),
            };
            j.put(HISTORY, &key, &stored).map_err(io_failure)?;
        }
        Ok(())
    }

    async fn history(&self, buyer: &BuyerEmail) -> Result<Vec<HistoryEntry>, Failure> {
        let now = Utc::now().timestamp();
        Ok(self
            .lock()
            .with_prefix::<StoredEntry>(HISTORY, &history_prefix(buyer))
            .into_iter()
            .filter(|(_, e)| e.expiration >= now)
            .map(|(_, e)| e.entry)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn rec(owner: &str, now: DateTime<Utc>, secs: i64) -> IdempotencyRecord {
        IdempotencyRecord::in_progress(
            "stripe:evt_1",
            "h",
            owner,
            now,
            now + TimeDelta::seconds(secs),
        )
    }

    #[tokio::test]
    async fn claim_complete_and_takeover_follow_the_rules() {
        let s = FileStore::in_memory();
        let now = Utc::now();
        assert_eq!(
            s.claim(&rec("a", now, 30), now).await.unwrap(),
            Claim::Acquired
        );
        assert!(matches!(
            s.claim(&rec("b", now, 30), now).await.unwrap(),
            Claim::InProgress(_)
        ));
        let later = now + TimeDelta::seconds(31);
        assert_eq!(
            s.claim(&rec("b", later, 30), later).await.unwrap(),
            Claim::Acquired
        );
        // The old holder lost the key: it can neither complete nor release it.
        assert!(s.complete("stripe:evt_1", "a", "done").await.is_err());
        s.release("stripe:evt_1", "a").await.unwrap();
        s.complete("stripe:evt_1", "b", "done").await.unwrap();
        match s.claim(&rec("c", later, 30), later).await.unwrap() {
            Claim::Completed(r) => assert_eq!(r.outcome.as_deref(), Some("done")),
            other => panic!("expected completed, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn stale_version_write_is_refused() {
        let s = FileStore::in_memory();
        let b = BuyerRecord::new(BuyerEmail::parse("ada@example.com").unwrap());
        assert_eq!(s.put_buyer(&b).await.unwrap(), 1);
        let err = s.put_buyer(&b).await.unwrap_err();
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn history_is_per_buyer_in_time_order_and_survives_a_restart() {
        use enroll_core::history::Stage;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.log");
        let ada = BuyerEmail::parse("ada@example.com").unwrap();
        let adam = BuyerEmail::parse("ada@example.co").unwrap();
        let t0: DateTime<Utc> = Utc::now() - TimeDelta::minutes(5);
        {
            let s = FileStore::open(&path).unwrap();
            s.append(
                &ada,
                &[
                    HistoryEntry::new(t0 + TimeDelta::seconds(2), Stage::Provision, "applied"),
                    HistoryEntry::new(
                        t0 + TimeDelta::seconds(2),
                        Stage::Provision,
                        "added to Group A",
                    ),
                ],
            )
            .await
            .unwrap();
            s.append(
                &ada,
                &[HistoryEntry::new(
                    t0,
                    Stage::Ingest,
                    "received and verified",
                )],
            )
            .await
            .unwrap();
            s.append(&adam, &[HistoryEntry::new(t0, Stage::Align, "other buyer")])
                .await
                .unwrap();
        }
        let s = FileStore::open(&path).unwrap();
        let whats: Vec<String> = s
            .history(&ada)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.what)
            .collect();
        assert_eq!(
            whats,
            ["received and verified", "applied", "added to Group A"]
        );
        assert_eq!(s.history(&adam).await.unwrap().len(), 1);
        let read_only = FileStore::open_read_only(&path).unwrap();
        assert_eq!(read_only.history(&ada).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn history_past_its_retention_is_dropped() {
        use enroll_core::history::Stage;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.log");
        let ada = BuyerEmail::parse("ada@example.com").unwrap();
        {
            let s = FileStore::open(&path).unwrap().with_history_retention(30);
            let old = Utc::now() - TimeDelta::days(31);
            s.append(&ada, &[HistoryEntry::new(old, Stage::Ingest, "old")])
                .await
                .unwrap();
            s.append(&ada, &[HistoryEntry::now(Stage::Ingest, "new")])
                .await
                .unwrap();
            let whats: Vec<String> = s
                .history(&ada)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.what)
                .collect();
            assert_eq!(whats, ["new"]);
        }
        // Reopening drops the expired row itself, not only from reads.
        drop(FileStore::open(&path).unwrap());
        let rows = Journal::open_read_only(&path)
            .unwrap()
            .all::<serde_json::Value>(HISTORY);
        assert_eq!(rows.len(), 1);
    }
}
