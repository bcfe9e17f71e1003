//! The operator's tools, over enroll's ports, on the embedded default or a deployed stack.
//!
//! - [`dlq`]: how `enroll dlq list|replay|delete` shows what is parked and what moved (the
//!   work itself is the dead-letter admin port, `enroll_core::dead_letters`).
//! - [`workspace`]: what backfill and audit act on: the configuration, the ledger and the
//!   workspace's SCIM API.
//! - [`backfill`]: `enroll backfill plan|apply`, existing customers into their Groups from a
//!   sales export.
//! - [`audit`]: `enroll audit [--fix]`, the workspace compared with the ledger.
//! - [`doctor`]: `enroll doctor`, the configuration checked against the live services.
//! - [`summary`]: `enroll status --summary` from a stack's CloudWatch metrics, and the line
//!   `enroll dev` prints each minute.
//! - [`tenants`]: `enroll tenant add|list|remove|rotate-secret --stack`, the sellers of a
//!   deployed stack (their configuration items and secrets).
//!
//! Every report has a table view and `--json`; neither ever shows a full email address.

pub mod audit;
pub mod backfill;
pub mod dlq;
pub mod doctor;
pub mod summary;
pub mod tenants;
pub mod workspace;

pub use enroll_core::redact::mask_if_email;

/// Prints rows under headers, each column as wide as its widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
