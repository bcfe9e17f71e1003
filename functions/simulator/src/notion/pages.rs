//! `POST /v1/pages`, `GET /v1/pages/{id}`, `PATCH /v1/pages/{id}`: rows of a data source,
//! validated against its schema and rendered in the shape Notion returns.

use super::databases::find_data_source;
use super::{
    check_id, compact_id, json_body, notion_json, same_id, timestamp, NotionError, Version, BOT_ID,
};
use crate::model::{new_id, now, DataSource, Page, PropertyKind, PropertyValue, SimState};
use crate::sim::Sim;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

const MAX_TEXT: usize = 2000;
const MAX_EMAIL: usize = 200;
const MAX_ITEMS: usize = 100;

/// Notion measures lengths as JavaScript does, in UTF-16 code units.
fn js_len(s: &str) -> usize {
    s.encode_utf16().count()
}

pub(crate) fn rich_text(parts: &[String]) -> Value {
    let items: Vec<Value> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            json!({
                "type": "text",
                "text": {"content": p, "link": null},
                "annotations": {
                    "bold": false, "italic": false, "strikethrough": false,
                    "underline": false, "code": false, "color": "default"
                },
                "plain_text": p,
                "href": null,
            })
        })
        .collect();
    Value::Array(items)
}

/// A stable short id like Notion's; the title property's id is always `title`.
pub(crate) fn property_id(name: &str, kind: PropertyKind) -> String {
    if kind == PropertyKind::Title {
        return "title".into();
    }
    short_id(name)
}

fn short_id(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..4)
        .map(|i| ALPHABET[((hash >> (i * 8)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn value_json(v: &PropertyValue) -> Value {
    match v {
        PropertyValue::Title(parts) | PropertyValue::RichText(parts) => rich_text(parts),
        PropertyValue::Email(s) | PropertyValue::Url(s) | PropertyValue::PhoneNumber(s) => {
            json!(s)
        }
        PropertyValue::Number(n) => json!(n),
        PropertyValue::Select(None) => Value::Null,
        PropertyValue::Select(Some(name)) => {
            json!({"id": short_id(name), "name": name, "color": "default"})
        }
        PropertyValue::Checkbox(b) => json!(b),
    }
}

pub(crate) fn page_json(
    page: &Page,
    ds: &DataSource,
    database_id: &str,
    version: &Version,
) -> Value {
    let properties: Map<String, Value> = ds
        .properties
        .iter()
        .map(|(name, kind)| {
            let value = page
                .properties
                .get(name)
                .filter(|v| v.kind() == *kind)
                .cloned()
                .unwrap_or_else(|| PropertyValue::empty(*kind));
            let mut prop = json!({"id": property_id(name, *kind), "type": kind.as_str()});
            prop[kind.as_str()] = value_json(&value);
            (name.clone(), prop)
        })
        .collect();
    let mut v = json!({
        "object": "page",
        "id": page.id,
        "created_time": timestamp(&page.created_time),
        "last_edited_time": timestamp(&page.last_edited_time),
        "created_by": {"object": "user", "id": BOT_ID},
        "last_edited_by": {"object": "user", "id": BOT_ID},
        "cover": null,
        "icon": null,
        "parent": {
            "type": "data_source_id",
            "data_source_id": ds.id,
            "database_id": database_id,
        },
        "in_trash": page.in_trash,
        "is_locked": false,
        "properties": properties,
        "url": format!("https://www.notion.so/{}", compact_id(&page.id)),
        "public_url": null,
    });
    if version.reports_archived() {
        v["archived"] = json!(page.in_trash);
    }
    v
}

/// A property named by its name or by its id, as Notion allows both.
pub(crate) fn resolve_property<'a>(
    ds: &'a DataSource,
    key: &str,
) -> Option<(&'a String, PropertyKind)> {
    ds.properties
        .get_key_value(key)
        .or_else(|| {
            ds.properties
                .iter()
                .find(|(name, kind)| property_id(name, **kind) == key)
        })
        .map(|(name, kind)| (name, *kind))
}

fn too_long(at: &str, max: usize, len: usize) -> NotionError {
    NotionError::validation(format!(
        "body failed validation: {at}.length should be ≤ `{max}`, instead was `{len}`."
    ))
}

fn text_parts(at: &str, raw: &Value) -> Result<Vec<String>, NotionError> {
    let items = raw.as_array().ok_or_else(|| {
        NotionError::validation(format!("body failed validation: {at} should be an array."))
    })?;
    if items.len() > MAX_ITEMS {
        return Err(too_long(at, MAX_ITEMS, items.len()));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let kind = item.get("type").and_then(Value::as_str).unwrap_or("text");
            let content = item
                .get("text")
                .and_then(|t| t.get("content"))
                .and_then(Value::as_str);
            match (kind, content) {
                ("text", Some(c)) if js_len(c) > MAX_TEXT => Err(too_long(
                    &format!("{at}[{i}].text.content"),
                    MAX_TEXT,
                    js_len(c),
                )),
                ("text", Some(c)) => Ok(c.to_owned()),
                ("text", None) => Err(NotionError::validation(format!(
                    "body failed validation: {at}[{i}].text.content should be defined, instead \
                     was `undefined`."
                ))),
                (other, _) => Err(NotionError::validation(format!(
                    "{at}[{i}] is a {other} rich text object; the simulator stores only text."
                ))),
            }
        })
        .collect()
}

fn optional_string(at: &str, raw: &Value, max: usize) -> Result<Option<String>, NotionError> {
    match raw {
        Value::Null => Ok(None),
        Value::String(s) if js_len(s) > max => Err(too_long(at, max, js_len(s))),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(NotionError::validation(format!(
            "body failed validation: {at} should be a string or `null`."
        ))),
    }
}

fn parse_value(name: &str, kind: PropertyKind, raw: &Value) -> Result<PropertyValue, NotionError> {
    let key = kind.as_str();
    let Some(inner) = raw.as_object().and_then(|o| o.get(key)) else {
        return Err(NotionError::validation(format!(
            "{name} is expected to be {key}."
        )));
    };
    let at = format!("body.properties.{name}.{key}");
    Ok(match kind {
        PropertyKind::Title => PropertyValue::Title(text_parts(&at, inner)?),
        PropertyKind::RichText => PropertyValue::RichText(text_parts(&at, inner)?),
        PropertyKind::Email => PropertyValue::Email(optional_string(&at, inner, MAX_EMAIL)?),
        PropertyKind::Url => PropertyValue::Url(optional_string(&at, inner, MAX_TEXT)?),
        PropertyKind::PhoneNumber => {
            PropertyValue::PhoneNumber(optional_string(&at, inner, MAX_EMAIL)?)
        }
        PropertyKind::Number => match inner {
            Value::Null => PropertyValue::Number(None),
            Value::Number(n) => PropertyValue::Number(n.as_f64()),
            _ => {
                return Err(NotionError::validation(format!(
                    "body failed validation: {at} should be a number or `null`."
                )))
            }
        },
        PropertyKind::Checkbox => match inner {
            Value::Bool(b) => PropertyValue::Checkbox(*b),
            _ => {
                return Err(NotionError::validation(format!(
                    "body failed validation: {at} should be a boolean."
                )))
            }
        },
        PropertyKind::Select => match inner {
            Value::Null => PropertyValue::Select(None),
            Value::Object(o) => match o.get("name").and_then(Value::as_str) {
                Some(n) if n.contains(',') => {
                    return Err(NotionError::validation(format!(
                        "Select option names cannot contain commas: {n:?}."
                    )))
                }
                Some(n) if js_len(n) > MAX_ITEMS => {
                    return Err(too_long(&format!("{at}.name"), MAX_ITEMS, js_len(n)))
                }
                Some(n) => PropertyValue::Select(Some(n.to_owned())),
                None => {
                    return Err(NotionError::validation(format!(
                        "{at} needs a name (the simulator does not resolve option ids)."
                    )))
                }
            },
            _ => {
                return Err(NotionError::validation(format!(
                    "body failed validation: {at} should be an object or `null`."
                )))
            }
        },
    })
}

fn parse_properties(
    ds: &DataSource,
    body: &Map<String, Value>,
) -> Result<Vec<(String, PropertyValue)>, NotionError> {
    let props = match body.get("properties") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Err(NotionError::validation(
                "body failed validation: body.properties should be an object.",
            ))
        }
    };
    props
        .iter()
        .map(|(key, raw)| {
            let (name, kind) = resolve_property(ds, key).ok_or_else(|| {
                NotionError::validation(format!("{key} is not a property that exists."))
            })?;
            Ok((name.clone(), parse_value(name, kind, raw)?))
        })
        .collect()
}

/// The data source a new page goes into. A `database_id` parent means the database's only
/// data source; with several, Notion asks for a `data_source_id`.
fn parent_data_source(state: &SimState, parent: Option<&Value>) -> Result<String, NotionError> {
    let parent = parent.and_then(Value::as_object).ok_or_else(|| {
        NotionError::validation(
            "body failed validation: body.parent should be defined, instead was `undefined`.",
        )
    })?;
    if let Some(id) = parent.get("data_source_id").and_then(Value::as_str) {
        check_id(id, "data_source_id")?;
        let (_, ds) =
            find_data_source(state, id).ok_or_else(|| NotionError::not_found("data_source", id))?;
        return Ok(ds.id.clone());
    }
    if let Some(id) = parent.get("database_id").and_then(Value::as_str) {
        check_id(id, "database_id")?;
        let db = state
            .databases
            .iter()
            .find(|db| same_id(&db.id, id))
            .ok_or_else(|| NotionError::not_found("database", id))?;
        return match db.data_sources.as_slice() {
            [only] => Ok(only.id.clone()),
            [] => Err(NotionError::validation(format!(
                "Database {id} has no data source."
            ))),
            _ => Err(NotionError::validation(format!(
                "Database {id} has several data sources; use a data_source_id parent."
            ))),
        };
    }
    Err(NotionError::validation(
        "body.parent must name a data_source_id or a database_id (the simulator supports no \
         other parent).",
    ))
}

fn render(state: &SimState, page: &Page, version: &Version) -> Result<Value, NotionError> {
    let (db, ds) = find_data_source(state, &page.data_source_id)
        .ok_or_else(|| NotionError::not_found("data_source", &page.data_source_id))?;
    Ok(page_json(page, ds, &db.id, version))
}

pub(crate) async fn create(
    State(sim): State<Sim>,
    version: Version,
    body: Bytes,
) -> Result<Response, NotionError> {
    let body = json_body(&body, false)?;
    let mut state = sim.state();
    let ds_id = parent_data_source(&state, body.get("parent"))?;
    let (_, ds) = find_data_source(&state, &ds_id).expect("resolved above");
    let properties = parse_properties(ds, &body)?.into_iter().collect();
    let at = now();
    let page = Page {
        id: new_id(),
        data_source_id: ds_id,
        properties,
        in_trash: false,
        created_time: at,
        last_edited_time: at,
    };
    let json = render(&state, &page, &version)?;
    state.pages.push(page);
    Ok(notion_json(StatusCode::OK, &json))
}

fn find_page(state: &SimState, id: &str) -> Result<usize, NotionError> {
    check_id(id, "page_id")?;
    state
        .pages
        .iter()
        .position(|p| same_id(&p.id, id))
        .ok_or_else(|| NotionError::not_found("page", id))
}

pub(crate) async fn fetch(
    State(sim): State<Sim>,
    version: Version,
    Path(id): Path<String>,
) -> Result<Response, NotionError> {
    let state = sim.state();
    let i = find_page(&state, &id)?;
    Ok(notion_json(
        StatusCode::OK,
        &render(&state, &state.pages[i], &version)?,
    ))
}

pub(crate) async fn update(
    State(sim): State<Sim>,
    version: Version,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, NotionError> {
    let body = json_body(&body, false)?;
    let mut state = sim.state();
    let i = find_page(&state, &id)?;
    let trash = match (body.get("in_trash"), body.get("archived")) {
        (Some(Value::Bool(b)), _) | (None, Some(Value::Bool(b))) => Some(*b),
        (None, None) => None,
        _ => {
            return Err(NotionError::validation(
                "body failed validation: body.in_trash should be a boolean.",
            ))
        }
    };
    let page = &state.pages[i];
    let (_, ds) = find_data_source(&state, &page.data_source_id)
        .ok_or_else(|| NotionError::not_found("data_source", &page.data_source_id))?;
    let changes = parse_properties(ds, &body)?;
    if page.in_trash && trash != Some(false) && !changes.is_empty() {
        return Err(NotionError::validation(
            "Can't edit block that is archived. You must unarchive the block before editing.",
        ));
    }
    let page = &mut state.pages[i];
    page.properties.extend(changes);
    if let Some(t) = trash {
        page.in_trash = t;
    }
    page.last_edited_time = now();
    Ok(notion_json(
        StatusCode::OK,
        &render(&state, &state.pages[i], &version)?,
    ))
}
