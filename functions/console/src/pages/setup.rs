//! Setup: the checks of `enroll doctor`, each with what to fix.

use super::render;
use crate::html::{esc, notice, table};
use crate::App;
use axum::extract::State;
use axum::response::Response;
use std::sync::Arc;

pub async fn show(State(app): State<Arc<App>>) -> Response {
    let body = async {
        let Some(report) = app.source.doctor().await? else {
            return Ok(notice(
                "warn",
                "doctor not available: the setup check cannot run on this target",
            ));
        };
        let summary = if report.passed() {
            notice("ok", "Every check passed.")
        } else {
            notice(
                "error",
                &format!(
                    "{} check(s) failed: see what to fix below.",
                    report.checks.iter().filter(|c| !c.ok).count()
                ),
            )
        };
        let rows: Vec<Vec<String>> = report
            .checks
            .iter()
            .map(|c| {
                let (class, word) = match (c.ok, c.warn) {
                    (false, _) => ("bad", "failed"),
                    (true, true) => ("warn", "look"),
                    (true, false) => ("good", "passed"),
                };
                vec![
                    format!(
                        "<span class=\"mark {class}\" aria-hidden=\"true\">{}</span> {word}",
                        esc(c.mark())
                    ),
                    esc(&c.name),
                    esc(&c.detail),
                    c.fix.as_deref().map(esc).unwrap_or_default(),
                ]
            })
            .collect();
        Ok::<_, anyhow::Error>(format!(
            "<p>The configuration checked against the services it names, as <code>enroll doctor</code> does. Every call is a read.</p>{summary}{}",
            table("Setup checks", &["Result", "Check", "Detail", "What to fix"], &rows)
        ))
    }
    .await;
    render(&app, "Setup", "/setup", body)
}
