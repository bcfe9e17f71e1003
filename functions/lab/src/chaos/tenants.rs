//! `enroll chaos --tenants N`: the chaos run with several sellers on one `enroll dev --tenants`.
//!
//! Each tenant (alpha, beta, ...) gets a simulated Notion workspace of its own and a
//! configuration file of its own in `<scratch>/configs/<name>.toml`, with its own tokens and
//! its own webhook secrets. Every tenant's plan comes from the same seed, so the same platform
//! event ids and order ids occur in all of them, with buyers of its own
//! (`chaos.buyerN@<name>.example.com`): a shared id must be applied once in each tenant.
//!
//! One `enroll dev --tenants <scratch>/configs --data-dir <scratch>` child, the shipped process
//! with the shipped timings, serves them all; its tenants' data lives in
//! `<scratch>/tenants/<name>/`. The driver posts every tenant's deliveries, interleaved, to
//! `/t/<name>/webhooks/<platform>` of that child, and one in ten of each tenant's purchases
//! again, as a new event signed with that tenant's secret, to the next tenant's path: those
//! must get 401 and change nothing. Then, as in the single seller's run: both workspaces fault,
//! the child is killed mid-batch and restarted on the same data directory, each tenant's
//! dead-letter queues replay, and the verdict is taken per tenant, with isolation on top: no
//! tenant's workspace holds a user who is another tenant's buyer.

use super::deliver::Poster;
use super::workers::{self, DevProcess, Workers};
use super::{
    figures, keep_workspace, read_store, replay_dead_letters, scratch, unleash, verdict, workspace,
    ChaosOptions, ChaosReport, Plan, Tally, TenantReport, Workspace,
};
use crate::send;
use anyhow::Context;
use enroll_core::config::Config;
use enroll_core::event::EventKind;
use enroll_core::tenant::TenantId;
use enroll_embedded::admin::read_dev_record;
use enroll_embedded::tenants::tenant_dir;
use enroll_simulator::Faults;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The tenants' names, in order.
const NAMES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

/// One in this many of a tenant's purchases is also posted to the next tenant's path.
const MISROUTE_EVERY: usize = 10;

/// What marks a misrouted delivery's event id, so a wrongly accepted one is found in a store.
const MISROUTED: &str = "-misrouted";

/// One seller of the run.
struct Tenant {
    name: TenantId,
    /// `<scratch>/tenants/<name>/`, where the child keeps this tenant's store and queues.
    dir: PathBuf,
    /// The workspace, and the configuration exactly as the child reads it from its file.
    ws: Workspace,
    plan: Plan,
}

/// What the deliveries to one tenant came to.
struct Posted {
    poster: Poster,
    misrouted: usize,
    misrouted_refused: usize,
    misrouted_accepted: usize,
}

/// Writes the tenant's configuration file: `ws.config` with the workspace's tokens and a new
/// secret for every platform. The tokens go into the file because the environment's
/// overrides would apply to every tenant alike; the file is the owner's only and the tokens
/// are the run's simulator's. Returns the configuration as read back from the file.
fn write_config(configs: &Path, name: &TenantId, ws: &Workspace) -> anyhow::Result<Config> {
    // Secrets serialise as placeholders: each is set again here.
    let mut doc = toml::Value::try_from(&ws.config).context("serialising the configuration")?;
    let root = doc.as_table_mut().context("a configuration is a table")?;
    for (section, token) in [("scim", &ws.scim_token), ("notion", &ws.notion_token)] {
        if let Some(t) = root.get_mut(section).and_then(toml::Value::as_table_mut) {
            t.insert("token".into(), toml::Value::String(token.clone()));
        }
    }
    if let Some(platforms) = root
        .get_mut("platforms")
        .and_then(toml::Value::as_table_mut)
    {
        for (_, p) in platforms.iter_mut() {
            let Some(p) = p.as_table_mut() else {
                continue;
            };
            // `whsec_` and base64 (hex digits are base64 too): valid for Standard Webhooks,
            // and an opaque string to every other platform.
            let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
            p.insert(
                "secrets".into(),
                toml::Value::Array(vec![toml::Value::String(secret)]),
            );
        }
    }
    let text = toml::to_string(&doc).context("writing the tenant configuration")?;
    let path = configs.join(format!("{name}.toml"));
    let mut file = {
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        open.open(&path)
            .with_context(|| format!("creating {}", path.display()))?
    };
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    Config::from_toml(&text, |_| None).with_context(|| format!("reading {}", path.display()))
}

/// Every tenant's webhook base (`http://<addr>/t/<name>`), once the child has recorded them.
async fn listeners(child: &mut DevProcess, tenants: &[Tenant]) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let bases: Vec<Option<String>> = tenants
            .iter()
            .map(|t| {
                read_dev_record(&t.dir)
                    .filter(|r| r.pid == child.pid())
                    .map(|r| r.webhook_url)
            })
            .collect();
        if bases.iter().all(Option::is_some) {
            return Ok(bases.into_iter().flatten().collect());
        }
        anyhow::ensure!(
            !child.exited(),
            "enroll dev --tenants exited before it listened; see its log above"
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "enroll dev --tenants did not record its listeners within a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts every tenant's deliveries, interleaved, to its own path, and the misrouted ones to
/// the next tenant's.
async fn deliver_all(tenants: &[Tenant], bases: &[String]) -> anyhow::Result<Vec<Posted>> {
    let http = reqwest::Client::new();
    let mut posted: Vec<Posted> = tenants
        .iter()
        .map(|_| Posted {
            poster: Poster::new(http.clone()),
            misrouted: 0,
            misrouted_refused: 0,
            misrouted_accepted: 0,
        })
        .collect();
    let mut misrouted: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); tenants.len()];
    let longest = tenants
        .iter()
        .map(|t| t.plan.deliveries.len())
        .max()
        .unwrap_or(0);
    for i in 0..longest {
        for (k, t) in tenants.iter().enumerate() {
            let Some(d) = t.plan.deliveries.get(i) else {
                continue;
            };
            posted[k].poster.deliver(&t.ws.config, &bases[k], d).await?;
            if d.sample.kind != EventKind::Purchase
                || d.event % MISROUTE_EVERY != 0
                || !misrouted[k].insert(d.event)
            {
                continue;
            }
            // A new event (its own id), so an acceptance would show as a key of its own.
            let mut sample = d.sample.clone();
            sample.event_id = sample.event_id.map(|e| format!("{e}{MISROUTED}"));
            let to = (k + 1) % tenants.len();
            let secret = send::signing_secret(&t.ws.config, d.platform)?;
            let url = send::webhook_url(&bases[to], d.platform);
            let (status, _) = send::post(&http, &url, d.platform, &sample, &secret).await?;
            let p = &mut posted[to];
            p.misrouted += 1;
            match status {
                401 => p.misrouted_refused += 1,
                200..=299 => p.misrouted_accepted += 1,
                _ => {}
            }
            if status != 401 {
                tracing::warn!(status, platform = %d.platform, "misrouted delivery not refused with 401");
            }
        }
    }
    Ok(posted)
}

/// Users in tenant `k`'s workspace who are another tenant's buyers.
fn foreign_users(tenants: &[Tenant], k: usize) -> usize {
    let others: BTreeSet<&str> = tenants
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != k)
        .flat_map(|(_, t)| t.plan.expected.keys().map(String::as_str))
        .collect();
    tenants[k]
        .ws
        .sim
        .state()
        .users
        .iter()
        .filter(|u| others.contains(u.user_name.to_lowercase().as_str()))
        .count()
}

/// Idempotency keys of misrouted deliveries in a tenant's store.
fn foreign_records(dir: &Path) -> anyhow::Result<usize> {
    Ok(read_store(dir)?
        .idempotency_records()
        .iter()
        .filter(|r| r.key.contains(MISROUTED))
        .count())
}

/// Runs the scenario with `o.tenants` sellers.
pub(super) async fn run(o: ChaosOptions) -> anyhow::Result<ChaosReport> {
    anyhow::ensure!(
        o.tenants <= NAMES.len(),
        "--tenants takes at most {}",
        NAMES.len()
    );
    let started = Instant::now();
    let dir = scratch(&o)?;
    let configs = dir.path.join("configs");
    std::fs::create_dir_all(&configs)?;
    let mut tenants = Vec::new();
    for name in NAMES.iter().take(o.tenants) {
        let name = TenantId::parse(name).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut ws = workspace(&o.config).await?;
        ws.config = write_config(&configs, &name, &ws)?;
        let domain = format!("{name}.example.com");
        let plan = super::plan_for(
            &ws.config,
            o.events,
            o.duplicates,
            o.early_refunds,
            o.seed,
            &domain,
        )?;
        tenants.push(Tenant {
            dir: tenant_dir(&dir.path, &name),
            name,
            ws,
            plan,
        });
    }
    let arg = |s: &str| OsString::from(s);
    let w = Workers {
        enroll: &o.enroll,
        args: vec![
            arg("--tenants"),
            configs.clone().into(),
            arg("--data-dir"),
            dir.path.clone().into(),
            arg("--port"),
            arg("0"),
        ],
        tokens: &[],
        env_remove: std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.starts_with("ENROLL_"))
            .collect(),
        dirs: tenants.iter().map(|t| t.dir.clone()).collect(),
        sims: tenants.iter().map(|t| &t.ws.sim).collect(),
    };

    // Each workspace faults with its own draw: one tenant's bad luck is not the other's.
    for (k, t) in tenants.iter().enumerate() {
        unleash(&t.ws.sim, o.fault_rate, o.seed.wrapping_add(k as u64));
    }
    let mut child = DevProcess::spawn(&w)?;
    let bases = listeners(&mut child, &tenants).await?;
    let posted = deliver_all(&tenants, &bases).await?;
    let first = workers::run(&w, Some(child), o.kills, o.timeout).await?;
    let mut before = Vec::new();
    for (t, p) in tenants.iter().zip(&posted) {
        let v = verdict::verdict(&t.ws.sim, &t.dir, &t.ws.config, &t.plan, &p.poster.keys)?;
        before.push((v, workers::total_requests(&t.ws.sim)));
    }

    // The operator's part, per tenant: faults stop, its dead-letter queues replay.
    for t in &tenants {
        t.ws.sim.set_faults(Faults::default());
        replay_dead_letters(&t.dir)
            .await
            .with_context(|| format!("replaying tenant {}", t.name))?;
    }
    let second = workers::run(&w, None, 0, o.timeout).await?;

    let mut reports = Vec::new();
    for (k, ((t, p), (before, requests))) in tenants.iter().zip(&posted).zip(&before).enumerate() {
        let keys = &p.poster.keys;
        let after = verdict::verdict(&t.ws.sim, &t.dir, &t.ws.config, &t.plan, keys)?;
        let tally = Tally {
            plan: &t.plan,
            keys,
            refused: p.poster.refused,
            before,
            after: &after,
            requests: *requests,
        };
        reports.push(TenantReport {
            tenant: t.name.as_str().to_owned(),
            figures: figures(&o, &tally, &first, &second, started),
            misrouted: p.misrouted,
            misrouted_refused: p.misrouted_refused,
            misrouted_accepted: p.misrouted_accepted,
            foreign_users: foreign_users(&tenants, k),
            foreign_records: foreign_records(&t.dir)?,
        });
        if !dir.remove {
            keep_workspace(&t.ws.sim, &t.dir, &after.mismatched)?;
        }
    }
    let mut report = reports[0].figures.clone();
    for r in &reports[1..] {
        report.add(&r.figures);
    }
    report.tenants = reports;
    drop(w);
    for t in tenants {
        t.ws.sim.shutdown().await;
    }
    Ok(report)
}
