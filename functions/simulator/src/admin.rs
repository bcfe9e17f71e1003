//! `/_sim/`: the unauthenticated control surface an out-of-process simulator is driven with.
//! It is never rate limited, faulted, counted or recorded.

use crate::faults::Faults;
use crate::model::SimState;
use crate::ratelimit::RateLimit;
use crate::sim::Sim;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
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
        .route("/requests", get(requests))
        .with_state(sim)
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

/// The body is a RateLimit, or `null` to lift the limit.
async fn put_rate_limit(State(sim): State<Sim>, body: Bytes) -> Result<StatusCode, Refused> {
    sim.set_rate_limit(parse::<Option<RateLimit>>(&body)?);
    Ok(StatusCode::NO_CONTENT)
}

async fn requests(State(sim): State<Sim>) -> impl IntoResponse {
    Json(sim.traffic().requests())
}
