//! Every failure in enroll is one of three classes, and the class alone decides what happens to
//! the message that caused it.

use crate::redact;
use std::error::Error;
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
///
/// The error an adapter failed on is kept as the failure's [`source`](Error::source): a chain
/// of [`Cause`]s, each the redacted text of one error in the original chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Failure {
    pub class: ErrorClass,
    pub reason: String,
    #[source]
    cause: Option<Cause>,
}

/// One error in a failure's chain of causes, kept as text that went through
/// [`redact::text`].
///
/// Text rather than the boxed error itself: a failure crosses the ports, is cloned into every
/// event of a coalesced PATCH and is logged and parked as a dead-letter reason, and a boxed
/// SDK or HTTP error is neither `Clone` nor safe to print (its message may quote a URL with
/// an address in the query, a header or a body). Redacting once, when the failure is made,
/// means whoever walks the chain later (`tracing`, `anyhow`'s `{:#}`) cannot print more than
/// this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    message: String,
    source: Option<Box<Cause>>,
}

impl Cause {
    /// `error` and each of its sources, redacted.
    pub fn of(error: &(dyn Error + 'static)) -> Self {
        Self {
            message: redact::text(&error.to_string()),
            source: error.source().map(|s| Box::new(Cause::of(s))),
        }
    }

    /// This cause and those under it, outermost first.
    pub fn chain(&self) -> impl Iterator<Item = &Cause> {
        std::iter::successors(Some(self), |c| c.source.as_deref())
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|c| c as &(dyn Error + 'static))
    }
}

impl Failure {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::transient(),
            reason: reason.into(),
            cause: None,
        }
    }

    pub fn retry_after(reason: impl Into<String>, after: Option<Duration>) -> Self {
        Self {
            class: ErrorClass::Transient { retry_after: after },
            reason: reason.into(),
            cause: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            reason: reason.into(),
            cause: None,
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
            cause: None,
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

    /// Keeps `error` (and its sources), redacted, as this failure's source.
    pub fn caused_by(mut self, error: &(dyn Error + 'static)) -> Self {
        self.cause = Some(Cause::of(error));
        self
    }

    /// The redacted chain of what this failure was caused by, if an adapter kept it.
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_ref()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("request to https://api.example.com/users?email=ada%40example.com failed")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("server said 503 with Bearer ntn_secret_token for ada@example.com")]
    struct Inner;

    #[test]
    fn a_failure_keeps_its_cause_chain_redacted_and_its_class() {
        let f = Failure::retry_after("scim unavailable", Some(Duration::from_secs(2)))
            .caused_by(&Outer(Inner))
            .context("provision");
        assert_eq!(
            f.class,
            ErrorClass::Transient {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            f.to_string(),
            "transient failure: provision: scim unavailable"
        );
        let mut chain = Vec::new();
        let mut next = f.source();
        while let Some(e) = next {
            chain.push(e.to_string());
            next = e.source();
        }
        assert_eq!(chain.len(), 2, "{chain:?}");
        assert!(chain[0].starts_with("request to https://api.example.com/users?…"));
        assert!(chain[1].starts_with("server said 503 with Bearer ***"));
        for leak in ["ada", "ntn_secret_token"] {
            assert!(chain.iter().all(|c| !c.contains(leak)), "{chain:?}");
        }
        assert_eq!(f.clone().cause().map(|c| c.chain().count()), Some(2));
        assert!(Failure::permanent("bad data").source().is_none());
    }
}
