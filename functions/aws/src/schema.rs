//! The single-table schema: attribute and index names, key builders, and `create_table`, which
//! builds the table exactly as `template.yaml` declares it.

use crate::error::{classify, AwsError};
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use enroll_core::ids::{BuyerEmail, NotionUserId, OrderKey};
use std::time::Duration;

/// Partition key of every item (S).
pub const PK: &str = "pk";
/// Sort key of every item (S): the item's kind.
pub const SK: &str = "sk";
/// The table's TTL attribute (N, epoch seconds). Idempotency and history items carry it.
pub const TTL_ATTRIBUTE: &str = "expiration";

/// The sparse index of buyers whose access changes at some future moment.
pub const DUE_INDEX: &str = "due";
/// Partition key of [`DUE_INDEX`] (S): always [`DUE_PARTITION`], present only on buyers with a
/// `next_change_at`.
pub const DUE_PK: &str = "due_pk";
/// Sort key of [`DUE_INDEX`] (S): `next_change_at` as fixed-width RFC 3339 UTC, so string order
/// is time order.
pub const DUE_AT: &str = "due_at";
pub const DUE_PARTITION: &str = "due";

pub(crate) const SK_IDEM: &str = "idem";
pub(crate) const SK_ORDER: &str = "order";
pub(crate) const SK_BUYER: &str = "buyer";
pub(crate) const SK_USER: &str = "user";

pub(crate) fn idem_pk(event_key: &str) -> String {
    format!("idem#{event_key}")
}

/// Platform names never contain `#`, so the order id may.
pub(crate) fn order_pk(key: &OrderKey) -> String {
    format!("order#{}#{}", key.platform, key.order_id)
}

pub(crate) fn buyer_pk(email: &BuyerEmail) -> String {
    format!("buyer#{}", email.as_str())
}

pub(crate) fn user_pk(user: &NotionUserId) -> String {
    format!("user#{}", user.as_str())
}

pub(crate) const BUYER_PREFIX: &str = "buyer#";

/// Sort keys of a buyer's history items start with this (see [`crate::history`]).
pub const HISTORY_PREFIX: &str = "hist#";

/// Nanosecond precision and a `Z` suffix give every value the same width: sorting the strings
/// sorts the instants.
pub(crate) fn sortable_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// How long `create_table` waits for a new table to become ACTIVE.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(120);

/// Creates the enroll table: `pk`/`sk` strings, on-demand billing, the sparse `due` index
/// (`due_pk`/`due_at`, keys only: `buyers_due` needs only the buyer key) and TTL on
/// `expiration`. For tests and local use; deployments get the same table from `template.yaml`.
pub async fn create_table(client: &Client, name: &str) -> Result<(), AwsError> {
    let key = |attr: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(attr)
            .key_type(kind)
            .build()
    };
    let string_attr = |attr: &str| {
        AttributeDefinition::builder()
            .attribute_name(attr)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let due = GlobalSecondaryIndex::builder()
        .index_name(DUE_INDEX)
        .key_schema(key(DUE_PK, KeyType::Hash)?)
        .key_schema(key(DUE_AT, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()?;
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attr(PK)?)
        .attribute_definitions(string_attr(SK)?)
        .attribute_definitions(string_attr(DUE_PK)?)
        .attribute_definitions(string_attr(DUE_AT)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(due)
        .send()
        .await
        .map_err(|e| classify("CreateTable", e))?;
    // TTL can only be enabled once the table is ACTIVE.
    client
        .wait_until_table_exists()
        .table_name(name)
        .wait(TABLE_ACTIVE_WAIT)
        .await
        .map_err(|e| AwsError::Retryable {
            operation: "DescribeTable",
            code: "WaitForActive".into(),
            source: Box::new(e),
        })?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()?,
        )
        .send()
        .await
        .map_err(|e| classify("UpdateTimeToLive", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_time_has_fixed_width_and_sorts_like_time() {
        let a: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let b: DateTime<Utc> = "2026-01-01T00:00:00.5Z".parse().unwrap();
        let c: DateTime<Utc> = "2026-01-01T00:00:01Z".parse().unwrap();
        let (sa, sb, sc) = (sortable_time(a), sortable_time(b), sortable_time(c));
        assert_eq!(sa.len(), sb.len());
        assert!(sa < sb && sb < sc);
    }
}
