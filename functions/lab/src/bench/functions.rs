//! The function binaries: each release binary under the fake Lambda Runtime API
//! ([`super::runtime_api`]), with DynamoDB, SQS and Secrets Manager from moto behind a counting
//! proxy ([`super::aws_meter`]), timed to its first request for an event, timed per invocation,
//! and measured for its peak memory, log volume and AWS requests once it has handled ten events.
//!
//! The binaries are this workspace's release builds, built first when missing or older than
//! their sources ([`BUILD`]), or the ones in `--bin-dir` as they are.

use super::aws_meter::{AwsMeter, Tally};
use super::cost::memory_mb;
use super::ingest::{stripe_purchase, webhook};
use super::provision::purchase_event;
use super::report::round;
use super::runtime_api::{run_function, FunctionRun};
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
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// What builds the function binaries, from the workspace root.
pub(super) const BUILD: &str =
    "cargo build --release -p ingest -p provision -p align -p expire --bins";

/// The enroll workspace: the one this binary was compiled in, else the current directory.
fn workspace() -> Option<PathBuf> {
    [Some(crate::workspace_root()), std::env::current_dir().ok()]
        .into_iter()
        .flatten()
        .find(|d| d.join("functions/ingest/Cargo.toml").is_file())
}

fn release_dir(root: Option<&Path>) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.map_or_else(|| PathBuf::from("target"), |r| r.join("target")))
        .join("release")
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The newest modification under `dir` (sources and manifests; `target` skipped).
fn newest(dir: &Path) -> Option<SystemTime> {
    let mut latest = modified(dir);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        let t = if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            newest(&p)
        } else {
            modified(&p)
        };
        latest = latest.max(t);
    }
    latest
}

/// Whether some binary is missing or older than a source it is built from.
fn stale(root: &Path, dir: &Path) -> bool {
    let oldest_binary = FUNCTIONS
        .iter()
        .map(|f| modified(&dir.join(f)))
        .min()
        .flatten();
    let Some(oldest_binary) = oldest_binary else {
        return true;
    };
    let sources = [
        "core",
        "platforms",
        "notion",
        "aws",
        "ingest",
        "provision",
        "align",
        "expire",
    ]
    .iter()
    .map(|c| newest(&root.join("functions").join(c)))
    .chain([
        modified(&root.join("Cargo.lock")),
        modified(&root.join("Cargo.toml")),
    ])
    .max()
    .flatten();
    sources.is_some_and(|s| s > oldest_binary)
}

/// Builds the binaries in `root` ([`BUILD`]); cargo's progress goes to stderr.
fn build(root: &Path) -> Result<f64, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("enroll bench: building the function binaries: {BUILD}");
    let started = Instant::now();
    let status = std::process::Command::new(&cargo)
        .args(BUILD.split(' ').skip(1))
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("could not run cargo ({e})"))?;
    if status.success() {
        Ok(started.elapsed().as_secs_f64())
    } else {
        Err(format!("the build failed ({status})"))
    }
}

/// Where the binaries are, and how they came to be there (`functions.build`).
async fn binaries(opts: &BenchOptions) -> anyhow::Result<(PathBuf, String)> {
    if let Some(dir) = &opts.bin_dir {
        return Ok((dir.clone(), format!("as found in {}", dir.display())));
    }
    let root = workspace();
    let dir = release_dir(root.as_deref());
    let Some(root) = root else {
        return Ok((dir, "no enroll workspace found to build in".into()));
    };
    let (r, d) = (root.clone(), dir.clone());
    if !tokio::task::spawn_blocking(move || stale(&r, &d)).await? {
        return Ok((dir, "up to date".into()));
    }
    let r = root.clone();
    let how = match tokio::task::spawn_blocking(move || build(&r)).await? {
        Ok(s) => format!("built ({s:.0} s)"),
        Err(why) => {
            let why = format!("{why}: run `{BUILD}` in {}", root.display());
            eprintln!("enroll bench: {why}");
            why
        }
    };
    Ok((dir, how))
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
    let (dir, how) = binaries(opts).await?;
    let mut report = Report::new();
    report.insert("functions.build".into(), json!(how));
    let present: Vec<&str> = FUNCTIONS
        .into_iter()
        .filter(|f| dir.join(f).is_file())
        .collect();
    for f in FUNCTIONS.iter().filter(|f| !present.contains(f)) {
        let missing = format!("no {}: run `{BUILD}`", dir.join(f).display());
        eprintln!("enroll bench: {missing}");
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

    // The functions reach AWS through the counting proxy; the bench's own set-up above did not.
    let meter = AwsMeter::start(moto.endpoint()).await?;
    let secret = create_secret(moto.endpoint(), &format!("enroll-bench-{suffix}")).await;

    // No rate limit here: this part measures the functions, not the budget.
    let seed_cfg = config(opts.rate, None, PROVISION_PRODUCTS)?;
    let sim = simulator(seed::from_config(&seed_cfg), None).await?;
    let cfg_text = config_text(
        opts.rate,
        &sim.scim_base_url(),
        &sim.notion_base_url(),
        PROVISION_PRODUCTS,
    );
    let mut base_env: Vec<(String, String)> = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("AWS_REGION", moto::REGION.into()),
        ("AWS_DEFAULT_REGION", moto::REGION.into()),
        ("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY.into()),
        ("AWS_ENDPOINT_URL", meter.url().to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        // The stack's default LogLevel: the log volume CloudWatch would ingest.
        ("RUST_LOG", "info".into()),
        ("ENROLL_CONFIG", cfg_text),
        ("ENROLL_TABLE", table.clone()),
        ("ENROLL_PROVISION_QUEUE_URL", provision_queue),
        ("ENROLL_PROVISION_DLQ_URL", provision_dlq),
        ("ENROLL_ALIGN_QUEUE_URL", align_queue),
        ("ENROLL_ALIGN_DLQ_URL", align_dlq),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // The tokens come from Secrets Manager at cold start, as on AWS; from the environment only
    // when moto would not take the secret.
    match &secret {
        Ok(arn) => base_env.push(("ENROLL_SECRET_ID".into(), arn.clone())),
        Err(e) => {
            tracing::warn!(error = %e, "no secret in moto: the functions read their tokens from the environment");
            base_env.push(("ENROLL_SCIM_TOKEN".into(), SCIM_TOKEN.into()));
            base_env.push(("ENROLL_NOTION_TOKEN".into(), NOTION_TOKEN.into()));
        }
    }
    report.insert(
        "functions.secret_from".into(),
        json!(if secret.is_ok() {
            "secrets manager"
        } else {
            "environment"
        }),
    );

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
        measure(&mut report, &meter, &dir, name, name, &base_env, events).await?;
    }

    // The same ingest and provision work for a tenant of a stack that serves tenants only:
    // its configuration from the table and its own secret, loaded on the first event of the
    // instance and kept (`functions.tenant_<name>.*`).
    let prefix = format!("enroll-bench-{suffix}/tenant/");
    let tenant = enroll_core::tenant::TenantId::parse("bench")?;
    let registry = enroll_aws::tenants::TenantRegistry::new(&sdk, &table, &prefix);
    let tenant_secret = create_secret(moto.endpoint(), &registry.secret_id(&tenant)).await;
    if tenant_secret.is_ok() {
        let item = enroll_aws::tenants::TenantRecord {
            tenant: tenant.clone(),
            config: config_text(
                opts.rate,
                &sim.scim_base_url(),
                &sim.notion_base_url(),
                PROVISION_PRODUCTS,
            ),
            added_at: now,
            updated_at: now,
        };
        registry
            .put(&item)
            .await
            .map_err(|f| anyhow::anyhow!(f.reason))?;
        let env: Vec<(String, String)> = base_env
            .iter()
            .filter(|(k, _)| k != "ENROLL_SECRET_ID")
            .map(|(k, v)| match k.as_str() {
                "ENROLL_CONFIG" => (k.clone(), String::new()),
                _ => (k.clone(), v.clone()),
            })
            .chain([("ENROLL_TENANT_SECRET_PREFIX".to_owned(), prefix.clone())])
            .collect();
        for name in ["ingest", "provision"]
            .into_iter()
            .filter(|n| dir.join(n).is_file())
        {
            let events = if name == "ingest" {
                (0..BATCH)
                    .map(|i| {
                        let mut req = webhook(enroll_platforms::sample(
                            Platform::Stripe,
                            &stripe_purchase(950_000 + i, "course"),
                            STRIPE_SECRET,
                            now,
                        ));
                        req.path = format!("{}{}", tenant.path_prefix(), req.path);
                        function_url_event(&req)
                    })
                    .collect()
            } else {
                vec![sqs_event(
                    (0..BATCH)
                        .map(|i| {
                            serde_json::to_string(&purchase_event(950_000 + i, "course"))
                                .map(|b| enroll_core::tenant::stamp_message(&b, &tenant))
                        })
                        .collect::<Result<_, _>>()?,
                )]
            };
            let key = format!("tenant_{name}");
            measure(&mut report, &meter, &dir, name, &key, &env, events).await?;
        }
    }
    Ok(report)
}

/// Runs the function binary `name` on `events` under the fake Runtime API with `base_env`, and
/// records what it used as `functions.<key>.*`.
async fn measure(
    report: &mut Report,
    meter: &AwsMeter,
    dir: &Path,
    name: &str,
    key: &str,
    base_env: &[(String, String)],
    events: Vec<Value>,
) -> anyhow::Result<()> {
    let records = records(&events);
    let memory = memory_mb(name);
    let mut env = base_env.to_vec();
    env.push(("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), memory.to_string()));
    meter.take();
    let run = run_function(&dir.join(name), &env, events).await?;
    let calls = meter.take();
    let (init, invoked): (Vec<_>, Vec<_>) = calls.into_iter().partition(|c| c.at < run.ready);
    usage(
        report,
        key,
        &run,
        memory,
        records,
        &Tally::of(&init),
        &Tally::of(&invoked),
    );
    report.insert(
        format!("functions.{key}.init_ms"),
        json!(round(run.init_ms, 1)),
    );
    report.insert(
        format!("functions.{key}.peak_rss_mb"),
        json!(round(run.peak_rss_mb, 1)),
    );
    report.insert(
        format!("functions.{key}.invocations"),
        json!(run.invocations),
    );
    report.insert(
        format!("functions.{key}.failed"),
        json!(run.errors + run.parked),
    );
    // The release binary's own stdout: what CloudWatch would turn into metrics.
    report.insert(
        format!("functions.{key}.emf_metrics"),
        json!(run
            .emf_metrics
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")),
    );
    Ok(())
}

/// Records (webhooks, messages) per invocation: an SQS batch counts its records.
fn records(events: &[Value]) -> f64 {
    let n: usize = events
        .iter()
        .map(|e| e["Records"].as_array().map_or(1, Vec::len))
        .sum();
    n as f64 / events.len().max(1) as f64
}

/// What a run used that AWS bills: durations, memory, log bytes and requests, per invocation
/// after the cold start, and the cold start's own requests.
fn usage(
    report: &mut Report,
    name: &str,
    run: &FunctionRun,
    memory: u32,
    records: f64,
    init: &Tally,
    invoked: &Tally,
) {
    let n = run.invocations.max(1) as f64;
    let ms: Vec<f64> = run
        .durations
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    // Lambda bills each invocation's duration rounded up to the millisecond.
    let billed = ms.iter().map(|m| m.ceil()).sum::<f64>() / ms.len().max(1) as f64;
    let mut put = |k: &str, v: Value| {
        report.insert(format!("functions.{name}.{k}"), v);
    };
    put("memory_mb", json!(memory));
    put("records_per_invocation", json!(round(records, 2)));
    put("duration_ms_mean", json!(round(mean, 2)));
    put("billed_ms_mean", json!(round(billed, 2)));
    put(
        "log_bytes_per_invocation",
        json!(round(run.log_bytes as f64 / n, 0)),
    );
    for service in ["sqs", "dynamodb", "secretsmanager"] {
        put(
            &format!("init_{service}_requests"),
            json!(init.requests(service)),
        );
        put(
            &format!("{service}_requests_per_invocation"),
            json!(round(invoked.requests(service) as f64 / n, 3)),
        );
    }
    let put_metric = |t: &Tally| {
        t.calls
            .get("monitoring.PutMetricData")
            .copied()
            .unwrap_or(0)
    };
    put(
        "put_metric_data_per_invocation",
        json!(round(
            (put_metric(init) + put_metric(invoked)) as f64 / n,
            3
        )),
    );
    put(
        "dynamodb_read_units_per_invocation",
        json!(round(invoked.read_units / n, 3)),
    );
    put(
        "dynamodb_write_units_per_invocation",
        json!(round(invoked.write_units / n, 3)),
    );
    put(
        "rate_budget_writes_per_invocation",
        json!(round(invoked.rate_budget_writes as f64 / n, 3)),
    );
    // The part of init_ms spent waiting on AWS (moto here): GetSecretValue, GetQueueAttributes.
    put(
        "init_aws_ms",
        json!(round(init.took.as_secs_f64() * 1e3, 1)),
    );
    put(
        "aws_calls",
        json!(format!(
            "cold start: {}; {} invocations: {}",
            init.summary(),
            run.invocations,
            invoked.summary()
        )),
    );
}

/// The bench's secret document in moto's Secrets Manager, by a hand-made JSON-protocol request
/// (moto checks no signature, only the service named in the credential scope); its ARN.
async fn create_secret(moto: &str, name: &str) -> anyhow::Result<String> {
    let doc = json!({
        "scim_token": SCIM_TOKEN,
        "notion_token": NOTION_TOKEN,
        "platforms": { "stripe": [STRIPE_SECRET] },
    });
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/", moto.trim_end_matches('/')))
        .header("x-amz-target", "secretsmanager.CreateSecret")
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/20260101/{}/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
                moto::ACCESS_KEY_ID,
                moto::REGION
            ),
        )
        .body(
            json!({ "Name": name, "SecretString": doc.to_string() })
                .to_string(),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    answer["ARN"]
        .as_str()
        .map(str::to_owned)
        .context("moto's CreateSecret answer has no ARN")
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
