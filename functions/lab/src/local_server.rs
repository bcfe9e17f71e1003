//! A server program (moto, scim2-server, ...) as a child process on a free loopback port, for
//! the bench and the tests that talk to it over HTTP.
//!
//! [`LocalServer::spawn`] picks a free port, starts the program under a small `sh` wrapper and
//! waits until the port answers HTTP. The wrapper waits on a pipe from this process and stops
//! the program when the pipe closes: on [`Drop`], and also whenever this process ends, whether
//! it finished, panicked or was killed, since the kernel closes the pipe then. So no server
//! outlives the process that started it, even one held in a `static` that is never dropped.
//! The program's output goes to `$TMPDIR/enroll-<name>-<port>.log`.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `$1` log file, then the command. `read` returns once this process's end of the pipe on stdin
/// closes.
const WRAPPER: &str = r#"log="$1"; shift
"$@" >"$log" 2>&1 </dev/null &
server=$!
read _ignored
kill "$server" 2>/dev/null
wait "$server""#;

/// Another process may take the probed port before the server binds it; the server then
/// exits, and a new port is tried this many times in all.
const ATTEMPTS: usize = 3;

/// A running server; stopped when dropped.
#[derive(Debug)]
pub struct LocalServer {
    pub port: u16,
    pub log: PathBuf,
    wrapper: Child,
}

impl LocalServer {
    /// Starts `program` with the arguments `args(port)` returns, and waits up to `timeout`
    /// until `GET ready_path` on that port gets an HTTP answer with a status in `ready`.
    /// Blocks the calling thread: from async code, call it in `spawn_blocking`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: impl Fn(u16) -> Vec<OsString>,
        ready_path: &str,
        ready: impl Fn(u16) -> bool,
        timeout: Duration,
    ) -> Result<Self> {
        if !program.exists() {
            bail!(
                "{} not found: run `bash tests/tools.sh` to install the test tools",
                program.display()
            );
        }
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let port = free_port()?;
            let log = std::env::temp_dir().join(format!("enroll-{name}-{port}.log"));
            let mut wrapper = Command::new("sh")
                .arg("-c")
                .arg(WRAPPER)
                .arg(format!("enroll-{name}"))
                .arg(&log)
                .arg(program)
                .args(args(port))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("spawning the {name} wrapper"))?;
            let deadline = Instant::now() + timeout;
            loop {
                if status(port, ready_path).is_some_and(&ready) {
                    return Ok(Self { port, log, wrapper });
                }
                if let Some(exit) = wrapper.try_wait()? {
                    last = Some(anyhow::anyhow!(
                        "{name} exited with {exit}; see {}",
                        log.display()
                    ));
                    break;
                }
                if Instant::now() > deadline {
                    drop(wrapper.stdin.take());
                    let _ = wrapper.wait();
                    bail!(
                        "{name} did not answer within {timeout:?}; see {}",
                        log.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("{name} did not start")))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for LocalServer {
    /// Closes the pipe and waits for the wrapper, so the server is gone when this returns.
    fn drop(&mut self) {
        drop(self.wrapper.stdin.take());
        let _ = self.wrapper.wait();
    }
}

/// A port nothing listens on at this moment.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The status of `GET path` on the loopback port, if something answers HTTP there.
pub fn status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    if !head.starts_with(b"HTTP/1.") {
        return None;
    }
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
