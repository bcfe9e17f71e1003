//! The ingest Lambda behind a function URL.

use crate::{Ingest, WebhookRequest};
use enroll_aws::lambda_env::{load_config, required};
use enroll_aws::SqsQueue;
use lambda_http::{Body, Error, Request, RequestExt, Response};
use std::sync::Arc;

/// Configuration and the SQS client, built once per cold start.
pub async fn from_env() -> Result<Ingest, Error> {
    let sdk = enroll_aws::sdk_config().await;
    let config = Arc::new(load_config(&sdk).await?);
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        required("ENROLL_PROVISION_QUEUE_URL")?,
    );
    Ok(Ingest::new(config, Arc::new(queue)))
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

pub async fn function_handler(ingest: &Ingest, req: Request) -> Result<Response<Body>, Error> {
    let resp = ingest
        .handle(&webhook_request(&req), chrono::Utc::now())
        .await;
    Ok(Response::builder()
        .status(resp.status)
        .header("content-type", "application/json")
        .body(Body::Text(resp.body))?)
}
