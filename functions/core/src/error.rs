//! Every failure in enroll is one of three classes, and the class alone decides what happens to
//! the message that caused it.

use std::fmt;
use std::time::Duration;

/// What the pipeline does with a failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 429, 5xx, timeouts, throttled storage: retry later (after `retry_after` when the server
    /// said so) through the queue's normal redelivery.
    Transient { retry_after: Option<Duration> },
    /// Bad data, an unknown Group, a 4xx that will never succeed: park the message in the
    /// dead-letter queue at once, with the reason, and burn no retries.
    Permanent,
    /// Another invocation holds the event's key (or the buyer's lease): come back when its
    /// claim runs out (`claim_left`, when known), quietly. Not an error, and not a failed
    /// receive: see [`crate::timings`].
    InProgress { claim_left: Option<Duration> },
}

impl ErrorClass {
    pub fn transient() -> Self {
        ErrorClass::Transient { retry_after: None }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ErrorClass::Transient { .. } => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::InProgress { .. } => "in_progress",
        }
    }
}

/// A classified failure with a reason an operator can read. The reason never carries a secret,
/// a full email address or a request body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Failure {
    pub class: ErrorClass,
    pub reason: String,
}

impl Failure {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::transient(),
            reason: reason.into(),
        }
    }

    pub fn retry_after(reason: impl Into<String>, after: Option<Duration>) -> Self {
        Self {
            class: ErrorClass::Transient { retry_after: after },
            reason: reason.into(),
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            reason: reason.into(),
        }
    }

    pub fn in_progress(reason: impl Into<String>) -> Self {
        Self::held_for(reason, None)
    }

    /// In progress elsewhere, with the time the holder's claim has left.
    pub fn held_for(reason: impl Into<String>, claim_left: Option<Duration>) -> Self {
        Self {
            class: ErrorClass::InProgress { claim_left },
            reason: reason.into(),
        }
    }

    pub fn is_in_progress(&self) -> bool {
        matches!(self.class, ErrorClass::InProgress { .. })
    }

    pub fn is_permanent(&self) -> bool {
        self.class == ErrorClass::Permanent
    }

    pub fn is_retryable(&self) -> bool {
        !self.is_permanent()
    }

    /// Prefixes the reason with where it happened, keeping the class.
    pub fn context(mut self, what: &str) -> Self {
        self.reason = format!("{what}: {}", self.reason);
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failure: {}", self.class.name(), self.reason)
    }
}
