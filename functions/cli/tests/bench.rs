//! `enroll bench --json` runs end to end on a small workload and reports every figure the
//! README quotes. No figure is checked against a target: that is the benchmark's job, not a
//! test's, on a machine shared with other builds.

use std::process::Command;

#[test]
fn a_small_bench_reports_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_enroll"))
        .args([
            "bench",
            "--purchases",
            "20",
            "--members",
            "200",
            "--webhooks",
            "200",
            "--skip-functions",
            "--spike",
            "200",
            "--json",
        ])
        .output()
        .expect("enroll runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("one JSON object");
    let mut keys = vec![
        "ingest.webhooks_per_sec_per_core".to_owned(),
        "ingest.p99_ms".into(),
        "provision.rate_efficiency".into(),
        "provision.requests_per_new_buyer".into(),
        "provision.failed".into(),
        "backfill.requests".into(),
        "backfill.per_member_requests".into(),
        "backfill.wall_over_floor".into(),
        "latency.steady.p50_ms".into(),
        "latency.steady.p99_ms".into(),
        "latency.spike.purchases".into(),
        "latency.spike.floor_s".into(),
        "latency.spike.wall_over_floor".into(),
        "latency.spike.p99_over_floor".into(),
        "provision.scim_rate_efficiency".into(),
        "provision.api_rate_efficiency".into(),
    ];
    for f in ["ingest", "provision", "align", "expire"] {
        keys.push(format!("functions.{f}.init_ms"));
        keys.push(format!("functions.{f}.peak_rss_mb"));
    }
    // Cost: present on every run; with the functions skipped the figures are null and
    // `cost.skipped` says why (they come from the function binaries' measurements).
    for k in [
        "usd_per_1000_purchases",
        "lambda_gb_s_usd",
        "lambda_requests_usd",
        "sqs_usd",
        "dynamodb_usd",
        "secrets_manager_usd",
        "cloudwatch_usd",
        "assumptions",
    ] {
        keys.push(format!("cost.{k}"));
    }
    for k in &keys {
        assert!(report.contains_key(k), "missing {k} in {report:?}");
    }
    assert!(report["cost.skipped"].is_string(), "{report:?}");
    assert!(
        report["cost.assumptions"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{report:?}"
    );
    // Every purchase of the small run reached its Groups.
    assert_eq!(report["provision.failed"], 0, "{report:?}");
    assert_eq!(report["backfill.per_member_requests"], 400);
    // Every purchase of the spike reached its Groups (the bench fails otherwise) and align
    // wrote each buyer's row.
    assert_eq!(report["latency.spike.purchases"], 200);
    assert_eq!(report["latency.spike.rows_created"], 200);
}
