//! Inbound webhooks from checkout platforms, verified and normalised into
//! [`enroll_core::event::OrderEvent`]; and genuinely signed sample requests for `enroll send`.
//!
//! Pure code: no HTTP client, no AWS. The ingest Lambda hands [`receive`] the raw request and
//! enqueues what comes back; the CLI posts what [`sample`] builds.
//!
//! - `sign` (internal): the one place HMAC-SHA256, constant-time comparison, secret rotation and the
//!   signed-timestamp window live. Every platform module calls it; none repeats it.
//! - `extract` (internal): lenient field access over JSON and form bodies, and the checked
//!   conversions into the core newtypes, so every email goes through `BuyerEmail::parse` and
//!   every id through its newtype.
//! - One module per platform, each documenting its verification, handled events, idempotency
//!   key, order id and product references: [`stripe`], [`standard`] (Standard Webhooks, e.g.
//!   Polar), [`lemonsqueezy`], [`paddle`], [`shopify`], [`gumroad`], [`thrivecart`].
//! - [`mapped`]: any other checkout, described in the configuration (`kind = "mapped"`):
//!   an HMAC or a shared secret, and where each field is in the body.
//!
//! # Rules every platform follows
//!
//! 1. No configured secret: 401 `no secret configured for <platform>`.
//! 2. The signature (or shared secret) is checked over the raw body bytes before anything is
//!    parsed, in constant time, against every configured secret so a seller can rotate.
//!    Missing, malformed or wrong: 401. A signed timestamp outside the tolerance (past or
//!    future): 401. The tolerance is `cfg.tolerance_secs`, else 300 s on every platform.
//! 3. Only then is the body parsed. Unparseable: 400. A handled event missing its order id, or a
//!    purchase missing the buyer's email: 400 naming the field. An invalid email: 400.
//! 4. A genuine event of a type enroll does not act on is [`Accepted::Ignored`], so the caller
//!    answers 2xx and the platform stops retrying.
//! 5. `occurred_at` comes from the payload's own timestamp, else the signed timestamp; the
//!    wall clock only where a platform sends neither (noted per platform).
//!
//! # Decisions that hold across platforms
//!
//! - **Subscriptions are the order.** Where a purchase belongs to a subscription, the order id
//!   is the subscription id, so the cancellation (which names only the subscription) revokes the
//!   same order; refunds use the same rule. Renewals then land on the same order with a new
//!   event key.
//! - **Partial refunds are ignored** where the payload says a refund is partial (Stripe,
//!   Lemon Squeezy, Paddle): a revocation is all-or-nothing for the order. Where it cannot say
//!   (Shopify, ThriveCart), every refund revokes.
//! - **Emails on revocations are optional.** A refund, chargeback or cancellation identifies the
//!   order; an email there is only a hint, so an invalid one is dropped rather than blocking the
//!   revocation with a 400.
//! - **Product references** are every reference the payload offers (price, product, variant,
//!   SKU, ...), deduplicated, in payload order. Values a [`PlatformProductRef`] cannot hold
//!   (over 512 bytes, control characters) are skipped. A purchase with no reference is still
//!   accepted: provision records it and the operator decides, instead of the platform retrying
//!   an event that can never succeed. Mapped platforms are the exception: there a missing
//!   product is a 400, since it almost always means a wrong pointer in the configuration.
//!
//! [`PlatformProductRef`]: enroll_core::ids::PlatformProductRef

mod extract;
pub mod gumroad;
pub mod lemonsqueezy;
pub mod mapped;
pub mod paddle;
pub mod shopify;
mod sign;
pub mod standard;
pub mod stripe;
pub mod thrivecart;

use chrono::{DateTime, Utc};
use enroll_core::config::PlatformConfig;
use enroll_core::event::{EventKind, OrderEvent};
use enroll_core::ids::Platform;
use enroll_core::metrics::Reason;

/// One inbound HTTP request, as the ingest function received it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Not checked here: the caller answers `HEAD` (ThriveCart's registration probe) and routes
    /// only `POST` bodies to [`receive`].
    pub method: &'a str,
    /// The raw query string, without the `?`.
    pub query: Option<&'a str>,
    /// Header names lowercased.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Inbound<'_> {
    /// The first header of that name. Names are compared case-insensitively in case a caller
    /// forgot to lowercase them.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request that proved genuine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    Event(OrderEvent),
    /// Genuine but not acted on: answer 2xx so the platform stops retrying.
    Ignored {
        event_type: String,
        reason: String,
    },
}

/// A request refused. `status` is 400 (genuine but unusable) or 401 (not proven genuine); the
/// reason names what is wrong and never holds a secret or body content beyond a field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct Rejected {
    pub status: u16,
    pub reason: String,
    /// Genuinely signed, but the signed timestamp is outside the tolerance (a 401 too).
    pub stale: bool,
}

impl Rejected {
    pub(crate) fn unauthorized(reason: impl Into<String>) -> Self {
        Self {
            status: 401,
            reason: reason.into(),
            stale: false,
        }
    }

    pub(crate) fn stale(reason: impl Into<String>) -> Self {
        Self {
            stale: true,
            ..Self::unauthorized(reason)
        }
    }

    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        Self {
            status: 400,
            reason: reason.into(),
            stale: false,
        }
    }

    /// The `Reason` dimension of the `WebhooksRejected` metric.
    pub fn metric_reason(&self) -> Reason {
        match (self.status, self.stale) {
            (_, true) => Reason::Stale,
            (401, false) => Reason::Signature,
            _ => Reason::Malformed,
        }
    }
}

/// Verifies one webhook request and normalises it. See the crate documentation for the rules
/// and each platform module for its specifics.
pub fn receive(
    platform: Platform,
    cfg: &PlatformConfig,
    req: &Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<Accepted, Rejected> {
    match platform {
        Platform::Stripe => stripe::receive(cfg, req, now),
        Platform::LemonSqueezy => lemonsqueezy::receive(cfg, req, now),
        Platform::Paddle => paddle::receive(cfg, req, now),
        Platform::Shopify => shopify::receive(cfg, req, now),
        Platform::Gumroad => gumroad::receive(cfg, req, now),
        Platform::ThriveCart => thrivecart::receive(cfg, req, now),
        Platform::Standard => standard::receive(cfg, req, now),
        Platform::Mapped(_) => mapped::receive(platform, cfg, req, now),
    }
}

/// What `enroll send` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub kind: EventKind,
    /// A platform product reference: it lands where the platform carries one (a Stripe
    /// metadata entry, a Paddle price id, a Shopify SKU, ...), so `receive` returns it.
    pub product: String,
    pub email: String,
    pub name: Option<String>,
    /// Defaults to a made-up id in the platform's format, derived from `now`.
    pub order_id: Option<String>,
    /// Defaults to a made-up id derived from `now` and the kind. Ignored where the platform's
    /// key is derived from the payload (Lemon Squeezy, Gumroad, ThriveCart).
    pub event_id: Option<String>,
}

/// A request ready to post to `/webhooks/{platform}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The query string to append, without the `?` (Gumroad's `secret=`).
    pub query: Option<String>,
    /// Including `content-type`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Builds a real-format request for `s`, signed (or carrying the shared secret) exactly as the
/// platform would, dated `now`; [`receive`] accepts it with `secret` configured.
///
/// Never fails: the inputs are not validated (an invalid email yields a request `receive`
/// refuses with 400, which is what a test of that case wants). Where a platform sends no
/// chargeback webhook (Lemon Squeezy, Shopify, ThriveCart) a chargeback sample is the
/// platform's refund event; [`sample_kinds`] lists what each platform sends natively.
///
/// A mapped platform's request depends on its configuration: use [`sample_configured`]. Here
/// it is rendered from no configuration at all, which `receive` refuses.
pub fn sample(platform: Platform, s: &Sample, secret: &str, now: DateTime<Utc>) -> Outgoing {
    match platform {
        Platform::Stripe => stripe::sample(s, secret, now),
        Platform::LemonSqueezy => lemonsqueezy::sample(s, secret, now),
        Platform::Paddle => paddle::sample(s, secret, now),
        Platform::Shopify => shopify::sample(s, secret, now),
        Platform::Gumroad => gumroad::sample(s, secret, now),
        Platform::ThriveCart => thrivecart::sample(s, secret, now),
        Platform::Standard => standard::sample(s, secret, now),
        Platform::Mapped(_) => mapped::sample(&PlatformConfig::default(), s, secret, now),
    }
}

/// [`sample`] for a platform configured as `cfg`: what `enroll send` posts. A built-in
/// platform's request does not depend on its configuration; a mapped platform's is built from
/// its fields and signed as its `auth` says.
pub fn sample_configured(
    platform: Platform,
    cfg: &PlatformConfig,
    s: &Sample,
    secret: &str,
    now: DateTime<Utc>,
) -> Outgoing {
    match platform {
        Platform::Mapped(_) => mapped::sample(cfg, s, secret, now),
        builtin => sample(builtin, s, secret, now),
    }
}

/// The kinds a platform's own webhooks can express (and so [`sample`] renders faithfully).
pub fn sample_kinds(platform: Platform) -> &'static [EventKind] {
    use EventKind::*;
    match platform {
        Platform::LemonSqueezy | Platform::Shopify | Platform::ThriveCart => {
            &[Purchase, Refund, Cancel]
        }
        Platform::Stripe
        | Platform::Paddle
        | Platform::Gumroad
        | Platform::Standard
        | Platform::Mapped(_) => &[Purchase, Refund, Chargeback, Cancel],
    }
}
