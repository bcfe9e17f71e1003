use enroll_simulator::{start, DataSource, Database, PropertyKind, SimConfig, SimHandle, SimState};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const SCIM_TOKEN: &str = "scim-secret";
pub const NOTION_TOKEN: &str = "secret_notion";
pub const VERSION: &str = "2025-09-03";
pub const DATABASE_ID: &str = "5f2d9a6c-1b3e-4c7a-9d8e-0a1b2c3d4e5f";
pub const DATA_SOURCE_ID: &str = "7a1b2c3d-4e5f-4a6b-8c9d-0e1f2a3b4c5d";
pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const NOTION_URN: &str = "urn:ietf:params:scim:schemas:extension:notion:2.0:User";

pub struct Fixture {
    pub sim: SimHandle,
    pub http: Client,
}

pub fn sales_database() -> Database {
    let properties = BTreeMap::from([
        ("Name".to_owned(), PropertyKind::Title),
        ("Email".to_owned(), PropertyKind::Email),
        ("Order".to_owned(), PropertyKind::RichText),
        ("Notion user ID".to_owned(), PropertyKind::RichText),
        ("Seats".to_owned(), PropertyKind::Number),
        ("Status".to_owned(), PropertyKind::Select),
    ]);
    Database {
        id: DATABASE_ID.into(),
        title: "Sales".into(),
        data_sources: vec![DataSource {
            id: DATA_SOURCE_ID.into(),
            name: "Sales".into(),
            properties,
        }],
        created_time: chrono::Utc::now(),
        last_edited_time: chrono::Utc::now(),
    }
}

pub async fn fixture() -> Fixture {
    fixture_with(SimState {
        databases: vec![sales_database()],
        ..SimState::default()
    })
    .await
}

pub async fn fixture_with(state: SimState) -> Fixture {
    fixture_config(SimConfig {
        scim_token: SCIM_TOKEN.into(),
        notion_token: NOTION_TOKEN.into(),
        scim_rate_limit: None,
        notion_rate_limit: None,
        admin_token: None,
        max_members_per_patch: None,
        state,
    })
    .await
}

/// The sales database seeded, everything else as `config` says.
pub async fn fixture_config(config: SimConfig) -> Fixture {
    let sim = start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts");
    Fixture {
        sim,
        http: Client::new(),
    }
}

impl Fixture {
    /// `path_and_query` is appended verbatim, so tests control the exact encoding.
    pub fn scim(&self, method: Method, path_and_query: &str) -> RequestBuilder {
        self.http
            .request(
                method,
                format!("{}{path_and_query}", self.sim.scim_base_url()),
            )
            .bearer_auth(SCIM_TOKEN)
    }

    pub fn notion(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.sim.notion_base_url()))
            .bearer_auth(NOTION_TOKEN)
            .header("Notion-Version", VERSION)
    }

    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("http://{}/_sim{path}", self.sim.addr()))
    }

    /// Creates a member and returns its id.
    pub async fn create_user(&self, email: &str) -> String {
        let (status, body) = send(self.scim(Method::POST, "/Users").json(&user_body(email))).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Puts a member straight into the workspace, bypassing SCIM's checks: for userNames SCIM
    /// would refuse (a space is no email address) that a filter test still needs to find.
    pub fn seed_user(&self, user_name: &str) {
        let mut state = self.sim.state();
        state
            .users
            .push(serde_json::from_value(json!({"user_name": user_name})).unwrap());
        self.sim.set_state(state);
    }

    pub async fn create_group(&self, name: &str) -> String {
        let (status, body) = send(
            self.scim(Method::POST, "/Groups")
                .json(&json!({"schemas": [GROUP_URN], "displayName": name})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn patch_group(&self, id: &str, ops: Value) -> (u16, Value) {
        send(
            self.scim(Method::PATCH, &format!("/Groups/{id}"))
                .json(&json!({"schemas": [PATCH_URN], "Operations": ops})),
        )
        .await
    }

    /// The members of a Group by id, read over SCIM.
    pub async fn members(&self, group: &str) -> Vec<String> {
        let (status, body) = send(self.scim(Method::GET, &format!("/Groups/{group}"))).await;
        assert_eq!(status, 200, "{body}");
        let mut ids: Vec<String> = body["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// `GET /Users?filter=…` with the filter form-encoded, as a real client does.
    pub async fn find_users(&self, filter: &str) -> (u16, Value) {
        let encoded: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        send(self.scim(Method::GET, &format!("/Users?filter={encoded}"))).await
    }
}

pub fn user_body(email: &str) -> Value {
    json!({
        "schemas": [USER_URN, NOTION_URN],
        "userName": email,
        "name": {"formatted": "Ada Lovelace", "givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": email, "primary": true}],
        "active": true,
        NOTION_URN: {"role": "member"}
    })
}

/// Status and JSON body (`null` when the body is empty).
pub async fn send(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request reaches the simulator");
    parts(response).await
}

pub async fn parts(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, body)
}

pub fn assert_scim_error(body: &Value, status: &str, scim_type: Option<&str>) {
    assert_eq!(body["schemas"], json!([ERROR_URN]), "{body}");
    assert_eq!(body["status"], json!(status), "{body}");
    match scim_type {
        Some(t) => assert_eq!(body["scimType"], json!(t), "{body}"),
        None => assert!(body.get("scimType").is_none(), "{body}"),
    }
    assert!(body["detail"].is_string(), "{body}");
}
