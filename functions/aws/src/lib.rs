//! enroll's AWS adapters: the ports of `enroll-core` over DynamoDB, SQS and Secrets Manager.
//!
//! - [`dynamo`]: [`DynamoStore`], the idempotency store and the entitlement ledger in one table.
//! - [`history`]: [`DynamoHistory`], every buyer's provisioning log in the same table.
//! - [`schema`]: the table's attribute and index names and [`create_table`], which builds the
//!   table as `template.yaml` does, for tests and local use.
//! - `item` (internal): mapping between domain records and DynamoDB items.
//! - [`sqs`]: [`SqsQueue`] (the next stage), [`SqsDeadLetters`] (parking a message with its
//!   reason), and [`receive_batch`] / [`delete`] for the operator's DLQ list and replay.
//! - [`rate`]: [`DynamoRateBudget`], the Notion request budget of one token shared by every
//!   Lambda instance through one item of the table.
//! - [`outbound`]: the notify FIFO queue ([`outbound::SqsDeliveryQueue`]) and the endpoints a
//!   410 disabled ([`outbound::DynamoEndpoints`]).
//! - [`secrets`]: [`load_secrets`], the tokens and signing secrets, once per cold start.
//! - [`tenants`]: [`tenants::TenantRegistry`], each seller's configuration item and secret on a
//!   deployment that serves several, and [`tenants::TenantCache`], what a function built for each.
//! - [`tenant_stage`]: [`tenant_stage::TenantStage`], a queue stage's per-seller parts and its
//!   batches split by tenant.
//! - [`error`]: [`AwsError`] and the one function that classifies SDK errors as transient or
//!   permanent.
//!
//! # Table schema
//!
//! One table; partition key `pk` (S), sort key `sk` (S); on-demand billing; TTL on `expiration`.
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | event key | `idem#<platform>:<event id>` | `idem` | `id` (S), `status` (S, `INPROGRESS` or `COMPLETED`), `expiration` (N, epoch s, TTL), `in_progress_expiration` (N, epoch ms), `payload_hash` (S), `owner` (S), `outcome` (S, once completed) |
//! | order | `order#<platform>#<order id>` | `order` | `doc` (S, the `OrderRecord` as JSON), `version` (N) |
//! | buyer | `buyer#<email>` | `buyer` | `doc` (S, the `BuyerRecord` as JSON), `version` (N), and only while `next_change_at` is set: `due_pk` = `due` (S), `due_at` (S, RFC 3339 UTC, nanoseconds, sortable) |
//! | buyer history | `buyer#<email>` | `hist#<first entry's time, RFC 3339 UTC, nanoseconds>#<8 random hex>` | `entries` (S, JSON array of `{at, stage, what}`: one append, e.g. one event's entries), `expiration` (N, epoch s, TTL: the last entry's time plus `[history] retention_days`, default 400) |
//! | identity index | `user#<Notion user id>` | `user` | `email` (S) |
//! | disabled outbound endpoint | `outbound#<endpoint key>` | `outbound` | `doc` (S, JSON: endpoint, at, reason) |
//! | tenant | `tenants` | `<name>` | `config` (S, TOML without secrets), `added_at`, `updated_at` (S): see [`tenants`] |
//! | rate budget | `rate#<short sha256 of the token>` | `rate` | `next_at` (N, epoch µs: the first untaken point of the shared schedule), `blocked_until` (N, epoch µs) |
//!
//! A tenant's records (every row above but `tenant` and `rate`) have the same keys behind its
//! prefix `t#<name>#` (`t#acme#buyer#<email>`, ...), and its `due_pk` is `t#<name>#due`; a
//! single seller's keys are exactly the ones above. The rate budget is per token, as Notion's
//! limit is, whoever holds the token.
//!
//! The global secondary index `due` (partition `due_pk`, sort `due_at`, keys only) is sparse: it
//! holds exactly the buyers whose access changes at some moment, and `buyers_due` queries
//! `due_pk = "due" AND due_at <= now`.
//!
//! Ledger writes are conditional on the `version` read (`attribute_not_exists(pk)` for a new
//! record); a lost race is a transient failure and the event is retried. A buyer with a Notion
//! user id is written in one transaction with its identity index item.
//!
//! History items share the buyer's partition but never its `buyer` sort key, so the audit's
//! scans by kind and every ledger read pass them by; `Query` with `begins_with(sk, "hist#")`
//! reads one buyer's history. Writing history is best-effort: a failed write is logged, never
//! a failed event.

pub mod dead_letters;
pub mod dynamo;
pub mod error;
pub mod history;
mod item;
pub mod lambda_env;
pub mod outbound;
pub mod rate;
pub mod schema;
pub mod secrets;
pub mod sqs;
pub mod tenant_stage;
pub mod tenants;

pub use aws_config::SdkConfig;
pub use dynamo::DynamoStore;
pub use error::AwsError;
pub use history::DynamoHistory;
pub use rate::DynamoRateBudget;
pub use schema::create_table;
pub use secrets::{load_secrets, SecretsDoc};
pub use sqs::{delete, receive_batch, ReceiveOptions, ReceivedMessage, SqsDeadLetters, SqsQueue};

/// The SDK configuration from the environment (region, credentials, and `AWS_ENDPOINT_URL`,
/// which points every client at a local moto server). Build it once per cold start.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
