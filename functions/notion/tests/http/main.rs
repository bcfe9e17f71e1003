//! The clients against a local wiremock server: every request is recorded, every answer scripted.

mod retry;
mod sales;
mod scim;
mod support;
