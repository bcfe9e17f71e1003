//! The settings of a `mapped` platform: a checkout enroll has no module for, described in the
//! configuration (`[platforms.<name>] kind = "mapped"`). `enroll_platforms::mapped` reads
//! requests with them; this module only holds them and checks them at start-up.

use super::{ConfigError, PlatformConfig};
use crate::ids::Platform;
use serde::{Deserialize, Serialize};

/// `kind = "mapped"`: the only kind a configured platform can declare. Built-in platforms take
/// no `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformKind {
    Mapped,
}

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// A JSON object; fields are RFC 6901 JSON Pointers (`/payload/member/email`).
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`; fields are form keys (`customer[email]`).
    Form,
}

/// How a signature is spelled in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

/// `auth = { ... }` as written: exactly one of `hmac_sha256`, `header` and `query`.
/// [`MappedAuth::scheme`] turns it into what it means, or says why it cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappedAuth {
    /// The header holding an HMAC-SHA256 of the raw body, keyed with the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_sha256: Option<String>,
    /// With `hmac_sha256`: `hex` (the default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<SignatureEncoding>,
    /// With `hmac_sha256`: text before the signature in the header, e.g. `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The header holding the secret itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The query parameter holding the secret itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// What a [`MappedAuth`] means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme<'a> {
    Hmac {
        header: &'a str,
        encoding: SignatureEncoding,
        prefix: &'a str,
    },
    Header(&'a str),
    Query(&'a str),
}

impl MappedAuth {
    pub fn scheme(&self) -> Result<AuthScheme<'_>, String> {
        let given = [&self.hmac_sha256, &self.header, &self.query]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if given != 1 {
            return Err("give exactly one of hmac_sha256, header or query".into());
        }
        let named = |n: &str| -> Result<(), String> {
            let ok = !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.[]".contains(&b));
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "`{n}` is not a header or query parameter name (letters, digits, - _ . [ ])"
                ))
            }
        };
        if let Some(h) = &self.hmac_sha256 {
            named(h)?;
            return Ok(AuthScheme::Hmac {
                header: h,
                encoding: self.encoding.unwrap_or_default(),
                prefix: self.prefix.as_deref().unwrap_or(""),
            });
        }
        if self.encoding.is_some() || self.prefix.is_some() {
            return Err("encoding and prefix go with hmac_sha256 only".into());
        }
        match (&self.header, &self.query) {
            (Some(h), _) => named(h).map(|()| AuthScheme::Header(h)),
            (_, Some(q)) => named(q).map(|()| AuthScheme::Query(q)),
            (None, None) => Err("give exactly one of hmac_sha256, header or query".into()),
        }
    }
}

/// `[platforms.<name>.fields]`: where each value is in the body. JSON Pointers for a JSON
/// body, form keys for a form body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappedFields {
    /// The platform's id of the delivery or event: the idempotency key with the platform name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The event name, looked up in `kinds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the platform sends no event id: fields whose values, with the event's kind, form
    /// the idempotency key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
}

impl MappedFields {
    /// Every configured field as `(config key, pointer or form key)`, in a fixed order.
    pub fn all(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = [
            ("event_id", &self.event_id),
            ("kind", &self.kind),
            ("email", &self.email),
            ("product", &self.product),
            ("order", &self.order),
            ("name", &self.name),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (format!("fields.{k}"), v)))
        .collect();
        for (i, k) in self.key.iter().enumerate() {
            out.push((format!("fields.key[{i}]"), k));
        }
        out
    }
}

/// Whether `p` is an RFC 6901 JSON Pointer to something inside the document: `/` followed by
/// segments in which `~` appears only as `~0` or `~1`.
pub fn valid_pointer(p: &str) -> bool {
    let Some(rest) = p.strip_prefix('/') else {
        return false;
    };
    let b = rest.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, &c)| c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

/// The unescaped segments of a valid pointer.
pub fn pointer_segments(p: &str) -> Vec<String> {
    p.split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Checks a platform's mapped settings, or refuses them on a built-in platform. Errors name
/// the field, e.g. `platforms.kajabi.fields.email`.
pub(super) fn validate(p: Platform, pc: &PlatformConfig) -> Result<(), ConfigError> {
    let field = |f: &str| format!("platforms.{p}.{f}");
    let bad = |f: &str, why: &str| Err(ConfigError::invalid(field(f), why));
    if !p.is_mapped() {
        for (set, f) in [
            (pc.kind.is_some(), "kind"),
            (pc.body.is_some(), "body"),
            (pc.auth.is_some(), "auth"),
            (pc.fields.is_some(), "fields"),
            (!pc.kinds.is_empty(), "kinds"),
        ] {
            if set && f == "kind" {
                return bad(
                    f,
                    "a built-in platform takes no kind: give the mapped platform a name of its own",
                );
            }
            if set {
                return bad(f, "only a kind = \"mapped\" platform takes this setting");
            }
        }
        return Ok(());
    }
    if pc.kind != Some(PlatformKind::Mapped) {
        return bad(
            "kind",
            "not a built-in platform: describe it with kind = \"mapped\"",
        );
    }
    if !pc.event_types.is_empty() {
        return bad("event_types", "a mapped platform names its events in kinds");
    }
    if pc.tolerance_secs.is_some() {
        return bad("tolerance_secs", "a mapped platform signs no timestamp");
    }
    match &pc.auth {
        None => return bad("auth", "missing: give one of hmac_sha256, header or query"),
        Some(a) => {
            if let Err(why) = a.scheme() {
                return bad("auth", &why);
            }
        }
    }
    let Some(fields) = &pc.fields else {
        return bad(
            "fields",
            "missing: a mapped platform needs fields.email, fields.product and fields.order",
        );
    };
    for (name, value) in [
        ("email", &fields.email),
        ("product", &fields.product),
        ("order", &fields.order),
        ("kind", &fields.kind),
    ] {
        if value.is_none() {
            return bad(
                &format!("fields.{name}"),
                "missing: where the body holds it",
            );
        }
    }
    if fields.event_id.is_none() && fields.key.is_empty() {
        return bad(
            "fields.event_id",
            "missing: name the event id, or the fields.key list that identifies an event",
        );
    }
    if fields.event_id.is_some() && !fields.key.is_empty() {
        return bad("fields.key", "give fields.event_id or fields.key, not both");
    }
    let all = fields.all();
    let json = pc.body.unwrap_or_default() == BodyFormat::Json;
    for (name, value) in &all {
        if json && !valid_pointer(value) {
            return bad(
                name,
                "must be a JSON Pointer such as /data/email (~ only as ~0 or ~1)",
            );
        }
        if !json && value.trim().is_empty() {
            return bad(name, "must be a form key such as email");
        }
    }
    if json {
        // A value cannot be both a scalar and the object holding another field.
        for (a, pa) in &all {
            for (b, pb) in &all {
                let inner = pointer_segments(pb);
                let outer = pointer_segments(pa);
                if inner.len() > outer.len() && inner.starts_with(&outer) {
                    return bad(a, &format!("{pa} holds {b} ({pb}): it cannot be a value"));
                }
            }
        }
    }
    if pc.kinds.is_empty() {
        return bad(
            "kinds",
            "missing: map the platform's event names to purchase, refund, chargeback or cancel",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Secret};
    use crate::ids::Platform;

    const BASE: &str = r#"
[notion]
database_id = "db1"

[[products]]
id = "course"
name = "Course"
groups = [{ name = "Course" }]
platform_ids = { kajabi = ["offer_1"] }
"#;

    const KAJABI: &str = r#"
[platforms.kajabi]
kind = "mapped"
body = "json"
secrets = ["s1"]
auth = { hmac_sha256 = "X-Signature", encoding = "hex", prefix = "sha256=" }
[platforms.kajabi.fields]
event_id = "/id"
kind = "/event"
email = "/payload/member/email"
product = "/payload/offer/id"
order = "/payload/purchase/id"
name = "/payload/member/name"
[platforms.kajabi.kinds]
"purchase.created" = "purchase"
"purchase.refunded" = "refund"
"#;

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml(&format!("{BASE}{text}"), |_| None).map_err(|e| e.to_string())
    }

    /// The error for KAJABI with `from` replaced by `to`.
    fn refused(from: &str, to: &str) -> String {
        assert!(KAJABI.contains(from), "{from}");
        load(&KAJABI.replace(from, to)).unwrap_err()
    }

    #[test]
    fn the_documented_example_loads() {
        let c = load(KAJABI).unwrap();
        let p = c.platform_named("kajabi").unwrap();
        assert!(p.is_mapped());
        let pc = c.platform(p).unwrap();
        assert_eq!(pc.kinds.len(), 2);
        assert_eq!(c.platform_named("stripe"), Some(Platform::Stripe));
        assert_eq!(c.platform_named("teachable"), None);
        let product = &c.catalog.products[0];
        assert_eq!(product.platform_ids[&p][0].as_str(), "offer_1");
    }

    #[test]
    fn missing_pieces_stop_start_up_naming_them() {
        for (from, field) in [
            (
                "email = \"/payload/member/email\"\n",
                "platforms.kajabi.fields.email",
            ),
            (
                "product = \"/payload/offer/id\"\n",
                "platforms.kajabi.fields.product",
            ),
            (
                "order = \"/payload/purchase/id\"\n",
                "platforms.kajabi.fields.order",
            ),
            ("kind = \"/event\"\n", "platforms.kajabi.fields.kind"),
            ("event_id = \"/id\"\n", "platforms.kajabi.fields.event_id"),
        ] {
            let e = refused(from, "");
            assert!(e.contains(field) && e.contains("missing"), "{field}: {e}");
        }
        let e = refused(
            "auth = { hmac_sha256 = \"X-Signature\", encoding = \"hex\", prefix = \"sha256=\" }",
            "",
        );
        assert!(e.contains("platforms.kajabi.auth: missing"), "{e}");
        let e = refused("kind = \"mapped\"\n", "");
        assert!(e.contains("platforms.kajabi.kind"), "{e}");
        let e = refused(
            "\"purchase.created\" = \"purchase\"\n\"purchase.refunded\" = \"refund\"\n",
            "",
        );
        assert!(e.contains("platforms.kajabi.kinds: missing"), "{e}");
    }

    #[test]
    fn unusable_auth_and_pointers_are_refused() {
        let hmac =
            "auth = { hmac_sha256 = \"X-Signature\", encoding = \"hex\", prefix = \"sha256=\" }";
        for (auth, why) in [
            ("auth = {}", "exactly one"),
            ("auth = { header = \"X-A\", query = \"s\" }", "exactly one"),
            (
                "auth = { header = \"X-A\", prefix = \"v1=\" }",
                "hmac_sha256 only",
            ),
            ("auth = { hmac_sha256 = \"X Sig\" }", "not a header"),
            (
                "auth = { hmac_sha256 = \"X-Sig\", encoding = \"hex32\" }",
                "encoding",
            ),
        ] {
            let e = refused(hmac, auth);
            assert!(e.contains("auth") && e.contains(why), "{auth}: {e}");
        }
        assert!(load(&KAJABI.replace(hmac, "auth = { query = \"secret\" }")).is_ok());
        let e = refused("\"/payload/member/email\"", "\"payload.member.email\"");
        assert!(
            e.contains("platforms.kajabi.fields.email") && e.contains("JSON Pointer"),
            "{e}"
        );
        let e = refused("\"/payload/member/email\"", "\"/pay~2load\"");
        assert!(e.contains("fields.email"), "{e}");
        let e = refused("\"/payload/offer/id\"", "\"/payload/member\"");
        assert!(
            e.contains("fields.product") && e.contains("holds fields.email"),
            "{e}"
        );
        // Form keys are not pointers.
        let form = KAJABI.replace("body = \"json\"", "body = \"form\"");
        assert!(load(&form.replace("\"/payload/member/email\"", "\"email\"")).is_ok());
    }

    #[test]
    fn mapped_settings_are_refused_on_built_in_platforms() {
        for extra in [
            "kind = \"mapped\"",
            "auth = { header = \"X-A\" }",
            "body = \"form\"",
            "fields = { email = \"/e\" }",
            "kinds = { a = \"purchase\" }",
        ] {
            let e = load(&format!(
                "{KAJABI}\n[platforms.stripe]\nsecrets = [\"x\"]\n{extra}\n"
            ))
            .unwrap_err();
            assert!(e.contains("platforms.stripe."), "{extra}: {e}");
        }
        let e = load(&format!("{KAJABI}\n[platforms.Teach]\nsecrets = [\"x\"]\n")).unwrap_err();
        assert!(e.contains("platform name"), "{e}");
        let e = load(&KAJABI.replace("[platforms.kajabi", "[platforms.kajab")).unwrap_err();
        assert!(
            e.contains("platform_ids.kajabi") && e.contains("no such platform"),
            "{e}"
        );
    }

    #[test]
    fn environment_secrets_reach_mapped_platforms() {
        let text = format!("{BASE}{KAJABI}")
            .replace("{ kajabi", "{ \"kit-commerce\"")
            .replace("kajabi", "kit-commerce");
        let c = Config::from_toml(&text, |k| {
            (k == "ENROLL_KIT_COMMERCE_SECRETS").then(|| "a,b".to_owned())
        })
        .unwrap();
        let p = c.platform_named("kit-commerce").unwrap();
        let got: Vec<&str> = c.platforms[&p].secrets.iter().map(Secret::expose).collect();
        assert_eq!(got, ["a", "b"]);
    }
}
