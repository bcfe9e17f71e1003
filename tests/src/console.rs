//! `enroll console` as a test starts it: the built binary with the given arguments, the address
//! it prints, and a session cookie got the way a browser gets it (the token once, then the
//! cookie the console sets).

use anyhow::{Context, Result};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `enroll console`.
pub struct Console {
    _child: Killed,
    /// The address it printed, with its token.
    pub url: String,
    /// The same address without the token, e.g. `http://127.0.0.1:N`.
    pub base: String,
}

impl Console {
    /// Starts `cmd` (an `enroll console ...` command) and reads the address it prints.
    pub fn start(mut cmd: Command) -> Result<Self> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting enroll console")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let guard = Killed(child);
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("console: ")
            .with_context(|| format!("enroll console printed {line:?}"))?
            .to_owned();
        anyhow::ensure!(
            url.starts_with("http://127.0.0.1:") && url.contains("/?token="),
            "{url}"
        );
        let base = url.split("/?token=").next().unwrap_or_default().to_owned();
        Ok(Self {
            _child: guard,
            url,
            base,
        })
    }

    /// Opens the page with the token (`http` must not follow redirects) and returns the
    /// `name=value` of the session cookie the console sets.
    pub async fn session(&self, http: &reqwest::Client) -> Result<String> {
        let opened = http.get(&self.url).send().await?;
        anyhow::ensure!(opened.status() == 303, "opening: {}", opened.status());
        Ok(opened
            .headers()
            .get("set-cookie")
            .context("no session cookie")?
            .to_str()?
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned())
    }
}
