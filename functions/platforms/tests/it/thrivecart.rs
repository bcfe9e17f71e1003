use crate::common::*;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;

/// The secret word in the fixtures.
const SECRET: &str = "TCSECRETWORD42";

fn run(body: &str) -> Result<enroll_platforms::Accepted, enroll_platforms::Rejected> {
    Req::new(body)
        .header("content-type", "application/x-www-form-urlencoded")
        .send(Platform::ThriveCart, &cfg(&[SECRET]), now())
}

const SUCCESS: &str = include_str!("../../../../infra/fixtures/thrivecart/order.success.txt");

#[test]
fn order_success_is_a_purchase_of_every_purchased_item() {
    Expect {
        kind: EventKind::Purchase,
        key: "thrivecart:4471209:order.success",
        order: "4471209",
        email: Some("mary.jackson@example.com"),
        name: Some("Mary Jackson"),
        items: &["12", "product-12", "bump-12", "Notion Mastery"],
        occurred_at: "2024-10-01T14:22:05Z",
    }
    .check(&event(run(SUCCESS)));
}

#[test]
fn refund_revokes_the_order_with_a_discriminated_key() {
    Expect {
        kind: EventKind::Refund,
        key: "thrivecart:4471209:order.refund:1728468131",
        order: "4471209",
        email: Some("mary.jackson@example.com"),
        name: Some("Mary Jackson"),
        items: &["12", "product-12", "bump-12", "Notion Mastery"],
        occurred_at: "2024-10-09T10:02:11Z",
    }
    .check(&event(run(include_str!(
        "../../../../infra/fixtures/thrivecart/order.refund.txt"
    ))));
}

#[test]
fn subscription_cancellation_revokes_the_order() {
    Expect {
        kind: EventKind::Cancel,
        key: "thrivecart:4471388:order.subscription_cancelled:sub_8821",
        order: "4471388",
        email: Some("evelyn.boyd@example.com"),
        name: Some("Evelyn Boyd Granville"),
        items: &["15", "product-15", "Notion Mastery Community"],
        occurred_at: "2024-10-01T12:00:00Z",
    }
    .check(&event(run(include_str!(
        "../../../../infra/fixtures/thrivecart/order.subscription_cancelled.txt"
    ))));
}

#[test]
fn other_events_are_ignored() {
    ignored(run(&SUCCESS.replace(
        "event=order.success",
        "event=order.subscription_payment",
    )));
}

#[test]
fn the_secret_word_is_required_and_compared_exactly() {
    let c = cfg(&[SECRET]);
    let send = |body: String, c: &enroll_core::config::PlatformConfig| {
        Req::new(body).send(Platform::ThriveCart, c, now())
    };
    refused(
        send(SUCCESS.replace("thrivecart_secret=TCSECRETWORD42&", ""), &c),
        401,
        "missing thrivecart_secret",
    );
    refused(
        send(SUCCESS.replace("TCSECRETWORD42", "TCSECRETWORD4"), &c),
        401,
        "matches no configured secret",
    );
    refused(
        send(SUCCESS.replace("TCSECRETWORD42", "tcsecretword42"), &c),
        401,
        "matches no",
    );
    assert!(send(SUCCESS.to_owned(), &cfg(&["OLDWORD", SECRET])).is_ok());
    refused(
        send(SUCCESS.to_owned(), &cfg(&[])),
        401,
        "no secret configured for thrivecart",
    );
}

#[test]
fn verified_but_unusable_bodies_are_400() {
    refused(run("thrivecart_secret=TCSECRETWORD42"), 400, "event");
    refused(
        run("thrivecart_secret=TCSECRETWORD42&event=order.success"),
        400,
        "order_id",
    );
    refused(
        run("thrivecart_secret=TCSECRETWORD42&event=order.success&order_id=1"),
        400,
        "customer[email]",
    );
}
