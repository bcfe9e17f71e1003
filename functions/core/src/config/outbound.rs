//! `[[outbound]]`: the seller's endpoints that hear about access changes, as signed Standard
//! Webhooks ([`crate::outbound`]).
//!
//! ```toml
//! [[outbound]]
//! url = "https://hooks.example.com/enroll"
//! secret = "whsec_..."          # or ENROLL_OUTBOUND_1_SECRET, or Secrets Manager
//! events = ["access.granted", "access.changed", "access.revoked", "access.expired"]
//! ```
//!
//! Several entries may be given, each with its own secret and events. A secret left out of the
//! file comes from `ENROLL_OUTBOUND_<N>_SECRET`, where `<N>` is the entry's position counting
//! from 1 (the environment wins over the file, as for every other secret), or from the
//! Secrets Manager document's `outbound` list, by the same position.

use super::{ConfigError, Secret};
use crate::outbound::EventType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// `https://...`, or `http://` on a loopback host (a receiver on this machine).
    pub url: String,
    /// `whsec_<base64 of 24 to 64 bytes>`, as the Standard Webhooks specification defines.
    #[serde(default)]
    pub secret: Secret,
    /// The event types this endpoint receives.
    pub events: Vec<EventType>,
    /// Seconds one delivery attempt may take before it counts as failed (and is retried).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    10
}

impl OutboundConfig {
    /// A short stable name for the endpoint that reveals nothing of its URL: the first 12 hex
    /// digits of the URL's SHA-256. Deliveries, the disabled list and history name it so.
    pub fn key(&self) -> String {
        hex::encode(&Sha256::digest(self.url.as_bytes())[..6])
    }

    /// The URL's host, for a buyer's history and the logs (never its path or query, which may
    /// hold a token).
    pub fn host(&self) -> &str {
        let rest = self.url.split_once("://").map_or("", |(_, r)| r);
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        authority.rsplit_once('@').map_or(authority, |(_, h)| h)
    }

    pub fn wants(&self, event: EventType) -> bool {
        self.events.contains(&event)
    }

    /// The HMAC key the secret stands for.
    pub fn key_bytes(&self) -> Option<Vec<u8>> {
        decode_whsec(self.secret.expose())
    }
}

/// The key of a `whsec_<base64>` secret, when it is one and its length is what the Standard
/// Webhooks specification allows (24 to 64 bytes).
pub fn decode_whsec(secret: &str) -> Option<Vec<u8>> {
    let key = base64_decode(secret.strip_prefix("whsec_")?)?;
    (24..=64).contains(&key.len()).then_some(key)
}

/// Standard base64 with padding. Core takes no base64 crate for one validation; the signing
/// itself lives in `enroll-platforms`.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 != 0 || text.len() - bytes.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        let v = ALPHABET.iter().position(|a| a == b)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    ["127.0.0.1", "localhost", "[::1]"].iter().any(|host| {
        rest.strip_prefix(host)
            .is_some_and(|after| after.is_empty() || after.starts_with([':', '/']))
    })
}

/// The variable an entry's secret may come from: position `index` counts from 0.
pub fn secret_variable(index: usize) -> String {
    format!("ENROLL_OUTBOUND_{}_SECRET", index + 1)
}

pub(super) fn apply_env(list: &mut [OutboundConfig], env: &impl Fn(&str) -> Option<String>) {
    for (i, o) in list.iter_mut().enumerate() {
        if let Some(s) = env(&secret_variable(i)).filter(|s| !s.is_empty()) {
            o.secret = Secret::new(s);
        }
    }
}

pub(super) fn validate(list: &[OutboundConfig]) -> Result<(), ConfigError> {
    for (i, o) in list.iter().enumerate() {
        let field = |f: &str| format!("outbound[{i}].{f}");
        if !(o.url.starts_with("https://") || loopback_http(&o.url)) || o.host().is_empty() {
            return Err(ConfigError::invalid(
                field("url"),
                "must be an https:// URL (http:// only on 127.0.0.1, localhost or [::1])",
            ));
        }
        if o.events.is_empty() {
            return Err(ConfigError::invalid(
                field("events"),
                "name at least one of access.granted, access.changed, access.revoked, access.expired",
            ));
        }
        if o.secret.is_empty() {
            return Err(ConfigError::invalid(
                field("secret"),
                format!("missing: set it in the file, in {}, or in the Secrets Manager document's `outbound` list", secret_variable(i)),
            ));
        }
        if o.key_bytes().is_none() {
            return Err(ConfigError::invalid(
                field("secret"),
                "must be whsec_ followed by the base64 of 24 to 64 random bytes (Standard Webhooks)",
            ));
        }
        if o.timeout_secs == 0 || o.timeout_secs > 60 {
            return Err(ConfigError::invalid(
                field("timeout_secs"),
                "must be between 1 and 60",
            ));
        }
        if list[..i].iter().any(|p| p.url == o.url) {
            return Err(ConfigError::invalid(field("url"), "is listed twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, secret: &str) -> OutboundConfig {
        OutboundConfig {
            url: url.into(),
            secret: Secret::new(secret),
            events: vec![EventType::Granted],
            timeout_secs: 10,
        }
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn base64_decodes_like_the_standard() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert!(base64_decode("aGk").is_none());
        assert!(base64_decode("a*k=").is_none());
        assert_eq!(decode_whsec(SECRET).unwrap().len(), 24);
        assert!(decode_whsec("whsec_aGVsbG8=").is_none(), "too short");
        assert!(decode_whsec("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_none());
    }

    #[test]
    fn urls_must_be_https_or_loopback() {
        for ok in [
            "https://hooks.example.com/x",
            "http://127.0.0.1:9000/in",
            "http://localhost/x",
        ] {
            assert!(validate(&[entry(ok, SECRET)]).is_ok(), "{ok}");
        }
        for bad in [
            "http://hooks.example.com",
            "http://localhost.evil.com/",
            "ftp://x",
            "https://",
        ] {
            let e = validate(&[entry(bad, SECRET)]).unwrap_err();
            assert!(e.to_string().contains("outbound[0].url"), "{bad}: {e}");
        }
    }

    #[test]
    fn secrets_are_required_and_in_whsec_form_and_come_from_the_environment() {
        let e = validate(&[entry("https://a.example", "")]).unwrap_err();
        assert!(e.to_string().contains("ENROLL_OUTBOUND_1_SECRET"), "{e}");
        let e = validate(&[entry("https://a.example", "plain")]).unwrap_err();
        assert!(e.to_string().contains("whsec_"), "{e}");
        let mut list = vec![entry("https://a.example", "")];
        apply_env(&mut list, &|k| {
            (k == "ENROLL_OUTBOUND_1_SECRET").then(|| SECRET.to_owned())
        });
        assert!(validate(&list).is_ok());
    }

    #[test]
    fn keys_and_hosts_reveal_no_path() {
        let e = entry("https://user:pw@hooks.example.com:8443/p?token=t", SECRET);
        assert_eq!(e.host(), "hooks.example.com:8443");
        assert_eq!(e.key().len(), 12);
        assert_ne!(e.key(), entry("https://b.example", SECRET).key());
    }
}
