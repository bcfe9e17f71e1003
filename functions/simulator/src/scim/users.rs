//! `/Users`: workspace members.
//!
//! `DELETE` hides the user from SCIM (404, not listed: RFC 7644 §3.6) but keeps the account,
//! so a later `POST` of the same userName brings back the same id. `active = false` (PATCH or
//! PUT) keeps the user listed as inactive. Either way the user leaves every Group.

use super::error::ScimError;
use super::patch::{self, Kind, Operation};
use super::{
    body_with_schema, field, filter, scim_json, timestamp, Ctx, ListParams, NOTION_USER_URN,
    USER_URN,
};
use crate::model::{new_id, now, Email, Name, SimState, User};
use crate::sim::Sim;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

const KNOWN: &[&str] = &[
    "id",
    "externalId",
    "userName",
    "name",
    "displayName",
    "nickName",
    "title",
    "userType",
    "emails",
    "phoneNumbers",
    "active",
    "roles",
    "meta",
];
const ROLES: &[&str] = &["owner", "membership_admin", "member", "restricted_member"];

pub(crate) fn user_json(u: &User, base: &str) -> Value {
    let emails: Vec<Value> = if u.emails.is_empty() {
        // Notion's userName is the account's email, so a user always has one.
        vec![json!({"value": u.user_name, "type": "work", "primary": true})]
    } else {
        u.emails.iter().map(|e| json!(e)).collect()
    };
    let mut v = json!({
        "schemas": [USER_URN, NOTION_USER_URN],
        "id": u.id,
        "userName": u.user_name,
        "emails": emails,
        "active": u.active,
        NOTION_USER_URN: {"role": u.role},
        "meta": {
            "resourceType": "User",
            "created": timestamp(&u.created),
            "lastModified": timestamp(&u.last_modified),
            "location": format!("{base}/Users/{}", u.id),
        },
    });
    if let Some(name) = &u.name {
        // SCIM spells these in camelCase; the stored state uses Rust names.
        let mut n = serde_json::Map::new();
        for (key, part) in [
            ("formatted", &name.formatted),
            ("givenName", &name.given_name),
            ("familyName", &name.family_name),
        ] {
            if let Some(part) = part {
                n.insert(key.into(), json!(part));
            }
        }
        v["name"] = Value::Object(n);
    }
    if let Some(d) = &u.display_name {
        v["displayName"] = json!(d);
    }
    if let Some(x) = &u.external_id {
        v["externalId"] = json!(x);
    }
    v
}

/// Notion's userName is the account's email address, so anything else is refused. The check
/// is deliberately plain: one `@`, something before it, a dotted domain after it, no spaces.
fn user_name(raw: String) -> Result<String, ScimError> {
    let valid = raw.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    }) && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(raw)
    } else {
        Err(ScimError::invalid_value(format!(
            "userName must be an email address, got {raw:?}"
        )))
    }
}

fn same_name(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

fn find<'a>(state: &'a mut SimState, id: &str) -> Result<&'a mut User, ScimError> {
    state
        .users
        .iter_mut()
        .find(|u| u.id == id && !u.deleted)
        .ok_or_else(|| ScimError::not_found("User", id))
}

/// 409 when another workspace member already has this userName.
fn ensure_unique(state: &SimState, user_name: &str, except: Option<&str>) -> Result<(), ScimError> {
    let taken = state.users.iter().any(|u| {
        u.is_member() && Some(u.id.as_str()) != except && same_name(&u.user_name, user_name)
    });
    if taken {
        return Err(ScimError::conflict(format!(
            "a workspace member with userName {user_name:?} already exists"
        )));
    }
    Ok(())
}

pub(crate) fn leave_groups(state: &mut SimState, user_id: &str) {
    let at = now();
    for g in &mut state.groups {
        let before = g.members.len();
        g.members.retain(|m| m != user_id);
        if g.members.len() != before {
            g.last_modified = at;
        }
    }
}

pub(crate) async fn list(State(sim): State<Sim>, ctx: Ctx) -> Result<Response, ScimError> {
    let params = ListParams::parse(&ctx, USER_URN, KNOWN)?;
    let state = sim.state();
    let members = state.users.iter().filter(|u| !u.deleted);
    if params.filter.is_none() {
        // Paging through a large workspace renders only the page asked for, so a page costs
        // the same however many members there are.
        let total = members.clone().count();
        let page = members
            .skip(params.start_index - 1)
            .take(params.count)
            .map(|u| user_json(u, &ctx.base))
            .collect();
        return Ok(params.respond_page(total, page, &ctx.projection()));
    }
    let matched = members
        .map(|u| user_json(u, &ctx.base))
        .filter(|v| params.keeps(v))
        .collect();
    Ok(params.respond(matched, &ctx.projection()))
}

pub(crate) async fn fetch(
    State(sim): State<Sim>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let mut state = sim.state();
    let user = find(&mut state, &id)?;
    Ok(scim_json(
        StatusCode::OK,
        &ctx.projection().apply(user_json(user, &ctx.base)),
    ))
}

/// The attributes a POST or PUT body sets.
struct Input {
    user_name: String,
    name: Option<Name>,
    display_name: Option<String>,
    emails: Vec<Email>,
    external_id: Option<String>,
    active: Option<bool>,
    role: Option<String>,
}

fn optional_string(body: &Value, key: &str) -> Result<Option<String>, ScimError> {
    match field(body, key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => patch::string(v, key).map(Some),
    }
}

fn parse_name(v: &Value) -> Result<Option<Name>, ScimError> {
    if v.is_null() {
        return Ok(None);
    }
    if !v.is_object() {
        return Err(ScimError::invalid_value("name must be an object"));
    }
    Ok(Some(Name {
        formatted: optional_string(v, "formatted")?,
        given_name: optional_string(v, "givenName")?,
        family_name: optional_string(v, "familyName")?,
    }))
}

fn parse_emails(v: &Value) -> Result<Vec<Email>, ScimError> {
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items.as_slice(),
        single @ Value::Object(_) => std::slice::from_ref(single),
        _ => return Err(ScimError::invalid_value("emails must be an array")),
    };
    items
        .iter()
        .map(|e| {
            let value = optional_string(e, "value")?
                .ok_or_else(|| ScimError::invalid_value("every email needs a value"))?;
            let primary = field(e, "primary")
                .map(|p| patch::boolean(p, "emails.primary"))
                .transpose()?
                .unwrap_or(false);
            Ok(Email {
                value,
                kind: optional_string(e, "type")?,
                primary,
            })
        })
        .collect()
}

fn parse_role(v: &Value) -> Result<String, ScimError> {
    let role = patch::string(v, "role")?;
    if !ROLES.contains(&role.as_str()) {
        return Err(ScimError::invalid_value(format!(
            "role must be one of {ROLES:?}, got {role:?}"
        )));
    }
    Ok(role)
}

fn parse_input(body: &Value) -> Result<Input, ScimError> {
    let user_name = optional_string(body, "userName")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ScimError::invalid_value("userName is required"))
        .and_then(user_name)?;
    let role = field(body, NOTION_USER_URN)
        .and_then(|ext| field(ext, "role"))
        .filter(|r| !r.is_null())
        .map(parse_role)
        .transpose()?;
    Ok(Input {
        user_name,
        name: field(body, "name").map(parse_name).transpose()?.flatten(),
        display_name: optional_string(body, "displayName")?,
        emails: field(body, "emails")
            .map(parse_emails)
            .transpose()?
            .unwrap_or_default(),
        external_id: optional_string(body, "externalId")?,
        active: field(body, "active")
            .filter(|a| !a.is_null())
            .map(|a| patch::boolean(a, "active"))
            .transpose()?,
        role,
    })
}

fn apply_input(user: &mut User, input: Input) {
    user.user_name = input.user_name;
    user.name = input.name;
    user.display_name = input.display_name;
    user.emails = input.emails;
    user.external_id = input.external_id;
    if let Some(active) = input.active {
        user.active = active;
    }
    if let Some(role) = input.role {
        user.role = role;
    }
    user.last_modified = now();
}

fn created(user: &User, base: &str) -> Response {
    let body = user_json(user, base);
    let location = format!("{base}/Users/{}", user.id);
    let mut response = scim_json(StatusCode::CREATED, &body);
    if let Ok(v) = location.parse() {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

pub(crate) async fn create(
    State(sim): State<Sim>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = parse_input(&body_with_schema(&body, USER_URN)?)?;
    let mut state = sim.state();
    ensure_unique(&state, &input.user_name, None)?;
    let wants_active = input.active.unwrap_or(true);
    // The Notion account outlives its membership: re-adding it keeps its id.
    let existing = state
        .users
        .iter()
        .position(|u| same_name(&u.user_name, &input.user_name));
    let index = match existing {
        Some(i) => i,
        None => {
            let at = now();
            state.users.push(User {
                id: new_id(),
                user_name: String::new(),
                external_id: None,
                name: None,
                display_name: None,
                emails: Vec::new(),
                active: true,
                deleted: false,
                role: "member".into(),
                created: at,
                last_modified: at,
            });
            state.users.len() - 1
        }
    };
    let user = &mut state.users[index];
    apply_input(user, input);
    user.active = wants_active;
    user.deleted = false;
    Ok(created(user, &ctx.base))
}

pub(crate) async fn replace(
    State(sim): State<Sim>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = parse_input(&body_with_schema(&body, USER_URN)?)?;
    let mut state = sim.state();
    find(&mut state, &id)?;
    ensure_unique(&state, &input.user_name, Some(&id))?;
    let user = find(&mut state, &id)?;
    apply_input(user, input);
    let (active, json) = (user.active, user_json(user, &ctx.base));
    if !active {
        leave_groups(&mut state, &id);
    }
    Ok(scim_json(StatusCode::OK, &ctx.projection().apply(json)))
}

pub(crate) async fn patch(
    State(sim): State<Sim>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let ops = patch::parse(&body)?;
    let mut state = sim.state();
    // RFC 7644 §3.5.2: a PATCH is atomic, so apply to a copy and keep it only if all succeed.
    let mut user = find(&mut state, &id)?.clone();
    for op in &ops {
        apply_op(&mut user, op)?;
    }
    ensure_unique(&state, &user.user_name, Some(&id))?;
    user.last_modified = now();
    let json = user_json(&user, &ctx.base);
    let active = user.active;
    *find(&mut state, &id)? = user;
    if !active {
        leave_groups(&mut state, &id);
    }
    Ok(scim_json(StatusCode::OK, &ctx.projection().apply(json)))
}

fn apply_op(user: &mut User, op: &Operation) -> Result<(), ScimError> {
    let Some(path) = &op.path else {
        let value = op.value.as_ref().expect("checked by patch::parse");
        for (key, v) in patch::object_entries(value, USER_URN) {
            if matches!(key.as_str(), "schemas" | "id" | "meta") {
                continue;
            }
            set(user, &key, &v, op.kind)?;
        }
        return Ok(());
    };
    if is_extension(&path.attr) && path.filter.is_none() {
        // RFC 7644 §3.5.2: a path may name the extension itself; its value holds the
        // extension's attributes, e.g. `{"role": "member"}`.
        return match (op.kind, &op.value) {
            (Kind::Remove, _) => remove(user, "notion:role", None),
            (_, Some(Value::Object(attrs))) => attrs
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("schemas"))
                .try_for_each(|(k, v)| {
                    set(user, &format!("notion:{}", k.to_lowercase()), v, op.kind)
                }),
            (_, _) => Err(ScimError::invalid_value(format!(
                "{NOTION_USER_URN} takes an object"
            ))),
        };
    }
    let key =
        patch::key(&path.attr, USER_URN).ok_or_else(|| patch::invalid_path(&path.attr.name))?;
    if let Some(f) = &path.filter {
        return patch_emails(user, &key, f, path.sub.as_deref(), op);
    }
    match (op.kind, &op.value) {
        (Kind::Remove, value) => remove(user, &key, value.as_ref()),
        (_, Some(v)) => set(user, &key, v, op.kind),
        (_, None) => unreachable!("checked by patch::parse"),
    }
}

/// A path that is Notion's extension URN itself, with no attribute after it.
fn is_extension(attr: &filter::AttrPath) -> bool {
    attr.sub.is_none()
        && attr
            .uri
            .as_deref()
            .is_some_and(|uri| format!("{uri}:{}", attr.name).eq_ignore_ascii_case(NOTION_USER_URN))
}

fn name_mut(user: &mut User) -> &mut Name {
    user.name.get_or_insert_with(Name::default)
}

fn set(user: &mut User, key: &str, v: &Value, kind: Kind) -> Result<(), ScimError> {
    let text = |v: &Value| patch::string(v, key);
    match key {
        "active" => user.active = patch::boolean(v, "active")?,
        "username" => {
            let name = text(v)?;
            if name.trim().is_empty() {
                return Err(ScimError::invalid_value("userName cannot be empty"));
            }
            user.user_name = user_name(name)?;
        }
        "displayname" => user.display_name = Some(text(v)?),
        "externalid" => user.external_id = Some(text(v)?),
        "name" => {
            let Some(new) = parse_name(v)? else {
                user.name = None;
                return Ok(());
            };
            if kind == Kind::Replace || user.name.is_none() {
                user.name = Some(new);
            } else {
                let name = name_mut(user);
                name.formatted = new.formatted.or(name.formatted.take());
                name.given_name = new.given_name.or(name.given_name.take());
                name.family_name = new.family_name.or(name.family_name.take());
            }
        }
        "name.formatted" => name_mut(user).formatted = Some(text(v)?),
        "name.givenname" => name_mut(user).given_name = Some(text(v)?),
        "name.familyname" => name_mut(user).family_name = Some(text(v)?),
        "emails" => {
            let new = parse_emails(v)?;
            if kind == Kind::Replace {
                user.emails = new;
            } else {
                for e in new {
                    user.emails.retain(|old| !same_name(&old.value, &e.value));
                    user.emails.push(e);
                }
            }
        }
        "notion:role" => user.role = parse_role(v)?,
        other => return Err(patch::invalid_path(other)),
    }
    Ok(())
}

fn remove(user: &mut User, key: &str, value: Option<&Value>) -> Result<(), ScimError> {
    match key {
        "displayname" => user.display_name = None,
        "externalid" => user.external_id = None,
        "name" => user.name = None,
        "name.formatted" => name_mut(user).formatted = None,
        "name.givenname" => name_mut(user).given_name = None,
        "name.familyname" => name_mut(user).family_name = None,
        "emails" => match value {
            None => user.emails.clear(),
            Some(v) => {
                let gone = parse_emails(v)?;
                user.emails
                    .retain(|e| !gone.iter().any(|g| same_name(&g.value, &e.value)));
            }
        },
        "active" | "username" | "notion:role" => {
            return Err(ScimError::invalid_value(format!("{key} is required")))
        }
        other => return Err(patch::invalid_path(other)),
    }
    Ok(())
}

/// `emails[type eq "work"].value` style paths.
fn patch_emails(
    user: &mut User,
    key: &str,
    f: &filter::Filter,
    sub: Option<&str>,
    op: &Operation,
) -> Result<(), ScimError> {
    if key != "emails" {
        return Err(patch::invalid_path(key));
    }
    let hit = |e: &Email| filter::matches(f, &json!(e));
    match (op.kind, sub, &op.value) {
        (Kind::Remove, None, _) => user.emails.retain(|e| !hit(e)),
        (Kind::Replace | Kind::Add, Some(sub), Some(v)) => {
            let mut found = false;
            for e in user.emails.iter_mut().filter(|e| hit(e)) {
                found = true;
                match sub.to_ascii_lowercase().as_str() {
                    "value" => e.value = patch::string(v, "value")?,
                    "type" => e.kind = Some(patch::string(v, "type")?),
                    "primary" => e.primary = patch::boolean(v, "primary")?,
                    other => return Err(patch::invalid_path(other)),
                }
            }
            if !found {
                return Err(ScimError::bad_request(
                    "noTarget",
                    "no email matches the path filter",
                ));
            }
        }
        _ => return Err(patch::invalid_path(key)),
    }
    Ok(())
}

pub(crate) async fn delete(
    State(sim): State<Sim>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let mut state = sim.state();
    let user = find(&mut state, &id)?;
    user.deleted = true;
    user.active = false;
    user.last_modified = now();
    leave_groups(&mut state, &id);
    Ok(StatusCode::NO_CONTENT.into_response())
}
