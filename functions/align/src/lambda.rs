//! The align Lambda: an SQS event source with partial batch responses.

use crate::Aligner;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use enroll_aws::lambda_env::{incoming, required, settle_batch};
use enroll_aws::tenant_stage::{refuse, Build, TenantStage};
use enroll_aws::{DynamoHistory, DynamoRateBudget, DynamoStore, SqsDeadLetters};
use enroll_core::clock::SystemClock;
use enroll_core::config::Config;
use enroll_core::event::AlignRequest;
use enroll_core::tenant::TenantId;
use enroll_core::Failure;
use enroll_notion::sales::SalesClient;
use lambda_runtime::{Error, LambdaEvent};
use std::sync::Arc;

/// Clients and configuration built once per cold start; tenants' on first use.
pub struct Deps {
    pub stage: TenantStage<Aligner>,
    pub sqs: aws_sdk_sqs::Client,
    /// This function's own queue: requests deferred behind a buyer's lease are sent here again.
    pub queue_url: String,
    pub dlq_url: String,
}

/// The aligner of one seller: its public API token's budget, shared by every concurrent align
/// instance through the table, and its leases and history under its tenant's keys.
fn aligner(
    sdk: &enroll_aws::SdkConfig,
    table: &str,
    tenant: &TenantId,
    config: &Config,
) -> Result<Aligner, Failure> {
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let budget = Arc::new(DynamoRateBudget::new(
        dynamo.clone(),
        table,
        &config.notion.token,
        config.rate.api(),
    ));
    let history = DynamoHistory::new(dynamo.clone(), table)
        .with_retention(config.history.retention_days)
        .for_tenant(tenant.clone());
    // Per-buyer leases live beside the event keys, under the same claim rules.
    let leases = Arc::new(DynamoStore::new(dynamo, table).for_tenant(tenant.clone()));
    let sales = SalesClient::new(&config.notion, budget)
        .map_err(|e| Failure::permanent(format!("tenant {tenant}: {e}")))?;
    Ok(Aligner::new(Arc::new(sales), leases)
        .with_history(Arc::new(history))
        .with_clock(Arc::new(SystemClock)))
}

impl Deps {
    pub async fn from_env() -> Result<Self, Error> {
        let sdk = enroll_aws::sdk_config().await;
        let table = required("ENROLL_TABLE")?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue_url = required("ENROLL_ALIGN_QUEUE_URL")?;
        let dlq_url = required("ENROLL_ALIGN_DLQ_URL")?;
        enroll_aws::lambda_env::spawn_queue_timings_check(
            sqs.clone(),
            queue_url.clone(),
            enroll_core::timings::ALIGN,
        );
        let b_sdk = sdk.clone();
        let build: Build<Aligner> =
            Box::new(move |tenant, config| aligner(&b_sdk, &table, &tenant, &config));
        let stage = TenantStage::from_env(&sdk, build).await?;
        Ok(Self {
            stage,
            sqs,
            queue_url,
            dlq_url,
        })
    }
}

#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id, records = event.payload.records.len()))]
pub async fn function_handler(
    deps: &Deps,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let messages = incoming(&event.payload);
    let report = deps
        .stage
        .run_batch(&messages, |tenant, seller, msgs| async move {
            let dead =
                SqsDeadLetters::new(deps.sqs.clone(), &deps.dlq_url, "align").for_tenant(tenant);
            match seller {
                Ok(a) => a.run_batch(&dead, &msgs).await,
                Err(why) => {
                    refuse::<AlignRequest>(&msgs, &dead, &enroll_core::timings::ALIGN, why).await
                }
            }
        })
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
