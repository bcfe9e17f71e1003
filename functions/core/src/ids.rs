//! Identifier newtypes. Constructors check and normalise; the inner strings are private.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a value was refused by a checking constructor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {why}")]
pub struct InvalidId {
    pub what: &'static str,
    pub why: String,
}

fn invalid(what: &'static str, why: impl Into<String>) -> InvalidId {
    InvalidId {
        what,
        why: why.into(),
    }
}

/// A buyer's email address, trimmed and lowercased. SCIM `userName` and all ledger keys use it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BuyerEmail(String);

impl BuyerEmail {
    /// RFC 5321 limits a path to 254 characters; control characters never belong in an address.
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err(invalid("email", "empty"));
        }
        if email.chars().count() > Self::MAX_LEN {
            return Err(invalid("email", "longer than 254 characters"));
        }
        if email.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(
                "email",
                "contains whitespace or control characters",
            ));
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(invalid("email", "missing @"));
        };
        if local.is_empty() || domain.is_empty() || !domain.contains('.') || domain.contains('@') {
            return Err(invalid("email", "not of the form local@domain.tld"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BuyerEmail {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<BuyerEmail> for String {
    fn from(value: BuyerEmail) -> Self {
        value.0
    }
}

/// Emails are personal data: `Display` masks them so they cannot leak into a log line by accident.
impl fmt::Display for BuyerEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::redact::mask_email(&self.0))
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                let v = raw.trim();
                if v.is_empty() {
                    return Err(invalid($what, "empty"));
                }
                if v.len() > $max {
                    return Err(invalid($what, format!("longer than {} bytes", $max)));
                }
                if v.chars().any(char::is_control) {
                    return Err(invalid($what, "contains control characters"));
                }
                Ok(Self(v.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// An order as the platform names it (Stripe checkout session, Shopify order id, ...).
    OrderId, "order id", 256
);
string_id!(
    /// A platform's own identifier of one delivery or event (`evt_...`, `msg_...`, a derived key).
    EventId, "event id", 512
);
string_id!(
    /// A product as the seller's catalog names it, e.g. `notion-mastery`.
    ProductId, "product id", 128
);
string_id!(
    /// A platform's product reference: a Stripe price or product id, a SKU, a variant id, a name.
    PlatformProductRef, "platform product reference", 512
);
string_id!(
    /// A Notion user id (the same UUID in SCIM and in the public API).
    NotionUserId, "Notion user id", 128
);
string_id!(
    /// A SCIM Group id.
    GroupId, "group id", 128
);
string_id!(
    /// A page id in the seller's sales database.
    PageId, "page id", 128
);

/// Every checkout platform enroll accepts webhooks from: the built-in ones, and the `mapped`
/// platforms a seller describes in the configuration (`[platforms.<name>] kind = "mapped"`).
///
/// Serialised as its name (`"stripe"`, `"lemonsqueezy"`, `"kajabi"`) wherever it appears: the
/// configuration's keys, event and order keys, stored records. A built-in platform's name is
/// unchanged by the mapped variant, so every stored key stays as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    Stripe,
    LemonSqueezy,
    Paddle,
    Shopify,
    Gumroad,
    ThriveCart,
    Standard,
    /// A platform configured entirely in the TOML; see `enroll_platforms::mapped`.
    Mapped(PlatformName),
}

impl Platform {
    /// The built-in platforms.
    pub const ALL: [Platform; 7] = [
        Platform::Stripe,
        Platform::LemonSqueezy,
        Platform::Paddle,
        Platform::Shopify,
        Platform::Gumroad,
        Platform::ThriveCart,
        Platform::Standard,
    ];

    /// The path segment in `/webhooks/{platform}` and the key in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Stripe => "stripe",
            Platform::LemonSqueezy => "lemonsqueezy",
            Platform::Paddle => "paddle",
            Platform::Shopify => "shopify",
            Platform::Gumroad => "gumroad",
            Platform::ThriveCart => "thrivecart",
            Platform::Standard => "standard",
            Platform::Mapped(name) => name.as_str(),
        }
    }

    /// A built-in platform by name, and nothing else. The webhook router uses this plus the
    /// configuration, so a request for an unknown name never reaches [`PlatformName::parse`].
    pub fn builtin(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }

    /// A built-in platform, else any well-formed mapped platform name (configured or not: stored
    /// keys may name a platform since removed from the configuration).
    pub fn parse(raw: &str) -> Option<Self> {
        Self::builtin(raw).or_else(|| PlatformName::parse(raw).ok().map(Platform::Mapped))
    }

    pub fn is_mapped(self) -> bool {
        matches!(self, Platform::Mapped(_))
    }

    /// `ENROLL_<NAME>_SECRETS`: the name uppercased, hyphens as underscores.
    pub fn secrets_variable(self) -> String {
        format!(
            "ENROLL_{}_SECRETS",
            self.as_str().to_uppercase().replace('-', "_")
        )
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = std::borrow::Cow::<'de, str>::deserialize(d)?;
        if let Some(p) = Platform::builtin(&raw) {
            return Ok(p);
        }
        PlatformName::parse(&raw)
            .map(Platform::Mapped)
            .map_err(serde::de::Error::custom)
    }
}

/// The name of a mapped platform: 1 to [`PlatformName::MAX_LEN`] lowercase ASCII letters,
/// digits and hyphens, starting with a letter, not ending with a hyphen, and not a built-in
/// platform's name. It is a URL path segment, a configuration key and part of every stored key.
///
/// Names are interned (leaked once per distinct name, at most [`PlatformName::MAX_NAMES`]) so
/// [`Platform`] stays `Copy` and [`Platform::as_str`] stays `&'static str` for every caller. Only
/// the configuration, stored records and the operator's command line create names: the webhook
/// router looks names up in the configuration instead, so a request cannot add one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlatformName(&'static str);

impl PlatformName {
    pub const MAX_LEN: usize = 40;
    /// A bound on the interned names, far above any real configuration.
    pub const MAX_NAMES: usize = 1024;

    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        const WHAT: &str = "platform name";
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(invalid(
                WHAT,
                format!("must be 1 to {} characters", Self::MAX_LEN),
            ));
        }
        let ok = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(invalid(
                WHAT,
                "only lowercase letters, digits and hyphens are allowed",
            ));
        }
        if !raw.starts_with(|c: char| c.is_ascii_lowercase()) || raw.ends_with('-') {
            return Err(invalid(
                WHAT,
                "must start with a letter and not end with a hyphen",
            ));
        }
        if Platform::builtin(raw).is_some() {
            return Err(invalid(WHAT, "is a built-in platform's name"));
        }
        intern(raw).map(Self)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for PlatformName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The one `&'static str` per distinct name (see [`PlatformName`]).
fn intern(name: &str) -> Result<&'static str, InvalidId> {
    use std::collections::BTreeSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        // The set is only ever inserted into, so a panic elsewhere cannot leave it inconsistent.
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = names.get(name) {
        return Ok(known);
    }
    if names.len() >= PlatformName::MAX_NAMES {
        return Err(invalid("platform name", "too many distinct platform names"));
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    Ok(leaked)
}

/// The idempotency key of one event: the platform plus the platform's own event identifier.
/// Never an SQS message id, which changes when a message is replayed from a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventKey {
    pub platform: Platform,
    pub event_id: EventId,
}

impl EventKey {
    pub fn new(platform: Platform, event_id: EventId) -> Self {
        Self { platform, event_id }
    }

    /// `stripe:evt_123`: how the key is stored and logged.
    pub fn as_string(&self) -> String {
        format!("{}:{}", self.platform, self.event_id)
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let (p, id) = raw
            .split_once(':')
            .ok_or_else(|| invalid("event key", "expected platform:event_id"))?;
        let platform =
            Platform::parse(p).ok_or_else(|| invalid("event key", "unknown platform"))?;
        Ok(Self::new(platform, EventId::parse(id)?))
    }
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform, self.event_id)
    }
}

/// An order across platforms: two platforms may reuse the same order number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrderKey {
    pub platform: Platform,
    pub order_id: OrderId,
}

impl fmt::Display for OrderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform, self.order_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_lowercased() {
        let e = BuyerEmail::parse("  Ada.Lovelace+Course@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "ada.lovelace+course@example.com");
    }

    #[test]
    fn email_keeps_quotes_and_non_ascii_letters() {
        assert_eq!(
            BuyerEmail::parse("\"Zoë\\x\"@Exämple.org")
                .unwrap()
                .as_str(),
            "\"zoë\\x\"@exämple.org"
        );
    }

    #[test]
    fn email_refuses_control_characters_and_overlong_values() {
        assert!(BuyerEmail::parse("a\r\nb@example.com").is_err());
        assert!(BuyerEmail::parse("no-at-sign").is_err());
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(BuyerEmail::parse(&long).is_err());
    }

    #[test]
    fn email_display_is_masked() {
        let e = BuyerEmail::parse("ada@example.com").unwrap();
        assert!(!e.to_string().contains("ada@example.com"));
    }

    #[test]
    fn event_key_round_trips() {
        let k = EventKey::parse("stripe:evt_1").unwrap();
        assert_eq!(k.platform, Platform::Stripe);
        assert_eq!(k.as_string(), "stripe:evt_1");
        assert!(EventKey::parse("no_pe:evt").is_err());
        let mapped = EventKey::parse("kajabi:evt_1").unwrap();
        assert_eq!(mapped.as_string(), "kajabi:evt_1");
        assert!(mapped.platform.is_mapped());
    }

    #[test]
    fn built_in_platforms_keep_their_names_and_serialisation() {
        for p in Platform::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), p);
            assert_eq!(Platform::parse(p.as_str()), Some(p));
            assert!(!p.is_mapped());
        }
        assert_eq!(Platform::LemonSqueezy.as_str(), "lemonsqueezy");
        assert_eq!(
            Platform::LemonSqueezy.secrets_variable(),
            "ENROLL_LEMONSQUEEZY_SECRETS"
        );
    }

    #[test]
    fn mapped_names_are_checked_and_interned() {
        let a = PlatformName::parse("kit-commerce2").unwrap();
        let b = PlatformName::parse("kit-commerce2").unwrap();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_eq!(
            Platform::Mapped(a).secrets_variable(),
            "ENROLL_KIT_COMMERCE2_SECRETS"
        );
        for bad in [
            "",
            "Kajabi",
            "2go",
            "a_b",
            "a b",
            "end-",
            "stripe",
            "thrivecart",
        ] {
            assert!(PlatformName::parse(bad).is_err(), "{bad}");
        }
        assert!(PlatformName::parse(&"a".repeat(41)).is_err());
        assert_eq!(Platform::builtin("kajabi"), None);
        let p: Platform = serde_json::from_str("\"kajabi\"").unwrap();
        assert_eq!(p.to_string(), "kajabi");
        assert!(serde_json::from_str::<Platform>("\"Kajabi\"").is_err());
    }
}
