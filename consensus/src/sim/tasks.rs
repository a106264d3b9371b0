//! Test task definitions: `NoteTask` (id 1, proof = sha256(data), no effect) and
//! `PowerTask` (id 2, sets one operator's power, which ends the epoch once final).

use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::task::{TaskDefinition, TaskRegistry, TaskValidity};
use crate::types::{ChainState, OperatorIndex, TaskResult, byte_list};

pub(crate) const NOTE_ID: u16 = 1;
pub(crate) const POWER_ID: u16 = 2;

pub(crate) fn note(performer: OperatorIndex, data: &[u8]) -> TaskResult {
    TaskResult {
        task_definition_id: NOTE_ID,
        performer_index: performer,
        proof_of_task: byte_list(&Sha256::digest(data)).unwrap(),
        data: byte_list(data).unwrap(),
    }
}

pub(crate) struct NoteTask;

impl TaskDefinition for NoteTask {
    fn id(&self) -> u16 {
        NOTE_ID
    }
    fn validate(&self, _parent: &ChainState, r: &TaskResult) -> TaskValidity {
        if r.proof_of_task.as_ref() == Sha256::digest(r.data.as_ref()).as_slice() {
            TaskValidity::Valid
        } else {
            TaskValidity::Invalid("proof is not sha256(data)".into())
        }
    }
    fn apply(&self, _state: &mut ChainState, _r: &TaskResult) -> Result<(), String> {
        Ok(())
    }
    fn perform(&self, _parent: &ChainState, _proposer: OperatorIndex) -> Vec<TaskResult> {
        Vec::new()
    }
}

/// Sets operator `index`'s power to `power`, proposed by leaders from height `from_height`.
pub(crate) struct PowerTask {
    pub(crate) from_height: u64,
    pub(crate) index: u64,
    pub(crate) power: u64,
}

fn power_data(index: u64, power: u64) -> Vec<u8> {
    [index.to_le_bytes(), power.to_le_bytes()].concat()
}

fn parse(r: &TaskResult) -> Option<(usize, u64)> {
    let d: &[u8] = r.data.as_ref();
    if d.len() != 16 {
        return None;
    }
    let index = u64::from_le_bytes(d[..8].try_into().ok()?);
    let power = u64::from_le_bytes(d[8..].try_into().ok()?);
    Some((usize::try_from(index).ok()?, power))
}

impl TaskDefinition for PowerTask {
    fn id(&self) -> u16 {
        POWER_ID
    }
    fn validate(&self, parent: &ChainState, r: &TaskResult) -> TaskValidity {
        match parse(r) {
            Some((i, _)) if i < parent.operators.operators.len() => TaskValidity::Valid,
            _ => TaskValidity::Invalid("bad power update".into()),
        }
    }
    fn apply(&self, state: &mut ChainState, r: &TaskResult) -> Result<(), String> {
        let (i, power) = parse(r).ok_or("bad power update")?;
        let op = state.next_operators.operators.iter_mut().nth(i).ok_or("no such operator")?;
        op.power = power;
        Ok(())
    }
    fn perform(&self, parent: &ChainState, proposer: OperatorIndex) -> Vec<TaskResult> {
        let due = parent.height + 1 >= self.from_height;
        let current = parent.next_operators.operators.get(self.index as usize).map(|o| o.power);
        if due && current.is_some_and(|p| p != self.power) {
            let data = power_data(self.index, self.power);
            vec![TaskResult {
                task_definition_id: POWER_ID,
                performer_index: proposer,
                proof_of_task: byte_list(&Sha256::digest(&data)).unwrap(),
                data: byte_list(&data).unwrap(),
            }]
        } else {
            Vec::new()
        }
    }
}

pub(crate) fn registry(power: Option<PowerTask>) -> TaskRegistry {
    let mut r = TaskRegistry::new();
    r.register(Arc::new(NoteTask)).unwrap();
    if let Some(p) = power {
        r.register(Arc::new(p)).unwrap();
    }
    r
}
