//! Group names to ids, resolved once per process.

use enroll_core::catalog::GroupRef;
use enroll_core::ids::GroupId;
use enroll_core::ports::Directory;
use enroll_core::Failure;
use std::collections::HashMap;
use std::sync::Mutex;

/// Resolves Group display names to ids once per process; ids from the catalog pass through.
#[derive(Default)]
pub struct GroupResolver {
    pub(crate) cache: Mutex<HashMap<String, GroupId>>,
    /// One lookup at a time: the events of a batch run concurrently and would otherwise all
    /// look up the same names on a cold start.
    lookup: tokio::sync::Mutex<()>,
}

impl GroupResolver {
    pub async fn resolve(&self, dir: &dyn Directory, group: &GroupRef) -> Result<GroupId, Failure> {
        let name = match group {
            GroupRef::Id(id) => return Ok(id.clone()),
            GroupRef::Name(n) => n,
        };
        if let Some(id) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(id.clone());
        }
        let _one_lookup = self.lookup.lock().await;
        if let Some(id) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(id.clone());
        }
        let id = dir.find_group(name).await?.ok_or_else(|| {
            Failure::permanent(format!(
                "Group `{name}` does not exist in the workspace: create it or fix the catalog"
            ))
        })?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), id.clone());
        Ok(id)
    }

    /// How a buyer's history names a Group: its display name once resolved, else its id.
    pub fn label(&self, id: &GroupId) -> String {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.iter().find(|(_, v)| *v == id) {
            Some((name, _)) => name.clone(),
            None => format!("id {id}"),
        }
    }
}

impl GroupResolver {
    /// How an outbound event names a Group: its display name once resolved, else its id.
    pub fn name_or_id(&self, id: &GroupId) -> String {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.iter().find(|(_, v)| *v == id) {
            Some((name, _)) => name.clone(),
            None => id.to_string(),
        }
    }
}
