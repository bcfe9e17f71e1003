//! Tenants on AWS: each seller's configuration is one item in the table and its tokens and
//! signing secrets are its own Secrets Manager secret, `<prefix><name>` (the template's prefix
//! is `<stack name>/tenant/`, and every function's role may read exactly the secrets under it).
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | tenant | `tenants` | `<name>` | `config` (S, the configuration as TOML, without secrets), `added_at` (S, RFC 3339), `updated_at` (S, RFC 3339) |
//!
//! All tenants share one partition, so listing them (the expiry pass does, every run) is one
//! `Query`, never a scan of the ledger.
//!
//! An item holds up to 400 KB, so a tenant's catalog has none of the 3.2 kB limit that
//! Lambda's 4 KB environment puts on `ENROLL_CONFIG`.
//!
//! A tenant's configuration is exactly what is stored plus its own secret: the `ENROLL_*`
//! variables of the functions (the single seller's) are never applied to it, so no token or
//! signing secret crosses between sellers. [`TenantCache`] keeps what a function built from a
//! tenant's configuration for [`CACHE_TTL`], so a change reaches every function within that.

use crate::error::{classify, AwsError};
use crate::item::{s, Item};
use crate::schema::{PK, SK};
use crate::secrets::load_secrets;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use enroll_core::config::Config;
use enroll_core::tenant::TenantId;
use enroll_core::Failure;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The partition of tenant items.
pub const PK_TENANTS: &str = "tenants";
const CONFIG: &str = "config";
const ADDED_AT: &str = "added_at";
const UPDATED_AT: &str = "updated_at";

/// The variable naming the secrets' prefix (the template sets `<stack name>/tenant/`).
pub const SECRET_PREFIX_VARIABLE: &str = "ENROLL_TENANT_SECRET_PREFIX";

/// How long a function keeps what it loaded for a tenant.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// How long a function remembers that a tenant does not exist: short, so a tenant just added
/// serves soon, but long enough that requests for unknown names do not each read the table.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(10);

/// One tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub tenant: TenantId,
    /// The configuration's TOML, without secrets.
    pub config: String,
    pub added_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TenantRecord {
    fn to_item(&self) -> Item {
        Item::from([
            (PK.to_owned(), s(PK_TENANTS)),
            (SK.to_owned(), s(self.tenant.as_str())),
            (CONFIG.to_owned(), s(&self.config)),
            (ADDED_AT.to_owned(), s(self.added_at.to_rfc3339())),
            (UPDATED_AT.to_owned(), s(self.updated_at.to_rfc3339())),
        ])
    }

    fn from_item(item: &Item) -> Result<Self, AwsError> {
        let bad = |why: &str| AwsError::malformed("tenant item", why);
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => Ok(v.clone()),
            _ => Err(bad(&format!("{name} is missing or not a string"))),
        };
        let time = |name: &str| {
            text(name)?
                .parse::<DateTime<Utc>>()
                .map_err(|_| bad(&format!("{name} is not an RFC 3339 time")))
        };
        let tenant = TenantId::parse(&text(SK)?).map_err(|_| bad("sk is not a tenant name"))?;
        Ok(Self {
            tenant,
            config: text(CONFIG)?,
            added_at: time(ADDED_AT)?,
            updated_at: time(UPDATED_AT)?,
        })
    }
}

/// The tenants of one deployment: their items in the table and their secrets.
#[derive(Debug, Clone)]
pub struct TenantRegistry {
    pub dynamo: aws_sdk_dynamodb::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub table: String,
    /// Secret names are this prefix and the tenant's name.
    pub secret_prefix: String,
}

impl TenantRegistry {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        table: impl Into<String>,
        secret_prefix: impl Into<String>,
    ) -> Self {
        Self {
            dynamo: aws_sdk_dynamodb::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            table: table.into(),
            secret_prefix: secret_prefix.into(),
        }
    }

    /// The registry a function reads, when its environment names a table and a secret prefix
    /// (`ENROLL_TABLE`, [`SECRET_PREFIX_VARIABLE`]); `None` for a single-seller setup that
    /// gives neither.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Some(Self::new(
            sdk,
            var("ENROLL_TABLE")?,
            var(SECRET_PREFIX_VARIABLE)?,
        ))
    }

    /// The name of `tenant`'s secret.
    pub fn secret_id(&self, tenant: &TenantId) -> String {
        format!("{}{}", self.secret_prefix, tenant.as_str())
    }

    /// The tenant's item, if it exists.
    pub async fn get(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, Failure> {
        let out = self
            .dynamo
            .get_item()
            .table_name(&self.table)
            .key(PK, s(PK_TENANTS))
            .key(SK, s(tenant.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(out.item().map(TenantRecord::from_item).transpose()?)
    }

    /// Every tenant, by name.
    pub async fn list(&self) -> Result<Vec<TenantRecord>, Failure> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .dynamo
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(PK_TENANTS))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            for item in out.items() {
                found.push(TenantRecord::from_item(item)?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        found.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        Ok(found)
    }

    /// Writes the tenant's item (a new one or a replacement).
    pub async fn put(&self, record: &TenantRecord) -> Result<(), Failure> {
        self.dynamo
            .put_item()
            .table_name(&self.table)
            .set_item(Some(record.to_item()))
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        Ok(())
    }

    /// Deletes the tenant's item (its data and secret are the caller's to handle).
    pub async fn delete(&self, tenant: &TenantId) -> Result<(), Failure> {
        self.dynamo
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(PK_TENANTS))
            .key(SK, s(tenant.as_str()))
            .send()
            .await
            .map_err(|e| classify("DeleteItem", e))?;
        Ok(())
    }

    /// The tenant's configuration with its own secrets applied and validated; `None` when no
    /// such tenant exists. A stored configuration that does not load, or a missing secret, is a
    /// permanent failure naming the tenant; an unavailable service a transient one.
    pub async fn load(&self, tenant: &TenantId) -> Result<Option<Config>, Failure> {
        let Some(record) = self.get(tenant).await? else {
            return Ok(None);
        };
        let mut config: Config = toml::from_str(&record.config).map_err(|e| {
            Failure::permanent(format!(
                "tenant {tenant}: the stored configuration does not load: {}",
                e.message()
            ))
        })?;
        let secret = self.secret_id(tenant);
        match load_secrets(&self.secrets, &secret).await {
            Ok(doc) => doc.apply(&mut config),
            Err(f) if f.is_permanent() && f.reason.contains("ResourceNotFound") => {
                return Err(Failure::permanent(format!(
                    "tenant {tenant}: its secret {secret} does not exist: add it with `enroll tenant add` or `enroll tenant rotate-secret`"
                )));
            }
            Err(mut f) => {
                f.reason = format!("tenant {tenant}: secret {secret}: {}", f.reason);
                return Err(f);
            }
        }
        config.validate().map_err(|e| {
            Failure::permanent(format!(
                "tenant {tenant}: the configuration is invalid: {e}"
            ))
        })?;
        Ok(Some(config))
    }
}

/// What a function built for each tenant (its configuration, its provisioner, ...), kept for
/// [`CACHE_TTL`] and for [`UNKNOWN_TTL`] when the tenant does not exist. A failed load is not
/// kept: the next message tries again.
pub struct TenantCache<T> {
    ttl: Duration,
    unknown_ttl: Duration,
    entries: Mutex<Entries<T>>,
}

/// When each tenant's value was loaded, and the value (`None`: no such tenant).
type Entries<T> = HashMap<TenantId, (Instant, Option<Arc<T>>)>;

impl<T> Default for TenantCache<T> {
    fn default() -> Self {
        Self::new(CACHE_TTL, UNKNOWN_TTL)
    }
}

impl<T> TenantCache<T> {
    pub fn new(ttl: Duration, unknown_ttl: Duration) -> Self {
        Self {
            ttl,
            unknown_ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached value for `tenant`, or `load`'s, which is then kept.
    pub async fn get<F, Fut>(&self, tenant: &TenantId, load: F) -> Result<Option<Arc<T>>, Failure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, Failure>>,
    {
        let now = Instant::now();
        if let Some((at, value)) = self.lock().get(tenant) {
            let ttl = if value.is_some() {
                self.ttl
            } else {
                self.unknown_ttl
            };
            if now.duration_since(*at) < ttl {
                return Ok(value.clone());
            }
        }
        let value = load().await?.map(Arc::new);
        self.lock()
            .insert(tenant.clone(), (Instant::now(), value.clone()));
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<T>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn tenant_items_round_trip() {
        let r = TenantRecord {
            tenant: TenantId::parse("acme").unwrap(),
            config: "[scim]\nbase_url = \"https://x\"\n".into(),
            added_at: "2026-12-01T00:00:00Z".parse().unwrap(),
            updated_at: "2026-12-01T00:00:00Z".parse().unwrap(),
        };
        let item = r.to_item();
        assert_eq!(item.get(PK), Some(&s("tenants")));
        assert_eq!(item.get(SK), Some(&s("acme")));
        assert_eq!(TenantRecord::from_item(&item).unwrap(), r);
    }

    #[tokio::test]
    async fn the_cache_loads_once_per_ttl_and_forgets_failures() {
        let cache: TenantCache<u32> = TenantCache::new(Duration::from_secs(60), Duration::ZERO);
        let loads = AtomicUsize::new(0);
        let a = TenantId::parse("a").unwrap();
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(Some(7))
        };
        assert_eq!(*cache.get(&a, load).await.unwrap().unwrap(), 7);
        assert_eq!(*cache.get(&a, load).await.unwrap().unwrap(), 7);
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Unknown tenants are kept for the (here zero) unknown TTL only.
        let b = TenantId::parse("b").unwrap();
        assert!(cache
            .get(&b, || async { Ok(None) })
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            *cache
                .get(&b, || async { Ok(Some(8)) })
                .await
                .unwrap()
                .unwrap(),
            8
        );
        // A failure is not kept.
        let c = TenantId::parse("c").unwrap();
        assert!(cache
            .get(&c, || async { Err(Failure::transient("down")) })
            .await
            .is_err());
        assert_eq!(
            *cache
                .get(&c, || async { Ok(Some(9)) })
                .await
                .unwrap()
                .unwrap(),
            9
        );
    }
}
