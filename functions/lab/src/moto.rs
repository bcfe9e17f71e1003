//! The one moto launcher: DynamoDB, SQS and Secrets Manager for the bench's function binaries
//! and for the tests that use the real SDK.
//!
//! With `AWS_ENDPOINT_URL` set, that server is used and nothing is started. Otherwise
//! [`Moto::start`] runs `<repo>/.venv/bin/moto_server` (or `$MOTO_SERVER`) on a free port and
//! waits until it answers. moto is a [`LocalServer`]: it stops when its [`Moto`] is dropped,
//! and in any case when this process ends (passed, panicked or killed), so no moto outlives
//! the process that started it. Its log goes to `$TMPDIR/enroll-moto-<port>.log`.
//!
//! moto is never reset: every user creates its own uniquely named table and queues
//! ([`unique`]), so tests sharing one server ([`shared`]) run in parallel.

use crate::local_server::LocalServer;
use anyhow::{Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_sqs::types::QueueAttributeName;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The region every client uses; moto keeps state per region.
pub const REGION: &str = "us-east-1";

/// The dummy credentials moto accepts; functions pointed at moto get them from the environment.
pub const ACCESS_KEY_ID: &str = "test";
pub const SECRET_ACCESS_KEY: &str = "test";

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A moto server: one this process started, or the one `AWS_ENDPOINT_URL` names.
#[derive(Debug)]
pub struct Moto {
    endpoint: String,
    /// Stops moto when dropped; `None` for a server this process did not start.
    _server: Option<LocalServer>,
}

impl Moto {
    /// The server `AWS_ENDPOINT_URL` names, else a new moto on a free port, once it answers.
    /// Blocks the calling thread: from async code, call it in `spawn_blocking`.
    pub fn start() -> Result<Self> {
        if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
            if !url.is_empty() {
                return Ok(Self {
                    endpoint: url,
                    _server: None,
                });
            }
        }
        let server = LocalServer::spawn(
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
        Ok(Self {
            endpoint: server.url(),
            _server: Some(server),
        })
    }

    /// `http://127.0.0.1:<port>`: what `AWS_ENDPOINT_URL` is set to for a client of moto.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An SDK configuration pointed at this moto, with dummy credentials. Build clients where
    /// they are used: a client's connection pool belongs to the runtime that built it.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "moto",
            ))
            .endpoint_url(&self.endpoint)
            .load()
            .await
    }
}

/// `$MOTO_SERVER`, else the workspace's `.venv/bin/moto_server` (`bash tests/tools.sh`).
fn moto_server_path() -> PathBuf {
    std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join(".venv/bin/moto_server"))
}

static SHARED: OnceLock<Moto> = OnceLock::new();

/// One moto for the whole process, started on first use and held until the process ends (a
/// `static` is never dropped; the kernel closing the pipe stops moto). Panics if moto cannot
/// start: what shares it is a test binary.
pub fn shared() -> &'static Moto {
    SHARED.get_or_init(|| Moto::start().unwrap_or_else(|e| panic!("cannot start moto: {e:#}")))
}

/// The endpoint of the [`shared`] moto.
pub fn endpoint() -> &'static str {
    shared().endpoint()
}

/// An SDK configuration pointed at the [`shared`] moto.
pub async fn sdk_config() -> SdkConfig {
    shared().sdk_config().await
}

/// A name no other user of the server has.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates the table `name` as `template.yaml` creates it.
pub async fn create_table(sdk: &SdkConfig, name: &str) -> Result<aws_sdk_dynamodb::Client> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    enroll_aws::create_table(&client, name)
        .await
        .with_context(|| format!("creating the table {name}"))?;
    Ok(client)
}

/// Creates the queue `name` with `attributes`; returns its URL.
pub async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> Result<String> {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attributes {
        req = req.attributes(k.clone(), v);
    }
    req.send()
        .await
        .with_context(|| format!("creating the queue {name}"))?
        .queue_url
        .context("CreateQueue returned no URL")
}
