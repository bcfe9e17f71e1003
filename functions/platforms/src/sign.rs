//! Signing and verification shared by every platform: HMAC-SHA256, constant-time comparison,
//! secret rotation and the signed-timestamp window.

use crate::{Inbound, Rejected};
use chrono::{DateTime, Utc};
use enroll_core::config::PlatformConfig;
use enroll_core::ids::Platform;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every signing platform's SDK tolerance is 300 s except Paddle's 5 s, which a queued retry
/// or a cold start can exceed; see [`crate::paddle`].
pub(crate) const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// HMAC-SHA256 of the concatenation of `parts` (the platforms sign `ts + sep + body`; feeding
/// the parts in turn avoids copying the body).
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// True when some key's MAC over `parts` equals some presented signature. Every comparison is
/// constant time; stopping at the first match reveals only what the response reveals anyway.
pub(crate) fn any_mac_matches<'k>(
    keys: impl IntoIterator<Item = &'k [u8]>,
    parts: &[&[u8]],
    presented: &[Vec<u8>],
) -> bool {
    keys.into_iter().any(|key| {
        let expected = hmac_sha256(key, parts);
        presented
            .iter()
            .any(|sig| bool::from(expected.as_slice().ct_eq(sig.as_slice())))
    })
}

/// Compares a presented shared secret with a configured one without revealing, through timing,
/// how much of it (or its length) matched: both sides are hashed to 32 bytes first.
pub(crate) fn secret_eq(presented: &str, configured: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(configured.as_bytes());
    a.ct_eq(&b).into()
}

/// The platform's configured secrets, or 401 when there is none (an unconfigured platform must
/// not accept anything, and must not look like a signature failure to the operator either).
pub(crate) fn secrets(platform: Platform, cfg: &PlatformConfig) -> Result<Vec<&str>, Rejected> {
    let list: Vec<&str> = cfg
        .secrets
        .iter()
        .map(|s| s.expose())
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err(Rejected::unauthorized(format!(
            "no secret configured for {platform}"
        )));
    }
    Ok(list)
}

/// A required header, or 401: the headers checked here are the proof of origin.
pub(crate) fn auth_header<'a>(req: &'a Inbound<'_>, name: &str) -> Result<&'a str, Rejected> {
    req.header(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Rejected::unauthorized(format!("missing {name} header")))
}

/// Checks a signed Unix timestamp against `now`, in both directions: a timestamp from the
/// future is as suspect as a stale one. Call only after the signature matched, so the reason
/// "outside the tolerance" is never given to a forger.
pub(crate) fn fresh(
    raw: &str,
    what: &str,
    cfg: &PlatformConfig,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, Rejected> {
    let malformed = || Rejected::unauthorized(format!("{what} is not a Unix timestamp"));
    let raw = raw.trim();
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let ts: i64 = raw.parse().map_err(|_| malformed())?;
    let at = DateTime::<Utc>::from_timestamp(ts, 0).ok_or_else(malformed)?;
    let tolerance = cfg.tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS);
    let skew = (i128::from(now.timestamp()) - i128::from(ts)).unsigned_abs();
    if skew > u128::from(tolerance) {
        let direction = if ts > now.timestamp() {
            "in the future"
        } else {
            "old"
        };
        return Err(Rejected::stale(format!(
            "{what} is {skew} s {direction}, beyond the {tolerance} s tolerance"
        )));
    }
    Ok(at)
}

/// A signature header holding a Unix timestamp and one or more hex HMAC-SHA256s of
/// `"{timestamp}{joiner}{raw body}"`, keyed with each secret's own bytes. Stripe
/// (`t=<unix>,v1=<hex>`) and Paddle (`ts=<unix>;h1=<hex>`) use this scheme and differ only in
/// its spelling. Entries with other keys are ignored, and so are signatures that are not 32
/// bytes of hex; the sender adds one signature per active secret while a secret is rotated.
pub(crate) struct TimestampedHex {
    pub(crate) platform: Platform,
    /// The header as the platform's documentation spells it (`Stripe-Signature`); it is
    /// looked up, and sent, lowercased.
    pub(crate) header: &'static str,
    /// Between the `key=value` entries of the header.
    pub(crate) separator: char,
    pub(crate) timestamp_key: &'static str,
    pub(crate) signature_key: &'static str,
    /// Between the timestamp and the body in the signed message.
    pub(crate) joiner: &'static str,
}

impl TimestampedHex {
    /// Checks the header against every configured secret, then the timestamp against the
    /// tolerance; returns the signed time.
    pub(crate) fn verify(
        &self,
        cfg: &PlatformConfig,
        req: &Inbound<'_>,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, Rejected> {
        let secrets = secrets(self.platform, cfg)?;
        let (ts, sigs) = self.parse(auth_header(req, &self.header.to_ascii_lowercase())?)?;
        let keys = secrets.iter().map(|s| s.as_bytes());
        let parts = [ts.as_bytes(), self.joiner.as_bytes(), req.body];
        if !any_mac_matches(keys, &parts, &sigs) {
            return Err(Rejected::unauthorized(format!(
                "{} matches no configured secret",
                self.header
            )));
        }
        fresh(ts, &format!("{} timestamp", self.header), cfg, now)
    }

    /// The first timestamp and every well-formed signature; 401 when either is missing.
    fn parse<'h>(&self, header: &'h str) -> Result<(&'h str, Vec<Vec<u8>>), Rejected> {
        let mut ts = None;
        let mut sigs = Vec::new();
        for (k, v) in header
            .split(self.separator)
            .filter_map(|kv| kv.split_once('='))
        {
            let k = k.trim();
            if k == self.timestamp_key && ts.is_none() {
                ts = Some(v.trim());
            } else if k == self.signature_key {
                sigs.extend(decode_hex_sig(v));
            }
        }
        let ts = ts.ok_or_else(|| {
            Rejected::unauthorized(format!(
                "{} has no timestamp ({}=)",
                self.header, self.timestamp_key
            ))
        })?;
        if sigs.is_empty() {
            return Err(Rejected::unauthorized(format!(
                "{} has no {} signature",
                self.header, self.signature_key
            )));
        }
        Ok((ts, sigs))
    }

    /// The header (name and value) the platform sends with `body` at `ts`, signed with `secret`.
    pub(crate) fn sign(&self, secret: &str, ts: i64, body: &[u8]) -> (String, String) {
        let t = ts.to_string();
        let sig = hex_mac(
            secret.as_bytes(),
            &[t.as_bytes(), self.joiner.as_bytes(), body],
        );
        let value = format!(
            "{}={t}{}{}={sig}",
            self.timestamp_key, self.separator, self.signature_key
        );
        (self.header.to_ascii_lowercase(), value)
    }
}

/// Lowercase hex of an HMAC, as Stripe, Lemon Squeezy and Paddle send it.
pub(crate) fn hex_mac(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(hmac_sha256(key, parts))
}

/// Standard base64 of an HMAC, as Shopify and Standard Webhooks send it.
pub(crate) fn base64_mac(key: &[u8], parts: &[&[u8]]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(key, parts))
}

/// Decodes a presented hex signature; anything that is not 32 bytes of hex cannot match and is
/// dropped rather than failing the whole header (a sender may add schemes we do not know).
pub(crate) fn decode_hex_sig(raw: &str) -> Option<Vec<u8>> {
    hex::decode(raw.trim()).ok().filter(|b| b.len() == 32)
}

/// Decodes a presented base64 signature, as [`decode_hex_sig`] does hex.
pub(crate) fn decode_base64_sig(raw: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .ok()
        .filter(|b| b.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hex::encode(hmac_sha256(
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn secret_comparison_is_exact() {
        assert!(secret_eq("word", "word"));
        assert!(!secret_eq("word", "word "));
        assert!(!secret_eq("", "word"));
    }

    #[test]
    fn timestamps_are_checked_in_both_directions() {
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let cfg = PlatformConfig::default();
        assert!(fresh("1700000000", "t", &cfg, now).is_ok());
        assert!(fresh("1699999700", "t", &cfg, now).is_ok());
        assert_eq!(fresh("1699999699", "t", &cfg, now).unwrap_err().status, 401);
        assert_eq!(fresh("1700000301", "t", &cfg, now).unwrap_err().status, 401);
        let old = fresh("1699999699", "t", &cfg, now).unwrap_err();
        assert_eq!(old.metric_reason(), enroll_core::metrics::Reason::Stale);
        let garbled = fresh("-5", "t", &cfg, now).unwrap_err();
        assert_eq!(
            garbled.metric_reason(),
            enroll_core::metrics::Reason::Signature
        );
        assert!(fresh("-5", "t", &cfg, now).is_err());
        assert!(fresh("99999999999999999999", "t", &cfg, now).is_err());
        let strict = PlatformConfig {
            tolerance_secs: Some(5),
            ..PlatformConfig::default()
        };
        assert!(fresh("1699999990", "t", &strict, now).is_err());
    }
}
