//! Linking a second email to an existing buyer: a buyer who pays with another address (a work
//! email, a typo) is still one person with one Notion member. The seller says so once with
//! `enroll link <alias> <existing buyer>`; every later event for the alias then resolves to the
//! existing buyer and their stored Notion user id.

use crate::{Provisioner, Reconciled};
use chrono::{DateTime, Utc};
use enroll_core::history::{self, HistoryEntry, Stage};
use enroll_core::ids::BuyerEmail;
use enroll_core::ledger::BuyerRecord;
use enroll_core::redact::mask_email;
use enroll_core::Failure;

/// What a link did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkReport {
    pub alias: String,
    pub buyer: String,
    /// The link existed already; nothing was written.
    pub already_linked: bool,
    /// Orders moved from the alias to the buyer (`--merge`).
    pub orders_moved: usize,
    /// Managed Groups taken from the alias's own member when it was a different account.
    pub alias_groups_removed: usize,
    pub alias_removed_from_workspace: bool,
    /// Managed Groups the buyer gained from the moved orders.
    pub buyer_groups_added: usize,
}

impl Provisioner {
    /// Makes `alias` resolve to the buyer `existing`. An alias that has orders of its own is
    /// refused unless `merge`, which moves those orders to the buyer: the alias's own Notion
    /// member, if it is another account, leaves the managed Groups (and, under
    /// `deprovision = "remove"`, the workspace, if enroll added it), and the buyer gets what
    /// the moved orders grant.
    #[tracing::instrument(skip_all, fields(alias = %alias, buyer = %existing), err)]
    pub async fn link(
        &self,
        alias: &BuyerEmail,
        existing: &BuyerEmail,
        merge: bool,
        now: DateTime<Utc>,
    ) -> Result<LinkReport, Failure> {
        let mut target = self.buyer_record(existing).await?;
        if target.version == 0 {
            return Err(Failure::permanent(
                "no buyer has that email yet: link to the email of a buyer enroll already knows",
            ));
        }
        if target.email == *alias {
            return Err(Failure::permanent(
                "that would link the buyer to itself (the second email already resolves to the first)",
            ));
        }
        let mut report = LinkReport {
            alias: alias.as_str().to_owned(),
            buyer: target.email.as_str().to_owned(),
            ..LinkReport::default()
        };
        // Both buyers' histories say what the operator did, naming the other email masked.
        let mut alias_lines = Vec::new();
        let mut buyer_lines = Vec::new();
        let mut own = self
            .ledger
            .buyer(alias)
            .await?
            .unwrap_or_else(|| BuyerRecord::new(alias.clone()));
        if own.alias_of.as_ref() == Some(&target.email) {
            report.already_linked = true;
            return Ok(report);
        }
        if !own.orders.is_empty() {
            if !merge {
                return Err(Failure::permanent(format!(
                    "the second email has {} order(s) of its own: pass --merge to move them to the existing buyer",
                    own.orders.len()
                )));
            }
            let same_member =
                own.notion_user_id.is_some() && own.notion_user_id == target.notion_user_id;
            if same_member {
                // Both records managed one member: the buyer now answers for everything the
                // alias applied, so a Group no longer granted is still removed.
                target.applied_groups.extend(own.applied_groups.clone());
                // The identity index must keep naming the buyer, not the alias.
                own.notion_user_id = None;
            } else if !own.applied_groups.is_empty() {
                let orders = std::mem::take(&mut own.orders);
                let left = self
                    .reconcile_record(&mut own, now, None, crate::Trigger::Operator)
                    .await?;
                alias_lines.extend(self.changes(&left));
                report.alias_groups_removed = left.removed.len();
                report.alias_removed_from_workspace = left.removed_from_workspace;
                own.orders = orders;
            }
            report.orders_moved = own.orders.len();
            // The buyer takes the orders before the alias gives them up: a crash in between
            // leaves them on both records, and running the link again finishes it.
            target.orders.extend(own.orders.iter().cloned());
            let gained: Reconciled = self
                .reconcile_record(&mut target, now, None, crate::Trigger::Operator)
                .await?;
            buyer_lines.push(format!(
                "{} order(s) moved here from {}",
                report.orders_moved,
                mask_email(alias.as_str())
            ));
            buyer_lines.extend(self.changes(&gained));
            report.buyer_groups_added = gained.added.len();
        }
        own.alias_of = Some(target.email.clone());
        own.orders.clear();
        own.applied_groups.clear();
        own.next_change_at = None;
        self.ledger.put_buyer(&own).await?;
        tracing::info!(orders_moved = report.orders_moved, "email linked to buyer");
        buyer_lines.insert(
            0,
            format!(
                "enroll link: {} linked to this buyer",
                mask_email(alias.as_str())
            ),
        );
        alias_lines.insert(
            0,
            format!(
                "enroll link: linked to buyer {}",
                mask_email(target.email.as_str())
            ),
        );
        let lines = |lines: Vec<String>| {
            let at = self.clock.now();
            lines
                .into_iter()
                .map(|what| HistoryEntry::new(at, Stage::Operator, what))
                .collect::<Vec<_>>()
        };
        history::record(self.history.as_ref(), &target.email, lines(buyer_lines)).await;
        history::record(self.history.as_ref(), alias, lines(alias_lines)).await;
        Ok(report)
    }
}
