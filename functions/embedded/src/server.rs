//! The two local listeners of `enroll dev`, and the files in the data directory that say where
//! they answer.
//!
//! - The webhook listener is the port a tunnel exposes to the platforms. It serves
//!   `/webhooks/{platform}` (the same ingest handler the Lambda function URL runs) and
//!   `/healthz`, nothing else: every other path gets ingest's 404.
//! - The admin listener binds loopback on a port of its own and lets `enroll expire`, `link`,
//!   `status` (and `status --summary`, through `/admin/metrics`) and `dlq` reach a running
//!   `enroll dev`. Every request must carry the data
//!   directory's token (`Authorization: Bearer`), or it gets 401. A web page the seller opens
//!   cannot use it either: a request with an `Origin` header, a cross-site `Sec-Fetch-Site`, or
//!   a `Host` other than loopback (DNS rebinding) gets 403, and no CORS header is ever sent, so
//!   the preflight that an `Authorization` header needs cross-origin always fails.
//! - [`TOKEN_FILE`] holds that token, made at the first start and readable by its owner only;
//!   [`DEV_FILE`] says where the running `enroll dev` answers (written at start, removed at a
//!   clean stop). Operator commands read both (see `ops::target::running_dev`).

use crate::runtime::Runtime;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use ingest::{Ingest, WebhookRequest};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The public listener: webhooks and the health check only.
pub fn router(rt: Arc<Runtime>) -> Router {
    // Room above the ingest limit so ingest, not the framework, answers 413 with its reason.
    let limit = rt.config.ingest.max_body_bytes.saturating_mul(4);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(webhook)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(rt)
}
/// Serves the webhook listener on `addr`; returns the bound address.
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

pub(crate) async fn handle_webhook(
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
