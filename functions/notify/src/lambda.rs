//! The notify Lambda: the notify FIFO queue as its event source (batch size 1 in the template,
//! so a buyer's later event is never received while an earlier one waits for its retry), with
//! partial batch responses. A retry comes back after its backoff through
//! ChangeMessageVisibility; `maxReceiveCount` is [`enroll_core::outbound::MAX_ATTEMPTS`] plus
//! one, since the last attempt parks a failing delivery itself, with its reason.

use crate::Notifier;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use enroll_aws::lambda_env::{incoming, required, settle_batch};
use enroll_aws::outbound::DynamoEndpoints;
use enroll_aws::tenant_stage::{refuse, Build, TenantStage};
use enroll_aws::{DynamoHistory, SqsDeadLetters};
use enroll_core::clock::SystemClock;
use enroll_core::outbound::{self, Delivery};
use enroll_core::timings::StageTimings;
use enroll_core::Failure;
use lambda_runtime::{Error, LambdaEvent};
use std::sync::Arc;

/// How the deliveries of a seller that cannot be served are retried: on the delivery schedule,
/// parked at its last attempt, as a failing endpoint's would be.
const UNSERVED: StageTimings = StageTimings {
    claim: std::time::Duration::from_secs(30),
    visibility: std::time::Duration::from_secs(180),
    max_receives: outbound::MAX_ATTEMPTS,
    first_retry: outbound::FIRST_RETRY,
    max_retry: outbound::MAX_RETRY,
    defer_margin: std::time::Duration::from_secs(2),
};

/// Clients and configuration built once per cold start; tenants' on first use.
pub struct Deps {
    pub stage: TenantStage<Notifier>,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub dlq_url: String,
}

impl Deps {
    pub async fn from_env() -> Result<Self, Error> {
        let sdk = enroll_aws::sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let table = required("ENROLL_TABLE")?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let dlq_url = required("ENROLL_NOTIFY_DLQ_URL")?;
        // A seller's endpoints, their secrets and the endpoints a 410 disabled are its own.
        let build: Build<Notifier> = Box::new(move |tenant, config| {
            let history = DynamoHistory::new(dynamo.clone(), &table)
                .with_retention(config.history.retention_days)
                .for_tenant(tenant.clone());
            let endpoints =
                Arc::new(DynamoEndpoints::new(dynamo.clone(), &table).for_tenant(tenant.clone()));
            Ok(Notifier::new(config, endpoints)
                .map_err(|e| Failure::permanent(format!("tenant {tenant}: {e}")))?
                .with_history(Arc::new(history))
                .with_clock(Arc::new(SystemClock)))
        });
        let stage = TenantStage::from_env(&sdk, build).await?;
        Ok(Self {
            stage,
            queue_url: required("ENROLL_NOTIFY_QUEUE_URL")?,
            dlq_url,
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
    let report = deps
        .stage
        .run_batch(&messages, |tenant, seller, msgs| async move {
            let dead =
                SqsDeadLetters::new(deps.sqs.clone(), &deps.dlq_url, "notify").for_tenant(tenant);
            match seller {
                Ok(n) => n.run_batch(&dead, &msgs).await,
                Err(why) => refuse::<Delivery>(&msgs, &dead, &UNSERVED, why).await,
            }
        })
        .await;
    tracing::info!(
        delivered = report.succeeded,
        parked = report.parked,
        retried = report.retries.len(),
        "batch done"
    );
    Ok(settle_batch(&deps.sqs, &deps.queue_url, &event.payload, &report).await)
}
