use crate::support::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn create_answers_201_with_location_meta_and_a_v4_uuid() {
    let f = fixture().await;
    let response = f
        .scim(Method::POST, "/Users")
        .json(&user_body("ada@example.com"))
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["content-type"], "application/scim+json");
    let (status, body) = parts(response).await;
    assert_eq!(status, 201);
    let id = body["id"].as_str().unwrap();
    let uuid = uuid::Uuid::parse_str(id).unwrap();
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(id, uuid.hyphenated().to_string());
    assert_eq!(location, format!("{}/Users/{id}", f.sim.scim_base_url()));
    assert_eq!(body["meta"]["location"], json!(location));
    assert_eq!(body["meta"]["resourceType"], "User");
    assert!(body["meta"]["created"].is_string() && body["meta"]["lastModified"].is_string());
    assert_eq!(body["userName"], "ada@example.com");
    assert_eq!(body["active"], true);
    assert_eq!(body[NOTION_URN]["role"], "member");
    assert_eq!(body["name"]["givenName"], "Ada");

    let (status, fetched) = send(f.scim(Method::GET, &format!("/Users/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, body);
    assert!(f.sim.user_by_email("ADA@example.com").unwrap().is_member());
}

#[tokio::test]
async fn missing_user_name_is_invalid_value() {
    let f = fixture().await;
    let mut body = user_body("x@example.com");
    body.as_object_mut().unwrap().remove("userName");
    let (status, err) = send(f.scim(Method::POST, "/Users").json(&body)).await;
    assert_eq!(status, 400);
    assert_scim_error(&err, "400", Some("invalidValue"));
}

#[tokio::test]
async fn duplicate_member_is_409_uniqueness_ignoring_case() {
    let f = fixture().await;
    f.create_user("dup@example.com").await;
    let (status, err) = send(
        f.scim(Method::POST, "/Users")
            .json(&user_body("DUP@Example.com")),
    )
    .await;
    assert_eq!(status, 409);
    assert_scim_error(&err, "409", Some("uniqueness"));
    assert_eq!(f.sim.state().users.len(), 1);
}

#[tokio::test]
async fn unknown_user_is_404_and_bad_token_is_401() {
    let f = fixture().await;
    let (status, err) =
        send(f.scim(Method::GET, "/Users/3c0b1b2e-0000-4000-8000-000000000000")).await;
    assert_eq!(status, 404);
    assert_scim_error(&err, "404", None);

    let url = format!("{}/Users", f.sim.scim_base_url());
    let (status, err) = send(f.http.get(&url)).await;
    assert_eq!(status, 401);
    assert_scim_error(&err, "401", None);
    let (status, _) = send(f.http.get(&url).bearer_auth("wrong")).await;
    assert_eq!(status, 401);
    let (status, _) = send(f.http.get(&url).bearer_auth(NOTION_TOKEN)).await;
    assert_eq!(status, 401, "the public API token is not a SCIM token");
}

#[tokio::test]
async fn list_pages_with_one_based_start_index_and_caps_count() {
    let f = fixture().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(f.create_user(&format!("u{i}@example.com")).await);
    }
    let (status, body) = send(f.scim(Method::GET, "/Users?startIndex=3&count=2")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(body["totalResults"], 5);
    assert_eq!(body["startIndex"], 3);
    assert_eq!(body["itemsPerPage"], 2);
    let got: Vec<&str> = body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[3].as_str()]);

    let (_, last) = send(f.scim(Method::GET, "/Users?startIndex=5&count=2")).await;
    assert_eq!(last["itemsPerPage"], 1);
    let (_, beyond) = send(f.scim(Method::GET, "/Users?startIndex=9")).await;
    assert_eq!(beyond["itemsPerPage"], 0);
    assert_eq!(beyond["totalResults"], 5);

    let (_, zero) = send(f.scim(Method::GET, "/Users?startIndex=0&count=0")).await;
    assert_eq!(zero["startIndex"], 1);
    assert_eq!(zero["totalResults"], 5);
    assert_eq!(zero["itemsPerPage"], 0);

    let (status, err) = send(f.scim(Method::GET, "/Users?count=lots")).await;
    assert_eq!(status, 400);
    assert_scim_error(&err, "400", Some("invalidValue"));
}

#[tokio::test]
async fn count_is_capped_at_100() {
    let state = enroll_simulator::SimState {
        users: (0..120)
            .map(|i| {
                serde_json::from_value(json!({"user_name": format!("bulk{i}@example.com")}))
                    .unwrap()
            })
            .collect(),
        ..Default::default()
    };
    let f = fixture_with(state).await;
    let (_, body) = send(f.scim(Method::GET, "/Users?count=500")).await;
    assert_eq!(body["totalResults"], 120);
    assert_eq!(body["itemsPerPage"], 100);
    let (_, rest) = send(f.scim(Method::GET, "/Users?startIndex=101")).await;
    assert_eq!(rest["itemsPerPage"], 20);
}

#[tokio::test]
async fn delete_removes_from_workspace_and_groups_and_post_re_adds_same_id() {
    let f = fixture().await;
    let id = f.create_user("leaver@example.com").await;
    let group = f.create_group("Course A").await;
    let (status, _) = f
        .patch_group(
            &group,
            json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
        )
        .await;
    assert_eq!(status, 204);

    let (status, body) = send(f.scim(Method::DELETE, &format!("/Users/{id}"))).await;
    assert_eq!((status, body), (204, serde_json::Value::Null));
    assert!(f.sim.group_members("Course A").is_empty());
    let (status, _) = send(f.scim(Method::GET, &format!("/Users/{id}"))).await;
    assert_eq!(status, 404);
    let (_, list) = f.find_users(r#"userName eq "leaver@example.com""#).await;
    assert_eq!(list["totalResults"], 0);
    let (status, _) = send(f.scim(Method::DELETE, &format!("/Users/{id}"))).await;
    assert_eq!(status, 404);

    let (status, body) = send(
        f.scim(Method::POST, "/Users")
            .json(&user_body("Leaver@example.com")),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["id"], json!(id), "the Notion account keeps its id");
    assert_eq!(body["active"], true);
    // Re-adding restores membership of the workspace, not of Groups.
    assert!(f.sim.group_members("Course A").is_empty());
}

#[tokio::test]
async fn deactivating_keeps_the_user_listed_and_leaves_groups() {
    let f = fixture().await;
    let id = f.create_user("pause@example.com").await;
    let group = f.create_group("Course B").await;
    f.patch_group(
        &group,
        json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
    )
    .await;
    let (status, body) = send(f.scim(Method::PATCH, &format!("/Users/{id}")).json(&json!({
        "schemas": [PATCH_URN],
        "Operations": [
            {"op": "Replace", "path": "active", "value": false},
            {"op": "replace", "path": "name.givenName", "value": "Augusta"}
        ]
    })))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], false);
    assert_eq!(body["name"]["givenName"], "Augusta");
    assert!(f.sim.group_members("Course B").is_empty());
    let (_, list) = f.find_users(r#"userName eq "pause@example.com""#).await;
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["active"], false);

    // An inactive account is not a member, so POST brings it back instead of a 409.
    let (status, body) = send(
        f.scim(Method::POST, "/Users")
            .json(&user_body("pause@example.com")),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["id"], json!(id));

    // Azure AD style: no path, string boolean.
    let (status, body) = send(f.scim(Method::PATCH, &format!("/Users/{id}")).json(&json!({
        "schemas": [PATCH_URN],
        "Operations": [{"op": "replace", "value": {"active": "False", "displayName": "A. L."}}]
    })))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], false);
    assert_eq!(body["displayName"], "A. L.");
}

#[tokio::test]
async fn patch_is_atomic_and_refuses_unknown_paths() {
    let f = fixture().await;
    let id = f.create_user("atomic@example.com").await;
    let (status, err) = send(f.scim(Method::PATCH, &format!("/Users/{id}")).json(&json!({
        "schemas": [PATCH_URN],
        "Operations": [
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": "favouriteColour", "value": "blue"}
        ]
    })))
    .await;
    assert_eq!(status, 400);
    assert_scim_error(&err, "400", Some("invalidPath"));
    assert_eq!(
        f.sim
            .user_by_email("atomic@example.com")
            .unwrap()
            .display_name,
        None
    );
}

#[tokio::test]
async fn put_replaces_and_checks_uniqueness() {
    let f = fixture().await;
    let id = f.create_user("put@example.com").await;
    f.create_user("taken@example.com").await;
    let mut body = user_body("put@example.com");
    body[NOTION_URN]["role"] = json!("restricted_member");
    body["displayName"] = json!("Put");
    let (status, got) = send(f.scim(Method::PUT, &format!("/Users/{id}")).json(&body)).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got[NOTION_URN]["role"], "restricted_member");
    assert_eq!(got["displayName"], "Put");

    let (status, err) = send(
        f.scim(Method::PUT, &format!("/Users/{id}"))
            .json(&user_body("TAKEN@example.com")),
    )
    .await;
    assert_eq!(status, 409);
    assert_scim_error(&err, "409", Some("uniqueness"));

    let mut bad_role = user_body("put@example.com");
    bad_role[NOTION_URN]["role"] = json!("guest");
    let (status, _) = send(f.scim(Method::PUT, &format!("/Users/{id}")).json(&bad_role)).await;
    assert_eq!(status, 400);
}
