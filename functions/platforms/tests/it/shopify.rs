use crate::common::*;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;

const SECRET: &str = "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";

fn signed(body: &[u8], secret: &str, topic: &str) -> Req {
    Req::new(body)
        .header("content-type", "application/json")
        .header("x-shopify-topic", topic)
        .header("x-shopify-hmac-sha256", hmac_b64(secret.as_bytes(), body))
        .header("x-shopify-shop-domain", "enroll-demo.myshopify.com")
        .header("x-shopify-api-version", "2024-07")
        .header(
            "x-shopify-webhook-id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        )
        .header("x-shopify-triggered-at", "2024-09-14T13:12:47.123456Z")
}

fn run(body: &str, topic: &str) -> Result<enroll_platforms::Accepted, enroll_platforms::Rejected> {
    signed(body.as_bytes(), SECRET, topic).send(Platform::Shopify, &cfg(&[SECRET]), now())
}

const PAID: &str = include_str!("../../../../infra/fixtures/shopify/orders-paid.json");
const KEY: &str = "shopify:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";
const LINES: &[&str] = &[
    "NM-LIFETIME",
    "44890123456789",
    "8123456789012",
    "44890123467890",
    "8123456790123",
];

#[test]
fn orders_paid_is_a_purchase_with_every_line_reference() {
    Expect {
        kind: EventKind::Purchase,
        key: KEY,
        order: "5893214765123",
        email: Some("radia.perlman@example.com"),
        name: Some("Radia Perlman"),
        items: LINES,
        occurred_at: "2024-09-14T13:12:42Z",
    }
    .check(&event(run(PAID, "orders/paid")));
}

#[test]
fn refunds_and_cancellations_revoke_the_same_order() {
    Expect {
        kind: EventKind::Refund,
        key: KEY,
        order: "5893214765123",
        email: None,
        name: None,
        items: LINES,
        occurred_at: "2024-09-16T15:29:58Z",
    }
    .check(&event(run(
        include_str!("../../../../infra/fixtures/shopify/refunds-create.json"),
        "refunds/create",
    )));
    Expect {
        kind: EventKind::Cancel,
        key: KEY,
        order: "5893214765123",
        email: Some("radia.perlman@example.com"),
        name: Some("Radia Perlman"),
        items: LINES,
        occurred_at: "2024-09-16T15:30:05Z",
    }
    .check(&event(run(
        include_str!("../../../../infra/fixtures/shopify/orders-cancelled.json"),
        "orders/cancelled",
    )));
}

#[test]
fn the_unsigned_topic_must_agree_with_the_signed_body() {
    // A captured orders/paid delivery relabelled as a cancellation does not revoke.
    ignored(run(PAID, "orders/cancelled"));
    // A cancelled order relabelled as paid does not grant.
    ignored(run(
        include_str!("../../../../infra/fixtures/shopify/orders-cancelled.json"),
        "orders/paid",
    ));
    // A refund relabelled as an order has no order email.
    refused(
        run(
            include_str!("../../../../infra/fixtures/shopify/refunds-create.json"),
            "orders/paid",
        ),
        400,
        "email",
    );
}

#[test]
fn other_topics_are_ignored_and_the_webhook_id_is_required() {
    ignored(run(PAID, "orders/updated"));
    refused(
        signed(PAID.as_bytes(), SECRET, "orders/paid")
            .without("x-shopify-webhook-id")
            .send(Platform::Shopify, &cfg(&[SECRET]), now()),
        400,
        "x-shopify-webhook-id",
    );
    refused(
        signed(PAID.as_bytes(), SECRET, "orders/paid")
            .without("x-shopify-topic")
            .send(Platform::Shopify, &cfg(&[SECRET]), now()),
        400,
        "x-shopify-topic",
    );
}

#[test]
fn rejects_tampering_wrong_secret_and_missing_signature() {
    let good = signed(PAID.as_bytes(), SECRET, "orders/paid");
    let c = cfg(&[SECRET]);
    let mut tampered = good.clone();
    tampered.body = PAID.replace("178.00", "0.00").into_bytes();
    refused(
        tampered.send(Platform::Shopify, &c, now()),
        401,
        "no configured secret",
    );
    refused(
        good.send(Platform::Shopify, &cfg(&["shpss_other"]), now()),
        401,
        "no configured secret",
    );
    refused(
        good.clone()
            .without("x-shopify-hmac-sha256")
            .send(Platform::Shopify, &c, now()),
        401,
        "missing x-shopify-hmac-sha256",
    );
    refused(
        good.send(Platform::Shopify, &cfg(&[]), now()),
        401,
        "no secret configured for shopify",
    );
}

#[test]
fn rotation_accepts_the_second_secret() {
    let good = signed(PAID.as_bytes(), SECRET, "orders/paid");
    assert!(good
        .send(Platform::Shopify, &cfg(&["shpss_old", SECRET]), now())
        .is_ok());
}

#[test]
fn verified_but_unusable_bodies_are_400() {
    refused(run("nope", "orders/paid"), 400, "json");
    refused(run(r#"{"email":"a@b.co"}"#, "orders/paid"), 400, "id");
    refused(run(r#"{"id":1}"#, "orders/paid"), 400, "email");
    refused(run(r#"{"id":1}"#, "refunds/create"), 400, "order_id");
}
