//! PatchOp request bodies (RFC 7644 §3.5.2), parsed once for Users and Groups.

use super::error::ScimError;
use super::filter::{parse_patch_path, AttrPath, PatchPath};
use super::{body_with_schema, field, NOTION_USER_URN, PATCH_URN};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub kind: Kind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// Op names are matched case-insensitively: Azure AD sends `Add`/`Remove`/`Replace`.
pub(crate) fn parse(body: &[u8]) -> Result<Vec<Operation>, ScimError> {
    let body = body_with_schema(body, PATCH_URN)?;
    let ops = field(&body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("Operations must be an array"))?;
    ops.iter().map(operation).collect()
}

fn operation(op: &Value) -> Result<Operation, ScimError> {
    if !op.is_object() {
        return Err(ScimError::invalid_syntax(
            "each operation must be an object",
        ));
    }
    let kind = match field(op, "op").and_then(Value::as_str) {
        Some(k) if k.eq_ignore_ascii_case("add") => Kind::Add,
        Some(k) if k.eq_ignore_ascii_case("remove") => Kind::Remove,
        Some(k) if k.eq_ignore_ascii_case("replace") => Kind::Replace,
        other => {
            return Err(ScimError::invalid_syntax(format!(
                "op must be add, remove or replace, got {other:?}"
            )))
        }
    };
    let path = match field(op, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(parse_patch_path(p)?),
        Some(_) => return Err(ScimError::invalid_syntax("path must be a string")),
    };
    let value = field(op, "value").filter(|v| !v.is_null()).cloned();
    match (kind, &path, &value) {
        (Kind::Remove, None, _) => {
            Err(ScimError::bad_request("noTarget", "remove requires a path"))
        }
        (Kind::Add | Kind::Replace, _, None) => {
            Err(ScimError::invalid_syntax("add and replace require a value"))
        }
        (Kind::Add | Kind::Replace, None, Some(v)) if !v.is_object() => Err(
            ScimError::invalid_syntax("without a path, value must be an object"),
        ),
        _ => Ok(Operation { kind, path, value }),
    }
}

/// A canonical lowercase key for an attribute path: `name.givenname`, `members`, or
/// `notion:role` for the Notion extension; `None` for a schema this resource does not have.
pub(crate) fn key(attr: &AttrPath, core_urn: &str) -> Option<String> {
    let prefix = match attr.uri.as_deref() {
        None => "",
        Some(u) if u.eq_ignore_ascii_case(core_urn) => "",
        Some(u) if u.eq_ignore_ascii_case(NOTION_USER_URN) => "notion:",
        Some(_) => return None,
    };
    let mut key = format!("{prefix}{}", attr.name.to_ascii_lowercase());
    if let Some(sub) = &attr.sub {
        key.push('.');
        key.push_str(&sub.to_ascii_lowercase());
    }
    Some(key)
}

/// Every `(key, value)` an operation without a path sets, flattening the extension object.
pub(crate) fn object_entries(value: &Value, core_urn: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (k, v) in value.as_object().into_iter().flatten() {
        if k.eq_ignore_ascii_case(NOTION_USER_URN) {
            for (k2, v2) in v.as_object().into_iter().flatten() {
                out.push((format!("notion:{}", k2.to_ascii_lowercase()), v2.clone()));
            }
        } else if let Some(name) = k.rsplit_once(':').and_then(|(uri, n)| {
            uri.eq_ignore_ascii_case(core_urn)
                .then(|| n.to_ascii_lowercase())
        }) {
            out.push((name, v.clone()));
        } else {
            out.push((k.to_ascii_lowercase(), v.clone()));
        }
    }
    out
}

pub(crate) fn invalid_path(key: &str) -> ScimError {
    ScimError::bad_request(
        "invalidPath",
        format!("attribute {key:?} cannot be patched"),
    )
}

/// SCIM booleans; Azure AD is known to send `"False"` as a string.
pub(crate) fn boolean(v: &Value, what: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::invalid_value(format!(
            "{what} must be a boolean"
        ))),
    }
}

pub(crate) fn string(v: &Value, what: &str) -> Result<String, ScimError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| ScimError::invalid_value(format!("{what} must be a string")))
}
