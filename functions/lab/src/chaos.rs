//! `enroll chaos`: evidence that no purchase is lost or applied twice when Notion fails,
//! platforms deliver twice or out of order, and the worker dies mid-batch.
//!
//! The driver (this process) starts the Notion simulator, signs every webhook of a seeded plan
//! (purchases across products and platforms, refunds before and after their purchases,
//! duplicate deliveries) and posts it to the local endpoint, which queues it in a data
//! directory. It then runs `enroll dev` itself as a child process, with the shipped timings
//! (claim, visibility, receive limit, backoff: [`enroll_core::timings::SHIPPED`]) and the
//! shipped worker count, exactly as a seller runs it; makes the simulator fault a share of
//! requests; and kills the child with SIGKILL in the middle of batches, restarting it on the
//! same data directory each time. The embedded journals have one writer, so while a child runs
//! the driver only reads the data directory. Once the queues drain it checks the outcome, stops
//! the faults, replays the dead-letter queues, runs `enroll dev` again and checks once more.

use crate::send;
use anyhow::Context;
use chrono::Utc;
use enroll_core::catalog::GroupRef;
use enroll_core::config::{Config, Secret};
use enroll_core::dead_letters::{self, ReplayRequest};
use enroll_core::event::{AlignRequest, EventKind, OrderEvent};
use enroll_core::idempotency::Status;
use enroll_core::ids::{BuyerEmail, Platform};
use enroll_core::ledger::{self, OrderRecord};
use enroll_core::timings;
use enroll_embedded::dead_letters::EmbeddedDeadLetters;
use enroll_embedded::journal::Journal;
use enroll_embedded::queue::{Message, ATTR_REASON};
use enroll_embedded::runtime::{Options, Runtime};
use enroll_embedded::store::FileStore;
use enroll_platforms::Sample;
use enroll_simulator::{FaultAction, FaultRule, Faults, PropertyValue, SimConfig, SimHandle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The queue names the runtime's journal holds.
const PROVISION: &str = "provision";
const ALIGN: &str = "align";
const PROVISION_DLQ: &str = "provision-dlq";
const ALIGN_DLQ: &str = "align-dlq";

/// What `enroll chaos` runs.
pub struct ChaosOptions {
    pub config: Config,
    /// Distinct webhook events: purchases and refunds.
    pub events: usize,
    /// Share of SCIM and Notion requests the simulator faults.
    pub fault_rate: f64,
    /// Extra deliveries of events already sent, as a share of `events`.
    pub duplicates: f64,
    /// Refunds delivered before their purchase, as a share of `events`; as many refunds again
    /// arrive after their purchase.
    pub early_refunds: f64,
    /// Hard kills of the worker process while batches are in flight.
    pub kills: usize,
    pub seed: u64,
    /// The `enroll` executable the worker child runs.
    pub enroll: PathBuf,
    /// Kept after the run when given; a temporary directory, removed afterwards, otherwise.
    pub data_dir: Option<PathBuf>,
    /// The longest each worker phase may take to drain the queues.
    pub timeout: Duration,
}

/// The outcome. The first seven fields are the run's verdict; the rest say what happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChaosReport {
    pub events: usize,
    pub buyers: usize,
    /// Buyers whose Groups in Notion differ from the ledger's desired Groups, at the end.
    pub mismatched_buyers: usize,
    /// Accounts created more than once for one address.
    pub duplicate_creates: usize,
    /// Accepted events neither applied nor parked with a reason, at the end.
    pub lost: usize,
    pub dlq_before_replay: usize,
    pub applied_after_replay: usize,

    pub seed: u64,
    pub fault_rate: f64,
    pub deliveries: usize,
    pub duplicate_deliveries: usize,
    pub early_refunds: usize,
    pub late_refunds: usize,
    /// Deliveries the endpoint did not answer 202.
    pub refused_deliveries: usize,
    pub kills: usize,
    /// Kills that found provision messages received and not yet settled.
    pub kills_mid_batch: usize,
    /// Worker exits the driver did not cause (a crash).
    pub unexpected_exits: usize,
    pub requests: u64,
    /// Before the replay: accepted events neither applied nor parked with a reason.
    pub lost_before_replay: usize,
    pub applied_before_replay: usize,
    pub parked_without_reason: usize,
    /// Before the replay, among buyers none of whose events was parked.
    pub mismatched_before_replay: usize,
    /// Buyers whose desired Groups per the ledger differ from what the plan implies: the
    /// ledger must not depend on delivery order.
    pub ledger_disagreements: usize,
    /// Buyers with access whose sales record lacks their Notion user id.
    pub unaligned_buyers: usize,
    /// Notion user ids written into more than one sales record: must be 0 (align holds a
    /// lease per buyer, and looks before it repeats a create whose answer was lost).
    pub duplicate_records: usize,
    /// Events parked only because a killed process held their claim (the receive limit
    /// reached while waiting for it, or the queue's never-settled backstop): must be 0.
    pub parked_by_crash: usize,
    pub drained: bool,
    pub seconds: f64,
}

impl ChaosReport {
    /// Whether every promise held.
    pub fn passed(&self) -> bool {
        self.drained
            && self.mismatched_buyers == 0
            && self.duplicate_creates == 0
            && self.lost == 0
            && self.lost_before_replay == 0
            && self.parked_without_reason == 0
            && self.applied_after_replay == self.events
            && self.refused_deliveries == 0
            && self.ledger_disagreements == 0
            && self.mismatched_before_replay == 0
            && self.unaligned_buyers == 0
            && self.unexpected_exits == 0
            && self.duplicate_records == 0
            && self.parked_by_crash == 0
    }
}

/// One webhook delivery of the plan.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub platform: Platform,
    pub sample: Sample,
    /// Index of the distinct event this delivers.
    pub event: usize,
}

/// The seeded scenario: what is delivered, in which order, and what it should come to.
#[derive(Debug, Default)]
pub struct Plan {
    pub deliveries: Vec<Delivery>,
    /// Per distinct event: the buyer (lowercased address).
    pub buyer_of: Vec<String>,
    /// Per buyer: the Groups their unrefunded purchases grant, by the plan alone.
    pub expected: BTreeMap<String, BTreeSet<GroupRef>>,
    pub duplicates: usize,
    pub early_refunds: usize,
    pub late_refunds: usize,
}

fn order_id(platform: Platform, seed: u64, j: usize) -> String {
    let numeric = || {
        format!(
            "{}",
            4_000_000_000u64 + (seed % 1000) * 1_000_000 + j as u64
        )
    };
    match platform {
        Platform::Stripe => format!("pi_chaos{seed}x{j}"),
        Platform::Paddle => format!("txn_chaos{seed}x{j}"),
        Platform::Standard => format!("ord_chaos{seed}x{j}"),
        Platform::Gumroad => format!("chaos{seed}x{j}"),
        Platform::Shopify | Platform::LemonSqueezy | Platform::ThriveCart => numeric(),
    }
}

/// Builds the seeded plan: `events` distinct events, in delivery order; `duplicates` and
/// `early_refunds` are shares of `events` (as many refunds again come after their purchase).
pub fn plan(
    config: &Config,
    events: usize,
    duplicates: f64,
    early_refunds: f64,
    seed: u64,
) -> anyhow::Result<Plan> {
    let mut rng = StdRng::seed_from_u64(seed);
    let refunds_each = ((events as f64) * early_refunds).round() as usize;
    let purchases = events.saturating_sub(2 * refunds_each);
    anyhow::ensure!(
        purchases >= refunds_each.max(1),
        "too few events for {refunds_each} early and {refunds_each} late refunds"
    );
    // Products a checkout sells: those with platform references (follow-ons have none).
    let products: Vec<_> = config
        .catalog
        .products
        .iter()
        .filter(|p| !p.platform_ids.is_empty())
        .collect();
    anyhow::ensure!(!products.is_empty(), "the catalog sells no product");
    let buyers = (purchases * 5 / 8).max(1);
    let email = |b: usize, rng: &mut StdRng| {
        // Some buyers type their address with capitals on some checkouts.
        if b % 5 == 0 && rng.gen_bool(0.5) {
            format!("Chaos.Buyer{b}@Example.com")
        } else {
            format!("chaos.buyer{b}@example.com")
        }
    };

    let mut out = Plan::default();
    // (position, delivery): sorted at the end into delivery order.
    let mut timeline: Vec<(f64, Delivery)> = Vec::new();
    let mut bought: Vec<(usize, Platform, String, String, String, GroupRefs)> = Vec::new();
    for j in 0..purchases {
        let b = rng.gen_range(0..buyers);
        let platform = Platform::ALL[rng.gen_range(0..Platform::ALL.len())];
        let product = products[rng.gen_range(0..products.len())];
        let reference = product
            .platform_ids
            .get(&platform)
            .and_then(|r| r.first())
            .map(|r| r.as_str().to_owned())
            .unwrap_or_else(|| product.id.as_str().to_owned());
        let order = order_id(platform, seed, j);
        let groups: GroupRefs = product.groups.iter().cloned().collect();
        let event = out.buyer_of.len();
        out.buyer_of.push(format!("chaos.buyer{b}@example.com"));
        timeline.push((
            j as f64,
            Delivery {
                platform,
                sample: Sample {
                    kind: EventKind::Purchase,
                    product: reference.clone(),
                    email: email(b, &mut rng),
                    name: Some(format!("Chaos Buyer {b}")),
                    order_id: Some(order.clone()),
                    event_id: Some(format!("evt_chaos{seed}x{j}p")),
                },
                event,
            },
        ));
        bought.push((b, platform, reference, order, email(b, &mut rng), groups));
    }
    // Distinct purchases get the refunds: the first half of a shuffle early, the rest late.
    let mut order: Vec<usize> = (0..purchases).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let mut refunded = BTreeSet::new();
    for (n, &j) in order.iter().take(2 * refunds_each).enumerate() {
        let early = n < refunds_each;
        let (b, platform, reference, order_id, address, _) = bought[j].clone();
        let at = if early {
            rng.gen_range(-1.0..j as f64)
        } else {
            rng.gen_range(j as f64..purchases as f64) + 0.5
        };
        let event = out.buyer_of.len();
        out.buyer_of.push(format!("chaos.buyer{b}@example.com"));
        timeline.push((
            at,
            Delivery {
                platform,
                sample: Sample {
                    kind: EventKind::Refund,
                    product: reference,
                    email: address,
                    name: None,
                    order_id: Some(order_id),
                    event_id: Some(format!("evt_chaos{seed}x{j}r")),
                },
                event,
            },
        ));
        refunded.insert(j);
        if early {
            out.early_refunds += 1;
        } else {
            out.late_refunds += 1;
        }
    }
    for (j, (b, .., groups)) in bought.iter().enumerate() {
        let entry = out
            .expected
            .entry(format!("chaos.buyer{b}@example.com"))
            .or_default();
        if !refunded.contains(&j) {
            entry.extend(groups.iter().cloned());
        }
    }
    // A platform retries some time after the first attempt, with the same event.
    out.duplicates = ((events as f64) * duplicates).round() as usize;
    for _ in 0..out.duplicates {
        let (at, original) = timeline[rng.gen_range(0..timeline.len())].clone();
        let later = at + rng.gen_range(0.1..(purchases as f64 / 10.0).max(1.0));
        timeline.push((later, original));
    }
    timeline.sort_by(|a, b| a.0.total_cmp(&b.0));
    out.deliveries = timeline.into_iter().map(|(_, d)| d).collect();
    Ok(out)
}

type GroupRefs = BTreeSet<GroupRef>;

/// Fault rules that fault `rate` of all SCIM and public API requests, split between server
/// errors, 429 with `Retry-After`, responses slower than the client's timeout, and dropped
/// connections. Each rule's chance is conditional on the earlier ones not firing.
pub fn fault_rules(rate: f64, seed: u64, timeout: Duration) -> Faults {
    let slow = Duration::from_millis(600) + timeout;
    let shares = [
        (
            0.2,
            FaultAction::Status {
                code: 503,
                retry_after_secs: None,
            },
        ),
        (
            0.1,
            FaultAction::Status {
                code: 500,
                retry_after_secs: None,
            },
        ),
        (
            0.3,
            FaultAction::Status {
                code: 429,
                retry_after_secs: Some(1),
            },
        ),
        (
            0.2,
            FaultAction::Delay {
                ms: slow.as_millis() as u64,
            },
        ),
        (0.1, FaultAction::Drop),
        // The answer of a write that happened is lost: creates must not be repeated blindly.
        (0.1, FaultAction::DropAfterApply),
    ];
    let rate = rate.clamp(0.0, 1.0);
    let mut taken = 0.0;
    let rules = shares
        .into_iter()
        .map(|(share, action)| {
            let p = rate * share;
            let conditional = if taken < 1.0 { p / (1.0 - taken) } else { 0.0 };
            taken += p;
            FaultRule {
                method: None,
                path_prefix: None,
                probability: conditional.clamp(0.0, 1.0),
                remaining: None,
                action,
            }
        })
        .collect();
    Faults { rules, seed }
}

/// The data directory; a temporary one is removed when dropped.
struct DataDir {
    path: PathBuf,
    remove: bool,
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The `enroll dev` child. Dropping it kills it, so no child outlives the driver's scope.
struct DevProcess {
    child: Child,
}

impl DevProcess {
    fn spawn(enroll: &Path, dir: &Path, tokens: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(enroll);
        // Exactly what a seller runs, with only its configuration file, data directory and a
        // free port given: every timing is the shipped default.
        cmd.arg("dev")
            .arg("--config")
            .arg(dir.join("worker.toml"))
            .arg("--data-dir")
            .arg(dir)
            .arg("--port")
            .arg("0")
            // Tokens go through the environment, never a file or the command line.
            .envs(tokens.iter().copied())
            // Transient failures are expected by the thousand here; the child stays quiet
            // unless RUST_LOG asks otherwise.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} dev", enroll.display()))?;
        Ok(Self { child })
    }

    /// SIGKILL: no shutdown code runs, exactly as when a Lambda instance is torn down.
    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Queue depths read from the journal without taking it over.
#[derive(Debug, Default, Clone, Copy)]
struct Depths {
    provision: usize,
    /// Provision messages received and not yet deleted or handed back.
    provision_in_flight: usize,
    align: usize,
}

fn read_queues(dir: &Path) -> anyhow::Result<Journal> {
    Journal::open_read_only(&dir.join("queues.log")).context("reading the queue journal")
}

fn depths(dir: &Path) -> anyhow::Result<Depths> {
    let j = read_queues(dir)?;
    let now = Utc::now().timestamp_millis();
    let provision = j.all::<Message>(PROVISION);
    Ok(Depths {
        provision: provision.len(),
        provision_in_flight: provision
            .iter()
            .filter(|(_, m)| m.receive_count > 0 && m.visible_at_ms > now)
            .count(),
        align: j.all::<Message>(ALIGN).len(),
    })
}

fn total_requests(sim: &SimHandle) -> u64 {
    sim.counters().values().sum()
}

#[derive(Debug, Default)]
struct Phase {
    drained: bool,
    kills: usize,
    kills_mid_batch: usize,
    unexpected_exits: usize,
}

/// Runs worker children until both queues are empty, killing `kills` of them mid-batch,
/// spread over the backlog.
async fn run_workers(
    sim: &SimHandle,
    dir: &Path,
    enroll: &Path,
    tokens: &[(&str, &str)],
    kills: usize,
    timeout: Duration,
) -> anyhow::Result<Phase> {
    let initial = depths(dir)?.provision;
    // Kill when the backlog has shrunk to k/(kills+1) of its size: early, middle, late.
    let at: Vec<usize> = (1..=kills)
        .map(|k| initial * (kills + 1 - k) / (kills + 1))
        .collect();
    let mut phase = Phase::default();
    let mut worker = DevProcess::spawn(enroll, dir, tokens)?;
    let mut seen = total_requests(sim);
    let mut journal_len = 0;
    let mut progressed = Instant::now();
    let deadline = Instant::now() + timeout;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let d = depths(dir)?;
        let now = total_requests(sim);
        let busy = now > seen;
        seen = now;
        let len = std::fs::metadata(dir.join("queues.log")).map_or(0, |m| m.len());
        if busy || len != journal_len {
            journal_len = len;
            progressed = Instant::now();
        }
        if phase.kills < kills
            && d.provision <= at[phase.kills]
            && d.provision_in_flight > 0
            && busy
        {
            worker.kill_hard();
            phase.kills += 1;
            phase.kills_mid_batch += 1;
            tracing::info!(
                kill = phase.kills,
                backlog = d.provision,
                in_flight = d.provision_in_flight,
                "worker killed with SIGKILL mid-batch; restarting it"
            );
            worker = DevProcess::spawn(enroll, dir, tokens)?;
            continue;
        }
        if d.provision == 0 && d.align == 0 && !changes_unsettled(dir)? {
            phase.drained = true;
            break;
        }
        if worker.exited() {
            phase.unexpected_exits += 1;
            anyhow::ensure!(
                phase.unexpected_exits <= 5,
                "the worker keeps exiting; see its log above"
            );
            worker = DevProcess::spawn(enroll, dir, tokens)?;
        }
        // Retries come back within a minute, and messages a killed child held wait at most
        // one claim plus its margin; longer without a request or a queue change means the
        // worker is stuck, which is a failure of its own.
        let stuck_after = timings::SHIPPED.provision.claim
            + timings::SHIPPED.provision.defer_margin
            + timings::SHIPPED.provision.max_retry;
        if progressed.elapsed() > stuck_after {
            tracing::warn!(
                provision = d.provision,
                align = d.align,
                "no progress for a minute: the worker is stuck"
            );
            break;
        }
        if Instant::now() > deadline {
            tracing::warn!(
                provision = d.provision,
                align = d.align,
                "the queues did not drain in time"
            );
            break;
        }
    }
    worker.kill_hard();
    Ok(phase)
}

/// Whether some buyer has a Group change whose lost answer may still land; the worker's
/// expiry pass settles them after their moment.
fn changes_unsettled(dir: &Path) -> anyhow::Result<bool> {
    let store = FileStore::open_read_only(&dir.join("store.log")).context("reading the store")?;
    Ok(store.buyers().iter().any(|b| !b.pending_groups.is_empty()))
}

/// Event key of a parked message, from its attributes or its body.
fn parked_key(queue: &str, m: &Message) -> Option<String> {
    if let Some(k) = m.attributes.get(enroll_embedded::queue::ATTR_EVENT_KEY) {
        return Some(k.clone());
    }
    if queue == PROVISION_DLQ {
        serde_json::from_str::<OrderEvent>(&m.body)
            .ok()
            .map(|e| e.key.as_string())
    } else {
        serde_json::from_str::<AlignRequest>(&m.body)
            .ok()
            .map(|a| a.source.as_string())
    }
}

/// What the data directory and the simulator say at one moment.
#[derive(Debug, Default)]
struct Verdict {
    applied: usize,
    lost: usize,
    parked: usize,
    parked_without_reason: usize,
    /// Buyers with an event in a dead-letter queue.
    buyers_parked: BTreeSet<String>,
    mismatched: BTreeSet<String>,
    duplicate_creates: usize,
    ledger_disagreements: usize,
    unaligned: usize,
    duplicate_records: usize,
    /// Parked because a killed process held the claim, or never settled: a crash's doing.
    parked_by_crash: usize,
}

/// Whether a parking reason says the message's only trouble was a process that died: the
/// queue's never-settled backstop, or a wait for a dead holder's claim or lease.
fn parked_by_crash(reason: &str) -> bool {
    reason.contains("never settled")
        || reason.contains("another invocation is applying")
        || reason.contains("another align request")
}

fn verdict(
    sim: &SimHandle,
    dir: &Path,
    config: &Config,
    plan: &Plan,
    keys: &BTreeMap<String, usize>,
) -> anyhow::Result<Verdict> {
    let mut v = Verdict::default();
    let store = FileStore::open_read_only(&dir.join("store.log")).context("reading the store")?;
    let completed: BTreeMap<String, Option<String>> = store
        .idempotency_records()
        .into_iter()
        .filter(|r| r.status == Status::Completed)
        .map(|r| (r.key, r.outcome))
        .collect();
    let journal = read_queues(dir)?;
    let mut parked_keys = BTreeSet::new();
    for q in [PROVISION_DLQ, ALIGN_DLQ] {
        for (_, m) in journal.all::<Message>(q) {
            v.parked += 1;
            let reason = m
                .attributes
                .get(ATTR_REASON)
                .filter(|r| !r.trim().is_empty());
            let key = parked_key(q, &m);
            match reason {
                None => v.parked_without_reason += 1,
                Some(r) if parked_by_crash(r) => v.parked_by_crash += 1,
                Some(_) => {}
            }
            if let Some(k) = key {
                if let Some(&e) = keys.get(&k) {
                    v.buyers_parked.insert(plan.buyer_of[e].clone());
                }
                if reason.is_some() {
                    parked_keys.insert(k);
                }
            }
        }
    }
    let mut created_per_buyer: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, &e) in keys {
        match completed.get(key) {
            Some(outcome) => {
                v.applied += 1;
                if outcome
                    .as_deref()
                    .is_some_and(|o| o.contains("member created"))
                {
                    *created_per_buyer.entry(&plan.buyer_of[e]).or_default() += 1;
                }
            }
            None if parked_keys.contains(key) => {}
            None => v.lost += 1,
        }
    }

    let state = sim.state();
    let group_ids: BTreeMap<String, String> = state
        .groups
        .iter()
        .map(|g| (g.display_name.to_lowercase(), g.id.clone()))
        .collect();
    let resolve = |g: &GroupRef| match g {
        GroupRef::Id(id) => Some(id.as_str().to_owned()),
        GroupRef::Name(n) => group_ids.get(&n.to_lowercase()).cloned(),
    };
    let managed: BTreeSet<String> = config
        .catalog
        .managed_groups()
        .iter()
        .filter_map(resolve)
        .collect();
    let mut accounts: BTreeMap<String, usize> = BTreeMap::new();
    for u in &state.users {
        *accounts.entry(u.user_name.to_lowercase()).or_default() += 1;
    }
    v.duplicate_creates = accounts.values().map(|n| n - 1).sum::<usize>()
        + created_per_buyer
            .values()
            .map(|n| n.saturating_sub(1))
            .sum::<usize>();

    let orders = store.all_orders();
    let records: BTreeMap<String, _> = store
        .buyers()
        .into_iter()
        .map(|b| (b.email.as_str().to_owned(), b))
        .collect();
    let now = Utc::now();
    let user_prop = &config.notion.properties.notion_user_id;
    let mut records_per_user: BTreeMap<String, usize> = BTreeMap::new();
    for p in state.pages.iter().filter(|p| !p.in_trash) {
        if let Some(PropertyValue::RichText(parts)) = p.properties.get(user_prop) {
            let id = parts.concat();
            if !id.is_empty() {
                *records_per_user.entry(id).or_default() += 1;
            }
        }
    }
    v.duplicate_records = records_per_user.values().filter(|n| **n > 1).count();
    for (email, expected) in &plan.expected {
        let buyer = BuyerEmail::parse(email)?;
        let mine: Vec<&OrderRecord> = match records.get(buyer.as_str()) {
            Some(r) => orders
                .iter()
                .filter(|o| r.orders.contains(&o.order))
                .collect(),
            None => orders
                .iter()
                .filter(|o| o.buyer.as_ref() == Some(&buyer))
                .collect(),
        };
        let desired_refs = ledger::desired_groups(mine, now);
        if &desired_refs != expected {
            v.ledger_disagreements += 1;
        }
        let desired: BTreeSet<String> = desired_refs.iter().filter_map(resolve).collect();
        let user = sim.user_by_email(email).filter(|u| u.is_member());
        let actual: BTreeSet<String> = match &user {
            Some(u) => state
                .groups
                .iter()
                .filter(|g| managed.contains(&g.id) && g.members.contains(&u.id))
                .map(|g| g.id.clone())
                .collect(),
            None => BTreeSet::new(),
        };
        if desired != actual {
            v.mismatched.insert(email.clone());
        }
        if !desired.is_empty() {
            let written = user
                .as_ref()
                .is_some_and(|u| records_per_user.contains_key(&u.id));
            if !written {
                v.unaligned += 1;
            }
        }
    }
    Ok(v)
}

/// Moves every parked message back to its source queue, as `enroll dlq replay` does on a data
/// directory. Only while no worker runs: the journal has one writer.
async fn replay_dead_letters(dir: &Path) -> anyhow::Result<usize> {
    let journal = Arc::new(Mutex::new(
        Journal::open(&dir.join("queues.log")).context("opening the queues to replay")?,
    ));
    let admins = EmbeddedDeadLetters::on_journal(&journal);
    let req = ReplayRequest::default();
    let reports = dead_letters::replay_all(&admins, &req, None, None, Utc::now())
        .await
        .map_err(|f| anyhow::anyhow!(f.reason))?;
    Ok(reports.iter().map(|r| r.moved_count).sum())
}

/// Posts every delivery to the local endpoint, in plan order; returns the accepted event keys
/// (key to event index) and how many deliveries were refused.
async fn ingest(
    config: &Config,
    dir: &Path,
    plan: &Plan,
) -> anyhow::Result<(BTreeMap<String, usize>, usize)> {
    let rt = Runtime::start(Options {
        config: config.clone(),
        data_dir: Some(dir.to_owned()),
        timings: Default::default(),
        simulate: false,
    })
    .await?;
    let (addr, server) = enroll_embedded::server::serve(rt.clone(), "127.0.0.1:0".parse()?).await?;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let mut keys = BTreeMap::new();
    let mut refused = 0;
    // A platform's retry resends the first attempt's body unchanged (some samples derive ids
    // from the clock, so signing again would make a different event under the same id).
    let mut first_attempt = BTreeMap::new();
    for d in &plan.deliveries {
        let secret = send::signing_secret(config, d.platform)?;
        let url = send::webhook_url(&base, d.platform);
        let out = first_attempt.entry(d.event).or_insert_with(|| {
            enroll_platforms::sample(d.platform, &d.sample, &secret, Utc::now())
        });
        let (status, body) = send::post_signed(&http, &url, out).await?;
        if status != 202 {
            tracing::warn!(
                status,
                platform = %d.platform,
                kind = d.sample.kind.as_str(),
                "delivery refused"
            );
            refused += 1;
            continue;
        }
        let key = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("event_key")?.as_str().map(str::to_owned))
            .context("202 without an event key")?;
        keys.entry(key).or_insert(d.event);
    }
    server.abort();
    let _ = server.await;
    drop(rt);
    Ok((keys, refused))
}

/// Runs the whole scenario.
pub async fn run(o: ChaosOptions) -> anyhow::Result<ChaosReport> {
    let started = Instant::now();
    let dir = match &o.data_dir {
        Some(p) => {
            anyhow::ensure!(
                !p.join("queues.log").exists(),
                "{} already holds a run: give an empty directory",
                p.display()
            );
            std::fs::create_dir_all(p)?;
            DataDir {
                path: p.clone(),
                remove: false,
            }
        }
        None => {
            let p = std::env::temp_dir().join(format!("enroll-chaos-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p)?;
            DataDir {
                path: p,
                remove: true,
            }
        }
    };
    let scim_token = format!("chaos-scim-{}", uuid::Uuid::new_v4().simple());
    let notion_token = format!("chaos-notion-{}", uuid::Uuid::new_v4().simple());
    let sim = enroll_simulator::start(
        SimConfig {
            scim_token: scim_token.clone(),
            notion_token: notion_token.clone(),
            scim_rate_limit: None,
            notion_rate_limit: None,
            admin_token: None,
            max_members_per_patch: None,
            state: enroll_embedded::seed::from_config(&o.config),
        },
        "127.0.0.1:0".parse()?,
    )
    .await
    .context("starting the Notion simulator")?;

    let mut config = o.config.clone();
    config.scim.base_url = sim.scim_base_url();
    config.scim.token = Secret::new(scim_token.clone());
    config.notion.base_url = sim.notion_base_url();
    config.notion.token = Secret::new(notion_token.clone());
    // A short client timeout makes the simulator's slow answers real timeouts; the budget
    // is raised so the run measures faults, not the 3 requests/second of production.
    config.scim.timeout_secs = 1;
    config.notion.timeout_secs = 1;
    config.rate.requests_per_second = 500.0;
    config.rate.burst = 100;

    let plan = plan(&config, o.events, o.duplicates, o.early_refunds, o.seed)?;
    let (keys, refused) = ingest(&config, &dir.path, &plan).await?;
    // Secrets serialise as placeholders: the worker takes its tokens from the environment.
    std::fs::write(
        dir.path.join("worker.toml"),
        toml::to_string(&config).context("writing the worker configuration")?,
    )?;
    let tokens = [
        ("ENROLL_SCIM_TOKEN", scim_token.as_str()),
        ("ENROLL_NOTION_TOKEN", notion_token.as_str()),
    ];

    sim.set_faults(fault_rules(o.fault_rate, o.seed, Duration::from_secs(1)));
    let first = run_workers(&sim, &dir.path, &o.enroll, &tokens, o.kills, o.timeout).await?;
    let before = verdict(&sim, &dir.path, &config, &plan, &keys)?;
    let requests = total_requests(&sim);

    // The operator's part: the cause is gone (faults stop), the dead-letter queues replay.
    sim.set_faults(Faults::default());
    let dlq_before_replay = before.parked;
    replay_dead_letters(&dir.path).await?;
    let second = run_workers(&sim, &dir.path, &o.enroll, &tokens, 0, o.timeout).await?;
    let after = verdict(&sim, &dir.path, &config, &plan, &keys)?;
    let report = ChaosReport {
        events: o.events,
        buyers: plan.expected.len(),
        mismatched_buyers: after.mismatched.len(),
        duplicate_creates: after.duplicate_creates,
        lost: after.lost + (o.events.saturating_sub(keys.len())),
        dlq_before_replay,
        applied_after_replay: after.applied,
        seed: o.seed,
        fault_rate: o.fault_rate,
        deliveries: plan.deliveries.len(),
        duplicate_deliveries: plan.duplicates,
        early_refunds: plan.early_refunds,
        late_refunds: plan.late_refunds,
        refused_deliveries: refused,
        kills: first.kills,
        kills_mid_batch: first.kills_mid_batch,
        unexpected_exits: first.unexpected_exits + second.unexpected_exits,
        requests,
        lost_before_replay: before.lost,
        applied_before_replay: before.applied,
        parked_without_reason: before.parked_without_reason,
        mismatched_before_replay: before.mismatched.difference(&before.buyers_parked).count(),
        ledger_disagreements: after.ledger_disagreements,
        unaligned_buyers: after.unaligned,
        duplicate_records: after.duplicate_records,
        parked_by_crash: before.parked_by_crash + after.parked_by_crash,
        drained: first.drained && second.drained,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    };
    if !dir.remove {
        // Kept next to the store and queues, so a failed run can be examined.
        std::fs::write(
            enroll_embedded::runtime::sim_state_path(&dir.path),
            serde_json::to_vec_pretty(&sim.state())?,
        )?;
        for email in &after.mismatched {
            tracing::warn!(buyer = %enroll_core::redact::mask_email(email), "Groups differ from the ledger");
        }
    }
    sim.shutdown().await;
    Ok(report)
}

/// The summary `enroll chaos` prints without `--json`.
pub fn print(r: &ChaosReport) {
    println!(
        "{} events ({} deliveries: {} duplicates, {} refunds before and {} after their purchase) for {} buyers",
        r.events, r.deliveries, r.duplicate_deliveries, r.early_refunds, r.late_refunds, r.buyers
    );
    println!(
        "{} SCIM/Notion requests at a {:.0}% fault rate; worker killed {} times mid-batch; {:.1} s",
        r.requests,
        r.fault_rate * 100.0,
        r.kills_mid_batch,
        r.seconds
    );
    println!(
        "before replay: {} applied, {} parked, {} lost",
        r.applied_before_replay, r.dlq_before_replay, r.lost_before_replay
    );
    println!(
        "after replay:  {} applied, {} lost, {} buyers mismatched, {} duplicate creates",
        r.applied_after_replay, r.lost, r.mismatched_buyers, r.duplicate_creates
    );
    println!("{}", if r.passed() { "PASSED" } else { "FAILED" });
}
