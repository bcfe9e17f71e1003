//! The capabilities the pipeline needs, one small trait each. Adapters implement them over
//! DynamoDB and SQS (`enroll-aws`), over a file and in-process queues (`enroll-embedded`), and over
//! Notion's SCIM and public APIs (`enroll-notion`). Every error is a classified [`Failure`].

use crate::error::Failure;
use crate::history::HistoryEntry;
use crate::idempotency::{Claim, IdempotencyRecord};
use crate::ids::{BuyerEmail, GroupId, NotionUserId, OrderKey, PageId};
use crate::ledger::{BuyerRecord, OrderRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Event keys, claimed before any effect and completed after the last one.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Writes `record` (status in progress) in one conditional write unless a record exists that
    /// cannot be taken over at `now` ([`IdempotencyRecord::can_be_taken_over`]); then returns that
    /// record without a second read.
    async fn claim(&self, record: &IdempotencyRecord, now: DateTime<Utc>)
        -> Result<Claim, Failure>;
    /// Marks the key completed, if `owner` still holds it.
    async fn complete(&self, key: &str, owner: &str, outcome: &str) -> Result<(), Failure>;
    /// Deletes the key, if `owner` still holds it, so a retry can claim it at once.
    async fn release(&self, key: &str, owner: &str) -> Result<(), Failure>;
}

/// The entitlement ledger's storage. Writes are conditional on the record's `version` (the one
/// read, 0 for a new record); a lost race is a transient failure and the event is retried.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    async fn order(&self, key: &OrderKey) -> Result<Option<OrderRecord>, Failure>;
    async fn orders(&self, keys: &[OrderKey]) -> Result<Vec<OrderRecord>, Failure>;
    /// Stores the order and returns its new version.
    async fn put_order(&self, record: &OrderRecord) -> Result<u64, Failure>;
    async fn buyer(&self, email: &BuyerEmail) -> Result<Option<BuyerRecord>, Failure>;
    /// Stores the buyer (and its Notion user id index) and returns its new version.
    async fn put_buyer(&self, record: &BuyerRecord) -> Result<u64, Failure>;
    /// The buyer whose stored Notion user id this is.
    async fn buyer_by_user(&self, user: &NotionUserId) -> Result<Option<BuyerEmail>, Failure>;
    /// Buyers whose `next_change_at` is at or before `now`.
    async fn buyers_due(&self, now: DateTime<Utc>) -> Result<Vec<BuyerEmail>, Failure>;
}

/// The whole ledger at once, for the operator's tools (backfill plans against every buyer,
/// audit compares every member). The pipeline never scans.
#[async_trait]
pub trait LedgerScan: Send + Sync {
    async fn all_buyers(&self) -> Result<Vec<BuyerRecord>, Failure>;
    async fn all_orders(&self) -> Result<Vec<OrderRecord>, Failure>;
}

/// Sends messages to the next stage's queue.
#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, body: &str) -> Result<(), Failure>;
}

/// Why a message was parked, carried as message attributes so `enroll dlq list` can show it
/// without reading the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedReason {
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_key: Option<String>,
    /// Masked, never the address itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer: Option<String>,
}

/// The dead-letter queue of one stage.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    async fn park(&self, body: &str, why: &ParkedReason) -> Result<(), Failure>;
}

/// The Notion request budget, shared by every caller of one token.
#[async_trait]
pub trait RateBudget: Send + Sync {
    /// Waits until one request may be sent.
    async fn acquire(&self);
    /// A 429 slows everyone sharing the budget, not only the request that got it.
    async fn back_off(&self, retry_after: Duration);
}

/// A workspace member as SCIM shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimUser {
    pub id: NotionUserId,
    pub user_name: String,
    #[serde(default = "yes")]
    pub active: bool,
    /// Notion's role (owner, membership_admin, member, restricted_member) when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

fn yes() -> bool {
    true
}

impl ScimUser {
    /// Owners and admins are never changed by enroll.
    pub fn is_privileged(&self) -> bool {
        matches!(
            self.role.as_deref(),
            Some("owner" | "membership_admin" | "admin")
        )
    }
}

/// The result of creating a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created(ScimUser),
    /// 409: a member with this userName exists; look it up.
    AlreadyExists,
}

/// Notion's SCIM API: workspace members and Groups.
#[async_trait]
pub trait Directory: Send + Sync {
    async fn find_user(&self, email: &BuyerEmail) -> Result<Option<ScimUser>, Failure>;
    async fn get_user(&self, id: &NotionUserId) -> Result<Option<ScimUser>, Failure>;
    async fn create_user(&self, email: &BuyerEmail, name: Option<&str>)
        -> Result<Created, Failure>;
    async fn add_members(&self, group: &GroupId, users: &[NotionUserId]) -> Result<(), Failure>;
    async fn remove_members(&self, group: &GroupId, users: &[NotionUserId]) -> Result<(), Failure>;
    async fn find_group(&self, display_name: &str) -> Result<Option<GroupId>, Failure>;
    /// Removes the member from the workspace; the Notion account survives.
    async fn remove_user(&self, id: &NotionUserId) -> Result<(), Failure>;
}

/// A row of the seller's sales/students database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesRecord {
    pub page_id: PageId,
    #[serde(default)]
    pub notion_user_id: Option<String>,
}

/// What align writes into a new row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSalesRecord<'a> {
    pub title: &'a str,
    pub email: &'a BuyerEmail,
    pub order_id: &'a str,
    pub notion_user_id: &'a NotionUserId,
    pub products: &'a str,
}

/// The seller's sales/students database, through Notion's public API.
#[async_trait]
pub trait SalesDatabase: Send + Sync {
    async fn find_by_order(&self, order_id: &str) -> Result<Option<SalesRecord>, Failure>;
    async fn find_by_email(&self, email: &BuyerEmail) -> Result<Option<SalesRecord>, Failure>;
    /// The row whose Notion user id property holds `user`.
    async fn find_by_user_id(&self, user: &NotionUserId) -> Result<Option<SalesRecord>, Failure>;
    /// The buyer's existing row: the one for `order_id`, else one holding `user`, else one
    /// with `email`. An adapter may answer with a single compound query.
    async fn find_row(
        &self,
        order_id: &str,
        user: &NotionUserId,
        email: &BuyerEmail,
    ) -> Result<Option<SalesRecord>, Failure> {
        if let Some(r) = self.find_by_order(order_id).await? {
            return Ok(Some(r));
        }
        if let Some(r) = self.find_by_user_id(user).await? {
            return Ok(Some(r));
        }
        self.find_by_email(email).await
    }
    async fn create(&self, record: &NewSalesRecord<'_>) -> Result<SalesRecord, Failure>;
    async fn set_user_id(&self, page: &PageId, user: &NotionUserId) -> Result<(), Failure>;
}

/// Every buyer's provisioning log ([`crate::history`]). Writers go through
/// [`crate::history::record`], which never lets a failure here fail an event.
#[async_trait]
pub trait HistoryLog: Send + Sync {
    /// Adds entries to the buyer's history, in one write where the store allows it.
    async fn append(&self, buyer: &BuyerEmail, entries: &[HistoryEntry]) -> Result<(), Failure>;
    /// The buyer's entries still kept, oldest first.
    async fn history(&self, buyer: &BuyerEmail) -> Result<Vec<HistoryEntry>, Failure>;
}
