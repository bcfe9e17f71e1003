//! Properties of mapped platforms over random configurations (pointer paths with escapes,
//! bodies, auth schemes), random bodies and random signatures: `receive` never panics, every
//! invalid request gets a 400 or 401 whose reason names what is wrong without echoing a value,
//! and a signed sample comes back as the event it describes.

use crate::common::*;
use enroll_core::config::{
    BodyFormat, MappedAuth, MappedFields, PlatformConfig, PlatformKind, Secret, SignatureEncoding,
};
use enroll_core::event::EventKind;
use enroll_core::ids::{Platform, PlatformName};
use enroll_platforms::{sample_configured, Accepted, Sample};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;

const SECRET: &str = "mapped-property-secret";
const KINDS: [EventKind; 4] = [
    EventKind::Purchase,
    EventKind::Refund,
    EventKind::Chargeback,
    EventKind::Cancel,
];
/// Field roles in the order `pointers` gives them.
const ROLES: [&str; 6] = ["event_id", "kind", "email", "product", "order", "name"];

fn platform() -> Platform {
    Platform::Mapped(PlatformName::parse("prop-shop").unwrap())
}

fn escape(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

/// Six pointers (or form keys), one per role; no two share a first segment, so none holds
/// another. Segments draw on `~` and `/` so escaping is exercised.
fn locations(form: bool) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::collection::vec("[a-z0-9~/ é_.-]{1,5}", 1..4),
        ROLES.len(),
    )
    .prop_map(move |paths| {
        paths
            .into_iter()
            .enumerate()
            .map(|(i, segs)| {
                if form {
                    format!("{i}{}", segs.join("["))
                } else {
                    let rest: String = segs[1..]
                        .iter()
                        .map(|s| format!("/{}", escape(s)))
                        .collect();
                    format!("/{}{}{rest}", i, escape(&segs[0]))
                }
            })
            .collect()
    })
}

fn auth() -> impl Strategy<Value = MappedAuth> {
    prop_oneof![
        (
            any::<bool>(),
            prop::sample::select(vec!["", "sha256=", "v1,"])
        )
            .prop_map(|(b64, prefix)| MappedAuth {
                hmac_sha256: Some("X-Sig".into()),
                encoding: Some(if b64 {
                    SignatureEncoding::Base64
                } else {
                    SignatureEncoding::Hex
                }),
                prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
                ..MappedAuth::default()
            }),
        Just(MappedAuth {
            header: Some("X-Token".into()),
            ..MappedAuth::default()
        }),
        Just(MappedAuth {
            query: Some("secret".into()),
            ..MappedAuth::default()
        }),
    ]
}

/// A random, valid mapped configuration.
fn config() -> impl Strategy<Value = PlatformConfig> {
    (any::<bool>(), any::<bool>(), auth(), "[a-z._]{1,12}")
        .prop_flat_map(|(form, with_event_id, auth, names)| {
            (Just((form, with_event_id, auth, names)), locations(form))
        })
        .prop_map(|((form, with_event_id, auth, names), at)| {
            let kinds: BTreeMap<String, EventKind> = KINDS
                .iter()
                .enumerate()
                .map(|(i, k)| (format!("{names}{i}"), *k))
                .collect();
            PlatformConfig {
                secrets: vec![Secret::new("other-secret"), Secret::new(SECRET)],
                kind: Some(PlatformKind::Mapped),
                body: Some(if form {
                    BodyFormat::Form
                } else {
                    BodyFormat::Json
                }),
                auth: Some(auth),
                fields: Some(MappedFields {
                    event_id: with_event_id.then(|| at[0].clone()),
                    kind: Some(at[1].clone()),
                    email: Some(at[2].clone()),
                    product: Some(at[3].clone()),
                    order: Some(at[4].clone()),
                    name: Some(at[5].clone()),
                    key: if with_event_id {
                        Vec::new()
                    } else {
                        vec![at[0].clone()]
                    },
                }),
                kinds,
                ..PlatformConfig::default()
            }
        })
}

fn sample_for(kind: EventKind, n: u32) -> Sample {
    Sample {
        kind,
        product: format!("Vq-prod-{n}"),
        email: format!("Vq.buyer{n}@example.com"),
        name: Some(format!("Vq Name {n}")),
        order_id: Some(format!("Vq-ord-{n}")),
        event_id: Some(format!("Vq-evt-{n}")),
    }
}

fn to_req(out: enroll_platforms::Outgoing) -> Req {
    Req {
        query: out.query,
        headers: out.headers,
        body: out.body,
    }
}

/// Re-signs `req` after its body changed, as the platform would.
fn resign(cfg: &PlatformConfig, req: &mut Req) {
    let scheme = cfg.auth.as_ref().unwrap().scheme().unwrap();
    if let enroll_core::config::AuthScheme::Hmac {
        encoding, prefix, ..
    } = scheme
    {
        let sig = match encoding {
            SignatureEncoding::Hex => hmac_hex(SECRET.as_bytes(), &req.body),
            SignatureEncoding::Base64 => hmac_b64(SECRET.as_bytes(), &req.body),
        };
        req.headers.retain(|(k, _)| k != "x-sig");
        req.headers.push(("x-sig".into(), format!("{prefix}{sig}")));
    }
}

fn no_value_echoed(reason: &str) {
    assert!(
        !reason.contains("Vq"),
        "the reason echoes a value: {reason}"
    );
}

/// How a field's value is broken.
#[derive(Debug, Clone, Copy)]
enum Breakage {
    Remove,
    Null,
    Object,
    Bool,
    Empty,
    ListOfObjects,
}

fn replacement(b: Breakage) -> Option<Value> {
    match b {
        Breakage::Remove => None,
        Breakage::Null => Some(Value::Null),
        Breakage::Object => Some(serde_json::json!({"Vq": "hidden"})),
        Breakage::Bool => Some(Value::Bool(true)),
        Breakage::Empty => Some(Value::String("  ".into())),
        Breakage::ListOfObjects => Some(serde_json::json!([{"Vq": 1}])),
    }
}

fn cases() -> u32 {
    std::env::var("ENROLL_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn a_signed_sample_round_trips(cfg in config(), kind in prop::sample::select(KINDS.to_vec()), n in any::<u32>()) {
        let s = sample_for(kind, n);
        let out = sample_configured(platform(), &cfg, &s, SECRET, now());
        let e = event(to_req(out).send(platform(), &cfg, now()));
        prop_assert_eq!(e.kind, kind);
        prop_assert_eq!(e.order.order_id.as_str(), s.order_id.as_deref().unwrap());
        prop_assert_eq!(e.items[0].as_str(), s.product.as_str());
        let buyer = e.buyer.unwrap();
        prop_assert_eq!(buyer.email.as_str(), s.email.to_lowercase());
        prop_assert_eq!(buyer.name, s.name);
        let fields = cfg.fields.as_ref().unwrap();
        let id = if fields.event_id.is_some() {
            format!("prop-shop:Vq-evt-{n}")
        } else {
            format!("prop-shop:Vq-evt-{n}:{}", kind.as_str())
        };
        prop_assert_eq!(e.key.as_string(), id);
    }

    #[test]
    fn a_broken_field_is_a_400_naming_it_unless_it_is_optional(
        cfg in config(),
        kind in prop::sample::select(KINDS.to_vec()),
        role in 0..ROLES.len(),
        breakage in prop::sample::select(vec![
            Breakage::Remove, Breakage::Null, Breakage::Object, Breakage::Bool,
            Breakage::Empty, Breakage::ListOfObjects,
        ]),
    ) {
        let s = sample_for(kind, 7);
        let mut req = to_req(sample_configured(platform(), &cfg, &s, SECRET, now()));
        let fields = cfg.fields.as_ref().unwrap();
        let at = fields.all().into_iter().find_map(|(k, v)| {
            let key = k.trim_start_matches("fields.");
            (key == ROLES[role] || (ROLES[role] == "event_id" && key == "key[0]"))
                .then(|| (k.clone(), v.to_owned()))
        }).unwrap();
        let form = cfg.body == Some(BodyFormat::Form);
        if form {
            // A form value can only be absent or empty.
            let pairs: Vec<(String, String)> = form_urlencoded::parse(&req.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .filter(|(k, _)| *k != at.1)
                .collect();
            let mut ser = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                ser.append_pair(k, v);
            }
            if matches!(breakage, Breakage::Empty) {
                ser.append_pair(&at.1, "");
            }
            req.body = ser.finish().into_bytes();
        } else {
            let mut v: Value = serde_json::from_slice(&req.body).unwrap();
            let (parent, last) = at.1.rsplit_once('/').unwrap();
            let last = last.replace("~1", "/").replace("~0", "~");
            let obj = v.pointer_mut(parent).unwrap().as_object_mut().unwrap();
            match replacement(breakage) {
                None => { obj.remove(&last); }
                Some(r) => { obj.insert(last, r); }
            }
            req.body = serde_json::to_vec(&v).unwrap();
        }
        resign(&cfg, &mut req);
        let optional = ROLES[role] == "name"
            || (kind != EventKind::Purchase && matches!(ROLES[role], "email" | "product"));
        match req.send(platform(), &cfg, now()) {
            Ok(Accepted::Event(_)) => prop_assert!(optional, "{} broken ({breakage:?}) was accepted", at.0),
            Ok(other) => prop_assert!(false, "unexpected {other:?}"),
            Err(e) => {
                prop_assert!(!optional, "{} is optional: {e}", at.0);
                prop_assert_eq!(e.status, 400, "{}", e);
                prop_assert!(e.reason.contains(&format!("{} ({})", at.0, at.1)), "{e}");
                no_value_echoed(&e.reason);
            }
        }
    }

    #[test]
    fn random_requests_never_panic_and_are_refused_with_a_reason(
        cfg in config(),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            any::<String>().prop_map(String::into_bytes),
            "\\{\"[a-z0-9/~]{0,6}\": (\"[^\"]{0,10}\"|[0-9]{1,4}|null|\\{\\}|\\[\\])\\}".prop_map(String::into_bytes),
        ],
        sig_value in ".{0,80}",
        genuine in any::<bool>(),
        query in prop::option::of(".{0,40}"),
    ) {
        let mut req = Req::new(body);
        req.query = query;
        if genuine {
            match cfg.auth.as_ref().unwrap().scheme().unwrap() {
                enroll_core::config::AuthScheme::Hmac { .. } => resign(&cfg, &mut req),
                enroll_core::config::AuthScheme::Header(_) => req = req.header("X-Token", SECRET),
                enroll_core::config::AuthScheme::Query(_) => req = req.query(format!("secret={SECRET}")),
            }
        } else {
            req = req.header("X-Sig", sig_value.clone()).header("X-Token", sig_value);
        }
        match req.send(platform(), &cfg, now()) {
            Ok(Accepted::Event(e)) => prop_assert!(genuine, "forged request accepted: {e:?}"),
            Ok(Accepted::Ignored { event_type, .. }) => {
                prop_assert!(genuine);
                prop_assert!(event_type.chars().count() <= 100);
            }
            Err(e) => {
                prop_assert!(!e.reason.is_empty());
                if genuine {
                    prop_assert_eq!(e.status, 400, "{}", e);
                } else {
                    prop_assert_eq!(e.status, 401, "{}", e);
                }
            }
        }
    }
}
