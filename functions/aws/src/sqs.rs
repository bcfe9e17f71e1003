//! SQS: the next stage's queue ([`SqsQueue`]), a stage's dead-letter queue ([`SqsDeadLetters`]),
//! and the receive/delete pair the operator tools use to list and replay parked messages.

use crate::error::{classify, AwsError};
use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use aws_sdk_sqs::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use enroll_core::ports::{DeadLetters, ParkedReason, Queue};
use enroll_core::Failure;
use std::collections::BTreeMap;

/// Message attributes `park` writes; `enroll dlq list` reads them without parsing bodies.
pub use enroll_core::dead_letters::{
    ATTR_BUYER, ATTR_EVENT_KEY, ATTR_PARKED_AT, ATTR_REASON, ATTR_SOURCE, ATTR_TENANT,
};
use enroll_core::tenant::{stamp_message, TenantId};

/// Reasons longer than this are cut: attributes count toward the 256 KiB message limit, and an
/// operator reads the start of a reason anyway.
pub const MAX_REASON_CHARS: usize = 1_000;

/// Sends to the next stage's queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    pub client: Client,
    pub url: String,
    /// Stamped into every message sent ([`stamp_message`]): the next stage serves this tenant.
    pub tenant: TenantId,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
            tenant: TenantId::default_tenant(),
        }
    }

    /// The same queue, sending `tenant`'s messages.
    pub fn for_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = tenant;
        self
    }
}

#[async_trait]
impl Queue for SqsQueue {
    #[tracing::instrument(skip_all, fields(bytes = body.len()), err)]
    async fn send(&self, body: &str) -> Result<(), Failure> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(stamp_message(body, &self.tenant))
            .set_message_group_id(fair_group(&self.url, &self.tenant))
            .send()
            .await
            .map_err(|e| classify("SendMessage", e))?;
        Ok(())
    }
}

/// The `MessageGroupId` of a tenant's message on a standard queue: SQS fair queues take it as
/// the tenant, and when one tenant's backlog or slow processing takes a disproportionate share
/// of the consumers, deliver the other tenants' messages first. None for a single seller, and
/// for a FIFO queue, where the group means ordering instead.
pub fn fair_group(queue_url: &str, tenant: &TenantId) -> Option<String> {
    (!tenant.is_default() && !queue_url.ends_with(".fifo")).then(|| tenant.as_str().to_owned())
}

/// One stage's dead-letter queue, written directly for permanent failures so they burn no
/// retries.
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    pub client: Client,
    pub dlq_url: String,
    /// The stage that parks: `provision` or `align`.
    pub source: String,
    /// Whose messages: named in the `enroll.tenant` attribute (absent for a single seller).
    pub tenant: TenantId,
}

impl SqsDeadLetters {
    pub fn new(client: Client, dlq_url: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            client,
            dlq_url: dlq_url.into(),
            source: source.into(),
            tenant: TenantId::default_tenant(),
        }
    }

    /// The same queue, parking `tenant`'s messages.
    pub fn for_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = tenant;
        self
    }
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, AwsError> {
    Ok(MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()?)
}

fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((cut, _)) => &s[..cut],
        None => s,
    }
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    #[tracing::instrument(
        skip_all,
        fields(event_key = why.event_key.as_deref().unwrap_or("-"), source = %self.source),
        err
    )]
    async fn park(&self, body: &str, why: &ParkedReason) -> Result<(), Failure> {
        let parked_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let reason = truncate_chars(&why.reason, MAX_REASON_CHARS);
        let attributes = [
            (ATTR_REASON, Some(reason)),
            (ATTR_EVENT_KEY, why.event_key.as_deref()),
            (ATTR_BUYER, why.buyer.as_deref()),
            (ATTR_SOURCE, Some(self.source.as_str())),
            (ATTR_PARKED_AT, Some(parked_at.as_str())),
            (ATTR_TENANT, Some(self.tenant.as_str())),
        ];
        let fifo = crate::outbound::fifo_ids(&self.dlq_url, body);
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(stamp_message(body, &self.tenant))
            .set_message_group_id(fifo.as_ref().map(|f| f.0.clone()))
            .set_message_deduplication_id(fifo.map(|f| f.1));
        // SQS refuses an attribute with an empty value.
        for (name, value) in attributes {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                request = request.message_attributes(name, string_attribute(v)?);
            }
        }
        request
            .send()
            .await
            .map_err(|e| classify("SendMessage", e))?;
        Ok(())
    }
}

/// How [`receive_batch`] asks SQS for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveOptions {
    /// 1 to 10.
    pub max_messages: i32,
    /// Long polling, 0 to 20 seconds.
    pub wait_seconds: i32,
    /// How long the received messages stay hidden; `None` keeps the queue's setting.
    pub visibility_timeout: Option<i32>,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        Self {
            max_messages: 10,
            wait_seconds: 0,
            visibility_timeout: None,
        }
    }
}

/// A received message with what the operator tools show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    /// Needed to delete the message or change its visibility.
    pub receipt_handle: String,
    pub body: String,
    pub receive_count: u32,
    pub sent_at: Option<DateTime<Utc>>,
    /// String message attributes by name.
    pub attributes: BTreeMap<String, String>,
}

/// Why and where a message was parked, read back from its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub why: ParkedReason,
    pub source: Option<String>,
    pub parked_at: Option<DateTime<Utc>>,
}

impl ReceivedMessage {
    /// The message as the batch runner takes it.
    pub fn incoming(&self) -> enroll_core::batch::Incoming {
        enroll_core::batch::Incoming {
            id: self.message_id.clone(),
            body: self.body.clone(),
            receive_count: self.receive_count,
        }
    }

    /// `None` for a message SQS moved by redrive (no reason was recorded: it ran out of
    /// receives).
    pub fn parked(&self) -> Option<Parked> {
        let attr = |name: &str| self.attributes.get(name).cloned();
        Some(Parked {
            why: ParkedReason {
                reason: attr(ATTR_REASON)?,
                event_key: attr(ATTR_EVENT_KEY),
                buyer: attr(ATTR_BUYER),
            },
            source: attr(ATTR_SOURCE),
            parked_at: attr(ATTR_PARKED_AT).and_then(|t| t.parse().ok()),
        })
    }
}

/// Receives up to `options.max_messages` messages with all message attributes, the receive
/// count and the sent time.
#[tracing::instrument(skip_all, err)]
pub async fn receive_batch(
    client: &Client,
    queue_url: &str,
    options: ReceiveOptions,
) -> Result<Vec<ReceivedMessage>, Failure> {
    let out = client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(options.max_messages)
        .wait_time_seconds(options.wait_seconds)
        .set_visibility_timeout(options.visibility_timeout)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
        .send()
        .await
        .map_err(|e| classify("ReceiveMessage", e))?;
    Ok(out
        .messages
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| {
            let system = m.attributes.unwrap_or_default();
            let receive_count = system
                .get(&MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let sent_at = system
                .get(&MessageSystemAttributeName::SentTimestamp)
                .and_then(|ms| ms.parse().ok())
                .and_then(DateTime::from_timestamp_millis);
            let attributes = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                .collect();
            Some(ReceivedMessage {
                message_id: m.message_id?,
                receipt_handle: m.receipt_handle?,
                body: m.body.unwrap_or_default(),
                receive_count,
                sent_at,
                attributes,
            })
        })
        .collect())
}

/// Deletes one received message.
#[tracing::instrument(skip_all, err)]
pub async fn delete(client: &Client, queue_url: &str, receipt_handle: &str) -> Result<(), Failure> {
    client
        .delete_message()
        .queue_url(queue_url)
        .receipt_handle(receipt_handle)
        .send()
        .await
        .map_err(|e| classify("DeleteMessage", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_get_a_fair_queue_group_on_standard_queues_only() {
        let acme = TenantId::parse("acme").unwrap();
        let std_q = "https://sqs.us-east-1.amazonaws.com/1/enroll-provision";
        assert_eq!(fair_group(std_q, &acme).as_deref(), Some("acme"));
        assert_eq!(fair_group(std_q, &TenantId::default_tenant()), None);
        assert_eq!(fair_group("https://x/1/enroll-notify.fifo", &acme), None);
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hi", 10), "hi");
        assert_eq!(
            truncate_chars(&"é".repeat(2000), MAX_REASON_CHARS)
                .chars()
                .count(),
            1000
        );
    }
}
