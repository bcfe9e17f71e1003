//! The expire function: an EventBridge schedule invokes it every few minutes, and it runs the
//! same expiry pass as `enroll expire`. Buyers whose access changes at or before now (a grant
//! ended, a follow-on grant such as alumni access began) are found through the table's sparse
//! `due` index and reconciled like any other event.
//!
//! - [`Deps`]: the configuration, the DynamoDB store and the SCIM client (spending the SCIM
//!   token's budget shared through the table), built once per cold start from `ENROLL_CONFIG`,
//!   `ENROLL_SECRET_ID` and `ENROLL_TABLE`, and each tenant's from its own configuration.
//! - [`function_handler`]: one scheduled invocation, at the time of the provisioner's clock (the
//!   wall clock when deployed, a manual one in tests); [`run_pass`] is the part a test drives
//!   with any store and directory, at any moment.
//!
//! A buyer who cannot be reconciled stays due, so the next scheduled pass retries them; the
//! invocation then ends in [`ExpireError::Incomplete`] so that the function's `Errors` metric,
//! and its alarm, show passes that keep failing. A pass that could not start reports the
//! failure's class: `Retryable` (throttled, unreachable) or `Permanent` (access denied, no
//! table), which no later pass fixes by itself.

use chrono::{DateTime, Utc};
use enroll_aws::tenant_stage::{Build, TenantStage};
use enroll_core::metrics;
use enroll_core::tenant::TenantId;
use enroll_core::Failure;
use lambda_runtime::{Diagnostic, Error, LambdaEvent};
use provision::lambda::Wiring;
use provision::{ExpiryReport, Provisioner};

/// Why a pass did not do all its work. Either way nothing is lost: due buyers stay due.
#[derive(Debug, thiserror::Error)]
pub enum ExpireError {
    /// The due buyers could not even be listed. The failure keeps its class: transient (the
    /// table throttled or unreachable) or permanent (access denied, a missing table).
    #[error("expiry pass failed: {0}")]
    Failed(Failure),
    /// Some buyers were reconciled, others failed and wait for the next pass.
    #[error("{failed} due buyer(s) could not be reconciled ({reconciled} were); the next pass retries them")]
    Incomplete { failed: usize, reconciled: usize },
}

impl From<ExpireError> for Diagnostic {
    fn from(e: ExpireError) -> Self {
        let kind = match &e {
            ExpireError::Failed(f) if f.is_permanent() => "Permanent",
            ExpireError::Failed(_) => "Retryable",
            ExpireError::Incomplete { .. } => "Incomplete",
        };
        Diagnostic {
            error_type: kind.into(),
            error_message: e.to_string(),
        }
    }
}

/// Clients and configuration built once per cold start; tenants' on first use.
pub struct Deps {
    pub stage: TenantStage<Provisioner>,
}

impl Deps {
    pub async fn from_env() -> Result<Self, Error> {
        let sdk = enroll_aws::sdk_config().await;
        // Reconciling never asks align for anything (only purchases do), so the stack gives
        // this function no queue and no SQS permission; the variable is honoured if set. The
        // pass spends the same SCIM token as provision, so it is built the same way and shares
        // provision's budget.
        let wiring = Wiring::from_env(&sdk)?;
        let build: Build<Provisioner> =
            Box::new(move |tenant, config| wiring.provisioner(&tenant, config));
        let stage = TenantStage::from_env(&sdk, build).await?;
        Ok(Self { stage })
    }

    /// A single seller's function around a provisioner built elsewhere (tests).
    pub fn single(provisioner: Provisioner) -> Self {
        Self {
            stage: TenantStage::single_only(provisioner),
        }
    }
}

/// One expiry pass at `now`.
pub async fn run_pass(
    provisioner: &Provisioner,
    now: DateTime<Utc>,
) -> Result<ExpiryReport, ExpireError> {
    let report = provisioner
        .expire_due(now)
        .await
        .map_err(ExpireError::Failed)?;
    if report.failed > 0 {
        return Err(ExpireError::Incomplete {
            failed: report.failed,
            reconciled: report.reconciled,
        });
    }
    Ok(report)
}

/// The scheduled invocation. The payload (an EventBridge `Scheduled Event`) is not read: the
/// pass always runs at the current time of the provisioner's clock, so a late or repeated
/// invocation does the right thing and no payload can make access end early.
///
/// On a deployment with tenants, every seller's pass runs, all at once (one seller's slow
/// SCIM server delays only its own buyers), each with its own provisioner and metrics
/// dimension. The invocation fails if any pass did, after all of them ran.
#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id))]
pub async fn function_handler(
    deps: &Deps,
    event: LambdaEvent<serde_json::Value>,
) -> Result<ExpiryReport, ExpireError> {
    let mut sellers = Vec::new();
    if deps.stage.single().is_some() {
        sellers.push(TenantId::default_tenant());
    }
    if let Some(registry) = deps.stage.registry() {
        let listed = registry.list().await.map_err(ExpireError::Failed)?;
        sellers.extend(listed.into_iter().map(|r| r.tenant));
    }
    let passes = sellers.iter().map(|tenant| async move {
        let provisioner = deps.stage.deps(tenant).await.map_err(ExpireError::Failed)?;
        let pass = run_pass(&provisioner, provisioner.clock.now());
        let result = metrics::for_tenant(tenant, pass).await;
        if let Err(e) = &result {
            tracing::error!(%tenant, error = %e, "expiry pass of this seller did not finish");
        }
        result
    });
    let mut total = ExpiryReport::default();
    let (mut failed, mut first_error) = (0, None);
    for result in futures::future::join_all(passes).await {
        match result {
            Ok(r) => {
                total.reconciled += r.reconciled;
                total.groups_added += r.groups_added;
                total.groups_removed += r.groups_removed;
            }
            Err(ExpireError::Incomplete {
                failed: f,
                reconciled,
            }) => {
                failed += f;
                total.reconciled += reconciled;
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    tracing::info!(
        sellers = sellers.len(),
        reconciled = total.reconciled,
        groups_added = total.groups_added,
        groups_removed = total.groups_removed,
        "expiry pass done"
    );
    if let Some(e) = first_error {
        return Err(e);
    }
    if failed > 0 {
        return Err(ExpireError::Incomplete {
            failed,
            reconciled: total.reconciled,
        });
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_that_cannot_start_reports_the_failure_class() {
        let kind = |f: Failure| Diagnostic::from(ExpireError::Failed(f)).error_type;
        assert_eq!(kind(Failure::transient("throttled")), "Retryable");
        assert_eq!(kind(Failure::permanent("access denied")), "Permanent");
        let incomplete = ExpireError::Incomplete {
            failed: 1,
            reconciled: 2,
        };
        assert_eq!(Diagnostic::from(incomplete).error_type, "Incomplete");
    }
}
