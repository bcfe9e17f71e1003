//! A mapped platform through the commands a seller runs: `enroll doctor` prints its URL and the
//! body its pointers describe, `enroll dev --config FILE` (the real binary) serves it, and
//! `enroll send <name>` builds, signs and posts its purchase and refund. `enroll status` shows
//! the buyer's Group come and go.

use anyhow::{Context, Result};
use enroll_embedded::config_file;
use enroll_embedded::status::StatusReport;
use enroll_tests::enroll_bin::{self, scratch_dir, Dev};
use std::path::Path;
use std::time::{Duration, Instant};

const NM: &str = "Notion Mastery";

/// The example configuration with a JSON mapped platform signing with HMAC-SHA256 in a header.
fn config_text() -> String {
    let products = config_file::EXAMPLE.replacen(
        "thrivecart = [\"7\"]\n",
        "thrivecart = [\"7\"]\nacademy = [\"offer-77\"]\n",
        1,
    );
    assert_ne!(
        products,
        config_file::EXAMPLE,
        "the example's first product moved"
    );
    format!(
        r#"{products}
[platforms.academy]
kind = "mapped"
body = "json"
secrets = ["academy-cli-secret"]
auth = {{ hmac_sha256 = "X-Academy-Signature", encoding = "base64" }}
[platforms.academy.fields]
event_id = "/event/id"
kind = "/event/type"
email = "/data/customer/email"
product = "/data/offer"
order = "/data/order"
[platforms.academy.kinds]
"order.paid" = "purchase"
"order.refunded" = "refund"
"#
    )
}

fn run(args: &[&str]) -> Result<std::process::Output> {
    Ok(enroll_bin::simulated(args)?.output()?)
}

fn send(dir: &Path, config: &Path, kind: &str, event: &str) -> Result<()> {
    let out = run(&[
        "send",
        "academy",
        "--kind",
        kind,
        "--product",
        "offer-77",
        "--email",
        "lin@example.com",
        "--order",
        "ord-9",
        "--event-id",
        event,
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
    ])?;
    anyhow::ensure!(
        out.status.success(),
        "enroll send academy --kind {kind}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn groups(dir: &Path) -> Result<Vec<String>> {
    let out = run(&[
        "status",
        "lin@example.com",
        "--json",
        "--data-dir",
        dir.to_str().unwrap(),
    ])?;
    anyhow::ensure!(
        out.status.success(),
        "enroll status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: StatusReport = serde_json::from_slice(&out.stdout)?;
    Ok(report
        .buyers
        .iter()
        .flat_map(|b| b.groups.iter().filter_map(|g| g.name.clone()))
        .collect())
}

fn groups_until(dir: &Path, done: impl Fn(&[String]) -> bool) -> Result<Vec<String>> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let g = groups(dir)?;
        if done(&g) {
            return Ok(g);
        }
        anyhow::ensure!(Instant::now() < until, "the buyer's Groups stayed {g:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn doctor_dev_send_and_status_with_a_mapped_platform() -> Result<()> {
    let dir = scratch_dir("mapped-cli");
    let config = dir.join("academy.toml");
    std::fs::write(&config, config_text())?;
    let config_arg = config.to_str().context("a UTF-8 path")?;

    // doctor: the URL to register and the body the pointers describe.
    let out = run(&[
        "doctor",
        "--config",
        config_arg,
        "--webhook-base",
        "https://hooks.example",
        "--json",
    ])?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
    let line = report["checks"]
        .as_array()
        .context("checks")?
        .iter()
        .find(|c| c["name"] == "Webhook URL academy")
        .context("a line for the mapped platform")?;
    let detail = line["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("https://hooks.example/webhooks/academy"),
        "{detail}"
    );
    assert!(detail.contains("\"customer\""), "the sample body: {detail}");

    let dev = Dev::start(&dir, &["--config", config_arg])?;
    send(&dir, &config, "purchase", "evt-1")?;
    let g = groups_until(&dir, |g| !g.is_empty())?;
    assert_eq!(g, vec![NM.to_owned()]);

    // The same delivery again is answered and changes nothing; the refund takes the Group away.
    send(&dir, &config, "purchase", "evt-1")?;
    send(&dir, &config, "refund", "evt-2")?;
    groups_until(&dir, |g| g.is_empty())?;
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
