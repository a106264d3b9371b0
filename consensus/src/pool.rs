//! The aggregation pool: individual votes in, a certificate out as soon as the pooled votes
//! for one `VoteData` hold a quorum of the epoch's power; plus equivocation evidence.
//!
//! Bounded by construction: per (view, operator) the pool keeps at most one NOTARIZE, one
//! NULLIFY and one FINALIZE (the first seen); a second, different vote of the same kind, or a
//! FINALIZE next to a NULLIFY, becomes an `Evidence` record instead of a pool entry. The engine
//! prunes views it no longer needs. The pool only holds verified votes.

use std::collections::BTreeMap;

use crate::bls::{self, Signature};
use crate::operators::KeyTable;
use crate::types::{
    Certificate, Epoch, OperatorIndex, SignedVote, Signers, View, VoteData, VoteKind,
};

/// Two votes by one operator in one view that an honest operator never casts together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub epoch: Epoch,
    pub view: View,
    pub operator_index: OperatorIndex,
    pub first: SignedVote,
    pub second: SignedVote,
}

#[derive(Default)]
struct OperatorVotes {
    notarize: Option<SignedVote>,
    nullify: Option<SignedVote>,
    finalize: Option<SignedVote>,
    /// Evidence already recorded for this (view, operator): one record is enough.
    reported: bool,
}

#[derive(Default)]
struct Entry {
    sigs: BTreeMap<OperatorIndex, Signature>,
    power: u128,
    certified: bool,
}

/// What adding a vote did.
#[derive(Debug, Default)]
pub(crate) struct AddOutcome {
    pub(crate) evidence: Option<Evidence>,
    /// The vote was already in the pool (a re-broadcast).
    pub(crate) duplicate: bool,
}

#[derive(Default)]
pub(crate) struct Pool {
    entries: BTreeMap<VoteData, Entry>,
    by_operator: BTreeMap<(View, OperatorIndex), OperatorVotes>,
}

impl Pool {
    /// Add a verified vote of the table's epoch. `sig` is its decoded signature.
    pub(crate) fn add(
        &mut self,
        table: &KeyTable,
        vote: &SignedVote,
        sig: Signature,
    ) -> AddOutcome {
        let mut out = AddOutcome::default();
        let Some(kind) = vote.data.vote_kind() else { return out };
        let Some(power) = table.power(vote.operator_index) else { return out };
        let slot = self.by_operator.entry((vote.data.view, vote.operator_index)).or_default();
        let (existing, conflicting) = match kind {
            VoteKind::Notarize => (&mut slot.notarize, None),
            VoteKind::Nullify => (&mut slot.nullify, slot.finalize.clone()),
            VoteKind::Finalize => (&mut slot.finalize, slot.nullify.clone()),
        };
        let mut evidence_with = None;
        match existing {
            Some(prev) if prev.data == vote.data => {
                out.duplicate = true;
                return out;
            }
            Some(prev) => evidence_with = Some(prev.clone()),
            None => {
                *existing = Some(vote.clone());
                if let Some(other) = conflicting {
                    evidence_with = Some(other);
                }
            }
        }
        if let Some(first) = evidence_with {
            if !slot.reported {
                slot.reported = true;
                out.evidence = Some(Evidence {
                    epoch: vote.data.epoch,
                    view: vote.data.view,
                    operator_index: vote.operator_index,
                    first,
                    second: vote.clone(),
                });
            }
            // A second vote of the same kind is not pooled (bounds the pool); a FINALIZE next
            // to a NULLIFY is pooled, since each is the operator's first of its kind.
            if matches!(kind, VoteKind::Notarize) || slot_kind_differs(&self.by_operator, vote) {
                return out;
            }
        }
        let entry = self.entries.entry(vote.data).or_default();
        if entry.sigs.insert(vote.operator_index, sig).is_none() {
            entry.power = entry.power.saturating_add(u128::from(power));
        }
        out
    }

    /// True when a quorum is pooled for `data` and no certificate was produced or seen yet.
    pub(crate) fn ready(&self, table: &KeyTable, data: &VoteData) -> bool {
        self.entries.get(data).is_some_and(|e| !e.certified && table.has_quorum(e.power))
    }

    /// Every `VoteData` ready for a certificate.
    pub(crate) fn all_ready(&self, table: &KeyTable) -> Vec<VoteData> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.certified && table.has_quorum(e.power))
            .map(|(d, _)| *d)
            .collect()
    }

    /// Build the certificate for `data` from the pooled signatures (marks it certified).
    pub(crate) fn build(&mut self, table: &KeyTable, data: &VoteData) -> Option<Certificate> {
        let entry = self.entries.get_mut(data)?;
        if !table.has_quorum(entry.power) {
            return None;
        }
        let mut bits = vec![false; table.len()];
        let mut sigs = Vec::with_capacity(entry.sigs.len());
        for (index, sig) in &entry.sigs {
            let slot = usize::try_from(*index).ok().and_then(|i| bits.get_mut(i))?;
            *slot = true;
            sigs.push(*sig);
        }
        let signature = bls::aggregate_signatures(&sigs)?;
        let signers = Signers::try_from(bits.as_slice()).ok()?;
        entry.certified = true;
        Some(Certificate {
            data: *data,
            signers,
            signature: signature.to_bytes().to_vec().try_into().ok()?,
        })
    }

    /// Record that a certificate for `data` exists (received or built elsewhere).
    pub(crate) fn mark_certified(&mut self, data: &VoteData) {
        self.entries.entry(*data).or_default().certified = true;
    }

    /// True when a certificate for `data` was built or seen.
    pub(crate) fn is_certified(&self, data: &VoteData) -> bool {
        self.entries.get(data).is_some_and(|e| e.certified)
    }

    /// Drop everything for views below `view`.
    pub(crate) fn prune_below(&mut self, view: View) {
        self.entries.retain(|d, _| d.view >= view);
        self.by_operator.retain(|(v, _), _| *v >= view);
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.by_operator.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.values().map(|e| e.sigs.len()).sum()
    }
}

/// True when the operator's stored vote of this vote's kind is a different vote (so this one
/// is a same-kind double vote and must not enter the pool).
fn slot_kind_differs(
    by_operator: &BTreeMap<(View, OperatorIndex), OperatorVotes>,
    vote: &SignedVote,
) -> bool {
    let Some(slot) = by_operator.get(&(vote.data.view, vote.operator_index)) else { return false };
    let stored = match vote.data.vote_kind() {
        Some(VoteKind::Notarize) => &slot.notarize,
        Some(VoteKind::Nullify) => &slot.nullify,
        Some(VoteKind::Finalize) => &slot.finalize,
        None => return true,
    };
    stored.as_ref().is_some_and(|s| s.data != vote.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::tests::make_set;
    use crate::signing::vote_signing_root;
    use crate::verify::verify_certificate;

    fn vote(keys: &[crate::bls::SecretKey], i: usize, data: VoteData) -> (SignedVote, Signature) {
        let sig = keys[i].sign(&vote_signing_root(&data, [0; 4]).unwrap());
        (
            SignedVote {
                data,
                operator_index: i as u64,
                signature: sig.to_bytes().to_vec().try_into().unwrap(),
            },
            sig,
        )
    }

    #[test]
    fn certificate_at_quorum_by_power() {
        let (keys, set) = make_set(&[10, 1, 1, 1]);
        let table = KeyTable::new(0, &set, [0; 4]).unwrap();
        let mut pool = Pool::default();
        let data = VoteData::notarize(0, 1, [4; 32]);
        for i in 1..4 {
            let (v, s) = vote(&keys, i, data);
            pool.add(&table, &v, s);
            assert!(!pool.ready(&table, &data), "3 of 13 power is no quorum");
        }
        let (v, s) = vote(&keys, 0, data);
        pool.add(&table, &v, s);
        assert!(pool.ready(&table, &data));
        let cert = pool.build(&table, &data).unwrap();
        assert!(verify_certificate(&table, &cert).is_ok());
        assert!(!pool.ready(&table, &data), "one certificate per VoteData");
        assert!(pool.all_ready(&table).is_empty());
    }

    #[test]
    fn double_votes_become_evidence_and_are_not_pooled() {
        let (keys, set) = make_set(&[1, 1, 1, 1]);
        let table = KeyTable::new(0, &set, [0; 4]).unwrap();
        let mut pool = Pool::default();
        let (a, sa) = vote(&keys, 1, VoteData::notarize(0, 2, [1; 32]));
        let (b, sb) = vote(&keys, 1, VoteData::notarize(0, 2, [2; 32]));
        assert!(pool.add(&table, &a, sa).evidence.is_none());
        assert!(pool.add(&table, &a, sa).duplicate);
        let ev = pool.add(&table, &b, sb).evidence.unwrap();
        assert_eq!((ev.operator_index, ev.view), (1, 2));
        assert_eq!(ev.first, a);
        assert_eq!(ev.second, b);
        assert_eq!(pool.len(), 1);

        let (n, sn) = vote(&keys, 2, VoteData::nullify(0, 3));
        let (f, sf) = vote(&keys, 2, VoteData::finalize(0, 3, [1; 32]));
        assert!(pool.add(&table, &n, sn).evidence.is_none());
        assert!(pool.add(&table, &f, sf).evidence.is_some());
        // Notarize + nullify in one view is allowed in Simplex (a timeout after voting).
        let (n1, sn1) = vote(&keys, 1, VoteData::nullify(0, 2));
        assert!(pool.add(&table, &n1, sn1).evidence.is_none());
        pool.prune_below(3);
        assert_eq!(pool.len(), 2);
    }
}
