//! `enroll tenant add | list | remove | rotate-secret --stack S`: the sellers of a deployed
//! stack, each an item in the table (its configuration as TOML, without any secret) and its own
//! Secrets Manager secret `<prefix><name>` (its tokens and signing secrets), as
//! `enroll_aws::tenants` describes them.
//!
//! - add: the file is checked and split ([`split`]); the secret is written first, then the
//!   item, so a tenant the functions can see always has its secrets.
//! - remove: refused while any of its buyers has an active grant unless forced; the item goes
//!   first (the functions stop serving the tenant within their cache time), then the secret,
//!   scheduled for deletion with a recovery window. The ledger stays.
//! - rotate-secret: a new signing secret goes first in the platform's list and the old ones
//!   stay valid until retired, so senders can switch over without a failed delivery.
//!
//! Nothing here prints or returns a secret, except the one a rotation generated.

pub mod split;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use chrono::{DateTime, Utc};
use enroll_aws::tenants::{TenantRecord, TenantRegistry};
use enroll_aws::{DynamoStore, SecretsDoc};
use enroll_core::config::Secret;
use enroll_core::ids::{BuyerEmail, Platform};
use enroll_core::tenant::TenantId;
use enroll_core::Failure;
use std::collections::BTreeSet;

/// Days a removed tenant's secret can still be restored (`aws secretsmanager restore-secret`).
pub const RECOVERY_WINDOW_DAYS: i64 = 7;

/// Why a tenant command did nothing (or, for [`TenantAdminError::Aws`], stopped part way).
#[derive(Debug, thiserror::Error)]
pub enum TenantAdminError {
    #[error("the configuration is invalid: {0}")]
    InvalidConfig(String),
    #[error(
        "the configuration without its secrets is {bytes} bytes; a tenant's item holds at most \
         {limit} (DynamoDB's 400 KB item limit): shorten the catalog"
    )]
    TooLarge { bytes: usize, limit: usize },
    #[error(
        "the tenant's secrets are {bytes} bytes; a Secrets Manager secret holds at most {limit}"
    )]
    SecretTooLarge { bytes: usize, limit: usize },
    #[error("tenant {0} exists already: pass --replace to replace its configuration and secrets")]
    Exists(TenantId),
    #[error("no tenant {0} on this stack (enroll tenant list --stack ... names them)")]
    NotFound(TenantId),
    #[error(
        "tenant {tenant} still has {buyers} buyers with active access: revoke it first, or pass --force"
    )]
    ActiveBuyers { tenant: TenantId, buyers: usize },
    #[error("nothing to rotate: pass --platform with --secret-file or --generate, --scim-token-file or --notion-token-file")]
    NothingToRotate,
    #[error("{0}")]
    Aws(Failure),
    /// A bug: the split lost or kept something it should not.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<Failure> for TenantAdminError {
    fn from(f: Failure) -> Self {
        TenantAdminError::Aws(f)
    }
}

/// A secret call's failure: the service's code and message, which never quote the value.
fn secrets_failure<E: ProvideErrorMetadata>(what: &str, name: &str, e: &E) -> TenantAdminError {
    TenantAdminError::Aws(Failure::transient(format!(
        "{what} {name}: {} {}",
        e.code().unwrap_or("error"),
        e.message().unwrap_or("")
    )))
}

/// What `add` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub tenant: TenantId,
    pub secret_name: String,
    pub replaced: bool,
    /// How many secrets the secret holds (tokens and signing secrets), for the report.
    pub secrets: usize,
}

/// One line of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSummary {
    pub tenant: TenantId,
    pub added_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub active_buyers: usize,
}

/// What `remove` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub secret_name: String,
    /// False when the secret was already gone (or scheduled for deletion).
    pub secret_scheduled: bool,
    pub active_buyers: usize,
}

/// A rotation: any of a platform's new signing secret, a new SCIM token, a new Notion token.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    /// The platform and its new secret (`None`: generate one).
    pub platform: Option<(Platform, Option<Secret>)>,
    pub scim_token: Option<Secret>,
    pub notion_token: Option<Secret>,
    /// Keep only the newest signing secret of the platform.
    pub retire_old: bool,
}

/// What `rotate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub secret_name: String,
    /// The platform's signing secrets now valid, newest first, and how many.
    pub platform_secrets: Option<(Platform, usize)>,
    /// The secret generated for the platform, shown to the operator once.
    pub generated: Option<Secret>,
}

/// The tenants of one stack.
pub struct StackTenants {
    pub registry: TenantRegistry,
}

impl StackTenants {
    pub fn new(registry: TenantRegistry) -> Self {
        Self { registry }
    }

    /// Checks and splits `text`, then writes the tenant's secret and item; refuses an existing
    /// tenant unless `replace`.
    pub async fn add(
        &self,
        tenant: &TenantId,
        text: &str,
        replace: bool,
    ) -> Result<Added, TenantAdminError> {
        let split = split::split(text)?;
        let existing = self.registry.get(tenant).await?;
        if existing.is_some() && !replace {
            return Err(TenantAdminError::Exists(tenant.clone()));
        }
        let secret_name = self.registry.secret_id(tenant);
        self.put_secret(&secret_name, &split.secrets).await?;
        let now = Utc::now();
        self.registry
            .put(&TenantRecord {
                tenant: tenant.clone(),
                config: split.stored,
                added_at: existing.as_ref().map_or(now, |r| r.added_at),
                updated_at: now,
            })
            .await?;
        Ok(Added {
            tenant: tenant.clone(),
            secret_name,
            replaced: existing.is_some(),
            secrets: count(&split.secrets),
        })
    }

    /// Every tenant with its buyers that have active access now.
    pub async fn list(&self) -> Result<Vec<TenantSummary>, TenantAdminError> {
        let mut out = Vec::new();
        for record in self.registry.list().await? {
            out.push(TenantSummary {
                active_buyers: self.active_buyers(&record.tenant).await?,
                tenant: record.tenant,
                added_at: record.added_at,
                updated_at: record.updated_at,
            });
        }
        Ok(out)
    }

    /// Buyers of the tenant with at least one active grant (on an order not revoked).
    pub async fn active_buyers(&self, tenant: &TenantId) -> Result<usize, TenantAdminError> {
        let store = DynamoStore::new(self.registry.dynamo.clone(), &self.registry.table)
            .for_tenant(tenant.clone());
        let now = Utc::now();
        let buyers: BTreeSet<BuyerEmail> = store
            .all_orders()
            .await?
            .into_iter()
            .filter(|o| o.active_grants(now).next().is_some())
            .filter_map(|o| o.buyer)
            .collect();
        Ok(buyers.len())
    }

    /// Removes the tenant's item and schedules its secret for deletion; its ledger stays.
    pub async fn remove(
        &self,
        tenant: &TenantId,
        force: bool,
    ) -> Result<Removed, TenantAdminError> {
        if self.registry.get(tenant).await?.is_none() {
            return Err(TenantAdminError::NotFound(tenant.clone()));
        }
        let active_buyers = self.active_buyers(tenant).await?;
        if active_buyers > 0 && !force {
            return Err(TenantAdminError::ActiveBuyers {
                tenant: tenant.clone(),
                buyers: active_buyers,
            });
        }
        self.registry.delete(tenant).await?;
        let secret_name = self.registry.secret_id(tenant);
        let deleted = self
            .registry
            .secrets
            .delete_secret()
            .secret_id(&secret_name)
            .recovery_window_in_days(RECOVERY_WINDOW_DAYS)
            .send()
            .await;
        let secret_scheduled = match deleted {
            Ok(_) => true,
            // Gone already, or already scheduled (a remove that stopped after this step).
            Err(e) if gone(e.code()) => false,
            Err(e) => return Err(secrets_failure("DeleteSecret", &secret_name, &e)),
        };
        Ok(Removed {
            secret_name,
            secret_scheduled,
            active_buyers,
        })
    }

    /// Applies a rotation to the tenant's secret, checking first that the tenant's
    /// configuration still loads with it.
    pub async fn rotate(
        &self,
        tenant: &TenantId,
        rotation: Rotation,
    ) -> Result<Rotated, TenantAdminError> {
        if rotation.platform.is_none()
            && rotation.scim_token.is_none()
            && rotation.notion_token.is_none()
        {
            return Err(TenantAdminError::NothingToRotate);
        }
        let record = self
            .registry
            .get(tenant)
            .await?
            .ok_or_else(|| TenantAdminError::NotFound(tenant.clone()))?;
        let secret_name = self.registry.secret_id(tenant);
        let mut doc = match enroll_aws::load_secrets(&self.registry.secrets, &secret_name).await {
            Ok(doc) => doc,
            // A tenant whose secret was lost gets a new one from this rotation.
            Err(f) if f.reason.contains("ResourceNotFound") => SecretsDoc::default(),
            Err(f) => return Err(f.into()),
        };
        let base = split::join(&record.config, &SecretsDoc::default()).ok();
        if let Some(t) = rotation.scim_token {
            doc.scim_token = Some(t);
        }
        if let Some(t) = rotation.notion_token {
            doc.notion_token = Some(t);
        }
        let mut generated = None;
        let mut platform_secrets = None;
        if let Some((platform, given)) = rotation.platform {
            let new = given.unwrap_or_else(|| {
                let s = split::generate_secret();
                generated = Some(s.clone());
                s
            });
            // The current list: the document's, else what the stored configuration holds
            // (nothing, normally: add moved every secret to the document).
            let mut list = doc.platforms.get(&platform).cloned().unwrap_or_else(|| {
                base.as_ref()
                    .and_then(|c| c.platforms.get(&platform))
                    .map(|p| p.secrets.clone())
                    .unwrap_or_default()
            });
            list.retain(|s| *s != new && !s.is_empty());
            list.insert(0, new);
            if rotation.retire_old {
                list.truncate(1);
            }
            platform_secrets = Some((platform, list.len()));
            doc.platforms.insert(platform, list);
        }
        // The functions will load exactly this: refuse a rotation they could not load.
        split::join(&record.config, &doc)?;
        self.put_secret(&secret_name, &doc).await?;
        Ok(Rotated {
            secret_name,
            platform_secrets,
            generated,
        })
    }

    /// Writes the document as the secret: a new secret, a new value of an existing one, or
    /// one restored from the deletion a remove scheduled (so a tenant removed by mistake can
    /// be added again at once).
    async fn put_secret(&self, name: &str, doc: &SecretsDoc) -> Result<(), TenantAdminError> {
        let json = split::to_json(doc);
        if json.len() > split::MAX_SECRET_BYTES {
            return Err(TenantAdminError::SecretTooLarge {
                bytes: json.len(),
                limit: split::MAX_SECRET_BYTES,
            });
        }
        let client = &self.registry.secrets;
        match client.describe_secret().secret_id(name).send().await {
            // Scheduled for deletion by an earlier remove: bring it back, then update it.
            Ok(found) if found.deleted_date().is_some() => {
                client
                    .restore_secret()
                    .secret_id(name)
                    .send()
                    .await
                    .map_err(|e| secrets_failure("RestoreSecret", name, &e))?;
            }
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                let created = client
                    .create_secret()
                    .name(name)
                    .description("enroll: one seller's tokens and signing secrets (enroll tenant)")
                    .secret_string(&json)
                    .send()
                    .await;
                match created {
                    Ok(_) => return Ok(()),
                    // Created meanwhile by another add: update it as below.
                    Err(e) if e.code() == Some("ResourceExistsException") => {}
                    Err(e) => return Err(secrets_failure("CreateSecret", name, &e)),
                }
            }
            Err(e) => return Err(secrets_failure("DescribeSecret", name, &e)),
        }
        client
            .put_secret_value()
            .secret_id(name)
            .secret_string(json)
            .send()
            .await
            .map_err(|e| secrets_failure("PutSecretValue", name, &e))?;
        Ok(())
    }
}

/// A secret that no longer exists, or is already scheduled for deletion.
fn gone(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("ResourceNotFoundException") | Some("InvalidRequestException")
    )
}

/// How many secrets a document holds.
fn count(doc: &SecretsDoc) -> usize {
    usize::from(doc.scim_token.is_some())
        + usize::from(doc.notion_token.is_some())
        + doc.platforms.values().map(Vec::len).sum::<usize>()
        + doc.outbound.iter().filter(|s| !s.is_empty()).count()
}
