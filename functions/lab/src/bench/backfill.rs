//! Backfill: workspace members who bought one of three products, through `enroll backfill
//! plan` and `apply`, against a script that looks each member up and PATCHes them alone (two
//! requests per member); the floor is the requests at the limit.

use super::report::round;
use super::{
    config, limit, metered, scim_requests, simulator, Report, BACKFILL_PRODUCTS,
    BACKFILL_PRODUCT_IDS,
};
use chrono::Utc;
use enroll_core::ids::Platform;
use enroll_embedded::seed;
use enroll_embedded::store::FileStore;
use enroll_notion::scim::ScimClient;
use enroll_ops::backfill::{self, ApplyOptions, Columns, PlanOptions};
use enroll_ops::workspace::{Ledger, Workspace};
use enroll_simulator::{Email, User};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// `m` existing members, each with a purchase of one of three products, through `plan` and
/// `apply`.
pub(super) async fn bench(m: usize, rate: f64) -> anyhow::Result<Report> {
    let seed_cfg = config(rate, None, BACKFILL_PRODUCTS)?;
    let mut state = seed::from_config(&seed_cfg);
    let now = Utc::now();
    let mut csv = String::from("email,product,order_id,date\n");
    for i in 0..m {
        let email = format!("member{i}@example.com");
        state.users.push(User {
            id: uuid::Uuid::new_v4().to_string(),
            user_name: email.clone(),
            external_id: None,
            name: None,
            display_name: None,
            emails: vec![Email {
                value: email.clone(),
                kind: Some("work".into()),
                primary: true,
            }],
            active: true,
            deleted: false,
            role: "member".into(),
            created: now,
            last_modified: now,
        });
        let product = BACKFILL_PRODUCT_IDS[i % BACKFILL_PRODUCT_IDS.len()];
        csv.push_str(&format!(
            "{email},{product},bf_{i},{}\n",
            now.format("%Y-%m-%d")
        ));
    }
    let sim = simulator(state, Some(limit(rate))).await?;
    let cfg = config(rate, Some(&sim), BACKFILL_PRODUCTS)?;
    let budget = metered(&cfg);
    let scim = ScimClient::new(&cfg.scim, budget.clone()).map_err(|f| anyhow::anyhow!(f.reason))?;
    let catalog = cfg.catalog.clone();
    let store = FileStore::in_memory();
    let ledger = Ledger::new(store.clone(), Arc::new(store));
    let ws = Workspace::new(cfg, ledger, scim);
    let dir = tempfile_dir()?;
    let plan_path = dir.join("backfill-plan.json");

    sim.reset_counters();
    let started = Instant::now();
    let sales = backfill::read_sales(
        csv.as_bytes(),
        &Columns::default(),
        &catalog,
        Platform::Stripe,
    )?;
    let plan = backfill::plan(
        &ws,
        sales,
        &PlanOptions {
            sales_file: "bench.csv".into(),
            prune: false,
            create_missing: false,
        },
        Utc::now(),
        &indicatif::ProgressBar::hidden(),
    )
    .await?;
    std::fs::write(&plan_path, serde_json::to_vec(&plan)?)?;
    let planned = started.elapsed().as_secs_f64();
    let plan_requests = scim_requests(&sim);
    let applied = backfill::apply(
        &ws,
        &plan_path,
        &ApplyOptions {
            show_progress: false,
        },
    )
    .await?;
    let wall = started.elapsed().as_secs_f64();
    let last_request = budget.last_request_s(started, wall);
    let _ = std::fs::remove_dir_all(&dir);

    let requests = scim_requests(&sim);
    let per_member = 2 * m as u64;
    let floor = requests as f64 / rate;
    let in_groups: usize = ["Templates", "Coaching", "Workshop"]
        .iter()
        .map(|g| sim.group_members(g).len())
        .sum();
    Ok(Report::from([
        ("backfill.members".into(), json!(m)),
        ("backfill.groups".into(), json!(3)),
        ("backfill.members_added".into(), json!(in_groups)),
        ("backfill.requests".into(), json!(requests)),
        ("backfill.apply_requests".into(), json!(applied.requests)),
        ("backfill.per_member_requests".into(), json!(per_member)),
        (
            "backfill.fewer_requests_x".into(),
            json!(round(per_member as f64 / requests.max(1) as f64, 1)),
        ),
        (
            "backfill.throttled_429".into(),
            json!(budget.throttled.load(Ordering::Relaxed)),
        ),
        ("backfill.wall_s".into(), json!(round(wall, 3))),
        ("backfill.plan_s".into(), json!(round(planned, 3))),
        ("backfill.plan_requests".into(), json!(plan_requests)),
        (
            "backfill.last_request_s".into(),
            json!(round(last_request, 3)),
        ),
        ("backfill.floor_s".into(), json!(round(floor, 3))),
        (
            "backfill.wall_over_floor".into(),
            json!(round(wall / floor.max(1e-9), 3)),
        ),
    ]))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("enroll-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
