//! Outbound events on AWS ([`enroll_core::outbound`]): the notify queue, an SQS FIFO queue
//! whose `MessageGroupId` is the delivery's endpoint-and-buyer group, so one buyer's events
//! reach one endpoint in order while other buyers and endpoints go on; and the endpoints a
//! 410 answer disabled, one item each in the table.
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | disabled endpoint | `outbound#<endpoint key>` | `outbound` | `doc` (S, the `DisabledEndpoint` as JSON) |

use crate::error::classify;
use crate::item::{json_why, s};
use crate::schema::{PK, SK};
use crate::AwsError;
use async_trait::async_trait;
use enroll_core::outbound::{Delivery, DeliveryQueue, DisabledEndpoint, EndpointRegistry};
use enroll_core::tenant::{stamp_message, TenantId};
use enroll_core::Failure;

const SK_OUTBOUND: &str = "outbound";
const DOC: &str = "doc";

/// The notify FIFO queue.
#[derive(Debug, Clone)]
pub struct SqsDeliveryQueue {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    /// Stamped into every delivery: notify serves it with this tenant's endpoints.
    pub tenant: TenantId,
}

impl SqsDeliveryQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
            tenant: TenantId::default_tenant(),
        }
    }

    /// The same queue, sending `tenant`'s deliveries.
    pub fn for_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = tenant;
        self
    }
}

#[async_trait]
impl DeliveryQueue for SqsDeliveryQueue {
    #[tracing::instrument(skip_all, fields(webhook_id = %delivery.webhook_id), err)]
    async fn send_delivery(&self, delivery: &Delivery) -> Result<(), Failure> {
        let body = serde_json::to_string(delivery)
            .map_err(|e| Failure::permanent(format!("delivery does not serialise: {e}")))?;
        // Two tenants may have a buyer and an endpoint key in common: their deliveries must
        // not deduplicate or queue behind each other.
        let scoped = |id: String| {
            if self.tenant.is_default() {
                id
            } else {
                format!("{}:{id}", self.tenant.as_str())
            }
        };
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(stamp_message(&body, &self.tenant))
            .message_group_id(scoped(delivery.group()))
            // A copy re-sent after a crash within SQS's five-minute window is dropped.
            .message_deduplication_id(scoped(delivery.dedup_id()))
            .send()
            .await
            .map_err(|e| classify("SendMessage", e))?;
        Ok(())
    }
}

/// The message group and deduplication id a send to `queue_url` needs when it is a FIFO queue
/// (the notify queue and its dead-letter queue): a delivery's own group, so a replayed
/// delivery rejoins its buyer's order, and a fresh deduplication id, so a park or a replay is
/// never taken for a duplicate. `None` for a standard queue.
pub fn fifo_ids(queue_url: &str, body: &str) -> Option<(String, String)> {
    if !queue_url.ends_with(".fifo") {
        return None;
    }
    let group = serde_json::from_str::<Delivery>(body)
        .map(|d| d.group())
        .unwrap_or_else(|_| "unreadable".to_owned());
    Some((group, uuid::Uuid::new_v4().simple().to_string()))
}

/// Disabled endpoints in the enroll table.
#[derive(Debug, Clone)]
pub struct DynamoEndpoints {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    pub tenant: TenantId,
}

impl DynamoEndpoints {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            tenant: TenantId::default_tenant(),
        }
    }

    /// `tenant`'s endpoints.
    pub fn for_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = tenant;
        self
    }

    fn pk(&self, endpoint: &str) -> String {
        self.tenant.scope(&format!("outbound#{endpoint}"))
    }
}

#[async_trait]
impl EndpointRegistry for DynamoEndpoints {
    async fn disabled(&self, endpoint: &str) -> Result<Option<DisabledEndpoint>, Failure> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(self.pk(endpoint)))
            .key(SK, s(SK_OUTBOUND))
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        let Some(doc) = out
            .item
            .as_ref()
            .and_then(|i| i.get(DOC))
            .and_then(|v| v.as_s().ok())
        else {
            return Ok(None);
        };
        let record = serde_json::from_str(doc)
            .map_err(|e| AwsError::malformed("disabled endpoint", json_why(&e)))?;
        Ok(Some(record))
    }

    async fn disable(&self, record: &DisabledEndpoint) -> Result<(), Failure> {
        let doc = serde_json::to_string(record)
            .map_err(|e| AwsError::malformed("disabled endpoint", json_why(&e)))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(self.pk(&record.endpoint)))
            .item(SK, s(SK_OUTBOUND))
            .item(DOC, s(doc))
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        Ok(())
    }
}
