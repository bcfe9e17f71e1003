//! The token bucket shared by every `/scim` and `/v1` request.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (Notion documents an average of 3 for its public API).
    pub per_second: f64,
    /// Bucket size: how many requests may arrive at once after a quiet spell.
    pub burst: u32,
}

#[derive(Debug)]
pub(crate) struct Bucket {
    limit: RateLimit,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst.max(1)),
            refilled: Instant::now(),
        }
    }

    /// Takes a token, or says how many whole seconds (at least 1) until one is available.
    pub(crate) fn take(&mut self) -> Result<(), u64> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        let cap = f64::from(self.limit.burst.max(1));
        self.tokens = (self.tokens + elapsed * self.limit.per_second).min(cap);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.limit.per_second <= 0.0 {
            return Err(60);
        }
        let wait = ((1.0 - self.tokens) / self.limit.per_second).ceil();
        Err((wait as u64).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn refills_over_time() {
        let mut b = Bucket::new(RateLimit {
            per_second: 0.5,
            burst: 2,
        });
        assert!(b.take().is_ok());
        assert!(b.take().is_ok());
        assert_eq!(b.take(), Err(2));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.take().is_ok());
        assert!(b.take().is_err());
    }
}
