//! The provision Lambda: an SQS event source with partial batch responses.

use crate::Provisioner;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use enroll_aws::lambda_env::{incoming, load_config, required, settle_batch};
use enroll_aws::outbound::SqsDeliveryQueue;
use enroll_aws::{DynamoHistory, DynamoRateBudget, DynamoStore, SqsDeadLetters, SqsQueue};
use enroll_core::clock::SystemClock;
use enroll_core::ports::Queue;
use enroll_notion::scim::ScimClient;
use lambda_runtime::{Error, LambdaEvent};
use std::sync::Arc;

/// Clients and configuration built once per cold start.
pub struct Deps {
    pub provisioner: Provisioner,
    pub dead_letters: SqsDeadLetters,
    pub sqs: aws_sdk_sqs::Client,
    /// This function's own queue: deferred events are sent here again.
    pub queue_url: String,
}

impl Deps {
    pub async fn from_env() -> Result<Self, Error> {
        let sdk = enroll_aws::sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let align = Arc::new(SqsQueue::new(
            sqs.clone(),
            required("ENROLL_ALIGN_QUEUE_URL")?,
        ));
        let dead_letters = SqsDeadLetters::new(
            sqs.clone(),
            required("ENROLL_PROVISION_DLQ_URL")?,
            "provision",
        );
        let queue_url = required("ENROLL_PROVISION_QUEUE_URL")?;
        enroll_aws::lambda_env::spawn_queue_timings_check(
            sqs.clone(),
            queue_url.clone(),
            enroll_core::timings::PROVISION,
        );
        Ok(Self {
            provisioner: provisioner_from_env(&sdk, align).await?,
            dead_letters,
            sqs,
            queue_url,
        })
    }
}

/// The provisioner on AWS, as the provision and expire functions both build it: the
/// configuration, the DynamoDB store, and the SCIM client spending the one budget of the SCIM
/// token that every concurrent instance shares through the table.
pub async fn provisioner_from_env(
    sdk: &aws_config::SdkConfig,
    align: Arc<dyn Queue>,
) -> Result<Provisioner, Error> {
    let config = Arc::new(load_config(sdk).await?);
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let table = required("ENROLL_TABLE")?;
    let budget = Arc::new(DynamoRateBudget::new(
        dynamo.clone(),
        &table,
        &config.scim.token,
        config.rate.scim(),
    ));
    let history =
        DynamoHistory::new(dynamo.clone(), &table).with_retention(config.history.retention_days);
    let store = Arc::new(DynamoStore::new(dynamo, table));
    let directory = Arc::new(ScimClient::new(&config.scim, budget)?);
    let mut provisioner = Provisioner::new(config.clone(), store.clone(), store, directory, align)
        .with_history(Arc::new(history))
        .with_clock(Arc::new(SystemClock));
    // Outbound events, when endpoints are configured and the stack has the notify queue.
    if let Ok(url) = required("ENROLL_NOTIFY_QUEUE_URL") {
        if !config.outbound.is_empty() {
            let sqs = aws_sdk_sqs::Client::new(sdk);
            provisioner = provisioner.with_outbound(Arc::new(SqsDeliveryQueue::new(sqs, url)));
        }
    }
    Ok(provisioner)
}

/// The invocation's deadline, for idempotency claims that a crash must not leave stuck.
pub fn deadline(ctx: &lambda_runtime::Context) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ctx.deadline as i64).unwrap_or_else(Utc::now)
}

#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id, records = event.payload.records.len()))]
pub async fn function_handler(
    deps: &Deps,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let messages = incoming(&event.payload);
    let report = crate::batch::run(
        &deps.provisioner,
        &deps.dead_letters,
        &messages,
        deadline(&event.context),
    )
    .await;
    tracing::info!(
        succeeded = report.succeeded,
        parked = report.parked,
        failed = report.retries.len(),
        deferred = report.deferred.len(),
        "batch done"
    );
    Ok(settle_batch(&deps.sqs, &deps.queue_url, &event.payload, &report).await)
}
