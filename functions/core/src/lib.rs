//! The domain of enroll, free of AWS SDK and HTTP dependencies.
//!
//! - [`ids`]: newtypes for every identifier (`BuyerEmail`, `EventKey`, `NotionUserId`, ...), each
//!   with a checking constructor so an invalid value cannot travel.
//! - [`event`]: the normalised [`event::OrderEvent`] every platform's webhook becomes, and the
//!   queue messages between stages.
//! - [`catalog`] and [`config`]: the seller's products, their Groups, and the one configuration
//!   format shared by the local runner and the Lambda functions.
//! - [`ledger`]: the entitlement ledger, the source of truth for which Groups a buyer should have.
//! - [`idempotency`]: the claim / complete / release state machine for event keys.
//! - [`ports`]: the small traits adapters implement (stores, queues, SCIM, the sales database,
//!   the rate budget), with [`error`] classifying every failure as transient, permanent or in
//!   progress.
//! - [`dead_letters`]: the dead-letter admin port (list, replay, delete parked messages, with
//!   filters) that both queue adapters implement and every operator surface uses.
//! - [`history`]: every buyer's provisioning log, the [`ports::HistoryLog`] it is kept in, and
//!   [`history::record`], which never lets a failed write fail an event.
//! - [`metrics`]: the names and units of every metric enroll emits, and the in-memory recorder
//!   they are counted in (rendered as Embedded Metric Format by the Lambda functions).
//! - [`outbound`]: the signed events told to the seller's endpoints after an access change, the
//!   outbox that makes them durable, and the retry policy of their delivery.
//! - [`redact`]: what may appear in a log line in place of an email or a body.
//! - [`clock`]: the [`clock::Clock`] port the stages read the time from, so tests advance time
//!   instead of sleeping.
//! - [`timings`]: claim, visibility, receive limit and backoff of each stage, defined once.

pub mod batch;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod dead_letters;
pub mod error;
pub mod event;
pub mod history;
pub mod idempotency;
pub mod ids;
pub mod ledger;
pub mod metrics;
pub mod outbound;
pub mod ports;
pub mod redact;
pub mod tenant;
pub mod timings;

pub use error::{Cause, ErrorClass, Failure};
