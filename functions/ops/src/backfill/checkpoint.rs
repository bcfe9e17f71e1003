//! The apply checkpoint: what an apply of one plan has done, written next to the plan after
//! every request so a killed run resumes where it stopped.

use super::plan::Plan;
use anyhow::{bail, Context};
use enroll_core::ids::{BuyerEmail, GroupId, NotionUserId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Add or remove, for the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Add,
    Remove,
}

/// A request sent whose answer was not yet recorded when the checkpoint was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inflight {
    pub group: GroupId,
    pub op: Op,
    pub members: Vec<NotionUserId>,
}

/// Progress of one plan's apply, written next to the plan after every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The plan this belongs to; a changed plan starts over.
    pub plan_hash: String,
    /// Members created so far.
    #[serde(default)]
    pub created: BTreeMap<BuyerEmail, NotionUserId>,
    /// A create sent without a recorded answer.
    #[serde(default)]
    pub creating: Option<BuyerEmail>,
    /// Per `add:<group>` / `remove:<group>`, the members done.
    #[serde(default)]
    pub done: BTreeMap<String, BTreeSet<NotionUserId>>,
    #[serde(default)]
    pub inflight: Option<Inflight>,
    /// Requests that succeeded, over every run.
    #[serde(default)]
    pub requests: usize,
    #[serde(default)]
    pub ledger_done: bool,
}

fn done_key(op: Op, group: &GroupId) -> String {
    let op = match op {
        Op::Add => "add",
        Op::Remove => "remove",
    };
    format!("{op}:{group}")
}

pub fn checkpoint_path(plan: &Path) -> PathBuf {
    let mut name = plan.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

impl Checkpoint {
    /// The checkpoint of an apply of this plan, if one started.
    pub(crate) fn load(path: &Path, plan_hash: &str) -> anyhow::Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let cp: Checkpoint = serde_json::from_slice(&std::fs::read(path)?)
            .with_context(|| format!("reading the checkpoint {}", path.display()))?;
        if cp.plan_hash != plan_hash {
            bail!(
                "{} belongs to a different plan: the plan changed after an apply started. \
                 Delete the checkpoint only if you mean to start over.",
                path.display()
            );
        }
        Ok(Some(cp))
    }

    /// Written to a temporary file, flushed, then renamed over the old one: a kill leaves the
    /// old checkpoint or the new, never half of one.
    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("checkpoint.tmp");
        {
            let f = std::fs::File::create(&tmp)?;
            // Buffered: unbuffered, serde writes each token with its own system call, which
            // cost a large backfill more time than its Notion requests.
            let mut w = std::io::BufWriter::new(&f);
            serde_json::to_writer(&mut w, self)?;
            std::io::Write::flush(&mut w)?;
            drop(w);
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Records members of a Group as done for `op`.
    pub(crate) fn mark_done<'a>(
        &mut self,
        op: Op,
        group: &GroupId,
        members: impl IntoIterator<Item = &'a NotionUserId>,
    ) {
        self.done
            .entry(done_key(op, group))
            .or_default()
            .extend(members.into_iter().cloned());
    }
}

/// Per Group and operation, the members still to do, in the plan's order.
pub(crate) fn ops_of(plan: &Plan, cp: &Checkpoint) -> Vec<(GroupId, Op, Vec<NotionUserId>)> {
    let mut out = Vec::new();
    for g in &plan.groups {
        let mut adds: Vec<NotionUserId> = g.add.iter().map(|m| m.user_id.clone()).collect();
        for c in &plan.create {
            if c.groups.contains(&g.id) {
                if let Some(id) = cp.created.get(&c.email) {
                    adds.push(id.clone());
                }
            }
        }
        let removes: Vec<NotionUserId> = g.remove.iter().map(|m| m.user_id.clone()).collect();
        for (op, list) in [(Op::Add, adds), (Op::Remove, removes)] {
            let done = cp.done.get(&done_key(op, &g.id));
            let mut seen = BTreeSet::new();
            let left: Vec<NotionUserId> = list
                .into_iter()
                .filter(|m| !done.is_some_and(|d| d.contains(m)) && seen.insert(m.clone()))
                .collect();
            if !left.is_empty() {
                out.push((g.id.clone(), op, left));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_path_sits_next_to_the_plan() {
        assert_eq!(
            checkpoint_path(Path::new("/tmp/plan.json")),
            PathBuf::from("/tmp/plan.json.checkpoint")
        );
    }
}
