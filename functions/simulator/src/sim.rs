//! The state every request handler shares: the workspace, the traffic record, the rate
//! buckets and the fault rules, each behind its own short-held lock.

use crate::faults::{FaultState, Faults};
use crate::model::SimState;
use crate::ratelimit::{Bucket, RateLimit};
use crate::traffic::Traffic;
use crate::SimConfig;
use axum::http::{header, HeaderMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// Which rate bucket a request draws from: SCIM and the public API are limited apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Budget {
    Scim,
    Notion,
}

pub(crate) type Sim = Arc<Shared>;

pub(crate) struct Shared {
    pub scim_token: String,
    pub notion_token: String,
    pub admin_token: Option<String>,
    state: Mutex<SimState>,
    traffic: Mutex<Traffic>,
    scim_bucket: Mutex<Option<Bucket>>,
    notion_bucket: Mutex<Option<Bucket>>,
    faults: Mutex<FaultState>,
    max_members_per_patch: Mutex<Option<usize>>,
}

/// A panic in one handler must not wedge the simulator for every later request.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn new(config: SimConfig) -> Self {
        Self {
            scim_token: config.scim_token,
            notion_token: config.notion_token,
            admin_token: config.admin_token,
            state: Mutex::new(config.state),
            traffic: Mutex::default(),
            scim_bucket: Mutex::new(config.scim_rate_limit.map(Bucket::new)),
            notion_bucket: Mutex::new(config.notion_rate_limit.map(Bucket::new)),
            faults: Mutex::default(),
            max_members_per_patch: Mutex::new(config.max_members_per_patch),
        }
    }

    fn bucket(&self, budget: Budget) -> &Mutex<Option<Bucket>> {
        match budget {
            Budget::Scim => &self.scim_bucket,
            Budget::Notion => &self.notion_bucket,
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, SimState> {
        lock(&self.state)
    }

    pub(crate) fn traffic(&self) -> MutexGuard<'_, Traffic> {
        lock(&self.traffic)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultState> {
        lock(&self.faults)
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = FaultState::new(faults);
    }

    /// A new limit starts with a full bucket.
    pub(crate) fn set_rate_limit(&self, budget: Budget, limit: Option<RateLimit>) {
        *lock(self.bucket(budget)) = limit.map(Bucket::new);
    }

    /// `Err(seconds)` when the request is over its API's limit.
    pub(crate) fn take_token(&self, budget: Budget) -> Result<(), u64> {
        lock(self.bucket(budget))
            .as_mut()
            .map_or(Ok(()), Bucket::take)
    }

    pub(crate) fn max_members_per_patch(&self) -> Option<usize> {
        *lock(&self.max_members_per_patch)
    }

    pub(crate) fn set_max_members_per_patch(&self, cap: Option<usize>) {
        *lock(&self.max_members_per_patch) = cap;
    }
}

/// `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 7235).
pub(crate) fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, given)| {
            scheme.eq_ignore_ascii_case("bearer") && given.trim() == token
        })
}
