//! The seller's sales/students database through Notion's public API, as the [`SalesDatabase`]
//! port. Written for `Notion-Version` 2025-09-03 and later: rows live in a data source, found
//! once from the database.

use crate::http::{self, Api, Http, Replay, Request};
use crate::probe::Refusal;
use crate::scim::encode_query_value;
use crate::RetryPolicy;
use enroll_core::config::{NotionConfig, SalesProperties};
use enroll_core::ids::{BuyerEmail, NotionUserId, PageId};
use enroll_core::ports::{NewSalesRecord, RateBudget, SalesDatabase, SalesRecord};
use enroll_core::Failure;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Notion caps one rich text item's content at 2000 characters.
pub const RICH_TEXT_MAX: usize = 2000;

/// `text` cut to Notion's limit. Notion counts UTF-16 code units (JavaScript string length),
/// so an emoji counts twice; a character is never split.
pub fn truncate_rich_text(text: &str) -> &str {
    let mut units = 0;
    for (i, c) in text.char_indices() {
        units += c.len_utf16();
        if units > RICH_TEXT_MAX {
            return &text[..i];
        }
    }
    text
}

fn rich_text(content: &str) -> Value {
    json!([{"type": "text", "text": {"content": truncate_rich_text(content)}}])
}

/// The properties of a new row.
pub fn new_page_properties(props: &SalesProperties, r: &NewSalesRecord<'_>) -> Value {
    let mut out = json!({
        props.title.as_str(): {"title": rich_text(r.title)},
        props.email.as_str(): {"email": r.email.as_str()},
        props.order_id.as_str(): {"rich_text": rich_text(r.order_id)},
        props.notion_user_id.as_str(): {"rich_text": rich_text(r.notion_user_id.as_str())},
    });
    if let Some(products) = &props.products {
        out[products.as_str()] = json!({"rich_text": rich_text(r.products)});
    }
    out
}

/// The text of a rich_text (or title) property: its items' `plain_text`, or `text.content`
/// where a response leaves `plain_text` out.
fn property_text(property: &Value) -> String {
    let items = property
        .get("rich_text")
        .or_else(|| property.get("title"))
        .and_then(Value::as_array);
    items
        .into_iter()
        .flatten()
        .filter_map(|item| {
            item.get("plain_text")
                .and_then(Value::as_str)
                .or_else(|| item.get("text")?.get("content")?.as_str())
        })
        .collect()
}

fn parse_page(page: &Value, user_prop: &str) -> Result<SalesRecord, Failure> {
    let id = page
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| PageId::parse(id).ok())
        .ok_or_else(|| Failure::permanent("Notion: a page in the response has no id"))?;
    let user = page
        .get("properties")
        .and_then(|p| p.get(user_prop))
        .map(property_text)
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    Ok(SalesRecord {
        page_id: id,
        notion_user_id: user,
    })
}

/// The first data source a database lists (`GET /databases/{id}`'s `data_sources`): the one
/// rows are written to when `notion.data_source_id` names none.
pub fn first_data_source(database: &Value) -> Option<&str> {
    database
        .get("data_sources")
        .and_then(Value::as_array)
        .and_then(|all| all.first())
        .and_then(|ds| ds.get("id")?.as_str())
}

/// Rows one lookup reads: enough to hold the order's row, the buyer's row and a few rows
/// sharing the address, in one request.
const ROW_CANDIDATES: usize = 10;

/// The public API client for one sales database. Build once per process.
pub struct SalesClient {
    http: Http,
    database_id: String,
    data_source: OnceCell<String>,
    props: SalesProperties,
}

impl SalesClient {
    pub fn new(cfg: &NotionConfig, budget: Arc<dyn RateBudget>) -> Result<Self, Failure> {
        let data_source = OnceCell::new();
        if let Some(ds) = cfg.data_source_id.as_deref().map(str::trim) {
            if !ds.is_empty() {
                data_source.set(ds.to_owned()).expect("a new cell is empty");
            }
        }
        Ok(Self {
            http: Http::new(
                Api::Notion,
                &cfg.base_url,
                &cfg.token,
                cfg.timeout_secs,
                http::header("notion-version", &cfg.version)?,
                budget,
            )?,
            database_id: cfg.database_id.trim().to_owned(),
            data_source,
            props: cfg.properties.clone(),
        })
    }

    /// Replaces the default [`RetryPolicy`].
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.http.set_policy(policy);
        self
    }

    /// The configured data source, or the database's first one, asked for once.
    pub async fn data_source_id(&self) -> Result<&str, Failure> {
        self.data_source
            .get_or_try_init(|| async {
                let database = self.retrieve_database().await.map_err(|r| r.failure)?;
                first_data_source(&database)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        Failure::permanent(
                            "Notion database: it lists no data source (is notion.version \
                             2025-09-03 or later?)",
                        )
                    })
            })
            .await
            .map(String::as_str)
    }

    /// The data source named in the configuration, if any (`notion.data_source_id`), or the
    /// one already found; [`SalesClient::data_source_id`] asks the database otherwise.
    pub fn known_data_source(&self) -> Option<&str> {
        self.data_source.get().map(String::as_str)
    }

    /// `GET /databases/{id}`: the database as the integration sees it, its `data_sources`
    /// listed. A 404 means it is not shared with the integration (or does not exist).
    pub async fn retrieve_database(&self) -> Result<Value, Refusal> {
        let path = format!("/databases/{}", encode_query_value(&self.database_id));
        let reply = self
            .http
            .send(Request::get(path, "/databases/{id}"))
            .await
            .map_err(|e| Refusal::new(e, "Notion database"))?;
        Ok(reply.body)
    }

    /// `GET /data_sources/{id}`: its schema, `properties` by name, each with its `type`.
    pub async fn retrieve_data_source(&self, id: &str) -> Result<Value, Refusal> {
        let path = format!("/data_sources/{}", encode_query_value(id));
        let reply = self
            .http
            .send(Request::get(path, "/data_sources/{id}"))
            .await
            .map_err(|e| Refusal::new(e, "Notion data source"))?;
        Ok(reply.body)
    }

    async fn query_one(&self, filter: Value) -> Result<Option<SalesRecord>, Failure> {
        self.query(filter, 1)
            .await?
            .first()
            .map(|page| parse_page(page, &self.props.notion_user_id))
            .transpose()
    }

    /// The first `page_size` rows matching `filter`.
    async fn query(&self, filter: Value, page_size: usize) -> Result<Vec<Value>, Failure> {
        let ds = self.data_source_id().await?;
        let body = json!({"filter": filter, "page_size": page_size});
        let path = format!("/data_sources/{}/query", encode_query_value(ds));
        // A query only reads, so it is safe to repeat although it is a POST.
        let req = Request::with_body(Method::POST, path, "/data_sources/{id}/query", &body)
            .replay(Replay::Safe);
        let reply = self
            .http
            .send(req)
            .await
            .map_err(|e| Failure::from(e).context("Notion query"))?;
        Ok(reply
            .body
            .get("results")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }
}

#[async_trait::async_trait]
impl SalesDatabase for SalesClient {
    #[tracing::instrument(name = "sales.find_by_order", skip_all)]
    async fn find_by_order(&self, order_id: &str) -> Result<Option<SalesRecord>, Failure> {
        self.query_one(json!({
            "property": self.props.order_id,
            "rich_text": {"equals": order_id},
        }))
        .await
    }

    #[tracing::instrument(name = "sales.find_by_email", skip_all, fields(buyer = %email))]
    async fn find_by_email(&self, email: &BuyerEmail) -> Result<Option<SalesRecord>, Failure> {
        self.query_one(json!({
            "property": self.props.email,
            "email": {"equals": email.as_str()},
        }))
        .await
    }

    #[tracing::instrument(name = "sales.find_by_user_id", skip_all)]
    async fn find_by_user_id(&self, user: &NotionUserId) -> Result<Option<SalesRecord>, Failure> {
        self.query_one(json!({
            "property": self.props.notion_user_id,
            "rich_text": {"equals": user.as_str()},
        }))
        .await
    }

    /// One query for the three lookups align makes before it creates a row, so a new buyer
    /// costs one request here, not three; the best match is picked from the answer.
    #[tracing::instrument(name = "sales.find_row", skip_all, fields(buyer = %email))]
    async fn find_row(
        &self,
        order_id: &str,
        user: &NotionUserId,
        email: &BuyerEmail,
    ) -> Result<Option<SalesRecord>, Failure> {
        let filter = json!({"or": [
            {"property": self.props.order_id, "rich_text": {"equals": order_id}},
            {"property": self.props.notion_user_id, "rich_text": {"equals": user.as_str()}},
            {"property": self.props.email, "email": {"equals": email.as_str()}},
        ]});
        let pages = self.query(filter, ROW_CANDIDATES).await?;
        let text = |page: &Value, prop: &str| {
            page.get("properties")
                .and_then(|p| p.get(prop))
                .map(property_text)
                .unwrap_or_default()
        };
        let rank = |page: &Value| {
            if text(page, &self.props.order_id).trim() == order_id {
                0
            } else if text(page, &self.props.notion_user_id).trim() == user.as_str() {
                1
            } else {
                2
            }
        };
        pages
            .iter()
            .min_by_key(|p| rank(p))
            .map(|page| parse_page(page, &self.props.notion_user_id))
            .transpose()
    }

    /// Not repeated after a 5xx or a timeout (the row may exist): the failure is transient and
    /// the redelivered message finds the row by order id before creating one.
    #[tracing::instrument(name = "sales.create", skip_all, fields(buyer = %record.email))]
    async fn create(&self, record: &NewSalesRecord<'_>) -> Result<SalesRecord, Failure> {
        let ds = self.data_source_id().await?;
        let body = json!({
            "parent": {"type": "data_source_id", "data_source_id": ds},
            "properties": new_page_properties(&self.props, record),
        });
        let reply = self
            .http
            .send(Request::with_body(
                Method::POST,
                "/pages".into(),
                "/pages",
                &body,
            ))
            .await
            .map_err(|e| Failure::from(e).context("Notion create row"))?;
        let mut created = parse_page(&reply.body, &self.props.notion_user_id)?;
        created
            .notion_user_id
            .get_or_insert_with(|| record.notion_user_id.as_str().to_owned());
        Ok(created)
    }

    #[tracing::instrument(name = "sales.set_user_id", skip_all, fields(page = %page))]
    async fn set_user_id(&self, page: &PageId, user: &NotionUserId) -> Result<(), Failure> {
        let mut properties = serde_json::Map::new();
        properties.insert(
            self.props.notion_user_id.clone(),
            json!({"rich_text": rich_text(user.as_str())}),
        );
        let body = json!({"properties": properties});
        let path = format!("/pages/{}", encode_query_value(page.as_str()));
        // Setting a property to the same value twice changes nothing: safe to repeat.
        let req =
            Request::with_body(Method::PATCH, path, "/pages/{id}", &body).replay(Replay::Safe);
        self.http
            .send(req)
            .await
            .map_err(|e| Failure::from(e).context("Notion set user id"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rich_text_is_cut_at_2000_utf16_units() {
        let ascii = "a".repeat(2500);
        assert_eq!(truncate_rich_text(&ascii).len(), 2000);
        let emoji = "😀".repeat(1500);
        assert_eq!(truncate_rich_text(&emoji).chars().count(), 1000);
        assert_eq!(truncate_rich_text("short"), "short");
    }

    #[test]
    fn property_text_joins_items() {
        let p = json!({"rich_text": [
            {"plain_text": "abc"},
            {"text": {"content": "-def"}},
        ]});
        assert_eq!(property_text(&p), "abc-def");
        assert_eq!(property_text(&json!({"rich_text": []})), "");
    }
}
