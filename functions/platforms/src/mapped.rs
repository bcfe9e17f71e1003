//! Mapped platforms: any checkout that can POST a webhook, described in the configuration
//! instead of in code (`[platforms.<name>] kind = "mapped"`; the settings and their start-up
//! checks are in `enroll_core::config`).
//!
//! **Verification**, by `auth`, against every configured secret, before the body is read:
//! - `{ hmac_sha256 = "<header>", encoding = "hex" | "base64", prefix = "..." }`: the header
//!   holds `prefix` followed by the HMAC-SHA256 of the raw body bytes keyed with the secret.
//! - `{ header = "<header>" }`: the header holds the secret itself.
//! - `{ query = "<name>" }`: the query parameter holds the secret itself (as Gumroad does).
//!
//! Missing or wrong: 401. Mapped platforms sign no timestamp, so there is no replay window:
//! a captured request can be replayed, and is then a duplicate of its own event.
//!
//! **Fields.** `fields.*` are RFC 6901 JSON Pointers into a JSON object (`body = "json"`) or
//! form keys (`body = "form"`). A value must be a non-empty string or a number. A missing
//! value, or one of another type, is a 400 naming the field by its configuration key and
//! pointer (`missing field fields.email (/payload/member/email)`); the value is never echoed.
//! - `kind`: the event name, looked up in `kinds`. An unmapped name is ignored (200).
//! - `order`: required on every event.
//! - `email`: required on a purchase; on a revocation only a hint (dropped when absent or
//!   invalid), as on every platform.
//! - `product`: required on a purchase (unlike the built-in platforms, whose payloads are
//!   known: here a missing product almost always means a wrong pointer, which the seller should
//!   see in the platform's delivery log). A JSON array of strings or numbers gives several
//!   references. Optional on revocations.
//! - `name`: optional; dropped when of another type.
//!
//! **Key.** `"{name}:{event_id}"`; when the platform sends no event id, the values of
//! `fields.key` joined with `:` and followed by the event's kind, so an order's refund is never
//! taken for a duplicate of its purchase.
//!
//! **Time.** Nothing in the body is assumed to be a timestamp: the delivery time.

use crate::extract::{self, Form, Refs};
use crate::sign;
use crate::{Accepted, Inbound, Outgoing, Rejected, Sample};
use chrono::{DateTime, Utc};
use enroll_core::config::{
    pointer_segments, AuthScheme, BodyFormat, MappedFields, PlatformConfig, SignatureEncoding,
};
use enroll_core::event::{EventKind, OrderEvent};
use enroll_core::ids::{EventKey, OrderKey, Platform};
use serde_json::{Map, Value};

/// An unmapped event name is echoed in the 200 answer and the log: bounded, without controls.
const MAX_EVENT_NAME_CHARS: usize = 100;

pub(crate) fn receive(
    platform: Platform,
    cfg: &PlatformConfig,
    req: &Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<Accepted, Rejected> {
    let secrets = sign::secrets(platform, cfg)?;
    // Start-up refuses a mapped platform without these; a caller that skipped validation
    // still gets a refusal, never an unverified event.
    let unusable = || Rejected::unauthorized(format!("platforms.{platform} is not usable"));
    let scheme = cfg
        .auth
        .as_ref()
        .and_then(|a| a.scheme().ok())
        .ok_or_else(unusable)?;
    let fields = cfg.fields.as_ref().ok_or_else(unusable)?;
    verify(scheme, &secrets, req)?;

    let body = Body::parse(cfg.body.unwrap_or_default(), req.body)?;
    let event_name = body.required("kind", fields.kind.as_deref())?;
    let Some(&kind) = cfg.kinds.get(&event_name) else {
        let shown: String = event_name
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_EVENT_NAME_CHARS)
            .collect();
        return extract::ignored(
            &shown,
            format!("event name is not mapped to a kind (platforms.{platform}.kinds)"),
        );
    };
    let purchase = kind == EventKind::Purchase;
    let order_field = body.describe("order", fields.order.as_deref());
    let order = body.required("order", fields.order.as_deref())?;
    let email_field = body.describe("email", fields.email.as_deref());
    let email = if purchase {
        Some(body.required("email", fields.email.as_deref())?)
    } else {
        body.optional(fields.email.as_deref())
    };
    let name = body.optional(fields.name.as_deref());
    let buyer = extract::buyer(kind, email, name, &email_field)?;
    let mut items = Refs::default();
    let products = body.products(fields.product.as_deref());
    match products {
        Lookup::Found(refs) => refs.into_iter().for_each(|r| items.push(Some(r))),
        _ if purchase => return Err(body.refusal("product", fields.product.as_deref(), products)),
        _ => {}
    }
    let (event_id, event_id_field) = event_id(&body, fields, kind)?;
    Ok(Accepted::Event(OrderEvent {
        key: EventKey::new(platform, extract::event_id(&event_id, &event_id_field)?),
        kind,
        order: OrderKey {
            platform,
            order_id: extract::order_id(&order, &order_field)?,
        },
        buyer,
        items: items.into_vec(),
        occurred_at: now,
        accepted_at: None,
    }))
}

/// The event id and how to name it in a refusal.
fn event_id(
    body: &Body,
    fields: &MappedFields,
    kind: EventKind,
) -> Result<(String, String), Rejected> {
    if let Some(at) = fields.event_id.as_deref() {
        return Ok((
            body.required("event_id", Some(at))?,
            body.describe("event_id", Some(at)),
        ));
    }
    let mut parts = Vec::with_capacity(fields.key.len() + 1);
    for (i, at) in fields.key.iter().enumerate() {
        parts.push(body.required(&format!("key[{i}]"), Some(at))?);
    }
    parts.push(kind.as_str().to_owned());
    Ok((parts.join(":"), "fields.key".to_owned()))
}

/// Checks the request's proof of origin against every configured secret.
fn verify(scheme: AuthScheme<'_>, secrets: &[&str], req: &Inbound<'_>) -> Result<(), Rejected> {
    let presented = match scheme {
        AuthScheme::Hmac {
            header,
            encoding,
            prefix,
        } => {
            let raw = sign::auth_header(req, header)?;
            let sig = raw.strip_prefix(prefix).ok_or_else(|| {
                Rejected::unauthorized(format!("{header} does not start with {prefix}"))
            })?;
            let decoded = match encoding {
                SignatureEncoding::Hex => sign::decode_hex_sig(sig),
                SignatureEncoding::Base64 => sign::decode_base64_sig(sig),
            };
            let what = match encoding {
                SignatureEncoding::Hex => "hex",
                SignatureEncoding::Base64 => "base64",
            };
            let decoded = decoded.ok_or_else(|| {
                Rejected::unauthorized(format!("{header} is not a {what} HMAC-SHA256"))
            })?;
            let keys = secrets.iter().map(|s| s.as_bytes());
            if !sign::any_mac_matches(keys, &[req.body], &[decoded]) {
                return Err(Rejected::unauthorized(format!(
                    "{header} matches no configured secret"
                )));
            }
            return Ok(());
        }
        AuthScheme::Header(header) => (sign::auth_header(req, header)?.to_owned(), header),
        AuthScheme::Query(param) => (
            Form::parse(req.query.unwrap_or_default().as_bytes())
                .get(param)
                .ok_or_else(|| {
                    Rejected::unauthorized(format!("missing {param} query parameter"))
                })?,
            param,
        ),
    };
    let (value, what) = presented;
    // Every secret is compared, not only up to the first match.
    let matched = secrets
        .iter()
        .fold(false, |any, s| any | sign::secret_eq(&value, s));
    if matched {
        Ok(())
    } else {
        Err(Rejected::unauthorized(format!(
            "{what} matches no configured secret"
        )))
    }
}

/// What a field's pointer or key found.
enum Lookup<T> {
    Found(T),
    Missing,
    WrongType,
}

/// A verified body, read through the configured pointers or keys.
enum Body {
    Json(Value),
    Form(Form),
}

impl Body {
    fn parse(format: BodyFormat, raw: &[u8]) -> Result<Self, Rejected> {
        Ok(match format {
            BodyFormat::Json => Body::Json(extract::json(raw)?),
            BodyFormat::Form => Body::Form(Form::parse(raw)),
        })
    }

    /// `fields.email (/payload/member/email)`: how refusals name a field.
    fn describe(&self, key: &str, at: Option<&str>) -> String {
        format!("fields.{key} ({})", at.unwrap_or("not configured"))
    }

    fn lookup(&self, at: Option<&str>) -> Lookup<String> {
        let Some(at) = at else {
            return Lookup::Missing;
        };
        match self {
            Body::Json(v) => match v.pointer(at) {
                None | Some(Value::Null) => Lookup::Missing,
                Some(Value::String(s)) if s.trim().is_empty() => Lookup::Missing,
                Some(found) => extract::scalar(found).map_or(Lookup::WrongType, Lookup::Found),
            },
            Body::Form(f) => f.get(at).map_or(Lookup::Missing, Lookup::Found),
        }
    }

    /// Every product reference at `at`: a scalar, or (JSON) an array of scalars.
    fn products(&self, at: Option<&str>) -> Lookup<Vec<String>> {
        if let (Body::Json(v), Some(p)) = (self, at) {
            if let Some(Value::Array(list)) = v.pointer(p) {
                let refs: Option<Vec<String>> = list.iter().map(extract::scalar).collect();
                return match refs {
                    Some(r) if !r.is_empty() => Lookup::Found(r),
                    Some(_) => Lookup::Missing,
                    None => Lookup::WrongType,
                };
            }
        }
        match self.lookup(at) {
            Lookup::Found(r) => Lookup::Found(vec![r]),
            Lookup::Missing => Lookup::Missing,
            Lookup::WrongType => Lookup::WrongType,
        }
    }

    fn refusal<T>(&self, key: &str, at: Option<&str>, found: Lookup<T>) -> Rejected {
        let field = self.describe(key, at);
        Rejected::bad_request(match found {
            Lookup::WrongType => format!("field {field} is not a string or number"),
            _ => format!("missing field {field}"),
        })
    }

    fn required(&self, key: &str, at: Option<&str>) -> Result<String, Rejected> {
        match self.lookup(at) {
            Lookup::Found(v) => Ok(v),
            other => Err(self.refusal(key, at, other)),
        }
    }

    /// The value, or none when missing or of another type.
    fn optional(&self, at: Option<&str>) -> Option<String> {
        match self.lookup(at) {
            Lookup::Found(v) => Some(v),
            _ => None,
        }
    }
}

/// The request a mapped platform configured as `cfg` would send for `s`, signed with `secret`.
/// Each configured field gets its value (JSON objects are created along each pointer); when two
/// fields share a pointer or key, the first in the order kind, email, product, order, event id
/// (or key fields), name keeps it. The event name is the first of `kinds` mapped to `s.kind`,
/// else the kind's own name (which `receive` then ignores).
pub(crate) fn sample(
    cfg: &PlatformConfig,
    s: &Sample,
    secret: &str,
    now: DateTime<Utc>,
) -> Outgoing {
    let (content_type, body) = render(cfg, s, now);
    let mut out = Outgoing {
        query: None,
        headers: vec![("content-type".into(), content_type.into())],
        body,
    };
    match cfg.auth.as_ref().and_then(|a| a.scheme().ok()) {
        Some(AuthScheme::Hmac {
            header,
            encoding,
            prefix,
        }) => {
            let sig = match encoding {
                SignatureEncoding::Hex => sign::hex_mac(secret.as_bytes(), &[&out.body]),
                SignatureEncoding::Base64 => sign::base64_mac(secret.as_bytes(), &[&out.body]),
            };
            out.headers
                .push((header.to_ascii_lowercase(), format!("{prefix}{sig}")));
        }
        Some(AuthScheme::Header(header)) => {
            out.headers
                .push((header.to_ascii_lowercase(), secret.into()));
        }
        Some(AuthScheme::Query(param)) => {
            let q = extract::form_body(&[(param, secret.into())]);
            out.query = Some(String::from_utf8(q).unwrap_or_default());
        }
        None => {}
    }
    out
}

/// A purchase body as the platform configured as `cfg` would send it, with placeholder
/// values: what `enroll doctor` prints next to the webhook URL. Pretty JSON, or the form body.
pub fn sample_body(cfg: &PlatformConfig) -> String {
    let s = Sample {
        kind: EventKind::Purchase,
        product: "your-product-reference".into(),
        email: "buyer@example.com".into(),
        name: Some("Ada Lovelace".into()),
        order_id: Some("order-1001".into()),
        event_id: Some("event-1001".into()),
    };
    let (_, body) = render(cfg, &s, DateTime::<Utc>::UNIX_EPOCH);
    match cfg.body.unwrap_or_default() {
        BodyFormat::Json => serde_json::from_slice::<Value>(&body)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_default(),
        BodyFormat::Form => String::from_utf8(body).unwrap_or_default(),
    }
}

/// The content type and body for `s`.
fn render(cfg: &PlatformConfig, s: &Sample, now: DateTime<Utc>) -> (&'static str, Vec<u8>) {
    let default = MappedFields::default();
    let f = cfg.fields.as_ref().unwrap_or(&default);
    let event_name = cfg
        .kinds
        .iter()
        .find(|(_, k)| **k == s.kind)
        .map_or_else(|| s.kind.as_str().to_owned(), |(n, _)| n.clone());
    let event_id = s
        .event_id
        .clone()
        .unwrap_or_else(|| extract::synthetic("evt_enroll", now, Some(s.kind)));
    let order = s
        .order_id
        .clone()
        .unwrap_or_else(|| extract::synthetic("ord_enroll", now, None));
    let mut values: Vec<(&str, String)> = [
        (&f.kind, Some(event_name)),
        (&f.email, Some(s.email.clone())),
        (&f.product, Some(s.product.clone())),
        (&f.order, Some(order)),
        (&f.event_id, Some(event_id.clone())),
    ]
    .into_iter()
    .filter_map(|(at, v)| Some((at.as_deref()?, v?)))
    .collect();
    values.extend(f.key.iter().map(|at| (at.as_str(), event_id.clone())));
    if let (Some(at), Some(name)) = (&f.name, &s.name) {
        values.push((at, name.clone()));
    }
    match cfg.body.unwrap_or_default() {
        BodyFormat::Json => {
            let mut root = Value::Object(Map::new());
            for (at, v) in values {
                set_once(&mut root, &pointer_segments(at), v);
            }
            (
                "application/json",
                serde_json::to_vec(&root).unwrap_or_default(),
            )
        }
        BodyFormat::Form => {
            let mut pairs: Vec<(&str, String)> = Vec::new();
            for (k, v) in values {
                if !pairs.iter().any(|(seen, _)| *seen == k) {
                    pairs.push((k, v));
                }
            }
            (
                "application/x-www-form-urlencoded",
                extract::form_body(&pairs),
            )
        }
    }
}

/// Sets the value at `path` unless something is already there, creating objects on the way.
/// A path through a value that is not an object is left alone (start-up refuses such pointers).
fn set_once(root: &mut Value, path: &[String], value: String) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = root;
    for seg in parents {
        let Value::Object(map) = at else {
            return;
        };
        at = map
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(map) = at {
        map.entry(last.clone()).or_insert(Value::String(value));
    }
}
