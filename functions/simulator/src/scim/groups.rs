//! `/Groups`: Notion Groups and their members.
//!
//! PATCH answers 204 No Content unless the request asks for attributes (`attributes` or
//! `excludedAttributes`), then 200 with the Group: both are allowed by RFC 7644 §3.5.2.
//!
//! Removing members, in the three forms clients send (`op` in any case):
//! - `{"op":"remove","path":"members[value eq \"id\"]"}` removes that member (RFC 7644 §3.5.2.2);
//! - `{"op":"remove","path":"members","value":[{"value":"id"}]}` removes only the listed
//!   members, as real Notion does for the seller's scripts (see the reference notes);
//! - `{"op":"remove","path":"members"}` with no value removes every member, as the RFC says.
//!
//! With a cap set ([`crate::SimConfig::max_members_per_patch`]), a PATCH naming more members
//! than the cap is refused whole with 413, as other SCIM servers (Miro) do.

use super::error::ScimError;
use super::patch::{self, Kind, Operation};
use super::{body_with_schema, field, filter, scim_json, timestamp, Ctx, ListParams, GROUP_URN};
use crate::model::{new_id, now, Group, SimState};
use crate::sim::Sim;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

const KNOWN: &[&str] = &["id", "externalId", "displayName", "members", "meta"];

fn member_json(state: &SimState, id: &str, base: &str) -> Value {
    let display = state.users.iter().find(|u| u.id == id).map(|u| {
        u.display_name
            .clone()
            .unwrap_or_else(|| u.user_name.clone())
    });
    json!({
        "value": id,
        "display": display,
        "type": "User",
        "$ref": format!("{base}/Users/{id}"),
    })
}

fn group_json(state: &SimState, g: &Group, base: &str) -> Value {
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| member_json(state, m, base))
        .collect();
    let mut v = json!({
        "schemas": [GROUP_URN],
        "id": g.id,
        "displayName": g.display_name,
        "members": members,
        "meta": {
            "resourceType": "Group",
            "created": timestamp(&g.created),
            "lastModified": timestamp(&g.last_modified),
            "location": format!("{base}/Groups/{}", g.id),
        },
    });
    if let Some(x) = &g.external_id {
        v["externalId"] = json!(x);
    }
    v
}

fn find(state: &SimState, id: &str) -> Result<usize, ScimError> {
    state
        .groups
        .iter()
        .position(|g| g.id == id)
        .ok_or_else(|| ScimError::not_found("Group", id))
}

/// Group displayName is caseExact false in RFC 7643, so uniqueness ignores case.
fn ensure_unique(state: &SimState, name: &str, except: Option<&str>) -> Result<(), ScimError> {
    let taken = state.groups.iter().any(|g| {
        Some(g.id.as_str()) != except && g.display_name.to_lowercase() == name.to_lowercase()
    });
    if taken {
        return Err(ScimError::conflict(format!(
            "a Group named {name:?} already exists"
        )));
    }
    Ok(())
}

/// User ids from a members value: a list of `{"value": id}` (a single object is tolerated).
fn member_ids(v: &Value) -> Result<Vec<String>, ScimError> {
    let items = match v {
        Value::Array(items) => items.as_slice(),
        single @ Value::Object(_) => std::slice::from_ref(single),
        _ => {
            return Err(ScimError::invalid_syntax(
                "members must be a list of {\"value\": id}",
            ))
        }
    };
    items
        .iter()
        .map(|m| {
            field(m, "value")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ScimError::invalid_value("every member needs a string value"))
        })
        .collect()
}

/// Only workspace members can join a Group.
fn ensure_members(state: &SimState, ids: &[String]) -> Result<(), ScimError> {
    match ids
        .iter()
        .find(|id| !state.users.iter().any(|u| &u.id == *id && u.is_member()))
    {
        Some(id) => Err(ScimError::invalid_value(format!(
            "no workspace member has id {id:?}"
        ))),
        None => Ok(()),
    }
}

fn add_members(g: &mut Group, ids: Vec<String>) {
    for id in ids {
        if !g.members.contains(&id) {
            g.members.push(id);
        }
    }
}

fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

pub(crate) async fn list(State(sim): State<Sim>, ctx: Ctx) -> Result<Response, ScimError> {
    let params = ListParams::parse(&ctx, GROUP_URN, KNOWN)?;
    let state = sim.state();
    let matched = state
        .groups
        .iter()
        .map(|g| group_json(&state, g, &ctx.base))
        .filter(|v| params.keeps(v))
        .collect();
    Ok(params.respond(matched, &ctx.projection()))
}

pub(crate) async fn fetch(
    State(sim): State<Sim>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let state = sim.state();
    let g = &state.groups[find(&state, &id)?];
    Ok(scim_json(
        StatusCode::OK,
        &ctx.projection().apply(group_json(&state, g, &ctx.base)),
    ))
}

struct Input {
    display_name: String,
    members: Vec<String>,
    external_id: Option<String>,
}

fn parse_input(state: &SimState, body: &[u8]) -> Result<Input, ScimError> {
    let body = body_with_schema(body, GROUP_URN)?;
    let display_name = field(&body, "displayName")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?
        .to_owned();
    let members = match field(&body, "members") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => dedup(member_ids(v)?),
    };
    ensure_members(state, &members)?;
    let external_id = match field(&body, "externalId") {
        None | Some(Value::Null) => None,
        Some(v) => Some(patch::string(v, "externalId")?),
    };
    Ok(Input {
        display_name,
        members,
        external_id,
    })
}

pub(crate) async fn create(
    State(sim): State<Sim>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ScimError> {
    let mut state = sim.state();
    let input = parse_input(&state, &body)?;
    ensure_unique(&state, &input.display_name, None)?;
    let at = now();
    let g = Group {
        id: new_id(),
        display_name: input.display_name,
        external_id: input.external_id,
        members: input.members,
        created: at,
        last_modified: at,
    };
    let body = group_json(&state, &g, &ctx.base);
    let location = format!("{}/Groups/{}", ctx.base, g.id);
    state.groups.push(g);
    let mut response = scim_json(StatusCode::CREATED, &body);
    if let Ok(v) = location.parse() {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

pub(crate) async fn replace(
    State(sim): State<Sim>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let mut state = sim.state();
    let i = find(&state, &id)?;
    let input = parse_input(&state, &body)?;
    ensure_unique(&state, &input.display_name, Some(&id))?;
    let before = std::mem::take(&mut state.groups[i].members);
    let g = &mut state.groups[i];
    g.display_name = input.display_name;
    g.members = input.members;
    g.external_id = input.external_id;
    g.last_modified = now();
    sim.note_joins(&state, &before, &state.groups[i]);
    let json = group_json(&state, &state.groups[i], &ctx.base);
    Ok(scim_json(StatusCode::OK, &ctx.projection().apply(json)))
}

pub(crate) async fn patch(
    State(sim): State<Sim>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let ops = patch::parse(&body)?;
    if let Some(cap) = sim.max_members_per_patch() {
        let named = members_named(&ops);
        if named > cap {
            return Err(ScimError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                format!("a PATCH may name at most {cap} members; this one names {named}"),
            ));
        }
    }
    let mut state = sim.state();
    let i = find(&state, &id)?;
    // Atomic (RFC 7644 §3.5.2): work on a copy, keep it only if every operation succeeds.
    let mut g = state.groups[i].clone();
    for op in &ops {
        apply_op(&state, &mut g, op, &ctx.base)?;
    }
    ensure_unique(&state, &g.display_name, Some(&id))?;
    g.last_modified = now();
    sim.note_joins(&state, &state.groups[i].members, &g);
    state.groups[i] = g;
    if !ctx.asks_for_attributes() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let json = group_json(&state, &state.groups[i], &ctx.base);
    Ok(scim_json(StatusCode::OK, &ctx.projection().apply(json)))
}

/// How many members the operations name: each listed value, and one per `members[...]`
/// path filter. A bare remove names none (it clears the Group).
fn members_named(ops: &[Operation]) -> usize {
    let listed = |v: Option<&Value>| match v {
        Some(Value::Array(items)) => items.len(),
        Some(Value::Object(_)) => 1,
        _ => 0,
    };
    ops.iter()
        .map(|op| match &op.path {
            Some(p) if p.attr.name.eq_ignore_ascii_case("members") => {
                if p.filter.is_some() {
                    1
                } else {
                    listed(op.value.as_ref())
                }
            }
            Some(_) => 0,
            None => listed(op.value.as_ref().and_then(|v| field(v, "members"))),
        })
        .sum()
}

fn apply_op(state: &SimState, g: &mut Group, op: &Operation, base: &str) -> Result<(), ScimError> {
    let Some(path) = &op.path else {
        let value = op.value.as_ref().expect("checked by patch::parse");
        for (key, v) in patch::object_entries(value, GROUP_URN) {
            if matches!(key.as_str(), "schemas" | "id" | "meta") {
                continue;
            }
            set(state, g, &key, &v, op.kind)?;
        }
        return Ok(());
    };
    let key =
        patch::key(&path.attr, GROUP_URN).ok_or_else(|| patch::invalid_path(&path.attr.name))?;
    if let Some(f) = &path.filter {
        // Only `remove members[value eq "id"]` is meaningful for a Group's members.
        if key != "members" || op.kind != Kind::Remove || path.sub.is_some() {
            return Err(patch::invalid_path(&key));
        }
        let hits = |id: &String| filter::matches(f, &member_json(state, id, base));
        g.members.retain(|m| !hits(m));
        return Ok(());
    }
    match (op.kind, &op.value) {
        (Kind::Remove, value) => remove(g, &key, value.as_ref()),
        (_, Some(v)) => set(state, g, &key, v, op.kind),
        (_, None) => unreachable!("checked by patch::parse"),
    }
}

fn set(state: &SimState, g: &mut Group, key: &str, v: &Value, kind: Kind) -> Result<(), ScimError> {
    match key {
        "members" => {
            let ids = dedup(member_ids(v)?);
            ensure_members(state, &ids)?;
            if kind == Kind::Replace {
                g.members = ids;
            } else {
                add_members(g, ids);
            }
        }
        "displayname" => {
            let name = patch::string(v, "displayName")?;
            if name.trim().is_empty() {
                return Err(ScimError::invalid_value("displayName cannot be empty"));
            }
            g.display_name = name;
        }
        "externalid" => g.external_id = Some(patch::string(v, "externalId")?),
        other => return Err(patch::invalid_path(other)),
    }
    Ok(())
}

/// `remove members` with a value list removes those members (absent ones are ignored); with
/// no value it removes every member, as RFC 7644 §3.5.2.2 requires.
fn remove(g: &mut Group, key: &str, value: Option<&Value>) -> Result<(), ScimError> {
    match (key, value) {
        ("members", None) => g.members.clear(),
        ("members", Some(v)) => {
            let gone = member_ids(v)?;
            g.members.retain(|m| !gone.contains(m));
        }
        ("externalid", _) => g.external_id = None,
        ("displayname", _) => return Err(ScimError::invalid_value("displayName is required")),
        (other, _) => return Err(patch::invalid_path(other)),
    }
    Ok(())
}

pub(crate) async fn delete(
    State(sim): State<Sim>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let mut state = sim.state();
    let i = find(&state, &id)?;
    state.groups.remove(i);
    Ok(StatusCode::NO_CONTENT.into_response())
}
