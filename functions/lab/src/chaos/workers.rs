//! The `enroll dev` children the driver runs on the data directory, and kills with SIGKILL in
//! the middle of batches, until the queues drain. With tenants, one child serves them all and
//! the driver watches every tenant's queues and workspace.

use super::{read_queues, read_store, ALIGN, PROVISION};
use anyhow::Context;
use chrono::Utc;
use enroll_core::timings;
use enroll_embedded::queue::Message;
use enroll_simulator::SimHandle;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the children run, and what the driver watches while they do.
pub(super) struct Workers<'a> {
    pub(super) enroll: &'a Path,
    /// The arguments after `dev`: exactly what a seller gives, plus a free port.
    pub(super) args: Vec<OsString>,
    /// Tokens go through the environment, never a file or the command line.
    pub(super) tokens: &'a [(&'a str, &'a str)],
    /// Variables the child must not inherit: with tenants, every `ENROLL_` override, which
    /// would apply to all tenants alike.
    pub(super) env_remove: Vec<String>,
    /// The data directories whose queues and stores are watched: one per tenant.
    pub(super) dirs: Vec<PathBuf>,
    /// The simulated workspaces the children call.
    pub(super) sims: Vec<&'a SimHandle>,
}

/// The `enroll dev` child. Dropping it kills it, so no child outlives the driver's scope.
pub(super) struct DevProcess {
    child: Child,
}

impl DevProcess {
    pub(super) fn spawn(w: &Workers) -> anyhow::Result<Self> {
        let mut cmd = Command::new(w.enroll);
        // Exactly what a seller runs, with only its configuration, data directory and a free
        // port given: every timing is the shipped default.
        cmd.arg("dev")
            .args(&w.args)
            .envs(w.tokens.iter().copied())
            // Transient failures are expected by the thousand here; the child stays quiet
            // unless RUST_LOG asks otherwise.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for k in &w.env_remove {
            cmd.env_remove(k);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} dev", w.enroll.display()))?;
        Ok(Self { child })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs, exactly as when a Lambda instance is torn down.
    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(super) fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Queue depths read from the journal without taking it over.
#[derive(Debug, Default, Clone, Copy)]
struct Depths {
    provision: usize,
    /// Provision messages received and not yet deleted or handed back.
    provision_in_flight: usize,
    align: usize,
}

/// The depths of every watched data directory, added up.
fn depths(dirs: &[PathBuf]) -> anyhow::Result<Depths> {
    let now = Utc::now().timestamp_millis();
    let mut d = Depths::default();
    for dir in dirs {
        let j = read_queues(dir)?;
        let provision = j.all::<Message>(PROVISION);
        d.provision += provision.len();
        d.provision_in_flight += provision
            .iter()
            .filter(|(_, m)| m.receive_count > 0 && m.visible_at_ms > now)
            .count();
        d.align += j.all::<Message>(ALIGN).len();
    }
    Ok(d)
}

/// Every request the simulator has answered.
pub(super) fn total_requests(sim: &SimHandle) -> u64 {
    sim.counters().values().sum()
}

fn all_requests(sims: &[&SimHandle]) -> u64 {
    sims.iter().map(|s| total_requests(s)).sum()
}

/// What one phase of worker children came to.
#[derive(Debug, Default)]
pub(super) struct Phase {
    pub(super) drained: bool,
    pub(super) kills: usize,
    pub(super) kills_mid_batch: usize,
    pub(super) unexpected_exits: usize,
}

/// Runs worker children until both queues are empty, killing `kills` of them mid-batch,
/// spread over the backlog; `running` is a child already started (the one the deliveries
/// were posted to), else one is started.
pub(super) async fn run(
    w: &Workers<'_>,
    running: Option<DevProcess>,
    kills: usize,
    timeout: Duration,
) -> anyhow::Result<Phase> {
    let initial = depths(&w.dirs)?.provision;
    // Kill when the backlog has shrunk to k/(kills+1) of its size: early, middle, late.
    let at: Vec<usize> = (1..=kills)
        .map(|k| initial * (kills + 1 - k) / (kills + 1))
        .collect();
    let mut phase = Phase::default();
    let mut worker = match running {
        Some(child) => child,
        None => DevProcess::spawn(w)?,
    };
    let mut seen = all_requests(&w.sims);
    let mut journal_len = 0;
    let mut progressed = Instant::now();
    let deadline = Instant::now() + timeout;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let d = depths(&w.dirs)?;
        let now = all_requests(&w.sims);
        let busy = now > seen;
        seen = now;
        let len: u64 = w
            .dirs
            .iter()
            .map(|dir| std::fs::metadata(dir.join("queues.log")).map_or(0, |m| m.len()))
            .sum();
        if busy || len != journal_len {
            journal_len = len;
            progressed = Instant::now();
        }
        if phase.kills < kills
            && d.provision <= at[phase.kills]
            && d.provision_in_flight > 0
            && busy
        {
            worker.kill_hard();
            phase.kills += 1;
            phase.kills_mid_batch += 1;
            tracing::info!(
                kill = phase.kills,
                backlog = d.provision,
                in_flight = d.provision_in_flight,
                "worker killed with SIGKILL mid-batch; restarting it"
            );
            worker = DevProcess::spawn(w)?;
            continue;
        }
        if d.provision == 0 && d.align == 0 && !changes_unsettled(&w.dirs)? {
            phase.drained = true;
            break;
        }
        if worker.exited() {
            phase.unexpected_exits += 1;
            anyhow::ensure!(
                phase.unexpected_exits <= 5,
                "the worker keeps exiting; see its log above"
            );
            worker = DevProcess::spawn(w)?;
        }
        // Retries come back within a minute, and messages a killed child held wait at most
        // one claim plus its margin; longer without a request or a queue change means the
        // worker is stuck, which is a failure of its own.
        let stuck_after = timings::SHIPPED.provision.claim
            + timings::SHIPPED.provision.defer_margin
            + timings::SHIPPED.provision.max_retry;
        if progressed.elapsed() > stuck_after {
            tracing::warn!(
                provision = d.provision,
                align = d.align,
                "no progress for a minute: the worker is stuck"
            );
            break;
        }
        if Instant::now() > deadline {
            tracing::warn!(
                provision = d.provision,
                align = d.align,
                "the queues did not drain in time"
            );
            break;
        }
    }
    worker.kill_hard();
    Ok(phase)
}

/// Whether some buyer has a Group change whose lost answer may still land; the worker's
/// expiry pass settles them after their moment.
fn changes_unsettled(dirs: &[PathBuf]) -> anyhow::Result<bool> {
    for dir in dirs {
        if read_store(dir)?
            .buyers()
            .iter()
            .any(|b| !b.pending_groups.is_empty())
        {
            return Ok(true);
        }
    }
    Ok(false)
}
