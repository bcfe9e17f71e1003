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

/// Every checkout platform enroll accepts webhooks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Stripe,
    LemonSqueezy,
    Paddle,
    Shopify,
    Gumroad,
    ThriveCart,
    Standard,
}

impl Platform {
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
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
        assert!(EventKey::parse("nope:evt").is_err());
    }
}
