//! The align Lambda: an SQS event source with partial batch responses.

use crate::Aligner;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use enroll_aws::lambda_env::{incoming, load_config, required, settle_batch};
use enroll_aws::{DynamoHistory, DynamoRateBudget, DynamoStore, SqsDeadLetters};
use enroll_core::clock::SystemClock;
use enroll_notion::sales::SalesClient;
use lambda_runtime::{Error, LambdaEvent};
use std::sync::Arc;

pub struct Deps {
    pub aligner: Aligner,
    pub dead_letters: SqsDeadLetters,
    pub sqs: aws_sdk_sqs::Client,
    /// This function's own queue: requests deferred behind a buyer's lease are sent here again.
    pub queue_url: String,
}

impl Deps {
    pub async fn from_env() -> Result<Self, Error> {
        let sdk = enroll_aws::sdk_config().await;
        let config = load_config(&sdk).await?;
        // The public API token's budget, shared by every concurrent align instance.
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let table = required("ENROLL_TABLE")?;
        let budget = Arc::new(DynamoRateBudget::new(
            dynamo.clone(),
            &table,
            &config.notion.token,
            config.rate.api(),
        ));
        let history = DynamoHistory::new(dynamo.clone(), &table)
            .with_retention(config.history.retention_days);
        // Per-buyer leases live beside the event keys, under the same claim rules.
        let leases = Arc::new(DynamoStore::new(dynamo, table));
        let sales = SalesClient::new(&config.notion, budget)?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue_url = required("ENROLL_ALIGN_QUEUE_URL")?;
        enroll_aws::lambda_env::spawn_queue_timings_check(
            sqs.clone(),
            queue_url.clone(),
            enroll_core::timings::ALIGN,
        );
        Ok(Self {
            aligner: Aligner::new(Arc::new(sales), leases)
                .with_history(Arc::new(history))
                .with_clock(Arc::new(SystemClock)),
            dead_letters: SqsDeadLetters::new(
                sqs.clone(),
                required("ENROLL_ALIGN_DLQ_URL")?,
                "align",
            ),
            sqs,
            queue_url,
        })
    }
}

#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id, records = event.payload.records.len()))]
pub async fn function_handler(
    deps: &Deps,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let messages = incoming(&event.payload);
    let report = deps.aligner.run_batch(&deps.dead_letters, &messages).await;
    tracing::info!(
        succeeded = report.succeeded,
        parked = report.parked,
        failed = report.retries.len(),
        deferred = report.deferred.len(),
        "batch done"
    );
    Ok(settle_batch(&deps.sqs, &deps.queue_url, &event.payload, &report).await)
}
