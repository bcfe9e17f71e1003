//! Mapped platforms end to end through the `enroll dev` runtime: the configuration loaded from
//! TOML as `enroll dev` loads it, webhooks posted over HTTP to its webhook listener, the
//! embedded queues, provision, and the Notion simulator's Groups.
//!
//! - A JSON platform signed with HMAC-SHA256, hex, `sha256=` prefix, in a header. Its requests
//!   are signed by Python's `hmac` module, not by enroll, so a mistake in enroll's signing
//!   cannot hide one in its verification.
//! - A form platform with the secret in the query, posted the way `enroll send` posts
//!   (`send::request`), keyed by its order number and kind since it sends no event id.
//!
//! Each: a purchase (the buyer ends in the product's Group), the same delivery again (nothing
//! changes), a forged request (401, nothing enqueued), a missing email field (400 naming the
//! field) and a refund (the Group is taken away).

use enroll_core::config::Config;
use enroll_core::event::EventKind;
use enroll_embedded::config_file;
use enroll_embedded::runtime::{Options, Runtime};
use enroll_lab::send;
use enroll_platforms::Sample;
use enroll_simulator::SimHandle;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

const NM: &str = "Notion Mastery";
const KAJABI_SECRET: &str = "kajabi-e2e-secret";
const FORM_SECRET: &str = "form-e2e-secret";

/// The example configuration with two mapped platforms, and their product references in the
/// catalog's `platform_ids`.
fn config_text() -> String {
    let products = config_file::EXAMPLE.replacen(
        "thrivecart = [\"7\"]\n",
        "thrivecart = [\"7\"]\nkajabi = [\"2150\"]\n\"home-made\" = [\"nm-course\"]\n",
        1,
    );
    assert_ne!(
        products,
        config_file::EXAMPLE,
        "the example's first product moved"
    );
    format!(
        r#"{products}
[platforms.kajabi]
kind = "mapped"
body = "json"
secrets = ["{KAJABI_SECRET}"]
auth = {{ hmac_sha256 = "X-Signature", encoding = "hex", prefix = "sha256=" }}
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

[platforms.home-made]
kind = "mapped"
body = "form"
secrets = ["{FORM_SECRET}"]
auth = {{ query = "token" }}
[platforms.home-made.fields]
kind = "type"
email = "customer[email]"
product = "item"
order = "order_no"
key = ["order_no"]
[platforms.home-made.kinds]
paid = "purchase"
refunded = "refund"
"#
    )
}

fn config() -> Config {
    let mut c = Config::from_toml(&config_text(), |_| None).expect("the configuration loads");
    c.rate.requests_per_second = 200.0;
    c.rate.burst = 50;
    c
}

struct Dev {
    rt: Arc<Runtime>,
    base: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Dev {
    async fn start() -> Self {
        let rt = Runtime::start(Options {
            config: config(),
            data_dir: None,
            timings: Default::default(),
            simulate: true,
        })
        .await
        .expect("runtime starts");
        let (addr, server) =
            enroll_embedded::server::serve(rt.clone(), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        Self {
            rt,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            server,
        }
    }

    fn sim(&self) -> &SimHandle {
        self.rt.simulator.as_ref().expect("simulated workspace")
    }

    async fn drain(&self) {
        self.rt.run_until_idle().await.expect("the queues drain");
    }

    fn enqueued(&self) -> usize {
        self.rt.provision_queue.len()
    }

    fn groups_of(&self, email: &str) -> Vec<String> {
        let state = self.sim().state();
        let Some(user) = state
            .users
            .iter()
            .find(|u| u.user_name == email && !u.deleted)
        else {
            return Vec::new();
        };
        let mut g: Vec<String> = state
            .groups
            .iter()
            .filter(|g| g.members.contains(&user.id))
            .map(|g| g.display_name.clone())
            .collect();
        g.sort();
        g
    }

    /// Every SCIM request that changes something, so far.
    fn scim_writes(&self) -> u64 {
        self.sim()
            .counters()
            .iter()
            .filter(|(k, _)| !k.starts_with("GET") && k.contains("/scim/"))
            .map(|(_, v)| *v)
            .sum()
    }

    async fn post_json(&self, body: &str, signature: &str) -> (u16, String) {
        let resp = self
            .http
            .post(format!("{}/webhooks/kajabi", self.base))
            .header("content-type", "application/json")
            .header("X-Signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `sha256=<hex>` computed by Python's `hmac` module over the exact body bytes.
fn python_signature(secret: &str, body: &str) -> String {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import hashlib, hmac, sys; \
             print(hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())",
            secret,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed");
    let hex = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(hex.len(), 64, "{hex}");
    format!("sha256={hex}")
}

/// A Kajabi-shaped body, with `email` left out when `None`.
fn kajabi_body(id: &str, event: &str, email: Option<&str>) -> String {
    let mut member = serde_json::json!({ "name": "Ada Lovelace" });
    if let Some(e) = email {
        member["email"] = e.into();
    }
    serde_json::json!({
        "id": id,
        "event": event,
        "payload": {
            "member": member,
            "offer": { "id": 2150, "title": "Notion Mastery" },
            "purchase": { "id": "kj-purchase-1", "amount_in_cents": 4900 }
        }
    })
    .to_string()
}

#[tokio::test]
async fn a_json_platform_signed_with_hmac_hex_in_a_header() {
    let dev = Dev::start().await;
    let email = "ada.kajabi@example.com";

    // The purchase: accepted, enqueued, and the buyer ends in the product's Group.
    let body = kajabi_body(
        "evt_kj_1",
        "purchase.created",
        Some("Ada.Kajabi@Example.com"),
    );
    let sig = python_signature(KAJABI_SECRET, &body);
    let (status, answer) = dev.post_json(&body, &sig).await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("kajabi:evt_kj_1"), "{answer}");
    assert_eq!(dev.enqueued(), 1, "accepted means enqueued");
    dev.drain().await;
    assert_eq!(dev.groups_of(email), vec![NM.to_owned()]);

    // The same delivery again changes nothing.
    let writes = dev.scim_writes();
    let (status, answer) = dev.post_json(&body, &sig).await;
    assert!((200..300).contains(&status), "{status} {answer}");
    dev.drain().await;
    assert_eq!(
        dev.scim_writes(),
        writes,
        "the duplicate wrote nothing to SCIM"
    );
    assert_eq!(dev.groups_of(email), vec![NM.to_owned()]);

    // A forged request: 401, nothing enqueued.
    let forged = kajabi_body("evt_kj_2", "purchase.created", Some("mallory@example.com"));
    let (status, answer) = dev.post_json(&forged, &sig).await;
    assert_eq!(status, 401, "{answer}");
    let wrong_key = python_signature("not-the-secret", &forged);
    let (status, _) = dev.post_json(&forged, &wrong_key).await;
    assert_eq!(status, 401);
    assert_eq!(dev.enqueued(), 0, "nothing enqueued");

    // The email field missing: 400 naming the field by its configuration key and pointer.
    let no_email = kajabi_body("evt_kj_3", "purchase.created", None);
    let (status, answer) = dev
        .post_json(&no_email, &python_signature(KAJABI_SECRET, &no_email))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("fields.email (/payload/member/email)"),
        "{answer}"
    );
    assert_eq!(dev.enqueued(), 0);

    // The refund takes the Group away.
    let refund = kajabi_body("evt_kj_4", "purchase.refunded", Some(email));
    let (status, answer) = dev
        .post_json(&refund, &python_signature(KAJABI_SECRET, &refund))
        .await;
    assert_eq!(status, 202, "{answer}");
    dev.drain().await;
    assert!(
        dev.groups_of(email).is_empty(),
        "{:?}",
        dev.groups_of(email)
    );
    assert!(dev.groups_of("mallory@example.com").is_empty());

    // Only configured names are routed.
    let resp = dev
        .http
        .post(format!("{}/webhooks/teachable", dev.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn a_form_platform_with_the_secret_in_the_query() {
    let dev = Dev::start().await;
    let email = "bo.form@example.com";
    let url = send::webhook_url(
        &dev.base,
        dev.rt.config.platform_named("home-made").unwrap(),
    );
    assert!(url.ends_with("/webhooks/home-made"), "{url}");
    let platform = dev.rt.config.platform_named("home-made").unwrap();
    let sample = |kind| Sample {
        kind,
        product: "nm-course".into(),
        email: email.into(),
        name: None,
        order_id: Some("1001".into()),
        event_id: None,
    };

    // The purchase, built and signed as `enroll send home-made` does.
    let purchase = send::request(&dev.rt.config, platform, &sample(EventKind::Purchase)).unwrap();
    assert!(String::from_utf8_lossy(&purchase.body).contains("customer%5Bemail%5D="));
    let (status, answer) = send::post_signed(&dev.http, &url, &purchase).await.unwrap();
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("home-made:1001:purchase"), "{answer}");
    dev.drain().await;
    assert_eq!(dev.groups_of(email), vec![NM.to_owned()]);

    // The same delivery again changes nothing.
    let writes = dev.scim_writes();
    let (status, _) = send::post_signed(&dev.http, &url, &purchase).await.unwrap();
    assert!((200..300).contains(&status));
    dev.drain().await;
    assert_eq!(dev.scim_writes(), writes);

    // A forged request (the wrong secret, or none): 401, nothing enqueued.
    let mut forged = purchase.clone();
    forged.query = Some("token=guess".into());
    let (status, answer) = send::post_signed(&dev.http, &url, &forged).await.unwrap();
    assert_eq!(status, 401, "{answer}");
    forged.query = None;
    let (status, _) = send::post_signed(&dev.http, &url, &forged).await.unwrap();
    assert_eq!(status, 401);
    assert_eq!(dev.enqueued(), 0);

    // The email field missing: 400 naming it.
    let mut no_email = purchase.clone();
    no_email.body = b"type=paid&item=nm-course&order_no=1002".to_vec();
    let (status, answer) = send::post_signed(&dev.http, &url, &no_email).await.unwrap();
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("fields.email (customer[email])"),
        "{answer}"
    );
    assert_eq!(dev.enqueued(), 0);

    // The refund of order 1001 takes the Group away.
    let refund = send::request(&dev.rt.config, platform, &sample(EventKind::Refund)).unwrap();
    let (status, answer) = send::post_signed(&dev.http, &url, &refund).await.unwrap();
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("home-made:1001:refund"), "{answer}");
    dev.drain().await;
    assert!(dev.groups_of(email).is_empty());
}
