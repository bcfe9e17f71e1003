//! `enroll tenant add | list | remove` on this machine: the tenants directory that
//! `enroll dev --tenants DIR` reads, one `<name>.toml` per seller.

use crate::store::FileStore;
use crate::tenants::tenant_dir;
use anyhow::Context;
use chrono::Utc;
use enroll_core::tenant::TenantId;
use std::path::{Path, PathBuf};

fn file(dir: &Path, tenant: &TenantId) -> PathBuf {
    dir.join(format!("{}.toml", tenant.as_str()))
}

/// Checks `config` loads, then copies it in as `<name>.toml`; refuses to overwrite a tenant.
pub fn add(dir: &Path, tenant: &TenantId, config: &Path) -> anyhow::Result<PathBuf> {
    crate::config_file::load(Some(config))
        .with_context(|| format!("{} is not a valid configuration", config.display()))?;
    let dest = file(dir, tenant);
    anyhow::ensure!(
        !dest.exists(),
        "tenant {tenant} exists already ({}): remove it first, or edit that file",
        dest.display()
    );
    std::fs::create_dir_all(dir)?;
    std::fs::copy(config, &dest).with_context(|| format!("writing {}", dest.display()))?;
    Ok(dest)
}

/// Every tenant's name in `dir`, checked as `enroll dev --tenants` checks them.
pub fn list(dir: &Path) -> anyhow::Result<Vec<TenantId>> {
    Ok(crate::tenants::load_dir(dir)?.into_keys().collect())
}

/// Buyers of the tenant with at least one active grant, from its data directory.
pub fn active_buyers(data_dir: &Path, tenant: &TenantId) -> anyhow::Result<usize> {
    let path = tenant_dir(data_dir, tenant).join("store.log");
    if !path.exists() {
        return Ok(0);
    }
    let store = FileStore::open_read_only(&path)?;
    let now = Utc::now();
    let buyers: std::collections::BTreeSet<_> = store
        .all_orders()
        .into_iter()
        .filter(|o| o.active_grants(now).next().is_some())
        .map(|o| o.buyer)
        .collect();
    Ok(buyers.len())
}

/// Removes the tenant's file (its data directory stays, for the record); refuses while any of
/// its buyers has an active grant unless `force`.
pub fn remove(dir: &Path, data_dir: &Path, tenant: &TenantId, force: bool) -> anyhow::Result<()> {
    let path = file(dir, tenant);
    anyhow::ensure!(path.exists(), "no tenant {tenant} in {}", dir.display());
    let active = active_buyers(data_dir, tenant)?;
    anyhow::ensure!(
        force || active == 0,
        "tenant {tenant} still has {active} buyers with active access: revoke it first, or pass --force"
    );
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(())
}
