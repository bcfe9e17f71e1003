//! Catalog: the products and the Groups they open, the members of each managed Group as the
//! workspace has them now, and product references seen in orders that the catalog does not
//! know.

use super::render;
use crate::html::{esc, notice, table};
use crate::App;
use axum::extract::State;
use axum::response::Response;
use std::collections::BTreeMap;
use std::sync::Arc;

pub async fn show(State(app): State<Arc<App>>) -> Response {
    let body = async {
        let config = app.source.config().await?;
        let products: Vec<Vec<String>> = config
            .catalog
            .products
            .iter()
            .map(|p| {
                let refs: Vec<String> = p
                    .platform_ids
                    .iter()
                    .flat_map(|(platform, ids)| {
                        ids.iter().map(move |id| format!("{platform}: {id}"))
                    })
                    .collect();
                let access = match (p.access_months, p.access_days) {
                    (Some(m), _) => format!("{m} months"),
                    (None, Some(d)) => format!("{d} days"),
                    (None, None) => "lifetime".into(),
                };
                let groups: Vec<String> = p.groups.iter().map(|g| g.to_string()).collect();
                vec![
                    format!("<code>{}</code>", esc(p.id.as_str())),
                    esc(&p.name),
                    esc(&groups.join(", ")),
                    esc(&access),
                    esc(&p.then.as_ref().map(|t| t.to_string()).unwrap_or_default()),
                    esc(&refs.join(", ")),
                ]
            })
            .collect();
        let mut out = table(
            "Products",
            &["Product", "Name", "Groups", "Access", "Then", "Sold as"],
            &products,
        );
        out.push_str(&group_members(&app).await);

        let mut unknown: BTreeMap<String, usize> = BTreeMap::new();
        for o in app.source.ledger().await?.orders().await? {
            for item in &o.unknown_items {
                *unknown
                    .entry(format!("{}: {item}", o.order.platform))
                    .or_default() += 1;
            }
        }
        let rows: Vec<Vec<String>> = unknown
            .iter()
            .map(|(k, n)| vec![esc(k), esc(&n.to_string())])
            .collect();
        out.push_str(&table(
            "Unknown products seen in orders",
            &["Platform product", "Orders"],
            &rows,
        ));
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    render(&app, "Catalog", "/catalog", body)
}

/// The managed Groups and their member counts; a workspace that cannot be read is said so, not
/// a failed page.
async fn group_members(app: &App) -> String {
    let read = async {
        let ws = app.source.workspace(false).await?;
        let managed: Vec<String> = ws
            .config
            .catalog
            .managed_groups()
            .iter()
            .map(|g| g.to_string())
            .collect();
        let groups = ws
            .scim
            .list_groups()
            .await
            .map_err(|r| anyhow::anyhow!(r.failure.reason))?;
        let mut rows = Vec::new();
        for (id, name) in groups {
            let is_managed = managed
                .iter()
                .any(|m| *m == name || *m == format!("id:{id}"));
            if !is_managed {
                continue;
            }
            let members = ws
                .scim
                .group_members(&id)
                .await
                .map_err(|f| anyhow::anyhow!(f.reason))?;
            rows.push(vec![
                esc(&name),
                format!("<code>{}</code>", esc(id.as_str())),
                esc(&members.len().to_string()),
            ]);
        }
        ws.finish()?;
        Ok::<_, anyhow::Error>(table(
            "Members per managed Group",
            &["Group", "SCIM id", "Members"],
            &rows,
        ))
    };
    match read.await {
        Ok(t) => t,
        Err(e) => notice(
            "warn",
            &format!("Members per Group: the workspace could not be read: {e:#}"),
        ),
    }
}
