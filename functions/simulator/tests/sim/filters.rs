use crate::support::*;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{json, Value};

const TRICKY: &[&str] = &[
    "quote\"mark@example.com",
    "back\\slash@example.com",
    "plus+tag@example.com",
    "plus tag@example.com",
    "zoë.ünïcode@exämple.com",
    "a\\\"both@example.com",
];

fn eq_filter(attr: &str, value: &str) -> String {
    // RFC 7644 filter strings are JSON strings: JSON escaping is exactly right.
    format!("{attr} eq {}", serde_json::to_string(value).unwrap())
}

fn user_names(body: &Value) -> Vec<String> {
    body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn escaped_values_find_exactly_their_user() {
    let f = fixture().await;
    for email in TRICKY {
        f.seed_user(email);
    }
    for email in TRICKY {
        for attr in ["userName", "email", "emails.value", "USERNAME"] {
            let (status, body) = f.find_users(&eq_filter(attr, email)).await;
            assert_eq!(status, 200, "{attr} {email}: {body}");
            assert_eq!(user_names(&body), [*email], "{attr} {email}");
        }
        // The same filter percent-encoded (%20 for spaces) must mean the same thing.
        let filter = eq_filter("userName", &email.to_uppercase());
        let encoded = utf8_percent_encode(&filter, NON_ALPHANUMERIC).to_string();
        let (status, body) = send(f.scim(Method::GET, &format!("/Users?filter={encoded}"))).await;
        assert_eq!(status, 200);
        assert_eq!(user_names(&body), [*email], "case-insensitive {email}");
    }
}

#[tokio::test]
async fn a_literal_plus_in_the_query_is_a_space() {
    let f = fixture().await;
    f.create_user("plus+tag@example.com").await;
    f.seed_user("plus tag@example.com");
    // Unencoded `+` is form encoding for a space, so this asks for "plus tag@…".
    let (_, body) = send(f.scim(
        Method::GET,
        "/Users?filter=userName+eq+%22plus+tag%40example.com%22",
    ))
    .await;
    assert_eq!(user_names(&body), ["plus tag@example.com"]);
    let (_, body) = send(f.scim(
        Method::GET,
        "/Users?filter=userName+eq+%22plus%2Btag%40example.com%22",
    ))
    .await;
    assert_eq!(user_names(&body), ["plus+tag@example.com"]);
    let recorded = f.sim.requests();
    assert_eq!(
        recorded.last().unwrap().query.as_deref(),
        Some("filter=userName+eq+%22plus%2Btag%40example.com%22"),
        "the raw query is recorded as sent"
    );
}

#[tokio::test]
async fn operators_logic_and_value_paths() {
    let f = fixture().await;
    let work = |email: &str, given: &str| {
        let mut b = user_body(email);
        b["emails"] = json!([{"value": email, "type": "work", "primary": true}]);
        b["name"]["givenName"] = json!(given);
        b
    };
    for (email, given) in [
        ("ann@alpha.com", "Ann"),
        ("bob@beta.org", "Bob"),
        ("cy@alpha.org", "Cy"),
    ] {
        let (status, _) = send(f.scim(Method::POST, "/Users").json(&work(email, given))).await;
        assert_eq!(status, 201);
    }
    let cases: &[(&str, &[&str])] = &[
        (r#"userName ew "alpha.com""#, &["ann@alpha.com"]),
        (r#"userName sw "B""#, &["bob@beta.org"]),
        (r#"userName co "ALPHA""#, &["ann@alpha.com", "cy@alpha.org"]),
        (
            r#"userName ne "bob@beta.org""#,
            &["ann@alpha.com", "cy@alpha.org"],
        ),
        (r#"not (userName co "alpha")"#, &["bob@beta.org"]),
        (
            r#"(given_name eq "ann" or given_name eq "cy") and userName ew ".org""#,
            &["cy@alpha.org"],
        ),
        (r#"userName gt "b""#, &["bob@beta.org", "cy@alpha.org"]),
        (
            r#"emails[type eq "work"].value eq "bob@beta.org""#,
            &["bob@beta.org"],
        ),
        (r#"emails[type eq "home"]"#, &[]),
        (r#"displayName pr"#, &[]),
        (
            r#"active eq true and name.familyName pr"#,
            &["ann@alpha.com", "bob@beta.org", "cy@alpha.org"],
        ),
        (r#"userName EQ "nobody@example.com""#, &[]),
    ];
    for (filter, want) in cases {
        let (status, body) = f.find_users(filter).await;
        assert_eq!(status, 200, "{filter}: {body}");
        assert_eq!(user_names(&body), *want, "{filter}");
        assert_eq!(body["totalResults"], want.len(), "{filter}");
    }
}

#[tokio::test]
async fn malformed_filters_are_invalid_filter() {
    let f = fixture().await;
    for bad in [
        r#"userName eq "unterminated"#,
        r#"userName eq bare@example.com"#,
        r#"userName like "x""#,
        r#"(userName eq "x""#,
        r#"userName eq "x" and"#,
        r#"userName eq "bad \q escape""#,
        r#"favouriteColour eq "blue""#,
        "",
    ] {
        let (status, body) = f.find_users(bad).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_scim_error(&body, "400", Some("invalidFilter"));
    }
}
