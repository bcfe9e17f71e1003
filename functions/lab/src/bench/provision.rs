//! Provision against the rate limit: new buyers in batches of [`BATCH`], [`PROVISION_WORKERS`]
//! workers sharing one budget set to the simulator's limit.

use super::report::round;
use super::{
    config, limit, metered, scim_requests, simulator, Counting, Report, BATCH, GROUPS_PER_PRODUCT,
    PROVISION_PRODUCTS, PROVISION_WORKERS,
};
use chrono::Utc;
use enroll_core::batch::Incoming;
use enroll_core::event::{Buyer, EventKind, OrderEvent};
use enroll_core::ids::{
    BuyerEmail, EventId, EventKey, OrderId, OrderKey, Platform, PlatformProductRef,
};
use enroll_embedded::seed;
use enroll_embedded::store::FileStore;
use enroll_notion::scim::ScimClient;
use provision::Provisioner;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The order event ingest makes of [`super::ingest::stripe_purchase`]`(i, product)`.
pub(super) fn purchase_event(i: usize, product: &str) -> OrderEvent {
    OrderEvent {
        key: EventKey::new(
            Platform::Stripe,
            EventId::parse(&format!("evt_bench_{i}")).expect("a valid id"),
        ),
        kind: EventKind::Purchase,
        order: OrderKey {
            platform: Platform::Stripe,
            order_id: OrderId::parse(&format!("cs_bench_{i}")).expect("a valid id"),
        },
        buyer: Some(Buyer {
            email: BuyerEmail::parse(&format!("buyer{i}@example.com")).expect("a valid email"),
            name: Some(format!("Buyer {i}")),
        }),
        items: vec![PlatformProductRef::parse(product).expect("a valid reference")],
        occurred_at: Utc::now(),
        accepted_at: Some(Utc::now()),
    }
}

fn incoming(i: usize, body: String) -> Incoming {
    Incoming {
        receive_count: 1,
        id: format!("msg-{i}"),
        body,
    }
}

/// `n` new buyers of the course, each into its two Groups.
pub(super) async fn bench(n: usize, rate: f64) -> anyhow::Result<Report> {
    let seed_cfg = config(rate, None, PROVISION_PRODUCTS)?;
    let sim = simulator(seed::from_config(&seed_cfg), Some(limit(rate))).await?;
    let cfg = Arc::new(config(rate, Some(&sim), PROVISION_PRODUCTS)?);
    let budget = metered(&cfg);
    let scim = ScimClient::new(&cfg.scim, budget.clone()).map_err(|f| anyhow::anyhow!(f.reason))?;
    let store = Arc::new(FileStore::in_memory());
    let align = Arc::new(Counting::default());
    let provisioner = Provisioner::new(
        cfg.clone(),
        store.clone(),
        store,
        Arc::new(scim),
        align.clone(),
    );
    let messages: Vec<Incoming> = (0..n)
        .map(|i| {
            incoming(
                i,
                serde_json::to_string(&purchase_event(i, "course")).unwrap_or_default(),
            )
        })
        .collect();
    let batches: Mutex<VecDeque<&[Incoming]>> = Mutex::new(messages.chunks(BATCH).collect());
    let dead = Counting::default();
    let failed = AtomicUsize::new(0);
    sim.reset_counters();
    let started = Instant::now();
    let worker = || async {
        loop {
            let Some(batch) = batches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
            else {
                return;
            };
            let deadline = Utc::now() + chrono::TimeDelta::seconds(60);
            let r = provision::batch::run(&provisioner, &dead, batch, deadline).await;
            failed.fetch_add(r.retries.len() + r.parked, Ordering::Relaxed);
        }
    };
    // PROVISION_WORKERS instances, interleaving at every await and sharing the budget.
    tokio::join!(worker(), worker());
    let wall = started.elapsed().as_secs_f64();
    let last = budget.last_request_s(started, wall);
    let requests = scim_requests(&sim);
    let throttled = budget.throttled.load(Ordering::Relaxed);
    let accepted = requests.saturating_sub(throttled) as f64;
    // The last request holds the budget for one interval too.
    let busy = last + 1.0 / rate;
    let in_groups = ["Course", "Course Community"]
        .iter()
        .map(|g| sim.group_members(g).len())
        .min()
        .unwrap_or(0);
    let mut failed = failed.load(Ordering::Relaxed);
    // A buyer missing from a Group is a failure whatever the reports said.
    failed = failed.max(n.saturating_sub(in_groups));
    let created = *sim.counters().get("POST /scim/v2/Users").unwrap_or(&0);
    Ok(Report::from([
        ("provision.purchases".into(), json!(n)),
        ("provision.workers".into(), json!(PROVISION_WORKERS)),
        (
            "provision.groups_per_product".into(),
            json!(GROUPS_PER_PRODUCT),
        ),
        ("provision.requests".into(), json!(requests)),
        ("provision.members_created".into(), json!(created)),
        ("provision.busy_s".into(), json!(round(busy, 3))),
        ("provision.wall_s".into(), json!(round(wall, 3))),
        (
            "provision.achieved_rps".into(),
            json!(round(accepted / busy, 2)),
        ),
        (
            "provision.rate_efficiency".into(),
            json!(round(accepted / busy / rate, 4)),
        ),
        (
            "provision.requests_per_new_buyer".into(),
            json!(round(requests as f64 / n.max(1) as f64, 3)),
        ),
        ("provision.throttled_429".into(), json!(throttled)),
        ("provision.failed".into(), json!(failed)),
        (
            "provision.align_requests".into(),
            json!(align.0.load(Ordering::Relaxed)),
        ),
    ]))
}
