//! One queue stage serving several sellers: what the stage needs per seller (its provisioner,
//! aligner, notifier), built from the single seller's configuration or a tenant's, and a batch
//! split by the tenant each message names ([`enroll_core::tenant::tenant_of_message`]).
//!
//! Each tenant's messages run as their own batch, all of them at once, each inside
//! [`metrics::for_tenant`], so one seller whose SCIM server fails or times out holds up only
//! its own messages, and what each batch counted carries its tenant. A tenant that cannot be
//! served gets its messages handled by the stage's own rules for a failure: a transient one
//! (its configuration could not be read) comes back after the backoff, a permanent one (no
//! such tenant, a configuration that does not load) is parked with the reason.

use crate::lambda_env::load_single_config;
use crate::tenants::{TenantCache, TenantRegistry};
use enroll_core::batch::{BatchReport, Describe, Incoming};
use enroll_core::config::Config;
use enroll_core::metrics;
use enroll_core::ports::DeadLetters;
use enroll_core::tenant::{tenant_of_message, TenantId};
use enroll_core::timings::StageTimings;
use enroll_core::Failure;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;

/// Builds what the stage needs for one seller from that seller's configuration.
pub type Build<D> = Box<dyn Fn(TenantId, Arc<Config>) -> Result<D, Failure> + Send + Sync>;

/// What a stage needs, per seller.
pub struct TenantStage<D> {
    single: Option<Arc<D>>,
    registry: Option<TenantRegistry>,
    cache: TenantCache<D>,
    build: Build<D>,
}

impl<D: Send + Sync> TenantStage<D> {
    /// `single`: the single seller's configuration (`None` on a deployment of tenants only);
    /// `registry`: where tenants are found (`None` when the deployment has none).
    pub fn new(
        single: Option<Config>,
        registry: Option<TenantRegistry>,
        build: Build<D>,
    ) -> Result<Self, Failure> {
        let single = match single {
            Some(c) => Some(Arc::new(build(TenantId::default_tenant(), Arc::new(c))?)),
            None => None,
        };
        Ok(Self {
            single,
            registry,
            cache: TenantCache::default(),
            build,
        })
    }

    /// The stage as a function's environment describes it, once per cold start: the single
    /// seller from `ENROLL_CONFIG` ([`load_single_config`]) and the tenants from the table
    /// ([`TenantRegistry::from_env`]).
    pub async fn from_env(
        sdk: &aws_config::SdkConfig,
        build: Build<D>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let single = load_single_config(sdk).await?;
        Ok(Self::new(single, TenantRegistry::from_env(sdk), build)?)
    }

    /// A single seller's stage from parts already built (tests, tools): no tenants.
    pub fn single_only(single: D) -> Self {
        Self {
            single: Some(Arc::new(single)),
            registry: None,
            cache: TenantCache::default(),
            build: Box::new(|tenant, _| {
                Err(Failure::permanent(format!(
                    "tenant {tenant}: this stage serves a single seller"
                )))
            }),
        }
    }

    pub fn registry(&self) -> Option<&TenantRegistry> {
        self.registry.as_ref()
    }

    /// The single seller's, when there is one.
    pub fn single(&self) -> Option<&Arc<D>> {
        self.single.as_ref()
    }

    /// What the stage needs for `tenant`: the single seller's for the default tenant, else the
    /// tenant's, loaded on first use and kept for [`crate::tenants::CACHE_TTL`].
    pub async fn deps(&self, tenant: &TenantId) -> Result<Arc<D>, Failure> {
        if tenant.is_default() {
            return self.single.clone().ok_or_else(|| {
                Failure::permanent(
                    "the message names no tenant and this deployment serves tenants only",
                )
            });
        }
        let registry = self.registry.as_ref().ok_or_else(|| {
            Failure::permanent(format!(
                "the message is tenant {tenant}'s and this deployment serves no tenants"
            ))
        })?;
        let found = self
            .cache
            .get(tenant, || async {
                match registry.load(tenant).await? {
                    Some(config) => (self.build)(tenant.clone(), Arc::new(config)).map(Some),
                    None => Ok(None),
                }
            })
            .await?;
        found.ok_or_else(|| {
            Failure::permanent(format!(
                "tenant {tenant} is not configured on this deployment (removed?): add it with `enroll tenant add` and replay"
            ))
        })
    }

    /// Runs `run` once per tenant named in `messages`, concurrently, each inside that
    /// tenant's metrics scope, and adds up the reports. `run` gets the tenant, what the
    /// stage needs for it or why it cannot be served, and the tenant's messages in order.
    pub async fn run_batch<F, Fut>(&self, messages: &[Incoming], run: F) -> BatchReport
    where
        F: Fn(TenantId, Result<Arc<D>, Failure>, Vec<Incoming>) -> Fut,
        Fut: Future<Output = BatchReport>,
    {
        let groups = by_tenant(messages);
        let runs = groups.into_iter().map(|(tenant, msgs)| {
            let run = &run;
            async move {
                match tenant {
                    Ok(t) => {
                        let deps = self.deps(&t).await;
                        metrics::for_tenant(&t, run(t.clone(), deps, msgs)).await
                    }
                    Err(why) => {
                        let f = Failure::permanent(format!("the message's tenant: {why}"));
                        run(TenantId::default_tenant(), Err(f), msgs).await
                    }
                }
            }
        });
        let mut total = BatchReport::default();
        for r in futures::future::join_all(runs).await {
            total.succeeded += r.succeeded;
            total.parked += r.parked;
            total.retries.extend(r.retries);
            total.deferred.extend(r.deferred);
        }
        total
    }
}

/// A batch of a seller that cannot be served, through the stage's own failure rules: `why`
/// is every message's failure, so a transient one comes back after the stage's backoff and a
/// permanent one (or the last allowed receive) is parked with `why` as its reason.
pub async fn refuse<T>(
    messages: &[Incoming],
    dead: &dyn DeadLetters,
    timings: &StageTimings,
    why: Failure,
) -> BatchReport
where
    T: DeserializeOwned + Describe,
{
    enroll_core::batch::run::<T, _, _>(messages, dead, timings, |_| {
        let why = why.clone();
        async move { Err(why) }
    })
    .await
}

type Group = (Result<TenantId, String>, Vec<Incoming>);

/// The messages by the tenant they name, in first-seen order, each group in message order.
fn by_tenant(messages: &[Incoming]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for m in messages {
        let tenant = tenant_of_message(&m.body).map_err(|e| e.to_string());
        match groups.iter_mut().find(|(t, _)| *t == tenant) {
            Some((_, g)) => g.push(m.clone()),
            None => groups.push((tenant, vec![m.clone()])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, body: &str) -> Incoming {
        Incoming {
            id: id.into(),
            body: body.into(),
            receive_count: 1,
        }
    }

    #[test]
    fn messages_group_by_tenant_in_order() {
        let groups = by_tenant(&[
            msg("1", r#"{"tenant":"a"}"#),
            msg("2", r#"{"k":1}"#),
            msg("3", r#"{"tenant":"a"}"#),
            msg("4", r#"{"tenant":"B!"}"#),
        ]);
        let ids: Vec<(String, Vec<&str>)> = groups
            .iter()
            .map(|(t, g)| {
                (
                    t.as_ref()
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default(),
                    g.iter().map(|m| m.id.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(ids[0], ("a".to_owned(), vec!["1", "3"]));
        assert_eq!(ids[1], (String::new(), vec!["2"]));
        assert!(groups[2].0.is_err());
    }
}
