//! The replicated state and its transition (docs/protocol.md, "Chain state").
//!
//! `apply_block(parent_state, parent_root, block)` is a pure function: start from the parent's
//! state (moving to the next epoch first when the parent ended its epoch), set height and
//! parent, apply every task result's effect in order. A block's `state_root` must equal the
//! root of the result. A block that changes the operator set must leave a set that passes
//! `KeyTable::new` (keys, proofs of possession, non-zero power), or the next epoch could never
//! start; such a block is invalid.

use crate::error::ConsensusError;
use crate::operators::KeyTable;
use crate::signing::NetworkDigest;
use crate::task::TaskRegistry;
use crate::types::{
    Block, BlockBody, ChainState, Epoch, GenesisConfig, Height, OperatorIndex, Root, root_of,
};

/// State at genesis: epoch 0, height 0, the genesis operator set.
pub fn genesis_state(genesis: &GenesisConfig) -> ChainState {
    ChainState {
        epoch: Epoch::ZERO,
        height: Height::ZERO,
        parent_root: [0; 32],
        operators: genesis.operators.clone(),
        next_operators: genesis.operators.clone(),
        task_states: Default::default(),
    }
}

/// The genesis block: height 0, zero parent, empty body, committing to the genesis state.
pub fn genesis_block(genesis: &GenesisConfig) -> Result<Block, ConsensusError> {
    Ok(Block {
        height: Height::ZERO,
        parent_root: [0; 32],
        proposer_index: OperatorIndex::ZERO,
        state_root: root_of(&genesis_state(genesis))?,
        body: BlockBody::default(),
    })
}

/// The state a child of `parent` starts from: the parent's state, or the next epoch's when the
/// parent ended its epoch.
pub fn child_base(parent: &ChainState) -> Result<ChainState, ConsensusError> {
    let mut base = parent.clone();
    if parent.ends_epoch() {
        base.epoch = parent.epoch.checked_add(1).ok_or(ConsensusError::Overflow("epoch"))?;
        base.operators = parent.next_operators.clone();
    }
    Ok(base)
}

/// Epoch a child of a block with state `parent` belongs to.
pub fn child_epoch(parent: &ChainState) -> Result<Epoch, ConsensusError> {
    if parent.ends_epoch() {
        parent.epoch.checked_add(1).ok_or(ConsensusError::Overflow("epoch"))
    } else {
        Ok(parent.epoch)
    }
}

/// Apply `block` on top of (`parent_root`, `parent`); checks height, parent link and the
/// resulting operator set, but not `block.state_root` (see `check_state_root`).
pub fn apply_block(
    registry: &TaskRegistry,
    digest: NetworkDigest,
    parent: &ChainState,
    parent_root: &Root,
    block: &Block,
) -> Result<ChainState, ConsensusError> {
    if &block.parent_root != parent_root {
        return Err(ConsensusError::InvalidBlock("parent root mismatch".into()));
    }
    let expected = parent.height.checked_add(1).ok_or(ConsensusError::Overflow("height"))?;
    if block.height != expected {
        return Err(ConsensusError::InvalidBlock(format!(
            "height {} after {}",
            block.height, parent.height
        )));
    }
    let mut state = child_base(parent)?;
    state.height = block.height;
    state.parent_root = block.parent_root;
    for result in block.body.tasks.iter() {
        let id = result.task_definition_id;
        let task =
            registry.get(id).ok_or(ConsensusError::Task { id, reason: "unknown task".into() })?;
        task.apply(&mut state, result).map_err(|reason| ConsensusError::Task { id, reason })?;
    }
    if state.ends_epoch() {
        let next = state.epoch.checked_add(1).ok_or(ConsensusError::Overflow("epoch"))?;
        KeyTable::new(next, &state.next_operators, digest)?;
    }
    Ok(state)
}

/// `Ok(())` when `block.state_root` commits to `state`.
pub fn check_state_root(block: &Block, state: &ChainState) -> Result<(), ConsensusError> {
    if root_of(state)? == block.state_root {
        Ok(())
    } else {
        Err(ConsensusError::InvalidBlock("state root mismatch".into()))
    }
}
