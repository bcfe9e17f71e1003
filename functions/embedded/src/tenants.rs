//! Several sellers in one `enroll dev`: `enroll dev --tenants DIR`.
//!
//! Each `<name>.toml` in the directory is one tenant's configuration, in the single-seller
//! format; the name is the file's stem and must be a [`TenantId`]. Isolation and fairness come
//! by construction: every tenant gets a whole [`Runtime`] of its own, with its store, queues and
//! journal under `<data-dir>/tenants/<name>/`, its own workers (so its own concurrency), its own
//! SCIM and public API rate budgets, its own simulator when it names no workspace, and its own
//! admin listener (with `admin.token` and `dev.json` in its directory, so `--tenant NAME` on an
//! operator command is that directory). One webhook listener serves them all:
//! `/t/{tenant}/webhooks/{platform}` goes to that tenant's ingest, which verifies with that
//! tenant's secrets only, so another tenant's signature gets 401. An unknown tenant gets 404,
//! and so does `/webhooks/{platform}`, with a message pointing at the tenant path.

use crate::runtime::{Options, Runtime};
use crate::{admin, config_file, server};
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use enroll_core::config::Config;
use enroll_core::tenant::{split_tenant_path, TenantId};
use enroll_core::timings::Timings;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Every tenant's configuration file in `dir`, by name, checked: a name that is not a tenant
/// name or a file that does not load is an error naming the file.
pub fn load_dir(dir: &Path) -> anyhow::Result<BTreeMap<TenantId, Config>> {
    let mut out = BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the tenants directory {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let tenant = TenantId::parse(stem).map_err(|e| {
            anyhow::anyhow!(
                "{}: the file name is the tenant's name: {e} (lowercase letters, digits and hyphens)",
                path.display()
            )
        })?;
        let config = config_file::load(Some(&path))
            .with_context(|| format!("tenant {tenant}: {}", path.display()))?;
        out.insert(tenant, config);
    }
    anyhow::ensure!(
        !out.is_empty(),
        "{} holds no <tenant>.toml: add one configuration file per seller",
        dir.display()
    );
    Ok(out)
}

/// A tenant's data directory under the shared one.
pub fn tenant_dir(data_dir: &Path, tenant: &TenantId) -> PathBuf {
    data_dir.join("tenants").join(tenant.as_str())
}

/// The tenants' runtimes, by name.
#[derive(Clone)]
pub struct Tenants {
    pub runtimes: BTreeMap<String, Arc<Runtime>>,
}

impl Tenants {
    /// Starts one runtime per tenant; in memory when `data_dir` is `None` (tests).
    pub async fn start(
        configs: BTreeMap<TenantId, Config>,
        data_dir: Option<&Path>,
        timings: Timings,
    ) -> anyhow::Result<Self> {
        let mut runtimes = BTreeMap::new();
        for (tenant, config) in configs {
            let rt = Runtime::start(Options {
                config,
                data_dir: data_dir.map(|d| tenant_dir(d, &tenant)),
                timings,
                simulate: false,
            })
            .await
            .with_context(|| format!("starting tenant {tenant}"))?;
            rt.set_tenant(tenant.clone());
            runtimes.insert(tenant.as_str().to_owned(), rt);
        }
        Ok(Self { runtimes })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Runtime>> {
        self.runtimes.get(name)
    }

    /// Starts every tenant's provision and align workers: each tenant has its own, so one
    /// tenant's failing or slow workspace holds up only its own.
    pub fn spawn_workers(&self, stop: tokio::sync::watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        self.runtimes
            .values()
            .flat_map(|rt| rt.spawn_workers(stop.clone()))
            .collect()
    }

    /// Waits until every tenant's queues are empty, up to `timeout` each.
    pub async fn settle(&self, timeout: Duration) -> bool {
        for rt in self.runtimes.values() {
            if !rt.settle(timeout).await {
                return false;
            }
        }
        true
    }
}

/// The shared webhook listener: `/t/{tenant}/webhooks/{platform}` and `/healthz`.
pub fn router(tenants: Tenants) -> Router {
    let limit = tenants
        .runtimes
        .values()
        .map(|rt| rt.config.ingest.max_body_bytes)
        .max()
        .unwrap_or(0)
        .saturating_mul(4);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(webhook)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::new(tenants))
}

fn not_found(reason: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [("content-type", "application/json")],
        serde_json::json!({ "error": reason }).to_string(),
    )
        .into_response()
}

async fn webhook(
    State(tenants): State<Arc<Tenants>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((name, rest)) = split_tenant_path(uri.path()) else {
        return not_found(
            "this enroll serves several sellers: webhooks are posted to /t/{tenant}/webhooks/{platform}",
        );
    };
    let Some(rt) = tenants.get(name) else {
        return not_found("unknown tenant");
    };
    let rewritten = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    let Ok(inner) = rewritten.parse::<Uri>() else {
        return not_found("not found");
    };
    server::handle_webhook(&rt.ingest, method, inner, headers, body).await
}

/// Serves the shared webhook listener on `addr`; returns the bound address.
pub async fn serve(
    tenants: Tenants,
    addr: SocketAddr,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(tenants);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "webhook server stopped");
        }
    });
    Ok((bound, task))
}

/// What `enroll dev --tenants DIR` runs with.
pub struct DevTenants {
    pub tenants_dir: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    pub expire_every: Duration,
}

/// `enroll dev --tenants DIR`: every tenant's pipeline, one webhook listener, one admin
/// listener per tenant; runs until `shutdown` completes.
pub async fn run_dev(opts: DevTenants, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let configs = load_dir(&opts.tenants_dir)?;
    let names: Vec<TenantId> = configs.keys().cloned().collect();
    let tenants = Tenants::start(configs, Some(&opts.data_dir), Timings::default()).await?;
    let (addr, _server) = serve(tenants.clone(), ([127, 0, 0, 1], opts.port).into()).await?;
    let mut records = Vec::new();
    for tenant in &names {
        let dir = tenant_dir(&opts.data_dir, tenant);
        let rt = tenants.get(tenant.as_str()).expect("started above").clone();
        let token = admin::admin_token(&dir)?;
        let (admin_addr, _admin) =
            admin::serve_admin(rt.clone(), token, ([127, 0, 0, 1], 0).into()).await?;
        let record = admin::DevRecord {
            pid: std::process::id(),
            webhook_url: format!("http://{addr}{}", tenant.path_prefix()),
            admin_url: format!("http://{admin_addr}"),
            started_at: Utc::now(),
        };
        admin::write_dev_record(&dir, &record)?;
        println!(
            "tenant {tenant}: webhooks at {}/webhooks/{{platform}}; admin at {} (enroll ... --tenant {tenant}); {}",
            record.webhook_url,
            record.admin_url,
            match &rt.simulator {
                Some(sim) => format!("Notion simulator at http://{}", sim.addr()),
                None => "its configured SCIM and Notion workspace".to_owned(),
            }
        );
        records.push((dir, record.pid));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = tenants.spawn_workers(stop_rx);
    println!(
        "enroll dev: {} tenants, data in {}",
        names.len(),
        opts.data_dir.display()
    );
    let mut tick = tokio::time::interval(opts.expire_every.max(Duration::from_secs(1)));
    let mut save = tokio::time::interval(Duration::from_secs(5));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                for (name, rt) in &tenants.runtimes {
                    if let Err(e) = rt.expire(Utc::now()).await {
                        tracing::warn!(tenant = %name, error = %e, "expiry pass failed");
                    }
                }
            }
            _ = save.tick() => save_all(&tenants),
        }
    }
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    for (dir, pid) in records {
        admin::remove_dev_record(&dir, pid);
    }
    save_all(&tenants);
    println!("stopped; state kept in {}", opts.data_dir.display());
    Ok(())
}

fn save_all(tenants: &Tenants) {
    for (name, rt) in &tenants.runtimes {
        if let Err(e) = rt.save_simulator() {
            tracing::warn!(tenant = %name, error = %e, "could not save the simulator state");
        }
    }
}
