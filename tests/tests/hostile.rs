//! Hostile input at the public webhook endpoint, over real HTTP.
//!
//! A property test throws random methods, paths, headers (forged `Stripe-Signature` and
//! `webhook-*` values among them), content types, encodings, bodies (bytes, JSON, forms,
//! invalid UTF-8, UTF-16) and sizes around and past `ingest.max_body_bytes` at the local server,
//! mixed with genuinely signed requests and mutations of them. Whatever arrives: no 5xx, no
//! dropped connection below the framework's hard limit, nothing enqueued unless the answer is
//! 202, and 2xx only for genuine requests (and the `GET`/`HEAD` registration probe, which
//! enqueues nothing). A queue that fails turns a genuine event into 503 and nothing else.
//!
//! Cases: `ENROLL_HOSTILE_CASES` (default 1,500 per property, a few seconds; the full run uses
//! 100,000).
//!
//! The SCIM half: addresses with quotes, backslashes, non-ASCII letters or filter syntax go
//! through the real `ScimClient` to the simulator, and the exact query it receives is compared
//! with an encoding written independently here; the filter must find exactly the one member
//! with that address. Addresses with CR/LF, control characters or over 254 characters are
//! refused at ingest with 400, before any queue or SCIM request.

use async_trait::async_trait;
use enroll_core::config::{Config, RateLimit, Secret};
use enroll_core::event::EventKind;
use enroll_core::ids::{BuyerEmail, Platform};
use enroll_core::ports::{Directory, Queue};
use enroll_core::Failure;
use enroll_embedded::runtime::{Options, Runtime};
use enroll_notion::scim::ScimClient;
use enroll_platforms::Sample;
use enroll_simulator::{SimConfig, SimState, User};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cases(default: u32) -> u32 {
    std::env::var("ENROLL_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        // Failures are reported with their shrunk input; no regression file in the tree.
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

fn config() -> Config {
    enroll_embedded::config_file::load(None).expect("the example configuration loads")
}

/// One request as sent. `genuine` marks an unmodified platform sample signed with the
/// configured secret.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    kind: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Built from nothing: it cannot carry a valid signature.
    Random,
    /// A platform sample signed with the configured secret.
    Genuine(Platform),
    /// A genuine request with its body or credentials changed.
    Mutated(Platform),
}

const PLATFORM_NAMES: [&str; 7] = [
    "stripe",
    "lemonsqueezy",
    "paddle",
    "shopify",
    "gumroad",
    "thrivecart",
    "standard",
];

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("POST".to_owned()),
        1 => prop::sample::select(vec!["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"])
            .prop_map(str::to_owned),
        1 => "[A-Z]{1,12}",
    ]
}

/// Paths under `/webhooks/`, elsewhere, with odd segments and percent-encoded bytes; never the
/// loopback-only `/admin/` routes of `enroll dev`, which are not the public endpoint.
fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        prop::sample::select(PLATFORM_NAMES.to_vec()).prop_map(str::to_owned),
        "[a-zA-Z0-9._~-]{0,16}",
        prop::collection::vec(any::<u8>(), 0..12)
            .prop_map(|b| { b.iter().map(|x| format!("%{x:02X}")).collect::<String>() }),
    ];
    let seg2 = segment.clone();
    prop_oneof![
        4 => prop::sample::select(PLATFORM_NAMES.to_vec()).prop_map(|p| format!("/webhooks/{p}")),
        2 => segment.prop_map(|s| format!("/webhooks/{s}")),
        1 => (seg2.clone(), seg2.clone()).prop_map(|(a, b)| format!("/{a}/webhooks/{b}/")),
        1 => prop::collection::vec(seg2, 0..5).prop_map(|s| format!("/{}", s.join("/"))),
    ]
    .prop_filter("the admin routes are not public", |p| {
        !p.trim_start_matches('/').starts_with("admin")
    })
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => "[a-z]{1,8}=[a-zA-Z0-9%+]{0,40}(&[a-z]{1,8}=[a-zA-Z0-9%]{0,20}){0,3}".prop_map(Some),
        1 => "secret=[a-zA-Z0-9-]{0,40}".prop_map(Some),
    ]
}

/// Header values that HTTP allows (visible ASCII, space, tab, obs-text), forged signatures in
/// each platform's shape among them.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "t=[0-9]{1,12},v1=[0-9a-f]{0,64}(,v0=[0-9a-f]{0,64})?".prop_map(String::into_bytes),
        "v1,[A-Za-z0-9+/=]{0,60}( v1,[A-Za-z0-9+/=]{0,44})?".prop_map(String::into_bytes),
        "ts=[0-9]{1,12};h1=[0-9a-f]{0,64}".prop_map(String::into_bytes),
        "[0-9a-f]{0,64}".prop_map(String::into_bytes),
        "[A-Za-z0-9+/=]{0,60}".prop_map(String::into_bytes),
        "[0-9]{0,12}".prop_map(String::into_bytes),
        "msg_[A-Za-z0-9]{0,30}".prop_map(String::into_bytes),
        prop::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..80),
    ]
}

fn content_type() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"application/json".to_vec()),
        Just(b"application/json; charset=utf-16".to_vec()),
        Just(b"application/x-www-form-urlencoded".to_vec()),
        Just(b"multipart/form-data; boundary=xyz".to_vec()),
        Just(b"text/plain; charset=latin1".to_vec()),
        Just(b"application/octet-stream".to_vec()),
        "[a-z]{1,10}/[a-z+.-]{1,16}(; ?[a-z]{1,8}=[a-z0-9-]{1,10})?".prop_map(String::into_bytes),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "stripe-signature",
            "Stripe-Signature",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "x-signature",
            "x-event-name",
            "paddle-signature",
            "x-shopify-hmac-sha256",
            "x-shopify-topic",
            "x-shopify-webhook-id",
            "x-shopify-event-id",
            "content-encoding",
            "transfer-encoding-x",
            "x-forwarded-for",
        ])
        .prop_map(str::to_owned),
        "x-[a-z0-9-]{1,20}",
    ];
    let content_encoding = prop::sample::select(vec![
        "gzip",
        "br",
        "deflate",
        "identity",
        "zstd",
        "gzip, br",
        "x-garbage",
    ]);
    (
        prop::collection::vec((name, header_value()), 0..6),
        prop::option::of(content_type()),
        prop::option::of(content_encoding),
    )
        .prop_map(|(mut hs, ct, ce)| {
            if let Some(ct) = ct {
                hs.push(("content-type".into(), ct));
            }
            if let Some(ce) = ce {
                hs.push(("content-encoding".into(), ce.as_bytes().to_vec()));
            }
            hs
        })
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "checkout.session.completed",
            "charge.refunded",
            "order_created",
            "transaction.completed",
            "order.paid",
            "ada@example.com",
            "x\" or userName pr \"",
        ])
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "type",
                    "id",
                    "data",
                    "object",
                    "email",
                    "meta",
                    "event_name",
                    "order_id",
                    "customer_email",
                    "attributes",
                    "items",
                    "status",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies of every shape, and sizes just under, at and over the limit and the framework's
/// hard limit (four times it).
fn body(limit: usize) -> impl Strategy<Value = Vec<u8>> {
    let sizes = prop::sample::select(vec![
        limit - 1,
        limit,
        limit + 1,
        4 * limit,
        4 * limit + 1,
        5 * limit,
    ]);
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..2048),
        6 => json_value().prop_map(|v| v.to_string().into_bytes()),
        3 => prop::collection::vec(("[a-z_\\[\\]]{1,16}", ".{0,30}"), 0..8).prop_map(|kv| {
            let mut f = form_urlencoded_pairs(&kv);
            f.truncate(4096);
            f
        }),
        // Invalid UTF-8 inside otherwise plausible JSON.
        2 => (json_value(), prop::collection::vec(0x80u8..=0xff, 1..8)).prop_map(|(v, bad)| {
            let mut b = v.to_string().into_bytes();
            let at = b.len() / 2;
            b.splice(at..at, bad);
            b
        }),
        // The same JSON in UTF-16 with a byte order mark.
        1 => json_value().prop_map(|v| {
            let mut b = vec![0xff, 0xfe];
            for u in v.to_string().encode_utf16() {
                b.extend_from_slice(&u.to_le_bytes());
            }
            b
        }),
        1 => (sizes, any::<u8>()).prop_map(|(n, fill)| vec![fill; n]),
    ]
}

/// `a=b&c=d`, percent-encoding written out here rather than borrowed.
fn form_urlencoded_pairs(kv: &[(String, String)]) -> Vec<u8> {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    kv.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

fn random_request(limit: usize) -> impl Strategy<Value = Req> {
    (method(), path(), query(), headers(), body(limit)).prop_map(
        |(method, path, query, headers, body)| Req {
            method,
            path,
            query,
            headers,
            body,
            kind: Origin::Random,
        },
    )
}

/// Addresses a checkout may send: ordinary ones, and ones that try to break out of a filter.
fn email() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{1,10}(\\.[a-z]{1,8})?@example\\.com",
        1 => "[A-Z][a-z]{1,8}@Example\\.COM",
        1 => Just("x\" or userName pr \"@example.com".to_owned()),
        1 => Just("a\\\\b@example.com".to_owned()),
        1 => Just("\"quoted\"@example.com".to_owned()),
        1 => Just("zoë@exämple.org".to_owned()),
        1 => Just("line\r\nbreak@example.com".to_owned()),
        1 => Just(format!("{}@example.com", "a".repeat(250))),
        1 => ".{0,30}",
    ]
}

fn genuine(cfg: &Config) -> impl Strategy<Value = Req> {
    let secrets: Vec<(Platform, String)> = Platform::ALL
        .iter()
        .filter_map(|p| {
            let s = cfg.platform(*p)?.secrets.first()?.expose().to_owned();
            Some((*p, s))
        })
        .collect();
    let products = vec![
        "price_1NotionMasteryYear",
        "price_1FormulaFundamentals",
        "notion-mastery",
        "184467",
        "pri_01hnotionmastery",
        "NM-2026",
        "formulas",
        "7",
        "unknown-product",
    ];
    (
        prop::sample::select(secrets),
        0usize..4,
        prop::sample::select(products),
        email(),
        prop::option::of("[A-Za-z ]{1,30}"),
        "[A-Za-z0-9_]{1,24}",
        "[A-Za-z0-9_]{1,24}",
    )
        .prop_map(
            |((platform, secret), k, product, email, name, order, event)| {
                let kinds = enroll_platforms::sample_kinds(platform);
                let sample = Sample {
                    kind: kinds[k % kinds.len()],
                    product: product.to_owned(),
                    email,
                    name,
                    order_id: Some(order),
                    event_id: Some(format!("evt_{event}")),
                };
                let out = enroll_platforms::sample(platform, &sample, &secret, chrono::Utc::now());
                Req {
                    method: "POST".into(),
                    path: format!("/webhooks/{}", platform.as_str()),
                    query: out.query,
                    headers: out
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect(),
                    body: out.body,
                    kind: Origin::Genuine(platform),
                }
            },
        )
}

/// A genuine request with one thing changed: a body byte, the credentials, or the platform.
fn mutated(cfg: &Config) -> impl Strategy<Value = Req> {
    (
        genuine(cfg),
        0usize..5,
        any::<prop::sample::Index>(),
        1u8..=255,
    )
        .prop_map(|(mut r, how, at, xor)| {
            let Origin::Genuine(platform) = r.kind else {
                unreachable!()
            };
            match how {
                0 if !r.body.is_empty() => {
                    let i = at.index(r.body.len());
                    r.body[i] ^= xor;
                }
                1 => r.body.push(b' '),
                2 => {
                    // Every credential-bearing header goes; Gumroad's query secret too.
                    r.headers.retain(|(k, _)| {
                        k == "content-type" || k == "x-shopify-topic" || k == "x-event-name"
                    });
                    r.query = None;
                }
                3 => {
                    for (k, v) in r.headers.iter_mut() {
                        if k.contains("signature") || k.contains("hmac") {
                            *v = b"v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_vec();
                        }
                    }
                    r.query = r.query.map(|_| "secret=not-the-secret".to_owned());
                }
                _ => {
                    let other = PLATFORM_NAMES[at.index(PLATFORM_NAMES.len())];
                    r.path = format!("/webhooks/{other}");
                    if other == platform.as_str() {
                        r.body.push(b'\n');
                    }
                }
            }
            r.kind = Origin::Mutated(platform);
            r
        })
}

fn any_request(cfg: &Config) -> impl Strategy<Value = Req> {
    let limit = cfg.ingest.max_body_bytes;
    prop_oneof![
        6 => random_request(limit),
        2 => genuine(cfg),
        2 => mutated(cfg),
    ]
}

/// What came back: a status, or the connection failing.
type Answer = Result<u16, String>;

async fn send(http: &reqwest::Client, base: &str, r: &Req) -> Answer {
    let url = match &r.query {
        Some(q) => format!("{base}{}?{q}", r.path),
        None => format!("{base}{}", r.path),
    };
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut req = http.request(method, &url).body(r.body.clone());
    for (k, v) in &r.headers {
        // Values HTTP cannot carry never leave a real client either.
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(k.as_bytes()),
            reqwest::header::HeaderValue::from_bytes(v),
        ) {
            req = req.header(name, value);
        }
    }
    req.send()
        .await
        .map(|resp| resp.status().as_u16())
        .map_err(|e| e.without_url().to_string())
}

/// Whether `r` may be answered 2xx.
fn may_succeed(r: &Req) -> bool {
    let probe = matches!(r.method.as_str(), "GET" | "HEAD")
        && ingest::route(&r.path).is_some_and(|p| Platform::parse(p).is_some());
    // Gumroad and ThriveCart prove themselves with a shared secret, not a signature over the
    // body: an edited body that still carries the secret is as genuine as the platform's own.
    let shared_secret = matches!(
        r.kind,
        Origin::Mutated(Platform::Gumroad | Platform::ThriveCart)
    );
    probe || shared_secret || matches!(r.kind, Origin::Genuine(_))
}

struct Local {
    rt: tokio::runtime::Runtime,
    base: String,
    http: reqwest::Client,
    runtime: Arc<Runtime>,
}

fn local() -> Local {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (runtime, base) = rt.block_on(async {
        let runtime = Runtime::start(Options {
            config: config(),
            data_dir: None,
            timings: Default::default(),
            simulate: true,
        })
        .await
        .unwrap();
        let (addr, _server) =
            enroll_embedded::server::serve(runtime.clone(), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        (runtime, format!("http://{addr}"))
    });
    Local {
        rt,
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        runtime,
    }
}

#[test]
fn the_endpoint_survives_anything_and_queues_only_genuine_events() {
    let l = local();
    let cfg = config();
    let hard_limit = 4 * cfg.ingest.max_body_bytes;
    let started = Instant::now();
    let n = cases(1500);
    let accepted = AtomicUsize::new(0);
    runner(n)
        .run(&any_request(&cfg), |r| {
            let before = l.runtime.provision_queue.len();
            let answer = l.rt.block_on(send(&l.http, &l.base, &r));
            let after = l.runtime.provision_queue.len();
            let status = match answer {
                Ok(s) => s,
                // Past the framework's limit the server may answer and close while the client
                // is still writing; below it, a failed connection means the server broke.
                Err(_) if r.body.len() > hard_limit => {
                    prop_assert_eq!(after, before);
                    return Ok(());
                }
                Err(e) => return Err(TestCaseError::fail(format!("no answer: {e}"))),
            };
            prop_assert!(status < 500, "{} answered {}", r.path, status);
            if status == 202 {
                accepted.fetch_add(1, Ordering::Relaxed);
                prop_assert_eq!(after, before + 1, "202 must enqueue exactly one event");
                // Consumed at once, so counting the queue stays cheap over 100,000 cases.
                let queue = &l.runtime.provision_queue;
                for m in l.rt.block_on(queue.receive(10, Duration::ZERO)).unwrap() {
                    queue.delete(&m.id).unwrap();
                }
            } else {
                prop_assert_eq!(after, before, "{} enqueued something", status);
            }
            if (200..300).contains(&status) {
                prop_assert!(may_succeed(&r), "{:?} answered {}", r.kind, status);
            }
            if matches!(r.kind, Origin::Genuine(_)) && r.body.len() <= cfg.ingest.max_body_bytes {
                // Genuine: never refused as forged.
                prop_assert!(status != 401, "a genuine request was refused as forged");
            }
            Ok(())
        })
        .unwrap();
    // The server is still up and still takes a genuine event.
    let ok = l.rt.block_on(async {
        let sample = Sample {
            kind: EventKind::Purchase,
            product: "notion-mastery".into(),
            email: "after@example.com".into(),
            name: None,
            order_id: Some("ord_after".into()),
            event_id: Some("msg_after".into()),
        };
        let secret = enroll_lab::send::signing_secret(&cfg, Platform::Standard).unwrap();
        let url = enroll_lab::send::webhook_url(&l.base, Platform::Standard);
        enroll_lab::send::post(&l.http, &url, Platform::Standard, &sample, &secret)
            .await
            .unwrap()
            .0
    });
    assert_eq!(ok, 202);
    assert!(
        accepted.load(Ordering::Relaxed) > 0,
        "no genuine event was accepted: the generator is broken"
    );
    eprintln!(
        "hostile input: {n} cases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A queue that is down.
struct Unavailable;

#[async_trait]
impl Queue for Unavailable {
    async fn send(&self, _body: &str) -> Result<(), Failure> {
        Err(Failure::transient("queue unavailable"))
    }
}

#[test]
fn with_the_queue_down_only_genuine_events_get_503() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = config();
    let base = rt.block_on(async {
        let ingest = Arc::new(ingest::Ingest::new(
            Arc::new(cfg.clone()),
            Arc::new(Unavailable),
        ));
        let (addr, _server) =
            enroll_embedded::server::serve_ingest(ingest, "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        format!("http://{addr}")
    });
    let http = reqwest::Client::new();
    let hard_limit = 4 * cfg.ingest.max_body_bytes;
    let saw_503 = AtomicUsize::new(0);
    runner(cases(1500) / 4 + 50)
        .run(&any_request(&cfg), |r| {
            let status = match rt.block_on(send(&http, &base, &r)) {
                Ok(s) => s,
                Err(_) if r.body.len() > hard_limit => return Ok(()),
                Err(e) => return Err(TestCaseError::fail(format!("no answer: {e}"))),
            };
            if status == 503 {
                saw_503.fetch_add(1, Ordering::Relaxed);
                prop_assert!(
                    !matches!(r.kind, Origin::Random),
                    "a forged request reached the queue"
                );
            } else {
                prop_assert!(status < 500, "answered {}", status);
                prop_assert!(status != 202, "202 without a queue");
            }
            Ok(())
        })
        .unwrap();
    assert!(saw_503.load(Ordering::Relaxed) > 0);
}

// ------------------------------------------------------------------------------------------
// SCIM filters
// ------------------------------------------------------------------------------------------

/// RFC 3986: everything but unreserved characters percent-encoded, as UTF-8, upper-case hex.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// RFC 7644 §3.4.2.2: a filter value is a JSON string, so `\` and `"` are escaped.
fn expected_query(email: &str) -> String {
    let literal = email
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        "filter={}&startIndex=1&count=2",
        percent_encode(&format!("userName eq \"{literal}\""))
    )
}

struct Scim {
    rt: tokio::runtime::Runtime,
    sim: enroll_simulator::SimHandle,
    client: ScimClient,
}

fn scim() -> Scim {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(async {
        enroll_simulator::start(
            SimConfig {
                scim_token: "hostile-scim-token".into(),
                notion_token: "hostile-notion-token".into(),
                scim_rate_limit: None,
                notion_rate_limit: None,
                admin_token: None,
                max_members_per_patch: None,
                state: SimState::default(),
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap()
    });
    let mut cfg = config().scim;
    cfg.base_url = sim.scim_base_url();
    cfg.token = Secret::new("hostile-scim-token");
    let budget = enroll_notion::rate::from_config(RateLimit {
        requests_per_second: 10_000.0,
        burst: 10_000,
    });
    let client = ScimClient::new(&cfg, budget).unwrap();
    Scim { rt, sim, client }
}

fn member(user_name: &str) -> User {
    serde_json::from_value(serde_json::json!({ "user_name": user_name })).unwrap()
}

/// Finds `email` with decoys around it; returns the raw query sent and the id found.
fn find(s: &Scim, email: &BuyerEmail) -> (Option<String>, Option<String>) {
    let target = member(email.as_str());
    let target_id = target.id.clone();
    s.sim.set_state(SimState {
        users: vec![
            member("x@example.com"),
            target,
            member("other@example.com"),
            member("x\" or username pr \"@example.com.evil"),
        ],
        ..SimState::default()
    });
    s.sim.reset_counters();
    let found = s.rt.block_on(s.client.find_user(email)).unwrap();
    let requests = s.sim.requests();
    assert_eq!(requests.len(), 1, "one lookup, one request: {requests:?}");
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/scim/v2/Users");
    let id = found.map(|u| u.id.as_str().to_owned());
    assert_eq!(
        id.as_deref(),
        Some(target_id.as_str()),
        "found someone else"
    );
    (requests[0].query.clone(), id)
}

#[test]
fn filter_syntax_in_an_address_stays_inside_the_string() {
    let s = scim();
    // A breakout needs spaces around its operator, and no address holds whitespace: refused
    // before any request (the ingest test below shows the 400).
    assert!(BuyerEmail::parse("x\" or userName pr \"@example.com").is_err());
    // Written out by hand: quotes end up escaped inside the one quoted value.
    let email = BuyerEmail::parse("X\"or\"y@example.com").unwrap();
    let (query, _) = find(&s, &email);
    assert_eq!(
        query.as_deref(),
        Some("filter=userName%20eq%20%22x%5C%22or%5C%22y%40example.com%22&startIndex=1&count=2")
    );
    let email = BuyerEmail::parse("A\\B@Example.com").unwrap();
    let (query, _) = find(&s, &email);
    assert_eq!(
        query.as_deref(),
        Some("filter=userName%20eq%20%22a%5C%5Cb%40example.com%22&startIndex=1&count=2")
    );
    let email = BuyerEmail::parse("Zoë@Exämple.org").unwrap();
    let (query, _) = find(&s, &email);
    assert_eq!(
        query.as_deref(),
        Some("filter=userName%20eq%20%22zo%C3%AB%40ex%C3%A4mple.org%22&startIndex=1&count=2")
    );
}

#[test]
fn any_address_enroll_accepts_is_sent_as_exactly_one_escaped_value() {
    let s = scim();
    let address = prop_oneof![
        "[a-zA-Z0-9\"\\\\!#$%&'*+/=?^_`{|}~()<>,;:\\[\\].-]{1,30}@[a-z]{1,10}\\.[a-z]{2,4}",
        "\\PC{1,20}@\\PC{1,10}\\.[a-z]{2,3}",
        "[a-z]{1,5}\" (or|and) (userName|emails|id) (pr|eq \"[a-z]*) \"?[a-z]{0,5}@example\\.com",
    ];
    runner(cases(1500) / 10 + 20)
        .run(&address, |raw| {
            let Ok(email) = BuyerEmail::parse(&raw) else {
                // Refused before anything is sent: only for what no address may hold.
                prop_assert!(
                    raw.chars().any(|c| c.is_whitespace() || c.is_control())
                        || raw.chars().count() > 254
                        || !raw.contains('@'),
                    "{:?} refused",
                    raw
                );
                return Ok(());
            };
            let (query, _) = find(&s, &email);
            prop_assert_eq!(query, Some(expected_query(email.as_str())));
            Ok(())
        })
        .unwrap();
}

#[test]
fn invalid_addresses_are_refused_at_ingest_before_any_request() {
    let l = local();
    let cfg = config();
    let too_long = format!("{}@example.com", "a".repeat(250));
    let bad = [
        "cr\rlf@example.com",
        "line\nbreak@example.com",
        "nul\u{0}@example.com",
        "bell\u{7}@example.com",
        "tab\there@example.com",
        "del\u{7f}@example.com",
        too_long.as_str(),
        "no-at-sign.example.com",
        "x\" or userName pr \"@example.com",
        "",
    ];
    for (i, email) in bad.iter().enumerate() {
        for platform in Platform::ALL {
            let sample = Sample {
                kind: EventKind::Purchase,
                product: "notion-mastery".into(),
                email: (*email).to_owned(),
                name: None,
                order_id: Some(format!("ord_bad_{i}")),
                event_id: Some(format!("evt_bad_{i}")),
            };
            let Ok(secret) = enroll_lab::send::signing_secret(&cfg, platform) else {
                continue;
            };
            let before = l.runtime.provision_queue.len();
            let status = l.rt.block_on(async {
                let url = enroll_lab::send::webhook_url(&l.base, platform);
                enroll_lab::send::post(&l.http, &url, platform, &sample, &secret)
                    .await
                    .unwrap()
                    .0
            });
            assert_eq!(status, 400, "{platform} with address #{i}");
            assert_eq!(l.runtime.provision_queue.len(), before);
        }
    }
    let sim = l.runtime.simulator.as_ref().unwrap();
    assert!(
        sim.requests().is_empty(),
        "no SCIM or Notion request may follow an invalid address"
    );
}
