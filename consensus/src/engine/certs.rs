//! Certificates: catch-up, FINALIZE votes (rule 6), finality (rule 7) and the epoch switch.

use std::sync::Arc;

use super::{Action, Engine, EpochState};
use crate::operators::KeyTable;
use crate::state::{apply_block, child_base};
use crate::types::{Block, Certificate, ChainState, Root, VoteData, VoteKind};
use crate::verify::{Incoming, verify_certificate};

/// Result of looking up (or computing) the state after a block.
pub(crate) enum StateLookup {
    Known(ChainState),
    /// This ancestor block is missing; fetch it.
    Missing(Root),
    /// The block does not extend the finalized chain or its transition fails.
    Invalid,
}

impl Engine {
    fn holds(&self, data: &VoteData) -> bool {
        let Some(vs) = self.ep.views.get(&data.view) else { return false };
        match data.vote_kind() {
            Some(VoteKind::Notarize) => vs.notarization.as_ref().is_some_and(|c| &c.data == data),
            Some(VoteKind::Nullify) => vs.nullification.is_some(),
            Some(VoteKind::Finalize) => vs.finalization.as_ref().is_some_and(|c| &c.data == data),
            None => true,
        }
    }

    pub(crate) fn on_certificate(
        &mut self,
        incoming: Incoming<Certificate>,
        out: &mut Vec<Action>,
    ) {
        let data = incoming.message().data;
        if data.epoch.checked_add(1) == Some(self.ep.epoch) {
            self.help_previous_epoch(out);
            return;
        }
        if data.epoch != self.ep.epoch || data.view < self.ep.floor || self.holds(&data) {
            return;
        }
        let table = Arc::clone(&self.ep.table);
        let cert = match incoming {
            Incoming::Raw(c) => match verify_certificate(&table, &c) {
                Ok(ok) => ok.into_inner(),
                Err(_) => return,
            },
            Incoming::Verified(v) if v.checked_by(&table) => v.into_inner(),
            Incoming::Verified(_) => return,
        };
        self.accept_certificate(cert, out);
    }

    /// Act on a verified certificate of the current epoch.
    pub(crate) fn accept_certificate(&mut self, cert: Certificate, out: &mut Vec<Action>) {
        let data = cert.data;
        if data.view < self.ep.floor || self.holds(&data) {
            return;
        }
        self.pool.mark_certified(&data);
        if !self.replaying {
            self.last_certificate_ms = Some(self.now_ms);
        }
        let Some(kind) = data.vote_kind() else { return };
        match kind {
            VoteKind::Notarize => {
                let vs = self.view_state(data.view);
                if vs.notarization.is_some() {
                    // A second notarization in one view needs > 1/3 faulty power; keep the first.
                    return;
                }
                vs.notarization = Some(cert.clone());
                let block = self.blocks.get(&data.block_root).cloned();
                if block.is_none() {
                    self.want(data.block_root, out);
                }
                out.push(Action::Notarized { certificate: cert, block });
                // Rule 6: FINALIZE unless we nullified this view (cast_vote enforces it).
                self.cast_vote(VoteData::finalize(data.epoch, data.view, data.block_root), out);
                self.on_view_certified(data.view, out);
            }
            VoteKind::Nullify => {
                self.view_state(data.view).nullification = Some(cert.clone());
                out.push(Action::Nullified { certificate: cert });
                self.on_view_certified(data.view, out);
            }
            VoteKind::Finalize => {
                let vs = self.view_state(data.view);
                if vs.finalization.is_some() {
                    return;
                }
                vs.finalization = Some(cert.clone());
                if !self.blocks.contains_key(&data.block_root) {
                    self.want(data.block_root, out);
                }
                let epoch = self.ep.epoch;
                self.on_view_certified(data.view, out);
                self.finalize(cert, out);
                if self.ep.epoch != epoch {
                    return;
                }
            }
        }
        self.consider_pending(out);
        self.try_propose(out);
    }

    pub(crate) fn want(&mut self, root: Root, out: &mut Vec<Action>) {
        if self.wanted.insert(root) {
            out.push(Action::FetchBlock(root));
        }
    }

    /// A fetched block: accepted only if we asked for it.
    pub(crate) fn on_block(&mut self, block: Block, out: &mut Vec<Action>) {
        let Ok(root) = block.root() else { return };
        if !self.wanted.remove(&root) {
            return;
        }
        self.blocks.insert(root, block);
        if let Some(cert) = self.pending_finality.take() {
            self.finalize(cert, out);
        }
        self.consider_pending(out);
        self.try_propose(out);
    }

    /// The state after `root`, computing missing states from the nearest known ancestor.
    /// Blocks reached this way are certified ancestors, so task results are applied without
    /// re-validation (a quorum validated them).
    pub(crate) fn ensure_state(&mut self, root: Root) -> StateLookup {
        let mut chain: Vec<(Root, Block)> = Vec::new();
        let mut cur = root;
        let base = loop {
            if let Some(s) = self.states.get(&cur) {
                break s.clone();
            }
            let Some(block) = self.blocks.get(&cur) else { return StateLookup::Missing(cur) };
            if block.height <= self.finalized_height {
                return StateLookup::Invalid;
            }
            chain.push((cur, block.clone()));
            cur = block.parent_root;
        };
        let mut state = base;
        let mut parent_root = cur;
        for (r, block) in chain.into_iter().rev() {
            match apply_block(&self.registry, self.digest, &state, &parent_root, &block) {
                Ok(next) if crate::state::check_state_root(&block, &next).is_ok() => state = next,
                _ => return StateLookup::Invalid,
            }
            self.states.insert(r, state.clone());
            parent_root = r;
        }
        StateLookup::Known(state)
    }

    /// Rule 7: finalize the certified block and its ancestors, in height order.
    pub(crate) fn finalize(&mut self, cert: Certificate, out: &mut Vec<Action>) {
        let target = cert.data.block_root;
        let mut chain: Vec<(Root, Block)> = Vec::new();
        let mut cur = target;
        while cur != self.finalized_root {
            let Some(block) = self.blocks.get(&cur) else {
                self.want(cur, out);
                self.pending_finality = Some(cert);
                return;
            };
            if block.height <= self.finalized_height {
                // Conflicts with our finalized chain: impossible below 1/3 faulty power. Never
                // act on it.
                return;
            }
            chain.push((cur, block.clone()));
            cur = block.parent_root;
        }
        // All or nothing: every block of the chain must have a state before any is reported,
        // so the finalized tip always matches the certificate that proves it (`anchor`).
        for (root, _) in chain.iter().rev() {
            if !matches!(self.ensure_state(*root), StateLookup::Known(_)) {
                return;
            }
        }
        for (root, block) in chain.into_iter().rev() {
            self.finalized_root = root;
            self.finalized_height = block.height;
            self.finalized_certificate = Some(cert.clone());
            out.push(Action::Finalized { root, block, certificate: cert.clone() });
        }
        if self.pending_finality.as_ref().is_some_and(|p| p.data.block_root == target) {
            self.pending_finality = None;
        }
        self.prune_finalized(cert.data.view);
        let ends_epoch = self.states.get(&self.finalized_root).is_some_and(|s| s.ends_epoch());
        if ends_epoch && self.finalized_root == target {
            self.switch_epoch(cert, out);
        }
    }

    fn prune_finalized(&mut self, final_view: u64) {
        let (froot, fheight) = (self.finalized_root, self.finalized_height);
        self.blocks.retain(|r, b| b.height > fheight || *r == froot);
        let blocks = &self.blocks;
        self.states.retain(|r, _| blocks.contains_key(r));
        if final_view > self.ep.floor {
            self.ep.floor = final_view;
            self.ep.views.retain(|v, _| *v >= final_view);
        }
    }

    /// Start the next epoch on the finalized epoch-ending block.
    fn switch_epoch(&mut self, cert: Certificate, out: &mut Vec<Action>) {
        let Some(state) = self.states.get(&self.finalized_root) else { return };
        let Ok(base) = child_base(state) else { return };
        let Ok(table) = KeyTable::new(base.epoch, &base.operators, self.digest) else { return };
        self.ep = EpochState {
            epoch: base.epoch,
            me: table.index_of(&self.pubkey),
            table: Arc::new(table),
            genesis_root: self.finalized_root,
            view: 0,
            entered_at_ms: None,
            views: Default::default(),
            floor: 0,
            start_certificate: Some(cert),
        };
        self.pool.clear();
        self.pending_proposals.clear();
        self.wanted.clear();
        self.last_wakeup = None;
        out.push(Action::EpochChanged { epoch: base.epoch, operators: base.operators.clone() });
        if self.now_ms >= self.timing.genesis_ms {
            self.enter_view(0, out);
        }
    }
}
