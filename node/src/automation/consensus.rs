//! Automation requests in blocks (docs/protocol.md, 7.5): internal task 10002. The node a client
//! submitted to proposes its requests when it leads (`perform`); attesters check each one
//! without node-local state (`validate`): the owner's grant names the proposer, verifies for
//! this network and covers the request's time, and the action is well formed. The effect is
//! applied to every node's table at finality (`Automation::record_finality`), not to the chain
//! state.

use std::sync::Arc;

use alloy::primitives::Address;
use avs_consensus::state::child_base;
use avs_consensus::task::{TaskDefinition, TaskRegistry, TaskValidity};
use avs_consensus::types::{ChainState, FIRST_INTERNAL_TASK_ID, OperatorIndex, TaskResult};
use avs_proto::automation_v1 as pb;
use prost::Message;

use super::auth::{Grant, GrantTerms};
use super::firing::AutomationFirings;
use super::{Automation, AutomationError, parse_id, spec};

/// The internal task that carries automation requests.
pub const AUTOMATION_TASK_ID: u16 = FIRST_INTERNAL_TASK_ID + 2;
/// Requests one block carries at most (AVS results keep their room, see
/// [`super::firing::MAX_FIRINGS_PER_BLOCK`]).
pub const MAX_REQUESTS_PER_BLOCK: usize = 4;
/// A request this node proposed is proposed again after this long if it is not final.
pub const REPROPOSE_AFTER_MS: u64 = 30_000;
/// Attesters accept a request made at most this long before their time for the block...
pub const MAX_REQUEST_AGE_MS: u64 = 10 * 60 * 1000;
/// ... and at most this far after it (clock skew).
pub const MAX_REQUEST_SKEW_MS: u64 = 30_000;
/// A leader proposes a request only within this age, a minute inside the attesters' bound.
pub const PROPOSE_WITHIN_MS: u64 = MAX_REQUEST_AGE_MS - 60_000;

/// Decodes and checks a request without node-local state; what its grant says. Does not
/// check who proposed it (see [`AutomationRequests::validate`]).
pub fn check_request(
    bytes: &[u8],
    digest: [u8; 4],
) -> Result<(pb::ReplicatedRequest, GrantTerms), AutomationError> {
    let request = pb::ReplicatedRequest::decode(bytes)
        .map_err(|e| AutomationError::BadRequest(format!("request does not decode: {e}")))?;
    let terms = Grant::of_request(&request).verify(digest)?;
    let at = request.created_at_ms;
    if at < terms.session_from_ms || at > terms.session_expires_ms {
        return Err(AutomationError::BadRequest(format!(
            "made at {at}, outside its session ({} to {})",
            terms.session_from_ms, terms.session_expires_ms
        )));
    }
    match &request.action {
        Some(pb::replicated_request::Action::Create(definition)) => spec::check(definition, at)?,
        Some(
            pb::replicated_request::Action::Cancel(id)
            | pb::replicated_request::Action::Delete(id)
            | pb::replicated_request::Action::Trigger(id),
        ) => {
            parse_id(id)?;
        }
        None => return Err(AutomationError::BadRequest("a request with no action".into())),
    }
    Ok((request, terms))
}

/// The engine's view of automation requests.
pub struct AutomationRequests {
    automation: Arc<Automation>,
}

impl AutomationRequests {
    pub fn new(automation: Arc<Automation>) -> Self {
        Self { automation }
    }
}

impl Automation {
    /// Registers internal tasks 10002 (requests), 10003 (firings) and 10004 (workflow
    /// results) with the engine.
    pub fn register(self: &Arc<Self>, registry: &mut TaskRegistry) -> anyhow::Result<()> {
        registry
            .register(Arc::new(AutomationRequests::new(Arc::clone(self))))
            .and_then(|()| registry.register(Arc::new(AutomationFirings::new(Arc::clone(self)))))
            .and_then(|()| {
                registry.register(Arc::new(super::execution::AutomationExecutions::new(
                    Arc::clone(self),
                )))
            })
            .map_err(|e| anyhow::anyhow!("registering the automation tasks: {e}"))
    }
}

/// Internal results of task `id` proposed by `proposer`, one per datum (docs/protocol.md, 7.3:
/// performed by the proposer, no signature).
pub(crate) fn internal_results(
    id: u16,
    proposer: OperatorIndex,
    data: Vec<Vec<u8>>,
) -> Vec<TaskResult> {
    data.into_iter()
        .filter_map(|bytes| {
            Some(TaskResult {
                task_definition_id: id,
                performer_index: proposer,
                proof_of_task: Default::default(),
                data: avs_consensus::types::byte_list(&bytes).ok()?,
                signature: Default::default(),
            })
        })
        .collect()
}

impl TaskDefinition for AutomationRequests {
    fn id(&self) -> u16 {
        AUTOMATION_TASK_ID
    }

    fn validate(&self, parent: &ChainState, result: &TaskResult, now_ms: u64) -> TaskValidity {
        let (request, terms) = match check_request(result.data.as_ref(), self.automation.digest) {
            Ok(checked) => checked,
            Err(e) => return TaskValidity::Invalid(e.to_string()),
        };
        // Fresh: a node the owner once granted cannot replay or backdate a request into an
        // old session later (docs/protocol.md, 7.5). Judged at the engine's time for this
        // block; what is applied at finality does not depend on any clock.
        let at = request.created_at_ms;
        if at.saturating_add(MAX_REQUEST_AGE_MS) < now_ms {
            return TaskValidity::Invalid(format!("made at {at}, too old at {now_ms}"));
        }
        if at > now_ms.saturating_add(MAX_REQUEST_SKEW_MS) {
            return TaskValidity::NotYet(format!("made at {at}, ahead of this node's {now_ms}"));
        }
        // Only the node the owner granted may carry the request: it is the proposer (internal
        // results are the proposer's, docs/protocol.md 7.3), found in the block's epoch set.
        let proposer = child_base(parent).ok().and_then(|base| {
            let i = result.performer_index.position()?;
            base.operators.operators.get(i).map(|op| Address::from(op.address))
        });
        match proposer {
            Some(address) if address == terms.node => TaskValidity::Valid,
            Some(address) => TaskValidity::Invalid(format!(
                "the owner granted node {}, the proposer is {address}",
                terms.node
            )),
            None => TaskValidity::Invalid("proposer not in the operator set".into()),
        }
    }

    fn max_per_block(&self) -> usize {
        MAX_REQUESTS_PER_BLOCK
    }

    fn apply(&self, _: &mut ChainState, _: &TaskResult) -> Result<(), String> {
        // No effect on the chain state: nodes apply requests to their tables at finality.
        Ok(())
    }

    fn perform(&self, _: &ChainState, proposer: OperatorIndex, now_ms: u64) -> Vec<TaskResult> {
        let requests = self.automation.take_for_block(now_ms, MAX_REQUESTS_PER_BLOCK);
        internal_results(AUTOMATION_TASK_ID, proposer, requests)
    }
}
