//! The state every request handler shares: the workspace, the traffic record, the rate
//! buckets and the fault rules, each behind its own short-held lock.

use crate::faults::{FaultState, Faults};
use crate::model::{Group, SimState};
use crate::ratelimit::{Bucket, RateLimit};
use crate::traffic::Traffic;
use crate::SimConfig;
use axum::http::{header, HeaderMap};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

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
    /// How long every SCIM and public API request takes to be answered.
    latency: Mutex<Option<Duration>>,
    /// Told of every member that joins a Group, while someone watches.
    joins: Mutex<Option<mpsc::UnboundedSender<Joined>>>,
}

/// A member who joined a Group, and when the simulator applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    pub group: String,
    pub user_name: String,
    pub at: Instant,
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
            latency: Mutex::new(None),
            joins: Mutex::new(None),
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

    /// `Err(seconds)` when the request is over its API's limit; counted either way.
    pub(crate) fn take_token(&self, budget: Budget) -> Result<(), u64> {
        let taken = lock(self.bucket(budget))
            .as_mut()
            .map_or(Ok(()), Bucket::take);
        let mut traffic = self.traffic();
        let used = match budget {
            Budget::Scim => &mut traffic.scim,
            Budget::Notion => &mut traffic.notion,
        };
        used.note(taken.is_ok());
        taken
    }

    pub(crate) fn max_members_per_patch(&self) -> Option<usize> {
        *lock(&self.max_members_per_patch)
    }

    pub(crate) fn set_max_members_per_patch(&self, cap: Option<usize>) {
        *lock(&self.max_members_per_patch) = cap;
    }

    pub(crate) fn latency(&self) -> Option<Duration> {
        *lock(&self.latency)
    }

    pub(crate) fn set_latency(&self, latency: Option<Duration>) {
        *lock(&self.latency) = latency.filter(|d| !d.is_zero());
    }

    /// A new watcher replaces the previous one.
    pub(crate) fn watch_joins(&self) -> mpsc::UnboundedReceiver<Joined> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.joins) = Some(tx);
        rx
    }

    /// Tells the watcher, if any, of the members in `after` who were not in `before`.
    pub(crate) fn note_joins(&self, state: &SimState, before: &[String], after: &Group) {
        let mut joins = lock(&self.joins);
        let Some(tx) = joins.as_ref() else {
            return;
        };
        let at = Instant::now();
        let before: HashSet<&String> = before.iter().collect();
        for id in after.members.iter().filter(|m| !before.contains(m)) {
            let Some(user) = state.users.iter().find(|u| &u.id == id) else {
                continue;
            };
            let joined = Joined {
                group: after.display_name.clone(),
                user_name: user.user_name.clone(),
                at,
            };
            if tx.send(joined).is_err() {
                // The watcher is gone: stop looking.
                *joins = None;
                return;
            }
        }
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
