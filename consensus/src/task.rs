//! The task hook: what a task definition implements and the registry the engine consults.
//!
//! A leader asks every registered task for its due results (`perform`) when it builds a block;
//! every voter re-validates each result against the parent's state (`validate`) before voting
//! NOTARIZE; the state transition applies each result's effect (`apply`) deterministically.
//! The effect becomes the network's reality when the block is finalized: a changed operator
//! set ends the epoch (docs/protocol.md, "Epochs"). `internal-tasks` implements this trait.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::bls::{self, PublicKey, Signature};
use crate::error::ConsensusError;
use crate::signing::{NetworkDigest, task_id, task_signing_root};
use crate::state::child_base;
use crate::types::{
    AvsTaskDefinition, Block, ChainState, FIRST_INTERNAL_TASK_ID, MAX_TASKS_PER_BLOCK,
    OperatorIndex, PublicKeyBytes, Root, SignedTaskMessage, TaskMessage, TaskResult, Validation,
};

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
    /// Validator side: check `result` against the parent block's state, at `now_ms` (the
    /// engine's time for the input being handled).
    fn validate(&self, parent: &ChainState, result: &TaskResult, now_ms: u64) -> TaskValidity;
    /// Results of this task one block may carry; more make the block invalid.
    fn max_per_block(&self) -> usize {
        MAX_TASKS_PER_BLOCK
    }
    /// Effect, applied by the state transition; may change `state.next_operators`, which ends
    /// the epoch once the block is finalized. An error makes the block invalid.
    fn apply(&self, state: &mut ChainState, result: &TaskResult) -> Result<(), String>;
    /// Performer side: the results due in a block built on `parent` by `proposer`, at
    /// `now_ms` (unix ms: the engine's time for the input being handled, never a clock read
    /// by the task, so the engine's output depends only on its inputs).
    fn perform(&self, parent: &ChainState, proposer: OperatorIndex, now_ms: u64)
    -> Vec<TaskResult>;
}

/// The task definitions a node runs, by id.
#[derive(Clone, Default)]
pub struct TaskRegistry {
    tasks: BTreeMap<u16, Arc<dyn TaskDefinition>>,
    /// Performer signatures already verified (shared by the registry's clones).
    verified: Arc<Mutex<VerifiedSignatures>>,
}

/// Most performer signatures remembered as verified.
const VERIFIED_CAPACITY: usize = 4096;

/// Performer signatures that verified, by `SHA256(task_id ‖ signature ‖ digest)`, oldest
/// forgotten first: a proposal judged again (it waits on a NotYet, and is judged after every
/// input) costs no pairing for results already checked.
#[derive(Default)]
struct VerifiedSignatures {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl VerifiedSignatures {
    fn insert(&mut self, key: [u8; 32]) {
        if self.set.insert(key) {
            self.order.push_back(key);
            while self.order.len() > VERIFIED_CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
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

    /// Validate every task result of `block` against `parent` (docs/protocol.md, 7.3): the
    /// performer rules (an AVS result signed by its performer, an internal one performed by
    /// the proposer with no signature), no AVS task twice in the block or again after one of
    /// its unfinalized ancestors (`earlier`: their AVS task ids, [`ancestor_task_ids`]), then
    /// each task's own check. Invalid wins over NotYet; an unknown task id is Invalid.
    pub fn validate_block(
        &self,
        digest: NetworkDigest,
        parent: &ChainState,
        block: &Block,
        earlier: &HashSet<Root>,
        now_ms: u64,
    ) -> TaskValidity {
        let Ok(base) = child_base(parent) else {
            return TaskValidity::Invalid("epoch overflow".into());
        };
        let mut seen = HashSet::new();
        let mut per_task: HashMap<u16, usize> = HashMap::new();
        let mut not_yet = None;
        for result in block.body.tasks.iter() {
            let Some(task) = self.get(result.task_definition_id) else {
                return TaskValidity::Invalid(format!(
                    "unknown task id {}",
                    result.task_definition_id
                ));
            };
            let count = per_task.entry(result.task_definition_id).or_default();
            *count = count.saturating_add(1);
            if *count > task.max_per_block() {
                return TaskValidity::Invalid(format!(
                    "more than {} results of task {} in one block",
                    task.max_per_block(),
                    result.task_definition_id
                ));
            }
            let identity = match self.check_performer(digest, &base, block.proposer_index, result) {
                Ok(identity) => identity,
                Err(reason) => return TaskValidity::Invalid(reason),
            };
            if !seen.insert(identity) {
                return TaskValidity::Invalid("a task twice in one block".into());
            }
            if earlier.contains(&identity) {
                return TaskValidity::Invalid("a task already in an ancestor block".into());
            }
            match task.validate(parent, result, now_ms) {
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

    /// Results due in a block on `parent`, at most `MAX_TASKS_PER_BLOCK`: the internal tasks
    /// first (the network's own upkeep, such as the operator set, is never crowded out by AVS
    /// results), then the AVS tasks, each in task-id order.
    pub fn perform(
        &self,
        parent: &ChainState,
        proposer: OperatorIndex,
        now_ms: u64,
    ) -> Vec<TaskResult> {
        let internal = self.tasks.range(FIRST_INTERNAL_TASK_ID..).map(|(_, t)| t);
        let avs = self.tasks.range(..FIRST_INTERNAL_TASK_ID).map(|(_, t)| t);
        let mut out: Vec<TaskResult> =
            internal.chain(avs).flat_map(|t| t.perform(parent, proposer, now_ms)).collect();
        out.truncate(MAX_TASKS_PER_BLOCK);
        out
    }
}

/// The genesis rules for AVS task definitions (docs/protocol.md, 7.3): sorted strictly by id,
/// ids `1..=9999`, names of 1 to 64 printable ASCII bytes, a known validation kind.
pub fn check_definitions(definitions: &[AvsTaskDefinition]) -> Result<(), String> {
    let mut last = 0u16;
    for d in definitions {
        if d.id == 0 || d.id >= FIRST_INTERNAL_TASK_ID {
            return Err(format!("task id {} is not in 1..={}", d.id, FIRST_INTERNAL_TASK_ID - 1));
        }
        if d.id <= last {
            return Err(format!("task ids must be unique and ascending ({} after {last})", d.id));
        }
        last = d.id;
        if d.name.is_empty() || d.name.iter().any(|b| !(0x20..0x7f).contains(b)) {
            return Err(format!("task {}: the name must be 1 to 64 printable ASCII bytes", d.id));
        }
        if Validation::from_u8(d.validation).is_none() {
            return Err(format!("task {}: unknown validation kind {}", d.id, d.validation));
        }
    }
    Ok(())
}

/// The AVS task ids of `blocks`' results (performers resolved in `set`, the blocks' epoch's):
/// what a block built on them must not carry again. Internal results are left out (their
/// own state rules order them).
pub fn ancestor_task_ids<'a>(
    set: &crate::types::OperatorSet,
    blocks: impl IntoIterator<Item = &'a Block>,
) -> HashSet<Root> {
    let mut out = HashSet::new();
    for result in blocks.into_iter().flat_map(|b| b.body.tasks.iter()) {
        if result.task_definition_id >= FIRST_INTERNAL_TASK_ID {
            continue;
        }
        let performer = result.performer_index.position().and_then(|i| set.operators.get(i));
        if let Some(op) = performer
            && let Ok(id) = task_id(&task_message(result, op.pubkey.clone()))
        {
            out.insert(id);
        }
    }
    out
}

/// The `TaskMessage` a result stands for, with its performer's key.
pub fn task_message(result: &TaskResult, performer: PublicKeyBytes) -> TaskMessage {
    TaskMessage {
        task_definition_id: result.task_definition_id,
        performer,
        proof_of_task: result.proof_of_task.clone(),
        data: result.data.clone(),
    }
}

/// `message` signed by `key` (domain TASK), as its performer submits it.
pub fn sign_task(
    key: &bls::SecretKey,
    message: TaskMessage,
    digest: NetworkDigest,
) -> Result<SignedTaskMessage, ConsensusError> {
    let root = task_signing_root(&message, digest)?;
    let signature = key
        .sign(&root)
        .to_bytes()
        .to_vec()
        .try_into()
        .map_err(|_| ConsensusError::Ssz("signature length".into()))?;
    Ok(SignedTaskMessage { message, signature })
}

/// True when `signature` is `performer`'s signature over `message` (domain TASK).
pub fn verify_task_signature(
    digest: NetworkDigest,
    message: &TaskMessage,
    signature: &[u8],
) -> bool {
    let (Ok(root), Ok(key), Ok(sig)) = (
        task_signing_root(message, digest),
        PublicKey::from_bytes(message.performer.as_ref()),
        Signature::from_bytes(signature),
    ) else {
        return false;
    };
    bls::verify(&key, &root, &sig)
}

impl TaskRegistry {
    /// The performer rules of one result in a block of `base`'s epoch (docs/protocol.md, 7.3);
    /// returns the identity used to refuse a task twice: the task id of an AVS result, the
    /// result's own root for an internal one.
    fn check_performer(
        &self,
        digest: NetworkDigest,
        base: &ChainState,
        proposer: OperatorIndex,
        result: &TaskResult,
    ) -> Result<Root, String> {
        if result.task_definition_id >= FIRST_INTERNAL_TASK_ID {
            if result.performer_index != proposer {
                return Err("an internal task's performer must be the proposer".into());
            }
            if result.signature.iter().any(|b| *b != 0) {
                return Err("an internal task's result carries no signature".into());
            }
            return crate::types::root_of(result).map_err(|e| e.to_string());
        }
        let operator = result
            .performer_index
            .position()
            .and_then(|i| base.operators.operators.get(i))
            .ok_or_else(|| {
                format!("performer {} is not in the operator set", result.performer_index)
            })?;
        let message = task_message(result, operator.pubkey.clone());
        let id = task_id(&message).map_err(|e| e.to_string())?;
        let key: [u8; 32] = Sha256::new()
            .chain_update(id)
            .chain_update(result.signature.as_ref() as &[u8])
            .chain_update(digest)
            .finalize()
            .into();
        let lock = || self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if lock().set.contains(&key) {
            return Ok(id);
        }
        if !verify_task_signature(digest, &message, result.signature.as_ref()) {
            return Err("the performer's signature does not verify".into());
        }
        lock().insert(key);
        Ok(id)
    }

    /// Performer signatures remembered as verified (for tests).
    pub fn verified_signatures(&self) -> usize {
        self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Height, OperatorIndex};
    use crate::signing::network_digest;
    use crate::state::genesis_state;
    use crate::testkit::{self, avs_result, note};
    use crate::types::BlockBody;

    const AVS_ID: u16 = 7;

    fn block(proposer: OperatorIndex, tasks: Vec<TaskResult>) -> Block {
        Block {
            height: Height::new(1),
            proposer_index: proposer,
            body: BlockBody { tasks: tasks.try_into().unwrap() },
            ..Default::default()
        }
    }

    fn invalid(v: TaskValidity) -> String {
        match v {
            TaskValidity::Invalid(reason) => reason,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn performer_rules() {
        let (keys, genesis) = testkit::genesis(&[1, 1, 1, 1], 0, 4000).unwrap();
        let digest = network_digest(&genesis).unwrap();
        let parent = genesis_state(&genesis);
        let mut reg = testkit::registry(Vec::new());
        reg.register(Arc::new(testkit::AcceptAvs(AVS_ID))).unwrap();
        let signed = |i: usize, data: &[u8]| {
            avs_result(&keys[i], OperatorIndex::at(i), AVS_ID, b"proof", data, digest).unwrap()
        };

        // Signed by its performer, in a block led by someone else: valid.
        let good = signed(2, b"a");
        assert_eq!(
            check(&reg, digest, &parent, &block(OperatorIndex::ZERO, vec![good.clone()])),
            TaskValidity::Valid
        );

        // Another operator's index on operator 2's signature, data changed after signing, a
        // missing signature, another network's signature, an index outside the set.
        let mut reindexed = good.clone();
        reindexed.performer_index = OperatorIndex::new(1);
        let mut tampered = good.clone();
        tampered.data = crate::types::byte_list(b"b").unwrap();
        let mut unsigned = good.clone();
        unsigned.signature = Default::default();
        let foreign =
            avs_result(&keys[2], OperatorIndex::new(2), AVS_ID, b"proof", b"a", [9, 9, 9, 9])
                .unwrap();
        let mut outside = good.clone();
        outside.performer_index = OperatorIndex::new(4);
        for bad in [reindexed, tampered, unsigned, foreign] {
            let reason =
                invalid(check(&reg, digest, &parent, &block(OperatorIndex::ZERO, vec![bad])));
            assert!(reason.contains("signature"), "{reason}");
        }
        let reason =
            invalid(check(&reg, digest, &parent, &block(OperatorIndex::ZERO, vec![outside])));
        // Each good signature is verified once; a refused one is never remembered, so the same
        // task with another (wrong) signature is refused again after the good one was seen.
        assert_eq!(reg.verified_signatures(), 1);
        assert_eq!(
            check(&reg, digest, &parent, &block(OperatorIndex::ZERO, vec![good.clone()])),
            TaskValidity::Valid
        );
        assert_eq!(reg.verified_signatures(), 1);
        let mut other_sig = good.clone();
        other_sig.signature =
            avs_result(&keys[1], OperatorIndex::new(2), AVS_ID, b"proof", b"a", digest)
                .unwrap()
                .signature;
        let refused =
            invalid(check(&reg, digest, &parent, &block(OperatorIndex::ZERO, vec![other_sig])));
        assert!(refused.contains("signature"), "{refused}");
        assert_eq!(reg.verified_signatures(), 1);
        assert!(reason.contains("not in the operator set"), "{reason}");

        // The same task twice in one block.
        let reason = invalid(check(
            &reg,
            digest,
            &parent,
            &block(OperatorIndex::ZERO, vec![good.clone(), good]),
        ));
        assert!(reason.contains("twice"), "{reason}");
        let two = vec![signed(1, b"x"), signed(2, b"x")];
        assert_eq!(
            check(&reg, digest, &parent, &block(OperatorIndex::ZERO, two)),
            TaskValidity::Valid,
            "two performers"
        );

        // Internal tasks: performed by the proposer, with no signature.
        let own = note(OperatorIndex::new(3), b"n").unwrap();
        assert_eq!(
            check(&reg, digest, &parent, &block(OperatorIndex::new(3), vec![own.clone()])),
            TaskValidity::Valid
        );
        let reason =
            invalid(check(&reg, digest, &parent, &block(OperatorIndex::ZERO, vec![own.clone()])));
        assert!(reason.contains("proposer"), "{reason}");
        let mut with_signature = own;
        with_signature.signature = good_signature(&keys[3]);
        let reason = invalid(check(
            &reg,
            digest,
            &parent,
            &block(OperatorIndex::new(3), vec![with_signature]),
        ));
        assert!(reason.contains("no signature"), "{reason}");
    }

    #[test]
    fn definition_rules() {
        let def = |id, name: &[u8], validation| AvsTaskDefinition {
            id,
            name: crate::types::byte_list(name).unwrap(),
            validation,
        };
        assert_eq!(check_definitions(&[def(1, b"a", 0), def(9999, b"price feed", 1)]), Ok(()));
        for (bad, why) in [
            (vec![def(0, b"a", 0)], "not in"),
            (vec![def(10_000, b"a", 0)], "not in"),
            (vec![def(2, b"a", 0), def(2, b"b", 0)], "ascending"),
            (vec![def(3, b"a", 0), def(2, b"b", 0)], "ascending"),
            (vec![def(1, b"", 0)], "name"),
            (vec![def(1, b"tab\t", 0)], "name"),
            (vec![def(1, b"a", 2)], "validation"),
        ] {
            let err = check_definitions(&bad).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    fn check(
        reg: &TaskRegistry,
        digest: NetworkDigest,
        parent: &ChainState,
        b: &Block,
    ) -> TaskValidity {
        reg.validate_block(digest, parent, b, &HashSet::new(), 0)
    }

    /// Always has 16 results due: it would fill every block.
    struct Flood;
    impl TaskDefinition for Flood {
        fn id(&self) -> u16 {
            AVS_ID + 1
        }
        fn validate(&self, _: &ChainState, _: &TaskResult, _now_ms: u64) -> TaskValidity {
            TaskValidity::Valid
        }
        fn apply(&self, _: &mut ChainState, _: &TaskResult) -> Result<(), String> {
            Ok(())
        }
        fn perform(&self, _: &ChainState, _: OperatorIndex, _: u64) -> Vec<TaskResult> {
            vec![TaskResult { task_definition_id: AVS_ID + 1, ..Default::default() }; 16]
        }
    }

    /// One internal result due.
    struct Upkeep;
    impl TaskDefinition for Upkeep {
        fn id(&self) -> u16 {
            FIRST_INTERNAL_TASK_ID + 500
        }
        fn validate(&self, _: &ChainState, _: &TaskResult, _now_ms: u64) -> TaskValidity {
            TaskValidity::Valid
        }
        fn apply(&self, _: &mut ChainState, _: &TaskResult) -> Result<(), String> {
            Ok(())
        }
        fn perform(&self, _: &ChainState, _: OperatorIndex, _: u64) -> Vec<TaskResult> {
            let id = FIRST_INTERNAL_TASK_ID + 500;
            vec![TaskResult { task_definition_id: id, ..Default::default() }]
        }
    }

    #[test]
    fn a_task_of_an_ancestor_is_refused_and_internal_tasks_are_performed_first() {
        let (keys, genesis) = testkit::genesis(&[1, 1, 1, 1], 0, 4000).unwrap();
        let digest = network_digest(&genesis).unwrap();
        let parent = genesis_state(&genesis);
        let mut reg = testkit::registry(Vec::new());
        reg.register(Arc::new(testkit::AcceptAvs(AVS_ID))).unwrap();
        let task = avs_result(&keys[1], OperatorIndex::new(1), AVS_ID, b"p", b"d", digest).unwrap();
        let b = block(OperatorIndex::ZERO, vec![task]);
        let earlier = ancestor_task_ids(&genesis.operators, [&b]);
        assert_eq!(earlier.len(), 1);
        let reason = invalid(reg.validate_block(digest, &parent, &b, &earlier, 0));
        assert!(reason.contains("ancestor"), "{reason}");
        assert_eq!(check(&reg, digest, &parent, &b), TaskValidity::Valid);

        let mut crowded = TaskRegistry::new();
        crowded.register(Arc::new(Flood)).unwrap();
        crowded.register(Arc::new(Upkeep)).unwrap();
        let performed = crowded.perform(&parent, OperatorIndex::ZERO, 0);
        assert_eq!(performed.len(), MAX_TASKS_PER_BLOCK);
        assert_eq!(performed[0].task_definition_id, FIRST_INTERNAL_TASK_ID + 500, "upkeep first");
    }

    fn good_signature(key: &crate::bls::SecretKey) -> crate::types::SignatureBytes {
        key.sign(&[1; 32]).to_bytes().to_vec().try_into().unwrap()
    }
}
