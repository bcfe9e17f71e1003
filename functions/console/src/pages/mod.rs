//! One module per page. Each handler asks the [`crate::Source`] and renders with
//! [`crate::html`]; a failure becomes the same page with the error in words.

pub mod activity;
pub mod audit;
pub mod buyers;
pub mod catalog;
pub mod dlq;
pub mod setup;

use crate::html::{self, esc};
use crate::App;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// A page: its title, the navigation entry it belongs to, and its body (or what went wrong).
pub fn render(app: &App, title: &str, current: &str, body: anyhow::Result<String>) -> Response {
    let source = app.source.describe();
    match body {
        Ok(body) => Html(html::page(title, current, &source, &body)).into_response(),
        Err(e) => {
            let body = html::notice("error", &format!("{e:#}"));
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(html::page(title, current, &source, &body)),
            )
                .into_response()
        }
    }
}

pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(html::bare_page(
            "Not found",
            "<p>No such page. <a href=\"/\">Buyers</a></p>",
        )),
    )
        .into_response()
}

/// A checkbox's form value: present and `on` (or `1`) when ticked.
pub fn ticked(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("on" | "1" | "true"))
}

/// `yes`, `no` or `unknown`, for an optional yes/no.
pub fn yes_no(v: Option<bool>) -> String {
    esc(match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    })
}

/// A submit button.
pub fn button(label: &str, class: &str) -> String {
    format!(
        "<button type=\"submit\" class=\"{}\">{}</button>",
        esc(class),
        esc(label)
    )
}
