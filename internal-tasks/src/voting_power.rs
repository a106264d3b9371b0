//! VotingPowerSyncTask (id 10001): performer, validator and effect.
//!
//! - **Perform** (leaders of nodes started with `--internal-tasks`): once per sync interval the
//!   task checks the cache's snapshots at the confirmed heads of L1 and L2; when the set of the
//!   parent block differs from L1, it proposes the update (SSZ `data`) with its
//!   `hash_tree_root` as `proof_of_task`, in every block it leads until the update is in the
//!   chain; when nothing differs, it waits another interval.
//! - **Validate** (every node): strict decode, proof = root, base epoch = the block's epoch,
//!   non-empty, an L1 block after the last applied update's and an L2 block no earlier (the
//!   task's [`SyncState`] in the parent state); the named blocks must be within this node's confirmed heads (else `NotYet`) and
//!   not older than [`MAX_LAG_BLOCKS`]; their hashes must match this node's source; and the
//!   update recomputed from this node's snapshots must be byte-identical. Anything else is
//!   `Invalid`: the node does not vote for the block.
//! - **Apply**: rewrites `next_operators` (see `update::apply_update`), which ends the epoch
//!   when the block is finalized, and records the update's blocks as the task's state.

use std::sync::{Arc, Mutex};

use avs_consensus::state::child_epoch;
use avs_consensus::task::{TaskDefinition, TaskValidity};
use avs_consensus::types::{
    ChainState, Height, OperatorIndex, Root, TaskResult, byte_list, decode, encode, root_of,
};

use crate::VOTING_POWER_SYNC_TASK_ID;
use crate::source::{Chain, ChainSnapshot, Lookup, SourceCache};
use crate::update::{SyncState, VotingPowerUpdate, apply_update, compute_update};

/// The task's state in `state`: `None` before its first update.
pub fn sync_state(state: &ChainState) -> Result<Option<SyncState>, String> {
    state
        .task_state(VOTING_POWER_SYNC_TASK_ID)
        .map(|bytes| decode::<SyncState>(bytes).map_err(|e| format!("task state: {e}")))
        .transpose()
}

/// An update naming a block this far behind the validator's confirmed head is refused: a
/// leader must not roll stake back by reading an old block.
pub const MAX_LAG_BLOCKS: u64 = 256;

/// Receives what the task did, for logs and metrics (the node implements it).
pub trait TaskObserver: Send + Sync {
    /// The performer put an update into a block it builds at `height`.
    fn performed(&self, task_id: u16, height: Height, summary: &str);
    /// A result was judged for a block at `height`; `data_root` identifies the result.
    fn validated(&self, task_id: u16, height: Height, data_root: Root, verdict: &TaskValidity);
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;

impl TaskObserver for NoObserver {
    fn performed(&self, _: u16, _: Height, _: &str) {}
    fn validated(&self, _: u16, _: Height, _: Root, _: &TaskValidity) {}
}

/// The performer's period, counted on the time the engine hands to `perform`.
pub struct Performer {
    pub interval_ms: u64,
    /// The first check happens at this time (unix ms); later ones one interval after a check
    /// that found nothing to change.
    next_due_ms: Mutex<u64>,
}

impl Performer {
    pub fn new(interval_ms: u64, first_due_ms: u64) -> Self {
        Self { interval_ms, next_due_ms: Mutex::new(first_due_ms) }
    }
}

pub struct VotingPowerSyncTask {
    cache: SourceCache,
    performer: Option<Performer>,
    observer: Arc<dyn TaskObserver>,
}

impl std::fmt::Debug for VotingPowerSyncTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VotingPowerSyncTask").field("performs", &self.performer.is_some()).finish()
    }
}

/// A one-line description of an update, for logs and the devnet.
pub fn summarize(update: &VotingPowerUpdate) -> String {
    let changes: Vec<String> = update
        .changes
        .iter()
        .map(|c| format!("0x{}..:{}->{}", hex::encode(&c.address[..3]), c.old_power, c.new_power))
        .chain(
            update
                .new_operators
                .iter()
                .map(|n| format!("0x{}..:new {}", hex::encode(&n.address[..3]), n.power)),
        )
        .collect();
    format!(
        "l1 #{} l2 #{} [{}]",
        update.l1_block.number,
        update.l2_block.number,
        changes.join(", ")
    )
}

/// Decodes a VotingPowerSync result's update (strict SSZ), for logs at finality.
pub fn decode_update(result: &TaskResult) -> Option<VotingPowerUpdate> {
    decode::<VotingPowerUpdate>(result.data.as_ref()).ok()
}

impl VotingPowerSyncTask {
    /// `performer` is `Some` on nodes started with `--internal-tasks`.
    pub fn new(
        cache: SourceCache,
        performer: Option<Performer>,
        observer: Arc<dyn TaskObserver>,
    ) -> Self {
        Self { cache, performer, observer }
    }

    fn judge(&self, parent: &ChainState, result: &TaskResult) -> TaskValidity {
        let update = match decode::<VotingPowerUpdate>(result.data.as_ref()) {
            Ok(u) => u,
            Err(e) => return TaskValidity::Invalid(format!("data is not an update: {e}")),
        };
        match root_of(&update) {
            Ok(root) if result.proof_of_task.as_ref() == root.as_slice() => {}
            _ => return TaskValidity::Invalid("proof_of_task is not the update's root".into()),
        }
        let epoch = match child_epoch(parent) {
            Ok(e) => e,
            Err(e) => return TaskValidity::Invalid(e.to_string()),
        };
        if update.base_epoch != epoch {
            return TaskValidity::Invalid(format!(
                "update is for epoch {}, the block is in epoch {epoch}",
                update.base_epoch
            ));
        }
        if update.is_empty() {
            return TaskValidity::Invalid("update changes nothing".into());
        }
        match sync_state(parent) {
            Ok(Some(last)) => {
                if let Some(reason) = last.refuses(&update) {
                    return TaskValidity::Invalid(reason);
                }
            }
            Ok(None) => {}
            Err(e) => return TaskValidity::Invalid(e),
        }
        let l1 = match self.snapshot(Chain::L1, update.l1_block.number, &update.l1_block.hash) {
            Ok(s) => s,
            Err(verdict) => return verdict,
        };
        let l2 = match self.snapshot(Chain::L2, update.l2_block.number, &update.l2_block.hash) {
            Ok(s) => s,
            Err(verdict) => return verdict,
        };
        match compute_update(epoch, &parent.next_operators, &l1, &l2) {
            Ok(mine) if mine == update => TaskValidity::Valid,
            Ok(mine) => TaskValidity::Invalid(format!(
                "update differs from my sources: proposed {}, mine {}",
                summarize(&update),
                summarize(&mine)
            )),
            Err(e) => TaskValidity::Invalid(e.to_string()),
        }
    }

    /// This node's snapshot of `chain` at `number`, checked against `hash` and freshness.
    fn snapshot(
        &self,
        chain: Chain,
        number: u64,
        hash: &Root,
    ) -> Result<Arc<ChainSnapshot>, TaskValidity> {
        let name = chain.name();
        let snapshot = match self.cache.lookup(chain, number) {
            Lookup::Found(s) => s,
            Lookup::NotReached { head: Some(head) } => {
                return Err(TaskValidity::NotYet(format!(
                    "{name} block {number} is beyond my source's confirmed head {head}"
                )));
            }
            Lookup::NotReached { head: None } => {
                return Err(TaskValidity::NotYet(format!("my {name} source has not answered yet")));
            }
            Lookup::Fetching => {
                return Err(TaskValidity::NotYet(format!("fetching {name} block {number}")));
            }
        };
        if &snapshot.block.hash != hash {
            return Err(TaskValidity::Invalid(format!(
                "{name} block {number} hash 0x{} differs from my source's 0x{}",
                hex::encode(hash),
                hex::encode(snapshot.block.hash)
            )));
        }
        let head = self.cache.heads().map_or(0, |h| h.get(chain));
        if number.saturating_add(MAX_LAG_BLOCKS) < head {
            return Err(TaskValidity::Invalid(format!(
                "{name} block {number} is stale: my confirmed head is {head}"
            )));
        }
        Ok(snapshot)
    }

    fn build(&self, parent: &ChainState, proposer: OperatorIndex, now: u64) -> Option<TaskResult> {
        let performer = self.performer.as_ref()?;
        let mut next_due = performer.next_due_ms.lock().unwrap_or_else(|e| e.into_inner());
        if now < *next_due {
            return None;
        }
        let heads = self.cache.heads()?;
        let l1 = match self.cache.lookup(Chain::L1, heads.l1) {
            Lookup::Found(s) => s,
            _ => return None,
        };
        let l2 = match self.cache.lookup(Chain::L2, heads.l2) {
            Lookup::Found(s) => s,
            _ => return None,
        };
        let last = sync_state(parent).ok()?;
        if last.is_some_and(|last| !last.admits(heads.l1, heads.l2)) {
            // The last update named these blocks or later ones; wait for the heads to pass.
            return None;
        }
        let epoch = child_epoch(parent).ok()?;
        let update = match compute_update(epoch, &parent.next_operators, &l1, &l2) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(task_id = VOTING_POWER_SYNC_TASK_ID, error = %e, "cannot compute the voting power update");
                return None;
            }
        };
        if update.is_empty() {
            *next_due = now.saturating_add(performer.interval_ms);
            tracing::debug!(
                task_id = VOTING_POWER_SYNC_TASK_ID,
                l1_block = heads.l1,
                l2_block = heads.l2,
                "voting power in line with L1; next check in one sync interval"
            );
            return None;
        }
        let data = encode(&update).ok()?;
        let proof = root_of(&update).ok()?;
        let result = TaskResult {
            task_definition_id: VOTING_POWER_SYNC_TASK_ID,
            performer_index: proposer,
            proof_of_task: byte_list(&proof).ok()?,
            data: byte_list(&data).ok()?,
            signature: Default::default(),
        };
        self.observer.performed(
            VOTING_POWER_SYNC_TASK_ID,
            parent.height.next(),
            &summarize(&update),
        );
        Some(result)
    }
}

impl TaskDefinition for VotingPowerSyncTask {
    fn id(&self) -> u16 {
        VOTING_POWER_SYNC_TASK_ID
    }

    fn validate(&self, parent: &ChainState, result: &TaskResult, _now_ms: u64) -> TaskValidity {
        let verdict = self.judge(parent, result);
        let data_root = root_of(&result.data).unwrap_or_default();
        self.observer.validated(
            VOTING_POWER_SYNC_TASK_ID,
            parent.height.next(),
            data_root,
            &verdict,
        );
        verdict
    }

    fn apply(&self, state: &mut ChainState, result: &TaskResult) -> Result<(), String> {
        let update =
            decode::<VotingPowerUpdate>(result.data.as_ref()).map_err(|e| e.to_string())?;
        if update.base_epoch != state.epoch {
            return Err(format!(
                "update is for epoch {}, the block is in epoch {}",
                update.base_epoch, state.epoch
            ));
        }
        state.next_operators =
            apply_update(&state.next_operators, &update).map_err(|e| e.to_string())?;
        let recorded = encode(&SyncState::after(&update)).map_err(|e| e.to_string())?;
        state.set_task_state(VOTING_POWER_SYNC_TASK_ID, &recorded).map_err(|e| e.to_string())
    }

    fn perform(
        &self,
        parent: &ChainState,
        proposer: OperatorIndex,
        now_ms: u64,
    ) -> Vec<TaskResult> {
        self.build(parent, proposer, now_ms).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Heads;
    use crate::test_support::{operator, snapshot};
    use avs_consensus::types::Epoch;
    use avs_consensus::types::OperatorSet;
    use ssz_rs::prelude::List;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn state(ops: &[(u8, u64)]) -> ChainState {
        let set = OperatorSet {
            operators: List::try_from(ops.iter().map(|&(a, p)| operator(a, p)).collect::<Vec<_>>())
                .unwrap(),
        };
        ChainState {
            epoch: Epoch::ZERO,
            height: Height::new(4),
            parent_root: [1; 32],
            operators: set.clone(),
            next_operators: set,
            task_states: Default::default(),
        }
    }

    struct Node {
        task: VotingPowerSyncTask,
        cache: SourceCache,
        now: Arc<AtomicU64>,
    }

    fn node(l1: &[(u8, u64)], performs: bool) -> Node {
        let cache = SourceCache::new();
        cache.set_heads(Heads { l1: 10, l2: 10 });
        cache.insert(Chain::L1, snapshot(10, l1));
        cache.insert(Chain::L2, snapshot(10, &[(1, 100), (2, 100)]));
        let now = Arc::new(AtomicU64::new(1_000));
        let performer = performs.then(|| Performer::new(10_000, 1_000));
        let task = VotingPowerSyncTask::new(cache.clone(), performer, Arc::new(NoObserver));
        Node { task, cache, now }
    }

    impl Node {
        /// `perform` at the node's current time.
        fn perform(&self, parent: &ChainState, proposer: u64) -> Vec<TaskResult> {
            let now = self.now.load(Ordering::Relaxed);
            self.task.perform(parent, OperatorIndex::new(proposer), now)
        }
    }

    #[test]
    fn performer_proposes_a_change_attesters_with_the_same_view_accept_it_and_apply_ends_the_epoch()
    {
        let parent = state(&[(1, 100), (2, 100)]);
        let leader = node(&[(1, 300), (2, 100), (3, 50)], true);
        let results = leader.perform(&parent, 1);
        assert_eq!(results.len(), 1);
        let result = &results[0];
        assert_eq!(result.task_definition_id, VOTING_POWER_SYNC_TASK_ID);
        assert_eq!(leader.task.validate(&parent, result, 0), TaskValidity::Valid);

        let attester = node(&[(1, 300), (2, 100), (3, 50)], false);
        assert_eq!(attester.task.validate(&parent, result, 0), TaskValidity::Valid);
        assert!(attester.perform(&parent, 0).is_empty(), "no --internal-tasks");

        let mut next = avs_consensus::state::child_base(&parent).unwrap();
        attester.task.apply(&mut next, result).unwrap();
        assert!(next.ends_epoch());
        let powers: Vec<(u8, u64)> =
            next.next_operators.operators.iter().map(|o| (o.address[0], o.power)).collect();
        assert_eq!(powers, vec![(1, 300), (2, 100), (3, 50)]);
        assert_eq!(sync_state(&next), Ok(Some(SyncState { l1_block: 10, l2_block: 10 })));
        // In the next epoch nothing is left to propose.
        let mut after = next.clone();
        after.operators = after.next_operators.clone();
        after.epoch = Epoch::new(1);
        assert!(leader.perform(&after, 0).is_empty());
    }

    /// Review M6: once an update at L1 block 10 is applied, an update at block 10 or earlier
    /// is refused (a leader could otherwise undo a recent stake change by reading an older
    /// block inside the staleness window), and a performer waits for its head to pass it.
    #[test]
    fn an_update_may_not_move_the_l1_block_backwards() {
        let mut parent = state(&[(1, 100), (2, 100)]);
        let leader = node(&[(1, 300), (2, 100)], true);
        let at_ten = leader.perform(&parent, 1).remove(0);
        assert_eq!(leader.task.validate(&parent, &at_ten, 0), TaskValidity::Valid);

        let record = |parent: &mut ChainState, l1_block, l2_block| {
            let bytes = encode(&SyncState { l1_block, l2_block }).unwrap();
            parent.set_task_state(VOTING_POWER_SYNC_TASK_ID, &bytes).unwrap();
        };
        // The last applied update named L1 block 10: the same block is not after it.
        record(&mut parent, 10, 10);
        let verdict = leader.task.validate(&parent, &at_ten, 0);
        assert!(
            matches!(&verdict, TaskValidity::Invalid(r) if r.contains("not after the last applied")),
            "{verdict:?}"
        );
        leader.now.store(1_000_000, Ordering::Relaxed);
        assert!(leader.perform(&parent, 1).is_empty(), "the head has not passed block 10");
        // An L2 block older than the last one is refused too; the same L2 block is fine.
        record(&mut parent, 9, 11);
        let verdict = leader.task.validate(&parent, &at_ten, 0);
        assert!(
            matches!(&verdict, TaskValidity::Invalid(r) if r.contains("l2 block 10 is before"))
        );
        record(&mut parent, 9, 10);
        assert_eq!(leader.task.validate(&parent, &at_ten, 0), TaskValidity::Valid);
        // A task state that does not decode makes every update invalid, never a panic.
        parent.set_task_state(VOTING_POWER_SYNC_TASK_ID, &[1, 2, 3]).unwrap();
        assert!(matches!(leader.task.validate(&parent, &at_ten, 0), TaskValidity::Invalid(_)));
    }

    #[test]
    fn attesters_refuse_mismatches_and_wait_for_blocks_they_have_not_reached() {
        let parent = state(&[(1, 100), (2, 100)]);
        let leader = node(&[(1, 300), (2, 100)], true);
        let result = leader.perform(&parent, 1).remove(0);

        let disagrees = node(&[(1, 200), (2, 100)], false);
        assert!(
            matches!(disagrees.task.validate(&parent, &result, 0), TaskValidity::Invalid(r) if r.contains("differs"))
        );

        let fresh = SourceCache::new();
        fresh.set_heads(Heads { l1: 9, l2: 10 });
        let behind_task = VotingPowerSyncTask::new(fresh.clone(), None, Arc::new(NoObserver));
        assert!(
            matches!(behind_task.validate(&parent, &result, 0), TaskValidity::NotYet(r) if r.contains("beyond"))
        );
        fresh.set_heads(Heads { l1: 10, l2: 10 });
        assert!(
            matches!(behind_task.validate(&parent, &result, 0), TaskValidity::NotYet(r) if r.contains("fetching"))
        );
        assert_eq!(fresh.wanted(), vec![(Chain::L1, 10)]);
        fresh.insert(Chain::L1, snapshot(10, &[(1, 300), (2, 100)]));
        fresh.insert(Chain::L2, snapshot(10, &[(1, 100), (2, 100)]));
        assert_eq!(behind_task.validate(&parent, &result, 0), TaskValidity::Valid);

        let mut tampered = result.clone();
        tampered.proof_of_task = byte_list(&[0u8; 32]).unwrap();
        assert!(matches!(leader.task.validate(&parent, &tampered, 0), TaskValidity::Invalid(_)));
        let mut garbage = result.clone();
        garbage.data = byte_list(&[1, 2, 3]).unwrap();
        assert!(matches!(leader.task.validate(&parent, &garbage, 0), TaskValidity::Invalid(_)));

        let mut other_hash = snapshot(10, &[(1, 300), (2, 100)]);
        other_hash.block.hash = [9; 32];
        let forked = node(&[(1, 300), (2, 100)], false);
        forked.cache.insert(Chain::L1, other_hash);
        assert!(
            matches!(forked.task.validate(&parent, &result, 0), TaskValidity::Invalid(r) if r.contains("hash"))
        );

        let mut later = parent.clone();
        later.epoch = Epoch::new(1);
        later.operators = later.next_operators.clone();
        assert!(
            matches!(leader.task.validate(&later, &result, 0), TaskValidity::Invalid(r) if r.contains("epoch"))
        );

        let far = node(&[(1, 300), (2, 100)], false);
        far.cache.set_heads(Heads { l1: 10 + MAX_LAG_BLOCKS + 1, l2: 10 });
        assert!(
            matches!(far.task.validate(&parent, &result, 0), TaskValidity::Invalid(r) if r.contains("stale"))
        );
    }

    #[test]
    fn nothing_to_change_waits_one_interval_and_a_change_is_retried_until_applied() {
        let parent = state(&[(1, 100), (2, 100)]);
        let leader = node(&[(1, 100), (2, 100)], true);
        assert!(leader.perform(&parent, 0).is_empty());
        // A change appears, but the next check is one interval later.
        leader.cache.insert(Chain::L1, snapshot(11, &[(1, 100), (2, 400)]));
        leader.cache.set_heads(Heads { l1: 11, l2: 10 });
        leader.now.store(5_000, Ordering::Relaxed);
        assert!(leader.perform(&parent, 0).is_empty());
        leader.now.store(11_000, Ordering::Relaxed);
        assert_eq!(leader.perform(&parent, 0).len(), 1);
        // Not included yet (say the view was nullified): proposed again next time.
        assert_eq!(leader.perform(&parent, 0).len(), 1);
    }
}
