//! A moto server for tests that talk to DynamoDB, SQS and Secrets Manager through the real SDK.
//!
//! With `AWS_ENDPOINT_URL` set, tests use that server. Otherwise the first test of a binary
//! starts `<repo>/.venv/bin/moto_server` (or `$MOTO_SERVER`) on a free port, once for the whole
//! binary. Tests never reset it: each creates its own uniquely named table or queues, so they run
//! in parallel.
//!
//! moto runs under a small `sh` wrapper that waits on a pipe from this process and stops moto
//! when the pipe closes. The kernel closes it whenever this process ends, whether the tests
//! passed, panicked or were killed, so no moto outlives its test binary. Its log goes to
//! `$TMPDIR/enroll-moto-<port>.log`.

use anyhow::{bail, Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_sqs::types::QueueAttributeName;
use enroll_aws::DynamoStore;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The region every test client uses; moto keeps state per region.
pub const REGION: &str = "us-east-1";

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `$1` moto_server, `$2` port, `$3` log file. `read` returns once this process's end of the
/// pipe on stdin closes.
const WRAPPER: &str = r#""$1" -H 127.0.0.1 -p "$2" >"$3" 2>&1 </dev/null &
moto=$!
read _ignored
kill "$moto" 2>/dev/null
wait "$moto""#;

struct Server {
    endpoint: String,
    /// Holds the wrapper's stdin open for the life of the process; never read after start.
    _wrapper: Option<Mutex<Child>>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The endpoint of the moto server these tests use, starting it on first use.
pub fn endpoint() -> &'static str {
    &SERVER
        .get_or_init(|| match std::env::var("AWS_ENDPOINT_URL") {
            Ok(url) if !url.is_empty() => Server {
                endpoint: url,
                _wrapper: None,
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
    let moto = moto_server_path();
    if !moto.exists() {
        bail!(
            "{} not found: create the venv (python3 -m venv .venv && .venv/bin/pip install \
             'moto[server]') or set AWS_ENDPOINT_URL",
            moto.display()
        );
    }
    let port = free_port()?;
    let log = std::env::temp_dir().join(format!("enroll-moto-{port}.log"));
    let mut wrapper = Command::new("sh")
        .arg("-c")
        .arg(WRAPPER)
        .arg("enroll-moto")
        .arg(&moto)
        .arg(port.to_string())
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning the moto wrapper")?;
    let deadline = Instant::now() + READY_TIMEOUT;
    while !answers(port) {
        if let Some(status) = wrapper.try_wait()? {
            bail!("moto exited with {status}; see {}", log.display());
        }
        if Instant::now() > deadline {
            let _ = wrapper.kill();
            bail!(
                "moto did not answer within {READY_TIMEOUT:?}; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        _wrapper: Some(Mutex::new(wrapper)),
    })
}

/// Another process could take the port between this probe and moto's bind; moto would then
/// exit and `start` says so.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether `GET /moto-api/` answers 200.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
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
