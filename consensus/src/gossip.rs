//! Gossip validation outcomes (docs/protocol.md, "Gossip validation").
//!
//! `Reject` only what the sender is answerable for (malformed SSZ or data, a non-member
//! index, a bad signature, a certificate without quorum); `Ignore` what we cannot or need not
//! judge (another epoch, a view outside our window, below our finalized floor). The node takes
//! a `GossipContext` snapshot from the engine and may run these on a worker thread; the
//! `Verified` value it gets back is fed to the engine without a second signature check.

use std::sync::Arc;

use crate::engine::{Engine, VIEW_WINDOW_AHEAD, VOTE_WINDOW_BEHIND};
use crate::error::ConsensusError;
use crate::operators::KeyTable;
use crate::types::{Certificate, Epoch, SignedProposal, SignedVote, View, decode};
use crate::verify::{Verified, verify_certificate, verify_proposal, verify_vote};

/// What the gossip layer should do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipOutcome {
    /// Valid: forward it and hand it to the engine.
    Accept,
    /// The sender's fault: drop it and penalise the peer.
    Reject(String),
    /// Not judged (duplicate, other epoch, outside the view window): drop without penalty.
    Ignore(String),
}

/// A snapshot of what validation needs; cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct GossipContext {
    pub epoch: Epoch,
    pub view: View,
    /// Lowest view still open in this epoch.
    pub floor: View,
    pub table: Arc<KeyTable>,
}

impl Engine {
    pub fn gossip_context(&self) -> GossipContext {
        GossipContext {
            epoch: self.ep.epoch,
            view: self.ep.view,
            floor: self.ep.floor,
            table: self.key_table(),
        }
    }
}

fn reject(e: ConsensusError) -> GossipOutcome {
    GossipOutcome::Reject(e.to_string())
}

impl GossipContext {
    fn epoch_and_window(&self, epoch: Epoch, view: View, behind: u64) -> Option<GossipOutcome> {
        if epoch != self.epoch {
            return Some(GossipOutcome::Ignore(format!("epoch {epoch}, we are in {}", self.epoch)));
        }
        if view < self.floor || view.saturating_add(behind) < self.view {
            return Some(GossipOutcome::Ignore(format!("view {view} too old")));
        }
        if view > self.view.saturating_add(VIEW_WINDOW_AHEAD) {
            return Some(GossipOutcome::Ignore(format!("view {view} too far ahead")));
        }
        None
    }

    pub fn validate_vote(
        &self,
        vote: &SignedVote,
    ) -> (GossipOutcome, Option<Verified<SignedVote>>) {
        if !vote.data.is_well_formed() {
            return (reject(ConsensusError::MalformedVote), None);
        }
        if let Some(outcome) =
            self.epoch_and_window(vote.data.epoch, vote.data.view, VOTE_WINDOW_BEHIND)
        {
            return (outcome, None);
        }
        match verify_vote(&self.table, vote) {
            Ok(v) => (GossipOutcome::Accept, Some(v)),
            Err(e) => (reject(e), None),
        }
    }

    /// Certificates are useful however far ahead they are (catch-up), so only the epoch and
    /// the floor are checked before the signature.
    pub fn validate_certificate(
        &self,
        cert: &Certificate,
    ) -> (GossipOutcome, Option<Verified<Certificate>>) {
        if !cert.data.is_well_formed() {
            return (reject(ConsensusError::MalformedVote), None);
        }
        if let Some(outcome) =
            self.epoch_and_window(cert.data.epoch, cert.data.view.min(self.view), u64::MAX)
        {
            return (outcome, None);
        }
        match verify_certificate(&self.table, cert) {
            Ok(v) => (GossipOutcome::Accept, Some(v)),
            Err(e) => (reject(e), None),
        }
    }

    pub fn validate_proposal(
        &self,
        proposal: &SignedProposal,
    ) -> (GossipOutcome, Option<Verified<SignedProposal>>) {
        let m = &proposal.message;
        if let Some(outcome) = self.epoch_and_window(m.epoch, m.view, 0) {
            return (outcome, None);
        }
        match verify_proposal(&self.table, proposal) {
            Ok(v) => (GossipOutcome::Accept, Some(v)),
            Err(e) => (reject(e), None),
        }
    }

    /// Decode then validate; undecodable bytes are the sender's fault.
    pub fn validate_vote_bytes(
        &self,
        bytes: &[u8],
    ) -> (GossipOutcome, Option<Verified<SignedVote>>) {
        match decode::<SignedVote>(bytes) {
            Ok(v) => self.validate_vote(&v),
            Err(e) => (reject(e), None),
        }
    }

    pub fn validate_certificate_bytes(
        &self,
        bytes: &[u8],
    ) -> (GossipOutcome, Option<Verified<Certificate>>) {
        match decode::<Certificate>(bytes) {
            Ok(c) => self.validate_certificate(&c),
            Err(e) => (reject(e), None),
        }
    }

    pub fn validate_proposal_bytes(
        &self,
        bytes: &[u8],
    ) -> (GossipOutcome, Option<Verified<SignedProposal>>) {
        match decode::<SignedProposal>(bytes) {
            Ok(p) => self.validate_proposal(&p),
            Err(e) => (reject(e), None),
        }
    }
}
