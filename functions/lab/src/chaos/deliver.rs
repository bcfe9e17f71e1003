//! The deliveries: every webhook of the plan, signed and posted to the local endpoint of an
//! embedded runtime on the data directory, which queues it.

use super::Plan;
use crate::send;
use anyhow::Context;
use chrono::Utc;
use enroll_core::config::Config;
use enroll_embedded::runtime::{Options, Runtime};
use std::collections::BTreeMap;
use std::path::Path;

/// Posts every delivery to the local endpoint, in plan order; returns the accepted event keys
/// (key to event index) and how many deliveries were refused.
pub(super) async fn ingest(
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
