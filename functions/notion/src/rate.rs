//! The in-process request budget: a token bucket (kept as GCRA, the "virtual scheduling" form of
//! it) shared by every caller of one Notion token.

use enroll_core::config::RateLimit;
use enroll_core::ports::RateBudget;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Lets `requests_per_second` through on average and up to `burst` at once.
///
/// Each caller reserves the next free slot under a short lock and then sleeps outside it, so
/// callers leave in the order they arrived, no one spins, and a sleeping caller never blocks
/// [`RateBudget::back_off`]. Slots are kept as fractional nanoseconds from a fixed origin rather
/// than summed `Duration`s, so rates like 3/s (333,333,333.3 ns apart) or 1000/s lose nothing
/// to rounding however many requests pass.
#[derive(Debug)]
pub struct TokenBucket {
    origin: Instant,
    /// Nanoseconds between two tokens.
    interval: f64,
    /// How far ahead of the steady schedule a burst may run, in nanoseconds.
    tolerance: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// When the next request would be due if nobody ever burst ("theoretical arrival time").
    due: f64,
    /// Nobody goes before this, set by a 429.
    paused_until: f64,
}

impl TokenBucket {
    /// # Panics
    /// If `requests_per_second` is not a positive finite number; configuration validation
    /// refuses such a value before it gets here.
    pub fn new(requests_per_second: f64, burst: u32) -> Self {
        assert!(
            requests_per_second.is_finite() && requests_per_second > 0.0,
            "requests_per_second must be positive and finite"
        );
        let interval = 1e9 / requests_per_second;
        Self {
            origin: Instant::now(),
            interval,
            tolerance: interval * f64::from(burst.max(1) - 1),
            state: Mutex::new(State {
                due: 0.0,
                paused_until: 0.0,
            }),
        }
    }

    /// The bucket for one budget: `config.rate.scim()` or `config.rate.api()`.
    pub fn from_config(limit: RateLimit) -> Self {
        Self::new(limit.requests_per_second, limit.burst)
    }

    fn now(&self) -> f64 {
        self.origin.elapsed().as_nanos() as f64
    }

    fn at(&self, nanos: f64) -> Instant {
        self.origin + Duration::from_nanos(nanos.max(0.0).ceil() as u64)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two numbers updated together; a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the earliest slot the schedule allows and returns when it starts.
    fn reserve(&self) -> f64 {
        let now = self.now();
        let mut s = self.lock();
        let start = now.max(s.due - self.tolerance).max(s.paused_until);
        s.due = s.due.max(start) + self.interval;
        start
    }
}

/// A budget shared by every client of one token, built from that token's limit:
/// `config.rate.scim()` for the SCIM token, `config.rate.api()` for the integration token.
pub fn from_config(limit: RateLimit) -> Arc<dyn RateBudget> {
    Arc::new(TokenBucket::from_config(limit))
}

#[async_trait::async_trait]
impl RateBudget for TokenBucket {
    async fn acquire(&self) {
        loop {
            let start = self.reserve();
            tokio::time::sleep_until(self.at(start)).await;
            // A back_off that arrived while we slept moves everyone, us included: take a new
            // slot after the pause instead of sending into a 429.
            if self.now() >= self.lock().paused_until {
                return;
            }
        }
    }

    async fn back_off(&self, retry_after: Duration) {
        let until = self.now() + retry_after.as_nanos() as f64;
        let mut s = self.lock();
        if until > s.paused_until {
            s.paused_until = until;
        }
        // Resume at the steady rate: a burst straight after a 429 would only earn another one.
        s.due = s.due.max(s.paused_until + self.tolerance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn_acquire(bucket: &Arc<TokenBucket>, t0: Instant) -> tokio::task::JoinHandle<Duration> {
        let b = bucket.clone();
        tokio::spawn(async move {
            b.acquire().await;
            t0.elapsed()
        })
    }

    async fn finish_times(bucket: Arc<TokenBucket>, n: usize) -> Vec<Duration> {
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..n).map(|_| spawn_acquire(&bucket, t0)).collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out.sort();
        out
    }

    #[tokio::test(start_paused = true)]
    async fn burst_goes_at_once_then_the_rate_holds() {
        let bucket = Arc::new(TokenBucket::new(3.0, 3));
        let times = finish_times(bucket, 9).await;
        assert!(times[..3].iter().all(|t| *t < Duration::from_millis(1)));
        // The 4th waits one interval, the 9th six: 9 requests at 3/s with a burst of 3 take 2 s.
        let ms = |t: Duration| t.as_millis();
        assert!((333..=335).contains(&ms(times[3])), "{times:?}");
        assert!((1999..=2001).contains(&ms(times[8])), "{times:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_thousand_per_second_loses_no_precision() {
        let bucket = Arc::new(TokenBucket::new(1000.0, 1));
        let t0 = Instant::now();
        for _ in 0..5000 {
            bucket.acquire().await;
        }
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(4999) && took <= Duration::from_millis(5001),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_refills_only_up_to_the_burst() {
        let bucket = Arc::new(TokenBucket::new(10.0, 2));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let times = finish_times(bucket, 4).await;
        assert!(times[1] < Duration::from_millis(1), "{times:?}");
        assert!((100..=101).contains(&times[2].as_millis()), "{times:?}");
        assert!((200..=201).contains(&times[3].as_millis()), "{times:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn back_off_delays_every_caller_including_those_already_waiting() {
        let bucket = Arc::new(TokenBucket::new(2.0, 1));
        bucket.acquire().await;
        let t0 = Instant::now();
        // This one already holds a slot 500 ms out when the 429 arrives.
        let waiting = spawn_acquire(&bucket, t0);
        tokio::time::sleep(Duration::from_millis(10)).await;
        bucket.back_off(Duration::from_secs(5)).await;
        let later: Vec<_> = (0..3).map(|_| spawn_acquire(&bucket, t0)).collect();
        let mut all = vec![waiting.await.unwrap()];
        for t in later {
            all.push(t.await.unwrap());
        }
        all.sort();
        assert!(all[0] >= Duration::from_millis(5010), "{all:?}");
        // After the pause the steady rate resumes, with no burst.
        for pair in all.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(499), "{all:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_scim_and_api_budgets_each_keep_their_own_limit() {
        let mut rate = enroll_core::config::RateConfig::uniform(3.0, 3);
        rate.scim.requests_per_second = Some(100.0);
        rate.api.requests_per_second = Some(1.0);
        rate.api.burst = Some(1);
        let scim = Arc::new(TokenBucket::from_config(rate.scim()));
        let api = Arc::new(TokenBucket::from_config(rate.api()));
        // A burst of align requests queues 19 s deep on the API budget...
        let t0 = Instant::now();
        let align: Vec<_> = (0..20).map(|_| spawn_acquire(&api, t0)).collect();
        tokio::task::yield_now().await;
        // ...while provision's SCIM requests go at 100/s after a burst of 3: 53 in 0.5 s.
        let scim_times = finish_times(scim, 53).await;
        assert!(
            scim_times[52] <= Duration::from_millis(501),
            "{scim_times:?}"
        );
        let mut align_times = Vec::new();
        for t in align {
            align_times.push(t.await.unwrap());
        }
        align_times.sort();
        assert!(
            (18_999..=19_001).contains(&align_times[19].as_millis()),
            "{align_times:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_back_off_never_shortens_a_longer_one() {
        let bucket = TokenBucket::new(100.0, 10);
        let t0 = Instant::now();
        bucket.back_off(Duration::from_secs(3)).await;
        bucket.back_off(Duration::from_secs(1)).await;
        bucket.acquire().await;
        assert!(t0.elapsed() >= Duration::from_secs(3));
    }
}
