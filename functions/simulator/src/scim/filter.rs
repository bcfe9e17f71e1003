//! RFC 7644 §3.4.2.2 filters: parsed into a tree, then evaluated over a resource's SCIM JSON so
//! one evaluator serves Users, Groups and the member lists that PATCH paths select.
//!
//! Attribute names and operators are case-insensitive; string values are JSON strings; string
//! comparison ignores case except for `id`, `externalId` and member ids (their caseExact is
//! true in RFC 7643). Notion's documented `email`, `given_name` and `family_name` are aliases.

use super::error::ScimError;
use serde_json::Value;
use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttrPath {
    pub uri: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    Compare {
        path: AttrPath,
        op: Op,
        value: Value,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `emails[type eq "work"]`, optionally followed by `.value eq "x"` (`then`), which is
    /// evaluated against the same element.
    ValuePath {
        attr: AttrPath,
        inner: Box<Filter>,
        then: Option<Box<Filter>>,
    },
}

/// A PATCH `path`: an attribute, optionally narrowed by a value filter and a sub-attribute.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request("invalidFilter", detail)
}

pub(crate) fn parse(text: &str) -> Result<Filter, ScimError> {
    let mut p = Parser::new(text).map_err(invalid)?;
    let filter = p.or().map_err(invalid)?;
    match p.peek() {
        None => Ok(filter),
        Some(t) => Err(invalid(format!("unexpected {t:?} after the filter"))),
    }
}

pub(crate) fn parse_patch_path(text: &str) -> Result<PatchPath, ScimError> {
    let bad = |why: String| ScimError::bad_request("invalidPath", why);
    let mut p = Parser::new(text).map_err(bad)?;
    let attr = match p.next() {
        Some(Tok::Word(w)) => attr_path(&w).map_err(bad)?,
        _ => return Err(bad(format!("invalid path {text:?}"))),
    };
    let mut path = PatchPath {
        attr,
        filter: None,
        sub: None,
    };
    if p.peek() == Some(&Tok::LBracket) {
        p.next();
        path.filter = Some(p.or().map_err(bad)?);
        p.expect(Tok::RBracket).map_err(bad)?;
        if let Some(Tok::Word(w)) = p.peek() {
            path.sub = Some(sub_attr(w).map_err(bad)?);
            p.next();
        }
    }
    match p.peek() {
        None => Ok(path),
        Some(_) => Err(bad(format!("invalid path {text:?}"))),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Str(String),
    Word(String),
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Self, String> {
        Ok(Self {
            toks: tokenize(text)?,
            pos: 0,
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Tok) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            got => Err(format!("expected {want:?}, found {got:?}")),
        }
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.next();
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.next();
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.keyword("not") {
            self.next();
            self.expect(Tok::LParen)?;
            let inner = self.or()?;
            self.expect(Tok::RParen)?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.next();
            let inner = self.or()?;
            self.expect(Tok::RParen)?;
            return Ok(inner);
        }
        self.attr_expr()
    }

    fn attr_expr(&mut self) -> Result<Filter, String> {
        let path = match self.next() {
            Some(Tok::Word(w)) => attr_path(&w)?,
            got => return Err(format!("expected an attribute, found {got:?}")),
        };
        if self.peek() == Some(&Tok::LBracket) {
            self.next();
            let inner = self.or()?;
            self.expect(Tok::RBracket)?;
            let then = match self.peek() {
                Some(Tok::Word(w)) if w.starts_with('.') => {
                    let sub = sub_attr(w)?;
                    self.next();
                    let rel = AttrPath {
                        uri: None,
                        name: sub,
                        sub: None,
                    };
                    Some(Box::new(self.comparison(rel)?))
                }
                _ => None,
            };
            return Ok(Filter::ValuePath {
                attr: path,
                inner: Box::new(inner),
                then,
            });
        }
        self.comparison(path)
    }

    fn comparison(&mut self, path: AttrPath) -> Result<Filter, String> {
        let op = match self.next() {
            Some(Tok::Word(w)) => w.to_ascii_lowercase(),
            got => return Err(format!("expected an operator, found {got:?}")),
        };
        if op == "pr" {
            return Ok(Filter::Present(path));
        }
        let op = match op.as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => return Err(format!("unknown operator {other:?}")),
        };
        let value = match self.next() {
            Some(Tok::Str(s)) => Value::String(s),
            Some(Tok::Word(w)) => literal(&w)?,
            got => return Err(format!("expected a value, found {got:?}")),
        };
        let string_only = matches!(op, Op::Co | Op::Sw | Op::Ew);
        let ordered = matches!(op, Op::Gt | Op::Ge | Op::Lt | Op::Le);
        if (string_only && !value.is_string())
            || (ordered && (value.is_boolean() || value.is_null()))
        {
            return Err(format!("operator {op:?} cannot compare {value}"));
        }
        Ok(Filter::Compare { path, op, value })
    }
}

fn literal(word: &str) -> Result<Value, String> {
    match word.to_ascii_lowercase().as_str() {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        "null" => return Ok(Value::Null),
        _ => {}
    }
    match serde_json::from_str::<Value>(word) {
        Ok(n @ Value::Number(_)) => Ok(n),
        _ => Err(format!(
            "{word:?} is not a value (strings must be in double quotes)"
        )),
    }
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' => {
                chars.next();
                toks.push(match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBracket,
                    _ => Tok::RBracket,
                });
            }
            '"' => {
                chars.next();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.ok_or("unterminated string")?;
                // The RFC makes filter strings JSON strings, so JSON decides what an escape means.
                let s: String = serde_json::from_str(&text[start..=end])
                    .map_err(|e| format!("invalid string {}: {e}", &text[start..=end]))?;
                toks.push(Tok::Str(s));
            }
            _ => {
                let mut end = text.len();
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_whitespace() || "()[]\"".contains(c) {
                        end = i;
                        break;
                    }
                    chars.next();
                }
                toks.push(Tok::Word(text[start..end].to_owned()));
            }
        }
    }
    if toks.is_empty() {
        return Err("empty filter".into());
    }
    Ok(toks)
}

fn is_attr_name(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '$');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn sub_attr(word: &str) -> Result<String, String> {
    match word.strip_prefix('.') {
        Some(s) if is_attr_name(s) => Ok(s.to_owned()),
        _ => Err(format!("invalid sub-attribute {word:?}")),
    }
}

/// `[URI ":"] ATTRNAME ["." subAttr]`, with Notion's aliases resolved.
fn attr_path(word: &str) -> Result<AttrPath, String> {
    let (uri, rest) = match word.rsplit_once(':') {
        Some((uri, rest)) if uri.to_ascii_lowercase().starts_with("urn:") => {
            (Some(uri.to_owned()), rest)
        }
        Some(_) => return Err(format!("invalid attribute {word:?}")),
        None => (None, word),
    };
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    if !is_attr_name(name) || !sub.is_none_or(is_attr_name) {
        return Err(format!("invalid attribute {word:?}"));
    }
    if uri.is_none() && sub.is_none() {
        let alias = match name.to_ascii_lowercase().as_str() {
            "email" => Some(("emails", "value")),
            "given_name" => Some(("name", "givenName")),
            "family_name" => Some(("name", "familyName")),
            _ => None,
        };
        if let Some((n, s)) = alias {
            return Ok(AttrPath {
                uri: None,
                name: n.into(),
                sub: Some(s.into()),
            });
        }
    }
    Ok(AttrPath {
        uri,
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    })
}

/// Refuses top-level attributes the resource type does not have (RFC 7644: invalidFilter),
/// so a typo is an error rather than a silent "no match".
pub(crate) fn check_attributes(
    filter: &Filter,
    core_urn: &str,
    known: &[&str],
) -> Result<(), ScimError> {
    let check = |p: &AttrPath| {
        let core = p
            .uri
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(core_urn));
        if core && !known.iter().any(|k| k.eq_ignore_ascii_case(&p.name)) {
            return Err(invalid(format!("unknown attribute {:?}", p.name)));
        }
        Ok(())
    };
    match filter {
        Filter::Compare { path, .. } | Filter::Present(path) => check(path),
        Filter::ValuePath { attr, .. } => check(attr),
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_attributes(a, core_urn, known)?;
            check_attributes(b, core_urn, known)
        }
        Filter::Not(a) => check_attributes(a, core_urn, known),
    }
}

fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn flatten(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// The resource (or extension) object a path starts from.
fn container<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    match &path.uri {
        None => Some(resource),
        Some(uri) => {
            let is_core = get_ci(resource, "schemas")
                .and_then(Value::as_array)
                .and_then(|s| s.first())
                .and_then(Value::as_str)
                .is_some_and(|core| core.eq_ignore_ascii_case(uri));
            if is_core {
                Some(resource)
            } else {
                get_ci(resource, uri)
            }
        }
    }
}

/// Every value the path reaches; a complex multi-valued attribute with no sub-attribute
/// compares on its `value` sub-attribute.
fn resolve<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let Some(base) = container(resource, path).and_then(|c| get_ci(c, &path.name)) else {
        return Vec::new();
    };
    let items = flatten(base);
    let sub = match (&path.sub, base.is_array()) {
        (Some(s), _) => s.as_str(),
        (None, true) => "value",
        (None, false) => return items,
    };
    items
        .into_iter()
        .flat_map(|item| match item {
            Value::Object(_) => get_ci(item, sub).map(flatten).unwrap_or_default(),
            other if path.sub.is_none() => vec![other],
            _ => Vec::new(),
        })
        .collect()
}

fn case_exact(path: &AttrPath) -> bool {
    let name = path.name.to_ascii_lowercase();
    let sub = path.sub.as_deref().map(str::to_ascii_lowercase);
    matches!(name.as_str(), "id" | "externalid")
        || (name == "members" && matches!(sub.as_deref(), None | Some("value")))
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare_one(actual: &Value, op: Op, target: &Value, exact: bool) -> bool {
    match (actual, target) {
        (Value::String(a), Value::String(t)) => {
            let (a, t) = if exact {
                (a.clone(), t.clone())
            } else {
                (a.to_lowercase(), t.to_lowercase())
            };
            let ord = || match (
                chrono::DateTime::parse_from_rfc3339(&a),
                chrono::DateTime::parse_from_rfc3339(&t),
            ) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.cmp(&t),
            };
            match op {
                Op::Eq => a == t,
                Op::Ne => a != t,
                Op::Co => a.contains(&t),
                Op::Sw => a.starts_with(&t),
                Op::Ew => a.ends_with(&t),
                Op::Gt => ord() == Ordering::Greater,
                Op::Ge => ord() != Ordering::Less,
                Op::Lt => ord() == Ordering::Less,
                Op::Le => ord() != Ordering::Greater,
            }
        }
        (Value::Number(a), Value::Number(t)) => {
            let (Some(a), Some(t)) = (a.as_f64(), t.as_f64()) else {
                return false;
            };
            match op {
                Op::Eq => a == t,
                Op::Ne => a != t,
                Op::Gt => a > t,
                Op::Ge => a >= t,
                Op::Lt => a < t,
                Op::Le => a <= t,
                Op::Co | Op::Sw | Op::Ew => false,
            }
        }
        (Value::Bool(a), Value::Bool(t)) => match op {
            Op::Eq => a == t,
            Op::Ne => a != t,
            _ => false,
        },
        _ => false,
    }
}

pub(crate) fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::And(a, b) => matches(a, resource) && matches(b, resource),
        Filter::Or(a, b) => matches(a, resource) || matches(b, resource),
        Filter::Not(a) => !matches(a, resource),
        Filter::Present(path) => resolve(resource, path).into_iter().any(present),
        Filter::Compare { path, op, value } => {
            let values = resolve(resource, path);
            if value.is_null() {
                let any = values.into_iter().any(present);
                return if *op == Op::Ne { any } else { !any };
            }
            let exact = case_exact(path);
            if *op == Op::Ne {
                return !values
                    .into_iter()
                    .any(|v| compare_one(v, Op::Eq, value, exact));
            }
            values
                .into_iter()
                .any(|v| compare_one(v, *op, value, exact))
        }
        Filter::ValuePath { attr, inner, then } => {
            let Some(base) = container(resource, attr).and_then(|c| get_ci(c, &attr.name)) else {
                return false;
            };
            flatten(base).into_iter().any(|element| {
                matches(inner, element) && then.as_ref().is_none_or(|t| matches(t, element))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "AbC",
            "userName": "Quote\"Back\\slash+tag@Example.com",
            "name": {"givenName": "Zoë", "familyName": "Ng"},
            "emails": [{"value": "q@example.com", "type": "work", "primary": true},
                       {"value": "home@example.org", "type": "home"}],
            "active": true,
            "meta": {"created": "2024-05-01T10:00:00.000Z"},
            "urn:ietf:params:scim:schemas:extension:notion:2.0:User": {"role": "member"}
        })
    }

    fn m(f: &str) -> bool {
        matches(&parse(f).unwrap_or_else(|e| panic!("{f}: {e:?}")), &user())
    }

    #[test]
    fn escapes_and_case() {
        assert!(m(r#"userName eq "quote\"back\\slash+TAG@example.com""#));
        assert!(m(r#"USERNAME EQ "quote\"back\\slash+tag@example.com""#));
        assert!(!m(r#"userName eq "quote\"back\\slash tag@example.com""#));
        assert!(m(r#"name.givenName eq "ZOË""#));
        assert!(m(r#"given_name sw "zo" and family_name eq "ng""#));
        assert!(!m(r#"id eq "abc""#));
        assert!(m(r#"id eq "AbC""#));
        assert!(m(
            r#"userName eq "\u0051uote\"back\\slash+tag@example.com""#
        ));
    }

    #[test]
    fn multi_valued_and_value_paths() {
        assert!(m(r#"emails.value eq "HOME@example.org""#));
        assert!(m(r#"email eq "q@example.com""#));
        assert!(m(r#"emails eq "q@example.com""#));
        assert!(m(r#"emails[type eq "work"].value eq "q@example.com""#));
        assert!(!m(r#"emails[type eq "work"].value eq "home@example.org""#));
        assert!(m(r#"emails[type eq "home" and value ew ".org"]"#));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:notion:2.0:User:role eq "member""#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName pr"#
        ));
    }

    #[test]
    fn logic_and_precedence() {
        assert!(!m(
            r#"active eq false or userName co "back" and not (name.familyName pr)"#
        ));
        assert!(m(
            r#"(active eq false or userName co "back") and not (displayName pr)"#
        ));
        assert!(m(r#"meta.created gt "2024-05-01T09:00:00Z""#));
        assert!(m(r#"displayName eq null"#));
        assert!(m(r#"displayName ne "x""#));
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "userName",
            r#"userName eq"#,
            r#"userName eq "unterminated"#,
            r#"userName eq unquoted@example.com"#,
            r#"userName zz "x""#,
            r#"(userName eq "x""#,
            r#"userName eq "x" and"#,
            r#"active gt true"#,
            r#"userName co 3"#,
            r#"not userName eq "x""#,
            r#"userName eq "bad \q escape""#,
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn patch_paths() {
        let p = parse_patch_path(r#"members[value eq "a\"b"]"#).unwrap();
        assert_eq!(p.attr.name, "members");
        assert!(p.filter.is_some());
        let p = parse_patch_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert!(parse_patch_path("members[").is_err());
        assert!(parse_patch_path("bad path").is_err());
    }
}
