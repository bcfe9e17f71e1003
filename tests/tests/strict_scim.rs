//! enroll against an independent, strict SCIM 2.0 server (`scim2-server` from PyPI, see
//! `tests/src/scim_server.rs`) as the workspace, with the Notion simulator serving only the
//! public API (the sales database). Memberships are read from the strict server itself
//! (`GET /Groups/{id}`), sales records through the simulator's public API with its token.
//!
//! The strict server knows the RFC 7643 schemas only and no `email` filter attribute, so the
//! configuration here sets `scim.user_filter_attribute = "userName"` (the shipped default) and
//! `scim.remove_form = "path_filter"` (it refuses a `remove` that carries a value list).
//!
//! - `lifecycle_on_a_strict_server`: purchase, upgrade, refund and expiry through the embedded
//!   runtime in this process.
//! - `a_killed_dev_loses_no_buyer_on_a_strict_server`: the crash scenario, on the real
//!   `enroll dev` binary with shipped settings: 50 signed purchases over the seven platforms,
//!   SIGKILL mid-flow, restart on the same data directory, refused deliveries resent.

use anyhow::{anyhow, ensure, Context as _, Result};
use chrono::{DateTime, Months, TimeDelta, Utc};
use enroll_core::config::{Config, RemoveForm, Secret};
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use enroll_core::timings::Timings;
use enroll_embedded::config_file;
use enroll_embedded::journal::Journal;
use enroll_embedded::queue::{Message, ATTR_REASON};
use enroll_embedded::runtime::{Options, Runtime};
use enroll_lab::send;
use enroll_platforms::Sample;
use enroll_simulator::{SimConfig, SimHandle};
use enroll_tests::scim_server::StrictScim;
use enroll_tests::{enroll_bin, local_server};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NM: &str = "Notion Mastery";
const ALUMNI: &str = "Notion Mastery Alumni";
const FF: &str = "Formula Fundamentals 2.0";
const GROUPS: [&str; 3] = [NM, ALUMNI, FF];

const NOTION_TOKEN: &str = "strict-test-notion-token";
/// The simulator's SCIM side is never used here; it still needs a token.
const UNUSED_SIM_SCIM_TOKEN: &str = "strict-test-unused-scim-token";

/// The simulator as the public API only: the sales database the example configuration names.
async fn sales_simulator(config: &Config) -> Result<SimHandle> {
    let mut state = enroll_embedded::seed::from_config(config);
    // Its Groups would be a second workspace's; nothing may look there.
    state.groups.clear();
    Ok(enroll_simulator::start(
        SimConfig {
            scim_token: UNUSED_SIM_SCIM_TOKEN.into(),
            notion_token: NOTION_TOKEN.into(),
            scim_rate_limit: None,
            notion_rate_limit: None,
            admin_token: None,
            max_members_per_patch: None,
            state,
        },
        "127.0.0.1:0".parse()?,
    )
    .await?)
}

/// One row of the sales database, as the public API shows it.
#[derive(Debug, Clone)]
struct SalesRow {
    email: String,
    notion_user_id: String,
}

/// Reads the sales database through the public API, as any integration would.
struct SalesDb {
    http: reqwest::Client,
    base_url: String,
    database_id: String,
    props: enroll_core::config::SalesProperties,
}

impl SalesDb {
    fn new(config: &Config, base_url: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base_url,
            database_id: config.notion.database_id.clone(),
            props: config.notion.properties.clone(),
        }
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let resp = req
            .bearer_auth(NOTION_TOKEN)
            .header("Notion-Version", "2025-09-03")
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        ensure!(status.is_success(), "public API: {status} {body}");
        Ok(body)
    }

    async fn rows(&self) -> Result<Vec<SalesRow>> {
        let db = self
            .call(
                self.http
                    .get(format!("{}/databases/{}", self.base_url, self.database_id)),
            )
            .await?;
        let ds = db["data_sources"][0]["id"]
            .as_str()
            .context("the database has no data source")?
            .to_owned();
        let text = |page: &Value, prop: &str| -> String {
            let p = &page["properties"][prop];
            if let Some(e) = p["email"].as_str() {
                return e.to_owned();
            }
            p["rich_text"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["plain_text"].as_str())
                .collect()
        };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut body = json!({"page_size": 100});
            if let Some(c) = &cursor {
                body["start_cursor"] = json!(c);
            }
            let page = self
                .call(
                    self.http
                        .post(format!("{}/data_sources/{ds}/query", self.base_url))
                        .json(&body),
                )
                .await?;
            for r in page["results"].as_array().into_iter().flatten() {
                out.push(SalesRow {
                    email: text(r, &self.props.email).to_lowercase(),
                    notion_user_id: text(r, &self.props.notion_user_id),
                });
            }
            match page["next_cursor"].as_str() {
                Some(c) if page["has_more"].as_bool() == Some(true) => cursor = Some(c.into()),
                _ => return Ok(out),
            }
        }
    }
}

/// The example configuration with the strict server as the SCIM workspace and the simulator
/// as the public API.
fn config(strict: &StrictScim, notion_base_url: &str) -> Config {
    let mut c = config_file::load(None).expect("the example configuration is valid");
    c.scim.base_url = strict.base_url.clone();
    c.scim.token = Secret::new(&strict.token);
    // What the strict server can filter on: it has no `email` attribute.
    c.scim.user_filter_attribute = "userName".into();
    // It answers 400 to a `remove` carrying a value list (RFC 7644 section 3.5.2.2).
    c.scim.remove_form = RemoveForm::PathFilter;
    c.notion.base_url = notion_base_url.to_owned();
    c.notion.token = Secret::new(NOTION_TOKEN);
    c.rate.requests_per_second = 200.0;
    c.rate.burst = 50;
    c.validate().expect("the test configuration is valid");
    c
}

fn sample(kind: EventKind, product: &str, email: &str, order: &str, event: &str) -> Sample {
    Sample {
        kind,
        product: product.into(),
        email: email.into(),
        name: Some("Ada Lovelace".into()),
        order_id: Some(order.into()),
        event_id: Some(event.into()),
    }
}

/// Runs one signed webhook through ingest, then both stages until the queues are empty.
async fn deliver(rt: &Runtime, platform: Platform, s: &Sample) -> Result<()> {
    let secret = send::signing_secret(&rt.config, platform)?;
    let out = enroll_platforms::sample(platform, s, &secret, Utc::now());
    let req = ingest::WebhookRequest {
        method: "POST".into(),
        path: format!("/webhooks/{}", platform.as_str()),
        query: out.query,
        headers: out.headers,
        body: out.body,
    };
    let status = rt.ingest.handle(&req, Utc::now()).await.status;
    ensure!(
        status == 202,
        "{platform} {:?}: ingest answered {status}",
        s.kind
    );
    drain(rt).await
}

async fn drain(rt: &Runtime) -> Result<()> {
    rt.run_until_idle().await
}

/// The reasons of the messages parked in a runtime's two dead-letter queues.
fn parked(rt: &Runtime) -> Vec<String> {
    [rt.provision_dlq(), rt.align_dlq()]
        .iter()
        .flat_map(|q| q.peek())
        .map(|m| {
            m.attributes
                .get(ATTR_REASON)
                .cloned()
                .unwrap_or_else(|| "<no reason>".into())
        })
        .collect()
}

/// The Groups `address` is in on the strict server, sorted, a repeat listed twice; empty when
/// the server has no such user.
async fn groups(strict: &StrictScim, address: &str) -> Result<Vec<String>> {
    let Some(id) = strict.user_id(address).await? else {
        return Ok(Vec::new());
    };
    let mut g = strict.groups_of(&id).await?;
    g.sort();
    Ok(g)
}

fn names(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

fn months(t: DateTime<Utc>, m: u32) -> DateTime<Utc> {
    t.checked_add_months(Months::new(m)).expect("in range")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_a_strict_server() -> Result<()> {
    let strict = StrictScim::start(&GROUPS).await?;
    let base = config_file::load(None)?;
    let sim = sales_simulator(&base).await?;
    let config = config(&strict, &sim.notion_base_url());
    let sales = SalesDb::new(&config, sim.notion_base_url());
    let rt = Runtime::start(Options {
        config,
        data_dir: None,
        // Nothing here is about timing; short waits keep a retry from slowing the test.
        timings: Timings::quick(4),
        simulate: false,
    })
    .await?;
    ensure!(
        rt.simulator.is_none(),
        "both tokens are set: no simulated SCIM"
    );

    let ada = "ada@example.com";
    let bob = "bob@example.com";

    // Purchase: a new member, in exactly the product's Group.
    deliver(
        &rt,
        Platform::Stripe,
        &sample(
            EventKind::Purchase,
            "price_1FormulaFundamentals",
            ada,
            "pi_strict_ff",
            "evt_strict_ff",
        ),
    )
    .await?;
    let p = parked(&rt);
    ensure!(p.is_empty(), "the purchase was parked: {p:?}");
    ensure!(groups(&strict, ada).await? == names(&[FF]));
    let ada_id = strict.user_id(ada).await?.context("ada is a member")?;
    let rows = sales.rows().await?;
    ensure!(
        rows.len() == 1 && rows[0].notion_user_id == ada_id && rows[0].email == ada,
        "one sales record with the strict server's user id: {rows:?}"
    );

    // Upgrade: a second product adds its Group and keeps the first.
    deliver(
        &rt,
        Platform::Paddle,
        &sample(
            EventKind::Purchase,
            "pri_01hnotionmastery",
            ada,
            "txn_strict_nm",
            "evt_strict_nm",
        ),
    )
    .await?;
    ensure!(groups(&strict, ada).await? == names(&[FF, NM]));

    // A second buyer, refunded: out of the Group (deprovision "keep" leaves the account).
    deliver(
        &rt,
        Platform::Standard,
        &sample(
            EventKind::Purchase,
            "notion-mastery",
            bob,
            "ord_strict_bob",
            "msg_strict_bob",
        ),
    )
    .await?;
    ensure!(groups(&strict, bob).await? == names(&[NM]));
    deliver(
        &rt,
        Platform::Standard,
        &sample(
            EventKind::Refund,
            "notion-mastery",
            bob,
            "ord_strict_bob",
            "msg_strict_bob_refund",
        ),
    )
    .await?;
    ensure!(
        groups(&strict, bob).await?.is_empty(),
        "refunded: in no Group"
    );

    // Refund of the first product: its Group goes, the other product's stays.
    deliver(
        &rt,
        Platform::Stripe,
        &sample(
            EventKind::Refund,
            "price_1FormulaFundamentals",
            ada,
            "pi_strict_ff",
            "evt_strict_ff_refund",
        ),
    )
    .await?;
    ensure!(groups(&strict, ada).await? == names(&[NM]));

    // Expiry: a month on nothing is due; after 12 months Notion Mastery ends and alumni
    // access follows.
    let now = Utc::now();
    rt.expire(months(now, 1)).await?;
    ensure!(groups(&strict, ada).await? == names(&[NM]));
    let report = rt.expire(months(now, 12) + TimeDelta::days(1)).await?;
    ensure!(
        groups(&strict, ada).await? == names(&[ALUMNI]),
        "after 12 months: {:?} ({report:?})",
        groups(&strict, ada).await?
    );
    rt.expire(months(now, 36)).await?;
    ensure!(
        groups(&strict, ada).await? == names(&[ALUMNI]),
        "alumni access has no end"
    );

    let p = parked(&rt);
    ensure!(p.is_empty(), "parked: {p:?}");
    ensure!(
        strict.users().await?.len() == 2,
        "one account per buyer: {:?}",
        strict.users().await?
    );
    let rows = sales.rows().await?;
    let per_buyer: BTreeMap<&str, usize> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.email.as_str()).or_default() += 1;
        m
    });
    ensure!(
        per_buyer == BTreeMap::from([(ada, 1), (bob, 1)]),
        "one sales record per buyer: {rows:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The crash scenario.

const BUYERS: usize = 50;
/// Delivery after which `enroll dev` is killed, and the one at which it is back.
const KILL_AT: usize = 20;
const RESTART_AT: usize = 30;
/// Generous: a killed claim lasts a minute and the shipped budget is 3 requests a second.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(240);

/// `enroll dev` as a child process. Dropping it kills it; it also dies with this process.
struct Dev {
    child: Child,
    url: String,
}

impl Dev {
    async fn start(dir: &Path, config: &Path, strict: &StrictScim, n: usize) -> Result<Self> {
        let bin = tokio::task::spawn_blocking(enroll_bin::path).await??;
        let port = local_server::free_port()?;
        let log = std::fs::File::create(dir.with_extension(format!("dev-{n}.log")))?;
        let mut cmd = Command::new(bin);
        // Exactly what a seller runs: a configuration file, a data directory and a port. Every
        // timing is the shipped default; tokens come from the environment.
        cmd.arg("dev")
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(dir)
            .arg("--port")
            .arg(port.to_string())
            .env("ENROLL_SCIM_TOKEN", &strict.token)
            .env("ENROLL_NOTION_TOKEN", NOTION_TOKEN)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the child
        // when this thread ends, so a killed test run leaves no `enroll dev` behind.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("starting enroll dev")?;
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..600 {
            if local_server::status(port, "/healthz") == Some(200) {
                return Ok(Self { child, url });
            }
            if let Some(exit) = child.try_wait()? {
                return Err(anyhow!("enroll dev exited with {exit} at start"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        Err(anyhow!("enroll dev did not answer /healthz within 60 s"))
    }

    /// SIGKILL: no shutdown code runs.
    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// A platform's made-up order id in its own format.
fn order_id(platform: Platform, run: &str, i: usize) -> String {
    match platform {
        Platform::Stripe => format!("pi_crash{run}x{i}"),
        Platform::Paddle => format!("txn_crash{run}x{i}"),
        Platform::Standard => format!("ord_crash{run}x{i}"),
        Platform::Gumroad | Platform::Mapped(_) => format!("crash{run}x{i}"),
        Platform::Shopify | Platform::LemonSqueezy | Platform::ThriveCart => {
            format!("{}", 5_000_000_000u64 + i as u64)
        }
    }
}

/// One buyer's purchase: its platform, the signed sample and the Group it must end in.
struct Purchase {
    platform: Platform,
    sample: Sample,
    group: &'static str,
}

fn purchases(config: &Config, run: &str) -> Vec<Purchase> {
    (0..BUYERS)
        .map(|i| {
            let platform = Platform::ALL[i % Platform::ALL.len()];
            // Alternate per round of seven, so every platform sells both products.
            let n = Platform::ALL.len();
            let product_id = if (i / n + i % n) % 2 == 0 {
                "notion-mastery"
            } else {
                "formula-fundamentals"
            };
            let product = config
                .catalog
                .products
                .iter()
                .find(|p| p.id.as_str() == product_id)
                .expect("the example sells it");
            let reference = product
                .platform_ids
                .get(&platform)
                .and_then(|r| r.first())
                .map(|r| r.as_str().to_owned())
                .unwrap_or_else(|| product_id.to_owned());
            Purchase {
                platform,
                sample: Sample {
                    kind: EventKind::Purchase,
                    product: reference,
                    email: format!("crash.buyer{i}@example.com"),
                    name: Some(format!("Crash Buyer {i}")),
                    order_id: Some(order_id(platform, run, i)),
                    event_id: Some(format!("evt_crash{run}x{i}")),
                },
                group: if product_id == "notion-mastery" {
                    NM
                } else {
                    FF
                },
            }
        })
        .collect()
}

/// Posts one purchase, signed now; true when `enroll dev` accepted it (2xx).
async fn post(http: &reqwest::Client, base: &str, config: &Config, p: &Purchase) -> bool {
    let Ok(secret) = send::signing_secret(config, p.platform) else {
        return false;
    };
    let url = send::webhook_url(base, p.platform);
    matches!(
        send::post(http, &url, p.platform, &p.sample, &secret).await,
        Ok((200..=299, _))
    )
}

/// What the data directory, the strict server and the sales database say at one moment.
#[derive(Debug, Default)]
struct Verdict {
    /// Buyers not in exactly their one Group, once (with what they are in).
    wrong: BTreeMap<String, Vec<String>>,
    /// Buyers without exactly one sales record holding their strict user id (rows found).
    unaligned: BTreeMap<String, usize>,
    /// Users on the strict server that are no buyer, or a buyer twice.
    extra_users: usize,
    /// Members listed in a Group that are nobody's user.
    stray_members: usize,
    /// Parked messages: (queue, reason).
    parked: Vec<(String, String)>,
    /// Messages still waiting or in flight.
    queued: usize,
}

impl Verdict {
    fn done(&self) -> bool {
        self.wrong.is_empty()
            && self.unaligned.is_empty()
            && self.extra_users == 0
            && self.stray_members == 0
            && self.parked.is_empty()
            && self.queued == 0
    }
}

async fn verdict(
    strict: &StrictScim,
    sales: &SalesDb,
    dir: &Path,
    buys: &[Purchase],
) -> Result<Verdict> {
    let mut v = Verdict::default();
    let buyers: BTreeSet<&str> = buys.iter().map(|p| p.sample.email.as_str()).collect();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for (id, name) in strict.users().await? {
        let name = name.to_lowercase();
        if !buyers.contains(name.as_str()) || ids.contains_key(&name) {
            v.extra_users += 1;
        } else {
            ids.insert(name, id);
        }
    }
    let memberships = strict.memberships().await?;
    let known: BTreeSet<&String> = ids.values().collect();
    v.stray_members = memberships
        .values()
        .flatten()
        .filter(|m| !known.contains(m))
        .count();
    let rows = sales.rows().await?;
    for p in buys {
        let email = p.sample.email.as_str();
        let Some(id) = ids.get(email) else {
            v.wrong.insert(email.into(), vec!["<no user>".into()]);
            continue;
        };
        let mut in_groups: Vec<String> = memberships
            .iter()
            .flat_map(|(g, members)| members.iter().filter(|m| *m == id).map(move |_| g.clone()))
            .collect();
        in_groups.sort();
        if in_groups != [p.group] {
            v.wrong.insert(email.into(), in_groups);
        }
        let mine = rows.iter().filter(|r| r.email == email).count();
        let right = rows
            .iter()
            .filter(|r| r.email == email && r.notion_user_id == *id)
            .count();
        if mine != 1 || right != 1 {
            v.unaligned.insert(email.into(), mine);
        }
    }
    let journal = Journal::open_read_only(&dir.join("queues.log"))?;
    for q in ["provision-dlq", "align-dlq"] {
        for (_, m) in journal.all::<Message>(q) {
            let reason = m
                .attributes
                .get(ATTR_REASON)
                .cloned()
                .unwrap_or_else(|| "<no reason>".into());
            v.parked.push((q.into(), reason));
        }
    }
    v.queued = journal.all::<Message>("provision").len() + journal.all::<Message>("align").len();
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_dev_loses_no_buyer_on_a_strict_server() -> Result<()> {
    let strict = StrictScim::start(&GROUPS).await?;
    let base = config_file::load(None)?;
    let sim = sales_simulator(&base).await?;
    let notion_url = sim.notion_base_url();
    let sales = SalesDb::new(&base, notion_url.clone());

    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let dir: PathBuf = std::env::temp_dir().join(format!("enroll-strict-crash-{run}"));
    std::fs::create_dir_all(&dir)?;
    // The shipped example, with only the two endpoints changed; everything else is default.
    let toml = config_file::EXAMPLE
        .replace(
            "base_url = \"https://api.notion.com/scim/v2\"",
            &format!("base_url = \"{}\"", strict.base_url),
        )
        .replace(
            "base_url = \"https://api.notion.com/v1\"",
            &format!("base_url = \"{notion_url}\""),
        );
    ensure!(toml.contains(&strict.base_url) && toml.contains(&notion_url));
    let config_path = dir.with_extension("toml");
    std::fs::write(&config_path, &toml)?;
    let config = Config::from_toml(&toml, |_| None)?;
    ensure!(
        config.scim.user_filter_attribute == "userName",
        "the strict server filters users by userName"
    );

    let buys = purchases(&config, &run);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut dev = Some(Dev::start(&dir, &config_path, &strict, 1).await?);
    let mut url = dev.as_ref().map(|d| d.url.clone()).unwrap_or_default();
    let mut refused = Vec::new();
    for (i, p) in buys.iter().enumerate() {
        if i == KILL_AT {
            // Mid-flow: the worker holds claims on a batch and the backlog is still growing.
            if let Some(mut d) = dev.take() {
                d.kill_hard();
            }
        }
        if i == RESTART_AT {
            dev = Some(Dev::start(&dir, &config_path, &strict, 2).await?);
            url = dev.as_ref().map(|d| d.url.clone()).unwrap_or_default();
        }
        if !post(&http, &url, &config, p).await {
            refused.push(i);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What a platform does with a refused delivery: send it again, same event id.
    let mut still_refused = Vec::new();
    for &i in &refused {
        if !post(&http, &url, &config, &buys[i]).await {
            still_refused.push(i);
        }
    }
    ensure!(
        still_refused.is_empty(),
        "resent deliveries refused again: {still_refused:?}"
    );
    ensure!(
        refused.len() >= RESTART_AT - KILL_AT,
        "deliveries during the outage must have been refused: {refused:?}"
    );

    // No operator action: wait for the restarted dev to finish on its own.
    let started = std::time::Instant::now();
    let mut last = verdict(&strict, &sales, &dir, &buys).await?;
    while !last.done() && started.elapsed() < SETTLE_TIMEOUT {
        tokio::time::sleep(Duration::from_secs(2)).await;
        last = verdict(&strict, &sales, &dir, &buys).await?;
    }
    let took = started.elapsed();
    drop(dev);
    let logs = format!(
        "{} and {}",
        dir.with_extension("dev-1.log").display(),
        dir.with_extension("dev-2.log").display()
    );
    ensure!(
        last.done(),
        "after {took:?} ({} of {BUYERS} refused and resent; logs in {logs}):\n\
         not in exactly their Group: {:?}\nwithout one sales record: {:?}\n\
         extra users: {}, stray members: {}, still queued: {}\nparked ({}): {:?}",
        refused.len(),
        last.wrong,
        last.unaligned,
        last.extra_users,
        last.stray_members,
        last.queued,
        last.parked.len(),
        last.parked,
    );
    println!(
        "crash scenario settled {took:?} after the last delivery; {} deliveries refused and resent",
        refused.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&config_path);
    for n in 1..=2 {
        let _ = std::fs::remove_file(dir.with_extension(format!("dev-{n}.log")));
    }
    Ok(())
}
