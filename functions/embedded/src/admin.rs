//! `enroll dev`'s admin listener, and the files in the data directory that say where it
//! answers.
//!
//! The admin listener binds loopback on a port of its own and lets `enroll expire`, `link`,
//! `status` (and `status --summary`, through `/admin/metrics`) and `dlq` reach a running
//! `enroll dev`. Every request must carry the data directory's token (`Authorization:
//! Bearer`), or it gets 401. A web page the seller opens cannot use it either: a request with an
//! `Origin` header, a cross-site `Sec-Fetch-Site`, or a `Host` other than loopback (DNS
//! rebinding) gets 403, and no CORS header is ever sent, so the preflight that an
//! `Authorization` header needs cross-origin always fails.
//!
//! [`TOKEN_FILE`] holds that token, made at the first start and readable by its owner only;
//! [`DEV_FILE`] says where the running `enroll dev` answers (written at start, removed at a
//! clean stop). Operator commands read both through [`crate::admin_client::running_dev`].

use crate::runtime::Runtime;
use anyhow::Context;
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use enroll_core::config::Secret;
use enroll_core::dead_letters::{self, QueueStage, ReplayRequest};
use enroll_core::ids::BuyerEmail;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The admin token's file in the data directory.
pub const TOKEN_FILE: &str = "admin.token";
/// Where the running `enroll dev` answers, in the data directory.
pub const DEV_FILE: &str = "dev.json";

/// The admin listener's routes, behind [`guard`]. `port` is the one it is bound to: only
/// `Host: 127.0.0.1:<port>` or `localhost:<port>` is answered.
pub fn admin_router(rt: Arc<Runtime>, token: Secret, port: u16) -> Router {
    let door = Arc::new(Door { token, port });
    Router::new()
        .route("/admin/healthz", get(|| async { "ok" }))
        .route("/admin/expire", post(expire))
        .route("/admin/link", post(link))
        .route("/admin/status", get(status))
        .route("/admin/dlq", get(dlq_list))
        .route("/admin/dlq/replay", post(dlq_replay))
        .route("/admin/dlq/delete", post(dlq_delete))
        .route("/admin/notion", get(notion))
        .route("/admin/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::from_fn_with_state(door, guard))
        .with_state(rt)
}

/// Serves the admin routes on `addr` (loopback); returns the bound address.
pub async fn serve_admin(
    rt: Arc<Runtime>,
    token: Secret,
    addr: SocketAddr,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "the admin listener binds loopback only"
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = admin_router(rt, token, bound.port());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin listener stopped");
        }
    });
    Ok((bound, task))
}

/// What the admin listener lets in.
struct Door {
    token: Secret,
    port: u16,
}

/// Refuses browsers (403) before it looks at the token (401), so a page learns nothing from
/// guessing. Every route needs the `Authorization` header, which no cross-origin page can send
/// without a preflight that this listener never approves: state changes cannot be forged.
async fn guard(State(door): State<Arc<Door>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if headers.contains_key(header::ORIGIN) {
        return refused("requests from a web page (with an Origin header) are refused");
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.to_str(), Ok("none" | "same-origin")) {
            return refused("cross-site requests are refused");
        }
    }
    let host_ok = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| {
            h == format!("127.0.0.1:{}", door.port) || h == format!("localhost:{}", door.port)
        });
    if !host_ok {
        return refused("the admin listener answers to 127.0.0.1 or localhost only");
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match given {
        Some(t) if same_secret(t.as_bytes(), door.token.expose().as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "the admin token is missing or wrong: enroll reads it from the data directory's admin.token",
        )
            .into_response(),
    }
}

fn refused(why: &'static str) -> Response {
    (StatusCode::FORBIDDEN, why).into_response()
}

/// Compares in time that depends on the length only, not on where the first difference is.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    let diff = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// The data directory's admin token: read when it exists, otherwise made (32 random bytes,
/// hex) in a file only its owner can read, from the moment it exists.
pub fn admin_token(data_dir: &Path) -> anyhow::Result<Secret> {
    let path = data_dir.join(TOKEN_FILE);
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    match owner_only().create_new(true).open(&path) {
        Ok(mut file) => {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            file.write_all(token.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(Secret::new(token))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_token(&path),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// The token a running `enroll dev` wants, read from its data directory.
pub fn read_token(path: &Path) -> anyhow::Result<Secret> {
    warn_if_shared(path);
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(
        token.len() >= 32,
        "{} holds no usable token: delete it and start `enroll dev` to make a new one",
        path.display()
    );
    Ok(Secret::new(token))
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "others can read the admin token: run `chmod 600` on it, or delete it so the next `enroll dev` makes a new one"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &Path) {}

/// Options for a file that only its owner may read (mode 0600), set at creation.
fn owner_only() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Where a running `enroll dev` answers: `dev.json` in its data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevRecord {
    pub pid: u32,
    /// The webhook listener, e.g. `http://127.0.0.1:8787`.
    pub webhook_url: String,
    /// The admin listener, e.g. `http://127.0.0.1:40123`.
    pub admin_url: String,
    pub started_at: DateTime<Utc>,
}

fn dev_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DEV_FILE)
}

/// Writes `dev.json` (owner-only) whole: a reader sees the old file or the new one.
pub fn write_dev_record(data_dir: &Path, record: &DevRecord) -> anyhow::Result<()> {
    let path = dev_path(data_dir);
    let tmp = path.with_extension(format!("json.{}.tmp", record.pid));
    let _ = std::fs::remove_file(&tmp);
    let mut file = owner_only()
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(&serde_json::to_vec_pretty(record)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The recorded address of the `enroll dev` on `data_dir`, if one was recorded; it may be stale
/// (a killed process leaves it behind).
pub fn read_dev_record(data_dir: &Path) -> Option<DevRecord> {
    let bytes = std::fs::read(dev_path(data_dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes `dev.json` at a clean stop, unless another process has written its own since.
pub fn remove_dev_record(data_dir: &Path, pid: u32) {
    if read_dev_record(data_dir).is_some_and(|r| r.pid == pid) {
        let _ = std::fs::remove_file(dev_path(data_dir));
    }
}

#[derive(Deserialize)]
struct ExpireQuery {
    now: Option<DateTime<Utc>>,
}

async fn expire(State(rt): State<Arc<Runtime>>, Query(q): Query<ExpireQuery>) -> Response {
    match rt.expire(q.now.unwrap_or_else(Utc::now)).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The query `/admin/link` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkQuery {
    pub alias: String,
    pub buyer: String,
    #[serde(default)]
    pub merge: bool,
}

/// The two addresses of a link, checked.
pub fn parse_emails(alias: &str, existing: &str) -> anyhow::Result<(BuyerEmail, BuyerEmail)> {
    let parse = |what: &str, e: &str| {
        BuyerEmail::parse(e)
            .map_err(|err| anyhow::anyhow!("{what} `{e}` is not an email address: {err}"))
    };
    Ok((
        parse("the second email", alias)?,
        parse("the existing buyer", existing)?,
    ))
}

async fn link(State(rt): State<Arc<Runtime>>, Query(q): Query<LinkQuery>) -> Response {
    let (alias, existing) = match parse_emails(&q.alias, &q.buyer) {
        Ok(pair) => pair,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match rt
        .provisioner
        .link(&alias, &existing, q.merge, Utc::now())
        .await
    {
        Ok(report) => Json(report).into_response(),
        Err(f) => (StatusCode::BAD_REQUEST, f.reason).into_response(),
    }
}

#[derive(Deserialize)]
struct StatusQuery {
    q: String,
}

async fn status(State(rt): State<Arc<Runtime>>, Query(q): Query<StatusQuery>) -> Response {
    match crate::status::lookup(&rt, &q.q, Utc::now()).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct DlqQuery {
    queue: Option<QueueStage>,
}

/// `enroll dlq` comes here while `enroll dev` owns the journal.
async fn dlq_list(State(rt): State<Arc<Runtime>>, Query(q): Query<DlqQuery>) -> Response {
    match dead_letters::list_all(&rt.dead_letters(), q.queue, Utc::now()).await {
        Ok(msgs) => Json(msgs).into_response(),
        Err(f) => (StatusCode::INTERNAL_SERVER_ERROR, f.to_string()).into_response(),
    }
}

async fn dlq_replay(State(rt): State<Arc<Runtime>>, Json(req): Json<ReplayRequest>) -> Response {
    let pace = match crate::pace(req.rate) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let history: &dyn enroll_core::ports::HistoryLog = &rt.store;
    let replayed = dead_letters::replay_all(
        &rt.dead_letters(),
        &req,
        pace.as_ref()
            .map(|p| p as &dyn enroll_core::ports::RateBudget),
        Some(history),
        Utc::now(),
    )
    .await;
    match replayed {
        Ok(reports) => Json(reports).into_response(),
        Err(f) => (StatusCode::INTERNAL_SERVER_ERROR, f.to_string()).into_response(),
    }
}

async fn dlq_delete(State(rt): State<Arc<Runtime>>, Json(req): Json<ReplayRequest>) -> Response {
    let history: &dyn enroll_core::ports::HistoryLog = &rt.store;
    match dead_letters::delete_all(&rt.dead_letters(), &req, Some(history), Utc::now()).await {
        Ok(reports) => Json(reports).into_response(),
        Err(f) => (StatusCode::INTERNAL_SERVER_ERROR, f.to_string()).into_response(),
    }
}

/// The pipeline's counters since this process started, for `enroll status --summary`.
async fn metrics() -> Response {
    Json(enroll_core::metrics::this_process()).into_response()
}

/// Where the simulated workspace answers, for `backfill plan` and `audit` while `enroll dev`
/// runs; 404 when a real workspace is configured. The simulator's token is a fixed placeholder.
async fn notion(State(rt): State<Arc<Runtime>>) -> Response {
    if rt.simulator.is_none() {
        return (StatusCode::NOT_FOUND, "a real workspace is configured").into_response();
    }
    Json(crate::admin_client::SimulatedScim {
        scim_base_url: rt.config.scim.base_url.clone(),
        scim_token: rt.config.scim.token.expose().to_owned(),
        notion_base_url: rt.config.notion.base_url.clone(),
        notion_token: rt.config.notion.token.expose().to_owned(),
    })
    .into_response()
}
