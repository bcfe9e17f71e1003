//! `enroll status <email | order id | Notion user id>`: what the ledger says about a buyer, what
//! Notion has, and whether the sales record holds their Notion user id.

use crate::runtime::Runtime;
use chrono::{DateTime, Utc};
use enroll_core::ids::{BuyerEmail, NotionUserId};
use enroll_core::ledger::{BuyerRecord, OrderRecord};
use enroll_embedded::store::FileStore;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct GrantStatus {
    pub order: String,
    pub product: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub active: bool,
    pub revoked_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BuyerStatus {
    pub email: String,
    pub notion_user_id: Option<String>,
    /// The managed Groups enroll put the member in (names when known).
    pub groups: Vec<String>,
    pub grants: Vec<GrantStatus>,
    pub unknown_items: Vec<String>,
    pub next_change_at: Option<DateTime<Utc>>,
    /// Whether the sales record holds the Notion user id; `None` when it could not be checked.
    pub sales_record: Option<bool>,
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
        notion_user_id: b.notion_user_id.as_ref().map(|u| u.as_str().to_owned()),
        groups: b
            .applied_groups
            .iter()
            .map(|g| {
                names
                    .get(g.as_str())
                    .cloned()
                    .unwrap_or_else(|| g.as_str().to_owned())
            })
            .collect(),
        grants,
        unknown_items: unknown,
        next_change_at: b.next_change_at,
        sales_record: None,
    }
}

/// The full report from a running runtime, including the sales record check.
pub async fn lookup(rt: &Runtime, query: &str, now: DateTime<Utc>) -> anyhow::Result<StatusReport> {
    let names: BTreeMap<String, String> = rt
        .simulator_state()
        .map(|s| {
            s.groups
                .into_iter()
                .map(|g| (g.id, g.display_name))
                .collect()
        })
        .unwrap_or_default();
    let mut buyers = Vec::new();
    for b in find_buyers(&rt.store, query).await? {
        let orders = orders_of(&rt.store, &b).await?;
        let mut status = describe(&b, &orders, &names, now);
        if let Some(user) = &b.notion_user_id {
            let found = rt.aligner.sales.find_by_email(&b.email).await;
            let mut written =
                matches!(&found, Ok(Some(r)) if r.notion_user_id.as_deref() == Some(user.as_str()));
            if !written {
                for o in &b.orders {
                    if let Ok(Some(r)) = rt.aligner.sales.find_by_order(o.order_id.as_str()).await {
                        written |= r.notion_user_id.as_deref() == Some(user.as_str());
                    }
                }
            }
            status.sales_record = Some(written);
        } else {
            status.sales_record = Some(false);
        }
        buyers.push(status);
    }
    Ok(StatusReport {
        query: query.to_owned(),
        buyers,
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
        println!(
            "notion user id  {}",
            b.notion_user_id.as_deref().unwrap_or("-")
        );
        println!(
            "groups          {}",
            if b.groups.is_empty() {
                "-".into()
            } else {
                b.groups.join(", ")
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
        println!();
    }
}
