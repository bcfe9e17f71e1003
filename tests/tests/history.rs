//! Every buyer's history: the DynamoDB item collection against moto (and provision writing
//! it), one purchase through the real `enroll dev` binary read back with `enroll status --json`,
//! and the lifecycle on the embedded runtime: a duplicate delivery, expiry, `enroll link`, a
//! replay from the dead-letter queue through the admin listener, and `enroll audit --fix`.

use anyhow::{Context, Result};
use chrono::{DateTime, Months, TimeDelta, Utc};
use enroll_aws::DynamoHistory;
use enroll_core::event::EventKind;
use enroll_core::history::{HistoryEntry, Stage};
use enroll_core::ids::{BuyerEmail, Platform};
use enroll_core::ledger::BuyerRecord;
use enroll_core::ports::{HistoryLog, LedgerStore};
use enroll_core::timings::Timings;
use enroll_embedded::config_file;
use enroll_embedded::runtime::{Options, Runtime};
use enroll_lab::send;
use enroll_platforms::Sample;
use enroll_simulator::{FaultAction, FaultRule, Faults, SimConfig, SimHandle};
use enroll_tests::enroll_bin::{self, Dev};
use enroll_tests::moto;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn email(address: &str) -> BuyerEmail {
    BuyerEmail::parse(address).unwrap()
}

fn whats(entries: &[HistoryEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.what.as_str()).collect()
}

#[tokio::test]
async fn dynamodb_keeps_each_buyers_history_under_the_buyer_in_time_order() -> Result<()> {
    let store = moto::store().await?;
    let history = DynamoHistory::new(store.client.clone(), &store.table).with_retention(30);
    let (ada, bob) = (email("ada@example.com"), email("bob@example.com"));
    store.put_buyer(&BuyerRecord::new(ada.clone())).await?;
    let t = Utc::now() - TimeDelta::minutes(10);
    let later = t + TimeDelta::seconds(2);
    history
        .append(
            &ada,
            &[
                HistoryEntry::new(later, Stage::Provision, "applied"),
                HistoryEntry::new(later, Stage::Provision, "added to Group Notion Mastery"),
            ],
        )
        .await?;
    // Written after, but the ingest time it carries is earlier.
    history
        .append(&ada, &[HistoryEntry::new(t, Stage::Ingest, "received")])
        .await?;
    history
        .append(&bob, &[HistoryEntry::new(t, Stage::Align, "bob's")])
        .await?;
    // Past its retention but not yet deleted by TTL: not shown.
    let old = Utc::now() - TimeDelta::days(31);
    history
        .append(&ada, &[HistoryEntry::new(old, Stage::Ingest, "too old")])
        .await?;

    let read = history.history(&ada).await?;
    assert_eq!(
        whats(&read),
        ["received", "applied", "added to Group Notion Mastery"]
    );
    assert_eq!(read[0].stage, Stage::Ingest);
    assert_eq!(whats(&history.history(&bob).await?), ["bob's"]);
    assert!(history.history(&email("cy@example.com")).await?.is_empty());

    // The ledger does not see the history items beside the buyer.
    assert_eq!(store.buyer(&ada).await?.map(|b| b.email), Some(ada.clone()));
    assert_eq!(store.all_buyers().await?.len(), 1);

    // Every history item carries the TTL attribute: its last entry's time plus the retention.
    let items = store
        .client
        .query()
        .table_name(&store.table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :h)")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S("buyer#ada@example.com".into()),
        )
        .expression_attribute_values(
            ":h",
            aws_sdk_dynamodb::types::AttributeValue::S("hist#".into()),
        )
        .send()
        .await?
        .items
        .unwrap_or_default();
    assert_eq!(items.len(), 3);
    let expirations: Vec<i64> = items
        .iter()
        .map(|i| i["expiration"].as_n().unwrap().parse().unwrap())
        .collect();
    let month = (t + TimeDelta::days(30)).timestamp();
    assert!(expirations.contains(&(later + TimeDelta::days(30)).timestamp()));
    assert!(expirations.contains(&month));
    Ok(())
}

// --- the real `enroll dev` binary ---

fn scratch_dir(name: &str) -> PathBuf {
    enroll_bin::scratch_dir(&format!("history-{name}"))
}

/// `enroll` with no tokens, so the simulator stands in for Notion.
fn enroll(args: &[&str]) -> Result<Command> {
    enroll_bin::simulated(args)
}

fn run(args: &[&str]) -> Result<String> {
    let out = enroll(args)?.output().context("running enroll")?;
    anyhow::ensure!(
        out.status.success(),
        "enroll {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// `enroll status <query> --json`, as raw JSON: the test reads the documented field names.
fn status_json(dir: &Path, query: &str) -> Result<serde_json::Value> {
    let out = run(&[
        "status",
        query,
        "--json",
        "--data-dir",
        dir.to_str().unwrap(),
    ])?;
    Ok(serde_json::from_str(&out)?)
}

fn history_of(report: &serde_json::Value) -> Vec<(DateTime<Utc>, String, String)> {
    report["buyers"][0]["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| {
                    let at = e["at"].as_str().expect("`at` is a string");
                    (
                        DateTime::parse_from_rfc3339(at)
                            .expect("`at` is RFC 3339")
                            .with_timezone(&Utc),
                        e["stage"].as_str().unwrap_or_default().to_owned(),
                        e["what"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn check_one_purchase(history: &[(DateTime<Utc>, String, String)], buyer: &str) {
    let first = |stage: &str| {
        history
            .iter()
            .position(|(_, s, _)| s == stage)
            .unwrap_or_else(|| panic!("no {stage} entry in {history:?}"))
    };
    let (ingest, provision, align) = (first("ingest"), first("provision"), first("align"));
    assert!(ingest < provision && provision < align, "{history:?}");
    assert!(
        history.windows(2).all(|w| w[0].0 <= w[1].0),
        "entries are in time order: {history:?}"
    );
    assert!(history[ingest]
        .2
        .contains("received and verified (stripe purchase)"));
    assert!(history
        .iter()
        .any(|(_, _, w)| w == "added to Group Formula Fundamentals 2.0"));
    assert!(history.iter().any(|(_, _, w)| w == "sales record created"));
    for (_, _, what) in history {
        assert!(!what.contains('@'), "an address in the history: {what}");
        assert!(!what.contains(buyer));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_purchase_through_enroll_dev_shows_ingest_provision_and_align_in_status() -> Result<()>
{
    let dir = scratch_dir("dev");
    let d = dir.clone();
    let dev = tokio::task::spawn_blocking(move || Dev::start(&d, &[])).await??;
    let buyer = "ada.history@example.com";
    let url = format!("{}/webhooks/stripe", dev.record.webhook_url);
    let dir_arg = dir.to_str().unwrap().to_owned();
    let buyer_arg = buyer.to_owned();
    let history = tokio::task::spawn_blocking(move || -> Result<_> {
        run(&[
            "send",
            "stripe",
            "--product",
            "price_1FormulaFundamentals",
            "--email",
            &buyer_arg,
            "--url",
            &url,
        ])?;
        // Through the running dev's admin listener, until align has written the record.
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let report = status_json(Path::new(&dir_arg), &buyer_arg)?;
            let history = history_of(&report);
            if history.iter().any(|(_, s, _)| s == "align") {
                return Ok(history);
            }
            anyhow::ensure!(
                Instant::now() < until,
                "the history never reached align: {report}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    })
    .await??;
    check_one_purchase(&history, buyer);

    let d = dir.clone();
    let text = tokio::task::spawn_blocking(move || {
        run(&["status", buyer, "--data-dir", d.to_str().unwrap()])
    })
    .await??;
    assert!(text.contains("history:"), "{text}");
    assert!(text.contains("received and verified"), "{text}");

    // With dev stopped, the same history comes from the data directory.
    tokio::task::spawn_blocking(move || dev.interrupt()).await??;
    let d = dir.clone();
    let offline = tokio::task::spawn_blocking(move || status_json(&d, buyer)).await??;
    assert_eq!(history_of(&offline), history);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

// --- the lifecycle on the embedded runtime ---

async fn runtime() -> Arc<Runtime> {
    let mut config = config_file::load(None).expect("the example configuration is valid");
    config.rate.requests_per_second = 200.0;
    config.rate.burst = 50;
    Runtime::start(Options {
        config,
        data_dir: None,
        timings: Timings::default(),
        simulate: true,
    })
    .await
    .expect("runtime starts")
}

async fn drain(rt: &Runtime) {
    rt.run_until_idle().await.expect("the queues drain");
}

async fn deliver(rt: &Runtime, sample: &Sample) {
    let secret = send::signing_secret(&rt.config, Platform::Stripe).unwrap();
    let out = enroll_platforms::sample(Platform::Stripe, sample, &secret, Utc::now());
    let req = ingest::WebhookRequest {
        method: "POST".into(),
        path: "/webhooks/stripe".into(),
        query: out.query.clone(),
        headers: out.headers.clone(),
        body: out.body.clone(),
    };
    assert_eq!(rt.ingest.handle(&req, Utc::now()).await.status, 202);
    drain(rt).await;
}

async fn history(rt: &Runtime, address: &str) -> Vec<HistoryEntry> {
    let report = enroll_embedded::status::lookup(rt, address, Utc::now())
        .await
        .unwrap();
    report.buyers[0].history.clone()
}

#[tokio::test]
async fn duplicates_expiry_and_link_are_in_the_buyers_history() {
    let rt = runtime().await;
    let ada = "ada.life@example.com";
    let purchase = Sample {
        kind: EventKind::Purchase,
        product: "price_1NotionMasteryYear".into(),
        email: ada.into(),
        name: Some("Ada".into()),
        order_id: Some("cs_life_1".into()),
        event_id: Some("evt_life_1".into()),
    };
    deliver(&rt, &purchase).await;
    deliver(&rt, &purchase).await;
    let h = history(&rt, ada).await;
    let provision: Vec<&str> = h
        .iter()
        .filter(|e| e.stage == Stage::Provision)
        .map(|e| e.what.as_str())
        .collect();
    assert_eq!(
        provision,
        [
            "applied (purchase of order stripe:cs_life_1)",
            "member created",
            "added to Group Notion Mastery",
            "duplicate delivery"
        ]
    );
    assert_eq!(h.iter().filter(|e| e.stage == Stage::Ingest).count(), 2);

    // A year on, the expiry pass hands over to alumni access.
    let later = Utc::now().checked_add_months(Months::new(12)).unwrap() + TimeDelta::days(2);
    rt.expire(later).await.unwrap();
    let h = history(&rt, ada).await;
    let expiry: Vec<&str> = h
        .iter()
        .filter(|e| e.stage == Stage::Expire)
        .map(|e| e.what.as_str())
        .collect();
    assert_eq!(
        expiry,
        ["access changed by expiry: added to Group Notion Mastery Alumni, removed from Group Notion Mastery"]
    );

    // The seller links a second email: both buyers' histories say so, with addresses masked.
    let work = "ada.work@example.com";
    rt.provisioner
        .link(&email(work), &email(ada), false, Utc::now())
        .await
        .unwrap();
    let h = history(&rt, ada).await;
    let operator: Vec<&str> = h
        .iter()
        .filter(|e| e.stage == Stage::Operator)
        .map(|e| e.what.as_str())
        .collect();
    assert_eq!(
        operator,
        ["enroll link: a***@e***.com linked to this buyer"]
    );
    assert!(h.windows(2).all(|w| w[0].at <= w[1].at));
    let alias = history(&rt, work).await;
    assert_eq!(
        whats(&alias),
        ["enroll link: linked to buyer a***@e***.com"]
    );
    for e in h.iter().chain(&alias) {
        assert!(!e.what.contains(ada) && !e.what.contains(work), "{e:?}");
    }
}

#[tokio::test]
async fn a_replay_from_the_dead_letter_queue_is_in_the_buyers_history() {
    let rt = runtime().await;
    let sim = rt.simulator.as_ref().unwrap();
    // SCIM refuses the Group PATCH for good: the purchase is parked.
    sim.set_faults(Faults {
        rules: vec![FaultRule {
            method: Some("PATCH".into()),
            path_prefix: Some("/scim/v2/Groups".into()),
            probability: 1.0,
            remaining: None,
            action: FaultAction::Status {
                code: 403,
                retry_after_secs: None,
            },
        }],
        seed: 7,
    });
    let buyer = "ada.replay@example.com";
    deliver(
        &rt,
        &Sample {
            kind: EventKind::Purchase,
            product: "price_1FormulaFundamentals".into(),
            email: buyer.into(),
            name: None,
            order_id: Some("pi_replay".into()),
            event_id: Some("evt_replay".into()),
        },
    )
    .await;
    assert_eq!(rt.provision_dlq().len(), 1);
    assert!(
        history(&rt, buyer).await.is_empty(),
        "a parked event applied nothing"
    );

    // The operator fixes the cause and replays through `enroll dev`'s admin listener.
    sim.set_faults(Faults::default());
    let token = enroll_core::config::Secret::new("history-test-token");
    let (addr, server) = enroll_embedded::admin::serve_admin(
        rt.clone(),
        token.clone(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let req = enroll_core::dead_letters::ReplayRequest {
        selection: enroll_core::dead_letters::Selection {
            key: Some("stripe:evt_replay".into()),
            reason: None,
        },
        ..Default::default()
    };
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/admin/dlq/replay"))
        .bearer_auth(token.expose())
        .json(&req)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    drain(&rt).await;
    server.abort();

    let h = history(&rt, buyer).await;
    let replayed = h
        .iter()
        .position(|e| {
            e.stage == Stage::Operator
                && e.what == "replayed from the dead-letter queue (provision stripe:evt_replay)"
        })
        .unwrap_or_else(|| panic!("no replay entry: {h:?}"));
    let applied = h
        .iter()
        .position(|e| e.stage == Stage::Provision && e.what.starts_with("applied"))
        .unwrap_or_else(|| panic!("not applied: {h:?}"));
    assert!(replayed < applied, "{h:?}");
}

// --- a Provisioner on DynamoDB, and `enroll audit --fix` ---

const SCIM_TOKEN: &str = "history-scim-token";

async fn simulator() -> Result<(SimHandle, enroll_core::config::Config)> {
    let mut config = config_file::load(None)?;
    let sim = enroll_simulator::start(
        SimConfig {
            scim_token: SCIM_TOKEN.into(),
            notion_token: "history-notion-token".into(),
            scim_rate_limit: None,
            notion_rate_limit: None,
            admin_token: None,
            max_members_per_patch: None,
            state: enroll_embedded::seed::from_config(&config),
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    config.scim.base_url = sim.scim_base_url();
    config.scim.token = enroll_core::config::Secret::new(SCIM_TOKEN);
    config.rate.requests_per_second = 1000.0;
    config.rate.burst = 100;
    Ok((sim, config))
}

fn purchase(email_address: &str, id: &str) -> enroll_core::event::OrderEvent {
    use enroll_core::ids::{EventId, EventKey, OrderId, OrderKey, PlatformProductRef};
    enroll_core::event::OrderEvent {
        key: EventKey::new(
            Platform::Stripe,
            EventId::parse(&format!("evt_{id}")).unwrap(),
        ),
        kind: EventKind::Purchase,
        order: OrderKey {
            platform: Platform::Stripe,
            order_id: OrderId::parse(&format!("cs_{id}")).unwrap(),
        },
        buyer: Some(enroll_core::event::Buyer {
            email: email(email_address),
            name: None,
        }),
        items: vec![PlatformProductRef::parse("price_1NotionMasteryYear").unwrap()],
        occurred_at: Utc::now(),
        accepted_at: Some(Utc::now() - TimeDelta::seconds(1)),
    }
}

#[tokio::test]
async fn provision_on_dynamodb_records_the_ingest_time_and_each_group_change() -> Result<()> {
    let (_sim, config) = simulator().await?;
    let store = Arc::new(moto::store().await?);
    let history = Arc::new(
        DynamoHistory::new(store.client.clone(), &store.table)
            .with_retention(config.history.retention_days),
    );
    let scim = enroll_notion::ScimClient::new(
        &config.scim,
        enroll_notion::rate::from_config(config.rate.scim()),
    )
    .map_err(|f| anyhow::anyhow!(f.reason))?;
    let align = enroll_embedded::queue::EmbeddedQueue::new(
        "align",
        Arc::new(std::sync::Mutex::new(
            enroll_embedded::journal::Journal::in_memory(),
        )),
        enroll_embedded::queue::QueueSettings::default(),
        None,
    );
    let provisioner = provision::Provisioner::new(
        Arc::new(config),
        store.clone(),
        store.clone(),
        Arc::new(scim),
        align,
    )
    .with_history(history.clone());
    let event = purchase("ada.dynamo@example.com", "dyn_1");
    let process = |e: enroll_core::event::OrderEvent| {
        let provisioner = &provisioner;
        async move {
            let now = Utc::now();
            provisioner
                .process(&e, now, now + TimeDelta::seconds(60))
                .await
                .map_err(|f| anyhow::anyhow!(f.reason))
        }
    };
    process(event.clone()).await?;
    // The platform delivers it again later; ingest stamps each delivery as it accepts it.
    process(enroll_core::event::OrderEvent {
        accepted_at: Some(Utc::now()),
        ..event.clone()
    })
    .await?;
    let h = history.history(&email("ada.dynamo@example.com")).await?;
    let lines: Vec<(Stage, &str)> = h.iter().map(|e| (e.stage, e.what.as_str())).collect();
    assert_eq!(
        lines,
        [
            (Stage::Ingest, "received and verified (stripe purchase)"),
            (
                Stage::Provision,
                "applied (purchase of order stripe:cs_dyn_1)"
            ),
            (Stage::Provision, "member created"),
            (Stage::Provision, "added to Group Notion Mastery"),
            (Stage::Ingest, "received and verified (stripe purchase)"),
            (Stage::Provision, "duplicate delivery"),
        ]
    );
    assert_eq!(h[0].at, event.accepted_at.unwrap());
    Ok(())
}

#[tokio::test]
async fn audit_fix_is_in_the_buyers_history() -> Result<()> {
    let (sim, config) = simulator().await?;
    let store = enroll_embedded::store::FileStore::in_memory();
    let scim = || {
        enroll_notion::ScimClient::new(
            &config.scim,
            enroll_notion::rate::from_config(config.rate.scim()),
        )
        .map_err(|f| anyhow::anyhow!(f.reason))
    };
    let align = enroll_embedded::queue::EmbeddedQueue::new(
        "align",
        Arc::new(std::sync::Mutex::new(
            enroll_embedded::journal::Journal::in_memory(),
        )),
        enroll_embedded::queue::QueueSettings::default(),
        None,
    );
    let shared = Arc::new(store.clone());
    let provisioner = provision::Provisioner::new(
        Arc::new(config.clone()),
        shared.clone(),
        shared.clone(),
        Arc::new(scim()?),
        align,
    )
    .with_history(shared);
    let event = purchase("ada.audit@example.com", "audit_1");
    let now = Utc::now();
    provisioner
        .process(&event, now, now + TimeDelta::seconds(60))
        .await
        .map_err(|f| anyhow::anyhow!(f.reason))?;
    // Someone takes the buyer out of the Group by hand: drift the audit finds and fixes.
    let mut state = sim.state();
    for g in &mut state.groups {
        g.members.clear();
    }
    sim.set_state(state);
    let history = store
        .clone()
        .with_history_retention(config.history.retention_days);
    let ledger = enroll_ops::workspace::Ledger::new(store.clone(), std::sync::Arc::new(history));
    let ws = enroll_ops::workspace::Workspace::new(config.clone(), ledger, scim()?);
    let report = enroll_ops::audit::run(
        &ws,
        &enroll_ops::audit::AuditOptions {
            fix: true,
            remove_unknown: false,
            yes: false,
            max_removal_share: enroll_ops::audit::DEFAULT_MAX_REMOVAL_SHARE,
        },
        Utc::now(),
        &enroll_ops::backfill::spinner(false),
    )
    .await?;
    assert!(report.fix.is_some_and(|f| f.applied && f.added == 1));
    let h = store.history(&email("ada.audit@example.com")).await?;
    let last = h.last().expect("history");
    assert_eq!(
        (last.stage, last.what.as_str()),
        (
            Stage::Operator,
            "enroll audit --fix: added to Group Notion Mastery"
        )
    );
    Ok(())
}
