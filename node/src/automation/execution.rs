//! Executions (docs/protocol.md, 7.5): internal task 10004. A final firing leaves a pending
//! execution on every node; a node runs its workflow off the consensus thread
//! ([`super::runner`]) and, when it leads, proposes the result. Attesters check its shape
//! against the definition, re-run every contract read at the block it names (off the thread,
//! NotYet until done) and vote only if each matches; the first final result is the one every
//! node records. Contract writes are sent after finality by the node that ran the workflow,
//! which must be an aggregator to propose one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use alloy::primitives::Address;
use avs_consensus::state::child_base;
use avs_consensus::task::{TaskDefinition, TaskValidity};
use avs_consensus::types::{ChainState, FIRST_INTERNAL_TASK_ID, OperatorIndex, TaskResult};
use avs_proto::automation_v1 as pb;
use prost::Message;

use super::{Automation, AutomationError, TaskId, parse_id};

/// The internal task that carries workflow results.
pub const EXECUTION_TASK_ID: u16 = FIRST_INTERNAL_TASK_ID + 4;
/// Results one block carries at most (with requests' 4, firings' 4 and VotingPowerSync's one,
/// AVS results keep at least 5 of a block's 16 slots).
pub const MAX_EXECUTIONS_PER_BLOCK: usize = 2;
/// Largest output of one step (a read's return data, a REST body).
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024;
/// A read not pinned to its trigger's block is at a block at most this far below the
/// attester's head.
pub const PIN_WINDOW_BLOCKS: u64 = 64;
/// A result this node proposed is proposed again after this long if it is not final.
pub const REPROPOSE_AFTER_MS: u64 = 30_000;
/// A prepared result is run again after this long (its reads' block leaves the window).
pub const PREPARED_FOR_MS: u64 = 30_000;
/// Re-run reads kept for votes at most.
const MAX_READS: usize = 4096;
/// A pending execution may be closed as expired by a block this many heights above its
/// firing's: nothing a client defines can keep an execution pending forever.
pub const EXPIRE_AFTER_BLOCKS: u64 = 300;
/// A manual run's key: `MANUAL_KEY + created_at_ms` (apart from every trigger's keys).
pub const MANUAL_KEY: u64 = 1 << 63;

/// One contract read: chain, contract, calldata, block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadKey {
    pub chain_id: u64,
    pub address: [u8; 20],
    pub calldata: Vec<u8>,
    pub block: u64,
}

/// What a read returned: `(ok, data)`: the return data, or a revert's data.
pub type ReadOutcome = (bool, Vec<u8>);

/// What the attesters' re-runs found, and what they still need.
#[derive(Default)]
pub(crate) struct Reads {
    done: HashMap<ReadKey, ReadOutcome>,
    wanted: HashSet<ReadKey>,
}

/// A result this node prepared for an execution.
pub(crate) struct Prepared {
    pub bytes: Vec<u8>,
    pub at_ms: u64,
    pub proposed_ms: Option<u64>,
    pub writes: bool,
}

fn word(value: u64) -> Vec<u8> {
    let mut word = vec![0u8; 32];
    word[24..].copy_from_slice(&value.to_be_bytes());
    word
}

/// The trigger's data a step may take in: an event's log data, a block trigger's block number
/// or a time firing's instant as one 32-byte word (a manual run: its request's time).
pub fn trigger_data(execution: &pb::Execution) -> Vec<u8> {
    match &execution.chain {
        Some(point) if point.tx_hash.len() == 32 => point.data.clone(),
        Some(point) => word(point.block_number),
        None => word(execution.instant_ms),
    }
}

/// The calldata `call` sends for `execution`.
pub fn calldata(call: &pb::ContractCall, execution: &pb::Execution) -> Vec<u8> {
    let mut data = call.calldata.clone();
    if call.append_trigger_data {
        data.extend(trigger_data(execution));
    }
    data
}

/// `text` with `{{trigger}}` replaced by the trigger's data, 0x-hex.
pub fn with_trigger(text: &str, execution: &pb::Execution) -> String {
    text.replace("{{trigger}}", &format!("0x{}", hex::encode(trigger_data(execution))))
}

/// The block a read of `call` for `execution` is at: its trigger's block when the trigger is on
/// the same chain, else any recent block (`None`).
pub fn pinned_block(call: &pb::ContractCall, execution: &pb::Execution) -> Option<u64> {
    execution.chain.as_ref().filter(|p| p.chain_id == call.chain_id).map(|p| p.block_number)
}

/// Does the workflow hold a contract write?
pub fn has_writes(definition: &pb::TaskDefinition) -> bool {
    definition
        .nodes
        .iter()
        .any(|n| matches!(n.kind, Some(pb::workflow_node::Kind::ContractWrite(_))))
}

/// The checks on a result that need neither chain nor clock: one step per workflow node in
/// order, stopping at the first failure; each step's fields as its kind has them; a write's
/// output is the calldata the definition says.
pub fn check_shape(
    definition: &pb::TaskDefinition,
    execution: &pb::Execution,
    result: &pb::ExecutionResult,
) -> Result<(), String> {
    let steps = &result.steps;
    if result.expired {
        if !steps.is_empty() || result.success {
            return Err("an expired execution has no steps and no success".into());
        }
        return Ok(());
    }
    if steps.is_empty() || steps.len() > definition.nodes.len() {
        return Err(format!("{} steps for {} nodes", steps.len(), definition.nodes.len()));
    }
    let all_ok = steps.iter().all(|s| s.ok);
    if steps.len() < definition.nodes.len() && all_ok {
        return Err("the workflow stopped without a failed step".into());
    }
    if steps[..steps.len() - 1].iter().any(|s| !s.ok) {
        return Err("steps after a failed one".into());
    }
    if result.success != (all_ok && steps.len() == definition.nodes.len()) {
        return Err("success does not follow from the steps".into());
    }
    for (step, node) in steps.iter().zip(&definition.nodes) {
        if step.name != node.name {
            return Err(format!("step {:?} where the workflow has {:?}", step.name, node.name));
        }
        if step.output.len() > MAX_OUTPUT_BYTES
            || step.error.len() > 1024
            || !step.tx_hash.is_empty()
        {
            return Err(format!("step {:?} is oversized or names a transaction", step.name));
        }
        match &node.kind {
            Some(pb::workflow_node::Kind::ContractWrite(call)) => {
                if !step.ok || step.output != calldata(call, execution) || step.block_number != 0 {
                    return Err(format!("write {:?} is not the definition's", step.name));
                }
            }
            Some(pb::workflow_node::Kind::ContractRead(call)) => {
                if let Some(pinned) = pinned_block(call, execution)
                    && step.block_number != pinned
                {
                    return Err(format!("read {:?} is not at the trigger's block", step.name));
                }
                if step.http_status != 0 {
                    return Err(format!("read {:?} has an HTTP status", step.name));
                }
            }
            Some(pb::workflow_node::Kind::Rest(_)) => {
                if step.ok != (200..300).contains(&step.http_status) || step.block_number != 0 {
                    return Err(format!(
                        "REST step {:?}: ok does not follow its status",
                        step.name
                    ));
                }
            }
            None => return Err(format!("node {:?} has no kind", node.name)),
        }
    }
    Ok(())
}

pub fn decode_result(bytes: &[u8]) -> Result<(TaskId, pb::ExecutionResult), AutomationError> {
    let result = pb::ExecutionResult::decode(bytes).map_err(|e| {
        AutomationError::BadRequest(format!("execution result does not decode: {e}"))
    })?;
    Ok((parse_id(&result.automation_id)?, result))
}

/// The engine's view of executions.
pub struct AutomationExecutions {
    automation: Arc<Automation>,
}

impl AutomationExecutions {
    pub fn new(automation: Arc<Automation>) -> Self {
        Self { automation }
    }
}

impl Automation {
    /// The re-run of `key`: its outcome, or `None` after asking the runner for it.
    pub(crate) fn read_outcome(&self, key: &ReadKey) -> Option<ReadOutcome> {
        let mut reads = self.reads();
        if let Some(done) = reads.done.get(key) {
            return Some(done.clone());
        }
        if reads.wanted.len() < MAX_READS {
            reads.wanted.insert(key.clone());
        }
        None
    }

    /// Reads asked for and not done: what the runner does next.
    pub(crate) fn wanted_reads(&self) -> Vec<ReadKey> {
        self.reads().wanted.iter().cloned().collect()
    }

    /// Forgets a read that could not run (asked again by the next vote that needs it).
    pub(crate) fn read_failed(&self, key: &ReadKey) {
        self.reads().wanted.remove(key);
    }

    /// Keeps a re-run's outcome.
    pub(crate) fn read_done(&self, key: ReadKey, outcome: ReadOutcome) {
        let mut reads = self.reads();
        reads.wanted.remove(&key);
        if reads.done.len() >= MAX_READS {
            reads.done.clear();
        }
        reads.done.insert(key, outcome);
    }

    /// The vote on an execution result in a block at `height`, with `proposer` the block's
    /// proposer.
    fn vote_execution(
        &self,
        result: &pb::ExecutionResult,
        id: &TaskId,
        proposer: Option<Address>,
        height: u64,
    ) -> TaskValidity {
        match proposer {
            Some(address) if address.as_slice() == result.runner.as_slice() => {}
            _ => return TaskValidity::Invalid("the runner is not the block's proposer".into()),
        }
        let execution = match self.execution(id, result.key) {
            Ok(Some(execution)) => execution,
            Ok(None) if self.is_deleted(id).unwrap_or(false) => return TaskValidity::Valid,
            Ok(None) => return TaskValidity::NotYet("its firing is not final here yet".into()),
            Err(e) => return TaskValidity::NotYet(format!("cannot read the execution: {e}")),
        };
        if execution.status != i32::from(pb::ExecutionStatus::Pending) {
            return TaskValidity::Valid; // A no-op at finality: the first result counts.
        }
        let definition = match self.lookup(id, None) {
            Ok(Some(task)) => task.definition.unwrap_or_default(),
            Ok(None) => return TaskValidity::Valid,
            Err(e) => return TaskValidity::NotYet(format!("cannot read the automation: {e}")),
        };
        if let Err(e) = check_shape(&definition, &execution, result) {
            return TaskValidity::Invalid(e);
        }
        if result.expired {
            // The block's height and the firing's: the same judgement on every node.
            return if height >= execution.height.saturating_add(EXPIRE_AFTER_BLOCKS) {
                TaskValidity::Valid
            } else {
                TaskValidity::Invalid(format!(
                    "fired at height {}, not expired at {height}",
                    execution.height
                ))
            };
        }
        let mut waiting = None;
        for (step, node) in result.steps.iter().zip(&definition.nodes) {
            let Some(pb::workflow_node::Kind::ContractRead(call)) = &node.kind else { continue };
            let Some(head) = self.chains.read(call.chain_id, |c| c.head()).flatten() else {
                return TaskValidity::NotYet(format!(
                    "this node does not watch chain {}",
                    call.chain_id
                ));
            };
            if step.block_number > head {
                waiting = Some(format!("block {} not read here yet", step.block_number));
                continue;
            }
            if pinned_block(call, &execution).is_none()
                && step.block_number.saturating_add(PIN_WINDOW_BLOCKS) < head
            {
                return TaskValidity::Invalid(format!("read {:?} at an old block", step.name));
            }
            let Ok(address) = <[u8; 20]>::try_from(call.address.as_slice()) else {
                return TaskValidity::Invalid("a read's address is not 20 bytes".into());
            };
            let key = ReadKey {
                chain_id: call.chain_id,
                address,
                calldata: calldata(call, &execution),
                block: step.block_number,
            };
            match self.read_outcome(&key) {
                Some((ok, output)) if ok == step.ok && output == step.output => {}
                Some(_) => {
                    return TaskValidity::Invalid(format!(
                        "read {:?} returns otherwise at block {}",
                        step.name, step.block_number
                    ));
                }
                None => waiting = Some(format!("re-running read {:?}", step.name)),
            }
        }
        match waiting {
            Some(why) => TaskValidity::NotYet(why),
            None => TaskValidity::Valid,
        }
    }

    /// Results to put in a block this node proposes at `now_ms`: prepared ones not proposed in
    /// the last [`REPROPOSE_AFTER_MS`], oldest first; those with contract writes only while
    /// this node is an aggregator (it sends them).
    pub(crate) fn take_executions(&self, now_ms: u64, max: usize) -> Vec<Vec<u8>> {
        let aggregator = self.is_aggregator();
        let mut inner = self.inner();
        let mut due: Vec<(&(TaskId, u64), &mut Prepared)> = inner
            .prepared
            .iter_mut()
            .filter(|(_, p)| {
                (aggregator || !p.writes)
                    && p.at_ms.saturating_add(PREPARED_FOR_MS) > now_ms
                    && p.proposed_ms
                        .is_none_or(|at| at.saturating_add(REPROPOSE_AFTER_MS) <= now_ms)
            })
            .collect();
        // Oldest prepared first (keys of different triggers are in different units).
        due.sort_by_key(|(key, p)| (p.at_ms, key.0, key.1));
        due.into_iter()
            .take(max)
            .map(|(_, p)| {
                p.proposed_ms = Some(now_ms);
                p.bytes.clone()
            })
            .collect()
    }
}

impl TaskDefinition for AutomationExecutions {
    fn id(&self) -> u16 {
        EXECUTION_TASK_ID
    }

    fn max_per_block(&self) -> usize {
        MAX_EXECUTIONS_PER_BLOCK
    }

    fn validate(&self, parent: &ChainState, result: &TaskResult, _now_ms: u64) -> TaskValidity {
        let (id, decoded) = match decode_result(result.data.as_ref()) {
            Ok(decoded) => decoded,
            Err(e) => return TaskValidity::Invalid(e.to_string()),
        };
        let proposer = child_base(parent).ok().and_then(|base| {
            let i = result.performer_index.position()?;
            base.operators.operators.get(i).map(|op| Address::from(op.address))
        });
        let height = parent.height.get().saturating_add(1);
        self.automation.vote_execution(&decoded, &id, proposer, height)
    }

    fn apply(&self, _: &mut ChainState, _: &TaskResult) -> Result<(), String> {
        // Recorded in the nodes' tables at finality, not in the chain state.
        Ok(())
    }

    fn perform(&self, _: &ChainState, proposer: OperatorIndex, now_ms: u64) -> Vec<TaskResult> {
        let results = self.automation.take_executions(now_ms, MAX_EXECUTIONS_PER_BLOCK);
        super::consensus::internal_results(EXECUTION_TASK_ID, proposer, results)
    }
}
