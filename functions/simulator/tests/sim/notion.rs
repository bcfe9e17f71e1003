use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

fn text(s: &str) -> Value {
    json!([{"type": "text", "text": {"content": s}}])
}

fn new_row(email: &str, order: &str) -> Value {
    json!({
        "parent": {"type": "data_source_id", "data_source_id": DATA_SOURCE_ID},
        "properties": {
            "Name": {"title": text("Ada Lovelace")},
            "Email": {"email": email},
            "Order": {"rich_text": text(order)},
            "Seats": {"number": 2},
            "Status": {"select": {"name": "Provisioned"}}
        }
    })
}

async fn create(f: &Fixture, body: &Value) -> (u16, Value) {
    send(f.notion(Method::POST, "/pages").json(body)).await
}

fn assert_notion_error(body: &Value, status: u16, code: &str) {
    assert_eq!(body["object"], "error", "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].is_string() && body["request_id"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn missing_version_and_bad_token() {
    let f = fixture().await;
    let url = format!("{}/databases/{DATABASE_ID}", f.sim.notion_base_url());
    let (status, body) = send(f.http.get(&url).bearer_auth(NOTION_TOKEN)).await;
    assert_eq!(status, 400);
    assert_notion_error(&body, 400, "missing_version");
    let (status, body) = send(
        f.http
            .get(&url)
            .bearer_auth("nope")
            .header("Notion-Version", VERSION),
    )
    .await;
    assert_eq!(status, 401);
    assert_notion_error(&body, 401, "unauthorized");
}

#[tokio::test]
async fn database_lists_its_data_sources() {
    let f = fixture().await;
    let (status, body) = send(f.notion(Method::GET, &format!("/databases/{DATABASE_ID}"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "database");
    assert_eq!(body["id"], DATABASE_ID);
    assert_eq!(
        body["data_sources"],
        json!([{"id": DATA_SOURCE_ID, "name": "Sales"}])
    );
    assert_eq!(body["title"][0]["plain_text"], "Sales");

    // Ids work without hyphens too.
    let compact = DATABASE_ID.replace('-', "");
    let (status, _) = send(f.notion(Method::GET, &format!("/databases/{compact}"))).await;
    assert_eq!(status, 200);

    let (status, body) = send(f.notion(
        Method::GET,
        "/databases/0f0f0f0f-0000-4000-8000-000000000000",
    ))
    .await;
    assert_eq!(status, 404);
    assert_notion_error(&body, 404, "object_not_found");
    let (status, body) = send(f.notion(Method::GET, "/databases/not-a-uuid")).await;
    assert_eq!(status, 400);
    assert_notion_error(&body, 400, "validation_error");
}

#[tokio::test]
async fn created_page_has_notions_shape() {
    let f = fixture().await;
    let (status, page) = create(&f, &new_row("ada@example.com", "ord_1")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "page");
    assert_eq!(
        page["parent"],
        json!({"type": "data_source_id", "data_source_id": DATA_SOURCE_ID, "database_id": DATABASE_ID})
    );
    assert_eq!(page["in_trash"], false);
    assert_eq!(page["archived"], false);
    let props = &page["properties"];
    assert_eq!(props["Name"]["id"], "title");
    assert_eq!(props["Name"]["type"], "title");
    assert_eq!(props["Name"]["title"][0]["plain_text"], "Ada Lovelace");
    assert_eq!(props["Name"]["title"][0]["text"]["content"], "Ada Lovelace");
    assert_eq!(
        props["Email"],
        json!({"id": props["Email"]["id"], "type": "email", "email": "ada@example.com"})
    );
    assert_eq!(props["Order"]["rich_text"][0]["plain_text"], "ord_1");
    assert_eq!(props["Seats"]["number"], 2.0);
    assert_eq!(props["Status"]["select"]["name"], "Provisioned");
    // Properties never set read as empty, with their type.
    assert_eq!(props["Notion user ID"]["rich_text"], json!([]));

    let id = page["id"].as_str().unwrap();
    let (status, fetched) = send(f.notion(Method::GET, &format!("/pages/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(fetched["properties"], page["properties"]);

    // The newest API version drops `archived`.
    let (_, newest) = send(
        f.http
            .get(format!("{}/pages/{id}", f.sim.notion_base_url()))
            .bearer_auth(NOTION_TOKEN)
            .header("Notion-Version", "2026-03-11"),
    )
    .await;
    assert_eq!(newest["in_trash"], false);
    assert!(newest.get("archived").is_none());

    // A database parent maps to its only data source.
    let mut by_database = new_row("db@example.com", "ord_2");
    by_database["parent"] = json!({"database_id": DATABASE_ID});
    let (status, page) = create(&f, &by_database).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["parent"]["data_source_id"], DATA_SOURCE_ID);
}

#[tokio::test]
async fn page_properties_are_validated() {
    let f = fixture().await;
    let mut unknown = new_row("x@example.com", "o");
    unknown["properties"]["Colour"] = json!({"rich_text": text("blue")});
    let (status, body) = create(&f, &unknown).await;
    assert_eq!(status, 400);
    assert_notion_error(&body, 400, "validation_error");

    let mut wrong_type = new_row("x@example.com", "o");
    wrong_type["properties"]["Email"] = json!({"rich_text": text("x@example.com")});
    let (status, _) = create(&f, &wrong_type).await;
    assert_eq!(status, 400);

    let (status, _) = create(&f, &new_row("x@example.com", &"é".repeat(2000))).await;
    assert_eq!(status, 200, "2000 characters is the limit, not over it");
    let (status, body) = create(&f, &new_row("x@example.com", &"a".repeat(2001))).await;
    assert_eq!(status, 400);
    assert_notion_error(&body, 400, "validation_error");

    let long_email = format!("{}@example.com", "a".repeat(188));
    assert_eq!(long_email.len(), 200);
    let (status, _) = create(&f, &new_row(&long_email, "o")).await;
    assert_eq!(status, 200);
    let (status, body) = create(&f, &new_row(&format!("a{long_email}"), "o")).await;
    assert_eq!(status, 400);
    assert_notion_error(&body, 400, "validation_error");

    let (status, body) = send(
        f.notion(Method::POST, "/pages")
            .header("content-type", "application/json")
            .body("{oops"),
    )
    .await;
    assert_eq!(status, 400);
    assert_notion_error(&body, 400, "invalid_json");
    assert_eq!(f.sim.state().pages.len(), 2);
}

#[tokio::test]
async fn query_filters_and_pages_with_cursors() {
    let f = fixture().await;
    for i in 0..5 {
        let (status, _) = create(
            &f,
            &new_row(&format!("buyer{i}@example.com"), &format!("ord_{i}")),
        )
        .await;
        assert_eq!(status, 200);
    }
    let bare = json!({"parent": {"data_source_id": DATA_SOURCE_ID}, "properties": {}});
    assert_eq!(create(&f, &bare).await.0, 200);
    let query = |body: Value| {
        send(
            f.notion(
                Method::POST,
                &format!("/data_sources/{DATA_SOURCE_ID}/query"),
            )
            .json(&body),
        )
    };
    let emails = |body: &Value| -> Vec<Value> {
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["properties"]["Email"]["email"].clone())
            .collect()
    };

    let (status, body) =
        query(json!({"filter": {"property": "Email", "email": {"equals": "buyer3@example.com"}}}))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["type"], "page_or_data_source");
    assert_eq!(emails(&body), [json!("buyer3@example.com")]);
    assert_eq!(
        (body["has_more"].clone(), body["next_cursor"].clone()),
        (json!(false), Value::Null)
    );

    let (_, body) =
        query(json!({"filter": {"property": "Order", "rich_text": {"starts_with": "ord_"}}})).await;
    assert_eq!(emails(&body).len(), 5);
    let (_, body) =
        query(json!({"filter": {"property": "Order", "rich_text": {"is_empty": true}}})).await;
    assert_eq!(emails(&body), [Value::Null]);
    let (_, body) = query(json!({"filter": {"or": [
        {"property": "Email", "email": {"contains": "buyer1"}},
        {"and": [
            {"property": "Order", "rich_text": {"equals": "ord_4"}},
            {"property": "Name", "title": {"equals": "Ada Lovelace"}}
        ]}
    ]}}))
    .await;
    assert_eq!(
        emails(&body),
        [json!("buyer1@example.com"), json!("buyer4@example.com")]
    );
    let (_, body) =
        query(json!({"filter": {"property": "Email", "email": {"equals": "BUYER3@example.com"}}}))
            .await;
    assert_eq!(
        emails(&body),
        Vec::<Value>::new(),
        "text conditions are case-sensitive"
    );

    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let (status, body) = query(json!({"page_size": 2, "start_cursor": cursor})).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["results"].as_array().unwrap().len() <= 2);
        seen.extend(emails(&body));
        if body["has_more"] == false {
            assert!(body["next_cursor"].is_null());
            break;
        }
        cursor = body["next_cursor"].clone();
    }
    assert_eq!(seen.len(), 6);

    let (status, body) = query(json!({"page_size": 101})).await;
    assert_eq!(status, 400);
    assert_notion_error(&body, 400, "validation_error");
    let (status, body) =
        query(json!({"filter": {"property": "Nope", "rich_text": {"equals": "x"}}})).await;
    assert_eq!(status, 400);
    assert_notion_error(&body, 400, "validation_error");
}

#[tokio::test]
async fn patch_updates_properties() {
    let f = fixture().await;
    let (_, page) = create(&f, &new_row("ada@example.com", "ord_1")).await;
    let id = page["id"].as_str().unwrap();
    let (status, updated) = send(f.notion(Method::PATCH, &format!("/pages/{id}")).json(&json!({
        "properties": {"Notion user ID": {"rich_text": text("5a4b…")}, "Seats": {"number": null}}
    })))
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["properties"]["Notion user ID"]["rich_text"][0]["plain_text"],
        "5a4b…"
    );
    assert!(updated["properties"]["Seats"]["number"].is_null());
    assert_eq!(updated["properties"]["Email"]["email"], "ada@example.com");
    assert!(updated["last_edited_time"].as_str() >= page["last_edited_time"].as_str());

    let (status, body) = send(
        f.notion(Method::PATCH, &format!("/pages/{id}"))
            .json(&json!({
                "properties": {"Unknown": {"number": 1}}
            })),
    )
    .await;
    assert_eq!(status, 400);
    assert_notion_error(&body, 400, "validation_error");
}
