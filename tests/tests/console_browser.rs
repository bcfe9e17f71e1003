//! `enroll console` in a real browser: a running `enroll dev` with two buyers and a parked
//! purchase, the console started as a seller starts it (the built `enroll` binary), and headless
//! Chromium driven over WebDriver: the token opens the page, both buyers and their Groups are
//! listed, a search finds one, and a parked message is replayed after its preview and the
//! confirmation. Without the token the console answers 401; a POST without the CSRF value or
//! from another origin gets 403. Screenshots go to `target/console-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`bash tests/tools.sh` installs them); the
//! test fails, saying so, when they are missing.

use anyhow::{Context, Result};
use enroll_core::config::Secret;
use enroll_embedded::admin_client::DevAdmin;
use enroll_embedded::status::StatusReport;
use enroll_tests::console::{Console, Killed};
use enroll_tests::enroll_bin::{self, Dev};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const NM_PRICE: &str = "price_1NotionMasteryYear";
/// Its Group is left out of the simulated workspace, so its purchase is parked.
const FF_PRICE: &str = "price_1FormulaFundamentals";
const FF_GROUP: &str = "Formula Fundamentals 2.0";

fn buy(dev: &Dev, n: usize, email: &str, price: &str) -> Result<()> {
    let url = format!("{}/webhooks/stripe", dev.record.webhook_url);
    let (order, event) = (format!("pi_console_{n}"), format!("evt_console_{n}"));
    let out = enroll_bin::simulated(&[
        "send",
        "stripe",
        "--product",
        price,
        "--email",
        email,
        "--order",
        &order,
        "--event-id",
        &event,
        "--url",
        &url,
    ])?
    .output()?;
    anyhow::ensure!(
        out.status.success(),
        "enroll send: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Waits until `done` holds, asking every 250 ms for up to two minutes.
async fn until<T, F, Fut>(what: &str, mut ask: F, done: impl Fn(&T) -> bool) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let v = ask().await?;
        if done(&v) {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < end, "never: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn screenshots_dir() -> Result<PathBuf> {
    // <target>/<profile>/deps/<test executable>
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .context("no target directory above the test executable")?;
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn shot(browser: &Client, dir: &Path, name: &str) -> Result<()> {
    let png = browser.screenshot().await?;
    std::fs::write(dir.join(format!("{name}.png")), png)?;
    Ok(())
}

/// chromedriver on a free port, answering.
async fn chromedriver() -> Result<(Killed, String)> {
    let port = free_port()?;
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting chromedriver")?;
    let guard = Killed(child);
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    until(
        "chromedriver answers",
        || async { Ok(http.get(format!("{url}/status")).send().await.is_ok()) },
        |ok| *ok,
    )
    .await?;
    Ok((guard, url))
}

async fn browser(driver: &str, profile: &Path) -> Result<Client> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::rustls()?
        .capabilities(caps)
        .connect(driver)
        .await
        .context("opening a Chromium session")
}

async fn body_text(browser: &Client) -> Result<String> {
    Ok(browser.find(Locator::Css("main")).await?.text().await?)
}

/// The page's text once it shows `marker`: a click or a submit returns when the browser has
/// sent it, not always when the next page has loaded, so the old page may still be there.
async fn text_showing(browser: &Client, marker: &str) -> Result<String> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        // The old page's element can go stale while we read it: read again.
        if let Ok(text) = body_text(browser).await {
            if text.contains(marker) || Instant::now() >= end {
                return Ok(text);
            }
        }
        anyhow::ensure!(Instant::now() < end, "the page never showed {marker:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_searches_and_replays_in_chromium() -> Result<()> {
    assert!(
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
        "the console's browser test needs {CHROMIUM} and {CHROMEDRIVER}: run `bash tests/tools.sh` \
         (it installs Debian's chromium and chromium-driver)"
    );
    let dir = enroll_bin::scratch_dir("console");
    // The example's workspace without one Group: purchases of its product are parked.
    let config = enroll_embedded::config_file::load(None)?;
    let mut state = enroll_embedded::seed::from_config(&config);
    state.groups.retain(|g| g.display_name != FF_GROUP);
    std::fs::write(
        enroll_embedded::runtime::sim_state_path(&dir),
        serde_json::to_vec(&state)?,
    )?;
    let d = dir.clone();
    let dev = tokio::task::spawn_blocking(move || -> Result<Dev> {
        let dev = Dev::start(&d, &["--expire-every-secs", "3600"])?;
        buy(&dev, 1, "ada@example.com", NM_PRICE)?;
        buy(&dev, 2, "grace@example.com", NM_PRICE)?;
        buy(&dev, 3, "carol@example.com", FF_PRICE)?;
        Ok(dev)
    })
    .await??;
    let admin = DevAdmin::new(&dev.record.admin_url, Secret::new(dev.token()));
    for email in ["ada@example.com", "grace@example.com"] {
        until(
            "both buyers are in their Group",
            || async {
                let req = admin.get("/admin/status").query(&[("q", email)]);
                admin
                    .call::<StatusReport>(req, Duration::from_secs(30))
                    .await
            },
            |r| r.buyers.iter().any(|b| !b.groups.is_empty()),
        )
        .await?;
    }
    until(
        "the third purchase is parked",
        || async {
            admin
                .call::<Vec<serde_json::Value>>(admin.get("/admin/dlq"), Duration::from_secs(30))
                .await
        },
        |msgs| msgs.len() == 1,
    )
    .await?;

    let d = dir.clone();
    let console = tokio::task::spawn_blocking(move || {
        Console::start(enroll_bin::simulated(&[
            "console",
            "--data-dir",
            d.to_str().unwrap(),
        ])?)
    })
    .await??;
    let (url, base) = (console.url.clone(), console.base.clone());

    // Without the token, or with a wrong one: 401.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    for path in ["/", "/dead-letters", "/assets/console.css", "/?token=wrong"] {
        let resp = http.get(format!("{base}{path}")).send().await?;
        assert_eq!(resp.status(), 401, "{path}");
    }

    let (_driver, driver_url) = chromedriver().await?;
    let profile = dir.join("chromium-profile");
    let browser = browser(&driver_url, &profile).await?;
    let shots = screenshots_dir()?;
    let result = drive(&browser, &url, &base, &shots).await;
    let _ = browser.close().await;
    result?;

    // A POST needs the CSRF value and this console's origin.
    let cookie = console.session(&http).await?;
    let page = http
        .get(format!("{base}/dead-letters"))
        .header("cookie", &cookie)
        .send()
        .await?
        .text()
        .await?;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .context("no CSRF field on the page")?
        .to_owned();
    let post = |origin: Option<String>, form: String| {
        let mut req = http
            .post(format!("{base}/dead-letters/preview"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    let with_csrf = format!("mode=all&csrf={csrf}");
    let me = || Some(base.clone());
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(post(me(), "mode=all".into()).await?), 403, "no CSRF");
    let wrong = format!("mode=all&csrf={}", "0".repeat(64));
    assert_eq!(status(post(me(), wrong).await?), 403, "wrong CSRF");
    let evil = Some("http://evil.example".to_owned());
    assert_eq!(
        status(post(evil, with_csrf.clone()).await?),
        403,
        "foreign Origin"
    );
    assert_eq!(
        status(post(None, with_csrf.clone()).await?),
        403,
        "no Origin or Referer"
    );
    assert_eq!(
        status(post(me(), with_csrf).await?),
        200,
        "the console's own form"
    );

    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The seller's walk through the console.
async fn drive(browser: &Client, url: &str, base: &str, shots: &Path) -> Result<()> {
    browser.goto(url).await?;
    // The token leaves the address bar.
    let at = browser.current_url().await?;
    assert_eq!(at.as_str(), format!("{base}/"));
    let text = body_text(browser).await?;
    shot(browser, shots, "1-buyers").await?;
    assert!(text.contains("a***@e***.com"), "{text}");
    assert!(text.contains("g***@e***.com"), "{text}");
    let rows = browser.find_all(Locator::Css("tbody tr")).await?;
    let mut in_group = 0;
    for row in &rows {
        let t = row.text().await?;
        if t.contains("Notion Mastery") && (t.contains("a***@") || t.contains("g***@")) {
            in_group += 1;
        }
    }
    assert_eq!(in_group, 2, "both buyers with their Group: {text}");

    // A search by email shows the buyer's address and Group.
    let search = browser.form(Locator::Css("form.search")).await?;
    search.set(Locator::Css("#q"), "grace@example.com").await?;
    search.submit().await?;
    let text = text_showing(browser, "grace@example.com").await?;
    shot(browser, shots, "2-search").await?;
    assert!(text.contains("grace@example.com"), "{text}");
    assert!(text.contains("Notion Mastery"), "{text}");
    assert!(!text.contains("a***@e***.com"), "only the match: {text}");

    // The buyer's own page: grants and history.
    browser
        .find(Locator::LinkText("grace@example.com"))
        .await?
        .click()
        .await?;
    let text = text_showing(browser, "History").await?;
    shot(browser, shots, "3-buyer").await?;
    assert!(text.contains("History"), "{text}");
    assert!(text.contains("received and verified"), "{text}");

    // The parked purchase: preview, then confirm.
    browser.goto(&format!("{base}/dead-letters")).await?;
    let text = body_text(browser).await?;
    shot(browser, shots, "4-dead-letters").await?;
    assert!(
        text.contains(FF_GROUP),
        "the reason names the Group: {text}"
    );
    assert!(text.contains("c***@e***.com"), "masked buyer: {text}");
    assert!(!text.contains("carol@example.com"), "{text}");
    browser
        .find(Locator::Css("td form button"))
        .await?
        .click()
        .await?;
    let text = text_showing(browser, "Dry run").await?;
    shot(browser, shots, "5-replay-preview").await?;
    assert!(text.contains("Dry run"), "{text}");
    assert!(text.contains("would be replayed (1)"), "{text}");
    browser
        .find(Locator::Css("button.danger"))
        .await?
        .click()
        .await?;
    let text = text_showing(browser, "Replayed").await?;
    shot(browser, shots, "6-replayed").await?;
    assert!(text.contains("Replayed 1 message(s)."), "{text}");

    for (path, name) in [
        ("/catalog", "7-catalog"),
        ("/activity", "8-activity"),
        ("/setup", "9-setup"),
        ("/audit", "10-audit"),
    ] {
        browser.goto(&format!("{base}{path}")).await?;
        let text = body_text(browser).await?;
        shot(browser, shots, name).await?;
        assert!(!text.contains("could not"), "{path}: {text}");
    }
    Ok(())
}
