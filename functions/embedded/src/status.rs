//! `enroll status <email | order id | Notion user id>`: what the ledger says about a buyer, what
//! Notion has, whether the sales record holds their Notion user id, and any purchase of theirs
//! parked in the provision dead-letter queue, with its reason, and the buyer's history: each
//! thing that touched them (received, applied, each Group change, the sales record, expiry,
//! operator actions), oldest first, as `history` in `--json` and as a timeline in text.
//!
//! Group names come from the simulated workspace, or on a real one from the catalog's names
//! and `GET /Groups/{id}`; the report shows each Group's name and id.

use crate::journal::Journal;
use crate::queue::{EmbeddedQueue, QueueSettings};
use crate::runtime::Runtime;
use crate::store::FileStore;
use anyhow::Context;
use chrono::{DateTime, Utc};
use enroll_core::catalog::GroupRef;
use enroll_core::config::{Config, ScimConfig};
use enroll_core::dead_letters::{ParkedMessage, QueueStage, RawParked};
use enroll_core::event::OrderEvent;
use enroll_core::history::HistoryEntry;
use enroll_core::ids::{BuyerEmail, NotionUserId};
use enroll_core::ledger::{BuyerRecord, OrderRecord};
use enroll_core::ports::Directory;
use provision::GroupResolver;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct GrantStatus {
    pub order: String,
    pub product: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub active: bool,
    pub revoked_by: Option<String>,
}

/// A managed Group the member is in: its SCIM id and, when it could be found, its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct GroupStatus {
    pub id: String,
    pub name: Option<String>,
}

/// One of the buyer's events parked in the provision dead-letter queue.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ParkedEvent {
    pub event_key: String,
    /// `purchase`, `refund`, ...
    pub kind: String,
    pub order: String,
    pub reason: Option<String>,
    pub parked_at: Option<DateTime<Utc>>,
    pub receive_count: u32,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BuyerStatus {
    pub email: String,
    /// False when the buyer is known only from a parked event: nothing was recorded yet.
    pub in_ledger: bool,
    pub notion_user_id: Option<String>,
    /// The managed Groups enroll put the member in.
    pub groups: Vec<GroupStatus>,
    pub grants: Vec<GrantStatus>,
    pub unknown_items: Vec<String>,
    pub next_change_at: Option<DateTime<Utc>>,
    /// Whether the sales record holds the Notion user id; `None` when it could not be checked.
    pub sales_record: Option<bool>,
    /// Events of this buyer's parked in the provision dead-letter queue.
    pub parked: Vec<ParkedEvent>,
    /// The buyer's provisioning log, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

impl BuyerStatus {
    /// A buyer the ledger does not hold, known from a parked event or from their history.
    fn not_in_ledger(
        email: &BuyerEmail,
        parked: Vec<ParkedEvent>,
        history: Vec<HistoryEntry>,
    ) -> Self {
        BuyerStatus {
            email: email.as_str().to_owned(),
            in_ledger: false,
            notion_user_id: None,
            groups: Vec::new(),
            grants: Vec::new(),
            unknown_items: Vec::new(),
            next_change_at: None,
            sales_record: None,
            history,
            parked,
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StatusReport {
    pub query: String,
    pub buyers: Vec<BuyerStatus>,
}
/// Finds the buyers a query names: an email, a Notion user id, or an order id.
pub async fn find_buyers(store: &FileStore, query: &str) -> anyhow::Result<Vec<BuyerRecord>> {
    use enroll_core::ports::LedgerStore;
    let q = query.trim();
    let mut emails: Vec<BuyerEmail> = Vec::new();
    if q.contains('@') {
        emails.push(BuyerEmail::parse(q)?);
    } else {
        if let Ok(id) = NotionUserId::parse(q) {
            if let Some(e) = store
                .buyer_by_user(&id)
                .await
                .map_err(|f| anyhow::anyhow!(f.reason))?
            {
                emails.push(e);
            }
        }
        for o in store.all_orders() {
            if o.order.order_id.as_str() == q || o.order.to_string() == q {
                emails.extend(o.buyer.clone());
            }
        }
    }
    emails.sort();
    emails.dedup();
    let mut out = Vec::new();
    for e in emails {
        if let Some(b) = store
            .buyer(&e)
            .await
            .map_err(|f| anyhow::anyhow!(f.reason))?
        {
            out.push(b);
        }
    }
    Ok(out)
}

/// The buyer's own orders, read by key.
pub async fn orders_of(store: &FileStore, b: &BuyerRecord) -> anyhow::Result<Vec<OrderRecord>> {
    use enroll_core::ports::LedgerStore;
    let keys: Vec<_> = b.orders.iter().cloned().collect();
    store
        .orders(&keys)
        .await
        .map_err(|f| anyhow::anyhow!(f.reason))
}

/// What a query found: ledger buyers with their orders, and parked events by buyer email.
struct Found {
    buyers: Vec<(BuyerRecord, Vec<OrderRecord>)>,
    parked: BTreeMap<BuyerEmail, Vec<ParkedEvent>>,
    history: BTreeMap<BuyerEmail, Vec<HistoryEntry>>,
}

impl Found {
    async fn gather(
        store: &FileStore,
        provision_dlq: Option<&EmbeddedQueue>,
        query: &str,
    ) -> anyhow::Result<Self> {
        let mut buyers = Vec::new();
        for b in find_buyers(store, query).await? {
            let orders = orders_of(store, &b).await?;
            buyers.push((b, orders));
        }
        let parked = match provision_dlq {
            Some(dlq) => parked_events(dlq, query, &buyers),
            None => BTreeMap::new(),
        };
        let mut history = BTreeMap::new();
        // A queried address that is neither in the ledger nor parked may still have a history
        // (an event deleted from the dead-letter queue, say): that is shown too.
        let q = query.trim();
        let queried = q.contains('@').then(|| BuyerEmail::parse(q).ok()).flatten();
        let emails = buyers
            .iter()
            .map(|(b, _)| &b.email)
            .chain(parked.keys())
            .chain(queried.as_ref());
        for email in emails {
            let entries = enroll_core::ports::HistoryLog::history(store, email)
                .await
                .map_err(|f| anyhow::anyhow!(f.reason))?;
            history.insert(email.clone(), entries);
        }
        Ok(Self {
            buyers,
            parked,
            history,
        })
    }

    fn group_ids(&self) -> BTreeSet<String> {
        self.buyers
            .iter()
            .flat_map(|(b, _)| b.applied_groups.iter().map(|g| g.as_str().to_owned()))
            .collect()
    }

    /// Ledger buyers first, then buyers known only from a parked event.
    fn describe(
        mut self,
        names: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Vec<(Option<BuyerRecord>, BuyerStatus)> {
        let mut out = Vec::new();
        for (b, orders) in self.buyers {
            let mut status = describe(&b, &orders, names, now);
            status.parked = self.parked.remove(&b.email).unwrap_or_default();
            status.history = self.history.remove(&b.email).unwrap_or_default();
            out.push((Some(b), status));
        }
        for (email, parked) in self.parked {
            let history = self.history.remove(&email).unwrap_or_default();
            out.push((None, BuyerStatus::not_in_ledger(&email, parked, history)));
        }
        for (email, history) in self.history {
            if !history.is_empty() {
                out.push((
                    None,
                    BuyerStatus::not_in_ledger(&email, Vec::new(), history),
                ));
            }
        }
        out
    }
}

/// The provision dead-letter queue's events that belong to the query: to one of `buyers`
/// (by email or order), to the queried email, or to the queried order id.
fn parked_events(
    dlq: &EmbeddedQueue,
    query: &str,
    buyers: &[(BuyerRecord, Vec<OrderRecord>)],
) -> BTreeMap<BuyerEmail, Vec<ParkedEvent>> {
    let q = query.trim();
    let queried = q.contains('@').then(|| BuyerEmail::parse(q).ok()).flatten();
    let mut out: BTreeMap<BuyerEmail, Vec<ParkedEvent>> = BTreeMap::new();
    for m in dlq.peek() {
        let Ok(event) = serde_json::from_str::<OrderEvent>(&m.body) else {
            continue;
        };
        // A refund may name no buyer: the ledger buyer who owns its order does.
        let owner = event.buyer.as_ref().map(|b| b.email.clone()).or_else(|| {
            buyers
                .iter()
                .find(|(b, _)| b.orders.contains(&event.order))
                .map(|(b, _)| b.email.clone())
        });
        let Some(owner) = owner else {
            continue;
        };
        let wanted = queried.as_ref() == Some(&owner)
            || buyers
                .iter()
                .any(|(b, _)| b.email == owner || b.orders.contains(&event.order))
            || event.order.order_id.as_str() == q
            || event.order.to_string() == q;
        if !wanted {
            continue;
        }
        // The operator's view of the message: its reason and when it was parked.
        let raw = RawParked {
            id: m.id.clone(),
            body: &m.body,
            attributes: &m.attributes,
            receive_count: m.receive_count,
            sent_at: None,
        };
        let seen = ParkedMessage::describe(QueueStage::Provision, raw, Utc::now());
        out.entry(owner).or_default().push(ParkedEvent {
            event_key: event.key.as_string(),
            kind: event.kind.as_str().to_owned(),
            order: event.order.to_string(),
            reason: seen.reason,
            parked_at: seen.parked_at,
            receive_count: seen.receive_count,
        });
    }
    out
}

/// Display names of Group ids on a real workspace: the catalog's Groups named by name,
/// resolved as provision resolves them, then `GET /Groups/{id}` for any id still unnamed. A
/// Group whose name cannot be had is shown by its id alone.
pub async fn scim_group_names(
    config: &Config,
    directory: &dyn Directory,
    resolver: &GroupResolver,
    ids: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let catalog_names: BTreeSet<&GroupRef> = config
        .catalog
        .products
        .iter()
        .flat_map(|p| &p.groups)
        .filter(|g| matches!(g, GroupRef::Name(_)))
        .collect();
    for g in catalog_names {
        if names.len() == ids.len() {
            break;
        }
        if let (GroupRef::Name(n), Ok(id)) = (g, resolver.resolve(directory, g).await) {
            if ids.contains(id.as_str()) {
                names.insert(id.as_str().to_owned(), n.clone());
            }
        }
    }
    for id in ids {
        if !names.contains_key(id) {
            if let Some(n) = group_display_name(&config.scim, id).await {
                names.insert(id.clone(), n);
            }
        }
    }
    names
}

/// `displayName` of one Group. Members are left out of the answer where the server supports
/// it (RFC 7644 `excludedAttributes`): a Group may hold thousands.
async fn group_display_name(scim: &ScimConfig, id: &str) -> Option<String> {
    let url = format!(
        "{}/Groups/{}?excludedAttributes=members",
        scim.base_url.trim_end_matches('/'),
        enroll_notion::scim::encode_query_value(id)
    );
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(scim.token.expose())
        .header("accept", "application/scim+json, application/json")
        .timeout(Duration::from_secs(scim.timeout_secs.max(1)))
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?;
    let body: serde_json::Value = resp.json().await.ok()?;
    body.get("displayName")?.as_str().map(str::to_owned)
}

/// Describes one buyer from the ledger; `names` maps Group ids to display names.
pub fn describe(
    b: &BuyerRecord,
    orders: &[OrderRecord],
    names: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> BuyerStatus {
    let mut grants = Vec::new();
    let mut unknown = Vec::new();
    for o in orders {
        unknown.extend(o.unknown_items.iter().map(|i| i.as_str().to_owned()));
        for g in &o.grants {
            grants.push(GrantStatus {
                order: o.order.to_string(),
                product: g.product.as_str().to_owned(),
                starts_at: g.starts_at,
                ends_at: g.ends_at,
                active: o.revoked.is_none() && g.is_current(now),
                revoked_by: o
                    .revoked
                    .as_ref()
                    .map(|r| format!("{} ({})", r.by, r.kind.as_str())),
            });
        }
    }
    BuyerStatus {
        email: b.email.as_str().to_owned(),
        in_ledger: true,
        notion_user_id: b.notion_user_id.as_ref().map(|u| u.as_str().to_owned()),
        groups: b
            .applied_groups
            .iter()
            .map(|g| GroupStatus {
                id: g.as_str().to_owned(),
                name: names.get(g.as_str()).cloned(),
            })
            .collect(),
        grants,
        unknown_items: unknown,
        next_change_at: b.next_change_at,
        sales_record: None,
        parked: Vec::new(),
        history: Vec::new(),
    }
}

fn simulated_names(state: enroll_simulator::SimState) -> BTreeMap<String, String> {
    state
        .groups
        .into_iter()
        .map(|g| (g.id, g.display_name))
        .collect()
}

/// The full report from a running runtime, including the sales record check.
pub async fn lookup(rt: &Runtime, query: &str, now: DateTime<Utc>) -> anyhow::Result<StatusReport> {
    let found = Found::gather(&rt.store, Some(rt.provision_dlq()), query).await?;
    let names = match rt.simulator_state() {
        Some(state) => simulated_names(state),
        None => {
            scim_group_names(
                &rt.config,
                rt.provisioner.directory.as_ref(),
                &rt.provisioner.groups,
                &found.group_ids(),
            )
            .await
        }
    };
    let mut buyers = Vec::new();
    for (record, mut status) in found.describe(&names, now) {
        if let Some(b) = record {
            status.sales_record = Some(sales_record_written(rt, &b).await);
        }
        buyers.push(status);
    }
    Ok(StatusReport {
        query: query.to_owned(),
        buyers,
    })
}

async fn sales_record_written(rt: &Runtime, b: &BuyerRecord) -> bool {
    let Some(user) = &b.notion_user_id else {
        return false;
    };
    let found = rt.aligner.sales.find_by_email(&b.email).await;
    if matches!(&found, Ok(Some(r)) if r.notion_user_id.as_deref() == Some(user.as_str())) {
        return true;
    }
    for o in &b.orders {
        if let Ok(Some(r)) = rt.aligner.sales.find_by_order(o.order_id.as_str()).await {
            if r.notion_user_id.as_deref() == Some(user.as_str()) {
                return true;
            }
        }
    }
    false
}

/// `enroll status` on a data directory no `enroll dev` runs on: reads its files without taking
/// them over. `config`, when it names a real workspace, is used to look up Group names there.
pub async fn from_data_dir(
    query: &str,
    data_dir: &Path,
    config: Option<&Config>,
) -> anyhow::Result<StatusReport> {
    let path = data_dir.join("store.log");
    anyhow::ensure!(
        path.exists(),
        "no `enroll dev` is running on {dir} and it holds no data (start `enroll dev --data-dir {dir}`, or pass the right --data-dir)",
        dir = data_dir.display()
    );
    let store = FileStore::open_read_only(&path)?;
    let queues = data_dir.join("queues.log");
    let provision = if queues.exists() {
        let journal = Journal::open_read_only(&queues)
            .with_context(|| format!("reading {}", queues.display()))?;
        let journal = Arc::new(Mutex::new(journal));
        let dlq_name = QueueStage::Provision.dlq_name();
        Some(EmbeddedQueue::new(
            dlq_name,
            journal,
            QueueSettings::default(),
            None,
        ))
    } else {
        None
    };
    let found = Found::gather(&store, provision.as_deref(), query).await?;
    let simulated = std::fs::read(crate::runtime::sim_state_path(data_dir))
        .ok()
        .and_then(|b| serde_json::from_slice::<enroll_simulator::SimState>(&b).ok());
    let names = match (simulated, config) {
        (_, Some(cfg)) if !crate::runtime::needs_simulator(cfg) => {
            let budget = enroll_notion::rate::from_config(cfg.rate.scim());
            let scim = enroll_notion::ScimClient::new(&cfg.scim, budget)
                .map_err(|f| anyhow::anyhow!(f.reason))?;
            scim_group_names(cfg, &scim, &GroupResolver::default(), &found.group_ids()).await
        }
        (Some(state), _) => simulated_names(state),
        (None, _) => BTreeMap::new(),
    };
    Ok(StatusReport {
        query: query.to_owned(),
        buyers: found
            .describe(&names, Utc::now())
            .into_iter()
            .map(|(_, status)| status)
            .collect(),
    })
}

/// A plain-text view of a report.
pub fn print(report: &StatusReport) {
    if report.buyers.is_empty() {
        println!("no buyer matches `{}`", report.query);
        return;
    }
    for b in &report.buyers {
        println!("buyer           {}", b.email);
        for p in &b.parked {
            println!(
                "PARKED          {} {} of order {}: in the provision dead-letter queue{}",
                p.event_key,
                p.kind,
                p.order,
                p.parked_at
                    .map(|t| format!(" since {}", t.to_rfc3339()))
                    .unwrap_or_default()
            );
            println!(
                "                reason: {}",
                p.reason.as_deref().unwrap_or("none recorded")
            );
            println!(
                "                fix the cause, then: enroll dlq replay --key {}",
                p.event_key
            );
        }
        if !b.in_ledger {
            println!("                nothing recorded for this buyer yet");
            print_history(&b.history);
            println!();
            continue;
        }
        println!(
            "notion user id  {}",
            b.notion_user_id.as_deref().unwrap_or("-")
        );
        let groups: Vec<String> = b
            .groups
            .iter()
            .map(|g| match &g.name {
                Some(n) => format!("{n} ({})", g.id),
                None => g.id.clone(),
            })
            .collect();
        println!(
            "groups          {}",
            if groups.is_empty() {
                "-".into()
            } else {
                groups.join(", ")
            }
        );
        let record = match b.sales_record {
            Some(true) => "written",
            Some(false) => "not written",
            None => "unknown (start `enroll dev` to check)",
        };
        println!("sales record    {record}");
        if let Some(t) = b.next_change_at {
            println!("next change     {}", t.to_rfc3339());
        }
        println!("grants:");
        for g in &b.grants {
            println!(
                "  {:<24} {:<28} {:<8} {} → {}{}",
                g.product,
                g.order,
                if g.active { "active" } else { "inactive" },
                g.starts_at.format("%Y-%m-%d"),
                g.ends_at
                    .map(|e| e.format("%Y-%m-%d").to_string())
                    .unwrap_or_else(|| "∞".into()),
                g.revoked_by
                    .as_ref()
                    .map(|r| format!("  revoked by {r}"))
                    .unwrap_or_default()
            );
        }
        if !b.unknown_items.is_empty() {
            println!(
                "unknown products (not provisioned): {}",
                b.unknown_items.join(", ")
            );
        }
        print_history(&b.history);
        println!();
    }
}

/// The buyer's history as a timeline, one line per entry.
fn print_history(history: &[HistoryEntry]) {
    if history.is_empty() {
        return;
    }
    println!("history:");
    for e in history {
        println!(
            "  {}  {:<9}  {}",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            e.stage.as_str(),
            e.what
        );
    }
}
