//! Gumroad.
//!
//! **Verification.** Gumroad signs nothing. Its pings are form-encoded POSTs to a URL the seller
//! registers, so the seller puts a secret in that URL: register
//! `https://<your endpoint>/webhooks/gumroad?secret=<value>` (in Settings > Advanced > Ping, or
//! as the `post_url` of a resource subscription) and configure the same value in
//! `platforms.gumroad.secrets`. A request whose query has no `secret`, or one matching no
//! configured secret (compared in constant time), is refused with 401. There is no timestamp,
//! so no replay window: keep the URL private, and know that anyone holding it can post
//! (Gumroad's guidance is to confirm important sales through its API).
//!
//! **Events.** `resource_name` when present:
//!
//! | `resource_name` | kind |
//! |---|---|
//! | `sale` | purchase |
//! | `refund` | refund |
//! | `dispute` | chargeback |
//! | `cancellation`, `subscription_ended` | cancel |
//! | `dispute_won`, `subscription_updated`, `subscription_restarted`, others | ignored |
//!
//! The plain Ping (no `resource_name`) is inferred: `refunded=true` is a refund,
//! `disputed=true` a chargeback (ignored when `dispute_won=true`), `cancelled=true` or an
//! `ended_at` a cancellation, otherwise a `sale_id` makes it a purchase.
//!
//! **Key.** `"{sale_id}:{kind}"` (`"{subscription_id}:{kind}"` for subscription events, which
//! carry no sale): Gumroad sends no event id, and one sale may be pinged as a sale, then a
//! refund or a dispute.
//!
//! **Order id.** `subscription_id` when present, else `sale_id`. The subscription comes first
//! because a cancellation names only the subscription: with the sale id as the order, a
//! cancellation could never revoke the purchase. Renewals are new sales of the same order.
//!
//! **Buyer.** `email` (sales), `user_email` (subscription events); name `full_name` if sent.
//!
//! **Product references.** `product_id`, `permalink`, `short_product_id`, `product_name`.
//!
//! **Time.** Sales: `sale_timestamp`; cancellations: `cancelled_at`; ended subscriptions:
//! `ended_at`. Refunds and disputes carry no time of their own (`sale_timestamp` is the sale's),
//! so they, and anything unparseable, take the delivery time.

use crate::extract::{self, Form, Found, Refs};
use crate::sign;
use crate::{Accepted, Inbound, Outgoing, Rejected, Sample};
use chrono::{DateTime, SecondsFormat, Utc};
use enroll_core::config::PlatformConfig;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;

pub(crate) fn receive(
    cfg: &PlatformConfig,
    req: &Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<Accepted, Rejected> {
    let secrets = sign::secrets(Platform::Gumroad, cfg)?;
    let presented = Form::parse(req.query.unwrap_or_default().as_bytes())
        .get("secret")
        .ok_or_else(|| Rejected::unauthorized("missing secret query parameter"))?;
    if !secrets.iter().any(|s| sign::secret_eq(&presented, s)) {
        return Err(Rejected::unauthorized(
            "secret query parameter matches no configured secret",
        ));
    }

    let f = Form::parse(req.body);
    let resource = f.get("resource_name");
    let kind = match resource.as_deref() {
        Some("sale") => EventKind::Purchase,
        Some("refund") => EventKind::Refund,
        Some("dispute") => EventKind::Chargeback,
        Some("cancellation" | "subscription_ended") => EventKind::Cancel,
        Some(other) => {
            return extract::ignored(other, "not a Gumroad resource enroll acts on");
        }
        None if f.is_true("refunded") => EventKind::Refund,
        None if f.is_true("disputed") => {
            if f.is_true("dispute_won") {
                return extract::ignored("dispute_won", "the dispute was won");
            }
            EventKind::Chargeback
        }
        None if f.is_true("cancelled") || f.get("ended_at").is_some() => EventKind::Cancel,
        None if f.get("sale_id").is_some() => EventKind::Purchase,
        None => {
            return Err(Rejected::bad_request(
                "missing field resource_name (or sale_id)",
            ))
        }
    };
    let subject = extract::required(f.first(&["sale_id", "subscription_id"]), "sale_id")?;
    let order = extract::required(f.first(&["subscription_id", "sale_id"]), "sale_id")?;
    let buyer = extract::buyer(
        kind,
        f.first(&["email", "user_email"]),
        f.get("full_name"),
        "email",
    )?;
    let mut items = Refs::default();
    for k in [
        "product_id",
        "permalink",
        "short_product_id",
        "product_name",
    ] {
        items.push(f.get(k));
    }
    // Refunds and disputes carry only the sale's own time, which is not when they happened.
    let time_fields: &[&str] = match kind {
        EventKind::Purchase => &["sale_timestamp"],
        EventKind::Cancel if resource.as_deref() == Some("subscription_ended") => {
            &["ended_at", "cancelled_at"]
        }
        EventKind::Cancel => &["cancelled_at", "ended_at"],
        EventKind::Refund | EventKind::Chargeback => &[],
    };
    let occurred_at = time_fields
        .iter()
        .find_map(|k| f.get(k).and_then(|t| extract::rfc3339(&t)))
        .unwrap_or(now);
    Found {
        event_id: format!("{subject}:{}", kind.as_str()),
        event_id_field: "sale_id",
        kind,
        order_id: order,
        order_id_field: "sale_id",
        buyer,
        items,
        occurred_at,
    }
    .accept(Platform::Gumroad)
}

pub(crate) fn sample(s: &Sample, secret: &str, now: DateTime<Utc>) -> Outgoing {
    let at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let ts = now.timestamp();
    let sale_id = s
        .order_id
        .clone()
        .unwrap_or_else(|| format!("EnR{ts}-sAmPlE=="));
    let name = s.name.clone().unwrap_or_default();
    let product = |fields: &mut Vec<(&str, String)>| {
        fields.push(("seller_id", "kL0psVL2admJSYRNs-OCMg==".into()));
        fields.push(("product_id", s.product.clone()));
        fields.push(("product_name", "Course".into()));
        fields.push(("permalink", "course".into()));
        fields.push((
            "product_permalink",
            "https://enroll.gumroad.com/l/course".into(),
        ));
        fields.push(("short_product_id", "course".into()));
    };
    let mut fields: Vec<(&str, String)> = Vec::new();
    match s.kind {
        EventKind::Purchase | EventKind::Refund | EventKind::Chargeback => {
            product(&mut fields);
            fields.extend([
                ("email", s.email.clone()),
                ("full_name", name),
                ("price", "4900".into()),
                ("gumroad_fee", "490".into()),
                ("currency", "usd".into()),
                ("quantity", "1".into()),
                ("discover_fee_charged", "false".into()),
                ("can_contact", "true".into()),
                ("referrer", "direct".into()),
                ("order_number", (ts % 1_000_000_000).to_string()),
                ("sale_id", sale_id),
                ("sale_timestamp", at),
                ("purchaser_id", (ts % 10_000_000_000).to_string()),
                ("test", "true".into()),
                ("ip_country", "United States".into()),
                ("is_gift_receiver_purchase", "false".into()),
                ("refunded", (s.kind == EventKind::Refund).to_string()),
                ("disputed", (s.kind == EventKind::Chargeback).to_string()),
                ("dispute_won", "false".into()),
            ]);
            let resource = match s.kind {
                EventKind::Refund => "refund",
                EventKind::Chargeback => "dispute",
                _ => "sale",
            };
            fields.push(("resource_name", resource.into()));
        }
        EventKind::Cancel => {
            fields.push(("subscription_id", sale_id));
            product(&mut fields);
            fields.extend([
                ("user_id", (ts % 10_000_000_000).to_string()),
                ("user_email", s.email.clone()),
                ("purchase_ids[]", format!("EnR{ts}-first==")),
                ("created_at", at.clone()),
                ("charge_occurrence_count", "1".into()),
                ("recurrence", "monthly".into()),
                ("cancelled", "true".into()),
                ("cancelled_at", at),
                ("cancelled_by_buyer", "true".into()),
                ("cancelled_by_admin", "false".into()),
                ("cancelled_by_seller", "false".into()),
                ("cancelled_due_to_payment_failures", "false".into()),
                ("resource_name", "cancellation".into()),
            ]);
        }
    }
    Outgoing {
        query: Some(
            String::from_utf8(extract::form_body(&[("secret", secret.into())])).unwrap_or_default(),
        ),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: extract::form_body(&fields),
    }
}
