//! The ingest Lambda behind a function URL.

use crate::gateway::{Gateway, TenantLookup};
use crate::{Ingest, WebhookRequest};
use enroll_aws::lambda_env::{load_single_config, required};
use enroll_aws::tenants::{TenantCache, TenantRegistry};
use enroll_aws::SqsQueue;
use lambda_http::{Body, Error, Request, RequestExt, Response};
use std::sync::Arc;

/// The single seller's ingest (from `ENROLL_CONFIG`) and the tenants' (from the table, loaded
/// on first use and kept for a minute), built once per cold start.
pub async fn from_env() -> Result<Gateway, Error> {
    let sdk = enroll_aws::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = required("ENROLL_PROVISION_QUEUE_URL")?;
    let single = load_single_config(&sdk).await?.map(|config| {
        Arc::new(Ingest::new(
            Arc::new(config),
            Arc::new(SqsQueue::new(sqs.clone(), queue_url.clone())),
        ))
    });
    let tenants = TenantRegistry::from_env(&sdk).map(|registry| {
        let cache = Arc::new(TenantCache::<Ingest>::default());
        let lookup: TenantLookup = Arc::new(move |tenant| {
            let (registry, cache, sqs, url) = (
                registry.clone(),
                cache.clone(),
                sqs.clone(),
                queue_url.clone(),
            );
            Box::pin(async move {
                cache
                    .get(&tenant, || async {
                        let Some(config) = registry.load(&tenant).await? else {
                            return Ok(None);
                        };
                        let queue = SqsQueue::new(sqs, url).for_tenant(tenant.clone());
                        Ok(Some(Ingest::new(Arc::new(config), Arc::new(queue))))
                    })
                    .await
            })
        });
        lookup
    });
    Ok(Gateway { single, tenants })
}

/// Converts the function URL request (the body is already base64-decoded by the runtime).
pub fn webhook_request(req: &Request) -> WebhookRequest {
    let body = match req.body() {
        Body::Empty => Vec::new(),
        Body::Text(t) => t.as_bytes().to_vec(),
        Body::Binary(b) => b.clone(),
        _ => Vec::new(),
    };
    WebhookRequest {
        method: req.method().as_str().to_owned(),
        path: req.raw_http_path().to_owned(),
        query: req.uri().query().map(str::to_owned),
        headers: req
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned()))
            })
            .collect(),
        body,
    }
}

pub async fn function_handler(ingest: &Gateway, req: Request) -> Result<Response<Body>, Error> {
    let resp = ingest
        .handle(&webhook_request(&req), chrono::Utc::now())
        .await;
    Ok(Response::builder()
        .status(resp.status)
        .header("content-type", "application/json")
        .body(Body::Text(resp.body))?)
}
