//! The SCIM 2.0 surface under `/scim/v2`: routing, bearer auth, list parameters and the
//! response helpers shared by [`users`], [`groups`] and [`discovery`].

mod discovery;
pub(crate) mod error;
pub(crate) mod filter;
mod groups;
mod patch;
mod users;

use crate::sim::Sim;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use error::ScimError;
use serde_json::{json, Value};
use std::convert::Infallible;

pub(crate) const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub(crate) const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub(crate) const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub(crate) const NOTION_USER_URN: &str = "urn:ietf:params:scim:schemas:extension:notion:2.0:User";
pub(crate) const MAX_COUNT: usize = 100;

pub(crate) fn router(sim: Sim) -> Router {
    Router::new()
        .route("/Users", get(users::list).post(users::create))
        .route(
            "/Users/{id}",
            get(users::fetch)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/Groups", get(groups::list).post(groups::create))
        .route(
            "/Groups/{id}",
            get(groups::fetch)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/ResourceTypes", get(discovery::list_resource_types))
        .route("/ResourceTypes/{id}", get(discovery::resource_type))
        .route("/Schemas", get(discovery::list_schemas))
        .route("/Schemas/{id}", get(discovery::schema))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(sim.clone(), authenticate))
        .with_state(sim)
}

/// An error response for a request the simulator refused before routing (fault, rate limit).
pub(crate) fn error_response(status: StatusCode, detail: &str) -> Response {
    ScimError::new(status, None, detail).into_response()
}

async fn authenticate(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    if crate::sim::bearer_matches(request.headers(), &sim.scim_token) {
        next.run(request).await
    } else {
        ScimError::new(
            StatusCode::UNAUTHORIZED,
            None,
            "missing or invalid bearer token",
        )
        .into_response()
    }
}

async fn not_found() -> ScimError {
    ScimError::new(StatusCode::NOT_FOUND, None, "no such endpoint")
}

async fn method_not_allowed() -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "method not supported on this endpoint",
    )
}

pub(crate) fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    response
}

/// What every SCIM handler needs from the request line: the base URL for `meta.location`
/// and the query parameters, decoded with form-urlencoded rules (`+` is a space, `%2B` a plus).
pub(crate) struct Ctx {
    pub base: String,
    params: Vec<(String, String)>,
}

impl Ctx {
    /// Parameter names are matched case-insensitively, as several SCIM clients vary them.
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.param(name)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn projection(&self) -> Projection {
        Projection {
            attributes: self.list("attributes"),
            excluded: self.list("excludedAttributes"),
        }
    }

    pub(crate) fn asks_for_attributes(&self) -> bool {
        self.param("attributes").is_some() || self.param("excludedAttributes").is_some()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let params = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Ok(Self {
            base: format!("http://{host}/scim/v2"),
            params,
        })
    }
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5), applied to top-level attributes;
/// `id` and `schemas` are always returned.
pub(crate) struct Projection {
    attributes: Vec<String>,
    excluded: Vec<String>,
}

impl Projection {
    fn top(name: &str) -> &str {
        let name = name.rsplit_once(':').map_or(name, |(_, n)| n);
        name.split_once('.').map_or(name, |(n, _)| n)
    }

    pub(crate) fn apply(&self, mut resource: Value) -> Value {
        let Some(obj) = resource.as_object_mut() else {
            return resource;
        };
        let always = |k: &str| k == "id" || k == "schemas";
        if !self.attributes.is_empty() {
            obj.retain(|k, _| {
                always(k)
                    || self
                        .attributes
                        .iter()
                        .any(|a| Self::top(a).eq_ignore_ascii_case(k) || a.eq_ignore_ascii_case(k))
            });
        }
        obj.retain(|k, _| {
            always(k)
                || !self
                    .excluded
                    .iter()
                    .any(|a| Self::top(a).eq_ignore_ascii_case(k) || a.eq_ignore_ascii_case(k))
        });
        resource
    }
}

/// Filter and paging parameters of a list request.
pub(crate) struct ListParams {
    pub filter: Option<filter::Filter>,
    pub start_index: usize,
    pub count: usize,
}

impl ListParams {
    pub(crate) fn parse(ctx: &Ctx, core_urn: &str, known: &[&str]) -> Result<Self, ScimError> {
        let int = |name: &str| -> Result<Option<i64>, ScimError> {
            ctx.param(name)
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|_| {
                        ScimError::invalid_value(format!("{name} must be an integer, got {v:?}"))
                    })
                })
                .transpose()
        };
        // RFC 7644 §3.4.2.4: startIndex below 1 means 1, a negative count means 0.
        let start_index = int("startIndex")?.unwrap_or(1).max(1) as usize;
        let count = int("count")?.map_or(MAX_COUNT, |c| c.clamp(0, MAX_COUNT as i64) as usize);
        let filter = match ctx.param("filter") {
            None => None,
            Some(text) => {
                let f = filter::parse(text)?;
                filter::check_attributes(&f, core_urn, known)?;
                Some(f)
            }
        };
        Ok(Self {
            filter,
            start_index,
            count,
        })
    }

    pub(crate) fn keeps(&self, resource: &Value) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| filter::matches(f, resource))
    }

    /// The ListResponse for `matched` (already filtered, in order).
    pub(crate) fn respond(&self, matched: Vec<Value>, projection: &Projection) -> Response {
        let total = matched.len();
        let page: Vec<Value> = matched
            .into_iter()
            .skip(self.start_index - 1)
            .take(self.count)
            .collect();
        self.respond_page(total, page, projection)
    }

    /// The ListResponse for one page already cut out of `total` matches.
    pub(crate) fn respond_page(
        &self,
        total: usize,
        page: Vec<Value>,
        projection: &Projection,
    ) -> Response {
        let page: Vec<Value> = page.into_iter().map(|r| projection.apply(r)).collect();
        let body = json!({
            "schemas": [LIST_URN],
            "totalResults": total,
            "startIndex": self.start_index,
            "itemsPerPage": page.len(),
            "Resources": page,
        });
        scim_json(StatusCode::OK, &body)
    }
}

/// Parses a request body as a JSON object whose `schemas` includes `urn`.
pub(crate) fn body_with_schema(body: &[u8], urn: &str) -> Result<Value, ScimError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ScimError::invalid_syntax(format!("body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ScimError::invalid_syntax("body must be a JSON object"));
    }
    let declared = value
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter()
                .any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(urn)))
        });
    if !declared {
        return Err(ScimError::invalid_syntax(format!(
            "schemas must include {urn}"
        )));
    }
    Ok(value)
}

/// A case-insensitive object lookup: SCIM attribute names are case-insensitive.
pub(crate) fn field<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

pub(crate) fn timestamp(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
