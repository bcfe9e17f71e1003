//! `enroll tenant add | list | remove`: the sellers of `enroll dev --tenants DIR`.

use clap::{Args, Subcommand};
use enroll_core::tenant::TenantId;
use enroll_embedded::tenant_files;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct TenantArgs {
    /// The tenants directory `enroll dev --tenants` reads.
    #[arg(long, default_value = "tenants")]
    tenants: PathBuf,
    /// The data directory of that `enroll dev` (for the active-grant check on remove).
    #[arg(long, default_value = ".enroll")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: TenantCommand,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Add a seller: checks the configuration and copies it in as <NAME>.toml.
    Add {
        #[arg(value_parser = parse)]
        name: TenantId,
        #[arg(long)]
        config: PathBuf,
    },
    /// The tenants, checked as `enroll dev --tenants` checks them.
    List,
    /// Remove a seller's configuration (its data stays); refused while any of its buyers has
    /// active access, unless --force.
    Remove {
        #[arg(value_parser = parse)]
        name: TenantId,
        #[arg(long)]
        force: bool,
    },
}

fn parse(raw: &str) -> Result<TenantId, String> {
    TenantId::parse(raw).map_err(|e| e.to_string())
}

pub fn tenant(args: TenantArgs) -> anyhow::Result<()> {
    match args.command {
        TenantCommand::Add { name, config } => {
            let path = tenant_files::add(&args.tenants, &name, &config)?;
            println!("tenant {name} added ({}); restart enroll dev --tenants to serve it at /t/{name}/webhooks/{{platform}}", path.display());
        }
        TenantCommand::List => {
            for t in tenant_files::list(&args.tenants)? {
                let active = tenant_files::active_buyers(&args.data_dir, &t)?;
                println!("{t}\t{active} buyers with active access");
            }
        }
        TenantCommand::Remove { name, force } => {
            tenant_files::remove(&args.tenants, &args.data_dir, &name, force)?;
            println!("tenant {name} removed; its data stays in the data directory");
        }
    }
    Ok(())
}
