//! Nothing personal or secret reaches a log line.
//!
//! Two sources, both at `RUST_LOG=debug`: the `enroll` binary running `demo` and a small
//! `chaos` run (its worker children included), with stderr (the log) kept apart from stdout
//! (the demo's table legitimately shows addresses); and the pipeline in this process, through
//! the HTTP endpoint, fed webhooks whose bodies carry a unique marker, some genuine and some
//! refused, with a capturing subscriber. No line may hold a full email address (also
//! percent-decoded), a SCIM or Notion token, a webhook secret, or the marker.

use enroll_core::config::Config;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use enroll_core::timings::Timings;
use enroll_embedded::runtime::{Options, Runtime};
use enroll_platforms::Sample;
use enroll_tests::enroll_bin;
use enroll_tests::log_capture::Capture;
use std::process::{Command, Stdio};
use std::time::Duration;

const MARKER: &str = "ZqxMarker7731";

fn config() -> Config {
    enroll_embedded::config_file::load(None).expect("the example configuration")
}

/// Every secret the example configuration holds, plus the simulator's and chaos's tokens.
fn secrets(cfg: &Config) -> Vec<String> {
    let mut out: Vec<String> = cfg
        .platforms
        .values()
        .flat_map(|p| p.secrets.iter().map(|s| s.expose().to_owned()))
        .collect();
    out.extend([
        "simulated-scim-token".into(),
        "simulated-notion-token".into(),
    ]);
    out
}

/// `%40` and friends decoded, so an encoded address counts too.
fn percent_decoded(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&line[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A full address: `local@domain.tld` with a real local part (masked ones end in `*`).
fn full_email(line: &str) -> Option<String> {
    let local_char = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let label_char = |c: char| c.is_ascii_alphanumeric() || c == '-';
    for (at, _) in line.match_indices('@') {
        let local: String = line[..at]
            .chars()
            .rev()
            .take_while(|c| local_char(*c))
            .collect();
        if local.is_empty() {
            continue;
        }
        let domain: String = line[at + 1..]
            .chars()
            .take_while(|c| label_char(*c) || *c == '.')
            .collect();
        let labels: Vec<&str> = domain.trim_end_matches('.').split('.').collect();
        if labels.len() >= 2
            && labels.iter().all(|l| !l.is_empty())
            && labels
                .last()
                .is_some_and(|t| t.len() >= 2 && t.chars().all(|c| c.is_ascii_alphabetic()))
        {
            let local: String = local.chars().rev().collect();
            return Some(format!("{local}@{domain}"));
        }
    }
    None
}

fn token_like(line: &str) -> bool {
    ["chaos-scim-", "chaos-notion-"]
        .iter()
        .any(|p| line.contains(p))
}

fn check(source: &str, log: &str, secrets: &[String]) {
    let mut lines = 0;
    for line in log.lines() {
        lines += 1;
        for l in [line.to_owned(), percent_decoded(line)] {
            if let Some(email) = full_email(&l) {
                panic!("{source} logged the address {email}: {line}");
            }
            for s in secrets {
                assert!(!l.contains(s.as_str()), "{source} logged a secret: {line}");
            }
            assert!(!token_like(&l), "{source} logged a token: {line}");
            assert!(
                !l.contains(MARKER),
                "{source} logged a request body: {line}"
            );
            assert!(
                !l.contains("Chaos Buyer"),
                "{source} logged a request body: {line}"
            );
        }
    }
    assert!(
        lines > 0,
        "{source} logged nothing at debug: the capture is broken"
    );
}

fn run(args: &[&str]) -> (String, String) {
    let enroll = enroll_bin::path().expect("the enroll binary");
    let mut cmd = Command::new(enroll);
    cmd.args(args)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let out = cmd.output().expect("running enroll");
    assert!(
        out.status.success(),
        "enroll {args:?} failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_logs_no_address_token_secret_or_body() {
    let (stdout, stderr) = run(&["demo"]);
    // The table is for the person running the demo; it is not a log.
    assert!(stdout.contains("ada@example.com"));
    check("enroll demo", &stderr, &secrets(&config()));
}

#[test]
fn a_chaos_run_logs_no_address_token_secret_or_body() {
    let (_, stderr) = run(&[
        "chaos", "--events", "20", "--kills", "1", "--seed", "3", "--json",
    ]);
    check("enroll chaos", &stderr, &secrets(&config()));
}

#[test]
fn the_pipeline_logs_no_part_of_a_webhook_body() {
    let (capture, _guard) = Capture::install("debug");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let runtime = Runtime::start(Options {
            config: config(),
            data_dir: None,
            timings: Timings::quick(3),
            simulate: true,
        })
        .await
        .unwrap();
        let (addr, server) =
            enroll_embedded::server::serve(runtime.clone(), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let workers = runtime.spawn_workers(stop_rx);
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        let cfg = config();
        for (i, platform) in Platform::ALL.into_iter().enumerate() {
            let secret = enroll_lab::send::signing_secret(&cfg, platform).unwrap();
            let url = enroll_lab::send::webhook_url(&base, platform);
            let cases = [
                // Genuine, provisioned and aligned.
                (
                    format!("marker.{i}@example.com"),
                    "notion-mastery",
                    secret.clone(),
                ),
                // Genuine, a product the catalog does not know.
                (
                    format!("marker.u{i}@example.com"),
                    "unknown-product",
                    secret.clone(),
                ),
                // Genuine, an invalid address: 400.
                (
                    format!("{MARKER}\r\n{i}@example.com"),
                    "notion-mastery",
                    secret.clone(),
                ),
                // Forged: 401.
                (
                    format!("forged.{i}@example.com"),
                    "notion-mastery",
                    format!("{MARKER}-secret"),
                ),
            ];
            for (n, (email, product, secret)) in cases.into_iter().enumerate() {
                let sample = Sample {
                    kind: EventKind::Purchase,
                    product: product.to_owned(),
                    email,
                    name: Some(format!("{MARKER} Name")),
                    order_id: Some(format!("ord_logs_{i}_{n}")),
                    event_id: Some(format!("evt_{i}_{n}")),
                };
                enroll_lab::send::post(&http, &url, platform, &sample, &secret)
                    .await
                    .unwrap();
            }
            // A body that is not even valid for its platform.
            let _ = http
                .post(&url)
                .header("content-type", "application/json")
                .body(format!(
                    "{{\"email\":\"raw.{i}@example.com\",\"note\":\"{MARKER}\""
                ))
                .send()
                .await
                .unwrap();
        }
        assert!(runtime.settle(Duration::from_secs(120)).await);
        let _ = stop_tx.send(true);
        for w in workers {
            let _ = w.await;
        }
        server.abort();
    });
    drop(_guard);
    let log = capture.text();
    assert!(log.contains("event accepted"), "the pipeline ran: {log}");
    let mut secrets = secrets(&config());
    secrets.push(format!("{MARKER}-secret"));
    check("the pipeline", &log, &secrets);
}
