//! The plan: a snapshot of the workspace and the ledger, and what the export asks of them.

use super::failure;
use super::mapping::{order_from_rows, rows_by_order, SaleRow, Sales, Unmapped};
use crate::workspace::Workspace;
use chrono::{DateTime, Utc};
use enroll_core::catalog::GroupRef;
use enroll_core::ids::{BuyerEmail, GroupId, NotionUserId, OrderKey};
use enroll_core::ledger::{self, BuyerRecord, OrderRecord};
use enroll_core::ports::ScimUser;
use indicatif::ProgressBar;
use provision::GroupResolver;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const PLAN_FORMAT: u32 = 1;

/// A member a plan adds to or removes from a Group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMember {
    pub user_id: NotionUserId,
    /// The address SCIM or the export shows, so the plan can be reviewed.
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupChanges {
    pub id: GroupId,
    pub name: String,
    /// Members before the backfill.
    pub members_now: usize,
    pub add: Vec<PlanMember>,
    #[serde(default)]
    pub remove: Vec<PlanMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMember {
    pub email: BuyerEmail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub groups: Vec<GroupId>,
}

/// How a buyer was matched to a workspace member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Matched {
    /// The Notion user id the ledger holds: survives an email change.
    LedgerId,
    Email,
    /// No Notion account yet.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanBuyer {
    pub email: BuyerEmail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<NotionUserId>,
    pub matched: Matched,
    /// The managed Groups the ledger will want for this buyer, now.
    pub desired: Vec<GroupId>,
    pub orders: Vec<OrderKey>,
}

/// A reviewable backfill plan. It holds full addresses: keep it where the sales export is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    pub created_at: DateTime<Utc>,
    pub sales_file: String,
    pub prune: bool,
    pub create_missing: bool,
    pub groups: Vec<GroupChanges>,
    /// Buyers with no Notion account, created by `apply` (only with `--create-missing`).
    pub create: Vec<NewMember>,
    /// Buyers with no Notion account, only reported (without `--create-missing`).
    pub no_account: Vec<BuyerEmail>,
    pub buyers: Vec<PlanBuyer>,
    pub sales: Vec<SaleRow>,
    pub unmapped: Vec<Unmapped>,
    /// Members `--prune` would have removed but never will: owners and admins.
    #[serde(default)]
    pub privileged_kept: usize,
}

pub struct PlanOptions {
    pub sales_file: String,
    pub prune: bool,
    pub create_missing: bool,
}

/// The workspace as the plan and the audit see it: members, managed Groups and their members.
pub struct Snapshot {
    pub users: Vec<ScimUser>,
    /// Managed Groups (id, display name), in catalog order.
    pub groups: Vec<(GroupId, String)>,
    pub members: BTreeMap<GroupId, BTreeSet<NotionUserId>>,
    /// The catalog's Group references resolved to ids.
    pub resolved: HashMap<GroupRef, GroupId>,
}

impl Snapshot {
    pub async fn take(ws: &Workspace, progress: &ProgressBar) -> anyhow::Result<Self> {
        progress.set_message("listing workspace members");
        let users = ws.scim.list_all_users().await.map_err(failure)?;
        let resolver = GroupResolver::default();
        let mut groups = Vec::new();
        let mut resolved = HashMap::new();
        let mut members = BTreeMap::new();
        progress.set_message("reading managed Groups");
        for g in ws.config.catalog.managed_groups() {
            let id = resolver
                .resolve(ws.scim.as_ref(), &g)
                .await
                .map_err(failure)?;
            let name = match &g {
                GroupRef::Name(n) => n.clone(),
                GroupRef::Id(id) => id.as_str().to_owned(),
            };
            if !members.contains_key(&id) {
                members.insert(id.clone(), group_members(ws, &id).await?);
                groups.push((id.clone(), name));
            }
            resolved.insert(g, id);
        }
        Ok(Self {
            users,
            groups,
            members,
            resolved,
        })
    }

    pub fn resolve_all(&self, refs: impl IntoIterator<Item = GroupRef>) -> BTreeSet<GroupId> {
        refs.into_iter()
            .filter_map(|r| self.resolved.get(&r).cloned())
            .collect()
    }

    pub fn active_users(&self) -> impl Iterator<Item = &ScimUser> {
        self.users.iter().filter(|u| u.active)
    }
}

/// The members a Group has now, as SCIM lists them.
pub(crate) async fn group_members(
    ws: &Workspace,
    group: &GroupId,
) -> anyhow::Result<BTreeSet<NotionUserId>> {
    Ok(ws
        .scim
        .group_members(group)
        .await
        .map_err(failure)?
        .into_iter()
        .collect())
}

/// Every order the ledger holds, by its key.
pub(crate) async fn ledger_orders(
    ws: &Workspace,
) -> anyhow::Result<HashMap<OrderKey, OrderRecord>> {
    Ok(ws
        .ledger
        .orders()
        .await?
        .into_iter()
        .map(|o| (o.order.clone(), o))
        .collect())
}

/// Builds a plan; changes nothing anywhere.
pub async fn plan(
    ws: &Workspace,
    sales: Sales,
    opts: &PlanOptions,
    now: DateTime<Utc>,
    progress: &ProgressBar,
) -> anyhow::Result<Plan> {
    let catalog = &ws.config.catalog;
    let snap = Snapshot::take(ws, progress).await?;
    progress.set_message("reading the ledger");
    let ledger_buyers: HashMap<BuyerEmail, BuyerRecord> = ws
        .ledger
        .buyers()
        .await?
        .into_iter()
        .map(|b| (b.email.clone(), b))
        .collect();
    let ledger_orders = ledger_orders(ws).await?;
    let by_id: HashMap<&NotionUserId, &ScimUser> =
        snap.active_users().map(|u| (&u.id, u)).collect();
    let by_email: HashMap<String, &ScimUser> = snap
        .active_users()
        .map(|u| (u.user_name.to_lowercase(), u))
        .collect();

    let mut rows_by_buyer: BTreeMap<&BuyerEmail, Vec<&SaleRow>> = BTreeMap::new();
    for r in &sales.rows {
        rows_by_buyer.entry(&r.email).or_default().push(r);
    }
    let mut add: BTreeMap<GroupId, Vec<PlanMember>> = BTreeMap::new();
    let mut justified: BTreeMap<GroupId, BTreeSet<NotionUserId>> = BTreeMap::new();
    let mut buyers = Vec::new();
    let mut create = Vec::new();
    let mut no_account = Vec::new();
    for (email, rows) in rows_by_buyer {
        let known = ledger_buyers.get(email);
        let by_order = rows_by_order(rows.iter().copied());
        let mut orders: BTreeMap<OrderKey, OrderRecord> = BTreeMap::new();
        for key in known.iter().flat_map(|b| b.orders.iter()) {
            if let Some(o) = ledger_orders.get(key) {
                orders.insert(key.clone(), o.clone());
            }
        }
        for (key, rs) in &by_order {
            let o = order_from_rows(ledger_orders.get(*key).cloned(), key, rs, catalog);
            orders.insert((*key).clone(), o);
        }
        let desired = snap.resolve_all(ledger::desired_groups(orders.values(), now));
        let (user, matched) = match known
            .and_then(|b| b.notion_user_id.as_ref())
            .and_then(|id| by_id.get(id))
        {
            Some(u) => (Some(*u), Matched::LedgerId),
            None => match by_email.get(email.as_str()) {
                Some(u) => (Some(*u), Matched::Email),
                None => (None, Matched::None),
            },
        };
        match user {
            Some(u) => {
                for g in &desired {
                    justified.entry(g.clone()).or_default().insert(u.id.clone());
                    if !snap.members.get(g).is_some_and(|m| m.contains(&u.id)) {
                        add.entry(g.clone()).or_default().push(PlanMember {
                            user_id: u.id.clone(),
                            email: email.as_str().to_owned(),
                        });
                    }
                }
            }
            None if desired.is_empty() => {}
            None if opts.create_missing => create.push(NewMember {
                email: email.clone(),
                name: rows.iter().find_map(|r| r.name.clone()),
                groups: desired.iter().cloned().collect(),
            }),
            None => no_account.push(email.clone()),
        }
        buyers.push(PlanBuyer {
            email: email.clone(),
            user_id: user.map(|u| u.id.clone()),
            matched,
            desired: desired.into_iter().collect(),
            orders: orders.into_keys().collect(),
        });
    }

    // What the ledger already grants justifies a member too: a prune removes only access that
    // neither the export nor the ledger accounts for.
    for b in ledger_buyers.values() {
        let Some(user) = &b.notion_user_id else {
            continue;
        };
        let orders: Vec<&OrderRecord> = b
            .orders
            .iter()
            .filter_map(|k| ledger_orders.get(k))
            .collect();
        for g in snap.resolve_all(ledger::desired_groups(orders, now)) {
            justified.entry(g).or_default().insert(user.clone());
        }
    }
    let mut privileged_kept = 0;
    let groups = snap
        .groups
        .iter()
        .map(|(id, name)| {
            let current = snap.members.get(id).cloned().unwrap_or_default();
            let remove = if opts.prune {
                let (remove, kept) = unjustified(&current, justified.get(id), &by_id);
                privileged_kept += kept;
                remove
            } else {
                Vec::new()
            };
            GroupChanges {
                id: id.clone(),
                name: name.clone(),
                members_now: current.len(),
                add: add.remove(id).unwrap_or_default(),
                remove,
            }
        })
        .collect();
    Ok(Plan {
        format: PLAN_FORMAT,
        created_at: now,
        sales_file: opts.sales_file.clone(),
        prune: opts.prune,
        create_missing: opts.create_missing,
        groups,
        create,
        no_account,
        buyers,
        sales: sales.rows,
        unmapped: sales.unmapped,
        privileged_kept,
    })
}

/// The members of a Group that neither the export nor the ledger accounts for, which a prune
/// removes, and how many of them it keeps because they are owners or admins.
fn unjustified(
    current: &BTreeSet<NotionUserId>,
    justified: Option<&BTreeSet<NotionUserId>>,
    by_id: &HashMap<&NotionUserId, &ScimUser>,
) -> (Vec<PlanMember>, usize) {
    let mut remove = Vec::new();
    let mut privileged_kept = 0;
    for m in current {
        if justified.is_some_and(|j| j.contains(m)) {
            continue;
        }
        let user = by_id.get(m);
        if user.is_some_and(|u| u.is_privileged()) {
            privileged_kept += 1;
            continue;
        }
        remove.push(PlanMember {
            user_id: m.clone(),
            email: user.map(|u| u.user_name.clone()).unwrap_or_default(),
        });
    }
    (remove, privileged_kept)
}
