//! Ingest per core: Stripe webhooks signed first, then [`Ingest::handle`] on one thread with a
//! queue that only counts.

use super::report::{percentile, round};
use super::{config, Counting, Report, PROVISION_PRODUCTS, STRIPE_SECRET};
use anyhow::bail;
use chrono::Utc;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use ingest::{Ingest, WebhookRequest};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The `i`th bench buyer's Stripe checkout of `product`.
pub(super) fn stripe_purchase(i: usize, product: &str) -> enroll_platforms::Sample {
    enroll_platforms::Sample {
        kind: EventKind::Purchase,
        product: product.to_owned(),
        email: format!("buyer{i}@example.com"),
        name: Some(format!("Buyer {i}")),
        order_id: Some(format!("cs_bench_{i}")),
        event_id: Some(format!("evt_bench_{i}")),
    }
}

/// A signed delivery as the Function URL hands it to ingest.
pub(super) fn webhook(out: enroll_platforms::Outgoing) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: "/webhooks/stripe".into(),
        query: out.query,
        headers: out
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        body: out.body,
    }
}

/// One thread, one core: signing happens first and is not timed.
pub(super) fn bench(n: usize) -> anyhow::Result<Report> {
    let cfg = Arc::new(config(3.0, None, PROVISION_PRODUCTS)?);
    let now = Utc::now();
    let requests: Vec<WebhookRequest> = (0..n)
        .map(|i| {
            webhook(enroll_platforms::sample(
                Platform::Stripe,
                &stripe_purchase(i, "course"),
                STRIPE_SECRET,
                now,
            ))
        })
        .collect();
    let queue = Arc::new(Counting::default());
    let ingest = Ingest::new(cfg, queue.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    rt.block_on(async {
        for req in &requests {
            let t = Instant::now();
            let resp = ingest.handle(req, now).await;
            latencies.push(t.elapsed());
            if resp.status != 202 {
                bail!("ingest answered {} {}", resp.status, resp.body);
            }
        }
        Ok(())
    })?;
    let wall = started.elapsed().as_secs_f64();
    latencies.sort();
    anyhow::ensure!(
        queue.0.load(Ordering::Relaxed) == n,
        "not every webhook was queued"
    );
    Ok(Report::from([
        ("ingest.webhooks".into(), json!(n)),
        (
            "ingest.webhooks_per_sec_per_core".into(),
            json!(round(n as f64 / wall, 0)),
        ),
        (
            "ingest.p50_ms".into(),
            json!(round(percentile(&latencies, 0.5), 3)),
        ),
        (
            "ingest.p99_ms".into(),
            json!(round(percentile(&latencies, 0.99), 3)),
        ),
    ]))
}
