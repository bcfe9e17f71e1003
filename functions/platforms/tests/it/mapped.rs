//! Mapped platforms: verification by HMAC (hex and base64, with a prefix), header secret and
//! query secret; fields read through JSON Pointers and form keys; refusals that name the field
//! without its value; samples that come back through `receive`.

use crate::common::*;
use enroll_core::config::{BodyFormat, Config, PlatformConfig};
use enroll_core::event::EventKind;
use enroll_core::ids::{Platform, PlatformName};
use enroll_platforms::{mapped, sample_configured, Accepted, Sample};

const SECRET: &str = "kajabi-shared-secret";

const BASE: &str = r#"
[notion]
database_id = "db1"

[[products]]
id = "course"
name = "Course"
groups = [{ name = "Course" }]
"#;

pub const KAJABI: &str = r#"
[platforms.kajabi]
kind = "mapped"
body = "json"
secrets = ["kajabi-shared-secret"]
auth = { hmac_sha256 = "X-Signature", encoding = "hex", prefix = "sha256=" }
[platforms.kajabi.fields]
event_id = "/id"
kind = "/event"
email = "/payload/member/email"
product = "/payload/offer/id"
order = "/payload/purchase/id"
name = "/payload/member/name"
[platforms.kajabi.kinds]
"purchase.created" = "purchase"
"purchase.refunded" = "refund"
"#;

const FORM: &str = r#"
[platforms.home-made]
kind = "mapped"
body = "form"
secrets = ["old-secret", "kajabi-shared-secret"]
auth = { header = "X-Webhook-Secret" }
[platforms.home-made.fields]
kind = "type"
email = "customer[email]"
product = "item"
order = "order_no"
key = ["order_no"]
[platforms.home-made.kinds]
paid = "purchase"
refunded = "refund"
"#;

/// The platform and its configuration, through the real configuration loader.
pub fn load(toml: &str) -> (Platform, PlatformConfig) {
    let c = Config::from_toml(&format!("{BASE}{toml}"), |_| None).expect("valid configuration");
    let (p, pc) = c.platforms.into_iter().next().unwrap();
    (p, pc)
}

fn kajabi_body(event: &str, email: serde_json::Value) -> String {
    serde_json::json!({
        "id": "evt_1",
        "event": event,
        "payload": {
            "member": { "email": email, "name": "Ada Lovelace" },
            "offer": { "id": 2150 },
            "purchase": { "id": "P-77" }
        }
    })
    .to_string()
}

fn signed(body: &str) -> Req {
    Req::new(body.as_bytes().to_vec()).header(
        "X-Signature",
        format!("sha256={}", hmac_hex(SECRET.as_bytes(), body.as_bytes())),
    )
}

#[test]
fn an_hmac_signed_json_purchase_is_an_event() {
    let (p, c) = load(KAJABI);
    let body = kajabi_body("purchase.created", "Ada@Example.com".into());
    let e = event(signed(&body).send(p, &c, now()));
    Expect {
        kind: EventKind::Purchase,
        key: "kajabi:evt_1",
        order: "P-77",
        email: Some("ada@example.com"),
        name: Some("Ada Lovelace"),
        items: &["2150"],
        occurred_at: "2024-10-01T12:00:00Z",
    }
    .check(&e);
    assert_eq!(e.order.platform.as_str(), "kajabi");
}

#[test]
fn a_wrong_or_missing_signature_is_401() {
    let (p, c) = load(KAJABI);
    let body = kajabi_body("purchase.created", "ada@example.com".into());
    let good = signed(&body);
    let mut tampered = good.clone();
    tampered.body.push(b' ');
    refused(
        tampered.send(p, &c, now()),
        401,
        "matches no configured secret",
    );
    refused(
        good.clone().without("x-signature").send(p, &c, now()),
        401,
        "missing X-Signature",
    );
    let sig = hmac_hex(SECRET.as_bytes(), body.as_bytes());
    let unprefixed = Req::new(body.clone()).header("x-signature", sig.clone());
    refused(
        unprefixed.send(p, &c, now()),
        401,
        "does not start with sha256=",
    );
    let garbled = Req::new(body.clone()).header("x-signature", "sha256=zz");
    refused(garbled.send(p, &c, now()), 401, "not a hex");
    let upper =
        Req::new(body.clone()).header("x-signature", format!("sha256={}", sig.to_uppercase()));
    assert!(upper.send(p, &c, now()).is_ok(), "hex is case-insensitive");
    let no_secret = PlatformConfig {
        secrets: Vec::new(),
        ..c.clone()
    };
    refused(
        good.send(p, &no_secret, now()),
        401,
        "no secret configured for kajabi",
    );
}

#[test]
fn a_missing_or_mistyped_field_is_400_naming_it_without_its_value() {
    let (p, c) = load(KAJABI);
    let mut v: serde_json::Value =
        serde_json::from_str(&kajabi_body("purchase.created", "x".into())).unwrap();
    v["payload"]["member"]
        .as_object_mut()
        .unwrap()
        .remove("email");
    let r = signed(&v.to_string()).send(p, &c, now());
    refused(r, 400, "missing field fields.email (/payload/member/email)");
    let body = kajabi_body("purchase.created", serde_json::json!({"secret": "leak-me"}));
    let e = signed(&body).send(p, &c, now()).unwrap_err();
    assert_eq!(e.status, 400);
    assert!(
        e.reason
            .contains("fields.email (/payload/member/email) is not a string or number"),
        "{e}"
    );
    assert!(!e.reason.contains("leak-me"));
    let body = kajabi_body("purchase.created", "not-an-email-leak".into());
    let e = signed(&body).send(p, &c, now()).unwrap_err();
    assert!(
        e.reason.contains("fields.email") && !e.reason.contains("leak"),
        "{e}"
    );
    let body = body.replace("\"P-77\"", "true");
    refused(
        signed(&body).send(p, &c, now()),
        400,
        "fields.order (/payload/purchase/id)",
    );
    refused(signed("[1]").send(p, &c, now()), 400, "not a JSON object");
}

#[test]
fn unmapped_events_are_ignored_and_refunds_need_no_email() {
    let (p, c) = load(KAJABI);
    let body = kajabi_body("member.login", "ada@example.com".into());
    assert!(ignored(signed(&body).send(p, &c, now())).contains("platforms.kajabi.kinds"));
    let mut v: serde_json::Value =
        serde_json::from_str(&kajabi_body("purchase.refunded", "bad".into())).unwrap();
    v["payload"].as_object_mut().unwrap().remove("offer");
    let e = event(signed(&v.to_string()).send(p, &c, now()));
    assert_eq!(e.kind, EventKind::Refund);
    assert_eq!(e.buyer, None, "an invalid email on a refund is only a hint");
    assert!(e.items.is_empty());
    assert_eq!(e.order.order_id.as_str(), "P-77");
}

#[test]
fn a_form_with_a_header_secret_keys_events_by_its_fields_and_kind() {
    let (p, c) = load(FORM);
    let body = "type=paid&customer%5Bemail%5D=bo%40example.com&item=course&order_no=1001";
    let req = |secret: &str, body: &str| Req::new(body).header("X-Webhook-Secret", secret);
    let e = event(req(SECRET, body).send(p, &c, now()));
    assert_eq!(e.key.as_string(), "home-made:1001:purchase");
    assert_eq!(e.items[0].as_str(), "course");
    let e = event(req("old-secret", &body.replace("paid", "refunded")).send(p, &c, now()));
    assert_eq!(e.key.as_string(), "home-made:1001:refund");
    refused(
        req("nope", body).send(p, &c, now()),
        401,
        "X-Webhook-Secret matches no",
    );
    refused(
        Req::new(body).send(p, &c, now()),
        401,
        "missing X-Webhook-Secret",
    );
    refused(
        req(SECRET, &body.replace("item=course&", "")).send(p, &c, now()),
        400,
        "missing field fields.product (item)",
    );
}

#[test]
fn samples_round_trip_for_every_auth_and_body() {
    let variants = [
        KAJABI.to_owned(),
        KAJABI.replace(
            "encoding = \"hex\", prefix = \"sha256=\"",
            "encoding = \"base64\"",
        ),
        KAJABI.replace(
            "auth = { hmac_sha256 = \"X-Signature\", encoding = \"hex\", prefix = \"sha256=\" }",
            "auth = { query = \"token\" }",
        ),
        FORM.to_owned(),
        FORM.replace("header = \"X-Webhook-Secret\"", "query = \"secret\""),
    ];
    for toml in variants {
        let (p, c) = load(&toml);
        for kind in [EventKind::Purchase, EventKind::Refund] {
            let s = Sample {
                kind,
                product: "course".into(),
                email: "Ada@Example.com".into(),
                name: Some("Ada".into()),
                order_id: Some("ord_9".into()),
                event_id: Some("evt_9".into()),
            };
            let out = sample_configured(p, &c, &s, SECRET, now());
            let req = Req {
                query: out.query,
                headers: out.headers,
                body: out.body,
            };
            let e = event(req.send(p, &c, now()));
            assert_eq!(e.kind, kind, "{toml}");
            assert_eq!(e.order.order_id.as_str(), "ord_9");
            assert_eq!(e.items[0].as_str(), "course");
            assert_eq!(e.buyer.unwrap().email.as_str(), "ada@example.com");
            let expected_key = if c.fields.as_ref().unwrap().event_id.is_some() {
                format!("{p}:evt_9")
            } else {
                format!("{p}:ord_9:{}", kind.as_str())
            };
            assert_eq!(e.key.as_string(), expected_key);
        }
        // A kind the configuration does not map is sent under its own name and ignored.
        let s = Sample {
            kind: EventKind::Cancel,
            product: "course".into(),
            email: "a@b.co".into(),
            name: None,
            order_id: None,
            event_id: None,
        };
        let out = sample_configured(p, &c, &s, SECRET, now());
        let r = Req {
            query: out.query,
            headers: out.headers,
            body: out.body,
        }
        .send(p, &c, now());
        assert!(matches!(r, Ok(Accepted::Ignored { .. })), "{r:?}");
    }
}

#[test]
fn the_doctor_sample_body_follows_the_pointers() {
    let (_, c) = load(KAJABI);
    let body: serde_json::Value = serde_json::from_str(&mapped::sample_body(&c)).unwrap();
    assert_eq!(body["payload"]["member"]["email"], "buyer@example.com");
    assert_eq!(body["event"], "purchase.created");
    assert_eq!(body["payload"]["offer"]["id"], "your-product-reference");
    let (_, f) = load(FORM);
    assert_eq!(f.body, Some(BodyFormat::Form));
    let form = mapped::sample_body(&f);
    assert!(
        form.starts_with("type=paid&customer%5Bemail%5D=buyer%40example.com"),
        "{form}"
    );
}

#[test]
fn an_unconfigured_mapped_platform_accepts_nothing() {
    let p = Platform::Mapped(PlatformName::parse("teachable").unwrap());
    let body = kajabi_body("purchase.created", "a@b.co".into());
    refused(
        signed(&body).send(p, &cfg(&[SECRET]), now()),
        401,
        "not usable",
    );
    refused(
        signed(&body).send(p, &PlatformConfig::default(), now()),
        401,
        "no secret",
    );
}
