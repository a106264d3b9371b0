//! Own votes (with the rule-8 guards) and others' votes (the pool's lazy checks, evidence,
//! certificates built from a quorum: docs/protocol.md, section 9).
//!
//! `cast_vote` is the only place that signs a vote, and it refuses anything that contradicts
//! a vote this node already cast or restored from storage: at most one NOTARIZE per view,
//! no FINALIZE after NULLIFY and no NULLIFY after FINALIZE in the same view.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::certs::Origin;
use super::{Action, Engine, VIEW_WINDOW_AHEAD, VOTE_WINDOW_BEHIND, Verdict};
use crate::bls::Signature;
use crate::pool::{Admission, Checked};
use crate::signing::vote_signing_root;
use crate::types::{SignedVote, VoteData, VoteKind};
use crate::verify::Incoming;

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
        // Gossip does not loop back: the node pools its own vote directly.
        let table = Arc::clone(&self.ep.table);
        self.pool.add_verified(&table, &vote, sig);
        self.try_certify(&data, out);
    }

    pub(crate) fn on_vote(&mut self, incoming: Incoming<SignedVote>, out: &mut Vec<Action>) {
        let data = incoming.message().data;
        let in_window = data.epoch == self.ep.epoch
            && data.view >= self.ep.floor
            && data.view.saturating_add(VOTE_WINDOW_BEHIND) >= self.ep.view
            && data.view <= self.ep.view.saturating_add(VIEW_WINDOW_AHEAD);
        if !in_window {
            if let Incoming::Raw(vote) = incoming {
                out.push(Action::VoteChecked { vote, verdict: Verdict::Ignore });
            }
            return;
        }
        let table = Arc::clone(&self.ep.table);
        match incoming {
            Incoming::Raw(vote) => {
                // The caller's cheap checks, repeated here so raw input is never trusted.
                let sig = match Signature::from_bytes(vote.signature.as_ref()) {
                    Ok(sig)
                        if vote.data.is_well_formed()
                            && table.key(vote.operator_index).is_some() =>
                    {
                        sig
                    }
                    _ => {
                        out.push(Action::VoteChecked { vote, verdict: Verdict::Reject });
                        return;
                    }
                };
                match self.pool.offer(&table, &vote, sig, self.now_ms) {
                    Admission::Ignored => {
                        out.push(Action::VoteChecked { vote, verdict: Verdict::Ignore })
                    }
                    Admission::Pending => {}
                    Admission::CheckNow => self.check_pool(&vote.data, out),
                    Admission::CheckAlone => {
                        let checked = self.pool.check_alone(&table, &vote, sig);
                        self.after_check(checked, out);
                    }
                }
            }
            Incoming::Verified(v) if v.checked_by(&table) => {
                let vote = v.into_inner();
                let Ok(sig) = Signature::from_bytes(vote.signature.as_ref()) else { return };
                if let Some(ev) = self.pool.add_verified(&table, &vote, sig) {
                    out.push(Action::Evidence(ev));
                }
                self.try_certify(&vote.data, out);
            }
            Incoming::Verified(_) => {}
        }
    }

    /// Check the pending votes of `data` now (aggregate, bisect on failure).
    pub(crate) fn check_pool(&mut self, data: &VoteData, out: &mut Vec<Action>) {
        let table = Arc::clone(&self.ep.table);
        let checked = self.pool.check(&table, data);
        self.after_check(checked, out);
    }

    /// Report verdicts and evidence of a check, then certify what reached a quorum.
    fn after_check(&mut self, checked: Checked, out: &mut Vec<Action>) {
        let mut touched = BTreeSet::new();
        for vote in checked.valid {
            touched.insert(vote.data);
            out.push(Action::VoteChecked { vote, verdict: Verdict::Accept });
        }
        for vote in checked.invalid {
            out.push(Action::VoteChecked { vote, verdict: Verdict::Reject });
        }
        for vote in checked.superseded {
            out.push(Action::VoteChecked { vote, verdict: Verdict::Ignore });
        }
        out.extend(checked.evidence.into_iter().map(Action::Evidence));
        for data in touched {
            self.try_certify(&data, out);
        }
    }

    /// Pending votes that waited their full time are checked even without a quorum in sight.
    pub(crate) fn check_overdue_votes(&mut self, out: &mut Vec<Action>) {
        for data in self.pool.overdue(self.now_ms, self.timing.interval_ms) {
            self.check_pool(&data, out);
        }
    }

    /// Build the certificate for `data` if the verified votes hold a quorum, and act on it.
    pub(crate) fn try_certify(&mut self, data: &VoteData, out: &mut Vec<Action>) {
        let table = Arc::clone(&self.ep.table);
        if !self.pool.ready(&table, data) {
            return;
        }
        if let Some(cert) = self.pool.build(&table, data) {
            self.accept_certificate(cert, Origin::Local, out);
        }
    }
}
