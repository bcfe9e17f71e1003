//! SCIM and the public API spend separate request budgets (`[rate.scim]`, `[rate.api]`), each at
//! its own limit, with `[rate]` far above both.
//!
//! The embedded pipeline runs against the simulator, whose SCIM and public-API buckets enforce
//! exactly the two configured limits (answering 429 over them). A client that spent the other
//! budget's limit, or the `[rate]` default, would go faster than its bucket allows and be
//! answered 429; so "no 429 on either API" means each client kept to its own budget. Both
//! directions are run (SCIM slow, then the public API slow), and with the public API slow the
//! buyers all have their Groups while the sales database is still catching up: a backlog of
//! align requests does not hold provision back.
//!
//! Outcomes are read from the simulator's state and from the Notion clients' own debug log
//! lines (one per request, naming the API and the status); nothing is timed.

use enroll_core::config::{Config, RateLimit};
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use enroll_core::timings::Timings;
use enroll_embedded::runtime::{Options, Runtime};
use enroll_platforms::Sample;
use enroll_simulator::SimHandle;
use enroll_tests::log_capture::Capture;
use std::time::Duration;

const GROUP: &str = "Notion Mastery";
const FAST: RateLimit = RateLimit {
    requests_per_second: 200.0,
    burst: 20,
};

/// The example configuration with `[rate]` at 1000/s and each budget's own sub-table, parsed
/// from TOML as a user's file would be.
fn config(scim: RateLimit, api: RateLimit) -> Config {
    let example = enroll_embedded::config_file::EXAMPLE;
    let default = "requests_per_second = 3.0\nburst = 3\n";
    assert!(example.contains(default), "the example's [rate] changed");
    let rate = format!(
        "requests_per_second = 1000.0\nburst = 100\n\n\
         [rate.scim]\nrequests_per_second = {:?}\nburst = {}\n\n\
         [rate.api]\nrequests_per_second = {:?}\nburst = {}\n",
        scim.requests_per_second, scim.burst, api.requests_per_second, api.burst
    );
    let config = Config::from_toml(&example.replacen(default, &rate, 1), |_| None)
        .expect("the example with [rate.scim] and [rate.api] is valid");
    assert_eq!((config.rate.scim(), config.rate.api()), (scim, api));
    config
}

/// The simulator's bucket for a client budget: the same rate, and a little more burst so that
/// two requests the client sent a slot apart but that arrive together are not refused.
fn bucket(limit: RateLimit) -> enroll_simulator::RateLimit {
    enroll_simulator::RateLimit {
        per_second: limit.requests_per_second,
        burst: limit.burst + 2,
    }
}

/// What the Notion clients logged, per API.
#[derive(Debug, Default)]
struct Seen {
    scim_requests: usize,
    api_requests: usize,
    scim_throttled: usize,
    api_throttled: usize,
}

fn seen(log: &Capture) -> Seen {
    let mut s = Seen::default();
    for line in log.lines() {
        let scim = line.contains("api=\"SCIM\"");
        let api = line.contains("api=\"Notion\"");
        if line.contains("status=429") {
            s.scim_throttled += usize::from(scim);
            s.api_throttled += usize::from(api);
        } else if line.contains("request done") {
            s.scim_requests += usize::from(scim);
            s.api_requests += usize::from(api);
        }
    }
    s
}

fn purchase(i: usize) -> Sample {
    Sample {
        kind: EventKind::Purchase,
        product: "notion-mastery".into(),
        email: email(i),
        name: Some(format!("Buyer {i}")),
        order_id: Some(format!("ord_split_{i}")),
        event_id: Some(format!("msg_split_{i}")),
    }
}

fn email(i: usize) -> String {
    format!("split.{i}@example.com")
}

/// Buyers who are members of the Group the purchase grants.
fn with_access(sim: &SimHandle, n: usize) -> usize {
    let members = sim.group_members(GROUP);
    (0..n)
        .filter(|i| {
            sim.user_by_email(&email(*i))
                .is_some_and(|u| members.contains(&u.id))
        })
        .count()
}

/// Sales records naming one of the buyers.
fn sales_rows(sim: &SimHandle, n: usize) -> usize {
    let state = sim.state();
    (0..n)
        .filter(|i| {
            let e = email(*i);
            state
                .pages
                .iter()
                .any(|p| format!("{:?}", p.properties).contains(&e))
        })
        .count()
}

/// Polls `done` every 20 ms; false if it still does not hold after a minute (a hang, not a
/// measurement).
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..3000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

struct Run {
    seen: Seen,
    /// Sales records already written when the last buyer got access.
    rows_when_all_had_access: usize,
}

/// `n` purchases through the embedded pipeline, with the simulator enforcing the two budgets.
fn run(scim: RateLimit, api: RateLimit, n: usize) -> Run {
    let (log, _guard) = Capture::install("enroll_notion=debug");

    // One thread, so every task logs to this thread's subscriber.
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio_rt.block_on(async {
        let config = config(scim, api);
        let rt = Runtime::start(Options {
            config: config.clone(),
            data_dir: None,
            timings: Timings::default(),
            simulate: true,
        })
        .await
        .expect("runtime starts");
        let sim = rt.simulator.as_ref().expect("simulated workspace");
        sim.set_scim_rate_limit(Some(bucket(scim)));
        sim.set_notion_rate_limit(Some(bucket(api)));
        let (addr, server) =
            enroll_embedded::server::serve(rt.clone(), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let workers = rt.spawn_workers(stop_rx);

        let url = enroll_lab::send::webhook_url(&format!("http://{addr}"), Platform::Standard);
        let secret = enroll_lab::send::signing_secret(&config, Platform::Standard).unwrap();
        let http = reqwest::Client::new();
        for i in 0..n {
            let (status, body) =
                enroll_lab::send::post(&http, &url, Platform::Standard, &purchase(i), &secret)
                    .await
                    .unwrap();
            assert_eq!(status, 202, "{body}");
        }

        assert!(
            eventually(|| with_access(sim, n) == n).await,
            "{} of {n} buyers have access; {:?}",
            with_access(sim, n),
            seen(&log)
        );
        let rows_when_all_had_access = sales_rows(sim, n);
        assert!(
            eventually(|| sales_rows(sim, n) == n).await,
            "{} of {n} sales records; {:?}",
            sales_rows(sim, n),
            seen(&log)
        );
        let _ = stop_tx.send(true);
        for w in workers {
            let _ = w.await;
        }
        server.abort();
        Run {
            seen: seen(&log),
            rows_when_all_had_access,
        }
    })
}

#[test]
fn a_slow_public_api_does_not_hold_back_scim() {
    let n = 8;
    let api = RateLimit {
        requests_per_second: 2.0,
        burst: 2,
    };
    let run = run(FAST, api, n);
    let s = &run.seen;
    assert_eq!((s.scim_throttled, s.api_throttled), (0, 0), "{s:?}");
    assert!(s.scim_requests >= n && s.api_requests >= n, "{s:?}");
    // Every buyer had access while the sales database was still being written at 2/s: the
    // align backlog never stood in provision's way.
    assert!(run.rows_when_all_had_access < n, "{s:?}");
}

#[test]
fn a_slow_scim_budget_holds_scim_only() {
    let n = 5;
    let scim = RateLimit {
        requests_per_second: 5.0,
        burst: 2,
    };
    let run = run(scim, FAST, n);
    let s = &run.seen;
    assert_eq!((s.scim_throttled, s.api_throttled), (0, 0), "{s:?}");
    assert!(s.scim_requests >= n && s.api_requests >= n, "{s:?}");
}
