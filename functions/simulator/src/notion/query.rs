//! `POST /v1/data_sources/{id}/query`: property filters, sorts and cursor paging.
//!
//! Text conditions compare exactly (case-sensitive): Notion does not document case folding,
//! so a client must not rely on it.

use super::databases::find_data_source;
use super::pages::{page_json, resolve_property};
use super::{check_id, json_body, notion_json, same_id, NotionError, Version};
use crate::model::{DataSource, Page, PropertyKind, PropertyValue};
use crate::sim::Sim;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;

const MAX_PAGE: u64 = 100;
/// Every filter type key Notion documents; a property filter must use its property's own.
const TYPE_KEYS: &[&str] = &[
    "title",
    "rich_text",
    "email",
    "url",
    "phone_number",
    "number",
    "select",
    "multi_select",
    "status",
    "checkbox",
    "date",
    "people",
    "files",
    "relation",
    "formula",
    "rollup",
    "unique_id",
    "verification",
    "created_by",
    "created_time",
    "last_edited_by",
    "last_edited_time",
];

enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Prop { name: String, cond: Cond },
}

enum Cond {
    Equals(Value),
    DoesNotEqual(Value),
    Contains(String),
    DoesNotContain(String),
    StartsWith(String),
    EndsWith(String),
    IsEmpty,
    IsNotEmpty,
    Greater(f64),
    Less(f64),
    GreaterOrEqual(f64),
    LessOrEqual(f64),
}

fn bad(message: impl Into<String>) -> NotionError {
    NotionError::validation(message)
}

fn parse_filter(ds: &DataSource, raw: &Value) -> Result<Filter, NotionError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| bad("body failed validation: body.filter should be an object."))?;
    for (key, build) in [
        ("and", Filter::And as fn(Vec<Filter>) -> Filter),
        ("or", Filter::Or),
    ] {
        if let Some(list) = obj.get(key) {
            let items = list.as_array().ok_or_else(|| {
                bad(format!(
                    "body failed validation: body.filter.{key} should be an array."
                ))
            })?;
            let parts = items
                .iter()
                .map(|f| parse_filter(ds, f))
                .collect::<Result<_, _>>()?;
            return Ok(build(parts));
        }
    }
    let Some(key) = obj.get("property").and_then(Value::as_str) else {
        return Err(bad(
            "body.filter must be a property filter or an and/or compound (the simulator \
             supports no timestamp filters).",
        ));
    };
    let (name, kind) = resolve_property(ds, key)
        .ok_or_else(|| bad(format!("Could not find property with name or id: {key}")))?;
    // Notion refuses a type key that is not the property's own, even between text types
    // (`rich_text` on an `email` property), so a client cannot get away with a guess.
    let mut given = obj.keys().filter(|k| TYPE_KEYS.contains(&k.as_str()));
    let type_key = match (given.next(), given.next()) {
        (Some(k), None) => k,
        (Some(_), Some(_)) => {
            return Err(bad(format!(
                "body failed validation: body.filter for property {name} should have exactly \
                 one type key."
            )))
        }
        (None, _) => {
            return Err(bad(format!(
                "body failed validation: body.filter.{} should be defined, instead was \
                 `undefined`.",
                kind.as_str()
            )))
        }
    };
    if type_key != kind.as_str() {
        return Err(bad(format!(
            "database property {} does not match filter {type_key}",
            kind.as_str()
        )));
    }
    let condition = &obj[type_key];
    Ok(Filter::Prop {
        name: name.clone(),
        cond: parse_condition(kind, &format!("body.filter.{type_key}"), condition)?,
    })
}

fn parse_condition(kind: PropertyKind, at: &str, raw: &Value) -> Result<Cond, NotionError> {
    let obj = raw.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        bad(format!(
            "body failed validation: {at} should have exactly one condition."
        ))
    })?;
    let (op, v) = obj.iter().next().expect("one entry");
    let text = || {
        v.as_str().map(str::to_owned).ok_or_else(|| {
            bad(format!(
                "body failed validation: {at}.{op} should be a string."
            ))
        })
    };
    let number = || {
        v.as_f64().ok_or_else(|| {
            bad(format!(
                "body failed validation: {at}.{op} should be a number."
            ))
        })
    };
    let flag = || match v {
        Value::Bool(true) => Ok(()),
        _ => Err(bad(format!(
            "body failed validation: {at}.{op} should be `true`."
        ))),
    };
    let text_like = kind.is_text() || kind == PropertyKind::Select;
    Ok(match (op.as_str(), kind) {
        ("is_empty", k) if k != PropertyKind::Checkbox => {
            flag()?;
            Cond::IsEmpty
        }
        ("is_not_empty", k) if k != PropertyKind::Checkbox => {
            flag()?;
            Cond::IsNotEmpty
        }
        ("equals", _) | ("does_not_equal", _) => {
            let value = match kind {
                PropertyKind::Number => json!(number()?),
                PropertyKind::Checkbox => {
                    json!(v
                        .as_bool()
                        .ok_or_else(|| bad(format!("{at}.{op} should be a boolean.")))?)
                }
                _ => json!(text()?),
            };
            if op == "equals" {
                Cond::Equals(value)
            } else {
                Cond::DoesNotEqual(value)
            }
        }
        ("contains", _) if text_like && kind != PropertyKind::Select => Cond::Contains(text()?),
        ("does_not_contain", _) if kind.is_text() => Cond::DoesNotContain(text()?),
        ("starts_with", _) if kind.is_text() => Cond::StartsWith(text()?),
        ("ends_with", _) if kind.is_text() => Cond::EndsWith(text()?),
        ("greater_than", PropertyKind::Number) => Cond::Greater(number()?),
        ("less_than", PropertyKind::Number) => Cond::Less(number()?),
        ("greater_than_or_equal_to", PropertyKind::Number) => Cond::GreaterOrEqual(number()?),
        ("less_than_or_equal_to", PropertyKind::Number) => Cond::LessOrEqual(number()?),
        _ => {
            return Err(bad(format!(
                "{at}.{op} is not a condition for a {} property.",
                kind.as_str()
            )))
        }
    })
}

fn value_of(page: &Page, ds: &DataSource, name: &str) -> PropertyValue {
    let kind = ds.properties[name];
    page.properties
        .get(name)
        .filter(|v| v.kind() == kind)
        .cloned()
        .unwrap_or_else(|| PropertyValue::empty(kind))
}

fn matches(filter: &Filter, page: &Page, ds: &DataSource) -> bool {
    match filter {
        Filter::And(parts) => parts.iter().all(|f| matches(f, page, ds)),
        Filter::Or(parts) => parts.iter().any(|f| matches(f, page, ds)),
        Filter::Prop { name, cond } => {
            let value = value_of(page, ds, name);
            let number = match value {
                PropertyValue::Number(n) => n,
                _ => None,
            };
            let text = value.plain_text();
            let t = text.as_deref().unwrap_or("");
            match cond {
                Cond::IsEmpty => text.is_none() && number.is_none(),
                Cond::IsNotEmpty => text.is_some() || number.is_some(),
                Cond::Equals(v) | Cond::DoesNotEqual(v) => {
                    let equal = match (&value, v) {
                        (PropertyValue::Checkbox(b), Value::Bool(want)) => b == want,
                        (PropertyValue::Number(n), want) => *n == want.as_f64(),
                        (_, Value::String(want)) => t == want,
                        _ => false,
                    };
                    equal == matches!(cond, Cond::Equals(_))
                }
                Cond::Contains(s) => t.contains(s.as_str()),
                Cond::DoesNotContain(s) => !t.contains(s.as_str()),
                Cond::StartsWith(s) => text.is_some() && t.starts_with(s.as_str()),
                Cond::EndsWith(s) => text.is_some() && t.ends_with(s.as_str()),
                Cond::Greater(x) => number.is_some_and(|n| n > *x),
                Cond::Less(x) => number.is_some_and(|n| n < *x),
                Cond::GreaterOrEqual(x) => number.is_some_and(|n| n >= *x),
                Cond::LessOrEqual(x) => number.is_some_and(|n| n <= *x),
            }
        }
    }
}

enum SortKey {
    Property(String),
    Created,
    Edited,
}

fn parse_sorts(ds: &DataSource, raw: Option<&Value>) -> Result<Vec<(SortKey, bool)>, NotionError> {
    let Some(raw) = raw.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = raw
        .as_array()
        .ok_or_else(|| bad("body failed validation: body.sorts should be an array."))?;
    items
        .iter()
        .map(|s| {
            let descending = match s.get("direction").and_then(Value::as_str) {
                Some("ascending") => false,
                Some("descending") => true,
                _ => {
                    return Err(bad(
                        "body failed validation: body.sorts[].direction should be `ascending` \
                         or `descending`.",
                    ))
                }
            };
            let key = if let Some(p) = s.get("property").and_then(Value::as_str) {
                let (name, _) = resolve_property(ds, p).ok_or_else(|| {
                    bad(format!("Could not find sort property with name or id: {p}"))
                })?;
                SortKey::Property(name.clone())
            } else {
                match s.get("timestamp").and_then(Value::as_str) {
                    Some("created_time") => SortKey::Created,
                    Some("last_edited_time") => SortKey::Edited,
                    _ => return Err(bad("each sort needs a property or a timestamp.")),
                }
            };
            Ok((key, descending))
        })
        .collect()
}

fn compare(a: &Page, b: &Page, ds: &DataSource, sorts: &[(SortKey, bool)]) -> Ordering {
    for (key, descending) in sorts {
        let ord = match key {
            SortKey::Created => a.created_time.cmp(&b.created_time),
            SortKey::Edited => a.last_edited_time.cmp(&b.last_edited_time),
            SortKey::Property(name) => match (value_of(a, ds, name), value_of(b, ds, name)) {
                (PropertyValue::Number(x), PropertyValue::Number(y)) => {
                    x.partial_cmp(&y).unwrap_or(Ordering::Equal)
                }
                (PropertyValue::Checkbox(x), PropertyValue::Checkbox(y)) => x.cmp(&y),
                (x, y) => x.plain_text().cmp(&y.plain_text()),
            },
        };
        let ord = if *descending { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

fn page_size(body: &Map<String, Value>) -> Result<usize, NotionError> {
    match body.get("page_size") {
        None | Some(Value::Null) => Ok(MAX_PAGE as usize),
        Some(v) => match v.as_u64() {
            Some(n) if n > MAX_PAGE => Err(bad(format!(
                "body failed validation: body.page_size should be ≤ `{MAX_PAGE}`, instead was `{n}`."
            ))),
            Some(n) if n >= 1 => Ok(n as usize),
            _ => Err(bad(format!(
                "body failed validation: body.page_size should be a positive integer ≤ `{MAX_PAGE}`, instead was `{v}`."
            ))),
        },
    }
}

pub(crate) async fn query(
    State(sim): State<Sim>,
    version: Version,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, NotionError> {
    check_id(&id, "data_source_id")?;
    let body = json_body(&body, true)?;
    let state = sim.state();
    let (db, ds) =
        find_data_source(&state, &id).ok_or_else(|| NotionError::not_found("data_source", &id))?;
    let filter = body
        .get("filter")
        .filter(|f| !f.is_null())
        .map(|f| parse_filter(ds, f))
        .transpose()?;
    let sorts = parse_sorts(ds, body.get("sorts"))?;
    let size = page_size(&body)?;
    let mut rows: Vec<&Page> = state
        .pages
        .iter()
        .filter(|p| same_id(&p.data_source_id, &ds.id) && !p.in_trash)
        .filter(|p| filter.as_ref().is_none_or(|f| matches(f, p, ds)))
        .collect();
    rows.sort_by(|a, b| compare(a, b, ds, &sorts));
    let start = match body.get("start_cursor") {
        None | Some(Value::Null) => 0,
        Some(Value::String(cursor)) => {
            check_id(cursor, "start_cursor").map_err(|_| {
                bad(format!("body failed validation: body.start_cursor should be a valid uuid, instead was `\"{cursor}\"`."))
            })?;
            rows.iter()
                .position(|p| same_id(&p.id, cursor))
                .ok_or_else(|| {
                    bad(format!(
                        "start_cursor {cursor} is not a cursor of this query."
                    ))
                })?
        }
        Some(_) => {
            return Err(bad(
                "body failed validation: body.start_cursor should be a string.",
            ))
        }
    };
    let page: Vec<Value> = rows
        .iter()
        .skip(start)
        .take(size)
        .map(|p| page_json(p, ds, &db.id, &version))
        .collect();
    let next = rows.get(start + size).map(|p| p.id.clone());
    let body = json!({
        "object": "list",
        "results": page,
        "next_cursor": next,
        "has_more": next.is_some(),
        "type": "page_or_data_source",
        "page_or_data_source": {},
        "request_id": uuid::Uuid::new_v4().to_string(),
    });
    Ok(notion_json(StatusCode::OK, &body))
}
