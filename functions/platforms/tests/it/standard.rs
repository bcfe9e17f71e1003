use crate::common::*;
use base64::Engine as _;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;

/// A Standard Webhooks secret: `whsec_` + base64 of the key bytes.
const KEY: &[u8] = b"enroll-standard-webhooks-key-32b";

fn secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(KEY)
    )
}

fn signed_with(body: &[u8], key: &[u8], id: &str, t: i64) -> Req {
    let mut msg = format!("{id}.{t}.").into_bytes();
    msg.extend_from_slice(body);
    Req::new(body)
        .header("webhook-id", id)
        .header("webhook-timestamp", t.to_string())
        .header("webhook-signature", format!("v1,{}", hmac_b64(key, &msg)))
}

fn run(body: &str) -> Result<enroll_platforms::Accepted, enroll_platforms::Rejected> {
    signed_with(body.as_bytes(), KEY, "msg_2mKq8sT4vW6xY8zA0bC2dE4fG6h", NOW).send(
        Platform::Standard,
        &cfg(&[&secret()]),
        now(),
    )
}

const PAID: &str = include_str!("../../../../infra/fixtures/standard/order.paid.json");
const KEY_ID: &str = "standard:msg_2mKq8sT4vW6xY8zA0bC2dE4fG6h";

#[test]
fn polar_order_paid_is_a_purchase() {
    Expect {
        kind: EventKind::Purchase,
        key: KEY_ID,
        order: "6f0b2c1e-5a8d-4c7e-9b3f-1d2e3f4a5b6c",
        email: Some("katherine.johnson@example.com"),
        name: Some("Katherine Johnson"),
        items: &[
            "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
            "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
        ],
        occurred_at: "2025-03-12T10:21:43.512084Z",
    }
    .check(&event(run(PAID)));
}

#[test]
fn polar_subscription_order_and_its_revocation_share_the_subscription_order() {
    let paid = include_str!("../../../../infra/fixtures/standard/order.paid.subscription.json");
    let purchase = event(run(paid));
    assert_eq!(purchase.kind, EventKind::Purchase);
    assert_eq!(
        purchase.order.order_id.as_str(),
        "ab12cd34-ef56-4a78-9b0c-d1e2f3a4b5c6"
    );
    for (file, at) in [
        (
            include_str!("../../../../infra/fixtures/standard/subscription.canceled.json"),
            "2025-04-20T19:12:44.660012Z",
        ),
        (
            include_str!("../../../../infra/fixtures/standard/subscription.revoked.json"),
            "2025-05-02T08:00:09.118342Z",
        ),
    ] {
        Expect {
            kind: EventKind::Cancel,
            key: KEY_ID,
            order: "ab12cd34-ef56-4a78-9b0c-d1e2f3a4b5c6",
            email: Some("alan.turing@example.co.uk"),
            name: Some("Alan Turing"),
            items: &["f0e1d2c3-b4a5-4968-8776-655443322110"],
            occurred_at: at,
        }
        .check(&event(run(file)));
    }
}

#[test]
fn order_created_refunded_completed_and_disputes_map_by_default() {
    let created = event(run(include_str!(
        "../../../../infra/fixtures/standard/order.created.json"
    )));
    assert_eq!(created.kind, EventKind::Purchase);
    let refunded = event(run(include_str!(
        "../../../../infra/fixtures/standard/order.refunded.json"
    )));
    assert_eq!(refunded.kind, EventKind::Refund);
    assert_eq!(refunded.order, created.order);
    Expect {
        kind: EventKind::Purchase,
        key: KEY_ID,
        order: "ORD-2025-000731",
        email: Some("hedy.lamarr@example.at"),
        name: Some("Hedy Lamarr"),
        items: &["prd_71", "NOTION-MASTERY", "prd_72", "TEMPLATE-PACK"],
        occurred_at: "2025-05-20T14:03:11Z",
    }
    .check(&event(run(include_str!(
        "../../../../infra/fixtures/standard/order.completed.json"
    ))));
    Expect {
        kind: EventKind::Chargeback,
        key: KEY_ID,
        order: "ORD-2025-000731",
        email: Some("hedy.lamarr@example.at"),
        name: Some("Hedy Lamarr"),
        items: &[],
        occurred_at: "2025-06-01T09:30:00Z",
    }
    .check(&event(run(include_str!(
        "../../../../infra/fixtures/standard/dispute.created.json"
    ))));
}

#[test]
fn a_configured_mapping_replaces_the_defaults() {
    let mut c = cfg(&[&secret()]);
    c.event_types
        .insert("subscription.revoked".into(), EventKind::Cancel);
    c.event_types
        .insert("order.paid".into(), EventKind::Purchase);
    let req = |body: &str| {
        signed_with(body.as_bytes(), KEY, "msg_1", NOW).send(Platform::Standard, &c, now())
    };
    assert!(ignored(req(include_str!(
        "../../../../infra/fixtures/standard/subscription.canceled.json"
    )))
    .contains("event_types"));
    assert_eq!(
        event(req(include_str!(
            "../../../../infra/fixtures/standard/subscription.revoked.json"
        )))
        .kind,
        EventKind::Cancel
    );
    ignored(req(include_str!(
        "../../../../infra/fixtures/standard/order.created.json"
    )));
}

#[test]
fn unknown_types_are_ignored() {
    assert!(!ignored(run(&PAID.replace("order.paid", "checkout.updated"))).is_empty());
}

#[test]
fn secrets_without_the_prefix_are_tried_as_base64_and_as_raw_bytes() {
    let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
    let r = signed_with(PAID.as_bytes(), KEY, "msg_1", NOW);
    assert!(r.send(Platform::Standard, &cfg(&[&b64]), now()).is_ok());
    // Polar's SDK base64-encodes its dashboard secret before verifying: the key is the string.
    let polar = "polar_whs_Xy7Qk2mN9pR4sT6vW8zA1bC3dE5fG7hJ";
    let r = signed_with(PAID.as_bytes(), polar.as_bytes(), "msg_1", NOW);
    assert!(r.send(Platform::Standard, &cfg(&[polar]), now()).is_ok());
}

#[test]
fn svix_header_names_are_accepted() {
    let r = signed_with(PAID.as_bytes(), KEY, "msg_1", NOW);
    let mut svix = Req::new(r.body.clone());
    for (k, v) in &r.headers {
        svix = svix.header(&k.replace("webhook-", "svix-"), v.clone());
    }
    assert!(svix
        .send(Platform::Standard, &cfg(&[&secret()]), now())
        .is_ok());
}

#[test]
fn rejects_tampering_wrong_secret_staleness_and_missing_headers() {
    let good = signed_with(PAID.as_bytes(), KEY, "msg_1", NOW);
    let c = cfg(&[&secret()]);
    let mut tampered = good.clone();
    tampered.body = PAID.replace("4900", "1").into_bytes();
    refused(
        tampered.send(Platform::Standard, &c, now()),
        401,
        "no configured secret",
    );
    // The id is signed too: replaying the body under another id fails.
    let mut other_id = good.clone().without("webhook-id");
    other_id = other_id.header("webhook-id", "msg_2");
    refused(
        other_id.send(Platform::Standard, &c, now()),
        401,
        "no configured secret",
    );
    let wrong = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"another-key")
    );
    refused(
        good.send(Platform::Standard, &cfg(&[&wrong]), now()),
        401,
        "no configured secret",
    );
    let stale = signed_with(PAID.as_bytes(), KEY, "msg_1", NOW - 301);
    refused(stale.send(Platform::Standard, &c, now()), 401, "tolerance");
    for h in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        refused(
            good.clone().without(h).send(Platform::Standard, &c, now()),
            401,
            h,
        );
    }
    refused(
        good.send(Platform::Standard, &cfg(&[]), now()),
        401,
        "no secret configured for standard",
    );
}

#[test]
fn other_signature_versions_are_ignored_and_any_v1_may_match() {
    let msg = format!("msg_1.{NOW}.{PAID}");
    let good = hmac_b64(KEY, msg.as_bytes());
    let bad = hmac_b64(b"nope", msg.as_bytes());
    let req = |sig: String| {
        Req::new(PAID)
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", NOW.to_string())
            .header("webhook-signature", sig)
            .send(Platform::Standard, &cfg(&[&secret()]), now())
    };
    assert!(req(format!("v1a,{good} v1,{bad} v1,{good}")).is_ok());
    refused(req(format!("v1a,{good}")), 401, "no v1");
    refused(req(format!("v2,{good}")), 401, "no v1");
}

#[test]
fn rotation_accepts_the_second_secret() {
    let old = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"old-key-old-key-old-key")
    );
    let r = signed_with(PAID.as_bytes(), KEY, "msg_1", NOW);
    assert!(r
        .send(Platform::Standard, &cfg(&[&old, &secret()]), now())
        .is_ok());
}

#[test]
fn verified_but_unusable_bodies_are_400() {
    refused(run("[1,2]"), 400, "json");
    refused(run(r#"{"data":{}}"#), 400, "type");
    refused(run(r#"{"type":"order.paid"}"#), 400, "data");
    refused(
        run(r#"{"type":"order.paid","data":{"customer":{"email":"a@b.co"}}}"#),
        400,
        "data.order_id",
    );
    refused(
        run(r#"{"type":"order.paid","data":{"id":"o1"}}"#),
        400,
        "data.customer.email",
    );
    refused(
        run(r#"{"type":"order.paid","data":{"id":"o1","customer_email":"nope"}}"#),
        400,
        "email",
    );
    // A revocation needs no email.
    let e = event(run(r#"{"type":"order.refunded","data":{"id":"o1"}}"#));
    assert_eq!(e.buyer, None);
    assert_eq!(e.occurred_at, now());
}
