//! `enroll send`: a genuinely signed, real-format webhook for any platform, posted to the local
//! endpoint or any URL, the way `stripe trigger` does.

use anyhow::Context;
use chrono::Utc;
use enroll_core::config::Config;
use enroll_core::ids::Platform;
use enroll_platforms::Sample;

/// The URL a platform posts to on a local endpoint at `base` (e.g. `http://127.0.0.1:8787`).
pub fn webhook_url(base: &str, platform: Platform) -> String {
    format!(
        "{}/webhooks/{}",
        base.trim_end_matches('/'),
        platform.as_str()
    )
}

/// The platform's first configured secret: what the sample is signed with.
pub fn signing_secret(config: &Config, platform: Platform) -> anyhow::Result<String> {
    config
        .platform(platform)
        .and_then(|p| p.secrets.first())
        .map(|s| s.expose().to_owned())
        .with_context(|| {
            format!("no secret configured for {platform}: add [platforms.{platform}] secrets")
        })
}

/// The request `enroll send` posts for `platform`: signed with its first secret and, for a
/// mapped platform, built from its configured fields and auth.
pub fn request(
    config: &Config,
    platform: Platform,
    sample: &Sample,
) -> anyhow::Result<enroll_platforms::Outgoing> {
    let cfg = config.platform(platform);
    if platform.is_mapped() && cfg.is_none() {
        anyhow::bail!(
            "{platform} is not configured: add [platforms.{platform}] with kind = \"mapped\""
        );
    }
    let secret = signing_secret(config, platform)?;
    let default = Default::default();
    Ok(enroll_platforms::sample_configured(
        platform,
        cfg.unwrap_or(&default),
        sample,
        &secret,
        Utc::now(),
    ))
}

/// Signs `sample` and posts it to `url`; returns the status and the response body. For a
/// built-in platform only: a mapped platform's request needs its configuration ([`request`]).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    platform: Platform,
    sample: &Sample,
    secret: &str,
) -> anyhow::Result<(u16, String)> {
    let out = enroll_platforms::sample(platform, sample, secret, Utc::now());
    post_signed(client, url, &out).await
}

/// Posts a request [`enroll_platforms::sample`] built, byte for byte: a platform's retry
/// resends the very same body.
pub async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    out: &enroll_platforms::Outgoing,
) -> anyhow::Result<(u16, String)> {
    // The query may carry a secret (Gumroad): it never goes into an error message.
    let full = match &out.query {
        Some(q) => format!("{url}?{q}"),
        None => url.to_owned(),
    };
    let mut req = client.post(&full).body(out.body.clone());
    for (k, v) in &out.headers {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("posting to {url}: {}", e.without_url()))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}
