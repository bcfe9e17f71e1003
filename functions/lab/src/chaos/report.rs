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
    /// With several tenants, each one's figures; the fields above then add theirs up (the
    /// kills, exits and seconds are the one child's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<TenantReport>,
}

/// One tenant's figures in a run with several.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantReport {
    pub tenant: String,
    #[serde(flatten)]
    pub figures: ChaosReport,
    /// Deliveries of another tenant, signed with that tenant's secret, posted to this
    /// tenant's path.
    pub misrouted: usize,
    /// Of those, answered 401: must be all.
    pub misrouted_refused: usize,
    /// Of those, accepted (2xx): must be 0.
    pub misrouted_accepted: usize,
    /// Users in this tenant's workspace who are buyers of another tenant: must be 0.
    pub foreign_users: usize,
    /// Idempotency keys in this tenant's store that none of its accepted deliveries made:
    /// must be 0.
    pub foreign_records: usize,
}

impl TenantReport {
    /// Whether every promise held for this tenant, its isolation included.
    pub fn passed(&self) -> bool {
        self.figures.passed()
            && self.misrouted_refused == self.misrouted
            && self.misrouted_accepted == 0
            && self.foreign_users == 0
            && self.foreign_records == 0
    }
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
            && self.tenants.iter().all(TenantReport::passed)
    }

    /// Adds another tenant's counts to these (the figures of the shared child, its kills,
    /// exits and seconds, stay).
    pub(super) fn add(&mut self, t: &ChaosReport) {
        self.events += t.events;
        self.buyers += t.buyers;
        self.mismatched_buyers += t.mismatched_buyers;
        self.duplicate_creates += t.duplicate_creates;
        self.lost += t.lost;
        self.dlq_before_replay += t.dlq_before_replay;
        self.applied_after_replay += t.applied_after_replay;
        self.deliveries += t.deliveries;
        self.duplicate_deliveries += t.duplicate_deliveries;
        self.early_refunds += t.early_refunds;
        self.late_refunds += t.late_refunds;
        self.refused_deliveries += t.refused_deliveries;
        self.requests += t.requests;
        self.lost_before_replay += t.lost_before_replay;
        self.applied_before_replay += t.applied_before_replay;
        self.parked_without_reason += t.parked_without_reason;
        self.mismatched_before_replay += t.mismatched_before_replay;
        self.ledger_disagreements += t.ledger_disagreements;
        self.unaligned_buyers += t.unaligned_buyers;
        self.duplicate_records += t.duplicate_records;
        self.parked_by_crash += t.parked_by_crash;
        self.drained &= t.drained;
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
    for t in &r.tenants {
        let f = &t.figures;
        println!(
            "tenant {}: {} events for {} buyers, {} requests; before replay {} applied, {} parked; after replay {} applied, {} lost, {} mismatched, {} duplicate creates; {}/{} misrouted refused with 401, {} foreign users, {} foreign keys: {}",
            t.tenant,
            f.events,
            f.buyers,
            f.requests,
            f.applied_before_replay,
            f.dlq_before_replay,
            f.applied_after_replay,
            f.lost,
            f.mismatched_buyers,
            f.duplicate_creates,
            t.misrouted_refused,
            t.misrouted,
            t.foreign_users,
            t.foreign_records,
            if t.passed() { "passed" } else { "FAILED" }
        );
    }
    println!("{}", if r.passed() { "PASSED" } else { "FAILED" });
}
