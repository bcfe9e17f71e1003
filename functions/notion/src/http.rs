//! The one way a request reaches Notion: through the shared budget, with the bearer token, and
//! with every status classified here and nowhere else.
//!
//! Retries follow Notion's official SDK: 429 and 529 mean "not processed, come back later" and
//! are retried on every method; 500/502/503/504 (and timeouts) may come after the server acted,
//! so they are retried only for requests that are safe to repeat ([`Replay::Safe`]: reads,
//! DELETE, and PATCHes whose repetition changes nothing). A connection that never opened is
//! retried for any request, since nothing was sent.

use crate::retry::{self, Decision, RetryPolicy, Retryable};
use chrono::{DateTime, NaiveDateTime, Utc};
use enroll_core::config::Secret;
use enroll_core::metrics::{self, Function, Metric};
use enroll_core::ports::RateBudget;
use enroll_core::redact::mask_email;
use enroll_core::Failure;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Which of the two APIs a client speaks: they differ in media type and error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Scim,
    Notion,
}

impl Api {
    fn label(self) -> &'static str {
        match self {
            Api::Scim => "SCIM",
            Api::Notion => "Notion",
        }
    }

    fn media_type(self) -> &'static str {
        match self {
            Api::Scim => "application/scim+json",
            Api::Notion => "application/json",
        }
    }

    /// RFC 7644 section 8.1 asks for `application/scim+json`; plain JSON is accepted too
    /// because some SCIM servers answer with it.
    fn accept(self) -> &'static str {
        match self {
            Api::Scim => "application/scim+json, application/json",
            Api::Notion => "application/json",
        }
    }
}

/// Whether a request may be sent again after the server may have acted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    Safe,
    /// Only when the server certainly did not act (429, 529, no connection).
    OnlyIfUnprocessed,
}

pub(crate) struct Request<'a> {
    pub method: Method,
    /// Already encoded, relative to the base URL.
    pub path: String,
    /// The path with its ids as placeholders: what logs and reasons show.
    pub route: &'static str,
    pub body: Option<&'a Value>,
    pub replay: Replay,
}

impl<'a> Request<'a> {
    pub fn get(path: String, route: &'static str) -> Self {
        Self {
            method: Method::GET,
            path,
            route,
            body: None,
            replay: Replay::Safe,
        }
    }

    pub fn delete(path: String, route: &'static str) -> Self {
        Self {
            method: Method::DELETE,
            ..Self::get(path, route)
        }
    }

    pub fn with_body(method: Method, path: String, route: &'static str, body: &'a Value) -> Self {
        Self {
            method,
            path,
            route,
            body: Some(body),
            replay: Replay::OnlyIfUnprocessed,
        }
    }

    pub fn replay(mut self, replay: Replay) -> Self {
        self.replay = replay;
        self
    }
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

/// A failed call, with what callers need to treat some statuses specially (404, 409, 413).
#[derive(Debug, Clone)]
pub(crate) struct HttpError {
    pub status: Option<StatusCode>,
    pub failure: Failure,
    /// The server may have carried the request out (a 5xx or a timeout after sending).
    pub maybe_applied: bool,
}

impl HttpError {
    pub fn is(&self, status: StatusCode) -> bool {
        self.status == Some(status)
    }
}

impl From<HttpError> for Failure {
    fn from(e: HttpError) -> Self {
        e.failure
    }
}

enum Attempt {
    Done(Reply),
    Stop(HttpError),
    Retry {
        error: HttpError,
        /// What the server asked for (Retry-After).
        server_wait: Option<Duration>,
        throttled: bool,
    },
}

/// One attempt that did not end in a reply, as the retry loop sees it.
struct Failed {
    error: HttpError,
    /// Another attempt may succeed (see the module's rules on what may be sent again).
    retry: bool,
    /// The wait before the next attempt, when not the policy's backoff: Retry-After, or the
    /// wait a 429 already paused the shared budget for.
    wait: Option<Duration>,
    latency_ms: u64,
}

impl Retryable for Failed {
    fn is_retryable(&self) -> bool {
        self.retry
    }

    fn retry_after(&self) -> Option<Duration> {
        self.wait
    }
}

pub(crate) struct Http {
    api: Api,
    client: reqwest::Client,
    base: String,
    headers: HeaderMap,
    token: Secret,
    budget: Arc<dyn RateBudget>,
    policy: RetryPolicy,
}

impl Http {
    pub fn new(
        api: Api,
        base_url: &str,
        token: &Secret,
        timeout_secs: u64,
        extra: HeaderMap,
        budget: Arc<dyn RateBudget>,
    ) -> Result<Self, Failure> {
        let base = base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base).map_err(|e| {
            Failure::permanent(format!("{} base URL is not a URL: {e}", api.label()))
        })?;
        let mut headers = extra;
        headers.insert(ACCEPT, HeaderValue::from_static(api.accept()));
        if token.is_empty() {
            tracing::warn!(
                api = api.label(),
                "no token configured: requests go unauthenticated"
            );
        } else {
            let mut auth =
                HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
                    Failure::permanent(format!(
                        "{} token holds characters a header cannot carry",
                        api.label()
                    ))
                })?;
            auth.set_sensitive(true);
            headers.insert(AUTHORIZATION, auth);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout_secs.max(1)))
            // A redirect could carry the token to another host; Notion's APIs never redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("enroll/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Failure::permanent(format!("cannot build the HTTP client: {}", e.without_url()))
            })?;
        Ok(Self {
            api,
            client,
            base,
            headers,
            token: token.clone(),
            budget,
            policy: RetryPolicy::default(),
        })
    }

    pub fn set_policy(&mut self, policy: RetryPolicy) {
        self.policy = RetryPolicy {
            attempts: policy.attempts.max(1),
            ..policy
        };
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Sends `req`, retried under the client's [`RetryPolicy`] while the failure allows.
    pub async fn send(&self, req: Request<'_>) -> Result<Reply, HttpError> {
        let req = &req;
        let mut attempt = 0;
        let op = move || {
            attempt += 1;
            self.send_once(req, attempt)
        };
        let log = |f: &Failed, d: Decision| {
            let what = if d.give_up { "giving up" } else { "will retry" };
            self.log_failure(req, &f.error, d.attempt, f.latency_ms, what);
        };
        retry::retry_notify(&self.policy, op, log)
            .await
            .map_err(|f| f.error)
    }

    /// One attempt: through the budget, counted, and logged when it ends the call.
    async fn send_once(&self, req: &Request<'_>, attempt: u32) -> Result<Reply, Failed> {
        self.budget.acquire().await;
        let started = Instant::now();
        let outcome = self.attempt(req).await;
        self.count(&outcome);
        let latency_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Attempt::Done(reply) => {
                tracing::debug!(
                    api = self.api.label(),
                    method = %req.method,
                    route = req.route,
                    status = reply.status.as_u16(),
                    attempt,
                    latency_ms,
                    "request done"
                );
                Ok(reply)
            }
            Attempt::Stop(error) => {
                // Not retried here: the caller decides (a 404 or 409 is often an answer)
                // and the pipeline logs the failure it ends with.
                tracing::debug!(
                    api = self.api.label(),
                    method = %req.method,
                    route = req.route,
                    status = error.status.map(|s| s.as_u16()),
                    attempt,
                    latency_ms,
                    reason = %error.failure.reason,
                    "request refused"
                );
                Err(Failed {
                    error,
                    retry: false,
                    wait: None,
                    latency_ms,
                })
            }
            Attempt::Retry {
                error,
                server_wait,
                throttled,
            } => {
                let mut wait = server_wait;
                if throttled {
                    // Everyone sharing the token slows down, but never longer than one
                    // in-call wait: a longer pause is the queue's job, through the failure's
                    // retry_after. The call itself then waits just as long.
                    let w = server_wait.unwrap_or_else(|| self.policy.backoff(attempt));
                    self.budget.back_off(w.min(self.policy.max_wait)).await;
                    wait = Some(w);
                }
                Err(Failed {
                    error,
                    retry: true,
                    wait,
                    latency_ms,
                })
            }
        }
    }

    /// Counts one attempt in the process's metrics: in memory, no request of its own. SCIM is
    /// provision's (and the expiry pass's) API, the public API align's.
    fn count(&self, outcome: &Attempt) {
        let status = match outcome {
            Attempt::Done(reply) => Some(reply.status),
            Attempt::Stop(e) | Attempt::Retry { error: e, .. } => e.status,
        }
        .map(|s| s.as_u16());
        match self.api {
            Api::Scim => {
                metrics::count(Function::Provision, Metric::ScimRequests);
                match status {
                    Some(429 | 529) => metrics::count(Function::Provision, Metric::ScimThrottled),
                    Some(401 | 403) => {
                        metrics::count(Function::Provision, Metric::ScimAuthFailures)
                    }
                    _ => {}
                }
            }
            Api::Notion => metrics::count(Function::Align, Metric::NotionApiRequests),
        }
    }

    fn log_failure(&self, req: &Request<'_>, e: &HttpError, attempt: u32, ms: u64, what: &str) {
        tracing::warn!(
            api = self.api.label(),
            method = %req.method,
            route = req.route,
            status = e.status.map(|s| s.as_u16()),
            attempt,
            latency_ms = ms,
            class = e.failure.class.name(),
            reason = %e.failure.reason,
            "{what}"
        );
    }

    async fn attempt(&self, req: &Request<'_>) -> Attempt {
        let where_ = format!("{} {} {}", self.api.label(), req.method, req.route);
        let mut builder = self
            .client
            .request(req.method.clone(), format!("{}{}", self.base, req.path))
            .headers(self.headers.clone());
        if let Some(body) = req.body {
            let bytes = match serde_json::to_vec(body) {
                Ok(b) => b,
                Err(e) => {
                    return Attempt::Stop(HttpError {
                        status: None,
                        failure: Failure::permanent(format!("{where_}: cannot encode body: {e}")),
                        maybe_applied: false,
                    })
                }
            };
            builder = builder
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static(self.api.media_type()),
                )
                .body(bytes);
        }
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => return self.transport_failure(req, &where_, e),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return self.transport_failure(req, &where_, e),
        };
        if status.is_success() {
            let body = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                match serde_json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(_) => {
                        return Attempt::Stop(HttpError {
                            status: Some(status),
                            failure: Failure::permanent(format!(
                                "{where_}: HTTP {} with a body that is not JSON",
                                status.as_u16()
                            )),
                            maybe_applied: true,
                        })
                    }
                }
            };
            return Attempt::Done(Reply { status, body });
        }
        self.classify(req, &where_, status, retry_after, &bytes)
    }

    fn classify(
        &self,
        req: &Request<'_>,
        where_: &str,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Attempt {
        let reason = format!(
            "{where_}: {}",
            scrub(&describe_error(status, body), self.token.expose())
        );
        let error = |failure: Failure, maybe_applied: bool| HttpError {
            status: Some(status),
            failure,
            maybe_applied,
        };
        match status.as_u16() {
            429 | 529 => Attempt::Retry {
                error: error(Failure::retry_after(reason, retry_after), false),
                server_wait: retry_after,
                throttled: status.as_u16() == 429,
            },
            408 | 500 | 502 | 503 | 504 => {
                let e = error(Failure::retry_after(reason, retry_after), true);
                if req.replay == Replay::Safe {
                    Attempt::Retry {
                        error: e,
                        server_wait: retry_after,
                        throttled: false,
                    }
                } else {
                    Attempt::Stop(e)
                }
            }
            // Notion's conflict_error asks for a retry with fresh data and SCIM's uniqueness
            // is for the caller to resolve; either way not the same request again right now.
            409 => Attempt::Stop(error(Failure::transient(reason), false)),
            501 => Attempt::Stop(error(Failure::permanent(reason), false)),
            500..=599 => Attempt::Stop(error(Failure::retry_after(reason, retry_after), true)),
            _ => Attempt::Stop(error(Failure::permanent(reason), false)),
        }
    }

    fn transport_failure(&self, req: &Request<'_>, where_: &str, e: reqwest::Error) -> Attempt {
        // Without the URL: its query may hold a filter with an address in it.
        let e = e.without_url();
        let unsent = e.is_connect();
        let what = if e.is_timeout() {
            "timed out".to_owned()
        } else if unsent {
            "could not connect".to_owned()
        } else {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            scrub(&text, self.token.expose())
        };
        let error = HttpError {
            status: None,
            // The redacted chain stays on the failure (its `source()`), for whoever logs it.
            failure: Failure::transient(format!("{where_}: {what}")).caused_by(&e),
            maybe_applied: !unsent,
        };
        if unsent || req.replay == Replay::Safe {
            Attempt::Retry {
                error,
                server_wait: None,
                throttled: false,
            }
        } else {
            Attempt::Stop(error)
        }
    }
}

/// `HTTP 400 Bad Request (invalidFilter: ...)`, from the fields both APIs' error bodies carry
/// (SCIM `scimType`/`detail`, Notion `code`/`message`/`request_id`). A body that is not such
/// an object contributes nothing: it could echo the request.
fn describe_error(status: StatusCode, body: &[u8]) -> String {
    let head = format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_owned();
    let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(body) else {
        return head;
    };
    let field = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let said: Vec<&str> = ["scimType", "code", "detail", "message"]
        .into_iter()
        .filter_map(field)
        .collect();
    let mut out = head;
    if !said.is_empty() {
        out = format!("{out} ({})", said.join(": "));
    }
    if let Some(id) = field("request_id") {
        out = format!("{out} [request_id {id}]");
    }
    out
}

const REASON_MAX_CHARS: usize = 300;

/// What may go into a reason taken from a server: no address (masked), no token, no control
/// characters, and not too long for a log line or a message attribute.
pub(crate) fn scrub(text: &str, token: &str) -> String {
    let text = if token.len() >= 8 {
        text.replace(token, "<redacted>")
    } else {
        text.to_owned()
    };
    let is_break = |c: char| c.is_whitespace() || "\"'`<>()[]{},;\\".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains('@') {
            let core = word.trim_end_matches(['.', ':', '!', '?']);
            let tail = &word[core.len()..];
            out.push_str(&mask_email(core));
            out.push_str(tail);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_break(c) {
            flush(&mut word, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        } else if !c.is_control() {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    if out.chars().count() > REASON_MAX_CHARS {
        out = out.chars().take(REASON_MAX_CHARS).collect::<String>() + "...";
    }
    out
}

/// Retry-After is either delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = DateTime::parse_from_rfc2822(v)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            // The two obsolete forms RFC 9110 still asks recipients to accept.
            ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
                .into_iter()
                .find_map(|f| NaiveDateTime::parse_from_str(v, f).ok())
                .map(|n| n.and_utc())
        })?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Extra headers a client sends on every request, such as `Notion-Version`.
pub(crate) fn header(name: &'static str, value: &str) -> Result<HeaderMap, Failure> {
    let mut map = HeaderMap::new();
    let value = HeaderValue::try_from(value)
        .map_err(|_| Failure::permanent(format!("{name} is not a valid header value")))?;
    map.insert(HeaderName::from_static(name), value);
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let p = |v| parse_retry_after(v, now);
        assert_eq!(p("1"), Some(Duration::from_secs(1)));
        assert_eq!(p(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(p("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            p("Wed, 01 Jan 2025 00:00:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            p("Wednesday, 01-Jan-25 00:01:00 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(p("Wed Jan  1 00:00:05 2025"), Some(Duration::from_secs(5)));
        assert_eq!(p("Tue, 31 Dec 2024 23:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(p("-3"), None);
        assert_eq!(p("soon"), None);
    }

    #[test]
    fn reasons_come_from_the_error_body_fields() {
        let scim = br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status":"400","scimType":"invalidFilter","detail":"Bad filter"}"#;
        assert_eq!(
            describe_error(StatusCode::BAD_REQUEST, scim),
            "HTTP 400 Bad Request (invalidFilter: Bad filter)"
        );
        let notion = br#"{"object":"error","status":404,"code":"object_not_found",
            "message":"Could not find database.","request_id":"r-1"}"#;
        assert_eq!(
            describe_error(StatusCode::NOT_FOUND, notion),
            "HTTP 404 Not Found (object_not_found: Could not find database.) [request_id r-1]"
        );
        assert_eq!(
            describe_error(StatusCode::FORBIDDEN, b"<html>echo of the request</html>"),
            "HTTP 403 Forbidden"
        );
    }

    #[test]
    fn scrub_masks_addresses_and_drops_the_token() {
        let token = "secret_token_value";
        let out = scrub(
            "User \"ada.lovelace@example.com\" exists; token secret_token_value\nnext: bob@x.org.",
            token,
        );
        assert!(!out.contains("ada.lovelace@example.com"), "{out}");
        assert!(!out.contains("bob@x.org"), "{out}");
        assert!(!out.contains(token), "{out}");
        assert!(!out.contains('\n'), "{out}");
        assert!(
            out.contains("a***@e***.com") && out.ends_with("b***@x***.org."),
            "{out}"
        );
        assert!(scrub(&"x".repeat(1000), token).chars().count() <= REASON_MAX_CHARS + 3);
    }
}
