//! `enroll audit`: the workspace against the ledger.
//!
//! Three findings: workspace members with no purchase in the ledger (the seller's members who
//! came in through a shared invite link), buyers whose managed Groups in Notion differ from what
//! the ledger grants them now (drift), and members of managed Groups the ledger does not know.
//!
//! `--fix` makes drifted buyers' Groups match the ledger (and, with `--remove-unknown`, takes
//! unknown members out of managed Groups). It counts first: if the fix would remove access from
//! more than `--max-removal-share` of the members of managed Groups, it stops and asks for
//! `--yes`, since a ledger that lost data would otherwise empty the workspace.

use crate::backfill::{failure, Snapshot};
use crate::workspace::Workspace;
use crate::{mask_if_email, print_table};
use chrono::{DateTime, Utc};
use enroll_core::history::{self, HistoryEntry, Stage};
use enroll_core::ids::{BuyerEmail, GroupId, NotionUserId, OrderKey};
use enroll_core::ledger::{self, BuyerRecord, OrderRecord};
use enroll_core::ports::Directory;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const DEFAULT_MAX_REMOVAL_SHARE: f64 = 0.05;

#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub fix: bool,
    pub remove_unknown: bool,
    pub yes: bool,
    pub max_removal_share: f64,
}

/// A workspace member, masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditMember {
    pub user_id: NotionUserId,
    pub email: String,
    /// The managed Groups they are in.
    pub groups: Vec<String>,
}

/// A buyer whose Groups differ from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// Masked.
    pub buyer: String,
    pub user_id: Option<NotionUserId>,
    /// Granted by the ledger, missing in Notion.
    pub missing: Vec<String>,
    /// In Notion, not granted by the ledger.
    pub extra: Vec<String>,
    /// Why it cannot be fixed here, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixReport {
    /// Distinct members the fix would take at least one Group from.
    pub would_remove_from: usize,
    /// Distinct members of managed Groups.
    pub managed_members: usize,
    pub share: f64,
    pub max_share: f64,
    /// False when the guard stopped the fix.
    pub applied: bool,
    pub added: usize,
    pub removed: usize,
    pub requests: usize,
    pub buyers_updated: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub members: usize,
    pub managed_groups: Vec<String>,
    pub ledger_buyers: usize,
    pub no_purchase: Vec<AuditMember>,
    pub drift: Vec<Drift>,
    pub unknown_in_managed_groups: Vec<AuditMember>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<FixReport>,
}

impl AuditReport {
    /// Whether `--fix` was asked for and the guard stopped it.
    pub fn stopped_by_guard(&self) -> bool {
        self.fix.as_ref().is_some_and(|f| !f.applied)
    }
}

struct DriftPlan {
    email: BuyerEmail,
    user: NotionUserId,
    desired: BTreeSet<GroupId>,
    add: BTreeSet<GroupId>,
    remove: BTreeSet<GroupId>,
}

/// Runs the audit, and the fix when asked.
pub async fn run(
    ws: &Workspace,
    opts: &AuditOptions,
    now: DateTime<Utc>,
    progress: &ProgressBar,
) -> anyhow::Result<AuditReport> {
    let snap = Snapshot::take(ws, progress).await?;
    progress.set_message("reading the ledger");
    let buyers: Vec<BuyerRecord> = ws
        .ledger
        .buyers()
        .await?
        .into_iter()
        .filter(|b| b.alias_of.is_none())
        .collect();
    let orders: HashMap<OrderKey, OrderRecord> = ws
        .ledger
        .orders()
        .await?
        .into_iter()
        .map(|o| (o.order.clone(), o))
        .collect();
    let names: BTreeMap<&GroupId, &str> =
        snap.groups.iter().map(|(id, n)| (id, n.as_str())).collect();
    let name = |g: &GroupId| {
        names
            .get(g)
            .map(|n| n.to_string())
            .unwrap_or_else(|| g.to_string())
    };
    let groups_of = |u: &NotionUserId| -> BTreeSet<GroupId> {
        snap.members
            .iter()
            .filter(|(_, m)| m.contains(u))
            .map(|(g, _)| g.clone())
            .collect()
    };

    let purchased = |b: &BuyerRecord| {
        b.orders
            .iter()
            .any(|k| orders.get(k).is_some_and(|o| o.purchased_by.is_some()))
    };
    let known_ids: HashMap<&NotionUserId, &BuyerRecord> = buyers
        .iter()
        .filter_map(|b| b.notion_user_id.as_ref().map(|u| (u, b)))
        .collect();
    let known_emails: HashMap<&str, &BuyerRecord> =
        buyers.iter().map(|b| (b.email.as_str(), b)).collect();
    let member_of = |u: &enroll_core::ports::ScimUser| AuditMember {
        user_id: u.id.clone(),
        email: mask_if_email(&u.user_name),
        groups: groups_of(&u.id).iter().map(&name).collect(),
    };

    let mut no_purchase = Vec::new();
    for u in snap.active_users().filter(|u| !u.is_privileged()) {
        let buyer = known_ids
            .get(&u.id)
            .or_else(|| known_emails.get(u.user_name.to_lowercase().as_str()));
        if !buyer.is_some_and(|b| purchased(b)) {
            no_purchase.push(member_of(u));
        }
    }
    let users: HashMap<&NotionUserId, &enroll_core::ports::ScimUser> =
        snap.users.iter().map(|u| (&u.id, u)).collect();
    let mut unknown = Vec::new();
    let managed_members: BTreeSet<&NotionUserId> = snap.members.values().flatten().collect();
    for id in &managed_members {
        if known_ids.contains_key(id) {
            continue;
        }
        let by_email = users
            .get(id)
            .and_then(|u| known_emails.get(u.user_name.to_lowercase().as_str()));
        if by_email.is_some() {
            continue;
        }
        unknown.push(match users.get(id) {
            Some(u) => member_of(u),
            None => AuditMember {
                user_id: (*id).clone(),
                email: String::new(),
                groups: groups_of(id).iter().map(&name).collect(),
            },
        });
    }

    let mut drift = Vec::new();
    let mut fixes = Vec::new();
    for b in &buyers {
        let mine: Vec<&OrderRecord> = b.orders.iter().filter_map(|k| orders.get(k)).collect();
        let desired = snap.resolve_all(ledger::desired_groups(mine, now));
        let Some(user) = &b.notion_user_id else {
            if !desired.is_empty() {
                drift.push(Drift {
                    buyer: b.email.to_string(),
                    user_id: None,
                    missing: desired.iter().map(&name).collect(),
                    extra: Vec::new(),
                    note: Some("no Notion user yet: replay their event or run a backfill".into()),
                });
            }
            continue;
        };
        let actual = groups_of(user);
        let add: BTreeSet<GroupId> = desired.difference(&actual).cloned().collect();
        let remove: BTreeSet<GroupId> = actual.difference(&desired).cloned().collect();
        if add.is_empty() && remove.is_empty() {
            continue;
        }
        let privileged = users.get(user).is_some_and(|u| u.is_privileged());
        let inactive = !users.get(user).is_some_and(|u| u.active);
        drift.push(Drift {
            buyer: b.email.to_string(),
            user_id: Some(user.clone()),
            missing: add.iter().map(&name).collect(),
            extra: remove.iter().map(&name).collect(),
            note: if inactive {
                Some("not an active member: the pipeline re-adds them on their next event".into())
            } else if privileged && !remove.is_empty() {
                Some("owner or admin: Groups are added, never removed".into())
            } else {
                None
            },
        });
        if !inactive {
            fixes.push(DriftPlan {
                email: b.email.clone(),
                user: user.clone(),
                desired,
                add,
                remove: if privileged { BTreeSet::new() } else { remove },
            });
        }
    }

    let mut report = AuditReport {
        members: snap.active_users().count(),
        managed_groups: snap.groups.iter().map(|(_, n)| n.clone()).collect(),
        ledger_buyers: buyers.len(),
        no_purchase,
        drift,
        unknown_in_managed_groups: unknown,
        fix: None,
    };
    if opts.fix {
        progress.set_message("fixing");
        report.fix = Some(fix(ws, &snap, &report, fixes, opts, &users).await?);
    }
    Ok(report)
}

async fn fix(
    ws: &Workspace,
    snap: &Snapshot,
    report: &AuditReport,
    fixes: Vec<DriftPlan>,
    opts: &AuditOptions,
    users: &HashMap<&NotionUserId, &enroll_core::ports::ScimUser>,
) -> anyhow::Result<FixReport> {
    let mut adds: BTreeMap<GroupId, Vec<NotionUserId>> = BTreeMap::new();
    let mut removes: BTreeMap<GroupId, Vec<NotionUserId>> = BTreeMap::new();
    for f in &fixes {
        for g in &f.add {
            adds.entry(g.clone()).or_default().push(f.user.clone());
        }
        for g in &f.remove {
            removes.entry(g.clone()).or_default().push(f.user.clone());
        }
    }
    if opts.remove_unknown {
        for m in &report.unknown_in_managed_groups {
            if users.get(&m.user_id).is_some_and(|u| u.is_privileged()) {
                continue;
            }
            for (g, members) in &snap.members {
                if members.contains(&m.user_id) {
                    removes
                        .entry(g.clone())
                        .or_default()
                        .push(m.user_id.clone());
                }
            }
        }
    }
    let losing: BTreeSet<&NotionUserId> = removes.values().flatten().collect();
    let managed: BTreeSet<&NotionUserId> = snap.members.values().flatten().collect();
    let share = if managed.is_empty() {
        0.0
    } else {
        losing.len() as f64 / managed.len() as f64
    };
    let mut out = FixReport {
        would_remove_from: losing.len(),
        managed_members: managed.len(),
        share,
        max_share: opts.max_removal_share,
        applied: false,
        added: 0,
        removed: 0,
        requests: 0,
        buyers_updated: 0,
    };
    if share > opts.max_removal_share && !opts.yes {
        return Ok(out);
    }
    let dir: &dyn Directory = ws.scim.as_ref();
    let batch = ws.config.scim.batch_size.max(1);
    for (g, members) in &adds {
        dir.add_members(g, members).await.map_err(failure)?;
        out.added += members.len();
        out.requests += members.len().div_ceil(batch);
    }
    for (g, members) in &removes {
        dir.remove_members(g, members).await.map_err(failure)?;
        out.removed += members.len();
        out.requests += members.len().div_ceil(batch);
    }
    // The ledger now records what enroll put each fixed buyer in, so the pipeline's next
    // reconcile starts from Notion as it is.
    let store = ws.ledger.store.clone();
    let log = ws.ledger.history.clone();
    for f in &fixes {
        for attempt in 0..5 {
            let Some(mut rec) = store.buyer(&f.email).await.map_err(failure)? else {
                break;
            };
            rec.applied_groups = f.desired.clone();
            match store.put_buyer(&rec).await {
                Ok(_) => {
                    out.buyers_updated += 1;
                    let entry = HistoryEntry::now(Stage::Operator, fixed_line(snap, f));
                    history::record(log.as_ref(), &f.email, vec![entry]).await;
                    break;
                }
                Err(e) if e.is_retryable() && attempt < 4 => continue,
                Err(e) => return Err(failure(e)),
            }
        }
    }
    out.applied = true;
    Ok(out)
}

/// The buyer's history line for what `--fix` changed, by Group name.
fn fixed_line(snap: &Snapshot, f: &DriftPlan) -> String {
    let name = |g: &GroupId| {
        snap.groups
            .iter()
            .find(|(id, _)| id == g)
            .map_or_else(|| format!("id {g}"), |(_, n)| n.clone())
    };
    let changes: Vec<String> = f
        .add
        .iter()
        .map(|g| format!("added to Group {}", name(g)))
        .chain(
            f.remove
                .iter()
                .map(|g| format!("removed from Group {}", name(g))),
        )
        .collect();
    format!("enroll audit --fix: {}", changes.join(", "))
}

pub fn print(r: &AuditReport) {
    println!(
        "{} members, {} ledger buyers, managed Groups: {}\n",
        r.members,
        r.ledger_buyers,
        r.managed_groups.join(", ")
    );
    let member_rows = |list: &[AuditMember]| -> Vec<Vec<String>> {
        list.iter()
            .map(|m| {
                vec![
                    m.user_id.to_string(),
                    if m.email.is_empty() {
                        "-".into()
                    } else {
                        m.email.clone()
                    },
                    if m.groups.is_empty() {
                        "-".into()
                    } else {
                        m.groups.join(", ")
                    },
                ]
            })
            .collect()
    };
    println!(
        "Members with no purchase in the ledger: {}",
        r.no_purchase.len()
    );
    if !r.no_purchase.is_empty() {
        print_table(
            &["NOTION USER", "EMAIL", "MANAGED GROUPS"],
            &member_rows(&r.no_purchase),
        );
    }
    println!(
        "\nBuyers whose Groups differ from the ledger: {}",
        r.drift.len()
    );
    if !r.drift.is_empty() {
        let rows: Vec<Vec<String>> = r
            .drift
            .iter()
            .map(|d| {
                vec![
                    d.buyer.clone(),
                    d.user_id
                        .as_ref()
                        .map(|u| u.to_string())
                        .unwrap_or_else(|| "-".into()),
                    if d.missing.is_empty() {
                        "-".into()
                    } else {
                        d.missing.join(", ")
                    },
                    if d.extra.is_empty() {
                        "-".into()
                    } else {
                        d.extra.join(", ")
                    },
                    d.note.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print_table(&["BUYER", "NOTION USER", "MISSING", "EXTRA", "NOTE"], &rows);
    }
    println!(
        "\nMembers of managed Groups the ledger does not know: {}",
        r.unknown_in_managed_groups.len()
    );
    if !r.unknown_in_managed_groups.is_empty() {
        print_table(
            &["NOTION USER", "EMAIL", "MANAGED GROUPS"],
            &member_rows(&r.unknown_in_managed_groups),
        );
    }
    if let Some(f) = &r.fix {
        println!();
        if f.applied {
            println!(
                "fixed: {} membership(s) added, {} removed in {} request(s); {} buyer record(s) updated",
                f.added, f.removed, f.requests, f.buyers_updated
            );
        } else {
            println!(
                "NOT fixed: it would remove access from {} of {} members of managed Groups ({:.1}%, more than {:.1}%). \
                 Review the lists above, then run again with --yes.",
                f.would_remove_from,
                f.managed_members,
                f.share * 100.0,
                f.max_share * 100.0
            );
        }
    }
}
