//! The faults the simulator injects into SCIM and public API requests during a run.

use enroll_simulator::{FaultAction, FaultRule, Faults};
use std::time::Duration;

/// Fault rules that fault `rate` of all SCIM and public API requests, split between server
/// errors, 429 with `Retry-After`, responses slower than the client's timeout, and dropped
/// connections. Each rule's chance is conditional on the earlier ones not firing.
pub fn fault_rules(rate: f64, seed: u64, timeout: Duration) -> Faults {
    let slow = Duration::from_millis(600) + timeout;
    let shares = [
        (
            0.2,
            FaultAction::Status {
                code: 503,
                retry_after_secs: None,
            },
        ),
        (
            0.1,
            FaultAction::Status {
                code: 500,
                retry_after_secs: None,
            },
        ),
        (
            0.3,
            FaultAction::Status {
                code: 429,
                retry_after_secs: Some(1),
            },
        ),
        (
            0.2,
            FaultAction::Delay {
                ms: slow.as_millis() as u64,
            },
        ),
        (0.1, FaultAction::Drop),
        // The answer of a write that happened is lost: creates must not be repeated blindly.
        (0.1, FaultAction::DropAfterApply),
    ];
    let rate = rate.clamp(0.0, 1.0);
    let mut taken = 0.0;
    let rules = shares
        .into_iter()
        .map(|(share, action)| {
            let p = rate * share;
            let conditional = if taken < 1.0 { p / (1.0 - taken) } else { 0.0 };
            taken += p;
            FaultRule {
                method: None,
                path_prefix: None,
                probability: conditional.clamp(0.0, 1.0),
                remaining: None,
                action,
            }
        })
        .collect();
    Faults { rules, seed }
}
