//! One webhook URL for a deployment that may serve several sellers: `/t/{tenant}/webhooks/{platform}`
//! goes to that tenant's [`Ingest`] (its configuration, its secrets, a queue that stamps its
//! name into every message), and `/webhooks/{platform}` to the single seller's, when the
//! deployment has one.
//!
//! A tenant's ingest verifies with that tenant's secrets only, so a signature made with another
//! tenant's secret gets 401 and nothing is queued. A name that is not a tenant's gets 404, as
//! does any path when the deployment has neither kind of seller.

use crate::{Ingest, WebhookRequest, WebhookResponse};
use chrono::{DateTime, Utc};
use enroll_core::metrics;
use enroll_core::tenant::TenantId;
use enroll_core::Failure;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// `/t/{tenant}/webhooks/{platform}` with an optional trailing slash, also behind a prefix
/// (`/lambda-url/ingest/t/...` under `cargo lambda watch`): the tenant's raw name.
pub fn tenant_route(path: &str) -> Option<&str> {
    let mut parts = path.trim_end_matches('/').rsplit('/');
    let _platform = parts.next()?;
    if parts.next()? != "webhooks" {
        return None;
    }
    let tenant = parts.next()?;
    (parts.next()? == "t").then_some(tenant)
}

/// A tenant's ingest as the deployment finds it, or `None` when no such tenant exists.
pub type TenantLookup = Arc<
    dyn Fn(TenantId) -> Pin<Box<dyn Future<Output = Result<Option<Arc<Ingest>>, Failure>> + Send>>
        + Send
        + Sync,
>;

/// The webhook entry point of a deployment: the single seller's ingest, the tenants', or both.
pub struct Gateway {
    pub single: Option<Arc<Ingest>>,
    pub tenants: Option<TenantLookup>,
}

impl Gateway {
    pub async fn handle(&self, req: &WebhookRequest, now: DateTime<Utc>) -> WebhookResponse {
        let Some(raw) = tenant_route(&req.path) else {
            return match &self.single {
                Some(ingest) => ingest.handle(req, now).await,
                None => WebhookResponse::error(
                    404,
                    "not found: this deployment serves tenants: post to /t/{tenant}/webhooks/{platform}",
                ),
            };
        };
        let (Ok(tenant), Some(lookup)) = (TenantId::parse(raw), &self.tenants) else {
            return WebhookResponse::error(404, "unknown tenant");
        };
        match lookup(tenant.clone()).await {
            Ok(Some(ingest)) => metrics::for_tenant(&tenant, ingest.handle(req, now)).await,
            Ok(None) => WebhookResponse::error(404, "unknown tenant"),
            Err(f) => {
                // The platform retries a 5xx: the tenant's configuration may be fixed by then.
                tracing::error!(%tenant, reason = %f.reason, retryable = !f.is_permanent(), "tenant configuration unavailable");
                WebhookResponse::error(503, "configuration unavailable: retry later")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_tenant_paths() {
        assert_eq!(tenant_route("/t/acme/webhooks/stripe"), Some("acme"));
        assert_eq!(tenant_route("/t/acme/webhooks/stripe/"), Some("acme"));
        assert_eq!(
            tenant_route("/lambda-url/ingest/t/acme/webhooks/paddle"),
            Some("acme")
        );
        assert_eq!(tenant_route("/webhooks/stripe"), None);
        assert_eq!(tenant_route("/x/acme/webhooks/stripe"), None);
        assert_eq!(tenant_route("/t/acme/stripe"), None);
    }
}
