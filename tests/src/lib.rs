//! End-to-end tests.

pub mod moto;
