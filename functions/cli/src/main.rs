//! `enroll`: run the pipeline locally, send sample webhooks, inspect buyers, and operate.
//!
//! This file is the command line and nothing else: each command's flags and work are in
//! [`commands`], and where an operator command acts (the running `enroll dev`, its data
//! directory, or a deployed stack) is [`target`].

mod commands;
mod target;

use clap::{Parser, Subcommand};
use commands::{buyer, console, dev, doctor, lab, ops, tenant};
use enroll_core::ids::Platform;

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

#[derive(Subcommand)]
enum Command {
    /// Run the webhook endpoint, queues, store and workers locally (and the Notion simulator
    /// unless real SCIM and Notion tokens are configured).
    Dev(dev::DevArgs),
    /// Sign and post a real-format sample webhook, as `stripe trigger` does.
    Send(lab::SendArgs),
    /// Show a buyer's grants, Notion user id, Groups and sales record; or, with --summary, the
    /// pipeline's counters.
    Status(buyer::StatusArgs),
    /// Run the whole flow in one process with scripted events, and check the outcome.
    Demo(lab::DemoArgs),
    /// Run the Notion simulator alone.
    Simulate(dev::SimulateArgs),
    /// Run the expiry pass once: grants that ended are revoked and follow-on grants begin.
    Expire(buyer::ExpireArgs),
    /// Make a second email resolve to a buyer enroll already knows, so purchases with it reach
    /// the same Notion member. Acts on DynamoDB when ENROLL_TABLE is set.
    Link(buyer::LinkArgs),
    #[command(flatten)]
    Ops(ops::OpsCommand),
    /// Check the configuration against the live services it names (SCIM token, Groups, sales
    /// database and its properties, platform secrets, webhook URLs, rates) and say what to fix;
    /// exits non-zero if any check fails.
    Doctor(doctor::DoctorArgs),
    /// The seller console: buyers, access, dead letters, the audit, the catalog, activity and
    /// the setup check in a browser, on 127.0.0.1 behind a token it prints.
    Console(console::ConsoleArgs),
    /// Sellers of `enroll dev --tenants DIR`, or of a stack with --stack: add, list, remove,
    /// rotate-secret.
    Tenant(tenant::TenantArgs),
    /// Measure throughput against the Notion simulator: ingest per core, provision against the
    /// rate limit, backfill requests, and each function binary's start time and memory.
    Bench(lab::BenchArgs),
    /// Prove the pipeline survives: faults, duplicate and out-of-order deliveries, and hard
    /// kills of the worker process, then a DLQ replay; exits non-zero if anything was lost or
    /// applied twice.
    Chaos(lab::ChaosArgs),
}

impl Command {
    /// What is logged (to stderr) unless `RUST_LOG` says otherwise: the long-running processes
    /// log their work, the one-shot commands only what went wrong.
    fn default_log(&self) -> &'static str {
        match self {
            Command::Dev(_) | Command::Simulate(_) => "info",
            Command::Bench(_) => "error",
            _ => "warn",
        }
    }
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(&s.to_lowercase()).ok_or_else(|| {
        format!("unknown platform `{s}`: one of stripe, lemonsqueezy, paddle, shopify, gumroad, thrivecart, standard")
    })
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.command.default_log()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Dev(a) => dev::dev(a).await,
        Command::Simulate(a) => dev::simulate(a).await,
        Command::Send(a) => lab::send(a).await,
        Command::Demo(a) => lab::demo(a).await,
        Command::Bench(a) => lab::bench(a).await,
        Command::Chaos(a) => lab::chaos(a).await,
        Command::Status(a) => buyer::status(a).await,
        Command::Link(a) => buyer::link(a).await,
        Command::Expire(a) => buyer::expire(a).await,
        Command::Ops(cmd) => ops::run(cmd).await,
        Command::Doctor(a) => doctor::doctor(a).await,
        Command::Console(a) => console::console(a).await,
        Command::Tenant(a) => tenant::tenant(a).await,
    }
}
