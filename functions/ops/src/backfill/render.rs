//! What the operator sees: the plan's summary and the apply's report as tables (`--json` prints
//! the same structs), and the progress shown on a terminal.

use super::apply::ApplyReport;
use super::plan::{GroupChanges, Matched, Plan};
use crate::{mask_if_email, print_table};
use enroll_core::ids::{BuyerEmail, GroupId};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::IsTerminal;
use std::path::Path;

/// What `plan` prints and `--json` shows: counts, never addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanSummary {
    pub plan_file: String,
    pub rows: usize,
    pub buyers: usize,
    pub matched_by_ledger_id: usize,
    pub matched_by_email: usize,
    pub to_create: usize,
    pub no_account: usize,
    pub unmapped: usize,
    pub unmapped_reasons: BTreeMap<String, usize>,
    pub groups: Vec<GroupSummary>,
    pub requests_estimate: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupSummary {
    pub name: String,
    pub members_now: usize,
    pub add: usize,
    pub remove: usize,
}

impl Plan {
    pub fn summary(&self, plan_file: &Path, batch_size: usize) -> PlanSummary {
        let count = |m: Matched| self.buyers.iter().filter(|b| b.matched == m).count();
        let mut reasons = BTreeMap::new();
        for u in &self.unmapped {
            // Group by the reason's kind, not its quoted value.
            let kind = u.reason.split('`').next().unwrap_or("").trim().to_owned();
            *reasons.entry(kind).or_insert(0) += 1;
        }
        let batches = |n: usize| n.div_ceil(batch_size.max(1));
        // A member created joins their Groups in the same batched PATCHes as the others.
        let create_adds: BTreeMap<&GroupId, usize> = self
            .create
            .iter()
            .flat_map(|c| c.groups.iter())
            .fold(BTreeMap::new(), |mut m, g| {
                *m.entry(g).or_insert(0) += 1;
                m
            });
        let adds = |g: &GroupChanges| g.add.len() + create_adds.get(&g.id).copied().unwrap_or(0);
        let requests = self.create.len()
            + self
                .groups
                .iter()
                .map(|g| batches(adds(g)) + batches(g.remove.len()))
                .sum::<usize>();
        PlanSummary {
            plan_file: plan_file.display().to_string(),
            rows: self.sales.len() + self.unmapped.len(),
            buyers: self.buyers.len(),
            matched_by_ledger_id: count(Matched::LedgerId),
            matched_by_email: count(Matched::Email),
            to_create: self.create.len(),
            no_account: self.no_account.len(),
            unmapped: self.unmapped.len(),
            unmapped_reasons: reasons,
            groups: self
                .groups
                .iter()
                .map(|g| GroupSummary {
                    name: g.name.clone(),
                    members_now: g.members_now,
                    add: adds(g),
                    remove: g.remove.len(),
                })
                .collect(),
            requests_estimate: requests,
        }
    }
}

pub fn print_plan_summary(s: &PlanSummary) {
    let rows: Vec<Vec<String>> = s
        .groups
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                g.members_now.to_string(),
                format!("+{}", g.add),
                format!("-{}", g.remove),
            ]
        })
        .collect();
    print_table(&["GROUP", "MEMBERS NOW", "ADD", "REMOVE"], &rows);
    println!();
    print_counts(&[
        ("sales rows", &s.rows),
        ("buyers", &s.buyers),
        ("matched by ledger id", &s.matched_by_ledger_id),
        ("matched by email", &s.matched_by_email),
        ("members to create", &s.to_create),
        ("no Notion account (report only)", &s.no_account),
        ("rows not mapped", &s.unmapped),
        ("requests (estimate)", &s.requests_estimate),
    ]);
    for (reason, n) in &s.unmapped_reasons {
        println!("  not mapped: {n} × {reason}");
    }
    println!(
        "\nplan written to {}; review it, then run `enroll backfill apply {}`",
        s.plan_file, s.plan_file
    );
}

pub fn print_apply(r: &ApplyReport) {
    print_counts(&[
        ("resumed from a checkpoint", &r.resumed),
        ("requests (this run)", &r.requests),
        ("requests (all runs)", &r.requests_all_runs),
        ("members created", &r.created),
        ("Group memberships added", &r.added),
        ("Group memberships removed", &r.removed),
        (
            "found applied after an interruption",
            &r.verified_after_interruption,
        ),
        ("ledger orders recorded", &r.ledger_orders),
        ("ledger buyers updated", &r.ledger_buyers),
    ]);
}

/// Prints labelled counts as a two-column table.
fn print_counts(counts: &[(&str, &dyn Display)]) {
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|(label, n)| vec![(*label).to_owned(), n.to_string()])
        .collect();
    print_table(&["", "COUNT"], &rows);
}

/// Masks the addresses of a plan's report-only lists for printing.
pub fn masked(emails: &[BuyerEmail]) -> Vec<String> {
    emails.iter().map(|e| mask_if_email(e.as_str())).collect()
}

/// Whether to draw progress: asked for, and stderr is a terminal (never into a pipe or a log).
fn draws(show: bool) -> bool {
    show && std::io::stderr().is_terminal()
}

/// The apply's progress: requests sent out of those planned, with an ETA.
pub(crate) fn progress_bar(total: u64, show: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if draws(show) {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} requests, ETA {eta} {msg}",
        )
        .expect("a valid template"),
    );
    bar
}

/// A spinner for work of unknown length (listing members), on stderr when it is a terminal.
pub fn spinner(show: bool) -> ProgressBar {
    let bar = if draws(show) {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
