//! The notify Lambda: the notify FIFO queue as its event source (batch size 1 in the template,
//! so a buyer's later event is never received while an earlier one waits for its retry), with
//! partial batch responses. A retry comes back after its backoff through
//! ChangeMessageVisibility; `maxReceiveCount` is [`enroll_core::outbound::MAX_ATTEMPTS`] plus
//! one, since the last attempt parks a failing delivery itself, with its reason.

use crate::Notifier;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use enroll_aws::lambda_env::{incoming, load_config, required, settle_batch};
use enroll_aws::outbound::DynamoEndpoints;
use enroll_aws::{DynamoHistory, SqsDeadLetters};
use enroll_core::clock::SystemClock;
use lambda_runtime::{Error, LambdaEvent};
use std::sync::Arc;

/// Clients and configuration built once per cold start.
pub struct Deps {
    pub notifier: Notifier,
    pub dead_letters: SqsDeadLetters,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl Deps {
    pub async fn from_env() -> Result<Self, Error> {
        let sdk = enroll_aws::sdk_config().await;
        let config = Arc::new(load_config(&sdk).await?);
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let table = required("ENROLL_TABLE")?;
        let history = DynamoHistory::new(dynamo.clone(), &table)
            .with_retention(config.history.retention_days);
        let endpoints = Arc::new(DynamoEndpoints::new(dynamo, table));
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        Ok(Self {
            notifier: Notifier::new(config, endpoints)?
                .with_history(Arc::new(history))
                .with_clock(Arc::new(SystemClock)),
            dead_letters: SqsDeadLetters::new(
                sqs.clone(),
                required("ENROLL_NOTIFY_DLQ_URL")?,
                "notify",
            ),
            queue_url: required("ENROLL_NOTIFY_QUEUE_URL")?,
            sqs,
        })
    }
}

#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id, records = event.payload.records.len()))]
pub async fn function_handler(
    deps: &Deps,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let messages = incoming(&event.payload);
    let report = deps.notifier.run_batch(&deps.dead_letters, &messages).await;
    tracing::info!(
        delivered = report.succeeded,
        parked = report.parked,
        retried = report.retries.len(),
        "batch done"
    );
    Ok(settle_batch(&deps.sqs, &deps.queue_url, &event.payload, &report).await)
}
