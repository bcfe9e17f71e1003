//! enroll's adapters for Notion: the ports of `enroll-core` implemented over Notion's two HTTP
//! APIs, sharing one request budget per token.
//!
//! - [`rate`]: [`rate::TokenBucket`], the in-process [`RateBudget`](enroll_core::ports::RateBudget)
//!   (average rate, burst, and a 429 that pauses every caller).
//! - `http` (internal): the one place a request is sent: bearer token, budget, status
//!   classification into [`Failure`](enroll_core::Failure) classes, in-call retries and logging.
//! - [`retry`]: the one retry policy ([`RetryPolicy`]: attempts, backoff with jitter, the longest
//!   wait, Retry-After honoured), on `backon`. Public so callers can bound how long one call may
//!   wait, and so other retrying code (the backfill) uses the same loop.
//! - [`scim`]: [`ScimClient`], the [`Directory`](enroll_core::ports::Directory) over SCIM 2.0
//!   (RFC 7644): members, Groups, filters escaped and encoded so an address can never change a
//!   filter's meaning, batched Group changes that split on 413.
//! - [`sales`]: [`SalesClient`], the [`SalesDatabase`](enroll_core::ports::SalesDatabase) over the
//!   public API (`Notion-Version` pinned, data sources).
//! - [`probe`]: [`Refusal`], a failed call with its HTTP status, for the setup checks'
//!   read-only calls (`ScimClient::check_token`, `list_groups`, `SalesClient::retrieve_*`).

mod http;
pub mod probe;
pub mod rate;
pub mod retry;
pub mod sales;
pub mod scim;

pub use probe::Refusal;
pub use rate::TokenBucket;
pub use retry::RetryPolicy;
pub use sales::SalesClient;
pub use scim::ScimClient;
