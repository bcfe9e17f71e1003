//! [`DynamoStore`]: event keys and the entitlement ledger in one DynamoDB table.

use crate::error::{classify, AwsError};
use crate::item::{
    n, s, Item, Record, UserIndex, COMPLETED, EXPIRATION, IN_PROGRESS, IN_PROGRESS_EXPIRATION,
    OUTCOME, OWNER, STATUS, VERSION,
};
use crate::schema::{
    buyer_pk, idem_pk, order_pk, sortable_time, user_pk, BUYER_PREFIX, DUE_AT, DUE_INDEX,
    DUE_PARTITION, DUE_PK, PK, SK, SK_BUYER, SK_IDEM, SK_ORDER, SK_USER,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::AsyncSleep;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use enroll_core::idempotency::{Claim, IdempotencyRecord, KEEP_COMPLETED};
use enroll_core::ids::{BuyerEmail, NotionUserId, OrderKey};
use enroll_core::ledger::{BuyerRecord, OrderRecord};
use enroll_core::ports::{IdempotencyStore, LedgerScan, LedgerStore};
use enroll_core::tenant::TenantId;
use enroll_core::Failure;
use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::time::Duration;

/// BatchGetItem's limit on keys per request.
const BATCH_GET_MAX: usize = 100;
/// Rounds spent re-requesting unprocessed keys before the read counts as throttled.
const UNPROCESSED_ROUNDS: u32 = 6;
const UNPROCESSED_FIRST_WAIT: Duration = Duration::from_millis(50);

/// Lets a claim replace a record that is missing, expired (TTL deletes late, so expiry is checked
/// here too) or in progress past its holder's deadline: `IdempotencyRecord::can_be_taken_over`
/// as one condition.
/// What every tenant's partition keys start with (`t#<name>#`); a single seller's never do.
const TENANT_KEYS: &str = "t#";

const CLAIM_CONDITION: &str = "attribute_not_exists(#pk) OR #expiration < :now \
     OR (#status = :inprogress AND #in_progress_expiration < :now_ms)";

/// The idempotency store and the ledger over one table (schema in the crate documentation).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    pub client: Client,
    pub table: String,
    /// Whose records these are: every partition key (and the `due` index partition) starts
    /// with this tenant's [`TenantId::key_prefix`], empty for a single seller.
    tenant: TenantId,
}

impl DynamoStore {
    /// The store of a single seller (no tenants): today's keys.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            tenant: TenantId::default_tenant(),
        }
    }

    /// The same table, seen as `tenant`'s: its keys only, so the same platform event id,
    /// buyer or order in two tenants are two items.
    pub fn for_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = tenant;
        self
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn key(&self, pk: String, sk: &str) -> Item {
        Item::from([
            (PK.to_owned(), s(self.tenant.scope(&pk))),
            (SK.to_owned(), s(sk)),
        ])
    }

    /// An item as written: its partition key (and `due` partition) in this tenant.
    fn scoped(&self, mut item: Item) -> Item {
        if self.tenant.is_default() {
            return item;
        }
        for attr in [PK, DUE_PK] {
            if let Some(AttributeValue::S(v)) = item.get_mut(attr) {
                *v = self.tenant.scope(v);
            }
        }
        item
    }

    /// An item as read: the tenant's prefix taken off its partition key, so the record
    /// mappings see today's keys.
    fn unscoped(&self, item: &Item) -> Item {
        let mut item = item.clone();
        let prefix = self.tenant.key_prefix();
        if let Some(AttributeValue::S(v)) = item.get_mut(PK) {
            if let Some(rest) = v.strip_prefix(&prefix) {
                *v = rest.to_owned();
            }
        }
        item
    }

    /// A strongly consistent read: callers write back conditionally on what they read, and a
    /// stale read would only turn into a lost race.
    async fn get<R: Record>(&self, key: Item) -> Result<Option<R>, Failure> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(out
            .item()
            .map(|i| R::from_item(&self.unscoped(i)))
            .transpose()?)
    }

    /// Writes `next` (already carrying its new version) if the stored version is still
    /// `next.version - 1`.
    async fn put_versioned<R: Record>(
        &self,
        next: &R,
        version: u64,
        what: &str,
    ) -> Result<(), Failure> {
        let condition = VersionCondition::new(version - 1);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.scoped(next.to_item()?)))
            .condition_expression(condition.expression)
            .set_expression_attribute_names(Some(condition.names))
            .set_expression_attribute_values(condition.values)
            .send()
            .await;
        if written(
            "PutItem",
            result,
            PutItemError::is_conditional_check_failed_exception,
        )? {
            Ok(())
        } else {
            Err(concurrent_update(what, version - 1))
        }
    }

    /// The buyer and its identity index change together: were the index written after the
    /// buyer and lost, the retried event would find the buyer already up to date, write nothing,
    /// and `buyer_by_user` would miss this buyer for good.
    async fn put_buyer_with_index(
        &self,
        next: &BuyerRecord,
        user: &NotionUserId,
    ) -> Result<(), Failure> {
        let condition = VersionCondition::new(next.version - 1);
        let buyer = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.scoped(next.to_item()?)))
            .condition_expression(condition.expression)
            .set_expression_attribute_names(Some(condition.names))
            .set_expression_attribute_values(condition.values)
            .build()
            .map_err(AwsError::from)?;
        let index = UserIndex {
            user: user.clone(),
            email: next.email.clone(),
        };
        let index = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.scoped(index.to_item()?)))
            .build()
            .map_err(AwsError::from)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(buyer).build())
            .transact_items(TransactWriteItem::builder().put(index).build())
            .send()
            .await;
        let Err(e) = result else { return Ok(()) };
        let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) =
            e.as_service_error()
        else {
            return Err(classify("TransactWriteItems", e).into());
        };
        // One reason per action, in order; "None" where that action was fine.
        let codes: Vec<&str> = canceled
            .cancellation_reasons()
            .iter()
            .filter_map(|r| r.code())
            .filter(|c| *c != "None")
            .collect();
        if codes.contains(&"ConditionalCheckFailed") {
            return Err(concurrent_update("buyer", next.version - 1));
        }
        let retryable = codes.iter().all(|c| {
            matches!(
                *c,
                "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
            )
        });
        let reason = format!("TransactWriteItems canceled ({})", codes.join(", "));
        Err(if retryable {
            Failure::transient(reason)
        } else {
            Failure::permanent(reason)
        })
    }

    /// Waits before re-requesting unprocessed keys, on the sleep the SDK itself retries with.
    async fn back_off(&self, round: u32) {
        if let Some(sleep) = self.client.config().sleep_impl() {
            sleep.sleep(UNPROCESSED_FIRST_WAIT * 2u32.pow(round)).await;
        }
    }

    async fn batch_get_orders(&self, keys: Vec<Item>) -> Result<Vec<OrderRecord>, Failure> {
        let mut found = Vec::with_capacity(keys.len());
        let mut pending = Some(keys);
        for round in 0..UNPROCESSED_ROUNDS {
            let Some(keys) = pending.take().filter(|k| !k.is_empty()) else {
                return Ok(found);
            };
            if round > 0 {
                self.back_off(round - 1).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(AwsError::from)?;
            let mut out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| classify("BatchGetItem", e))?;
            if let Some(items) = out.responses.as_mut().and_then(|r| r.remove(&self.table)) {
                for item in &items {
                    found.push(OrderRecord::from_item(&self.unscoped(item))?);
                }
            }
            pending = out
                .unprocessed_keys
                .as_mut()
                .and_then(|u| u.remove(&self.table))
                .map(|k| k.keys);
        }
        match pending {
            Some(k) if !k.is_empty() => Err(Failure::transient(format!(
                "BatchGetItem left {} order keys unprocessed after {UNPROCESSED_ROUNDS} rounds",
                k.len()
            ))),
            _ => Ok(found),
        }
    }
}

/// Whole-ledger reads for the operator's audit and backfill: a paged Scan, never used by the
/// pipeline, whose reads are all by key.
impl DynamoStore {
    async fn scan_kind<R: Record>(&self, sk: &str) -> Result<Vec<R>, Failure> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            // A tenant reads its own prefix; a single seller everything without a tenant's.
            let (filter, prefix) = if self.tenant.is_default() {
                (
                    "#sk = :sk AND NOT begins_with(#pk, :prefix)",
                    TENANT_KEYS.to_owned(),
                )
            } else {
                (
                    "#sk = :sk AND begins_with(#pk, :prefix)",
                    self.tenant.key_prefix(),
                )
            };
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression(filter)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":sk", s(sk))
                .expression_attribute_values(":prefix", s(prefix))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Scan", e))?;
            for item in out.items() {
                found.push(R::from_item(&self.unscoped(item))?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(found),
            }
        }
    }

    /// Every buyer record.
    #[tracing::instrument(skip_all, err)]
    pub async fn all_buyers(&self) -> Result<Vec<BuyerRecord>, Failure> {
        self.scan_kind(SK_BUYER).await
    }

    /// Every order record.
    #[tracing::instrument(skip_all, err)]
    pub async fn all_orders(&self) -> Result<Vec<OrderRecord>, Failure> {
        self.scan_kind(SK_ORDER).await
    }
}

/// `attribute_not_exists(pk)` for a record never stored, `version = :v` otherwise.
struct VersionCondition {
    expression: &'static str,
    names: HashMap<String, String>,
    values: Option<HashMap<String, AttributeValue>>,
}

impl VersionCondition {
    fn new(read_version: u64) -> Self {
        if read_version == 0 {
            Self {
                expression: "attribute_not_exists(#pk)",
                names: HashMap::from([("#pk".to_owned(), PK.to_owned())]),
                values: None,
            }
        } else {
            Self {
                expression: "#version = :v",
                names: HashMap::from([("#version".to_owned(), VERSION.to_owned())]),
                values: Some(HashMap::from([(":v".to_owned(), n(read_version))])),
            }
        }
    }
}

/// The result of a conditional write: `Ok(true)` when it was written, `Ok(false)` when its
/// condition failed (what that means is the caller's to say), else the classified error.
fn written<O, E>(
    operation: &'static str,
    result: Result<O, SdkError<E, HttpResponse>>,
    condition_failed: fn(&E) -> bool,
) -> Result<bool, AwsError>
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(condition_failed) => Ok(false),
        Err(e) => Err(classify(operation, e)),
    }
}

fn concurrent_update(what: &str, read_version: u64) -> Failure {
    Failure::transient(format!(
        "concurrent update of {what} record (read version {read_version})"
    ))
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    #[tracing::instrument(skip_all, fields(event_key = %record.key), err)]
    async fn claim(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Claim, Failure> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.scoped(record.to_item()?)))
            .condition_expression(CLAIM_CONDITION)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#expiration", EXPIRATION)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#in_progress_expiration", IN_PROGRESS_EXPIRATION)
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
            .expression_attribute_values(":inprogress", s(IN_PROGRESS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let e = match result {
            Ok(_) => return Ok(Claim::Acquired),
            Err(e) => e,
        };
        match e.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(lost)) => {
                // The condition failed, so a record existed at that instant: the service hands
                // it back with the error.
                let existing = lost.item().ok_or_else(|| {
                    Failure::transient("claim lost but DynamoDB returned no existing record")
                })?;
                let existing = IdempotencyRecord::from_item(&self.unscoped(existing))?;
                tracing::debug!(status = ?existing.status, "event key already claimed");
                Ok(Claim::from_existing(existing))
            }
            _ => Err(classify("PutItem", e).into()),
        }
    }

    #[tracing::instrument(skip_all, fields(event_key = %key), err)]
    async fn complete(&self, key: &str, owner: &str, outcome: &str) -> Result<(), Failure> {
        let expiration = (Utc::now() + KEEP_COMPLETED).timestamp();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(idem_pk(key), SK_IDEM)))
            .update_expression("SET #status = :completed, #outcome = :outcome, #expiration = :exp")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#outcome", OUTCOME)
            .expression_attribute_names("#expiration", EXPIRATION)
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":outcome", s(outcome))
            .expression_attribute_values(":exp", n(expiration))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        if written(
            "UpdateItem",
            result,
            UpdateItemError::is_conditional_check_failed_exception,
        )? {
            Ok(())
        } else {
            // Our deadline passed and another invocation took the key over (or it vanished):
            // that invocation now decides the outcome, and this message is retried.
            Err(Failure::transient(
                "idempotency key taken over before completion",
            ))
        }
    }

    #[tracing::instrument(skip_all, fields(event_key = %key), err)]
    async fn release(&self, key: &str, owner: &str) -> Result<(), Failure> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.key(idem_pk(key), SK_IDEM)))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        // A failed condition means someone else holds the key now (or nobody does): theirs is
        // not ours to delete, and there is nothing left to release.
        written(
            "DeleteItem",
            result,
            DeleteItemError::is_conditional_check_failed_exception,
        )?;
        Ok(())
    }
}

#[async_trait]
impl LedgerScan for DynamoStore {
    async fn all_buyers(&self) -> Result<Vec<BuyerRecord>, Failure> {
        DynamoStore::all_buyers(self).await
    }

    async fn all_orders(&self) -> Result<Vec<OrderRecord>, Failure> {
        DynamoStore::all_orders(self).await
    }
}

#[async_trait]
impl LedgerStore for DynamoStore {
    #[tracing::instrument(skip_all, fields(order = %key), err)]
    async fn order(&self, key: &OrderKey) -> Result<Option<OrderRecord>, Failure> {
        self.get(self.key(order_pk(key), SK_ORDER)).await
    }

    #[tracing::instrument(skip_all, fields(count = keys.len()), err)]
    async fn orders(&self, keys: &[OrderKey]) -> Result<Vec<OrderRecord>, Failure> {
        // BatchGetItem refuses a request that names one key twice.
        let mut seen = HashSet::new();
        let unique: Vec<&OrderKey> = keys.iter().filter(|k| seen.insert(*k)).collect();
        let mut found = HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let items = chunk
                .iter()
                .map(|k| self.key(order_pk(k), SK_ORDER))
                .collect();
            for record in self.batch_get_orders(items).await? {
                found.insert(record.order.clone(), record);
            }
        }
        // BatchGetItem answers in any order; callers get theirs back.
        Ok(unique.into_iter().filter_map(|k| found.remove(k)).collect())
    }

    #[tracing::instrument(skip_all, fields(order = %record.order, version = record.version), err)]
    async fn put_order(&self, record: &OrderRecord) -> Result<u64, Failure> {
        let version = record.version + 1;
        let next = OrderRecord {
            version,
            ..record.clone()
        };
        self.put_versioned(&next, version, "order").await?;
        Ok(version)
    }

    #[tracing::instrument(skip_all, fields(buyer = %email), err)]
    async fn buyer(&self, email: &BuyerEmail) -> Result<Option<BuyerRecord>, Failure> {
        self.get(self.key(buyer_pk(email), SK_BUYER)).await
    }

    #[tracing::instrument(skip_all, fields(buyer = %record.email, version = record.version), err)]
    async fn put_buyer(&self, record: &BuyerRecord) -> Result<u64, Failure> {
        let version = record.version + 1;
        let next = BuyerRecord {
            version,
            ..record.clone()
        };
        match &record.notion_user_id {
            Some(user) => self.put_buyer_with_index(&next, user).await?,
            None => self.put_versioned(&next, version, "buyer").await?,
        }
        Ok(version)
    }

    #[tracing::instrument(skip_all, fields(user = %user), err)]
    async fn buyer_by_user(&self, user: &NotionUserId) -> Result<Option<BuyerEmail>, Failure> {
        let index: Option<UserIndex> = self.get(self.key(user_pk(user), SK_USER)).await?;
        Ok(index.map(|i| i.email))
    }

    #[tracing::instrument(skip_all, fields(now = %now), err)]
    async fn buyers_due(&self, now: DateTime<Utc>) -> Result<Vec<BuyerEmail>, Failure> {
        let mut due = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("#due_pk = :due AND #due_at <= :now")
                .expression_attribute_names("#due_pk", DUE_PK)
                .expression_attribute_names("#due_at", DUE_AT)
                .expression_attribute_values(":due", s(self.tenant.scope(DUE_PARTITION)))
                .expression_attribute_values(":now", s(sortable_time(now)))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            for item in out.items() {
                due.push(buyer_from_index_item(&self.unscoped(item))?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(due),
            }
        }
    }
}

/// The `due` index projects keys only: the email is the buyer's partition key.
fn buyer_from_index_item(item: &Item) -> Result<BuyerEmail, AwsError> {
    let bad = || AwsError::malformed("due index item", "pk is not buyer#<email>");
    match item.get(PK) {
        Some(AttributeValue::S(pk)) => pk
            .strip_prefix(BUYER_PREFIX)
            .and_then(|e| BuyerEmail::parse(e).ok())
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}
