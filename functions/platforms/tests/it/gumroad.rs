use crate::common::*;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;

const SECRET: &str = "gr-ping-Vb7Nq2Lk9Zx4";

fn run(body: &str) -> Result<enroll_platforms::Accepted, enroll_platforms::Rejected> {
    Req::new(body)
        .header("content-type", "application/x-www-form-urlencoded")
        .query(format!("secret={SECRET}"))
        .send(Platform::Gumroad, &cfg(&[SECRET]), now())
}

const SALE: &str = include_str!("../../../../infra/fixtures/gumroad/sale.txt");
const SALE_ID: &str = "FO8TXN-dbxYaBdahG97Y-Q==";
const ITEMS: &[&str] = &[
    "32-nPAicqbLj8B_WswVlMw==",
    "notion-mastery",
    "nmstry",
    "Notion Mastery",
];

#[test]
fn sale_is_a_purchase_keyed_by_sale_and_kind() {
    Expect {
        kind: EventKind::Purchase,
        key: &format!("gumroad:{SALE_ID}:purchase"),
        order: SALE_ID,
        email: Some("annie.easley@example.com"),
        name: Some("Annie Easley"),
        items: ITEMS,
        occurred_at: "2024-09-20T16:41:12Z",
    }
    .check(&event(run(SALE)));
}

#[test]
fn refund_and_dispute_revoke_the_sale_at_delivery_time() {
    for (file, kind) in [
        (
            include_str!("../../../../infra/fixtures/gumroad/refund.txt"),
            EventKind::Refund,
        ),
        (
            include_str!("../../../../infra/fixtures/gumroad/dispute.txt"),
            EventKind::Chargeback,
        ),
    ] {
        Expect {
            kind,
            key: &format!("gumroad:{SALE_ID}:{}", kind.as_str()),
            order: SALE_ID,
            email: Some("annie.easley@example.com"),
            name: Some("Annie Easley"),
            items: ITEMS,
            occurred_at: "2024-10-01T12:00:00Z",
        }
        .check(&event(run(file)));
    }
}

#[test]
fn subscription_sale_and_its_cancellation_share_the_subscription_order() {
    let sub = "GDzW4_aBdQc-o7Gbjng7lw==";
    let items: &[&str] = &["q9-XyZAicqbLj8B_Wsw0Aa==", "Notion Mastery Community"];
    Expect {
        kind: EventKind::Purchase,
        key: "gumroad:Wq1bC3dE5fG7hI9jK1lM3n==:purchase",
        order: sub,
        email: Some("dorothy.vaughan@example.com"),
        name: Some("Dorothy Vaughan"),
        items: &[
            "q9-XyZAicqbLj8B_Wsw0Aa==",
            "nm-community",
            "nmcomm",
            "Notion Mastery Community",
        ],
        occurred_at: "2024-09-22T08:03:55Z",
    }
    .check(&event(run(include_str!(
        "../../../../infra/fixtures/gumroad/ping.subscription_sale.txt"
    ))));
    Expect {
        kind: EventKind::Cancel,
        key: &format!("gumroad:{sub}:cancel"),
        order: sub,
        email: Some("dorothy.vaughan@example.com"),
        name: None,
        items,
        occurred_at: "2024-11-02T19:27:40Z",
    }
    .check(&event(run(include_str!(
        "../../../../infra/fixtures/gumroad/cancellation.txt"
    ))));
    Expect {
        kind: EventKind::Cancel,
        key: &format!("gumroad:{sub}:cancel"),
        order: sub,
        email: Some("dorothy.vaughan@example.com"),
        name: None,
        items,
        occurred_at: "2024-11-22T08:03:55Z",
    }
    .check(&event(run(include_str!(
        "../../../../infra/fixtures/gumroad/subscription_ended.txt"
    ))));
}

#[test]
fn plain_pings_are_inferred_and_other_resources_ignored() {
    let plain = SALE.replace("&resource_name=sale", "");
    assert_eq!(event(run(&plain)).kind, EventKind::Purchase);
    let refunded = plain.replace("refunded=false", "refunded=true");
    assert_eq!(event(run(&refunded)).kind, EventKind::Refund);
    let disputed = plain.replace("disputed=false", "disputed=true");
    assert_eq!(event(run(&disputed)).kind, EventKind::Chargeback);
    ignored(run(
        &disputed.replace("dispute_won=false", "dispute_won=true")
    ));
    ignored(run(&SALE.replace(
        "resource_name=sale",
        "resource_name=subscription_updated",
    )));
}

#[test]
fn the_url_secret_is_required_and_compared_exactly() {
    let send = |q: Option<&str>, c: &enroll_core::config::PlatformConfig| {
        let mut r = Req::new(SALE);
        r.query = q.map(str::to_owned);
        r.send(Platform::Gumroad, c, now())
    };
    let c = cfg(&[SECRET]);
    refused(send(None, &c), 401, "missing secret");
    refused(send(Some("foo=bar"), &c), 401, "missing secret");
    refused(
        send(Some("secret=wrong"), &c),
        401,
        "matches no configured secret",
    );
    refused(
        send(Some(&format!("secret={SECRET}x")), &c),
        401,
        "matches no",
    );
    assert!(send(Some(&format!("a=1&secret={SECRET}")), &c).is_ok());
    assert!(send(Some(&format!("secret={SECRET}")), &cfg(&["old", SECRET])).is_ok());
    refused(
        send(Some(&format!("secret={SECRET}")), &cfg(&[])),
        401,
        "no secret configured for gumroad",
    );
}

#[test]
fn verified_but_unusable_bodies_are_400() {
    refused(run(""), 400, "resource_name");
    refused(run("resource_name=sale&email=a%40b.co"), 400, "sale_id");
    refused(run("resource_name=sale&sale_id=s1"), 400, "email");
    refused(
        run("resource_name=sale&sale_id=s1&email=nope"),
        400,
        "email",
    );
    // Bytes that are not UTF-8 are decoded lossily and surface as missing fields.
    let r = Req::new(vec![0xff, 0xfe, b'=', 0x80])
        .query(format!("secret={SECRET}"))
        .send(Platform::Gumroad, &cfg(&[SECRET]), now());
    assert_eq!(r.unwrap_err().status, 400);
}
