//! Gossip validation (docs/protocol.md, section 12): what a node checks before a message is
//! forwarded or handed to the engine, and whose fault a refusal is.
//!
//! [`GossipError`] is the one verdict type: every refusal is a variant, and
//! [`GossipError::verdict`] maps each to Reject (the sender is answerable) or Ignore (nobody's
//! fault, or nothing to gain) in one exhaustive match. The checks run against a
//! [`GossipContext`], a snapshot of the engine cheap enough to share with worker threads, and
//! cheap checks come first: nothing costs a pairing that a comparison can refuse. Votes are only
//! cheap-checked here; their signatures are checked lazily in the engine's pool (section 9),
//! which gives their verdict later.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::bls::Signature;
use crate::engine::{Engine, VIEW_WINDOW_AHEAD, VOTE_WINDOW_BEHIND, Verdict};
use crate::error::ConsensusError;
use crate::operators::KeyTable;
use crate::types::{
    Certificate, Epoch, OperatorIndex, SIGNED_PROPOSAL_FIXED_BYTES, SignedProposal, SignedVote,
    View, VoteData, VoteKind, decode,
};
use crate::verify::{Verified, verify_certificate, verify_proposal};

/// Why a gossip message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    // ----- the sender's fault: Reject -----
    #[error("undecodable: {0}")]
    Undecodable(String),
    #[error("malformed vote data (unknown kind, or a root that does not fit the kind)")]
    MalformedData,
    #[error("operator index {0} is not in the epoch's set")]
    NotAMember(OperatorIndex),
    #[error("signature bytes are not a point on the curve")]
    BadSignatureEncoding,
    #[error("signature does not verify")]
    BadSignature,
    #[error("certificate signers: {0}")]
    BadSigners(String),
    #[error("certificate signers hold no quorum")]
    NoQuorum,
    // ----- nobody's fault: Ignore -----
    #[error("epoch {got} is behind ours ({ours})")]
    EarlierEpoch { got: Epoch, ours: Epoch },
    #[error("epoch {got} is ahead of ours ({ours})")]
    LaterEpoch { got: Epoch, ours: Epoch },
    #[error("view {view} is behind our window")]
    TooOld { view: View },
    #[error("view {view} is too far ahead")]
    TooFarAhead { view: View },
    #[error("a certificate for this vote data is already held")]
    AlreadyCertified,
    #[error("a proposal for view {0} is already held")]
    AlreadyProposed(View),
}

impl GossipError {
    /// Accept/Ignore/Reject for a refusal, with whose fault it is.
    pub fn verdict(&self) -> Verdict {
        match self {
            // Bytes that do not decode, data no honest node produces, indices outside the set,
            // signatures that are not curve points or do not verify, certificates without a
            // quorum: an honest sender never forwards these (it validates before forwarding),
            // so the peer that sent it is answerable.
            Self::Undecodable(_)
            | Self::MalformedData
            | Self::NotAMember(_)
            | Self::BadSignatureEncoding
            | Self::BadSignature
            | Self::BadSigners(_)
            | Self::NoQuorum => Verdict::Reject,
            // Another epoch (the sender may be on the other side of an epoch switch), outside
            // our view window (it may be ahead or behind us in good faith), or already held:
            // valid for someone, useless to us, and nobody's fault.
            Self::EarlierEpoch { .. }
            | Self::LaterEpoch { .. }
            | Self::TooOld { .. }
            | Self::TooFarAhead { .. }
            | Self::AlreadyCertified
            | Self::AlreadyProposed(_) => Verdict::Ignore,
        }
    }

    /// A short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Undecodable(_) => "undecodable",
            Self::MalformedData => "malformed",
            Self::NotAMember(_) => "not_a_member",
            Self::BadSignatureEncoding => "bad_signature_encoding",
            Self::BadSignature => "bad_signature",
            Self::BadSigners(_) => "bad_signers",
            Self::NoQuorum => "no_quorum",
            Self::EarlierEpoch { .. } => "earlier_epoch",
            Self::LaterEpoch { .. } => "later_epoch",
            Self::TooOld { .. } => "too_old",
            Self::TooFarAhead { .. } => "too_far_ahead",
            Self::AlreadyCertified => "already_certified",
            Self::AlreadyProposed(_) => "already_proposed",
        }
    }
}

impl From<ConsensusError> for GossipError {
    fn from(e: ConsensusError) -> Self {
        match e {
            ConsensusError::Ssz(m) => Self::Undecodable(m),
            ConsensusError::MalformedVote => Self::MalformedData,
            ConsensusError::UnknownOperator(i) => Self::NotAMember(i),
            ConsensusError::BadSignatureEncoding => Self::BadSignatureEncoding,
            ConsensusError::NoQuorum { .. } => Self::NoQuorum,
            ConsensusError::SignersLength { .. } => Self::BadSigners(e.to_string()),
            // Anything else a verification can say is a signature or shape the sender should
            // not have forwarded.
            _ => Self::BadSignature,
        }
    }
}

/// A snapshot of what validation needs; cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct GossipContext {
    pub epoch: Epoch,
    pub view: View,
    /// Lowest view still open in this epoch.
    pub floor: View,
    pub table: Arc<KeyTable>,
    /// `VoteData`s for which a certificate is held.
    pub certified: BTreeSet<VoteData>,
    /// Views for which a nullification is held.
    pub nullified: BTreeSet<View>,
    /// Views for which a leader-signed proposal is held (judged or waiting).
    pub proposed: BTreeSet<View>,
}

impl Engine {
    pub fn gossip_context(&self) -> GossipContext {
        let certified = self.certified();
        let nullified = certified
            .iter()
            .filter(|d| d.vote_kind() == Some(VoteKind::Nullify))
            .map(|d| d.view)
            .collect();
        GossipContext {
            epoch: self.ep.epoch,
            view: self.ep.view,
            floor: self.ep.floor,
            table: self.key_table(),
            certified,
            nullified,
            proposed: self.proposed_views(),
        }
    }
}

impl GossipContext {
    fn check_epoch(&self, epoch: Epoch) -> Result<(), GossipError> {
        match epoch.cmp(&self.epoch) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => {
                Err(GossipError::EarlierEpoch { got: epoch, ours: self.epoch })
            }
            std::cmp::Ordering::Greater => {
                Err(GossipError::LaterEpoch { got: epoch, ours: self.epoch })
            }
        }
    }

    fn check_window(&self, view: View, behind: u64) -> Result<(), GossipError> {
        if view < self.floor || view.saturating_add(behind) < self.view {
            return Err(GossipError::TooOld { view });
        }
        if view > self.view.saturating_add(VIEW_WINDOW_AHEAD) {
            return Err(GossipError::TooFarAhead { view });
        }
        Ok(())
    }

    /// The cheap checks of a vote (no pairing): decodes, well formed, this epoch, inside the
    /// window, from a member, signature a curve point, `VoteData` not certified yet. The vote
    /// then goes to the engine raw; its verdict comes from the pool's check.
    pub fn check_vote(&self, bytes: &[u8]) -> Result<SignedVote, GossipError> {
        let vote: SignedVote = decode(bytes)?;
        if !vote.data.is_well_formed() {
            return Err(GossipError::MalformedData);
        }
        self.check_epoch(vote.data.epoch)?;
        self.check_window(vote.data.view, VOTE_WINDOW_BEHIND)?;
        if self.table.key(vote.operator_index).is_none() {
            return Err(GossipError::NotAMember(vote.operator_index));
        }
        Signature::from_bytes(vote.signature.as_ref())
            .map_err(|_| GossipError::BadSignatureEncoding)?;
        if self.certified.contains(&vote.data) {
            return Err(GossipError::AlreadyCertified);
        }
        Ok(vote)
    }

    /// A certificate: cheap checks (epoch, floor, one already held), then the aggregate
    /// signature. Certificates are useful however far ahead they are (catch-up).
    pub fn check_certificate(&self, bytes: &[u8]) -> Result<Verified<Certificate>, GossipError> {
        let cert: Certificate = decode(bytes)?;
        if !cert.data.is_well_formed() {
            return Err(GossipError::MalformedData);
        }
        self.check_epoch(cert.data.epoch)?;
        if cert.data.view < self.floor {
            return Err(GossipError::TooOld { view: cert.data.view });
        }
        let held = match cert.data.vote_kind() {
            Some(VoteKind::Nullify) => self.nullified.contains(&cert.data.view),
            _ => self.certified.contains(&cert.data),
        };
        if held {
            return Err(GossipError::AlreadyCertified);
        }
        Ok(verify_certificate(&self.table, &cert)?)
    }

    /// A proposal: this epoch, not behind the current view nor too far ahead, for a view
    /// whose proposal is not held yet, signed by the view's leader. Its block and
    /// justification are judged by the engine. The engine keeps the first proposal of a view
    /// (section 8), so a second one, even validly signed by an equivocating leader, is
    /// ignored before its decode and pairing instead of being verified and forwarded by every
    /// node (review T10).
    ///
    /// A proposal can be 10 MiB, so its epoch and view are read from their fixed offsets
    /// first: one of another epoch or outside the window is ignored before anything is
    /// decoded (a well-formed encoding puts them there; anything else fails the decode).
    pub fn check_proposal(&self, bytes: &[u8]) -> Result<Verified<SignedProposal>, GossipError> {
        if let Some((epoch, view)) = peek_proposal(bytes) {
            self.check_epoch(epoch)?;
            self.check_window(view, 0)?;
            if self.proposed.contains(&view) {
                return Err(GossipError::AlreadyProposed(view));
            }
        }
        let proposal: SignedProposal = decode(bytes)?;
        let m = &proposal.message;
        self.check_epoch(m.epoch)?;
        self.check_window(m.view, 0)?;
        Ok(verify_proposal(&self.table, &proposal)?)
    }
}

impl GossipContext {
    /// Whether a vote or certificate of (`epoch`, `view`) can move this node on now: this
    /// epoch, from the view before the current one (a late FINALIZE, the certificate that
    /// closes it) to the one after (a leader that entered it first). Such messages take the
    /// validation slots kept for them when the others are full.
    pub fn is_urgent(&self, epoch: Epoch, view: View) -> bool {
        epoch == self.epoch
            && view.saturating_add(1) >= self.view
            && view <= self.view.saturating_add(1)
    }
}

/// The epoch and view of an encoded `SignedVote` or `Certificate`, without decoding it: both
/// start with their fixed-size `VoteData` (`kind: u8, view: u64, epoch: u64`), so any encoding
/// that can decode holds them at bytes 1..17. For ordering work only; the decode decides.
pub fn peek_vote_data(bytes: &[u8]) -> Option<(Epoch, View)> {
    let view = u64::from_le_bytes(bytes.get(1..9)?.try_into().ok()?);
    let epoch = u64::from_le_bytes(bytes.get(9..17)?.try_into().ok()?);
    Some((Epoch::new(epoch), View::new(view)))
}

/// The epoch and view of an encoded `SignedProposal`, read from their fixed offsets without
/// decoding it, if the encoding starts the way a valid one must.
fn peek_proposal(bytes: &[u8]) -> Option<(Epoch, View)> {
    let at = SIGNED_PROPOSAL_FIXED_BYTES;
    let offset = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    if usize::try_from(offset).ok()? != at {
        return None;
    }
    let view = u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?);
    let epoch = u64::from_le_bytes(bytes.get(at + 8..at + 16)?.try_into().ok()?);
    Some((Epoch::new(epoch), View::new(view)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Certificate, SignedVote, VoteData, encode};

    #[test]
    fn votes_and_certificates_show_their_epoch_and_view_at_fixed_offsets() {
        let data = VoteData::notarize(Epoch::new(3), View::new(41), [9; 32]);
        let vote = encode(&SignedVote { data, ..SignedVote::default() }).unwrap();
        let cert = encode(&Certificate { data, ..Certificate::default() }).unwrap();
        assert_eq!(peek_vote_data(&vote), Some((Epoch::new(3), View::new(41))));
        assert_eq!(peek_vote_data(&cert), Some((Epoch::new(3), View::new(41))));
        assert_eq!(peek_vote_data(&vote[..16]), None);
    }
}
