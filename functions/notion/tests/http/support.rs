use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use enroll_core::ports::RateBudget;
use enroll_notion::{RetryPolicy, TokenBucket};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const TOKEN: &str = "secret-test-token-0123456789";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query exactly as sent.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Answer {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/scim+json".into())],
            body: body.to_string(),
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            body: String::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Answer>>,
    seen: Mutex<Vec<Seen>>,
}

pub struct Server {
    pub url: String,
    shared: Arc<Shared>,
}

impl Server {
    pub async fn start(script: Vec<Answer>) -> Self {
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            seen: Mutex::default(),
        });
        let app = Router::new()
            .fallback(record_and_answer)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn lines(&self) -> Vec<String> {
        self.seen().iter().map(Seen::line).collect()
    }
}

async fn record_and_answer(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    shared.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers: parts.headers,
        body: body.to_vec(),
    });
    let answer = shared.script.lock().unwrap().pop_front();
    let Some(answer) = answer else {
        return Response::builder()
            .status(StatusCode::IM_A_TEAPOT)
            .body(Body::from("unscripted request"))
            .unwrap();
    };
    let mut out = Response::builder().status(answer.status);
    for (k, v) in answer.headers {
        out = out.header(k, v);
    }
    out.body(Body::from(answer.body)).unwrap()
}

/// Generous enough never to slow a test down.
pub fn budget() -> Arc<dyn RateBudget> {
    Arc::new(TokenBucket::new(1000.0, 100))
}

/// Real backoffs would slow the suite; the waits' logic is what is under test.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        first_backoff: Duration::from_millis(1),
        ..RetryPolicy::default()
    }
}
