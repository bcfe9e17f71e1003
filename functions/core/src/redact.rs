//! What may stand in a log line instead of personal data or a request body.

use sha2::{Digest, Sha256};

/// `ada@example.com` becomes `a***@e***.com`: enough for an operator to tell buyers apart in a
/// list, never the address itself.
pub fn mask_email(email: &str) -> String {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return format!("<{}>", short_hash(email.as_bytes()));
    };
    let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
    let (host, tld) = domain.rsplit_once('.').unwrap_or((domain, ""));
    let tld = if tld.is_empty() {
        String::new()
    } else {
        format!(".{tld}")
    };
    format!("{}***@{}***{}", first(local), first(host), tld)
}

/// Masks anything that looks like an address and is not masked already.
pub fn mask_if_email(s: &str) -> String {
    if s.contains('@') && !s.contains("***") {
        mask_email(s)
    } else {
        s.to_owned()
    }
}

/// The longest text [`text`] keeps: an error message, not a body.
const MAX_TEXT: usize = 300;

/// An error message from a library (an SDK, an HTTP client, a parser) made fit for a log line
/// and a dead-letter reason. Such messages may quote what they failed on, so what could be
/// personal data or a credential is masked word by word:
///
/// - addresses (also percent-encoded, as in a SCIM filter) become `a***@e***.com`;
/// - the word after `Bearer` or `Basic`, a `token=`/`secret=`/`key=`/`password=` value, and
///   words with a known secret prefix (`secret_`, `ntn_`, `whsec_`, `sk_live_`, ...) become
///   `***`;
/// - a URL keeps its path and loses its query string;
/// - from the first `{` on, the text is dropped (a quoted JSON body), and the rest is cut at
///   300 characters.
pub fn text(message: &str) -> String {
    let mut out = String::new();
    let mut after_scheme = false;
    for word in message.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        if after_scheme {
            out.push_str("***");
            after_scheme = false;
            continue;
        }
        let bare = word.trim_end_matches(':').to_ascii_lowercase();
        after_scheme = bare == "bearer" || bare == "basic";
        out.push_str(&redact_word(word));
    }
    if let Some(brace) = out.find('{') {
        out.truncate(brace);
        out.push_str("{…}");
    }
    if out.chars().count() > MAX_TEXT {
        out = out.chars().take(MAX_TEXT).collect();
        out.push('…');
    }
    out
}

const SECRET_PREFIXES: &[&str] = &[
    "secret_", "ntn_", "whsec_", "sk_live_", "sk_test_", "rk_live_", "rk_test_", "pdl_",
];
const SECRET_KEYS: &[&str] = &["token", "secret", "key", "password", "signature", "auth"];

fn redact_word(word: &str) -> String {
    let is_edge = |c: char| !(c.is_ascii_alphanumeric() || "._%+-@/:?=&".contains(c));
    let core = word.trim_matches(is_edge);
    let start = word.len() - word.trim_start_matches(is_edge).len();
    let (before, after) = (&word[..start], &word[start + core.len()..]);
    let redacted = if SECRET_PREFIXES.iter().any(|p| core.starts_with(p)) {
        "***".to_owned()
    } else if let Some((scheme_host, _query)) =
        core.split_once('?').filter(|_| core.contains("://"))
    {
        format!("{}?…", redact_word(scheme_host))
    } else if let Some((key, _)) = core.split_once('=').filter(|(k, _)| {
        SECRET_KEYS
            .iter()
            .any(|s| k.to_ascii_lowercase().contains(s))
    }) {
        format!("{key}=***")
    } else if core.contains('@') || core.to_ascii_lowercase().contains("%40") {
        mask_email(&core.replace("%40", "@"))
    } else {
        core.to_owned()
    };
    format!("{before}{redacted}{after}")
}

/// The first 12 hex characters of SHA-256: correlates a body or token across log lines without
/// revealing it.
pub fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(&digest[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_once() {
        assert_eq!(mask_if_email("ada@example.com"), "a***@e***.com");
        assert_eq!(mask_if_email("a***@e***.com"), "a***@e***.com");
        assert_eq!(mask_if_email("stripe:evt_1"), "stripe:evt_1");
    }

    #[test]
    fn library_messages_lose_addresses_credentials_queries_and_bodies() {
        let said = text(
            "error sending request for url (https://api.notion.com/scim/v2/Users?filter=userName%20eq%20%22ada%40example.com%22): \
             Authorization: Bearer ntn_abc123 rejected for ada@example.com, token=s3cr3t \
             body {\"email\":\"bob@example.com\"}",
        );
        for leak in ["ada", "ntn_abc123", "s3cr3t", "bob", "filter"] {
            assert!(!said.contains(leak), "{leak} in {said}");
        }
        assert!(
            said.contains("https://api.notion.com/scim/v2/Users?…"),
            "{said}"
        );
        assert!(said.contains("a***@e***.com"), "{said}");
        assert!(said.ends_with("body {…}"), "{said}");
        assert_eq!(text("connection refused"), "connection refused");
        assert!(text(&"x".repeat(1000)).chars().count() <= MAX_TEXT + 1);
    }

    #[test]
    fn masks_local_part_and_domain() {
        assert_eq!(mask_email("ada@example.com"), "a***@e***.com");
        assert!(!mask_email("nodomain").contains("nodomain"));
    }
}
