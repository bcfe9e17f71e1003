//! Standard Webhooks (<https://www.standardwebhooks.com>), as Polar and others send them.
//!
//! **Verification.** Headers `webhook-id`, `webhook-timestamp` and `webhook-signature` (the
//! `svix-` names are read when the `webhook-` ones are absent, since Svix-powered senders use
//! them for the same scheme). The signature header is a space-separated list of
//! `<version>,<base64>`; only `v1` entries count (`v1a` and others are ignored). Each `v1` is
//! the base64 HMAC-SHA256 of `"{id}.{timestamp}.{raw body}"`. The key is the configured secret:
//! `whsec_<base64>` is base64-decoded after the prefix, as the specification says. A secret
//! without that prefix is tried both base64-decoded and as its own bytes: Polar hands its
//! dashboard secret to the Standard Webhooks library base64-*encoded*, so its HMAC key is the
//! secret string itself. The timestamp must be within the tolerance (default 300 s, the
//! specification's), in either direction.
//!
//! **Events.** The body is `{"type": "...", "timestamp": "...", "data": {...}}`. The type is
//! looked up in `cfg.event_types`; when that map is empty the defaults are:
//!
//! | `type` | kind |
//! |---|---|
//! | `order.paid`, `order.created`, `order.completed` | purchase |
//! | `order.refunded` | refund |
//! | `dispute.created` | chargeback |
//! | `subscription.canceled`, `subscription.revoked` | cancel |
//!
//! A non-empty map replaces the defaults entirely. For Polar, `subscription.canceled` means the
//! buyer cancelled and keeps access until the period ends, while `subscription.revoked` means
//! access ended: a seller who wants access to last the paid period maps only
//! `subscription.revoked`. Likewise `order.created` fires before payment on Polar; a seller who
//! grants only on payment maps only `order.paid`. Unmapped types are ignored.
//!
//! **Key.** The `webhook-id` header (`msg_...`), identical on every retry.
//!
//! **Fields read from `data`** (first present wins):
//! - order id: `subscription_id`, `order_id`, `id`. The subscription comes first so a renewal,
//!   a refund and the revocation of a subscription all land on the order the first payment
//!   created (Polar's `order.paid` carries `subscription_id`; its `subscription.*` events have
//!   the subscription as `id`).
//! - email: `customer.email`, `customer_email`, `email`; name: `customer.name`,
//!   `customer_name`.
//! - product references: `product_id`, `product.id`, `product_price_id`, `price_id`, then per
//!   `items[]`: `product_id`, `product.id` (or `product` as a string), `product_price_id`,
//!   `price_id`, `sku`. `items[].id` is not used: in Polar and most senders it identifies the
//!   order line, not a product. Product names are not used: sellers rename products.
//!
//! **Time.** The payload's `timestamp`, else the signed `webhook-timestamp`.

use crate::extract::{self, array, first, id_of, text, Found, Refs};
use crate::sign;
use crate::{Accepted, Inbound, Outgoing, Rejected, Sample};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use enroll_core::config::PlatformConfig;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use serde_json::{json, Value};

const DEFAULT_TYPES: &[(&str, EventKind)] = &[
    ("order.paid", EventKind::Purchase),
    ("order.created", EventKind::Purchase),
    ("order.completed", EventKind::Purchase),
    ("order.refunded", EventKind::Refund),
    ("subscription.canceled", EventKind::Cancel),
    ("subscription.revoked", EventKind::Cancel),
    ("dispute.created", EventKind::Chargeback),
];

/// A `webhook-` header, else its `svix-` twin.
fn header<'a>(req: &'a Inbound<'_>, name: &str) -> Result<&'a str, Rejected> {
    sign::auth_header(req, &format!("webhook-{name}"))
        .or_else(|e| sign::auth_header(req, &format!("svix-{name}")).map_err(|_| e))
}

/// The HMAC keys a configured secret stands for (see the module documentation).
fn keys(secret: &str) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    match secret.strip_prefix("whsec_") {
        Some(rest) => b64.decode(rest).into_iter().collect(),
        None => {
            let mut keys: Vec<Vec<u8>> = b64.decode(secret).into_iter().collect();
            keys.push(secret.as_bytes().to_vec());
            keys
        }
    }
}

/// The `webhook-signature` value enroll sends with its own outbound events: `v1,` and the
/// base64 HMAC-SHA256 of `"{id}.{timestamp}.{body}"` keyed with `key` (the decoded `whsec_`
/// secret), the same computation [`verify`] checks.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let sig = sign::base64_mac(key, &[id.as_bytes(), b".", t.as_bytes(), b".", body]);
    format!("v1,{sig}")
}

/// Checks a request's Standard Webhooks headers against the configured secrets and the
/// tolerance; returns the `webhook-id` and the signed time. Ingest uses it for inbound events,
/// `enroll dev --outbound-echo` for enroll's own.
pub fn verify(
    cfg: &PlatformConfig,
    req: &Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>), Rejected> {
    let secrets = sign::secrets(Platform::Standard, cfg)?;
    let id = header(req, "id")?;
    let ts = header(req, "timestamp")?;
    let sigs: Vec<Vec<u8>> = header(req, "signature")?
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| sign::decode_base64_sig(sig))
        .collect();
    if sigs.is_empty() {
        return Err(Rejected::unauthorized(
            "webhook-signature has no v1 signature",
        ));
    }
    let keys: Vec<Vec<u8>> = secrets.iter().flat_map(|s| keys(s)).collect();
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", req.body];
    if !sign::any_mac_matches(keys.iter().map(Vec::as_slice), &parts, &sigs) {
        return Err(Rejected::unauthorized(
            "webhook-signature matches no configured secret",
        ));
    }
    let signed_at = sign::fresh(ts, "webhook-timestamp", cfg, now)?;
    Ok((id.to_owned(), signed_at))
}

pub(crate) fn receive(
    cfg: &PlatformConfig,
    req: &Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<Accepted, Rejected> {
    let (id, signed_at) = verify(cfg, req, now)?;
    let id = id.as_str();
    let v = extract::json(req.body)?;
    let event_type = extract::required(text(&v, "/type"), "type")?;
    let kind = if cfg.event_types.is_empty() {
        DEFAULT_TYPES
            .iter()
            .find(|(t, _)| *t == event_type)
            .map(|(_, k)| *k)
    } else {
        cfg.event_types.get(&event_type).copied()
    };
    let Some(kind) = kind else {
        return extract::ignored(
            &event_type,
            "event type is not mapped to a kind (platforms.standard.event_types)",
        );
    };
    let data = match v.get("data") {
        Some(d @ Value::Object(_)) => d,
        _ => return Err(Rejected::bad_request("missing field data")),
    };
    let order = extract::required(
        first(data, &["/subscription_id", "/order_id", "/id"]),
        "data.order_id (or data.id)",
    )?;
    let buyer = extract::buyer(
        kind,
        first(data, &["/customer/email", "/customer_email", "/email"]),
        first(data, &["/customer/name", "/customer_name"]),
        "data.customer.email",
    )?;
    let mut items = Refs::default();
    for p in [
        "/product_id",
        "/product/id",
        "/product_price_id",
        "/price_id",
    ] {
        items.push(text(data, p));
    }
    for item in array(data, "/items") {
        items.push(text(item, "/product_id"));
        items.push(id_of(item, "/product"));
        items.push(text(item, "/product_price_id"));
        items.push(text(item, "/price_id"));
        items.push(text(item, "/sku"));
    }
    let occurred_at = text(&v, "/timestamp")
        .and_then(|t| extract::rfc3339(&t))
        .unwrap_or(signed_at);
    Found {
        event_id: id.to_owned(),
        event_id_field: "webhook-id",
        kind,
        order_id: order,
        order_id_field: "data.order_id",
        buyer,
        items,
        occurred_at,
    }
    .accept(Platform::Standard)
}

pub(crate) fn sample(s: &Sample, secret: &str, now: DateTime<Utc>) -> Outgoing {
    let ts = now.timestamp();
    let at = now.to_rfc3339_opts(SecondsFormat::Micros, true);
    let msg_id = s
        .event_id
        .clone()
        .unwrap_or_else(|| extract::synthetic("msg_enroll", now, Some(s.kind)));
    let order = s
        .order_id
        .clone()
        .unwrap_or_else(|| extract::synthetic("ord_enroll", now, None));
    let customer = json!({
        "id": format!("cus_enroll{ts}"),
        "email": s.email,
        "name": s.name,
        "external_id": null,
        "metadata": {}
    });
    // Polar's shapes: an order for purchase and refund, a subscription for cancel.
    let (event_type, data) = match s.kind {
        EventKind::Purchase | EventKind::Refund => (
            if s.kind == EventKind::Purchase {
                "order.paid"
            } else {
                "order.refunded"
            },
            json!({
                "id": order,
                "created_at": at,
                "modified_at": at,
                "status": if s.kind == EventKind::Purchase { "paid" } else { "refunded" },
                "paid": true,
                "subtotal_amount": 4900,
                "discount_amount": 0,
                "net_amount": 4900,
                "tax_amount": 0,
                "total_amount": 4900,
                "refunded_amount": if s.kind == EventKind::Refund { 4900 } else { 0 },
                "currency": "usd",
                "billing_reason": "purchase",
                "customer_id": format!("cus_enroll{ts}"),
                "product_id": s.product,
                "subscription_id": null,
                "checkout_id": null,
                "metadata": {},
                "customer": customer,
                "items": [{
                    "id": format!("item_enroll{ts}"),
                    "label": "Course",
                    "amount": 4900,
                    "tax_amount": 0,
                    "proration": false,
                    "product_price_id": null
                }]
            }),
        ),
        EventKind::Chargeback => (
            "dispute.created",
            json!({
                "id": format!("dsp_enroll{ts}"),
                "order_id": order,
                "created_at": at,
                "status": "needs_response",
                "amount": 4900,
                "currency": "usd",
                "customer": customer,
                "product_id": s.product
            }),
        ),
        EventKind::Cancel => (
            "subscription.revoked",
            json!({
                "id": order,
                "created_at": at,
                "modified_at": at,
                "status": "canceled",
                "amount": 4900,
                "currency": "usd",
                "recurring_interval": "month",
                "cancel_at_period_end": false,
                "canceled_at": at,
                "ended_at": at,
                "customer_id": format!("cus_enroll{ts}"),
                "product_id": s.product,
                "customer": customer,
                "metadata": {}
            }),
        ),
    };
    let body = serde_json::to_vec(&json!({ "type": event_type, "timestamp": at, "data": data }))
        .unwrap_or_default();
    let key = keys(secret).into_iter().next().unwrap_or_default();
    let signature = signature(&key, &msg_id, ts, &body);
    Outgoing {
        query: None,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("webhook-id".into(), msg_id),
            ("webhook-timestamp".into(), ts.to_string()),
            ("webhook-signature".into(), signature),
        ],
        body,
    }
}
