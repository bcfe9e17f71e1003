//! Outbound events (#18) against a receiver that verifies every signature with the Standard
//! Webhooks reference library (tests/outbound_receiver.py, PyPI `standardwebhooks`): the
//! done-when through a real `enroll dev`, a 400 parked without retry, a 410 that disables the
//! endpoint, a buyer's events in order, and delivery surviving a kill -9 of `enroll dev`.
//! No timing assertions: each test waits for outcomes with generous deadlines.

use anyhow::{Context, Result};
use enroll_core::config::Config;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use enroll_core::timings::Timings;
use enroll_embedded::runtime::{Options, Runtime};
use enroll_platforms::Sample;
use enroll_tests::enroll_bin::{scratch_dir, Dev};
use enroll_tests::outbound_receiver::Receiver;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRODUCT: &str = "price_1FormulaFundamentals";
const GROUP: &str = "Formula Fundamentals 2.0";

fn of_type<'a>(attempts: &'a [Value], t: &str) -> Vec<&'a Value> {
    attempts.iter().filter(|a| a["body"]["type"] == t).collect()
}

fn delivered(attempts: &[Value], t: &str) -> usize {
    of_type(attempts, t)
        .iter()
        .filter(|a| a["status"] == 200)
        .count()
}

fn sample(kind: EventKind, email: &str, order: &str) -> Sample {
    Sample {
        kind,
        product: PRODUCT.into(),
        email: email.into(),
        name: None,
        order_id: Some(order.into()),
        event_id: Some(format!(
            "evt_{}_{}",
            kind.as_str(),
            uuid::Uuid::new_v4().simple()
        )),
    }
}

async fn post(config: &Config, base: &str, s: &Sample) -> Result<()> {
    let out = enroll_lab::send::request(config, Platform::Stripe, s)?;
    let url = enroll_lab::send::webhook_url(base, Platform::Stripe);
    let (status, body) = enroll_lab::send::post_signed(&reqwest::Client::new(), &url, &out).await?;
    anyhow::ensure!((200..300).contains(&status), "{status} {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_and_its_refund_reach_a_reference_receiver_signed_and_the_retry_keeps_its_id(
) -> Result<()> {
    let dir = scratch_dir("outbound-done");
    let receiver = Receiver::start(&dir, "500")?;
    let config_path = dir.join("enroll.toml");
    std::fs::write(&config_path, receiver.config_text())?;
    let config = Config::from_toml(&receiver.config_text(), |_| None)?;
    let (d, c) = (dir.join("data"), config_path.clone());
    let dev = tokio::task::spawn_blocking(move || {
        Dev::start(
            &d,
            &[
                "--config",
                c.to_str().unwrap(),
                "--expire-every-secs",
                "3600",
            ],
        )
    })
    .await??;
    let buyer = "ada.outbound@example.com";
    post(
        &config,
        &dev.record.webhook_url,
        &sample(EventKind::Purchase, buyer, "ord_outbound_1"),
    )
    .await?;
    let got = receiver
        .wait_for("delivered access.granted", |a| {
            delivered(a, "access.granted") >= 1
        })
        .await?;
    let granted = of_type(&got, "access.granted");
    assert!(
        granted.iter().all(|a| a["verified"] == true),
        "{granted:#?}"
    );
    assert_eq!(granted[0]["status"], 500, "the receiver failed the first");
    assert_eq!(granted.last().unwrap()["status"], 200);
    let ids: std::collections::BTreeSet<_> = granted
        .iter()
        .map(|a| a["webhook_id"].to_string())
        .collect();
    assert_eq!(ids.len(), 1, "the retry keeps its webhook-id: {granted:#?}");
    assert_eq!(delivered(&got, "access.granted"), 1);
    let body = &granted[0]["body"];
    assert_eq!(body["data"]["email"], buyer);
    assert_eq!(body["data"]["groups"], serde_json::json!([GROUP]));
    assert_eq!(body["data"]["added"], serde_json::json!([GROUP]));
    assert_eq!(body["data"]["order"], "ord_outbound_1");
    assert_eq!(body["data"]["platform"], "stripe");
    assert!(body["data"]["notion_user_id"].is_string(), "{body}");

    post(
        &config,
        &dev.record.webhook_url,
        &sample(EventKind::Refund, buyer, "ord_outbound_1"),
    )
    .await?;
    let got = receiver
        .wait_for("delivered access.revoked", |a| {
            delivered(a, "access.revoked") >= 1
        })
        .await?;
    let revoked = of_type(&got, "access.revoked");
    assert!(revoked.iter().all(|a| a["verified"] == true));
    assert_eq!(delivered(&got, "access.revoked"), 1);
    assert_eq!(
        revoked[0]["body"]["data"]["removed"],
        serde_json::json!([GROUP])
    );
    assert_eq!(revoked[0]["body"]["data"]["groups"], serde_json::json!([]));
    assert_eq!(delivered(&got, "access.granted"), 1, "nothing sent twice");

    // The history shows each delivery and its outcome; no address in it.
    let d = dir.join("data");
    let status = tokio::task::spawn_blocking(move || -> Result<String> {
        let out = enroll_tests::enroll_bin::simulated(&[
            "status",
            buyer,
            "--data-dir",
            d.to_str().unwrap(),
        ])?
        .output()?;
        Ok(String::from_utf8(out.stdout)?)
    })
    .await??;
    assert!(
        status.contains("failed access.granted to 127.0.0.1"),
        "{status}"
    );
    assert!(
        status.contains("delivered access.granted to 127.0.0.1"),
        "{status}"
    );
    assert!(status.contains("delivered access.revoked"), "{status}");
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The pipeline in this process against the simulator, with the receiver as its one endpoint.
async fn runtime(receiver: &Receiver) -> Result<Arc<Runtime>> {
    let config = Config::from_toml(&receiver.config_text(), |_| None)?;
    Runtime::start(Options {
        config,
        data_dir: None,
        timings: Timings::default(),
        simulate: true,
    })
    .await
}

/// Hands a signed sample to the runtime's ingest, as its webhook listener would.
async fn ingest(rt: &Runtime, config: &Config, s: &Sample) -> Result<()> {
    let out = enroll_lab::send::request(config, Platform::Stripe, s)?;
    let req = ingest::WebhookRequest {
        method: "POST".into(),
        path: "/webhooks/stripe".into(),
        query: out.query,
        headers: out.headers,
        body: out.body,
    };
    let resp = rt.ingest.handle(&req, chrono::Utc::now()).await;
    anyhow::ensure!((200..300).contains(&resp.status), "{}", resp.body);
    Ok(())
}

/// Runs provision and align to the end, then notify until `done` holds.
async fn deliver_until(
    rt: &Runtime,
    receiver: &Receiver,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Result<Vec<Value>> {
    rt.run_until_idle().await?;
    let until = Instant::now() + Duration::from_secs(240);
    loop {
        rt.notify_once(Duration::from_millis(200)).await?;
        let got = receiver.attempts();
        if done(&got) {
            return Ok(got);
        }
        anyhow::ensure!(Instant::now() < until, "never {what}: {got:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_parked_with_its_reason_and_never_retried() -> Result<()> {
    let dir = scratch_dir("outbound-400");
    let receiver = Receiver::start(&dir, "400")?;
    let rt = runtime(&receiver).await?;
    let config = rt.config.clone();
    let buyer = "bo.refused@example.com";
    let s = sample(EventKind::Purchase, buyer, "ord_400");
    ingest(&rt, &config, &s).await?;
    deliver_until(&rt, &receiver, "parked", |_| !rt.notify_dlq().is_empty()).await?;
    // Nothing comes back: the queue is empty and the one attempt stays the only one.
    for _ in 0..10 {
        rt.notify_once(Duration::from_millis(100)).await?;
    }
    assert!(rt.notify_queue.is_empty());
    assert_eq!(receiver.attempts().len(), 1);
    let parked = rt.notify_dlq().peek();
    assert_eq!(parked.len(), 1);
    let reason = &parked[0].attributes["enroll.reason"];
    assert!(reason.contains("HTTP 400"), "{reason}");
    assert!(!reason.contains('@'), "{reason}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_disables_the_endpoint_and_later_events_are_not_sent() -> Result<()> {
    let dir = scratch_dir("outbound-410");
    let receiver = Receiver::start(&dir, "410")?;
    let rt = runtime(&receiver).await?;
    let config = rt.config.clone();
    let buyer = "cy.gone@example.com";
    ingest(&rt, &config, &sample(EventKind::Purchase, buyer, "ord_410")).await?;
    deliver_until(&rt, &receiver, "answered 410", |a| !a.is_empty()).await?;
    for _ in 0..5 {
        rt.notify_once(Duration::from_millis(100)).await?;
    }
    let off = rt.outbound_endpoints.all();
    assert_eq!(off.len(), 1, "{off:?}");
    assert!(off[0].reason.contains("410"), "{off:?}");
    assert!(rt.notify_queue.is_empty() && rt.notify_dlq().is_empty());

    // The refund's event is dropped for the disabled endpoint, and its history says so.
    ingest(&rt, &config, &sample(EventKind::Refund, buyer, "ord_410")).await?;
    rt.run_until_idle().await?;
    for _ in 0..10 {
        rt.notify_once(Duration::from_millis(100)).await?;
        if rt.notify_queue.is_empty() {
            break;
        }
    }
    assert!(rt.notify_queue.is_empty());
    assert_eq!(receiver.attempts().len(), 1, "nothing more was sent");
    let history = enroll_core::ports::HistoryLog::history(
        &rt.store,
        &enroll_core::ids::BuyerEmail::parse(buyer)?,
    )
    .await?;
    let lines: Vec<&str> = history.iter().map(|h| h.what.as_str()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("endpoint disabled: access.granted")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("access.revoked not sent") && l.contains("is disabled since")),
        "{lines:#?}"
    );
    let totals = enroll_core::metrics::global().snapshot().summary("test");
    assert!(totals.total(enroll_core::metrics::Metric::OutboundFailed) >= 1);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyers_events_arrive_in_order_even_when_the_first_is_retried() -> Result<()> {
    let dir = scratch_dir("outbound-order");
    let receiver = Receiver::start(&dir, "500")?;
    let rt = runtime(&receiver).await?;
    let config = rt.config.clone();
    let buyer = "di.order@example.com";
    ingest(
        &rt,
        &config,
        &sample(EventKind::Purchase, buyer, "ord_order"),
    )
    .await?;
    rt.run_until_idle().await?;
    ingest(&rt, &config, &sample(EventKind::Refund, buyer, "ord_order")).await?;
    rt.run_until_idle().await?;
    assert_eq!(
        rt.notify_queue.len(),
        2,
        "both events wait in the outbox queue"
    );
    let got = deliver_until(&rt, &receiver, "delivered access.revoked", |a| {
        delivered(a, "access.revoked") == 1
    })
    .await?;
    let types: Vec<(&str, u64)> = got
        .iter()
        .map(|a| {
            (
                a["body"]["type"].as_str().unwrap_or("?"),
                a["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    // The revocation is not even tried before the grant is delivered.
    assert_eq!(
        types,
        [
            ("access.granted", 500),
            ("access.granted", 200),
            ("access.revoked", 200)
        ],
        "{got:#?}"
    );
    assert!(got.iter().all(|a| a["verified"] == true));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_survives_a_kill_9_of_enroll_dev_and_keeps_its_id() -> Result<()> {
    let dir = scratch_dir("outbound-kill");
    // Two failures: the delivery is waiting for its retry when the process dies.
    let receiver = Receiver::start(&dir, "500,500")?;
    let config_path = dir.join("enroll.toml");
    std::fs::write(&config_path, receiver.config_text())?;
    let config = Config::from_toml(&receiver.config_text(), |_| None)?;
    let start = |dir: PathBuf, c: PathBuf| {
        tokio::task::spawn_blocking(move || {
            Dev::start(
                &dir,
                &[
                    "--config",
                    c.to_str().unwrap(),
                    "--expire-every-secs",
                    "3600",
                ],
            )
        })
    };
    let mut dev = start(dir.join("data"), config_path.clone()).await??;
    let buyer = "ed.killed@example.com";
    post(
        &config,
        &dev.record.webhook_url,
        &sample(EventKind::Purchase, buyer, "ord_kill"),
    )
    .await?;
    receiver
        .wait_for("a first attempt", |a| !a.is_empty())
        .await?;
    dev.child.kill()?; // SIGKILL: nothing saved on the way out.
    dev.child.wait()?;
    drop(dev);

    let dev = start(dir.join("data"), config_path).await??;
    let got = receiver
        .wait_for("delivered after the restart", |a| {
            delivered(a, "access.granted") == 1
        })
        .await?;
    let ids: std::collections::BTreeSet<String> =
        got.iter().map(|a| a["webhook_id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "every attempt is the same event: {got:#?}");
    assert!(got.iter().all(|a| a["verified"] == true));
    assert!(got.len() >= 2, "{got:#?}");
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A notify queue that is down for its first `fail` sends.
struct FlakyQueue {
    fail: std::sync::atomic::AtomicUsize,
    sent: std::sync::Mutex<Vec<enroll_core::outbound::Delivery>>,
}

#[async_trait::async_trait]
impl enroll_core::outbound::DeliveryQueue for FlakyQueue {
    async fn send_delivery(
        &self,
        d: &enroll_core::outbound::Delivery,
    ) -> Result<(), enroll_core::Failure> {
        use std::sync::atomic::Ordering::SeqCst;
        if self
            .fail
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(enroll_core::Failure::transient("notify queue down"));
        }
        self.sent.lock().unwrap().push(d.clone());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_enqueue_failed_after_scim_is_sent_on_the_retry_once() -> Result<()> {
    let dir = scratch_dir("outbound-outbox");
    let receiver = Receiver::start(&dir, "")?;
    let rt = runtime(&receiver).await?;
    let config = rt.config.clone();
    let buyer = "fay.outbox@example.com";
    ingest(
        &rt,
        &config,
        &sample(EventKind::Purchase, buyer, "ord_outbox"),
    )
    .await?;
    let body = rt.provision_queue.peek()[0].body.clone();
    let event: enroll_core::event::OrderEvent = serde_json::from_str(&body)?;
    let store = Arc::new(rt.store.clone());
    let scim = enroll_notion::scim::ScimClient::new(
        &config.scim,
        enroll_notion::rate::from_config(config.rate.scim()),
    )?;
    let queue = Arc::new(FlakyQueue {
        fail: 1.into(),
        sent: Default::default(),
    });
    let p = provision::Provisioner::new(
        config.clone(),
        store.clone(),
        store.clone(),
        Arc::new(scim),
        rt.align_queue.clone(),
    )
    .with_outbound(queue.clone());
    let now = chrono::Utc::now();
    let deadline = now + chrono::TimeDelta::seconds(60);
    // SCIM made the change; the queue was down: the event fails and its retry comes.
    let first = p.process(&event, now, deadline).await;
    assert!(first.is_err(), "{first:?}");
    let email = enroll_core::ids::BuyerEmail::parse(buyer)?;
    let record = enroll_core::ports::LedgerStore::buyer(store.as_ref(), &email)
        .await?
        .context("the buyer is recorded")?;
    assert_eq!(record.outbox.len(), 1, "the change waits in the outbox");
    assert!(queue.sent.lock().unwrap().is_empty());
    // The retry sends it, once; a duplicate delivery of the event sends nothing more.
    p.process(&event, now, deadline).await?;
    p.process(&event, now, deadline).await?;
    let sent = queue.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(
        sent[0].webhook_id,
        enroll_core::outbound::webhook_id(&email, 1)
    );
    assert_eq!(
        sent[0].event_type,
        enroll_core::outbound::EventType::Granted
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_dev_outbound_echo_verifies_and_prints_each_event() -> Result<()> {
    let dir = scratch_dir("outbound-echo");
    let out_path = dir.join("stdout.txt");
    let data = dir.join("data");
    let mut child = enroll_tests::enroll_bin::simulated(&[
        "dev",
        "--port",
        "0",
        "--data-dir",
        data.to_str().unwrap(),
        "--expire-every-secs",
        "3600",
        "--outbound-echo",
    ])?
    .stdout(std::fs::File::create(&out_path)?)
    .stderr(std::process::Stdio::null())
    .spawn()?;
    let until = Instant::now() + Duration::from_secs(120);
    let record = loop {
        if let Some(r) = enroll_embedded::admin::read_dev_record(&data) {
            break r;
        }
        anyhow::ensure!(Instant::now() < until, "enroll dev did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let config = enroll_embedded::config_file::load(None)?;
    let buyer = "gil.echo@example.com";
    let result = async {
        post(
            &config,
            &record.webhook_url,
            &sample(EventKind::Purchase, buyer, "ord_echo"),
        )
        .await?;
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let text = std::fs::read_to_string(&out_path).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("access.granted")) {
                return Ok::<_, anyhow::Error>((text.clone(), line.to_owned()));
            }
            anyhow::ensure!(Instant::now() < until, "no event printed: {text}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let (text, line) = result?;
    assert!(line.contains("verified"), "{line}");
    assert!(line.contains(GROUP), "{line}");
    assert!(!text.contains(buyer), "the address is masked: {text}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
