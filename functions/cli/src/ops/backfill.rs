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

use super::target::Workspace;
use super::{mask_if_email, print_table};
use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use enroll_core::catalog::{Catalog, GroupRef, Product};
use enroll_core::ids::{
    BuyerEmail, EventId, EventKey, GroupId, NotionUserId, OrderId, OrderKey, Platform,
    PlatformProductRef, ProductId,
};
use enroll_core::ledger::{self, BuyerRecord, OrderRecord};
use enroll_core::ports::{Created, Directory, ScimUser};
use enroll_core::redact::{mask_email, short_hash};
use enroll_core::Failure;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use provision::GroupResolver;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub const PLAN_FORMAT: u32 = 1;
/// Attempts at a ledger write that lost a race with the pipeline.
const LEDGER_ATTEMPTS: usize = 5;

/// Which column of the export holds what. Header names compare ignoring case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub email: String,
    /// A catalog product id, or a platform reference (SKU, price id) the catalog maps.
    pub product: String,
    pub order: String,
    pub date: String,
    /// Optional: the platform of each order; `--platform` otherwise.
    pub platform: String,
    /// Optional: the buyer's name, used when creating a member.
    pub name: String,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            email: "email".into(),
            product: "product".into(),
            order: "order_id".into(),
            date: "date".into(),
            platform: "platform".into(),
            name: "name".into(),
        }
    }
}

impl Columns {
    /// `email=Email,product=SKU,order=Order,date=Date`: unnamed fields keep their defaults.
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        let mut c = Self::default();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, header) = pair
                .split_once('=')
                .ok_or_else(|| anyhow!("--columns: `{pair}` is not field=Header"))?;
            let header = header.trim().to_owned();
            match field.trim().to_lowercase().as_str() {
                "email" => c.email = header,
                "product" | "sku" => c.product = header,
                "order" | "order_id" => c.order = header,
                "date" => c.date = header,
                "platform" => c.platform = header,
                "name" => c.name = header,
                other => bail!(
                    "--columns: unknown field `{other}` (email, product, order, date, platform, name)"
                ),
            }
        }
        Ok(c)
    }
}

/// One sales row the plan could use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleRow {
    pub line: u64,
    pub email: BuyerEmail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub order: OrderKey,
    pub product: ProductId,
    pub date: DateTime<Utc>,
}

/// A row the plan could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmapped {
    pub line: u64,
    /// Masked.
    pub buyer: Option<String>,
    pub reason: String,
}

/// The export, read and mapped to the catalog.
#[derive(Debug, Clone, Default)]
pub struct Sales {
    pub rows: Vec<SaleRow>,
    pub unmapped: Vec<Unmapped>,
}

fn parse_date(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The product a row names: a product id, or a platform reference on the row's platform (on
/// any platform when the export names none).
fn resolve_product<'a>(
    catalog: &'a Catalog,
    platform: Option<Platform>,
    raw: &str,
) -> Option<&'a Product> {
    let item = PlatformProductRef::parse(raw).ok()?;
    match platform {
        Some(p) => catalog.resolve(p, &item),
        None => Platform::ALL
            .iter()
            .find_map(|p| catalog.resolve(*p, &item)),
    }
}

/// Reads a sales export. `platform` is the platform of orders whose row names none.
pub fn read_sales(
    reader: impl std::io::Read,
    columns: &Columns,
    catalog: &Catalog,
    platform: Platform,
) -> anyhow::Result<Sales> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers: Vec<String> = csv
        .headers()
        .context("reading the export's header row")?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_lowercase())
        .collect();
    let find = |name: &str| headers.iter().position(|h| *h == name.to_lowercase());
    let required = |what: &str, name: &str| {
        find(name).ok_or_else(|| {
            anyhow!(
                "the export has no `{name}` column for the {what} (columns: {}); map it with --columns {what}=<header>",
                headers.join(", ")
            )
        })
    };
    let email_at = required("email", &columns.email)?;
    let product_at = match find(&columns.product) {
        Some(i) => i,
        None if columns.product == "product" => {
            find("sku").ok_or_else(|| required("product", "product").unwrap_err())?
        }
        None => required("product", &columns.product)?,
    };
    let order_at = required("order", &columns.order)?;
    let date_at = required("date", &columns.date)?;
    let platform_at = find(&columns.platform);
    let name_at = find(&columns.name);

    let mut sales = Sales::default();
    for (i, record) in csv.records().enumerate() {
        // Line 1 is the header.
        let line = i as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                sales.unmapped.push(Unmapped {
                    line,
                    buyer: None,
                    reason: format!("unreadable row: {}", csv_error_kind(&e)),
                });
                continue;
            }
        };
        let cell = |at: usize| record.get(at).unwrap_or("").trim();
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let raw_email = cell(email_at);
        let masked = (!raw_email.is_empty()).then(|| mask_email(raw_email));
        let mut refuse = |reason: String| {
            sales.unmapped.push(Unmapped {
                line,
                buyer: masked.clone(),
                reason,
            })
        };
        let Ok(email) = BuyerEmail::parse(raw_email) else {
            refuse("no valid email".into());
            continue;
        };
        let row_platform = match platform_at.map(cell).filter(|p| !p.is_empty()) {
            Some(p) => match Platform::parse(&p.to_lowercase()) {
                Some(p) => Some(p),
                None => {
                    refuse(format!("unknown platform `{p}`"));
                    continue;
                }
            },
            None => None,
        };
        let raw_product = cell(product_at);
        let Some(product) = resolve_product(catalog, row_platform, raw_product) else {
            refuse(format!(
                "product `{raw_product}` is not in the catalog (add it, or its platform id)"
            ));
            continue;
        };
        let Ok(order_id) = OrderId::parse(cell(order_at)) else {
            refuse("no order id".into());
            continue;
        };
        let Some(date) = parse_date(cell(date_at)) else {
            refuse(format!(
                "date `{}` is not RFC 3339 or YYYY-MM-DD",
                cell(date_at)
            ));
            continue;
        };
        sales.rows.push(SaleRow {
            line,
            email,
            name: name_at
                .map(cell)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            order: OrderKey {
                platform: row_platform.unwrap_or(platform),
                order_id,
            },
            product: product.id.clone(),
            date,
        });
    }
    Ok(sales)
}

/// Names the kind of CSV error without quoting the row (it may hold an email).
fn csv_error_kind(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8".into(),
        csv::ErrorKind::UnequalLengths { .. } => "wrong number of fields".into(),
        _ => "malformed".into(),
    }
}

/// The key a backfilled purchase is recorded under: a real webhook for the same order finds
/// the purchase already recorded and changes nothing, and a refund revokes it as usual.
pub fn backfill_event_key(order: &OrderKey) -> EventKey {
    let id = EventId::parse(&format!("backfill:{}", order.order_id))
        .unwrap_or_else(|_| EventId::parse("backfill").expect("a valid event id"));
    EventKey::new(order.platform, id)
}

/// The order as the ledger will hold it after the backfill: a purchase a webhook already
/// recorded is kept as is; otherwise the rows' products are granted from their dates, and a
/// refund the ledger already holds still revokes them.
pub fn order_from_rows(
    existing: Option<OrderRecord>,
    key: &OrderKey,
    rows: &[&SaleRow],
    catalog: &Catalog,
) -> OrderRecord {
    let mut order = existing.unwrap_or_else(|| OrderRecord::new(key.clone()));
    if order.purchased_by.is_some() {
        return order;
    }
    if order.buyer.is_none() {
        order.buyer = rows.first().map(|r| r.email.clone());
    }
    order.purchased_by = Some(backfill_event_key(key));
    let mut seen = BTreeSet::new();
    for r in rows {
        if !seen.insert(r.product.clone()) {
            continue;
        }
        if let Some(p) = catalog.product(&r.product) {
            order.grants.extend(ledger::grants_for(catalog, p, r.date));
        }
    }
    order
}

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
                let m: BTreeSet<NotionUserId> = ws
                    .scim
                    .group_members(&id)
                    .await
                    .map_err(failure)?
                    .into_iter()
                    .collect();
                members.insert(id.clone(), m);
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

pub(crate) fn failure(f: Failure) -> anyhow::Error {
    anyhow!(f.reason)
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
    let ledger_orders: HashMap<OrderKey, OrderRecord> = ws
        .ledger
        .orders()
        .await?
        .into_iter()
        .map(|o| (o.order.clone(), o))
        .collect();
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
        let mut by_order: BTreeMap<&OrderKey, Vec<&SaleRow>> = BTreeMap::new();
        for r in &rows {
            by_order.entry(&r.order).or_default().push(r);
        }
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
            let mut remove = Vec::new();
            if opts.prune {
                for m in &current {
                    if justified.get(id).is_some_and(|j| j.contains(m)) {
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
            }
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
        let create_adds: BTreeMap<&GroupId, usize> = self
            .create
            .iter()
            .flat_map(|c| c.groups.iter())
            .fold(BTreeMap::new(), |mut m, g| {
                *m.entry(g).or_insert(0) += 1;
                m
            });
        let requests = self.create.len()
            + self
                .groups
                .iter()
                .map(|g| {
                    batches(g.add.len() + create_adds.get(&g.id).copied().unwrap_or(0))
                        + batches(g.remove.len())
                })
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
                    add: g.add.len() + create_adds.get(&g.id).copied().unwrap_or(0),
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
    let facts = vec![
        vec!["sales rows".into(), s.rows.to_string()],
        vec!["buyers".into(), s.buyers.to_string()],
        vec![
            "matched by ledger id".into(),
            s.matched_by_ledger_id.to_string(),
        ],
        vec!["matched by email".into(), s.matched_by_email.to_string()],
        vec!["members to create".into(), s.to_create.to_string()],
        vec![
            "no Notion account (report only)".into(),
            s.no_account.to_string(),
        ],
        vec!["rows not mapped".into(), s.unmapped.to_string()],
        vec![
            "requests (estimate)".into(),
            s.requests_estimate.to_string(),
        ],
    ];
    print_table(&["", "COUNT"], &facts);
    for (reason, n) in &s.unmapped_reasons {
        println!("  not mapped: {n} × {reason}");
    }
    println!(
        "\nplan written to {}; review it, then run `enroll backfill apply {}`",
        s.plan_file, s.plan_file
    );
}

/// Add or remove, for the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Add,
    Remove,
}

/// A request sent whose answer was not yet recorded when the checkpoint was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inflight {
    pub group: GroupId,
    pub op: Op,
    pub members: Vec<NotionUserId>,
}

/// Progress of one plan's apply, written next to the plan after every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The plan this belongs to; a changed plan starts over.
    pub plan_hash: String,
    /// Members created so far.
    #[serde(default)]
    pub created: BTreeMap<BuyerEmail, NotionUserId>,
    /// A create sent without a recorded answer.
    #[serde(default)]
    pub creating: Option<BuyerEmail>,
    /// Per `add:<group>` / `remove:<group>`, the members done.
    #[serde(default)]
    pub done: BTreeMap<String, BTreeSet<NotionUserId>>,
    #[serde(default)]
    pub inflight: Option<Inflight>,
    /// Requests that succeeded, over every run.
    #[serde(default)]
    pub requests: usize,
    #[serde(default)]
    pub ledger_done: bool,
}

fn done_key(op: Op, group: &GroupId) -> String {
    format!(
        "{}:{}",
        match op {
            Op::Add => "add",
            Op::Remove => "remove",
        },
        group
    )
}

pub fn checkpoint_path(plan: &Path) -> PathBuf {
    let mut name = plan.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

impl Checkpoint {
    fn load(path: &Path, plan_hash: &str) -> anyhow::Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let cp: Checkpoint = serde_json::from_slice(&std::fs::read(path)?)
            .with_context(|| format!("reading the checkpoint {}", path.display()))?;
        if cp.plan_hash != plan_hash {
            bail!(
                "{} belongs to a different plan: the plan changed after an apply started. \
                 Delete the checkpoint only if you mean to start over.",
                path.display()
            );
        }
        Ok(Some(cp))
    }

    /// Written to a temporary file, flushed, then renamed over the old one: a kill leaves the
    /// old checkpoint or the new, never half of one.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("checkpoint.tmp");
        {
            let f = std::fs::File::create(&tmp)?;
            // Buffered: unbuffered, serde writes each token with its own system call, which
            // cost a large backfill more time than its Notion requests.
            let mut w = std::io::BufWriter::new(&f);
            serde_json::to_writer(&mut w, self)?;
            std::io::Write::flush(&mut w)?;
            drop(w);
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

pub struct ApplyOptions {
    pub show_progress: bool,
}

/// What `apply` did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApplyReport {
    pub plan_file: String,
    pub resumed: bool,
    /// Requests this run sent (creates and Group PATCHes).
    pub requests: usize,
    pub requests_all_runs: usize,
    pub created: usize,
    pub added: usize,
    pub removed: usize,
    /// Members of an interrupted request found already applied, so it was not resent.
    pub verified_after_interruption: usize,
    pub ledger_orders: usize,
    pub ledger_buyers: usize,
}

fn progress_bar(total: u64, show: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if show && std::io::stderr().is_terminal() {
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
    let bar = if show && std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Applies a plan file, resuming from its checkpoint.
pub async fn apply(
    ws: &Workspace,
    plan_path: &Path,
    opts: &ApplyOptions,
) -> anyhow::Result<ApplyReport> {
    let bytes =
        std::fs::read(plan_path).with_context(|| format!("reading {}", plan_path.display()))?;
    let plan: Plan = serde_json::from_slice(&bytes).context("the plan is not a backfill plan")?;
    anyhow::ensure!(
        plan.format == PLAN_FORMAT,
        "plan format {} is not {PLAN_FORMAT}: make the plan again with this version",
        plan.format
    );
    let hash = short_hash(&bytes);
    let cp_path = checkpoint_path(plan_path);
    let loaded = Checkpoint::load(&cp_path, &hash)?;
    let mut report = ApplyReport {
        plan_file: plan_path.display().to_string(),
        resumed: loaded.is_some(),
        ..ApplyReport::default()
    };
    let mut cp = loaded.unwrap_or_else(|| Checkpoint {
        plan_hash: hash,
        ..Checkpoint::default()
    });
    let dir: &dyn Directory = ws.scim.as_ref();
    let batch_size = ws.config.scim.batch_size.max(1);

    // Work left: creates, then per Group the members not yet done, in batches.
    let creates: Vec<&NewMember> = plan
        .create
        .iter()
        .filter(|c| !cp.created.contains_key(&c.email))
        .collect();
    let pending_batches = |cp: &Checkpoint| -> usize {
        ops_of(&plan, cp)
            .iter()
            .map(|(_, _, m)| m.len().div_ceil(batch_size))
            .sum()
    };
    let bar = progress_bar(
        (creates.len() + pending_batches(&cp)) as u64,
        opts.show_progress,
    );

    if let Some(email) = cp.creating.clone() {
        // A create was sent before the kill: the member may exist now.
        if let Some(u) = dir.find_user(&email).await.map_err(failure)? {
            cp.created.insert(email.clone(), u.id);
        }
        cp.creating = None;
        cp.save(&cp_path)?;
    }
    for c in creates {
        if cp.created.contains_key(&c.email) {
            bar.inc(1);
            continue;
        }
        bar.set_message("creating members");
        cp.creating = Some(c.email.clone());
        cp.save(&cp_path)?;
        let id = match dir
            .create_user(&c.email, c.name.as_deref())
            .await
            .map_err(failure)?
        {
            Created::Created(u) => u.id,
            Created::AlreadyExists => {
                dir.find_user(&c.email)
                    .await
                    .map_err(failure)?
                    .ok_or_else(|| anyhow!("SCIM says {} exists but does not find it", c.email))?
                    .id
            }
        };
        cp.created.insert(c.email.clone(), id);
        cp.creating = None;
        cp.requests += 1;
        report.requests += 1;
        report.created += 1;
        cp.save(&cp_path)?;
        bar.inc(1);
    }

    if let Some(inflight) = cp.inflight.take() {
        // The kill may have come after Notion applied this request and before its answer was
        // recorded: look instead of resending.
        bar.set_message("checking the interrupted request");
        let now_in: BTreeSet<NotionUserId> = dir_group_members(ws, &inflight.group).await?;
        let landed: Vec<&NotionUserId> = inflight
            .members
            .iter()
            .filter(|m| match inflight.op {
                Op::Add => now_in.contains(*m),
                Op::Remove => !now_in.contains(*m),
            })
            .collect();
        report.verified_after_interruption += landed.len();
        cp.done
            .entry(done_key(inflight.op, &inflight.group))
            .or_default()
            .extend(landed.into_iter().cloned());
        cp.save(&cp_path)?;
    }
    bar.set_length((bar.position() as usize + pending_batches(&cp)) as u64);

    for (group, op, members) in ops_of(&plan, &cp) {
        bar.set_message(format!(
            "{} {}",
            if op == Op::Add {
                "adding to"
            } else {
                "removing from"
            },
            plan.groups
                .iter()
                .find(|g| g.id == group)
                .map(|g| g.name.as_str())
                .unwrap_or(group.as_str())
        ));
        for batch in members.chunks(batch_size) {
            cp.inflight = Some(Inflight {
                group: group.clone(),
                op,
                members: batch.to_vec(),
            });
            cp.save(&cp_path)?;
            match op {
                Op::Add => dir.add_members(&group, batch).await,
                Op::Remove => dir.remove_members(&group, batch).await,
            }
            .map_err(|f| {
                anyhow!(
                    "{} (progress is saved in {}: run the same command again to resume)",
                    f.reason,
                    cp_path.display()
                )
            })?;
            cp.inflight = None;
            cp.done
                .entry(done_key(op, &group))
                .or_default()
                .extend(batch.iter().cloned());
            cp.requests += 1;
            report.requests += 1;
            match op {
                Op::Add => report.added += batch.len(),
                Op::Remove => report.removed += batch.len(),
            }
            cp.save(&cp_path)?;
            bar.inc(1);
        }
    }

    if !cp.ledger_done {
        bar.set_message("recording grants in the ledger");
        let (orders, buyers) = record_ledger(ws, &plan, &cp.created, Utc::now()).await?;
        report.ledger_orders = orders;
        report.ledger_buyers = buyers;
        cp.ledger_done = true;
        cp.save(&cp_path)?;
    }
    bar.finish_and_clear();
    report.requests_all_runs = cp.requests;
    Ok(report)
}

async fn dir_group_members(
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

/// Per Group and operation, the members still to do, in the plan's order.
fn ops_of(plan: &Plan, cp: &Checkpoint) -> Vec<(GroupId, Op, Vec<NotionUserId>)> {
    let mut out = Vec::new();
    for g in &plan.groups {
        let mut adds: Vec<NotionUserId> = g.add.iter().map(|m| m.user_id.clone()).collect();
        for c in &plan.create {
            if c.groups.contains(&g.id) {
                if let Some(id) = cp.created.get(&c.email) {
                    adds.push(id.clone());
                }
            }
        }
        let removes: Vec<NotionUserId> = g.remove.iter().map(|m| m.user_id.clone()).collect();
        for (op, list) in [(Op::Add, adds), (Op::Remove, removes)] {
            let done = cp.done.get(&done_key(op, &g.id));
            let mut seen = BTreeSet::new();
            let left: Vec<NotionUserId> = list
                .into_iter()
                .filter(|m| !done.is_some_and(|d| d.contains(m)) && seen.insert(m.clone()))
                .collect();
            if !left.is_empty() {
                out.push((g.id.clone(), op, left));
            }
        }
    }
    out
}

/// Records the backfill in the ledger: each sales order as a purchase, each buyer with their
/// orders, Notion user id and the Groups they are now in, so the pipeline's next event for them
/// starts from the truth. Safe to repeat.
async fn record_ledger(
    ws: &Workspace,
    plan: &Plan,
    created: &BTreeMap<BuyerEmail, NotionUserId>,
    now: DateTime<Utc>,
) -> anyhow::Result<(usize, usize)> {
    let store = ws.ledger.store();
    let store = &store;
    let catalog = &ws.config.catalog;
    let mut by_order: BTreeMap<&OrderKey, Vec<&SaleRow>> = BTreeMap::new();
    for r in &plan.sales {
        by_order.entry(&r.order).or_default().push(r);
    }
    let mut orders_written = 0;
    for (key, rows) in &by_order {
        let wrote = retry_ledger(move || async move {
            let existing = store.order(key).await?;
            if existing.as_ref().is_some_and(|o| o.purchased_by.is_some()) {
                return Ok(false);
            }
            let next = order_from_rows(existing, key, rows, catalog);
            store.put_order(&next).await?;
            Ok(true)
        })
        .await?;
        orders_written += usize::from(wrote);
    }
    let mut buyers_written = 0;
    for b in &plan.buyers {
        let user = b.user_id.clone().or_else(|| created.get(&b.email).cloned());
        let user = &user;
        retry_ledger(move || async move {
            let mut rec = store
                .buyer(&b.email)
                .await?
                .unwrap_or_else(|| BuyerRecord::new(b.email.clone()));
            rec.orders.extend(b.orders.iter().cloned());
            if let Some(u) = user {
                if rec.notion_user_id.is_none() {
                    rec.notion_user_id = Some(u.clone());
                }
                rec.applied_groups.extend(b.desired.iter().cloned());
            }
            let keys: Vec<OrderKey> = rec.orders.iter().cloned().collect();
            let orders = store.orders(&keys).await?;
            rec.next_change_at = ledger::next_change(&orders, now);
            store.put_buyer(&rec).await?;
            Ok(())
        })
        .await?;
        buyers_written += 1;
    }
    // Removed members the ledger knows no longer hold what was removed.
    for g in &plan.groups {
        for m in &g.remove {
            retry_ledger(move || async move {
                let Some(email) = store.buyer_by_user(&m.user_id).await? else {
                    return Ok(());
                };
                let Some(mut rec) = store.buyer(&email).await? else {
                    return Ok(());
                };
                if rec.applied_groups.remove(&g.id) {
                    store.put_buyer(&rec).await?;
                }
                Ok(())
            })
            .await?;
        }
    }
    Ok((orders_written, buyers_written))
}

/// Retries a read-modify-write that lost a race with the pipeline (a transient failure).
async fn retry_ledger<T, F, Fut>(f: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt + 1 < LEDGER_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt as u64)).await;
            }
            Err(e) => return Err(anyhow!("ledger: {}", e.reason)),
        }
    }
}

pub fn print_apply(r: &ApplyReport) {
    let rows = vec![
        vec!["resumed from a checkpoint".into(), r.resumed.to_string()],
        vec!["requests (this run)".into(), r.requests.to_string()],
        vec![
            "requests (all runs)".into(),
            r.requests_all_runs.to_string(),
        ],
        vec!["members created".into(), r.created.to_string()],
        vec!["Group memberships added".into(), r.added.to_string()],
        vec!["Group memberships removed".into(), r.removed.to_string()],
        vec![
            "found applied after an interruption".into(),
            r.verified_after_interruption.to_string(),
        ],
        vec!["ledger orders recorded".into(), r.ledger_orders.to_string()],
        vec!["ledger buyers updated".into(), r.ledger_buyers.to_string()],
    ];
    print_table(&["", "COUNT"], &rows);
}

/// Masks the addresses of a plan's report-only lists for printing.
pub fn masked(emails: &[BuyerEmail]) -> Vec<String> {
    emails.iter().map(|e| mask_if_email(e.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let text = crate::config_file::EXAMPLE;
        enroll_core::config::Config::from_toml(text, |_| None)
            .unwrap()
            .catalog
    }

    #[test]
    fn columns_remap_only_what_is_named() {
        let c = Columns::parse("email=E-mail, product=SKU,order=Order #").unwrap();
        assert_eq!(c.email, "E-mail");
        assert_eq!(c.product, "SKU");
        assert_eq!(c.order, "Order #");
        assert_eq!(c.date, "date");
        assert!(Columns::parse("colour=Red").is_err());
    }

    #[test]
    fn rows_map_through_the_catalog_and_bad_ones_say_why() {
        let csv = "Email,SKU,Order,Date\n\
                   Ada@Example.com,NM-2026,1001,2026-01-05\n\
                   bob@example.com,formula-fundamentals,1002,2026-02-01T10:00:00Z\n\
                   carol@example.com,EBOOK,1003,2026-02-01\n\
                   not-an-email,FF-2,1004,2026-02-01\n\
                   dan@example.com,FF-2,,2026-02-01\n\
                   erin@example.com,FF-2,1006,yesterday\n";
        let cols = Columns::parse("email=Email,product=SKU,order=Order,date=Date").unwrap();
        let sales = read_sales(csv.as_bytes(), &cols, &catalog(), Platform::Shopify).unwrap();
        assert_eq!(sales.rows.len(), 2);
        assert_eq!(sales.rows[0].email.as_str(), "ada@example.com");
        assert_eq!(sales.rows[0].product.as_str(), "notion-mastery");
        assert_eq!(sales.rows[0].order.platform, Platform::Shopify);
        assert_eq!(sales.rows[1].product.as_str(), "formula-fundamentals");
        let reasons: Vec<&str> = sales.unmapped.iter().map(|u| u.reason.as_str()).collect();
        assert!(reasons[0].contains("not in the catalog"), "{reasons:?}");
        assert_eq!(reasons[1], "no valid email");
        assert_eq!(reasons[2], "no order id");
        assert!(reasons[3].contains("date"));
        assert_eq!(sales.unmapped[0].line, 4);
        assert!(sales.unmapped.iter().all(|u| !u
            .buyer
            .as_deref()
            .unwrap_or("")
            .contains("carol@")));
    }

    #[test]
    fn a_missing_column_names_the_flag_that_maps_it() {
        let err = read_sales(
            "mail,product,order_id,date\n".as_bytes(),
            &Columns::default(),
            &catalog(),
            Platform::Standard,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--columns email="), "{err}");
    }

    #[test]
    fn a_backfilled_order_keeps_a_recorded_purchase_and_a_recorded_refund() {
        let c = catalog();
        let row = SaleRow {
            line: 2,
            email: BuyerEmail::parse("ada@example.com").unwrap(),
            name: None,
            order: OrderKey {
                platform: Platform::Stripe,
                order_id: OrderId::parse("o1").unwrap(),
            },
            product: ProductId::parse("notion-mastery").unwrap(),
            date: "2024-01-01T00:00:00Z".parse().unwrap(),
        };
        let fresh = order_from_rows(None, &row.order, &[&row], &c);
        assert_eq!(fresh.grants.len(), 2, "a year, then alumni");
        let now = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            ledger::desired_groups([&fresh], now),
            BTreeSet::from([GroupRef::Name("Notion Mastery Alumni".into())])
        );
        let mut refunded = OrderRecord::new(row.order.clone());
        refunded.revoked = Some(ledger::Revocation {
            kind: enroll_core::event::EventKind::Refund,
            by: EventKey::parse("stripe:evt_r").unwrap(),
            at: now,
        });
        let kept = order_from_rows(Some(refunded), &row.order, &[&row], &c);
        assert!(ledger::desired_groups([&kept], now).is_empty());
        let again = order_from_rows(Some(fresh.clone()), &row.order, &[&row], &c);
        assert_eq!(again, fresh);
    }

    #[test]
    fn checkpoint_path_sits_next_to_the_plan() {
        assert_eq!(
            checkpoint_path(Path::new("/tmp/plan.json")),
            PathBuf::from("/tmp/plan.json.checkpoint")
        );
    }
}
