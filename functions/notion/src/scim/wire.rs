//! What SCIM requests and answers look like on the wire: filters and query values, request
//! bodies, and lenient parsing of users and list responses (RFC 7643/7644).

use super::{NOTION_USER_SCHEMA, PATCH_OP_SCHEMA, USER_SCHEMA};
use enroll_core::config::RemoveForm;
use enroll_core::ids::{BuyerEmail, NotionUserId};
use enroll_core::ports::ScimUser;
use enroll_core::Failure;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

/// RFC 3986 unreserved characters stay; everything else is percent-encoded as UTF-8.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query value (or a path segment): `+` becomes `%2B` and a space `%20`, so
/// neither can be read back as the other.
pub fn encode_query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// The inside of a SCIM filter string literal: RFC 7644 filters quote values as JSON strings,
/// so `"` and `\` are backslash-escaped and control characters become `\uXXXX`. Whatever the
/// input, the result cannot end the literal early.
pub fn escape_filter_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `userName eq "ada@example.com"`, unencoded; the address is lowercased as enroll stores it.
pub fn user_filter(attr: &str, email: &str) -> String {
    format!(
        "{attr} eq \"{}\"",
        escape_filter_value(&email.to_lowercase())
    )
}

/// `displayName eq "Notion Mastery"`, unencoded; names keep their case.
pub fn group_filter(display_name: &str) -> String {
    format!("displayName eq \"{}\"", escape_filter_value(display_name))
}

/// The body of `POST /Users`.
///
/// `schemas` lists exactly the schemas the body carries (RFC 7643 section 3): the core User
/// schema always, Notion's extension only with a `role` in it. A strict server refuses an
/// extension URI with no attributes behind it ("Unknown extension schemas"), and Notion itself
/// accepts the core schema alone.
pub fn create_user_body(email: &BuyerEmail, name: Option<&str>, role: Option<&str>) -> Value {
    let mut body = json!({
        "schemas": [USER_SCHEMA],
        "userName": email.as_str(),
        "emails": [{"value": email.as_str(), "primary": true, "type": "work"}],
        "active": true,
    });
    if let Some(name) = name_parts(name) {
        body["name"] = name;
    }
    if let Some(role) = role.map(str::trim).filter(|r| !r.is_empty()) {
        body["schemas"] = json!([USER_SCHEMA, NOTION_USER_SCHEMA]);
        body[NOTION_USER_SCHEMA] = json!({ "role": role });
    }
    body
}

/// `formatted` as given (whitespace collapsed), the first word as `givenName` and the rest as
/// `familyName`: checkout forms collect one free-text name, and this is how most SCIM clients
/// split one.
pub(super) fn name_parts(name: Option<&str>) -> Option<Value> {
    let words: Vec<&str> = name?.split_whitespace().collect();
    let (given, family) = words.split_first()?;
    let mut out = json!({"formatted": words.join(" "), "givenName": given});
    if !family.is_empty() {
        out["familyName"] = Value::from(family.join(" "));
    }
    Some(out)
}

/// One PATCH adding `users` to a Group. Group PATCHes (the only ones enroll sends; it never
/// PUTs) carry the PatchOp message schema alone, as RFC 7644 section 3.5.2 asks.
pub fn add_members_body(users: &[NotionUserId]) -> Value {
    json!({
        "schemas": [PATCH_OP_SCHEMA],
        "Operations": [{"op": "add", "path": "members", "value": member_values(users)}],
    })
}

/// One PATCH removing `users` from a Group in the configured form.
///
/// Refuses an empty list: under RFC 7644 section 3.5.2.2 a `remove` of `members` with no
/// filter and no value removes every member, and a server that ignored an empty value list
/// would do exactly that.
pub fn remove_members_body(form: RemoveForm, users: &[NotionUserId]) -> Result<Value, Failure> {
    if users.is_empty() {
        return Err(Failure::permanent(
            "refusing a Group remove with no members: it could empty the Group",
        ));
    }
    let operations: Vec<Value> = match form {
        RemoveForm::PathFilter => users
            .iter()
            .map(|u| {
                json!({
                    "op": "remove",
                    "path": format!("members[value eq \"{}\"]", escape_filter_value(u.as_str())),
                })
            })
            .collect(),
        RemoveForm::ValueList => {
            vec![json!({"op": "remove", "path": "members", "value": member_values(users)})]
        }
    };
    Ok(json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations}))
}

pub(super) fn member_values(users: &[NotionUserId]) -> Vec<Value> {
    users.iter().map(|u| json!({"value": u.as_str()})).collect()
}

/// A user as a response shows it, with the addresses it was matched on.
pub(super) struct Listed {
    pub(super) user: ScimUser,
    pub(super) emails: Vec<String>,
    pub(super) has_user_name: bool,
}

impl Listed {
    pub(super) fn is(&self, email: &str) -> bool {
        self.user.user_name.to_lowercase() == email
            || self.emails.iter().any(|e| e.to_lowercase() == email)
    }
}

/// Lenient: only `id` is required. `active` defaults to true and may be a string; `userName`
/// falls back to the primary address; the role comes from Notion's extension.
pub(super) fn parse_user(v: &Value) -> Option<Listed> {
    let id = match v.get("id")? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let id = NotionUserId::parse(&id).ok()?;
    let emails: Vec<(String, bool)> = v
        .get("emails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let value = e.get("value")?.as_str()?.trim().to_owned();
            Some((
                value,
                e.get("primary").and_then(Value::as_bool) == Some(true),
            ))
        })
        .collect();
    let user_name = v.get("userName").and_then(Value::as_str).map(str::to_owned);
    let has_user_name = user_name.is_some();
    let user_name = user_name
        .or_else(|| emails.iter().find(|e| e.1).map(|e| e.0.clone()))
        .or_else(|| emails.first().map(|e| e.0.clone()))
        .unwrap_or_default();
    let active = match v.get("active") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.eq_ignore_ascii_case("false"),
        _ => true,
    };
    let role = v
        .get(NOTION_USER_SCHEMA)
        .and_then(|ext| ext.get("role"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Some(Listed {
        user: ScimUser {
            id,
            user_name,
            active,
            role,
        },
        emails: emails.into_iter().map(|e| e.0).collect(),
        has_user_name,
    })
}

/// A ListResponse's `Resources` (absent when nothing matched) and `totalResults` (a number, or
/// a numeric string from lax servers; the page length when missing).
pub(super) fn parse_list(body: &Value) -> (Vec<Value>, usize) {
    let resources = body
        .get("Resources")
        .or_else(|| body.get("resources"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = match body.get("totalResults") {
        Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or(resources.len());
    (resources, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_json_escaped() {
        assert_eq!(escape_filter_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_filter_value("a\nb\u{7f}"), "a\\u000ab\\u007f");
        assert_eq!(escape_filter_value("zoë"), "zoë");
        assert_eq!(
            user_filter("userName", r#"X" or userName pr "@Example.com"#),
            r#"userName eq "x\" or username pr \"@example.com""#
        );
    }

    #[test]
    fn escaped_values_are_a_single_json_string() {
        for raw in [
            r#"x" or userName pr ""#,
            "\\\"\\",
            "a\u{0}b\u{1f}\"",
            "ünï\\cødé",
        ] {
            let quoted = format!("\"{}\"", escape_filter_value(raw));
            let back: String = serde_json::from_str(&quoted).unwrap();
            assert_eq!(back, raw);
        }
    }

    #[test]
    fn query_values_keep_only_unreserved_characters() {
        assert_eq!(
            encode_query_value(r#"userName eq "a+b c@ü.de""#),
            "userName%20eq%20%22a%2Bb%20c%40%C3%BC.de%22"
        );
        assert_eq!(encode_query_value("A-z_0.9~"), "A-z_0.9~");
    }

    #[test]
    fn names_split_into_given_and_family() {
        let e = BuyerEmail::parse("ada@example.com").unwrap();
        let b = create_user_body(&e, Some("  Ada   King Lovelace "), None);
        assert_eq!(
            b["name"],
            json!({"formatted": "Ada King Lovelace", "givenName": "Ada", "familyName": "King Lovelace"})
        );
        let b = create_user_body(&e, Some("Cher"), None);
        assert_eq!(b["name"], json!({"formatted": "Cher", "givenName": "Cher"}));
        assert!(create_user_body(&e, Some("  "), None).get("name").is_none());
        assert!(create_user_body(&e, None, None).get("name").is_none());
    }

    #[test]
    fn an_empty_remove_is_refused_in_both_forms() {
        for form in [RemoveForm::PathFilter, RemoveForm::ValueList] {
            assert!(remove_members_body(form, &[]).unwrap_err().is_permanent());
        }
    }

    #[test]
    fn users_parse_leniently() {
        let l = parse_user(&json!({"id": "u1"})).unwrap();
        assert_eq!(l.user.user_name, "");
        assert!(l.user.active);
        let l = parse_user(&json!({
            "id": "u2", "active": "false",
            "emails": [{"value": "b@x.org"}, {"value": "a@x.org", "primary": true}],
            NOTION_USER_SCHEMA: {"role": "membership_admin"}
        }))
        .unwrap();
        assert_eq!(l.user.user_name, "a@x.org");
        assert!(!l.user.active);
        assert!(l.user.is_privileged());
        assert!(parse_user(&json!({"userName": "no id"})).is_none());
    }

    #[test]
    fn list_responses_parse_without_resources() {
        assert_eq!(parse_list(&json!({"totalResults": 0})).1, 0);
        assert_eq!(parse_list(&json!({})).0.len(), 0);
        assert_eq!(
            parse_list(&json!({"totalResults": "7", "Resources": [{}]})).1,
            7
        );
    }
}
