//! End-to-end tests.

pub mod enroll_bin;
pub mod lambda_watch;
pub mod moto;
