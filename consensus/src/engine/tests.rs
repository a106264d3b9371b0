//! Deterministic single-engine tests: view entry and deadlines, lazy vote checks, restart
//! guards (with negative controls), finality over long gaps, task validation outcomes, clean
//! refusal of unverifiable raw input, gossip verdicts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::bls::{self, SecretKey};
use crate::gossip::GossipError;
use crate::signing::{proposal_signing_root, vote_signing_root};
use crate::state::apply_block;
use crate::task::{TaskDefinition, TaskValidity};
use crate::testkit::{NOTE_ID, NoteTask, note};
use crate::types::{BlockBody, Proposal, TaskResult, VoteData, encode};

const GENESIS_S: u64 = 1_000_000;
const G: u64 = GENESIS_S * 1000;
/// Slot 4000 ms: pace 4000 ms, leader timeout 1600 ms, advance timeout 2400 ms.
const SLOT: u64 = 4000;

struct Net {
    keys: Vec<SecretKey>,
    config: EngineConfig,
    table: KeyTable,
}

fn setup() -> Net {
    setup_with(&[1, 1, 1, 1])
}

fn setup_with(powers: &[u64]) -> Net {
    let (keys, g) = crate::testkit::genesis(powers, GENESIS_S, SLOT).unwrap();
    let table = KeyTable::new(Epoch::ZERO, &g.operators, network_digest(&g).unwrap()).unwrap();
    Net { keys, config: EngineConfig::new(g), table }
}

fn plain() -> TaskRegistry {
    crate::testkit::registry(Vec::new())
}

impl Net {
    fn n(&self) -> usize {
        self.keys.len()
    }
    /// The leader of view `v` (test helpers take plain numbers; the engine takes ids).
    fn leader(&self, v: u64) -> usize {
        self.table.leader(View::new(v)).unwrap().position().unwrap()
    }
    /// An operator that leads neither view 0 nor view 1.
    fn follower(&self) -> usize {
        (0..self.n()).find(|i| *i != self.leader(0) && *i != self.leader(1)).unwrap()
    }
    fn engine(&self, i: usize, persisted: Persisted, registry: TaskRegistry) -> Engine {
        let anchor = Anchor::genesis(&self.config.genesis).unwrap();
        Engine::restart(self.config.clone(), self.keys[i].clone(), registry, anchor, persisted)
            .unwrap()
    }
    fn vote(&self, i: usize, data: VoteData) -> SignedVote {
        let root = vote_signing_root(&data, self.table.digest()).unwrap();
        SignedVote {
            data,
            operator_index: OperatorIndex::at(i),
            signature: self.keys[i].sign(&root).to_bytes().to_vec().try_into().unwrap(),
        }
    }
    fn cert(&self, signers: &[usize], data: VoteData) -> Certificate {
        let root = vote_signing_root(&data, self.table.digest()).unwrap();
        let sigs: Vec<_> = signers.iter().map(|i| self.keys[*i].sign(&root)).collect();
        let bits: Vec<bool> = (0..self.n()).map(|i| signers.contains(&i)).collect();
        Certificate {
            data,
            signers: bits.as_slice().try_into().unwrap(),
            signature: bls::aggregate_signatures(&sigs)
                .unwrap()
                .to_bytes()
                .to_vec()
                .try_into()
                .unwrap(),
        }
    }
    /// A child of `parent` (with state `state`) at the next height, proposed by `proposer`.
    fn child(
        &self,
        parent: &Block,
        state: &ChainState,
        proposer: usize,
        tasks: Vec<TaskResult>,
    ) -> (Block, ChainState) {
        let parent_root = parent.root().unwrap();
        let mut block = Block {
            height: parent.height.next(),
            parent_root,
            proposer_index: OperatorIndex::at(proposer),
            state_root: [0; 32],
            body: BlockBody { tasks: tasks.try_into().unwrap() },
        };
        let mut reg = TaskRegistry::new();
        reg.register(Arc::new(NoteTask)).unwrap();
        reg.register(Arc::new(crate::testkit::AcceptAvs(AVS_ID))).unwrap();
        let next = apply_block(&reg, self.table.digest(), state, &parent_root, &block).unwrap();
        block.state_root = crate::types::root_of(&next).unwrap();
        (block, next)
    }
    /// A child of genesis proposed by `leader(view)` with the given task results.
    fn child_of_genesis(&self, view: u64, tasks: Vec<TaskResult>) -> Block {
        let g = Anchor::genesis(&self.config.genesis).unwrap();
        let leader = self.leader(view);
        // Internal tasks are performed by the block's proposer (docs/protocol.md, 7.3).
        let tasks = tasks
            .into_iter()
            .map(|t| match t.task_definition_id >= crate::types::FIRST_INTERNAL_TASK_ID {
                true => TaskResult { performer_index: OperatorIndex::at(leader), ..t },
                false => t,
            })
            .collect();
        self.child(&g.block, &g.state, leader, tasks).0
    }
    fn propose(&self, view: u64, block: Block, justification: Vec<Certificate>) -> SignedProposal {
        let message = Proposal { view: View::new(view), epoch: Epoch::ZERO, block };
        let root = proposal_signing_root(&message, self.table.digest()).unwrap();
        SignedProposal {
            message,
            signature: self.keys[self.leader(view)]
                .sign(&root)
                .to_bytes()
                .to_vec()
                .try_into()
                .unwrap(),
            justification: justification.try_into().unwrap(),
        }
    }
}

fn persisted_votes(actions: &[Action]) -> Vec<VoteData> {
    actions
        .iter()
        .filter_map(|a| if let Action::PersistVote(v) = a { Some(v.data) } else { None })
        .collect()
}

fn own_votes(actions: &[Action]) -> Vec<SignedVote> {
    actions
        .iter()
        .filter_map(|a| if let Action::PersistVote(v) = a { Some(v.clone()) } else { None })
        .collect()
}

fn verdicts(actions: &[Action]) -> Vec<(u64, Verdict)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::VoteChecked { vote, verdict } => Some((vote.operator_index.get(), *verdict)),
            _ => None,
        })
        .collect()
}

fn entered(actions: &[Action]) -> Vec<(u64, EntryCause)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::EnteredView { view, cause, .. } => Some((view.get(), *cause)),
            _ => None,
        })
        .collect()
}

fn proposed(actions: &[Action]) -> bool {
    actions.iter().any(|a| matches!(a, Action::BroadcastProposal(_)))
}

fn tick(e: &mut Engine, ms: u64) -> Vec<Action> {
    e.handle(G + ms, Input::Tick { is_aggregator: false })
}

fn raw_vote(e: &mut Engine, at: u64, vote: SignedVote, is_aggregator: bool) -> Vec<Action> {
    e.handle(G + at, Input::Vote { vote: Incoming::Raw(vote), is_aggregator })
}

#[test]
fn a_certificate_moves_the_node_on_at_once_dated_by_its_arrival() {
    let net = setup();
    let me = net.follower();
    let mut e = net.engine(me, Persisted::default(), plain());
    assert_eq!(entered(&tick(&mut e, 0)), vec![(0, EntryCause::EpochStart)]);
    // A nullification of view 0 at 37 ms: view 1 is entered then, not at a slot or a tick.
    let acts = e.handle(
        G + 37,
        Input::Certificate(Incoming::Raw(
            net.cert(&[0, 1, 2], VoteData::nullify(Epoch::ZERO, View::ZERO)),
        )),
    );
    assert_eq!(entered(&acts), vec![(1, EntryCause::Nullified)]);
    assert_eq!(e.ep.entered_at_ms, Some(G + 37));
    // A notarization of view 5 (ahead) is a catch-up to view 6.
    let root = net.child_of_genesis(5, vec![]).root().unwrap();
    let acts = e.handle(
        G + 40,
        Input::Certificate(Incoming::Raw(
            net.cert(&[0, 1, 2], VoteData::notarize(Epoch::ZERO, View::new(5), root)),
        )),
    );
    assert_eq!(entered(&acts), vec![(6, EntryCause::CatchUp)]);
    assert!(persisted_votes(&acts).contains(&VoteData::finalize(Epoch::ZERO, View::new(5), root)));
}

#[test]
fn deadlines_nullify_back_off_and_are_always_scheduled() {
    let net = setup();
    let me = net.follower();
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    // Leader deadline: pace (4000) + 1600; nothing lost between ticks.
    assert_eq!(e.next_deadline(), Some(G + 5600));
    assert!(persisted_votes(&tick(&mut e, 5599)).is_empty());
    assert_eq!(
        persisted_votes(&tick(&mut e, 5600)),
        vec![VoteData::nullify(Epoch::ZERO, View::ZERO)]
    );
    // Stalled after the advance deadline (6400): pull votes and certificates.
    let acts = tick(&mut e, 6400);
    assert!(
        acts.contains(&Action::Request(Request::Votes { epoch: Epoch::ZERO, view: View::ZERO })),
        "{acts:?}"
    );
    assert!(acts.contains(&Action::Request(Request::Certificates {
        epoch: Epoch::ZERO,
        from_view: View::ZERO
    })));
    assert_eq!(e.next_deadline(), Some(G + 6400 + 2400), "next pull");
    // Leaving view 0 on a nullification doubles view 1's timeouts.
    e.handle(
        G + 7000,
        Input::Certificate(Incoming::Raw(
            net.cert(&[0, 1, 2], VoteData::nullify(Epoch::ZERO, View::ZERO)),
        )),
    );
    assert_eq!(e.view(), View::new(1));
    if net.leader(1) != me {
        assert_eq!(e.next_deadline(), Some(G + 7000 + 4000 + 2 * 1600));
    }
}

#[test]
fn votes_are_checked_lazily_with_one_verdict_each() {
    let net = setup_with(&[1; 7]);
    let me = net.follower();
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let data = VoteData::nullify(Epoch::ZERO, View::ZERO);
    let others: Vec<usize> = (0..7).filter(|i| *i != me).collect();
    // Quorum of 7 equal operators is 5. The first four raw votes just wait.
    let mut forged = net.vote(others[0], data);
    forged.signature = net.vote(others[1], data).signature;
    assert!(verdicts(&raw_vote(&mut e, 1, forged.clone(), false)).is_empty());
    for i in &others[1..4] {
        assert!(verdicts(&raw_vote(&mut e, 1, net.vote(*i, data), false)).is_empty());
    }
    assert_eq!(e.pool.pending_len(), 4);
    // The fifth could complete a quorum: one aggregate check fails, bisection names the
    // forged one, the four good ones are accepted; four verified of five needed: no quorum.
    let acts = raw_vote(&mut e, 2, net.vote(others[4], data), false);
    let mut got = verdicts(&acts);
    got.sort();
    let mut want: Vec<(u64, Verdict)> =
        others[1..5].iter().map(|i| (*i as u64, Verdict::Accept)).collect();
    want.push((others[0] as u64, Verdict::Reject));
    want.sort();
    assert_eq!(got, want);
    assert_eq!(e.view(), View::ZERO);
    // The real vote of the forged operator completes the nullification: view 1, no broadcast
    // (flag off), the certificate is kept to publish later.
    let acts = raw_vote(&mut e, 3, net.vote(others[0], data), false);
    assert_eq!(verdicts(&acts), vec![(others[0] as u64, Verdict::Accept)]);
    assert_eq!(e.view(), View::new(1));
    assert!(!acts.iter().any(|a| matches!(a, Action::BroadcastCertificate(_))));
    assert!(acts.iter().any(|a| matches!(a, Action::Certified { local: true, .. })));
    // Another vote of a certified VoteData is not checked at all.
    assert_eq!(
        verdicts(&raw_vote(&mut e, 4, net.vote(me, data), false)),
        vec![(me as u64, Verdict::Ignore)]
    );
    // The flag switched on: the first tick publishes the certificate built while it was off,
    // once.
    let acts = e.handle(G + 5, Input::Tick { is_aggregator: true });
    let published = acts
        .iter()
        .filter(|a| matches!(a, Action::BroadcastCertificate(c) if c.data == data))
        .count();
    assert_eq!(published, 1);
    let acts = e.handle(G + 6, Input::Tick { is_aggregator: true });
    assert!(!acts.iter().any(|a| matches!(a, Action::BroadcastCertificate(_))));
}

#[test]
fn a_pending_vote_below_quorum_is_checked_after_one_interval() {
    let net = setup();
    let me = net.follower();
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let other = (0..4).find(|i| *i != me).unwrap();
    assert!(
        verdicts(&raw_vote(
            &mut e,
            10,
            net.vote(other, VoteData::nullify(Epoch::ZERO, View::ZERO)),
            false
        ))
        .is_empty()
    );
    assert_eq!(e.next_deadline(), Some(G + 10 + 800));
    assert_eq!(verdicts(&tick(&mut e, 810)), vec![(other as u64, Verdict::Accept)]);
}

#[test]
fn an_aggregator_publishes_what_it_builds_at_once() {
    let net = setup();
    let me = net.follower();
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let data = VoteData::nullify(Epoch::ZERO, View::ZERO);
    let mut published = 0;
    for i in (0..4).filter(|i| *i != me).take(3) {
        let acts = raw_vote(&mut e, 1, net.vote(i, data), true);
        published += acts.iter().filter(|a| matches!(a, Action::BroadcastCertificate(_))).count();
    }
    assert_eq!(published, 1);
    assert_eq!(e.view(), View::new(1));
}

/// NULLIFY(0) persisted, crash, restart: a notarization of view 0 must not draw FINALIZE(0).
/// Without the persisted vote the same input does draw FINALIZE(0): the guard is what holds.
#[test]
fn restart_honours_persisted_nullify() {
    let net = setup();
    let me = net.follower();
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let acts = tick(&mut e, 6400);
    assert_eq!(persisted_votes(&acts), vec![VoteData::nullify(Epoch::ZERO, View::ZERO)]);
    let stored = own_votes(&acts);
    let block = net.child_of_genesis(0, vec![]);
    let notarization =
        net.cert(&[0, 1, 2, 3], VoteData::notarize(Epoch::ZERO, View::ZERO, block.root().unwrap()));

    let run = |persisted: Persisted| {
        let mut e = net.engine(me, persisted, plain());
        tick(&mut e, 7000);
        persisted_votes(
            &e.handle(G + 7001, Input::Certificate(Incoming::Raw(notarization.clone()))),
        )
    };
    let guarded = run(Persisted { own_votes: stored, ..Default::default() });
    assert!(!guarded.iter().any(|d| d.vote_kind() == Some(VoteKind::Finalize)), "{guarded:?}");
    let amnesic = run(Persisted::default());
    assert!(
        amnesic.contains(&VoteData::finalize(Epoch::ZERO, View::ZERO, block.root().unwrap())),
        "negative control: {amnesic:?}"
    );
}

/// NOTARIZE(0, A) persisted, crash, restart: an equivocating proposal B for view 0 is not
/// notarized. Without the persisted vote it would be.
#[test]
fn restart_honours_persisted_notarize() {
    let net = setup();
    let me = net.follower();
    let a = net.child_of_genesis(0, vec![note(OperatorIndex::ZERO, b"a").unwrap()]);
    let b = net.child_of_genesis(0, vec![note(OperatorIndex::ZERO, b"b").unwrap()]);
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let acts = e.handle(G + 1, Input::Proposal(Incoming::Raw(net.propose(0, a.clone(), vec![]))));
    assert_eq!(
        persisted_votes(&acts),
        vec![VoteData::notarize(Epoch::ZERO, View::ZERO, a.root().unwrap())]
    );
    let stored = own_votes(&acts);

    let run = |persisted: Persisted| {
        let mut e = net.engine(me, persisted, plain());
        tick(&mut e, 800);
        persisted_votes(
            &e.handle(G + 801, Input::Proposal(Incoming::Raw(net.propose(0, b.clone(), vec![])))),
        )
    };
    assert!(run(Persisted { own_votes: stored, ..Default::default() }).is_empty());
    assert_eq!(
        run(Persisted::default()),
        vec![VoteData::notarize(Epoch::ZERO, View::ZERO, b.root().unwrap())],
        "negative control"
    );
}

/// A restarted node's own vote counts towards its certificates (it is pooled again): with
/// one operator down, the other two votes plus its own restored one are a quorum.
#[test]
fn restored_own_votes_count_towards_certificates() {
    let net = setup();
    let me = net.follower();
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let stored = own_votes(&tick(&mut e, 5600));
    assert_eq!(stored.len(), 1);
    let others: Vec<usize> = (0..4).filter(|i| *i != me).take(2).collect();
    let run = |persisted: Persisted| {
        let mut e = net.engine(me, persisted, plain());
        tick(&mut e, 7000);
        for i in &others {
            raw_vote(&mut e, 7001, net.vote(*i, VoteData::nullify(Epoch::ZERO, View::ZERO)), false);
        }
        e.view()
    };
    assert_eq!(run(Persisted { own_votes: stored, ..Default::default() }), View::new(1));
    // Negative control: without it the two votes are no quorum (and the restarted node has not
    // timed out again yet).
    assert_eq!(run(Persisted::default()), View::ZERO);
}

/// Own votes stored for a later epoch are guards once the node switches to that epoch at
/// runtime, not only when the switch happens while replaying.
#[test]
fn own_votes_of_a_later_epoch_guard_a_runtime_switch() {
    use crate::testkit::{Change, registry};
    let script = vec![(Height::new(1), Change::SetPower { id: 0, power: 2 })];
    let net = setup();
    let me = net.follower();
    // Build the epoch-ending block 1 at view 0 and its finalization.
    let g = Anchor::genesis(&net.config.genesis).unwrap();
    let reg = registry(script.clone());
    let leader = OperatorIndex::at(net.leader(0));
    let task = reg.perform(&g.state, leader, 0);
    assert_eq!(task.len(), 1);
    let parent_root = g.block.root().unwrap();
    let mut block = Block {
        height: Height::new(1),
        parent_root,
        proposer_index: leader,
        state_root: [0; 32],
        body: BlockBody { tasks: task.try_into().unwrap() },
    };
    let state = apply_block(&reg, net.table.digest(), &g.state, &parent_root, &block).unwrap();
    block.state_root = crate::types::root_of(&state).unwrap();
    assert!(state.ends_epoch());
    let root = block.root().unwrap();
    let fin = net.cert(&[0, 1, 2, 3], VoteData::finalize(Epoch::ZERO, View::ZERO, root));
    // Epoch 1's table, and a NULLIFY(1, 0) this node persisted before a crash.
    let next = crate::state::child_base(&state).unwrap();
    let table1 = KeyTable::new(Epoch::new(1), &next.operators, net.table.digest()).unwrap();
    let me1 = table1.index_of(&net.keys[me].public_key().to_bytes()).unwrap();
    let data = VoteData::nullify(Epoch::new(1), View::ZERO);
    let signed = SignedVote {
        data,
        operator_index: me1,
        signature: net.keys[me]
            .sign(&vote_signing_root(&data, net.table.digest()).unwrap())
            .to_bytes()
            .to_vec()
            .try_into()
            .unwrap(),
    };
    let run = |own_votes: Vec<SignedVote>| {
        let mut e =
            net.engine(me, Persisted { own_votes, ..Default::default() }, registry(script.clone()));
        tick(&mut e, 0);
        e.handle(G + 1, Input::Proposal(Incoming::Raw(net.propose(0, block.clone(), vec![]))));
        let acts = e.handle(G + 2, Input::Certificate(Incoming::Raw(fin.clone())));
        assert_eq!(e.epoch(), Epoch::new(1));
        // Epoch 1, view 0 gets a notarization: FINALIZE only if NULLIFY(1, 0) was not cast.
        let b1 = Block { height: Height::new(2), parent_root: root, ..Default::default() };
        let d = VoteData::notarize(Epoch::new(1), View::ZERO, b1.root().unwrap());
        let cert = net.cert(&[0, 1, 2, 3], d);
        let _ = acts;
        persisted_votes(&e.handle(G + 3, Input::Certificate(Incoming::Raw(cert))))
    };
    let guarded = run(vec![signed]);
    assert!(!guarded.iter().any(|d| d.vote_kind() == Some(VoteKind::Finalize)), "{guarded:?}");
    let amnesic = run(Vec::new());
    assert!(amnesic.iter().any(|d| d.vote_kind() == Some(VoteKind::Finalize)), "negative control");
}

/// A finalization 200 heights ahead: the missing blocks come by range, 64 at a time, and are
/// finalized in one pass in height order.
#[test]
fn a_long_gap_is_fetched_by_range_and_finalized_in_order() {
    let net = setup();
    let me = net.follower();
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let g = Anchor::genesis(&net.config.genesis).unwrap();
    let (mut block, mut state) = (g.block.clone(), g.state.clone());
    let mut chain = Vec::new();
    for _ in 0..200 {
        let (b, s) = net.child(&block, &state, 0, vec![]);
        chain.push(b.clone());
        (block, state) = (b, s);
    }
    let target = chain.last().unwrap().clone();
    let fin = net
        .cert(&[0, 1, 2], VoteData::finalize(Epoch::ZERO, View::new(300), target.root().unwrap()));
    let acts = e.handle(G + 1, Input::Certificate(Incoming::Raw(fin)));
    assert!(acts.contains(&Action::Request(Request::BlocksByRoot(vec![target.root().unwrap()]))));
    let acts = e.handle(G + 2, Input::Blocks(vec![target.clone()]));
    let mut requests: Vec<(Height, u64)> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Request(Request::BlocksByRange { start_height, count }) => {
                Some((*start_height, *count))
            }
            _ => None,
        })
        .collect();
    let mut finalized = Vec::new();
    let mut rounds = 0;
    while let Some((start, count)) = requests.pop() {
        rounds += 1;
        assert!(rounds < 10, "too many round trips");
        assert!(count <= RANGE_BATCH);
        let answer: Vec<Block> = chain
            .iter()
            .filter(|b| b.height >= start && b.height < start.saturating_add(count))
            .cloned()
            .collect();
        let acts = e.handle(G + 3, Input::Blocks(answer));
        finalized.extend(acts.iter().filter_map(|a| match a {
            Action::Finalized { block, .. } => Some(block.height.get()),
            _ => None,
        }));
        requests.extend(acts.iter().filter_map(|a| match a {
            Action::Request(Request::BlocksByRange { start_height, count }) => {
                Some((*start_height, *count))
            }
            _ => None,
        }));
    }
    assert_eq!(finalized, (1..=200).collect::<Vec<u64>>());
    assert!(rounds <= 4, "{rounds} range round trips for 199 blocks");
    assert_eq!(e.finalized().1, Height::new(200));
}

#[test]
fn invalid_task_result_is_not_voted() {
    let net = setup();
    let me = net.follower();
    let mut bad = note(OperatorIndex::ZERO, b"x").unwrap();
    bad.proof_of_task = crate::types::byte_list(&[0u8; 32]).unwrap();
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let acts = e.handle(
        G + 1,
        Input::Proposal(Incoming::Raw(net.propose(0, net.child_of_genesis(0, vec![bad]), vec![]))),
    );
    assert!(persisted_votes(&acts).is_empty());
    // Unknown task id: invalid too.
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let mut unknown = note(OperatorIndex::ZERO, b"y").unwrap();
    unknown.task_definition_id = 999;
    let block = Block {
        body: BlockBody { tasks: vec![unknown].try_into().unwrap() },
        ..net.child_of_genesis(0, vec![])
    };
    assert!(
        persisted_votes(
            &e.handle(G + 1, Input::Proposal(Incoming::Raw(net.propose(0, block, vec![]))))
        )
        .is_empty()
    );
    // A valid one is stored and voted.
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let good = net.child_of_genesis(0, vec![note(OperatorIndex::ZERO, b"x").unwrap()]);
    let acts =
        e.handle(G + 1, Input::Proposal(Incoming::Raw(net.propose(0, good.clone(), vec![]))));
    assert_eq!(
        persisted_votes(&acts),
        vec![VoteData::notarize(Epoch::ZERO, View::ZERO, good.root().unwrap())]
    );
    let stored = acts.iter().position(|a| matches!(a, Action::StoreBlock { .. })).unwrap();
    let persisted = acts.iter().position(|a| matches!(a, Action::PersistVote(_))).unwrap();
    assert!(stored < persisted, "the block is kept before the vote that names it");
}

/// A task that cannot judge yet until `ready` flips.
struct Gate(Arc<AtomicBool>);
impl TaskDefinition for Gate {
    fn id(&self) -> u16 {
        NOTE_ID
    }
    fn validate(&self, _: &ChainState, _: &TaskResult, _now_ms: u64) -> TaskValidity {
        if self.0.load(Ordering::SeqCst) {
            TaskValidity::Valid
        } else {
            TaskValidity::NotYet("chain source behind".into())
        }
    }
    fn apply(&self, _: &mut ChainState, _: &TaskResult) -> Result<(), String> {
        Ok(())
    }
    fn perform(&self, _: &ChainState, _: OperatorIndex, _: u64) -> Vec<TaskResult> {
        Vec::new()
    }
}

/// Records the time and proposer each `perform` is asked with.
struct Clocked(Arc<std::sync::Mutex<Vec<(OperatorIndex, u64)>>>);
impl TaskDefinition for Clocked {
    fn id(&self) -> u16 {
        NOTE_ID
    }
    fn validate(&self, _: &ChainState, _: &TaskResult, _now_ms: u64) -> TaskValidity {
        TaskValidity::Valid
    }
    fn apply(&self, _: &mut ChainState, _: &TaskResult) -> Result<(), String> {
        Ok(())
    }
    fn perform(&self, _: &ChainState, proposer: OperatorIndex, now_ms: u64) -> Vec<TaskResult> {
        self.0.lock().unwrap().push((proposer, now_ms));
        Vec::new()
    }
}

/// Issue 17: a task is performed at the time of the input the engine handles, never at a
/// clock it reads itself, so replaying the same inputs gives the same blocks.
#[test]
fn tasks_are_performed_at_the_inputs_time() {
    let net = setup();
    let leader = net.leader(0);
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut reg = TaskRegistry::new();
    reg.register(Arc::new(Clocked(Arc::clone(&asked)))).unwrap();
    let mut e = net.engine(leader, Persisted::default(), reg);
    let mut proposed_at = None;
    for ms in [0, 250, 500, 1000, 2000, 4000] {
        if proposed(&tick(&mut e, ms)) {
            proposed_at = Some(G + ms);
            break;
        }
    }
    let at = proposed_at.expect("the leader of view 0 proposed");
    assert_eq!(*asked.lock().unwrap(), vec![(OperatorIndex::at(leader), at)]);
}

#[test]
fn not_yet_is_retried_not_refused() {
    let net = setup();
    let me = net.follower();
    let ready = Arc::new(AtomicBool::new(false));
    let mut reg = TaskRegistry::new();
    reg.register(Arc::new(Gate(Arc::clone(&ready)))).unwrap();
    let mut e = net.engine(me, Persisted::default(), reg);
    tick(&mut e, 0);
    let block = net.child_of_genesis(0, vec![note(OperatorIndex::ZERO, b"later").unwrap()]);
    assert!(
        persisted_votes(
            &e.handle(G + 1, Input::Proposal(Incoming::Raw(net.propose(0, block.clone(), vec![]))))
        )
        .is_empty()
    );
    assert!(persisted_votes(&tick(&mut e, 800)).is_empty());
    ready.store(true, Ordering::SeqCst);
    assert_eq!(
        persisted_votes(&tick(&mut e, 1600)),
        vec![VoteData::notarize(Epoch::ZERO, View::ZERO, block.root().unwrap())]
    );
}

#[test]
fn unverifiable_raw_input_changes_nothing() {
    let net = setup();
    let me = net.follower();
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let before = format!("{e:?}");
    let root = net.child_of_genesis(0, vec![]).root().unwrap();
    // A vote from a non-member, and one whose signature is not a point: refused at once.
    let mut stranger = net.vote(1, VoteData::notarize(Epoch::ZERO, View::ZERO, root));
    stranger.operator_index = OperatorIndex::new(9);
    assert_eq!(verdicts(&raw_vote(&mut e, 1, stranger, true)), vec![(9, Verdict::Reject)]);
    let mut junk = net.vote(1, VoteData::notarize(Epoch::ZERO, View::ZERO, root));
    junk.signature = vec![0xffu8; 96].try_into().unwrap();
    assert_eq!(verdicts(&raw_vote(&mut e, 1, junk, true)), vec![(1, Verdict::Reject)]);
    assert_eq!(e.pool.pending_len() + e.pool.verified_len(), 0);
    // Certificate without quorum, and one with a lying bitlist.
    let weak = net.cert(&[0, 1], VoteData::notarize(Epoch::ZERO, View::ZERO, root));
    assert!(e.handle(G + 1, Input::Certificate(Incoming::Raw(weak))).is_empty());
    let mut lying = net.cert(&[0, 1, 2], VoteData::nullify(Epoch::ZERO, View::ZERO));
    lying.signers.set(3, true);
    assert!(e.handle(G + 1, Input::Certificate(Incoming::Raw(lying))).is_empty());
    // Proposal signed by a non-leader.
    let mut p = net.propose(0, net.child_of_genesis(0, vec![]), vec![]);
    let other = (net.leader(0) + 1) % 4;
    p.signature = net.keys[other]
        .sign(&proposal_signing_root(&p.message, net.table.digest()).unwrap())
        .to_bytes()
        .to_vec()
        .try_into()
        .unwrap();
    assert!(e.handle(G + 1, Input::Proposal(Incoming::Raw(p))).is_empty());
    // An unsolicited block is ignored.
    assert!(e.handle(G + 1, Input::Blocks(vec![net.child_of_genesis(0, vec![])])).is_empty());
    assert_eq!(format!("{e:?}"), before);
    assert!(
        e.ep.views
            .get(&View::ZERO)
            .is_none_or(|vs| vs.notarization.is_none() && vs.nullification.is_none())
    );
}

#[test]
fn gossip_verdicts() {
    let net = setup();
    let mut e = net.engine(0, Persisted::default(), plain());
    tick(&mut e, 0);
    let ctx = e.gossip_context();
    let good = net.vote(1, VoteData::nullify(Epoch::ZERO, View::ZERO));
    let check = |v: &SignedVote| ctx.check_vote(&encode(v).unwrap());
    assert_eq!(check(&good), Ok(good.clone()));
    // A signature of another operator is only found by the pool's check, not here.
    let mut non_member = good.clone();
    non_member.operator_index = OperatorIndex::new(9);
    assert_eq!(check(&non_member), Err(GossipError::NotAMember(OperatorIndex::new(9))));
    assert_eq!(check(&non_member).unwrap_err().verdict(), Verdict::Reject);
    let later = net.vote(1, VoteData::nullify(Epoch::new(1), View::ZERO));
    assert_eq!(
        check(&later),
        Err(GossipError::LaterEpoch { got: Epoch::new(1), ours: Epoch::ZERO })
    );
    assert_eq!(check(&later).unwrap_err().verdict(), Verdict::Ignore);
    let far = net.vote(1, VoteData::nullify(Epoch::ZERO, View::new(500)));
    assert_eq!(check(&far).unwrap_err().verdict(), Verdict::Ignore);
    assert!(matches!(ctx.check_vote(&[1, 2, 3]), Err(GossipError::Undecodable(_))));
    let weak = net.cert(&[0, 1], VoteData::nullify(Epoch::ZERO, View::ZERO));
    assert_eq!(ctx.check_certificate(&encode(&weak).unwrap()).unwrap_err(), GossipError::NoQuorum);
    let strong = net.cert(&[0, 1, 2], VoteData::nullify(Epoch::ZERO, View::ZERO));
    assert!(ctx.check_certificate(&encode(&strong).unwrap()).unwrap().checked_by(&net.table));
    let p = net.propose(0, net.child_of_genesis(0, vec![]), vec![]);
    assert!(ctx.check_proposal(&encode(&p).unwrap()).is_ok());
    // Once a nullification of view 0 is held, any other one (other signers) is ignored
    // without a pairing, and so are votes of that VoteData.
    e.handle(G + 1, Input::Certificate(Incoming::Raw(strong)));
    let ctx = e.gossip_context();
    let other = net.cert(&[1, 2, 3], VoteData::nullify(Epoch::ZERO, View::ZERO));
    assert_eq!(
        ctx.check_certificate(&encode(&other).unwrap()).unwrap_err(),
        GossipError::AlreadyCertified
    );
    assert_eq!(ctx.check_vote(&encode(&good).unwrap()), Err(GossipError::AlreadyCertified));
}

/// Review T10: once a view's proposal is held, a second one signed by the same (equivocating)
/// leader is ignored before it is decoded or verified; other views are unaffected.
#[test]
fn a_second_proposal_for_a_view_is_ignored_unverified() {
    let net = setup();
    let follower = (net.leader(0) + 1) % net.n();
    let mut e = net.engine(follower, Persisted::default(), plain());
    tick(&mut e, 0);
    let first = net.propose(0, net.child_of_genesis(0, vec![]), vec![]);
    let mut block = net.child_of_genesis(0, vec![]);
    block.state_root = [9; 32];
    let second = net.propose(0, block, vec![]);
    assert!(e.gossip_context().check_proposal(&encode(&second).unwrap()).is_ok());
    e.handle(G + 1, Input::Proposal(Incoming::Raw(first)));
    let ctx = e.gossip_context();
    assert_eq!(
        ctx.check_proposal(&encode(&second).unwrap()).unwrap_err(),
        GossipError::AlreadyProposed(View::ZERO)
    );
    // Not even a pairing: a garbage signature gets the same answer.
    let mut garbage = second;
    garbage.signature = vec![0u8; 96].try_into().unwrap();
    assert_eq!(
        ctx.check_proposal(&encode(&garbage).unwrap()).unwrap_err(),
        GossipError::AlreadyProposed(View::ZERO)
    );
}

/// Review T5: a proposal of another epoch or outside the window is ignored from its fixed
/// offsets, before a (possibly 10 MiB) decode; the same bytes in the current epoch are decoded
/// (and here refused as undecodable, which proves the decode is what was skipped).
#[test]
fn a_proposal_outside_epoch_or_window_is_ignored_before_it_is_decoded() {
    let net = setup();
    let mut e = net.engine(0, Persisted::default(), plain());
    tick(&mut e, 0);
    let ctx = e.gossip_context();
    let p = net.propose(0, net.child_of_genesis(0, vec![]), vec![]);
    let mut bytes = encode(&p).unwrap();
    bytes.truncate(bytes.len() - 1);
    assert!(matches!(ctx.check_proposal(&bytes), Err(GossipError::Undecodable(_))));
    let at = crate::types::SIGNED_PROPOSAL_FIXED_BYTES;
    let mut later = bytes.clone();
    later[at + 8..at + 16].copy_from_slice(&7u64.to_le_bytes());
    assert_eq!(
        ctx.check_proposal(&later).unwrap_err(),
        GossipError::LaterEpoch { got: Epoch::new(7), ours: Epoch::ZERO }
    );
    let mut ahead = bytes;
    ahead[at..at + 8].copy_from_slice(&10_000u64.to_le_bytes());
    assert_eq!(
        ctx.check_proposal(&ahead).unwrap_err(),
        GossipError::TooFarAhead { view: View::new(10_000) }
    );
}

#[test]
fn leader_proposes_one_interval_after_the_previous_view_and_persists_first() {
    let net = setup();
    let leader = net.leader(1);
    let mut e = net.engine(leader, Persisted::default(), plain());
    tick(&mut e, 0);
    // View 0 nullified 300 ms in: view 1 is entered at once, but its leader waits until one
    // block interval after it entered view 0 (not one interval after entering view 1).
    let acts = e.handle(
        G + 300,
        Input::Certificate(Incoming::Raw(
            net.cert(&[0, 1, 2, 3], VoteData::nullify(Epoch::ZERO, View::ZERO)),
        )),
    );
    assert_eq!(e.view(), View::new(1));
    assert!(!proposed(&acts));
    assert_eq!(e.next_deadline(), Some(G + SLOT), "the leader's pace");
    assert!(!proposed(&tick(&mut e, SLOT - 1)));
    let acts = tick(&mut e, SLOT);
    let persist = acts.iter().position(|a| matches!(a, Action::PersistVote(_))).unwrap();
    let propose = acts.iter().position(|a| matches!(a, Action::BroadcastProposal(_))).unwrap();
    let vote = acts.iter().position(|a| matches!(a, Action::BroadcastVote(_))).unwrap();
    assert!(persist < propose && persist < vote, "{acts:?}");
}

#[test]
fn a_leader_that_skipped_the_previous_view_proposes_at_once_and_never_twice() {
    let net = setup();
    let leader = net.leader(0);
    let mut e = net.engine(leader, Persisted::default(), plain());
    // The first view of an epoch has no previous view: its leader proposes when it enters.
    let acts = tick(&mut e, 0);
    assert!(proposed(&acts));
    let stored = own_votes(&acts);
    let proposes = |persisted: Persisted| {
        let mut e = net.engine(leader, persisted, plain());
        let mut acts = tick(&mut e, 0);
        acts.extend(tick(&mut e, SLOT));
        proposed(&acts)
    };
    assert!(!proposes(Persisted { own_votes: stored, ..Default::default() }), "re-proposed");
    assert!(proposes(Persisted::default()), "negative control");
}

#[test]
fn a_leader_without_justification_asks_for_it() {
    let net = setup();
    // The leader of view 3 holds a nullification of view 2 and nothing for view 1, so it
    // cannot justify any parent.
    let leader = net.leader(3);
    let mut e = net.engine(leader, Persisted::default(), plain());
    tick(&mut e, 0);
    e.handle(
        G + 2,
        Input::Certificate(Incoming::Raw(
            net.cert(&[0, 1, 2], VoteData::nullify(Epoch::ZERO, View::new(2))),
        )),
    );
    assert_eq!(e.view(), View::new(3));
    let acts = tick(&mut e, 2 + SLOT);
    assert!(
        acts.contains(&Action::Request(Request::Certificates {
            epoch: Epoch::ZERO,
            from_view: View::new(1)
        })),
        "{acts:?}"
    );
    assert!(!proposed(&acts));
}

const AVS_ID: u16 = 7;

/// Review C1 (issue 14): a leader that had not seen a task in flight puts it in a child of
/// the block that already holds it; without the ancestor rule both blocks would be finalized
/// and the task settled twice. The child is not voted; the same child without it is.
#[test]
fn a_task_already_in_an_unfinalized_ancestor_is_not_voted_again() {
    let net = setup();
    let me = net.follower();
    let registry = || {
        let mut r = plain();
        r.register(Arc::new(crate::testkit::AcceptAvs(AVS_ID))).unwrap();
        r
    };
    let digest = net.table.digest();
    let task = crate::testkit::avs_result(
        &net.keys[me],
        OperatorIndex::at(me),
        AVS_ID,
        b"p",
        b"d",
        digest,
    )
    .unwrap();
    let g = Anchor::genesis(&net.config.genesis).unwrap();
    let (b1, s1) = net.child(&g.block, &g.state, net.leader(0), vec![task.clone()]);
    let notarized =
        net.cert(&[0, 1, 2, 3], VoteData::notarize(Epoch::ZERO, View::ZERO, b1.root().unwrap()));
    let votes_in_view_1 = |tasks: Vec<TaskResult>| {
        let mut e = net.engine(me, Persisted::default(), registry());
        tick(&mut e, 0);
        let first = net.propose(0, b1.clone(), vec![]);
        let acts = e.handle(G + 1, Input::Proposal(Incoming::Raw(first)));
        assert_eq!(
            persisted_votes(&acts),
            vec![VoteData::notarize(Epoch::ZERO, View::ZERO, b1.root().unwrap())]
        );
        let child = net.child(&b1, &s1, net.leader(1), tasks).0;
        let second = net.propose(1, child.clone(), vec![notarized.clone()]);
        let acts = e.handle(G + 2, Input::Proposal(Incoming::Raw(second)));
        let notarize = VoteData::notarize(Epoch::ZERO, View::new(1), child.root().unwrap());
        persisted_votes(&acts).contains(&notarize)
    };
    assert!(!votes_in_view_1(vec![task]), "the task again, one block later");
    assert!(votes_in_view_1(Vec::new()), "negative control: the child without it");
}
