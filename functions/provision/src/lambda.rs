//! The provision Lambda: an SQS event source with partial batch responses.

use crate::Provisioner;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use enroll_aws::lambda_env::{incoming, required, settle_batch};
use enroll_aws::outbound::SqsDeliveryQueue;
use enroll_aws::tenant_stage::{refuse, Build, TenantStage};
use enroll_aws::{DynamoHistory, DynamoRateBudget, DynamoStore, SqsDeadLetters, SqsQueue};
use enroll_core::clock::SystemClock;
use enroll_core::config::Config;
use enroll_core::event::OrderEvent;
use enroll_core::ports::Queue;
use enroll_core::tenant::TenantId;
use enroll_core::Failure;
use enroll_notion::scim::ScimClient;
use lambda_runtime::{Error, LambdaEvent};
use std::sync::Arc;

/// Clients and configuration built once per cold start; tenants' on first use.
pub struct Deps {
    pub stage: TenantStage<Provisioner>,
    pub sqs: aws_sdk_sqs::Client,
    /// This function's own queue: deferred events are sent here again.
    pub queue_url: String,
    pub dlq_url: String,
}

/// Where the provisioner of any seller sends and writes, from the environment.
#[derive(Clone)]
pub struct Wiring {
    pub sdk: aws_config::SdkConfig,
    pub table: String,
    /// `None` for the expiry pass, which never asks align for anything.
    pub align_url: Option<String>,
    pub notify_url: Option<String>,
}

impl Wiring {
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, Error> {
        Ok(Self {
            sdk: sdk.clone(),
            table: required("ENROLL_TABLE")?,
            align_url: required("ENROLL_ALIGN_QUEUE_URL").ok(),
            notify_url: required("ENROLL_NOTIFY_QUEUE_URL").ok(),
        })
    }

    /// The provisioner of `tenant` (the default tenant: the single seller) on AWS, as the
    /// provision and expire functions both build it: the DynamoDB store and history under the
    /// tenant's keys, the SCIM client spending the one budget of the seller's SCIM token that
    /// every concurrent instance shares through the table, and queues that name the tenant.
    pub fn provisioner(
        &self,
        tenant: &TenantId,
        config: Arc<Config>,
    ) -> Result<Provisioner, Failure> {
        let sdk = &self.sdk;
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        let table = &self.table;
        let budget = Arc::new(DynamoRateBudget::new(
            dynamo.clone(),
            table,
            &config.scim.token,
            config.rate.scim(),
        ));
        let history = DynamoHistory::new(dynamo.clone(), table)
            .with_retention(config.history.retention_days)
            .for_tenant(tenant.clone());
        let store = Arc::new(DynamoStore::new(dynamo, table).for_tenant(tenant.clone()));
        let directory = Arc::new(
            ScimClient::new(&config.scim, budget)
                .map_err(|e| Failure::permanent(format!("tenant {tenant}: {e}")))?,
        );
        let align: Arc<dyn Queue> = match &self.align_url {
            Some(url) => Arc::new(
                SqsQueue::new(aws_sdk_sqs::Client::new(sdk), url).for_tenant(tenant.clone()),
            ),
            None => Arc::new(crate::ReconcileOnly),
        };
        let mut provisioner =
            Provisioner::new(config.clone(), store.clone(), store, directory, align)
                .with_history(Arc::new(history))
                .with_clock(Arc::new(SystemClock));
        // Outbound events, when endpoints are configured and the stack has the notify queue.
        if let Some(url) = &self.notify_url {
            if !config.outbound.is_empty() {
                let sqs = aws_sdk_sqs::Client::new(sdk);
                provisioner = provisioner.with_outbound(Arc::new(
                    SqsDeliveryQueue::new(sqs, url).for_tenant(tenant.clone()),
                ));
            }
        }
        Ok(provisioner)
    }
}

impl Deps {
    pub async fn from_env() -> Result<Self, Error> {
        let sdk = enroll_aws::sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let mut wiring = Wiring::from_env(&sdk)?;
        wiring.align_url = Some(required("ENROLL_ALIGN_QUEUE_URL")?);
        let dlq_url = required("ENROLL_PROVISION_DLQ_URL")?;
        let queue_url = required("ENROLL_PROVISION_QUEUE_URL")?;
        enroll_aws::lambda_env::spawn_queue_timings_check(
            sqs.clone(),
            queue_url.clone(),
            enroll_core::timings::PROVISION,
        );
        let build: Build<Provisioner> =
            Box::new(move |tenant, config| wiring.provisioner(&tenant, config));
        let stage = TenantStage::from_env(&sdk, build).await?;
        Ok(Self {
            stage,
            sqs,
            queue_url,
            dlq_url,
        })
    }
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
    let deadline = deadline(&event.context);
    let report = deps
        .stage
        .run_batch(&messages, |tenant, seller, msgs| async move {
            let dead = SqsDeadLetters::new(deps.sqs.clone(), &deps.dlq_url, "provision")
                .for_tenant(tenant);
            match seller {
                Ok(p) => crate::batch::run(&p, &dead, &msgs, deadline).await,
                Err(why) => {
                    refuse::<OrderEvent>(&msgs, &dead, &enroll_core::timings::PROVISION, why).await
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
