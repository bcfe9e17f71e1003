//! A fake Lambda Runtime API: it hands a function binary its events one by one, as Lambda does,
//! records the answers, and holds the next poll open once the events run out. With it the bench
//! times a release binary from process start to its first request for an event, times each
//! invocation from the event handed out to the answer (what Lambda bills), and reads its peak
//! memory and log volume, without Lambda.

use anyhow::{bail, Context};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the fake Runtime API hands out and records.
struct Invocations {
    events: Mutex<VecDeque<Value>>,
    first_poll: Mutex<Option<Instant>>,
    answered: AtomicUsize,
    errors: AtomicUsize,
    init_error: Mutex<Option<String>>,
    changed: tokio::sync::Notify,
    /// When each outstanding invocation's event was handed out, by request id.
    started: Mutex<HashMap<String, Instant>>,
    /// How long each answered invocation took, from its event handed out to its answer.
    durations: Mutex<Vec<Duration>>,
}

impl Invocations {
    /// Notes the end of invocation `id`.
    fn finished(&self, id: &str) {
        let started = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Some(t) = started {
            self.durations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(t.elapsed());
        }
    }
}

async fn next(State(inv): State<Arc<Invocations>>) -> Response {
    inv.first_poll
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Instant::now);
    inv.changed.notify_waiters();
    let event = inv
        .events
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_front();
    let Some(event) = event else {
        // No more work: hold the poll open, as Lambda does between invocations.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let mut headers = HeaderMap::new();
    let id = uuid::Uuid::new_v4().to_string();
    inv.started
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), Instant::now());
    let deadline = (Utc::now() + chrono::TimeDelta::seconds(60)).timestamp_millis();
    for (k, v) in [
        ("lambda-runtime-aws-request-id", id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:bench".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        if let Ok(v) = HeaderValue::try_from(v) {
            headers.insert(k, v);
        }
    }
    (headers, event.to_string()).into_response()
}

async fn answered(
    State(inv): State<Arc<Invocations>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    inv.finished(&id);
    // An SQS batch response naming failed items is a partial failure, not a success.
    let item_failures = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("batchItemFailures")?.as_array().map(Vec::len))
        .unwrap_or(0);
    inv.errors.fetch_add(item_failures, Ordering::SeqCst);
    inv.answered.fetch_add(1, Ordering::SeqCst);
    inv.changed.notify_waiters();
    StatusCode::ACCEPTED
}

async fn failed(
    State(inv): State<Arc<Invocations>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    inv.finished(&id);
    tracing::warn!(body = %body, "function reported an invocation error");
    inv.errors.fetch_add(1, Ordering::SeqCst);
    inv.answered.fetch_add(1, Ordering::SeqCst);
    inv.changed.notify_waiters();
    StatusCode::ACCEPTED
}

async fn init_failed(State(inv): State<Arc<Invocations>>, body: String) -> StatusCode {
    *inv.init_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
    inv.changed.notify_waiters();
    StatusCode::ACCEPTED
}

/// What one run of a function binary measured.
pub(super) struct FunctionRun {
    /// When the function first asked for an event: its cold start ended.
    pub(super) ready: Instant,
    pub(super) init_ms: f64,
    /// Each invocation's duration, from its event handed out to its answer.
    pub(super) durations: Vec<Duration>,
    /// Bytes the binary wrote to stdout and stderr (CloudWatch Logs ingests them), init included.
    pub(super) log_bytes: usize,
    pub(super) peak_rss_mb: f64,
    pub(super) invocations: usize,
    pub(super) errors: usize,
    /// Metric names the binary printed as Embedded Metric Format in namespace `Enroll`.
    pub(super) emf_metrics: BTreeSet<String>,
    /// Messages the function parked: a run that parks measured the wrong path.
    pub(super) parked: usize,
}

/// The `Enroll` metric names in the EMF lines of a function's log.
fn emf_metric_names(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|v| {
            v["_aws"]["CloudWatchMetrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|d| d["Namespace"] == enroll_core::metrics::NAMESPACE)
        .flat_map(|d| d["Metrics"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m["Name"].as_str().map(str::to_owned))
        .collect()
}

/// Starts `binary` against a fresh fake Runtime API serving `events`, waits until every event
/// is answered, then reads the process's peak RSS.
pub(super) async fn run_function(
    binary: &Path,
    env: &[(String, String)],
    events: Vec<Value>,
) -> anyhow::Result<FunctionRun> {
    let expected = events.len();
    let inv = Arc::new(Invocations {
        events: Mutex::new(events.into()),
        first_poll: Mutex::new(None),
        answered: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        init_error: Mutex::new(None),
        changed: tokio::sync::Notify::new(),
        started: Mutex::new(HashMap::new()),
        durations: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(answered),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(failed))
        .route("/2018-06-01/runtime/init/error", post(init_failed))
        .with_state(inv.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let log_path = std::env::temp_dir().join(format!(
        "enroll-bench-{}-{}.log",
        binary
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("function"),
        addr.port()
    ));
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env(
            "AWS_LAMBDA_FUNCTION_NAME",
            binary.file_name().unwrap_or_default(),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().context("the function exited at once")?;
    let until = tokio::time::Instant::now() + Duration::from_secs(120);
    let outcome = loop {
        let notified = inv.changed.notified();
        if let Some(e) = inv
            .init_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            break Err(anyhow::anyhow!("{} failed to start: {e}", binary.display()));
        }
        if inv.answered.load(Ordering::SeqCst) >= expected {
            break Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(anyhow::anyhow!("{} exited with {status}", binary.display()));
        }
        if tokio::time::timeout_at(until, async {
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        })
        .await
        .is_err()
        {
            break Err(anyhow::anyhow!(
                "{} did not answer within 2 minutes",
                binary.display()
            ));
        }
    };
    let peak = peak_rss_kb(pid);
    let _ = child.kill().await;
    server.abort();
    if let Err(e) = outcome {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{e}; its log ({}) ends:\n{}",
            log_path.display(),
            tail.join("\n")
        );
    }
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let emf_metrics = emf_metric_names(&log_text);
    let parked = log_text
        .lines()
        .filter(|l| l.contains("parked in the dead-letter queue"))
        .count();
    if std::env::var_os("ENROLL_BENCH_KEEP_LOGS").is_none() {
        let _ = std::fs::remove_file(&log_path);
    }
    let ready = (*inv.first_poll.lock().unwrap_or_else(|e| e.into_inner()))
        .context("the function never asked for an event")?;
    let durations = inv
        .durations
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(FunctionRun {
        ready,
        init_ms: ready.duration_since(started).as_secs_f64() * 1e3,
        durations,
        log_bytes: log_text.len(),
        peak_rss_mb: peak? as f64 / 1024.0,
        invocations: inv.answered.load(Ordering::SeqCst),
        errors: inv.errors.load(Ordering::SeqCst),
        emf_metrics,
        parked,
    })
}

/// VmHWM: the most resident memory the process ever had, in kB.
fn peak_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}
