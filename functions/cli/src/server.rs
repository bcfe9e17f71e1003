//! The local webhook endpoint: every `/webhooks/{platform}` request goes to the same ingest
//! handler the Lambda function URL runs. Two admin routes let `enroll expire` and
//! `enroll status` reach a running `enroll dev`; the server binds loopback only.

use crate::runtime::Runtime;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ingest::WebhookRequest;
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
        .route("/admin/status", get(status))
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

async fn webhook(
    State(rt): State<Arc<Runtime>>,
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
    let resp = rt.ingest.handle(&req, Utc::now()).await;
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
