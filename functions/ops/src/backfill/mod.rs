//! `enroll backfill plan` and `enroll backfill apply`: existing customers into their Groups, from
//! a sales export, as the seller once did with scripts that ran for hours.
//!
//! `plan` changes nothing. It reads the export, lists every workspace member through SCIM,
//! matches each buyer by the Notion user id the ledger holds or else by email (ignoring case),
//! and writes a plan an operator can read: per Group the members to add (and, with `--prune`,
//! to remove), the buyers with no Notion account (to create, or only reported), and the rows it
//! could not map, each with its reason.
//!
//! `apply` carries a plan out with batched Group PATCHes through one request budget, then
//! records the grants in the ledger so later webhooks (a refund, the 12-month expiry) act on
//! the backfilled access. Progress is checkpointed next to the plan after every request; a
//! killed run resumes where it stopped. The one request whose answer a kill may have lost is
//! checked against the Group's members before anything is resent, so no PATCH is repeated.
//!
//! - [`mapping`]: which export column holds what, and the export read into [`SaleRow`]s.
//! - [`plan`]: the workspace and ledger as they are, and the reviewable [`Plan`].
//! - [`checkpoint`]: the file next to the plan that lets a killed apply resume.
//! - [`apply`]: the plan carried out, then recorded in the ledger.
//! - [`render`]: the tables and progress an operator sees.

pub mod apply;
pub mod checkpoint;
pub mod mapping;
pub mod plan;
pub mod render;

pub use apply::{apply, ApplyOptions, ApplyReport};
pub use checkpoint::{checkpoint_path, Checkpoint, Inflight, Op};
pub use mapping::{
    backfill_event_key, order_from_rows, read_sales, Columns, SaleRow, Sales, Unmapped,
};
pub use plan::{
    plan, GroupChanges, Matched, NewMember, Plan, PlanBuyer, PlanMember, PlanOptions, Snapshot,
    PLAN_FORMAT,
};
pub use render::{masked, print_apply, print_plan_summary, spinner, GroupSummary, PlanSummary};

use enroll_core::Failure;

/// A port's failure as an operator's error: its reason, already redacted.
pub(crate) fn failure(f: Failure) -> anyhow::Error {
    anyhow::anyhow!(f.reason)
}
