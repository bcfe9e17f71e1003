//! The embedded default: everything AWS provides to the Lambda functions, in one process, with no
//! account and no server, and the local listeners `enroll dev` serves.
//!
//! - [`journal`]: named tables of JSON documents persisted as an append-only log in a data
//!   directory, so state survives a restart or a hard kill of the process.
//! - [`store`]: [`store::FileStore`], the idempotency store and entitlement ledger on a journal,
//!   with the same conditional-write rules as the DynamoDB adapter.
//! - [`queue`]: [`queue::EmbeddedQueue`], a queue with SQS's receive / visibility timeout /
//!   delete / redrive-to-DLQ semantics, and [`queue::QueueDeadLetters`] for parking messages.
//! - [`dead_letters`]: the dead-letter admin port (list, replay, delete) on those queues.
//! - [`runtime`]: the whole pipeline in one process: the store and queues, the same ingest /
//!   provision / align handlers the Lambda functions run, the workers that drive them, and the
//!   Notion simulator when no real workspace is configured.
//! - [`server`]: the webhook listener (`/webhooks/{platform}`, `/healthz`).
//! - [`admin`]: the token-guarded loopback admin listener, with `admin.token` and `dev.json`
//!   in the data directory; [`admin_client`] finds and calls it.
//! - [`status`]: one buyer's grants, Notion user id, Groups, sales record, parked events and
//!   history, from the runtime or its data directory.
//! - [`seed`]: a simulated workspace that matches a configuration (its Groups and database).
//! - [`tenants`]: several sellers in one process (`enroll dev --tenants DIR`), one runtime
//!   each, behind one webhook listener that routes `/t/{tenant}/webhooks/{platform}`.
//!   [`tenant_files`] manages that directory (`enroll tenant add | list | remove`).
//! - [`config_file`]: loading the configuration file (the example in `infra/` by default).

pub mod admin;
pub mod admin_client;
pub mod config_file;
pub mod dead_letters;
pub mod journal;
pub mod outbound;
pub mod queue;
pub mod runtime;
pub mod seed;
pub mod server;
pub mod status;
pub mod store;
pub mod tenant_files;
pub mod tenants;

use enroll_notion::rate::TokenBucket;

/// The pace of an operator's replay: `rate` messages per second, or as fast as it goes.
pub fn pace(rate: Option<f64>) -> anyhow::Result<Option<TokenBucket>> {
    match rate {
        None => Ok(None),
        Some(r) if r.is_finite() && r > 0.0 => Ok(Some(TokenBucket::new(r, 1))),
        Some(_) => anyhow::bail!("--rate must be a positive number of messages per second"),
    }
}
