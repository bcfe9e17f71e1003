//! Sales mapping: which column of the export holds what, the export read into [`SaleRow`]s
//! against the catalog, and the ledger order a backfilled sale becomes.

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use enroll_core::catalog::{Catalog, Product};
use enroll_core::ids::{
    BuyerEmail, EventId, EventKey, OrderId, OrderKey, Platform, PlatformProductRef, ProductId,
};
use enroll_core::ledger::{self, OrderRecord};
use enroll_core::redact::mask_email;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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

/// Sales rows grouped by the order they belong to, each order's rows in export order.
pub(crate) fn rows_by_order<'a>(
    rows: impl IntoIterator<Item = &'a SaleRow>,
) -> BTreeMap<&'a OrderKey, Vec<&'a SaleRow>> {
    let mut by_order: BTreeMap<&OrderKey, Vec<&SaleRow>> = BTreeMap::new();
    for r in rows {
        by_order.entry(&r.order).or_default().push(r);
    }
    by_order
}

#[cfg(test)]
mod tests {
    use super::*;
    use enroll_core::catalog::GroupRef;

    fn catalog() -> Catalog {
        let text = include_str!("../../../../infra/enroll.example.toml");
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
}
