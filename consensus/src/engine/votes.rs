//! Own votes (with the rule-8 guards) and others' votes (aggregation pool, evidence).
//!
//! `cast_vote` is the only place that signs a vote, and it refuses anything that contradicts
//! a vote this node already cast or restored from storage: at most one NOTARIZE per view,
//! no FINALIZE after NULLIFY and no NULLIFY after FINALIZE in the same view.

use super::{Action, Engine, VIEW_WINDOW_AHEAD, VOTE_WINDOW_BEHIND};
use crate::bls::Signature;
use crate::signing::vote_signing_root;
use crate::types::{Certificate, SignedVote, VoteData, VoteKind};
use crate::verify::{Incoming, verify_vote};

impl Engine {
    fn sign_vote(&self, data: VoteData) -> Option<(SignedVote, Signature)> {
        let me = self.ep.me?;
        let root = vote_signing_root(&data, self.digest).ok()?;
        let sig = self.key.sign(&root);
        let vote = SignedVote {
            data,
            operator_index: me,
            signature: sig.to_bytes().to_vec().try_into().ok()?,
        };
        Some((vote, sig))
    }

    /// Sign, persist, publish and pool an own vote, unless it contradicts an earlier one.
    pub(crate) fn cast_vote(&mut self, data: VoteData, out: &mut Vec<Action>) {
        if self.replaying
            || data.epoch != self.ep.epoch
            || data.view < self.ep.floor
            || self.ep.me.is_none()
        {
            return;
        }
        let Some(kind) = data.vote_kind() else { return };
        let vs = self.view_state(data.view);
        let allowed = match kind {
            VoteKind::Notarize => vs.voted_notarize.is_none() && !vs.voted_nullify,
            VoteKind::Nullify | VoteKind::Finalize => {
                !vs.voted_nullify && vs.voted_finalize.is_none()
            }
        };
        if !allowed {
            return;
        }
        let Some((vote, sig)) = self.sign_vote(data) else { return };
        let vs = self.view_state(data.view);
        match kind {
            VoteKind::Notarize => vs.voted_notarize = Some(data.block_root),
            VoteKind::Nullify => vs.voted_nullify = true,
            VoteKind::Finalize => vs.voted_finalize = Some(data.block_root),
        }
        // Persist strictly before the vote can leave the node.
        out.push(Action::PersistVote(vote.clone()));
        out.push(Action::BroadcastVote(vote.clone()));
        // Gossip does not loop back: an aggregator pools its own vote directly.
        let table = std::sync::Arc::clone(&self.ep.table);
        self.pool.add(&table, &vote, sig);
        if self.is_aggregator {
            self.try_certify(&data, out);
        }
    }

    /// Re-send an own vote that was already persisted (signing is deterministic, so the bytes
    /// are identical to the stored vote).
    pub(crate) fn resend_vote(&mut self, data: VoteData, out: &mut Vec<Action>) {
        if let Some((vote, _)) = self.sign_vote(data) {
            out.push(Action::BroadcastVote(vote));
        }
    }

    pub(crate) fn on_vote(
        &mut self,
        incoming: Incoming<SignedVote>,
        is_aggregator: bool,
        out: &mut Vec<Action>,
    ) {
        let data = incoming.message().data;
        if data.epoch.checked_add(1) == Some(self.ep.epoch) {
            self.help_previous_epoch(out);
            return;
        }
        if data.epoch != self.ep.epoch
            || data.view < self.ep.floor
            || data.view.saturating_add(VOTE_WINDOW_BEHIND) < self.ep.view
            || data.view > self.ep.view.saturating_add(VIEW_WINDOW_AHEAD)
        {
            return;
        }
        // Every node keeps the votes of its window (hot standby: a node switched to aggregator
        // can certify at its next tick from what it already holds); only the flag read for
        // this vote decides whether a certificate may be built now.
        let table = std::sync::Arc::clone(&self.ep.table);
        let vote = match incoming {
            Incoming::Raw(v) => match verify_vote(&table, &v) {
                Ok(ok) => ok.into_inner(),
                Err(_) => return,
            },
            Incoming::Verified(v) if v.checked_by(&table) => v.into_inner(),
            Incoming::Verified(_) => return,
        };
        let Ok(sig) = Signature::from_bytes(vote.signature.as_ref()) else { return };
        let outcome = self.pool.add(&table, &vote, sig);
        if outcome.duplicate && self.pool.is_certified(&vote.data) {
            // The sender re-sends a vote we already certified: it is stalled without the
            // certificate, so send it again.
            self.resend_certificate(&vote.data, out);
        }
        if let Some(ev) = outcome.evidence {
            if self.evidence.len() >= super::MAX_EVIDENCE {
                // The node drains evidence with `take_evidence`; if it does not, keep the newest.
                self.evidence.remove(0);
            }
            self.evidence.push(ev.clone());
            out.push(Action::Evidence(ev));
        }
        if is_aggregator {
            self.try_certify(&vote.data, out);
        }
    }

    /// Build and publish the certificate for `data` if the pool holds a quorum.
    pub(crate) fn try_certify(&mut self, data: &VoteData, out: &mut Vec<Action>) {
        let table = std::sync::Arc::clone(&self.ep.table);
        if !self.pool.ready(&table, data) {
            return;
        }
        if let Some(cert) = self.pool.build(&table, data) {
            out.push(Action::BroadcastCertificate(cert.clone()));
            self.accept_certificate(cert, out);
        }
    }

    /// Re-check every pool (on each tick while the aggregator flag is on).
    pub(crate) fn flush_pool(&mut self, out: &mut Vec<Action>) {
        let table = std::sync::Arc::clone(&self.ep.table);
        for data in self.pool.all_ready(&table) {
            self.try_certify(&data, out);
        }
    }

    fn resend_certificate(&mut self, data: &VoteData, out: &mut Vec<Action>) {
        let Some(vs) = self.ep.views.get(&data.view) else { return };
        let held: Option<&Certificate> = [&vs.notarization, &vs.nullification, &vs.finalization]
            .into_iter()
            .flatten()
            .find(|c| &c.data == data);
        if let Some(cert) = held {
            out.push(Action::BroadcastCertificate(cert.clone()));
        }
    }

    /// A peer still in the previous epoch: send it the certificate that ended that epoch, at
    /// most once per nullify timeout.
    pub(crate) fn help_previous_epoch(&mut self, out: &mut Vec<Action>) {
        let due = self
            .last_old_epoch_help_ms
            .is_none_or(|t| self.now_ms >= t.saturating_add(self.timing.nullify_ms));
        if let (true, Some(cert)) = (due, self.ep.start_certificate.clone()) {
            self.last_old_epoch_help_ms = Some(self.now_ms);
            out.push(Action::BroadcastCertificate(cert));
        }
    }
}
