//! The clients against a local capture server: every request is recorded, every answer scripted.

mod retry;
mod sales;
mod scim;
mod support;
