use crate::common::*;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;

const SECRET: &str = "ls-signing-secret-7Qm2Xw9Kp4";

fn signed(body: &[u8], secret: &str) -> Req {
    Req::new(body)
        .header("content-type", "application/json")
        .header("x-event-name", "order_created")
        .header("x-signature", hmac_hex(secret.as_bytes(), body))
}

fn run(body: &str) -> Result<enroll_platforms::Accepted, enroll_platforms::Rejected> {
    signed(body.as_bytes(), SECRET).send(Platform::LemonSqueezy, &cfg(&[SECRET]), now())
}

const ORDER: &str = include_str!("../../../../infra/fixtures/lemonsqueezy/order_created.json");

#[test]
fn order_created_is_a_purchase_keyed_by_event_and_order() {
    Expect {
        kind: EventKind::Purchase,
        key: "lemonsqueezy:order_created:3012744",
        order: "3012744",
        email: Some("margaret.hamilton@example.com"),
        name: Some("Margaret Hamilton"),
        items: &["442187", "301122", "Notion Mastery"],
        occurred_at: "2024-09-03T15:22:08Z",
    }
    .check(&event(run(ORDER)));
}

#[test]
fn full_refund_revokes_the_order_and_partial_refund_is_ignored() {
    Expect {
        kind: EventKind::Refund,
        key: "lemonsqueezy:order_refunded:3012744",
        order: "3012744",
        email: Some("margaret.hamilton@example.com"),
        name: Some("Margaret Hamilton"),
        items: &["442187", "301122", "Notion Mastery"],
        occurred_at: "2024-09-10T11:05:41Z",
    }
    .check(&event(run(include_str!(
        "../../../../infra/fixtures/lemonsqueezy/order_refunded.json"
    ))));
    assert!(ignored(run(include_str!(
        "../../../../infra/fixtures/lemonsqueezy/order_refunded.partial.json"
    )))
    .contains("partial"));
}

#[test]
fn subscription_cancelled_and_expired_revoke_the_order_that_started_it() {
    for (file, name, at) in [
        (
            include_str!("../../../../infra/fixtures/lemonsqueezy/subscription_cancelled.json"),
            "subscription_cancelled",
            "2024-10-15T18:40:02Z",
        ),
        (
            include_str!("../../../../infra/fixtures/lemonsqueezy/subscription_expired.json"),
            "subscription_expired",
            "2024-11-04T10:11:14Z",
        ),
    ] {
        Expect {
            kind: EventKind::Cancel,
            key: &format!("lemonsqueezy:{name}:518832"),
            order: "3013090",
            email: Some("barbara.liskov@example.edu"),
            name: Some("Barbara Liskov"),
            items: &["442260", "301150", "Notion Mastery Community"],
            occurred_at: at,
        }
        .check(&event(run(file)));
    }
}

#[test]
fn pending_orders_and_other_events_are_ignored() {
    ignored(run(
        &ORDER.replace("\"status\": \"paid\"", "\"status\": \"pending\"")
    ));
    ignored(run(
        &ORDER.replace("order_created", "subscription_payment_success")
    ));
}

#[test]
fn rejects_tampering_wrong_secret_and_missing_or_malformed_signature() {
    let good = signed(ORDER.as_bytes(), SECRET);
    let c = cfg(&[SECRET]);
    let mut tampered = good.clone();
    tampered.body = ORDER.replace("9900", "100").into_bytes();
    refused(
        tampered.send(Platform::LemonSqueezy, &c, now()),
        401,
        "no configured secret",
    );
    refused(
        good.send(Platform::LemonSqueezy, &cfg(&["other"]), now()),
        401,
        "no configured secret",
    );
    refused(
        good.clone()
            .without("x-signature")
            .send(Platform::LemonSqueezy, &c, now()),
        401,
        "missing x-signature",
    );
    refused(
        good.clone()
            .without("x-signature")
            .header("x-signature", "zz")
            .send(Platform::LemonSqueezy, &c, now()),
        401,
        "hex",
    );
    refused(
        good.send(Platform::LemonSqueezy, &cfg(&[]), now()),
        401,
        "no secret configured for lemonsqueezy",
    );
}

#[test]
fn rotation_accepts_the_second_secret() {
    let good = signed(ORDER.as_bytes(), SECRET);
    assert!(good
        .send(Platform::LemonSqueezy, &cfg(&["retired", SECRET]), now())
        .is_ok());
}

#[test]
fn verified_but_unusable_bodies_are_400() {
    refused(run("{"), 400, "json");
    refused(run(r#"{"data":{"id":"1"}}"#), 400, "meta.event_name");
    refused(
        run(r#"{"meta":{"event_name":"order_created"},"data":{"id":"1","attributes":{}}}"#),
        400,
        "user_email",
    );
    refused(
        run(r#"{"meta":{"event_name":"subscription_expired"},"data":{"id":"9","attributes":{}}}"#),
        400,
        "data.attributes.order_id",
    );
}
