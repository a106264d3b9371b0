//! Proposals: the notarized-chain parent rule (rule 3), building a block as leader, judging a
//! leader's proposal before NOTARIZE (rule 4), and re-proposal of an epoch-ending block.

use std::collections::HashSet;

use super::certs::StateLookup;
use super::{Action, Engine, Request, VIEW_WINDOW_AHEAD};
use crate::signing::proposal_signing_root;
use crate::state::{apply_block, check_state_root, child_epoch};
use crate::task::{TaskValidity, ancestor_task_ids};
use crate::types::{
    Block, BlockBody, Certificate, ChainState, MAX_JUSTIFICATION, OperatorIndex, Proposal, Root,
    SignedProposal, View, VoteData,
};
use crate::verify::{Incoming, verify_proposal};

/// Where a block sits in this epoch's notarized chain, seen from a view `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Notarized at this view (None: the epoch's genesis) with every view between it and `v`
    /// nullified.
    Found(Option<View>),
    /// Not established with the certificates held (yet).
    Missing,
}

enum Judgement {
    Valid { root: Root, state: ChainState },
    NotYet,
    Invalid,
}

impl Engine {
    /// Does `target` extend to view `v` under rule 3? Walks down from `v - 1`: the first view
    /// that is not nullified must have notarized `target`.
    pub(crate) fn link(&self, v: View, target: &Root) -> Link {
        let mut w = v;
        loop {
            let Some(prev) = w.previous() else {
                return if target == &self.ep.genesis_root && self.ep.floor == View::ZERO {
                    Link::Found(None)
                } else {
                    Link::Missing
                };
            };
            w = prev;
            let Some(vs) = self.ep.views.get(&w) else { return Link::Missing };
            if vs.notarized_root().as_ref() == Some(target) {
                return Link::Found(Some(w));
            }
            if vs.nullification.is_none() || w < self.ep.floor {
                return Link::Missing;
            }
        }
    }

    /// The tip of the notarized chain for view `v`: (root, view it was notarized in), or the
    /// view whose certificate is missing.
    fn select_parent(&self, v: View) -> Result<(Root, Option<View>), View> {
        let mut w = v;
        loop {
            let Some(prev) = w.previous() else {
                return if self.ep.floor == View::ZERO {
                    Ok((self.ep.genesis_root, None))
                } else {
                    Err(View::ZERO)
                };
            };
            w = prev;
            let Some(vs) = self.ep.views.get(&w) else { return Err(w) };
            if let Some(root) = vs.notarized_root() {
                return Ok((root, Some(w)));
            }
            if vs.nullification.is_none() || w < self.ep.floor {
                return Err(w);
            }
        }
    }

    /// Certificates that justify a parent notarized at `parent_view` for view `v`.
    fn justification(&self, parent_view: Option<View>, v: View) -> Vec<Certificate> {
        let mut certs = Vec::new();
        match parent_view {
            Some(p) => {
                if let Some(c) = self
                    .ep
                    .views
                    .get(&p)
                    .and_then(|vs| vs.notarization.as_ref().or(vs.finalization.as_ref()))
                {
                    certs.push(c.clone());
                }
            }
            None => certs.extend(self.ep.start_certificate.clone()),
        }
        let first = parent_view.map_or(View::ZERO, View::next);
        let room = MAX_JUSTIFICATION.saturating_sub(certs.len());
        // Keep the most recent nullifications if there are more than fit; voters hold the
        // older ones from gossip (docs/protocol.md, "Proposal").
        let nulls: Vec<Certificate> = self
            .ep
            .views
            .range(first..v)
            .rev()
            .filter_map(|(_, vs)| vs.nullification.clone())
            .take(room)
            .collect();
        certs.extend(nulls.into_iter().rev());
        certs
    }

    /// Rule 3: as leader of the current view, propose once, at the view's pace or later.
    pub(crate) fn try_propose(&mut self, out: &mut Vec<Action>) {
        let v = self.ep.view;
        let Some(me) = self.ep.me else { return };
        if self.replaying || self.ep.table.leader(v) != Some(me) {
            return;
        }
        if self.pace_at().is_none_or(|pace| self.now_ms < pace) {
            return;
        }
        if self.ep.views.get(&v).is_some_and(|vs| {
            vs.proposed || vs.voted_notarize.is_some() || vs.voted_nullify || vs.proposal.is_some()
        }) {
            return;
        }
        let (parent_root, parent_view) = match self.select_parent(v) {
            Ok(parent) => parent,
            Err(missing) => {
                // Section 10: a leader without the certificates to justify a parent asks for
                // them (once per advance timeout) instead of staying silent.
                let due = self.last_justification_pull_ms.is_none_or(|t| {
                    self.now_ms >= t.saturating_add(self.timing.advance_timeout_ms)
                });
                if due {
                    self.last_justification_pull_ms = Some(self.now_ms);
                    out.push(Action::Request(Request::Certificates {
                        epoch: self.ep.epoch,
                        from_view: missing,
                    }));
                }
                return;
            }
        };
        let parent_state = match self.ensure_state(parent_root) {
            StateLookup::Known(s) => s,
            StateLookup::Missing(r) => {
                self.want(r, out);
                return;
            }
            StateLookup::Invalid => return,
        };
        let (block, state) = if parent_view.is_some() && parent_state.ends_epoch() {
            // Epoch-ending block not yet final: re-propose it, never extend it.
            match self.blocks.get(&parent_root) {
                Some(b) => (b.clone(), parent_state),
                None => return,
            }
        } else {
            match self.build_block(me, parent_root, &parent_state) {
                Some(built) => built,
                None => return,
            }
        };
        let Ok(root) = block.root() else { return };
        let message = Proposal { view: v, epoch: self.ep.epoch, block: block.clone() };
        let Ok(signing_root) = proposal_signing_root(&message, self.digest) else { return };
        let Ok(signature) = self.key.sign(&signing_root).to_bytes().to_vec().try_into() else {
            return;
        };
        let Ok(justification) = self.justification(parent_view, v).try_into() else { return };
        let proposal = SignedProposal { message, signature, justification };
        let vs = self.view_state(v);
        vs.proposed = true;
        vs.proposal = Some(root);
        vs.proposal_valid = true;
        out.push(Action::StoreBlock { root, block: block.clone() });
        self.blocks.insert(root, block);
        self.states.insert(root, state);
        // Own NOTARIZE is persisted before the proposal leaves the node: after a crash the
        // restored vote stops this leader from proposing a second block in the same view.
        let start = out.len();
        self.cast_vote(VoteData::notarize(self.ep.epoch, v, root), out);
        let after_persist = out
            .iter()
            .skip(start)
            .position(|a| matches!(a, Action::PersistVote(_)))
            .and_then(|i| i.checked_add(start)?.checked_add(1))
            .unwrap_or(out.len());
        out.insert(after_persist.min(out.len()), Action::BroadcastProposal(proposal));
    }

    fn build_block(
        &self,
        me: OperatorIndex,
        parent_root: Root,
        parent: &ChainState,
    ) -> Option<(Block, ChainState)> {
        if child_epoch(parent).ok()? != self.ep.epoch {
            return None;
        }
        // Only results our own validator side accepts: a block others refuse is a lost view.
        let mut earlier = self.ancestor_tasks(parent_root);
        let tasks: Vec<_> = self
            .registry
            .perform(parent, me, self.now_ms)
            .into_iter()
            .filter(|t| {
                let probe = Block {
                    proposer_index: me,
                    body: BlockBody { tasks: vec![t.clone()].try_into().unwrap_or_default() },
                    ..Default::default()
                };
                let valid = self.registry.validate_block(
                    self.digest,
                    parent,
                    &probe,
                    &earlier,
                    self.now_ms,
                ) == TaskValidity::Valid;
                // Taken: a later result of the same task is not taken twice.
                if valid {
                    earlier.extend(ancestor_task_ids(self.ep.table.operator_set(), [&probe]));
                }
                valid
            })
            .collect();
        let mut block = Block {
            height: parent.height.checked_add(1)?,
            parent_root,
            proposer_index: me,
            state_root: [0; 32],
            body: BlockBody { tasks: tasks.try_into().ok()? },
        };
        let state = match apply_block(&self.registry, self.digest, parent, &parent_root, &block) {
            Ok(s) => s,
            Err(_) => {
                // A task effect failed: propose an empty block rather than nothing.
                block.body = BlockBody::default();
                apply_block(&self.registry, self.digest, parent, &parent_root, &block).ok()?
            }
        };
        block.state_root = crate::types::root_of(&state).ok()?;
        Some((block, state))
    }

    pub(crate) fn on_proposal(
        &mut self,
        incoming: Incoming<SignedProposal>,
        out: &mut Vec<Action>,
    ) {
        if incoming.message().message.epoch != self.ep.epoch {
            // Another epoch's proposal: the node pulls what it lacks (section 10).
            return;
        }
        let v = incoming.message().message.view;
        if v < self.ep.view || v > self.ep.view.saturating_add(VIEW_WINDOW_AHEAD) {
            return;
        }
        if self.ep.views.get(&v).is_some_and(|vs| vs.proposal.is_some())
            || self.pending_proposals.contains_key(&v)
        {
            return;
        }
        let table = std::sync::Arc::clone(&self.ep.table);
        let proposal = match incoming {
            Incoming::Raw(p) => match verify_proposal(&table, &p) {
                Ok(ok) => ok.into_inner(),
                Err(_) => return,
            },
            Incoming::Verified(p) if p.checked_by(&table) => p.into_inner(),
            Incoming::Verified(_) => return,
        };
        self.absorb_justification(proposal.justification.iter().cloned().collect(), out);
        if proposal.message.epoch != self.ep.epoch || v < self.ep.view {
            return;
        }
        // Keep the block: if it gets notarized we need it as a parent.
        if let (Ok(root), true) =
            (proposal.message.block.root(), proposal.message.block.height > self.finalized_height)
        {
            self.blocks.entry(root).or_insert_with(|| proposal.message.block.clone());
        }
        self.pending_proposals.insert(v, proposal);
        self.consider_pending(out);
    }

    fn absorb_justification(&mut self, certs: Vec<Certificate>, out: &mut Vec<Action>) {
        for cert in certs {
            self.on_certificate(Incoming::Raw(cert), out);
        }
    }

    /// Rule 4: judge the buffered proposal of the current view, if any.
    pub(crate) fn consider_pending(&mut self, out: &mut Vec<Action>) {
        let v = self.ep.view;
        let Some(proposal) = self.pending_proposals.get(&v).cloned() else { return };
        let vs = self.view_state(v);
        if vs.voted_notarize.is_some() || vs.voted_nullify || vs.proposal.is_some() {
            self.pending_proposals.remove(&v);
            return;
        }
        match self.judge(&proposal, out) {
            Judgement::NotYet => {}
            Judgement::Invalid => {
                self.pending_proposals.remove(&v);
                if let Ok(root) = proposal.message.block.root() {
                    self.view_state(v).proposal = Some(root);
                }
            }
            Judgement::Valid { root, state } => {
                self.pending_proposals.remove(&v);
                self.states.insert(root, state);
                let vs = self.view_state(v);
                vs.proposal = Some(root);
                vs.proposal_valid = true;
                // Kept before the vote: peers that see our NOTARIZE may ask for the block.
                if let Some(block) = self.blocks.get(&root) {
                    out.push(Action::StoreBlock { root, block: block.clone() });
                }
                self.cast_vote(VoteData::notarize(self.ep.epoch, v, root), out);
            }
        }
    }

    /// The AVS task ids in the unfinalized chain ending at `tip` (tip included): a block built on
    /// `tip` must not carry them again (docs/protocol.md, 7.3). Unfinalized blocks are all of
    /// the current epoch (an epoch ends only at a finalized block), so its set resolves them.
    fn ancestor_tasks(&self, tip: Root) -> HashSet<Root> {
        let mut chain = Vec::new();
        let mut cur = tip;
        while let Some(block) = self.blocks.get(&cur) {
            if block.height <= self.finalized_height {
                break;
            }
            chain.push(block);
            cur = block.parent_root;
        }
        ancestor_task_ids(self.ep.table.operator_set(), chain)
    }

    fn judge(&mut self, proposal: &SignedProposal, out: &mut Vec<Action>) -> Judgement {
        let v = proposal.message.view;
        let block = &proposal.message.block;
        let Ok(root) = block.root() else { return Judgement::Invalid };
        // Re-proposal: the block itself is notarized earlier in the epoch, views since then are
        // nullified, and it ends the epoch.
        if let Link::Found(Some(_)) = self.link(v, &root) {
            return match self.ensure_state(root) {
                StateLookup::Known(state) if state.ends_epoch() => Judgement::Valid { root, state },
                StateLookup::Known(_) | StateLookup::Invalid => Judgement::Invalid,
                StateLookup::Missing(r) => {
                    self.want(r, out);
                    Judgement::NotYet
                }
            };
        }
        if self.link(v, &block.parent_root) == Link::Missing {
            return Judgement::NotYet;
        }
        let parent = match self.ensure_state(block.parent_root) {
            StateLookup::Known(s) => s,
            StateLookup::Missing(r) => {
                self.want(r, out);
                return Judgement::NotYet;
            }
            StateLookup::Invalid => return Judgement::Invalid,
        };
        if self.ep.table.leader(v) != Some(block.proposer_index)
            || child_epoch(&parent).ok() != Some(self.ep.epoch)
        {
            return Judgement::Invalid;
        }
        let earlier = self.ancestor_tasks(block.parent_root);
        match self.registry.validate_block(self.digest, &parent, block, &earlier, self.now_ms) {
            TaskValidity::Valid => {}
            TaskValidity::NotYet(_) => return Judgement::NotYet,
            TaskValidity::Invalid(_) => return Judgement::Invalid,
        }
        match apply_block(&self.registry, self.digest, &parent, &block.parent_root, block) {
            Ok(state) if check_state_root(block, &state).is_ok() => {
                Judgement::Valid { root, state }
            }
            _ => Judgement::Invalid,
        }
    }
}
