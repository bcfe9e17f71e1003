use crate::support::*;
use enroll_simulator::{PropertyValue, SimState};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn state_round_trips_through_the_handle_and_http() {
    let f = fixture().await;
    let id = f.create_user("seed@example.com").await;
    let group = f.create_group("Seeded").await;
    f.patch_group(
        &group,
        json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
    )
    .await;
    let (status, _) = send(f.notion(Method::POST, "/pages").json(&json!({
        "parent": {"data_source_id": DATA_SOURCE_ID},
        "properties": {"Email": {"email": "seed@example.com"}}
    })))
    .await;
    assert_eq!(status, 200);

    let dumped: Value = f
        .admin(Method::GET, "/state")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let state: SimState = serde_json::from_value(dumped.clone()).unwrap();
    assert_eq!(state, f.sim.state());
    assert_eq!(
        state.pages[0].properties["Email"],
        PropertyValue::Email(Some("seed@example.com".into()))
    );

    // Seed a fresh simulator over HTTP and it serves the same workspace.
    let g = fixture_with(SimState::default()).await;
    let response = g
        .admin(Method::PUT, "/state")
        .json(&dumped)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(g.sim.state(), state);
    let (status, user) = send(g.scim(Method::GET, &format!("/Users/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(user["userName"], "seed@example.com");
    assert_eq!(g.sim.group_members("seeded"), [id.as_str()]);

    // A hand-written seed may leave out ids and timestamps.
    let minimal = json!({"users": [{"user_name": "hand@example.com"}],
                         "groups": [{"display_name": "Hand"}]});
    g.admin(Method::PUT, "/state")
        .json(&minimal)
        .send()
        .await
        .unwrap();
    let (_, list) = send(g.scim(Method::GET, "/Users")).await;
    assert_eq!(list["totalResults"], 1);
    assert!(uuid::Uuid::parse_str(list["Resources"][0]["id"].as_str().unwrap()).is_ok());

    let response = g
        .admin(Method::PUT, "/state")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    f.sim.set_state(SimState::default());
    assert!(f.sim.state().users.is_empty());
}

#[tokio::test]
async fn counters_and_requests_record_traffic() {
    let f = fixture().await;
    let id = f.create_user("count@example.com").await;
    send(f.scim(Method::GET, &format!("/Users/{id}"))).await;
    send(f.scim(Method::GET, "/Users/00000000-0000-4000-8000-000000000000")).await;
    send(
        f.notion(
            Method::POST,
            &format!("/data_sources/{DATA_SOURCE_ID}/query"),
        )
        .json(&json!({})),
    )
    .await;
    send(f.admin(Method::GET, "/state")).await;

    let counters = f.sim.counters();
    assert_eq!(counters["POST /scim/v2/Users"], 1);
    assert_eq!(counters["GET /scim/v2/Users/{id}"], 2);
    assert_eq!(counters["POST /v1/data_sources/{id}/query"], 1);
    assert_eq!(
        counters.len(),
        3,
        "the control surface is not counted: {counters:?}"
    );

    let requests = f.sim.requests();
    assert_eq!(requests.len(), 4);
    let query = &requests[3];
    assert_eq!(query.method, "POST");
    assert_eq!(
        query.path,
        format!("/v1/data_sources/{DATA_SOURCE_ID}/query")
    );
    assert_eq!(query.headers["notion-version"], VERSION);
    assert_eq!(query.headers["content-type"], "application/json");
    assert!(!query.headers.contains_key("authorization"));
    assert_eq!(query.body, "{}");
    let create: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(create["userName"], "count@example.com");

    let over_http: Value = f
        .admin(Method::GET, "/requests")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http.as_array().unwrap().len(), 4);

    let response = f
        .admin(Method::POST, "/reset-counters")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(f.sim.counters().is_empty());
    assert!(f.sim.requests().is_empty());
}

#[tokio::test]
async fn faults_and_rate_limit_are_set_over_http() {
    let f = fixture().await;
    let faults = json!({"seed": 9, "rules": [
        {"method": "GET", "path_prefix": "/scim/v2/Groups", "remaining": 1,
         "action": {"type": "status", "code": 502, "retry_after_secs": 2}}
    ]});
    let response = f
        .admin(Method::PUT, "/faults")
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(send(f.scim(Method::GET, "/Groups")).await.0, 502);
    assert_eq!(send(f.scim(Method::GET, "/Groups")).await.0, 200);

    let limit = json!({"per_second": 0.1, "burst": 1});
    assert_eq!(
        f.admin(Method::PUT, "/rate-limit")
            .json(&limit)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(send(f.scim(Method::GET, "/Groups")).await.0, 200);
    assert_eq!(send(f.scim(Method::GET, "/Groups")).await.0, 429);
    let lifted = f
        .admin(Method::PUT, "/rate-limit")
        .json(&Value::Null)
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 204);
    assert_eq!(send(f.scim(Method::GET, "/Groups")).await.0, 200);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let f = fixture().await;
    let url = f.sim.scim_base_url();
    f.sim.shutdown().await;
    let result = f
        .http
        .get(format!("{url}/Users"))
        .bearer_auth(SCIM_TOKEN)
        .send()
        .await;
    assert!(result.is_err());
}
