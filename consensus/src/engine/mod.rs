//! The Simplex state machine (docs/protocol.md, "Rules").
//!
//! `Engine::handle(Input) -> Vec<Action>` is the whole interface: inputs are ticks (one per
//! interval boundary of the slot clock, with the aggregator flag read once for the tick),
//! proposals, votes (with the aggregator flag read for that vote), certificates and fetched
//! blocks; outputs are actions the caller executes **in order**. Contract: a
//! `PersistVote(v)` must be durably written (fsync) before the caller executes any later
//! action of the same batch; that is what makes "persist before publish" hold across crashes.
//!
//! No I/O, no clock, no threads, no randomness: time comes in with `Tick`, so two engines fed
//! the same inputs produce the same actions. Submodules: `views` (entering views, timers,
//! re-broadcast), `proposals` (building and checking proposals), `certs` (certificates,
//! finality, epoch switch), `votes` (casting own votes, pooling others').

mod certs;
mod proposals;
mod views;
mod votes;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::bls::SecretKey;
use crate::error::ConsensusError;
use crate::operators::KeyTable;
use crate::pool::{Evidence, Pool};
use crate::signing::{NetworkDigest, network_digest};
use crate::state::{child_base, genesis_block, genesis_state};
use crate::task::TaskRegistry;
use crate::timing::Timing;
use crate::types::{
    Block, Certificate, ChainState, Epoch, GenesisConfig, OperatorIndex, OperatorSet, Root,
    SignedProposal, SignedVote, View, VoteKind,
};
use crate::verify::Incoming;

/// Votes are pooled and accepted for views at most this far behind the current view.
pub const VOTE_WINDOW_BEHIND: u64 = 32;
/// Messages for views more than this far ahead are ignored (cannot judge yet).
pub const VIEW_WINDOW_AHEAD: u64 = 16;

/// Evidence records kept until the node takes them (`Engine::take_evidence`).
pub const MAX_EVIDENCE: usize = 1024;

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub genesis: GenesisConfig,
    /// Intervals after entering a view before voting NULLIFY (brief default: 3).
    pub nullify_timeout_intervals: u64,
}

impl EngineConfig {
    pub fn new(genesis: GenesisConfig) -> Self {
        Self { genesis, nullify_timeout_intervals: 3 }
    }
}

/// An event for the engine.
#[derive(Debug, Clone)]
pub enum Input {
    /// An interval boundary of the slot clock; `is_aggregator` is the flag read once for it.
    Tick {
        now_ms: u64,
        is_aggregator: bool,
    },
    Proposal(Incoming<SignedProposal>),
    /// A gossiped vote; `is_aggregator` is the flag read for this vote.
    Vote {
        vote: Incoming<SignedVote>,
        is_aggregator: bool,
    },
    Certificate(Incoming<Certificate>),
    /// A block obtained by request after a `FetchBlock` action.
    Block(Block),
}

/// Something the caller must do, in order. See the module doc for the persistence contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Durably store this own vote before executing any later action of the batch.
    PersistVote(SignedVote),
    BroadcastProposal(SignedProposal),
    BroadcastVote(SignedVote),
    BroadcastCertificate(Certificate),
    /// A verified NOTARIZE certificate is now held (store it with the block if known).
    Notarized {
        certificate: Certificate,
        block: Option<Block>,
    },
    /// A verified NULLIFY certificate is now held (store it: restart replays it).
    Nullified {
        certificate: Certificate,
    },
    /// `block` is final; `certificate` is the finalization certificate of it or of a
    /// descendant (blocks are emitted in height order, each exactly once).
    Finalized {
        root: Root,
        block: Block,
        certificate: Certificate,
    },
    /// A new epoch started with this operator set.
    EpochChanged {
        epoch: Epoch,
        operators: OperatorSet,
    },
    /// Ask peers for the block with this root, then feed it back as `Input::Block`.
    FetchBlock(Root),
    /// An operator signed two votes an honest operator never signs together.
    Evidence(Evidence),
    /// Deliver a `Tick` no later than this time (unix ms).
    ScheduleWakeup {
        at_ms: u64,
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
}

/// What the node stored, replayed at restart.
#[derive(Debug, Clone, Default)]
pub struct Persisted {
    /// Every own vote persisted through `Action::PersistVote` (at least of the anchor's epoch).
    pub own_votes: Vec<SignedVote>,
    /// Stored certificates (notarizations, nullifications, finalizations).
    pub certificates: Vec<Certificate>,
    /// Stored non-final blocks (notarized or proposed).
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ViewState {
    /// Root of the first valid proposal from the leader (the one we judged).
    pub(crate) proposal: Option<Root>,
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
    /// `None` until the first tick at or after the epoch's start.
    pub(crate) entered_at_ms: Option<u64>,
    pub(crate) views: BTreeMap<View, ViewState>,
    /// Views below this were pruned after finality: nothing is accepted or voted there any
    /// more (their vote records are gone, so voting there could contradict an old vote).
    pub(crate) floor: View,
    /// Finalization certificate that started this epoch (None for epoch 0).
    pub(crate) start_certificate: Option<Certificate>,
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
    pub(crate) finalized_height: u64,
    /// Certificate proving `finalized_root` final (None at genesis).
    pub(crate) finalized_certificate: Option<Certificate>,
    /// A finalization waiting for missing ancestor blocks.
    pub(crate) pending_finality: Option<Certificate>,
    /// First verified proposal per view (current view and ahead) awaiting data.
    pub(crate) pending_proposals: BTreeMap<View, SignedProposal>,
    pub(crate) wanted: BTreeSet<Root>,
    pub(crate) pool: Pool,
    pub(crate) evidence: Vec<Evidence>,
    pub(crate) last_rebroadcast_ms: u64,
    pub(crate) last_old_epoch_help_ms: Option<u64>,
    pub(crate) last_wakeup: Option<u64>,
    /// True while `restart` replays stored data: no vote is cast then (a vote cast during
    /// replay could not be persisted before the caller sees it).
    pub(crate) replaying: bool,
    /// Tick time at which the last new certificate was accepted (for health: with no
    /// aggregator on, this stops moving).
    pub(crate) last_certificate_ms: Option<u64>,
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
    /// become guards: the engine never casts a vote contradicting one of them.
    pub fn restart(
        config: EngineConfig,
        key: SecretKey,
        registry: TaskRegistry,
        anchor: Anchor,
        persisted: Persisted,
    ) -> Result<Self, ConsensusError> {
        let timing = Timing::new(&config.genesis, config.nullify_timeout_intervals)?;
        let digest = network_digest(&config.genesis)?;
        let anchor_root = anchor.block.root()?;
        crate::state::check_state_root(&anchor.block, &anchor.state)?;
        let pubkey = key.public_key().to_bytes();
        // The anchor either starts the epoch (genesis, or it ended the previous epoch) or sits
        // inside it, finalized at the view its certificate names.
        let starts_epoch = anchor.block.height == 0 || anchor.state.ends_epoch();
        let base = child_base(&anchor.state)?;
        let epoch = base.epoch;
        let table = Arc::new(KeyTable::new(epoch, &base.operators, digest)?);
        let mut ep = EpochState {
            epoch,
            me: table.index_of(&pubkey),
            table,
            genesis_root: anchor_root,
            view: 0,
            entered_at_ms: None,
            views: BTreeMap::new(),
            floor: 0,
            start_certificate: None,
        };
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
            pool: Pool::default(),
            evidence: Vec::new(),
            last_rebroadcast_ms: 0,
            last_old_epoch_help_ms: None,
            last_wakeup: None,
            replaying: true,
            last_certificate_ms: None,
        };
        if !starts_epoch {
            // Views up to the anchor's are settled.
            let anchor_view = engine.ep.views.keys().next().copied().unwrap_or(0);
            engine.ep.view = anchor_view.saturating_add(1);
        }
        let persisted_votes = persisted.own_votes;
        for vote in &persisted_votes {
            engine.restore_own_vote(vote);
        }
        for block in persisted.blocks {
            if let (true, Ok(root)) = (block.height > engine.finalized_height, block.root()) {
                engine.blocks.insert(root, block);
            }
        }
        // Replay publishes nothing: the restarted node re-sends on its own schedule.
        let mut ignored = Vec::new();
        for cert in persisted.certificates {
            if cert.data.epoch == engine.ep.epoch {
                engine.on_certificate(Incoming::Raw(cert), &mut ignored);
            }
        }
        engine.replaying = false;
        // Replay may have switched the epoch: restore that epoch's own votes too.
        for vote in &persisted_votes {
            engine.restore_own_vote(vote);
        }
        // Resume after the highest certified view (the first tick enters it).
        let resume = engine
            .ep
            .views
            .iter()
            .rev()
            .find(|(_, vs)| vs.has_certificate())
            .and_then(|(v, _)| v.checked_add(1));
        if let Some(view) = resume.filter(|v| *v > engine.ep.view) {
            engine.ep.view = view;
        }
        Ok(engine)
    }

    /// Process one input; execute the returned actions in order.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Tick { now_ms, is_aggregator } => self.on_tick(now_ms, is_aggregator, &mut out),
            Input::Proposal(p) => self.on_proposal(p, &mut out),
            Input::Vote { vote, is_aggregator } => {
                self.is_aggregator = is_aggregator;
                self.on_vote(vote, is_aggregator, &mut out);
            }
            Input::Certificate(c) => self.on_certificate(c, &mut out),
            Input::Block(b) => self.on_block(b, &mut out),
        }
        self.after_event(&mut out);
        out
    }

    // ----- read-only accessors for the node -----

    pub fn epoch(&self) -> Epoch {
        self.ep.epoch
    }
    pub fn view(&self) -> View {
        self.ep.view
    }
    /// Key table of the current epoch (share it with verification workers).
    pub fn key_table(&self) -> Arc<KeyTable> {
        Arc::clone(&self.ep.table)
    }
    /// This node's operator index in the current epoch, if it is a member.
    pub fn operator_index(&self) -> Option<OperatorIndex> {
        self.ep.me
    }
    pub fn finalized(&self) -> (Root, u64) {
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
    /// Equivocation evidence recorded so far.
    pub fn evidence(&self) -> &[Evidence] {
        &self.evidence
    }
    /// Time (of the latest tick) at which the last new certificate was accepted.
    pub fn last_certificate_at_ms(&self) -> Option<u64> {
        self.last_certificate_ms
    }
    /// Hand the recorded evidence to the caller (for storage or reporting) and forget it.
    pub fn take_evidence(&mut self) -> Vec<Evidence> {
        std::mem::take(&mut self.evidence)
    }

    pub(crate) fn view_state(&mut self, view: View) -> &mut ViewState {
        self.ep.views.entry(view).or_default()
    }

    fn restore_own_vote(&mut self, vote: &SignedVote) {
        if vote.data.epoch != self.ep.epoch || Some(vote.operator_index) != self.ep.me {
            return;
        }
        let vs = self.view_state(vote.data.view);
        match vote.data.vote_kind() {
            Some(VoteKind::Notarize) => vs.voted_notarize = Some(vote.data.block_root),
            Some(VoteKind::Nullify) => vs.voted_nullify = true,
            Some(VoteKind::Finalize) => vs.voted_finalize = Some(vote.data.block_root),
            None => {}
        }
    }
}
