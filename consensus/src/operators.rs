//! The operator set of one epoch as the protocol uses it: validated keys, voting power, the
//! strict quorum rule and the leader schedule.
//!
//! A `KeyTable` is built once per epoch from the epoch's `OperatorSet`: every public key is
//! decompressed, subgroup-checked and its proof of possession verified, so certificate checks
//! afterwards are one key aggregation plus one pairing (`bls::fast_aggregate_verify`). All power
//! arithmetic is in `u128` with checked operations: 1024 operators of `u64::MAX` power sum to
//! less than 2^74, and `3 * signed` stays below 2^76.

use sha2::{Digest, Sha256};

use crate::bls::{self, PublicKey};
use crate::error::ConsensusError;
use crate::signing::NetworkDigest;
use crate::types::{
    Epoch, MAX_OPERATORS, OperatorIndex, OperatorSet, Root, Signers, View, root_of,
};

/// Strict BFT quorum: `3 * signed > 2 * total`, in overflow-checked integers. `false` on
/// overflow (impossible for u64 powers summed in u128) and for an empty total.
pub fn is_quorum(signed: u128, total: u128) -> bool {
    match (signed.checked_mul(3), total.checked_mul(2)) {
        (Some(lhs), Some(rhs)) => total > 0 && lhs > rhs,
        _ => false,
    }
}

/// Leader-rotation seed of an epoch: `u64_le(sha256(u64_le(epoch) ‖ hash_tree_root(set))[..8])`.
/// It depends only on data every node holds when the epoch starts.
pub fn epoch_seed(epoch: Epoch, set_root: &Root) -> u64 {
    let digest =
        Sha256::new().chain_update(epoch.get().to_le_bytes()).chain_update(set_root).finalize();
    let mut le = [0u8; 8];
    for (dst, src) in le.iter_mut().zip(digest.iter()) {
        *dst = *src;
    }
    u64::from_le_bytes(le)
}

/// A compressed G1 key with its sign flag cleared: a key and its negation map to the same
/// value (the flags are the top three bits of the first byte; bit 5 is the sign of y).
pub fn key_up_to_sign(pubkey: &[u8]) -> Vec<u8> {
    let mut key = pubkey.to_vec();
    if let Some(first) = key.first_mut() {
        *first &= !0x20;
    }
    key
}

/// Rule of section 6: no two operators share an address or a key, and no key is another's
/// negation. With a shared key anyone could re-index one operator's vote as the other's and
/// count its power twice; with a negated pair the two keys aggregate to infinity.
fn check_unique(set: &OperatorSet) -> Result<(), ConsensusError> {
    let mut addresses = std::collections::HashMap::new();
    let mut keys = std::collections::HashMap::new();
    for (i, op) in set.operators.iter().enumerate() {
        let index = OperatorIndex::at(i);
        if let Some(first) = addresses.insert(op.address, index) {
            return Err(ConsensusError::DuplicateOperator {
                first,
                second: index,
                what: "an address",
            });
        }
        if let Some(first) = keys.insert(key_up_to_sign(op.pubkey.as_ref()), index) {
            return Err(ConsensusError::DuplicateOperator {
                first,
                second: index,
                what: "a BLS key (or its negation)",
            });
        }
    }
    Ok(())
}

/// Validated operator set of one epoch.
#[derive(Debug, Clone)]
pub struct KeyTable {
    epoch: Epoch,
    digest: NetworkDigest,
    set_root: Root,
    set: OperatorSet,
    keys: Vec<PublicKey>,
    /// The sum of every key, and each key's negation: a certificate's signers' key is this sum
    /// minus its (few) non-signers when that is fewer additions than summing the signers.
    all_keys: PublicKey,
    negated: Vec<PublicKey>,
    powers: Vec<u64>,
    total: u128,
    /// Indices with non-zero power, ascending: the leader rotation.
    active: Vec<OperatorIndex>,
    seed: u64,
}

impl KeyTable {
    /// Validate `set` for `epoch`: addresses and keys must be unique (a key also may not be
    /// another's negation), every key must decompress, be in the subgroup, not be infinity,
    /// and carry a valid proof of possession; total power must be non-zero.
    pub fn new(
        epoch: Epoch,
        set: &OperatorSet,
        digest: NetworkDigest,
    ) -> Result<Self, ConsensusError> {
        if set.operators.len() > MAX_OPERATORS {
            return Err(ConsensusError::TooManyOperators(set.operators.len()));
        }
        check_unique(set)?;
        let mut keys = Vec::with_capacity(set.operators.len());
        let mut powers = Vec::with_capacity(set.operators.len());
        let mut active = Vec::new();
        let mut total: u128 = 0;
        for (i, op) in set.operators.iter().enumerate() {
            let index = OperatorIndex::at(i);
            keys.push(bls::verify_pop(index, op.pubkey.as_ref(), op.pop.as_ref())?);
            powers.push(op.power);
            total = total
                .checked_add(u128::from(op.power))
                .ok_or(ConsensusError::Overflow("total power"))?;
            if op.power > 0 {
                active.push(index);
            }
        }
        if total == 0 || active.is_empty() {
            return Err(ConsensusError::EmptyOperatorSet);
        }
        let set_root = root_of(set)?;
        let all_keys = bls::aggregate_public_keys(&keys.iter().collect::<Vec<_>>())
            .ok_or(ConsensusError::EmptyOperatorSet)?;
        let negated = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                key.negate().ok_or_else(|| ConsensusError::BadPublicKey {
                    index: OperatorIndex::at(i),
                    reason: "its negation does not decode".into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            epoch,
            digest,
            set_root,
            set: set.clone(),
            keys,
            all_keys,
            negated,
            powers,
            total,
            active,
            seed: epoch_seed(epoch, &set_root),
        })
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
    pub fn digest(&self) -> NetworkDigest {
        self.digest
    }
    /// `hash_tree_root` of the operator set; identifies the table in `Verified` wrappers.
    pub fn set_root(&self) -> Root {
        self.set_root
    }
    pub fn operator_set(&self) -> &OperatorSet {
        &self.set
    }
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    pub fn total_power(&self) -> u128 {
        self.total
    }
    pub fn power(&self, index: OperatorIndex) -> Option<u64> {
        index.position().and_then(|i| self.powers.get(i)).copied()
    }
    pub fn key(&self, index: OperatorIndex) -> Option<&PublicKey> {
        index.position().and_then(|i| self.keys.get(i))
    }
    /// Index of the operator holding `pubkey`, if any.
    pub fn index_of(&self, pubkey: &[u8; 48]) -> Option<OperatorIndex> {
        self.keys.iter().position(|k| &k.to_bytes() == pubkey).map(OperatorIndex::at)
    }
    /// Quorum by this epoch's total power.
    pub fn has_quorum(&self, signed: u128) -> bool {
        is_quorum(signed, self.total)
    }

    /// `leader(v) = active[(v + seed) mod len(active)]`, computed in u128 so it never wraps.
    pub fn leader(&self, view: View) -> Option<OperatorIndex> {
        let len = u128::try_from(self.active.len()).ok()?;
        let pos = (u128::from(view.get()).checked_add(u128::from(self.seed))?).checked_rem(len)?;
        self.active.get(usize::try_from(pos).ok()?).copied()
    }

    /// Power of the signers in `signers`; the bitlist must have exactly one bit per operator.
    pub fn signed_power(&self, signers: &Signers) -> Result<u128, ConsensusError> {
        if signers.len() != self.keys.len() {
            return Err(ConsensusError::SignersLength {
                expected: self.keys.len(),
                got: signers.len(),
            });
        }
        let mut sum: u128 = 0;
        for (bit, power) in signers.iter().zip(self.powers.iter()) {
            if *bit {
                sum = sum
                    .checked_add(u128::from(*power))
                    .ok_or(ConsensusError::Overflow("signed power"))?;
            }
        }
        Ok(sum)
    }

    /// Keys of the signers, in index order.
    /// The aggregate key of `signers`: the sum of their keys, computed as the sum of the whole
    /// set minus the non-signers when fewer operators are missing than signed (a healthy
    /// network's certificates miss few). `None` when nobody signed (or the sum is infinity).
    pub fn signers_aggregate(
        &self,
        signers: &Signers,
    ) -> Result<Option<PublicKey>, ConsensusError> {
        let keys = self.signer_keys(signers)?;
        let missing = self.keys.len().saturating_sub(keys.len());
        if keys.is_empty() || missing >= keys.len() {
            return Ok(bls::aggregate_public_keys(&keys));
        }
        let negated: Vec<&PublicKey> = signers
            .iter()
            .zip(self.negated.iter())
            .filter(|(bit, _)| !**bit)
            .map(|(_, k)| k)
            .collect();
        Ok(bls::add_public_keys(&self.all_keys, &negated))
    }

    pub fn signer_keys(&self, signers: &Signers) -> Result<Vec<&PublicKey>, ConsensusError> {
        if signers.len() != self.keys.len() {
            return Err(ConsensusError::SignersLength {
                expected: self.keys.len(),
                got: signers.len(),
            });
        }
        Ok(signers.iter().zip(self.keys.iter()).filter(|(bit, _)| **bit).map(|(_, k)| k).collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bls::SecretKey;
    use crate::ids::{Epoch, OperatorIndex, View};
    use crate::types::Operator;

    pub(crate) fn make_set(powers: &[u64]) -> (Vec<SecretKey>, OperatorSet) {
        let keys: Vec<SecretKey> =
            (0..powers.len()).map(|i| SecretKey::from_seed(&[i as u8 + 1; 32]).unwrap()).collect();
        let ops: Vec<Operator> = keys
            .iter()
            .zip(powers)
            .enumerate()
            .map(|(i, (k, p))| Operator {
                address: [i as u8; 20],
                pubkey: k.public_key().to_bytes().to_vec().try_into().unwrap(),
                pop: k.proof_of_possession().to_bytes().to_vec().try_into().unwrap(),
                power: *p,
            })
            .collect();
        (keys, OperatorSet { operators: ops.try_into().unwrap() })
    }

    /// Review M5/T53: a set where two operators share a key (or one holds another's negation,
    /// or they share an address) is inadmissible, before any proof of possession is checked.
    /// The shortcut (whole set minus non-signers) gives exactly the signers' sum, for every
    /// subset of a six-key set: both branches, and the empty and full subsets.
    #[test]
    fn the_signers_aggregate_is_their_sum_by_either_route() {
        let (_, set) = make_set(&[1, 2, 3, 4, 5, 6]);
        let table = KeyTable::new(Epoch::ZERO, &set, [0; 4]).unwrap();
        for mask in 0u32..64 {
            let bits: Vec<bool> = (0..6).map(|i| mask & (1 << i) != 0).collect();
            let signers = Signers::try_from(bits.as_slice()).unwrap();
            let direct = bls::aggregate_public_keys(&table.signer_keys(&signers).unwrap());
            let got = table.signers_aggregate(&signers).unwrap();
            assert_eq!(got.map(|k| k.to_bytes()), direct.map(|k| k.to_bytes()), "mask {mask:06b}");
        }
        let key = table.key(OperatorIndex::ZERO).unwrap();
        assert_eq!(key.negate().unwrap().negate().unwrap(), *key, "negation is an involution");
        assert_ne!(key.negate().unwrap(), *key);
        assert!(
            bls::add_public_keys(key, &[&key.negate().unwrap()]).is_none(),
            "P - P is infinity"
        );
    }

    #[test]
    fn duplicate_keys_negated_keys_and_duplicate_addresses_are_refused() {
        let (_, set) = make_set(&[1, 1, 1]);
        assert!(KeyTable::new(Epoch::ZERO, &set, [0; 4]).is_ok());
        let with = |edit: &dyn Fn(&mut Vec<Operator>)| {
            let mut ops: Vec<Operator> = set.operators.iter().cloned().collect();
            edit(&mut ops);
            KeyTable::new(Epoch::ZERO, &OperatorSet { operators: ops.try_into().unwrap() }, [0; 4])
                .unwrap_err()
        };
        let duplicate_key = with(&|ops| {
            let mut copy = ops[0].clone();
            copy.address = [9; 20];
            ops.push(copy);
        });
        assert_eq!(
            duplicate_key,
            ConsensusError::DuplicateOperator {
                first: OperatorIndex::ZERO,
                second: OperatorIndex::new(3),
                what: "a BLS key (or its negation)"
            }
        );
        let negated = with(&|ops| {
            let mut copy = ops[1].clone();
            copy.address = [9; 20];
            let mut key = copy.pubkey.to_vec();
            key[0] ^= 0x20;
            copy.pubkey = key.try_into().unwrap();
            ops.push(copy);
        });
        assert!(matches!(negated, ConsensusError::DuplicateOperator { first, second, .. }
            if first == OperatorIndex::new(1) && second == OperatorIndex::new(3)));
        let same_address = with(&|ops| ops[2].address = ops[0].address);
        assert_eq!(
            same_address,
            ConsensusError::DuplicateOperator {
                first: OperatorIndex::ZERO,
                second: OperatorIndex::new(2),
                what: "an address"
            }
        );
    }

    #[test]
    fn quorum_is_strict_two_thirds() {
        assert!(!is_quorum(2, 3));
        assert!(is_quorum(3, 3));
        assert!(!is_quorum(6, 9));
        assert!(is_quorum(7, 9));
        assert!(!is_quorum(0, 0));
        assert!(is_quorum(3, 4));
        assert!(!is_quorum(2, 4));
        // Large values: no overflow, exact boundary.
        let total = u128::from(u64::MAX) * 1024;
        assert!(!is_quorum(total * 2 / 3, total));
        assert!(is_quorum(total * 2 / 3 + 1, total));
        assert!(!is_quorum(u128::MAX, u128::MAX));
    }

    #[test]
    fn table_checks_pop_and_power() {
        let (_, set) = make_set(&[1, 2, 0, 3]);
        let t = KeyTable::new(Epoch::ZERO, &set, [0; 4]).unwrap();
        assert_eq!(t.total_power(), 6);
        assert_eq!(t.power(OperatorIndex::new(3)), Some(3));
        assert_eq!(t.power(OperatorIndex::new(4)), None);
        // Zero-power operator never leads.
        for v in 0..50 {
            assert_ne!(t.leader(View::new(v)), Some(OperatorIndex::new(2)));
            assert!(t.leader(View::new(v)).is_some());
        }
        let mut bad = set.clone();
        bad.operators[1].pop = set.operators[0].pop.clone();
        assert_eq!(
            KeyTable::new(Epoch::ZERO, &bad, [0; 4]).unwrap_err(),
            ConsensusError::BadProofOfPossession { index: OperatorIndex::new(1) }
        );
        let (_, zero) = make_set(&[0, 0]);
        assert_eq!(
            KeyTable::new(Epoch::ZERO, &zero, [0; 4]).unwrap_err(),
            ConsensusError::EmptyOperatorSet
        );
    }

    #[test]
    fn leader_rotates_over_active() {
        let (_, set) = make_set(&[1, 1, 1, 1]);
        let t = KeyTable::new(Epoch::ZERO, &set, [0; 4]).unwrap();
        let leaders: Vec<_> = (0..4).map(|v| t.leader(View::new(v)).unwrap().get()).collect();
        let mut sorted = leaders.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
        assert_eq!(t.leader(View::new(u64::MAX)), t.leader(View::new(u64::MAX))); // no overflow
    }

    #[test]
    fn signed_power_requires_exact_length() {
        let (_, set) = make_set(&[5, 5, 5]);
        let t = KeyTable::new(Epoch::ZERO, &set, [0; 4]).unwrap();
        let mut s = Signers::try_from(&[true, false, true][..]).unwrap();
        assert_eq!(t.signed_power(&s).unwrap(), 10);
        s.push(true);
        assert!(t.signed_power(&s).is_err());
    }
}
