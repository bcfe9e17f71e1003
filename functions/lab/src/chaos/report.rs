//! The outcome of a run: the verdict fields, what happened, and the summary printed without
//! `--json`.

use serde::Serialize;

/// The outcome. The first seven fields are the run's verdict; the rest say what happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChaosReport {
    pub events: usize,
    pub buyers: usize,
    /// Buyers whose Groups in Notion differ from the ledger's desired Groups, at the end.
    pub mismatched_buyers: usize,
    /// Accounts created more than once for one address.
    pub duplicate_creates: usize,
    /// Accepted events neither applied nor parked with a reason, at the end.
    pub lost: usize,
    pub dlq_before_replay: usize,
    pub applied_after_replay: usize,

    pub seed: u64,
    pub fault_rate: f64,
    pub deliveries: usize,
    pub duplicate_deliveries: usize,
    pub early_refunds: usize,
    pub late_refunds: usize,
    /// Deliveries the endpoint did not answer 202.
    pub refused_deliveries: usize,
    pub kills: usize,
    /// Kills that found provision messages received and not yet settled.
    pub kills_mid_batch: usize,
    /// Worker exits the driver did not cause (a crash).
    pub unexpected_exits: usize,
    pub requests: u64,
    /// Before the replay: accepted events neither applied nor parked with a reason.
    pub lost_before_replay: usize,
    pub applied_before_replay: usize,
    pub parked_without_reason: usize,
    /// Before the replay, among buyers none of whose events was parked.
    pub mismatched_before_replay: usize,
    /// Buyers whose desired Groups per the ledger differ from what the plan implies: the
    /// ledger must not depend on delivery order.
    pub ledger_disagreements: usize,
    /// Buyers with access whose sales record lacks their Notion user id.
    pub unaligned_buyers: usize,
    /// Notion user ids written into more than one sales record: must be 0 (align holds a
    /// lease per buyer, and looks before it repeats a create whose answer was lost).
    pub duplicate_records: usize,
    /// Events parked only because a killed process held their claim (the receive limit
    /// reached while waiting for it, or the queue's never-settled backstop): must be 0.
    pub parked_by_crash: usize,
    pub drained: bool,
    pub seconds: f64,
}

impl ChaosReport {
    /// Whether every promise held.
    pub fn passed(&self) -> bool {
        self.drained
            && self.mismatched_buyers == 0
            && self.duplicate_creates == 0
            && self.lost == 0
            && self.lost_before_replay == 0
            && self.parked_without_reason == 0
            && self.applied_after_replay == self.events
            && self.refused_deliveries == 0
            && self.ledger_disagreements == 0
            && self.mismatched_before_replay == 0
            && self.unaligned_buyers == 0
            && self.unexpected_exits == 0
            && self.duplicate_records == 0
            && self.parked_by_crash == 0
    }
}

/// The summary `enroll chaos` prints without `--json`.
pub fn print(r: &ChaosReport) {
    println!(
        "{} events ({} deliveries: {} duplicates, {} refunds before and {} after their purchase) for {} buyers",
        r.events, r.deliveries, r.duplicate_deliveries, r.early_refunds, r.late_refunds, r.buyers
    );
    println!(
        "{} SCIM/Notion requests at a {:.0}% fault rate; worker killed {} times mid-batch; {:.1} s",
        r.requests,
        r.fault_rate * 100.0,
        r.kills_mid_batch,
        r.seconds
    );
    println!(
        "before replay: {} applied, {} parked, {} lost",
        r.applied_before_replay, r.dlq_before_replay, r.lost_before_replay
    );
    println!(
        "after replay:  {} applied, {} lost, {} buyers mismatched, {} duplicate creates",
        r.applied_after_replay, r.lost, r.mismatched_buyers, r.duplicate_creates
    );
    println!("{}", if r.passed() { "PASSED" } else { "FAILED" });
}
