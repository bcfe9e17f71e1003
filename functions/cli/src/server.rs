//! The local webhook endpoint: every `/webhooks/{platform}` request goes to the same ingest
//! handler the Lambda function URL runs. Admin routes let `enroll expire`, `enroll link`,
//! `enroll status` and `enroll dlq` reach a running `enroll dev`; the server binds loopback only.

use crate::runtime::Runtime;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ingest::{Ingest, WebhookRequest};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

pub fn router(rt: Arc<Runtime>) -> Router {
    // Room above the ingest limit so ingest, not the framework, answers 413 with its reason.
    let limit = rt.config.ingest.max_body_bytes.saturating_mul(4);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/admin/expire", post(expire))
        .route("/admin/link", post(link))
        .route("/admin/status", get(status))
        .route("/admin/dlq", get(dlq_list))
        .route("/admin/dlq/replay", post(dlq_replay))
        .route("/admin/notion", get(notion))
        .fallback(webhook)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(rt)
}

/// Serves on `addr` (loopback); returns the bound address.
pub async fn serve(
    rt: Arc<Runtime>,
    addr: SocketAddr,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(rt);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "webhook server stopped");
        }
    });
    Ok((bound, task))
}

/// Only the webhook endpoint, in front of any [`Ingest`]: for tests that need ingest wired to
/// a queue of their choosing (one that fails, say).
pub async fn serve_ingest(
    ingest: Arc<Ingest>,
    addr: SocketAddr,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let limit = ingest.config.ingest.max_body_bytes.saturating_mul(4);
    let app = Router::new()
        .fallback(
            |State(ingest): State<Arc<Ingest>>, method, uri, headers, body| async move {
                handle_webhook(&ingest, method, uri, headers, body).await
            },
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(ingest);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "webhook server stopped");
        }
    });
    Ok((bound, task))
}

async fn webhook(
    State(rt): State<Arc<Runtime>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle_webhook(&rt.ingest, method, uri, headers, body).await
}

async fn handle_webhook(
    ingest: &Ingest,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = WebhookRequest {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    };
    let resp = ingest.handle(&req, Utc::now()).await;
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", "application/json")], resp.body).into_response()
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

async fn link(State(rt): State<Arc<Runtime>>, Query(q): Query<crate::link::LinkQuery>) -> Response {
    let linked = match crate::link::parse_emails(&q.alias, &q.buyer) {
        Ok((alias, existing)) => {
            crate::link::link(&rt.provisioner, &alias, &existing, q.merge).await
        }
        Err(e) => Err(e),
    };
    match linked {
        Ok(report) => Json(report).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
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
    queue: crate::ops::target::Stage,
}

/// The runtime's own queues: `enroll dlq` goes through here while `enroll dev` owns the journal.
fn queue_pair(rt: &Runtime, stage: crate::ops::target::Stage) -> crate::ops::target::QueuePair {
    use crate::ops::target::Stage;
    let (source, dlq) = match stage {
        Stage::Provision => (rt.provision_queue.clone(), rt.provision_dlq().clone()),
        Stage::Align => (rt.align_queue.clone(), rt.align_dlq().clone()),
    };
    crate::ops::target::QueuePair::Embedded { stage, source, dlq }
}

async fn dlq_list(State(rt): State<Arc<Runtime>>, Query(q): Query<DlqQuery>) -> Response {
    match crate::ops::dlq::list(&queue_pair(&rt, q.queue)).await {
        Ok(msgs) => Json(msgs).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
    }
}

async fn dlq_replay(
    State(rt): State<Arc<Runtime>>,
    Json(req): Json<crate::ops::dlq::ReplayRequest>,
) -> Response {
    let pairs: Vec<_> = crate::ops::target::Stage::ALL
        .iter()
        .map(|s| queue_pair(&rt, *s))
        .collect();
    match crate::ops::replay_all(&pairs, &req).await {
        Ok(reports) => Json(reports).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
    }
}

/// Where the simulated workspace answers, for `backfill plan` and `audit` while `enroll dev`
/// runs; 404 when a real workspace is configured. The simulator's token is a fixed placeholder.
async fn notion(State(rt): State<Arc<Runtime>>) -> Response {
    if rt.simulator.is_none() {
        return (StatusCode::NOT_FOUND, "a real workspace is configured").into_response();
    }
    Json(crate::ops::target::SimulatedScim {
        scim_base_url: rt.config.scim.base_url.clone(),
        scim_token: rt.config.scim.token.expose().to_owned(),
    })
    .into_response()
}
