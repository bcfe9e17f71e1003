//! moto for tests that talk to DynamoDB, SQS and Secrets Manager through the real SDK: the lab's
//! launcher ([`enroll_lab::moto`]), one server per test binary ([`shared`]), plus the tables
//! and queues the tests make.
//!
//! Tests never reset moto: each creates its own uniquely named table or queues, so they run in
//! parallel.

use anyhow::{Context, Result};
use aws_sdk_sqs::types::QueueAttributeName;
use enroll_aws::DynamoStore;

pub use enroll_lab::moto::*;

/// A store over a new table of its own, created as `template.yaml` creates it.
pub async fn store() -> Result<DynamoStore> {
    let table = unique("enroll");
    let client = create_table(&sdk_config().await, &table).await?;
    Ok(DynamoStore::new(client, table))
}

/// A source queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct QueuePair {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    pub dlq_url: String,
    pub dlq_arn: String,
}

/// A new queue whose messages move to a new dead-letter queue after `max_receive_count`
/// receives, with the given visibility timeout.
pub async fn queue_with_dlq(
    max_receive_count: u32,
    visibility_timeout_secs: u32,
) -> Result<QueuePair> {
    let client = aws_sdk_sqs::Client::new(&sdk_config().await);
    let name = unique("enroll");
    let dlq_url = create_queue(&client, &format!("{name}-dlq"), &[]).await?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .context("GetQueueAttributes returned no QueueArn")?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count,
    });
    let url = create_queue(
        &client,
        &name,
        &[
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
            (
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout_secs.to_string(),
            ),
        ],
    )
    .await?;
    Ok(QueuePair {
        client,
        url,
        dlq_url,
        dlq_arn,
    })
}
