//! The align Lambda: an SQS event source with partial batch responses.

use crate::Aligner;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use enroll_aws::lambda_env::{batch_response, incoming, load_config, required};
use enroll_aws::{DynamoRateBudget, SqsDeadLetters};
use enroll_notion::sales::SalesClient;
use lambda_runtime::{Error, LambdaEvent};
use std::sync::Arc;

pub struct Deps {
    pub aligner: Aligner,
    pub dead_letters: SqsDeadLetters,
}

impl Deps {
    pub async fn from_env() -> Result<Self, Error> {
        let sdk = enroll_aws::sdk_config().await;
        let config = load_config(&sdk).await?;
        // The public API token's budget, shared by every concurrent align instance.
        let budget = Arc::new(DynamoRateBudget::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            required("ENROLL_TABLE")?,
            &config.notion.token,
            &config.rate,
        ));
        let sales = SalesClient::new(&config.notion, budget).map_err(|f| f.reason)?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        Ok(Self {
            aligner: Aligner::new(Arc::new(sales)),
            dead_letters: SqsDeadLetters::new(sqs, required("ENROLL_ALIGN_DLQ_URL")?, "align"),
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
        failed = report.failed.len(),
        "batch done"
    );
    Ok(batch_response(report.failed))
}
