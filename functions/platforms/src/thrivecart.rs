//! ThriveCart.
//!
//! **Verification.** ThriveCart signs nothing; every notification carries the account's
//! "secret word" in the form field `thrivecart_secret`, which must equal a configured secret
//! (compared in constant time). Missing or wrong: 401. The body is
//! `application/x-www-form-urlencoded` with PHP-style nested keys (`customer[email]`,
//! `purchase_map[0]`); JSON notifications are not read. ThriveCart registers a URL only if it
//! answers `HEAD` with 2xx: the caller answers `HEAD` before calling this module. There is no
//! timestamp, so no replay window.
//!
//! **Events** (`event`):
//!
//! | `event` | kind |
//! |---|---|
//! | `order.success` | purchase |
//! | `order.refund` | refund |
//! | `order.subscription_cancelled` | cancel |
//!
//! Others (`order.subscription_payment`, `order.rebill_failed`, affiliate events, ...) are
//! ignored. Test-mode notifications (`mode=test`) are handled like live ones, so a seller can
//! try the integration end to end.
//!
//! **Key.** ThriveCart sends no event id: `"{order_id}:{event}"`, plus a discriminator when the
//! event can happen more than once per order: a refund adds the first present of `refund[id]`,
//! `refund[date_unix]`, `refund[date]`, `refund[amount]`; a cancellation adds
//! `subscription[id]` when present. Without one, two refunds of one order share a key and the
//! second is a duplicate, which is harmless since the first already revoked the order.
//!
//! **Order id.** `order_id` (else `order[id]`). ThriveCart refund payloads say nothing reliable
//! about whether the whole order was refunded, so every refund revokes.
//!
//! **Buyer.** `customer[email]`, else `customer_email`; name `customer[name]`, else
//! `customer[first_name]` + `customer[last_name]`.
//!
//! **Product references.** `base_product` (the front-end product's numeric id), each
//! `purchase_map[]` entry (`product-12`, `bump-12`, `upsell-3`: what a catalog most naturally
//! lists), and `base_product_name`.
//!
//! **Time.** Purchases: `order[date_unix]`, else `order_timestamp`; refunds:
//! `refund[date_unix]`. Else the delivery time (nothing is signed).

use crate::extract::{self, Form, Found, Refs};
use crate::sign;
use crate::{Accepted, Inbound, Outgoing, Rejected, Sample};
use chrono::{DateTime, Utc};
use enroll_core::config::PlatformConfig;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;

pub(crate) fn receive(
    cfg: &PlatformConfig,
    req: &Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<Accepted, Rejected> {
    let secrets = sign::secrets(Platform::ThriveCart, cfg)?;
    // The secret is a field of the body, so the body must be decoded to find it; nothing else
    // is read before it matches.
    let f = Form::parse(req.body);
    let presented = f
        .get("thrivecart_secret")
        .ok_or_else(|| Rejected::unauthorized("missing thrivecart_secret field"))?;
    if !secrets.iter().any(|s| sign::secret_eq(&presented, s)) {
        return Err(Rejected::unauthorized(
            "thrivecart_secret matches no configured secret",
        ));
    }

    let event = extract::required(f.get("event"), "event")?;
    let (kind, discriminator, time_fields): (_, &[&str], &[&str]) = match event.as_str() {
        "order.success" => (
            EventKind::Purchase,
            &[],
            &["order[date_unix]", "order_timestamp"],
        ),
        "order.refund" => (
            EventKind::Refund,
            &[
                "refund[id]",
                "refund[date_unix]",
                "refund[date]",
                "refund[amount]",
            ],
            &["refund[date_unix]"],
        ),
        "order.subscription_cancelled" => (EventKind::Cancel, &["subscription[id]"], &[]),
        other => return extract::ignored(other, "not a ThriveCart event enroll acts on"),
    };
    let order = extract::required(f.first(&["order_id", "order[id]"]), "order_id")?;
    let event_id = match f.first(discriminator) {
        Some(d) => format!("{order}:{event}:{d}"),
        None => format!("{order}:{event}"),
    };
    let name = f.get("customer[name]").or_else(|| {
        extract::join_name(f.get("customer[first_name]"), f.get("customer[last_name]"))
    });
    let buyer = extract::buyer(
        kind,
        f.first(&["customer[email]", "customer_email"]),
        name,
        "customer[email]",
    )?;
    let mut items = Refs::default();
    items.push(f.get("base_product"));
    for entry in f.list("purchase_map") {
        items.push(Some(entry));
    }
    items.push(f.get("base_product_name"));
    let occurred_at = time_fields
        .iter()
        .find_map(|k| f.get(k).and_then(|t| extract::unix(&t)))
        .unwrap_or(now);
    Found {
        event_id,
        event_id_field: "order_id + event",
        kind,
        order_id: order,
        order_id_field: "order_id",
        buyer,
        items,
        occurred_at,
    }
    .accept(Platform::ThriveCart)
}

pub(crate) fn sample(s: &Sample, secret: &str, now: DateTime<Utc>) -> Outgoing {
    let ts = now.timestamp();
    let order = s
        .order_id
        .clone()
        .unwrap_or_else(|| (ts % 10_000_000).to_string());
    let name = s.name.clone().unwrap_or_default();
    let (first_name, last_name) = name.split_once(' ').unwrap_or((name.as_str(), ""));
    let event = match s.kind {
        EventKind::Purchase => "order.success",
        EventKind::Refund | EventKind::Chargeback => "order.refund",
        EventKind::Cancel => "order.subscription_cancelled",
    };
    let mut fields: Vec<(&str, String)> = vec![
        ("event", event.into()),
        ("mode", "test".into()),
        ("mode_int", "1".into()),
        ("thrivecart_account", "enroll".into()),
        ("thrivecart_secret", secret.into()),
        ("base_product", "1".into()),
        ("order_id", order.clone()),
        ("invoice_id", format!("{ts}")),
        ("order_date", now.format("%Y-%m-%d %H:%M:%S").to_string()),
        ("order_timestamp", ts.to_string()),
        ("currency", "USD".into()),
        ("customer_id", (ts % 1_000_000).to_string()),
        ("customer_identifier", format!("cus_Enroll{ts}")),
        ("customer[id]", (ts % 1_000_000).to_string()),
        ("customer[email]", s.email.clone()),
        ("customer[name]", name.clone()),
        ("customer[first_name]", first_name.into()),
        ("customer[last_name]", last_name.into()),
        ("order[id]", order),
        ("order[tax]", "0".into()),
        ("order[processor]", "stripe".into()),
        ("order[total]", "4900".into()),
        ("order[date_unix]", ts.to_string()),
        ("order[charges][0][name]", "Course".into()),
        ("order[charges][0][reference]", "1".into()),
        ("order[charges][0][item_type]", "product".into()),
        ("order[charges][0][item_id]", "1".into()),
        ("order[charges][0][amount]", "4900".into()),
        ("order[charges][0][type]", "single".into()),
        ("purchases[0]", "Course".into()),
        ("purchase_map[0]", s.product.clone()),
        ("purchase_map_flat", s.product.clone()),
        ("base_product_name", "Course".into()),
    ];
    match s.kind {
        EventKind::Refund | EventKind::Chargeback => fields.extend([
            ("refund[amount]", "4900".into()),
            ("refund[type]", "full".into()),
            ("refund[date]", now.format("%Y-%m-%d %H:%M:%S").to_string()),
            ("refund[date_unix]", ts.to_string()),
        ]),
        EventKind::Cancel => fields.extend([
            ("subscription[id]", format!("{}", ts % 1_000_000)),
            ("subscription[type]", "product".into()),
            ("subscription[item_id]", "1".into()),
        ]),
        EventKind::Purchase => {}
    }
    Outgoing {
        query: None,
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: extract::form_body(&fields),
    }
}
