//! The metrics: what a purchase flow records is valid Embedded Metric Format with no personal
//! data in it, and `enroll status --summary` shows a running `enroll dev`'s counters.
//!
//! The real Lambda binaries' EMF output is checked in `lambda_e2e.rs`, under `cargo lambda
//! watch`.

use anyhow::{Context, Result};
use chrono::Utc;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use enroll_core::metrics::{self, Aggregate, Function, Metric, NAMESPACE};
use enroll_core::timings::Timings;
use enroll_embedded::config_file;
use enroll_embedded::runtime::{Options, Runtime};
use enroll_lab::send;
use enroll_ops::summary::SummaryReport;
use enroll_platforms::Sample;
use enroll_tests::emf;
use enroll_tests::enroll_bin::{self, Dev};
use ingest::WebhookRequest;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const EMAIL: &str = "ada.lovelace@example.com";
const NAME: &str = "Ada Lovelace";

fn purchase(order: &str) -> Sample {
    Sample {
        kind: EventKind::Purchase,
        product: "notion-mastery".into(),
        email: EMAIL.into(),
        name: Some(NAME.into()),
        order_id: Some(order.into()),
        event_id: Some(format!("msg_{order}")),
    }
}

fn request(out: enroll_platforms::Outgoing) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: "/webhooks/standard".into(),
        query: out.query,
        headers: out.headers,
        body: out.body,
    }
}

/// What one function's process would print: its own series only.
fn of(all: &Aggregate, f: Function) -> Aggregate {
    Aggregate {
        counts: all
            .counts
            .iter()
            .filter(|(s, _)| s.function == f)
            .map(|(s, n)| (*s, *n))
            .collect(),
        values: all
            .values
            .iter()
            .filter(|((g, _), _)| *g == f)
            .map(|(k, v)| (*k, v.clone()))
            .collect(),
    }
}

/// No string anywhere in `value` may be, or hold, the buyer's address or name.
fn assert_no_personal_data(value: &serde_json::Value, what: &str) {
    for s in emf::strings(value) {
        let lower = s.to_lowercase();
        assert!(
            !s.contains('@') && !emf::looks_like_email(&s),
            "{what}: an address-like value {s:?}"
        );
        for part in ["ada", "lovelace"] {
            assert!(!lower.contains(part), "{what}: the buyer's name in {s:?}");
        }
    }
}

#[tokio::test]
async fn a_purchase_flow_prints_valid_emf_without_personal_data() {
    let mut config = config_file::load(None).expect("the example configuration");
    config.rate.requests_per_second = 200.0;
    config.rate.burst = 50;
    let rt = Runtime::start(Options {
        config,
        data_dir: None,
        timings: Timings::default(),
        simulate: true,
    })
    .await
    .expect("runtime starts");
    let secret = send::signing_secret(&rt.config, Platform::Standard).unwrap();
    let now = Utc::now();

    // One accepted purchase, and one refusal of each kind a platform can cause.
    let genuine = enroll_platforms::sample(Platform::Standard, &purchase("ord_m1"), &secret, now);
    let mut tampered = genuine.clone();
    tampered.body.push(b' ');
    let stale = enroll_platforms::sample(
        Platform::Standard,
        &purchase("ord_m2"),
        &secret,
        now - chrono::TimeDelta::hours(1),
    );
    let mut garbled = purchase("ord_m3");
    garbled.email = "not an address".into();
    let malformed = enroll_platforms::sample(Platform::Standard, &garbled, &secret, now);
    let mut huge = genuine.clone();
    huge.body = vec![b' '; rt.config.ingest.max_body_bytes + 1];
    let expected = [
        (genuine, 202),
        (tampered, 401),
        (stale, 401),
        (malformed, 400),
        (huge, 413),
    ];
    for (out, status) in expected {
        let resp = rt.ingest.handle(&request(out), now).await;
        assert_eq!(resp.status, status, "{}", resp.body);
    }
    for _ in 0..400 {
        let p = rt.provision_once(Duration::from_millis(20)).await.unwrap();
        let a = rt.align_once(Duration::from_millis(20)).await.unwrap();
        if !p && !a && rt.provision_queue.is_empty() && rt.align_queue.is_empty() {
            break;
        }
    }
    let user = rt
        .simulator
        .as_ref()
        .and_then(|s| s.user_by_email(EMAIL))
        .expect("the purchase made the buyer a member");
    assert!(user.is_member());

    let all = metrics::global().snapshot();
    let ts = Utc::now().timestamp_millis();
    let mut data = Vec::new();
    for f in Function::ALL {
        for line in of(&all, f).emf_lines(f, ts) {
            assert!(!line.contains('\n'));
            let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_no_personal_data(&parsed, &line);
            let found = emf::validate(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            data.extend(found);
        }
    }
    let value = |name: &str, function: &str| -> f64 {
        data.iter()
            .filter(|d| d.name == name && d.dimensions[0] == ("Function".into(), function.into()))
            .flat_map(|d| d.values.iter())
            .sum()
    };
    assert!(data.iter().all(|d| d.namespace == NAMESPACE));
    assert!(value("WebhooksAccepted", "ingest") >= 1.0);
    assert!(value("EventsApplied", "provision") >= 1.0);
    assert!(value("ScimRequests", "provision") >= 1.0);
    assert!(value("NotionApiRequests", "align") >= 1.0);
    assert!(value("RecordsAligned", "align") >= 1.0);
    assert!(value("TimeToAccessMs", "provision") >= 0.0);
    assert!(
        data.iter()
            .any(|d| d.name == "TimeToAccessMs" && d.unit.as_deref() == Some("Milliseconds")),
        "time to access from provision: {data:?}"
    );
    let mut reasons: Vec<&str> = data
        .iter()
        .filter(|d| d.name == "WebhooksRejected")
        .map(|d| {
            assert_eq!(d.dimensions.len(), 2, "{d:?}");
            d.dimensions[1].1.as_str()
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["malformed", "signature", "stale", "too_large"]);

    // The summary the admin listener serves is free of personal data too.
    let summary = serde_json::to_value(enroll_core::metrics::this_process()).unwrap();
    assert_no_personal_data(&summary, "summary");
    assert!(all
        .counts
        .keys()
        .all(|s| s.reason.is_none() || s.metric == Metric::WebhooksRejected));
}

// ---- `enroll status --summary` against the real `enroll dev` ----

/// `enroll` with no tokens, so the simulator stands in for Notion.
fn enroll(args: &[&str]) -> Result<Command> {
    enroll_bin::simulated(args)
}

fn run(args: &[&str]) -> Result<Output> {
    enroll(args)?.output().context("running enroll")
}

fn summary(dir: &Path) -> Result<SummaryReport> {
    let out = run(&[
        "status",
        "--summary",
        "--json",
        "--data-dir",
        dir.to_str().unwrap(),
    ])?;
    anyhow::ensure!(
        out.status.success(),
        "enroll status --summary failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_summary_shows_the_counters_of_the_running_dev() -> Result<()> {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("enroll-metrics-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let start_dir = dir.clone();
    let dev = tokio::task::spawn_blocking(move || Dev::start(&start_dir, &[])).await??;

    let before = summary(&dir)?;
    assert_eq!(before.summary.total(Metric::WebhooksAccepted), 0);
    assert!(before.summary.time_to_access_ms.is_none());

    let url = format!("{}/webhooks/stripe", dev.record.webhook_url);
    let out = run(&[
        "send",
        "stripe",
        "--product",
        "price_1FormulaFundamentals",
        "--email",
        EMAIL,
        "--url",
        &url,
    ])?;
    anyhow::ensure!(out.status.success(), "enroll send failed: {out:?}");
    let forged = reqwest::Client::new()
        .post(&url)
        .header("stripe-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await?;
    assert_eq!(forged.status(), reqwest::StatusCode::UNAUTHORIZED);

    // The workers run on their own: ask until the purchase reached the sales record.
    let until = Instant::now() + Duration::from_secs(120);
    let report = loop {
        let r = summary(&dir)?;
        if r.summary.total(Metric::RecordsAligned) >= 1 && r.summary.time_to_access_ms.is_some() {
            break r;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "the counters never showed the purchase: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let s = &report.summary;
    assert_eq!(s.total(Metric::WebhooksAccepted), 1);
    assert_eq!(s.rejected_by_reason["signature"], 1);
    assert_eq!(s.total(Metric::EventsApplied), 1);
    assert!(
        s.total(Metric::ScimRequests) >= 2,
        "a find or create and a Group PATCH"
    );
    assert!(s.total(Metric::NotionApiRequests) >= 1);
    assert_eq!(s.total(Metric::ScimAuthFailures), 0);
    assert_eq!(s.time_to_access_ms.as_ref().map(|l| l.count), Some(1));
    assert_eq!(s.by_function["ingest"]["WebhooksAccepted"], 1);
    assert_no_personal_data(&serde_json::to_value(&report)?, "summary");

    let text = run(&["status", "--summary", "--data-dir", dir.to_str().unwrap()])?;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("1 accepted, 1 rejected"), "{text}");
    assert!(text.contains("over 1 purchases"), "{text}");

    // The counters are the admin listener's: no token, no answer.
    let anonymous = reqwest::Client::new()
        .get(format!("{}/admin/metrics", dev.record.admin_url))
        .send()
        .await?;
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);

    drop(dev);
    let out = run(&["status", "--summary", "--data-dir", dir.to_str().unwrap()])?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no `enroll dev` is running"),
        "{out:?}"
    );
    Ok(())
}
