//! Buyers (search by email, order id or Notion user id) and one buyer: grants, Groups and the
//! history timeline, with link and merge behind a confirmation.

use super::{button, render, ticked, yes_no};
use crate::html::{esc, notice, post_form, query_value, table, time};
use crate::App;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Form;
use enroll_core::redact::mask_email;
use enroll_embedded::status::BuyerStatus;
use serde::Deserialize;
use std::sync::Arc;

/// Buyers listed without a search: enough for a page, each looked up as `enroll status` does.
const LIST_LIMIT: usize = 50;

#[derive(Deserialize)]
pub struct Search {
    q: Option<String>,
}

fn search_form(q: &str) -> String {
    format!(
        "<form method=\"get\" action=\"/\" class=\"search\" role=\"search\">\
         <label for=\"q\">Email, order id or Notion user id</label>\
         <input id=\"q\" name=\"q\" type=\"search\" value=\"{}\" autocomplete=\"off\">\
         <button type=\"submit\">Search</button></form>",
        esc(q)
    )
}

fn groups(b: &BuyerStatus) -> String {
    let names: Vec<String> = b
        .groups
        .iter()
        .map(|g| esc(g.name.as_deref().unwrap_or(&g.id)))
        .collect();
    if names.is_empty() {
        "—".into()
    } else {
        names.join(", ")
    }
}

fn active_grants(b: &BuyerStatus) -> String {
    let active: Vec<String> = b
        .grants
        .iter()
        .filter(|g| g.active)
        .map(|g| esc(&g.product))
        .collect();
    if active.is_empty() {
        "0".into()
    } else {
        format!("{}: {}", active.len(), active.join(", "))
    }
}

/// One row; `masked` hides the address when browsing (a search shows what was searched for).
fn row(b: &BuyerStatus, masked: bool) -> Vec<String> {
    let shown = if masked {
        mask_email(&b.email)
    } else {
        b.email.clone()
    };
    let parked = if b.parked.is_empty() {
        String::new()
    } else {
        format!(" <span class=\"tag bad\">{} parked</span>", b.parked.len())
    };
    vec![
        format!(
            "<a href=\"/buyer?q={}\">{}</a>{parked}",
            query_value(&b.email),
            esc(&shown)
        ),
        b.notion_user_id.as_deref().map(esc).unwrap_or("—".into()),
        groups(b),
        active_grants(b),
        time(b.next_change_at),
        yes_no(b.sales_record),
    ]
}

const COLUMNS: [&str; 6] = [
    "Email",
    "Notion user id",
    "Groups",
    "Active grants",
    "Next change",
    "Sales record",
];

pub async fn list(State(app): State<Arc<App>>, Query(s): Query<Search>) -> Response {
    let q = s.q.unwrap_or_default().trim().to_owned();
    let body = async {
        let mut out = search_form(&q);
        if !q.is_empty() {
            let report = app.source.status(&q).await?;
            let rows: Vec<_> = report.buyers.iter().map(|b| row(b, false)).collect();
            if rows.is_empty() {
                out.push_str(&notice("warn", &format!("No buyer matches “{q}”.")));
            } else {
                out.push_str(&table(&format!("Buyers matching “{q}”"), &COLUMNS, &rows));
            }
            return Ok(out);
        }
        let ledger = app.source.ledger().await?;
        let mut emails: Vec<String> = ledger
            .buyers()
            .await?
            .into_iter()
            .filter(|b| b.alias_of.is_none())
            .map(|b| b.email.as_str().to_owned())
            .collect();
        emails.sort();
        let total = emails.len();
        let mut rows = Vec::new();
        for email in emails.iter().take(LIST_LIMIT) {
            for b in app.source.status(email).await?.buyers {
                rows.push(row(&b, true));
            }
        }
        out.push_str(&table(
            &format!("Buyers ({total}; addresses masked, open one to see it)"),
            &COLUMNS,
            &rows,
        ));
        if total > LIST_LIMIT {
            out.push_str(&notice(
                "warn",
                &format!("Showing the first {LIST_LIMIT} of {total}: search to find the others."),
            ));
        }
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    render(&app, "Buyers", "/", body)
}

pub async fn one(State(app): State<Arc<App>>, Query(s): Query<Search>) -> Response {
    let q = s.q.unwrap_or_default().trim().to_owned();
    let body = async {
        let report = app.source.status(&q).await?;
        if report.buyers.is_empty() {
            return Ok(format!(
                "{}{}",
                search_form(&q),
                notice("warn", &format!("No buyer matches “{q}”."))
            ));
        }
        let mut out = String::new();
        for b in &report.buyers {
            out.push_str(&buyer(&app, b));
        }
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    render(&app, "Buyer", "/", body)
}

fn buyer(app: &App, b: &BuyerStatus) -> String {
    let grants: Vec<Vec<String>> = b
        .grants
        .iter()
        .map(|g| {
            vec![
                esc(&g.order),
                esc(&g.product),
                time(Some(g.starts_at)),
                time(g.ends_at),
                esc(if g.active { "active" } else { "ended" }),
                g.revoked_by.as_deref().map(esc).unwrap_or_default(),
            ]
        })
        .collect();
    let parked: Vec<Vec<String>> = b
        .parked
        .iter()
        .map(|p| {
            vec![
                esc(&p.event_key),
                esc(&p.kind),
                esc(&p.order),
                p.reason.as_deref().map(esc).unwrap_or_default(),
                time(p.parked_at),
            ]
        })
        .collect();
    let mut history = String::from("<ol class=\"timeline\">");
    for h in &b.history {
        history.push_str(&format!(
            "<li>{} <span class=\"tag\">{}</span> {}</li>",
            time(Some(h.at)),
            esc(h.stage.as_str()),
            esc(&h.what)
        ));
    }
    history.push_str("</ol>");
    if b.history.is_empty() {
        history = "<p class=\"empty\">No history kept.</p>".into();
    }
    let link = post_form(
        "/buyer/link",
        app.guard.csrf(),
        &[("existing", &b.email), ("step", "review")],
        &format!(
            "<fieldset><legend>Link another email to this buyer</legend>\
             <label for=\"alias\">Second email</label>\
             <input id=\"alias\" name=\"alias\" type=\"email\" required>\
             <label class=\"check\"><input type=\"checkbox\" name=\"merge\"> Merge: move the second email's own orders to this buyer</label>\
             {}</fieldset>",
            button("Review the link", "")
        ),
    );
    format!(
        "<section aria-labelledby=\"b-{id}\"><h2 id=\"b-{id}\">{email}</h2>\
         <dl class=\"facts\"><dt>Notion user id</dt><dd>{user}</dd><dt>Groups</dt><dd>{groups}</dd>\
         <dt>Next change</dt><dd>{next}</dd><dt>Sales record</dt><dd>{sales}</dd>\
         <dt>In the ledger</dt><dd>{ledger}</dd></dl>{grants}{parked}<h3>History</h3>{history}{link}</section>",
        id = esc(&enroll_core::redact::short_hash(b.email.as_bytes())),
        email = esc(&b.email),
        user = b.notion_user_id.as_deref().map(esc).unwrap_or("—".into()),
        groups = groups(b),
        next = time(b.next_change_at),
        sales = yes_no(b.sales_record),
        ledger = yes_no(Some(b.in_ledger)),
        grants = table(
            "Grants",
            &["Order", "Product", "Starts", "Ends", "State", "Revoked by"],
            &grants
        ),
        parked = table(
            "Parked events",
            &["Event", "Kind", "Order", "Reason", "Parked at"],
            &parked
        ),
    )
}

#[derive(Deserialize)]
pub struct LinkForm {
    alias: String,
    existing: String,
    merge: Option<String>,
    step: String,
}

pub async fn link(State(app): State<Arc<App>>, Form(f): Form<LinkForm>) -> Response {
    let merge = ticked(&f.merge);
    let body = async {
        if f.step != "confirm" {
            let what = if merge {
                "Purchases with the second email will reach this buyer's Notion member, and the second email's own orders move to this buyer (its member leaves the managed Groups if it is another account)."
            } else {
                "Purchases with the second email will reach this buyer's Notion member. If the second email has orders of its own, the link is refused unless you merge."
            };
            let form = post_form(
                "/buyer/link",
                app.guard.csrf(),
                &[
                    ("alias", &f.alias),
                    ("existing", &f.existing),
                    ("merge", if merge { "on" } else { "" }),
                    ("step", "confirm"),
                ],
                &format!(
                    "{} <a href=\"/buyer?q={}\">Cancel</a>",
                    button(if merge { "Link and merge" } else { "Link" }, "danger"),
                    query_value(&f.existing)
                ),
            );
            return Ok(format!(
                "<p>Link <strong>{}</strong> to the buyer <strong>{}</strong>{}?</p><p>{}</p>{form}",
                esc(&f.alias),
                esc(&f.existing),
                if merge { ", merging its orders" } else { "" },
                esc(what)
            ));
        }
        let _one = app.acting.lock().await;
        let r = app.source.link(&f.alias, &f.existing, merge).await?;
        let text = if r.already_linked {
            "Already linked: nothing was changed.".to_owned()
        } else {
            format!(
                "Linked. Orders moved: {}; Groups the buyer gained: {}; Groups taken from the second email's member: {}{}.",
                r.orders_moved,
                r.buyer_groups_added,
                r.alias_groups_removed,
                if r.alias_removed_from_workspace {
                    "; that member was removed from the workspace"
                } else {
                    ""
                }
            )
        };
        Ok::<_, anyhow::Error>(format!(
            "{}<p><a href=\"/buyer?q={}\">Back to the buyer</a></p>",
            notice("ok", &text),
            query_value(&f.existing)
        ))
    }
    .await;
    render(&app, "Link an email", "/", body)
}
