//! Every buyer's provisioning log: what touched the buyer, when, and at which stage.
//!
//! An entry is short text for an operator ("added to Group Notion Mastery"), never a token, a
//! webhook body or a full email address (an address is hinted with [`crate::redact::mask_email`]).
//! Recording is best-effort: [`record`] logs a warning when the log cannot be written and the
//! event carries on, since losing a line of history must never cost a buyer their access.

use crate::ids::BuyerEmail;
use crate::ports::HistoryLog;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// How long entries are kept unless configured (`[history] retention_days`).
pub const DEFAULT_RETENTION_DAYS: u32 = 400;

/// Which part of enroll did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Ingest,
    Provision,
    Align,
    Expire,
    Operator,
    /// Outbound events to the seller's endpoints.
    Notify,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Provision => "provision",
            Stage::Align => "align",
            Stage::Expire => "expire",
            Stage::Operator => "operator",
            Stage::Notify => "notify",
        }
    }
}

/// One line of a buyer's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub stage: Stage,
    pub what: String,
}

impl HistoryEntry {
    pub fn new(at: DateTime<Utc>, stage: Stage, what: impl Into<String>) -> Self {
        Self {
            at,
            stage,
            what: what.into(),
        }
    }

    /// Stamped with the current time.
    pub fn now(stage: Stage, what: impl Into<String>) -> Self {
        Self::new(Utc::now(), stage, what)
    }
}

/// When an entry written at `at` may be deleted, for a retention of `days`.
pub fn expires_at(at: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    at + TimeDelta::days(i64::from(days.max(1)))
}

/// Appends `entries` to the buyer's history. A failure is logged and swallowed: the history is
/// best-effort and never fails the event that produced it.
pub async fn record(log: &dyn HistoryLog, buyer: &BuyerEmail, entries: Vec<HistoryEntry>) {
    if entries.is_empty() {
        return;
    }
    if let Err(f) = log.append(buyer, &entries).await {
        tracing::warn!(buyer = %buyer, reason = %f.reason, entries = entries.len(), "could not record the buyer's history; carrying on");
    }
}

/// For callers that keep no history (tests, one-off tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHistory;

#[async_trait::async_trait]
impl HistoryLog for NoHistory {
    async fn append(
        &self,
        _buyer: &BuyerEmail,
        _entries: &[HistoryEntry],
    ) -> Result<(), crate::Failure> {
        Ok(())
    }

    async fn history(&self, _buyer: &BuyerEmail) -> Result<Vec<HistoryEntry>, crate::Failure> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_serialise_with_a_lowercase_stage_and_rfc3339_time() {
        let at: DateTime<Utc> = "2026-01-02T03:04:05.123Z".parse().unwrap();
        let e = HistoryEntry::new(at, Stage::Provision, "applied");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["stage"], "provision");
        assert_eq!(json["what"], "applied");
        let back: DateTime<Utc> = json["at"].as_str().unwrap().parse().unwrap();
        assert_eq!(back, at);
        assert_eq!(serde_json::from_value::<HistoryEntry>(json).unwrap(), e);
    }

    #[test]
    fn retention_counts_whole_days() {
        let at: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            expires_at(at, 400),
            "2027-02-05T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
