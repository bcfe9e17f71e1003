//! The embedded default: everything AWS provides to the Lambda functions, in one process, with no
//! account and no server.
//!
//! - [`journal`]: named tables of JSON documents persisted as an append-only log in a data
//!   directory, so state survives a restart or a hard kill of the process.
//! - [`store`]: [`store::FileStore`], the idempotency store and entitlement ledger on a journal,
//!   with the same conditional-write rules as the DynamoDB adapter.
//! - [`queue`]: [`queue::EmbeddedQueue`], a queue with SQS's receive / visibility timeout /
//!   delete / redrive-to-DLQ semantics, [`queue::QueueDeadLetters`] for parking messages, and
//!   [`queue::replay`], which sends parked messages back to their source queue.

pub mod journal;
pub mod queue;
pub mod store;
