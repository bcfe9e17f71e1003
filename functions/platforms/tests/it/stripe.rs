use crate::common::*;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;

const SECRET: &str = "whsec_test_5f2b8c1d9e7a4f3b6c0d2e8f1a7b3c9d";

fn signed(body: &[u8], secret: &str, t: i64) -> Req {
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(body);
    Req::new(body).header(
        "stripe-signature",
        format!("t={t},v1={}", hmac_hex(secret.as_bytes(), &msg)),
    )
}

fn run(body: &str) -> Result<enroll_platforms::Accepted, enroll_platforms::Rejected> {
    signed(body.as_bytes(), SECRET, NOW).send(Platform::Stripe, &cfg(&[SECRET]), now())
}

const PAID: &str =
    include_str!("../../../../infra/fixtures/stripe/checkout.session.completed.json");

#[test]
fn one_time_checkout_becomes_a_purchase_of_the_payment_intent() {
    Expect {
        kind: EventKind::Purchase,
        key: "stripe:evt_1PqRsTLkdIwHu7ix0aBcDeFg",
        order: "pi_3PqRsTLkdIwHu7ix1GhIjKlM",
        email: Some("ada.lovelace@example.com"),
        name: Some("Ada Lovelace"),
        items: &["plink_1PqRaBLkdIwHu7ixNmOpQrSt"],
        occurred_at: "2024-08-19T10:00:00Z",
    }
    .check(&event(run(PAID)));
}

#[test]
fn subscription_checkout_is_the_subscription_order_with_metadata_and_line_items() {
    let body = include_str!(
        "../../../../infra/fixtures/stripe/checkout.session.completed.subscription.json"
    );
    Expect {
        kind: EventKind::Purchase,
        key: "stripe:evt_1PqSuVLkdIwHu7ixAbCdEfGh",
        order: "sub_1PqSuTLkdIwHu7ixCommunity",
        email: Some("grace.hopper@example.org"),
        name: Some("Grace Hopper"),
        items: &[
            "notion-mastery-community",
            "price_1PqAbCLkdIwHu7ixMonthly01",
            "prod_QhTnCommunity01",
        ],
        occurred_at: "2024-08-19T11:00:00Z",
    }
    .check(&event(run(body)));
}

#[test]
fn unpaid_session_waits_for_the_async_payment() {
    let unpaid =
        include_str!("../../../../infra/fixtures/stripe/checkout.session.completed.unpaid.json");
    assert!(ignored(run(unpaid)).contains("unpaid"));
    let paid = include_str!(
        "../../../../infra/fixtures/stripe/checkout.session.async_payment_succeeded.json"
    );
    Expect {
        kind: EventKind::Purchase,
        key: "stripe:evt_1PrBcDLkdIwHu7ixSepaPaid1",
        order: "pi_3PqTaBLkdIwHu7ix0SepaDd1",
        email: Some("edsger@example.nl"),
        name: Some("Edsger Dijkstra"),
        items: &["notion-mastery"],
        occurred_at: "2024-08-21T12:00:00Z",
    }
    .check(&event(run(paid)));
}

#[test]
fn full_refund_revokes_the_payment_intent_and_partial_refund_is_ignored() {
    let full = include_str!("../../../../infra/fixtures/stripe/charge.refunded.json");
    Expect {
        kind: EventKind::Refund,
        key: "stripe:evt_3PqRsTLkdIwHu7ix1RefundEv",
        order: "pi_3PqRsTLkdIwHu7ix1GhIjKlM",
        email: Some("ada.lovelace@example.com"),
        name: Some("Ada Lovelace"),
        items: &[],
        occurred_at: "2024-08-22T10:00:00Z",
    }
    .check(&event(run(full)));
    let partial = include_str!("../../../../infra/fixtures/stripe/charge.refunded.partial.json");
    assert!(ignored(run(partial)).contains("partial refund"));
}

#[test]
fn dispute_is_a_chargeback_of_the_payment_intent() {
    let body = include_str!("../../../../infra/fixtures/stripe/charge.dispute.created.json");
    Expect {
        kind: EventKind::Chargeback,
        key: "stripe:evt_1PsDisLkdIwHu7ixDispute1",
        order: "pi_3PqRsTLkdIwHu7ix1GhIjKlM",
        email: None,
        name: None,
        items: &[],
        occurred_at: "2024-08-29T10:00:00Z",
    }
    .check(&event(run(body)));
}

#[test]
fn deleted_subscription_cancels_the_subscription_order() {
    let body = include_str!("../../../../infra/fixtures/stripe/customer.subscription.deleted.json");
    Expect {
        kind: EventKind::Cancel,
        key: "stripe:evt_1PuCanLkdIwHu7ixSubDel01",
        order: "sub_1PqSuTLkdIwHu7ixCommunity",
        email: None,
        name: None,
        items: &["price_1PqAbCLkdIwHu7ixMonthly01", "prod_QhTnCommunity01"],
        occurred_at: "2024-09-19T11:00:00Z",
    }
    .check(&event(run(body)));
}

#[test]
fn other_event_types_are_ignored() {
    let body = PAID.replace("checkout.session.completed", "invoice.paid");
    assert!(!ignored(run(&body)).is_empty());
}

#[test]
fn tampered_body_wrong_secret_and_missing_header_are_401() {
    let genuine = signed(PAID.as_bytes(), SECRET, NOW);
    let mut tampered = genuine.clone();
    tampered.body = PAID.replace("Ada.Lovelace", "Eve").into_bytes();
    refused(
        tampered.send(Platform::Stripe, &cfg(&[SECRET]), now()),
        401,
        "matches no configured secret",
    );
    refused(
        genuine.send(Platform::Stripe, &cfg(&["whsec_other"]), now()),
        401,
        "matches no configured secret",
    );
    refused(
        genuine
            .clone()
            .without("stripe-signature")
            .send(Platform::Stripe, &cfg(&[SECRET]), now()),
        401,
        "missing stripe-signature",
    );
    refused(
        genuine.send(Platform::Stripe, &cfg(&[]), now()),
        401,
        "no secret configured for stripe",
    );
}

#[test]
fn malformed_headers_are_401() {
    let sig = hmac_hex(SECRET.as_bytes(), format!("{NOW}.{PAID}").as_bytes());
    for header in [
        format!("v1={sig}"),
        format!("t={NOW}"),
        format!("t={NOW},v0={sig}"),
        format!("t=yesterday,v1={sig}"),
        "garbage".to_owned(),
    ] {
        let r = Req::new(PAID)
            .header("stripe-signature", header.clone())
            .send(Platform::Stripe, &cfg(&[SECRET]), now());
        assert_eq!(r.unwrap_err().status, 401, "{header}");
    }
}

#[test]
fn timestamps_outside_the_tolerance_are_401_even_when_signed() {
    let stale = signed(PAID.as_bytes(), SECRET, NOW - 301);
    refused(
        stale.send(Platform::Stripe, &cfg(&[SECRET]), now()),
        401,
        "tolerance",
    );
    let future = signed(PAID.as_bytes(), SECRET, NOW + 301);
    refused(
        future.send(Platform::Stripe, &cfg(&[SECRET]), now()),
        401,
        "future",
    );
    let edge = signed(PAID.as_bytes(), SECRET, NOW - 300);
    assert!(edge.send(Platform::Stripe, &cfg(&[SECRET]), now()).is_ok());
    let mut wide = cfg(&[SECRET]);
    wide.tolerance_secs = Some(3600);
    assert!(stale.send(Platform::Stripe, &wide, now()).is_ok());
}

#[test]
fn any_configured_secret_and_any_v1_may_match() {
    let old = "whsec_old_0000000000000000000000000000";
    let r = signed(PAID.as_bytes(), SECRET, NOW);
    assert!(r
        .send(Platform::Stripe, &cfg(&[old, SECRET]), now())
        .is_ok());

    // During a roll Stripe signs with both secrets; only one of them is configured here.
    let msg = format!("{NOW}.{PAID}");
    let header = format!(
        "t={NOW},v1={},v1={},v0=deadbeef,v2=unknown",
        hmac_hex(old.as_bytes(), msg.as_bytes()),
        hmac_hex(SECRET.as_bytes(), msg.as_bytes()),
    );
    let r = Req::new(PAID).header("stripe-signature", header);
    assert!(r.send(Platform::Stripe, &cfg(&[SECRET]), now()).is_ok());
}

#[test]
fn verified_but_unusable_bodies_are_400_naming_the_field() {
    refused(run("not json"), 400, "json");
    let no_email = PAID.replace("\"email\": \"Ada.Lovelace@Example.com\"", "\"email\": null");
    refused(run(&no_email), 400, "customer_details.email");
    let bad_email = PAID.replace("Ada.Lovelace@Example.com", "ada at example");
    refused(run(&bad_email), 400, "email");
    let refund = include_str!("../../../../infra/fixtures/stripe/charge.refunded.json").replace(
        "\"payment_intent\": \"pi_3PqRsTLkdIwHu7ix1GhIjKlM\"",
        "\"payment_intent\": null",
    );
    refused(run(&refund), 400, "payment_intent");
}

#[test]
fn refusals_never_echo_the_secret_or_the_body() {
    let r = signed(PAID.as_bytes(), "whsec_wrong", NOW)
        .send(Platform::Stripe, &cfg(&[SECRET]), now())
        .unwrap_err();
    assert!(!r.reason.contains(SECRET) && !r.reason.contains("whsec_wrong"));
    let bad_email = PAID.replace("Ada.Lovelace@Example.com", "ada-at-example");
    let r = run(&bad_email).unwrap_err();
    assert!(!r.reason.contains("ada-at-example"), "{}", r.reason);
}
