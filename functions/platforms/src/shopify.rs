//! Shopify.
//!
//! **Verification.** `X-Shopify-Hmac-Sha256` is the base64 HMAC-SHA256 of the raw body keyed
//! with the app's client secret (its own bytes). Shopify signs no timestamp, so there is no
//! replay window; a replayed delivery carries the same webhook id and is caught by idempotency.
//!
//! **Events** (topic in `X-Shopify-Topic`). The topic header is not covered by the signature,
//! so the body must agree with it: a genuine order body relabelled `orders/cancelled` is
//! ignored unless the order has a `cancelled_at`, one relabelled `orders/paid` is ignored when
//! it has one, and a refund body lacks the fields an order topic needs (and vice versa).
//!
//! | topic | kind | notes |
//! |---|---|---|
//! | `orders/paid` | purchase | |
//! | `refunds/create` | refund | Shopify sends this for partial refunds too and the refund payload cannot say whether the order is now fully refunded, so every refund revokes |
//! | `orders/cancelled` | cancel | |
//!
//! **Key.** `X-Shopify-Webhook-Id`, identical on every retry; required (400 when a verified
//! request lacks it).
//!
//! **Order id.** The order's `id`; for `refunds/create`, the refund's `order_id`.
//!
//! **Buyer.** `email`, else `contact_email`, else `customer.email`; name from
//! `customer.first_name`/`last_name`, else `billing_address.name`. A purchase without an email
//! (a POS sale, say) is refused with 400.
//!
//! **Product references.** Per `line_items[]`: `sku`, `variant_id`, `product_id`. Refunds: the
//! same fields of `refund_line_items[].line_item`.
//!
//! **Time.** `orders/paid`: `processed_at`, else `created_at`; `refunds/create`: `created_at`,
//! else `processed_at`; `orders/cancelled`: `cancelled_at`, else `updated_at`. Else the
//! `X-Shopify-Triggered-At` header, else the delivery time.

use crate::extract::{self, array, first, text, Found, Refs};
use crate::sign;
use crate::{Accepted, Inbound, Outgoing, Rejected, Sample};
use chrono::{DateTime, SecondsFormat, Utc};
use enroll_core::config::PlatformConfig;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use serde_json::{json, Value};

const HEADER: &str = "x-shopify-hmac-sha256";

pub(crate) fn receive(
    cfg: &PlatformConfig,
    req: &Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<Accepted, Rejected> {
    let secrets = sign::secrets(Platform::Shopify, cfg)?;
    let sig = sign::decode_base64_sig(sign::auth_header(req, HEADER)?).ok_or_else(|| {
        Rejected::unauthorized("X-Shopify-Hmac-Sha256 is not a base64 HMAC-SHA256")
    })?;
    let keys = secrets.iter().map(|s| s.as_bytes());
    if !sign::any_mac_matches(keys, &[req.body], &[sig]) {
        return Err(Rejected::unauthorized(
            "X-Shopify-Hmac-Sha256 matches no configured secret",
        ));
    }

    let v = extract::json(req.body)?;
    let header = |name: &str| {
        req.header(name)
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
    };
    let topic = header("x-shopify-topic")
        .ok_or_else(|| Rejected::bad_request("missing X-Shopify-Topic header"))?;
    let (kind, order_pointer, order_field, times, lines, line_prefix) = match topic.as_str() {
        "orders/paid" => (
            EventKind::Purchase,
            "/id",
            "id",
            ["/processed_at", "/created_at"],
            "/line_items",
            "",
        ),
        "refunds/create" => (
            EventKind::Refund,
            "/order_id",
            "order_id",
            ["/created_at", "/processed_at"],
            "/refund_line_items",
            "/line_item",
        ),
        "orders/cancelled" => (
            EventKind::Cancel,
            "/id",
            "id",
            ["/cancelled_at", "/updated_at"],
            "/line_items",
            "",
        ),
        other => return extract::ignored(other, "not a Shopify topic enroll acts on"),
    };
    let cancelled = text(&v, "/cancelled_at").is_some();
    if kind == EventKind::Cancel && !cancelled {
        return extract::ignored(&topic, "order has no cancelled_at");
    }
    if kind == EventKind::Purchase && cancelled {
        return extract::ignored(&topic, "order is cancelled");
    }
    let webhook_id = header("x-shopify-webhook-id")
        .ok_or_else(|| Rejected::bad_request("missing X-Shopify-Webhook-Id header"))?;
    let order = extract::required(text(&v, order_pointer), order_field)?;
    let name = extract::join_name(
        text(&v, "/customer/first_name"),
        text(&v, "/customer/last_name"),
    )
    .or_else(|| text(&v, "/billing_address/name"));
    let buyer = extract::buyer(
        kind,
        first(&v, &["/email", "/contact_email", "/customer/email"]),
        name,
        "email",
    )?;
    let mut items = Refs::default();
    for line in array(&v, lines) {
        for f in ["sku", "variant_id", "product_id"] {
            items.push(text(line, &format!("{line_prefix}/{f}")));
        }
    }
    let occurred_at = times
        .iter()
        .find_map(|p| text(&v, p).and_then(|t| extract::rfc3339(&t)))
        .or_else(|| header("x-shopify-triggered-at").and_then(|t| extract::rfc3339(&t)))
        .unwrap_or(now);
    Found {
        event_id: webhook_id,
        event_id_field: "X-Shopify-Webhook-Id",
        kind,
        order_id: order,
        order_id_field: order_field,
        buyer,
        items,
        occurred_at,
    }
    .accept(Platform::Shopify)
}

pub(crate) fn sample(s: &Sample, secret: &str, now: DateTime<Utc>) -> Outgoing {
    let ts = now.timestamp();
    let at = now.to_rfc3339_opts(SecondsFormat::Secs, false);
    let order = s
        .order_id
        .clone()
        .unwrap_or_else(|| format!("{}", 5_000_000_000_000_i64 + ts % 1_000_000_000));
    let order_json = order
        .parse::<i64>()
        .map_or_else(|_| json!(order), |n| json!(n));
    let webhook_id = s
        .event_id
        .clone()
        .unwrap_or_else(|| extract::synthetic("b54557e4-bdd9-4b37-8a5f-bf7d7", now, Some(s.kind)));
    let (first_name, last_name) = match s.name.as_deref().map(|n| n.split_once(' ')) {
        Some(Some((f, l))) => (json!(f), json!(l)),
        Some(None) => (json!(s.name), Value::Null),
        None => (Value::Null, Value::Null),
    };
    let line_item = json!({
        "id": 10_000_000_000_i64 + ts % 1_000_000,
        "product_id": 7_000_000_000_i64 + ts % 1_000_000,
        "variant_id": 40_000_000_000_i64 + ts % 1_000_000,
        "sku": s.product,
        "title": "Course",
        "quantity": 1,
        "price": "49.00",
        "requires_shipping": false,
        "gift_card": false,
        "fulfillment_status": null
    });
    let order_body = |financial_status: &str, cancelled: bool| {
        json!({
            "id": order_json,
            "admin_graphql_api_id": format!("gid://shopify/Order/{order}"),
            "name": format!("#{}", 1000 + ts % 9000),
            "order_number": 1000 + ts % 9000,
            "email": s.email,
            "contact_email": s.email,
            "created_at": at,
            "processed_at": at,
            "updated_at": at,
            "cancelled_at": if cancelled { json!(at) } else { Value::Null },
            "cancel_reason": if cancelled { json!("customer") } else { Value::Null },
            "currency": "USD",
            "financial_status": financial_status,
            "total_price": "49.00",
            "test": true,
            "customer": {
                "id": 6_000_000_000_i64 + ts % 1_000_000,
                "email": s.email,
                "first_name": first_name,
                "last_name": last_name
            },
            "line_items": [line_item]
        })
    };
    let (topic, body) = match s.kind {
        EventKind::Purchase => ("orders/paid", order_body("paid", false)),
        EventKind::Refund | EventKind::Chargeback => (
            "refunds/create",
            json!({
                "id": 900_000_000_i64 + ts % 1_000_000,
                "admin_graphql_api_id": format!("gid://shopify/Refund/{}", 900_000_000_i64 + ts % 1_000_000),
                "order_id": order_json,
                "created_at": at,
                "processed_at": at,
                "note": "enroll sample",
                "restock": false,
                "user_id": null,
                "refund_line_items": [{
                    "id": 800_000_000_i64 + ts % 1_000_000,
                    "line_item_id": line_item["id"],
                    "quantity": 1,
                    "restock_type": "no_restock",
                    "subtotal": 49.0,
                    "total_tax": 0.0,
                    "line_item": line_item
                }],
                "transactions": [],
                "order_adjustments": []
            }),
        ),
        EventKind::Cancel => ("orders/cancelled", order_body("voided", true)),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mac = sign::base64_mac(secret.as_bytes(), &[&body]);
    Outgoing {
        query: None,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-shopify-topic".into(), topic.into()),
            ("x-shopify-hmac-sha256".into(), mac),
            (
                "x-shopify-shop-domain".into(),
                "enroll-sample.myshopify.com".into(),
            ),
            ("x-shopify-api-version".into(), "2024-07".into()),
            ("x-shopify-webhook-id".into(), webhook_id),
            (
                "x-shopify-triggered-at".into(),
                now.to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        ],
        body,
    }
}
