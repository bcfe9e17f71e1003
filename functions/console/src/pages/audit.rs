//! Audit: the workspace compared with the ledger, as `enroll audit` does, and its fix after a
//! confirmation. The fix is `enroll audit --fix` itself: the mass-removal guard stops it when it
//! would take access from more than the usual share of members, and only an explicit second
//! confirmation (the CLI's `--yes`) goes past it.

use super::{button, render, ticked};
use crate::html::{esc, notice, post_form, table};
use crate::App;
use axum::extract::State;
use axum::response::Response;
use axum::Form;
use chrono::Utc;
use enroll_ops::audit::{self, AuditMember, AuditOptions, AuditReport};
use serde::Deserialize;
use std::sync::Arc;

async fn run(app: &App, opts: AuditOptions) -> anyhow::Result<AuditReport> {
    let ws = app.source.workspace(opts.fix).await?;
    let result = audit::run(&ws, &opts, Utc::now(), &indicatif::ProgressBar::hidden()).await;
    ws.finish()?;
    result
}

fn options(fix: bool, remove_unknown: bool, yes: bool) -> AuditOptions {
    AuditOptions {
        fix,
        remove_unknown,
        yes,
        max_removal_share: audit::DEFAULT_MAX_REMOVAL_SHARE,
    }
}

fn members(caption: &str, list: &[AuditMember]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            vec![
                esc(&enroll_core::redact::mask_if_email(&m.email)),
                format!("<code>{}</code>", esc(m.user_id.as_str())),
                esc(&m.groups.join(", ")),
            ]
        })
        .collect();
    table(
        caption,
        &["Member", "Notion user id", "Managed Groups"],
        &rows,
    )
}

fn findings(r: &AuditReport) -> String {
    let drift: Vec<Vec<String>> = r
        .drift
        .iter()
        .map(|d| {
            vec![
                esc(&d.buyer),
                esc(&d.missing.join(", ")),
                esc(&d.extra.join(", ")),
                d.note.as_deref().map(esc).unwrap_or_default(),
            ]
        })
        .collect();
    format!(
        "<p>{} members, {} buyers in the ledger; managed Groups: {}.</p>{}{}{}",
        r.members,
        r.ledger_buyers,
        esc(&r.managed_groups.join(", ")),
        members("Members with no purchase", &r.no_purchase),
        table(
            "Drifted buyers",
            &["Buyer", "Missing in Notion", "Extra in Notion", "Note"],
            &drift
        ),
        members(
            "Unknown members of managed Groups",
            &r.unknown_in_managed_groups
        ),
    )
}

pub async fn show(State(app): State<Arc<App>>) -> Response {
    let body = async {
        let r = run(&app, options(false, false, false)).await?;
        let mut out = findings(&r);
        if !r.drift.is_empty() || !r.unknown_in_managed_groups.is_empty() {
            out.push_str(&post_form(
                "/audit/fix",
                app.guard.csrf(),
                &[("step", "review")],
                &format!(
                    "<fieldset><legend>Fix</legend><p>Make drifted buyers' Groups match the ledger.</p>\
                     <label class=\"check\"><input type=\"checkbox\" name=\"remove_unknown\"> Also take unknown members out of managed Groups</label>{}</fieldset>",
                    button("Review the fix", "")
                ),
            ));
        }
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    render(&app, "Audit", "/audit", body)
}

#[derive(Deserialize)]
pub struct FixForm {
    step: String,
    remove_unknown: Option<String>,
    yes: Option<String>,
}

pub async fn fix(State(app): State<Arc<App>>, Form(f): Form<FixForm>) -> Response {
    let remove_unknown = ticked(&f.remove_unknown);
    let body = async {
        let unknown = if remove_unknown { "on" } else { "" };
        if f.step != "confirm" {
            let r = run(&app, options(false, false, false)).await?;
            let form = post_form(
                "/audit/fix",
                app.guard.csrf(),
                &[("step", "confirm"), ("remove_unknown", unknown)],
                &format!(
                    "{} <a href=\"/audit\">Cancel</a>",
                    button("Apply the fix", "danger")
                ),
            );
            return Ok(format!(
                "<p>The fix adds what is missing and removes what is extra for {} drifted buyer(s){}. If it would take access from more than {:.0}% of the members of managed Groups, the mass-removal guard stops it and nothing changes.</p>{}{form}",
                r.drift.len(),
                if remove_unknown {
                    format!(
                        ", and takes {} unknown member(s) out of managed Groups",
                        r.unknown_in_managed_groups.len()
                    )
                } else {
                    String::new()
                },
                audit::DEFAULT_MAX_REMOVAL_SHARE * 100.0,
                findings(&r)
            ));
        }
        let _one = app.acting.lock().await;
        let r = run(&app, options(true, remove_unknown, ticked(&f.yes))).await?;
        let Some(fix) = &r.fix else {
            return Ok(notice("warn", "The audit ran without a fix."));
        };
        if !fix.applied {
            let form = post_form(
                "/audit/fix",
                app.guard.csrf(),
                &[("step", "confirm"), ("remove_unknown", unknown), ("yes", "on")],
                &format!(
                    "{} <a href=\"/audit\">Cancel</a>",
                    button("Remove anyway", "danger")
                ),
            );
            return Ok(format!(
                "{}<p>Check the findings below before going past the guard.</p>{}{form}",
                notice(
                    "error",
                    &format!(
                        "Stopped by the mass-removal guard: the fix would remove access from {} of {} members ({:.1}%, the limit is {:.1}%). Nothing was changed.",
                        fix.would_remove_from,
                        fix.managed_members,
                        fix.share * 100.0,
                        fix.max_share * 100.0
                    )
                ),
                findings(&r)
            ));
        }
        Ok::<_, anyhow::Error>(format!(
            "{}<p><a href=\"/audit\">Run the audit again</a></p>",
            notice(
                "ok",
                &format!(
                    "Fixed: {} Group membership(s) added, {} removed, {} buyer(s) updated, {} request(s).",
                    fix.added, fix.removed, fix.buyers_updated, fix.requests
                )
            )
        ))
    }
    .await;
    render(&app, "Audit fix", "/audit", body)
}
