//! `enroll dev`, the whole pipeline on this machine with its two listeners, and `enroll
//! simulate`, the Notion simulator alone.

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use enroll_embedded::runtime::{Options, Runtime};
use enroll_embedded::{admin, config_file, server};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct DevArgs {
    /// The configuration file; the commented example in infra/ when left out.
    #[arg(long, conflicts_with = "tenants")]
    config: Option<PathBuf>,
    /// Several sellers: a directory of `<tenant>.toml` files, one per seller; webhooks then go
    /// to /t/{tenant}/webhooks/{platform} and each tenant's data to <data-dir>/tenants/<name>/.
    #[arg(long)]
    tenants: Option<PathBuf>,
    /// The webhook port (the one a tunnel exposes); it serves webhooks only.
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// The admin listener's port on 127.0.0.1; any free one by default. Operator commands
    /// find it, and its token, in the data directory.
    #[arg(long, default_value_t = 0)]
    admin_port: u16,
    /// Where the store, the queues and the simulated workspace are kept.
    #[arg(long, default_value = ".enroll")]
    data_dir: PathBuf,
    /// How often the expiry pass runs.
    #[arg(long, default_value_t = 60)]
    expire_every_secs: u64,
    /// Also send every outbound event to a local receiver that verifies its signature and
    /// prints it (an extra `[[outbound]]` endpoint with a fresh secret).
    #[arg(long)]
    outbound_echo: bool,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[arg(long, default_value_t = 8788)]
    port: u16,
    /// A JSON state to start from; by default the Groups and database of the configuration.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Where to write the state on exit.
    #[arg(long)]
    dump: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = "simulated-scim-token")]
    scim_token: String,
    #[arg(long, default_value = "simulated-notion-token")]
    notion_token: String,
    /// The bearer token `/_sim/` (state, faults, counters) requires; a new random one,
    /// printed at start, when left out.
    #[arg(long, env = "ENROLL_SIM_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Limit SCIM to this many requests per second, answering 429 over it; unlimited when
    /// left out. SCIM and the public API have separate buckets, as their tokens do.
    #[arg(long)]
    scim_rate: Option<f64>,
    /// Limit the public API (the sales database) likewise; Notion documents an average of 3.
    #[arg(long)]
    api_rate: Option<f64>,
    /// Requests a limited API accepts at once after a quiet spell (both buckets).
    #[arg(long, default_value_t = 3)]
    burst: u32,
    /// Answer every SCIM and public API request this many milliseconds after it arrives.
    #[arg(long)]
    latency_ms: Option<u64>,
}

pub async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let DevArgs {
        config,
        port,
        admin_port,
        data_dir,
        expire_every_secs: expire_every,
        outbound_echo,
        tenants,
    } = args;
    if let Some(tenants_dir) = tenants {
        anyhow::ensure!(
            admin_port == 0 && !outbound_echo,
            "--tenants gives each tenant an admin listener on a free port and takes no --admin-port or --outbound-echo"
        );
        let mut terminate = terminate_signal()?;
        let opts = enroll_embedded::tenants::DevTenants {
            tenants_dir,
            data_dir,
            port,
            expire_every: Duration::from_secs(expire_every),
        };
        return enroll_embedded::tenants::run_dev(opts, async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .await;
    }
    let mut cfg = config_file::load(config.as_deref())?;
    let _echo = if outbound_echo {
        use enroll_embedded::outbound::echo;
        let secret = echo::new_secret();
        let (addr, task) = echo::serve(([127, 0, 0, 1], 0).into(), secret.clone()).await?;
        cfg.outbound.push(echo::endpoint(addr, &secret));
        println!("outbound echo at http://{addr}: each event is verified and printed here");
        Some(task)
    } else {
        None
    };
    let token = admin::admin_token(&data_dir)?;
    let rt = Runtime::start(Options {
        config: cfg,
        data_dir: Some(data_dir.clone()),
        timings: Default::default(),
        simulate: false,
    })
    .await?;
    let (addr, _server) = server::serve(rt.clone(), ([127, 0, 0, 1], port).into()).await?;
    let (admin_addr, _admin) =
        admin::serve_admin(rt.clone(), token, ([127, 0, 0, 1], admin_port).into()).await?;
    let record = admin::DevRecord {
        pid: std::process::id(),
        webhook_url: format!("http://{addr}"),
        admin_url: format!("http://{admin_addr}"),
        started_at: Utc::now(),
    };
    admin::write_dev_record(&data_dir, &record)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = rt.spawn_workers(stop_rx);
    println!(
        "enroll dev: webhooks at http://{addr}/webhooks/{{platform}}; data in {}",
        data_dir.display()
    );
    println!(
        "admin listener at http://{admin_addr} (token in {}; enroll status, link, expire and dlq find it)",
        data_dir.join(admin::TOKEN_FILE).display()
    );
    match &rt.simulator {
        Some(sim) => println!(
            "Notion simulator at http://{} (state saved in {})",
            sim.addr(),
            data_dir.display()
        ),
        None => println!("using the configured SCIM and Notion workspace"),
    }
    let mut tick = tokio::time::interval(Duration::from_secs(expire_every.max(1)));
    let mut save = tokio::time::interval(Duration::from_secs(5));
    let mut counters = tokio::time::interval(Duration::from_secs(60));
    let mut counters_line = enroll_ops::summary::MinuteLine::default();
    let mut terminate = terminate_signal()?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = tick.tick() => {
                if let Err(e) = rt.expire(Utc::now()).await {
                    tracing::warn!(error = %e, "expiry pass failed");
                }
            }
            _ = save.tick() => {
                if let Err(e) = rt.save_simulator() {
                    tracing::warn!(error = %e, "could not save the simulator state");
                }
            }
            _ = counters.tick() => {
                if let Some(line) = counters_line.if_changed() {
                    println!("{line}");
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    admin::remove_dev_record(&data_dir, record.pid);
    rt.save_simulator()?;
    println!("stopped; state kept in {}", data_dir.display());
    Ok(())
}

/// SIGTERM, so a stop by a service manager is as clean as Ctrl-C (`dev.json` removed).
#[cfg(unix)]
fn terminate_signal() -> anyhow::Result<tokio::signal::unix::Signal> {
    Ok(tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    )?)
}

#[cfg(not(unix))]
fn terminate_signal() -> anyhow::Result<NoSignal> {
    Ok(NoSignal)
}

#[cfg(not(unix))]
struct NoSignal;

#[cfg(not(unix))]
impl NoSignal {
    async fn recv(&mut self) -> Option<()> {
        std::future::pending().await
    }
}

pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let SimulateArgs {
        port,
        seed,
        dump,
        config,
        scim_token,
        notion_token,
        admin_token,
        latency_ms,
        scim_rate,
        api_rate,
        burst,
    } = args;
    let scim_rate_limit = sim_limit("--scim-rate", scim_rate, burst)?;
    let notion_rate_limit = sim_limit("--api-rate", api_rate, burst)?;
    // `/_sim/` shows every member and changes state: never open, even on loopback.
    let generated = admin_token.is_none();
    let admin_token = admin_token.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let state = match seed {
        Some(p) => serde_json::from_slice(
            &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        None => enroll_embedded::seed::from_config(&config_file::load(config.as_deref())?),
    };
    let sim = enroll_simulator::start(
        enroll_simulator::SimConfig {
            scim_token,
            notion_token,
            scim_rate_limit,
            notion_rate_limit,
            admin_token: Some(admin_token.clone()),
            max_members_per_patch: None,
            state,
        },
        ([127, 0, 0, 1], port).into(),
    )
    .await?;
    sim.set_latency(latency_ms.map(std::time::Duration::from_millis));
    println!("SCIM   {}", sim.scim_base_url());
    println!("Notion {}", sim.notion_base_url());
    println!(
        "admin  http://{}/_sim/state (faults, rate limit, counters under /_sim/; send `Authorization: Bearer <admin token>`)",
        sim.addr()
    );
    if generated {
        // Shown once, to the operator who started it, as a notebook server shows its token.
        println!("admin token {admin_token}");
    }
    tokio::signal::ctrl_c().await?;
    if let Some(p) = dump {
        std::fs::write(&p, serde_json::to_vec_pretty(&sim.state())?)?;
        println!("state written to {}", p.display());
    }
    sim.shutdown().await;
    Ok(())
}

/// One simulated bucket from its flag; `None` leaves that API unlimited.
fn sim_limit(
    flag: &str,
    rate: Option<f64>,
    burst: u32,
) -> anyhow::Result<Option<enroll_simulator::RateLimit>> {
    let Some(per_second) = rate else {
        return Ok(None);
    };
    anyhow::ensure!(
        per_second.is_finite() && per_second > 0.0,
        "{flag} must be a positive number of requests per second"
    );
    anyhow::ensure!(burst >= 1, "--burst must be at least 1");
    Ok(Some(enroll_simulator::RateLimit { per_second, burst }))
}
