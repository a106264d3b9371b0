//! Certificates: acting on them (rules 1 and 6), finality (rule 7) with the block fetches it
//! needs (by root, and by range for long gaps), and the epoch switch.

use std::sync::Arc;

use super::{
    Action, Engine, EntryCause, EpochState, MAX_PENDING_BLOCKS, PendingFinality, RANGE_BATCH,
    Request, Verdict,
};
use crate::operators::KeyTable;
use crate::state::{apply_block, child_base};
use crate::types::{Block, Certificate, ChainState, Height, Root, View, VoteData, VoteKind};
use crate::verify::{Incoming, verify_certificate};

/// Result of looking up (or computing) the state after a block.
pub(crate) enum StateLookup {
    Known(ChainState),
    /// This ancestor block is missing; fetch it.
    Missing(Root),
    /// The block does not extend the finalized chain or its transition fails.
    Invalid,
}

/// Where a certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Built here from the pool's verified votes.
    Local,
    /// Received (gossip, a justification, a sync answer, or replayed from the store).
    Received,
}

impl Engine {
    /// A certificate for `data` is already held (for NULLIFY: any nullification of the view).
    pub(crate) fn holds(&self, data: &VoteData) -> bool {
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
        self.accept_certificate(cert, Origin::Received, out);
    }

    /// Act on a verified certificate of the current epoch.
    pub(crate) fn accept_certificate(
        &mut self,
        cert: Certificate,
        origin: Origin,
        out: &mut Vec<Action>,
    ) {
        let data = cert.data;
        if data.view < self.ep.floor || self.holds(&data) {
            return;
        }
        let Some(kind) = data.vote_kind() else { return };
        if kind != VoteKind::Nullify
            && self.ep.views.get(&data.view).is_some_and(|vs| match kind {
                VoteKind::Notarize => vs.notarization.is_some(),
                _ => vs.finalization.is_some(),
            })
        {
            // A second notarization (or finalization) in one view needs > 1/3 faulty power;
            // keep the first.
            return;
        }
        let dropped = self.pool.mark_certified(&data);
        out.extend(
            dropped.into_iter().map(|vote| Action::VoteChecked { vote, verdict: Verdict::Ignore }),
        );
        if !self.replaying {
            self.last_certificate_ms = Some(self.now_ms);
        }
        match origin {
            Origin::Local if self.is_aggregator && !self.replaying => {
                out.push(Action::BroadcastCertificate(cert.clone()));
            }
            Origin::Local => {
                self.ep.unpublished.insert(data, cert.clone());
            }
            Origin::Received => {}
        }
        out.push(Action::Certified { certificate: cert.clone(), local: origin == Origin::Local });
        match kind {
            VoteKind::Notarize => {
                self.view_state(data.view).notarization = Some(cert);
                if !self.blocks.contains_key(&data.block_root) {
                    self.want(data.block_root, out);
                }
                // Rule 6: FINALIZE unless we nullified this view (cast_vote enforces it).
                self.cast_vote(VoteData::finalize(data.epoch, data.view, data.block_root), out);
                self.on_view_certified(data.view, EntryCause::Notarized, out);
            }
            VoteKind::Nullify => {
                self.view_state(data.view).nullification = Some(cert);
                self.on_view_certified(data.view, EntryCause::Nullified, out);
            }
            VoteKind::Finalize => {
                self.view_state(data.view).finalization = Some(cert.clone());
                if !self.blocks.contains_key(&data.block_root) {
                    self.want(data.block_root, out);
                }
                let epoch = self.ep.epoch;
                self.on_view_certified(data.view, EntryCause::Notarized, out);
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
        if self.wanted.insert(root) && !self.replaying {
            out.push(Action::Request(Request::BlocksByRoot(vec![root])));
        }
    }

    /// Requested blocks: by root (only roots we asked for), or by range (only heights we asked
    /// for, and only while a finalization waits for them; they are used only if they link to
    /// the certified block by `parent_root`).
    pub(crate) fn on_blocks(&mut self, blocks: Vec<Block>, out: &mut Vec<Action>) {
        for block in blocks {
            let Ok(root) = block.root() else { continue };
            if self.wanted.remove(&root) {
                if block.height > self.finalized_height {
                    out.push(Action::StoreBlock { root, block: block.clone() });
                    self.blocks.insert(root, block);
                }
                continue;
            }
            let in_range =
                self.range_wanted.is_some_and(|(lo, hi)| block.height >= lo && block.height < hi);
            if in_range
                && !self.blocks.contains_key(&root)
                && self.blocks.len() < MAX_PENDING_BLOCKS
            {
                self.blocks.insert(root, block);
            }
        }
        if let Some(pending) = self.pending_finality.clone() {
            self.finalize(pending.certificate, out);
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

    /// Rule 7: finalize the certified block and its ancestors, in height order. The walk down
    /// from the certified block is kept between calls, so each block is visited once however
    /// many round trips fetching the ancestors takes.
    pub(crate) fn finalize(&mut self, cert: Certificate, out: &mut Vec<Action>) {
        let target = cert.data.block_root;
        let mut chain = match self.pending_finality.take() {
            Some(p) if p.certificate.data.block_root == target => p.chain,
            // A pending finality at a higher view covers this one (it finalizes a descendant).
            Some(p) if p.certificate.data.view > cert.data.view => {
                self.pending_finality = Some(p);
                return;
            }
            _ => Vec::new(),
        };
        let mut cur = match chain.last().and_then(|r| self.blocks.get(r)) {
            Some(lowest) => lowest.parent_root,
            None => target,
        };
        while cur != self.finalized_root {
            let Some(block) = self.blocks.get(&cur) else {
                let below = chain.last().and_then(|r| self.blocks.get(r)).map(|b| b.height);
                self.want(cur, out);
                if let Some(child_height) = below {
                    self.want_range(child_height, out);
                }
                self.pending_finality = Some(PendingFinality { certificate: cert, chain });
                return;
            };
            if block.height <= self.finalized_height {
                // Conflicts with our finalized chain: impossible below 1/3 faulty power. Never
                // act on it.
                return;
            }
            chain.push(cur);
            cur = block.parent_root;
        }
        // All or nothing: every block of the chain must have a state before any is reported,
        // so the finalized tip always matches the certificate that proves it (`anchor`).
        for root in chain.iter().rev() {
            if !matches!(self.ensure_state(*root), StateLookup::Known(_)) {
                return;
            }
        }
        for root in chain.into_iter().rev() {
            let Some(block) = self.blocks.get(&root).cloned() else { return };
            self.finalized_root = root;
            self.finalized_height = block.height;
            self.finalized_certificate = Some(cert.clone());
            let epoch_end =
                self.states.get(&root).filter(|s| s.ends_epoch()).map(|s| Box::new(s.clone()));
            out.push(Action::Finalized { root, block, certificate: cert.clone(), epoch_end });
        }
        self.range_wanted = None;
        self.prune_finalized(cert.data.view);
        let ends_epoch = self.states.get(&self.finalized_root).is_some_and(|s| s.ends_epoch());
        if ends_epoch && self.finalized_root == target {
            self.switch_epoch(cert, out);
        }
    }

    /// The blocks between the finalized tip and a missing ancestor (the parent of a block at
    /// `child_height`): ask for up to `RANGE_BATCH` of them at once.
    fn want_range(&mut self, child_height: Height, out: &mut Vec<Action>) {
        let Some(missing) = child_height.previous() else { return };
        let first = self.finalized_height.next();
        if missing <= first {
            return;
        }
        let end = missing.next();
        let start = end.saturating_sub(RANGE_BATCH).max(first);
        if self.range_wanted == Some((start, end)) {
            return;
        }
        self.range_wanted = Some((start, end));
        if !self.replaying {
            let count = end.since(start);
            out.push(Action::Request(Request::BlocksByRange { start_height: start, count }));
        }
    }

    fn prune_finalized(&mut self, final_view: View) {
        let (froot, fheight) = (self.finalized_root, self.finalized_height);
        self.blocks.retain(|r, b| b.height > fheight || *r == froot);
        let blocks = &self.blocks;
        self.states.retain(|r, _| blocks.contains_key(r));
        if final_view > self.ep.floor {
            self.ep.floor = final_view;
            self.ep.views.retain(|v, _| *v >= final_view);
            self.ep.unpublished.retain(|d, _| d.view >= final_view);
        }
    }

    /// Start the next epoch on the finalized epoch-ending block.
    fn switch_epoch(&mut self, cert: Certificate, out: &mut Vec<Action>) {
        let Some(state) = self.states.get(&self.finalized_root) else { return };
        let table = child_base(state)
            .and_then(|base| KeyTable::new(base.epoch, &base.operators, self.digest));
        let table = match table {
            Ok(table) => table,
            Err(e) => {
                // Admission was checked when the block was judged (section 7), so a quorum
                // accepted a set this node cannot load: it cannot follow the chain any more.
                out.push(Action::Halted {
                    reason: format!("cannot start the next epoch's operator set: {e}"),
                });
                return;
            }
        };
        let dropped = self.pool.clear();
        out.extend(
            dropped.into_iter().map(|vote| Action::VoteChecked { vote, verdict: Verdict::Ignore }),
        );
        let epoch = table.epoch();
        let operators = table.operator_set().clone();
        self.ep = EpochState::new(epoch, table, &self.pubkey, self.finalized_root, Some(cert));
        self.pending_proposals.clear();
        self.wanted.clear();
        self.range_wanted = None;
        self.pending_finality = None;
        self.replayed_view = None;
        out.push(Action::EpochChanged { epoch, operators });
        // Own votes already stored for this epoch are guards (and pool entries) from now on.
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.future_own_votes)
            .into_iter()
            .filter(|v| v.data.epoch >= epoch)
            .partition(|v| v.data.epoch == epoch);
        self.future_own_votes = later;
        for vote in &now {
            self.restore_own_vote(vote);
        }
        if !self.replaying && self.now_ms >= self.timing.genesis_ms {
            self.enter_view(View::ZERO, EntryCause::EpochStart, out);
        }
    }
}
