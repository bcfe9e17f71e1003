//! What every Lambda function's `main.rs` does first: JSON logs, then the configuration from the
//! documented environment variables with its secrets from Secrets Manager, once per cold start.
//!
//! | variable | used by | meaning |
//! |---|---|---|
//! | `ENROLL_CONFIG` | all | the TOML configuration (catalog, platforms, Notion database) |
//! | `ENROLL_SECRET_ID` | all | the Secrets Manager secret holding tokens and webhook secrets |
//! | `ENROLL_TENANT_SECRET_PREFIX` | all | tenants' secrets are this prefix and the tenant's name; with `ENROLL_TABLE`, turns on `/t/{tenant}/...` (see [`crate::tenants`]); `ENROLL_CONFIG` may then be empty |
//! | `ENROLL_TABLE` | all but ingest without tenants | the DynamoDB table (align keeps only its rate budget there) |
//! | `ENROLL_PROVISION_QUEUE_URL` | ingest, provision | where verified events go (provision: where a deferred event is sent again) |
//! | `ENROLL_PROVISION_DLQ_URL` | provision | where permanent failures are parked |
//! | `ENROLL_ALIGN_QUEUE_URL` | provision, align (expire: optional, unused) | where align requests go (align: where a deferred request is sent again) |
//! | `ENROLL_ALIGN_DLQ_URL` | align | where permanent failures are parked |
//! | `ENROLL_NOTIFY_QUEUE_URL` | provision, expire (optional), notify | the FIFO queue outbound events go to, when `[[outbound]]` endpoints are configured |
//! | `ENROLL_NOTIFY_DLQ_URL` | notify | where refused and exhausted deliveries are parked |
//! | `RUST_LOG` | all | log filter, default `info` |
//!
//! Each `main.rs` also wraps its handler in [`with_metrics`], so what an invocation counted is
//! printed as Embedded Metric Format lines when it ends.

use crate::secrets::load_secrets;
use enroll_core::config::{Config, ConfigError};
use enroll_core::metrics::{self, Function};
use std::future::Future;
use std::io::Write;

/// JSON logs on stdout, filtered by `RUST_LOG`. Lambda's JSON log format picks them up as is.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .init();
}

/// Runs one invocation, then prints the metrics it recorded ([`emit_metrics`]), whether it
/// succeeded or not.
pub async fn with_metrics<F: Future>(stage: Function, invocation: F) -> F::Output {
    let out = invocation.await;
    emit_metrics(stage);
    out
}

/// Takes everything recorded since the last call and prints it to stdout as Embedded Metric
/// Format lines, which CloudWatch Logs turns into metrics in the `Enroll` namespace, with the
/// stage's name (`ingest`, ...) as the `Function` dimension, as the dashboard reads it, and a
/// tenant's records (see [`metrics::for_tenant`]) also with its `Tenant` dimension. Whatever
/// the log level: these are not log events. Stdout is held for all the lines and each is
/// written whole, so no log line can land inside one.
pub fn emit_metrics(stage: Function) {
    let now = chrono::Utc::now().timestamp_millis();
    let mut lines = metrics::global().take().emf_lines(stage, now);
    for (tenant, recorded) in metrics::global().take_tenants() {
        lines.extend(recorded.tenant_emf_lines(stage, &tenant, now));
    }
    if lines.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = out.write_all(format!("{line}\n").as_bytes());
    }
    let _ = out.flush();
}

/// A required environment variable, or an error naming it.
pub fn required(name: &str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ConfigError::MissingVariable(name.to_owned()))
}

/// The configuration from `ENROLL_CONFIG`, with secrets from `ENROLL_SECRET_ID` (when set) and
/// then the `ENROLL_*` secret variables, validated.
pub async fn load_config(sdk: &aws_config::SdkConfig) -> Result<Config, ConfigError> {
    let text = required("ENROLL_CONFIG")?;
    let mut cfg: Config = toml::from_str(&text).map_err(|syntax| ConfigError::Syntax {
        origin: Some("ENROLL_CONFIG"),
        syntax,
    })?;
    if let Ok(id) = required("ENROLL_SECRET_ID") {
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        let doc = load_secrets(&client, &id)
            .await
            .map_err(ConfigError::Secrets)?;
        doc.apply(&mut cfg);
    }
    cfg.apply_env(|k| std::env::var(k).ok());
    cfg.validate()?;
    Ok(cfg)
}

/// The single seller's configuration ([`load_config`]), or `None` on a deployment that serves
/// tenants only: `ENROLL_CONFIG` empty while `ENROLL_TENANT_SECRET_PREFIX` is set. Without
/// either there is nobody to serve, and that is an error naming `ENROLL_CONFIG`.
pub async fn load_single_config(
    sdk: &aws_config::SdkConfig,
) -> Result<Option<Config>, ConfigError> {
    let serves_tenants = required(crate::tenants::SECRET_PREFIX_VARIABLE).is_ok();
    if required("ENROLL_CONFIG").is_err() && serves_tenants {
        return Ok(None);
    }
    load_config(sdk).await.map(Some)
}

/// Turns SQS records into batch messages. A record without a body becomes an empty body, which
/// the batch runner parks as invalid.
pub fn incoming(event: &aws_lambda_events::sqs::SqsEvent) -> Vec<enroll_core::batch::Incoming> {
    received(event)
        .iter()
        .map(crate::sqs::ReceivedMessage::incoming)
        .collect()
}

/// The records of an SQS event as received messages (the form [`settle`] takes).
pub fn received(event: &aws_lambda_events::sqs::SqsEvent) -> Vec<crate::sqs::ReceivedMessage> {
    event
        .records
        .iter()
        .map(|r| crate::sqs::ReceivedMessage {
            message_id: r.message_id.clone().unwrap_or_default(),
            receipt_handle: r.receipt_handle.clone().unwrap_or_default(),
            body: r.body.clone().unwrap_or_default(),
            receive_count: r
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1),
            sent_at: None,
            attributes: Default::default(),
        })
        .collect()
}

/// The partial batch response of a Lambda SQS handler, after [`settle`].
pub async fn settle_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    event: &aws_lambda_events::sqs::SqsEvent,
    report: &enroll_core::batch::BatchReport,
) -> aws_lambda_events::sqs::SqsBatchResponse {
    batch_response(settle(sqs, queue_url, &received(event), report).await)
}

/// Settles what the batch runner could not settle by acknowledging, and returns the ids to
/// report as batch item failures (everything else is acknowledged, i.e. deleted):
///
/// - a *deferred* message (its key held by another invocation) is sent again to `queue_url`
///   with a delay of the claim's remaining time plus the margin, and acknowledged: a new
///   message starts with a receive count of 0, so waiting for a claim never counts towards
///   `maxReceiveCount` (ChangeMessageVisibility could not do that: every receive counts). If
///   the send fails, the message stays a batch item failure and comes back after that delay;
/// - a *transient* failure comes back after the stage's backoff (ChangeMessageVisibility),
///   not after the whole visibility timeout, and is reported as a batch item failure.
///
/// A visibility change that fails only means the queue's own visibility timeout applies.
pub async fn settle(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[crate::sqs::ReceivedMessage],
    report: &enroll_core::batch::BatchReport,
) -> Vec<String> {
    let find = |id: &str| messages.iter().find(|m| m.message_id == id);
    let mut failed = report.failed();
    for d in &report.deferred {
        let Some(m) = find(&d.id) else { continue };
        let delay = d.delay.min(enroll_core::timings::MAX_SQS_DELAY);
        // The tenant's fair-queue group goes with it again (see [`crate::sqs::fair_group`]).
        let tenant = enroll_core::tenant::tenant_of_message(&m.body).unwrap_or_default();
        let sent = sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(&m.body)
            .set_message_group_id(crate::sqs::fair_group(queue_url, &tenant))
            .delay_seconds(delay.as_secs().max(1) as i32)
            .send()
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %crate::error::classify("SendMessage", e), "could not defer by sending again; the message comes back instead");
            change_visibility(sqs, queue_url, m, delay).await;
            failed.push(d.id.clone());
        }
    }
    for retry in &report.retries {
        if let Some(m) = find(&retry.id) {
            change_visibility(sqs, queue_url, m, retry.delay).await;
        }
    }
    failed
}

async fn change_visibility(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    m: &crate::sqs::ReceivedMessage,
    after: std::time::Duration,
) {
    let changed = sqs
        .change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(&m.receipt_handle)
        .visibility_timeout(after.as_secs().max(1) as i32)
        .send()
        .await;
    if let Err(e) = changed {
        tracing::warn!(error = %crate::error::classify("ChangeMessageVisibility", e), "could not shorten the retry wait; the queue's visibility timeout applies");
    }
}

/// The partial batch response naming only the messages that must come back.
pub fn batch_response(failed: Vec<String>) -> aws_lambda_events::sqs::SqsBatchResponse {
    let mut resp = aws_lambda_events::sqs::SqsBatchResponse::default();
    for id in failed {
        let mut item = aws_lambda_events::sqs::BatchItemFailure::default();
        item.item_identifier = id;
        resp.batch_item_failures.push(item);
    }
    resp
}

/// [`check_queue_timings`] off the cold start's path: the function is ready without waiting
/// for SQS, and the check logs when SQS answers (Lambda runs the task alongside the first
/// invocation).
pub fn spawn_queue_timings_check(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    timings: enroll_core::timings::StageTimings,
) {
    tokio::spawn(async move {
        check_queue_timings(&sqs, &queue_url, &timings).await;
    });
}

/// Checks, once per cold start, that the function's own queue runs the stage's timings: a
/// visibility timeout of at least 6 x the claim and the stage's `maxReceiveCount`. The template
/// sets both (a test holds it to the constants); a queue changed by hand afterwards would
/// break the crash guarantees silently, so a mismatch is logged as an error naming the fix.
/// Never fails the start: an unreadable attribute only skips the check.
pub async fn check_queue_timings(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    timings: &enroll_core::timings::StageTimings,
) -> Vec<String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let Ok(out) = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::VisibilityTimeout)
        .attribute_names(A::RedrivePolicy)
        .send()
        .await
    else {
        return Vec::new();
    };
    let attrs = out.attributes.unwrap_or_default();
    let mut problems = Vec::new();
    if let Some(v) = attrs
        .get(&A::VisibilityTimeout)
        .and_then(|v| v.parse::<u64>().ok())
    {
        if v < (timings.claim * 6).as_secs() {
            problems.push(format!(
                "the queue's VisibilityTimeout is {v} s, less than 6 x the {} s claim: set it to {} s as template.yaml does",
                timings.claim.as_secs(),
                timings.visibility.as_secs()
            ));
        }
    }
    if let Some(max) = attrs
        .get(&A::RedrivePolicy)
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|p| match &p["maxReceiveCount"] {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        })
    {
        if max != u64::from(timings.max_receives) {
            problems.push(format!(
                "the queue's maxReceiveCount is {max}, not {}: set it as template.yaml does",
                timings.max_receives
            ));
        }
    }
    for p in &problems {
        tracing::error!(problem = %p, "queue settings break the stage timings");
    }
    problems
}
