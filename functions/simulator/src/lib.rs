//! An in-process simulator of the parts of Notion that enroll calls: the SCIM 2.0 API
//! (RFC 7643/7644) under `/scim/v2` and the public API (version 2025-09-03 shapes) under `/v1`,
//! plus a control surface under `/_sim/` (open, or behind [`SimConfig::admin_token`]).
//!
//! - [`model`]: the workspace ([`SimState`]): users, Groups, databases with their data
//!   sources, pages. JSON-(de)serialisable, so a run can be seeded from and dumped to a file.
//! - `scim`: Users and Groups, filters (`scim::filter`), PatchOp (`scim::patch`), SCIM errors,
//!   and the discovery endpoints (`scim::discovery`: ServiceProviderConfig, ResourceTypes,
//!   Schemas) describing only what the simulator serves.
//! - `notion`: databases, data sources, pages and data source queries, Notion error bodies.
//! - [`faults`] and [`ratelimit`]: seeded fault injection and the token buckets (one for SCIM,
//!   one for the public API).
//! - [`traffic`]: per-endpoint counters, the recorded requests tests assert on, and what each
//!   budget let through ([`BudgetUse`]).
//! - Latency ([`SimHandle::set_latency`], `PUT /_sim/latency-ms`): every SCIM and public API
//!   request is answered that long after it arrives, each on its own task. Joins to Groups can
//!   be watched ([`SimHandle::watch_joins`]) so a benchmark sees access without asking SCIM.
//! - `server`: hyper's connection loop and the front door (record, fault, rate limit, route);
//!   `admin`: the `/_sim/` endpoints; `sim`: the shared, locked state.
//!
//! Behaviour chosen where Notion documents nothing:
//! - `DELETE /Users/{id}` removes the member from the workspace and every Group; the user is
//!   then gone from SCIM (404, not listed, RFC 7644 §3.6), but the account survives: a later
//!   `POST /Users` with the same userName re-adds it under the same id. `active: false` (PATCH
//!   or PUT) also removes the member from every Group but leaves it listed with
//!   `active: false`; `active: true` or a new POST brings it back.
//! - `POST /Users` answers 409 `uniqueness` only when an active member has the userName
//!   (compared case-insensitively). PATCH on a User answers 200 with the User; PATCH on a Group
//!   answers 204, or 200 with the Group when `attributes`/`excludedAttributes` is given.
//! - A filter naming an attribute the resource does not have is `invalidFilter`, not an empty
//!   result. `members`, `id` and `externalId` compare case-exactly; other strings ignore case.
//! - Data source query text conditions are case-sensitive; results keep creation order
//!   unless `sorts` is given; cursors are page ids. Trashed pages are not queried.
//! - Strict where Notion or the RFCs are: `userName` must be an email address (400
//!   `invalidValue`); a data source filter's type key must be its property's type (400
//!   `validation_error`); `remove` on Group `members` follows `scim::groups`' three forms.
//! - SCIM and the public API draw on separate buckets ([`SimConfig::scim_rate_limit`],
//!   [`SimConfig::notion_rate_limit`]); an optional cap on members per Group PATCH answers 413.
//! - Faults are decided before the rate limit, so a faulted request uses no token. Counters and
//!   recorded requests cover every request outside `/_sim/`; `reset_counters` clears both.

mod admin;
pub mod faults;
pub mod model;
mod notion;
pub mod ratelimit;
mod scim;
mod server;
mod sim;
pub mod traffic;

pub use faults::{FaultAction, FaultRule, Faults};
pub use model::{
    DataSource, Database, Email, Group, Name, Page, PropertyKind, PropertyValue, SimState, User,
};
pub use ratelimit::RateLimit;
pub use sim::Joined;
pub use traffic::{BudgetUse, RecordedRequest};

use serde::{Deserialize, Serialize};
use sim::{Budget, Shared, Sim};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How to start a simulator: its tokens, its limits and the seed state.
#[derive(Clone, Serialize, Deserialize)]
pub struct SimConfig {
    pub scim_token: String,
    pub notion_token: String,
    /// The SCIM API's own bucket: Notion publishes no SCIM limit, and whether it shares a
    /// budget with the public API is unknown, so the two are set apart.
    #[serde(default)]
    pub scim_rate_limit: Option<RateLimit>,
    /// The public API's bucket (Notion documents an average of 3 requests per second).
    #[serde(default)]
    pub notion_rate_limit: Option<RateLimit>,
    /// When set, `/_sim/` answers 401 unless given `Authorization: Bearer <admin_token>`.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Members a single Group PATCH may name; more is answered 413. Notion publishes no cap.
    #[serde(default)]
    pub max_members_per_patch: Option<usize>,
    #[serde(default)]
    pub state: SimState,
}

/// Tokens stay out of logs even in a simulator.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("scim_token", &"<redacted>")
            .field("notion_token", &"<redacted>")
            .field("scim_rate_limit", &self.scim_rate_limit)
            .field("notion_rate_limit", &self.notion_rate_limit)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("max_members_per_patch", &self.max_members_per_patch)
            .field("state", &self.state)
            .finish()
    }
}

/// Binds `addr` (use `127.0.0.1:0` for a free port) and serves on the current tokio runtime.
pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let sim: Sim = Arc::new(Shared::new(config));
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server::run(listener, sim.clone(), stopped));
    Ok(SimHandle {
        sim,
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

/// A running simulator. Dropping it stops the server too; [`SimHandle::shutdown`] also waits.
pub struct SimHandle {
    sim: Sim,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn scim_base_url(&self) -> String {
        format!("http://{}/scim/v2", self.addr)
    }

    pub fn notion_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn state(&self) -> SimState {
        self.sim.state().clone()
    }

    pub fn set_state(&self, s: SimState) {
        *self.sim.state() = s;
    }

    /// Requests per endpoint, e.g. `"PATCH /scim/v2/Groups/{id}"`, including refused ones.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.sim.traffic().counters()
    }

    /// The most recent requests (up to 10,000), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.sim.traffic().requests()
    }

    /// Replaces the rules and restarts the generator from `faults.seed`.
    pub fn set_faults(&self, faults: Faults) {
        self.sim.set_faults(faults);
    }

    /// Gives SCIM and the public API each a bucket with this limit (`None` lifts both).
    pub fn set_rate_limit(&self, r: Option<RateLimit>) {
        self.sim.set_rate_limit(Budget::Scim, r);
        self.sim.set_rate_limit(Budget::Notion, r);
    }

    pub fn set_scim_rate_limit(&self, r: Option<RateLimit>) {
        self.sim.set_rate_limit(Budget::Scim, r);
    }

    pub fn set_notion_rate_limit(&self, r: Option<RateLimit>) {
        self.sim.set_rate_limit(Budget::Notion, r);
    }

    /// Members a single Group PATCH may name before it is answered 413; `None` for no cap.
    pub fn set_max_members_per_patch(&self, cap: Option<usize>) {
        self.sim.set_max_members_per_patch(cap);
    }

    /// Every SCIM and public API request is answered `latency` after it arrives (the rate
    /// limits and faults apply once it has arrived); `None` or zero answers at once. Requests
    /// wait concurrently: a hundred requests at once all take one `latency`.
    pub fn set_latency(&self, latency: Option<Duration>) {
        self.sim.set_latency(latency);
    }

    /// Every member who joins a Group from now on (SCIM PATCH or PUT), with when it was
    /// applied: membership seen without spending requests. A new watcher replaces the last.
    pub fn watch_joins(&self) -> mpsc::UnboundedReceiver<Joined> {
        self.sim.watch_joins()
    }

    /// What the SCIM bucket let through and refused since the counters were reset.
    pub fn scim_budget_use(&self) -> BudgetUse {
        self.sim.traffic().scim
    }

    /// What the public API's bucket let through and refused since the counters were reset.
    pub fn notion_budget_use(&self) -> BudgetUse {
        self.sim.traffic().notion
    }

    /// Clears the counters, the recorded requests and the budgets' use.
    pub fn reset_counters(&self) {
        self.sim.traffic().reset();
    }

    /// The account whose userName or email is `email` (ignoring case), members first;
    /// check [`User::is_member`] to tell a member from a removed account.
    pub fn user_by_email(&self, email: &str) -> Option<User> {
        let email = email.to_lowercase();
        let state = self.sim.state();
        let mut hits = state.users.iter().filter(|u| {
            u.user_name.to_lowercase() == email
                || u.emails.iter().any(|e| e.value.to_lowercase() == email)
        });
        let first = hits.next()?;
        let best = std::iter::once(first)
            .chain(hits)
            .find(|u| u.is_member())
            .unwrap_or(first);
        Some(best.clone())
    }

    /// The user ids in the Group with this displayName (ignoring case); empty if none.
    pub fn group_members(&self, display_name: &str) -> Vec<String> {
        let name = display_name.to_lowercase();
        self.sim
            .state()
            .groups
            .iter()
            .find(|g| g.display_name.to_lowercase() == name)
            .map(|g| g.members.clone())
            .unwrap_or_default()
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
