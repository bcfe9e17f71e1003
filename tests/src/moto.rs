//! A moto server for tests that talk to DynamoDB, SQS and Secrets Manager through the real SDK.
//!
//! With `AWS_ENDPOINT_URL` set, tests use that server. Otherwise the first test of a binary
//! starts `<repo>/.venv/bin/moto_server` (or `$MOTO_SERVER`) on a free port, once for the whole
//! binary. Tests never reset it: each creates its own uniquely named table or queues, so they run
//! in parallel.
//!
//! moto is a [`LocalServer`]: it stops when this process ends, whether the tests passed,
//! panicked or were killed, so no moto outlives its test binary. Its log goes to
//! `$TMPDIR/enroll-moto-<port>.log`.

use crate::local_server::LocalServer;
use anyhow::{Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_sqs::types::QueueAttributeName;
use enroll_aws::DynamoStore;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The region every test client uses; moto keeps state per region.
pub const REGION: &str = "us-east-1";

const READY_TIMEOUT: Duration = Duration::from_secs(60);

struct Server {
    endpoint: String,
    /// Held for the life of the process (a `static` is never dropped); the kernel stops moto.
    _moto: Option<LocalServer>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The endpoint of the moto server these tests use, starting it on first use.
pub fn endpoint() -> &'static str {
    &SERVER
        .get_or_init(|| match std::env::var("AWS_ENDPOINT_URL") {
            Ok(url) if !url.is_empty() => Server {
                endpoint: url,
                _moto: None,
            },
            _ => start().unwrap_or_else(|e| panic!("cannot start moto: {e:#}")),
        })
        .endpoint
}

fn moto_server_path() -> PathBuf {
    std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server")
        })
}

fn start() -> Result<Server> {
    let moto = LocalServer::spawn(
        "moto",
        &moto_server_path(),
        |port| {
            vec![
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string().into(),
            ]
        },
        "/moto-api/",
        |status| status == 200,
        READY_TIMEOUT,
    )
    .context("create the venv (bash tests/tools.sh) or set AWS_ENDPOINT_URL")?;
    Ok(Server {
        endpoint: moto.url(),
        _moto: Some(moto),
    })
}

/// An SDK configuration pointed at moto, with dummy credentials. Build clients per test: a
/// client's connection pool belongs to the runtime of the test that built it.
pub async fn sdk_config() -> SdkConfig {
    let endpoint = endpoint();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A store over a new table of its own, created as `template.yaml` creates it.
pub async fn store() -> Result<DynamoStore> {
    let client = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let table = unique("enroll");
    enroll_aws::create_table(&client, &table).await?;
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
    let dlq_url = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await?
        .queue_url
        .context("CreateQueue returned no URL")?;
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
    let url = client
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout_secs.to_string(),
        )
        .send()
        .await?
        .queue_url
        .context("CreateQueue returned no URL")?;
    Ok(QueuePair {
        client,
        url,
        dlq_url,
        dlq_arn,
    })
}
