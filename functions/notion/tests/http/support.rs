use enroll_core::ports::RateBudget;
use enroll_notion::{RetryPolicy, TokenBucket};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use wiremock::http::HeaderMap;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

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
    fn of(r: &wiremock::Request) -> Self {
        let mut target = r.url.path().to_owned();
        if let Some(q) = r.url.query() {
            target.push('?');
            target.push_str(q);
        }
        Self {
            method: r.method.to_string(),
            target,
            headers: r.headers.clone(),
            body: r.body.clone(),
        }
    }

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
pub struct Answer(ResponseTemplate);

impl Answer {
    pub fn json(status: u16, body: Value) -> Self {
        Self(ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/scim+json"))
    }

    pub fn empty(status: u16) -> Self {
        Self(ResponseTemplate::new(status))
    }

    /// Answers only after `delay`, so requests sent together overlap.
    pub fn after(self, delay: Duration) -> Self {
        Self(self.0.set_delay(delay))
    }

    pub fn header(self, name: &'static str, value: &str) -> Self {
        Self(self.0.insert_header(name, value))
    }
}

/// A wiremock server that answers requests with its script, in order, whatever they ask for,
/// and records every request.
pub struct Server {
    pub url: String,
    mock: MockServer,
}

impl Server {
    pub async fn start(script: Vec<Answer>) -> Self {
        let mock = MockServer::start().await;
        // Mocks of one priority are tried in the order they were mounted; each answers once.
        for answer in script {
            Mock::given(any())
                .respond_with(answer.0)
                .up_to_n_times(1)
                .mount(&mock)
                .await;
        }
        // After the script: an answer no client treats as success or retries.
        Mock::given(any())
            .respond_with(ResponseTemplate::new(418).set_body_string("unscripted request"))
            .with_priority(u8::MAX)
            .mount(&mock)
            .await;
        Self {
            url: mock.uri(),
            mock,
        }
    }

    /// A server that answers every request with `answer(request)`, in any order, and records
    /// every request.
    pub async fn answering<F>(answer: F) -> Self
    where
        F: Fn(&wiremock::Request) -> Answer + Send + Sync + 'static,
    {
        let mock = MockServer::start().await;
        Mock::given(any())
            .respond_with(move |r: &wiremock::Request| answer(r).0)
            .mount(&mock)
            .await;
        Self {
            url: mock.uri(),
            mock,
        }
    }

    pub async fn seen(&self) -> Vec<Seen> {
        let requests = self.mock.received_requests().await;
        requests
            .expect("the server records requests")
            .iter()
            .map(Seen::of)
            .collect()
    }

    pub async fn lines(&self) -> Vec<String> {
        self.seen().await.iter().map(Seen::line).collect()
    }
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
