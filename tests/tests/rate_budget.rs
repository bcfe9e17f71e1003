//! The shared Notion budget against DynamoDB (moto): several instances, each its own
//! `DynamoRateBudget` over the same table and token, behave as one budget.

use enroll_aws::DynamoRateBudget;
use enroll_core::config::{RateLimit, Secret};
use enroll_core::ports::RateBudget;
use enroll_tests::moto;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "secret_shared_scim_token";

async fn instances(n: usize, rate: f64, burst: u32) -> Vec<Arc<DynamoRateBudget>> {
    let store = moto::store().await.expect("moto table");
    let limit = RateLimit {
        requests_per_second: rate,
        burst,
    };
    (0..n)
        .map(|_| {
            Arc::new(DynamoRateBudget::new(
                store.client.clone(),
                store.table.clone(),
                &Secret::new(TOKEN),
                limit,
            ))
        })
        .collect()
}

/// Every instance runs `tasks` callers that each acquire `per_task` times; returns when each
/// acquisition was granted, from the start.
async fn acquire_all(
    budgets: &[Arc<DynamoRateBudget>],
    tasks: usize,
    per_task: usize,
) -> Vec<Duration> {
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for b in budgets {
        for _ in 0..tasks {
            let b = b.clone();
            handles.push(tokio::spawn(async move {
                let mut times = Vec::new();
                for _ in 0..per_task {
                    b.acquire().await;
                    times.push(t0.elapsed());
                }
                times
            }));
        }
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_together_stay_within_one_rate() {
    let (rate, burst) = (20.0, 4);
    let budgets = instances(3, rate, burst).await;
    let times = acquire_all(&budgets, 4, 5).await;
    let n = times.len();
    assert_eq!(n, 60);

    // Together they cannot go faster than one bucket: N tokens need (N - burst) / rate seconds.
    let floor = (n as f64 - f64::from(burst)) / rate;
    let took = times.last().unwrap().as_secs_f64();
    assert!(took >= floor - 0.01, "{n} acquisitions in {took:.3} s");

    // No one-second window holds more than the rate plus the burst (and one slot of grace,
    // with a little room for a timer that fires late on a busy machine).
    let most = f64::from(burst) + 1.0 + rate * 1.05;
    for (i, start) in times.iter().enumerate() {
        let inside = times[i..]
            .iter()
            .take_while(|t| **t - *start < Duration::from_secs(1))
            .count();
        assert!(
            inside as f64 <= most,
            "{inside} requests within 1 s from {start:?}: {times:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_off_from_one_instance_delays_the_others() {
    let budgets = instances(2, 50.0, 2).await;
    let (a, b) = (&budgets[0], &budgets[1]);
    // Both have used the budget, so each holds a cached copy of the item.
    a.acquire().await;
    b.acquire().await;

    let t0 = Instant::now();
    a.back_off(Duration::from_secs(2)).await;
    b.acquire().await;
    assert!(
        t0.elapsed() >= Duration::from_millis(1990),
        "instance b sent {:?} after instance a's 2 s back-off",
        t0.elapsed()
    );
}

/// Many instances leasing at once: every lease is exactly one DynamoDB write (no lost races to
/// pay for), and the slots handed out, wherever they went, fit one token bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contended_leases_cost_one_write_each_and_keep_the_rate() {
    let (rate, burst) = (50.0, 3);
    let budgets = instances(4, rate, burst).await;
    let mut handles = Vec::new();
    for b in &budgets {
        for _ in 0..6 {
            let b = b.clone();
            handles.push(tokio::spawn(async move {
                let mut slots = Vec::new();
                for _ in 0..8 {
                    slots.push(b.acquire_slot().await);
                }
                slots
            }));
        }
    }
    let mut slots = Vec::new();
    for h in handles {
        slots.extend(h.await.unwrap());
    }
    assert_eq!(slots.len(), 4 * 6 * 8);

    let writes: u64 = budgets.iter().map(|b| b.table_writes()).sum();
    let leases: u64 = budgets.iter().map(|b| b.leases()).sum();
    eprintln!(
        "{leases} leases, {writes} writes: {:.2} writes per lease",
        writes as f64 / leases as f64
    );
    assert!(leases > 4, "every instance leased at least once: {leases}");
    assert_eq!(writes, leases, "one write per lease");

    // The slots in any window of length W number at most burst + rate·W, whoever holds them.
    slots.sort_unstable();
    for (i, first) in slots.iter().enumerate() {
        for (j, last) in slots.iter().enumerate().skip(i) {
            let w = (last - first) as f64 / 1e6;
            let count = j - i + 1;
            assert!(
                count as f64 <= f64::from(burst) + rate * w + 1e-9,
                "{count} slots within {w:.3} s"
            );
        }
    }
}
