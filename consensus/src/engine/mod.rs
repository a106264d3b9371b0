//! The Simplex state machine (docs/protocol.md, sections 8 to 11).
//!
//! `Engine::handle(now_ms, Input) -> Vec<Action>` is the whole interface: inputs are ticks
//! (interval boundaries of the slot clock, or the deadline the engine asked for with
//! [`Engine::next_deadline`]), proposals, votes, certificates and requested blocks, each with
//! the caller's clock reading; outputs are actions the caller executes **in order**. Contract:
//! a `PersistVote(v)` must be durably written (fsync) before the caller executes any later
//! action of the same batch; that is what makes "persist before publish" hold across crashes.
//!
//! No I/O, no clock, no threads, no randomness: two engines fed the same inputs at the same
//! times produce the same actions. Submodules: `views` (entering views, deadlines, pulls when
//! stalled), `proposals` (building and judging proposals), `certs` (certificates, finality,
//! blocks, epoch switch), `votes` (own votes, the pool's lazy checks, building certificates).

mod certs;
mod proposals;
mod views;
mod votes;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::bls::{SecretKey, Signature};
use crate::error::ConsensusError;
use crate::operators::KeyTable;
use crate::pool::{Evidence, Pool};
use crate::signing::{NetworkDigest, network_digest};
use crate::state::{child_base, genesis_block, genesis_state};
use crate::task::TaskRegistry;
use crate::timing::Timing;
use crate::types::{
    Block, Certificate, ChainState, Epoch, GenesisConfig, Height, OperatorIndex, OperatorSet, Root,
    SignedProposal, SignedVote, View, VoteData, VoteKind,
};
use crate::verify::Incoming;

/// Votes are pooled and accepted for views at most this far behind the current view.
pub const VOTE_WINDOW_BEHIND: u64 = 32;
/// Messages for views more than this far ahead are ignored (cannot judge yet).
pub const VIEW_WINDOW_AHEAD: u64 = 16;
/// Most blocks above the finalized height the engine keeps in memory; blocks fetched by
/// range beyond it are not taken (bounds what a lying peer can make it hold).
pub const MAX_PENDING_BLOCKS: usize = 4096;
/// Most blocks one `blocks_by_range` request asks for (docs/protocol.md, section 16).
pub const RANGE_BATCH: u64 = 64;
/// Largest back-off multiplier of the view deadlines (rule 5).
pub const MAX_BACKOFF: u64 = 8;

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub genesis: GenesisConfig,
    /// Rule 5: nullify when no valid proposal was judged this long after the leader's pace.
    pub leader_timeout_ms: u64,
    /// Rule 5: nullify when no certificate is held this long after the leader's pace; also
    /// the period of pulls while stalled.
    pub advance_timeout_ms: u64,
}

impl EngineConfig {
    /// Defaults: leader timeout 2 intervals, advance timeout 3 intervals of the slot clock.
    pub fn new(genesis: GenesisConfig) -> Self {
        let interval =
            genesis.slot_duration_ms.checked_div(genesis.intervals_per_slot).unwrap_or(0);
        Self {
            genesis,
            leader_timeout_ms: interval.saturating_mul(2),
            advance_timeout_ms: interval.saturating_mul(3),
        }
    }
}

/// An event for the engine.
#[derive(Debug, Clone)]
pub enum Input {
    /// An interval boundary of the slot clock, or a deadline from `next_deadline`;
    /// `is_aggregator` is the flag read once for it.
    Tick {
        is_aggregator: bool,
    },
    Proposal(Incoming<SignedProposal>),
    /// A vote from the network (raw: pooled pending and checked lazily, answered with exactly
    /// one `Action::VoteChecked`) or already verified; `is_aggregator` is the flag read for it.
    Vote {
        vote: Incoming<SignedVote>,
        is_aggregator: bool,
    },
    Certificate(Incoming<Certificate>),
    /// Blocks obtained by request (`Request::BlocksByRoot` or `Request::BlocksByRange`).
    Blocks(Vec<Block>),
}

/// The verdict on a vote handed in raw (docs/protocol.md, section 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Valid: forward it.
    Accept,
    /// Not needed or not judged (duplicate, certified already, out of the window, pruned).
    Ignore,
    /// Its signature is invalid: the sender is answerable.
    Reject,
}

/// What a node asks its peers for (docs/protocol.md, section 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Certificates of `epoch` from `from_view` on (plus the epoch's ending finalization).
    Certificates { epoch: Epoch, from_view: View },
    /// The verified votes peers hold for one view.
    Votes { epoch: Epoch, view: View },
    /// Blocks by root (answer with `Input::Blocks`).
    BlocksByRoot(Vec<Root>),
    /// Finalized blocks by height (answer with `Input::Blocks`).
    BlocksByRange { start_height: Height, count: u64 },
}

/// Why a view was entered (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryCause {
    /// The epoch started (genesis, an epoch switch, or the first tick after a restart).
    EpochStart,
    /// The previous view was notarized (or finalized).
    Notarized,
    /// The previous view was nullified.
    Nullified,
    /// A certificate for a view ahead of ours (catch-up).
    CatchUp,
}

/// Something the caller must do, in order. See the module doc for the persistence contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Durably store this own vote before executing any later action of the batch.
    PersistVote(SignedVote),
    BroadcastProposal(SignedProposal),
    BroadcastVote(SignedVote),
    BroadcastCertificate(Certificate),
    /// The verdict on a raw vote that was handed in (exactly once per raw vote).
    VoteChecked {
        vote: SignedVote,
        verdict: Verdict,
    },
    /// A certificate is now held, built here from the pool (`local`) or received (store it:
    /// restart replays it, and peers may ask for it).
    Certified {
        certificate: Certificate,
        local: bool,
    },
    /// `block` is final; `certificate` is the finalization certificate of it or of a
    /// descendant (blocks are emitted in height order, each exactly once).
    Finalized {
        root: Root,
        block: Block,
        certificate: Certificate,
        /// The block's post-state when it ends its epoch (what an on-chain light client needs
        /// to take over the next operator set); `None` otherwise.
        epoch_end: Option<Box<ChainState>>,
    },
    /// A new epoch started with this operator set.
    EpochChanged {
        epoch: Epoch,
        operators: OperatorSet,
    },
    /// A block worth keeping before it is final (a proposal this node judged valid or made, a
    /// block it fetched): store it so it can be served by root and replayed after a restart.
    StoreBlock {
        root: Root,
        block: Block,
    },
    /// Ask peers; the answers come back as inputs.
    Request(Request),
    /// An operator signed two votes an honest operator never signs together.
    Evidence(Evidence),
    /// The node entered a view (for logs and metrics).
    EnteredView {
        epoch: Epoch,
        view: View,
        cause: EntryCause,
    },
    /// The engine cannot go on (a finalized epoch-ending block whose operator set this node
    /// cannot load); it stays where it is. Report it loudly.
    Halted {
        reason: String,
    },
}

/// The last finalized block the engine starts from (genesis on a fresh start).
#[derive(Debug, Clone)]
pub struct Anchor {
    pub block: Block,
    /// State after `block`.
    pub state: ChainState,
    /// Finalization certificate whose data names `block` (None only for the genesis block).
    pub certificate: Option<Certificate>,
}

impl Anchor {
    /// The genesis block and state (a fresh start).
    pub fn genesis(genesis: &GenesisConfig) -> Result<Self, ConsensusError> {
        Ok(Self {
            block: genesis_block(genesis)?,
            state: genesis_state(genesis),
            certificate: None,
        })
    }

    /// The view below which nothing of the anchor's epoch is needed any more: the view of the
    /// anchor's certificate when it sits inside its epoch, 0 when it starts one.
    pub fn floor_view(&self) -> View {
        if self.block.height == Height::ZERO || self.state.ends_epoch() {
            View::ZERO
        } else {
            self.certificate.as_ref().map_or(View::ZERO, |c| c.data.view)
        }
    }

    /// The epoch the engine runs after this anchor.
    pub fn epoch(&self) -> Result<Epoch, ConsensusError> {
        Ok(child_base(&self.state)?.epoch)
    }
}

/// What the node stored, replayed at restart.
#[derive(Debug, Clone, Default)]
pub struct Persisted {
    /// Own votes persisted through `Action::PersistVote`: every one of the anchor's epoch from
    /// the anchor's floor view on, and every one of later epochs.
    pub own_votes: Vec<SignedVote>,
    /// Stored certificates (notarizations, nullifications, finalizations), in key order.
    pub certificates: Vec<Certificate>,
    /// Stored non-final blocks.
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ViewState {
    /// Root of the first proposal from the leader that we judged (valid or not).
    pub(crate) proposal: Option<Root>,
    /// That proposal was judged valid (or we made it).
    pub(crate) proposal_valid: bool,
    /// We (as leader) proposed in this view.
    pub(crate) proposed: bool,
    pub(crate) notarization: Option<Certificate>,
    pub(crate) nullification: Option<Certificate>,
    pub(crate) finalization: Option<Certificate>,
    pub(crate) voted_notarize: Option<Root>,
    pub(crate) voted_nullify: bool,
    pub(crate) voted_finalize: Option<Root>,
}

impl ViewState {
    /// Root notarized in this view; a finalization certificate implies one (honest voters
    /// finalize only after a notarization, and every quorum holds honest power).
    pub(crate) fn notarized_root(&self) -> Option<Root> {
        self.notarization.as_ref().or(self.finalization.as_ref()).map(|c| c.data.block_root)
    }
    pub(crate) fn has_certificate(&self) -> bool {
        self.notarized_root().is_some() || self.nullification.is_some()
    }
}

/// Per-epoch state: one Simplex instance.
#[derive(Debug, Clone)]
pub(crate) struct EpochState {
    pub(crate) epoch: Epoch,
    pub(crate) table: Arc<KeyTable>,
    pub(crate) me: Option<OperatorIndex>,
    /// Parent of the epoch's first block: the previous epoch's final block (or genesis).
    pub(crate) genesis_root: Root,
    pub(crate) view: View,
    /// When the current view was entered; `None` until the first input at or after the
    /// epoch's start.
    pub(crate) entered_at_ms: Option<u64>,
    /// Rule 3's pace of the current view, fixed when it was entered.
    pub(crate) pace_ms: Option<u64>,
    /// Consecutive views before the current one that were left on a nullification (rule 5's
    /// back-off).
    pub(crate) nullified_streak: u32,
    /// When this view last pulled what it lacks (rule: section 10, stalled view).
    pub(crate) last_pull_ms: Option<u64>,
    pub(crate) views: BTreeMap<View, ViewState>,
    /// Views below this were pruned after finality: nothing is accepted or voted there any
    /// more (their vote records are gone, so voting there could contradict an old vote).
    pub(crate) floor: View,
    /// Finalization certificate that started this epoch (None for epoch 0).
    pub(crate) start_certificate: Option<Certificate>,
    /// Certificates built here and not yet published (published when the aggregator flag is
    /// on: at once, or at its first tick).
    pub(crate) unpublished: BTreeMap<VoteData, Certificate>,
}

impl EpochState {
    fn new(
        epoch: Epoch,
        table: KeyTable,
        pubkey: &[u8; 48],
        genesis_root: Root,
        start_certificate: Option<Certificate>,
    ) -> Self {
        Self {
            epoch,
            me: table.index_of(pubkey),
            table: Arc::new(table),
            genesis_root,
            view: View::ZERO,
            entered_at_ms: None,
            pace_ms: None,
            nullified_streak: 0,
            last_pull_ms: None,
            views: BTreeMap::new(),
            floor: View::ZERO,
            start_certificate,
            unpublished: BTreeMap::new(),
        }
    }
}

/// A finalization waiting for ancestor blocks: the chain walked down from the certified block
/// so far (each root present in `blocks`), so new blocks continue the walk instead of
/// restarting it.
#[derive(Debug, Clone)]
pub(crate) struct PendingFinality {
    pub(crate) certificate: Certificate,
    /// Roots from the certified block downwards, every one present in `blocks`.
    pub(crate) chain: Vec<Root>,
}

/// The consensus engine of one node.
pub struct Engine {
    pub(crate) timing: Timing,
    pub(crate) digest: NetworkDigest,
    pub(crate) key: SecretKey,
    pub(crate) pubkey: [u8; 48],
    pub(crate) registry: TaskRegistry,
    pub(crate) now_ms: u64,
    pub(crate) is_aggregator: bool,
    pub(crate) ep: EpochState,
    pub(crate) blocks: BTreeMap<Root, Block>,
    /// Post-states of blocks whose parent chain is known.
    pub(crate) states: BTreeMap<Root, ChainState>,
    pub(crate) finalized_root: Root,
    pub(crate) finalized_height: Height,
    /// Certificate proving `finalized_root` final (None at genesis).
    pub(crate) finalized_certificate: Option<Certificate>,
    pub(crate) pending_finality: Option<PendingFinality>,
    /// First verified proposal per view (current view and ahead) awaiting judgement.
    pub(crate) pending_proposals: BTreeMap<View, SignedProposal>,
    /// Block roots requested and not yet received.
    pub(crate) wanted: BTreeSet<Root>,
    /// Heights below which a range request is outstanding (`blocks_by_range` answers accepted).
    pub(crate) range_wanted: Option<(Height, Height)>,
    pub(crate) pool: Pool,
    /// Own votes of epochs after the current one (restored when the epoch starts).
    pub(crate) future_own_votes: Vec<SignedVote>,
    /// When the last justification pull was asked for (at most one per advance timeout).
    pub(crate) last_justification_pull_ms: Option<u64>,
    /// True while `restart` replays stored data: no vote is cast and nothing is published.
    pub(crate) replaying: bool,
    /// Time at which the last new certificate was accepted (for health: stops moving when
    /// the network stops certifying).
    pub(crate) last_certificate_ms: Option<u64>,
    /// Highest view certified during replay: the view the node resumes after.
    pub(crate) replayed_view: Option<View>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("epoch", &self.ep.epoch)
            .field("view", &self.ep.view)
            .field("finalized_height", &self.finalized_height)
            .finish()
    }
}

impl Engine {
    /// Fresh start from genesis.
    pub fn new(
        config: EngineConfig,
        key: SecretKey,
        registry: TaskRegistry,
    ) -> Result<Self, ConsensusError> {
        let anchor = Anchor::genesis(&config.genesis)?;
        Self::restart(config, key, registry, anchor, Persisted::default())
    }

    /// Start from the last finalized block and replay what the node persisted. Own votes
    /// become guards (the engine never casts a vote contradicting one of them) and enter the
    /// pool (a restarted node's own vote still counts towards its certificates).
    pub fn restart(
        config: EngineConfig,
        key: SecretKey,
        registry: TaskRegistry,
        anchor: Anchor,
        persisted: Persisted,
    ) -> Result<Self, ConsensusError> {
        let timing =
            Timing::new(&config.genesis, config.leader_timeout_ms, config.advance_timeout_ms)?;
        let digest = network_digest(&config.genesis)?;
        let anchor_root = anchor.block.root()?;
        crate::state::check_state_root(&anchor.block, &anchor.state)?;
        let pubkey = key.public_key().to_bytes();
        // The anchor either starts the epoch (genesis, or it ended the previous epoch) or sits
        // inside it, finalized at the view its certificate names.
        let starts_epoch = anchor.block.height == Height::ZERO || anchor.state.ends_epoch();
        let base = child_base(&anchor.state)?;
        let epoch = base.epoch;
        let table = KeyTable::new(epoch, &base.operators, digest)?;
        let mut ep = EpochState::new(epoch, table, &pubkey, anchor_root, None);
        if starts_epoch {
            ep.start_certificate = anchor.certificate.clone();
        } else {
            let cert = anchor
                .certificate
                .clone()
                .filter(|c| c.data.block_root == anchor_root && c.data.epoch == epoch)
                .ok_or_else(|| {
                    ConsensusError::Config(
                        "mid-epoch anchor needs its finalization certificate".into(),
                    )
                })?;
            crate::verify::verify_certificate(&ep.table, &cert)?;
            let view = cert.data.view;
            ep.floor = view;
            ep.view = view.saturating_add(1);
            ep.views.entry(view).or_default().finalization = Some(cert);
            ep.genesis_root = [0; 32];
        }
        let mut engine = Self {
            timing,
            digest,
            key,
            pubkey,
            registry,
            now_ms: 0,
            is_aggregator: false,
            ep,
            blocks: BTreeMap::from([(anchor_root, anchor.block.clone())]),
            states: BTreeMap::from([(anchor_root, anchor.state.clone())]),
            finalized_root: anchor_root,
            finalized_height: anchor.block.height,
            finalized_certificate: anchor.certificate.clone(),
            pending_finality: None,
            pending_proposals: BTreeMap::new(),
            wanted: BTreeSet::new(),
            range_wanted: None,
            pool: Pool::default(),
            future_own_votes: Vec::new(),
            last_justification_pull_ms: None,
            replaying: true,
            last_certificate_ms: None,
            replayed_view: None,
        };
        // Own votes of the current epoch are guards now; later epochs' wait for their switch.
        for vote in persisted.own_votes {
            if vote.data.epoch > engine.ep.epoch {
                engine.future_own_votes.push(vote);
            } else if vote.data.epoch == engine.ep.epoch {
                engine.restore_own_vote(&vote);
            }
        }
        for block in persisted.blocks {
            if let (true, Ok(root)) = (block.height > engine.finalized_height, block.root()) {
                engine.blocks.insert(root, block);
            }
        }
        // Replay publishes nothing: the restarted node resumes on its own schedule. Replay may
        // switch epochs; the switch restores that epoch's own votes from `future_own_votes`.
        let mut ignored = Vec::new();
        for cert in persisted.certificates {
            if cert.data.epoch == engine.ep.epoch {
                engine.on_certificate(Incoming::Raw(cert), &mut ignored);
            }
        }
        engine.replaying = false;
        if let Some(view) = engine.replayed_view.take().and_then(|v| v.checked_add(1))
            && view > engine.ep.view
        {
            engine.ep.view = view;
        }
        Ok(engine)
    }

    /// Process one input at `now_ms` (the caller's clock); execute the returned actions in
    /// order.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        // Time never goes backwards inside the engine, whatever the caller's clock does.
        self.now_ms = self.now_ms.max(now_ms);
        let mut tick = None;
        match input {
            Input::Tick { is_aggregator } => {
                self.is_aggregator = is_aggregator;
                tick = Some(is_aggregator);
            }
            Input::Proposal(p) => self.on_proposal(p, &mut out),
            Input::Vote { vote, is_aggregator } => {
                self.is_aggregator = is_aggregator;
                self.on_vote(vote, &mut out);
            }
            Input::Certificate(c) => self.on_certificate(c, &mut out),
            Input::Blocks(blocks) => self.on_blocks(blocks, &mut out),
        }
        // Deadlines are checked after every input, not only on ticks: a late tick never
        // delays a timeout past the input that reveals it.
        self.on_time(&mut out);
        if let Some(is_aggregator) = tick
            && is_aggregator
        {
            self.publish_unpublished(&mut out);
        }
        out
    }

    // ----- read-only accessors for the node -----

    pub fn epoch(&self) -> Epoch {
        self.ep.epoch
    }
    pub fn view(&self) -> View {
        self.ep.view
    }
    /// Lowest view of the current epoch still open (views below were pruned after finality).
    pub fn floor(&self) -> View {
        self.ep.floor
    }
    /// Key table of the current epoch (share it with verification workers).
    pub fn key_table(&self) -> Arc<KeyTable> {
        Arc::clone(&self.ep.table)
    }
    /// This node's operator index in the current epoch, if it is a member.
    pub fn operator_index(&self) -> Option<OperatorIndex> {
        self.ep.me
    }
    pub fn finalized(&self) -> (Root, Height) {
        (self.finalized_root, self.finalized_height)
    }
    /// The last finalized block with its state and certificate: what the node stores to
    /// restart from (`Engine::restart`).
    pub fn anchor(&self) -> Option<Anchor> {
        Some(Anchor {
            block: self.blocks.get(&self.finalized_root)?.clone(),
            state: self.states.get(&self.finalized_root)?.clone(),
            certificate: self.finalized_certificate.clone(),
        })
    }
    /// State after the last finalized block.
    pub fn finalized_state(&self) -> Option<&ChainState> {
        self.states.get(&self.finalized_root)
    }
    pub fn network_digest(&self) -> NetworkDigest {
        self.digest
    }
    /// Time at which the last new certificate was accepted.
    pub fn last_certificate_at_ms(&self) -> Option<u64> {
        self.last_certificate_ms
    }
    /// `VoteData`s of the current epoch for which a certificate is held (gossip validation
    /// ignores further certificates for them without a pairing).
    pub fn certified(&self) -> BTreeSet<VoteData> {
        let mut out = BTreeSet::new();
        for vs in self.ep.views.values() {
            for cert in
                [&vs.notarization, &vs.nullification, &vs.finalization].into_iter().flatten()
            {
                out.insert(cert.data);
            }
        }
        out
    }
    /// Views of the current epoch for which a verified proposal is held, judged or waiting.
    pub fn proposed_views(&self) -> BTreeSet<View> {
        let judged = self.ep.views.iter().filter(|(_, vs)| vs.proposal.is_some()).map(|(v, _)| *v);
        judged.chain(self.pending_proposals.keys().copied()).collect()
    }
    /// Verified votes this node holds for `view` of the current epoch (answers `votes`).
    pub fn votes_of(&self, epoch: Epoch, view: View) -> Vec<SignedVote> {
        if epoch == self.ep.epoch { self.pool.verified_votes_of(view) } else { Vec::new() }
    }

    pub(crate) fn view_state(&mut self, view: View) -> &mut ViewState {
        self.ep.views.entry(view).or_default()
    }

    /// A persisted own vote of the current epoch: a guard, and a vote in the pool.
    fn restore_own_vote(&mut self, vote: &SignedVote) {
        if vote.data.epoch != self.ep.epoch
            || Some(vote.operator_index) != self.ep.me
            || vote.data.view < self.ep.floor
        {
            return;
        }
        let vs = self.view_state(vote.data.view);
        match vote.data.vote_kind() {
            Some(VoteKind::Notarize) => vs.voted_notarize = Some(vote.data.block_root),
            Some(VoteKind::Nullify) => vs.voted_nullify = true,
            Some(VoteKind::Finalize) => vs.voted_finalize = Some(vote.data.block_root),
            None => return,
        }
        if let Ok(sig) = Signature::from_bytes(vote.signature.as_ref()) {
            let table = Arc::clone(&self.ep.table);
            self.pool.add_verified(&table, vote, sig);
        }
    }
}
