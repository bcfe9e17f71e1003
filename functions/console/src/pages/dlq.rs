//! Dead letters: what is parked and why, and a replay of one message, of all with a reason, or
//! of all, each after a dry-run preview and a confirmation. The preview and the replay are the
//! same request `enroll dlq replay` sends, once with `dry_run`.

use super::{button, render};
use crate::html::{age, esc, notice, post_form, table};
use crate::App;
use axum::extract::State;
use axum::response::Response;
use axum::Form;
use enroll_core::dead_letters::{QueueStage, ReplayReport, ReplayRequest, Selection};
use enroll_core::redact::mask_if_email;
use serde::Deserialize;
use std::sync::Arc;

pub async fn list(State(app): State<Arc<App>>) -> Response {
    let body = async {
        let msgs = app.source.dead_letters().await?;
        let csrf = app.guard.csrf();
        let rows: Vec<Vec<String>> = msgs
            .iter()
            .map(|m| {
                let key = m.event_key.clone().unwrap_or_default();
                let action = if key.is_empty() {
                    "—".to_owned()
                } else {
                    post_form(
                        "/dead-letters/preview",
                        csrf,
                        &[("mode", "one"), ("key", &key), ("queue", m.queue.as_str())],
                        &button("Replay…", "small"),
                    )
                };
                vec![
                    esc(m.queue.as_str()),
                    m.reason.as_deref().map(esc).unwrap_or_default(),
                    format!(
                        "<span title=\"{}\">{}</span>",
                        esc(&m.parked_at.map(|t| t.to_rfc3339()).unwrap_or_default()),
                        esc(&age(m.age_secs))
                    ),
                    esc(&m.receive_count.to_string()),
                    format!("<code>{}</code>", esc(&key)),
                    esc(&mask_if_email(m.buyer.as_deref().unwrap_or("—"))),
                    action,
                ]
            })
            .collect();
        let mut out = String::from(
            "<p>Events a stage gave up on, kept until replayed. Fix the cause first (the reason says it), then replay: each replay is previewed before anything moves.</p>",
        );
        out.push_str(&table(
            &format!("Parked messages ({})", msgs.len()),
            &["Queue", "Reason", "Age", "Receives", "Event key", "Buyer", "Action"],
            &rows,
        ));
        if !msgs.is_empty() {
            out.push_str(&post_form(
                "/dead-letters/preview",
                csrf,
                &[("mode", "reason")],
                &format!(
                    "<fieldset><legend>Replay all with one reason</legend>\
                     <label for=\"reason\">Reason contains</label>\
                     <input id=\"reason\" name=\"reason\" required>{}</fieldset>",
                    button("Preview", "")
                ),
            ));
            out.push_str(&post_form(
                "/dead-letters/preview",
                csrf,
                &[("mode", "all")],
                &format!(
                    "<fieldset><legend>Replay everything parked</legend>{}</fieldset>",
                    button("Preview", "")
                ),
            ));
        }
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    render(&app, "Dead letters", "/dead-letters", body)
}

#[derive(Deserialize)]
pub struct Pick {
    mode: String,
    key: Option<String>,
    reason: Option<String>,
    queue: Option<String>,
}

impl Pick {
    /// The request `enroll dlq replay` would send for this choice.
    fn request(&self, dry_run: bool) -> anyhow::Result<ReplayRequest> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        let queue = match given(&self.queue) {
            Some(q) => Some(
                QueueStage::ALL
                    .into_iter()
                    .find(|s| s.as_str() == q)
                    .ok_or_else(|| anyhow::anyhow!("no queue `{q}`"))?,
            ),
            None => None,
        };
        let selection = match self.mode.as_str() {
            "one" => Selection {
                key: Some(
                    given(&self.key)
                        .ok_or_else(|| anyhow::anyhow!("which message? (no event key)"))?
                        .to_owned(),
                ),
                reason: None,
            },
            "reason" => Selection {
                reason: Some(
                    given(&self.reason)
                        .ok_or_else(|| anyhow::anyhow!("say which reason to replay"))?
                        .to_owned(),
                ),
                key: None,
            },
            "all" => Selection::default(),
            other => anyhow::bail!("unknown replay `{other}`"),
        };
        Ok(ReplayRequest {
            queue,
            selection,
            rate: None,
            dry_run,
        })
    }

    fn describe(&self) -> String {
        match self.mode.as_str() {
            "one" => format!("the message {}", self.key.as_deref().unwrap_or("")),
            "reason" => format!(
                "every message whose reason contains “{}”",
                self.reason.as_deref().unwrap_or("")
            ),
            _ => "every parked message".into(),
        }
    }

    fn hidden(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("mode", self.mode.clone())];
        for (k, val) in [
            ("key", &self.key),
            ("reason", &self.reason),
            ("queue", &self.queue),
        ] {
            if let Some(val) = val {
                v.push((k, val.clone()));
            }
        }
        v
    }
}

fn moved_rows(reports: &[ReplayReport]) -> Vec<Vec<String>> {
    reports
        .iter()
        .flat_map(|r| {
            r.moved.iter().map(move |m| {
                vec![
                    esc(r.queue.as_str()),
                    format!(
                        "<code>{}</code>",
                        esc(m.event_key.as_deref().unwrap_or("—"))
                    ),
                    m.reason.as_deref().map(esc).unwrap_or_default(),
                ]
            })
        })
        .collect()
}

pub async fn preview(State(app): State<Arc<App>>, Form(pick): Form<Pick>) -> Response {
    let body = async {
        let reports = app.source.replay(&pick.request(true)?).await?;
        let count: usize = reports.iter().map(|r| r.moved_count).sum();
        let mut out = format!(
            "<p>Dry run for {}: nothing has moved yet.</p>",
            esc(&pick.describe())
        );
        out.push_str(&table(
            &format!("Messages that would be replayed ({count})"),
            &["Queue", "Event key", "Reason"],
            &moved_rows(&reports),
        ));
        if count == 0 {
            out.push_str("<p><a href=\"/dead-letters\">Back to the dead letters</a></p>");
            return Ok(out);
        }
        let hidden = pick.hidden();
        let hidden: Vec<(&str, &str)> = hidden.iter().map(|(k, v)| (*k, v.as_str())).collect();
        out.push_str(&post_form(
            "/dead-letters/replay",
            app.guard.csrf(),
            &hidden,
            &format!(
                "<p>Each replayed message goes back to its stage's queue and leaves the dead-letter queue.</p>{} <a href=\"/dead-letters\">Cancel</a>",
                button(&format!("Replay {count} message(s)"), "danger")
            ),
        ));
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    render(&app, "Replay: preview", "/dead-letters", body)
}

pub async fn replay(State(app): State<Arc<App>>, Form(pick): Form<Pick>) -> Response {
    let body = async {
        let req = pick.request(false)?;
        let _one = app.acting.lock().await;
        let reports = app.source.replay(&req).await?;
        let count: usize = reports.iter().map(|r| r.moved_count).sum();
        let failed: Vec<String> = reports.iter().flat_map(|r| r.failed.clone()).collect();
        let mut out = if failed.is_empty() {
            notice("ok", &format!("Replayed {count} message(s)."))
        } else {
            notice(
                "error",
                &format!(
                    "Replayed {count} message(s); {} could not be: {}",
                    failed.len(),
                    failed.join("; ")
                ),
            )
        };
        out.push_str(&table(
            "Replayed messages",
            &["Queue", "Event key", "Reason it was parked"],
            &moved_rows(&reports),
        ));
        out.push_str("<p><a href=\"/dead-letters\">Back to the dead letters</a></p>");
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    render(&app, "Replay", "/dead-letters", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(mode: &str, key: Option<&str>, reason: Option<&str>) -> Pick {
        Pick {
            mode: mode.into(),
            key: key.map(Into::into),
            reason: reason.map(Into::into),
            queue: None,
        }
    }

    #[test]
    fn each_choice_is_the_cli_request() {
        let one = pick("one", Some("stripe:evt_1"), None)
            .request(true)
            .unwrap();
        assert!(one.dry_run);
        assert_eq!(one.selection.key.as_deref(), Some("stripe:evt_1"));
        assert!(pick("one", Some(" "), None).request(true).is_err());
        let r = pick("reason", None, Some("Group")).request(false).unwrap();
        assert_eq!(r.selection.reason.as_deref(), Some("Group"));
        assert!(!r.dry_run);
        assert!(pick("reason", None, None).request(true).is_err());
        assert!(pick("all", None, None)
            .request(true)
            .unwrap()
            .selection
            .is_everything());
        assert!(pick("drop", None, None).request(true).is_err());
    }
}
