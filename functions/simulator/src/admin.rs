//! `/_sim/`: the control surface an out-of-process simulator is driven with. It shows the
//! workspace (buyer data) and changes it, so with [`crate::SimConfig::admin_token`] set every
//! route wants that bearer token (401 otherwise); without one it is open, for in-process tests.
//! It is never rate limited, faulted, counted or recorded.

use crate::faults::Faults;
use crate::model::SimState;
use crate::ratelimit::RateLimit;
use crate::sim::{Budget, Sim};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

pub(crate) fn router(sim: Sim) -> Router {
    Router::new()
        .route("/state", get(get_state).put(put_state))
        .route("/counters", get(counters))
        .route("/reset-counters", post(reset_counters))
        .route("/faults", put(put_faults))
        .route("/rate-limit", put(put_rate_limit))
        .route("/rate-limit/scim", put(put_scim_rate_limit))
        .route("/rate-limit/notion", put(put_notion_rate_limit))
        .route("/max-members-per-patch", put(put_max_members_per_patch))
        .route("/latency-ms", put(put_latency_ms))
        .route("/requests", get(requests))
        .layer(from_fn_with_state(sim.clone(), authenticate))
        .with_state(sim)
}

async fn authenticate(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    let allowed = sim
        .admin_token
        .as_deref()
        .is_none_or(|token| crate::sim::bearer_matches(request.headers(), token));
    if allowed {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "missing or invalid admin bearer token\n",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Parses without insisting on a JSON content type, so `curl -d @file` works.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refused> {
    serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}\n")))
}

type Refused = (StatusCode, String);

async fn get_state(State(sim): State<Sim>) -> Json<SimState> {
    Json(sim.state().clone())
}

async fn put_state(State(sim): State<Sim>, body: Bytes) -> Result<StatusCode, Refused> {
    *sim.state() = parse(&body)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn counters(State(sim): State<Sim>) -> impl IntoResponse {
    Json(sim.traffic().counters())
}

async fn reset_counters(State(sim): State<Sim>) -> StatusCode {
    sim.traffic().reset();
    StatusCode::NO_CONTENT
}

async fn put_faults(State(sim): State<Sim>, body: Bytes) -> Result<StatusCode, Refused> {
    sim.set_faults(parse::<Faults>(&body)?);
    Ok(StatusCode::NO_CONTENT)
}

/// The body is a RateLimit, or `null` to lift the limit; it applies to SCIM and the public
/// API alike, each with its own bucket.
async fn put_rate_limit(State(sim): State<Sim>, body: Bytes) -> Result<StatusCode, Refused> {
    let limit = parse::<Option<RateLimit>>(&body)?;
    sim.set_rate_limit(Budget::Scim, limit);
    sim.set_rate_limit(Budget::Notion, limit);
    Ok(StatusCode::NO_CONTENT)
}

async fn put_scim_rate_limit(State(sim): State<Sim>, body: Bytes) -> Result<StatusCode, Refused> {
    sim.set_rate_limit(Budget::Scim, parse::<Option<RateLimit>>(&body)?);
    Ok(StatusCode::NO_CONTENT)
}

async fn put_notion_rate_limit(State(sim): State<Sim>, body: Bytes) -> Result<StatusCode, Refused> {
    sim.set_rate_limit(Budget::Notion, parse::<Option<RateLimit>>(&body)?);
    Ok(StatusCode::NO_CONTENT)
}

/// The body is a number, or `null` for no cap.
async fn put_max_members_per_patch(
    State(sim): State<Sim>,
    body: Bytes,
) -> Result<StatusCode, Refused> {
    sim.set_max_members_per_patch(parse::<Option<usize>>(&body)?);
    Ok(StatusCode::NO_CONTENT)
}

/// The body is milliseconds every SCIM and public API request waits, or `null` for none.
async fn put_latency_ms(State(sim): State<Sim>, body: Bytes) -> Result<StatusCode, Refused> {
    let ms = parse::<Option<u64>>(&body)?;
    sim.set_latency(ms.map(std::time::Duration::from_millis));
    Ok(StatusCode::NO_CONTENT)
}

async fn requests(State(sim): State<Sim>) -> impl IntoResponse {
    Json(sim.traffic().requests())
}
