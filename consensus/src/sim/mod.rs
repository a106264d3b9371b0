//! Deterministic network simulator (test-only): N engines, a seeded RNG, per-message delays,
//! drops, partitions, a fake clock, crash/restart and byzantine behaviours.
//!
//! Same seed, same run: all randomness comes from one `StdRng` and every queue is ordered.
//! Time advances tick by tick (one tick per interval boundary of the slot clock); messages
//! due before the next tick are delivered in (time, sequence) order. Signatures are real BLS;
//! like a node's verification worker, the simulator checks each distinct message once per key
//! table and hands engines `Verified` values. `FetchBlock` is answered from the store of all
//! blocks ever proposed, standing in for req/resp.

pub(crate) mod check;
mod scenarios;
pub(crate) mod tasks;

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::bls::SecretKey;
use crate::engine::{Action, Anchor, Engine, EngineConfig, Input, Persisted};
use crate::operators::KeyTable;
use crate::signing::{network_digest, proposal_signing_root, vote_signing_root};
use crate::task::TaskRegistry;
use crate::types::{
    Block, Certificate, GenesisConfig, Operator, OperatorSet, Root, SignedProposal, SignedVote,
    VoteData, VoteKind, encode,
};
use crate::verify::{Incoming, Verified, verify_certificate, verify_proposal, verify_vote};

pub(crate) const GENESIS_TIME_S: u64 = 1_000_000;
pub(crate) const GENESIS_MS: u64 = GENESIS_TIME_S * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behavior {
    Honest,
    /// Never sends anything (a crashed operator).
    Silent,
    /// As leader, sends two different valid proposals to two halves of the network.
    Equivocate,
    /// Signs a conflicting vote next to every vote it casts.
    DoubleVote,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct NetConfig {
    pub(crate) min_delay_ms: u64,
    pub(crate) max_delay_ms: u64,
    pub(crate) drop_per_mille: u32,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self { min_delay_ms: 5, max_delay_ms: 150, drop_per_mille: 0 }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Msg {
    Proposal(SignedProposal),
    Vote(SignedVote),
    Cert(Certificate),
    Block(Block),
}

pub(crate) struct Node {
    pub(crate) engine: Option<Engine>,
    pub(crate) behavior: Behavior,
    pub(crate) key: SecretKey,
    pub(crate) aggregator: bool,
    pub(crate) persisted: Persisted,
    pub(crate) anchor: Option<Anchor>,
    pub(crate) finalized: Vec<(u64, Root)>,
    /// Every own vote that left the node (for the rule-8 checker).
    pub(crate) sent_votes: Vec<SignedVote>,
    pub(crate) notarized: Vec<(u64, u64, Root)>,
    pub(crate) nullified: Vec<(u64, u64)>,
    pub(crate) epochs: Vec<u64>,
    /// Crash right after the next `PersistVote`, before anything else of the batch runs.
    pub(crate) crash_after_persist: bool,
}

pub(crate) struct Partition {
    pub(crate) from_ms: u64,
    pub(crate) until_ms: u64,
    pub(crate) group: Vec<u8>,
}

type Filter = Box<dyn Fn(&Msg, u64) -> bool>;

pub(crate) struct Sim {
    pub(crate) now: u64,
    rng: StdRng,
    pub(crate) net: NetConfig,
    pub(crate) nodes: Vec<Node>,
    queue: BTreeMap<(u64, u64), (usize, Msg)>,
    seq: u64,
    pub(crate) partitions: Vec<Partition>,
    /// Drop a message when this returns true (scenario-specific faults).
    pub(crate) filter: Option<Filter>,
    config: EngineConfig,
    registry: fn() -> TaskRegistry,
    block_store: BTreeMap<Root, Block>,
    vote_cache: HashMap<(Root, [u8; 32]), Option<Verified<SignedVote>>>,
    cert_cache: HashMap<(Root, [u8; 32]), Option<Verified<Certificate>>>,
    proposal_cache: HashMap<(Root, [u8; 32]), Option<Verified<SignedProposal>>>,
}

pub(crate) fn genesis(powers: &[u64]) -> (Vec<SecretKey>, GenesisConfig) {
    let keys: Vec<SecretKey> = (0..powers.len())
        .map(|i| SecretKey::from_seed(&Sha256::digest((i as u64).to_le_bytes())).unwrap())
        .collect();
    let operators: Vec<Operator> = keys
        .iter()
        .zip(powers)
        .enumerate()
        .map(|(i, (k, p))| Operator {
            address: [i as u8; 20],
            pubkey: k.public_key().to_bytes().to_vec().try_into().unwrap(),
            pop: k.proof_of_possession().to_bytes().to_vec().try_into().unwrap(),
            power: *p,
        })
        .collect();
    let genesis = GenesisConfig {
        network_name: crate::types::byte_list(b"sim").unwrap(),
        genesis_time: GENESIS_TIME_S,
        slot_duration_ms: 4000,
        intervals_per_slot: 5,
        operators: OperatorSet { operators: operators.try_into().unwrap() },
    };
    (keys, genesis)
}

fn digest_of<T: ssz_rs::SimpleSerialize>(m: &T) -> [u8; 32] {
    Sha256::digest(encode(m).unwrap()).into()
}

impl Sim {
    pub(crate) fn new(
        seed: u64,
        powers: &[u64],
        behaviors: &[Behavior],
        net: NetConfig,
        registry: fn() -> TaskRegistry,
    ) -> Self {
        let (keys, genesis) = genesis(powers);
        let config = EngineConfig::new(genesis);
        let nodes = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| Node {
                engine: Some(Engine::new(config.clone(), key.clone(), registry()).unwrap()),
                behavior: behaviors.get(i).copied().unwrap_or(Behavior::Honest),
                key,
                aggregator: true,
                persisted: Persisted::default(),
                anchor: None,
                finalized: Vec::new(),
                sent_votes: Vec::new(),
                notarized: Vec::new(),
                nullified: Vec::new(),
                epochs: Vec::new(),
                crash_after_persist: false,
            })
            .collect();
        Self {
            now: GENESIS_MS,
            rng: StdRng::seed_from_u64(seed),
            net,
            nodes,
            queue: BTreeMap::new(),
            seq: 0,
            partitions: Vec::new(),
            filter: None,
            config,
            registry,
            block_store: BTreeMap::new(),
            vote_cache: HashMap::new(),
            cert_cache: HashMap::new(),
            proposal_cache: HashMap::new(),
        }
    }

    pub(crate) fn interval_ms(&self) -> u64 {
        self.config.genesis.slot_duration_ms / self.config.genesis.intervals_per_slot
    }

    /// Run until `until` (absolute ms): deliver messages, tick every node at each boundary.
    pub(crate) fn run_until(&mut self, until: u64) {
        let step = self.interval_ms();
        while self.now < until {
            let next_tick = (self.now - GENESIS_MS) / step * step + step + GENESIS_MS;
            while let Some(entry) = self.queue.first_entry() {
                if entry.key().0 > next_tick {
                    break;
                }
                let ((at, _), (to, msg)) = entry.remove_entry();
                self.now = at;
                self.deliver(to, msg);
            }
            self.now = next_tick;
            for i in 0..self.nodes.len() {
                let node = &mut self.nodes[i];
                if node.behavior == Behavior::Silent {
                    continue;
                }
                let is_aggregator = node.aggregator;
                let Some(engine) = node.engine.as_mut() else { continue };
                let actions = engine.handle(Input::Tick { now_ms: next_tick, is_aggregator });
                self.execute(i, actions);
            }
        }
    }

    pub(crate) fn run_for(&mut self, ms: u64) {
        let until = self.now + ms;
        self.run_until(until);
    }

    pub(crate) fn crash(&mut self, i: usize) {
        self.nodes[i].engine = None;
    }

    /// Restart node `i` from its anchor and persisted data, as a node would after a crash.
    pub(crate) fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let anchor =
            node.anchor.clone().unwrap_or_else(|| Anchor::genesis(&self.config.genesis).unwrap());
        node.engine = Some(
            Engine::restart(
                self.config.clone(),
                node.key.clone(),
                (self.registry)(),
                anchor,
                node.persisted.clone(),
            )
            .unwrap(),
        );
    }

    fn blocked(&self, from: usize, to: usize) -> bool {
        self.partitions.iter().any(|p| {
            self.now >= p.from_ms && self.now < p.until_ms && p.group.get(from) != p.group.get(to)
        })
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if from == to || self.blocked(from, to) {
            return;
        }
        if self.filter.as_ref().is_some_and(|f| f(&msg, self.now)) {
            return;
        }
        if self.net.drop_per_mille > 0 && self.rng.random_range(0..1000) < self.net.drop_per_mille {
            return;
        }
        let delay = self.rng.random_range(self.net.min_delay_ms..=self.net.max_delay_ms);
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), (to, msg));
    }

    fn broadcast(&mut self, from: usize, msg: Msg) {
        for to in 0..self.nodes.len() {
            self.send(from, to, msg.clone());
        }
    }

    fn deliver(&mut self, to: usize, msg: Msg) {
        let node = &self.nodes[to];
        if node.behavior == Behavior::Silent {
            return;
        }
        let is_aggregator = node.aggregator;
        let Some(engine) = node.engine.as_ref() else { return };
        let table = engine.key_table();
        let input = match msg {
            Msg::Block(b) => Input::Block(b),
            Msg::Vote(v) if v.data.epoch == table.epoch() => {
                let key = (table.set_root(), digest_of(&v));
                let checked = self
                    .vote_cache
                    .entry(key)
                    .or_insert_with(|| verify_vote(&table, &v).ok())
                    .clone();
                let Some(ok) = checked else { return };
                Input::Vote { vote: Incoming::Verified(ok), is_aggregator }
            }
            Msg::Vote(v) => Input::Vote { vote: Incoming::Raw(v), is_aggregator },
            Msg::Cert(c) if c.data.epoch == table.epoch() => {
                let key = (table.set_root(), digest_of(&c));
                let checked = self
                    .cert_cache
                    .entry(key)
                    .or_insert_with(|| verify_certificate(&table, &c).ok())
                    .clone();
                let Some(ok) = checked else { return };
                Input::Certificate(Incoming::Verified(ok))
            }
            Msg::Cert(c) => Input::Certificate(Incoming::Raw(c)),
            Msg::Proposal(p) if p.message.epoch == table.epoch() => {
                let key = (table.set_root(), digest_of(&p));
                let checked = self
                    .proposal_cache
                    .entry(key)
                    .or_insert_with(|| verify_proposal(&table, &p).ok())
                    .clone();
                let Some(ok) = checked else { return };
                Input::Proposal(Incoming::Verified(ok))
            }
            Msg::Proposal(p) => Input::Proposal(Incoming::Raw(p)),
        };
        let Some(engine) = self.nodes[to].engine.as_mut() else { return };
        let actions = engine.handle(input);
        self.execute(to, actions);
    }

    fn sign_vote(&self, i: usize, data: VoteData) -> SignedVote {
        let table: KeyTable = (*self.nodes[i].engine.as_ref().unwrap().key_table()).clone();
        let root = vote_signing_root(&data, table.digest()).unwrap();
        SignedVote {
            data,
            operator_index: table.index_of(&self.nodes[i].key.public_key().to_bytes()).unwrap(),
            signature: self.nodes[i].key.sign(&root).to_bytes().to_vec().try_into().unwrap(),
        }
    }

    fn execute(&mut self, i: usize, actions: Vec<Action>) {
        let mut finalized_any = false;
        for action in actions {
            match action {
                Action::PersistVote(v) => {
                    self.nodes[i].persisted.own_votes.push(v);
                    if self.nodes[i].crash_after_persist {
                        self.nodes[i].crash_after_persist = false;
                        self.crash(i);
                        return;
                    }
                }
                Action::BroadcastProposal(p) => {
                    if let Ok(root) = p.message.block.root() {
                        self.block_store.insert(root, p.message.block.clone());
                    }
                    if self.nodes[i].behavior == Behavior::Equivocate {
                        self.equivocate(i, p);
                    } else {
                        self.broadcast(i, Msg::Proposal(p));
                    }
                }
                Action::BroadcastVote(v) => {
                    // Persist before publish: every published own vote was persisted earlier.
                    assert!(
                        self.nodes[i].persisted.own_votes.contains(&v),
                        "vote published before persisted"
                    );
                    self.nodes[i].sent_votes.push(v.clone());
                    let data = v.data;
                    self.broadcast(i, Msg::Vote(v));
                    if self.nodes[i].behavior == Behavior::DoubleVote {
                        let conflicting = match data.vote_kind() {
                            Some(VoteKind::Notarize) => {
                                VoteData::notarize(data.epoch, data.view, self.rng.random())
                            }
                            Some(VoteKind::Nullify) => {
                                VoteData::finalize(data.epoch, data.view, self.rng.random())
                            }
                            _ => VoteData::nullify(data.epoch, data.view),
                        };
                        let extra = self.sign_vote(i, conflicting);
                        self.broadcast(i, Msg::Vote(extra));
                    }
                }
                Action::BroadcastCertificate(c) => self.broadcast(i, Msg::Cert(c)),
                Action::Notarized { certificate, block } => {
                    let d = certificate.data;
                    self.nodes[i].notarized.push((d.epoch, d.view, d.block_root));
                    self.nodes[i].persisted.certificates.push(certificate);
                    self.nodes[i].persisted.blocks.extend(block);
                }
                Action::Nullified { certificate } => {
                    let d = certificate.data;
                    self.nodes[i].nullified.push((d.epoch, d.view));
                    self.nodes[i].persisted.certificates.push(certificate);
                }
                Action::Finalized { root, block, certificate } => {
                    let history = &mut self.nodes[i].finalized;
                    match history.iter().find(|(h, _)| *h == block.height) {
                        // Re-derived after a restart from an older anchor: must agree.
                        Some((_, earlier)) => {
                            assert_eq!(*earlier, root, "node {i} re-finalized a different block")
                        }
                        None => history.push((block.height, root)),
                    }
                    self.nodes[i].persisted.certificates.push(certificate);
                    finalized_any = true;
                }
                Action::EpochChanged { epoch, .. } => self.nodes[i].epochs.push(epoch),
                Action::FetchBlock(root) => {
                    if let Some(b) = self.block_store.get(&root).cloned() {
                        let delay =
                            self.rng.random_range(self.net.min_delay_ms..=self.net.max_delay_ms);
                        self.seq += 1;
                        self.queue.insert((self.now + delay, self.seq), (i, Msg::Block(b)));
                    }
                }
                Action::Evidence(_) | Action::ScheduleWakeup { .. } => {}
            }
        }
        if finalized_any {
            let anchor = self.nodes[i].engine.as_ref().and_then(|e| e.anchor());
            self.nodes[i].anchor = anchor;
        }
    }

    /// Send the honest proposal to even nodes and a different valid block to odd nodes.
    fn equivocate(&mut self, i: usize, p: SignedProposal) {
        let mut other = p.clone();
        let mut tasks: Vec<_> = other.message.block.body.tasks.iter().cloned().collect();
        let noise: [u8; 8] = self.rng.random();
        tasks.push(tasks::note(other.message.block.proposer_index, &noise));
        // Notes have no effect, so the state root stays valid.
        other.message.block.body.tasks = tasks.try_into().unwrap();
        let digest = network_digest(&self.config.genesis).unwrap();
        let root = proposal_signing_root(&other.message, digest).unwrap();
        other.signature = self.nodes[i].key.sign(&root).to_bytes().to_vec().try_into().unwrap();
        self.block_store.insert(other.message.block.root().unwrap(), other.message.block.clone());
        for to in 0..self.nodes.len() {
            let msg =
                if to % 2 == 0 { Msg::Proposal(p.clone()) } else { Msg::Proposal(other.clone()) };
            self.send(i, to, msg);
        }
    }

    pub(crate) fn honest(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].behavior == Behavior::Honest).collect()
    }

    pub(crate) fn honest_histories(&self) -> Vec<Vec<(u64, Root)>> {
        self.honest().into_iter().map(|i| self.nodes[i].finalized.clone()).collect()
    }

    pub(crate) fn min_honest_height(&self) -> u64 {
        self.honest()
            .into_iter()
            .map(|i| self.nodes[i].finalized.last().map_or(0, |f| f.0))
            .min()
            .unwrap_or(0)
    }
}
