use crate::common::*;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;

const SECRET: &str = "pdl_ntfset_01j7qhzv3x5z7b9d1f3h5k7m9p_Yq2Wc8Rk4Tn6Vb0Xs1Ze3Ga5Jd7Lm9";

fn signed(body: &[u8], secret: &str, ts: i64) -> Req {
    let mut msg = format!("{ts}:").into_bytes();
    msg.extend_from_slice(body);
    Req::new(body).header(
        "paddle-signature",
        format!("ts={ts};h1={}", hmac_hex(secret.as_bytes(), &msg)),
    )
}

fn run(body: &str) -> Result<enroll_platforms::Accepted, enroll_platforms::Rejected> {
    signed(body.as_bytes(), SECRET, NOW).send(Platform::Paddle, &cfg(&[SECRET]), now())
}

const TXN: &str = include_str!("../../../../infra/fixtures/paddle/transaction.completed.json");

#[test]
fn completed_transaction_is_a_purchase_with_the_email_from_custom_data() {
    Expect {
        kind: EventKind::Purchase,
        key: "paddle:evt_01j7qk0c3m9x2v5b8n4r6t1y7w",
        order: "txn_01j7qjz8v2e4r6t8y0u2i4o6p8",
        email: Some("frances.allen@example.com"),
        name: Some("Frances Allen"),
        items: &[
            "pri_01j5a8b2c4d6e8f0g2h4j6k8m0",
            "pro_01j5a7x9y1z3a5b7c9d1e3f5g7",
        ],
        occurred_at: "2024-09-12T14:05:33.872344Z",
    }
    .check(&event(run(TXN)));
}

#[test]
fn subscription_purchase_refund_chargeback_and_cancel_share_the_subscription_order() {
    let sub = "sub_01j8bq2c1d3f5h7k9m1p3r5t7v";
    let purchase = event(run(include_str!(
        "../../../../infra/fixtures/paddle/transaction.completed.subscription.json"
    )));
    assert_eq!(purchase.kind, EventKind::Purchase);
    assert_eq!(purchase.order.order_id.as_str(), sub);
    Expect {
        kind: EventKind::Chargeback,
        key: "paddle:evt_01j8t4x6z8b0d2f4h6k8m0p2r4",
        order: sub,
        email: None,
        name: None,
        items: &[],
        occurred_at: "2024-09-28T07:45:02.008314Z",
    }
    .check(&event(run(include_str!(
        "../../../../infra/fixtures/paddle/adjustment.created.chargeback.json"
    ))));
    Expect {
        kind: EventKind::Cancel,
        key: "paddle:evt_01jabc3e5g7j9l1n3q5s7u9w1y",
        order: sub,
        email: Some("john.backus@example.com"),
        name: None,
        items: &[
            "pri_01j5a9c3d5f7h9k1m3p5r7t9v1",
            "pro_01j5a9b1c3d5f7h9k1m3p5r7t9",
        ],
        occurred_at: "2024-10-19T09:41:08.402119Z",
    }
    .check(&event(run(include_str!(
        "../../../../infra/fixtures/paddle/subscription.canceled.json"
    ))));
}

#[test]
fn refund_counts_once_approved() {
    assert!(ignored(run(include_str!(
        "../../../../infra/fixtures/paddle/adjustment.created.json"
    )))
    .contains("not approved"));
    let approved = include_str!("../../../../infra/fixtures/paddle/adjustment.updated.json");
    Expect {
        kind: EventKind::Refund,
        key: "paddle:evt_01j80c7m9p1r3t5v7x9z1b3d5f",
        order: "txn_01j7qjz8v2e4r6t8y0u2i4o6p8",
        email: None,
        name: None,
        items: &[],
        occurred_at: "2024-09-15T11:02:17.550902Z",
    }
    .check(&event(run(approved)));
    let partial = approved.replace(
        "\"type\": \"full\",\n    \"reason\"",
        "\"type\": \"partial\",\n    \"reason\"",
    );
    assert_ne!(partial, approved);
    assert!(ignored(run(&partial)).contains("partial"));
    ignored(run(
        &approved.replace("\"action\": \"refund\"", "\"action\": \"credit\"")
    ));
}

#[test]
fn purchase_without_any_email_is_400_naming_custom_data_email() {
    let body = TXN.replace(
        "\"custom_data\": { \"email\": \"Frances.Allen@Example.com\", \"name\": \"Frances Allen\" }",
        "\"custom_data\": null",
    );
    assert_ne!(body, TXN);
    refused(run(&body), 400, "data.custom_data.email");
}

#[test]
fn rejects_tampering_wrong_secret_staleness_and_missing_signature() {
    let good = signed(TXN.as_bytes(), SECRET, NOW);
    let c = cfg(&[SECRET]);
    let mut tampered = good.clone();
    tampered.body = TXN.replace("14900", "100").into_bytes();
    refused(
        tampered.send(Platform::Paddle, &c, now()),
        401,
        "no configured secret",
    );
    refused(
        good.send(Platform::Paddle, &cfg(&["pdl_ntfset_other"]), now()),
        401,
        "no configured secret",
    );
    refused(
        good.clone()
            .without("paddle-signature")
            .send(Platform::Paddle, &c, now()),
        401,
        "missing paddle-signature",
    );
    refused(
        Req::new(TXN)
            .header("paddle-signature", format!("ts={NOW}"))
            .send(Platform::Paddle, &c, now()),
        401,
        "no h1",
    );
    refused(
        good.send(Platform::Paddle, &cfg(&[]), now()),
        401,
        "no secret configured for paddle",
    );
    let stale = signed(TXN.as_bytes(), SECRET, NOW - 301);
    refused(stale.send(Platform::Paddle, &c, now()), 401, "tolerance");
}

#[test]
fn tolerance_defaults_to_300_seconds_and_follows_the_configuration() {
    let late = signed(TXN.as_bytes(), SECRET, NOW - 60);
    assert!(late.send(Platform::Paddle, &cfg(&[SECRET]), now()).is_ok());
    let mut sdk_like = cfg(&[SECRET]);
    sdk_like.tolerance_secs = Some(5);
    refused(
        late.send(Platform::Paddle, &sdk_like, now()),
        401,
        "5 s tolerance",
    );
}

#[test]
fn rotation_and_multiple_h1_signatures() {
    let good = signed(TXN.as_bytes(), SECRET, NOW);
    assert!(good
        .send(
            Platform::Paddle,
            &cfg(&["pdl_ntfset_retired", SECRET]),
            now()
        )
        .is_ok());
    let msg = format!("{NOW}:{TXN}");
    let header = format!(
        "ts={NOW};h1={};h1={}",
        hmac_hex(b"pdl_ntfset_new", msg.as_bytes()),
        hmac_hex(SECRET.as_bytes(), msg.as_bytes())
    );
    let r = Req::new(TXN).header("paddle-signature", header);
    assert!(r.send(Platform::Paddle, &cfg(&[SECRET]), now()).is_ok());
}
