//! enroll's lab: what drives the pipeline from outside to show or prove it.
//!
//! - [`send`]: signed, real-format sample webhooks, as `stripe trigger` sends them.
//! - [`demo`]: the scripted end-to-end demonstration and its checks.
//! - [`bench`]: `enroll bench`, throughput against the simulator: ingest per core, provision
//!   against the rate limit, backfill requests, and each function binary's start and memory.
//! - [`chaos`]: `enroll chaos`, faults, duplicates, early refunds and hard kills of the
//!   `enroll dev` it runs on the shipped defaults, with the checks that nothing was lost,
//!   applied twice, written twice to the sales database, or parked by a crash.

pub mod bench;
pub mod chaos;
pub mod demo;
pub mod send;
