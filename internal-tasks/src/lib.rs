//! Internal tasks: task definitions that the network itself runs, with ids from
//! [`INTERNAL_TASK_ID_MIN`] up. The first is VotingPowerSyncTask ([`VOTING_POWER_SYNC_TASK_ID`]),
//! which keeps the operator set's voting power in line with stake on an L1 and an L2 chain.
//!
//! Status: this crate holds the id space so far; the task definitions, stake sources and the
//! VotingPowerSync performer/validator arrive with the task framework (see ARCHITECTURE.md).

/// Task definition ids at or above this are internal tasks, run by nodes started with
/// `--internal-tasks`; ids below are external (AVS-defined) tasks.
pub const INTERNAL_TASK_ID_MIN: u16 = 10_000;

/// VotingPowerSyncTask: compares operators' voting power on L1 and L2 and updates the set.
pub const VOTING_POWER_SYNC_TASK_ID: u16 = 10_001;

/// Whether `task_definition_id` names an internal task.
pub const fn is_internal(task_definition_id: u16) -> bool {
    task_definition_id >= INTERNAL_TASK_ID_MIN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voting_power_sync_is_internal_and_external_ids_are_not() {
        assert!(is_internal(VOTING_POWER_SYNC_TASK_ID));
        assert!(is_internal(INTERNAL_TASK_ID_MIN));
        assert!(!is_internal(INTERNAL_TASK_ID_MIN - 1));
        assert!(!is_internal(0));
    }
}
