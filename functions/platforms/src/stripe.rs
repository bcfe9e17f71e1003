//! Stripe.
//!
//! **Verification.** `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`. Each `v1` is the hex
//! HMAC-SHA256 of `"{t}.{raw body}"` keyed with the endpoint secret's own bytes (the whole
//! `whsec_...` string, not decoded). The request is genuine when any `v1` matches any configured
//! secret (Stripe sends one `v1` per active secret while a secret is being rolled). `v0` and
//! unknown schemes are ignored. `t` must be within the tolerance (default 300 s, as Stripe's
//! SDKs), in either direction.
//!
//! **Events.**
//!
//! | `type` | kind | notes |
//! |---|---|---|
//! | `checkout.session.completed` | purchase | `payment_status: "unpaid"` is ignored: an async payment method has not settled yet; `no_payment_required` (free, fully discounted) is a purchase |
//! | `checkout.session.async_payment_succeeded` | purchase | the settled async payment |
//! | `charge.refunded` | refund | only when `refunded: true` (fully refunded); partial refunds are ignored |
//! | `charge.dispute.created` | chargeback | |
//! | `customer.subscription.deleted` | cancel | |
//!
//! Anything else is ignored.
//!
//! **Key.** The event `id` (`evt_...`), identical on every retry.
//!
//! **Order id.** A checkout session's `subscription` when it has one, else its
//! `payment_intent`, else (a free session has neither) the session `id`. A charge or dispute:
//! its `payment_intent`, so it revokes the one-time purchase it paid for. A subscription: its
//! `id`. Limitation: a refund of a subscription invoice's charge names the invoice's payment
//! intent, not the subscription, so it does not revoke the subscription order; its
//! `customer.subscription.deleted` does.
//!
//! **Buyer.** Session: `customer_details.email`, else `customer_email`, and
//! `customer_details.name`. Charge: `billing_details.email`, else `receipt_email` (optional).
//! Disputes and subscriptions carry only a customer id, so no buyer.
//!
//! **Product references.** A checkout session lists no line items unless the seller's
//! integration expanded them, so the references are, in order: `metadata.enroll_product`,
//! `metadata.product`, the `payment_link` id, and when present `line_items.data[].price.id`
//! and `.price.product`. `client_reference_id` is the seller's customer reference, not a
//! product, and is not used. Subscriptions: `items.data[].price.id` and `.price.product`.
//!
//! **Time.** The event's `created`, else the signed `t`.

use crate::extract::{self, array, first, id_of, text, Found, Refs};
use crate::sign;
use crate::{Accepted, Inbound, Outgoing, Rejected, Sample};
use chrono::{DateTime, Utc};
use enroll_core::config::PlatformConfig;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use serde_json::{json, Value};

/// `t=..,v1=..,v1=..,v0=..`: see the module documentation.
const SIGNATURE: sign::TimestampedHex = sign::TimestampedHex {
    platform: Platform::Stripe,
    header: "Stripe-Signature",
    separator: ',',
    timestamp_key: "t",
    signature_key: "v1",
    joiner: ".",
};

pub(crate) fn receive(
    cfg: &PlatformConfig,
    req: &Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<Accepted, Rejected> {
    let signed_at = SIGNATURE.verify(cfg, req, now)?;

    let v = extract::json(req.body)?;
    let event_type = extract::required(text(&v, "/type"), "type")?;
    let event_id = extract::required(text(&v, "/id"), "id")?;
    let occurred_at = text(&v, "/created")
        .and_then(|c| extract::unix(&c))
        .unwrap_or(signed_at);
    let obj = v.pointer("/data/object").unwrap_or(&Value::Null);
    let found = |kind, order_id: String, order_id_field, buyer, items| Found {
        event_id: event_id.clone(),
        event_id_field: "id",
        kind,
        order_id,
        order_id_field,
        buyer,
        items,
        occurred_at,
    };

    match event_type.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            if text(obj, "/payment_status").as_deref() == Some("unpaid") {
                return extract::ignored(
                    &event_type,
                    "payment_status is unpaid: access follows checkout.session.async_payment_succeeded",
                );
            }
            let order = extract::required(
                id_of(obj, "/subscription")
                    .or_else(|| id_of(obj, "/payment_intent"))
                    .or_else(|| text(obj, "/id")),
                "data.object.payment_intent",
            )?;
            let buyer = extract::buyer(
                EventKind::Purchase,
                first(obj, &["/customer_details/email", "/customer_email"]),
                text(obj, "/customer_details/name"),
                "data.object.customer_details.email",
            )?;
            let mut items = Refs::default();
            items.push(text(obj, "/metadata/enroll_product"));
            items.push(text(obj, "/metadata/product"));
            items.push(id_of(obj, "/payment_link"));
            for line in array(obj, "/line_items/data") {
                items.push(id_of(line, "/price"));
                items.push(id_of(line, "/price/product"));
            }
            found(
                EventKind::Purchase,
                order,
                "data.object.payment_intent",
                buyer,
                items,
            )
            .accept(Platform::Stripe)
        }
        "charge.refunded" => {
            if extract::flag(obj, "/refunded") != Some(true) {
                return extract::ignored(
                    &event_type,
                    "partial refund (refunded is not true): access is revoked only when the charge is fully refunded",
                );
            }
            let order =
                extract::required(id_of(obj, "/payment_intent"), "data.object.payment_intent")?;
            let buyer = extract::buyer(
                EventKind::Refund,
                first(obj, &["/billing_details/email", "/receipt_email"]),
                text(obj, "/billing_details/name"),
                "data.object.billing_details.email",
            )?;
            found(
                EventKind::Refund,
                order,
                "data.object.payment_intent",
                buyer,
                Refs::default(),
            )
            .accept(Platform::Stripe)
        }
        "charge.dispute.created" => {
            let order =
                extract::required(id_of(obj, "/payment_intent"), "data.object.payment_intent")?;
            found(
                EventKind::Chargeback,
                order,
                "data.object.payment_intent",
                None,
                Refs::default(),
            )
            .accept(Platform::Stripe)
        }
        "customer.subscription.deleted" => {
            let order = extract::required(text(obj, "/id"), "data.object.id")?;
            let mut items = Refs::default();
            for item in array(obj, "/items/data") {
                items.push(id_of(item, "/price"));
                items.push(id_of(item, "/price/product"));
            }
            found(EventKind::Cancel, order, "data.object.id", None, items).accept(Platform::Stripe)
        }
        other => extract::ignored(other, "not a Stripe event type enroll acts on"),
    }
}

pub(crate) fn sample(s: &Sample, secret: &str, now: DateTime<Utc>) -> Outgoing {
    let ts = now.timestamp();
    let order = s
        .order_id
        .clone()
        .unwrap_or_else(|| extract::synthetic("pi_3Enroll", now, None));
    let event_id = s
        .event_id
        .clone()
        .unwrap_or_else(|| extract::synthetic("evt_1Enroll", now, Some(s.kind)));
    let is_sub = order.starts_with("sub_");
    let (event_type, object) = match s.kind {
        EventKind::Purchase => (
            "checkout.session.completed",
            json!({
                "id": format!("cs_test_enroll{ts}"),
                "object": "checkout.session",
                "amount_subtotal": 19900,
                "amount_total": 19900,
                "created": ts,
                "currency": "usd",
                "customer": null,
                "customer_creation": "if_required",
                "customer_details": {
                    "email": s.email,
                    "name": s.name,
                    "tax_exempt": "none",
                    "tax_ids": []
                },
                "customer_email": null,
                "livemode": false,
                "metadata": { "enroll_product": s.product },
                "mode": if is_sub { "subscription" } else { "payment" },
                "payment_intent": if is_sub { Value::Null } else { json!(order) },
                "payment_link": null,
                "payment_status": "paid",
                "status": "complete",
                "subscription": if is_sub { json!(order) } else { Value::Null },
                "success_url": "https://example.com/thanks"
            }),
        ),
        EventKind::Refund => (
            "charge.refunded",
            json!({
                "id": format!("ch_3Enroll{ts}"),
                "object": "charge",
                "amount": 19900,
                "amount_captured": 19900,
                "amount_refunded": 19900,
                "billing_details": { "email": s.email, "name": s.name },
                "captured": true,
                "created": ts,
                "currency": "usd",
                "metadata": { "enroll_product": s.product },
                "paid": true,
                "payment_intent": order,
                "receipt_email": s.email,
                "refunded": true,
                "status": "succeeded"
            }),
        ),
        EventKind::Chargeback => (
            "charge.dispute.created",
            json!({
                "id": format!("dp_1Enroll{ts}"),
                "object": "dispute",
                "amount": 19900,
                "charge": format!("ch_3Enroll{ts}"),
                "created": ts,
                "currency": "usd",
                "is_charge_refundable": false,
                "livemode": false,
                "metadata": {},
                "payment_intent": order,
                "reason": "fraudulent",
                "status": "needs_response"
            }),
        ),
        EventKind::Cancel => (
            "customer.subscription.deleted",
            json!({
                "id": order,
                "object": "subscription",
                "cancel_at_period_end": false,
                "canceled_at": ts,
                "created": ts - 2_592_000,
                "customer": format!("cus_Enroll{ts}"),
                "ended_at": ts,
                "items": {
                    "object": "list",
                    "data": [{
                        "id": format!("si_Enroll{ts}"),
                        "object": "subscription_item",
                        "price": { "id": s.product, "object": "price" },
                        "quantity": 1
                    }]
                },
                "metadata": {},
                "status": "canceled"
            }),
        ),
    };
    let body = serde_json::to_vec_pretty(&json!({
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": ts,
        "data": { "object": object },
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": event_type
    }))
    .unwrap_or_default();
    let signature = SIGNATURE.sign(secret, ts, &body);
    Outgoing {
        query: None,
        headers: vec![
            (
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            ),
            signature,
        ],
        body,
    }
}
