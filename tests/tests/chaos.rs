//! The chaos scenario at CI size, three times.
//!
//! 1. On the embedded default, exactly as an operator runs it: `enroll chaos` as a child
//!    process, which runs `enroll dev` as a grandchild, with the shipped timings, and kills it
//!    with SIGKILL mid-batch.
//! 2. The same with two tenants (`enroll chaos --tenants 2`): one `enroll dev --tenants`
//!    grandchild serves both, each with its own simulated workspace and secrets; the per-tenant
//!    figures of its report say each seller's buyers got exactly their Groups, in their own
//!    workspace only, and that deliveries signed for the other tenant got 401.
//! 3. Smaller, on the AWS adapters against moto: DynamoDB for the ledger and idempotency keys,
//!    SQS for the queues with a real redrive policy. Provision runs in-process through
//!    `provision::batch::run`, as the Lambda handler calls it, with the simulator faulting.
//!    A kill is simulated by dropping the batch's task mid-flight: what matters on AWS is
//!    that the invocation's messages stay in flight and come back after the visibility
//!    timeout with their claims still held, and moto's SQS and DynamoDB are what model that;
//!    a Lambda instance has no local state that a real process kill would also lose.

use anyhow::{Context, Result};
use chrono::Utc;
use enroll_aws::{delete, receive_batch, DynamoStore, ReceiveOptions, SqsDeadLetters, SqsQueue};
use enroll_core::batch::Incoming;
use enroll_core::catalog::GroupRef;
use enroll_core::clock::{Clock, ManualClock};
use enroll_core::config::{Config, RateConfig, Secret};
use enroll_core::ids::BuyerEmail;
use enroll_core::ledger;
use enroll_core::ports::LedgerStore;
use enroll_lab::chaos::{self, fault_rules};
use enroll_notion::scim::ScimClient;
use enroll_simulator::{Faults, SimConfig};
use enroll_tests::{enroll_bin, moto};
use ingest::{Ingest, WebhookRequest};
use provision::Provisioner;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Kills `enroll chaos` and the `enroll dev` it runs when dropped, whatever the test did: the
/// child leads its own process group, which its `enroll dev` children join, and the whole
/// group gets SIGKILL through kill(2). (Not `kill -KILL -<pgid>`: procps-ng 4.0.2's `kill`
/// signals every process when that group is already gone.)
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(pgid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) with a negative pid signals only that process group.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `enroll chaos ARGS --json` to its end (`args` split at spaces); returns its report
/// and its output.
fn run_chaos(args: &str) -> Result<(serde_json::Value, String, std::process::ExitStatus)> {
    let enroll = enroll_bin::path()?;
    let mut cmd = Command::new(enroll);
    cmd.arg("chaos")
        .args(args.split_whitespace())
        .arg("--json")
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = Group(cmd.spawn().context("starting enroll chaos")?);
    let mut out = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().context("stdout")?, &mut out)?;
    let status = child.0.wait()?;
    let r: serde_json::Value = serde_json::from_str(out.trim()).context(out.clone())?;
    Ok((r, out, status))
}

/// A count in a report; `u64::MAX` when missing, so an assertion on it fails.
fn count(r: &serde_json::Value, key: &str) -> u64 {
    r[key].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn chaos_on_the_embedded_default_loses_nothing_and_applies_nothing_twice() -> Result<()> {
    let (r, out, status) = run_chaos(
        "--events 60 --fault-rate 0.2 --duplicates 0.1 --early-refunds 0.05 --kills 2 --seed 7 --timeout-secs 240",
    )?;
    let n = |k: &str| count(&r, k);
    for key in [
        "events",
        "buyers",
        "mismatched_buyers",
        "duplicate_creates",
        "lost",
        "dlq_before_replay",
        "applied_after_replay",
    ] {
        assert!(r.get(key).is_some(), "--json lacks {key}: {out}");
    }
    assert!(
        r.get("tenants").is_none(),
        "a single seller's report: {out}"
    );
    assert_eq!(n("events"), 60, "{out}");
    assert_eq!(n("mismatched_buyers"), 0, "{out}");
    assert_eq!(n("duplicate_creates"), 0, "{out}");
    assert_eq!(n("lost"), 0, "{out}");
    assert_eq!(n("lost_before_replay"), 0, "{out}");
    assert_eq!(n("applied_after_replay"), 60, "{out}");
    assert_eq!(n("kills_mid_batch"), 2, "{out}");
    assert_eq!(n("refused_deliveries"), 0, "{out}");
    assert_eq!(n("parked_without_reason"), 0, "{out}");
    assert!(status.success(), "enroll chaos exited with {status}: {out}");
    Ok(())
}

/// Two sellers on one `enroll dev --tenants` child, killed mid-batch: each tenant's plan has
/// the same event ids with buyers of its own, and some deliveries go to the other tenant's
/// path signed with the wrong secret.
#[test]
fn chaos_with_two_tenants_keeps_each_sellers_buyers_in_its_own_workspace() -> Result<()> {
    let (r, out, status) = run_chaos(
        "--tenants 2 --events 40 --fault-rate 0.2 --kills 2 --seed 5 --timeout-secs 240",
    )?;
    let tenants = r["tenants"].as_array().context(out.clone())?;
    let names: Vec<&str> = tenants
        .iter()
        .filter_map(|t| t["tenant"].as_str())
        .collect();
    assert_eq!(names, ["alpha", "beta"], "{out}");
    for t in tenants {
        let n = |k: &str| count(t, k);
        let name = t["tenant"].as_str().unwrap_or_default();
        let at = format!("{name}: {out}");
        // A shared event id applied once in each tenant: all its 40 events, no account twice.
        assert_eq!(n("events"), 40, "{at}");
        assert_eq!(n("applied_after_replay"), 40, "{at}");
        assert_eq!(n("refused_deliveries"), 0, "{at}");
        assert_eq!(n("lost"), 0, "{at}");
        assert_eq!(n("lost_before_replay"), 0, "{at}");
        assert_eq!(n("parked_without_reason"), 0, "{at}");
        assert_eq!(n("duplicate_creates"), 0, "{at}");
        assert_eq!(n("duplicate_records"), 0, "{at}");
        // Every buyer has exactly the Groups its ledger says, in its own workspace.
        assert_eq!(n("mismatched_buyers"), 0, "{at}");
        assert_eq!(n("ledger_disagreements"), 0, "{at}");
        // Isolation: the other tenant's signature gets 401 and changes nothing.
        assert!(n("misrouted") >= 1, "{at}");
        assert_eq!(n("misrouted_refused"), n("misrouted"), "{at}");
        assert_eq!(n("misrouted_accepted"), 0, "{at}");
        assert_eq!(n("foreign_users"), 0, "{at}");
        assert_eq!(n("foreign_records"), 0, "{at}");
    }
    assert_eq!(count(&r, "events"), 80, "{out}");
    assert_eq!(count(&r, "applied_after_replay"), 80, "{out}");
    assert_eq!(count(&r, "kills_mid_batch"), 2, "{out}");
    assert_eq!(count(&r, "unexpected_exits"), 0, "{out}");
    assert!(status.success(), "enroll chaos exited with {status}: {out}");
    Ok(())
}

fn config(sim: &enroll_simulator::SimHandle) -> Config {
    let mut c = enroll_embedded::config_file::load(None).expect("the example configuration");
    c.scim.base_url = sim.scim_base_url();
    c.scim.token = Secret::new("moto-chaos-scim");
    c.notion.base_url = sim.notion_base_url();
    c.notion.token = Secret::new("moto-chaos-notion");
    c.scim.timeout_secs = 1;
    c.rate = RateConfig::uniform(500.0, 100);
    c
}

/// Receives provision batches until the queue stays empty, killing `kills` batches midway.
/// The provisioner's `clock` follows the wall clock from batch to batch, as the claims'
/// deadlines and SQS's visibility timeouts do.
async fn drain(
    provisioner: &Arc<Provisioner>,
    clock: &ManualClock,
    pair: &moto::QueuePair,
    dead: &Arc<SqsDeadLetters>,
    mut kills: usize,
) -> Result<usize> {
    let mut killed = 0;
    let mut idle = 0;
    while idle < 3 {
        let got = receive_batch(
            &pair.client,
            &pair.url,
            ReceiveOptions {
                max_messages: 10,
                wait_seconds: 1,
                visibility_timeout: None,
            },
        )
        .await?;
        if got.is_empty() {
            // Retries wait out their backoff and deferred events their delay: the queue is
            // drained only when nothing is visible, in flight or delayed.
            if queue_is_empty(pair).await? {
                idle += 1;
            } else {
                idle = 0;
            }
            continue;
        }
        idle = 0;
        let incoming: Vec<Incoming> = got.iter().map(|m| m.incoming()).collect();
        // A claim outlives the invocation by the visibility timeout at most, as on Lambda.
        clock.set(Utc::now());
        let deadline = Utc::now() + chrono::TimeDelta::seconds(3);
        let task = {
            let p = provisioner.clone();
            let dead = dead.clone();
            tokio::spawn(async move {
                provision::batch::run(&p, dead.as_ref(), &incoming, deadline).await
            })
        };
        if kills > 0 && got.len() >= 3 {
            // Mid-batch: some of its events are done, some not, one half-way.
            tokio::time::sleep(Duration::from_millis(60)).await;
            task.abort();
            let _ = task.await;
            kills -= 1;
            killed += 1;
            continue;
        }
        let report = task.await?;
        // What the provision Lambda does with its report: deferred events sent again with a
        // delay, retries brought back after the backoff, the rest acknowledged.
        let failed = enroll_aws::lambda_env::settle(&pair.client, &pair.url, &got, &report).await;
        for m in &got {
            if !failed.contains(&m.message_id) {
                delete(&pair.client, &pair.url, &m.receipt_handle).await?;
            }
        }
    }
    Ok(killed)
}

/// Whether the queue holds no message at all: visible, in flight or delayed.
async fn queue_is_empty(pair: &moto::QueuePair) -> Result<bool> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = pair
        .client
        .get_queue_attributes()
        .queue_url(&pair.url)
        .attribute_names(A::All)
        .send()
        .await?;
    let attrs = out.attributes.unwrap_or_default();
    let n = |a: A| {
        attrs
            .get(&a)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(n(A::ApproximateNumberOfMessages)
        + n(A::ApproximateNumberOfMessagesNotVisible)
        + n(A::ApproximateNumberOfMessagesDelayed)
        == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_the_aws_adapters_loses_nothing_and_applies_nothing_twice() -> Result<()> {
    let sim = enroll_simulator::start(
        SimConfig {
            scim_token: "moto-chaos-scim".into(),
            notion_token: "moto-chaos-notion".into(),
            scim_rate_limit: None,
            notion_rate_limit: None,
            admin_token: None,
            max_members_per_patch: None,
            state: enroll_embedded::seed::from_config(&enroll_embedded::config_file::load(None)?),
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let cfg = Arc::new(config(&sim));
    let store = Arc::new(moto::store().await?);
    // Visibility 3 s: a killed batch comes back soon; maxReceiveCount 5 as in template.yaml.
    let provision_q = moto::queue_with_dlq(5, 3).await?;
    let align_q = moto::queue_with_dlq(5, 3).await?;
    let budget = enroll_notion::rate::from_config(cfg.rate.scim());
    let clock = ManualClock::starting_now();
    let provisioner = Arc::new(
        Provisioner::new(
            cfg.clone(),
            store.clone(),
            store.clone(),
            Arc::new(ScimClient::new(&cfg.scim, budget).map_err(|f| anyhow::anyhow!(f.reason))?),
            Arc::new(SqsQueue::new(align_q.client.clone(), &align_q.url)),
        )
        .with_clock(Arc::new(clock.clone())),
    );
    let dead = Arc::new(SqsDeadLetters::new(
        provision_q.client.clone(),
        &provision_q.dlq_url,
        "provision",
    ));

    let plan = chaos::plan(&cfg, 24, 0.1, 0.05, 11)?;
    let ingest = Ingest::new(
        cfg.clone(),
        Arc::new(SqsQueue::new(provision_q.client.clone(), &provision_q.url)),
    );
    let mut keys = BTreeMap::new();
    // A platform's retry resends the first attempt unchanged.
    let mut first_attempt = BTreeMap::new();
    for d in &plan.deliveries {
        let secret = enroll_lab::send::signing_secret(&cfg, d.platform)?;
        let out = first_attempt
            .entry(d.event)
            .or_insert_with(|| enroll_platforms::sample(d.platform, &d.sample, &secret, Utc::now()))
            .clone();
        let req = WebhookRequest {
            method: "POST".into(),
            path: format!("/webhooks/{}", d.platform.as_str()),
            query: out.query,
            headers: out
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
            body: out.body,
        };
        let resp = ingest.handle(&req, Utc::now()).await;
        assert_eq!(resp.status, 202, "{}", resp.body);
        let v: serde_json::Value = serde_json::from_str(&resp.body)?;
        keys.insert(
            v["event_key"].as_str().unwrap_or_default().to_owned(),
            d.event,
        );
    }
    assert_eq!(keys.len(), 24, "every distinct event accepted once");

    sim.set_faults(fault_rules(0.2, 11, Duration::from_secs(1)));
    let killed = drain(&provisioner, &clock, &provision_q, &dead, 2).await?;
    assert_eq!(killed, 2);

    // The operator's part: faults stop, the DLQ goes back to its source queue.
    sim.set_faults(Faults::default());
    let mut parked = 0;
    loop {
        let got = receive_batch(
            &provision_q.client,
            &provision_q.dlq_url,
            ReceiveOptions::default(),
        )
        .await?;
        if got.is_empty() {
            break;
        }
        for m in got {
            parked += 1;
            provision_q
                .client
                .send_message()
                .queue_url(&provision_q.url)
                .message_body(&m.body)
                .send()
                .await?;
            delete(&provision_q.client, &provision_q.dlq_url, &m.receipt_handle).await?;
        }
    }
    drain(&provisioner, &clock, &provision_q, &dead, 0).await?;
    // The scheduled expiry pass settles Group changes whose answers were lost, once they
    // must have landed (twice the 1 s client timeout). They have landed in fact: the
    // simulator's slowest write (1.6 s) ended during the drain's idle seconds; the clock
    // moves past the settle window instead of the test sleeping through it.
    clock.set(Utc::now() + chrono::TimeDelta::milliseconds(2500));
    let settled = provisioner
        .expire_due(clock.now())
        .await
        .map_err(|f| anyhow::anyhow!(f.reason))?;
    assert_eq!(settled.failed, 0, "{settled:?}");
    eprintln!(
        "moto chaos: {} deliveries, {parked} parked and replayed",
        plan.deliveries.len()
    );

    // Every event applied, once.
    for key in keys.keys() {
        let (platform, id) = key.split_once(':').context("event key")?;
        let rec = idempotency_status(&store, platform, id)
            .await?
            .with_context(|| format!("{key} was never claimed"))?;
        assert_eq!(rec, "completed", "{key}");
    }
    // Every buyer's Groups equal the ledger's, and no account twice.
    let state = sim.state();
    let ids: BTreeMap<String, String> = state
        .groups
        .iter()
        .map(|g| (g.display_name.clone(), g.id.clone()))
        .collect();
    let mut names = BTreeSet::new();
    for u in &state.users {
        assert!(
            names.insert(u.user_name.to_lowercase()),
            "{} created twice",
            u.id
        );
    }
    for (email, expected) in &plan.expected {
        let buyer = store
            .buyer(&BuyerEmail::parse(email)?)
            .await
            .map_err(|f| anyhow::anyhow!(f.reason))?;
        let orders = match &buyer {
            Some(b) => store
                .orders(&b.orders.iter().cloned().collect::<Vec<_>>())
                .await
                .map_err(|f| anyhow::anyhow!(f.reason))?,
            None => Vec::new(),
        };
        let desired = ledger::desired_groups(&orders, Utc::now());
        assert_eq!(&desired, expected, "the ledger depends on delivery order");
        let want: BTreeSet<&String> = desired
            .iter()
            .filter_map(|g| match g {
                GroupRef::Name(n) => ids.get(n),
                GroupRef::Id(_) => None,
            })
            .collect();
        let got: BTreeSet<&String> = match sim.user_by_email(email) {
            Some(u) => state
                .groups
                .iter()
                .filter(|g| g.members.contains(&u.id))
                .map(|g| &g.id)
                .collect(),
            None => BTreeSet::new(),
        };
        assert_eq!(got, want, "Groups in Notion differ from the ledger");
    }
    sim.shutdown().await;
    Ok(())
}

/// The idempotency record's status through the store's own port.
async fn idempotency_status(
    store: &DynamoStore,
    platform: &str,
    id: &str,
) -> Result<Option<String>> {
    {
        use enroll_core::idempotency::{Claim, IdempotencyRecord};
        use enroll_core::ports::IdempotencyStore;
        // A claim attempt with a deadline in the past takes nothing over from a completed key
        // and tells its state; a key nobody claimed would be taken, so release it again.
        let key = format!("{platform}:{id}");
        let now = Utc::now();
        let probe = IdempotencyRecord::in_progress(&key, "probe", "probe", now, now);
        match store
            .claim(&probe, now)
            .await
            .map_err(|f| anyhow::anyhow!(f.reason))?
        {
            Claim::Completed(_) => Ok(Some("completed".into())),
            Claim::InProgress(_) => Ok(Some("in progress".into())),
            Claim::Acquired => {
                store
                    .release(&key, "probe")
                    .await
                    .map_err(|f| anyhow::anyhow!(f.reason))?;
                Ok(None)
            }
        }
    }
}
