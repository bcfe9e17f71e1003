//! The `enroll` command and the embedded default it runs on.
//!
//! - [`runtime`]: the whole pipeline in one process: the embedded store and queues, the same
//!   ingest / provision / align handlers the Lambda functions run, the workers that drive them,
//!   and the Notion simulator when no real workspace is configured.
//! - [`server`]: the local webhook endpoint (`/webhooks/{platform}`) and the token-guarded
//!   loopback admin listener, with `admin.token` and `dev.json` in the data directory.
//! - [`seed`]: a simulated workspace that matches a configuration (its Groups and database).
//! - [`send`]: signed, real-format sample webhooks, as `stripe trigger` sends them.
//! - [`demo`]: the scripted end-to-end demonstration and its checks.
//! - [`link`]: `enroll link`, making a second email resolve to a buyer enroll already knows.
//! - [`ops`]: the operator's tools: `dlq list|replay`, `backfill plan|apply`, `audit`, on the
//!   embedded default or a deployed stack.
//! - [`status`]: one buyer's grants, Notion user id, Groups and sales record.
//! - [`summary`]: `enroll status --summary`, the pipeline's counters from a running `enroll dev`
//!   or from a stack's CloudWatch metrics, and the line `enroll dev` prints each minute.
//! - [`chaos`]: `enroll chaos`, faults, duplicates, early refunds and hard kills of the
//!   `enroll dev` it runs on the shipped defaults, with the checks that nothing was lost,
//!   applied twice, written twice to the sales database, or parked by a crash.
//! - [`config_file`]: loading the configuration file (the example in `infra/` by default).
//! - [`bench`]: `enroll bench`, throughput against the simulator: ingest per core, provision
//!   against the rate limit, backfill requests, and each function binary's start and memory.

pub mod bench;
pub mod chaos;
pub mod config_file;
pub mod demo;
pub mod link;
pub mod ops;
pub mod runtime;
pub mod seed;
pub mod send;
pub mod server;
pub mod status;
pub mod summary;
