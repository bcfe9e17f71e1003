//! Paddle Billing.
//!
//! **Verification.** `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>...]`. Each `h1` is the hex
//! HMAC-SHA256 of `"{ts}:{raw body}"` keyed with the notification destination's secret key
//! (`pdl_ntfset_...`, its own bytes). Any `h1` matching any configured secret is enough (Paddle
//! sends one per active key while a key is rotated).
//!
//! **Why the tolerance is 300 s, not the SDK's 5 s.** Paddle's SDKs reject a `ts` more than
//! 5 s old. That window assumes a warm server answering on the spot; a serverless endpoint can
//! spend seconds on a cold start, and a request throttled or queued by API Gateway can arrive
//! later still, and every rejection costs a retry with backoff. The timestamp only bounds
//! replays of a captured request, which idempotency on `event_id` absorbs anyway. So the
//! default is 300 s like every other signing platform here; a seller who wants Paddle's
//! strictness sets `tolerance_secs = 5`.
//!
//! **Events.**
//!
//! | `event_type` | kind | notes |
//! |---|---|---|
//! | `transaction.completed` | purchase | |
//! | `adjustment.created`, `adjustment.updated` | refund (`action: "refund"`) or chargeback (`action: "chargeback"`) | only once `status` is `approved`; a refund with `type: "partial"` is ignored; other actions (credit, chargeback_warning, reversals) are ignored |
//! | `subscription.canceled` | cancel | fires when the subscription actually ends |
//!
//! **Key.** `event_id` (`evt_...`).
//!
//! **Order id.** Transactions: `data.subscription_id` when present, else the transaction `id`
//! (`txn_...`), so a subscription's cancellation revokes it. Adjustments: the same rule over
//! `data.subscription_id` and `data.transaction_id`, so a refund matches what the transaction
//! granted. Subscriptions: `data.id`.
//!
//! **Buyer.** Paddle transactions carry `customer_id`, not an email. enroll reads
//! `data.customer.email` when the payload includes the customer, else
//! `data.custom_data.email`, which the seller's checkout sets
//! (`Paddle.Checkout.open({ customData: { email } })` or the transaction's `custom_data`).
//! Without either, a purchase is refused with 400 naming `data.custom_data.email`: enroll
//! cannot look the customer up, being pure code with no Paddle API key. Name:
//! `data.customer.name`, else `data.custom_data.name`.
//!
//! **Product references.** `data.custom_data.enroll_product`, then per `data.items[]`:
//! `price.id` (`pri_...`) and `price.product_id` (`pro_...`).
//!
//! **Time.** The notification's `occurred_at`, else the signed `ts`.

use crate::extract::{self, array, first, text, Found, Refs};
use crate::sign;
use crate::{Accepted, Inbound, Outgoing, Rejected, Sample};
use chrono::{DateTime, SecondsFormat, Utc};
use enroll_core::config::PlatformConfig;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use serde_json::{json, Value};

/// `ts=..;h1=..;h1=..`: see the module documentation.
const SIGNATURE: sign::TimestampedHex = sign::TimestampedHex {
    platform: Platform::Paddle,
    header: "Paddle-Signature",
    separator: ';',
    timestamp_key: "ts",
    signature_key: "h1",
    joiner: ":",
};

pub(crate) fn receive(
    cfg: &PlatformConfig,
    req: &Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<Accepted, Rejected> {
    let signed_at = SIGNATURE.verify(cfg, req, now)?;

    let v = extract::json(req.body)?;
    let event_type = extract::required(text(&v, "/event_type"), "event_type")?;
    let event_id = extract::required(text(&v, "/event_id"), "event_id")?;
    let occurred_at = text(&v, "/occurred_at")
        .and_then(|t| extract::rfc3339(&t))
        .unwrap_or(signed_at);
    let data = v.pointer("/data").unwrap_or(&Value::Null);
    let mut items = Refs::default();
    let collect_items = |items: &mut Refs| {
        items.push(text(data, "/custom_data/enroll_product"));
        for item in array(data, "/items") {
            items.push(text(item, "/price/id"));
            items.push(text(item, "/price/product_id"));
        }
    };

    let (kind, order, order_field) = match event_type.as_str() {
        "transaction.completed" => {
            collect_items(&mut items);
            let order = first(data, &["/subscription_id", "/id"]);
            (EventKind::Purchase, order, "data.id")
        }
        "adjustment.created" | "adjustment.updated" => {
            let action = text(data, "/action").unwrap_or_default();
            let kind = match action.as_str() {
                "refund" => EventKind::Refund,
                "chargeback" => EventKind::Chargeback,
                _ => {
                    return extract::ignored(
                        &event_type,
                        "adjustment action is neither refund nor chargeback",
                    )
                }
            };
            if text(data, "/status").as_deref() != Some("approved") {
                return extract::ignored(&event_type, "adjustment is not approved");
            }
            if kind == EventKind::Refund && text(data, "/type").as_deref() == Some("partial") {
                return extract::ignored(
                    &event_type,
                    "partial refund: access is revoked only when the transaction is fully refunded",
                );
            }
            let order = first(data, &["/subscription_id", "/transaction_id"]);
            (kind, order, "data.transaction_id")
        }
        "subscription.canceled" => {
            collect_items(&mut items);
            (EventKind::Cancel, text(data, "/id"), "data.id")
        }
        other => return extract::ignored(other, "not a Paddle event type enroll acts on"),
    };
    let order = extract::required(order, order_field)?;
    let buyer = extract::buyer(
        kind,
        first(data, &["/customer/email", "/custom_data/email"]),
        first(data, &["/customer/name", "/custom_data/name"]),
        "data.custom_data.email (Paddle sends only customer_id; set custom_data.email at checkout)",
    )?;
    Found {
        event_id,
        event_id_field: "event_id",
        kind,
        order_id: order,
        order_id_field: order_field,
        buyer,
        items,
        occurred_at,
    }
    .accept(Platform::Paddle)
}

pub(crate) fn sample(s: &Sample, secret: &str, now: DateTime<Utc>) -> Outgoing {
    let ts = now.timestamp();
    let at = now.to_rfc3339_opts(SecondsFormat::Micros, true);
    let suffix = format!("{ts:026}");
    let order = s
        .order_id
        .clone()
        .unwrap_or_else(|| format!("txn_{suffix}"));
    let event_id = s
        .event_id
        .clone()
        .unwrap_or_else(|| extract::synthetic("evt_", now, Some(s.kind)));
    let is_sub = order.starts_with("sub_");
    // The reference lands in the field its prefix says it belongs to.
    let (price_id, product_id) = if s.product.starts_with("pro_") {
        (format!("pri_{suffix}"), s.product.clone())
    } else {
        (s.product.clone(), format!("pro_{suffix}"))
    };
    let items = json!([{
        "price": {
            "id": price_id,
            "product_id": product_id,
            "description": "Course",
            "billing_cycle": if is_sub { json!({"interval": "month", "frequency": 1}) } else { Value::Null },
            "unit_price": { "amount": "4900", "currency_code": "USD" },
            "status": "active"
        },
        "quantity": 1
    }]);
    let custom_data = json!({ "email": s.email, "name": s.name });
    let (event_type, data) = match s.kind {
        EventKind::Purchase => (
            "transaction.completed",
            json!({
                "id": if is_sub { format!("txn_{suffix}") } else { order.clone() },
                "status": "completed",
                "customer_id": format!("ctm_{suffix}"),
                "address_id": format!("add_{suffix}"),
                "business_id": null,
                "custom_data": custom_data,
                "origin": "web",
                "collection_mode": "automatic",
                "subscription_id": if is_sub { json!(order) } else { Value::Null },
                "invoice_id": format!("inv_{suffix}"),
                "invoice_number": format!("{}-{}", now.format("%Y"), ts % 100_000),
                "currency_code": "USD",
                "items": items,
                "created_at": at,
                "updated_at": at,
                "billed_at": at
            }),
        ),
        EventKind::Refund | EventKind::Chargeback => (
            "adjustment.updated",
            json!({
                "id": format!("adj_{suffix}"),
                "action": if s.kind == EventKind::Refund { "refund" } else { "chargeback" },
                "type": "full",
                "transaction_id": if is_sub { format!("txn_{suffix}") } else { order.clone() },
                "subscription_id": if is_sub { json!(order) } else { Value::Null },
                "customer_id": format!("ctm_{suffix}"),
                "reason": "requested_by_customer",
                "currency_code": "USD",
                "status": "approved",
                "items": [],
                "totals": { "subtotal": "4900", "tax": "0", "total": "4900", "fee": "245", "earnings": "4655", "currency_code": "USD" },
                "created_at": at,
                "updated_at": at
            }),
        ),
        EventKind::Cancel => (
            "subscription.canceled",
            json!({
                "id": order,
                "status": "canceled",
                "customer_id": format!("ctm_{suffix}"),
                "address_id": format!("add_{suffix}"),
                "currency_code": "USD",
                "custom_data": custom_data,
                "items": items,
                "canceled_at": at,
                "created_at": at,
                "updated_at": at
            }),
        ),
    };
    let body = serde_json::to_vec(&json!({
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": at,
        "notification_id": format!("ntf_{suffix}"),
        "data": data
    }))
    .unwrap_or_default();
    let signature = SIGNATURE.sign(secret, ts, &body);
    Outgoing {
        query: None,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            signature,
        ],
        body,
    }
}
