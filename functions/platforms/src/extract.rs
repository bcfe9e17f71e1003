//! Lenient field access over verified bodies, and the checked conversions into the core
//! newtypes. Platforms send ids as strings or numbers and nest objects where they expanded
//! them; these helpers absorb that so each platform module reads as its field list.

use crate::{Accepted, Rejected};
use chrono::{DateTime, Utc};
use enroll_core::event::{Buyer, EventKind, OrderEvent};
use enroll_core::ids::{
    BuyerEmail, EventId, EventKey, OrderId, OrderKey, Platform, PlatformProductRef,
};
use serde_json::Value;

/// Buyer names are free text from the checkout form: bounded so a hostile payload cannot
/// inflate every downstream message.
const MAX_NAME_CHARS: usize = 200;

pub(crate) fn json(body: &[u8]) -> Result<Value, Rejected> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| Rejected::bad_request("body is not valid JSON"))?;
    if !v.is_object() {
        return Err(Rejected::bad_request("body is not a JSON object"));
    }
    Ok(v)
}

/// A scalar as text: strings trimmed, numbers (ids are often numbers) in their JSON form.
/// Empty strings, null, objects and arrays are absent.
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The scalar at a JSON pointer (`/data/object/id`).
pub(crate) fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(scalar)
}

/// The first of several pointers that holds a scalar.
pub(crate) fn first(v: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| text(v, p))
}

/// An id that may have been expanded into an object (`"pi_1"` or `{"id": "pi_1", ...}`).
pub(crate) fn id_of(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::Object(o) => o.get("id").and_then(scalar),
        other => scalar(other),
    }
}

pub(crate) fn flag(v: &Value, pointer: &str) -> Option<bool> {
    match v.pointer(pointer)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The elements of an array at `pointer`, or none.
pub(crate) fn array<'v>(v: &'v Value, pointer: &str) -> &'v [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// RFC 3339 (`2024-05-01T10:00:00Z`, `...+02:00`, with or without fractions).
pub(crate) fn rfc3339(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Whole Unix seconds, as a JSON number or a digit string.
pub(crate) fn unix(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    DateTime::<Utc>::from_timestamp(raw.parse().ok()?, 0)
}

/// A required field, or 400 naming it.
pub(crate) fn required(value: Option<String>, field: &str) -> Result<String, Rejected> {
    value.ok_or_else(|| Rejected::bad_request(format!("missing field {field}")))
}

pub(crate) fn order_id(raw: &str, field: &str) -> Result<OrderId, Rejected> {
    OrderId::parse(raw).map_err(|e| Rejected::bad_request(format!("{field}: {e}")))
}

pub(crate) fn event_id(raw: &str, field: &str) -> Result<EventId, Rejected> {
    EventId::parse(raw).map_err(|e| Rejected::bad_request(format!("{field}: {e}")))
}

/// The buyer, from an email and an optional name found in the payload.
///
/// A purchase needs the email (400 naming `field` when absent or invalid). A revocation
/// identifies its order without one, so there the email is a hint: an invalid one is dropped
/// instead of blocking the revocation.
pub(crate) fn buyer(
    kind: EventKind,
    email: Option<String>,
    name: Option<String>,
    field: &str,
) -> Result<Option<Buyer>, Rejected> {
    let required = kind == EventKind::Purchase;
    let Some(raw) = email else {
        if required {
            return Err(Rejected::bad_request(format!(
                "missing buyer email ({field})"
            )));
        }
        return Ok(None);
    };
    match BuyerEmail::parse(&raw) {
        Ok(email) => Ok(Some(Buyer {
            email,
            name: name.and_then(clean_name),
        })),
        // `InvalidId` says why without repeating the value.
        Err(e) if required => Err(Rejected::bad_request(format!("{field}: {e}"))),
        Err(_) => Ok(None),
    }
}

fn clean_name(raw: String) -> Option<String> {
    let name: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// `first last` from two optional parts.
pub(crate) fn join_name(first: Option<String>, last: Option<String>) -> Option<String> {
    match (first, last) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (f, l) => f.or(l),
    }
}

/// Product references in payload order, deduplicated; values the newtype refuses are skipped
/// (a reference is a lookup key, not a reason to refuse a genuine event).
#[derive(Default)]
pub(crate) struct Refs(Vec<PlatformProductRef>);

impl Refs {
    pub(crate) fn push(&mut self, raw: Option<String>) {
        if let Some(r) = raw.and_then(|r| PlatformProductRef::parse(&r).ok()) {
            if !self.0.contains(&r) {
                self.0.push(r);
            }
        }
    }

    pub(crate) fn into_vec(self) -> Vec<PlatformProductRef> {
        self.0
    }
}

/// What a platform module found, before the newtype checks.
pub(crate) struct Found {
    pub(crate) event_id: String,
    pub(crate) event_id_field: &'static str,
    pub(crate) kind: EventKind,
    pub(crate) order_id: String,
    pub(crate) order_id_field: &'static str,
    pub(crate) buyer: Option<Buyer>,
    pub(crate) items: Refs,
    pub(crate) occurred_at: DateTime<Utc>,
}

impl Found {
    pub(crate) fn accept(self, platform: Platform) -> Result<Accepted, Rejected> {
        Ok(Accepted::Event(OrderEvent {
            key: EventKey::new(platform, event_id(&self.event_id, self.event_id_field)?),
            kind: self.kind,
            order: OrderKey {
                platform,
                order_id: order_id(&self.order_id, self.order_id_field)?,
            },
            buyer: self.buyer,
            items: self.items.into_vec(),
            occurred_at: self.occurred_at,
            accepted_at: None,
        }))
    }
}

pub(crate) fn ignored(event_type: &str, reason: impl Into<String>) -> Result<Accepted, Rejected> {
    Ok(Accepted::Ignored {
        event_type: event_type.to_owned(),
        reason: reason.into(),
    })
}

/// A verified form body (Gumroad, ThriveCart), with PHP-style bracketed keys kept verbatim
/// (`customer[email]`, `purchase_map[0]`).
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    /// Form decoding cannot fail: invalid UTF-8 becomes U+FFFD, so garbage surfaces as missing
    /// fields (400) rather than a parse error.
    pub(crate) fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first non-empty value of `key`, trimmed.
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .find(|v| !v.is_empty())
            .map(str::to_owned)
    }

    pub(crate) fn first(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| self.get(k))
    }

    pub(crate) fn is_true(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v == "true" || v == "1")
    }

    /// The values of a list field: `name[]`, `name[0]`, `name[1]`, ... in body order.
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('['))
                    .and_then(|rest| rest.strip_suffix(']'))
                    .is_some_and(|idx| idx.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Serialises a form body in the given field order.
pub(crate) fn form_body(fields: &[(&str, String)]) -> Vec<u8> {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        ser.append_pair(k, v);
    }
    ser.finish().into_bytes()
}

/// A made-up id for a sample, unique per second and kind.
pub(crate) fn synthetic(prefix: &str, now: DateTime<Utc>, kind: Option<EventKind>) -> String {
    match kind {
        Some(k) => format!("{prefix}{}{}", now.timestamp(), k.as_str()),
        None => format!("{prefix}{}", now.timestamp()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_accept_strings_and_numbers_only() {
        let v = json!({"a": " x ", "b": 12, "c": "", "d": null, "e": {"id": "y"}});
        assert_eq!(text(&v, "/a").as_deref(), Some("x"));
        assert_eq!(text(&v, "/b").as_deref(), Some("12"));
        assert_eq!(text(&v, "/c"), None);
        assert_eq!(text(&v, "/d"), None);
        assert_eq!(text(&v, "/e"), None);
        assert_eq!(id_of(&v, "/e").as_deref(), Some("y"));
    }

    #[test]
    fn form_lists_take_indexed_and_bare_brackets() {
        let f = Form::parse(b"m[0]=a&m[]=b&m[x]=no&mm[0]=no&m=no");
        assert_eq!(f.list("m"), ["a", "b"]);
    }

    #[test]
    fn invalid_email_blocks_purchases_but_not_revocations() {
        let bad = Some("not-an-email".to_owned());
        assert_eq!(
            buyer(EventKind::Purchase, bad.clone(), None, "email")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(buyer(EventKind::Refund, bad, None, "email").unwrap(), None);
        let e = buyer(EventKind::Purchase, None, None, "customer.email").unwrap_err();
        assert!(e.reason.contains("customer.email"), "{e}");
    }
}
