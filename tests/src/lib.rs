//! End-to-end tests.

pub mod lambda_watch;
pub mod moto;
