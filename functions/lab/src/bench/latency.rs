//! Time to access: from the webhook's 202 until the buyer is in every Group the purchase
//! grants, through the whole embedded pipeline (the webhook listener, ingest, the queues, the
//! runtime's provision and align workers with the shipped timings) against a simulator that
//! answers every request after a realistic latency and limits SCIM and the public API apart.
//!
//! Membership is seen through the simulator's join watch ([`SimHandle::watch_joins`]), so
//! watching spends none of the SCIM budget.
//!
//! - steady: purchases at a trickle, one every `5 × (1 + Groups) / rate` seconds, so the
//!   requests they need use a fifth of the limit;
//! - spike: `spike` purchases posted at once (64 at a time), all new buyers. Its floor is the
//!   fewest SCIM requests that run could have granted access with (one create per buyer plus
//!   the Group PATCHes it sent, each carrying many buyers) over the SCIM limit; the wall is
//!   from the first webhook posted to the last buyer in their Groups. Meanwhile align writes
//!   each buyer's row through the public API, so both budgets are busy in the same run: each
//!   budget's efficiency is the requests it accepted per busy second (first to last accepted
//!   request, plus one interval) over its limit.

use super::ingest::stripe_purchase;
use super::report::{percentile, round};
use super::{
    config, limit, simulator, Report, GROUPS_PER_PRODUCT, PROVISION_PRODUCTS, STRIPE_SECRET,
};
use anyhow::Context;
use chrono::Utc;
use enroll_core::ids::Platform;
use enroll_embedded::runtime::{Options, Runtime};
use enroll_embedded::{seed, server};
use enroll_simulator::{BudgetUse, Joined, SimHandle};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};

/// Webhooks in flight at once while the spike is posted.
const POSTERS: usize = 64;
/// Purchases in the steady part.
const STEADY: usize = 50;

/// When each buyer (by bench index) joined how many of the Groups, and when the last.
type Access = Arc<Mutex<HashMap<usize, (usize, Instant)>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bench index of `buyer{i}@example.com`.
fn buyer_index(user_name: &str) -> Option<usize> {
    user_name
        .strip_prefix("buyer")?
        .strip_suffix("@example.com")?
        .parse()
        .ok()
}

fn collect(mut joins: mpsc::UnboundedReceiver<Joined>, access: Access) {
    tokio::spawn(async move {
        while let Some(j) = joins.recv().await {
            if let Some(i) = buyer_index(&j.user_name) {
                let mut a = lock(&access);
                let e = a.entry(i).or_insert((0, j.at));
                e.0 += 1;
                e.1 = e.1.max(j.at);
            }
        }
    });
}

/// Posts buyer `i`'s signed purchase and returns when its 202 came back.
async fn post(http: &reqwest::Client, addr: SocketAddr, i: usize) -> anyhow::Result<Instant> {
    let out = enroll_platforms::sample(
        Platform::Stripe,
        &stripe_purchase(i, "course"),
        STRIPE_SECRET,
        Utc::now(),
    );
    let mut req = http
        .post(format!("http://{addr}/webhooks/stripe"))
        .body(out.body);
    for (k, v) in out.headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.context("posting a webhook")?;
    let at = Instant::now();
    anyhow::ensure!(
        resp.status().as_u16() == 202,
        "the webhook listener answered {}",
        resp.status()
    );
    Ok(at)
}

/// Waits until the `accepted` buyers are in every Group, up to `timeout`; their times to access.
async fn access_times(
    access: &Access,
    accepted: &HashMap<usize, Instant>,
    timeout: Duration,
) -> anyhow::Result<(Vec<Duration>, Instant)> {
    let until = Instant::now() + timeout;
    loop {
        let done = {
            let a = lock(access);
            accepted
                .keys()
                .filter_map(|i| a.get(i).filter(|(n, _)| *n >= GROUPS_PER_PRODUCT))
                .count()
        };
        if done == accepted.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "only {done} of {} buyers reached their Groups in {timeout:?}",
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let a = lock(access);
    let mut times: Vec<Duration> = accepted
        .iter()
        .map(|(i, at)| a[i].1.saturating_duration_since(*at))
        .collect();
    times.sort();
    // The moment the last of these buyers had access.
    let last = accepted
        .keys()
        .map(|i| a[i].1)
        .max()
        .unwrap_or_else(Instant::now);
    Ok((times, last))
}

/// Accepted requests per busy second over the limit.
fn efficiency(used: &BudgetUse, rate: f64) -> f64 {
    match (used.first, used.last) {
        (Some(first), Some(last)) => {
            let busy = last.duration_since(first).as_secs_f64() + 1.0 / rate;
            used.accepted as f64 / busy / rate
        }
        _ => 0.0,
    }
}

fn count(sim: &SimHandle, endpoint: &str) -> u64 {
    *sim.counters().get(endpoint).unwrap_or(&0)
}

pub(super) async fn bench(rate: f64, latency: Duration, spike: usize) -> anyhow::Result<Report> {
    let seed_cfg = config(rate, None, PROVISION_PRODUCTS)?;
    let sim = simulator(seed::from_config(&seed_cfg), None).await?;
    // SCIM and the public API each get their configured limit, in their own bucket.
    let cfg = config(rate, Some(&sim), PROVISION_PRODUCTS)?;
    let (scim_rate, api_rate) = (
        cfg.rate.scim().requests_per_second,
        cfg.rate.api().requests_per_second,
    );
    sim.set_scim_rate_limit(Some(limit(scim_rate)));
    sim.set_notion_rate_limit(Some(limit(api_rate)));
    sim.set_latency(Some(latency));
    let access: Access = Arc::default();
    collect(sim.watch_joins(), access.clone());
    let rt = Runtime::start(Options {
        config: cfg,
        data_dir: None,
        timings: Default::default(),
        simulate: false,
    })
    .await?;
    let (stop, stopped) = watch::channel(false);
    let workers = rt.spawn_workers(stopped);
    let (addr, listener) = server::serve(rt.clone(), "127.0.0.1:0".parse()?).await?;
    let http = reqwest::Client::new();

    // Steady: one purchase at a time, at a fifth of the limit.
    let every = Duration::from_secs_f64(5.0 * (1 + GROUPS_PER_PRODUCT) as f64 / scim_rate);
    let mut accepted = HashMap::new();
    for i in 0..STEADY {
        let started = Instant::now();
        accepted.insert(i, post(&http, addr, i).await?);
        tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
    }
    let (steady, _) = access_times(&access, &accepted, Duration::from_secs(60)).await?;
    anyhow::ensure!(
        rt.settle(Duration::from_secs(60)).await,
        "the steady purchases did not settle"
    );

    // Spike: every purchase at once, new buyers only.
    sim.reset_counters();
    let posters = Arc::new(Semaphore::new(POSTERS));
    let first = Instant::now();
    let mut posted = tokio::task::JoinSet::new();
    for i in STEADY..STEADY + spike {
        let (http, posters) = (http.clone(), posters.clone());
        posted.spawn(async move {
            let _slot = posters.acquire_owned().await;
            post(&http, addr, i).await.map(|at| (i, at))
        });
    }
    let mut accepted = HashMap::new();
    while let Some(r) = posted.join_next().await {
        let (i, at) = r??;
        accepted.insert(i, at);
    }
    let posted_s = first.elapsed().as_secs_f64();
    // Generous: a run far off the floor is reported, not cut short.
    let timeout = Duration::from_secs_f64(60.0 + 20.0 * spike as f64 / scim_rate.min(api_rate));
    let (times, last) = access_times(&access, &accepted, timeout).await?;
    let wall = last.duration_since(first).as_secs_f64();
    let settled = rt.settle(timeout).await;
    let scim = sim.scim_budget_use();
    let api = sim.notion_budget_use();
    let creates = count(&sim, "POST /scim/v2/Users");
    let patches = count(&sim, "PATCH /scim/v2/Groups/{id}");
    let rows = count(&sim, "POST /v1/pages");

    let _ = stop.send(true);
    for w in workers {
        let _ = w.await;
    }
    listener.abort();
    anyhow::ensure!(settled, "align did not finish the spike's rows");

    // The fewest requests that grant this spike access: a create per new buyer, and the
    // coalesced PATCHes (each already carries many buyers).
    let floor_requests = spike as u64 + patches.saturating_sub(scim.throttled);
    let floor = floor_requests as f64 / scim_rate;
    let p99 = percentile(&times, 0.99) / 1e3;
    Ok(Report::from([
        (
            "latency.simulated_ms".into(),
            json!(latency.as_millis() as u64),
        ),
        ("latency.steady.purchases".into(), json!(STEADY)),
        (
            "latency.steady.every_ms".into(),
            json!(round(every.as_secs_f64() * 1e3, 1)),
        ),
        (
            "latency.steady.p50_ms".into(),
            json!(round(percentile(&steady, 0.5), 1)),
        ),
        (
            "latency.steady.p99_ms".into(),
            json!(round(percentile(&steady, 0.99), 1)),
        ),
        ("latency.spike.purchases".into(), json!(spike)),
        ("latency.spike.posted_s".into(), json!(round(posted_s, 3))),
        (
            "latency.spike.scim_requests".into(),
            json!(scim.accepted + scim.throttled),
        ),
        ("latency.spike.scim_creates".into(), json!(creates)),
        ("latency.spike.group_patches".into(), json!(patches)),
        (
            "latency.spike.throttled_429".into(),
            json!(scim.throttled + api.throttled),
        ),
        ("latency.spike.floor_s".into(), json!(round(floor, 3))),
        ("latency.spike.wall_s".into(), json!(round(wall, 3))),
        (
            "latency.spike.wall_over_floor".into(),
            json!(round(wall / floor, 3)),
        ),
        (
            "latency.spike.p50_ms".into(),
            json!(round(percentile(&times, 0.5), 1)),
        ),
        (
            "latency.spike.p99_ms".into(),
            json!(round(percentile(&times, 0.99), 1)),
        ),
        (
            "latency.spike.p99_over_floor".into(),
            json!(round(p99 / floor, 3)),
        ),
        ("latency.spike.rows_created".into(), json!(rows)),
        (
            "provision.scim_rate_efficiency".into(),
            json!(round(efficiency(&scim, scim_rate), 4)),
        ),
        (
            "provision.api_rate_efficiency".into(),
            json!(round(efficiency(&api, api_rate), 4)),
        ),
    ]))
}
