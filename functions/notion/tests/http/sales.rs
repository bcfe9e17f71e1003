use crate::support::{budget, fast_retries, Answer, Server, TOKEN};
use enroll_core::config::{NotionConfig, SalesProperties, Secret};
use enroll_core::ids::{BuyerEmail, NotionUserId, PageId};
use enroll_core::ports::{NewSalesRecord, SalesDatabase, SalesRecord};
use enroll_notion::SalesClient;
use serde_json::json;

fn config(server: &Server) -> NotionConfig {
    NotionConfig {
        base_url: format!("{}/v1", server.url),
        token: Secret::new(TOKEN),
        version: "2025-09-03".into(),
        database_id: "db-1".into(),
        data_source_id: None,
        properties: SalesProperties {
            products: Some("Products".into()),
            ..SalesProperties::default()
        },
        timeout_secs: 10,
    }
}

fn client(server: &Server) -> SalesClient {
    SalesClient::new(&config(server), budget())
        .unwrap()
        .with_retry(fast_retries())
}

fn database() -> Answer {
    Answer::json(
        200,
        json!({"object": "database", "id": "db-1",
               "data_sources": [{"id": "ds-1", "name": "Sales"}, {"id": "ds-2", "name": "Old"}]}),
    )
}

fn page(id: &str, user_parts: &[&str]) -> serde_json::Value {
    json!({"object": "page", "id": id, "properties": {
        "Notion User ID": {"id": "x", "type": "rich_text", "rich_text":
            user_parts.iter().map(|p| json!({"type": "text", "text": {"content": p}, "plain_text": p})).collect::<Vec<_>>()}
    }})
}

#[tokio::test]
async fn queries_resolve_the_data_source_once() {
    let server = Server::start(vec![
        database(),
        Answer::json(
            200,
            json!({"object": "list", "results": [page("p-1", &["u-", "42"])], "has_more": false}),
        ),
        Answer::json(200, json!({"object": "list", "results": []})),
    ])
    .await;
    let c = client(&server);
    let found = c.find_by_order("ord_1").await.unwrap();
    assert_eq!(
        found,
        Some(SalesRecord {
            page_id: PageId::parse("p-1").unwrap(),
            notion_user_id: Some("u-42".into())
        })
    );
    let email = BuyerEmail::parse("Ada+x@Example.com").unwrap();
    assert_eq!(c.find_by_email(&email).await.unwrap(), None);

    let seen = server.seen().await;
    assert_eq!(
        server.lines().await,
        [
            "GET /v1/databases/db-1",
            "POST /v1/data_sources/ds-1/query",
            "POST /v1/data_sources/ds-1/query"
        ]
    );
    for s in &seen {
        assert_eq!(s.header("notion-version"), Some("2025-09-03"));
        assert_eq!(
            s.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    assert_eq!(seen[1].header("content-type"), Some("application/json"));
    assert_eq!(
        seen[1].json(),
        json!({"filter": {"property": "Order ID", "rich_text": {"equals": "ord_1"}}, "page_size": 1})
    );
    assert_eq!(
        seen[2].json(),
        json!({"filter": {"property": "Email", "email": {"equals": "ada+x@example.com"}}, "page_size": 1})
    );
}

#[tokio::test]
async fn a_configured_data_source_skips_the_database_lookup() {
    let server = Server::start(vec![Answer::json(200, json!({"results": []}))]).await;
    let cfg = NotionConfig {
        data_source_id: Some("ds-9".into()),
        ..config(&server)
    };
    let c = SalesClient::new(&cfg, budget()).unwrap();
    assert_eq!(c.find_by_order("o").await.unwrap(), None);
    assert_eq!(server.lines().await, ["POST /v1/data_sources/ds-9/query"]);
}

#[tokio::test]
async fn create_writes_every_property() {
    let server = Server::start(vec![database(), Answer::json(200, page("p-new", &[]))]).await;
    let email = BuyerEmail::parse("ada@example.com").unwrap();
    let user = NotionUserId::parse("u-7").unwrap();
    let products = "p".repeat(2100);
    let record = NewSalesRecord {
        title: "Ada Lovelace",
        email: &email,
        order_id: "ord_1",
        notion_user_id: &user,
        products: &products,
    };
    let created = client(&server).create(&record).await.unwrap();
    assert_eq!(created.page_id.as_str(), "p-new");
    assert_eq!(created.notion_user_id.as_deref(), Some("u-7"));
    let seen = server.seen().await;
    assert_eq!(seen[1].line(), "POST /v1/pages");
    let text = |s: &str| json!([{"type": "text", "text": {"content": s}}]);
    assert_eq!(
        seen[1].json(),
        json!({
            "parent": {"type": "data_source_id", "data_source_id": "ds-1"},
            "properties": {
                "Name": {"title": text("Ada Lovelace")},
                "Email": {"email": "ada@example.com"},
                "Order ID": {"rich_text": text("ord_1")},
                "Notion User ID": {"rich_text": text("u-7")},
                "Products": {"rich_text": text(&"p".repeat(2000))},
            }
        })
    );
}

#[tokio::test]
async fn a_5xx_on_create_is_transient_and_not_repeated() {
    let server = Server::start(vec![database(), Answer::empty(500)]).await;
    let email = BuyerEmail::parse("ada@example.com").unwrap();
    let user = NotionUserId::parse("u-7").unwrap();
    let record = NewSalesRecord {
        title: "Ada",
        email: &email,
        order_id: "ord_1",
        notion_user_id: &user,
        products: "",
    };
    let err = client(&server).create(&record).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(server.seen().await.len(), 2);
}

#[tokio::test]
async fn set_user_id_patches_the_rich_text_property() {
    let server = Server::start(vec![Answer::json(200, page("p-1", &["u-7"]))]).await;
    let cfg = NotionConfig {
        data_source_id: Some("ds-1".into()),
        ..config(&server)
    };
    let c = SalesClient::new(&cfg, budget()).unwrap();
    c.set_user_id(
        &PageId::parse("p-1").unwrap(),
        &NotionUserId::parse("u-7").unwrap(),
    )
    .await
    .unwrap();
    let seen = server.seen().await;
    assert_eq!(seen[0].line(), "PATCH /v1/pages/p-1");
    assert_eq!(seen[0].header("notion-version"), Some("2025-09-03"));
    assert_eq!(
        seen[0].json(),
        json!({"properties": {"Notion User ID": {"rich_text": [{"type": "text", "text": {"content": "u-7"}}]}}})
    );
}

#[tokio::test]
async fn notion_errors_keep_code_and_message() {
    let server = Server::start(vec![Answer::json(
        404,
        json!({"object": "error", "status": 404, "code": "object_not_found",
               "message": "Could not find database with ID: db-1.", "request_id": "req-1"}),
    )])
    .await;
    let err = client(&server).find_by_order("o").await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(
        err.reason
            .contains("Notion GET /databases/{id}: HTTP 404 Not Found (object_not_found: Could not find database with ID: db-1.) [request_id req-1]"),
        "{err}"
    );
}
