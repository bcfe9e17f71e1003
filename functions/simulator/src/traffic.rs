//! What the simulator observed: per-endpoint counters and the recent requests, verbatim.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Enough to replay what a long `enroll simulate` session saw last without growing forever.
const KEPT_REQUESTS: usize = 10_000;

/// One request as received.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string exactly as sent (still percent-encoded), without the `?`.
    pub query: Option<String>,
    /// Only `content-type` and `notion-version`, lowercase names; never credentials.
    pub headers: BTreeMap<String, String>,
    /// The body as text (lossy for bytes that are not UTF-8).
    pub body: String,
}

/// What one rate budget (SCIM, or the public API) let through since the counters were reset:
/// enough to tell how busy a client kept it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetUse {
    /// Requests that got a token.
    pub accepted: u64,
    /// Requests answered 429.
    pub throttled: u64,
    /// When the first and the last accepted request took their token.
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

impl BudgetUse {
    pub(crate) fn note(&mut self, accepted: bool) {
        if !accepted {
            self.throttled += 1;
            return;
        }
        let now = Instant::now();
        self.accepted += 1;
        self.first.get_or_insert(now);
        self.last = Some(now);
    }
}

#[derive(Debug, Default)]
pub(crate) struct Traffic {
    counters: BTreeMap<String, u64>,
    requests: VecDeque<RecordedRequest>,
    pub(crate) scim: BudgetUse,
    pub(crate) notion: BudgetUse,
}

impl Traffic {
    pub(crate) fn record(&mut self, request: RecordedRequest) {
        let key = format!("{} {}", request.method, endpoint_template(&request.path));
        *self.counters.entry(key).or_default() += 1;
        if self.requests.len() == KEPT_REQUESTS {
            self.requests.pop_front();
        }
        self.requests.push_back(request);
    }

    pub(crate) fn counters(&self) -> BTreeMap<String, u64> {
        self.counters.clone()
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.iter().cloned().collect()
    }

    pub(crate) fn reset(&mut self) {
        self.counters.clear();
        self.requests.clear();
        self.scim = BudgetUse::default();
        self.notion = BudgetUse::default();
    }
}

/// Collections whose next path segment is an identifier.
const COLLECTIONS: &[&str] = &[
    "Users",
    "Groups",
    "databases",
    "data_sources",
    "pages",
    "users",
    "blocks",
];

/// `/scim/v2/Groups/3f2…` becomes `/scim/v2/Groups/{id}` so counters group by endpoint.
pub(crate) fn endpoint_template(path: &str) -> String {
    let mut out = Vec::new();
    let mut previous = "";
    for segment in path.split('/') {
        let templated = COLLECTIONS.contains(&previous) && !segment.is_empty();
        out.push(if templated { "{id}" } else { segment });
        previous = segment;
    }
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::endpoint_template;

    #[test]
    fn templates_ids() {
        assert_eq!(endpoint_template("/scim/v2/Users"), "/scim/v2/Users");
        assert_eq!(
            endpoint_template("/scim/v2/Groups/abc"),
            "/scim/v2/Groups/{id}"
        );
        assert_eq!(
            endpoint_template("/v1/data_sources/abc/query"),
            "/v1/data_sources/{id}/query"
        );
        assert_eq!(endpoint_template("/v1/pages"), "/v1/pages");
    }
}
