//! The receiver of enroll's outbound events for tests: tests/outbound_receiver.py, which
//! verifies every signature with the Standard Webhooks reference library (PyPI
//! `standardwebhooks`), answers the statuses it is given, and records each attempt.

use crate::lambda_watch::{venv_bin, workspace_root};
use anyhow::{Context, Result};
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The secret the receiver verifies with: `whsec_` and the base64 of 24 bytes.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The Python receiver, killed when dropped.
pub struct Receiver {
    child: Child,
    pub port: u16,
    record: PathBuf,
}

impl Receiver {
    /// Answers `answers` in turn (then 200 for every later attempt).
    pub fn start(dir: &Path, answers: &str) -> Result<Self> {
        let python = venv_bin().join("python");
        let record = dir.join(format!("received-{}.jsonl", uuid::Uuid::new_v4().simple()));
        let mut child = Command::new(&python)
            .arg(workspace_root().join("tests/outbound_receiver.py"))
            .args(["--secret", SECRET, "--answers", answers, "--record"])
            .arg(&record)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} (run bash tests/tools.sh)", python.display()))?;
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut first)?;
        let port: Value = serde_json::from_str(first.trim())
            .with_context(|| format!("the receiver did not start: {first:?}"))?;
        let port = port["port"].as_u64().context("no port")? as u16;
        Ok(Self {
            child,
            port,
            record,
        })
    }

    /// Every attempt so far, oldest first.
    pub fn attempts(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until `done` holds for the attempts, up to a generous deadline.
    pub async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Result<Vec<Value>> {
        let until = Instant::now() + Duration::from_secs(240);
        loop {
            let got = self.attempts();
            if done(&got) {
                return Ok(got);
            }
            anyhow::ensure!(Instant::now() < until, "never {what}: {got:#?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The `[[outbound]]` entry that sends every event type here.
    pub fn outbound_toml(&self) -> String {
        format!(
            "\n[[outbound]]\nurl = \"http://127.0.0.1:{}/hooks/enroll\"\nsecret = \"{SECRET}\"\nevents = [\"access.granted\", \"access.changed\", \"access.revoked\", \"access.expired\"]\n",
            self.port
        )
    }

    /// The example configuration with this receiver as its one endpoint.
    pub fn config_text(&self) -> String {
        let example =
            std::fs::read_to_string(workspace_root().join("infra/enroll.example.toml")).unwrap();
        format!("{example}{}", self.outbound_toml())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
