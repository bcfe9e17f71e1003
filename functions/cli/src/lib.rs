//! The `enroll` command and the embedded default it runs on.
//!
//! - [`runtime`]: the whole pipeline in one process: the embedded store and queues, the same
//!   ingest / provision / align handlers the Lambda functions run, the workers that drive them,
//!   and the Notion simulator when no real workspace is configured.
//! - [`server`]: the local webhook endpoint (`/webhooks/{platform}`) and its admin routes.
//! - [`seed`]: a simulated workspace that matches a configuration (its Groups and database).
//! - [`send`]: signed, real-format sample webhooks, as `stripe trigger` sends them.
//! - [`demo`]: the scripted end-to-end demonstration and its checks.
//! - [`status`]: one buyer's grants, Notion user id, Groups and sales record.
//! - [`config_file`]: loading the configuration file (the example in `infra/` by default).

pub mod config_file;
pub mod demo;
pub mod runtime;
pub mod seed;
pub mod send;
pub mod server;
pub mod status;
