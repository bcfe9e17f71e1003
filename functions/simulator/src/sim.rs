//! The state every request handler shares: the workspace, the traffic record, the rate
//! bucket and the fault rules, each behind its own short-held lock.

use crate::faults::{FaultState, Faults};
use crate::model::SimState;
use crate::ratelimit::{Bucket, RateLimit};
use crate::traffic::Traffic;
use axum::http::{header, HeaderMap};
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) type Sim = Arc<Shared>;

pub(crate) struct Shared {
    pub scim_token: String,
    pub notion_token: String,
    state: Mutex<SimState>,
    traffic: Mutex<Traffic>,
    bucket: Mutex<Option<Bucket>>,
    faults: Mutex<FaultState>,
}

/// A panic in one handler must not wedge the simulator for every later request.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn new(
        scim_token: String,
        notion_token: String,
        state: SimState,
        rate_limit: Option<RateLimit>,
    ) -> Self {
        Self {
            scim_token,
            notion_token,
            state: Mutex::new(state),
            traffic: Mutex::default(),
            bucket: Mutex::new(rate_limit.map(Bucket::new)),
            faults: Mutex::default(),
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
    pub(crate) fn set_rate_limit(&self, limit: Option<RateLimit>) {
        *lock(&self.bucket) = limit.map(Bucket::new);
    }

    /// `Err(seconds)` when the request is over the limit.
    pub(crate) fn take_token(&self) -> Result<(), u64> {
        lock(&self.bucket).as_mut().map_or(Ok(()), Bucket::take)
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
