//! The admin surface of `enroll dev`, against the real binary.
//!
//! The webhook port (the one a tunnel exposes) answers 404 to every admin path. The admin
//! listener answers only with the data directory's token, refuses anything a browser sends,
//! and is found by the operator commands through `dev.json`, on whatever port it runs.
//! `enroll status` also reports a purchase parked in the provision dead-letter queue.

use anyhow::{Context, Result};
use enroll_embedded::admin::{DEV_FILE, TOKEN_FILE};
use enroll_embedded::status::StatusReport;
use enroll_tests::enroll_bin::{self, Dev};
use reqwest::StatusCode;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PRODUCT: &str = "price_1FormulaFundamentals";
const GROUP: &str = "Formula Fundamentals 2.0";

fn scratch_dir(name: &str) -> PathBuf {
    enroll_bin::scratch_dir(&format!("admin-{name}"))
}

/// `enroll` with no tokens, so the simulator stands in for Notion.
fn enroll(args: &[&str]) -> Result<Command> {
    enroll_bin::simulated(args)
}

fn run(args: &[&str]) -> Result<Output> {
    let out = enroll(args)?.output().context("running enroll")?;
    Ok(out)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

fn buy(dev: &Dev, email: &str) -> Result<()> {
    let url = format!("{}/webhooks/stripe", dev.record.webhook_url);
    let out = run(&[
        "send",
        "stripe",
        "--product",
        PRODUCT,
        "--email",
        email,
        "--url",
        &url,
    ])?;
    anyhow::ensure!(
        out.status.success(),
        "enroll send failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn status(dir: &Path, query: &str) -> Result<StatusReport> {
    let out = run(&[
        "status",
        query,
        "--json",
        "--data-dir",
        dir.to_str().unwrap(),
    ])?;
    anyhow::ensure!(
        out.status.success(),
        "enroll status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Asks `enroll status` until `done` holds for its report (the workers are asynchronous).
fn status_until(
    dir: &Path,
    query: &str,
    done: impl Fn(&StatusReport) -> bool,
) -> Result<StatusReport> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let report = status(dir, query)?;
        if done(&report) {
            return Ok(report);
        }
        anyhow::ensure!(
            Instant::now() < until,
            "enroll status never showed the expected state: {report:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_port_answers_404_to_every_admin_path() -> Result<()> {
    let dir = scratch_dir("webhook-port");
    let dev =
        tokio::task::spawn_blocking(move || Dev::start(&dir, &["--expire-every-secs", "3600"]))
            .await??;
    let http = http();
    let base = &dev.record.webhook_url;
    let token = dev.token();

    let health = http.get(format!("{base}/healthz")).send().await?;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = http.get(format!("{base}/webhooks/stripe")).send().await?;
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "the webhook route is served"
    );

    let attempts = [
        http.get(format!("{base}/admin/status?q=ada@example.com")),
        http.post(format!(
            "{base}/admin/link?alias=attacker@example.com&buyer=victim@example.com"
        )),
        http.post(format!("{base}/admin/expire")),
        http.get(format!("{base}/admin/dlq?queue=provision")),
        http.post(format!("{base}/admin/dlq/replay"))
            .json(&serde_json::json!({})),
        http.get(format!("{base}/admin/notion")),
        http.get(format!("{base}/admin/healthz")),
        // Even with the right token: the webhook port has no admin routes at all.
        http.get(format!("{base}/admin/status?q=ada@example.com"))
            .bearer_auth(&token),
        http.get(format!("{base}/anything-else")),
    ];
    for req in attempts {
        let resp = req.send().await?;
        let url = resp.url().clone();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{url}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_wants_the_token_and_refuses_browsers() -> Result<()> {
    let dir = scratch_dir("admin-listener");
    let dev =
        tokio::task::spawn_blocking(move || Dev::start(&dir, &["--expire-every-secs", "3600"]))
            .await??;
    let http = http();
    let admin = &dev.record.admin_url;
    assert!(
        admin.starts_with("http://127.0.0.1:"),
        "the admin listener is on loopback: {admin}"
    );
    assert_ne!(admin, &dev.record.webhook_url, "a port of its own");
    let token = dev.token();
    let status_url = format!("{admin}/admin/status?q=ada@example.com");
    let wrong_same_length: String = token
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();

    let no_token = http.get(&status_url).send().await?;
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    for wrong in [wrong_same_length.as_str(), "guess", ""] {
        let resp = http.get(&status_url).bearer_auth(wrong).send().await?;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "token `{wrong}`");
    }
    let basic = http
        .get(&status_url)
        .basic_auth("admin", Some(&token))
        .send()
        .await?;
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED, "only Bearer");

    // What a web page could send: refused even with the token, and never a CORS grant.
    let from_pages = [
        http.get(&status_url)
            .bearer_auth(&token)
            .header("origin", "https://evil.example"),
        http.get(&status_url)
            .bearer_auth(&token)
            .header("origin", "null"),
        http.get(&status_url)
            .bearer_auth(&token)
            .header("sec-fetch-site", "cross-site"),
        http.post(format!(
            "{admin}/admin/link?alias=attacker@example.com&buyer=victim@example.com"
        ))
        .bearer_auth(&token)
        .header("origin", "https://evil.example"),
        http.request(reqwest::Method::OPTIONS, format!("{admin}/admin/link"))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization"),
        // DNS rebinding: a page on a name that resolves to 127.0.0.1.
        http.get(&status_url)
            .bearer_auth(&token)
            .header("host", "evil.example"),
    ];
    for req in from_pages {
        let resp = req.send().await?;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(
            !resp
                .headers()
                .keys()
                .any(|k| k.as_str().starts_with("access-control-")),
            "no CORS header: {:?}",
            resp.headers()
        );
    }
    // A forged link without the token did nothing: the alias is unknown.
    let link = http
        .post(format!(
            "{admin}/admin/link?alias=attacker@example.com&buyer=victim@example.com"
        ))
        .send()
        .await?;
    assert_eq!(link.status(), StatusCode::UNAUTHORIZED);

    let ok = http.get(&status_url).bearer_auth(&token).send().await?;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(!ok
        .headers()
        .keys()
        .any(|k| k.as_str().starts_with("access-control-")));
    let report: StatusReport = ok.json().await?;
    assert!(report.buyers.is_empty());
    let unknown = http
        .get(format!("{admin}/webhooks/stripe"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND, "no webhooks here");
    Ok(())
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_the_owners_alone_and_outlives_a_restart() -> Result<()> {
    let dir = scratch_dir("token");
    let d = dir.clone();
    let dev = tokio::task::spawn_blocking(move || Dev::start(&d, &["--expire-every-secs", "3600"]))
        .await??;
    assert_eq!(mode(&dir.join(TOKEN_FILE)), 0o600, "admin.token");
    assert_eq!(mode(&dir.join(DEV_FILE)), 0o600, "dev.json");
    let token = dev.token();
    assert!(token.len() >= 64, "32 random bytes, hex");

    tokio::task::spawn_blocking(move || dev.interrupt()).await??;
    assert!(
        !dir.join(DEV_FILE).exists(),
        "a clean stop removes {DEV_FILE}"
    );

    let d = dir.clone();
    let again =
        tokio::task::spawn_blocking(move || Dev::start(&d, &["--expire-every-secs", "3600"]))
            .await??;
    assert_eq!(again.token(), token, "the same token on the next start");
    let ok = http()
        .get(format!("{}/admin/healthz", again.record.admin_url))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(ok.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_finds_the_dev_on_any_port_and_reads_the_directory_once_it_is_gone() -> Result<()> {
    let dir = scratch_dir("status");
    let d = dir.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let dev = Dev::start(&d, &["--expire-every-secs", "3600"])?;
        assert!(
            !dev.record.webhook_url.ends_with(":8787"),
            "not the default port"
        );
        buy(&dev, "ada@example.com")?;
        // Answered by the running dev (the only one that can check the sales record).
        let live = status_until(&d, "ada@example.com", |r| {
            r.buyers
                .first()
                .is_some_and(|b| !b.groups.is_empty() && b.sales_record == Some(true))
        })?;
        let group = &live.buyers[0].groups[0];
        assert_eq!(group.name.as_deref(), Some(GROUP), "the name, with the id");
        assert!(!group.id.is_empty() && group.id != GROUP);

        // A hard kill leaves a stale dev.json behind: status reads the directory instead.
        drop(dev);
        assert!(d.join(DEV_FILE).exists());
        let offline = status(&d, "ada@example.com")?;
        assert_eq!(offline.buyers.len(), 1);
        assert_eq!(offline.buyers[0].groups, live.buyers[0].groups);
        assert_eq!(offline.buyers[0].sales_record, None, "read from the files");
        Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_purchase_parked_in_the_dead_letter_queue() -> Result<()> {
    let dir = scratch_dir("parked");
    // A simulated workspace without the product's Group: provision parks the purchase.
    std::fs::write(
        enroll_embedded::runtime::sim_state_path(&dir),
        serde_json::to_vec(&enroll_simulator::SimState::default())?,
    )?;
    let d = dir.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let dev = Dev::start(&d, &["--expire-every-secs", "3600"])?;
        buy(&dev, "grace@example.com")?;
        let report = status_until(&d, "Grace@Example.com", |r| {
            r.buyers.iter().any(|b| !b.parked.is_empty())
        })?;
        let b = &report.buyers[0];
        assert_eq!(b.email, "grace@example.com");
        assert_eq!(b.parked.len(), 1);
        let parked = &b.parked[0];
        assert_eq!(parked.kind, "purchase");
        assert!(parked.event_key.starts_with("stripe:"));
        let reason = parked.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains(GROUP),
            "the reason names the cause: {reason}"
        );

        // The plain view says so in words, and the replay command to run after the fix.
        let out = run(&[
            "status",
            "grace@example.com",
            "--data-dir",
            d.to_str().unwrap(),
        ])?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("no buyer matches"), "{text}");
        assert!(text.contains("PARKED"), "{text}");
        assert!(
            text.contains(&format!("enroll dlq replay --key {}", parked.event_key)),
            "{text}"
        );

        // `enroll dlq list` reaches the same dev through the admin listener.
        let out = run(&["dlq", "list", "--json", "--data-dir", d.to_str().unwrap()])?;
        anyhow::ensure!(
            out.status.success(),
            "dlq list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
        assert_eq!(listed.len(), 1);

        // A delete says which messages, and rehearses first; through the dev too.
        let dir_arg = d.to_str().unwrap();
        let refused = run(&["dlq", "delete", "--data-dir", dir_arg])?;
        assert!(
            !refused.status.success(),
            "a delete of everything needs --all"
        );
        let key = parked.event_key.as_str();
        let out = run(&[
            "dlq",
            "delete",
            "--key",
            key,
            "--dry-run",
            "--json",
            "--data-dir",
            dir_arg,
        ])?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
        let would: u64 = reports
            .iter()
            .map(|r| r["moved_count"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(would, 1, "{reports:?}");

        // And once the dev is gone, from the data directory.
        dev.interrupt()?;
        let offline = status(&d, "grace@example.com")?;
        assert_eq!(
            offline.buyers[0].parked.len(),
            1,
            "a dry run deletes nothing"
        );
        let out = run(&["dlq", "delete", "--key", key, "--data-dir", dir_arg])?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let after = status(&d, "grace@example.com")?;
        assert!(after.buyers[0].parked.is_empty(), "deleted for good");
        assert!(
            after.buyers[0]
                .history
                .iter()
                .any(|h| h.what.contains("deleted from the dead-letter queue")),
            "the delete is in the buyer's history"
        );
        Ok(())
    })
    .await??;
    Ok(())
}
