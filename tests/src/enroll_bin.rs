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

/// A running `enroll dev` on a free webhook port, against the simulator; killed when dropped.
pub struct Dev {
    pub child: std::process::Child,
    pub dir: PathBuf,
    /// Where it answers, as it recorded in `dev.json`.
    pub record: enroll_embedded::admin::DevRecord,
}

impl Dev {
    /// Starts `enroll dev --port 0 --data-dir <dir> <extra...>` and waits for its `dev.json`.
    pub fn start(dir: &std::path::Path, extra: &[&str]) -> Result<Self> {
        let dir_arg = dir.to_str().context("a UTF-8 path")?;
        let mut args = vec!["dev", "--port", "0", "--data-dir", dir_arg];
        args.extend_from_slice(extra);
        let mut child = simulated(&args)?
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting enroll dev")?;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if let Some(record) =
                enroll_embedded::admin::read_dev_record(dir).filter(|r| r.pid == child.id())
            {
                return Ok(Self {
                    child,
                    dir: dir.to_owned(),
                    record,
                });
            }
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("enroll dev exited early: {status}");
            }
            anyhow::ensure!(
                std::time::Instant::now() < until,
                "enroll dev wrote no {}",
                enroll_embedded::admin::DEV_FILE
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The admin token it made in its data directory.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join(enroll_embedded::admin::TOKEN_FILE))
            .expect("reading the admin token")
            .trim()
            .to_owned()
    }

    /// Ctrl-C, and waits for the process to end.
    pub fn interrupt(mut self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        anyhow::ensure!(unsafe { libc::kill(pid, libc::SIGINT) } == 0, "kill failed");
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "enroll dev stopped with {status}");
        Ok(())
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
