//! `sample` builds what `enroll send` posts: every platform and kind must come back through
//! `receive` as the event it describes.

use crate::common::*;
use base64::Engine as _;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use enroll_platforms::{sample, sample_kinds, Sample};

fn secret_for(p: Platform) -> String {
    match p {
        Platform::Standard => format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(b"sample-round-trip-key")
        ),
        _ => format!("{}-sample-secret", p.as_str()),
    }
}

fn round_trip(p: Platform, s: &Sample, secret: &str) -> enroll_core::event::OrderEvent {
    let out = sample(p, s, secret, now());
    assert!(
        out.headers.iter().any(|(k, _)| k == "content-type"),
        "{p}: content-type"
    );
    let req = Req {
        query: out.query.clone(),
        headers: out.headers.clone(),
        body: out.body.clone(),
    };
    event(req.send(p, &cfg(&[secret]), now()))
}

#[test]
fn every_platform_and_kind_round_trips() {
    for p in Platform::ALL {
        let secret = secret_for(p);
        for kind in [
            EventKind::Purchase,
            EventKind::Refund,
            EventKind::Chargeback,
            EventKind::Cancel,
        ] {
            let s = Sample {
                kind,
                product: "notion-mastery".into(),
                email: "Student@Example.com".into(),
                name: Some("Ada Lovelace".into()),
                order_id: Some("4471209".into()),
                event_id: Some("evt_sample_1".into()),
            };
            let e = round_trip(p, &s, &secret);
            let expected = if sample_kinds(p).contains(&kind) {
                kind
            } else {
                EventKind::Refund
            };
            assert_eq!(e.kind, expected, "{p} {kind:?}");
            assert_eq!(e.order.order_id.as_str(), "4471209", "{p} {kind:?}");
            assert_eq!(e.occurred_at, now(), "{p} {kind:?}");
            if kind == EventKind::Purchase {
                let b = e.buyer.as_ref().expect("purchase has a buyer");
                assert_eq!(b.email.as_str(), "student@example.com", "{p}");
                assert_eq!(b.name.as_deref(), Some("Ada Lovelace"), "{p}");
            }
            if kind == EventKind::Purchase {
                assert!(
                    e.items.iter().any(|i| i.as_str() == "notion-mastery"),
                    "{p} {kind:?}: {:?}",
                    e.items
                );
            }
        }
    }
}

#[test]
fn defaults_give_distinct_keys_per_kind_and_subscription_orders_work() {
    for p in Platform::ALL {
        let secret = secret_for(p);
        let mut keys = Vec::new();
        for &kind in sample_kinds(p) {
            let s = Sample {
                kind,
                product: "12345".into(),
                email: "buyer@example.com".into(),
                name: None,
                order_id: None,
                event_id: None,
            };
            let e = round_trip(p, &s, &secret);
            assert_eq!(e.kind, kind, "{p}");
            keys.push(e.key.as_string());
        }
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), sample_kinds(p).len(), "{p}: {keys:?}");
    }
    for p in [Platform::Stripe, Platform::Paddle] {
        let secret = secret_for(p);
        for kind in [EventKind::Purchase, EventKind::Cancel] {
            let s = Sample {
                kind,
                product: "price_1Abc".into(),
                email: "buyer@example.com".into(),
                name: None,
                order_id: Some("sub_1PqSuTLkdIwHu7ix".into()),
                event_id: None,
            };
            assert_eq!(
                round_trip(p, &s, &secret).order.order_id.as_str(),
                "sub_1PqSuTLkdIwHu7ix"
            );
        }
    }
}

#[test]
fn samples_are_refused_under_another_secret() {
    for p in Platform::ALL {
        let s = Sample {
            kind: EventKind::Purchase,
            product: "p".into(),
            email: "buyer@example.com".into(),
            name: None,
            order_id: None,
            event_id: None,
        };
        let out = sample(p, &s, &secret_for(p), now());
        let req = Req {
            query: out.query,
            headers: out.headers,
            body: out.body,
        };
        let other = secret_for(Platform::Standard).replace("whsec_", "whsec_AAAA");
        let r = req.send(p, &cfg(&[&other]), now());
        assert_eq!(r.unwrap_err().status, 401, "{p}");
    }
}
