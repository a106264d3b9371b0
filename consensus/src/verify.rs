//! Pure signature verification, kept apart from state mutation.
//!
//! The node runs these on a worker thread against an `Arc<KeyTable>` snapshot and feeds the
//! engine `Verified<T>` values; the engine accepts raw values too and then runs the same
//! functions itself. A `Verified<T>` can only be built here, and it remembers which key table
//! (epoch and operator-set root) checked it, so the engine never trusts a check made against
//! another epoch's keys.

use crate::bls::{self, Signature};
use crate::error::ConsensusError;
use crate::operators::KeyTable;
use crate::signing::{proposal_signing_root, vote_signing_root};
use crate::types::{Certificate, Epoch, Root, SignedProposal, SignedVote};

/// A message whose signature (and, for certificates, quorum) was checked against a key table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T> {
    inner: T,
    epoch: Epoch,
    set_root: Root,
}

impl<T> Verified<T> {
    fn new(inner: T, table: &KeyTable) -> Self {
        Self { inner, epoch: table.epoch(), set_root: table.set_root() }
    }
    pub fn inner(&self) -> &T {
        &self.inner
    }
    pub fn into_inner(self) -> T {
        self.inner
    }
    /// Epoch of the key table that checked the message.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
    /// Operator-set root of the key table that checked the message.
    pub fn set_root(&self) -> Root {
        self.set_root
    }
    /// True when this was checked by `table`.
    pub fn checked_by(&self, table: &KeyTable) -> bool {
        self.epoch == table.epoch() && self.set_root == table.set_root()
    }
}

/// A message handed to the engine: either raw (the engine verifies it) or pre-verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<T> {
    Raw(T),
    Verified(Verified<T>),
}

impl<T> Incoming<T> {
    pub fn message(&self) -> &T {
        match self {
            Self::Raw(m) => m,
            Self::Verified(v) => v.inner(),
        }
    }
}

impl<T> From<Verified<T>> for Incoming<T> {
    fn from(v: Verified<T>) -> Self {
        Self::Verified(v)
    }
}

fn check_epoch(table: &KeyTable, epoch: Epoch) -> Result<(), ConsensusError> {
    if epoch == table.epoch() {
        Ok(())
    } else {
        Err(ConsensusError::WrongEpoch { expected: table.epoch(), got: epoch })
    }
}

/// Verify a single vote: well-formed data, epoch of `table`, member, valid signature.
pub fn verify_vote(
    table: &KeyTable,
    vote: &SignedVote,
) -> Result<Verified<SignedVote>, ConsensusError> {
    check_vote_shape(table, vote)?;
    let key = table
        .key(vote.operator_index)
        .ok_or(ConsensusError::UnknownOperator(vote.operator_index))?;
    let sig = Signature::from_bytes(vote.signature.as_ref())?;
    let msg = vote_signing_root(&vote.data, table.digest())?;
    if bls::verify(key, &msg, &sig) {
        Ok(Verified::new(vote.clone(), table))
    } else {
        Err(ConsensusError::BadSignature)
    }
}

fn check_vote_shape(table: &KeyTable, vote: &SignedVote) -> Result<(), ConsensusError> {
    if !vote.data.is_well_formed() {
        return Err(ConsensusError::MalformedVote);
    }
    check_epoch(table, vote.data.epoch)?;
    if table.key(vote.operator_index).is_none() {
        return Err(ConsensusError::UnknownOperator(vote.operator_index));
    }
    Ok(())
}

/// Verify many votes of one epoch with one randomized multi-pairing (`seed` weights the
/// terms; pass fresh randomness). Falls back to per-vote checks when the batch fails, so each
/// result is exact.
pub fn verify_votes_batch(
    table: &KeyTable,
    votes: &[SignedVote],
    seed: &[u8; 32],
) -> Vec<Result<Verified<SignedVote>, ConsensusError>> {
    let mut items = Vec::with_capacity(votes.len());
    let mut shape_ok = true;
    for vote in votes {
        let parsed = check_vote_shape(table, vote).and_then(|_| {
            let key = *table
                .key(vote.operator_index)
                .ok_or(ConsensusError::UnknownOperator(vote.operator_index))?;
            let sig = Signature::from_bytes(vote.signature.as_ref())?;
            Ok((key, vote_signing_root(&vote.data, table.digest())?, sig))
        });
        match parsed {
            Ok(item) => items.push(item),
            Err(_) => shape_ok = false,
        }
    }
    if shape_ok && !items.is_empty() && bls::batch_verify(&items, seed) {
        return votes.iter().map(|v| Ok(Verified::new(v.clone(), table))).collect();
    }
    votes.iter().map(|v| verify_vote(table, v)).collect()
}

/// Verify a certificate: epoch, well-formed data, signers bitlist of the set's length, quorum
/// of power, and one pairing check against the signers' aggregate key (the table's whole-set
/// aggregate minus the non-signers when they are fewer: [`KeyTable::signers_aggregate`]).
pub fn verify_certificate(
    table: &KeyTable,
    cert: &Certificate,
) -> Result<Verified<Certificate>, ConsensusError> {
    if !cert.data.is_well_formed() {
        return Err(ConsensusError::MalformedVote);
    }
    check_epoch(table, cert.data.epoch)?;
    let signed = table.signed_power(&cert.signers)?;
    if !table.has_quorum(signed) {
        return Err(ConsensusError::NoQuorum { signed, total: table.total_power() });
    }
    let aggregate = table.signers_aggregate(&cert.signers)?.ok_or(ConsensusError::BadSignature)?;
    let sig = Signature::from_bytes(cert.signature.as_ref())?;
    let msg = vote_signing_root(&cert.data, table.digest())?;
    if bls::verify_aggregated(&aggregate, &msg, &sig) {
        Ok(Verified::new(cert.clone(), table))
    } else {
        Err(ConsensusError::BadSignature)
    }
}

/// Verify a proposal's signature by `leader(epoch, view)`. Justification certificates are
/// checked separately (they may belong to the previous epoch).
pub fn verify_proposal(
    table: &KeyTable,
    proposal: &SignedProposal,
) -> Result<Verified<SignedProposal>, ConsensusError> {
    check_epoch(table, proposal.message.epoch)?;
    let leader = table.leader(proposal.message.view).ok_or(ConsensusError::EmptyOperatorSet)?;
    let key = table.key(leader).ok_or(ConsensusError::UnknownOperator(leader))?;
    let sig = Signature::from_bytes(proposal.signature.as_ref())?;
    let msg = proposal_signing_root(&proposal.message, table.digest())?;
    if bls::verify(key, &msg, &sig) {
        Ok(Verified::new(proposal.clone(), table))
    } else {
        Err(ConsensusError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, OperatorIndex, View};
    use crate::operators::tests::make_set;
    use crate::types::{Proposal, VoteData};

    fn sign_vote(
        keys: &[crate::bls::SecretKey],
        i: usize,
        data: VoteData,
        digest: [u8; 4],
    ) -> SignedVote {
        let root = vote_signing_root(&data, digest).unwrap();
        SignedVote {
            data,
            operator_index: OperatorIndex::at(i),
            signature: keys[i].sign(&root).to_bytes().to_vec().try_into().unwrap(),
        }
    }

    #[test]
    fn vote_checks() {
        let (keys, set) = make_set(&[1, 1, 1, 1]);
        let table = KeyTable::new(Epoch::ZERO, &set, [9; 4]).unwrap();
        let data = VoteData::notarize(Epoch::ZERO, View::new(3), [1; 32]);
        let good = sign_vote(&keys, 2, data, [9; 4]);
        assert!(verify_vote(&table, &good).unwrap().checked_by(&table));
        let mut wrong_op = good.clone();
        wrong_op.operator_index = OperatorIndex::new(1);
        assert_eq!(verify_vote(&table, &wrong_op).unwrap_err(), ConsensusError::BadSignature);
        let mut non_member = good.clone();
        non_member.operator_index = OperatorIndex::new(4);
        assert_eq!(
            verify_vote(&table, &non_member).unwrap_err(),
            ConsensusError::UnknownOperator(OperatorIndex::new(4))
        );
        let other_net = sign_vote(&keys, 2, data, [8; 4]);
        assert_eq!(verify_vote(&table, &other_net).unwrap_err(), ConsensusError::BadSignature);
        let mut wrong_epoch = good.clone();
        wrong_epoch.data.epoch = Epoch::new(1);
        assert!(matches!(
            verify_vote(&table, &wrong_epoch),
            Err(ConsensusError::WrongEpoch { .. })
        ));
        let mut garbage = good.clone();
        garbage.signature = vec![0xffu8; 96].try_into().unwrap();
        assert!(verify_vote(&table, &garbage).is_err());

        let batch = vec![good.clone(), sign_vote(&keys, 0, data, [9; 4]), wrong_op.clone()];
        let out = verify_votes_batch(&table, &batch, &[1; 32]);
        assert!(out[0].is_ok() && out[1].is_ok() && out[2].is_err());
        let all_good = verify_votes_batch(&table, &batch[..2], &[1; 32]);
        assert!(all_good.iter().all(|r| r.is_ok()));
    }

    fn make_cert(keys: &[crate::bls::SecretKey], signers: &[bool], data: VoteData) -> Certificate {
        let root = vote_signing_root(&data, [9; 4]).unwrap();
        let sigs: Vec<_> = signers
            .iter()
            .enumerate()
            .filter(|(_, b)| **b)
            .map(|(i, _)| keys[i].sign(&root))
            .collect();
        Certificate {
            data,
            signers: signers.try_into().unwrap(),
            signature: bls::aggregate_signatures(&sigs)
                .unwrap()
                .to_bytes()
                .to_vec()
                .try_into()
                .unwrap(),
        }
    }

    #[test]
    fn certificate_checks() {
        let (keys, set) = make_set(&[1, 1, 1, 1]);
        let table = KeyTable::new(Epoch::ZERO, &set, [9; 4]).unwrap();
        let data = VoteData::nullify(Epoch::ZERO, View::new(5));
        assert!(
            verify_certificate(&table, &make_cert(&keys, &[true, true, true, false], data)).is_ok()
        );
        // 2 of 4 is not a quorum even with valid signatures.
        assert!(matches!(
            verify_certificate(&table, &make_cert(&keys, &[true, true, false, false], data)),
            Err(ConsensusError::NoQuorum { signed: 2, total: 4 })
        ));
        // Claiming a signer who did not sign.
        let mut lie = make_cert(&keys, &[true, true, true, false], data);
        lie.signers.set(3, true);
        assert_eq!(verify_certificate(&table, &lie).unwrap_err(), ConsensusError::BadSignature);
        // Wrong bitlist length.
        let mut short = make_cert(&keys, &[true, true, true, false], data);
        short.signers.pop();
        assert!(matches!(
            verify_certificate(&table, &short),
            Err(ConsensusError::SignersLength { .. })
        ));
    }

    #[test]
    fn proposal_must_be_signed_by_leader() {
        let (keys, set) = make_set(&[1, 1, 1, 1]);
        let table = KeyTable::new(Epoch::ZERO, &set, [9; 4]).unwrap();
        let message =
            Proposal { view: View::new(2), epoch: Epoch::ZERO, block: Default::default() };
        let root = proposal_signing_root(&message, [9; 4]).unwrap();
        let leader = table.leader(View::new(2)).unwrap().position().unwrap();
        let sign = |i: usize| SignedProposal {
            message: message.clone(),
            signature: keys[i].sign(&root).to_bytes().to_vec().try_into().unwrap(),
            justification: Default::default(),
        };
        assert!(verify_proposal(&table, &sign(leader)).is_ok());
        assert!(verify_proposal(&table, &sign((leader + 1) % 4)).is_err());
    }
}
