//! The production-path simulator: many [`Core`]s, each on its own memory store, over a
//! simulated network, in simulated time.
//!
//! What runs is the node's own code: [`Core`] (engine, store writes, sync client),
//! [`crate::gossip::check`] (the validation workers' checks) and the sync server
//! ([`Core::answer`]). What is simulated is only what the network and the machine do:
//!
//! - **gossipsub**: content-addressed message ids; a duplicate cache per node (a message seen
//!   within [`DUPLICATE_TTL_MS`] is neither validated nor forwarded again, and a node's own
//!   publish of a message still in its cache is refused, as gossipsub does); flood publish to
//!   every connected peer; forwarding to the node's peers only after an `Accept` verdict.
//! - **validation**: each message costs `validation_ms` of one CPU per node, at most
//!   [`crate::driver::MAX_VALIDATIONS_IN_FLIGHT`] waiting; beyond that it is shed (ignored).
//! - **req/resp**: a request travels to the peer, is answered there by [`Core::answer`] from its
//!   store and engine at that moment, and the answer travels back; a peer that is down answers
//!   with a timeout error after [`crate::driver::REQUEST_TIMEOUT`].
//! - **links**: one-way latency drawn per delivery, optional loss per delivery.
//! - **clocks**: each node's clock is offset by up to `skew_ms`; it is woken at every interval
//!   boundary of its clock and at the core's own deadlines, exactly like the driver.
//! - **faults**: crash (the core is dropped; its store stays: everything it acknowledged was
//!   written), restart (the core reopens its store), and byzantine operators that withhold
//!   their proposals or their certificates.
//!
//! Runs are deterministic per seed. The invariants are checked by [`check`], written apart
//! from the engine's own predicates.

pub(crate) mod check;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use avs_consensus::clock::SlotClock;
use avs_consensus::testkit::{self, Change, MembershipTask, NoteTask};
use avs_consensus::types::{GenesisConfig, Height, SignedVote, decode};
use avs_consensus::{EngineConfig, TaskRegistry};
use avs_p2p::{
    Keypair, MessageId, PeerId, ReqRespProtocol, ResponseChunk, TopicKind, ValidationOutcome,
};
use sha2::{Digest, Sha256};

use crate::chain_store::ChainStore;
use crate::core::{Core, CoreConfig, Effect};
use crate::driver::{MAX_VALIDATIONS_IN_FLIGHT, REQUEST_TIMEOUT};
use crate::gossip::Outcome;
use crate::metrics::NodeMetrics;
use crate::pool::OperatorPool;
use crate::store::{MemoryDb, MemoryStore};

use check::Checker;

/// gossipsub's duplicate cache in the node's configuration (docs/protocol.md, section 13).
pub(crate) const DUPLICATE_TTL_MS: u64 = 120_000;
/// Genesis time of every simulated network (unix seconds).
pub(crate) const GENESIS_TIME: u64 = 1_700_000_000;
const T0: u64 = GENESIS_TIME * 1000;

/// How a byzantine operator misbehaves (it still runs the honest code otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Byzantine {
    /// Never lets its proposals out.
    WithholdProposals,
    /// Never lets its certificates out (an aggregator that keeps them).
    WithholdCertificates,
}

/// Something that happens to a node at a time (ms after genesis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Crash { node: usize, at_ms: u64 },
    Restart { node: usize, at_ms: u64 },
}

/// One simulated run.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) seed: u64,
    /// Powers of the genesis operators; node `i` runs operator `i`.
    pub(crate) powers: Vec<u64>,
    /// Operators outside genesis (by testkit id) that run a node from the start, following
    /// until a membership change adds them.
    pub(crate) joiners: Vec<u64>,
    /// Operator-set changes proposed from a height on.
    pub(crate) membership: Vec<(Height, Change)>,
    /// Nodes whose aggregator flag is on.
    pub(crate) aggregators: Vec<usize>,
    pub(crate) byzantine: Vec<(usize, Byzantine)>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) slot_ms: u64,
    pub(crate) run_ms: u64,
    /// One-way latency, drawn uniformly per delivery.
    pub(crate) latency_ms: (u64, u64),
    /// Deliveries lost, per mille.
    pub(crate) loss_per_mille: u64,
    /// Clock offsets are drawn from `-skew_ms..=skew_ms`.
    pub(crate) skew_ms: u64,
    /// CPU cost of validating one gossip message.
    pub(crate) validation_ms: u64,
    /// Peers per node (0: everyone is connected to everyone).
    pub(crate) degree: usize,
}

impl Scenario {
    /// A fault-free network of `n` equal operators, node 0 the only aggregator.
    pub(crate) fn quiet(n: usize, seed: u64) -> Self {
        Self {
            seed,
            powers: vec![1; n],
            joiners: Vec::new(),
            membership: Vec::new(),
            aggregators: vec![0],
            byzantine: Vec::new(),
            faults: Vec::new(),
            slot_ms: 1000,
            run_ms: 20_000,
            latency_ms: (5, 40),
            loss_per_mille: 0,
            skew_ms: 20,
            validation_ms: 1,
            degree: 0,
        }
    }
}

/// A small deterministic generator (splitmix64).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next() % (hi - lo + 1)
    }
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        per_mille > 0 && self.next() % 1000 < per_mille
    }
}

#[derive(Debug)]
enum Event {
    Tick { node: usize, generation: u64 },
    Gossip { to: usize, from: usize, kind: TopicKind, data: Arc<Vec<u8>>, id: MessageId },
    Validated { node: usize, from: usize, kind: TopicKind, data: Arc<Vec<u8>>, id: MessageId },
    Request { to: usize, from: usize, id: u64, protocol: ReqRespProtocol, data: Vec<u8> },
    Response { to: usize, id: u64, result: Result<Vec<ResponseChunk>, String> },
    Crash(usize),
    Restart(usize),
}

impl Event {
    fn node(&self) -> usize {
        match self {
            Self::Tick { node, .. } | Self::Validated { node, .. } => *node,
            Self::Gossip { to, .. } | Self::Request { to, .. } | Self::Response { to, .. } => *to,
            Self::Crash(node) | Self::Restart(node) => *node,
        }
    }
}

struct Queued {
    at: u64,
    seq: u64,
    /// The incarnation of the target node the event was meant for (faults: any).
    incarnation: Option<u64>,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One simulated node: its store survives crashes, its core does not.
struct Node {
    key_id: u64,
    peer: PeerId,
    db: MemoryDb,
    core: Option<Core>,
    incarnation: u64,
    skew: i64,
    is_aggregator: bool,
    byzantine: Option<Byzantine>,
    /// Message ids seen, with when they expire.
    seen: HashMap<MessageId, u64>,
    /// Gossip accepted for validation, waiting for its verdict: to forward on Accept.
    awaiting: HashMap<MessageId, (TopicKind, Arc<Vec<u8>>, usize)>,
    /// Validations queued or running.
    validating: usize,
    cpu_free_at: u64,
    tick_generation: u64,
    tick_at: Option<u64>,
    metrics: NodeMetrics,
}

/// Counters of what the simulated network did.
#[derive(Debug, Default, Clone)]
pub(crate) struct NetStats {
    pub(crate) gossip_delivered: u64,
    pub(crate) gossip_duplicates: u64,
    pub(crate) gossip_lost: u64,
    pub(crate) validations: u64,
    pub(crate) shed: u64,
    pub(crate) refused_publishes: u64,
    pub(crate) requests: u64,
}

pub(crate) struct Sim {
    pub(crate) scenario: Scenario,
    genesis: GenesisConfig,
    clock: SlotClock,
    nodes: Vec<Node>,
    links: Vec<Vec<usize>>,
    by_peer: HashMap<PeerId, usize>,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    now: u64,
    rng: Rng,
    /// The operator pool `crate::gossip::check` needs (no check-ins are simulated).
    pool: OperatorPool,
    /// No AVS task in the simulated networks: the `task` topic is never published.
    avs: Arc<crate::avs::AvsTasks>,
    pub(crate) checker: Checker,
    pub(crate) stats: NetStats,
}

fn message_id(kind: TopicKind, data: &[u8]) -> MessageId {
    let mut h = Sha256::new();
    h.update(kind.name().as_bytes());
    h.update(data);
    MessageId::new(&h.finalize()[..20])
}

fn peer_of(key_id: u64) -> PeerId {
    let mut bytes =
        Sha256::digest([b"sim-peer".as_slice(), &key_id.to_le_bytes()].concat()).to_vec();
    let keypair = Keypair::ed25519_from_bytes(&mut bytes).expect("32 bytes make an ed25519 key");
    keypair.public().to_peer_id()
}

fn registry(script: &[(Height, Change)]) -> TaskRegistry {
    let mut registry = TaskRegistry::new();
    for task in [
        Arc::new(NoteTask) as Arc<dyn avs_consensus::TaskDefinition>,
        Arc::new(MembershipTask { script: script.to_vec() }),
    ] {
        registry.register(task).expect("distinct task ids");
    }
    registry
}

impl Sim {
    pub(crate) fn new(scenario: Scenario) -> Self {
        let (_, genesis) = testkit::genesis(&scenario.powers, GENESIS_TIME, scenario.slot_ms)
            .expect("simulated genesis");
        let mut rng = Rng::new(scenario.seed);
        let key_ids: Vec<u64> =
            (0..scenario.powers.len() as u64).chain(scenario.joiners.iter().copied()).collect();
        let nodes: Vec<Node> = key_ids
            .iter()
            .enumerate()
            .map(|(i, key_id)| {
                let skew = rng.range(0, 2 * scenario.skew_ms) as i64 - scenario.skew_ms as i64;
                Node {
                    key_id: *key_id,
                    peer: peer_of(*key_id),
                    db: MemoryDb::default(),
                    core: None,
                    incarnation: 0,
                    skew,
                    is_aggregator: scenario.aggregators.contains(&i),
                    byzantine: scenario.byzantine.iter().find(|(n, _)| *n == i).map(|(_, b)| *b),
                    seen: HashMap::new(),
                    awaiting: HashMap::new(),
                    validating: 0,
                    cpu_free_at: 0,
                    tick_generation: 0,
                    tick_at: None,
                    metrics: NodeMetrics::default(),
                }
            })
            .collect();
        let links = topology(nodes.len(), scenario.degree, &mut rng);
        let by_peer = nodes.iter().enumerate().map(|(i, n)| (n.peer, i)).collect();
        let honest: Vec<bool> =
            (0..nodes.len()).map(|i| !scenario.byzantine.iter().any(|(n, _)| *n == i)).collect();
        let checker = Checker::new(&genesis, honest);
        let clock = SlotClock::new(GENESIS_TIME, scenario.slot_ms, genesis.intervals_per_slot)
            .expect("simulated clock");
        let mut sim = Self {
            scenario,
            genesis,
            clock,
            nodes,
            links,
            by_peer,
            queue: BinaryHeap::new(),
            seq: 0,
            now: T0,
            rng,
            pool: OperatorPool::open(Arc::new(MemoryStore::new())).expect("pool"),
            avs: crate::avs::AvsTasks::none(Arc::new(MemoryStore::new())),
            checker,
            stats: NetStats::default(),
        };
        for fault in sim.scenario.faults.clone() {
            match fault {
                Fault::Crash { node, at_ms } => sim.push(T0 + at_ms, None, Event::Crash(node)),
                Fault::Restart { node, at_ms } => sim.push(T0 + at_ms, None, Event::Restart(node)),
            }
        }
        for i in 0..sim.nodes.len() {
            sim.start(i);
        }
        sim
    }

    /// Simulated time, ms after genesis.
    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.now - T0
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn is_up(&self, node: usize) -> bool {
        self.nodes[node].core.is_some()
    }

    /// Finalized height of a running node.
    /// (A plain number: the scenarios compare heights with counts of slots.)
    pub(crate) fn finalized_height(&self, node: usize) -> Option<u64> {
        self.nodes[node].core.as_ref().map(|c| c.engine().finalized().1.get())
    }

    /// What a node reports about itself now (`None` while it is down).
    pub(crate) fn status(&self, node: usize) -> Option<crate::status::NodeStatus> {
        self.nodes[node].core.as_ref().map(|c| c.status(false))
    }

    /// Views a node entered because the previous view was nullified (over all its lives).
    pub(crate) fn nullified_views(&self, node: usize) -> u64 {
        self.nodes[node].metrics.nullified_views.get()
    }

    fn push(&mut self, at: u64, incarnation: Option<u64>, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued { at, seq: self.seq, incarnation, event }));
    }

    fn local_now(&self, node: usize) -> u64 {
        self.now.saturating_add_signed(self.nodes[node].skew)
    }

    fn latency(&mut self) -> u64 {
        let (lo, hi) = self.scenario.latency_ms;
        self.rng.range(lo, hi)
    }

    fn config(&self, node: usize) -> CoreConfig {
        let n = &self.nodes[node];
        CoreConfig {
            engine: EngineConfig::new(self.genesis.clone()),
            key: testkit::operator_key(n.key_id).expect("simulated key"),
            registry: registry(&self.scenario.membership),
            seed: self.scenario.seed ^ n.key_id.wrapping_mul(0x9e37_79b9),
            vote_subnets: 1,
        }
    }

    /// Opens node `i`'s core on its store (fresh or restarting) and connects it.
    fn start(&mut self, i: usize) {
        let store = Arc::new(MemoryStore::open(&self.nodes[i].db).expect("memory store"));
        let chain = ChainStore::new(store);
        let core = Core::open(chain, self.config(i), self.nodes[i].metrics.clone())
            .expect("a simulated node opens its store");
        let node = &mut self.nodes[i];
        node.core = Some(core);
        node.incarnation += 1;
        node.seen.clear();
        node.awaiting.clear();
        node.validating = 0;
        node.tick_at = None;
        self.checker.started(i, self.nodes[i].core.as_ref().map(|c| c.engine().finalized().1));
        for peer in self.links[i].clone() {
            if self.nodes[peer].core.is_none() {
                continue;
            }
            let (a, b) = (self.nodes[i].peer, self.nodes[peer].peer);
            let effects = self.core_mut(peer).map(|c| c.peer_connected(a)).unwrap_or_default();
            self.carry_out(peer, effects);
            let effects = self.core_mut(i).map(|c| c.peer_connected(b)).unwrap_or_default();
            self.carry_out(i, effects);
        }
        self.wake(i);
    }

    fn crash(&mut self, i: usize) {
        if self.nodes[i].core.take().is_none() {
            return;
        }
        self.nodes[i].incarnation += 1;
        let peer = self.nodes[i].peer;
        for other in self.links[i].clone() {
            if let Some(core) = self.core_mut(other) {
                core.peer_disconnected(&peer);
            }
        }
    }

    fn core_mut(&mut self, i: usize) -> Option<&mut Core> {
        self.nodes[i].core.as_mut()
    }

    /// Schedules node `i`'s next wake-up: the next interval boundary of its clock or the
    /// core's own deadline, whichever is first (as the driver does).
    fn wake(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_ref() else { return };
        let local = self.local_now(i);
        let next_tick = self.clock.next_tick_ms(local);
        let wake_local = core.next_wakeup().map_or(next_tick, |w| w.min(next_tick)).max(local);
        let wake = wake_local.saturating_add_signed(-self.nodes[i].skew).max(self.now);
        if self.nodes[i].tick_at.is_some_and(|at| at <= wake && at >= self.now) {
            return;
        }
        self.nodes[i].tick_generation += 1;
        self.nodes[i].tick_at = Some(wake);
        let generation = self.nodes[i].tick_generation;
        let incarnation = self.nodes[i].incarnation;
        self.push(wake, Some(incarnation), Event::Tick { node: i, generation });
    }

    /// Runs until `until_ms` after genesis.
    pub(crate) fn run_until(&mut self, until_ms: u64) {
        let until = T0 + until_ms;
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Some(Reverse(Queued { at, incarnation, event, .. })) = self.queue.pop() else {
                break;
            };
            self.now = at;
            let node = event.node();
            if incarnation.is_some_and(|inc| inc != self.nodes[node].incarnation) {
                continue;
            }
            self.step(event);
            if self.nodes[node].core.is_some() {
                self.wake(node);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs the whole scenario.
    pub(crate) fn run(&mut self) {
        self.run_until(self.scenario.run_ms);
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Tick { node, generation } => {
                if generation != self.nodes[node].tick_generation {
                    return;
                }
                self.nodes[node].tick_at = None;
                let now = self.local_now(node);
                let flag = self.nodes[node].is_aggregator;
                let effects = self
                    .core_mut(node)
                    .map(|c| c.tick(now, flag).expect("tick"))
                    .unwrap_or_default();
                self.carry_out(node, effects);
            }
            Event::Gossip { to, from, kind, data, id } => self.receive(to, from, kind, data, id),
            Event::Validated { node, from, kind, data, id } => {
                self.validated(node, from, kind, data, id)
            }
            Event::Request { to, from, id, protocol, data } => {
                let result = match self.nodes[to].core.as_ref() {
                    Some(core) => Ok(core.answer(protocol, &data)),
                    None => Err("timed out".to_string()),
                };
                let delay = if result.is_ok() {
                    self.latency()
                } else {
                    u64::try_from(REQUEST_TIMEOUT.as_millis()).unwrap_or(5000)
                };
                let incarnation = self.nodes[from].incarnation;
                self.push(
                    self.now + delay,
                    Some(incarnation),
                    Event::Response { to: from, id, result },
                );
            }
            Event::Response { to, id, result } => {
                let now = self.local_now(to);
                let flag = self.nodes[to].is_aggregator;
                let effects = self
                    .core_mut(to)
                    .map(|c| c.on_response(now, id, result, flag).expect("response"))
                    .unwrap_or_default();
                self.carry_out(to, effects);
            }
            Event::Crash(node) => self.crash(node),
            Event::Restart(node) => {
                if self.nodes[node].core.is_none() {
                    self.start(node);
                }
            }
        }
    }

    /// gossipsub receiving a message: duplicates are dropped unvalidated; a new one takes a
    /// validation slot or is shed.
    fn receive(
        &mut self,
        to: usize,
        from: usize,
        kind: TopicKind,
        data: Arc<Vec<u8>>,
        id: MessageId,
    ) {
        let now = self.now;
        let node = &mut self.nodes[to];
        node.seen.retain(|_, expires| *expires > now);
        if node.seen.contains_key(&id) {
            self.stats.gossip_duplicates += 1;
            return;
        }
        node.seen.insert(id.clone(), now + DUPLICATE_TTL_MS);
        self.stats.gossip_delivered += 1;
        if node.validating >= MAX_VALIDATIONS_IN_FLIGHT {
            self.stats.shed += 1;
            node.metrics.validation_shed.inc();
            return;
        }
        node.validating += 1;
        let done = node.cpu_free_at.max(now) + self.scenario.validation_ms;
        node.cpu_free_at = done;
        let incarnation = node.incarnation;
        self.push(done, Some(incarnation), Event::Validated { node: to, from, kind, data, id });
    }

    fn validated(
        &mut self,
        i: usize,
        from: usize,
        kind: TopicKind,
        data: Arc<Vec<u8>>,
        id: MessageId,
    ) {
        self.stats.validations += 1;
        self.nodes[i].validating = self.nodes[i].validating.saturating_sub(1);
        let now = self.local_now(i);
        let flag = self.nodes[i].is_aggregator;
        let from_peer = self.nodes[from].peer;
        let Some(core) = self.nodes[i].core.as_ref() else { return };
        let context = core.context();
        let effects = match crate::gossip::check(
            &context, &self.pool, &self.avs, kind, &data, &from_peer, None, now,
        ) {
            Outcome::Consensus(checked) => {
                self.nodes[i].awaiting.insert(id.clone(), (kind, data, from));
                self.core_mut(i)
                    .map(|c| c.on_gossip(now, checked, id, from_peer, flag).expect("gossip"))
                    .unwrap_or_default()
            }
            Outcome::Refused(error) => {
                self.checker.verdict(from, error.verdict(), &format!("{error}"));
                if matches!(error, avs_consensus::gossip::GossipError::LaterEpoch { .. }) {
                    self.core_mut(i).map(|c| c.on_later_epoch(now, from_peer)).unwrap_or_default()
                } else {
                    Vec::new()
                }
            }
            Outcome::Checkin(_) | Outcome::Task(_) => Vec::new(),
        };
        self.carry_out(i, effects);
    }

    /// Carries out node `i`'s effects on the simulated network.
    fn carry_out(&mut self, i: usize, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Publish { kind, data } => self.publish(i, kind, data),
                Effect::Verdict { id, peer, outcome } => {
                    let Some((kind, data, from)) = self.nodes[i].awaiting.remove(&id) else {
                        continue;
                    };
                    let from_index = self.by_peer.get(&peer).copied().unwrap_or(from);
                    let verdict = match outcome {
                        ValidationOutcome::Accept => avs_consensus::Verdict::Accept,
                        ValidationOutcome::Ignore => avs_consensus::Verdict::Ignore,
                        ValidationOutcome::Reject => avs_consensus::Verdict::Reject,
                    };
                    self.checker.verdict(from_index, verdict, "gossip verdict");
                    if outcome == ValidationOutcome::Accept {
                        self.forward(i, from, kind, data, id);
                    }
                }
                Effect::Request { id, peer, protocol, data } => {
                    self.stats.requests += 1;
                    let Some(&to) = self.by_peer.get(&peer) else { continue };
                    let delay = self.latency();
                    self.push(
                        self.now + delay,
                        None,
                        Event::Request { to, from: i, id, protocol, data },
                    );
                }
                Effect::Proposed(_) => {}
                Effect::EpochChanged(table) => {
                    self.checker.epoch_changed(i, table.epoch(), table.operator_set());
                }
                Effect::Finalized(event) => {
                    self.checker.finalized(i, self.elapsed_ms(), &event);
                }
                Effect::PeerMisbehaved { peer, reason } => {
                    if let Some(&from) = self.by_peer.get(&peer) {
                        self.checker.verdict(from, avs_consensus::Verdict::Reject, &reason);
                    }
                }
            }
        }
    }

    fn publish(&mut self, i: usize, kind: TopicKind, data: Vec<u8>) {
        if let TopicKind::Vote { .. } = kind
            && let Ok(vote) = decode::<SignedVote>(&data)
        {
            self.checker.vote_sent(i, &vote);
        }
        match (self.nodes[i].byzantine, kind) {
            (Some(Byzantine::WithholdProposals), TopicKind::Block)
            | (Some(Byzantine::WithholdCertificates), TopicKind::Certificate) => return,
            _ => {}
        }
        let id = message_id(kind, &data);
        let now = self.now;
        let node = &mut self.nodes[i];
        node.seen.retain(|_, expires| *expires > now);
        if node.seen.contains_key(&id) {
            // gossipsub: "not publishing a message that has already been published".
            self.stats.refused_publishes += 1;
            return;
        }
        node.seen.insert(id.clone(), now + DUPLICATE_TTL_MS);
        self.forward(i, usize::MAX, kind, Arc::new(data), id);
    }

    fn forward(
        &mut self,
        i: usize,
        except: usize,
        kind: TopicKind,
        data: Arc<Vec<u8>>,
        id: MessageId,
    ) {
        for peer in self.links[i].clone() {
            if peer == except || self.nodes[peer].core.is_none() {
                continue;
            }
            if self.rng.chance(self.scenario.loss_per_mille) {
                self.stats.gossip_lost += 1;
                continue;
            }
            let delay = self.latency();
            let incarnation = self.nodes[peer].incarnation;
            self.push(
                self.now + delay,
                Some(incarnation),
                Event::Gossip { to: peer, from: i, kind, data: Arc::clone(&data), id: id.clone() },
            );
        }
    }
}

/// Who is connected to whom: everyone (`degree` 0), or a ring plus random chords so each
/// node has about `degree` peers.
fn topology(n: usize, degree: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    let mut sets: Vec<HashSet<usize>> = vec![HashSet::new(); n];
    if degree == 0 || degree + 1 >= n {
        for (i, set) in sets.iter_mut().enumerate() {
            set.extend((0..n).filter(|j| *j != i));
        }
    } else {
        for i in 0..n {
            let j = (i + 1) % n;
            sets[i].insert(j);
            sets[j].insert(i);
        }
        for i in 0..n {
            while sets[i].len() < degree {
                let j = usize::try_from(rng.range(0, n as u64 - 1)).unwrap_or(0);
                if j != i {
                    sets[i].insert(j);
                    sets[j].insert(i);
                }
            }
        }
    }
    sets.into_iter()
        .map(|s| {
            let mut v: Vec<usize> = s.into_iter().collect();
            v.sort_unstable();
            v
        })
        .collect()
}
