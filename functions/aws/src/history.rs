//! [`DynamoHistory`]: every buyer's provisioning log, as an item collection under the buyer's
//! partition in the one table.
//!
//! Each append is one item (one `PutItem`, an action every writing function already has), whose
//! `entries` attribute holds that append's entries as a JSON list: the entries one event
//! produces (received, applied, each Group change) cost one request, not one each. The sort key
//! `hist#<first entry's time>#<random>` keeps the items in time order beside the buyer's own
//! `buyer` item, and the table's TTL attribute `expiration` drops them after the retention.

use crate::error::classify;
use crate::item::{json_why, n, s, Item};
use crate::schema::{buyer_pk, sortable_time, HISTORY_PREFIX, PK, SK, TTL_ATTRIBUTE};
use crate::AwsError;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::Utc;
use enroll_core::history::{self, HistoryEntry, DEFAULT_RETENTION_DAYS};
use enroll_core::ids::BuyerEmail;
use enroll_core::ports::HistoryLog;
use enroll_core::tenant::TenantId;
use enroll_core::Failure;

/// The attribute holding an item's entries (S, a JSON array of `{at, stage, what}`).
pub const ENTRIES: &str = "entries";

/// Buyers' histories in the enroll table.
#[derive(Debug, Clone)]
pub struct DynamoHistory {
    pub client: Client,
    pub table: String,
    /// Days an entry is kept (`[history] retention_days`).
    pub retention_days: u32,
    /// Whose buyers: their partition keys start with the tenant's prefix.
    pub tenant: TenantId,
}

impl DynamoHistory {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            retention_days: DEFAULT_RETENTION_DAYS,
            tenant: TenantId::default_tenant(),
        }
    }

    /// The histories of `tenant`'s buyers (see [`crate::DynamoStore::for_tenant`]).
    pub fn for_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = tenant;
        self
    }

    pub fn with_retention(mut self, days: u32) -> Self {
        self.retention_days = days;
        self
    }

    fn item(&self, buyer: &BuyerEmail, entries: &[HistoryEntry]) -> Result<Item, AwsError> {
        let first = entries.iter().map(|e| e.at).min().unwrap_or_else(Utc::now);
        let last = entries.iter().map(|e| e.at).max().unwrap_or(first);
        let random = uuid::Uuid::new_v4().simple().to_string();
        let doc = serde_json::to_string(entries)
            .map_err(|e| AwsError::malformed("history entries", json_why(&e)))?;
        Ok(Item::from([
            (PK.to_owned(), s(self.tenant.scope(&buyer_pk(buyer)))),
            (
                SK.to_owned(),
                s(format!(
                    "{HISTORY_PREFIX}{}#{}",
                    sortable_time(first),
                    &random[..8]
                )),
            ),
            (ENTRIES.to_owned(), s(doc)),
            (
                TTL_ATTRIBUTE.to_owned(),
                n(history::expires_at(last, self.retention_days).timestamp()),
            ),
        ]))
    }
}

fn entries_of(item: &Item) -> Result<Vec<HistoryEntry>, AwsError> {
    let bad = |why: String| AwsError::malformed("history item", why);
    match item.get(ENTRIES) {
        Some(AttributeValue::S(doc)) => serde_json::from_str(doc).map_err(|e| {
            bad(format!(
                "entries is not a valid document ({})",
                json_why(&e)
            ))
        }),
        _ => Err(bad("entries is missing or not a string".into())),
    }
}

/// TTL deletes within days, not at once: an expired item may still be read.
fn expired(item: &Item, now: i64) -> bool {
    matches!(item.get(TTL_ATTRIBUTE), Some(AttributeValue::N(v)) if v.parse::<i64>().is_ok_and(|t| t < now))
}

#[async_trait]
impl HistoryLog for DynamoHistory {
    #[tracing::instrument(skip_all, fields(buyer = %buyer, entries = entries.len()), err)]
    async fn append(&self, buyer: &BuyerEmail, entries: &[HistoryEntry]) -> Result<(), Failure> {
        if entries.is_empty() {
            return Ok(());
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(buyer, entries)?))
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(buyer = %buyer), err)]
    async fn history(&self, buyer: &BuyerEmail) -> Result<Vec<HistoryEntry>, Failure> {
        let now = Utc::now().timestamp();
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :hist)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(self.tenant.scope(&buyer_pk(buyer))))
                .expression_attribute_values(":hist", s(HISTORY_PREFIX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            for item in out.items().iter().filter(|i| !expired(i, now)) {
                found.extend(entries_of(item)?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        // Items are in the order of their first entry; an append may hold an earlier entry
        // (the ingest time travels with the event), so the entries are ordered themselves.
        found.sort_by_key(|e| e.at);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enroll_core::history::Stage;

    #[test]
    fn an_append_is_one_item_under_the_buyer_that_reads_back() {
        let h = DynamoHistory {
            client: Client::from_conf(
                aws_sdk_dynamodb::Config::builder()
                    .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                    .build(),
            ),
            table: "t".into(),
            tenant: TenantId::default_tenant(),
            retention_days: 10,
        };
        let ada = BuyerEmail::parse("ada@example.com").unwrap();
        let at: chrono::DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let entries = vec![
            HistoryEntry::new(at, Stage::Ingest, "received and verified (stripe purchase)"),
            HistoryEntry::new(at, Stage::Provision, "applied"),
        ];
        let item = h.item(&ada, &entries).unwrap();
        assert_eq!(item.get(PK), Some(&s("buyer#ada@example.com")));
        let AttributeValue::S(sk) = &item[SK] else {
            panic!("sk is a string")
        };
        assert!(
            sk.starts_with("hist#2026-01-01T00:00:00.000000000Z#"),
            "{sk}"
        );
        assert_eq!(
            item.get(TTL_ATTRIBUTE),
            Some(&n((at + chrono::TimeDelta::days(10)).timestamp()))
        );
        assert_eq!(entries_of(&item).unwrap(), entries);
        assert!(!expired(&item, at.timestamp()));
        assert!(expired(
            &item,
            (at + chrono::TimeDelta::days(11)).timestamp()
        ));
    }
}
