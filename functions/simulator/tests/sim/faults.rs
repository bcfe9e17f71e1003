use crate::support::*;
use enroll_simulator::{FaultAction, FaultRule, Faults, RateLimit};
use reqwest::Method;
use std::time::{Duration, Instant};

fn rule(method: &str, prefix: &str, remaining: Option<u64>, action: FaultAction) -> FaultRule {
    FaultRule {
        method: Some(method.into()),
        path_prefix: Some(prefix.into()),
        probability: 1.0,
        remaining,
        action,
    }
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after() {
    let f = fixture().await;
    f.sim.set_rate_limit(Some(RateLimit {
        per_second: 0.25,
        burst: 2,
    }));
    assert_eq!(send(f.scim(Method::GET, "/Users")).await.0, 200);
    assert_eq!(send(f.scim(Method::GET, "/Groups")).await.0, 200);

    let response = f.scim(Method::GET, "/Users").send().await.unwrap();
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=4).contains(&retry), "Retry-After {retry}");
    let (status, body) = parts(response).await;
    assert_eq!(status, 429);
    assert_scim_error(&body, "429", None);

    // The public API has a bucket of its own with the same limit: SCIM's use left it full.
    let database = format!("/databases/{DATABASE_ID}");
    assert_eq!(send(f.notion(Method::GET, &database)).await.0, 200);
    assert_eq!(send(f.notion(Method::GET, &database)).await.0, 200);
    let response = f.notion(Method::GET, &database).send().await.unwrap();
    assert!(response.headers().contains_key("retry-after"));
    let (status, body) = parts(response).await;
    assert_eq!(status, 429);
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["status"], 429);

    // The control surface is never limited, and counters include refused requests.
    let counters: serde_json::Value = f
        .admin(Method::GET, "/counters")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["GET /scim/v2/Users"], 2);
    assert_eq!(counters["GET /v1/databases/{id}"], 3);

    f.sim.set_rate_limit(None);
    assert_eq!(send(f.scim(Method::GET, "/Users")).await.0, 200);
}

#[tokio::test]
async fn drop_closes_the_connection_without_a_response() {
    let f = fixture().await;
    f.sim.set_faults(Faults {
        rules: vec![rule("GET", "/scim/v2/Users", Some(1), FaultAction::Drop)],
        seed: 1,
    });
    let err = f
        .scim(Method::GET, "/Users")
        .send()
        .await
        .expect_err("the connection is closed before any response");
    assert!(err.status().is_none(), "{err:?}");
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(
        send(f.scim(Method::GET, "/Users")).await.0,
        200,
        "only once"
    );
    assert_eq!(f.sim.counters()["GET /scim/v2/Users"], 2);
}

#[tokio::test]
async fn delay_makes_an_impatient_client_time_out() {
    let f = fixture().await;
    f.sim.set_faults(Faults {
        rules: vec![rule(
            "POST",
            "/v1/data_sources",
            Some(2),
            FaultAction::Delay { ms: 400 },
        )],
        seed: 0,
    });
    let path = format!("/data_sources/{DATA_SOURCE_ID}/query");
    let err = f
        .notion(Method::POST, &path)
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .expect_err("times out");
    assert!(err.is_timeout(), "{err:?}");

    let started = Instant::now();
    let (status, _) = send(f.notion(Method::POST, &path)).await;
    assert_eq!(status, 200, "a delayed request is then answered normally");
    assert!(started.elapsed() >= Duration::from_millis(350));
}

#[tokio::test]
async fn status_faults_use_the_apis_error_body() {
    let f = fixture().await;
    f.sim.set_faults(Faults {
        rules: vec![
            rule(
                "GET",
                "/v1/",
                Some(1),
                FaultAction::Status {
                    code: 503,
                    retry_after_secs: Some(7),
                },
            ),
            rule(
                "PATCH",
                "/scim/v2/Groups",
                None,
                FaultAction::Status {
                    code: 500,
                    retry_after_secs: None,
                },
            ),
        ],
        seed: 3,
    });
    let response = f
        .notion(Method::GET, &format!("/databases/{DATABASE_ID}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "7");
    let (status, body) = parts(response).await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "service_unavailable");

    let (status, body) = f.patch_group("any", serde_json::json!([])).await;
    assert_eq!(status, 500);
    assert_scim_error(&body, "500", None);
    assert_eq!(
        send(f.scim(Method::GET, "/Groups")).await.0,
        200,
        "other endpoints unaffected"
    );
}

#[tokio::test]
async fn a_seed_reproduces_the_same_faults() {
    let f = fixture().await;
    let faults = Faults {
        rules: vec![FaultRule {
            method: None,
            path_prefix: None,
            probability: 0.5,
            remaining: None,
            action: FaultAction::Status {
                code: 529,
                retry_after_secs: None,
            },
        }],
        seed: 42,
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        f.sim.set_faults(faults.clone());
        let mut statuses = Vec::new();
        for _ in 0..24 {
            statuses.push(send(f.scim(Method::GET, "/Users")).await.0);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&529) && runs[0].contains(&200),
        "{:?}",
        runs[0]
    );
}
