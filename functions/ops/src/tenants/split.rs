//! A seller's configuration file split into what the table holds (the TOML without any secret)
//! and what its Secrets Manager secret holds (the `SecretsDoc` JSON), and back.
//!
//! The secrets of a configuration are exactly its [`Secret`] fields: `scim.token`,
//! `notion.token`, `platforms.<p>.secrets` and `[[outbound]].secret`. The split is checked by
//! putting it back together the way the functions do (`TenantRegistry::load`: the stored TOML
//! with the document applied) and comparing with the file's configuration, so a secret the
//! split missed is an error here, not a secret in the table.

use super::TenantAdminError;
use base64::Engine as _;
use enroll_aws::SecretsDoc;
use enroll_core::config::{Config, Secret};

/// DynamoDB's item limit is 400 KB; the rest of the item (keys, times) is small, and this
/// leaves room for what a later field may add.
pub const MAX_STORED_BYTES: usize = 350 * 1024;
/// Secrets Manager's limit on a secret string.
pub const MAX_SECRET_BYTES: usize = 65_536;

/// A configuration file, split.
pub struct Split {
    /// The validated configuration, secrets included.
    pub config: Config,
    /// The TOML the tenant's item holds: the file's, without any secret.
    pub stored: String,
    /// What the tenant's secret holds.
    pub secrets: SecretsDoc,
}

/// Loads and validates `text` as `enroll dev --config` does, except that no `ENROLL_*`
/// variable is applied: a tenant's functions never apply them (they are the single seller's),
/// so a file that is only valid with them would not load on the stack. Then splits it.
pub fn split(text: &str) -> Result<Split, TenantAdminError> {
    let config = Config::from_toml(text, |_| None)
        .map_err(|e| TenantAdminError::InvalidConfig(e.to_string()))?;
    let mut table: toml::Table = toml::from_str(text)
        .map_err(|e| TenantAdminError::InvalidConfig(e.message().to_owned()))?;
    strip_secrets(&mut table);
    let stored = toml::to_string(&table).map_err(|e| {
        TenantAdminError::InvalidConfig(format!("the configuration does not serialise: {e}"))
    })?;
    if stored.len() > MAX_STORED_BYTES {
        return Err(TenantAdminError::TooLarge {
            bytes: stored.len(),
            limit: MAX_STORED_BYTES,
        });
    }
    let secrets = secrets_of(&config);
    let split = Split {
        config,
        stored,
        secrets,
    };
    split.check()?;
    Ok(split)
}

/// Removes every secret from the file's tables.
fn strip_secrets(table: &mut toml::Table) {
    for section in ["scim", "notion"] {
        if let Some(toml::Value::Table(t)) = table.get_mut(section) {
            t.remove("token");
        }
    }
    if let Some(toml::Value::Table(platforms)) = table.get_mut("platforms") {
        for (_, platform) in platforms.iter_mut() {
            if let toml::Value::Table(p) = platform {
                p.remove("secrets");
            }
        }
    }
    if let Some(toml::Value::Array(entries)) = table.get_mut("outbound") {
        for entry in entries {
            if let toml::Value::Table(e) = entry {
                e.remove("secret");
            }
        }
    }
}

/// The configuration's secrets as the tenant's secret document.
fn secrets_of(config: &Config) -> SecretsDoc {
    let given = |s: &Secret| (!s.is_empty()).then(|| s.clone());
    SecretsDoc {
        scim_token: given(&config.scim.token),
        notion_token: given(&config.notion.token),
        platforms: config
            .platforms
            .iter()
            .filter(|(_, pc)| !pc.secrets.is_empty())
            .map(|(p, pc)| (*p, pc.secrets.clone()))
            .collect(),
        // By position; an entry without a secret keeps an empty one (which changes nothing).
        outbound: if config.outbound.iter().any(|o| !o.secret.is_empty()) {
            config.outbound.iter().map(|o| o.secret.clone()).collect()
        } else {
            Vec::new()
        },
    }
}

impl Split {
    /// The stored TOML and the document give back the file's configuration, and the TOML holds
    /// none of the secrets.
    fn check(&self) -> Result<(), TenantAdminError> {
        let back = join(&self.stored, &self.secrets)?;
        if back != self.config {
            return Err(TenantAdminError::Internal(
                "the configuration without its secrets does not load back the same".into(),
            ));
        }
        // Short values (a test's "x") may occur in the text by chance; a real token does not.
        let leaked = all_secrets(&self.secrets)
            .any(|s| s.expose().len() >= 8 && self.stored.contains(s.expose()));
        if leaked {
            return Err(TenantAdminError::Internal(
                "a secret is still in the configuration to store".into(),
            ));
        }
        Ok(())
    }
}

/// The stored TOML with the document applied and validated: what the functions load.
pub fn join(stored: &str, secrets: &SecretsDoc) -> Result<Config, TenantAdminError> {
    let mut config: Config = toml::from_str(stored)
        .map_err(|e| TenantAdminError::InvalidConfig(e.message().to_owned()))?;
    secrets.apply(&mut config);
    config
        .validate()
        .map_err(|e| TenantAdminError::InvalidConfig(e.to_string()))?;
    Ok(config)
}

fn all_secrets(doc: &SecretsDoc) -> impl Iterator<Item = &Secret> {
    doc.scim_token
        .iter()
        .chain(&doc.notion_token)
        .chain(doc.platforms.values().flatten())
        .chain(&doc.outbound)
}

/// The document as the secret string the functions parse (`SecretsDoc::parse`).
pub fn to_json(doc: &SecretsDoc) -> String {
    let expose = |s: &Secret| serde_json::Value::from(s.expose());
    let mut out = serde_json::Map::new();
    if let Some(t) = &doc.scim_token {
        out.insert("scim_token".into(), expose(t));
    }
    if let Some(t) = &doc.notion_token {
        out.insert("notion_token".into(), expose(t));
    }
    if !doc.platforms.is_empty() {
        let platforms = doc
            .platforms
            .iter()
            .map(|(p, list)| (p.as_str().to_owned(), list.iter().map(expose).collect()))
            .collect();
        out.insert("platforms".into(), serde_json::Value::Object(platforms));
    }
    if !doc.outbound.is_empty() {
        out.insert("outbound".into(), doc.outbound.iter().map(expose).collect());
    }
    serde_json::Value::Object(out).to_string()
}

/// A new Standard Webhooks signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn generate_secret() -> Secret {
    let bytes: [u8; 32] = rand::random();
    Secret::new(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use enroll_core::ids::Platform;

    // Dotted keys and inline tables too: the split works on the file's tables, whatever the
    // syntax.
    const FILE: &str = r#"
scim.token = "scim-token-of-acme"
notion = { token = "notion-token-of-acme", database_id = "db1" }
platforms.stripe.secrets = ["whsec_stripe_one_of_acme", "whsec_stripe_two_of_acme"]
outbound = [{ url = "https://hooks.example.com/enroll", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", events = ["access.granted"] }]

[[products]]
id = "course"
name = "Course"
groups = [{ name = "Course" }]
"#;

    #[test]
    fn the_stored_toml_holds_no_secret_and_the_document_holds_them_all() {
        let split = split(FILE).unwrap();
        for secret in [
            "scim-token-of-acme",
            "notion-token-of-acme",
            "whsec_stripe_one_of_acme",
            "whsec_stripe_two_of_acme",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(
                !split.stored.contains(secret),
                "{secret} in {}",
                split.stored
            );
        }
        let json = to_json(&split.secrets);
        let doc = SecretsDoc::parse(&json).unwrap();
        assert_eq!(doc, split.secrets);
        assert_eq!(doc.platforms[&Platform::Stripe].len(), 2);
        assert_eq!(join(&split.stored, &doc).unwrap(), split.config);
    }

    #[test]
    fn an_invalid_file_is_refused_before_anything_is_split() {
        assert!(matches!(
            split("[notion]\ndatabase_id = \"\"\n"),
            Err(TenantAdminError::InvalidConfig(_))
        ));
    }

    #[test]
    fn a_catalog_over_the_item_limit_is_refused() {
        let mut text = FILE.to_owned();
        for i in 0..4000 {
            text.push_str(&format!(
                "\n[[products]]\nid = \"p{i}\"\nname = \"{}\"\ngroups = [{{ name = \"G\" }}]\n",
                "x".repeat(80)
            ));
        }
        assert!(matches!(
            split(&text),
            Err(TenantAdminError::TooLarge { .. })
        ));
    }

    #[test]
    fn generated_secrets_are_standard_webhooks_secrets() {
        let s = generate_secret();
        let key = enroll_core::config::outbound::decode_whsec(s.expose()).unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(generate_secret(), s);
    }
}
