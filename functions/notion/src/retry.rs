//! enroll's one retry policy: how many attempts, how long to wait between them, when the wait
//! the server asked for (Retry-After) is honoured and when the failure goes back to the queue
//! instead. The loop itself is [`backon`]'s; this module only says what enroll's policy is.
//!
//! The Notion clients use it for every request, and any other caller that retries a fallible
//! async step (the backfill's ledger writes, for one) calls [`retry`] with its own
//! [`RetryPolicy`] and an error type that implements [`Retryable`]:
//!
//! ```no_run
//! # use enroll_core::Failure;
//! # use enroll_notion::retry::{retry, RetryPolicy};
//! # use std::time::Duration;
//! # async fn write() -> Result<u32, Failure> { Ok(1) }
//! # async fn run() -> Result<u32, Failure> {
//! const LEDGER: RetryPolicy = RetryPolicy {
//!     attempts: 5,
//!     max_wait: Duration::from_secs(20),
//!     first_backoff: Duration::from_millis(100),
//! };
//! retry(&LEDGER, || write()).await
//! # }
//! ```

use backon::{BackoffBuilder, ExponentialBuilder, Retryable as _};
use enroll_core::{ErrorClass, Failure};
use std::future::Future;
use std::time::Duration;

/// How long one call may keep trying before it hands a transient failure back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The longest single wait. A server asking for more (Retry-After) gets no in-call retry:
    /// the failure carries its `retry_after` and the queue redelivers later.
    pub max_wait: Duration,
    /// The first backoff when the server names no wait; doubled per attempt, with jitter.
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            max_wait: Duration::from_secs(20),
            first_backoff: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// The waits after failed attempts 1, 2, ...: exponential from `first_backoff` with "equal
    /// jitter" (half fixed, half random: between half and all of `first_backoff * 2^(n-1)`),
    /// so callers that failed together do not come back together; never above `max_wait`.
    pub fn backoffs(&self) -> impl Iterator<Item = Duration> + Send + Sync + Unpin {
        let max_wait = self.max_wait;
        // backon's jitter adds up to the delay itself on top: from half the backoff, that
        // spans half to all of it.
        ExponentialBuilder::new()
            .with_min_delay(self.first_backoff / 2)
            .with_factor(2.0)
            .with_max_delay(max_wait)
            .without_max_times()
            .with_jitter()
            .build()
            .map(move |d| d.min(max_wait))
    }

    /// The wait after failed attempt `attempt` (1 for the first), drawn afresh.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.backoffs()
            .nth(attempt.max(1) as usize - 1)
            .unwrap_or(self.max_wait)
    }
}

/// What the retry loop needs to know about a failed attempt.
pub trait Retryable {
    /// Whether another attempt may succeed. A failure that is not retryable ends the loop at
    /// once, whatever attempts are left.
    fn is_retryable(&self) -> bool;

    /// The wait the failure asks for (a server's Retry-After), in place of the policy's
    /// backoff. A wait above the policy's `max_wait` ends the loop: the failure goes back to
    /// the queue, which redelivers after it.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// A [`Failure`] is retried unless permanent (an in-progress one too: its holder may finish),
/// after the `retry_after` a transient one carries.
impl Retryable for Failure {
    fn is_retryable(&self) -> bool {
        Failure::is_retryable(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        match self.class {
            ErrorClass::Transient { retry_after } => retry_after,
            _ => None,
        }
    }
}

/// What the loop decided after a retryable failure: shown to the caller of [`retry_notify`]
/// so it can log the attempt in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The attempt that failed, 1 for the first.
    pub attempt: u32,
    /// The wait before the next attempt: the failure's own, else the policy's backoff.
    pub wait: Duration,
    /// No further attempt: the attempts are used up or `wait` is above `max_wait`.
    pub give_up: bool,
}

/// Runs `op` until it succeeds, fails with an error that is not retryable, or the policy
/// gives up; the result is `op`'s last.
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, op: F) -> Result<T, E>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_notify(policy, op, |_, _| {}).await
}

/// [`retry`], calling `notify` with each retryable failure and what the loop does next
/// (before it sleeps, or before it gives up). Failures that are not retryable are returned
/// without a call.
pub async fn retry_notify<T, E, F, Fut, N>(
    policy: &RetryPolicy,
    op: F,
    mut notify: N,
) -> Result<T, E>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    N: FnMut(&E, Decision),
{
    let attempts = policy.attempts.max(1);
    let max_wait = policy.max_wait;
    let mut attempt = 0;
    op.retry(policy.backoffs())
        .sleep(tokio::time::sleep)
        .when(E::is_retryable)
        .adjust(|error, backoff| {
            attempt += 1;
            let wait = error.retry_after().or(backoff).unwrap_or(max_wait);
            let give_up = attempt >= attempts || wait > max_wait;
            notify(
                error,
                Decision {
                    attempt,
                    wait,
                    give_up,
                },
            );
            (!give_up).then_some(wait)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug, PartialEq)]
    struct Flaky {
        retryable: bool,
        after: Option<Duration>,
    }

    impl Retryable for Flaky {
        fn is_retryable(&self) -> bool {
            self.retryable
        }
        fn retry_after(&self) -> Option<Duration> {
            self.after
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            max_wait: Duration::from_secs(20),
            first_backoff: Duration::from_millis(200),
        }
    }

    /// Runs `retry_notify` over errors handed out in order (success once they run out) and
    /// returns the result, the calls made and the decisions seen.
    async fn run(errors: Vec<Flaky>, p: RetryPolicy) -> (Result<u32, Flaky>, u32, Vec<Decision>) {
        let calls = AtomicU32::new(0);
        let errors = std::sync::Mutex::new(errors.into_iter());
        let mut seen = Vec::new();
        let out = retry_notify(
            &p,
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                match errors.lock().unwrap().next() {
                    Some(e) => Err(e),
                    None => Ok(n),
                }
            },
            |_, d| seen.push(d),
        )
        .await;
        (out, calls.load(Ordering::SeqCst), seen)
    }

    fn transient() -> Flaky {
        Flaky {
            retryable: true,
            after: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_within_the_attempts() {
        let (out, calls, seen) = run(vec![transient(), transient()], policy()).await;
        assert_eq!(out, Ok(3));
        assert_eq!(calls, 3);
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|d| !d.give_up));
        assert_eq!(seen[1].attempt, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_last_attempt_with_its_error() {
        let last = Flaky {
            retryable: true,
            after: Some(Duration::from_secs(1)),
        };
        let (out, calls, seen) = run(vec![transient(), transient(), last], policy()).await;
        assert_eq!(out.unwrap_err().after, Some(Duration::from_secs(1)));
        assert_eq!(calls, 3);
        assert_eq!(seen.last().map(|d| (d.attempt, d.give_up)), Some((3, true)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_that_is_not_retryable_ends_at_once() {
        let permanent = Flaky {
            retryable: false,
            after: None,
        };
        let (out, calls, seen) = run(vec![permanent], policy()).await;
        assert!(out.is_err());
        assert_eq!(calls, 1);
        assert!(seen.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_servers_wait_is_honoured_up_to_the_maximum() {
        let asks = |secs| Flaky {
            retryable: true,
            after: Some(Duration::from_secs(secs)),
        };
        let (out, _, seen) = run(vec![asks(1)], policy()).await;
        assert_eq!(out, Ok(2));
        assert_eq!(seen[0].wait, Duration::from_secs(1));

        let (out, calls, seen) = run(vec![asks(120)], policy()).await;
        assert!(out.is_err());
        assert_eq!(calls, 1, "a wait beyond max_wait goes back to the queue");
        assert!(seen[0].give_up);
    }

    #[test]
    fn backoffs_double_with_equal_jitter_and_stay_under_the_maximum() {
        let p = RetryPolicy {
            max_wait: Duration::from_millis(1000),
            ..policy()
        };
        for _ in 0..50 {
            let waits: Vec<Duration> = p.backoffs().take(5).collect();
            for (i, w) in waits.iter().enumerate() {
                let full = p.first_backoff * (1 << i);
                // f32 arithmetic in the jitter: allow a microsecond either way.
                let slack = Duration::from_micros(1);
                assert!(*w + slack >= (full / 2).min(p.max_wait), "{i}: {w:?}");
                assert!(*w <= full.min(p.max_wait) + slack, "{i}: {w:?}");
            }
            assert_eq!(waits[4], p.max_wait);
        }
    }

    #[test]
    fn failures_retry_unless_permanent_after_their_retry_after() {
        let f = Failure::retry_after("429", Some(Duration::from_secs(2)));
        assert!(Retryable::is_retryable(&f));
        assert_eq!(Retryable::retry_after(&f), Some(Duration::from_secs(2)));
        assert!(Retryable::is_retryable(&Failure::in_progress("held")));
        assert!(!Retryable::is_retryable(&Failure::permanent("bad")));
    }
}
