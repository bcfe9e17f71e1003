//! The `enroll dev` children the driver runs on the data directory, and kills with SIGKILL in
//! the middle of batches, until the queues drain.

use super::{read_queues, read_store, ALIGN, PROVISION};
use anyhow::Context;
use chrono::Utc;
use enroll_core::timings;
use enroll_embedded::queue::Message;
use enroll_simulator::SimHandle;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `enroll dev` child. Dropping it kills it, so no child outlives the driver's scope.
struct DevProcess {
    child: Child,
}

impl DevProcess {
    fn spawn(enroll: &Path, dir: &Path, tokens: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(enroll);
        // Exactly what a seller runs, with only its configuration file, data directory and a
        // free port given: every timing is the shipped default.
        cmd.arg("dev")
            .arg("--config")
            .arg(dir.join("worker.toml"))
            .arg("--data-dir")
            .arg(dir)
            .arg("--port")
            .arg("0")
            // Tokens go through the environment, never a file or the command line.
            .envs(tokens.iter().copied())
            // Transient failures are expected by the thousand here; the child stays quiet
            // unless RUST_LOG asks otherwise.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} dev", enroll.display()))?;
        Ok(Self { child })
    }

    /// SIGKILL: no shutdown code runs, exactly as when a Lambda instance is torn down.
    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn exited(&mut self) -> bool {
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

fn depths(dir: &Path) -> anyhow::Result<Depths> {
    let j = read_queues(dir)?;
    let now = Utc::now().timestamp_millis();
    let provision = j.all::<Message>(PROVISION);
    Ok(Depths {
        provision: provision.len(),
        provision_in_flight: provision
            .iter()
            .filter(|(_, m)| m.receive_count > 0 && m.visible_at_ms > now)
            .count(),
        align: j.all::<Message>(ALIGN).len(),
    })
}

/// Every request the simulator has answered.
pub(super) fn total_requests(sim: &SimHandle) -> u64 {
    sim.counters().values().sum()
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
/// spread over the backlog.
pub(super) async fn run(
    sim: &SimHandle,
    dir: &Path,
    enroll: &Path,
    tokens: &[(&str, &str)],
    kills: usize,
    timeout: Duration,
) -> anyhow::Result<Phase> {
    let initial = depths(dir)?.provision;
    // Kill when the backlog has shrunk to k/(kills+1) of its size: early, middle, late.
    let at: Vec<usize> = (1..=kills)
        .map(|k| initial * (kills + 1 - k) / (kills + 1))
        .collect();
    let mut phase = Phase::default();
    let mut worker = DevProcess::spawn(enroll, dir, tokens)?;
    let mut seen = total_requests(sim);
    let mut journal_len = 0;
    let mut progressed = Instant::now();
    let deadline = Instant::now() + timeout;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let d = depths(dir)?;
        let now = total_requests(sim);
        let busy = now > seen;
        seen = now;
        let len = std::fs::metadata(dir.join("queues.log")).map_or(0, |m| m.len());
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
            worker = DevProcess::spawn(enroll, dir, tokens)?;
            continue;
        }
        if d.provision == 0 && d.align == 0 && !changes_unsettled(dir)? {
            phase.drained = true;
            break;
        }
        if worker.exited() {
            phase.unexpected_exits += 1;
            anyhow::ensure!(
                phase.unexpected_exits <= 5,
                "the worker keeps exiting; see its log above"
            );
            worker = DevProcess::spawn(enroll, dir, tokens)?;
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
fn changes_unsettled(dir: &Path) -> anyhow::Result<bool> {
    Ok(read_store(dir)?
        .buyers()
        .iter()
        .any(|b| !b.pending_groups.is_empty()))
}
