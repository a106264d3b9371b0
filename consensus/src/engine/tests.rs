//! Deterministic single-engine tests: restart guards (with negative controls), task
//! validation outcomes, clean refusal of unverifiable raw input, gossip outcomes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::bls::{self, SecretKey};
use crate::gossip::GossipOutcome;
use crate::signing::{proposal_signing_root, vote_signing_root};
use crate::sim::tasks::{NOTE_ID, NoteTask, note};
use crate::sim::{GENESIS_MS, genesis};
use crate::state::apply_block;
use crate::task::{TaskDefinition, TaskValidity};
use crate::types::{BlockBody, Proposal, TaskResult, VoteData, encode};

struct Net {
    keys: Vec<SecretKey>,
    config: EngineConfig,
    table: KeyTable,
}

fn setup() -> Net {
    let (keys, g) = genesis(&[1, 1, 1, 1]);
    let table = KeyTable::new(0, &g.operators, network_digest(&g).unwrap()).unwrap();
    Net { keys, config: EngineConfig::new(g), table }
}

fn plain() -> TaskRegistry {
    crate::sim::tasks::registry(None)
}

impl Net {
    fn leader(&self, v: View) -> usize {
        self.table.leader(v).unwrap() as usize
    }
    /// An operator that leads neither view 0 nor view 1.
    fn follower(&self) -> usize {
        (0..4).find(|i| *i != self.leader(0) && *i != self.leader(1)).unwrap()
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
            operator_index: i as u64,
            signature: self.keys[i].sign(&root).to_bytes().to_vec().try_into().unwrap(),
        }
    }
    fn cert(&self, signers: &[usize], data: VoteData) -> Certificate {
        let root = vote_signing_root(&data, self.table.digest()).unwrap();
        let sigs: Vec<_> = signers.iter().map(|i| self.keys[*i].sign(&root)).collect();
        let bits: Vec<bool> = (0..4).map(|i| signers.contains(&i)).collect();
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
    /// A child of genesis proposed by `leader(view)` with the given task results.
    fn child_of_genesis(&self, view: View, tasks: Vec<TaskResult>) -> Block {
        let g = Anchor::genesis(&self.config.genesis).unwrap();
        let parent_root = g.block.root().unwrap();
        let mut block = Block {
            height: 1,
            parent_root,
            proposer_index: self.leader(view) as u64,
            state_root: [0; 32],
            body: BlockBody { tasks: tasks.try_into().unwrap() },
        };
        let mut reg = TaskRegistry::new();
        reg.register(Arc::new(NoteTask)).unwrap();
        let state = apply_block(&reg, self.table.digest(), &g.state, &parent_root, &block).unwrap();
        block.state_root = crate::types::root_of(&state).unwrap();
        block
    }
    fn propose(&self, view: View, block: Block, justification: Vec<Certificate>) -> SignedProposal {
        let message = Proposal { view, epoch: 0, block };
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

fn tick(e: &mut Engine, ms: u64) -> Vec<Action> {
    e.handle(Input::Tick { now_ms: GENESIS_MS + ms, is_aggregator: false })
}

fn own_votes(actions: &[Action]) -> Vec<SignedVote> {
    actions
        .iter()
        .filter_map(|a| if let Action::PersistVote(v) = a { Some(v.clone()) } else { None })
        .collect()
}

/// NULLIFY(0) persisted, crash, restart: a notarization of view 0 must not draw FINALIZE(0).
/// Without the persisted vote the same input does draw FINALIZE(0): the guard is what holds.
#[test]
fn restart_honours_persisted_nullify() {
    let net = setup();
    let me = net.follower();
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let acts = tick(&mut e, 2400);
    assert_eq!(persisted_votes(&acts), vec![VoteData::nullify(0, 0)]);
    let stored = own_votes(&acts);
    let block = net.child_of_genesis(0, vec![]);
    let notarization = net.cert(&[0, 1, 2, 3], VoteData::notarize(0, 0, block.root().unwrap()));

    let run = |persisted: Persisted| {
        let mut e = net.engine(me, persisted, plain());
        tick(&mut e, 3200);
        persisted_votes(&e.handle(Input::Certificate(Incoming::Raw(notarization.clone()))))
    };
    let guarded = run(Persisted { own_votes: stored, ..Default::default() });
    assert!(!guarded.iter().any(|d| d.vote_kind() == Some(VoteKind::Finalize)), "{guarded:?}");
    let amnesic = run(Persisted::default());
    assert!(
        amnesic.contains(&VoteData::finalize(0, 0, block.root().unwrap())),
        "negative control: {amnesic:?}"
    );
}

/// NOTARIZE(0, A) persisted, crash, restart: an equivocating proposal B for view 0 is not
/// notarized. Without the persisted vote it would be.
#[test]
fn restart_honours_persisted_notarize() {
    let net = setup();
    let me = net.follower();
    let a = net.child_of_genesis(0, vec![note(0, b"a")]);
    let b = net.child_of_genesis(0, vec![note(0, b"b")]);
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let acts = e.handle(Input::Proposal(Incoming::Raw(net.propose(0, a.clone(), vec![]))));
    assert_eq!(persisted_votes(&acts), vec![VoteData::notarize(0, 0, a.root().unwrap())]);
    let stored = own_votes(&acts);

    let run = |persisted: Persisted| {
        let mut e = net.engine(me, persisted, plain());
        tick(&mut e, 800);
        persisted_votes(&e.handle(Input::Proposal(Incoming::Raw(net.propose(
            0,
            b.clone(),
            vec![],
        )))))
    };
    assert!(run(Persisted { own_votes: stored, ..Default::default() }).is_empty());
    assert_eq!(
        run(Persisted::default()),
        vec![VoteData::notarize(0, 0, b.root().unwrap())],
        "negative control"
    );
}

#[test]
fn invalid_task_result_is_not_voted() {
    let net = setup();
    let me = net.follower();
    let mut bad = note(0, b"x");
    bad.proof_of_task = crate::types::byte_list(&[0u8; 32]).unwrap();
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let acts = e.handle(Input::Proposal(Incoming::Raw(net.propose(
        0,
        net.child_of_genesis(0, vec![bad]),
        vec![],
    ))));
    assert!(persisted_votes(&acts).is_empty());
    // Unknown task id: invalid too.
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let mut unknown = note(0, b"y");
    unknown.task_definition_id = 999;
    let block = Block {
        body: BlockBody { tasks: vec![unknown].try_into().unwrap() },
        ..net.child_of_genesis(0, vec![])
    };
    assert!(
        persisted_votes(&e.handle(Input::Proposal(Incoming::Raw(net.propose(0, block, vec![])))))
            .is_empty()
    );
    // A valid one is voted.
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let good = net.child_of_genesis(0, vec![note(0, b"x")]);
    let acts = e.handle(Input::Proposal(Incoming::Raw(net.propose(0, good.clone(), vec![]))));
    assert_eq!(persisted_votes(&acts), vec![VoteData::notarize(0, 0, good.root().unwrap())]);
}

/// A task that cannot judge yet until `ready` flips.
struct Gate(Arc<AtomicBool>);
impl TaskDefinition for Gate {
    fn id(&self) -> u16 {
        NOTE_ID
    }
    fn validate(&self, _: &ChainState, _: &TaskResult) -> TaskValidity {
        if self.0.load(Ordering::SeqCst) {
            TaskValidity::Valid
        } else {
            TaskValidity::NotYet("chain source behind".into())
        }
    }
    fn apply(&self, _: &mut ChainState, _: &TaskResult) -> Result<(), String> {
        Ok(())
    }
    fn perform(&self, _: &ChainState, _: u64) -> Vec<TaskResult> {
        Vec::new()
    }
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
    let block = net.child_of_genesis(0, vec![note(0, b"later")]);
    assert!(
        persisted_votes(&e.handle(Input::Proposal(Incoming::Raw(net.propose(
            0,
            block.clone(),
            vec![]
        )))))
        .is_empty()
    );
    assert!(persisted_votes(&tick(&mut e, 800)).is_empty());
    ready.store(true, Ordering::SeqCst);
    assert_eq!(
        persisted_votes(&tick(&mut e, 1600)),
        vec![VoteData::notarize(0, 0, block.root().unwrap())]
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
    // Vote signed by someone else than it claims.
    let mut forged = net.vote(1, VoteData::notarize(0, 0, root));
    forged.operator_index = 2;
    let acts = e.handle(Input::Vote { vote: Incoming::Raw(forged), is_aggregator: true });
    assert!(acts.iter().all(|a| matches!(a, Action::ScheduleWakeup { .. })));
    assert_eq!(e.pool.len(), 0);
    // Certificate without quorum, and one with a lying bitlist.
    let weak = net.cert(&[0, 1], VoteData::notarize(0, 0, root));
    assert!(e.handle(Input::Certificate(Incoming::Raw(weak))).is_empty());
    let mut lying = net.cert(&[0, 1, 2], VoteData::nullify(0, 0));
    lying.signers.set(3, true);
    assert!(e.handle(Input::Certificate(Incoming::Raw(lying))).is_empty());
    // Proposal signed by a non-leader.
    let mut p = net.propose(0, net.child_of_genesis(0, vec![]), vec![]);
    let other = (net.leader(0) + 1) % 4;
    p.signature = net.keys[other]
        .sign(&proposal_signing_root(&p.message, net.table.digest()).unwrap())
        .to_bytes()
        .to_vec()
        .try_into()
        .unwrap();
    assert!(e.handle(Input::Proposal(Incoming::Raw(p))).is_empty());
    // An unsolicited block is ignored.
    assert!(e.handle(Input::Block(net.child_of_genesis(0, vec![]))).is_empty());
    assert_eq!(format!("{e:?}"), before);
    assert!(
        e.ep.views.get(&0).is_none_or(|vs| vs.notarization.is_none() && vs.nullification.is_none())
    );
}

#[test]
fn aggregator_flag_gates_certificates_and_a_standby_certifies_at_its_next_tick() {
    let net = setup();
    let me = net.follower();
    let data = VoteData::nullify(0, 0);
    let mut e = net.engine(me, Persisted::default(), plain());
    tick(&mut e, 0);
    let others: Vec<usize> = (0..4).filter(|i| *i != me).collect();
    for i in &others {
        let acts =
            e.handle(Input::Vote { vote: Incoming::Raw(net.vote(*i, data)), is_aggregator: false });
        assert!(
            !acts.iter().any(|a| matches!(a, Action::BroadcastCertificate(_))),
            "no certificate while the flag is off"
        );
    }
    assert!(e.pool.len() > 0, "votes are kept while the flag is off (hot standby)");
    // Switched on: the first tick that reads the flag certifies from the votes already held.
    let acts = e.handle(Input::Tick { now_ms: GENESIS_MS, is_aggregator: true });
    let certs = acts
        .iter()
        .filter(|a| matches!(a, Action::BroadcastCertificate(c) if c.data == data))
        .count();
    assert_eq!(certs, 1, "exactly one certificate at the first aggregating tick");
    let acts = e.handle(Input::Tick { now_ms: GENESIS_MS, is_aggregator: true });
    assert!(
        !acts.iter().any(|a| matches!(a, Action::BroadcastCertificate(c) if c.data == data)),
        "a certified VoteData is not certified twice"
    );
}

#[test]
fn gossip_outcomes() {
    let net = setup();
    let e = net.engine(0, Persisted::default(), plain());
    let ctx = e.gossip_context();
    let good = net.vote(1, VoteData::nullify(0, 0));
    assert_eq!(ctx.validate_vote(&good).0, GossipOutcome::Accept);
    let mut bad_sig = good.clone();
    bad_sig.operator_index = 2;
    assert!(matches!(ctx.validate_vote(&bad_sig).0, GossipOutcome::Reject(_)));
    let mut non_member = good.clone();
    non_member.operator_index = 9;
    assert!(matches!(ctx.validate_vote(&non_member).0, GossipOutcome::Reject(_)));
    assert!(matches!(
        ctx.validate_vote(&net.vote(1, VoteData::nullify(1, 0))).0,
        GossipOutcome::Ignore(_)
    ));
    assert!(matches!(
        ctx.validate_vote(&net.vote(1, VoteData::nullify(0, 500))).0,
        GossipOutcome::Ignore(_)
    ));
    assert!(matches!(ctx.validate_vote_bytes(&[1, 2, 3]).0, GossipOutcome::Reject(_)));
    assert_eq!(ctx.validate_vote_bytes(&encode(&good).unwrap()).0, GossipOutcome::Accept);
    let weak = net.cert(&[0, 1], VoteData::nullify(0, 0));
    assert!(matches!(ctx.validate_certificate(&weak).0, GossipOutcome::Reject(_)));
    let strong = net.cert(&[0, 1, 2], VoteData::nullify(0, 0));
    let (outcome, verified) = ctx.validate_certificate(&strong);
    assert_eq!(outcome, GossipOutcome::Accept);
    assert!(verified.unwrap().checked_by(&net.table));
    let p = net.propose(0, net.child_of_genesis(0, vec![]), vec![]);
    assert_eq!(ctx.validate_proposal(&p).0, GossipOutcome::Accept);
}

#[test]
fn leader_persists_its_vote_before_proposing_and_never_reproposes() {
    let net = setup();
    let leader = net.leader(0);
    let mut e = net.engine(leader, Persisted::default(), plain());
    let acts = tick(&mut e, 0);
    let persist = acts.iter().position(|a| matches!(a, Action::PersistVote(_))).unwrap();
    let propose = acts.iter().position(|a| matches!(a, Action::BroadcastProposal(_))).unwrap();
    let vote = acts.iter().position(|a| matches!(a, Action::BroadcastVote(_))).unwrap();
    assert!(persist < propose && persist < vote, "{acts:?}");
    let stored = own_votes(&acts);
    let proposes = |persisted: Persisted| {
        let mut e = net.engine(leader, persisted, plain());
        tick(&mut e, 800).iter().any(|a| matches!(a, Action::BroadcastProposal(_)))
    };
    assert!(!proposes(Persisted { own_votes: stored, ..Default::default() }));
    assert!(proposes(Persisted::default()), "negative control");
}
