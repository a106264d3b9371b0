//! The node's consensus core, without I/O of its own: the [`Engine`], the store it persists
//! into, the sync client, and the bookkeeping between them and the network.
//!
//! Everything that happens to a node arrives here as a method call with the caller's clock
//! reading (a tick, a checked gossip message, a response, a peer connecting) and leaves as a
//! list of [`Effect`]s for the caller to carry out (publish, report a gossip verdict, send a
//! request, hand a finalized block to its subscribers). The store is written here, in the
//! order of the engine's actions: an own vote is fsynced before the call returns the effect
//! that publishes it, so the caller may run effects whenever it likes (persist before publish).
//!
//! The real node drives a `Core` from its loop (`crate::node`); the production-path simulator
//! (`crate::sim`) drives many of them over a simulated network. Both go through exactly this
//! code, gossip validation (`crate::gossip`) and the sync server (`crate::sync::server`)
//! included.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use anyhow::Context;
use avs_consensus::bls::SecretKey;
use avs_consensus::gossip::GossipContext;
use avs_consensus::types::{
    Block, Certificate, ChainState, Epoch, Height, OperatorIndex, OperatorSet, Root,
    SignedProposal, SignedVote, View, VoteKind, encode,
};
use avs_consensus::verify::{Incoming, Verified, verify_certificate};
use avs_consensus::{
    Action, Engine, EngineConfig, EntryCause, Input, KeyTable, Request, TaskRegistry, Verdict,
};
use avs_p2p::{MessageId, PeerId, ReqRespProtocol, ResponseChunk, TopicKind, ValidationOutcome};
use sha2::{Digest, Sha256};
use ssz_rs::prelude::List;

use crate::chain_store::ChainStore;
use crate::gossip::outcome;
use crate::metrics::NodeMetrics;
use crate::status::NodeStatus;
use crate::store::WriteBatch;
use crate::sync::client::{Purpose, SyncClient};
use crate::sync::{
    BlocksByRangeRequest, BlocksByRootRequest, CertificatesRequest, MAX_CERTIFICATES_PER_RESPONSE,
    StatusMessage, VotesRequest, decode_chunks, server,
};

/// How often a node asks a peer for its status (catch-up probe).
pub const STATUS_PROBE_MS: u64 = 2_000;
/// Peers asked at once when a stalled view pulls votes and certificates.
pub const REPAIR_FANOUT: usize = 2;
/// Raw votes awaiting their verdict, at most (they are bounded by the engine's pool; this is a
/// second fence).
const MAX_VOTE_SOURCES: usize = 1 << 16;

/// The vote subnet an operator publishes its votes on.
pub fn vote_subnet(operator_index: u64, subnets: u64) -> u64 {
    operator_index.checked_rem(subnets).unwrap_or(0)
}

/// A block the node finalized, with the certificate that proves it (its own finalization
/// certificate, or a descendant's when it was finalized as an ancestor).
#[derive(Debug, Clone)]
pub struct FinalizedEvent {
    pub root: Root,
    pub block: Block,
    pub certificate: Certificate,
    /// The block's post-state when it ends its epoch.
    pub epoch_end: Option<Arc<ChainState>>,
    /// The operator set of the block's epoch (its performer indices and the certificate's
    /// signers refer to it).
    pub operators: Arc<OperatorSet>,
}

/// A gossip message that passed the checks of `crate::gossip` off the loop.
#[derive(Debug, Clone)]
pub enum Checked {
    /// Cheap-checked only: its signature is checked lazily by the engine's pool.
    Vote(SignedVote),
    Certificate(Verified<Certificate>),
    Proposal(Verified<SignedProposal>),
}

/// Something the caller must do.
#[derive(Debug, Clone)]
pub enum Effect {
    Publish {
        kind: TopicKind,
        data: Vec<u8>,
    },
    /// The verdict on a gossip message handed in earlier.
    Verdict {
        id: MessageId,
        peer: PeerId,
        outcome: ValidationOutcome,
    },
    /// Send a request; answer with [`Core::on_response`] and the same id.
    Request {
        id: u64,
        peer: PeerId,
        protocol: ReqRespProtocol,
        data: Vec<u8>,
    },
    /// This node proposed (for the task logs).
    Proposed(Arc<SignedProposal>),
    Finalized(Arc<FinalizedEvent>),
    /// A new epoch's operator set is in force.
    EpochChanged(Arc<KeyTable>),
    /// A peer answered a request with something invalid.
    PeerMisbehaved {
        peer: PeerId,
        reason: String,
    },
}

/// Where a raw vote came from, until its verdict.
#[derive(Debug, Clone)]
enum Source {
    Gossip { id: MessageId, peer: PeerId },
    Peer(PeerId),
}

/// What a core is built from.
pub struct CoreConfig {
    pub engine: EngineConfig,
    pub key: SecretKey,
    pub registry: TaskRegistry,
    /// Seed of the peer choice (any value; the simulator fixes it).
    pub seed: u64,
    pub vote_subnets: u64,
}

/// The consensus core of one node.
pub struct Core {
    engine: Engine,
    chain: ChainStore,
    sync: SyncClient,
    metrics: NodeMetrics,
    vote_subnets: u64,
    vote_sources: HashMap<[u8; 32], Source>,
    context: Arc<GossipContext>,
    effects: Vec<Effect>,
    last_status_probe_ms: u64,
    last_later_epoch_pull_ms: Option<u64>,
    last_certificate_ms: Option<u64>,
    last_finalized_ms: Option<u64>,
    /// When this node voted NOTARIZE in its most recent views, `(epoch, view, at_ms)`, newest
    /// last: a finalization's latency is measured from this node accepting the block (not from
    /// entering the view, which includes the leader's wait for its slot).
    notarized: VecDeque<(Epoch, View, u64)>,
    last_finality_latency_ms: Option<u64>,
    halted: Option<String>,
    /// The AVS tasks, whose finalized records are written in the finality's own batch.
    avs: Option<Arc<crate::avs::AvsTasks>>,
    automation: Option<Arc<crate::automation::Automation>>,
    /// The operator set of the epoch the actions being executed belong to (a finality comes
    /// before the epoch switch it causes): what each `FinalizedEvent` carries.
    epoch_operators: Arc<OperatorSet>,
}

/// Own NOTARIZE times kept for the finality latency (a finalization comes at most a few views
/// after its block's view on a live network).
const NOTARIZED_VIEWS_KEPT: usize = 16;

fn vote_key(vote: &SignedVote) -> [u8; 32] {
    let bytes = encode(vote).unwrap_or_default();
    Sha256::digest(bytes).into()
}

impl Core {
    /// Opens the core on a store: restarts from its anchor and persisted data, or from genesis
    /// on an empty store.
    pub fn open(
        chain: ChainStore,
        config: CoreConfig,
        metrics: NodeMetrics,
    ) -> anyhow::Result<Self> {
        let engine = match chain.load_restart()? {
            Some((anchor, persisted)) => {
                tracing::info!(
                    height = %anchor.block.height,
                    own_votes = persisted.own_votes.len(),
                    certificates = persisted.certificates.len(),
                    blocks = persisted.blocks.len(),
                    "resuming from the store"
                );
                Engine::restart(config.engine, config.key, config.registry, anchor, persisted)
            }
            None => Engine::new(config.engine, config.key, config.registry),
        }
        .map_err(|e| anyhow::anyhow!("starting the consensus engine: {e}"))?;
        let context = Arc::new(engine.gossip_context());
        let epoch_operators = Arc::new(engine.key_table().operator_set().clone());
        Ok(Self {
            epoch_operators,
            avs: None,
            automation: None,
            engine,
            chain,
            sync: SyncClient::new(config.seed),
            metrics,
            vote_subnets: config.vote_subnets.max(1),
            vote_sources: HashMap::new(),
            context,
            effects: Vec::new(),
            last_status_probe_ms: 0,
            last_later_epoch_pull_ms: None,
            last_certificate_ms: None,
            last_finalized_ms: None,
            notarized: VecDeque::with_capacity(NOTARIZED_VIEWS_KEPT),
            last_finality_latency_ms: None,
            halted: None,
        })
    }

    /// Writes the AVS task records of each finalized block in the same batch as the finality,
    /// so a crash cannot leave a finalized task pending.
    pub fn set_avs(&mut self, avs: Arc<crate::avs::AvsTasks>) {
        self.avs = Some(avs);
    }

    /// Applies the automation requests of each finalized block in the same batch as the
    /// finality: every node's automation table follows the finalized chain exactly.
    pub fn set_automation(&mut self, automation: Arc<crate::automation::Automation>) {
        self.automation = Some(automation);
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn chain(&self) -> &ChainStore {
        &self.chain
    }

    /// The snapshot gossip validation checks against (rebuilt when the engine moves).
    pub fn context(&self) -> Arc<GossipContext> {
        Arc::clone(&self.context)
    }

    /// When to call [`Core::tick`] next at the latest.
    pub fn next_wakeup(&self) -> Option<u64> {
        let probe = self.last_status_probe_ms.saturating_add(STATUS_PROBE_MS);
        Some(self.engine.next_deadline().map_or(probe, |d| d.min(probe)))
    }

    /// The node's status for the API.
    pub fn status(&self, is_aggregator: bool) -> NodeStatus {
        let (root, height) = self.engine.finalized();
        NodeStatus {
            epoch: self.engine.epoch().get(),
            view: self.engine.view().get(),
            finalized_height: height.get(),
            finalized_root: format!("0x{}", hex::encode(root)),
            peers: u64::try_from(self.sync.peer_count()).unwrap_or(u64::MAX),
            is_aggregator,
            operator_index: self.engine.operator_index().map(OperatorIndex::get),
            last_certificate_ms: self.last_certificate_ms,
            last_finalized_ms: self.last_finalized_ms,
            nullified_views: self.metrics.nullified_views.get(),
            last_finality_latency_ms: self.last_finality_latency_ms,
            halted: self.halted.clone(),
        }
    }

    /// An interval boundary of the slot clock, or a deadline from [`Core::next_wakeup`].
    pub fn tick(&mut self, now_ms: u64, is_aggregator: bool) -> anyhow::Result<Vec<Effect>> {
        if now_ms >= self.last_status_probe_ms.saturating_add(STATUS_PROBE_MS) {
            self.last_status_probe_ms = now_ms;
            if let Some(peer) = self.sync.pick(1, &[]).pop() {
                self.request_status(peer);
            }
        }
        self.feed(now_ms, Input::Tick { is_aggregator })?;
        Ok(self.take_effects())
    }

    /// A gossip message that passed the checks off the loop. Votes get their verdict when
    /// their signature check resolves; the rest are accepted now (they were verified).
    pub fn on_gossip(
        &mut self,
        now_ms: u64,
        checked: Checked,
        id: MessageId,
        peer: PeerId,
        is_aggregator: bool,
    ) -> anyhow::Result<Vec<Effect>> {
        match checked {
            Checked::Vote(vote) => {
                self.feed_raw_vote(now_ms, vote, Source::Gossip { id, peer }, is_aggregator)?
            }
            Checked::Certificate(cert) => {
                self.effects.push(Effect::Verdict { id, peer, outcome: ValidationOutcome::Accept });
                self.feed(now_ms, Input::Certificate(Incoming::Verified(cert)))?;
            }
            Checked::Proposal(proposal) => {
                let view = proposal.inner().message.view;
                self.effects.push(Effect::Verdict { id, peer, outcome: ValidationOutcome::Accept });
                self.feed(now_ms, Input::Proposal(Incoming::Verified(proposal)))?;
                // A held proposal makes any other for its view ignorable before its pairing
                // (unless `execute` already rebuilt the context because the view moved).
                if !self.context.proposed.contains(&view) {
                    self.context = Arc::new(self.engine.gossip_context());
                }
            }
        }
        Ok(self.take_effects())
    }

    /// Gossip of a later epoch from `peer`: we are behind; ask it for our epoch's certificates
    /// (at most once per status period).
    pub fn on_later_epoch(&mut self, now_ms: u64, peer: PeerId) -> Vec<Effect> {
        let due = self
            .last_later_epoch_pull_ms
            .is_none_or(|t| now_ms >= t.saturating_add(STATUS_PROBE_MS));
        if due && self.sync.is_connected(&peer) {
            self.last_later_epoch_pull_ms = Some(now_ms);
            self.request_certificates(peer);
        }
        self.take_effects()
    }

    pub fn peer_connected(&mut self, peer: PeerId) -> Vec<Effect> {
        self.sync.connected(peer);
        self.request_status(peer);
        self.take_effects()
    }

    pub fn peer_disconnected(&mut self, peer: &PeerId) {
        self.sync.disconnected(peer);
    }

    /// Answers a peer's request.
    pub fn answer(&self, protocol: ReqRespProtocol, request: &[u8]) -> Vec<ResponseChunk> {
        server::answer(&self.chain, &self.engine, protocol, request)
    }

    /// The answer to request `id` (or why there is none).
    pub fn on_response(
        &mut self,
        now_ms: u64,
        id: u64,
        result: Result<Vec<ResponseChunk>, String>,
        is_aggregator: bool,
    ) -> anyhow::Result<Vec<Effect>> {
        let Some(flight) = self.sync.finish(id) else { return Ok(self.take_effects()) };
        let peer = flight.peer;
        let chunks = match result {
            Ok(chunks) => chunks,
            Err(reason) => {
                tracing::debug!(%peer, purpose = ?flight.purpose, %reason, "request failed");
                self.retry_elsewhere(flight.purpose, peer);
                return Ok(self.take_effects());
            }
        };
        match flight.purpose {
            Purpose::Status => match decode_chunks::<StatusMessage>(chunks) {
                Ok(mut s) if s.len() == 1 => {
                    let theirs = s.remove(0);
                    let ours = server::status_of(&self.engine);
                    let ahead = theirs.epoch > ours.epoch
                        || (theirs.epoch == ours.epoch && theirs.view > ours.view)
                        || theirs.finalized_height > ours.finalized_height;
                    if ahead {
                        tracing::debug!(
                            %peer,
                            our_view = %ours.view,
                            their_view = %theirs.view,
                            their_epoch = %theirs.epoch,
                            their_finalized = %theirs.finalized_height,
                            "peer is ahead; asking for certificates"
                        );
                        self.request_certificates(peer);
                    }
                }
                _ => self.misbehaved(peer, "bad status answer"),
            },
            Purpose::Certificates { epoch, from_view } => {
                match decode_chunks::<Certificate>(chunks) {
                    Ok(certs) => self.take_certificates(now_ms, peer, epoch, from_view, certs)?,
                    Err(e) => self.misbehaved(peer, &format!("bad certificates answer: {e}")),
                }
            }
            Purpose::Votes => match decode_chunks::<SignedVote>(chunks) {
                Ok(votes) => {
                    for vote in votes {
                        self.feed_raw_vote(now_ms, vote, Source::Peer(peer), is_aggregator)?;
                    }
                }
                Err(e) => self.misbehaved(peer, &format!("bad votes answer: {e}")),
            },
            purpose @ (Purpose::BlocksByRoot { .. } | Purpose::BlocksByRange { .. }) => {
                match decode_chunks::<Block>(chunks) {
                    Ok(blocks) if !blocks.is_empty() => {
                        self.feed(now_ms, Input::Blocks(blocks))?;
                    }
                    Ok(_) => self.retry_elsewhere(purpose, peer),
                    Err(e) => {
                        self.misbehaved(peer, &format!("bad blocks answer: {e}"));
                        self.retry_elsewhere(purpose, peer);
                    }
                }
            }
        }
        Ok(self.take_effects())
    }

    /// A `certificates` answer, checked against what was asked (review H4): at most 256, all
    /// of the asked epoch, from the asked view on, in strictly increasing (view, kind) order.
    /// Certificates already held cost nothing; the others are verified in order and the first
    /// that fails ends the answer (one wasted pairing at most) and marks the peer.
    fn take_certificates(
        &mut self,
        now_ms: u64,
        peer: PeerId,
        epoch: Epoch,
        from_view: View,
        certs: Vec<Certificate>,
    ) -> anyhow::Result<()> {
        if let Err(reason) = check_certificates_answer(epoch, from_view, &certs) {
            self.misbehaved(peer, &format!("certificates answer: {reason}"));
            return Ok(());
        }
        if epoch != self.engine.epoch() {
            return Ok(()); // We moved on while it was in flight: nothing to learn from it.
        }
        let held = self.engine.certified();
        for cert in certs.into_iter().filter(|c| !held.contains(&c.data)) {
            if cert.data.epoch != self.engine.epoch() {
                break; // An epoch-ending finalization switched the epoch just now.
            }
            match verify_certificate(&self.engine.key_table(), &cert) {
                Ok(verified) => {
                    self.feed(now_ms, Input::Certificate(Incoming::Verified(verified)))?
                }
                Err(e) => {
                    self.misbehaved(peer, &format!("certificates answer: {e}"));
                    break;
                }
            }
        }
        Ok(())
    }

    fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn misbehaved(&mut self, peer: PeerId, reason: &str) {
        tracing::debug!(%peer, %reason, "peer answered with garbage");
        self.effects.push(Effect::PeerMisbehaved { peer, reason: reason.to_owned() });
    }

    fn feed_raw_vote(
        &mut self,
        now_ms: u64,
        vote: SignedVote,
        source: Source,
        is_aggregator: bool,
    ) -> anyhow::Result<()> {
        let key = vote_key(&vote);
        if self.vote_sources.contains_key(&key) || self.vote_sources.len() >= MAX_VOTE_SOURCES {
            // The same vote is already waiting for its check: this copy adds nothing.
            self.verdict_for(source, Verdict::Ignore);
            return Ok(());
        }
        self.vote_sources.insert(key, source);
        self.feed(now_ms, Input::Vote { vote: Incoming::Raw(vote), is_aggregator })
    }

    fn verdict_for(&mut self, source: Source, verdict: Verdict) {
        match source {
            Source::Gossip { id, peer } => {
                self.effects.push(Effect::Verdict { id, peer, outcome: outcome(verdict) })
            }
            Source::Peer(peer) if verdict == Verdict::Reject => {
                self.misbehaved(peer, "a vote with a bad signature in a votes answer")
            }
            Source::Peer(_) => {}
        }
    }

    /// Hands one input to the engine and carries out its actions, in order.
    fn feed(&mut self, now_ms: u64, input: Input) -> anyhow::Result<()> {
        let actions = self.engine.handle(now_ms, input);
        self.execute(now_ms, actions)
    }

    /// Runs the engine's actions in order. An own vote is fsynced, after everything stored
    /// before it in this batch, before anything after it runs; a failed vote write is an error
    /// that stops the node rather than risk publishing a vote it did not keep.
    fn execute(&mut self, now_ms: u64, actions: Vec<Action>) -> anyhow::Result<()> {
        let mut batch = WriteBatch::new();
        let mut finalized_any = false;
        let mut moved = false;
        let mut last_finalization: Option<Certificate> = None;
        for action in actions {
            match action {
                Action::PersistVote(vote) => {
                    if finalized_any && let Some(anchor) = self.engine.anchor() {
                        self.chain.put_anchor(&mut batch, &anchor)?;
                    }
                    // Everything stored so far in this batch goes first: it is older.
                    self.chain.write(std::mem::take(&mut batch))?;
                    self.chain
                        .persist_vote(&vote)
                        .context("persisting an own vote failed; stopping before it is sent")?;
                    self.metrics.votes_persisted.inc();
                    if vote.data.vote_kind() == Some(VoteKind::Notarize) {
                        if self.notarized.len() == NOTARIZED_VIEWS_KEPT {
                            self.notarized.pop_front();
                        }
                        self.notarized.push_back((vote.data.epoch, vote.data.view, now_ms));
                    }
                }
                Action::BroadcastProposal(proposal) => {
                    let data = encode(&proposal)?;
                    tracing::debug!(
                        view = %proposal.message.view,
                        height = %proposal.message.block.height,
                        "proposed"
                    );
                    self.effects.push(Effect::Publish { kind: TopicKind::Block, data });
                    self.effects.push(Effect::Proposed(Arc::new(proposal)));
                }
                Action::BroadcastVote(vote) => {
                    let subnet = vote_subnet(vote.operator_index.get(), self.vote_subnets);
                    self.effects.push(Effect::Publish {
                        kind: TopicKind::Vote { subnet },
                        data: encode(&vote)?,
                    });
                }
                Action::BroadcastCertificate(cert) => {
                    self.effects.push(Effect::Publish {
                        kind: TopicKind::Certificate,
                        data: encode(&cert)?,
                    });
                }
                Action::VoteChecked { vote, verdict } => {
                    if let Some(source) = self.vote_sources.remove(&vote_key(&vote)) {
                        self.verdict_for(source, verdict);
                    }
                }
                Action::Certified { certificate, local } => {
                    moved = true;
                    self.last_certificate_ms = Some(now_ms);
                    self.metrics.certificate(certificate.data.vote_kind(), local);
                    self.metrics
                        .last_certificate_seconds
                        .set(i64::try_from(now_ms / 1000).unwrap_or(i64::MAX));
                    self.chain.put_certificate(&mut batch, &certificate)?;
                }
                Action::Finalized { root, block, certificate, epoch_end } => {
                    moved = true;
                    self.last_finalized_ms = Some(now_ms);
                    let data = &certificate.data;
                    if let Some(&(.., at_ms)) =
                        self.notarized.iter().find(|(e, v, _)| (*e, *v) == (data.epoch, data.view))
                    {
                        let latency = now_ms.saturating_sub(at_ms);
                        self.last_finality_latency_ms = Some(latency);
                        self.metrics.finality_latency.observe(latency as f64 / 1000.0);
                    }
                    self.chain.put_finalized(&mut batch, &root, &block)?;
                    self.chain.put_certificate(&mut batch, &certificate)?;
                    if let Some(avs) = &self.avs {
                        let set = &self.epoch_operators;
                        avs.record_finality(&block, &root, &certificate, set, &mut batch);
                    }
                    if let Some(automation) = &self.automation {
                        automation.record_finality(&block, &root, &certificate, &mut batch)?;
                    }
                    let operators = Arc::clone(&self.epoch_operators);
                    self.metrics
                        .finalized_height
                        .set(i64::try_from(block.height.get()).unwrap_or(i64::MAX));
                    tracing::info!(
                        height = %block.height,
                        view = %certificate.data.view,
                        root = %hex::encode(&root[..4]),
                        tasks = block.body.tasks.len(),
                        "finalized"
                    );
                    last_finalization = Some(certificate.clone());
                    self.effects.push(Effect::Finalized(Arc::new(FinalizedEvent {
                        root,
                        block,
                        certificate,
                        epoch_end: epoch_end.map(Arc::from),
                        operators,
                    })));
                    finalized_any = true;
                }
                Action::EpochChanged { epoch, operators } => {
                    moved = true;
                    self.epoch_operators = Arc::new(operators.clone());
                    if let Some(end) = &last_finalization {
                        self.chain.put_epoch_end(&mut batch, end)?;
                    }
                    tracing::info!(%epoch, operators = operators.operators.len(), "epoch changed");
                    self.metrics.epoch.set(i64::try_from(epoch.get()).unwrap_or(i64::MAX));
                    self.effects.push(Effect::EpochChanged(self.engine.key_table()));
                }
                Action::StoreBlock { root, block } => {
                    self.chain.put_unfinal_block(&mut batch, &root, &block)?;
                }
                Action::Request(request) => self.request(request),
                Action::Evidence(evidence) => {
                    self.metrics.evidence.inc();
                    tracing::warn!(
                        epoch = %evidence.epoch,
                        view = %evidence.view,
                        operator = %evidence.operator_index,
                        "equivocation: an operator signed two votes an honest one never signs together"
                    );
                    self.chain.put_evidence(&mut batch, &evidence)?;
                }
                Action::EnteredView { epoch, view, cause } => {
                    moved = true;
                    self.metrics.view.set(i64::try_from(view.get()).unwrap_or(i64::MAX));
                    self.metrics.view_entered(cause);
                    tracing::debug!(%epoch, %view, cause = ?cause, at_ms = now_ms, "entered view");
                    if cause == EntryCause::Nullified {
                        self.metrics.nullified_views.inc();
                    }
                }
                Action::Halted { reason } => {
                    tracing::error!(%reason, "consensus halted");
                    self.halted = Some(reason);
                }
            }
        }
        if finalized_any && let Some(anchor) = self.engine.anchor() {
            self.chain.put_anchor(&mut batch, &anchor)?;
        }
        self.chain.write(batch)?;
        if moved {
            self.context = Arc::new(self.engine.gossip_context());
        }
        Ok(())
    }

    /// Sends what the engine asks for to the right peers.
    fn request(&mut self, request: Request) {
        match request {
            Request::Certificates { epoch, from_view } => {
                for peer in self.sync.pick(REPAIR_FANOUT, &[]) {
                    self.send(
                        peer,
                        Purpose::Certificates { epoch, from_view },
                        &CertificatesRequest { epoch, from_view },
                    );
                }
            }
            Request::Votes { epoch, view } => {
                for peer in self.sync.pick(REPAIR_FANOUT, &[]) {
                    self.send(peer, Purpose::Votes, &VotesRequest { epoch, view });
                }
            }
            Request::BlocksByRoot(roots) => {
                let in_flight = self.sync.roots_in_flight();
                let roots: Vec<Root> =
                    roots.into_iter().filter(|r| !in_flight.contains(r)).take(64).collect();
                if roots.is_empty() {
                    return;
                }
                self.fetch_roots(roots, Vec::new());
            }
            Request::BlocksByRange { start_height, count } => {
                if !self.sync.range_in_flight(start_height) {
                    self.fetch_range(start_height, count, Vec::new());
                }
            }
        }
    }

    fn fetch_roots(&mut self, roots: Vec<Root>, tried: Vec<PeerId>) {
        let Some(peer) = self.sync.pick(1, &tried).pop() else {
            tracing::debug!(missing = roots.len(), "no peer left to ask for blocks by root");
            return;
        };
        let Ok(list) = List::try_from(roots.clone()) else { return };
        let mut tried = tried;
        tried.push(peer);
        self.send(
            peer,
            Purpose::BlocksByRoot { roots, tried },
            &BlocksByRootRequest { roots: list },
        );
    }

    fn fetch_range(&mut self, start_height: Height, count: u64, tried: Vec<PeerId>) {
        let Some(peer) = self.sync.pick(1, &tried).pop() else { return };
        let mut tried = tried;
        tried.push(peer);
        self.send(
            peer,
            Purpose::BlocksByRange { start_height, count, tried },
            &BlocksByRangeRequest { start_height, count },
        );
    }

    /// An empty or failed answer: ask the next peer for blocks; other requests are repeated
    /// by the engine's own schedule.
    fn retry_elsewhere(&mut self, purpose: Purpose, _failed: PeerId) {
        match purpose {
            Purpose::BlocksByRoot { roots, tried } => self.fetch_roots(roots, tried),
            Purpose::BlocksByRange { start_height, count, tried } => {
                self.fetch_range(start_height, count, tried)
            }
            Purpose::Status | Purpose::Certificates { .. } | Purpose::Votes => {}
        }
    }

    fn request_status(&mut self, peer: PeerId) {
        let ours = server::status_of(&self.engine);
        self.send(peer, Purpose::Status, &ours);
    }

    fn request_certificates(&mut self, peer: PeerId) {
        let (epoch, from_view) = (self.engine.epoch(), self.engine.first_gap());
        let request = CertificatesRequest { epoch, from_view };
        self.send(peer, Purpose::Certificates { epoch, from_view }, &request);
    }

    fn send<T: ssz_rs::SimpleSerialize>(&mut self, peer: PeerId, purpose: Purpose, body: &T) {
        let protocol = match &purpose {
            Purpose::Status => ReqRespProtocol::Status,
            Purpose::Certificates { .. } => ReqRespProtocol::Certificates,
            Purpose::Votes => ReqRespProtocol::Votes,
            Purpose::BlocksByRoot { .. } => ReqRespProtocol::BlocksByRoot,
            Purpose::BlocksByRange { .. } => ReqRespProtocol::BlocksByRange,
        };
        let Ok(data) = encode(body) else { return };
        if let Some(id) = self.sync.start(peer, purpose) {
            self.effects.push(Effect::Request { id, peer, protocol, data });
        }
    }
}

/// Counts a certificate by kind and origin.
impl NodeMetrics {
    fn certificate(&self, kind: Option<VoteKind>, local: bool) {
        let kind = match kind {
            Some(VoteKind::Notarize) => "notarization",
            Some(VoteKind::Nullify) => "nullification",
            Some(VoteKind::Finalize) => "finalization",
            None => "unknown",
        };
        let origin = if local { "built" } else { "received" };
        self.certificates.get_or_create(&crate::metrics::CertificateLabels { kind, origin }).inc();
    }

    fn view_entered(&self, cause: EntryCause) {
        let cause = match cause {
            EntryCause::EpochStart => "epoch_start",
            EntryCause::Notarized => "notarized",
            EntryCause::Nullified => "nullified",
            EntryCause::CatchUp => "catch_up",
        };
        self.views_entered.get_or_create(&crate::metrics::ViewLabels { cause }).inc();
    }
}

/// The shape rules of a `certificates` answer (see [`Core::take_certificates`]).
fn check_certificates_answer(
    epoch: Epoch,
    from_view: View,
    certs: &[Certificate],
) -> Result<(), String> {
    if certs.len() > MAX_CERTIFICATES_PER_RESPONSE {
        return Err(format!(
            "{} certificates, at most {MAX_CERTIFICATES_PER_RESPONSE}",
            certs.len()
        ));
    }
    // The epoch's ending finalization comes last whatever its view (section 10).
    let body = match certs.split_last() {
        Some((last, rest))
            if last.data.vote_kind() == Some(avs_consensus::types::VoteKind::Finalize) =>
        {
            if last.data.epoch != epoch {
                return Err(format!("epoch {} was not asked for", last.data.epoch));
            }
            rest
        }
        _ => certs,
    };
    let mut previous: Option<(View, u8)> = None;
    for cert in body {
        let at = (cert.data.view, cert.data.kind);
        if cert.data.epoch != epoch || cert.data.view < from_view {
            return Err(format!("epoch {} view {} was not asked for", cert.data.epoch, at.0));
        }
        if previous.is_some_and(|p| p >= at) {
            return Err("not in increasing (view, kind) order".into());
        }
        previous = Some(at);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use avs_consensus::testkit;
    use avs_consensus::types::{Signers, VoteData};

    fn core() -> (Core, Vec<SecretKey>) {
        let (keys, genesis) = testkit::genesis(&[1, 1, 1, 1], 0, 4000).unwrap();
        let config = CoreConfig {
            engine: EngineConfig::new(genesis),
            key: keys[0].clone(),
            registry: TaskRegistry::new(),
            seed: 1,
            vote_subnets: 1,
        };
        let chain = ChainStore::new(Arc::new(MemoryStore::new()));
        (Core::open(chain, config, NodeMetrics::default()).unwrap(), keys)
    }

    fn request_id(effects: &[Effect], wanted: ReqRespProtocol) -> u64 {
        effects
            .iter()
            .find_map(|e| match e {
                Effect::Request { id, protocol, .. } if *protocol == wanted => Some(*id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {wanted} request in {effects:?}"))
    }

    /// A certificate with every signer set and a real curve point that signs something else.
    fn garbage(keys: &[SecretKey], view: u64) -> Certificate {
        let signers = Signers::try_from(&[true; 4][..]).unwrap();
        let signature = keys[0].sign(&[7; 32]).to_bytes().to_vec().try_into().unwrap();
        Certificate { data: VoteData::nullify(Epoch::ZERO, View::new(view)), signers, signature }
    }

    fn chunks(certs: &[Certificate]) -> Vec<ResponseChunk> {
        certs.iter().map(|c| ResponseChunk::success(encode(c).unwrap())).collect()
    }

    /// Review H4/T19: a peer that claims to be ahead and answers with well-formed garbage
    /// certificates costs one verification: the first bad one ends the answer, and the peer is
    /// marked; the certificates after it are never looked at.
    #[test]
    fn a_lying_catch_up_peer_costs_one_verification_and_is_marked() {
        let (mut core, keys) = core();
        let peer = PeerId::random();
        let effects = core.peer_connected(peer);
        let status = request_id(&effects, ReqRespProtocol::Status);
        let lie = StatusMessage {
            epoch: Epoch::ZERO,
            view: View::new(1_000),
            finalized_height: Height::new(900),
            ..Default::default()
        };
        let effects = core
            .on_response(1, status, Ok(vec![ResponseChunk::success(encode(&lie).unwrap())]), false)
            .unwrap();
        let certs = request_id(&effects, ReqRespProtocol::Certificates);
        let answer = chunks(&[garbage(&keys, 0), garbage(&keys, 1), garbage(&keys, 2)]);
        let effects = core.on_response(2, certs, Ok(answer), false).unwrap();
        let marked = effects
            .iter()
            .filter(|e| matches!(e, Effect::PeerMisbehaved { peer: p, .. } if *p == peer))
            .count();
        assert_eq!(marked, 1, "{effects:?}");
        assert!(core.engine().certified().is_empty());
    }

    #[test]
    fn certificates_answers_must_match_what_was_asked() {
        let (_, keys) = core();
        let at = |view, kind: fn(Epoch, View) -> VoteData| Certificate {
            data: kind(Epoch::ZERO, View::new(view)),
            ..garbage(&keys, 0)
        };
        let nullify = |e, v| VoteData::nullify(e, v);
        let finalize = |e, v| VoteData::finalize(e, v, [1; 32]);
        let check = |epoch, from_view, certs: &[Certificate]| {
            check_certificates_answer(Epoch::new(epoch), View::new(from_view), certs)
        };
        assert!(check(0, 3, &[at(3, nullify), at(4, nullify)]).is_ok());
        assert!(check(0, 3, &[at(2, nullify)]).is_err(), "before from_view");
        assert!(check(0, 3, &[at(4, nullify), at(3, nullify)]).is_err());
        assert!(check(0, 3, &[at(4, nullify), at(4, nullify)]).is_err());
        assert!(check(1, 3, &[at(4, nullify)]).is_err(), "other epoch");
        // The epoch's ending finalization comes last, whatever its view.
        assert!(check(0, 3, &[at(5, nullify), at(2, finalize)]).is_ok());
        let too_many: Vec<_> = (0..=256).map(|v| at(v, nullify)).collect();
        assert!(check(0, 0, &too_many).is_err());
    }
}
