//! The one place where AWS SDK errors are classified as transient or permanent.
//!
//! Every adapter call turns its `SdkError` into an [`AwsError`] through [`classify`], which keeps
//! the SDK error as its source; `From<AwsError> for Failure` then hands the pipeline the class
//! and a reason an operator can read.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use enroll_core::Failure;
use std::error::Error as StdError;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Error codes that mean "slow down and try again" across DynamoDB, SQS and Secrets Manager.
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    // SQS: too many in-flight messages, or KMS throttling the queue's encryption key.
    "OverLimit",
    "KmsThrottled",
];

/// Codes a 4xx status carries that still succeed on a retry.
const RETRYABLE_CLIENT_CODES: &[&str] = &[
    // Another transaction touched the item; DynamoDB asks the caller to retry.
    "TransactionConflictException",
    "TransactionInProgressException",
    "RequestTimeout",
    "RequestTimeoutException",
    // The credentials provider refreshes expired session credentials on the next call.
    "ExpiredToken",
    "ExpiredTokenException",
    "IDPCommunicationError",
];

/// A failed AWS call, with the SDK's error as its source.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// Throttling, a 5xx, a timeout or a network failure: the same call may succeed later.
    #[error("{operation} failed ({code}), retryable")]
    Retryable {
        operation: &'static str,
        code: String,
        #[source]
        source: BoxError,
    },
    /// Validation, a missing table or queue, access denied: retrying changes nothing.
    #[error("{operation} rejected ({code})")]
    Rejected {
        operation: &'static str,
        code: String,
        #[source]
        source: BoxError,
    },
    /// A request this crate built is invalid: a bug, not a condition to wait out.
    #[error("invalid request: {0}")]
    Request(#[from] aws_sdk_dynamodb::error::BuildError),
    /// A stored item or secret does not have the shape this crate writes.
    #[error("malformed {what}: {why}")]
    Malformed { what: String, why: String },
}

impl AwsError {
    pub fn malformed(what: impl Into<String>, why: impl Into<String>) -> Self {
        AwsError::Malformed {
            what: what.into(),
            why: why.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, AwsError::Retryable { .. })
    }
}

impl From<AwsError> for Failure {
    fn from(e: AwsError) -> Self {
        // The service's message names the problem ("Requested resource not found", "The
        // security token included in the request is expired") and never echoes item values.
        let detail = match &e {
            AwsError::Retryable { source, .. } | AwsError::Rejected { source, .. } => {
                first_message(source.as_ref())
            }
            AwsError::Malformed { .. } | AwsError::Request(_) => None,
        };
        let reason = match detail {
            Some(d) => format!("{e}: {d}"),
            None => e.to_string(),
        };
        let failure = if e.is_retryable() {
            Failure::transient(reason)
        } else {
            Failure::permanent(reason)
        };
        // The whole chain (operation, SDK error, HTTP or service error), redacted.
        failure.caused_by(&e)
    }
}

/// The innermost message of an error chain: SDK errors wrap the useful text a few levels down.
fn first_message(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    let text = current.to_string();
    (!text.is_empty() && text != e.to_string()).then_some(text)
}

/// Classifies any AWS SDK operation error.
pub fn classify<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let (retryable, code) = match &err {
        SdkError::ConstructionFailure(_) => (false, "ConstructionFailure".to_owned()),
        SdkError::TimeoutError(_) => (true, "Timeout".to_owned()),
        SdkError::DispatchFailure(_) => (true, "DispatchFailure".to_owned()),
        // An unreadable response (truncated body, proxy error page) says nothing about the
        // request itself.
        SdkError::ResponseError(_) => (true, "ResponseError".to_owned()),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown").to_owned();
            (is_retryable_service_error(&code, status), code)
        }
        _ => (true, err.code().unwrap_or("Unknown").to_owned()),
    };
    let source: BoxError = Box::new(err);
    if retryable {
        AwsError::Retryable {
            operation,
            code,
            source,
        }
    } else {
        AwsError::Rejected {
            operation,
            code,
            source,
        }
    }
}

fn is_retryable_service_error(code: &str, status: Option<u16>) -> bool {
    // Query-protocol services (older SQS) prefix codes: `AWS.SimpleQueueService.OverLimit`.
    let short = code.rsplit('.').next().unwrap_or(code);
    THROTTLING_CODES.contains(&short)
        || RETRYABLE_CLIENT_CODES.contains(&short)
        || status.is_some_and(|s| s >= 500 || s == 429)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_5xx_retry_validation_does_not() {
        assert!(is_retryable_service_error(
            "ProvisionedThroughputExceededException",
            Some(400)
        ));
        assert!(is_retryable_service_error("ThrottlingException", Some(400)));
        assert!(is_retryable_service_error(
            "RequestLimitExceeded",
            Some(400)
        ));
        assert!(is_retryable_service_error(
            "AWS.SimpleQueueService.OverLimit",
            Some(403)
        ));
        assert!(is_retryable_service_error("InternalServerError", Some(500)));
        assert!(is_retryable_service_error("Whatever", Some(503)));
        assert!(!is_retryable_service_error(
            "ValidationException",
            Some(400)
        ));
        assert!(!is_retryable_service_error(
            "ResourceNotFoundException",
            Some(400)
        ));
        assert!(!is_retryable_service_error(
            "AccessDeniedException",
            Some(400)
        ));
    }

    #[test]
    fn malformed_items_are_permanent() {
        let f: Failure = AwsError::malformed("order item", "missing doc").into();
        assert!(f.is_permanent());
        assert!(f.reason.contains("missing doc"));
    }
}
