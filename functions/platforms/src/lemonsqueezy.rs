//! Lemon Squeezy.
//!
//! **Verification.** `X-Signature` is the hex HMAC-SHA256 of the raw body keyed with the
//! webhook's signing secret. Lemon Squeezy signs no timestamp, so there is no replay window;
//! a replayed delivery carries the same key and is caught by idempotency.
//!
//! **Events** (`meta.event_name` from the signed body; the unsigned `X-Event-Name` header is
//! not trusted):
//!
//! | `event_name` | kind | notes |
//! |---|---|---|
//! | `order_created` | purchase | ignored while `status` is `pending` or `failed` |
//! | `order_refunded` | refund | ignored when `status` is `partial_refund` |
//! | `subscription_cancelled`, `subscription_expired` | cancel | `cancelled` fires when the buyer cancels (access would normally run to `ends_at`); `expired` when it ends |
//!
//! **Key.** Lemon Squeezy documents no event id, so the key is
//! `"{meta.event_name}:{data.id}"`: each (event, object) pair acts once. A subscription
//! cancelled, resumed and cancelled again produces the same key; the second cancellation is a
//! duplicate, which is harmless because it has the same effect.
//!
//! **Order id.** Orders: `data.id`. Subscriptions: `data.attributes.order_id`, the order that
//! started the subscription, so the cancellation revokes what that order granted.
//!
//! **Buyer.** `attributes.user_email`, `attributes.user_name` (required on a purchase only).
//!
//! **Product references.** Orders: `attributes.first_order_item.variant_id`, `.product_id`,
//! `.product_name`. Subscriptions: `attributes.variant_id`, `.product_id`, `.product_name`.
//!
//! **Time.** Orders: `created_at`; refunds: `refunded_at`, else `updated_at`; subscriptions:
//! `updated_at`. Else the delivery time (nothing is signed).

use crate::extract::{self, text, Found, Refs};
use crate::sign;
use crate::{Accepted, Inbound, Outgoing, Rejected, Sample};
use chrono::{DateTime, SecondsFormat, Utc};
use enroll_core::config::PlatformConfig;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use serde_json::{json, Value};

const HEADER: &str = "x-signature";

pub(crate) fn receive(
    cfg: &PlatformConfig,
    req: &Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<Accepted, Rejected> {
    let secrets = sign::secrets(Platform::LemonSqueezy, cfg)?;
    let sig = sign::decode_hex_sig(sign::auth_header(req, HEADER)?)
        .ok_or_else(|| Rejected::unauthorized("X-Signature is not a hex HMAC-SHA256"))?;
    let keys = secrets.iter().map(|s| s.as_bytes());
    if !sign::any_mac_matches(keys, &[req.body], &[sig]) {
        return Err(Rejected::unauthorized(
            "X-Signature matches no configured secret",
        ));
    }

    let v = extract::json(req.body)?;
    let event_name = extract::required(text(&v, "/meta/event_name"), "meta.event_name")?;
    let attrs = v.pointer("/data/attributes").unwrap_or(&Value::Null);
    let status = text(attrs, "/status");
    let at = |fields: &[&str]| {
        fields
            .iter()
            .find_map(|f| text(attrs, f).and_then(|t| extract::rfc3339(&t)))
            .unwrap_or(now)
    };
    let (kind, order_pointer, order_field, occurred_at) = match event_name.as_str() {
        "order_created" => {
            if matches!(status.as_deref(), Some("pending" | "failed")) {
                return extract::ignored(&event_name, "order is not paid yet");
            }
            (
                EventKind::Purchase,
                "/data/id",
                "data.id",
                at(&["/created_at"]),
            )
        }
        "order_refunded" => {
            if status.as_deref() == Some("partial_refund") {
                return extract::ignored(
                    &event_name,
                    "partial refund: access is revoked only when the order is fully refunded",
                );
            }
            (
                EventKind::Refund,
                "/data/id",
                "data.id",
                at(&["/refunded_at", "/updated_at"]),
            )
        }
        "subscription_cancelled" | "subscription_expired" => (
            EventKind::Cancel,
            "/data/attributes/order_id",
            "data.attributes.order_id",
            at(&["/updated_at"]),
        ),
        _ => return extract::ignored(&event_name, "not a Lemon Squeezy event enroll acts on"),
    };
    let data_id = extract::required(text(&v, "/data/id"), "data.id")?;
    let order = extract::required(text(&v, order_pointer), order_field)?;
    let buyer = extract::buyer(
        kind,
        text(attrs, "/user_email"),
        text(attrs, "/user_name"),
        "data.attributes.user_email",
    )?;
    let product_at = if kind == EventKind::Cancel {
        ""
    } else {
        "/first_order_item"
    };
    let mut items = Refs::default();
    for f in ["variant_id", "product_id", "product_name"] {
        items.push(text(attrs, &format!("{product_at}/{f}")));
    }
    Found {
        event_id: format!("{event_name}:{data_id}"),
        event_id_field: "meta.event_name + data.id",
        kind,
        order_id: order,
        order_id_field: order_field,
        buyer,
        items,
        occurred_at,
    }
    .accept(Platform::LemonSqueezy)
}

pub(crate) fn sample(s: &Sample, secret: &str, now: DateTime<Utc>) -> Outgoing {
    let at = now.to_rfc3339_opts(SecondsFormat::Micros, true);
    let ts = now.timestamp();
    let order = s
        .order_id
        .clone()
        .unwrap_or_else(|| (ts % 10_000_000).to_string());
    // Lemon Squeezy product and variant ids are numbers; a non-numeric reference (a catalog
    // id) travels as the product name so `receive` still returns it.
    let (variant_id, product_name) = match s.product.parse::<u64>() {
        Ok(n) => (json!(n), json!("Course")),
        Err(_) => (json!(ts % 1_000_000), json!(s.product)),
    };
    let order_attrs = |status: &str, refunded: bool| {
        json!({
            "store_id": 1,
            "customer_id": 1,
            "identifier": format!("enroll-{ts}"),
            "order_number": ts % 100_000,
            "user_name": s.name,
            "user_email": s.email,
            "currency": "USD",
            "currency_rate": "1.0000",
            "subtotal": 4900,
            "discount_total": 0,
            "tax": 0,
            "total": 4900,
            "status": status,
            "status_formatted": if refunded { "Refunded" } else { "Paid" },
            "refunded": refunded,
            "refunded_at": if refunded { json!(at) } else { Value::Null },
            "first_order_item": {
                "id": 1,
                "order_id": order,
                "product_id": 1,
                "variant_id": variant_id,
                "product_name": product_name,
                "variant_name": "Default",
                "price": 4900,
                "created_at": at,
                "updated_at": at,
                "test_mode": true
            },
            "created_at": at,
            "updated_at": at,
            "test_mode": true
        })
    };
    let (event_name, data) = match s.kind {
        EventKind::Purchase => (
            "order_created",
            json!({ "type": "orders", "id": order, "attributes": order_attrs("paid", false) }),
        ),
        EventKind::Refund | EventKind::Chargeback => (
            "order_refunded",
            json!({ "type": "orders", "id": order, "attributes": order_attrs("refunded", true) }),
        ),
        EventKind::Cancel => (
            "subscription_cancelled",
            json!({
                "type": "subscriptions",
                "id": (ts % 1_000_000).to_string(),
                "attributes": {
                    "store_id": 1,
                    "customer_id": 1,
                    "order_id": order.parse::<u64>().map_or_else(|_| json!(order), |n| json!(n)),
                    "order_item_id": 1,
                    "product_id": 1,
                    "variant_id": variant_id,
                    "product_name": product_name,
                    "variant_name": "Monthly",
                    "user_name": s.name,
                    "user_email": s.email,
                    "status": "cancelled",
                    "status_formatted": "Cancelled",
                    "cancelled": true,
                    "renews_at": at,
                    "ends_at": at,
                    "created_at": at,
                    "updated_at": at,
                    "test_mode": true
                }
            }),
        ),
    };
    let body = serde_json::to_vec(&json!({
        "meta": { "event_name": event_name, "test_mode": true },
        "data": data
    }))
    .unwrap_or_default();
    let sig = sign::hex_mac(secret.as_bytes(), &[&body]);
    Outgoing {
        query: None,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-event-name".into(), event_name.into()),
            ("x-signature".into(), sig),
        ],
        body,
    }
}
