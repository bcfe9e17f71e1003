use crate::support::{budget, fast_retries, Answer, Server, TOKEN};
use enroll_core::config::{RemoveForm, ScimConfig, Secret};
use enroll_core::ids::{BuyerEmail, GroupId, NotionUserId};
use enroll_core::ports::{Created, Directory};
use enroll_notion::scim::{encode_query_value, user_filter};
use enroll_notion::ScimClient;
use serde_json::{json, Value};

fn config(server: &Server) -> ScimConfig {
    ScimConfig {
        base_url: format!("{}/scim/v2/", server.url),
        token: Secret::new(TOKEN),
        ..ScimConfig::default()
    }
}

fn client(server: &Server) -> ScimClient {
    ScimClient::new(&config(server), budget())
        .unwrap()
        .with_retry(fast_retries())
}

fn email(raw: &str) -> BuyerEmail {
    BuyerEmail::parse(raw).unwrap()
}

fn uid(raw: &str) -> NotionUserId {
    NotionUserId::parse(raw).unwrap()
}

fn ids(raw: &[&str]) -> Vec<NotionUserId> {
    raw.iter().map(|r| uid(r)).collect()
}

fn list(resources: Value) -> Answer {
    let n = resources.as_array().map_or(0, Vec::len);
    Answer::json(
        200,
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": n,
            "startIndex": 1,
            "itemsPerPage": n,
            "Resources": resources,
        }),
    )
}

fn no_match() -> Answer {
    Answer::json(
        200,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0}),
    )
}

/// Decodes a `filter` query value the way a SCIM server would and checks it is one `eq`
/// comparison whose literal is exactly `expected`.
fn assert_single_eq(target: &str, attr: &str, expected: &str) {
    let query = target.split_once('?').unwrap().1;
    let filter = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("filter="))
        .unwrap();
    let decoded = percent_encoding::percent_decode_str(filter)
        .decode_utf8()
        .unwrap();
    let literal = decoded
        .strip_prefix(&format!("{attr} eq "))
        .unwrap_or_else(|| panic!("{decoded}"));
    let value: String = serde_json::from_str(literal).expect("the rest is one string literal");
    assert_eq!(value, expected);
}

#[tokio::test]
async fn find_user_sends_an_escaped_encoded_filter() {
    let cases = [
        (
            "Ada+Course@Example.com",
            "/scim/v2/Users?filter=userName%20eq%20%22ada%2Bcourse%40example.com%22&startIndex=1&count=2",
        ),
        (
            r#""Zoë\x"@Exämple.org"#,
            "/scim/v2/Users?filter=userName%20eq%20%22%5C%22zo%C3%AB%5C%5Cx%5C%22%40ex%C3%A4mple.org%22&startIndex=1&count=2",
        ),
        (
            r#"a"or"b@x.org"#,
            "/scim/v2/Users?filter=userName%20eq%20%22a%5C%22or%5C%22b%40x.org%22&startIndex=1&count=2",
        ),
    ];
    for (raw, target) in cases {
        let server = Server::start(vec![no_match()]).await;
        let e = email(raw);
        assert_eq!(client(&server).find_user(&e).await.unwrap(), None);
        let seen = server.seen().await;
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].line(), format!("GET {target}"));
        assert_eq!(
            seen[0].header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_single_eq(&seen[0].target, "userName", e.as_str());
    }
}

#[test]
fn filters_that_try_to_break_out_stay_one_comparison() {
    let hostile = r#"x" or userName pr ""#;
    let f = user_filter("userName", hostile);
    assert_eq!(f, r#"userName eq "x\" or username pr \"""#);
    assert_eq!(
        encode_query_value(&f),
        "userName%20eq%20%22x%5C%22%20or%20username%20pr%20%5C%22%22"
    );
    let spaced = user_filter("emails.value", "Jo Ann+1@Ünï.de");
    assert_eq!(
        encode_query_value(&spaced),
        "emails.value%20eq%20%22jo%20ann%2B1%40%C3%BCn%C3%AF.de%22"
    );
    for raw in [hostile, "a\\\"b", "q\u{1}\u{1f}\"\\", "Jo Ann+1@Ünï.de"] {
        let target = format!(
            "/Users?filter={}",
            encode_query_value(&user_filter("userName", raw))
        );
        assert_single_eq(&target, "userName", &raw.to_lowercase());
    }
}

#[tokio::test]
async fn the_configured_attribute_is_used() {
    let server = Server::start(vec![no_match()]).await;
    let cfg = ScimConfig {
        user_filter_attribute: "emails.value".into(),
        ..config(&server)
    };
    let c = ScimClient::new(&cfg, budget()).unwrap();
    c.find_user(&email("a@b.co")).await.unwrap();
    assert_eq!(
        server.lines().await,
        ["GET /scim/v2/Users?filter=emails.value%20eq%20%22a%40b.co%22&startIndex=1&count=2"]
    );
    let bad = ScimConfig {
        user_filter_attribute: "userName pr or".into(),
        ..config(&server)
    };
    assert!(ScimClient::new(&bad, budget()).is_err());
}

#[tokio::test]
async fn find_user_prefers_the_exact_match() {
    let server = Server::start(vec![list(json!([
        {"id": "u-other", "userName": "ada.other@example.com"},
        {"id": "u-ada", "userName": "ADA@example.com", "active": true,
         "urn:ietf:params:scim:schemas:extension:notion:2.0:User": {"role": "member"}},
    ]))])
    .await;
    let user = client(&server)
        .find_user(&email("ada@example.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.id.as_str(), "u-ada");
    assert_eq!(user.role.as_deref(), Some("member"));
}

#[tokio::test]
async fn find_user_matches_on_emails_and_never_returns_a_stranger() {
    let server = Server::start(vec![
        list(
            json!([{"id": "u1", "userName": "ada-sso", "emails": [{"value": "Ada@Example.com"}]}]),
        ),
        list(json!([{"id": "u2", "userName": "bob@example.com"}])),
    ])
    .await;
    let c = client(&server);
    let e = email("ada@example.com");
    assert_eq!(c.find_user(&e).await.unwrap().unwrap().id.as_str(), "u1");
    let err = c.find_user(&e).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(!err.reason.contains("ada@example.com"), "{err}");
}

#[tokio::test]
async fn create_user_posts_a_scim_user() {
    let server = Server::start(vec![Answer::json(
        201,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u-new",
               "userName": "ada+course@example.com", "active": true}),
    )])
    .await;
    let created = client(&server)
        .create_user(&email("Ada+Course@example.com"), Some("Ada  Lovelace"))
        .await
        .unwrap();
    let Created::Created(user) = created else {
        panic!("{created:?}")
    };
    assert_eq!(user.id.as_str(), "u-new");
    assert!(user.role.is_none());
    let seen = server.seen().await;
    assert_eq!(seen[0].line(), "POST /scim/v2/Users");
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/scim+json")
    );
    assert_eq!(
        seen[0].json(),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada+course@example.com",
            "name": {"formatted": "Ada Lovelace", "givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada+course@example.com", "primary": true, "type": "work"}],
            "active": true
        })
    );
}

/// RFC 7643 section 3: `schemas` names the core schema and exactly the extensions whose
/// attributes the body carries. Strict servers answer 400 "Unknown extension schemas" to an
/// extension listed without attributes.
fn assert_lists_only_what_it_carries(body: &Value) {
    let schemas: Vec<&str> = body["schemas"]
        .as_array()
        .expect("schemas is a list")
        .iter()
        .map(|s| s.as_str().expect("a schema URI"))
        .collect();
    let core = [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:api:messages:2.0:PatchOp",
    ];
    assert_eq!(
        schemas.iter().filter(|s| core.contains(s)).count(),
        1,
        "one core or message schema: {body}"
    );
    for s in schemas.iter().filter(|s| !core.contains(s)) {
        let ext = body
            .get(*s)
            .unwrap_or_else(|| panic!("{s} listed, not carried: {body}"));
        assert!(
            ext.as_object().is_some_and(|o| !o.is_empty()),
            "{s} listed with no attribute: {body}"
        );
    }
    for key in body.as_object().unwrap().keys() {
        if key.starts_with("urn:") {
            assert!(
                schemas.contains(&key.as_str()),
                "{key} carried, not listed: {body}"
            );
        }
    }
}

#[tokio::test]
async fn create_user_sends_notions_extension_only_with_a_role() {
    let created = || {
        Answer::json(
            201,
            json!({"id": "u-new", "userName": "ada@example.com", "active": true}),
        )
    };
    let server = Server::start(vec![created(), created()]).await;
    client(&server)
        .create_user(&email("ada@example.com"), None)
        .await
        .unwrap();
    let cfg = ScimConfig {
        role: Some("restricted_member".into()),
        ..config(&server)
    };
    ScimClient::new(&cfg, budget())
        .unwrap()
        .create_user(&email("ada@example.com"), Some("Ada"))
        .await
        .unwrap();
    let seen = server.seen().await;
    let (plain, with_role) = (seen[0].json(), seen[1].json());
    assert_eq!(
        plain["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );
    assert!(plain
        .get("urn:ietf:params:scim:schemas:extension:notion:2.0:User")
        .is_none());
    assert_eq!(
        with_role["schemas"],
        json!([
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:notion:2.0:User"
        ])
    );
    assert_eq!(
        with_role["urn:ietf:params:scim:schemas:extension:notion:2.0:User"],
        json!({"role": "restricted_member"})
    );
    assert_lists_only_what_it_carries(&plain);
    assert_lists_only_what_it_carries(&with_role);
}

#[tokio::test]
async fn a_blank_role_is_no_role() {
    let server = Server::start(vec![Answer::json(
        201,
        json!({"id": "u-new", "userName": "ada@example.com"}),
    )])
    .await;
    let cfg = ScimConfig {
        role: Some("  ".into()),
        ..config(&server)
    };
    ScimClient::new(&cfg, budget())
        .unwrap()
        .create_user(&email("ada@example.com"), None)
        .await
        .unwrap();
    let body = server.seen().await[0].json();
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );
    assert_lists_only_what_it_carries(&body);
}

#[tokio::test]
async fn group_patches_list_only_the_patch_op_schema() {
    let server = Server::start(vec![
        Answer::empty(204),
        Answer::empty(204),
        Answer::empty(204),
    ])
    .await;
    let g = GroupId::parse("g1").unwrap();
    client(&server)
        .add_members(&g, &ids(&["u1", "u2"]))
        .await
        .unwrap();
    client(&server)
        .remove_members(&g, &ids(&["u1"]))
        .await
        .unwrap();
    let cfg = ScimConfig {
        remove_form: RemoveForm::ValueList,
        ..config(&server)
    };
    ScimClient::new(&cfg, budget())
        .unwrap()
        .remove_members(&g, &ids(&["u2"]))
        .await
        .unwrap();
    let seen = server.seen().await;
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.method, "PATCH", "enroll never PUTs a resource");
        let body = s.json();
        assert_eq!(
            body["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"])
        );
        assert_lists_only_what_it_carries(&body);
    }
}

#[tokio::test]
async fn create_user_reports_409_as_already_exists() {
    let server = Server::start(vec![Answer::json(
        409,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
               "status": "409", "scimType": "uniqueness", "detail": "User exists"}),
    )])
    .await;
    let created = client(&server)
        .create_user(&email("ada@example.com"), None)
        .await
        .unwrap();
    assert_eq!(created, Created::AlreadyExists);
    assert!(server.seen().await[0].json().get("name").is_none());
    assert_eq!(server.seen().await.len(), 1);
}

#[tokio::test]
async fn create_user_looks_up_before_posting_again_after_a_5xx() {
    let server = Server::start(vec![
        Answer::empty(500),
        list(json!([{"id": "u-made", "userName": "ada@example.com"}])),
    ])
    .await;
    let created = client(&server)
        .create_user(&email("ada@example.com"), None)
        .await
        .unwrap();
    assert!(matches!(created, Created::Created(u) if u.id.as_str() == "u-made"));
    let lines = server.lines().await;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], "POST /scim/v2/Users");
    assert!(
        lines[1].starts_with("GET /scim/v2/Users?filter="),
        "{lines:?}"
    );

    let server = Server::start(vec![
        Answer::empty(503),
        no_match(),
        Answer::json(201, json!({"id": "u-2", "userName": "ada@example.com"})),
    ])
    .await;
    let created = client(&server)
        .create_user(&email("ada@example.com"), None)
        .await
        .unwrap();
    assert!(matches!(created, Created::Created(u) if u.id.as_str() == "u-2"));
    assert_eq!(server.seen().await.len(), 3);
}

#[tokio::test]
async fn get_and_remove_user_treat_404_as_absent() {
    let server = Server::start(vec![
        Answer::json(
            404,
            json!({"status": "404", "detail": "Resource not found"}),
        ),
        Answer::json(
            200,
            json!({"id": "u1", "userName": "a@b.co", "active": false}),
        ),
        Answer::json(404, json!({"status": "404"})),
        Answer::empty(204),
    ])
    .await;
    let c = client(&server);
    assert_eq!(c.get_user(&uid("u0")).await.unwrap(), None);
    let u = c.get_user(&uid("u1")).await.unwrap().unwrap();
    assert!(!u.active);
    c.remove_user(&uid("gone")).await.unwrap();
    c.remove_user(&uid("u1")).await.unwrap();
    assert_eq!(
        server.lines().await,
        [
            "GET /scim/v2/Users/u0",
            "GET /scim/v2/Users/u1",
            "DELETE /scim/v2/Users/gone",
            "DELETE /scim/v2/Users/u1"
        ]
    );
}

fn add_body(users: &[&str]) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{
            "op": "add",
            "path": "members",
            "value": users.iter().map(|u| json!({"value": u})).collect::<Vec<_>>()
        }]
    })
}

#[tokio::test]
async fn add_members_batches_and_splits_on_413() {
    let server = Server::start(vec![
        Answer::empty(413),
        Answer::json(200, json!({"id": "g1"})),
        Answer::empty(413),
        Answer::empty(204),
        Answer::empty(204),
        Answer::empty(204),
    ])
    .await;
    let cfg = ScimConfig {
        batch_size: 4,
        ..config(&server)
    };
    let c = ScimClient::new(&cfg, budget()).unwrap();
    let users = ids(&["u1", "u2", "u3", "u4", "u5", "u1"]);
    c.add_members(&GroupId::parse("g1").unwrap(), &users)
        .await
        .unwrap();
    let seen = server.seen().await;
    assert!(seen.iter().all(|s| s.line() == "PATCH /scim/v2/Groups/g1"));
    let bodies: Vec<Value> = seen.iter().map(|s| s.json()).collect();
    assert_eq!(
        bodies,
        [
            add_body(&["u1", "u2", "u3", "u4"]),
            add_body(&["u1", "u2"]),
            add_body(&["u3", "u4"]),
            add_body(&["u3"]),
            add_body(&["u4"]),
            add_body(&["u5"]),
        ]
    );
}

#[tokio::test]
async fn a_single_member_refused_with_413_is_permanent() {
    let server = Server::start(vec![Answer::empty(413)]).await;
    let err = client(&server)
        .add_members(&GroupId::parse("g1").unwrap(), &ids(&["u1"]))
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(err.reason.contains("413"), "{err}");
}

#[tokio::test]
async fn remove_members_uses_one_path_filter_per_member() {
    let server = Server::start(vec![Answer::empty(204), Answer::empty(204)]).await;
    let cfg = ScimConfig {
        batch_size: 2,
        ..config(&server)
    };
    let c = ScimClient::new(&cfg, budget()).unwrap();
    c.remove_members(
        &GroupId::parse("g 1").unwrap(),
        &ids(&["u1", r#"u"2\"#, "u3"]),
    )
    .await
    .unwrap();
    let seen = server.seen().await;
    assert_eq!(seen[0].line(), "PATCH /scim/v2/Groups/g%201");
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/scim+json")
    );
    assert_eq!(
        seen[0].json(),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "remove", "path": "members[value eq \"u1\"]"},
                {"op": "remove", "path": "members[value eq \"u\\\"2\\\\\"]"}
            ]
        })
    );
    let raw = String::from_utf8(seen[0].body.clone()).unwrap();
    assert!(
        raw.contains(r#""path":"members[value eq \"u\\\"2\\\\\"]""#),
        "{raw}"
    );
    assert_eq!(
        seen[1].json(),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": "members[value eq \"u3\"]"}]
        })
    );
}

#[tokio::test]
async fn remove_members_in_value_list_form_always_carries_the_values() {
    let server = Server::start(vec![Answer::empty(204)]).await;
    let cfg = ScimConfig {
        remove_form: RemoveForm::ValueList,
        ..config(&server)
    };
    let c = ScimClient::new(&cfg, budget()).unwrap();
    let g = GroupId::parse("g1").unwrap();
    c.remove_members(&g, &ids(&["u1", "u2"])).await.unwrap();
    assert_eq!(
        server.seen().await[0].json(),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": "members",
                            "value": [{"value": "u1"}, {"value": "u2"}]}]
        })
    );
    let err = c.remove_members(&g, &[]).await.unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(
        server.seen().await.len(),
        1,
        "nothing sent for an empty removal"
    );
}

#[tokio::test]
async fn find_group_filters_by_display_name_without_members() {
    let server = Server::start(vec![
        list(
            json!([{"id": "g-other", "displayName": "Notion Mastery II"},
                    {"id": "g-nm", "displayName": "Notion Mastery"}]),
        ),
        list(json!([])),
    ])
    .await;
    let c = client(&server);
    let g = c.find_group("Notion Mastery").await.unwrap();
    assert_eq!(g.unwrap().as_str(), "g-nm");
    assert_eq!(c.find_group(r#"Say "hi""#).await.unwrap(), None);
    assert_eq!(
        server.lines().await,
        [
            "GET /scim/v2/Groups?filter=displayName%20eq%20%22Notion%20Mastery%22&excludedAttributes=members",
            "GET /scim/v2/Groups?filter=displayName%20eq%20%22Say%20%5C%22hi%5C%22%22&excludedAttributes=members",
        ]
    );
}

#[tokio::test]
async fn list_all_users_pages_by_start_index() {
    let server = Server::start(vec![
        Answer::json(
            200,
            json!({"totalResults": 3, "Resources": [
                {"id": "u1", "userName": "a@x.org"},
                {"id": "u2", "userName": "b@x.org",
                 "urn:ietf:params:scim:schemas:extension:notion:2.0:User": {"role": "owner"}}]}),
        ),
        Answer::json(200, json!({"totalResults": 3, "Resources": [{"id": "u3"}]})),
    ])
    .await;
    let users = client(&server).list_all_users().await.unwrap();
    assert_eq!(users.len(), 3);
    assert!(users[1].is_privileged());
    assert_eq!(
        server.lines().await,
        [
            "GET /scim/v2/Users?startIndex=1&count=100",
            "GET /scim/v2/Users?startIndex=3&count=2"
        ]
    );
}

/// A directory of `members` users (`u0001`, ...) that returns at most `cap` per page, at a
/// delay so that pages asked for together are in flight together; `short` pages, keyed by
/// their startIndex, hold only that many users.
async fn directory(members: usize, cap: usize, short: &'static [(usize, usize)]) -> Server {
    Server::answering(move |r| {
        let param = |name: &str| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap()
        };
        let start = param("startIndex");
        let mut count = param("count").min(cap);
        if let Some((_, n)) = short.iter().find(|(s, _)| *s == start) {
            count = count.min(*n);
        }
        let users: Vec<Value> = (start..start + count)
            .take_while(|i| *i <= members)
            .map(|i| json!({"id": format!("u{i:04}"), "userName": format!("m{i}@x.org")}))
            .collect();
        Answer::json(200, json!({"totalResults": members, "Resources": users}))
            .after(std::time::Duration::from_millis(20))
    })
    .await
}

fn start_indices(lines: &[String]) -> Vec<String> {
    let mut starts: Vec<String> = lines
        .iter()
        .map(|l| l.trim_start_matches("GET /scim/v2/Users?").to_owned())
        .collect();
    starts.sort();
    starts
}

fn expected_ids(members: usize) -> Vec<String> {
    (1..=members).map(|i| format!("u{i:04}")).collect()
}

#[tokio::test]
async fn list_all_users_asks_for_every_page_once_and_keeps_the_order() {
    let server = directory(1050, 100, &[]).await;
    let users = client(&server).list_all_users().await.unwrap();
    let got: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(got, expected_ids(1050));
    let mut want: Vec<String> = (0..11)
        .map(|p| format!("startIndex={}&count=100", 1 + p * 100))
        .collect();
    want.sort();
    assert_eq!(start_indices(&server.lines().await), want);
}

#[tokio::test]
async fn list_all_users_follows_a_smaller_server_page_and_fills_a_short_page() {
    // The server gives 40 per page; the page at 41 comes back with only 25, leaving 66..80
    // to be asked for on its own.
    let server = directory(130, 40, &[(41, 25)]).await;
    let users = client(&server).list_all_users().await.unwrap();
    let got: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(got, expected_ids(130));
    let mut want: Vec<String> = [
        "startIndex=1&count=100",
        "startIndex=41&count=40",
        "startIndex=66&count=15",
        "startIndex=81&count=40",
        "startIndex=121&count=40",
    ]
    .map(String::from)
    .to_vec();
    want.sort();
    assert_eq!(start_indices(&server.lines().await), want);
}

#[tokio::test]
async fn group_members_lists_user_ids() {
    let server = Server::start(vec![Answer::json(
        200,
        json!({"id": "g1", "displayName": "G",
               "members": [{"value": "u1"}, {"value": "u2", "type": "User"}, {"value": "g9", "type": "Group"}]}),
    )])
    .await;
    let members = client(&server)
        .group_members(&GroupId::parse("g1").unwrap())
        .await
        .unwrap();
    assert_eq!(members, ids(&["u1", "u2"]));
    assert_eq!(server.lines().await, ["GET /scim/v2/Groups/g1"]);
}
