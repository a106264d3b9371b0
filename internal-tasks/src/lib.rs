//! Internal tasks: task definitions that the network itself runs, with ids from
//! [`INTERNAL_TASK_ID_MIN`] up. The first is VotingPowerSyncTask ([`VOTING_POWER_SYNC_TASK_ID`]),
//! which keeps the operator set's voting power in line with stake on an L1 and an L2 chain.
//!
//! Data flow: a [`source::StakeSource`] (the [`embedded`] schedule, or real chains read by the
//! node over JSON-RPC) is polled by a background refresher into a [`source::SourceCache`]; the
//! [`voting_power::VotingPowerSyncTask`] reads only that cache from the engine's synchronous
//! `perform`/`validate` calls, answering `NotYet` for data the cache does not hold yet; the
//! [`update`] module holds the SSZ update and the pure functions both sides run.

pub mod embedded;
pub mod rpc;
pub mod source;
pub mod transport;
pub mod update;
pub mod voting_power;

#[cfg(test)]
mod test_support;

use std::sync::Arc;

use avs_consensus::task::{TaskDefinition, TaskRegistry};

/// Task definition ids at or above this are internal tasks, run by nodes started with
/// `--internal-tasks`; ids below are external (AVS-defined) tasks.
pub const INTERNAL_TASK_ID_MIN: u16 = 10_000;

/// VotingPowerSyncTask: compares operators' voting power on L1 and L2 and updates the set.
pub const VOTING_POWER_SYNC_TASK_ID: u16 = 10_001;

/// Whether `task_definition_id` names an internal task.
pub const fn is_internal(task_definition_id: u16) -> bool {
    task_definition_id >= INTERNAL_TASK_ID_MIN
}

/// Why a registry could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("task {0} is registered as internal but its id is below {INTERNAL_TASK_ID_MIN}")]
    NotInternal(u16),
    #[error("{0}")]
    Consensus(#[from] avs_consensus::ConsensusError),
}

/// A registry holding `internal` task definitions, each of which must use an internal id.
pub fn internal_registry(
    internal: Vec<Arc<dyn TaskDefinition>>,
) -> Result<TaskRegistry, RegistryError> {
    let mut registry = TaskRegistry::new();
    for task in internal {
        if !is_internal(task.id()) {
            return Err(RegistryError::NotInternal(task.id()));
        }
        registry.register(task)?;
    }
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceCache;
    use crate::voting_power::{NoObserver, VotingPowerSyncTask};

    #[test]
    fn voting_power_sync_is_internal_and_external_ids_are_not() {
        assert!(is_internal(VOTING_POWER_SYNC_TASK_ID));
        assert!(is_internal(INTERNAL_TASK_ID_MIN));
        assert!(!is_internal(INTERNAL_TASK_ID_MIN - 1));
        assert!(!is_internal(0));
    }

    #[test]
    fn the_registry_holds_the_sync_task_once() {
        let task =
            || Arc::new(VotingPowerSyncTask::new(SourceCache::new(), None, Arc::new(NoObserver)));
        let registry = internal_registry(vec![task()]).unwrap();
        assert!(registry.get(VOTING_POWER_SYNC_TASK_ID).is_some());
        assert!(internal_registry(vec![task(), task()]).is_err());
    }
}
