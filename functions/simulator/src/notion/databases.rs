//! `GET /v1/databases/{id}` and `GET /v1/data_sources/{id}`.

use super::pages::{property_id, rich_text};
use super::{check_id, notion_json, same_id, timestamp, NotionError, Version, BOT_ID};
use crate::model::{DataSource, Database, PropertyKind, SimState};
use crate::sim::Sim;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

pub(crate) fn find_data_source<'a>(
    state: &'a SimState,
    id: &str,
) -> Option<(&'a Database, &'a DataSource)> {
    state.databases.iter().find_map(|db| {
        db.data_sources
            .iter()
            .find(|ds| same_id(&ds.id, id))
            .map(|ds| (db, ds))
    })
}

fn common(db: &Database, version: &Version) -> Value {
    let mut v = json!({
        "created_time": timestamp(&db.created_time),
        "last_edited_time": timestamp(&db.last_edited_time),
        "created_by": {"object": "user", "id": BOT_ID},
        "last_edited_by": {"object": "user", "id": BOT_ID},
        "description": [],
        "icon": null,
        "cover": null,
        "is_inline": false,
        "in_trash": false,
        "public_url": null,
    });
    if version.reports_archived() {
        v["archived"] = json!(false);
    }
    v
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

pub(crate) async fn database(
    State(sim): State<Sim>,
    version: Version,
    Path(id): Path<String>,
) -> Result<Response, NotionError> {
    check_id(&id, "database_id")?;
    let state = sim.state();
    let db = state
        .databases
        .iter()
        .find(|db| same_id(&db.id, &id))
        .ok_or_else(|| NotionError::not_found("database", &id))?;
    let sources: Vec<Value> = db
        .data_sources
        .iter()
        .map(|ds| json!({"id": ds.id, "name": ds.name}))
        .collect();
    let body = merge(
        common(db, &version),
        json!({
            "object": "database",
            "id": db.id,
            "title": rich_text(std::slice::from_ref(&db.title)),
            "parent": {"type": "workspace", "workspace": true},
            "is_locked": false,
            "url": format!("https://www.notion.so/{}", super::compact_id(&db.id)),
            "data_sources": sources,
        }),
    );
    Ok(notion_json(StatusCode::OK, &body))
}

fn schema(name: &str, kind: PropertyKind) -> Value {
    let config = match kind {
        PropertyKind::Number => json!({"format": "number"}),
        PropertyKind::Select => json!({"options": []}),
        _ => json!({}),
    };
    let mut v = json!({"id": property_id(name, kind), "name": name, "type": kind.as_str(), "description": null});
    v[kind.as_str()] = config;
    v
}

pub(crate) async fn data_source(
    State(sim): State<Sim>,
    version: Version,
    Path(id): Path<String>,
) -> Result<Response, NotionError> {
    check_id(&id, "data_source_id")?;
    let state = sim.state();
    let (db, ds) =
        find_data_source(&state, &id).ok_or_else(|| NotionError::not_found("data_source", &id))?;
    let properties: Map<String, Value> = ds
        .properties
        .iter()
        .map(|(name, kind)| (name.clone(), schema(name, *kind)))
        .collect();
    let body = merge(
        common(db, &version),
        json!({
            "object": "data_source",
            "id": ds.id,
            "title": rich_text(std::slice::from_ref(&ds.name)),
            "parent": {"type": "database_id", "database_id": db.id},
            "database_parent": {"type": "workspace", "workspace": true},
            "url": format!("https://www.notion.so/{}", super::compact_id(&ds.id)),
            "properties": properties,
        }),
    );
    Ok(notion_json(StatusCode::OK, &body))
}
