//! The task hook: what a task definition implements and the registry the engine consults.
//!
//! A leader asks every registered task for its due results (`perform`) when it builds a block;
//! every voter re-validates each result against the parent's state (`validate`) before voting
//! NOTARIZE; the state transition applies each result's effect (`apply`) deterministically.
//! The effect becomes the network's reality when the block is finalized: a changed operator
//! set ends the epoch (docs/protocol.md, "Epochs"). `internal-tasks` implements this trait.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::ConsensusError;
use crate::types::{Block, ChainState, MAX_TASKS_PER_BLOCK, OperatorIndex, TaskResult};

/// Outcome of validating one task result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskValidity {
    Valid,
    /// The result is wrong: the block must not be voted for.
    Invalid(String),
    /// This node cannot judge yet (for example its chain source has not reached the block
    /// number the result names). Not a fault of the proposer; the node retries later.
    NotYet(String),
}

/// A task definition. Implementations must be deterministic in `apply`: every node applies
/// the same results to the same state and must reach the same state root.
pub trait TaskDefinition: Send + Sync {
    /// Task definition id (internal tasks use ids >= 10000).
    fn id(&self) -> u16;
    /// Validator side: check `result` against the parent block's state.
    fn validate(&self, parent: &ChainState, result: &TaskResult) -> TaskValidity;
    /// Effect, applied by the state transition; may change `state.next_operators`, which ends
    /// the epoch once the block is finalized. An error makes the block invalid.
    fn apply(&self, state: &mut ChainState, result: &TaskResult) -> Result<(), String>;
    /// Performer side: the results due in a block built on `parent` by `proposer`.
    fn perform(&self, parent: &ChainState, proposer: OperatorIndex) -> Vec<TaskResult>;
}

/// The task definitions a node runs, by id.
#[derive(Clone, Default)]
pub struct TaskRegistry {
    tasks: BTreeMap<u16, Arc<dyn TaskDefinition>>,
}

impl std::fmt::Debug for TaskRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRegistry").field("ids", &self.tasks.keys().collect::<Vec<_>>()).finish()
    }
}

impl TaskRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a task; a second task with the same id is refused.
    pub fn register(&mut self, task: Arc<dyn TaskDefinition>) -> Result<(), ConsensusError> {
        let id = task.id();
        if self.tasks.contains_key(&id) {
            return Err(ConsensusError::Task { id, reason: "task id registered twice".into() });
        }
        self.tasks.insert(id, task);
        Ok(())
    }

    pub fn get(&self, id: u16) -> Option<&Arc<dyn TaskDefinition>> {
        self.tasks.get(&id)
    }

    /// Validate every task result of `block` against `parent`: Invalid wins over NotYet,
    /// an unknown task id is Invalid.
    pub fn validate_block(&self, parent: &ChainState, block: &Block) -> TaskValidity {
        let mut not_yet = None;
        for result in block.body.tasks.iter() {
            let Some(task) = self.get(result.task_definition_id) else {
                return TaskValidity::Invalid(format!(
                    "unknown task id {}",
                    result.task_definition_id
                ));
            };
            match task.validate(parent, result) {
                TaskValidity::Valid => {}
                TaskValidity::Invalid(r) => return TaskValidity::Invalid(r),
                TaskValidity::NotYet(r) => not_yet = Some(r),
            }
        }
        match not_yet {
            Some(r) => TaskValidity::NotYet(r),
            None => TaskValidity::Valid,
        }
    }

    /// Results due in a block on `parent`, in task-id order, at most `MAX_TASKS_PER_BLOCK`.
    pub fn perform(&self, parent: &ChainState, proposer: OperatorIndex) -> Vec<TaskResult> {
        let mut out: Vec<TaskResult> =
            self.tasks.values().flat_map(|t| t.perform(parent, proposer)).collect();
        out.truncate(MAX_TASKS_PER_BLOCK);
        out
    }
}
