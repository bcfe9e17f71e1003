//! The ingest stage: `POST /webhooks/{platform}`.
//!
//! It answers fast and never calls Notion: the body size is checked first (413), then the
//! signature over the raw bytes (401), then the body is normalised into an
//! [`enroll_core::event::OrderEvent`] (400 when it cannot be), sent to the provision queue, and
//! only then answered 202. A queue that is unavailable gives 503 so the platform retries. A
//! genuine event of a type enroll does not handle is answered 200 and counted, so the platform
//! stops retrying. `HEAD` and `GET` on a platform's path answer 200 so platforms (ThriveCart)
//! can register the URL.
//!
//! - [`Ingest`]: the handler over plain [`WebhookRequest`] / [`WebhookResponse`] values, shared
//!   by the Lambda function and the local runner.
//! - [`gateway`]: [`gateway::Gateway`], the single seller's ingest and the tenants'
//!   (`/t/{tenant}/webhooks/{platform}`) behind one URL.
//! - [`lambda`]: the Lambda function URL wiring.

pub mod gateway;
pub mod lambda;

use chrono::{DateTime, Utc};
use enroll_core::config::Config;
use enroll_core::metrics::{self, Function, Metric, Reason};
use enroll_core::ports::Queue;
use enroll_core::redact::short_hash;
use enroll_platforms::{Accepted, Inbound};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One HTTP request as received. Header names are lowercased.
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The answer: a status and a small JSON body for the platform's delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: u16,
    pub body: String,
}

impl WebhookResponse {
    fn json(status: u16, value: serde_json::Value) -> Self {
        Self {
            status,
            body: value.to_string(),
        }
    }

    fn error(status: u16, reason: &str) -> Self {
        Self::json(status, serde_json::json!({ "error": reason }))
    }
}

/// Counts kept for the process's lifetime, for logs and the local status report.
#[derive(Debug, Default)]
pub struct IngestCounters {
    pub accepted: AtomicU64,
    pub ignored: AtomicU64,
    pub rejected: AtomicU64,
}

/// The ingest handler: configuration and the provision queue.
pub struct Ingest {
    pub config: Arc<Config>,
    pub queue: Arc<dyn Queue>,
    pub counters: IngestCounters,
}

/// `/webhooks/{platform}` with an optional trailing slash, also behind a prefix such as
/// `cargo lambda watch`'s `/lambda-url/ingest`.
pub fn route(path: &str) -> Option<&str> {
    let mut parts = path.trim_end_matches('/').rsplit('/');
    let platform = parts.next()?;
    (parts.next()? == "webhooks").then_some(platform)
}

impl Ingest {
    pub fn new(config: Arc<Config>, queue: Arc<dyn Queue>) -> Self {
        Self {
            config,
            queue,
            counters: IngestCounters::default(),
        }
    }

    #[tracing::instrument(skip_all, fields(path = %req.path, method = %req.method, body_hash = tracing::field::Empty))]
    pub async fn handle(&self, req: &WebhookRequest, now: DateTime<Utc>) -> WebhookResponse {
        let Some(segment) = route(&req.path) else {
            return WebhookResponse::error(
                404,
                "not found: webhooks are posted to /webhooks/{platform}",
            );
        };
        // Built-in names, and the mapped platforms this configuration declares: any other name
        // is a 404, and is never turned into a platform.
        let Some(platform) = self.config.platform_named(segment) else {
            return WebhookResponse::error(404, "unknown platform: use stripe, lemonsqueezy, paddle, shopify, gumroad, thrivecart, standard or a configured mapped platform");
        };
        match req.method.as_str() {
            "POST" => {}
            "HEAD" | "GET" => {
                return WebhookResponse::json(
                    200,
                    serde_json::json!({ "status": "ready", "platform": platform.as_str() }),
                )
            }
            _ => return WebhookResponse::error(405, "method not allowed: use POST"),
        }
        let limit = self.config.ingest.max_body_bytes;
        if req.body.len() > limit {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            metrics::rejected(Reason::TooLarge);
            return WebhookResponse::error(
                413,
                &format!("body larger than the {limit}-byte limit"),
            );
        }
        tracing::Span::current().record("body_hash", short_hash(&req.body).as_str());
        let default = Default::default();
        let cfg = self.config.platform(platform).unwrap_or(&default);
        let inbound = Inbound {
            method: &req.method,
            query: req.query.as_deref(),
            headers: &req.headers,
            body: &req.body,
        };
        match enroll_platforms::receive(platform, cfg, &inbound, now) {
            Err(rejected) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                metrics::rejected(rejected.metric_reason());
                tracing::info!(status = rejected.status, reason = %rejected.reason, "webhook refused");
                WebhookResponse::error(rejected.status, &rejected.reason)
            }
            Ok(Accepted::Ignored { event_type, reason }) => {
                let n = self.counters.ignored.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::info!(%event_type, %reason, ignored_total = n, "event type not handled: acknowledged");
                WebhookResponse::json(
                    200,
                    serde_json::json!({ "status": "ignored", "event_type": event_type, "reason": reason }),
                )
            }
            Ok(Accepted::Event(mut event)) => {
                // Time to access is measured from here, through every stage after.
                event.accepted_at = Some(now);
                let body = match serde_json::to_string(&event) {
                    Ok(b) => b,
                    Err(_) => return WebhookResponse::error(500, "could not encode the event"),
                };
                if let Err(f) = self.queue.send(&body).await {
                    tracing::error!(event_key = %event.key, reason = %f.reason, "provision queue unavailable");
                    return WebhookResponse::error(503, "queue unavailable: retry later");
                }
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                metrics::count(Function::Ingest, Metric::WebhooksAccepted);
                tracing::info!(event_key = %event.key, kind = event.kind.as_str(), buyer = ?event.buyer.as_ref().map(|b| b.email.to_string()), "event accepted");
                WebhookResponse::json(
                    202,
                    serde_json::json!({ "status": "accepted", "event_key": event.key.as_string(), "kind": event.kind.as_str() }),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn routes_platform_paths() {
        assert_eq!(route("/webhooks/stripe"), Some("stripe"));
        assert_eq!(route("/webhooks/stripe/"), Some("stripe"));
        assert_eq!(route("/lambda-url/ingest/webhooks/paddle"), Some("paddle"));
        assert_eq!(route("/stripe"), None);
        assert_eq!(route("/"), None);
    }
}
