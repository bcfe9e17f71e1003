//! The client side of `enroll dev`'s admin listener: finding the running `enroll dev` that owns
//! a data directory, and calling it with the directory's token. Every operator command that
//! acts on a data directory asks it when it runs and opens the directory itself otherwise (a
//! second writer would compact the journals from under it).

use anyhow::{bail, Context};
use enroll_core::config::Secret;
use std::path::Path;
use std::time::Duration;

/// The admin listener of a running `enroll dev`, with the token it wants.
#[derive(Clone)]
pub struct DevAdmin {
    /// E.g. `http://127.0.0.1:40123`.
    pub url: String,
    token: Secret,
    http: reqwest::Client,
}

impl DevAdmin {
    pub fn new(url: &str, token: Secret) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        }
    }

    /// A request to `path` (e.g. `/admin/status`) carrying the token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(self.token.expose())
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    /// Sends `req` and reads its JSON answer; an error carries what `enroll dev` said.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        let resp = req
            .timeout(timeout)
            .send()
            .await
            .with_context(|| format!("calling the running `enroll dev` at {}", self.url))?;
        if !resp.status().is_success() {
            bail!(
                "`enroll dev` answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(resp.json().await?)
    }
}

/// The `enroll dev` that owns `data_dir`, if one runs: every command that acts on a data
/// directory asks it when it runs and opens the directory itself otherwise.
///
/// Its address comes from `url` when given, else from the directory's `dev.json`; the token
/// from the directory's `admin.token`. A `dev.json` left by a killed process (nothing listens,
/// or something else does) counts as no `enroll dev`. One that answers but refuses the token is
/// an error, not a reason to open files it may own.
pub async fn running_dev(data_dir: &Path, url: Option<&str>) -> anyhow::Result<Option<DevAdmin>> {
    let url = match url.filter(|u| !u.is_empty()) {
        Some(u) => u.to_owned(),
        None => match crate::admin::read_dev_record(data_dir) {
            Some(r) => r.admin_url,
            None => return Ok(None),
        },
    };
    let token_path = data_dir.join(crate::admin::TOKEN_FILE);
    if !token_path.exists() {
        // No `enroll dev` has ever started on this directory, so none owns it.
        return Ok(None);
    }
    let dev = DevAdmin::new(&url, crate::admin::read_token(&token_path)?);
    let probe = dev
        .get("/admin/healthz")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match probe {
        Ok(r) if r.status().is_success() => Ok(Some(dev)),
        Ok(r) if matches!(r.status().as_u16(), 401 | 403) => bail!(
            "an `enroll dev` answers at {url} but refuses the token in {}: is it running on another data directory (--data-dir)?",
            token_path.display()
        ),
        Ok(_) => Ok(None),
        Err(e) if e.is_timeout() => bail!(
            "the `enroll dev` at {url} does not answer; it owns {}: wait, or stop it",
            data_dir.display()
        ),
        Err(_) => Ok(None),
    }
}

/// What `GET /admin/notion` tells about the workspace a running `enroll dev` simulates.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SimulatedScim {
    pub scim_base_url: String,
    pub scim_token: String,
    /// The simulated public API, for the console's setup check (empty from an older process).
    #[serde(default)]
    pub notion_base_url: String,
    #[serde(default)]
    pub notion_token: String,
}
