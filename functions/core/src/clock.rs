//! Where "now" comes from. The stages take a [`Clock`] instead of reading the wall clock, so a
//! test can let a year pass in one call ([`ManualClock::advance`]) instead of sleeping, and
//! production wires the [`SystemClock`].

use chrono::{DateTime, TimeDelta, Utc};
use std::sync::{Arc, Mutex};

/// The current time, as a stage sees it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock: what every deployed function and `enroll dev` use.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until a test moves it. Clones share one time, so a test keeps a
/// clone and advances the clock a stage was given.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(at)),
        }
    }

    /// A clock that starts at the wall clock's current time.
    pub fn starting_now() -> Self {
        Self::new(Utc::now())
    }

    /// Lets `by` pass.
    pub fn advance(&self, by: TimeDelta) {
        *self.lock() += by;
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.lock() = at;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // A panic elsewhere cannot leave a time half-written: the value is always whole.
        self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let start = "2026-01-31T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let clock = ManualClock::new(start);
        let given: Arc<dyn Clock> = Arc::new(clock.clone());
        assert_eq!(given.now(), start);
        clock.advance(TimeDelta::days(365));
        assert_eq!(given.now(), start + TimeDelta::days(365));
        clock.set(start);
        assert_eq!(given.now(), start);
    }
}
