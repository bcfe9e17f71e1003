//! An independent, strict SCIM 2.0 server as a second workspace: `scim2-server` from PyPI
//! (the python-scim project's reference server, pinned in `tests/tools.sh`), in memory, with
//! the RFC 7643 schemas only. It refuses what Notion's lenient API lets pass (an extension
//! listed in `schemas` without attributes, a `remove` that carries a value list, an unknown
//! filter attribute such as `email`), so a test against it shows enroll keeps to the RFCs.
//!
//! [`StrictScim::start`] runs `<repo>/.venv/bin/scim2-server` (or `$SCIM2_SERVER`) on a free
//! port with a fresh bearer token, waits until it answers, and creates the Groups a test's
//! catalog names. Each test gets its own server; dropping it stops the server. The server's
//! log goes to `$TMPDIR/enroll-scim2-server-<port>.log`.

use crate::local_server::LocalServer;
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// A running strict SCIM server with the Groups it was started with.
pub struct StrictScim {
    /// `http://127.0.0.1:<port>/v2`: what `scim.base_url` is set to.
    pub base_url: String,
    /// The only bearer token the server accepts.
    pub token: String,
    /// Group display name to id.
    pub groups: BTreeMap<String, String>,
    http: reqwest::Client,
    _server: LocalServer,
}

fn program() -> PathBuf {
    std::env::var_os("SCIM2_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::lambda_watch::venv_bin().join("scim2-server"))
}

impl StrictScim {
    /// Starts a server and creates one Group per name (`POST /Groups`).
    pub async fn start(groups: &[&str]) -> Result<Self> {
        let token = format!("strict-scim-{}", uuid::Uuid::new_v4().simple());
        let args_token = token.clone();
        let server = tokio::task::spawn_blocking(move || {
            LocalServer::spawn(
                "scim2-server",
                &program(),
                move |port| {
                    vec![
                        "--hostname".into(),
                        "127.0.0.1".into(),
                        "--port".into(),
                        port.to_string().into(),
                        "--bearer-token".into(),
                        args_token.clone().into(),
                    ]
                },
                // Discovery answers without a token: any answer means it listens.
                "/v2/ServiceProviderConfig",
                |status| status < 500,
                READY_TIMEOUT,
            )
        })
        .await??;
        let mut me = Self {
            base_url: format!("{}/v2", server.url()),
            token,
            groups: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            _server: server,
        };
        for name in groups {
            let id = me.create_group(name).await?;
            me.groups.insert((*name).to_owned(), id);
        }
        Ok(me)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base_url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{method} {path}: {status} {text}");
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON"))
    }

    /// `POST /Groups`; the new Group's id.
    pub async fn create_group(&self, display_name: &str) -> Result<String> {
        let body = json!({"schemas": [GROUP_SCHEMA], "displayName": display_name});
        let created = self
            .call(reqwest::Method::POST, "/Groups", Some(body))
            .await?;
        created["id"]
            .as_str()
            .map(str::to_owned)
            .context("POST /Groups returned no id")
    }

    /// The member ids of a Group, as `GET /Groups/{id}` lists them, in order and with any
    /// repeats (a member listed twice is a finding).
    pub async fn group_members(&self, id: &str) -> Result<Vec<String>> {
        let group = self
            .call(reqwest::Method::GET, &format!("/Groups/{id}"), None)
            .await?;
        Ok(group["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["value"].as_str().map(str::to_owned))
            .collect())
    }

    /// Every Group the test created, by name, with its member ids.
    pub async fn memberships(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let mut out = BTreeMap::new();
        for (name, id) in &self.groups {
            out.insert(name.clone(), self.group_members(id).await?);
        }
        Ok(out)
    }

    /// Every user on the server, as (id, userName), paging by `startIndex`.
    pub async fn users(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut start = 1;
        loop {
            let page = self
                .call(
                    reqwest::Method::GET,
                    &format!("/Users?startIndex={start}&count=100"),
                    None,
                )
                .await?;
            let resources = page["Resources"].as_array().cloned().unwrap_or_default();
            for u in &resources {
                let id = u["id"].as_str().context("a user without id")?;
                let name = u["userName"].as_str().unwrap_or_default();
                out.push((id.to_owned(), name.to_owned()));
            }
            let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
            start += resources.len();
            if resources.is_empty() || start > total {
                return Ok(out);
            }
        }
    }

    /// The id of the user whose `userName` is `user_name`, looked up as a client would
    /// (`filter=userName eq "..."`).
    pub async fn user_id(&self, user_name: &str) -> Result<Option<String>> {
        let filter = format!("userName eq \"{user_name}\"");
        let page = self
            .http
            .get(format!("{}/Users", self.base_url))
            .bearer_auth(&self.token)
            .query(&[("filter", filter.as_str())])
            .send()
            .await?;
        ensure!(
            page.status().is_success(),
            "GET /Users?filter: {}",
            page.status()
        );
        let page: Value = page.json().await?;
        let ids: Vec<&str> = page["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["id"].as_str())
            .collect();
        ensure!(ids.len() <= 1, "{} users named {user_name}", ids.len());
        Ok(ids.first().map(|s| (*s).to_owned()))
    }

    /// The names of the Groups (of those the test created) whose members include `user_id`,
    /// one entry per listing, so a member listed twice in a Group shows twice.
    pub async fn groups_of(&self, user_id: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (name, members) in self.memberships().await? {
            let times = members.iter().filter(|m| *m == user_id).count();
            out.extend(std::iter::repeat_n(name, times));
        }
        Ok(out)
    }
}
