use crate::support::{budget, fast_retries, Answer, Server, TOKEN};
use enroll_core::config::{ScimConfig, Secret};
use enroll_core::ids::{BuyerEmail, GroupId, NotionUserId};
use enroll_core::ports::Directory;
use enroll_core::ErrorClass;
use enroll_notion::{RetryPolicy, ScimClient};
use serde_json::json;
use std::time::{Duration, Instant};

fn client(server: &Server, policy: RetryPolicy) -> ScimClient {
    let cfg = ScimConfig {
        base_url: server.url.clone(),
        token: Secret::new(TOKEN),
        ..ScimConfig::default()
    };
    ScimClient::new(&cfg, budget()).unwrap().with_retry(policy)
}

fn ada() -> BuyerEmail {
    BuyerEmail::parse("ada.lovelace@example.com").unwrap()
}

fn found() -> Answer {
    Answer::json(
        200,
        json!({"totalResults": 1, "Resources": [{"id": "u1", "userName": "ada.lovelace@example.com"}]}),
    )
}

// Real time: paused tokio time would also fast-forward the HTTP client's own timeout while it
// waits on the socket. One second is the shortest wait Retry-After can express.
#[tokio::test]
async fn a_429_is_waited_out_then_the_call_succeeds() {
    let server = Server::start(vec![
        Answer::json(429, json!({"status": "429", "detail": "slow down"}))
            .header("retry-after", "1"),
        found(),
    ])
    .await;
    let started = Instant::now();
    let user = client(&server, fast_retries())
        .find_user(&ada())
        .await
        .unwrap();
    assert_eq!(user.unwrap().id.as_str(), "u1");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(server.seen().await.len(), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_maximum_wait_goes_back_to_the_queue() {
    let server = Server::start(vec![Answer::empty(429).header("retry-after", "120")]).await;
    let started = Instant::now();
    let err = client(&server, fast_retries())
        .find_user(&ada())
        .await
        .unwrap_err();
    assert_eq!(
        err.class,
        ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(120))
        }
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(server.seen().await.len(), 1);
}

#[tokio::test]
async fn server_errors_are_transient_after_three_attempts() {
    let server = Server::start(vec![
        Answer::empty(503),
        Answer::empty(502),
        Answer::json(500, json!({"detail": "boom"})),
        found(),
    ])
    .await;
    let err = client(&server, fast_retries())
        .find_user(&ada())
        .await
        .unwrap_err();
    assert!(matches!(err.class, ErrorClass::Transient { .. }), "{err}");
    assert!(err.reason.contains("HTTP 500"), "{err}");
    assert_eq!(server.seen().await.len(), 3);
}

#[tokio::test]
async fn a_529_and_a_5xx_on_an_idempotent_patch_are_retried() {
    let server = Server::start(vec![
        Answer::empty(529),
        Answer::empty(500),
        Answer::empty(204),
    ])
    .await;
    client(&server, fast_retries())
        .add_members(
            &GroupId::parse("g1").unwrap(),
            &[NotionUserId::parse("u1").unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(server.seen().await.len(), 3);
}

#[tokio::test]
async fn a_5xx_on_create_is_not_blindly_posted_again() {
    let server = Server::start(vec![
        Answer::empty(502),
        Answer::json(200, json!({"totalResults": 0})),
        Answer::empty(504),
    ])
    .await;
    let policy = RetryPolicy {
        attempts: 2,
        ..fast_retries()
    };
    let err = client(&server, policy)
        .create_user(&ada(), None)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let methods: Vec<String> = server.seen().await.into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["POST", "GET", "POST"]);
}

#[tokio::test]
async fn client_errors_are_permanent_with_a_readable_reason() {
    let cases = [
        (
            Answer::json(
                400,
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "400",
                       "scimType": "invalidFilter",
                       "detail": "Cannot filter on ada.lovelace@example.com"}),
            ),
            "HTTP 400 Bad Request (invalidFilter: Cannot filter on a***@e***.com)",
        ),
        (
            Answer::json(403, json!({"detail": "Forbidden for this token"})),
            "HTTP 403 Forbidden (Forbidden for this token)",
        ),
        (
            Answer::json(
                401,
                json!({"object": "error", "status": 401, "code": "unauthorized",
                       "message": "API token is invalid."}),
            ),
            "HTTP 401 Unauthorized (unauthorized: API token is invalid.)",
        ),
        (Answer::empty(404), "HTTP 404 Not Found"),
    ];
    for (answer, expected) in cases {
        let server = Server::start(vec![answer]).await;
        let err = client(&server, fast_retries())
            .find_user(&ada())
            .await
            .unwrap_err();
        assert!(err.is_permanent(), "{err}");
        assert!(err.reason.contains(expected), "{err}");
        assert!(err.reason.contains("GET /Users"), "{err}");
        assert!(!err.reason.contains("ada.lovelace@example.com"), "{err}");
        assert!(!err.reason.contains(TOKEN), "{err}");
        assert_eq!(server.seen().await.len(), 1, "a 4xx is never retried");
    }
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let cfg = ScimConfig {
        base_url: url,
        ..ScimConfig::default()
    };
    let err = ScimClient::new(&cfg, budget())
        .unwrap()
        .with_retry(fast_retries())
        .get_user(&NotionUserId::parse("u1").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err.class, ErrorClass::Transient { .. }), "{err}");
    assert!(err.reason.contains("could not connect"), "{err}");
    // The transport's own error stays attached as the failure's cause, for whoever logs it.
    let cause = std::error::Error::source(&err).expect("the failure keeps its cause");
    assert!(!cause.to_string().is_empty());
}
