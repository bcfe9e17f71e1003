//! What a setup check (`enroll doctor`) needs from a call that failed: the HTTP status beside
//! the failure, since a 401, a 404 and no answer at all each call for a different fix.

use crate::http::HttpError;
use enroll_core::Failure;

/// A refused or unanswered call.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The status the server answered with; `None` when nothing answered (no connection, a
    /// timeout).
    pub status: Option<u16>,
    pub failure: Failure,
}

impl Refusal {
    pub(crate) fn new(e: HttpError, context: &str) -> Self {
        Self {
            status: e.status.map(|s| s.as_u16()),
            failure: e.failure.context(context),
        }
    }
}
