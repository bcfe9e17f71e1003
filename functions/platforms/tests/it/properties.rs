//! Whatever arrives, `receive` answers: no panic, and every refusal is a 400 or 401 with a
//! reason. Bodies are arbitrary bytes, arbitrary JSON, arbitrary forms, fixtures with a leaf
//! replaced, and huge fields; about half of them are genuinely signed so the parsing paths
//! behind verification are exercised too.
//!
//! The case count defaults to proptest's 256 per property; set `ENROLL_PROPTEST_CASES` to raise
//! it (e.g. `ENROLL_PROPTEST_CASES=20000` for a soak run).

use crate::common::*;
use enroll_core::ids::Platform;
use enroll_platforms::Accepted;
use proptest::prelude::*;
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("ENROLL_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

const SECRET: &str = "whsec_cHJvcGVydHktdGVzdC1rZXk=";

const FIXTURES: &[&str] = &[
    include_str!("../../../../infra/fixtures/stripe/checkout.session.completed.subscription.json"),
    include_str!("../../../../infra/fixtures/stripe/charge.refunded.json"),
    include_str!("../../../../infra/fixtures/stripe/customer.subscription.deleted.json"),
    include_str!("../../../../infra/fixtures/standard/order.paid.subscription.json"),
    include_str!("../../../../infra/fixtures/standard/order.completed.json"),
    include_str!("../../../../infra/fixtures/lemonsqueezy/order_created.json"),
    include_str!("../../../../infra/fixtures/lemonsqueezy/subscription_cancelled.json"),
    include_str!("../../../../infra/fixtures/paddle/transaction.completed.json"),
    include_str!("../../../../infra/fixtures/paddle/adjustment.updated.json"),
    include_str!("../../../../infra/fixtures/shopify/orders-paid.json"),
    include_str!("../../../../infra/fixtures/shopify/refunds-create.json"),
];

const FORMS: &[&str] = &[
    include_str!("../../../../infra/fixtures/gumroad/sale.txt"),
    include_str!("../../../../infra/fixtures/gumroad/cancellation.txt"),
    include_str!("../../../../infra/fixtures/thrivecart/order.success.txt"),
    include_str!("../../../../infra/fixtures/thrivecart/order.refund.txt"),
];

/// Field names the platforms read, so generated objects often hit real paths.
const KEYS: &[&str] = &[
    "type",
    "id",
    "data",
    "object",
    "created",
    "email",
    "customer",
    "customer_details",
    "customer_email",
    "payment_intent",
    "subscription",
    "subscription_id",
    "order_id",
    "payment_status",
    "refunded",
    "metadata",
    "enroll_product",
    "line_items",
    "items",
    "price",
    "product",
    "product_id",
    "meta",
    "event_name",
    "attributes",
    "user_email",
    "status",
    "first_order_item",
    "event_id",
    "event_type",
    "occurred_at",
    "custom_data",
    "action",
    "transaction_id",
    "timestamp",
    "sku",
    "variant_id",
    "line_item",
    "refund_line_items",
    "cancelled_at",
    "name",
    "created_at",
];

const FORM_KEYS: &[&str] = &[
    "resource_name",
    "sale_id",
    "subscription_id",
    "email",
    "user_email",
    "refunded",
    "disputed",
    "dispute_won",
    "cancelled",
    "ended_at",
    "product_id",
    "sale_timestamp",
    "thrivecart_secret",
    "event",
    "order_id",
    "order[id]",
    "customer[email]",
    "customer[name]",
    "purchase_map[0]",
    "purchase_map[]",
    "base_product",
    "refund[date_unix]",
    "subscription[id]",
    "order[date_unix]",
    "cancelled_at",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "checkout.session.completed",
            "charge.refunded",
            "order.paid",
            "order_created",
            "transaction.completed",
            "adjustment.updated",
            "approved",
            "refund",
            "paid",
            "a@b.co",
            "ADA@EXAMPLE.COM",
            "2024-01-01T00:00:00Z",
            "sub_1",
            "pi_1",
            "txn_1",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// Replaces the leaf found by walking `path` (indices into keys or elements) with `with`.
fn mutate(mut v: Value, path: &[usize], with: Value) -> Value {
    replace_at(&mut v, path, with);
    v
}

fn replace_at(cur: &mut Value, path: &[usize], with: Value) {
    let Some((&i, rest)) = path.split_first() else {
        *cur = with;
        return;
    };
    match cur {
        Value::Object(o) if !o.is_empty() => {
            let k = o.keys().nth(i % o.len()).cloned().unwrap();
            replace_at(o.get_mut(&k).unwrap(), rest, with);
        }
        Value::Array(a) if !a.is_empty() => {
            let n = a.len();
            replace_at(&mut a[i % n], rest, with);
        }
        _ => *cur = with,
    }
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (
            prop::sample::select(FIXTURES),
            prop::collection::vec(any::<usize>(), 0..6),
            prop_oneof![leaf(), json_value()],
        )
            .prop_map(|(f, path, with)| {
                let v: Value = serde_json::from_str(f).unwrap();
                serde_json::to_vec(&mutate(v, &path, with)).unwrap()
            }),
        prop::collection::vec(
            (
                prop_oneof![prop::sample::select(FORM_KEYS).prop_map(str::to_owned), ".{0,12}"],
                prop_oneof![".{0,30}", prop::sample::select(vec!["true", "sale", "refund", "order.success", "a@b.co"]).prop_map(str::to_owned)],
            ),
            0..12,
        )
        .prop_map(|kv| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in kv {
                s.append_pair(&k, &v);
            }
            s.finish().into_bytes()
        }),
        (prop::sample::select(FORMS), any::<usize>(), ".{0,40}").prop_map(|(f, i, v)| {
            let mut pairs: Vec<(String, String)> = form_urlencoded::parse(f.as_bytes())
                .into_owned()
                .collect();
            let n = pairs.len();
            if i % 3 == 0 {
                pairs.remove(i % n);
            } else {
                pairs[i % n].1 = v;
            }
            let mut s = form_urlencoded::Serializer::new(String::new());
            s.extend_pairs(pairs);
            s.finish().into_bytes()
        }),
        // Huge fields: far beyond every newtype's limit.
        (prop::sample::select(KEYS), 1000usize..200_000).prop_map(|(k, n)| {
            serde_json::to_vec(&serde_json::json!({
                k: "x".repeat(n),
                "type": "order.paid",
                "data": { k: "y".repeat(n), "id": "z".repeat(n), "customer_email": format!("{}@example.com", "a".repeat(n)) },
            }))
            .unwrap()
        }),
        (prop::sample::select(FORM_KEYS), 1000usize..200_000).prop_map(|(k, n)| {
            format!("thrivecart_secret={SECRET}&event=order.success&{k}={}&order_id={}", "x".repeat(n), "9".repeat(n)).into_bytes()
        }),
    ]
}

fn random_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let names = prop_oneof![
        prop::sample::select(vec![
            "stripe-signature",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "svix-signature",
            "x-signature",
            "paddle-signature",
            "x-shopify-hmac-sha256",
            "x-shopify-topic",
            "x-shopify-webhook-id",
            "content-type",
        ])
        .prop_map(str::to_owned),
        "[a-z-]{1,20}",
    ];
    let values = prop_oneof![
        ".{0,80}",
        Just(format!("t={NOW},v1={}", "ab".repeat(32))),
        Just("ts=1;h1=00".to_owned()),
        Just("v1,AAAA v1a,BBBB".to_owned()),
        Just("orders/paid".to_owned()),
    ];
    prop::collection::vec((names, values), 0..8)
}

/// Genuine signature headers for `body` (computed independently of the crate), so arbitrary
/// bodies reach the parsing code.
fn sign_for(p: Platform, body: &[u8], topic: &str) -> Req {
    let mut r = Req::new(body.to_vec());
    let with_prefix = |prefix: String| {
        let mut m = prefix.into_bytes();
        m.extend_from_slice(body);
        m
    };
    match p {
        Platform::Stripe => {
            let sig = hmac_hex(SECRET.as_bytes(), &with_prefix(format!("{NOW}.")));
            r = r.header("stripe-signature", format!("t={NOW},v1={sig}"));
        }
        Platform::Standard => {
            use base64::Engine as _;
            let key = base64::engine::general_purpose::STANDARD
                .decode(SECRET.trim_start_matches("whsec_"))
                .unwrap();
            let sig = hmac_b64(&key, &with_prefix(format!("msg_p.{NOW}.")));
            r = r
                .header("webhook-id", "msg_p")
                .header("webhook-timestamp", NOW.to_string())
                .header("webhook-signature", format!("v1,{sig}"));
        }
        Platform::LemonSqueezy => {
            r = r.header("x-signature", hmac_hex(SECRET.as_bytes(), body));
        }
        Platform::Paddle => {
            let sig = hmac_hex(SECRET.as_bytes(), &with_prefix(format!("{NOW}:")));
            r = r.header("paddle-signature", format!("ts={NOW};h1={sig}"));
        }
        Platform::Shopify => {
            r = r
                .header("x-shopify-hmac-sha256", hmac_b64(SECRET.as_bytes(), body))
                .header("x-shopify-topic", topic)
                .header("x-shopify-webhook-id", "wh-1");
        }
        Platform::Gumroad => r = r.query(format!("secret={SECRET}")),
        Platform::ThriveCart => {
            let mut b = format!("thrivecart_secret={SECRET}&").into_bytes();
            b.extend_from_slice(body);
            r.body = b;
        }
        Platform::Mapped(_) => unreachable!("mapped platforms have their own properties"),
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn receive_never_panics_and_refuses_only_with_400_or_401(
        platform in prop::sample::select(Platform::ALL.to_vec()),
        body in body(),
        headers in random_headers(),
        query in prop::option::of(".{0,60}"),
        genuine in any::<bool>(),
        topic in prop::sample::select(vec!["orders/paid", "refunds/create", "orders/cancelled", "x"]),
        tolerance in prop::option::of(0u64..1_000_000),
    ) {
        let mut req = if genuine {
            sign_for(platform, &body, topic)
        } else {
            let mut r = Req::new(body);
            r.query = query;
            r
        };
        req.headers.extend(headers);
        let mut c = cfg(&[SECRET]);
        c.tolerance_secs = tolerance;
        match req.send(platform, &c, now()) {
            Ok(Accepted::Event(e)) => {
                prop_assert_eq!(e.key.platform, platform);
                prop_assert_eq!(e.order.platform, platform);
            }
            Ok(Accepted::Ignored { reason, .. }) => prop_assert!(!reason.is_empty()),
            Err(e) => {
                prop_assert!(e.status == 400 || e.status == 401, "status {}", e.status);
                prop_assert!(!e.reason.trim().is_empty());
                prop_assert!(!e.reason.contains(SECRET));
            }
        }
    }
}
