//! The `consensus_test` scenarios. Each one drives a real engine step by step, so later inputs
//! can name what the node produced (its proposal's root, say); the fixture's expected output is
//! then recomputed from the recorded inputs alone by `consensus::evaluate`.
//!
//! Network: 4 operators of power 1 (quorum = 3 signers), keys from `common`, default timing
//! (slot 4000 ms, interval 800 ms), the default timeouts (leader 2 intervals = 1600 ms,
//! advance 3 intervals = 2400 ms). A message step arrives at the time of the last tick.

use anyhow::{Context, anyhow};
use avs_consensus::operators::KeyTable;
use avs_consensus::signing::NetworkDigest;
use avs_consensus::state::{apply_block, genesis_block, genesis_state};
use avs_consensus::types::{
    Block, BlockBody, Certificate, GenesisConfig, Proposal, Root, SignedProposal, SignedVote,
    VoteData, root_of,
};
use avs_consensus::types::{Epoch, Height, OperatorIndex, View};
use avs_consensus::{Action, Engine, EngineConfig, TaskRegistry};
use serde_json::{Value, json};

use super::Case;
use super::common::{self, GENESIS_TIME, ikm};
use super::consensus::{finish, input_of, node};
use super::ssz_json::JsonForm;
use crate::json::hex0x;

const N: usize = 4;
const T0: u64 = GENESIS_TIME * 1000;

struct Scenario {
    genesis: GenesisConfig,
    digest: NetworkDigest,
    table: KeyTable,
    input: Value,
    steps: Vec<Value>,
    engine: Engine,
    now_ms: u64,
}

impl Scenario {
    /// Operator `me`'s node, fresh or restarted with `persisted`.
    fn new(me: usize, persisted: Option<Value>) -> anyhow::Result<Self> {
        let genesis = common::genesis("avs-consensus-vectors", &[1; N])?;
        let digest = common::digest(&genesis)?;
        let table = KeyTable::new(Epoch::ZERO, &genesis.operators, digest)?;
        let config = EngineConfig::new(genesis.clone());
        let mut input = json!({
            "genesis": genesis.to_json(),
            "leaderTimeoutMs": config.leader_timeout_ms,
            "advanceTimeoutMs": config.advance_timeout_ms,
            "nodeIkm": hex0x(&ikm(me)),
            "steps": [],
        });
        if let Some(persisted) = persisted {
            input["persisted"] = persisted;
        }
        let engine = node(&input)?;
        Ok(Self { genesis, digest, table, input, steps: Vec::new(), engine, now_ms: T0 })
    }

    fn leader(&self, view: u64) -> anyhow::Result<usize> {
        self.table.leader(View::new(view)).context("no leader")?.position().context("index")
    }

    /// Operators other than `me` and the leader of `view`, in index order.
    fn others(&self, me: usize, view: u64) -> anyhow::Result<Vec<usize>> {
        let leader = self.leader(view)?;
        Ok((0..N).filter(|i| *i != me && *i != leader).collect())
    }

    /// Hands `step` (one input kind) to the node at the current time.
    fn step(&mut self, mut step: Value) -> anyhow::Result<Vec<Action>> {
        step["nowMs"] = json!(self.now_ms);
        let (now_ms, input) = input_of(&step)?;
        let actions = self.engine.handle(now_ms, input);
        self.steps.push(step);
        Ok(actions)
    }

    fn tick(&mut self, after_genesis_ms: u64, is_aggregator: bool) -> anyhow::Result<Vec<Action>> {
        self.now_ms = T0 + after_genesis_ms;
        self.step(json!({ "tick": { "isAggregator": is_aggregator } }))
    }

    fn signed_vote(&self, i: usize, data: VoteData) -> anyhow::Result<SignedVote> {
        common::vote(i, data, self.digest)
    }

    fn vote(&mut self, vote: SignedVote, is_aggregator: bool) -> anyhow::Result<Vec<Action>> {
        self.step(
            json!({ "vote": { "signedVote": vote.to_json(), "isAggregator": is_aggregator } }),
        )
    }

    fn cert(&self, signers: &[usize], data: VoteData) -> anyhow::Result<Certificate> {
        common::certificate(N, signers, data, self.digest)
    }

    fn certificate(&mut self, cert: &Certificate) -> anyhow::Result<Vec<Action>> {
        self.step(json!({ "certificate": cert.to_json() }))
    }

    fn proposal(&mut self, proposal: &SignedProposal) -> anyhow::Result<Vec<Action>> {
        self.step(json!({ "proposal": proposal.to_json() }))
    }

    /// A valid child of genesis proposed by operator `proposer`.
    fn child_of_genesis(&self, proposer: usize) -> anyhow::Result<Block> {
        let parent = genesis_block(&self.genesis)?;
        let parent_root = parent.root()?;
        let mut block = Block {
            height: Height::new(1),
            parent_root,
            proposer_index: OperatorIndex::at(proposer),
            state_root: [0; 32],
            body: BlockBody::default(),
        };
        let state = apply_block(
            &TaskRegistry::new(),
            self.digest,
            &genesis_state(&self.genesis),
            &parent_root,
            &block,
        )?;
        block.state_root = root_of(&state)?;
        Ok(block)
    }

    /// `block` proposed for `view` of epoch 0, signed by operator `signer`.
    fn signed(&self, view: u64, block: Block, signer: usize) -> anyhow::Result<SignedProposal> {
        common::signed_proposal(
            signer,
            Proposal { view: View::new(view), epoch: Epoch::ZERO, block },
            Vec::new(),
            self.digest,
        )
    }

    fn finish(mut self, name: &str, description: &str) -> anyhow::Result<Case> {
        self.input["steps"] = Value::Array(self.steps);
        finish(name, description, self.input)
    }
}

fn proposed_root(actions: &[Action]) -> anyhow::Result<Root> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::BroadcastProposal(p) => Some(p.message.block.root()),
            _ => None,
        })
        .ok_or_else(|| anyhow!("the leader did not propose"))?
        .map_err(Into::into)
}

/// A node that leads view 0 and aggregates: proposes, certifies, finalizes.
fn leader_finalizes() -> anyhow::Result<Case> {
    let probe = Scenario::new(0, None)?;
    let me = probe.leader(0)?;
    let mut s = Scenario::new(me, None)?;
    let root = proposed_root(&s.tick(0, true)?)?;
    let voters: Vec<usize> = (0..N).filter(|i| *i != me).take(2).collect();
    for i in &voters {
        let v = s.signed_vote(*i, VoteData::notarize(Epoch::ZERO, View::ZERO, root))?;
        s.vote(v, true)?;
    }
    for i in &voters {
        let v = s.signed_vote(*i, VoteData::finalize(Epoch::ZERO, View::ZERO, root))?;
        s.vote(v, true)?;
    }
    s.tick(800, true)?;
    s.finish(
        "leader_proposes_certifies_and_finalizes",
        "Given the aggregating leader of view 0, when its first tick arrives and two other \
         operators vote NOTARIZE and then FINALIZE for its block, then it proposes at once (the \
         first view of an epoch has no previous view to pace from) and votes NOTARIZE; the \
         third NOTARIZE completes a quorum, so it checks the pooled votes in one aggregate, \
         builds and publishes the notarization, enters view 1 and votes FINALIZE; the FINALIZE \
         votes likewise give the finalization and height 1 is final.",
    )
}

/// A non-aggregating follower: notarizes the leader's block, finalizes on certificates.
fn follower_finalizes() -> anyhow::Result<Case> {
    let probe = Scenario::new(0, None)?;
    let leader = probe.leader(0)?;
    let me = probe.others(leader, 0)?.first().copied().context("no follower")?;
    let mut s = Scenario::new(me, None)?;
    s.tick(0, false)?;
    let block = s.child_of_genesis(leader)?;
    let root = block.root()?;
    let proposal = s.signed(0, block, leader)?;
    s.proposal(&proposal)?;
    let mut signers: Vec<usize> = (0..N).filter(|i| *i != me).collect();
    signers.sort_unstable();
    s.certificate(&s.cert(&signers, VoteData::notarize(Epoch::ZERO, View::ZERO, root))?)?;
    s.certificate(&s.cert(&signers, VoteData::finalize(Epoch::ZERO, View::ZERO, root))?)?;
    s.tick(800, false)?;
    s.finish(
        "follower_notarizes_and_finalizes",
        "Given a non-aggregating follower in view 0, when the leader's valid proposal, then a \
         notarization and a finalization certificate of its block arrive, then it votes \
         NOTARIZE, then FINALIZE, then finalizes height 1.",
    )
}

/// No proposal: NULLIFY after the timeout; the aggregator certifies the nullification.
fn nullify_on_timeout() -> anyhow::Result<Case> {
    let probe = Scenario::new(0, None)?;
    let leader = probe.leader(0)?;
    let me = probe.others(leader, 0)?.first().copied().context("no follower")?;
    let mut s = Scenario::new(me, None)?;
    for ms in [0, 4000, 5599, 5600] {
        s.tick(ms, true)?;
    }
    for i in s.others(me, 0)? {
        let v = s.signed_vote(i, VoteData::nullify(Epoch::ZERO, View::ZERO))?;
        s.vote(v, true)?;
    }
    let v = s.signed_vote(leader, VoteData::nullify(Epoch::ZERO, View::ZERO))?;
    s.vote(v, true)?;
    s.tick(6400, true)?;
    s.finish(
        "nullify_on_timeout",
        "Given an aggregating follower whose view-0 leader is silent, when ticks reach the \
         leader deadline (one slot plus the 1600 ms leader timeout after entering the view) \
         and the other operators vote NULLIFY, then it votes NULLIFY at 5600 ms, not a \
         millisecond before; its own NULLIFY and two others' reach a quorum, so it checks them \
         in one aggregate, builds and publishes the nullification and enters view 1 at once \
         (which it leads: it proposes there, one slot after entering view 0 has long passed); \
         the leader's late NULLIFY is ignored (the view is certified).",
    )
}

/// One operator signs two NOTARIZE votes for different blocks in one view.
fn equivocation() -> anyhow::Result<Case> {
    let mut s = Scenario::new(0, None)?;
    s.tick(0, true)?;
    let a = s.signed_vote(2, VoteData::notarize(Epoch::ZERO, View::ZERO, [0xaa; 32]))?;
    let b = s.signed_vote(2, VoteData::notarize(Epoch::ZERO, View::ZERO, [0xbb; 32]))?;
    s.vote(a, true)?;
    s.vote(b, true)?;
    let f = s.signed_vote(3, VoteData::finalize(Epoch::ZERO, View::ZERO, [0xcc; 32]))?;
    let n = s.signed_vote(3, VoteData::nullify(Epoch::ZERO, View::ZERO))?;
    s.vote(f, true)?;
    s.vote(n, true)?;
    s.tick(800, true)?;
    s.finish(
        "equivocation_evidence",
        "Given a node in view 0, when operator 2 sends NOTARIZE votes for two different blocks \
         and operator 3 sends FINALIZE and NULLIFY for view 0, then nothing is judged while \
         the votes wait unverified below a quorum; one interval later (tick at 800 ms) they \
         are overdue and checked, and each pair of valid votes is recorded as evidence; no \
         certificate is built.",
    )
}

/// Restart with a persisted NULLIFY(0): no NOTARIZE and no FINALIZE in view 0 afterwards.
fn restart_nullify() -> anyhow::Result<Case> {
    let probe = Scenario::new(0, None)?;
    let leader = probe.leader(0)?;
    let me = probe.others(leader, 0)?.first().copied().context("no follower")?;
    let own = probe_vote(me, VoteData::nullify(Epoch::ZERO, View::ZERO))?;
    let mut s = Scenario::new(me, Some(json!({ "ownVotes": [own.to_json()] })))?;
    s.tick(0, false)?;
    let block = s.child_of_genesis(leader)?;
    let root = block.root()?;
    s.proposal(&s.signed(0, block, leader)?)?;
    let signers: Vec<usize> = (0..N).filter(|i| *i != me).collect();
    s.certificate(&s.cert(&signers, VoteData::notarize(Epoch::ZERO, View::ZERO, root))?)?;
    s.finish(
        "restart_with_persisted_nullify",
        "Given a node restarted with its own NULLIFY for view 0 persisted, when the leader's \
         valid proposal and then a notarization of it arrive, then it votes neither NOTARIZE \
         nor FINALIZE in view 0 (it only records the notarization).",
    )
}

/// Restart of the view-0 leader with its NOTARIZE persisted: it does not propose again.
fn restart_leader_notarize() -> anyhow::Result<Case> {
    let probe = Scenario::new(0, None)?;
    let leader = probe.leader(0)?;
    let block = probe.child_of_genesis(leader)?;
    let own = probe_vote(leader, VoteData::notarize(Epoch::ZERO, View::ZERO, block.root()?))?;
    let mut s = Scenario::new(leader, Some(json!({ "ownVotes": [own.to_json()] })))?;
    s.tick(0, false)?;
    s.tick(800, false)?;
    s.finish(
        "restart_leader_with_persisted_notarize",
        "Given the view-0 leader restarted with its own NOTARIZE for view 0 persisted, when \
         its first ticks arrive, then it proposes nothing and casts no vote.",
    )
}

/// A certificate for a view ahead moves the node straight past it (catch-up).
fn catch_up() -> anyhow::Result<Case> {
    let mut s = Scenario::new(0, None)?;
    s.tick(0, false)?;
    s.certificate(&s.cert(&[1, 2, 3], VoteData::nullify(Epoch::ZERO, View::new(2)))?)?;
    s.tick(800, false)?;
    s.finish(
        "catch_up_on_certificate_ahead",
        "Given a node in view 0, when a valid nullification certificate for view 2 arrives, \
         then it records it and moves to view 3 at once (no pacing for views ahead).",
    )
}

/// A proposal for the next view is buffered and judged once the node enters that view.
fn future_proposal() -> anyhow::Result<Case> {
    let probe = Scenario::new(0, None)?;
    let (l0, l1) = (probe.leader(0)?, probe.leader(1)?);
    let me = (0..N).find(|i| *i != l0 && *i != l1).context("no follower")?;
    let mut s = Scenario::new(me, None)?;
    s.tick(0, false)?;
    let nullified = s.cert(&[l0, l1, me], VoteData::nullify(Epoch::ZERO, View::ZERO))?;
    let block = s.child_of_genesis(l1)?;
    let message = Proposal { view: View::new(1), epoch: Epoch::ZERO, block };
    let proposal = common::signed_proposal(l1, message, vec![nullified], s.digest)?;
    s.proposal(&proposal)?;
    s.tick(800, false)?;
    s.finish(
        "proposal_justification_moves_the_view",
        "Given a follower in view 0, when the view-1 leader's proposal arrives justified by a \
         nullification of view 0, then the node takes the nullification from the \
         justification, enters view 1 at once and votes NOTARIZE for the proposal.",
    )
}

fn probe_vote(i: usize, data: VoteData) -> anyhow::Result<SignedVote> {
    let probe = Scenario::new(0, None)?;
    probe.signed_vote(i, data)
}

/// Inputs a node must refuse without acting on them.
fn refused_inputs() -> anyhow::Result<Vec<Case>> {
    let probe = Scenario::new(0, None)?;
    let leader = probe.leader(0)?;
    let me = probe.others(leader, 0)?.first().copied().context("no follower")?;
    let impostor = (0..N).find(|i| *i != leader && *i != me).context("no impostor")?;
    let mut cases = Vec::new();

    let mut s = Scenario::new(me, None)?;
    s.tick(0, false)?;
    let block = s.child_of_genesis(leader)?;
    s.proposal(&s.signed(0, block.clone(), impostor)?)?;
    s.proposal(&s.signed(0, block, leader)?)?;
    cases.push(s.finish(
        "proposal_not_signed_by_leader",
        "Given a follower in view 0, when a proposal signed by an operator that does not lead \
         view 0 arrives, then it casts no vote; when the same block then arrives signed by the \
         leader, it votes NOTARIZE (the forged one did not count as the view's proposal).",
    )?);

    let mut s = Scenario::new(me, None)?;
    s.tick(0, false)?;
    let mut block = s.child_of_genesis(leader)?;
    block.state_root = [0x55; 32];
    s.proposal(&s.signed(0, block, leader)?)?;
    cases.push(s.finish(
        "proposal_wrong_state_root",
        "Given a follower in view 0, when the leader's signed proposal carries a block whose \
         state root does not match its state transition, then it casts no vote.",
    )?);

    let mut s = Scenario::new(me, None)?;
    s.tick(0, true)?;
    let root = s.child_of_genesis(leader)?.root()?;
    let others: Vec<usize> = (0..N).filter(|i| *i != me).collect();
    let good = s.signed_vote(others[0], VoteData::notarize(Epoch::ZERO, View::ZERO, root))?;
    s.vote(good, true)?;
    let good = s.signed_vote(others[1], VoteData::notarize(Epoch::ZERO, View::ZERO, root))?;
    s.vote(good, true)?;
    let mut forged = s.signed_vote(others[2], VoteData::notarize(Epoch::ZERO, View::ZERO, root))?;
    forged.signature =
        s.signed_vote(others[1], VoteData::notarize(Epoch::ZERO, View::ZERO, root))?.signature;
    s.vote(forged, true)?;
    let real = s.signed_vote(others[2], VoteData::notarize(Epoch::ZERO, View::ZERO, root))?;
    s.vote(real, true)?;
    cases.push(s.finish(
        "vote_bad_signature_not_counted",
        "Given an aggregating follower holding two NOTARIZE votes for a block, unverified \
         (below a quorum), when a third NOTARIZE arrives whose signature is another \
         operator's, then the three could form a quorum: their aggregate check fails, the \
         bisection accepts the two good votes and rejects the forged one, and no certificate \
         is built; when that operator's real vote arrives, it completes the quorum and the \
         notarization is built.",
    )?);

    let mut s = Scenario::new(me, None)?;
    s.tick(0, false)?;
    let root = s.child_of_genesis(leader)?.root()?;
    let two: Vec<usize> = (0..N).filter(|i| *i != me).take(2).collect();
    s.certificate(&s.cert(&two, VoteData::notarize(Epoch::ZERO, View::ZERO, root))?)?;
    let three: Vec<usize> = (0..N).filter(|i| *i != me).collect();
    let mut bad = s.cert(&three, VoteData::notarize(Epoch::ZERO, View::ZERO, root))?;
    bad.signature =
        s.cert(&three, VoteData::notarize(Epoch::ZERO, View::ZERO, [0x66; 32]))?.signature;
    s.certificate(&bad)?;
    let mut wrong_len = s.cert(&three, VoteData::nullify(Epoch::ZERO, View::ZERO))?;
    wrong_len.signers.push(false);
    s.certificate(&wrong_len)?;
    s.certificate(&s.cert(&three, VoteData::notarize(Epoch::ZERO, View::ZERO, root))?)?;
    cases.push(s.finish(
        "certificates_refused",
        "Given a follower in view 0, when a notarization signed by 2 of 4 operators, a \
         notarization whose aggregate signature is over another block, and a nullification \
         whose signers list has 5 bits arrive, then none is accepted and nothing happens; a \
         valid notarization by 3 of 4 is then accepted (the block is unknown, so it is fetched).",
    )?);
    Ok(cases)
}

pub fn generate() -> anyhow::Result<Vec<Case>> {
    let mut cases = vec![
        leader_finalizes()?,
        follower_finalizes()?,
        nullify_on_timeout()?,
        equivocation()?,
        restart_nullify()?,
        restart_leader_notarize()?,
        catch_up()?,
        future_proposal()?,
    ];
    cases.extend(refused_inputs()?);
    Ok(cases)
}
