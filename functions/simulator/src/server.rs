//! The HTTP server: hyper's HTTP/1 connection loop around the axum routers, with a front
//! door that records traffic, injects faults and enforces the rate limits before routing.
//!
//! hyper (not `axum::serve`) drives connections because a service that returns `Err` makes
//! hyper close the connection without writing a response: that is how `FaultAction::Drop`
//! reaches the client as a genuine connection failure.

use crate::faults::FaultAction;
use crate::sim::{Budget, Sim};
use crate::traffic::RecordedRequest;
use crate::{admin, notion, scim};
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Larger than any body Notion or a SCIM client sends; beyond it the request is refused.
const READ_LIMIT: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("fault injected: connection dropped")]
struct Dropped;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Scim,
    Notion,
    Admin,
    Other,
}

impl Api {
    fn of(path: &str) -> Self {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if under("/scim/v2") {
            Self::Scim
        } else if under("/v1") {
            Self::Notion
        } else if under("/_sim") {
            Self::Admin
        } else {
            Self::Other
        }
    }

    fn error(self, status: StatusCode, message: &str) -> Response<Body> {
        match self {
            Self::Scim => scim::error_response(status, message),
            _ => notion::error_response(status, message),
        }
    }
}

fn app(sim: Sim) -> Router {
    Router::new()
        .nest("/scim/v2", scim::router(sim.clone()))
        .nest("/v1", notion::router(sim.clone()))
        .nest("/_sim", admin::router(sim))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
}

pub(crate) async fn run(listener: TcpListener, sim: Sim, mut stop: oneshot::Receiver<()>) {
    let app = app(sim.clone());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors and the like: back off rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (sim, app) = (sim.clone(), app.clone());
                let service = hyper::service::service_fn(move |req| {
                    handle(sim.clone(), app.clone(), req)
                });
                connections.spawn(async move {
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "simulator connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

fn recorded(parts: &axum::http::request::Parts, body: &[u8]) -> RecordedRequest {
    let headers: BTreeMap<String, String> = [header::CONTENT_TYPE.as_str(), "notion-version"]
        .into_iter()
        .filter_map(|name| {
            let value = parts.headers.get(name)?;
            Some((
                name.to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ))
        })
        .collect();
    RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

async fn handle(sim: Sim, app: Router, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(Body::new(body), READ_LIMIT).await else {
        return Ok((StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response());
    };
    let api = Api::of(parts.uri.path());
    if api != Api::Admin {
        sim.traffic().record(recorded(&parts, &bytes));
    }
    if matches!(api, Api::Scim | Api::Notion) {
        // Each request waits on its own task, so latency delays requests but never serialises
        // them; the token is taken once the request "arrives", as a server far away takes it.
        if let Some(latency) = sim.latency() {
            tokio::time::sleep(latency).await;
        }
        let fault = sim.faults().decide(parts.method.as_str(), parts.uri.path());
        match fault {
            Some(FaultAction::Drop) => return Err(Dropped),
            Some(FaultAction::DropAfterApply) => {
                let request = Request::from_parts(parts, Body::from(bytes));
                let _applied = app.oneshot(request).await;
                return Err(Dropped);
            }
            Some(FaultAction::Status {
                code,
                retry_after_secs,
            }) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut response = api.error(status, "injected fault");
                if let Some(secs) = retry_after_secs {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, secs.into());
                }
                return Ok(response);
            }
            Some(FaultAction::Delay { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => {}
        }
        let budget = if api == Api::Scim {
            Budget::Scim
        } else {
            Budget::Notion
        };
        if let Err(secs) = sim.take_token(budget) {
            let mut response = api.error(
                StatusCode::TOO_MANY_REQUESTS,
                "You have been rate limited. Please try again in a few minutes.",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return Ok(response);
        }
    }
    let request = Request::from_parts(parts, Body::from(bytes));
    Ok(app
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {}))
}
