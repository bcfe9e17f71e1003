//! Notion's public API under `/v1` (version 2025-09-03 shapes): routing, bearer auth, the
//! required `Notion-Version` header, and the error body every endpoint shares.

mod databases;
mod pages;
mod query;

use crate::sim::Sim;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::convert::Infallible;

/// Notion's limit on a request body.
const MAX_BODY: usize = 500 * 1024;

pub(crate) fn router(sim: Sim) -> Router {
    Router::new()
        .route("/databases/{id}", get(databases::database))
        .route("/data_sources/{id}", get(databases::data_source))
        .route("/data_sources/{id}/query", post(query::query))
        .route("/pages", post(pages::create))
        .route("/pages/{id}", get(pages::fetch).patch(pages::update))
        .fallback(invalid_url)
        .method_not_allowed_fallback(invalid_url)
        .layer(from_fn_with_state(sim.clone(), authenticate))
        .with_state(sim)
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NotionError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl NotionError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_error", message)
    }

    pub(crate) fn not_found(kind: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "object_not_found",
            format!(
                "Could not find {kind} with ID: {id}. Make sure the relevant pages and databases \
                 are shared with your integration."
            ),
        )
    }
}

impl IntoResponse for NotionError {
    fn into_response(self) -> Response {
        let body = json!({
            "object": "error",
            "status": self.status.as_u16(),
            "code": self.code,
            "message": self.message,
            "request_id": uuid::Uuid::new_v4().to_string(),
        });
        notion_json(self.status, &body)
    }
}

/// The code Notion documents for a status, for injected faults.
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "validation_error",
        401 => "unauthorized",
        403 => "restricted_resource",
        404 => "object_not_found",
        409 => "conflict_error",
        429 => "rate_limited",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        529 => "service_overload",
        _ => "internal_server_error",
    }
}

/// An error response for a request the simulator refused before routing (fault, rate limit).
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    NotionError::new(status, code_for(status), message).into_response()
}

pub(crate) fn notion_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

async fn authenticate(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    if !crate::sim::bearer_matches(request.headers(), &sim.notion_token) {
        return NotionError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "API token is invalid.",
        )
        .into_response();
    }
    if !request.headers().contains_key("notion-version") {
        return NotionError::new(
            StatusCode::BAD_REQUEST,
            "missing_version",
            "Notion-Version header failed validation: Notion-Version header should be defined, \
             instead was `undefined`.",
        )
        .into_response();
    }
    next.run(request).await
}

async fn invalid_url() -> NotionError {
    NotionError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request_url",
        "Invalid request URL.",
    )
}

/// The `Notion-Version` a request pinned. From `2026-03-11` pages report only `in_trash`;
/// earlier versions also report the older `archived`.
pub(crate) struct Version(String);

impl Version {
    pub(crate) fn reports_archived(&self) -> bool {
        self.0.as_str() < "2026-03-11"
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Version {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let v = parts
            .headers
            .get("notion-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        Ok(Self(v.trim().to_owned()))
    }
}

/// Notion ids are UUIDs written with or without hyphens; compare them in one form.
pub(crate) fn compact_id(id: &str) -> String {
    id.chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase()
}

pub(crate) fn same_id(a: &str, b: &str) -> bool {
    compact_id(a) == compact_id(b)
}

pub(crate) fn check_id(id: &str, what: &str) -> Result<(), NotionError> {
    let compact = compact_id(id);
    if compact.len() == 32 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(());
    }
    Err(NotionError::validation(format!(
        "path failed validation: path.{what} should be a valid uuid, instead was `\"{id}\"`."
    )))
}

/// A JSON object body; an empty body reads as `{}` where `empty_ok`.
pub(crate) fn json_body(
    body: &[u8],
    empty_ok: bool,
) -> Result<serde_json::Map<String, Value>, NotionError> {
    if body.len() > MAX_BODY {
        return Err(NotionError::validation(format!(
            "Request body too large: {} bytes exceeds the limit of {MAX_BODY}.",
            body.len()
        )));
    }
    if empty_ok && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(NotionError::validation(
            "body failed validation: body should be an object.",
        )),
        Err(_) => Err(NotionError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "Error parsing JSON body.",
        )),
    }
}

pub(crate) fn timestamp(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The integration that every simulated write is attributed to.
pub(crate) const BOT_ID: &str = "00000000-0000-4000-8000-00000000b07e";
