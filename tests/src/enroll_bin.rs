//! The `enroll` binary for tests that run it as a child process (`enroll chaos`, whose workers
//! must be separate processes to be killed; the log checks). Cargo builds a package's binaries
//! only for that package's own integration tests, so this builds it once per test binary, the
//! way `cargo lambda watch` builds the functions, and finds it next to the test executable.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::OnceLock;

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Path of a freshly built `enroll`.
pub fn path() -> Result<PathBuf> {
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build() -> Result<PathBuf> {
    crate::lambda_watch::prebuild(&["enroll"])?;
    // The test executable lives in <target>/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("no target directory above the test executable")?;
    let bin = dir.join("enroll");
    anyhow::ensure!(bin.exists(), "{} was not built", bin.display());
    Ok(bin)
}

/// `enroll args...` with the environment of a seller trying it out: no tokens, no stack, so
/// the simulator stands in for Notion. Quiet logs, no stdin.
pub fn simulated(args: &[&str]) -> Result<std::process::Command> {
    let mut cmd = std::process::Command::new(path()?);
    cmd.args(args)
        .env_remove("ENROLL_SCIM_TOKEN")
        .env_remove("ENROLL_NOTION_TOKEN")
        .env_remove("ENROLL_TABLE")
        .env_remove("ENROLL_STACK")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null());
    Ok(cmd)
}

/// A new, empty directory under the temporary directory, named for the test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("enroll-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}
