//! Fault injection: rules matched against each `/scim` and `/v1` request, drawn from a seeded
//! generator so a run with the same seed and the same request sequence injects the same faults.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Faults {
    #[serde(default)]
    pub rules: Vec<FaultRule>,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FaultRule {
    /// Matches any method when absent; compared case-insensitively.
    #[serde(default)]
    pub method: Option<String>,
    /// Matches the request path (without query) by prefix, e.g. `/scim/v2/Groups`.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Chance in 0..=1 that a matching request is faulted.
    #[serde(default = "always")]
    pub probability: f64,
    /// Apply at most this many times; unlimited when absent.
    #[serde(default)]
    pub remaining: Option<u64>,
    pub action: FaultAction,
}

fn always() -> f64 {
    1.0
}

/// In JSON: `{"type": "status", "code": 503, "retry_after_secs": 2}`, `{"type": "delay",
/// "ms": 500}` or `{"type": "drop"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this status and the API's error body instead of handling the request.
    Status {
        code: u16,
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Wait, then answer normally: for client timeouts.
    Delay { ms: u64 },
    /// Close the TCP connection without writing a response, and without handling the request.
    Drop,
    /// Handle the request (its effect happens), then close the connection without the
    /// response: the lost answer of a write that succeeded.
    DropAfterApply,
}

/// The installed rules plus the generator they draw from.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    faults: Faults,
    rng: SplitMix64,
}

impl FaultState {
    pub(crate) fn new(faults: Faults) -> Self {
        let rng = SplitMix64(faults.seed);
        Self { faults, rng }
    }

    /// The first rule that matches and fires decides; rules that match but do not fire still
    /// consume a draw, so the sequence depends only on the seed and the requests.
    pub(crate) fn decide(&mut self, method: &str, path: &str) -> Option<FaultAction> {
        for rule in &mut self.faults.rules {
            let method_ok = rule
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method));
            let path_ok = rule
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p));
            if !method_ok || !path_ok || rule.remaining == Some(0) {
                continue;
            }
            if self.rng.next_f64() < rule.probability {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                return Some(rule.action.clone());
            }
        }
        None
    }
}

/// A tiny generator with a fixed algorithm, so seeds stay reproducible across dependency
/// upgrades (a library's `StdRng` may change its stream between versions).
#[derive(Debug, Default)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(probability: f64, remaining: Option<u64>) -> FaultRule {
        FaultRule {
            method: Some("get".into()),
            path_prefix: Some("/scim".into()),
            probability,
            remaining,
            action: FaultAction::Drop,
        }
    }

    #[test]
    fn same_seed_same_faults() {
        let faults = Faults {
            rules: vec![rule(0.5, None)],
            seed: 7,
        };
        let run = |f: &Faults| {
            let mut s = FaultState::new(f.clone());
            (0..64)
                .map(|_| s.decide("GET", "/scim/v2/Users").is_some())
                .collect::<Vec<_>>()
        };
        let first = run(&faults);
        assert_eq!(first, run(&faults));
        let hits = first.iter().filter(|h| **h).count();
        assert!((16..=48).contains(&hits), "{hits} of 64");
    }

    #[test]
    fn remaining_caps_and_filters_match() {
        let mut s = FaultState::new(Faults {
            rules: vec![rule(1.0, Some(2))],
            seed: 1,
        });
        assert!(s.decide("POST", "/scim/v2/Users").is_none());
        assert!(s.decide("GET", "/v1/pages").is_none());
        assert!(s.decide("GET", "/scim/v2/Users").is_some());
        assert!(s.decide("GET", "/scim/v2/Users").is_some());
        assert!(s.decide("GET", "/scim/v2/Users").is_none());
    }
}
