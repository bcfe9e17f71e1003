//! `enroll`: run the pipeline locally, send sample webhooks, inspect buyers, and operate.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use enroll_cli::runtime::{Options, Runtime};
use enroll_cli::{config_file, demo, send, server, status};
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "enroll",
    version,
    about = "Checkout purchases become Notion workspace access."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Purchase,
    Refund,
    Chargeback,
    Cancel,
}

impl From<Kind> for EventKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Purchase => EventKind::Purchase,
            Kind::Refund => EventKind::Refund,
            Kind::Chargeback => EventKind::Chargeback,
            Kind::Cancel => EventKind::Cancel,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the webhook endpoint, queues, store and workers locally (and the Notion simulator
    /// unless real SCIM and Notion tokens are configured).
    Dev {
        /// The configuration file; the commented example in infra/ when left out.
        #[arg(long)]
        config: Option<PathBuf>,
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
    },
    /// Sign and post a real-format sample webhook, as `stripe trigger` does.
    Send {
        #[arg(value_parser = parse_platform)]
        platform: Platform,
        #[arg(long)]
        product: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_enum, default_value = "purchase")]
        kind: Kind,
        /// The order a refund or cancellation refers to (a new one for purchases by default).
        #[arg(long)]
        order: Option<String>,
        #[arg(long)]
        event_id: Option<String>,
        /// Where to post: by default the webhook address the running `enroll dev` recorded
        /// in the data directory, else http://127.0.0.1:8787.
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// The data directory of the `enroll dev` to post to.
        #[arg(long, default_value = ".enroll")]
        data_dir: PathBuf,
    },
    /// Show a buyer's grants, Notion user id, Groups and sales record; or, with --summary, the
    /// pipeline's counters.
    Status {
        /// An email, an order id or a Notion user id.
        #[arg(required_unless_present = "summary")]
        query: Option<String>,
        /// The counters (webhooks, events, SCIM, time to access) of the running `enroll dev`,
        /// or of a deployed stack with --stack.
        #[arg(long, conflicts_with = "query")]
        summary: bool,
        /// With --summary: a deployed stack, read from CloudWatch.
        #[arg(long, env = "ENROLL_STACK")]
        stack: Option<String>,
        /// With --summary --stack: the hours to look back.
        #[arg(long, default_value_t = 24)]
        hours: u32,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = ".enroll")]
        data_dir: PathBuf,
        /// The admin address of a running `enroll dev`; by default the one it recorded in the
        /// data directory.
        #[arg(long)]
        url: Option<String>,
        /// Used, when no `enroll dev` runs, to look up Group names on a real workspace.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the whole flow in one process with scripted events, and check the outcome.
    Demo {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        config: Option<PathBuf>,
        /// The simulated Notion request budget (requests per second).
        #[arg(long, default_value_t = 25.0)]
        rate: f64,
    },
    /// Run the Notion simulator alone.
    Simulate {
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
    },
    /// Run the expiry pass once: grants that ended are revoked and follow-on grants begin.
    Expire {
        /// Pretend it is this moment (RFC 3339), e.g. to rehearse next year's expiry.
        #[arg(long)]
        now: Option<DateTime<Utc>>,
        /// The admin address of a running `enroll dev`; by default the one it recorded in the
        /// data directory.
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = ".enroll")]
        data_dir: PathBuf,
    },
    /// Make a second email resolve to a buyer enroll already knows, so purchases with it reach
    /// the same Notion member. Acts on DynamoDB when ENROLL_TABLE is set.
    Link {
        /// The second email (the one to link).
        alias: String,
        /// The email of the existing buyer.
        existing: String,
        /// Move the second email's own orders to the existing buyer (refused without it).
        #[arg(long)]
        merge: bool,
        #[arg(long, env = "ENROLL_TABLE")]
        table: Option<String>,
        /// The admin address of a running `enroll dev`; by default the one it recorded in the
        /// data directory.
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = ".enroll")]
        data_dir: PathBuf,
    },
    #[command(flatten)]
    Ops(enroll_cli::ops::OpsCommand),
    /// Measure throughput against the Notion simulator: ingest per core, provision against the
    /// rate limit, backfill requests, and each function binary's start time and memory.
    Bench {
        #[arg(long)]
        json: bool,
        /// New buyers provisioned.
        #[arg(long, default_value_t = 1000)]
        purchases: usize,
        /// Existing members backfilled into three Groups.
        #[arg(long, default_value_t = 10_000)]
        members: usize,
        /// The simulated Notion limit, which the budget is set to (requests per second).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Webhooks timed for ingest.
        #[arg(long, default_value_t = 20_000)]
        webhooks: usize,
        /// Where the release binaries are (target/release by default).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Skip starting the function binaries.
        #[arg(long)]
        skip_functions: bool,
    },
    /// Prove the pipeline survives: faults, duplicate and out-of-order deliveries, and hard
    /// kills of the worker process, then a DLQ replay; exits non-zero if anything was lost or
    /// applied twice.
    Chaos {
        #[arg(long, default_value_t = 200)]
        events: usize,
        /// Share of SCIM and Notion requests that fail (5xx, 429, timeouts, dropped connections).
        #[arg(long, default_value_t = 0.2)]
        fault_rate: f64,
        /// Extra deliveries of events already sent, as a share of the events.
        #[arg(long, default_value_t = 0.1)]
        duplicates: f64,
        /// Refunds delivered before their purchase, as a share of the events (as many again
        /// arrive after their purchase).
        #[arg(long, default_value_t = 0.05)]
        early_refunds: f64,
        /// Hard kills (SIGKILL) of the worker process mid-batch.
        #[arg(long, default_value_t = 2)]
        kills: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Keep the store and queues here (an empty directory) instead of a temporary one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The longest each worker phase may take to drain the queues.
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
    },
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s).ok_or_else(|| {
        format!("unknown platform `{s}`: one of stripe, lemonsqueezy, paddle, shopify, gumroad, thrivecart, standard")
    })
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev {
            config,
            port,
            admin_port,
            data_dir,
            expire_every_secs,
        } => {
            init_tracing("info");
            dev(config, port, admin_port, data_dir, expire_every_secs).await
        }
        Command::Send {
            platform,
            product,
            email,
            name,
            kind,
            order,
            event_id,
            url,
            config,
            data_dir,
        } => {
            init_tracing("warn");
            let config = config_file::load(config.as_deref())?;
            let secret = send::signing_secret(&config, platform)?;
            let sample = enroll_platforms::Sample {
                kind: kind.into(),
                product,
                email,
                name,
                order_id: order,
                event_id,
            };
            let url = url.unwrap_or_else(|| {
                let base = enroll_cli::server::read_dev_record(&data_dir)
                    .map_or_else(|| "http://127.0.0.1:8787".to_owned(), |r| r.webhook_url);
                send::webhook_url(&base, platform)
            });
            let (status, body) =
                send::post(&reqwest::Client::new(), &url, platform, &sample, &secret).await?;
            println!("{status} {body}");
            anyhow::ensure!(
                (200..300).contains(&status),
                "the endpoint refused the webhook"
            );
            Ok(())
        }
        Command::Status {
            query,
            summary,
            stack,
            hours,
            json,
            data_dir,
            url,
            config,
        } => {
            init_tracing("warn");
            if summary {
                let report =
                    enroll_cli::summary::fetch(stack.as_deref(), hours, &data_dir, url.as_deref())
                        .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    enroll_cli::summary::print(&report);
                }
                return Ok(());
            }
            let query = query.unwrap_or_default();
            let config = match config {
                Some(p) => Some(config_file::load(Some(&p))?),
                None => None,
            };
            let report = status::report(&query, &data_dir, url.as_deref(), config.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                status::print(&report);
            }
            Ok(())
        }
        Command::Demo { json, config, rate } => {
            init_tracing("warn");
            let config = config_file::load(config.as_deref())?;
            let report = demo::run(config, rate).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                demo::print(&report);
            }
            if report.checks.failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Simulate {
            port,
            seed,
            dump,
            config,
            scim_token,
            notion_token,
            admin_token,
        } => {
            init_tracing("info");
            let tokens = (scim_token, notion_token, admin_token);
            simulate(port, seed, dump, config, tokens).await
        }
        Command::Expire {
            now,
            url,
            config,
            data_dir,
        } => {
            init_tracing("warn");
            expire(now, url.as_deref(), config, data_dir).await
        }
        Command::Link {
            alias,
            existing,
            merge,
            table,
            url,
            config,
            data_dir,
        } => {
            init_tracing("warn");
            let report = enroll_cli::link::run(enroll_cli::link::LinkArgs {
                alias,
                existing,
                merge,
                config: config_file::load(config.as_deref())?,
                data_dir,
                url,
                table,
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Bench {
            json,
            purchases,
            members,
            rate,
            webhooks,
            bin_dir,
            skip_functions,
        } => {
            init_tracing("error");
            let report = enroll_cli::bench::run(&enroll_cli::bench::BenchOptions {
                purchases,
                members,
                rate,
                webhooks,
                bin_dir,
                skip_functions,
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                enroll_cli::bench::print(&report);
            }
            Ok(())
        }
        Command::Ops(cmd) => {
            init_tracing("warn");
            enroll_cli::ops::run(cmd).await
        }
        Command::Chaos {
            events,
            fault_rate,
            duplicates,
            early_refunds,
            kills,
            seed,
            json,
            config,
            data_dir,
            timeout_secs,
        } => {
            init_tracing("warn");
            let report = enroll_cli::chaos::run(enroll_cli::chaos::ChaosOptions {
                config: config_file::load(config.as_deref())?,
                events,
                fault_rate,
                duplicates,
                early_refunds,
                kills,
                seed,
                enroll: std::env::current_exe().context("locating the enroll executable")?,
                data_dir,
                timeout: Duration::from_secs(timeout_secs),
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                enroll_cli::chaos::print(&report);
            }
            if !report.passed() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn dev(
    config: Option<PathBuf>,
    port: u16,
    admin_port: u16,
    data_dir: PathBuf,
    expire_every: u64,
) -> anyhow::Result<()> {
    let cfg = config_file::load(config.as_deref())?;
    let token = server::admin_token(&data_dir)?;
    let rt = Runtime::start(Options {
        config: cfg,
        data_dir: Some(data_dir.clone()),
        timings: Default::default(),
        simulate: false,
    })
    .await?;
    let (addr, _server) = server::serve(rt.clone(), ([127, 0, 0, 1], port).into()).await?;
    let (admin_addr, _admin) =
        server::serve_admin(rt.clone(), token, ([127, 0, 0, 1], admin_port).into()).await?;
    let record = server::DevRecord {
        pid: std::process::id(),
        webhook_url: format!("http://{addr}"),
        admin_url: format!("http://{admin_addr}"),
        started_at: Utc::now(),
    };
    server::write_dev_record(&data_dir, &record)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = rt.spawn_workers(stop_rx);
    println!(
        "enroll dev: webhooks at http://{addr}/webhooks/{{platform}}; data in {}",
        data_dir.display()
    );
    println!(
        "admin listener at http://{admin_addr} (token in {}; enroll status, link, expire and dlq find it)",
        data_dir.join(server::TOKEN_FILE).display()
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
    let mut counters_line = enroll_cli::summary::MinuteLine::default();
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
    server::remove_dev_record(&data_dir, record.pid);
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

async fn simulate(
    port: u16,
    seed: Option<PathBuf>,
    dump: Option<PathBuf>,
    config: Option<PathBuf>,
    (scim_token, notion_token, admin_token): (String, String, Option<String>),
) -> anyhow::Result<()> {
    // `/_sim/` shows every member and changes state: never open, even on loopback.
    let generated = admin_token.is_none();
    let admin_token = admin_token.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let state = match seed {
        Some(p) => serde_json::from_slice(
            &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        None => enroll_cli::seed::from_config(&config_file::load(config.as_deref())?),
    };
    let sim = enroll_simulator::start(
        enroll_simulator::SimConfig {
            scim_token,
            notion_token,
            scim_rate_limit: None,
            notion_rate_limit: None,
            admin_token: Some(admin_token.clone()),
            max_members_per_patch: None,
            state,
        },
        ([127, 0, 0, 1], port).into(),
    )
    .await?;
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

async fn expire(
    now: Option<DateTime<Utc>>,
    url: Option<&str>,
    config: Option<PathBuf>,
    data_dir: PathBuf,
) -> anyhow::Result<()> {
    // A running `enroll dev` owns the data directory: ask it. Otherwise run the pass here.
    if let Some(dev) = enroll_cli::ops::target::running_dev(&data_dir, url).await? {
        let mut req = dev.post("/admin/expire");
        if let Some(t) = now {
            req = req.query(&[("now", t.to_rfc3339())]);
        }
        let report: serde_json::Value = dev.call(req, Duration::from_secs(600)).await?;
        println!("{report}");
        let failed = report["failed"].as_u64().unwrap_or(0);
        anyhow::ensure!(
            failed == 0,
            "{failed} buyers could not be reconciled; they stay due"
        );
        return Ok(());
    }
    let cfg = config_file::load(config.as_deref())?;
    let rt = Runtime::start(Options {
        config: cfg,
        data_dir: Some(data_dir),
        timings: Default::default(),
        simulate: false,
    })
    .await?;
    let report = rt.expire(now.unwrap_or_else(Utc::now)).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = rt.spawn_workers(stop_rx);
    rt.settle(Duration::from_secs(300)).await;
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    rt.save_simulator()?;
    println!("{}", serde_json::to_string(&report)?);
    anyhow::ensure!(
        report.failed == 0,
        "{} buyers could not be reconciled; they stay due",
        report.failed
    );
    Ok(())
}
