//! `cargo lambda watch` as a child process, for tests that run the real function binaries.
//!
//! [`LambdaWatch::start`] runs `cargo lambda watch --ignore-changes` from the workspace root on a
//! free port with the given environment (which cargo-lambda passes on to every function), with
//! `<repo>/.venv/bin` first on `PATH` so `cargo lambda` is found. Its log (cargo's output and the
//! functions' JSON logs) goes to `$TMPDIR/enroll-lambda-watch-<port>.log`; errors quote its tail.
//!
//! The watcher runs under a small `sh` wrapper that leads its own process group and waits on a
//! pipe from this process. Dropping the [`LambdaWatch`] closes the pipe; so does the kernel when
//! this process ends in any way. The wrapper then asks cargo-lambda to stop (SIGTERM, so it stops
//! the function processes it started), and after a grace period kills the whole group.
//!
//! The first request to a function waits while cargo builds and starts it, so requests allow
//! [`FIRST_REQUEST_TIMEOUT`]; [`prebuild`] builds the binaries beforehand the way `cargo lambda
//! watch` does (`cargo build --bin <name>` from the root, so the workspace's features match).

use anyhow::{anyhow, bail, Context, Result};
use std::ffi::OsString;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a request may wait for cargo to build and start a function.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long cargo-lambda may take to listen (it runs `cargo metadata` first, which waits for
/// other builds' locks).
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// `$1` log file, then the command. `read` returns once this process's end of the pipe on stdin
/// closes; `kill 0` signals the wrapper's whole process group.
const WRAPPER: &str = r#"log="$1"; shift
"$@" >"$log" 2>&1 </dev/null &
watch=$!
read _ignored
kill -TERM "$watch" 2>/dev/null
i=0
while kill -0 "$watch" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL 0"#;

/// What cargo-lambda logs when a function process ends (a failed cold start, a panic).
const EXITED: &str = "command exited";

/// The workspace root, where `cargo lambda watch` must run.
pub fn workspace_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// `<repo>/.venv/bin`, where cargo-lambda and moto live.
pub fn venv_bin() -> PathBuf {
    workspace_root().join(".venv/bin")
}

/// The cargo that runs these tests, so the nested builds use the same toolchain.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// `PATH` with the venv first.
fn path_with_venv() -> OsString {
    let mut dirs = vec![venv_bin()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_else(|_| venv_bin().into_os_string())
}

/// Builds the function binaries as `cargo lambda watch` will (`cargo build --bin <name>` from
/// the workspace root), so their first invocation only starts them.
pub fn prebuild(bins: &[&str]) -> Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.arg("build").current_dir(workspace_root());
    for b in bins {
        cmd.args(["--bin", b]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!(
            "cargo build {bins:?} failed with {}:\n{}",
            out.status,
            tail_of(&String::from_utf8_lossy(&out.stderr), 60)
        );
    }
    Ok(())
}

/// A running `cargo lambda watch`. Dropping it stops the watcher and every function it started.
pub struct LambdaWatch {
    port: u16,
    log: PathBuf,
    wrapper: Child,
    http: reqwest::Client,
}

impl LambdaWatch {
    /// Starts the watcher with `env` added to this process's environment and waits until it
    /// listens. Functions start on their first request.
    pub async fn start(env: &[(&str, String)]) -> Result<Self> {
        let cargo_lambda = venv_bin().join("cargo-lambda");
        if !cargo_lambda.exists() {
            bail!(
                "{} not found: create the venv (python3 -m venv .venv && .venv/bin/pip install \
                 cargo-lambda)",
                cargo_lambda.display()
            );
        }
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("enroll-lambda-watch-{port}.log"));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg("enroll-lambda-watch")
            .arg(&log)
            .arg(cargo())
            .args(["lambda", "watch", "--ignore-changes"])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .current_dir(workspace_root())
            .env("PATH", path_with_venv())
            // Credentials and region come only from what the test passes.
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("ENROLL_SECRET_ID")
            // The functions log at `info` by default; cargo-lambda at `debug` would print
            // every variable (the configuration's tokens included) into the log.
            .env_remove("RUST_LOG")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let wrapper = cmd.spawn().context("spawning cargo lambda watch")?;
        let mut watch = Self {
            port,
            log,
            wrapper,
            http: reqwest::Client::builder()
                .timeout(FIRST_REQUEST_TIMEOUT)
                .build()?,
        };
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            watch.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "cargo lambda watch did not listen on {port} within {LISTEN_TIMEOUT:?}\n{}",
                    watch.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(watch)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the watcher's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "--- last {lines} lines of {} ---\n{}",
            self.log.display(),
            tail_of(&read_log(&self.log, 0), lines)
        )
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.wrapper.try_wait()? {
            bail!(
                "cargo lambda watch exited with {status}\n{}",
                self.log_tail(40)
            );
        }
        Ok(())
    }

    /// Awaits `fut`, failing early if the watcher dies or a function process exits meanwhile
    /// (a failed cold start otherwise leaves the request waiting).
    async fn guarded<T>(&mut self, what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let start = log_len(&self.log);
        tokio::pin!(fut);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                out = &mut fut => {
                    return out.with_context(|| format!("{what}\n{}", self.log_tail(40)));
                }
                _ = tick.tick() => {
                    self.check_alive().with_context(|| what.to_owned())?;
                    let since = read_log(&self.log, start);
                    if since.contains(EXITED) {
                        bail!(
                            "{what}: a function process exited while the request waited\n{}",
                            self.log_tail(60)
                        );
                    }
                }
            }
        }
    }

    /// A function URL request: `POST /lambda-url/<function><path>`. Answers the status and body.
    pub async fn post_url(
        &mut self,
        function: &str,
        path: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<(u16, String)> {
        let url = format!("http://127.0.0.1:{}/lambda-url/{function}{path}", self.port);
        let mut req = self.http.post(&url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        self.guarded(&format!("POST {url}"), async move {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            Ok((status, resp.text().await?))
        })
        .await
    }

    /// A function URL `GET`, e.g. to start a function without side effects.
    pub async fn get_url(&mut self, function: &str, path: &str) -> Result<(u16, String)> {
        let url = format!("http://127.0.0.1:{}/lambda-url/{function}{path}", self.port);
        let req = self.http.get(&url);
        self.guarded(&format!("GET {url}"), async move {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            Ok((status, resp.text().await?))
        })
        .await
    }

    /// A synchronous invocation through the Lambda invoke API, as an event source mapping makes
    /// it. Answers the function's JSON response; a function error is an `Err` with its body.
    pub async fn invoke(
        &mut self,
        function: &str,
        payload: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{function}/invocations",
            self.port
        );
        let req = self.http.post(&url).json(payload);
        let (status, error_header, body) = self
            .guarded(&format!("invoke {function}"), async move {
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let error_header = resp
                    .headers()
                    .get("x-amz-function-error")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok((status, error_header, resp.text().await?))
            })
            .await?;
        if status != 200 || error_header.is_some() {
            bail!(
                "invoke {function} answered {status} (function error: {error_header:?}): {body}\n{}",
                self.log_tail(40)
            );
        }
        serde_json::from_str(&body)
            .map_err(|e| anyhow!("invoke {function} answered non-JSON ({e}): {body}"))
    }

    /// `cargo lambda invoke <function> --data-file <file>`, the command a person runs; answers
    /// its standard output.
    pub async fn cargo_lambda_invoke(
        &mut self,
        function: &str,
        data_file: &Path,
    ) -> Result<String> {
        let mut cmd = tokio::process::Command::new(cargo());
        cmd.args(["lambda", "invoke", function])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &self.port.to_string()])
            .arg("--data-file")
            .arg(data_file)
            .args(["--output-format", "json"])
            .current_dir(workspace_root())
            .env("PATH", path_with_venv())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = self
            .guarded(&format!("cargo lambda invoke {function}"), async move {
                Ok(cmd.output().await?)
            })
            .await?;
        if !out.status.success() {
            bail!(
                "cargo lambda invoke {function} failed with {}: {}{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail(40)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        // Closing the pipe tells the wrapper to stop the group.
        drop(self.wrapper.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.wrapper.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    // The wrapper leads the group: its pid is the group id. Signal it directly:
                    // procps `kill` given a group that no longer exists was seen signalling
                    // every process; the system call just answers ESRCH.
                    if let Ok(pgid) = i32::try_from(self.wrapper.id()) {
                        // SAFETY: kill(2) takes plain integers and touches no memory.
                        unsafe {
                            libc::kill(-pgid, libc::SIGKILL);
                        }
                    }
                    let _ = self.wrapper.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// Another process could take the port between this probe and the watcher's bind; the watcher
/// would then exit and `start` says so.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The log from byte `from` on (lossy: a cut through a UTF-8 sequence is harmless here).
fn read_log(path: &Path, from: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_end(&mut text);
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

fn tail_of(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
