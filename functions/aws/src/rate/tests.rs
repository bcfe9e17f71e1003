//! The lease arithmetic against a model of the budget item: instances interleaving on one
//! item, as DynamoDB applies their writes.

use super::*;

const RATE: f64 = 10.0;
const BURST: u32 = 3;
const S: i64 = 1_000_000;

/// The budget item as DynamoDB applies the two lease writes to it.
fn apply(item: &mut Option<Schedule>, plan: Plan, blocked_known: i64) -> Written {
    let stored = item.unwrap_or_default();
    match plan {
        Plan::Take { floor, span } => {
            let from = item.map_or(floor, |i| i.next_at);
            let after = Schedule {
                next_at: from + span,
                ..stored
            };
            *item = Some(after);
            Written::Done(after)
        }
        Plan::Restart { floor, span } => {
            if item.is_some() && (stored.next_at > floor || stored.blocked_until > blocked_known) {
                return Written::Refused(stored);
            }
            let after = Schedule {
                next_at: floor + span,
                ..stored
            };
            *item = Some(after);
            Written::Done(after)
        }
    }
}

/// One instance's view, leasing as `DynamoRateBudget::lease` does.
#[derive(Default)]
struct Instance {
    seen: Option<Schedule>,
    queued: bool,
    blocked: i64,
    writes: u32,
}

impl Instance {
    fn lease(&mut self, item: &mut Option<Schedule>, now: i64, k: usize) -> Vec<i64> {
        let pace = Pace::new(RATE, BURST);
        for _ in 0..MAX_TRIES {
            let plan = pace.plan(self.seen, self.queued, now, self.blocked, k);
            let written = apply(item, plan, self.blocked);
            self.writes += 1;
            self.queued = pace.queued(self.seen, plan, &written, now);
            let (Written::Done(after) | Written::Refused(after)) = &written;
            self.seen = Some(*after);
            let slots = pace.granted(plan, &written, now, self.blocked);
            self.blocked = self.blocked.max(after.blocked_until);
            if !slots.is_empty() {
                return slots;
            }
        }
        panic!("no slot after {MAX_TRIES} writes");
    }
}

#[test]
fn a_take_owns_its_points_and_the_burst_comes_at_once() {
    let mut item: Option<Schedule> = None;
    let mut a = Instance::default();
    // Nothing stored: the first take starts the schedule at the floor, so the burst
    // (three points within the tolerance) is spent at once.
    assert_eq!(
        a.lease(&mut item, 10 * S, 5),
        [10 * S, 10 * S, 10 * S, 101 * S / 10, 102 * S / 10]
    );
    // Another instance, never having looked, continues the schedule.
    let mut b = Instance::default();
    assert_eq!(b.lease(&mut item, 10 * S, 2), [103 * S / 10, 104 * S / 10]);
    assert_eq!((a.writes, b.writes), (1, 1));
}

#[test]
fn an_idle_bucket_restarts_with_one_write_and_refills_only_up_to_the_burst() {
    let mut item: Option<Schedule> = None;
    let mut a = Instance::default();
    a.lease(&mut item, 0, 3);
    assert_eq!(
        a.lease(&mut item, 60 * S, 4),
        [60 * S, 60 * S, 60 * S, 601 * S / 10]
    );
    assert_eq!(a.writes, 2);
    // An instance that last saw the bucket idle but finds it busy: its restart is refused
    // and it takes, two writes once.
    let mut b = Instance {
        seen: Some(Schedule::default()),
        ..Instance::default()
    };
    assert_eq!(b.lease(&mut item, 60 * S, 1), [602 * S / 10]);
    assert_eq!(b.writes, 2);
    // Its view is current now: the next lease is one write again.
    b.lease(&mut item, 60 * S, 1);
    assert_eq!(b.writes, 3);
}

/// A little pseudo-random number generator: the same run every time.
fn numbers(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |m| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % m
    }
}

#[test]
fn under_contention_every_lease_is_one_write() {
    // Five instances with more work than the rate allows: each comes back for another
    // lease once its last slot is spent and its requests answered (0 to 300 ms later).
    let mut item: Option<Schedule> = None;
    let mut all: Vec<Instance> = (0..5).map(|_| Instance::default()).collect();
    let mut ready = vec![0i64; all.len()];
    let mut next = numbers(11);
    let mut leases = 0;
    for _ in 0..500 {
        let i = (0..all.len()).min_by_key(|i| ready[*i]).unwrap();
        let k = 1 + next(3) as usize;
        let slots = all[i].lease(&mut item, ready[i], k);
        leases += 1;
        ready[i] = slots.last().unwrap() + next(300_000) as i64;
    }
    let writes: u32 = all.iter().map(|i| i.writes).sum();
    assert_eq!(writes, leases);
}

#[test]
fn a_lone_instance_leases_with_one_write_busy_or_idle() {
    let mut item: Option<Schedule> = None;
    let mut a = Instance::default();
    let mut next = numbers(5);
    let mut now = 0;
    for lease in 1..=300 {
        now += match next(4) {
            0 => 0,
            1 => next(200_000) as i64,
            2 => next(2_000_000) as i64,
            _ => next(20_000_000) as i64,
        };
        a.lease(&mut item, now, 1 + next(4) as usize);
        assert_eq!(a.writes, lease);
    }
}

#[test]
fn slots_in_any_window_never_exceed_burst_plus_rate() {
    // Instances with stale views, idle gaps, pauses, interleaved on one item.
    let mut item: Option<Schedule> = None;
    let mut all: Vec<Instance> = (0..5).map(|_| Instance::default()).collect();
    let mut slots = Vec::new();
    let mut now = 0;
    let mut next = numbers(7);
    for _ in 0..400 {
        now += match next(10) {
            0 => 3 * S,
            1..=3 => next(400_000) as i64,
            _ => 0,
        };
        let i = next(5) as usize;
        if next(40) == 0 {
            // A 429: the pause is written into the item.
            let until = now + S;
            let mut stored = item.unwrap_or_default();
            stored.blocked_until = stored.blocked_until.max(until);
            stored.next_at = stored.next_at.max(until);
            item = Some(stored);
            all[i].blocked = all[i].blocked.max(until);
            continue;
        }
        let k = 1 + next(6) as usize;
        let got = all[i].lease(&mut item, now, k);
        assert!(got
            .iter()
            .all(|s| *s >= all[i].blocked.min(*s) && *s >= now));
        slots.extend(got);
    }
    slots.sort_unstable();
    for (i, a) in slots.iter().enumerate() {
        for (j, z) in slots.iter().enumerate().skip(i) {
            let w = (z - a) as f64 / 1e6;
            assert!(
                (j - i + 1) as f64 <= f64::from(BURST) + RATE * w + 1e-9,
                "{} slots in {w} s",
                j - i + 1
            );
        }
    }
}

#[test]
fn slots_never_fall_before_a_known_pause() {
    let mut item = Some(Schedule {
        next_at: 0,
        blocked_until: 5 * S,
    });
    let mut a = Instance::default();
    // Its view is stale: it takes, learns of the pause, and restarts after it.
    assert_eq!(a.lease(&mut item, 0, 3), [5 * S, 51 * S / 10, 52 * S / 10]);
}

#[test]
fn the_key_hides_the_token() {
    let pk = rate_pk(&Secret::new("secret_abcdef"));
    assert!(pk.starts_with("rate#") && !pk.contains("secret"), "{pk}");
    assert_ne!(pk, rate_pk(&Secret::new("secret_abcdeg")));
}
