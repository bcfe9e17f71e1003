//! A counting proxy in front of moto: the function binaries get its address as
//! `AWS_ENDPOINT_URL`, it forwards every request to moto unchanged and notes the service, the
//! action and DynamoDB's capacity units. The cost estimate ([`super::cost`]) reads what the
//! functions really asked of AWS from here instead of guessing it.
//!
//! Moto does not check signatures, so forwarding a request signed for the proxy's host is fine.
//! Capacity units are estimated from sizes, since the functions do not ask DynamoDB for
//! `ConsumedCapacity`: a write costs one unit per started KB of its request (an upper bound on the
//! item's size), two for each item of a transaction; a read one unit per started 4 KB of the
//! answer (a strongly consistent read, the dearer kind).

use anyhow::Context;
use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request a function made.
#[derive(Clone, Debug)]
pub(super) struct Call {
    pub(super) at: Instant,
    /// `service.Action`, e.g. `dynamodb.UpdateItem`, `sqs.SendMessage`.
    pub(super) name: String,
    pub(super) read_units: f64,
    pub(super) write_units: f64,
    /// From the request in to moto's answer out.
    pub(super) took: Duration,
    /// A write to a rate-budget item (`pk = rate#...`).
    pub(super) rate_budget: bool,
}

/// What a run of calls adds up to.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Tally {
    pub(super) calls: BTreeMap<String, u64>,
    pub(super) read_units: f64,
    pub(super) write_units: f64,
    pub(super) rate_budget_writes: u64,
    /// Time spent in the calls, one after another.
    pub(super) took: Duration,
}

impl Tally {
    pub(super) fn of(calls: &[Call]) -> Tally {
        let mut t = Tally::default();
        for c in calls {
            *t.calls.entry(c.name.clone()).or_default() += 1;
            t.read_units += c.read_units;
            t.write_units += c.write_units;
            t.rate_budget_writes += u64::from(c.rate_budget);
            t.took += c.took;
        }
        t
    }

    /// Requests to `service` (`dynamodb`, `sqs`, `secretsmanager`, ...).
    pub(super) fn requests(&self, service: &str) -> u64 {
        self.calls
            .iter()
            .filter(|(k, _)| k.split('.').next() == Some(service))
            .map(|(_, n)| n)
            .sum()
    }

    /// `dynamodb.UpdateItem=3,sqs.SendMessage=10`.
    pub(super) fn summary(&self) -> String {
        self.calls
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    calls: Mutex<Vec<Call>>,
}

/// The running proxy; stops when dropped.
pub(super) struct AwsMeter {
    proxy: Arc<Proxy>,
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for AwsMeter {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl AwsMeter {
    /// A proxy on a free local port forwarding to `upstream` (moto's endpoint).
    pub(super) async fn start(upstream: &str) -> anyhow::Result<AwsMeter> {
        let proxy = Arc::new(Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            calls: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(forward).with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(AwsMeter { proxy, url, server })
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// Every call since the last `take`, oldest first.
    pub(super) fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.proxy.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

async fn forward(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    match relay(&proxy, req).await {
        Ok(r) => r,
        // The SDK retries a 502 like any 5xx; the function's log says what happened.
        Err(e) => (StatusCode::BAD_GATEWAY, format!("bench proxy: {e:#}")).into_response(),
    }
}

async fn relay(proxy: &Proxy, req: Request) -> anyhow::Result<Response> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, 64 << 20)
        .await
        .context("reading the request")?;
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut upstream = proxy
        .client
        .request(parts.method.clone(), format!("{}{path}", proxy.upstream))
        .body(body.clone());
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            upstream = upstream.header(k, v);
        }
    }
    let answer = upstream.send().await.context("forwarding to moto")?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let answer_body = answer.bytes().await.context("reading moto's answer")?;
    let name = call_name(&parts.headers, &body);
    let (read_units, write_units) = if status.is_success() {
        capacity_units(&name, &body, &answer_body)
    } else {
        (0.0, 0.0)
    };
    let rate_budget = write_units > 0.0 && String::from_utf8_lossy(&body).contains("\"rate#");
    proxy
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Call {
            at,
            name,
            read_units,
            write_units,
            took: at.elapsed(),
            rate_budget,
        });
    let mut resp = Response::builder().status(status);
    for (k, v) in &headers {
        if k != "content-length" && k != "transfer-encoding" && k != "connection" {
            resp = resp.header(k, v);
        }
    }
    Ok(resp.body(Body::from(answer_body))?)
}

/// `service.Action` from the JSON protocols' `X-Amz-Target` (DynamoDB, SQS, Secrets Manager), or
/// from the query protocol's `Action=` with the service named by the signature's scope.
fn call_name(headers: &HeaderMap, body: &Bytes) -> String {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    if let Some((prefix, action)) = header("x-amz-target").split_once('.') {
        let service = match prefix {
            p if p.starts_with("DynamoDB") => "dynamodb",
            p if p.starts_with("AmazonSQS") => "sqs",
            p if p.eq_ignore_ascii_case("secretsmanager") => "secretsmanager",
            p if p.starts_with("GraniteServiceVersion") => "cloudwatch",
            p => p,
        };
        return format!("{service}.{action}");
    }
    // Credential=AKID/20260101/us-east-1/<service>/aws4_request
    let service = header("authorization")
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned();
    let action = String::from_utf8_lossy(body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action=").map(str::to_owned))
        .unwrap_or_else(|| "Unknown".into());
    format!("{service}.{action}")
}

/// Started units of `unit` bytes in `bytes`, at least one.
fn units(bytes: usize, unit: usize) -> f64 {
    bytes.div_ceil(unit).max(1) as f64
}

/// Estimated (read, write) request units of a successful DynamoDB call.
fn capacity_units(name: &str, request: &Bytes, answer: &Bytes) -> (f64, f64) {
    let Some(action) = name.strip_prefix("dynamodb.") else {
        return (0.0, 0.0);
    };
    let json = |b: &Bytes| serde_json::from_slice::<Value>(b).unwrap_or(Value::Null);
    let size = |v: &Value| v.to_string().len();
    match action {
        "PutItem" | "UpdateItem" | "DeleteItem" => (0.0, units(request.len(), 1024)),
        "BatchWriteItem" => {
            let req = json(request);
            let w = req["RequestItems"]
                .as_object()
                .into_iter()
                .flat_map(|tables| tables.values())
                .filter_map(Value::as_array)
                .flatten()
                .map(|item| units(size(item), 1024))
                .sum();
            (0.0, w)
        }
        "TransactWriteItems" => {
            let req = json(request);
            let w = req["TransactItems"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| 2.0 * units(size(item), 1024))
                .sum();
            (0.0, w)
        }
        "GetItem" | "Query" | "Scan" => (units(answer.len(), 4096), 0.0),
        "BatchGetItem" => {
            let ans = json(answer);
            let r = ans["Responses"]
                .as_object()
                .into_iter()
                .flat_map(|tables| tables.values())
                .filter_map(Value::as_array)
                .flatten()
                .map(|item| units(size(item), 4096))
                .sum::<f64>();
            (r.max(1.0), 0.0)
        }
        "TransactGetItems" => (2.0 * units(answer.len(), 4096), 0.0),
        _ => (0.0, 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_json_and_query_protocol_calls() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-target",
            "DynamoDB_20120810.UpdateItem".parse().unwrap(),
        );
        assert_eq!(call_name(&h, &Bytes::new()), "dynamodb.UpdateItem");
        h.insert("x-amz-target", "AmazonSQS.SendMessage".parse().unwrap());
        assert_eq!(call_name(&h, &Bytes::new()), "sqs.SendMessage");
        let mut q = HeaderMap::new();
        q.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/monitoring/aws4_request, X=1"
                .parse()
                .unwrap(),
        );
        let body = Bytes::from_static(b"Action=PutMetricData&Version=2010-08-01");
        assert_eq!(call_name(&q, &body), "monitoring.PutMetricData");
    }

    #[test]
    fn a_transaction_costs_two_units_per_small_item() {
        let req = Bytes::from(
            serde_json::json!({"TransactItems": [{"Put": {"Item": {}}}, {"Update": {}}]})
                .to_string(),
        );
        assert_eq!(
            capacity_units("dynamodb.TransactWriteItems", &req, &Bytes::new()),
            (0.0, 4.0)
        );
        let big = Bytes::from(vec![b'x'; 2049]);
        assert_eq!(
            capacity_units("dynamodb.PutItem", &big, &Bytes::new()),
            (0.0, 3.0)
        );
        assert_eq!(capacity_units("sqs.SendMessage", &big, &big), (0.0, 0.0));
    }
}
