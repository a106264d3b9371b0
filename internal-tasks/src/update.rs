//! The VotingPowerSync update: its SSZ containers and the pure function that computes it.
//!
//! `compute_update(base_epoch, set, l1, l2)` compares each operator's stake on L1 at one block
//! (the stake truth) with the network's current operator set, carrying the power L2 recorded
//! for it at one block, and lists every difference: changed powers (including drops to zero,
//! which remove the operator) sorted by address, and operators registered on L1 with a BLS key
//! and a valid proof of possession that the set does not hold yet, sorted by address. The
//! performer and every attester run this same function on their own snapshots, so an update is
//! accepted exactly when both sides read the same chain data.
//!
//! `apply_update` is the effect at the state transition: it checks that each change's
//! `old_power` still matches (an update computed against another set is refused) and rewrites
//! `next_operators`, which ends the epoch.

// The `SimpleSerialize` derive expands to offset arithmetic; this module's own arithmetic is
// checked.
#![allow(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, BTreeSet};

use avs_consensus::operators::key_up_to_sign;
use avs_consensus::ssz_check::{Shape, SszShape};
use avs_consensus::types::{
    Epoch, MAX_OPERATORS, Operator, OperatorIndex, OperatorSet, PublicKeyBytes, Root,
    SignatureBytes,
};
use ssz_rs::prelude::*;

use crate::source::{ChainSnapshot, RegisteredOperator};

/// A block of one chain, named by number and hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct ChainBlock {
    pub number: u64,
    pub hash: Root,
}

/// One operator of the set whose power changes. `new_power == 0` removes it from the set.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct PowerChange {
    pub address: [u8; 20],
    /// Power in the set the update was computed against.
    pub old_power: u64,
    /// Power on L1 at `l1_block`.
    pub new_power: u64,
    /// Power recorded on L2 at `l2_block` (0 when L2 has no record).
    pub l2_power: u64,
}

/// An operator registered on L1 that joins the set.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct NewOperator {
    pub address: [u8; 20],
    pub pubkey: PublicKeyBytes,
    pub pop: SignatureBytes,
    pub power: u64,
    pub l2_power: u64,
}

/// `TaskResult.data` of VotingPowerSyncTask; `proof_of_task` is its `hash_tree_root`.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct VotingPowerUpdate {
    /// Epoch of the set the update was computed against (the block's own epoch).
    pub base_epoch: Epoch,
    pub l1_block: ChainBlock,
    pub l2_block: ChainBlock,
    /// Sorted by address, strictly.
    pub changes: List<PowerChange, MAX_OPERATORS>,
    /// Sorted by address, strictly; none of them is in the base set.
    pub new_operators: List<NewOperator, MAX_OPERATORS>,
}

impl VotingPowerUpdate {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.new_operators.is_empty()
    }
}

impl SszShape for ChainBlock {
    fn shape() -> Shape {
        Shape::Fixed(8 + 32)
    }
}
impl SszShape for PowerChange {
    fn shape() -> Shape {
        Shape::Fixed(20 + 8 + 8 + 8)
    }
}
impl SszShape for NewOperator {
    fn shape() -> Shape {
        Shape::Fixed(20 + 48 + 96 + 8 + 8)
    }
}
impl SszShape for VotingPowerUpdate {
    fn shape() -> Shape {
        Shape::Container(vec![
            Shape::Fixed(8),
            ChainBlock::shape(),
            ChainBlock::shape(),
            Shape::List(Box::new(PowerChange::shape()), MAX_OPERATORS),
            Shape::List(Box::new(NewOperator::shape()), MAX_OPERATORS),
        ])
    }
}

/// VotingPowerSync's state in the chain (`ChainState::task_states`, task 10001): the L1 and
/// L2 block numbers of the last applied update. The next update must name a later L1 block
/// and an L2 block no earlier, so no leader can roll stake back by reading an older block
/// (docs/protocol.md, "VotingPowerSyncTask"; review M6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct SyncState {
    pub l1_block: u64,
    pub l2_block: u64,
}

impl SszShape for SyncState {
    fn shape() -> Shape {
        Shape::Container(vec![Shape::Fixed(8), Shape::Fixed(8)])
    }
}

impl SyncState {
    /// The state `update` leaves.
    pub fn after(update: &VotingPowerUpdate) -> Self {
        Self { l1_block: update.l1_block.number, l2_block: update.l2_block.number }
    }

    /// Whether an update reading L1 block `l1` and L2 block `l2` may follow this state: the
    /// L1 block must be later and the L2 block no earlier.
    pub fn admits(&self, l1: u64, l2: u64) -> bool {
        l1 > self.l1_block && l2 >= self.l2_block
    }

    /// Why `update` may not follow this state ([`Self::admits`]), if it may not.
    pub fn refuses(&self, update: &VotingPowerUpdate) -> Option<String> {
        if self.admits(update.l1_block.number, update.l2_block.number) {
            return None;
        }
        if update.l1_block.number <= self.l1_block {
            return Some(format!(
                "l1 block {} is not after the last applied update's l1 block {}",
                update.l1_block.number, self.l1_block
            ));
        }
        Some(format!(
            "l2 block {} is before the last applied update's l2 block {}",
            update.l2_block.number, self.l2_block
        ))
    }
}

/// Why an update cannot be computed or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("more than {MAX_OPERATORS} operators")]
    TooMany,
    #[error("operator 0x{0} changes but is not in the set")]
    NotInSet(String),
    #[error("operator 0x{address}: update says power {expected}, the set has {actual}")]
    StalePower { address: String, expected: u64, actual: u64 },
    #[error("new operator 0x{0} is already in the set")]
    AlreadyInSet(String),
    #[error("{0} are not sorted by address")]
    Unsorted(&'static str),
    #[error("new operator 0x{0} has no voting power")]
    NoPower(String),
    #[error("new operator 0x{0} has the BLS key (or its negation) of an operator in the set")]
    DuplicateKey(String),
}

/// Computes the update that brings `set` in line with L1 at `l1.block`.
pub fn compute_update(
    base_epoch: Epoch,
    set: &OperatorSet,
    l1: &ChainSnapshot,
    l2: &ChainSnapshot,
) -> Result<VotingPowerUpdate, UpdateError> {
    let mut changes = Vec::new();
    for op in set.operators.iter() {
        let new_power = l1.operators.get(&op.address).map_or(0, |r| r.power);
        if new_power != op.power {
            changes.push(PowerChange {
                address: op.address,
                old_power: op.power,
                new_power,
                l2_power: l2.operators.get(&op.address).map_or(0, |r| r.power),
            });
        }
    }
    // Keys of the next set so far: each operator needs its own (docs/protocol.md, section 6).
    let mut keys: BTreeSet<Vec<u8>> = set
        .operators
        .iter()
        .filter(|o| l1.operators.get(&o.address).is_some_and(|r| r.power > 0))
        .map(|o| key_up_to_sign(o.pubkey.as_ref()))
        .collect();
    let mut new_operators = Vec::new();
    for (address, reg) in &l1.operators {
        if reg.power == 0 || set.operators.iter().any(|o| &o.address == address) {
            continue;
        }
        if !registration_is_valid(reg) {
            // Registered without a usable key: it cannot vote, so it does not join.
            continue;
        }
        if !keys.insert(key_up_to_sign(&reg.pubkey)) {
            // Another address with a key already in the set (the lowest address wins among
            // newcomers): admitting it would let one key's votes count twice.
            continue;
        }
        new_operators.push(NewOperator {
            address: *address,
            pubkey: Vector::try_from(reg.pubkey.to_vec()).map_err(|_| UpdateError::TooMany)?,
            pop: Vector::try_from(reg.pop.to_vec()).map_err(|_| UpdateError::TooMany)?,
            power: reg.power,
            l2_power: l2.operators.get(address).map_or(0, |r| r.power),
        });
    }
    changes.sort_by_key(|c| c.address);
    // `l1.operators` is a BTreeMap: `new_operators` is already sorted by address.
    Ok(VotingPowerUpdate {
        base_epoch,
        l1_block: l1.block,
        l2_block: l2.block,
        changes: List::try_from(changes).map_err(|_| UpdateError::TooMany)?,
        new_operators: List::try_from(new_operators).map_err(|_| UpdateError::TooMany)?,
    })
}

/// A registration carries a BLS key and a proof of possession that verifies.
pub fn registration_is_valid(reg: &RegisteredOperator) -> bool {
    avs_consensus::bls::verify_pop(OperatorIndex::ZERO, &reg.pubkey, &reg.pop).is_ok()
}

/// Applies `update` to `set`: changed powers, removals at zero, new operators appended in
/// address order. Deterministic; refuses an update computed against another set.
pub fn apply_update(
    set: &OperatorSet,
    update: &VotingPowerUpdate,
) -> Result<OperatorSet, UpdateError> {
    strictly_sorted(update.changes.iter().map(|c| c.address), "changes")?;
    strictly_sorted(update.new_operators.iter().map(|n| n.address), "new operators")?;
    let mut by_address: BTreeMap<[u8; 20], &PowerChange> = BTreeMap::new();
    for change in update.changes.iter() {
        by_address.insert(change.address, change);
    }
    let mut operators: Vec<Operator> = Vec::with_capacity(set.operators.len());
    for op in set.operators.iter() {
        match by_address.remove(&op.address) {
            Some(change) => {
                if change.old_power != op.power {
                    return Err(UpdateError::StalePower {
                        address: hex::encode(op.address),
                        expected: change.old_power,
                        actual: op.power,
                    });
                }
                if change.new_power > 0 {
                    operators.push(Operator { power: change.new_power, ..op.clone() });
                }
            }
            None => operators.push(op.clone()),
        }
    }
    if let Some(address) = by_address.keys().next() {
        return Err(UpdateError::NotInSet(hex::encode(address)));
    }
    for new in update.new_operators.iter() {
        if set.operators.iter().any(|o| o.address == new.address) {
            return Err(UpdateError::AlreadyInSet(hex::encode(new.address)));
        }
        if new.power == 0 {
            return Err(UpdateError::NoPower(hex::encode(new.address)));
        }
        let key = key_up_to_sign(new.pubkey.as_ref());
        if operators.iter().any(|o| key_up_to_sign(o.pubkey.as_ref()) == key) {
            return Err(UpdateError::DuplicateKey(hex::encode(new.address)));
        }
        // The key table admission of the new set (state transition) verifies the PoP.
        operators.push(Operator {
            address: new.address,
            pubkey: new.pubkey.clone(),
            pop: new.pop.clone(),
            power: new.power,
        });
    }
    Ok(OperatorSet { operators: List::try_from(operators).map_err(|_| UpdateError::TooMany)? })
}

fn strictly_sorted(
    mut addresses: impl Iterator<Item = [u8; 20]>,
    what: &'static str,
) -> Result<(), UpdateError> {
    let Some(mut previous) = addresses.next() else { return Ok(()) };
    for address in addresses {
        if address <= previous {
            return Err(UpdateError::Unsorted(what));
        }
        previous = address;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{operator, registered, snapshot};
    use avs_consensus::types::{decode, encode};

    fn set(ops: &[(u8, u64)]) -> OperatorSet {
        OperatorSet {
            operators: List::try_from(ops.iter().map(|&(a, p)| operator(a, p)).collect::<Vec<_>>())
                .unwrap(),
        }
    }

    #[test]
    fn computes_increase_decrease_drop_and_join_and_applies_them() {
        let base = set(&[(3, 100), (1, 100), (2, 100)]);
        let l1 = snapshot(10, &[(1, 300), (2, 50), (5, 70)]);
        let l2 = snapshot(20, &[(1, 100), (2, 100), (3, 100)]);
        let update = compute_update(Epoch::ZERO, &base, &l1, &l2).unwrap();
        let addresses: Vec<u8> = update.changes.iter().map(|c| c.address[0]).collect();
        assert_eq!(addresses, vec![1, 2, 3], "sorted by address");
        assert_eq!(
            update
                .changes
                .iter()
                .map(|c| (c.old_power, c.new_power, c.l2_power))
                .collect::<Vec<_>>(),
            vec![(100, 300, 100), (100, 50, 100), (100, 0, 100)]
        );
        assert_eq!(update.new_operators.len(), 1);
        assert_eq!(update.new_operators[0].address[0], 5);
        assert_eq!(update.l1_block.number, 10);
        assert_eq!(update.l2_block.number, 20);

        let next = apply_update(&base, &update).unwrap();
        let powers: Vec<(u8, u64)> =
            next.operators.iter().map(|o| (o.address[0], o.power)).collect();
        assert_eq!(powers, vec![(1, 300), (2, 50), (5, 70)], "3 dropped, 5 appended");
        // Applied to the new set, the same chain data proposes nothing more.
        assert!(compute_update(Epoch::new(1), &next, &l1, &l2).unwrap().is_empty());
    }

    #[test]
    fn a_registration_without_a_valid_pop_does_not_join() {
        let base = set(&[(1, 100)]);
        let mut l1 = snapshot(10, &[(1, 100)]);
        let mut bad = registered(7, 50);
        bad.pop = registered(8, 50).pop;
        l1.operators.insert(bad.address, bad);
        let update = compute_update(Epoch::ZERO, &base, &l1, &snapshot(1, &[])).unwrap();
        assert!(update.is_empty(), "{update:?}");
    }

    /// Review M5/T53: a second address registered with an existing operator's key (and PoP)
    /// is not proposed, and an update that carries it anyway is refused.
    #[test]
    fn a_second_address_with_a_key_in_the_set_does_not_join() {
        let base = set(&[(1, 100), (2, 100)]);
        let mut l1 = snapshot(10, &[(1, 100), (2, 100)]);
        let mut copy = registered(1, 50);
        copy.address = [9; 20];
        l1.operators.insert(copy.address, copy.clone());
        let update = compute_update(Epoch::ZERO, &base, &l1, &snapshot(1, &[])).unwrap();
        assert!(update.is_empty(), "{update:?}");
        // An operator leaving frees its key for a newcomer in the same update.
        let mut leaving = l1.clone();
        leaving.operators.get_mut(&registered(1, 0).address).unwrap().power = 0;
        let update = compute_update(Epoch::ZERO, &base, &leaving, &snapshot(1, &[])).unwrap();
        assert_eq!(update.new_operators.len(), 1);
        // A leader that proposes the duplicate anyway proposes an invalid update.
        let forged = VotingPowerUpdate {
            new_operators: List::try_from(vec![NewOperator {
                address: copy.address,
                pubkey: Vector::try_from(copy.pubkey).unwrap(),
                pop: Vector::try_from(copy.pop).unwrap(),
                power: 50,
                l2_power: 0,
            }])
            .unwrap(),
            ..compute_update(Epoch::ZERO, &base, &l1, &snapshot(1, &[])).unwrap()
        };
        assert_eq!(
            apply_update(&base, &forged),
            Err(UpdateError::DuplicateKey(hex::encode([9u8; 20])))
        );
    }

    #[test]
    fn apply_refuses_updates_computed_against_another_set() {
        let base = set(&[(1, 100), (2, 100)]);
        let update = compute_update(
            Epoch::ZERO,
            &base,
            &snapshot(1, &[(1, 200), (2, 100)]),
            &snapshot(1, &[]),
        )
        .unwrap();
        let other = set(&[(1, 150), (2, 100)]);
        assert!(matches!(apply_update(&other, &update), Err(UpdateError::StalePower { .. })));
        let missing = set(&[(2, 100)]);
        assert!(matches!(apply_update(&missing, &update), Err(UpdateError::NotInSet(_))));
        let mut unsorted = compute_update(
            Epoch::ZERO,
            &base,
            &snapshot(1, &[(1, 200), (2, 300)]),
            &snapshot(1, &[]),
        )
        .unwrap();
        let mut swapped: Vec<PowerChange> = unsorted.changes.iter().cloned().collect();
        swapped.swap(0, 1);
        unsorted.changes = List::try_from(swapped).unwrap();
        assert!(matches!(apply_update(&base, &unsorted), Err(UpdateError::Unsorted(_))));
    }

    #[test]
    fn update_round_trips_through_strict_ssz_and_bad_bytes_are_refused() {
        let base = set(&[(1, 100)]);
        let update = compute_update(
            Epoch::new(3),
            &base,
            &snapshot(9, &[(1, 5), (4, 6)]),
            &snapshot(2, &[]),
        )
        .unwrap();
        let bytes = encode(&update).unwrap();
        assert_eq!(decode::<VotingPowerUpdate>(&bytes).unwrap(), update);
        assert!(decode::<VotingPowerUpdate>(&bytes[..bytes.len() - 1]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode::<VotingPowerUpdate>(&trailing).is_err());
        let mut bad_offset = bytes;
        bad_offset[88] = 0xff;
        assert!(decode::<VotingPowerUpdate>(&bad_offset).is_err());
    }
}
