//! The part AWS plays between a queue and a function in tests of the real Lambda binaries: an
//! event source mapping. [`Source`] receives from a queue in moto and builds the `SqsEvent`
//! Lambda would deliver; [`deliver`] invokes the function under `cargo lambda watch` with it
//! and deletes what the function did not report as failed.

use crate::lambda_watch::LambdaWatch;
use crate::moto::{self, QueuePair, REGION};
use anyhow::{ensure, Context, Result};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use enroll_aws::{receive_batch, ReceiveOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A source queue as an event source mapping sees it.
pub struct Source {
    pub pair: QueuePair,
    pub arn: String,
}

impl Source {
    pub async fn new() -> Result<Self> {
        // A long visibility timeout: nothing reappears while the test holds a message.
        let pair = moto::queue_with_dlq(3, 300).await?;
        let arn = pair
            .client
            .get_queue_attributes()
            .queue_url(&pair.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .context("GetQueueAttributes returned no QueueArn")?;
        Ok(Self { pair, arn })
    }

    /// Receives what is visible (long-polling up to `wait_seconds` for the first message) and
    /// builds the `SqsEvent` Lambda would deliver; also answers the receipt handles by message
    /// id, for the deletes after the invocation.
    pub async fn receive_event(
        &self,
        wait_seconds: i32,
    ) -> Result<(Value, BTreeMap<String, String>)> {
        let out = self
            .pair
            .client
            .receive_message()
            .queue_url(&self.pair.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await?;
        let mut records = Vec::new();
        let mut handles = BTreeMap::new();
        for m in out.messages.unwrap_or_default() {
            let id = m.message_id.clone().context("a message without an id")?;
            let handle = m
                .receipt_handle
                .clone()
                .context("a message without a handle")?;
            let attributes: BTreeMap<String, String> = m
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect();
            let message_attributes: BTreeMap<String, Value> = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        json!({
                            "stringValue": v.string_value,
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": v.data_type,
                        }),
                    )
                })
                .collect();
            records.push(json!({
                "messageId": id,
                "receiptHandle": handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": self.arn,
                "awsRegion": REGION,
            }));
            handles.insert(id, handle);
        }
        Ok((json!({ "Records": records }), handles))
    }

    /// What an event source mapping does after a successful invocation: deletes every message
    /// not named in `batchItemFailures`.
    pub async fn delete_all(&self, handles: &BTreeMap<String, String>) -> Result<()> {
        for handle in handles.values() {
            enroll_aws::delete(&self.pair.client, &self.pair.url, handle).await?;
        }
        Ok(())
    }

    pub async fn visible(&self, url: &str) -> Result<Vec<enroll_aws::ReceivedMessage>> {
        Ok(receive_batch(&self.pair.client, url, ReceiveOptions::default()).await?)
    }
}

/// The `batchItemFailures` of a partial batch response (a missing list is a failed batch).
pub fn batch_failures(response: &Value) -> Result<&Vec<Value>> {
    response
        .get("batchItemFailures")
        .and_then(Value::as_array)
        .with_context(|| format!("not a partial batch response: {response}"))
}

/// One event source mapping round for `function`: receive, invoke, and delete on success.
/// Answers the bodies it delivered.
pub async fn deliver(
    watch: &mut LambdaWatch,
    function: &str,
    source: &Source,
    expect_at_least: usize,
) -> Result<Vec<String>> {
    // Long-poll only when a message is expected: an empty queue then answers at once.
    let wait_seconds = if expect_at_least == 0 { 0 } else { 10 };
    let (event, handles) = source.receive_event(wait_seconds).await?;
    let bodies: Vec<String> = event["Records"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        bodies.len() >= expect_at_least,
        "{function}: expected at least {expect_at_least} message(s) in its queue, got {}",
        bodies.len()
    );
    if bodies.is_empty() {
        return Ok(bodies);
    }
    let response = watch.invoke(function, &event).await?;
    let failures = batch_failures(&response)?;
    ensure!(
        failures.is_empty(),
        "{function}: expected no batch item failures, got {response}\n{}",
        watch.log_tail(40)
    );
    source.delete_all(&handles).await?;
    Ok(bodies)
}
