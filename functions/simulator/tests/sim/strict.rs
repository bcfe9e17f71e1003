//! Where the simulator is as strict as Notion and RFC 7643/7644, so a client that passes here
//! does not lean on leniency the real services lack.

use crate::support::*;
use enroll_simulator::{RateLimit, SimConfig, SimState};
use reqwest::Method;
use serde_json::{json, Value};

fn config() -> SimConfig {
    SimConfig {
        scim_token: SCIM_TOKEN.into(),
        notion_token: NOTION_TOKEN.into(),
        scim_rate_limit: None,
        notion_rate_limit: None,
        admin_token: None,
        max_members_per_patch: None,
        state: SimState {
            databases: vec![sales_database()],
            ..SimState::default()
        },
    }
}

fn patch_body(ops: Value) -> Value {
    json!({"schemas": [PATCH_URN], "Operations": ops})
}

#[tokio::test]
async fn a_user_name_that_is_no_email_is_400_invalid_value() {
    let f = fixture().await;
    for bad in [
        "ada",
        "ada@",
        "@example.com",
        "ada@localhost",
        "ada lovelace@example.com",
    ] {
        let (status, body) = send(f.scim(Method::POST, "/Users").json(&user_body(bad))).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_scim_error(&body, "400", Some("invalidValue"));
    }
    let (_, list) = send(f.scim(Method::GET, "/Users")).await;
    assert_eq!(list["totalResults"], 0, "nothing was created");

    let id = f.create_user("ada@example.com").await;
    let mut put = user_body("not-an-email");
    put["id"] = json!(id);
    let (status, body) = send(f.scim(Method::PUT, &format!("/Users/{id}")).json(&put)).await;
    assert_eq!(status, 400, "{body}");
    assert_scim_error(&body, "400", Some("invalidValue"));

    for ops in [
        json!([{"op": "replace", "path": "userName", "value": "not-an-email"}]),
        json!([{"op": "Replace", "value": {"userName": "still not"}}]),
    ] {
        let (status, body) = send(
            f.scim(Method::PATCH, &format!("/Users/{id}"))
                .json(&patch_body(ops)),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_scim_error(&body, "400", Some("invalidValue"));
    }
    let (_, user) = send(f.scim(Method::GET, &format!("/Users/{id}"))).await;
    assert_eq!(
        user["userName"], "ada@example.com",
        "a refused change changes nothing"
    );

    let (status, _) = send(
        f.scim(Method::PATCH, &format!("/Users/{id}"))
            .json(&patch_body(
                json!([{"op": "replace", "path": "userName", "value": "ada.l@example.com"}]),
            )),
    )
    .await;
    assert_eq!(status, 200, "an email is accepted");
}

async fn query(f: &Fixture, filter: Value) -> (u16, Value) {
    send(
        f.notion(
            Method::POST,
            &format!("/data_sources/{DATA_SOURCE_ID}/query"),
        )
        .json(&json!({"filter": filter})),
    )
    .await
}

fn assert_validation_error(status: u16, body: &Value) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["object"], "error", "{body}");
    assert_eq!(body["status"], 400, "{body}");
    assert_eq!(body["code"], "validation_error", "{body}");
    assert!(
        body["message"].is_string() && body["request_id"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn a_filter_type_key_must_be_the_propertys_type() {
    let f = fixture().await;
    let (status, body) = query(
        &f,
        json!({"property": "Email", "email": {"equals": "a@example.com"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let mismatched = [
        // Email is an email property, Order and Notion user ID are rich_text, Name is a title.
        json!({"property": "Email", "rich_text": {"equals": "a@example.com"}}),
        json!({"property": "Order", "title": {"equals": "ord_1"}}),
        json!({"property": "Name", "rich_text": {"contains": "Ada"}}),
        json!({"property": "Seats", "rich_text": {"equals": "2"}}),
        json!({"property": "Order", "rich_text": {"equals": "x"}, "email": {"equals": "x"}}),
        json!({"property": "Order", "equals": "x"}),
        json!({"or": [
            {"property": "Order", "rich_text": {"equals": "ord_1"}},
            {"property": "Email", "rich_text": {"equals": "a@example.com"}}
        ]}),
    ];
    for filter in mismatched {
        let (status, body) = query(&f, filter.clone()).await;
        assert_validation_error(status, &body);
    }
}

#[tokio::test]
async fn each_remove_form_removes_what_it_names_and_no_more() {
    let f = fixture().await;
    let [a, b, c] = [
        f.create_user("a@example.com").await,
        f.create_user("b@example.com").await,
        f.create_user("c@example.com").await,
    ];
    let group = f.create_group("Course").await;
    let fill = json!([{"op": "add", "path": "members",
                       "value": [{"value": a}, {"value": b}, {"value": c}]}]);
    let mut everyone = vec![a.clone(), b.clone(), c.clone()];
    everyone.sort();

    // RFC 7644 §3.5.2.2: a value filter in the path removes the member it matches.
    f.patch_group(&group, fill.clone()).await;
    let (status, _) = f
        .patch_group(
            &group,
            json!([{"op": "remove", "path": format!("members[value eq \"{a}\"]")}]),
        )
        .await;
    assert_eq!(status, 204);
    let rest: Vec<String> = everyone.iter().filter(|m| **m != a).cloned().collect();
    assert_eq!(f.members(&group).await, rest);

    // Notion's observed reading of a value list: only the listed members leave.
    f.patch_group(&group, fill.clone()).await;
    let (status, _) = f
        .patch_group(
            &group,
            json!([{"op": "Remove", "path": "members", "value": [{"value": b}]}]),
        )
        .await;
    assert_eq!(status, 204);
    let rest: Vec<String> = everyone.iter().filter(|m| **m != b).cloned().collect();
    assert_eq!(f.members(&group).await, rest);

    // RFC 7644 §3.5.2.2: `members` with no filter and no value removes every member.
    f.patch_group(&group, fill).await;
    assert_eq!(f.members(&group).await, everyone);
    let (status, _) = f
        .patch_group(&group, json!([{"op": "rEmOvE", "path": "members"}]))
        .await;
    assert_eq!(status, 204);
    assert!(f.members(&group).await.is_empty());
}

#[tokio::test]
async fn discovery_describes_users_with_notions_extension_and_groups() {
    let f = fixture().await;
    let (status, list) = send(f.scim(Method::GET, "/ResourceTypes")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(list["totalResults"], 2);
    let user = &list["Resources"][0];
    assert_eq!(user["name"], "User");
    assert_eq!(user["endpoint"], "/Users");
    assert_eq!(user["schema"], USER_URN);
    assert_eq!(
        user["schemaExtensions"],
        json!([{"schema": NOTION_URN, "required": false}])
    );
    assert_eq!(list["Resources"][1]["endpoint"], "/Groups");
    let (status, group) = send(f.scim(Method::GET, "/ResourceTypes/Group")).await;
    assert_eq!((status, &group["schema"]), (200, &json!(GROUP_URN)));

    let (status, schemas) = send(f.scim(Method::GET, "/Schemas")).await;
    assert_eq!(status, 200, "{schemas}");
    let ids: Vec<&str> = schemas["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [USER_URN, NOTION_URN, GROUP_URN]);
    let (status, user) = send(f.scim(Method::GET, &format!("/Schemas/{USER_URN}"))).await;
    assert_eq!(status, 200, "{user}");
    let user_name = user["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "userName")
        .unwrap();
    assert_eq!(user_name["required"], true);
    assert_eq!(user_name["uniqueness"], "server");
    let (_, notion) = send(f.scim(Method::GET, &format!("/Schemas/{NOTION_URN}"))).await;
    assert_eq!(notion["attributes"][0]["name"], "role");
    assert_eq!(
        notion["attributes"][0]["canonicalValues"],
        json!(["owner", "membership_admin", "member", "restricted_member"])
    );

    let (status, spc) = send(f.scim(Method::GET, "/ServiceProviderConfig")).await;
    assert_eq!(status, 200);
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["filter"]["supported"], true);
    assert_eq!(spc["bulk"]["supported"], false);

    let (status, body) = send(f.scim(Method::GET, "/Schemas/urn:example:nothing")).await;
    assert_eq!(status, 404);
    assert_scim_error(&body, "404", None);
    // RFC 7644 §4: a filter on a discovery endpoint is refused, not silently ignored.
    let (status, body) =
        send(f.scim(Method::GET, "/ResourceTypes?filter=name%20eq%20%22User%22")).await;
    assert_eq!(status, 403);
    assert_scim_error(&body, "403", None);
    let response = f
        .http
        .get(format!("{}/Schemas", f.sim.scim_base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "discovery needs the SCIM token too");
}

#[tokio::test]
async fn scim_and_the_public_api_have_their_own_rate_limits() {
    let one_a_minute = RateLimit {
        per_second: 1.0 / 60.0,
        burst: 1,
    };
    let database = format!("/databases/{DATABASE_ID}");

    let f = fixture_config(SimConfig {
        scim_rate_limit: Some(one_a_minute),
        ..config()
    })
    .await;
    assert_eq!(send(f.scim(Method::GET, "/Users")).await.0, 200);
    let (status, body) = send(f.scim(Method::GET, "/Users")).await;
    assert_eq!(status, 429);
    assert_scim_error(&body, "429", None);
    for _ in 0..5 {
        assert_eq!(
            send(f.notion(Method::GET, &database)).await.0,
            200,
            "the public API is not limited by SCIM's use"
        );
    }

    let f = fixture_config(SimConfig {
        notion_rate_limit: Some(one_a_minute),
        ..config()
    })
    .await;
    assert_eq!(send(f.notion(Method::GET, &database)).await.0, 200);
    let (status, body) = send(f.notion(Method::GET, &database)).await;
    assert_eq!((status, &body["code"]), (429, &json!("rate_limited")));
    for _ in 0..5 {
        assert_eq!(send(f.scim(Method::GET, "/Groups")).await.0, 200);
    }

    // Each can be changed at run time without touching the other.
    f.sim.set_scim_rate_limit(Some(one_a_minute));
    f.sim.set_notion_rate_limit(None);
    assert_eq!(send(f.notion(Method::GET, &database)).await.0, 200);
    assert_eq!(send(f.scim(Method::GET, "/Groups")).await.0, 200);
    assert_eq!(send(f.scim(Method::GET, "/Groups")).await.0, 429);
}

#[tokio::test]
async fn a_patch_naming_more_members_than_the_cap_is_413() {
    let f = fixture_config(SimConfig {
        max_members_per_patch: Some(2),
        ..config()
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(f.create_user(&format!("m{n}@example.com")).await);
    }
    let group = f.create_group("Capped").await;
    let values: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();

    let (status, body) = f
        .patch_group(
            &group,
            json!([{"op": "add", "path": "members", "value": values}]),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_scim_error(&body, "413", None);
    assert!(f.members(&group).await.is_empty(), "refused whole");

    let (status, _) = f
        .patch_group(
            &group,
            json!([{"op": "add", "path": "members", "value": values[..2]}]),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = f
        .patch_group(
            &group,
            json!([{"op": "add", "path": "members", "value": values[2..]}]),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(f.members(&group).await.len(), 3);

    // One path-filter remove per member counts the same way.
    let removes: Vec<Value> = ids
        .iter()
        .map(|id| json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")}))
        .collect();
    let (status, _) = f.patch_group(&group, json!(removes)).await;
    assert_eq!(status, 413);
    assert_eq!(f.members(&group).await.len(), 3);

    // The cap can be lifted over the control surface.
    let response = f
        .admin(Method::PUT, "/max-members-per-patch")
        .json(&Value::Null)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, _) = f.patch_group(&group, json!(removes)).await;
    assert_eq!(status, 204);
    assert!(f.members(&group).await.is_empty());
}

#[tokio::test]
async fn with_an_admin_token_the_control_surface_wants_it() {
    let f = fixture_config(SimConfig {
        admin_token: Some("admin-secret".into()),
        ..config()
    })
    .await;
    f.create_user("buyer@example.com").await;
    let url = |path: &str| format!("http://{}/_sim{path}", f.sim.addr());

    for request in [
        f.http.get(url("/state")),
        f.http.get(url("/state")).bearer_auth("wrong"),
        f.http.get(url("/state")).bearer_auth(SCIM_TOKEN),
        f.http.get(url("/counters")),
        f.http.get(url("/requests")),
        f.http.put(url("/state")).body("{}"),
        f.http
            .put(url("/faults"))
            .body(r#"{"rules": [], "seed": 1}"#),
        f.http.put(url("/rate-limit")).body("null"),
        f.http.post(url("/reset-counters")),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let text = response.text().await.unwrap();
        assert!(!text.contains("buyer@example.com"), "{text}");
    }
    assert_eq!(
        f.sim.state().users.len(),
        1,
        "a refused PUT changed nothing"
    );

    let response = f
        .http
        .get(url("/state"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let state: Value = response.json().await.unwrap();
    assert_eq!(state["users"][0]["user_name"], "buyer@example.com");
    // The APIs themselves still take their own tokens.
    assert_eq!(send(f.scim(Method::GET, "/Users")).await.0, 200);
}

#[tokio::test]
async fn a_patch_path_may_name_notions_extension() {
    let f = fixture().await;
    let id = f.create_user("role@example.com").await;
    let (status, body) = send(
        f.scim(Method::PATCH, &format!("/Users/{id}"))
            .json(&patch_body(json!([{"op": "replace", "path": NOTION_URN,
                                      "value": {"role": "restricted_member"}}]))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[NOTION_URN]["role"], "restricted_member");
    let (status, body) = send(
        f.scim(Method::PATCH, &format!("/Users/{id}"))
            .json(&patch_body(json!([{"op": "replace", "path": NOTION_URN,
                                      "value": {"role": "emperor"}}]))),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_scim_error(&body, "400", Some("invalidValue"));
}
