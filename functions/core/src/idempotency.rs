//! The idempotency state machine for event keys, as Powertools for Lambda defines it.
//!
//! One record per key. A claim succeeds when no record exists, the record expired, or the record
//! is in progress and its holder ran out of time (the in-progress expiry comes from the holder's
//! invocation deadline). Completion is an update by the owner; release deletes only the owner's
//! record. Stores implement [`crate::ports::IdempotencyStore`] with exactly these rules.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Completed keys are kept this long: platforms retry for up to 3 days, and the TTL attribute
/// deletes late, so expiry is also checked here.
pub const KEEP_COMPLETED: TimeDelta = TimeDelta::days(8);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    InProgress,
    Completed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    pub status: Status,
    /// Epoch seconds; also the table's TTL attribute.
    pub expiration: i64,
    /// Epoch milliseconds: when an in-progress holder's invocation runs out.
    pub in_progress_expiration: i64,
    pub payload_hash: String,
    /// Who holds the claim: only the owner may complete or release it.
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

impl IdempotencyRecord {
    pub fn in_progress(
        key: &str,
        payload_hash: &str,
        owner: &str,
        now: DateTime<Utc>,
        deadline: DateTime<Utc>,
    ) -> Self {
        Self {
            key: key.to_owned(),
            status: Status::InProgress,
            expiration: (now + KEEP_COMPLETED).timestamp(),
            in_progress_expiration: deadline.timestamp_millis(),
            payload_hash: payload_hash.to_owned(),
            owner: owner.to_owned(),
            outcome: None,
        }
    }

    /// Whether a new claim may replace this record: the rule every store must implement.
    pub fn can_be_taken_over(&self, now: DateTime<Utc>) -> bool {
        self.expiration < now.timestamp()
            || (self.status == Status::InProgress
                && self.in_progress_expiration < now.timestamp_millis())
    }
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This invocation owns the key: do the work, then complete or release.
    Acquired,
    /// The event was already applied: do nothing.
    Completed(IdempotencyRecord),
    /// Another invocation is applying it right now: retry later.
    InProgress(IdempotencyRecord),
}

impl Claim {
    /// Turns an existing record that could not be taken over into the caller's next action.
    pub fn from_existing(existing: IdempotencyRecord) -> Self {
        match existing.status {
            Status::Completed => Claim::Completed(existing),
            Status::InProgress => Claim::InProgress(existing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takeover_rules() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let live = IdempotencyRecord::in_progress("k", "h", "o", now, now + TimeDelta::seconds(30));
        assert!(!live.can_be_taken_over(now));
        assert!(live.can_be_taken_over(now + TimeDelta::seconds(31)));
        let mut done = live.clone();
        done.status = Status::Completed;
        assert!(!done.can_be_taken_over(now + TimeDelta::days(7)));
        assert!(done.can_be_taken_over(now + TimeDelta::days(9)));
    }
}
