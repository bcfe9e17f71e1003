//! `enroll tenant add | list | remove | rotate-secret`: the sellers of `enroll dev --tenants DIR`,
//! or with `--stack S` of a deployed stack (`enroll_ops::tenants`: an item in the table and a
//! secret each).

use crate::target::{stack_outputs, tenant_secret_prefix, OUT_TABLE, OUT_WEBHOOK_BASE};
use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use enroll_aws::tenants::TenantRegistry;
use enroll_core::config::Secret;
use enroll_core::ids::Platform;
use enroll_core::tenant::TenantId;
use enroll_embedded::tenant_files;
use enroll_ops::tenants::{Rotation, StackTenants, RECOVERY_WINDOW_DAYS};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct TenantArgs {
    /// The tenants directory `enroll dev --tenants` reads.
    #[arg(long, default_value = "tenants", global = true)]
    tenants: PathBuf,
    /// The data directory of that `enroll dev` (for the active-grant check on remove).
    #[arg(long, default_value = ".enroll", global = true)]
    data_dir: PathBuf,
    /// A deployed stack: its table holds the tenants' configurations, Secrets Manager their
    /// secrets (standard AWS credential chain and region).
    #[arg(long, global = true)]
    stack: Option<String>,
    #[command(subcommand)]
    command: TenantCommand,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Add a seller: checks the configuration; locally copies it in as <NAME>.toml, on a stack
    /// stores it without its secrets and puts those in the tenant's own secret.
    Add {
        #[arg(value_parser = parse)]
        name: TenantId,
        #[arg(long)]
        config: PathBuf,
        /// On a stack: replace an existing tenant's configuration and secrets.
        #[arg(long)]
        replace: bool,
    },
    /// The tenants and their buyers with active access.
    List,
    /// Remove a seller's configuration (its data stays); refused while any of its buyers has
    /// active access, unless --force.
    Remove {
        #[arg(value_parser = parse)]
        name: TenantId,
        #[arg(long)]
        force: bool,
    },
    /// On a stack: a new signing secret for a platform (first in its list; the old ones stay
    /// valid until --retire-old), and/or new SCIM or Notion tokens.
    RotateSecret {
        #[arg(value_parser = parse)]
        name: TenantId,
        /// The platform whose signing secret changes.
        #[arg(long, value_parser = parse_platform)]
        platform: Option<Platform>,
        /// A file holding the platform's new secret (as the platform shows it).
        #[arg(long, requires = "platform", conflicts_with = "generate")]
        secret_file: Option<PathBuf>,
        /// Generate the new secret (Standard Webhooks form, whsec_...) and print it once.
        #[arg(long, requires = "platform")]
        generate: bool,
        /// Keep only the newest signing secret: once every sender uses it.
        #[arg(long, requires = "platform")]
        retire_old: bool,
        /// A file holding the new SCIM token.
        #[arg(long)]
        scim_token_file: Option<PathBuf>,
        /// A file holding the new Notion integration token.
        #[arg(long)]
        notion_token_file: Option<PathBuf>,
    },
}

fn parse(raw: &str) -> Result<TenantId, String> {
    TenantId::parse(raw).map_err(|e| e.to_string())
}

fn parse_platform(raw: &str) -> Result<Platform, String> {
    Platform::parse(&raw.to_lowercase()).ok_or_else(|| format!("unknown platform `{raw}`"))
}

pub async fn tenant(args: TenantArgs) -> anyhow::Result<()> {
    match &args.stack {
        Some(stack) => on_stack(stack, args.command).await,
        None => locally(&args.tenants, &args.data_dir, args.command),
    }
}

fn locally(tenants: &Path, data_dir: &Path, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Add {
            name,
            config,
            replace,
        } => {
            anyhow::ensure!(
                !replace,
                "--replace is for a stack; locally, edit {}",
                tenants.join(format!("{}.toml", name.as_str())).display()
            );
            let path = tenant_files::add(tenants, &name, &config)?;
            println!("tenant {name} added ({}); restart enroll dev --tenants to serve it at /t/{name}/webhooks/{{platform}}", path.display());
        }
        TenantCommand::List => {
            for t in tenant_files::list(tenants)? {
                let active = tenant_files::active_buyers(data_dir, &t)?;
                println!("{t}\t{active} buyers with active access");
            }
        }
        TenantCommand::Remove { name, force } => {
            tenant_files::remove(tenants, data_dir, &name, force)?;
            println!("tenant {name} removed; its data stays in the data directory");
        }
        // Locally the secrets are in the tenant's own file, which the seller wrote (with its
        // comments): rewriting it here would lose them, and editing it is one line.
        TenantCommand::RotateSecret { name, .. } => bail!(
            "rotate-secret is for a stack (--stack S). Locally, tenant {name}'s secrets are in {}: \
             put the new secret first in platforms.<p>.secrets, keep the old one until every \
             sender uses the new, and restart enroll dev --tenants",
            tenants.join(format!("{}.toml", name.as_str())).display()
        ),
    }
    Ok(())
}

async fn on_stack(stack: &str, command: TenantCommand) -> anyhow::Result<()> {
    let sdk = enroll_aws::sdk_config().await;
    let outputs = stack_outputs(&sdk, stack).await?;
    let table = outputs
        .get(OUT_TABLE)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("stack `{stack}` has no {OUT_TABLE} output"))?;
    let registry = TenantRegistry::new(&sdk, table, tenant_secret_prefix(stack, &outputs));
    let tenants = StackTenants::new(registry);
    match command {
        TenantCommand::Add {
            name,
            config,
            replace,
        } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let added = tenants
                .add(&name, &text, replace)
                .await
                .with_context(|| format!("in {}", config.display()))?;
            println!(
                "tenant {name} {} on stack {stack}",
                if added.replaced { "replaced" } else { "added" }
            );
            println!("  configuration: table {table}, item tenants/{name} (no secrets)");
            println!(
                "  secrets:       {} ({} values)",
                added.secret_name, added.secrets
            );
            let base = outputs
                .get(OUT_WEBHOOK_BASE)
                .and_then(|u| u.strip_suffix("webhooks/"))
                .map(|b| b.trim_end_matches('/').to_owned())
                .unwrap_or_default();
            println!("  webhooks:      {base}/t/{name}/webhooks/{{platform}}");
        }
        TenantCommand::List => {
            let rows: Vec<Vec<String>> = tenants
                .list()
                .await?
                .into_iter()
                .map(|t| {
                    vec![
                        t.tenant.to_string(),
                        t.added_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                        t.active_buyers.to_string(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("no tenants on stack {stack}");
            } else {
                enroll_ops::print_table(&["TENANT", "ADDED", "ACTIVE BUYERS"], &rows);
            }
        }
        TenantCommand::Remove { name, force } => {
            let removed = tenants.remove(&name, force).await?;
            println!("tenant {name} removed from stack {stack}");
            if removed.active_buyers > 0 {
                println!(
                    "  {} buyers still have access in Notion: nothing revokes it now",
                    removed.active_buyers
                );
            }
            if removed.secret_scheduled {
                println!(
                    "  its secret {} is scheduled for deletion in {RECOVERY_WINDOW_DAYS} days \
                     (aws secretsmanager restore-secret --secret-id {} brings it back)",
                    removed.secret_name, removed.secret_name
                );
            } else {
                println!("  its secret {} was already gone", removed.secret_name);
            }
            println!("  its ledger and history stay in the table (keys t#{name}#...)");
        }
        TenantCommand::RotateSecret {
            name,
            platform,
            secret_file,
            generate,
            retire_old,
            scim_token_file,
            notion_token_file,
        } => {
            let platform = match (platform, secret_file, generate) {
                (Some(p), Some(f), false) => Some((p, Some(read_secret(&f)?))),
                (Some(p), None, true) => Some((p, None)),
                (Some(_), None, false) if retire_old => {
                    bail!("--retire-old comes with the new secret: --secret-file F or --generate")
                }
                (Some(p), _, _) => {
                    bail!("--platform {p} needs its new secret: --secret-file F or --generate")
                }
                (None, _, _) => None,
            };
            let rotation = Rotation {
                platform,
                scim_token: scim_token_file.as_deref().map(read_secret).transpose()?,
                notion_token: notion_token_file.as_deref().map(read_secret).transpose()?,
                retire_old,
            };
            let (scim, notion) = (
                rotation.scim_token.is_some(),
                rotation.notion_token.is_some(),
            );
            let rotated = tenants.rotate(&name, rotation).await?;
            // The generated secret alone goes to stdout, so it can be piped to the platform;
            // the report goes to stderr.
            if let Some(s) = &rotated.generated {
                println!("{}", s.expose());
            }
            if let Some((p, n)) = rotated.platform_secrets {
                eprintln!(
                    "tenant {name}: {p} has {n} valid signing secret(s), the new one first{}",
                    if n > 1 {
                        "; retire the old with --retire-old once every sender signs with the new"
                    } else {
                        ""
                    }
                );
            }
            if scim {
                eprintln!("tenant {name}: new SCIM token stored");
            }
            if notion {
                eprintln!("tenant {name}: new Notion token stored");
            }
            eprintln!(
                "in {}; the functions use it within a minute (their tenant cache)",
                rotated.secret_name
            );
        }
    }
    Ok(())
}

/// A secret from a file, without the newline an editor or `echo` adds.
fn read_secret(path: &Path) -> anyhow::Result<Secret> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value = text.trim();
    anyhow::ensure!(!value.is_empty(), "{} is empty", path.display());
    Ok(Secret::new(value))
}
