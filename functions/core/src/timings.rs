//! The timings of a queue-driven stage, defined once and used by every place that runs it: the
//! Lambda functions and `template.yaml` (a test checks the template against these constants),
//! `enroll dev`, and `enroll chaos`, which kills a real `enroll dev`.
//!
//! Four numbers decide whether a crash can park a buyer:
//!
//! - the **claim**: how long an event's key (or a buyer's align lease) stays "in progress" when
//!   its holder dies. It equals the function's timeout, because a Lambda invocation cannot run
//!   longer, so a claim is never taken over while its holder may still be working;
//! - the **visibility timeout**: how long a received message stays hidden. AWS asks for at least
//!   six times the function timeout;
//! - **max receives**: failed receives before a message is parked with its last failure;
//! - the **retry backoff** for transient failures, doubling per receive.
//!
//! A message whose key is held by someone else does not fail: it is *deferred* until the claim
//! runs out (plus a margin), and a deferral does not count towards max receives. So a worker
//! killed mid-batch costs its buyers at most one claim of waiting, never their access.

use std::time::Duration;

/// How one stage's messages are retried, deferred and parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageTimings {
    /// How long a claim or lease lasts when its holder dies: the function timeout.
    pub claim: Duration,
    /// The queue's visibility timeout.
    pub visibility: Duration,
    /// Receives that ended in a transient failure before the message is parked.
    pub max_receives: u32,
    /// The wait after the first transient failure; doubled per receive.
    pub first_retry: Duration,
    /// The longest wait between two transient failures.
    pub max_retry: Duration,
    /// Added to a claim's remaining time before a deferred message comes back, so it returns
    /// after the claim expired rather than just before.
    pub defer_margin: Duration,
}

/// The provision stage: a batch of 10 events, each a few rate-limited SCIM calls.
pub const PROVISION: StageTimings = StageTimings {
    claim: Duration::from_secs(60),
    visibility: Duration::from_secs(360),
    max_receives: 5,
    first_retry: Duration::from_secs(2),
    max_retry: Duration::from_secs(60),
    defer_margin: Duration::from_secs(2),
};

/// The align stage: a batch of 10 requests, each a query and a write in the public API.
pub const ALIGN: StageTimings = StageTimings {
    claim: Duration::from_secs(30),
    visibility: Duration::from_secs(180),
    max_receives: 5,
    first_retry: Duration::from_secs(2),
    max_retry: Duration::from_secs(60),
    defer_margin: Duration::from_secs(2),
};

/// Both stages, as one runner (`enroll dev`, the Lambda functions) uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub provision: StageTimings,
    pub align: StageTimings,
}

/// What ships: the template, `enroll dev` and `enroll chaos` all run these.
pub const SHIPPED: Timings = Timings {
    provision: PROVISION,
    align: ALIGN,
};

impl Default for Timings {
    fn default() -> Self {
        SHIPPED
    }
}

impl Timings {
    /// Much shorter waits with the same relations, for tests whose subject is not timing (a
    /// replay, a log line) and would otherwise wait out real backoffs. Never for evidence: the
    /// chaos run, the crash test and the benchmarks use [`SHIPPED`].
    pub fn quick(max_receives: u32) -> Self {
        let stage = StageTimings {
            claim: Duration::from_secs(5),
            visibility: Duration::from_secs(30),
            max_receives,
            first_retry: Duration::from_millis(50),
            max_retry: Duration::from_millis(400),
            defer_margin: Duration::from_millis(100),
        };
        Self {
            provision: stage,
            align: stage,
        }
    }

    pub fn check(&self) -> Result<(), TimingsError> {
        self.provision
            .check()
            .map_err(|e| TimingsError(format!("provision: {}", e.0)))?;
        self.align
            .check()
            .map_err(|e| TimingsError(format!("align: {}", e.0)))
    }
}

/// SQS refuses a per-message delay above 15 minutes.
pub const MAX_SQS_DELAY: Duration = Duration::from_secs(900);

/// A broken relation between the timings, named so the operator knows which to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stage timings are inconsistent: {0}")]
pub struct TimingsError(pub String);

impl StageTimings {
    /// The relations the crash guarantees rest on; every runner checks them at start-up.
    pub fn check(&self) -> Result<(), TimingsError> {
        let fail = |m: String| Err(TimingsError(m));
        if self.claim.is_zero() {
            return fail("the claim must be longer than zero".into());
        }
        // A message must stay hidden for as long as its claim can be held, or a live worker's
        // message comes back while it still works on it; AWS asks for six times the timeout.
        if self.visibility < self.claim * 6 {
            return fail(format!(
                "visibility {:?} is less than 6 x the claim {:?}",
                self.visibility, self.claim
            ));
        }
        if self.max_receives < 2 {
            return fail("max receives must allow at least one retry".into());
        }
        if self.first_retry.is_zero() || self.first_retry > self.max_retry {
            return fail(format!(
                "first retry {:?} must be above zero and at most the longest retry {:?}",
                self.first_retry, self.max_retry
            ));
        }
        // A retry must come back before the queue's own visibility would bring it anyway.
        if self.max_retry > self.visibility {
            return fail(format!(
                "longest retry {:?} exceeds the visibility {:?}",
                self.max_retry, self.visibility
            ));
        }
        // A deferral must fit in one SQS delay, or it would need a second receive to finish.
        if self.claim + self.defer_margin > MAX_SQS_DELAY {
            return fail(format!(
                "claim plus margin {:?} exceeds the longest SQS delay {:?}",
                self.claim + self.defer_margin,
                MAX_SQS_DELAY
            ));
        }
        Ok(())
    }

    /// How long to wait before the next attempt after the `receive_count`-th receive failed
    /// transiently; a server's `Retry-After` wins when it asks for longer.
    pub fn retry_delay(&self, receive_count: u32, retry_after: Option<Duration>) -> Duration {
        let doublings = receive_count.saturating_sub(1).min(16);
        let backoff = self
            .first_retry
            .saturating_mul(1u32 << doublings)
            .min(self.max_retry);
        retry_after.map_or(backoff, |r| r.max(backoff).min(self.visibility))
    }

    /// How long a message whose key is held elsewhere waits: the claim's remaining time plus
    /// the margin, never more than a whole claim plus the margin.
    pub fn defer_delay(&self, claim_left: Option<Duration>) -> Duration {
        claim_left.unwrap_or(self.claim).min(self.claim) + self.defer_margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_timings_hold_their_invariants() {
        PROVISION.check().unwrap();
        ALIGN.check().unwrap();
    }

    #[test]
    fn a_visibility_shorter_than_six_claims_is_refused() {
        let t = StageTimings {
            visibility: Duration::from_secs(30),
            ..PROVISION
        };
        let e = t.check().unwrap_err();
        assert!(e.0.contains("6 x the claim"), "{e}");
    }

    #[test]
    fn retry_doubles_up_to_the_cap_and_honours_retry_after() {
        let t = PROVISION;
        assert_eq!(t.retry_delay(1, None), Duration::from_secs(2));
        assert_eq!(t.retry_delay(2, None), Duration::from_secs(4));
        assert_eq!(t.retry_delay(10, None), Duration::from_secs(60));
        assert_eq!(
            t.retry_delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn deferral_waits_for_the_claim_plus_the_margin() {
        let t = PROVISION;
        assert_eq!(
            t.defer_delay(Some(Duration::from_secs(10))),
            Duration::from_secs(12)
        );
        assert_eq!(t.defer_delay(None), Duration::from_secs(62));
        assert_eq!(
            t.defer_delay(Some(Duration::from_secs(3600))),
            Duration::from_secs(62)
        );
    }
}
