//! enroll's lab: what drives the pipeline from outside to show or prove it.
//!
//! - [`send`]: signed, real-format sample webhooks, as `stripe trigger` sends them.
//! - [`demo`]: the scripted end-to-end demonstration and its checks.
//! - [`bench`](mod@bench): `enroll bench`, throughput against the simulator: ingest per core, provision
//!   against the rate limit, backfill requests, and each function binary's start and memory.
//! - [`chaos`]: `enroll chaos`, faults, duplicates, early refunds and hard kills of the
//!   `enroll dev` it runs on the shipped defaults, with the checks that nothing was lost,
//!   applied twice, written twice to the sales database, or parked by a crash.
//! - [`moto`]: the one moto launcher (DynamoDB and SQS for the bench and the tests), on
//!   [`local_server`], a server program on a free port that never outlives this process.

use std::path::{Path, PathBuf};

pub mod bench;
pub mod chaos;
pub mod demo;
pub mod local_server;
pub mod moto;
pub mod send;

/// The workspace's root, where `.venv` and `target` are.
pub(crate) fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}
