//! What every Lambda function's `main.rs` does first: JSON logs, then the configuration from the
//! documented environment variables with its secrets from Secrets Manager, once per cold start.
//!
//! | variable | used by | meaning |
//! |---|---|---|
//! | `ENROLL_CONFIG` | all | the TOML configuration (catalog, platforms, Notion database) |
//! | `ENROLL_SECRET_ID` | all | the Secrets Manager secret holding tokens and webhook secrets |
//! | `ENROLL_TABLE` | provision, align, expire | the DynamoDB table (align keeps only its rate budget there) |
//! | `ENROLL_PROVISION_QUEUE_URL` | ingest | where verified events go |
//! | `ENROLL_PROVISION_DLQ_URL` | provision | where permanent failures are parked |
//! | `ENROLL_ALIGN_QUEUE_URL` | provision (expire: optional, unused) | where align requests go |
//! | `ENROLL_ALIGN_DLQ_URL` | align | where permanent failures are parked |
//! | `RUST_LOG` | all | log filter, default `info` |

use crate::secrets::load_secrets;
use enroll_core::config::{Config, ConfigError};

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

/// A required environment variable, or an error naming it.
pub fn required(name: &str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ConfigError(format!("environment variable {name} is not set")))
}

/// The configuration from `ENROLL_CONFIG`, with secrets from `ENROLL_SECRET_ID` (when set) and
/// then the `ENROLL_*` secret variables, validated.
pub async fn load_config(sdk: &aws_config::SdkConfig) -> Result<Config, ConfigError> {
    let text = required("ENROLL_CONFIG")?;
    let mut cfg: Config =
        toml::from_str(&text).map_err(|e| ConfigError(format!("ENROLL_CONFIG: {e}")))?;
    if let Ok(id) = required("ENROLL_SECRET_ID") {
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        let doc = load_secrets(&client, &id)
            .await
            .map_err(|f| ConfigError(format!("ENROLL_SECRET_ID: {}", f.reason)))?;
        doc.apply(&mut cfg);
    }
    cfg.apply_env(|k| std::env::var(k).ok());
    cfg.validate()?;
    Ok(cfg)
}

/// Turns SQS records into batch messages. A record without a body becomes an empty body, which
/// the batch runner parks as invalid.
pub fn incoming(event: &aws_lambda_events::sqs::SqsEvent) -> Vec<enroll_core::batch::Incoming> {
    event
        .records
        .iter()
        .map(|r| enroll_core::batch::Incoming {
            id: r.message_id.clone().unwrap_or_default(),
            body: r.body.clone().unwrap_or_default(),
        })
        .collect()
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
