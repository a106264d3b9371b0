//! Fixtures for simulations and tests (this crate's, and the node's production-path simulator):
//! deterministic operator keys and genesis, and task definitions that exercise the task hook
//! and operator-set changes. Pure and small; nothing here runs in a production node unless it
//! registers these tasks itself.
//!
//! - [`NoteTask`] (id 10901, performed by the proposer like an internal task): `proof_of_task = sha256(data)`, no effect.
//! - [`MembershipTask`] (id 10902): a script of operator-set changes (set a power, add an
//!   operator, remove one, which re-indexes the set), each proposed once from its height on by
//!   whichever leader builds a block; applying one ends the epoch once the block is final.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::bls::SecretKey;
use crate::error::ConsensusError;
use crate::signing::NetworkDigest;
use crate::task::{TaskDefinition, TaskRegistry, TaskValidity};
use crate::types::{
    ChainState, GenesisConfig, Height, Operator, OperatorIndex, OperatorSet, TaskMessage,
    TaskResult, byte_list,
};

pub const NOTE_ID: u16 = 10_901;
pub const MEMBERSHIP_ID: u16 = 10_902;

fn length<T>(_: T) -> ConsensusError {
    ConsensusError::Ssz("key length".into())
}

/// The key of simulated operator `i` (deterministic).
pub fn operator_key(i: u64) -> Result<SecretKey, ConsensusError> {
    SecretKey::from_seed(&Sha256::digest(i.to_le_bytes()))
}

/// The `Operator` entry of simulated operator `i` with `power` (address = `[i as u8; 20]`
/// with the index's bytes folded in, so addresses are distinct for any i).
pub fn operator(i: u64, power: u64) -> Result<Operator, ConsensusError> {
    let key = operator_key(i)?;
    let mut address = [0u8; 20];
    for (dst, src) in address.iter_mut().zip(i.to_le_bytes().iter().chain(std::iter::repeat(&1))) {
        *dst = *src;
    }
    Ok(Operator {
        address,
        pubkey: key.public_key().to_bytes().to_vec().try_into().map_err(length)?,
        pop: key.proof_of_possession().to_bytes().to_vec().try_into().map_err(length)?,
        power,
    })
}

/// Keys and genesis of a simulated network with these powers.
pub fn genesis(
    powers: &[u64],
    genesis_time: u64,
    slot_duration_ms: u64,
) -> Result<(Vec<SecretKey>, GenesisConfig), ConsensusError> {
    let mut keys = Vec::with_capacity(powers.len());
    let mut operators = Vec::with_capacity(powers.len());
    for (i, power) in (0u64..).zip(powers) {
        keys.push(operator_key(i)?);
        operators.push(operator(i, *power)?);
    }
    let genesis = GenesisConfig {
        network_name: byte_list(b"sim")?,
        genesis_time,
        slot_duration_ms,
        intervals_per_slot: 5,
        operators: OperatorSet {
            operators: operators.try_into().map_err(|_| ConsensusError::TooManyOperators(0))?,
        },
        task_definitions: Default::default(),
    };
    Ok((keys, genesis))
}

/// A `NoteTask` result carrying `data`.
pub fn note(performer: OperatorIndex, data: &[u8]) -> Result<TaskResult, ConsensusError> {
    Ok(TaskResult {
        task_definition_id: NOTE_ID,
        performer_index: performer,
        proof_of_task: byte_list(&Sha256::digest(data))?,
        data: byte_list(data)?,
        signature: Default::default(),
    })
}

/// Task 1: a note whose proof is the SHA-256 of its data; no effect.
pub struct NoteTask;

impl TaskDefinition for NoteTask {
    fn id(&self) -> u16 {
        NOTE_ID
    }
    fn validate(&self, _parent: &ChainState, r: &TaskResult, _now_ms: u64) -> TaskValidity {
        if r.proof_of_task.as_ref() == Sha256::digest(r.data.as_ref()).as_slice() {
            TaskValidity::Valid
        } else {
            TaskValidity::Invalid("proof is not sha256(data)".into())
        }
    }
    fn apply(&self, _state: &mut ChainState, _r: &TaskResult) -> Result<(), String> {
        Ok(())
    }
    fn perform(&self, _: &ChainState, _: OperatorIndex, _: u64) -> Vec<TaskResult> {
        Vec::new()
    }
}

/// One scripted operator-set change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Set the power of the simulated operator with this id (its key seed).
    SetPower { id: u64, power: u64 },
    /// Add the simulated operator with this id.
    Add { id: u64, power: u64 },
    /// Remove the simulated operator with this id (later members move down one index).
    Remove { id: u64 },
}

/// Task 2: applies a script of `(from_height, Change)`, each once, in order.
pub struct MembershipTask {
    pub script: Vec<(Height, Change)>,
}

fn encode_change(change: &Change) -> Vec<u8> {
    let (kind, id, power) = match change {
        Change::SetPower { id, power } => (0u8, *id, *power),
        Change::Add { id, power } => (1, *id, *power),
        Change::Remove { id } => (2, *id, 0),
    };
    let mut out = vec![kind];
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&power.to_le_bytes());
    out
}

fn decode_change(data: &[u8]) -> Option<Change> {
    let (kind, rest) = data.split_first()?;
    if rest.len() != 16 {
        return None;
    }
    let (id, power) = rest.split_at(8);
    let id = u64::from_le_bytes(id.try_into().ok()?);
    let power = u64::from_le_bytes(power.try_into().ok()?);
    match kind {
        0 => Some(Change::SetPower { id, power }),
        1 => Some(Change::Add { id, power }),
        2 => Some(Change::Remove { id }),
        _ => None,
    }
}

fn position(set: &OperatorSet, id: u64) -> Option<usize> {
    let address = operator(id, 0).ok()?.address;
    set.operators.iter().position(|o| o.address == address)
}

/// True when `change` is not reflected in `set` yet (so it can be applied).
fn pending(set: &OperatorSet, change: &Change) -> bool {
    match change {
        Change::SetPower { id, power } => {
            position(set, *id).and_then(|i| set.operators.get(i)).is_some_and(|o| o.power != *power)
        }
        Change::Add { id, .. } => position(set, *id).is_none(),
        Change::Remove { id } => position(set, *id).is_some(),
    }
}

fn apply_change(set: &mut OperatorSet, change: &Change) -> Result<(), String> {
    let mut ops: Vec<Operator> = set.operators.iter().cloned().collect();
    match change {
        Change::SetPower { id, power } => {
            let i = position(set, *id).ok_or("no such operator")?;
            ops.get_mut(i).ok_or("no such operator")?.power = *power;
        }
        Change::Add { id, power } => {
            if position(set, *id).is_some() {
                return Err("already a member".into());
            }
            ops.push(operator(*id, *power).map_err(|e| e.to_string())?);
        }
        Change::Remove { id } => {
            let i = position(set, *id).ok_or("no such operator")?;
            ops.remove(i);
        }
    }
    set.operators = ops.try_into().map_err(|_| "too many operators".to_string())?;
    Ok(())
}

impl TaskDefinition for MembershipTask {
    fn id(&self) -> u16 {
        MEMBERSHIP_ID
    }
    fn validate(&self, parent: &ChainState, r: &TaskResult, _now_ms: u64) -> TaskValidity {
        match decode_change(r.data.as_ref()) {
            Some(c) if pending(&parent.next_operators, &c) => TaskValidity::Valid,
            _ => TaskValidity::Invalid("not an applicable membership change".into()),
        }
    }
    fn apply(&self, state: &mut ChainState, r: &TaskResult) -> Result<(), String> {
        let change = decode_change(r.data.as_ref()).ok_or("bad membership change")?;
        apply_change(&mut state.next_operators, &change)
    }
    fn perform(&self, parent: &ChainState, proposer: OperatorIndex, _: u64) -> Vec<TaskResult> {
        let next_height = parent.height.next();
        let Some((_, change)) = self
            .script
            .iter()
            .find(|(from, c)| *from <= next_height && pending(&parent.next_operators, c))
        else {
            return Vec::new();
        };
        let data = encode_change(change);
        match (byte_list(&Sha256::digest(&data)), byte_list(&data)) {
            (Ok(proof_of_task), Ok(data)) => vec![TaskResult {
                task_definition_id: MEMBERSHIP_ID,
                performer_index: proposer,
                proof_of_task,
                data,
                signature: Default::default(),
            }],
            _ => Vec::new(),
        }
    }
}

/// An AVS task result of task `id` by operator `index` (whose key is `key`), signed.
pub fn avs_result(
    key: &SecretKey,
    index: OperatorIndex,
    id: u16,
    proof: &[u8],
    data: &[u8],
    digest: NetworkDigest,
) -> Result<TaskResult, ConsensusError> {
    let message = TaskMessage {
        task_definition_id: id,
        performer: key.public_key().to_bytes().to_vec().try_into().map_err(length)?,
        proof_of_task: byte_list(proof)?,
        data: byte_list(data)?,
    };
    let signed = crate::task::sign_task(key, message, digest)?;
    Ok(TaskResult {
        task_definition_id: id,
        performer_index: index,
        proof_of_task: signed.message.proof_of_task,
        data: signed.message.data,
        signature: signed.signature,
    })
}

/// An AVS task (id below 10000) whose own check accepts every result: what is under test is
/// the rules every block obeys (performer signatures, a task once in the chain).
pub struct AcceptAvs(pub u16);

impl TaskDefinition for AcceptAvs {
    fn id(&self) -> u16 {
        self.0
    }
    fn validate(&self, _: &ChainState, _: &TaskResult, _now_ms: u64) -> TaskValidity {
        TaskValidity::Valid
    }
    fn apply(&self, _: &mut ChainState, _: &TaskResult) -> Result<(), String> {
        Ok(())
    }
    fn perform(&self, _: &ChainState, _: OperatorIndex, _: u64) -> Vec<TaskResult> {
        Vec::new()
    }
}

/// A registry with `NoteTask` and, if given, a membership script.
pub fn registry(script: Vec<(Height, Change)>) -> TaskRegistry {
    let mut r = TaskRegistry::new();
    let _ = r.register(Arc::new(NoteTask));
    if !script.is_empty() {
        let _ = r.register(Arc::new(MembershipTask { script }));
    }
    r
}
