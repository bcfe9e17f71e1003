//! The deliveries: every webhook of the plan, signed and posted to a local endpoint, which
//! queues it. A single seller's run posts to an embedded runtime of the driver's own on the
//! data directory; a run with tenants posts to the `enroll dev --tenants` child.

use super::{Delivery, Plan};
use crate::send;
use anyhow::Context;
use chrono::Utc;
use enroll_core::config::Config;
use enroll_embedded::runtime::{Options, Runtime};
use enroll_platforms::Outgoing;
use std::collections::BTreeMap;
use std::path::Path;

/// Posts deliveries to one endpoint and keeps what came of them.
pub(super) struct Poster {
    http: reqwest::Client,
    /// A platform's retry resends the first attempt's body unchanged (some samples derive ids
    /// from the clock, so signing again would make a different event under the same id).
    first_attempt: BTreeMap<usize, Outgoing>,
    /// Accepted event keys, to the event of the plan each delivers.
    pub(super) keys: BTreeMap<String, usize>,
    /// Deliveries the endpoint did not answer 202.
    pub(super) refused: usize,
}

impl Poster {
    pub(super) fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            first_attempt: BTreeMap::new(),
            keys: BTreeMap::new(),
            refused: 0,
        }
    }

    /// Signs `d` with the platform's secret in `config` (once per event) and posts it to the
    /// endpoint at `base`.
    pub(super) async fn deliver(
        &mut self,
        config: &Config,
        base: &str,
        d: &Delivery,
    ) -> anyhow::Result<()> {
        let secret = send::signing_secret(config, d.platform)?;
        let url = send::webhook_url(base, d.platform);
        let out = self.first_attempt.entry(d.event).or_insert_with(|| {
            enroll_platforms::sample(d.platform, &d.sample, &secret, Utc::now())
        });
        let (status, body) = send::post_signed(&self.http, &url, out).await?;
        if status != 202 {
            tracing::warn!(
                status,
                platform = %d.platform,
                kind = d.sample.kind.as_str(),
                "delivery refused"
            );
            self.refused += 1;
            return Ok(());
        }
        let key = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("event_key")?.as_str().map(str::to_owned))
            .context("202 without an event key")?;
        self.keys.entry(key).or_insert(d.event);
        Ok(())
    }
}

/// Posts every delivery to the local endpoint of an embedded runtime on `dir`, in plan order;
/// returns the accepted event keys (key to event index) and how many deliveries were refused.
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
    let mut poster = Poster::new(reqwest::Client::new());
    for d in &plan.deliveries {
        poster.deliver(config, &base, d).await?;
    }
    server.abort();
    let _ = server.await;
    drop(rt);
    Ok((poster.keys, poster.refused))
}
