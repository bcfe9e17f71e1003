//! The operator tools against the simulator, the embedded pipeline and moto: `dlq list` consumes
//! nothing, `dlq replay` after an outage completes each parked event exactly once, a killed
//! `backfill apply` resumes without repeating a request, and `audit` finds members with no
//! purchase and refuses a mass removal without `--yes`.

use anyhow::{Context, Result};
use chrono::Utc;
use enroll_aws::dead_letters::SqsDeadLetterAdmin;
use enroll_aws::SqsDeadLetters;
use enroll_core::config::{Config, Secret};
use enroll_core::dead_letters::{DeadLetterAdmin, QueueStage, ReplayRequest, Selection};
use enroll_core::event::{Buyer, EventKind, OrderEvent};
use enroll_core::ids::{
    BuyerEmail, EventId, EventKey, NotionUserId, OrderId, OrderKey, Platform, PlatformProductRef,
    ProductId,
};
use enroll_core::ledger::BuyerRecord;
use enroll_core::ports::{DeadLetters, LedgerStore, ParkedReason};
use enroll_core::timings::Timings;
use enroll_embedded::dead_letters::EmbeddedDeadLetters;
use enroll_embedded::journal::Journal;
use enroll_embedded::queue::{EmbeddedQueue, QueueDeadLetters, QueueSettings};
use enroll_embedded::runtime::{Options, Runtime};
use enroll_ops::audit::{self, AuditOptions};
use enroll_ops::backfill::{self, SaleRow};
use enroll_ops::workspace::{Ledger, Workspace};
use enroll_simulator::{FaultAction, FaultRule, Faults, SimConfig, SimHandle, SimState, User};
use enroll_tests::moto;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SCIM_TOKEN: &str = "ops-test-scim-token";
const NOTION_TOKEN: &str = "ops-test-notion-token";
const NM_PRICE: &str = "price_1NotionMasteryYear";
const NM_GROUP: &str = "Notion Mastery";

fn example_config() -> Config {
    enroll_embedded::config_file::load(None).expect("the example configuration")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "enroll-ops-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn user(email: &str) -> User {
    serde_json::from_value(json!({ "user_name": email })).unwrap()
}

/// A simulator with the example's Groups and database, plus `members`.
async fn simulator(members: &[String]) -> Result<SimHandle> {
    let mut state: SimState = enroll_embedded::seed::from_config(&example_config());
    state.users.extend(members.iter().map(|m| user(m)));
    Ok(enroll_simulator::start(
        SimConfig {
            scim_token: SCIM_TOKEN.into(),
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

fn pointed_at(sim: &SimHandle) -> Config {
    let mut cfg = example_config();
    cfg.scim.base_url = sim.scim_base_url();
    cfg.scim.token = Secret::new(SCIM_TOKEN);
    cfg.notion.base_url = sim.notion_base_url();
    cfg.notion.token = Secret::new(NOTION_TOKEN);
    cfg
}

/// The ledger on DynamoDB, with buyers' histories beside it, as a stack's operator reaches it.
fn dynamo_ledger(store: enroll_aws::DynamoStore) -> Ledger {
    let history = enroll_aws::DynamoHistory::new(store.client.clone(), &store.table);
    Ledger::new(store, Arc::new(history))
}

fn workspace(sim: &SimHandle, ledger: Ledger) -> Workspace {
    let cfg = pointed_at(sim);
    let budget = Arc::new(enroll_notion::rate::TokenBucket::new(1000.0, 100));
    let scim = enroll_notion::ScimClient::new(&cfg.scim, budget).unwrap();
    Workspace::new(cfg, ledger, scim)
}

fn purchase(i: usize, email: &str) -> OrderEvent {
    OrderEvent {
        key: EventKey::new(
            Platform::Stripe,
            EventId::parse(&format!("evt_ops_{i}")).unwrap(),
        ),
        kind: EventKind::Purchase,
        order: OrderKey {
            platform: Platform::Stripe,
            order_id: OrderId::parse(&format!("cs_ops_{i}")).unwrap(),
        },
        buyer: Some(Buyer {
            email: BuyerEmail::parse(email).unwrap(),
            name: None,
        }),
        items: vec![PlatformProductRef::parse(NM_PRICE).unwrap()],
        occurred_at: Utc::now(),
        accepted_at: None,
    }
}

fn parked(i: usize) -> ParkedReason {
    ParkedReason {
        reason: format!("SCIM add members: 503 outage {i}"),
        event_key: Some(format!("stripe:evt_{i}")),
        buyer: Some("a***@e***.com".into()),
    }
}

/// Group PATCH bodies the simulator saw: (group path, op, sorted member ids).
fn group_patches(sim: &SimHandle) -> Vec<(String, String, Vec<String>)> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.starts_with("/scim/v2/Groups/"))
        .flat_map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            let ops = body["Operations"].as_array().cloned().unwrap_or_default();
            ops.into_iter()
                .map(|op| {
                    let mut ids: Vec<String> = op["value"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v["value"].as_str().map(str::to_owned))
                        .collect();
                    ids.sort();
                    (
                        r.path.clone(),
                        op["op"].as_str().unwrap_or("").to_lowercase(),
                        ids,
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn dlq_list_consumes_nothing_on_the_embedded_queues() -> Result<()> {
    let journal = Arc::new(Mutex::new(Journal::in_memory()));
    let settings = QueueSettings::default();
    let dlq = EmbeddedQueue::new("provision-dlq", journal.clone(), settings, None);
    let source = EmbeddedQueue::new("provision", journal, settings, Some(dlq.clone()));
    let dead = QueueDeadLetters {
        dlq: dlq.clone(),
        source: "provision".into(),
        tenant: None,
    };
    for i in 0..3 {
        dead.park(&format!("body {i}"), &parked(i)).await?;
    }
    let before = dlq.peek();
    let pair = EmbeddedDeadLetters::new(QueueStage::Provision, source.clone(), dlq.clone());
    for _ in 0..2 {
        let listed = pair.list(Utc::now()).await?;
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].event_key.as_deref(), Some("stripe:evt_0"));
        assert!(listed[0].reason.as_deref().unwrap().contains("503 outage"));
    }
    // Same messages, receive counts and visibility untouched, nothing sent anywhere.
    assert_eq!(dlq.peek(), before);
    assert!(source.is_empty());
    Ok(())
}

#[tokio::test]
async fn dlq_list_on_sqs_leaves_every_message_there_and_replay_moves_what_is_selected() -> Result<()>
{
    let queues = moto::queue_with_dlq(5, 30).await?;
    let dead = SqsDeadLetters::new(queues.client.clone(), &queues.dlq_url, "provision");
    for i in 0..3 {
        dead.park(&format!("{{\"n\":{i}}}"), &parked(i)).await?;
    }
    let pair = SqsDeadLetterAdmin {
        stage: QueueStage::Provision,
        client: queues.client.clone(),
        source_url: queues.url.clone(),
        dlq_url: queues.dlq_url.clone(),
        move_task: false,
    };
    let first = pair.list(Utc::now()).await?;
    let second = pair.list(Utc::now()).await?;
    assert_eq!(first.len(), 3);
    assert_eq!(second.len(), 3, "a listing must leave the messages visible");
    let keys: BTreeSet<_> = second.iter().filter_map(|m| m.event_key.clone()).collect();
    assert_eq!(keys.len(), 3);
    // SQS has no peek: each listing is one receive.
    assert!(second.iter().all(|m| m.receive_count == 2));

    let one = pair
        .replay(
            &ReplayRequest {
                queue: Some(QueueStage::Provision),
                selection: Selection {
                    key: Some("stripe:evt_1".into()),
                    reason: None,
                },
                rate: None,
                dry_run: false,
            },
            None,
            Utc::now(),
        )
        .await?;
    assert_eq!(one.moved_count, 1);
    assert_eq!(one.kept, 2);
    assert_eq!(one.method, "receive-send-delete");
    let rest = pair
        .replay(&ReplayRequest::default(), None, Utc::now())
        .await?;
    assert_eq!(rest.moved_count, 2);
    assert!(pair.list(Utc::now()).await?.is_empty());
    // The source queue seen as if it were a dead-letter queue: what the replay sent there.
    let source_view = SqsDeadLetterAdmin {
        stage: QueueStage::Provision,
        client: queues.client.clone(),
        source_url: queues.dlq_url.clone(),
        dlq_url: queues.url.clone(),
        move_task: false,
    };
    let bodies = source_view.list(Utc::now()).await?;
    assert_eq!(
        bodies.len(),
        3,
        "each parked message is in the source queue once"
    );
    Ok(())
}

#[tokio::test]
async fn replay_after_an_outage_completes_every_parked_event_exactly_once() -> Result<()> {
    let rt = Runtime::start(Options {
        config: example_config(),
        data_dir: None,
        timings: Timings::quick(2),
        simulate: true,
    })
    .await?;
    let sim = rt.simulator.as_ref().context("simulated workspace")?;
    sim.set_faults(Faults {
        rules: vec![FaultRule {
            method: None,
            path_prefix: Some("/scim/v2".into()),
            probability: 1.0,
            remaining: None,
            action: FaultAction::Status {
                code: 503,
                retry_after_secs: None,
            },
        }],
        seed: 1,
    });
    let emails: Vec<String> = (0..4).map(|i| format!("replay{i}@example.com")).collect();
    for (i, e) in emails.iter().enumerate() {
        rt.provision_queue
            .send_with(&serde_json::to_string(&purchase(i, e))?, BTreeMap::new())?;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = rt.spawn_workers(stop_rx);
    assert!(
        rt.settle(Duration::from_secs(60)).await,
        "the outage parks every event"
    );
    let admins = rt.dead_letters();
    let parked =
        enroll_core::dead_letters::list_all(&admins, Some(QueueStage::Provision), Utc::now())
            .await?;
    assert_eq!(parked.len(), 4, "{parked:?}");
    assert!(sim.group_members(NM_GROUP).is_empty());

    sim.set_faults(Faults::default());
    sim.reset_counters();
    let pace = enroll_embedded::pace(Some(50.0))?.context("a pace")?;
    let reports = enroll_core::dead_letters::replay_all(
        &admins,
        &ReplayRequest {
            queue: Some(QueueStage::Provision),
            selection: Selection::default(),
            rate: Some(50.0),
            dry_run: false,
        },
        Some(&pace),
        Some(&rt.store),
        Utc::now(),
    )
    .await?;
    assert_eq!(reports[0].moved_count, 4);
    assert!(rt.settle(Duration::from_secs(60)).await);
    let _ = stop_tx.send(true);
    for w in workers {
        w.await?;
    }

    assert!(
        rt.provision_dlq().is_empty(),
        "{:?}",
        rt.provision_dlq().peek()
    );
    assert!(rt.align_dlq().is_empty(), "{:?}", rt.align_dlq().peek());
    let members: BTreeSet<String> = sim.group_members(NM_GROUP).into_iter().collect();
    assert_eq!(members.len(), 4);
    for e in &emails {
        let u = sim.user_by_email(e).context("member created")?;
        assert!(members.contains(&u.id));
    }
    // Exactly once: one create per buyer and each buyer in one Group PATCH.
    let counters = sim.counters();
    assert_eq!(counters.get("POST /scim/v2/Users").copied(), Some(4));
    let patched: Vec<String> = group_patches(sim)
        .into_iter()
        .filter(|(_, op, _)| op == "add")
        .flat_map(|(_, _, ids)| ids)
        .collect();
    let distinct: BTreeSet<&String> = patched.iter().collect();
    assert_eq!(patched.len(), 4, "{patched:?}");
    assert_eq!(distinct.len(), 4);
    Ok(())
}

fn enroll(bin: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("ENROLL_SCIM_TOKEN", SCIM_TOKEN)
        .env("ENROLL_NOTION_TOKEN", NOTION_TOKEN)
        .env_remove("ENROLL_TABLE")
        .env_remove("ENROLL_STACK")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// Runs the command to its end off the runtime, which keeps serving the simulator meanwhile.
async fn output(mut cmd: Command) -> Result<std::process::Output> {
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_killed_midway_resumes_without_repeating_a_request() -> Result<()> {
    const MEMBERS: usize = 300;
    let emails: Vec<String> = (0..MEMBERS)
        .map(|i| format!("student{i:03}@example.com"))
        .collect();
    let sim = simulator(&emails).await?;
    let dir = scratch_dir("apply");
    let config = dir.join("enroll.toml");
    std::fs::write(
        &config,
        enroll_embedded::config_file::EXAMPLE
            .replace("https://api.notion.com/scim/v2", &sim.scim_base_url())
            .replace("https://api.notion.com/v1", &sim.notion_base_url()),
    )?;
    let mut csv = String::from("Email,SKU,Order,Date\n");
    for (i, e) in emails.iter().enumerate() {
        // Upper case in the export: matching ignores case.
        csv.push_str(&format!(
            "{},NM-2026,#{},2026-03-{:02}\n",
            e.to_uppercase(),
            5000 + i,
            1 + i % 28
        ));
    }
    let sales = dir.join("sales.csv");
    std::fs::write(&sales, csv)?;
    let plan = dir.join("plan.json");
    let data = dir.join("data");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for s in [
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            // Nothing listens there: no `enroll dev` owns the data directory.
            "--url",
            "http://127.0.0.1:9",
        ] {
            v.push(s.to_owned());
        }
        v
    };
    let bin = tokio::task::spawn_blocking(enroll_tests::enroll_bin::path).await??;

    let out = output(enroll(
        &bin,
        &args(&[
            "backfill",
            "plan",
            "--sales",
            sales.to_str().unwrap(),
            "--columns",
            "email=Email,product=SKU,order=Order,date=Date",
            "--platform",
            "shopify",
            "-o",
            plan.to_str().unwrap(),
            "--json",
        ]),
    ))
    .await?;
    anyhow::ensure!(
        out.status.success(),
        "plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(summary["matched_by_email"], MEMBERS);
    assert_eq!(summary["unmapped"], 0);
    assert!(
        sim.group_members(NM_GROUP).is_empty(),
        "a plan changes nothing"
    );

    sim.reset_counters();
    let apply = args(&[
        "backfill",
        "apply",
        plan.to_str().unwrap(),
        "--batch-size",
        "10",
        "--rate",
        "6",
        "--json",
    ]);
    let mut child = enroll(&bin, &apply)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let patches = |sim: &SimHandle| {
        sim.counters()
            .get("PATCH /scim/v2/Groups/{id}")
            .copied()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while patches(&sim) < 8 {
        anyhow::ensure!(Instant::now() < deadline, "apply made no progress");
        anyhow::ensure!(
            child.try_wait()?.is_none(),
            "apply ended before it was killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill()?; // SIGKILL: no chance to save anything more.
    child.wait()?;
    let added_before = sim.group_members(NM_GROUP).len();
    assert!(
        added_before > 0 && added_before < MEMBERS,
        "killed midway ({added_before} added)"
    );

    let out = output(enroll(&bin, &apply)).await?;
    anyhow::ensure!(
        out.status.success(),
        "resumed apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["resumed"], true);

    let members: BTreeSet<String> = sim.group_members(NM_GROUP).into_iter().collect();
    assert_eq!(members.len(), MEMBERS);
    let sent = group_patches(&sim);
    let distinct: BTreeSet<&(String, String, Vec<String>)> = sent.iter().collect();
    assert_eq!(distinct.len(), sent.len(), "a Group PATCH was repeated");
    let mut per_member: BTreeMap<&String, usize> = BTreeMap::new();
    for (_, _, ids) in &sent {
        for id in ids {
            *per_member.entry(id).or_default() += 1;
        }
    }
    assert_eq!(per_member.len(), MEMBERS);
    assert!(
        per_member.values().all(|n| *n == 1),
        "a member was sent twice"
    );
    assert_eq!(sent.len(), MEMBERS / 10);

    // The grants are in the ledger: the pipeline's next event for these buyers agrees.
    let store = enroll_embedded::store::FileStore::open_read_only(&data.join("store.log"))?;
    let buyers = store.buyers();
    assert_eq!(buyers.len(), MEMBERS);
    assert!(buyers
        .iter()
        .all(|b| b.notion_user_id.is_some() && b.applied_groups.len() == 1));
    let orders = store.all_orders();
    assert_eq!(orders.len(), MEMBERS);
    assert!(orders
        .iter()
        .all(|o| o.order.platform == Platform::Shopify && o.grants.len() == 2));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A moto ledger with `buyers` holding Notion Mastery through an order each; returns the store.
async fn ledger_with(sim: &SimHandle, buyers: &[String]) -> Result<enroll_aws::DynamoStore> {
    let store = moto::store().await?;
    let catalog = example_config().catalog;
    let group = enroll_core::ids::GroupId::parse(
        &sim.state()
            .groups
            .iter()
            .find(|g| g.display_name == NM_GROUP)
            .context("seeded Group")?
            .id,
    )?;
    for (i, email) in buyers.iter().enumerate() {
        let row = SaleRow {
            line: i as u64 + 2,
            email: BuyerEmail::parse(email)?,
            name: None,
            order: OrderKey {
                platform: Platform::Stripe,
                order_id: OrderId::parse(&format!("o{i}"))?,
            },
            product: ProductId::parse("notion-mastery")?,
            date: Utc::now(),
        };
        let order = backfill::order_from_rows(None, &row.order, &[&row], &catalog);
        store.put_order(&order).await?;
        let mut b = BuyerRecord::new(row.email.clone());
        b.orders.insert(row.order.clone());
        b.notion_user_id = Some(NotionUserId::parse(
            &sim.user_by_email(email).context("member")?.id,
        )?);
        b.applied_groups.insert(group.clone());
        store.put_buyer(&b).await?;
    }
    Ok(store)
}

fn put_in_group(sim: &SimHandle, emails: &[String]) {
    let mut state = sim.state();
    let ids: Vec<String> = emails
        .iter()
        .map(|e| sim.user_by_email(e).unwrap().id)
        .collect();
    let g = state
        .groups
        .iter_mut()
        .find(|g| g.display_name == NM_GROUP)
        .unwrap();
    g.members.extend(ids);
    sim.set_state(state);
}

#[tokio::test]
async fn audit_finds_members_with_no_purchase_and_drift() -> Result<()> {
    let buyers: Vec<String> = (0..4).map(|i| format!("buyer{i}@example.com")).collect();
    let link: Vec<String> = (0..3).map(|i| format!("friend{i}@example.org")).collect();
    let sim = simulator(&[buyers.clone(), link.clone()].concat()).await?;
    // Three buyers are in the Group; buyer3 was taken out by hand; one invite-link member got in.
    put_in_group(&sim, &[&buyers[..3], &link[..1]].concat());
    let store = ledger_with(&sim, &buyers).await?;
    let ws = workspace(&sim, dynamo_ledger(store));
    let report = audit::run(
        &ws,
        &AuditOptions {
            fix: false,
            remove_unknown: false,
            yes: false,
            max_removal_share: audit::DEFAULT_MAX_REMOVAL_SHARE,
        },
        Utc::now(),
        &backfill::spinner(false),
    )
    .await?;
    let ids = |emails: &[String]| -> BTreeSet<String> {
        emails
            .iter()
            .map(|e| sim.user_by_email(e).unwrap().id)
            .collect()
    };
    let no_purchase: BTreeSet<String> = report
        .no_purchase
        .iter()
        .map(|m| m.user_id.to_string())
        .collect();
    assert_eq!(no_purchase, ids(&link));
    assert!(report
        .no_purchase
        .iter()
        .all(|m| !m.email.contains("friend0@")));
    let unknown: BTreeSet<String> = report
        .unknown_in_managed_groups
        .iter()
        .map(|m| m.user_id.to_string())
        .collect();
    assert_eq!(unknown, ids(&link[..1]));
    assert_eq!(report.drift.len(), 1);
    assert_eq!(report.drift[0].missing, vec![NM_GROUP.to_owned()]);

    // --fix restores the drifted buyer and leaves the unknown member alone.
    sim.reset_counters();
    let fixed = audit::run(
        &ws,
        &AuditOptions {
            fix: true,
            remove_unknown: false,
            yes: false,
            max_removal_share: audit::DEFAULT_MAX_REMOVAL_SHARE,
        },
        Utc::now(),
        &backfill::spinner(false),
    )
    .await?;
    let fix = fixed.fix.context("fix report")?;
    assert!(fix.applied);
    assert_eq!((fix.added, fix.removed), (1, 0));
    let members: BTreeSet<String> = sim.group_members(NM_GROUP).into_iter().collect();
    assert!(ids(&buyers).is_subset(&members));
    assert!(ids(&link[..1]).is_subset(&members));
    Ok(())
}

#[tokio::test]
async fn the_mass_removal_guard_stops_a_fix_that_exceeds_the_share() -> Result<()> {
    let buyers: Vec<String> = (0..2).map(|i| format!("paid{i}@example.com")).collect();
    let link: Vec<String> = (0..18).map(|i| format!("guest{i}@example.org")).collect();
    let everyone = [buyers.clone(), link.clone()].concat();
    let sim = simulator(&everyone).await?;
    put_in_group(&sim, &everyone);
    let store = ledger_with(&sim, &buyers).await?;
    let ws = workspace(&sim, dynamo_ledger(store));
    let opts = |yes| AuditOptions {
        fix: true,
        remove_unknown: true,
        yes,
        max_removal_share: 0.05,
    };
    sim.reset_counters();
    let stopped = audit::run(&ws, &opts(false), Utc::now(), &backfill::spinner(false)).await?;
    assert!(stopped.stopped_by_guard());
    let fix = stopped.fix.context("fix report")?;
    assert_eq!((fix.would_remove_from, fix.managed_members), (18, 20));
    assert!(group_patches(&sim).is_empty(), "the guard sent nothing");
    assert_eq!(sim.group_members(NM_GROUP).len(), 20);

    let done = audit::run(&ws, &opts(true), Utc::now(), &backfill::spinner(false)).await?;
    assert!(done.fix.context("fix report")?.applied);
    assert_eq!(sim.group_members(NM_GROUP).len(), 2);
    Ok(())
}

/// `enroll dlq` on a stack's queues, named by URL: list, delete one event, replay the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_dlq_on_sqs_lists_deletes_and_replays() -> Result<()> {
    let queues = moto::queue_with_dlq(5, 30).await?;
    let dead = SqsDeadLetters::new(queues.client.clone(), &queues.dlq_url, "provision");
    for i in 0..3 {
        dead.park(&format!("{{\"n\":{i}}}"), &parked(i)).await?;
    }
    let bin = tokio::task::spawn_blocking(enroll_tests::enroll_bin::path).await??;
    let dlq = |args: &[&str]| {
        let mut all: Vec<String> = vec!["dlq".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend([
            "--queue".into(),
            "provision".into(),
            "--provision-queue-url".into(),
            queues.url.clone(),
            "--provision-dlq-url".into(),
            queues.dlq_url.clone(),
            "--json".into(),
        ]);
        let mut cmd = enroll(&bin, &all);
        cmd.env("AWS_ENDPOINT_URL", moto::endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1");
        output(cmd)
    };
    let ok = |out: &std::process::Output| -> Result<Value> {
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let listed = ok(&dlq(&["list"]).await?)?;
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

    let deleted = ok(&dlq(&["delete", "--key", "stripe:evt_0"]).await?)?;
    assert_eq!(deleted[0]["moved_count"], 1, "{deleted}");
    assert_eq!(deleted[0]["method"], "delete");
    let replayed = ok(&dlq(&["replay", "--reason", "503 OUTAGE"]).await?)?;
    assert_eq!(replayed[0]["moved_count"], 2, "{replayed}");
    assert_eq!(replayed[0]["method"], "receive-send-delete");
    let left = ok(&dlq(&["list"]).await?)?;
    assert_eq!(left.as_array().map(Vec::len), Some(0), "{left}");

    // The two replayed messages are in the source queue; the deleted one is nowhere.
    let source = SqsDeadLetterAdmin {
        stage: QueueStage::Provision,
        client: queues.client.clone(),
        source_url: queues.dlq_url.clone(),
        dlq_url: queues.url.clone(),
        move_task: false,
    };
    let mut bodies: Vec<String> = source
        .list(Utc::now())
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect();
    bodies.dedup();
    assert_eq!(bodies.len(), 2, "the replayed two, not the deleted one");
    Ok(())
}
