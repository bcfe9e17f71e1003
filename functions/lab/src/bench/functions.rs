//! The function binaries: each release binary under the fake Lambda Runtime API
//! ([`super::runtime_api`]), with DynamoDB and SQS from moto, timed to its first request for an
//! event and measured for its peak memory once it has handled ten events.

use super::ingest::{stripe_purchase, webhook};
use super::provision::purchase_event;
use super::report::round;
use super::runtime_api::run_function;
use super::{
    config, config_text, simulator, BenchOptions, Report, BATCH, FUNCTIONS, NOTION_TOKEN,
    PROVISION_PRODUCTS, SCIM_TOKEN, STRIPE_SECRET,
};
use crate::moto::{self, Moto};
use anyhow::Context;
use chrono::Utc;
use enroll_core::event::AlignRequest;
use enroll_core::ids::{NotionUserId, Platform};
use enroll_embedded::seed;
use ingest::WebhookRequest;
use serde_json::{json, Value};
use std::path::PathBuf;

fn bin_dir(opts: &BenchOptions) -> PathBuf {
    opts.bin_dir.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::workspace_root().join("target"))
            .join("release")
    })
}

/// A function the bench did not run: no numbers, and why.
pub(super) fn skipped(report: &mut Report, function: &str, why: String) {
    report.insert(format!("functions.{function}.init_ms"), Value::Null);
    report.insert(format!("functions.{function}.peak_rss_mb"), Value::Null);
    report.insert(format!("functions.{function}.skipped"), json!(why));
}

/// Each function binary present in the bin directory, under the fake Runtime API, with ten
/// events of its kind.
pub(super) async fn bench(opts: &BenchOptions) -> anyhow::Result<Report> {
    let dir = bin_dir(opts);
    let mut report = Report::new();
    let present: Vec<&str> = FUNCTIONS
        .into_iter()
        .filter(|f| dir.join(f).is_file())
        .collect();
    for f in FUNCTIONS.iter().filter(|f| !present.contains(f)) {
        let missing = format!(
            "no {} (cargo build --release -p {f})",
            dir.join(f).display()
        );
        skipped(&mut report, f, missing);
    }
    if present.is_empty() {
        return Ok(report);
    }
    // Held until the functions have run: dropping it stops moto.
    let moto = tokio::task::spawn_blocking(Moto::start)
        .await?
        .context("the functions need DynamoDB and SQS (moto)")?;
    let sdk = moto.sdk_config().await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let table = format!("enroll-bench-{suffix}");
    moto::create_table(&sdk, &table).await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = |name: &str| {
        let name = format!("enroll-bench-{name}-{suffix}");
        let sqs = &sqs;
        async move { moto::create_queue(sqs, &name, &[]).await }
    };
    let provision_queue = queue("provision").await?;
    let provision_dlq = queue("provision-dlq").await?;
    let align_queue = queue("align").await?;
    let align_dlq = queue("align-dlq").await?;

    // No rate limit here: this part measures the functions, not the budget.
    let seed_cfg = config(opts.rate, None, PROVISION_PRODUCTS)?;
    let sim = simulator(seed::from_config(&seed_cfg), None).await?;
    let cfg_text = config_text(
        opts.rate,
        &sim.scim_base_url(),
        &sim.notion_base_url(),
        PROVISION_PRODUCTS,
    );
    let base_env: Vec<(String, String)> = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("AWS_REGION", moto::REGION.into()),
        ("AWS_DEFAULT_REGION", moto::REGION.into()),
        ("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY.into()),
        ("AWS_ENDPOINT_URL", moto.endpoint().to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("RUST_LOG", "warn".into()),
        ("ENROLL_CONFIG", cfg_text),
        ("ENROLL_SCIM_TOKEN", SCIM_TOKEN.into()),
        ("ENROLL_NOTION_TOKEN", NOTION_TOKEN.into()),
        ("ENROLL_TABLE", table.clone()),
        ("ENROLL_PROVISION_QUEUE_URL", provision_queue),
        ("ENROLL_PROVISION_DLQ_URL", provision_dlq),
        ("ENROLL_ALIGN_QUEUE_URL", align_queue),
        ("ENROLL_ALIGN_DLQ_URL", align_dlq),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    let now = Utc::now();
    for name in present {
        let events: Vec<Value> = match name {
            "ingest" => (0..BATCH)
                .map(|i| {
                    function_url_event(&webhook(enroll_platforms::sample(
                        Platform::Stripe,
                        &stripe_purchase(900_000 + i, "course"),
                        STRIPE_SECRET,
                        now,
                    )))
                })
                .collect(),
            "provision" => vec![sqs_event(
                (0..BATCH)
                    .map(|i| serde_json::to_string(&purchase_event(900_000 + i, "course")))
                    .collect::<Result<_, _>>()?,
            )],
            "align" => vec![sqs_event(
                (0..BATCH)
                    .map(|i| {
                        let e = purchase_event(900_000 + i, "course");
                        let buyer = e.buyer.clone().context("bench purchases name a buyer")?;
                        Ok(serde_json::to_string(&AlignRequest {
                            source: e.key,
                            order: e.order,
                            email: buyer.email,
                            name: buyer.name,
                            notion_user_id: NotionUserId::parse(&uuid::Uuid::new_v4().to_string())?,
                            products: Vec::new(),
                        })?)
                    })
                    .collect::<anyhow::Result<_>>()?,
            )],
            _ => vec![json!({
                "version": "0", "id": uuid::Uuid::new_v4().to_string(),
                "detail-type": "Scheduled Event", "source": "aws.events",
                "account": "123456789012", "time": now.to_rfc3339(), "region": "us-east-1",
                "resources": [], "detail": {}
            })],
        };
        let run = run_function(&dir.join(name), &base_env, events).await?;
        report.insert(
            format!("functions.{name}.init_ms"),
            json!(round(run.init_ms, 1)),
        );
        report.insert(
            format!("functions.{name}.peak_rss_mb"),
            json!(round(run.peak_rss_mb, 1)),
        );
        report.insert(
            format!("functions.{name}.invocations"),
            json!(run.invocations),
        );
        report.insert(
            format!("functions.{name}.failed"),
            json!(run.errors + run.parked),
        );
        // The release binary's own stdout: what CloudWatch would turn into metrics.
        report.insert(
            format!("functions.{name}.emf_metrics"),
            json!(run
                .emf_metrics
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(",")),
        );
    }
    Ok(report)
}

fn sqs_event(bodies: Vec<String>) -> Value {
    let records: Vec<Value> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            json!({
                "messageId": format!("00000000-0000-0000-0000-{i:012}"),
                "receiptHandle": format!("handle-{i}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1700000000000",
                    "SenderId": "bench",
                    "ApproximateFirstReceiveTimestamp": "1700000000000"
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn function_url_event(req: &WebhookRequest) -> Value {
    let headers: serde_json::Map<String, Value> = req
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .chain([(
            "host".to_owned(),
            Value::from("bench.lambda-url.us-east-1.on.aws"),
        )])
        .collect();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": req.path,
        "rawQueryString": req.query.clone().unwrap_or_default(),
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "bench",
            "domainName": "bench.lambda-url.us-east-1.on.aws",
            "domainPrefix": "bench",
            "http": {
                "method": req.method,
                "path": req.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "Stripe/1.0"
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000u64
        },
        "body": String::from_utf8_lossy(&req.body),
        "isBase64Encoded": false
    })
}
