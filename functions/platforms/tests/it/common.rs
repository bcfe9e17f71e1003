//! Helpers shared by the platform tests. Signatures are computed here straight from the
//! platforms' documented formulas with `hmac`/`sha2`, independently of the crate's own signing.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use enroll_core::config::{PlatformConfig, Secret};
use enroll_core::event::{EventKind, OrderEvent};
use enroll_core::ids::Platform;
use enroll_platforms::{receive, Accepted, Inbound, Rejected};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// 2024-10-01T12:00:00Z: the clock every test runs at unless it says otherwise.
pub const NOW: i64 = 1_727_784_000;

pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 0).unwrap()
}

pub fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

pub fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    hex::encode(hmac(key, msg))
}

pub fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(hmac(key, msg))
}

pub fn cfg(secrets: &[&str]) -> PlatformConfig {
    PlatformConfig {
        secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
        ..PlatformConfig::default()
    }
}

/// An owned request; `Inbound` borrows from it.
#[derive(Clone, Debug, Default)]
pub struct Req {
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub fn query(mut self, q: impl Into<String>) -> Self {
        self.query = Some(q.into());
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| k != name);
        self
    }

    pub fn send(
        &self,
        platform: Platform,
        cfg: &PlatformConfig,
        now: DateTime<Utc>,
    ) -> Result<Accepted, Rejected> {
        let inbound = Inbound {
            method: "POST",
            query: self.query.as_deref(),
            headers: &self.headers,
            body: &self.body,
        };
        receive(platform, cfg, &inbound, now)
    }
}

pub fn event(r: Result<Accepted, Rejected>) -> OrderEvent {
    match r {
        Ok(Accepted::Event(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

pub fn ignored(r: Result<Accepted, Rejected>) -> String {
    match r {
        Ok(Accepted::Ignored { reason, .. }) => reason,
        other => panic!("expected Ignored, got {other:?}"),
    }
}

/// Asserts a refusal with this status whose reason mentions `needle`.
pub fn refused(r: Result<Accepted, Rejected>, status: u16, needle: &str) {
    match r {
        Err(e) => {
            assert_eq!(e.status, status, "{e}");
            assert!(
                e.reason.to_lowercase().contains(&needle.to_lowercase()),
                "reason {:?} should mention {needle:?}",
                e.reason
            );
        }
        Ok(a) => panic!("expected {status}, got {a:?}"),
    }
}

/// What a test expects an event to normalise to.
pub struct Expect<'a> {
    pub kind: EventKind,
    pub key: &'a str,
    pub order: &'a str,
    pub email: Option<&'a str>,
    pub name: Option<&'a str>,
    pub items: &'a [&'a str],
    pub occurred_at: &'a str,
}

impl Expect<'_> {
    pub fn check(&self, e: &OrderEvent) {
        assert_eq!(e.kind, self.kind, "kind");
        assert_eq!(e.key.as_string(), self.key, "key");
        assert_eq!(e.order.order_id.as_str(), self.order, "order id");
        assert_eq!(e.key.platform, e.order.platform);
        assert_eq!(
            e.buyer.as_ref().map(|b| b.email.as_str()),
            self.email,
            "email"
        );
        assert_eq!(
            e.buyer.as_ref().and_then(|b| b.name.as_deref()),
            self.name,
            "name"
        );
        let items: Vec<&str> = e.items.iter().map(|i| i.as_str()).collect();
        assert_eq!(items, self.items, "items");
        assert_eq!(
            e.occurred_at,
            self.occurred_at.parse::<DateTime<Utc>>().unwrap(),
            "occurred_at"
        );
    }
}
