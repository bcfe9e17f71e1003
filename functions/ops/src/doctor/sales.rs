//! The public API side: the sales database is shared with the integration, and the data source
//! enroll writes rows to has the configured properties with the types it writes.

use super::{closest, quoted_list, refused, retry_policy, Check};
use enroll_core::config::Config;
use enroll_notion::sales::first_data_source;
use enroll_notion::{SalesClient, TokenBucket};
use serde_json::Value;
use std::sync::Arc;

const DATABASE: &str = "Sales database";

const NEW_TOKEN: &str = "copy the internal integration's token (notion.so/profile/integrations) \
     and set it as ENROLL_NOTION_TOKEN, notion.token, or notion_token in the stack's secret";

/// The property types enroll writes (see `enroll_notion::sales::new_page_properties`), by
/// setting: a row's title, its email (written and searched as an `email` property), and the
/// order id, Notion user id and products as rich text.
fn expected(config: &Config) -> Vec<(&'static str, &str, &'static str)> {
    let p = &config.notion.properties;
    let mut out = vec![
        ("title", p.title.as_str(), "title"),
        ("email", p.email.as_str(), "email"),
        ("order_id", p.order_id.as_str(), "rich_text"),
        ("notion_user_id", p.notion_user_id.as_str(), "rich_text"),
    ];
    if let Some(products) = &p.products {
        out.push(("products", products.as_str(), "rich_text"));
    }
    out
}

fn property_check_name(setting: &str, property: &str) -> String {
    format!("Sales property {setting} (\"{property}\")")
}

/// The database check, then one check per configured property.
pub(super) async fn checks(config: &Config) -> Vec<Check> {
    let n = &config.notion;
    let not_checked = |why: &str| {
        expected(config)
            .into_iter()
            .map(|(setting, property, _)| {
                Check::fail(
                    property_check_name(setting, property),
                    format!("not checked: {why}"),
                    "fix the sales database check first",
                )
            })
            .collect::<Vec<_>>()
    };
    let fail = |detail: String, fix: String| {
        let mut out = vec![Check::fail(DATABASE, detail, fix)];
        out.extend(not_checked("the sales database could not be read"));
        out
    };
    if n.token.is_empty() {
        return fail(
            "no Notion integration token configured".into(),
            NEW_TOKEN.into(),
        );
    }
    let budget = Arc::new(TokenBucket::from_config(config.rate.api()));
    let client = match SalesClient::new(n, budget) {
        Ok(c) => c.with_retry(retry_policy()),
        Err(f) => return fail(f.reason, "correct the [notion] settings".into()),
    };
    let database = match client.retrieve_database().await {
        Ok(db) => db,
        Err(r) if r.status == Some(404) => {
            return fail(
                format!(
                    "database {} not found: it is not shared with the integration (or the id \
                     is wrong)",
                    n.database_id
                ),
                "open the database in Notion, ••• (top right) > Connections > add your \
                 integration; or correct notion.database_id (the 32 characters after the \
                 workspace name in the database's URL)"
                    .into(),
            )
        }
        Err(r) => {
            let (detail, fix) = refused("notion", &n.base_url, &r, NEW_TOKEN);
            return fail(detail, fix);
        }
    };
    let listed = listed_sources(&database);
    // The data source rows are written to, chosen as the writer chooses it.
    let source = match client.known_data_source() {
        Some(configured) => {
            if !listed.is_empty() && !listed.iter().any(|(id, _)| same_id(id, configured)) {
                let names: Vec<String> = listed
                    .iter()
                    .map(|(id, name)| format!("{id} ({name})"))
                    .collect();
                return fail(
                    format!(
                        "notion.data_source_id {configured} is not one of the database's data \
                         sources: {}",
                        names.join(", ")
                    ),
                    "correct notion.data_source_id, or leave it out to use the first one".into(),
                );
            }
            configured.to_owned()
        }
        None => match first_data_source(&database) {
            Some(id) => id.to_owned(),
            None => {
                return fail(
                    "the database lists no data source".into(),
                    format!(
                        "set notion.version to 2025-09-03 or later (it is {})",
                        n.version
                    ),
                )
            }
        },
    };
    let schema = match client.retrieve_data_source(&source).await {
        Ok(ds) => ds,
        Err(r) if r.status == Some(404) => {
            return fail(
                format!("data source {source} not found: it is not shared with the integration"),
                "open the database in Notion, ••• > Connections > add your integration".into(),
            )
        }
        Err(r) => {
            let (detail, fix) = refused("notion", &n.base_url, &r, NEW_TOKEN);
            return fail(detail, fix);
        }
    };
    let mut out = vec![Check::pass(
        DATABASE,
        format!(
            "shared with the integration: \"{}\", rows go to data source {source}",
            title(&database)
        ),
    )];
    let properties = schema.get("properties").and_then(Value::as_object);
    let kinds: Vec<(&str, &str)> = properties
        .into_iter()
        .flatten()
        .map(|(name, p)| {
            (
                name.as_str(),
                p.get("type").and_then(Value::as_str).unwrap_or(""),
            )
        })
        .collect();
    for (setting, property, wanted) in expected(config) {
        out.push(property_check(setting, property, wanted, &kinds));
    }
    out
}

/// One configured property against the data source's schema (name, type).
fn property_check(setting: &str, property: &str, wanted: &str, kinds: &[(&str, &str)]) -> Check {
    let name = property_check_name(setting, property);
    let what = match wanted {
        "title" => "the title property",
        "email" => "an Email property",
        _ => "a Text (rich_text) property",
    };
    match kinds.iter().find(|(n, _)| *n == property) {
        Some((_, kind)) if *kind == wanted => {
            Check::pass(name, format!("{wanted}, as enroll writes it"))
        }
        Some((_, kind)) => {
            let mut detail = format!("\"{property}\" is a {kind} property; enroll writes {wanted}");
            if setting == "notion_user_id" && *kind == "people" {
                detail.push_str(" (a people property cannot hold a member of another workspace)");
            }
            let fix = if wanted == "title" {
                format!("name the database's title property in notion.properties.{setting}")
            } else {
                format!(
                    "change \"{property}\" to {what} in Notion, or name one in \
                     notion.properties.{setting}"
                )
            };
            Check::fail(name, detail, fix)
        }
        None => {
            let near = closest(property, kinds.iter().map(|(n, _)| *n));
            let mut fix = format!(
                "add {what} named \"{property}\" to the database, or name an existing one in \
                 notion.properties.{setting}"
            );
            if !near.is_empty() {
                fix.push_str(&format!("; did you mean {}?", quoted_list(&near)));
            }
            Check::fail(
                name,
                format!("the database has no property named \"{property}\""),
                fix,
            )
        }
    }
}

/// The data sources a database lists, id and name.
fn listed_sources(database: &Value) -> Vec<(String, String)> {
    database
        .get("data_sources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ds| {
            let id = ds.get("id")?.as_str()?.to_owned();
            let name = ds.get("name").and_then(Value::as_str).unwrap_or("");
            Some((id, name.to_owned()))
        })
        .collect()
}

/// The database's title as plain text.
fn title(database: &Value) -> String {
    database
        .get("title")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            t.get("plain_text")
                .and_then(Value::as_str)
                .or_else(|| t.get("text")?.get("content")?.as_str())
        })
        .collect()
}

/// Notion ids are UUIDs, written with or without hyphens.
fn same_id(a: &str, b: &str) -> bool {
    let compact = |s: &str| s.replace('-', "").to_lowercase();
    compact(a) == compact(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: &[(&str, &str)] = &[
        ("Name", "title"),
        ("Email", "email"),
        ("Notion User", "people"),
        ("Order ID", "rich_text"),
    ];

    #[test]
    fn a_property_of_the_right_type_passes() {
        assert!(property_check("email", "Email", "email", KINDS).ok);
        assert!(property_check("title", "Name", "title", KINDS).ok);
    }

    #[test]
    fn a_people_property_for_the_user_id_fails_and_says_why() {
        let c = property_check("notion_user_id", "Notion User", "rich_text", KINDS);
        assert!(!c.ok);
        assert!(
            c.detail.contains("\"Notion User\" is a people property"),
            "{c:?}"
        );
        assert!(c.detail.contains("another workspace"), "{c:?}");
    }

    #[test]
    fn a_missing_property_suggests_close_names() {
        let c = property_check("notion_user_id", "Notion User ID", "rich_text", KINDS);
        assert!(!c.ok);
        assert!(c.fix.unwrap().contains("did you mean \"Notion User\"?"));
    }

    #[test]
    fn ids_compare_without_hyphens_or_case() {
        assert!(same_id(
            "5b3c8a2e-57c8-4a5e-9a2b-1f0e6d3c4b21",
            "5B3C8A2E57C84A5E9A2B1F0E6D3C4B21"
        ));
    }
}
