//! The vote pool (docs/protocol.md, section 9): votes in, certificates out, with lazy
//! signature checks and equivocation evidence.
//!
//! Per `VoteData` the pool keeps the **verified** signatures and the **pending** ones (decoded,
//! from a member, not yet checked). A pending set is checked in one pairing when it could
//! complete a quorum (or once it has waited long enough): aggregate the pending signatures and
//! their keys, verify once, and on failure bisect so each bad signature costs O(log n) checks
//! while the good ones survive. Only verified votes count towards a certificate, are served to
//! peers and become evidence.
//!
//! Bounded by construction: the engine prunes views it no longer needs; per (view, operator)
//! at most one verified vote of each kind is kept (a second, different one becomes evidence
//! instead); per (`VoteData`, operator) at most [`MAX_PENDING_PER_OPERATOR`] pending
//! candidates are kept, and a further candidate is checked alone at once, so garbage sent in
//! an operator's name cannot keep its real vote out. Once an operator's equivocation in a view
//! is on record (its first vote pooled, a second one kept as evidence), any further vote of
//! that kind with other data is ignored without a pairing, so a byzantine operator cannot make
//! every node verify and forward a thousand signed variants (review T9).

use std::collections::{BTreeMap, BTreeSet};

use crate::bls::{self, PublicKey, Signature};
use crate::operators::KeyTable;
use crate::signing::vote_signing_root;
use crate::types::{
    Certificate, Epoch, OperatorIndex, SignedVote, Signers, View, VoteData, VoteKind,
};

/// Pending (unchecked) candidates kept per (`VoteData`, operator).
pub const MAX_PENDING_PER_OPERATOR: usize = 4;

/// Two verified votes by one operator in one view that an honest operator never casts together.
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

impl OperatorVotes {
    fn of_kind(&self, kind: VoteKind) -> Option<&SignedVote> {
        match kind {
            VoteKind::Notarize => self.notarize.as_ref(),
            VoteKind::Nullify => self.nullify.as_ref(),
            VoteKind::Finalize => self.finalize.as_ref(),
        }
    }
}

#[derive(Clone)]
struct Pending {
    vote: SignedVote,
    sig: Signature,
    since_ms: u64,
}

#[derive(Default)]
struct Entry {
    verified: BTreeMap<OperatorIndex, (SignedVote, Signature)>,
    verified_power: u128,
    pending: Vec<Pending>,
    /// A certificate for this `VoteData` is held (built here or received).
    certified: bool,
}

/// What the pool did with a pending vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Not needed: already pooled, or the `VoteData` is already certified.
    Ignored,
    /// Kept, to be checked with the others of its `VoteData`.
    Pending,
    /// Kept, and its `VoteData` could now reach a quorum: check it now.
    CheckNow,
    /// Too many candidates for this operator: check this one alone, now.
    CheckAlone,
}

/// The result of checking pending signatures.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    pub(crate) valid: Vec<SignedVote>,
    pub(crate) invalid: Vec<SignedVote>,
    pub(crate) evidence: Vec<Evidence>,
    /// Dropped unchecked: their operator's equivocation in the view is already on record.
    pub(crate) superseded: Vec<SignedVote>,
    /// Pairing checks spent (for metrics and tests).
    pub(crate) pairings: u64,
}

#[derive(Default)]
pub(crate) struct Pool {
    entries: BTreeMap<VoteData, Entry>,
    by_operator: BTreeMap<(View, OperatorIndex), OperatorVotes>,
}

impl Pool {
    /// Offer an unchecked vote (well formed, of the table's epoch, from a member; the caller
    /// checked that much). `sig` is its decoded signature.
    pub(crate) fn offer(
        &mut self,
        table: &KeyTable,
        vote: &SignedVote,
        sig: Signature,
        now_ms: u64,
    ) -> Admission {
        if self.superseded(vote) {
            return Admission::Ignored;
        }
        let entry = self.entries.entry(vote.data).or_default();
        if entry.certified || entry.verified.contains_key(&vote.operator_index) {
            return Admission::Ignored;
        }
        let mine = entry.pending.iter().filter(|p| p.vote.operator_index == vote.operator_index);
        let mut count = 0usize;
        for p in mine {
            if p.vote.signature == vote.signature {
                return Admission::Ignored;
            }
            count = count.saturating_add(1);
        }
        if count >= MAX_PENDING_PER_OPERATOR {
            return Admission::CheckAlone;
        }
        entry.pending.push(Pending { vote: vote.clone(), sig, since_ms: now_ms });
        if table.has_quorum(entry.verified_power.saturating_add(pending_power(table, entry))) {
            Admission::CheckNow
        } else {
            Admission::Pending
        }
    }

    /// Check every pending signature of `data` (aggregate, bisect on failure) and pool the
    /// valid ones.
    pub(crate) fn check(&mut self, table: &KeyTable, data: &VoteData) -> Checked {
        let mut out = Checked::default();
        let Some(entry) = self.entries.get_mut(data) else { return out };
        let (pending, superseded): (Vec<_>, Vec<_>) =
            std::mem::take(&mut entry.pending).into_iter().partition(|p| !self.superseded(&p.vote));
        out.superseded.extend(superseded.into_iter().map(|p| p.vote));
        if pending.is_empty() {
            return out;
        }
        let Ok(msg) = vote_signing_root(data, table.digest()) else {
            out.invalid.extend(pending.into_iter().map(|p| p.vote));
            return out;
        };
        self.verify_and_pool(table, &msg, &pending, out)
    }

    /// True when `vote`'s operator already equivocated in its view (evidence on record) and
    /// `vote` is yet another variant of a kind already pooled: nothing to gain from checking it.
    fn superseded(&self, vote: &SignedVote) -> bool {
        let Some(kind) = vote.data.vote_kind() else { return false };
        self.by_operator.get(&(vote.data.view, vote.operator_index)).is_some_and(|slot| {
            slot.reported && slot.of_kind(kind).is_some_and(|prev| prev.data != vote.data)
        })
    }

    /// Check one candidate alone (see [`Admission::CheckAlone`]); pooled if valid.
    pub(crate) fn check_alone(
        &mut self,
        table: &KeyTable,
        vote: &SignedVote,
        sig: Signature,
    ) -> Checked {
        let mut out = Checked::default();
        let Ok(msg) = vote_signing_root(&vote.data, table.digest()) else {
            out.invalid.push(vote.clone());
            return out;
        };
        let candidate = [Pending { vote: vote.clone(), sig, since_ms: 0 }];
        self.verify_and_pool(table, &msg, &candidate, out)
    }

    /// Checks `candidates` (all signing `msg`) in aggregate, bisecting on failure, and pools
    /// the valid ones; the invalid ones and any evidence go into `out`.
    fn verify_and_pool(
        &mut self,
        table: &KeyTable,
        msg: &[u8; 32],
        candidates: &[Pending],
        mut out: Checked,
    ) -> Checked {
        let mut valid = Vec::new();
        check_group(table, msg, candidates, &mut valid, &mut out);
        for p in valid {
            if let Some(ev) = self.add_verified(table, &p.vote, p.sig) {
                out.evidence.push(ev);
            }
            out.valid.push(p.vote);
        }
        out
    }

    /// `VoteData`s with a pending signature older than `max_wait_ms`.
    pub(crate) fn overdue(&self, now_ms: u64, max_wait_ms: u64) -> Vec<VoteData> {
        self.entries
            .iter()
            .filter(|(_, e)| {
                e.pending.iter().any(|p| now_ms >= p.since_ms.saturating_add(max_wait_ms))
            })
            .map(|(d, _)| *d)
            .collect()
    }

    /// When the oldest pending signature becomes overdue.
    pub(crate) fn next_overdue(&self, max_wait_ms: u64) -> Option<u64> {
        self.entries
            .values()
            .flat_map(|e| e.pending.iter())
            .map(|p| p.since_ms.saturating_add(max_wait_ms))
            .min()
    }

    /// Add a vote whose signature is known to be valid (own votes, checked votes). Returns
    /// evidence if it contradicts a verified vote of the same operator in the same view.
    pub(crate) fn add_verified(
        &mut self,
        table: &KeyTable,
        vote: &SignedVote,
        sig: Signature,
    ) -> Option<Evidence> {
        let kind = vote.data.vote_kind()?;
        let power = table.power(vote.operator_index)?;
        let slot = self.by_operator.entry((vote.data.view, vote.operator_index)).or_default();
        let (existing, conflicting) = match kind {
            VoteKind::Notarize => (&mut slot.notarize, None),
            VoteKind::Nullify => (&mut slot.nullify, slot.finalize.clone()),
            VoteKind::Finalize => (&mut slot.finalize, slot.nullify.clone()),
        };
        let mut evidence_with = None;
        let mut pool_it = true;
        match existing {
            Some(prev) if prev.data == vote.data => {}
            Some(prev) => {
                // A second, different vote of the same kind: evidence, and it does not count.
                evidence_with = Some(prev.clone());
                pool_it = false;
            }
            None => {
                *existing = Some(vote.clone());
                // FINALIZE next to NULLIFY: both are the operator's first of their kind, both
                // count; the pair is evidence.
                evidence_with = conflicting;
            }
        }
        let mut evidence = None;
        if let Some(first) = evidence_with
            && !slot.reported
        {
            slot.reported = true;
            evidence = Some(Evidence {
                epoch: vote.data.epoch,
                view: vote.data.view,
                operator_index: vote.operator_index,
                first,
                second: vote.clone(),
            });
        }
        if pool_it {
            let entry = self.entries.entry(vote.data).or_default();
            if let std::collections::btree_map::Entry::Vacant(slot) =
                entry.verified.entry(vote.operator_index)
            {
                slot.insert((vote.clone(), sig));
                entry.verified_power = entry.verified_power.saturating_add(u128::from(power));
            }
            // A pending copy of a vote now verified is no longer needed.
            entry.pending.retain(|p| p.vote.operator_index != vote.operator_index);
        }
        evidence
    }

    /// True when the verified votes for `data` hold a quorum and no certificate is held yet.
    pub(crate) fn ready(&self, table: &KeyTable, data: &VoteData) -> bool {
        self.entries.get(data).is_some_and(|e| !e.certified && table.has_quorum(e.verified_power))
    }

    /// Build the certificate for `data` from the verified signatures (marks it certified).
    pub(crate) fn build(&mut self, table: &KeyTable, data: &VoteData) -> Option<Certificate> {
        let entry = self.entries.get_mut(data)?;
        if entry.certified || !table.has_quorum(entry.verified_power) {
            return None;
        }
        let mut bits = vec![false; table.len()];
        let mut sigs = Vec::with_capacity(entry.verified.len());
        for (index, (_, sig)) in &entry.verified {
            let slot = index.position().and_then(|i| bits.get_mut(i))?;
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

    /// A certificate for `data` is held: stop building it and drop its pending votes, which
    /// are returned (they need no check any more).
    pub(crate) fn mark_certified(&mut self, data: &VoteData) -> Vec<SignedVote> {
        let entry = self.entries.entry(*data).or_default();
        entry.certified = true;
        std::mem::take(&mut entry.pending).into_iter().map(|p| p.vote).collect()
    }

    /// Verified votes of one view, any kind (what a `votes` request is answered with).
    pub(crate) fn verified_votes_of(&self, view: View) -> Vec<SignedVote> {
        self.entries
            .iter()
            .filter(|(d, _)| d.view == view)
            .flat_map(|(_, e)| e.verified.values().map(|(v, _)| v.clone()))
            .collect()
    }

    /// Drop everything for views below `view`; returns the pending votes dropped unchecked.
    pub(crate) fn prune_below(&mut self, view: View) -> Vec<SignedVote> {
        let mut dropped = Vec::new();
        self.entries.retain(|d, e| {
            let keep = d.view >= view;
            if !keep {
                dropped.extend(e.pending.drain(..).map(|p| p.vote));
            }
            keep
        });
        self.by_operator.retain(|(v, _), _| *v >= view);
        dropped
    }

    /// Drop everything (epoch switch); returns the pending votes dropped unchecked.
    pub(crate) fn clear(&mut self) -> Vec<SignedVote> {
        let dropped =
            self.entries.values_mut().flat_map(|e| e.pending.drain(..).map(|p| p.vote)).collect();
        self.entries.clear();
        self.by_operator.clear();
        dropped
    }

    #[cfg(test)]
    pub(crate) fn verified_len(&self) -> usize {
        self.entries.values().map(|e| e.verified.len()).sum()
    }

    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.entries.values().map(|e| e.pending.len()).sum()
    }
}

/// Power of the distinct operators among `entry`'s pending votes not already verified.
fn pending_power(table: &KeyTable, entry: &Entry) -> u128 {
    let ops: BTreeSet<OperatorIndex> = entry
        .pending
        .iter()
        .map(|p| p.vote.operator_index)
        .filter(|i| !entry.verified.contains_key(i))
        .collect();
    ops.into_iter().filter_map(|i| table.power(i)).map(u128::from).sum()
}

/// Checks `items` (all over `msg`) with one aggregate pairing; on failure splits in halves.
/// Valid items go to `valid`, invalid ones to `out.invalid`.
fn check_group(
    table: &KeyTable,
    msg: &[u8; 32],
    items: &[Pending],
    valid: &mut Vec<Pending>,
    out: &mut Checked,
) {
    if items.is_empty() {
        return;
    }
    out.pairings = out.pairings.saturating_add(1);
    let keys: Option<Vec<&PublicKey>> =
        items.iter().map(|p| table.key(p.vote.operator_index)).collect();
    let sigs: Vec<Signature> = items.iter().map(|p| p.sig).collect();
    let ok = match (keys, bls::aggregate_signatures(&sigs)) {
        (Some(keys), Some(agg)) => bls::fast_aggregate_verify(&keys, msg, &agg),
        _ => false,
    };
    if ok {
        valid.extend(items.iter().cloned());
        return;
    }
    if let [single] = items {
        out.invalid.push(single.vote.clone());
        return;
    }
    let (left, right) = items.split_at(items.len() / 2);
    check_group(table, msg, left, valid, out);
    check_group(table, msg, right, valid, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, OperatorIndex, View};
    use crate::operators::tests::make_set;
    use crate::verify::verify_certificate;

    fn vote(keys: &[crate::bls::SecretKey], i: usize, data: VoteData) -> (SignedVote, Signature) {
        let sig = keys[i].sign(&vote_signing_root(&data, [0; 4]).unwrap());
        (
            SignedVote {
                data,
                operator_index: OperatorIndex::at(i),
                signature: sig.to_bytes().to_vec().try_into().unwrap(),
            },
            sig,
        )
    }

    fn garbage(
        keys: &[crate::bls::SecretKey],
        i: usize,
        data: VoteData,
    ) -> (SignedVote, Signature) {
        // A valid curve point, but the signature of another message.
        let sig = keys[i].sign(&[0xee; 32]);
        (
            SignedVote {
                data,
                operator_index: OperatorIndex::at(i),
                signature: sig.to_bytes().to_vec().try_into().unwrap(),
            },
            sig,
        )
    }

    #[test]
    fn certificate_at_quorum_by_power() {
        let (keys, set) = make_set(&[10, 1, 1, 1]);
        let table = KeyTable::new(Epoch::ZERO, &set, [0; 4]).unwrap();
        let mut pool = Pool::default();
        let data = VoteData::notarize(Epoch::ZERO, View::new(1), [4; 32]);
        for i in 1..4 {
            let (v, s) = vote(&keys, i, data);
            pool.add_verified(&table, &v, s);
            assert!(!pool.ready(&table, &data), "3 of 13 power is no quorum");
        }
        let (v, s) = vote(&keys, 0, data);
        pool.add_verified(&table, &v, s);
        assert!(pool.ready(&table, &data));
        let cert = pool.build(&table, &data).unwrap();
        assert!(verify_certificate(&table, &cert).is_ok());
        assert!(!pool.ready(&table, &data), "one certificate per VoteData");
    }

    #[test]
    fn pending_votes_are_checked_once_a_quorum_could_form() {
        let (keys, set) = make_set(&[1, 1, 1, 1]);
        let table = KeyTable::new(Epoch::ZERO, &set, [0; 4]).unwrap();
        let mut pool = Pool::default();
        let data = VoteData::nullify(Epoch::ZERO, View::new(3));
        let (a, sa) = vote(&keys, 0, data);
        let (b, sb) = vote(&keys, 1, data);
        let (c, sc) = vote(&keys, 2, data);
        assert_eq!(pool.offer(&table, &a, sa, 0), Admission::Pending);
        assert_eq!(pool.offer(&table, &a, sa, 0), Admission::Ignored, "same bytes twice");
        assert_eq!(pool.offer(&table, &b, sb, 0), Admission::Pending);
        assert_eq!(pool.offer(&table, &c, sc, 0), Admission::CheckNow);
        let checked = pool.check(&table, &data);
        assert_eq!((checked.valid.len(), checked.invalid.len(), checked.pairings), (3, 0, 1));
        assert!(pool.ready(&table, &data));
        assert_eq!(pool.pending_len(), 0);
    }

    #[test]
    fn bisection_keeps_good_votes_and_names_the_bad_one() {
        let (keys, set) = make_set(&[1; 8]);
        let table = KeyTable::new(Epoch::ZERO, &set, [0; 4]).unwrap();
        let mut pool = Pool::default();
        let data = VoteData::notarize(Epoch::ZERO, View::new(2), [7; 32]);
        for i in 0..8 {
            let (v, s) = if i == 5 { garbage(&keys, i, data) } else { vote(&keys, i, data) };
            pool.offer(&table, &v, s, 0);
        }
        let checked = pool.check(&table, &data);
        assert_eq!(checked.valid.len(), 7);
        assert_eq!(checked.invalid.len(), 1);
        assert_eq!(checked.invalid[0].operator_index, OperatorIndex::new(5));
        // 1 (all) + 2 (halves) + 2 (quarters of the bad half) + 2 (pair) = 7 < 8 single checks.
        assert!(checked.pairings <= 7, "{} pairings", checked.pairings);
        assert!(pool.ready(&table, &data), "7 of 8 is a quorum");
    }

    #[test]
    fn garbage_in_an_operators_name_cannot_keep_its_vote_out() {
        let (keys, set) = make_set(&[1, 1, 1, 1]);
        let table = KeyTable::new(Epoch::ZERO, &set, [0; 4]).unwrap();
        let mut pool = Pool::default();
        let data = VoteData::nullify(Epoch::ZERO, View::new(1));
        for n in 0..MAX_PENDING_PER_OPERATOR {
            let sig = keys[0].sign(&[n as u8; 32]);
            let v = SignedVote {
                data,
                operator_index: OperatorIndex::ZERO,
                signature: sig.to_bytes().to_vec().try_into().unwrap(),
            };
            assert_eq!(pool.offer(&table, &v, sig, 0), Admission::Pending);
        }
        let (real, sig) = vote(&keys, 0, data);
        assert_eq!(pool.offer(&table, &real, sig, 0), Admission::CheckAlone);
        let checked = pool.check_alone(&table, &real, sig);
        assert_eq!(checked.valid, vec![real.clone()]);
        // The garbage is still pending, and is dropped unchecked: the operator is verified.
        assert_eq!(pool.pending_len(), 0);
        assert_eq!(pool.verified_votes_of(View::new(1)), vec![real]);
    }

    #[test]
    fn votes_of_a_certified_vote_data_are_not_checked() {
        let (keys, set) = make_set(&[1, 1, 1, 1]);
        let table = KeyTable::new(Epoch::ZERO, &set, [0; 4]).unwrap();
        let mut pool = Pool::default();
        let data = VoteData::finalize(Epoch::ZERO, View::new(4), [1; 32]);
        let (a, sa) = vote(&keys, 0, data);
        assert_eq!(pool.offer(&table, &a, sa, 0), Admission::Pending);
        assert_eq!(pool.mark_certified(&data), vec![a.clone()]);
        let (b, sb) = vote(&keys, 1, data);
        assert_eq!(pool.offer(&table, &b, sb, 0), Admission::Ignored);
    }

    #[test]
    fn overdue_pending_votes_are_found() {
        let (keys, set) = make_set(&[1, 1, 1, 1]);
        let table = KeyTable::new(Epoch::ZERO, &set, [0; 4]).unwrap();
        let mut pool = Pool::default();
        let data = VoteData::nullify(Epoch::ZERO, View::new(9));
        let (a, sa) = vote(&keys, 2, data);
        pool.offer(&table, &a, sa, 1_000);
        assert_eq!(pool.next_overdue(200), Some(1_200));
        assert!(pool.overdue(1_199, 200).is_empty());
        assert_eq!(pool.overdue(1_200, 200), vec![data]);
        assert_eq!(pool.prune_below(View::new(10)), vec![a]);
        assert_eq!(pool.next_overdue(200), None);
    }

    #[test]
    fn double_votes_become_evidence_and_do_not_count() {
        let (keys, set) = make_set(&[1, 1, 1, 1]);
        let table = KeyTable::new(Epoch::ZERO, &set, [0; 4]).unwrap();
        let mut pool = Pool::default();
        let (a, sa) = vote(&keys, 1, VoteData::notarize(Epoch::ZERO, View::new(2), [1; 32]));
        let (b, sb) = vote(&keys, 1, VoteData::notarize(Epoch::ZERO, View::new(2), [2; 32]));
        assert!(pool.add_verified(&table, &a, sa).is_none());
        assert!(pool.add_verified(&table, &a, sa).is_none());
        let ev = pool.add_verified(&table, &b, sb).unwrap();
        assert_eq!((ev.operator_index, ev.view), (OperatorIndex::new(1), View::new(2)));
        assert_eq!(ev.first, a);
        assert_eq!(ev.second, b);
        assert_eq!(pool.verified_len(), 1);

        let (n, sn) = vote(&keys, 2, VoteData::nullify(Epoch::ZERO, View::new(3)));
        let (f, sf) = vote(&keys, 2, VoteData::finalize(Epoch::ZERO, View::new(3), [1; 32]));
        assert!(pool.add_verified(&table, &n, sn).is_none());
        assert!(pool.add_verified(&table, &f, sf).is_some());
        // Notarize + nullify in one view is allowed in Simplex (a timeout after voting).
        let (n1, sn1) = vote(&keys, 1, VoteData::nullify(Epoch::ZERO, View::new(2)));
        assert!(pool.add_verified(&table, &n1, sn1).is_none());
        pool.prune_below(View::new(3));
        assert_eq!(pool.verified_len(), 2);
    }

    /// Review T9: a byzantine operator signs 1000 different NOTARIZE votes for one view. Two
    /// are checked (the first counts, the second is the evidence); the rest are dropped
    /// without a pairing, both those already pending and those that arrive later.
    #[test]
    fn an_equivocating_operator_costs_two_pairings_not_a_thousand() {
        let (keys, set) = make_set(&[1, 1, 1, 1]);
        let table = KeyTable::new(Epoch::ZERO, &set, [0; 4]).unwrap();
        let mut pool = Pool::default();
        let variant = |n: u16| {
            let mut root = [1u8; 32];
            root[..2].copy_from_slice(&n.to_be_bytes());
            vote(&keys, 3, VoteData::notarize(Epoch::ZERO, View::new(5), root))
        };
        let data: Vec<VoteData> = (0..1000u16)
            .map(|n| {
                let (v, s) = variant(n);
                assert_eq!(pool.offer(&table, &v, s, 0), Admission::Pending);
                v.data
            })
            .collect();
        let (mut valid, mut evidence, mut superseded, mut pairings) = (0, 0, 0, 0);
        for d in &data {
            let checked = pool.check(&table, d);
            valid += checked.valid.len();
            evidence += checked.evidence.len();
            superseded += checked.superseded.len();
            pairings += checked.pairings;
        }
        assert_eq!((valid, evidence, superseded, pairings), (2, 1, 998, 2));
        let (late, sig) = variant(1000);
        assert_eq!(pool.offer(&table, &late, sig, 0), Admission::Ignored);
        assert_eq!(pool.pending_len(), 0);
        // Its other kinds, and other operators, are untouched.
        let (n, sn) = vote(&keys, 3, VoteData::nullify(Epoch::ZERO, View::new(5)));
        assert_eq!(pool.offer(&table, &n, sn, 0), Admission::Pending);
        let (other, so) = vote(&keys, 2, VoteData::notarize(Epoch::ZERO, View::new(5), [9; 32]));
        assert_eq!(pool.offer(&table, &other, so, 0), Admission::Pending);
    }
}
