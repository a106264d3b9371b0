//! `consensus_test`: a sequence of inputs to one node's state machine (`avs_consensus::Engine`)
//! and, per input, a summary of what the node did.
//!
//! Inputs: `genesis` (`GenesisConfig`, `ssz` JSON form), `leaderTimeoutMs` and
//! `advanceTimeoutMs` (docs/protocol.md, section 9), `nodeIkm` (the node's BLS key material),
//! optional `persisted` (`ownVotes`, `certificates`, `blocks`: the node restarts from the
//! genesis anchor with them), and `steps`. Each step is an object with `nowMs` (the node's
//! clock when the input arrives) and exactly one more key: `{"tick": {isAggregator}}`,
//! `{"proposal": SignedProposal}`, `{"vote": {signedVote, isAggregator}}`,
//! `{"certificate": Certificate}` or `{"blocks": [Block]}`. No task definition is registered:
//! every block body is empty.
//!
//! Output: `steps` (one summary per input, see [`summarize`]) and `final` (epoch, view and
//! finalized head after the last input).

use anyhow::{Context, bail};
use avs_consensus::bls::SecretKey;
use avs_consensus::types::{
    Block, Certificate, GenesisConfig, SignedProposal, SignedVote, VoteData, VoteKind,
};
use avs_consensus::{
    Action, Anchor, Engine, EngineConfig, EntryCause, Incoming, Input, Persisted, Request,
    TaskRegistry, Verdict,
};
use serde_json::{Map, Value, json};

use super::Case;
use super::ssz_json::JsonForm;
use crate::Fixture;
use crate::json::{field, get_array, get_bool, get_hex, get_u64, hex0x};

const FORMAT: &str = "consensus_test";

pub fn check(fixture: &Fixture) -> anyhow::Result<()> {
    super::check_output(fixture, FORMAT, evaluate)
}

pub use super::consensus_cases::generate;

fn items<T: JsonForm>(obj: Option<&Value>, name: &str) -> anyhow::Result<Vec<T>> {
    match obj.and_then(|o| o.get(name)) {
        None => Ok(Vec::new()),
        Some(Value::Array(list)) => list.iter().map(T::from_json).collect(),
        Some(other) => bail!("persisted.{name} is not an array: {other}"),
    }
}

/// Builds the node described by a fixture (fresh, or restarted with its persisted data).
pub(crate) fn node(input: &Value) -> anyhow::Result<Engine> {
    let genesis = GenesisConfig::from_json(field(input, "genesis")?).context("genesis")?;
    let mut config = EngineConfig::new(genesis);
    config.leader_timeout_ms = get_u64(input, "leaderTimeoutMs")?;
    config.advance_timeout_ms = get_u64(input, "advanceTimeoutMs")?;
    let key = SecretKey::from_seed(&get_hex(input, "nodeIkm")?)?;
    let persisted = input.get("persisted");
    let persisted = Persisted {
        own_votes: items::<SignedVote>(persisted, "ownVotes")?,
        certificates: items::<Certificate>(persisted, "certificates")?,
        blocks: items::<Block>(persisted, "blocks")?,
    };
    let anchor = Anchor::genesis(&config.genesis)?;
    Ok(Engine::restart(config, key, TaskRegistry::new(), anchor, persisted)?)
}

/// Parses one step into its time and an engine input (messages are handed over raw: the
/// engine verifies).
pub(crate) fn input_of(step: &Value) -> anyhow::Result<(u64, Input)> {
    let obj = step.as_object().context("a step is not an object")?;
    let now_ms = get_u64(step, "nowMs")?;
    let mut kinds = obj.iter().filter(|(key, _)| key.as_str() != "nowMs");
    let (kind, body) = match (kinds.next(), kinds.next()) {
        (Some(entry), None) => entry,
        _ => bail!("a step must have nowMs and exactly one more key: {step}"),
    };
    let input = match kind.as_str() {
        "tick" => Input::Tick { is_aggregator: get_bool(body, "isAggregator")? },
        "proposal" => Input::Proposal(Incoming::Raw(SignedProposal::from_json(body)?)),
        "vote" => Input::Vote {
            vote: Incoming::Raw(SignedVote::from_json(field(body, "signedVote")?)?),
            is_aggregator: get_bool(body, "isAggregator")?,
        },
        "certificate" => Input::Certificate(Incoming::Raw(Certificate::from_json(body)?)),
        "blocks" => {
            let list = body.as_array().context("blocks is not an array")?;
            Input::Blocks(list.iter().map(Block::from_json).collect::<anyhow::Result<_>>()?)
        }
        other => bail!("unknown step kind {other:?}"),
    };
    Ok((now_ms, input))
}

fn kind_name(kind: u8) -> &'static str {
    match VoteKind::from_u8(kind) {
        Some(VoteKind::Notarize) => "notarize",
        Some(VoteKind::Nullify) => "nullify",
        Some(VoteKind::Finalize) => "finalize",
        None => "unknown",
    }
}

fn vote_json(data: &VoteData) -> Value {
    json!({
        "kind": kind_name(data.kind),
        "view": data.view,
        "epoch": data.epoch,
        "blockRoot": hex0x(&data.block_root),
    })
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Accept => "accept",
        Verdict::Ignore => "ignore",
        Verdict::Reject => "reject",
    }
}

fn cause_name(cause: EntryCause) -> &'static str {
    match cause {
        EntryCause::EpochStart => "epochStart",
        EntryCause::Notarized => "notarized",
        EntryCause::Nullified => "nullified",
        EntryCause::CatchUp => "catchUp",
    }
}

fn request_json(request: &Request) -> Value {
    match request {
        Request::Certificates { epoch, from_view } => {
            json!({ "certificates": { "epoch": epoch, "fromView": from_view } })
        }
        Request::Votes { epoch, view } => json!({ "votes": { "epoch": epoch, "view": view } }),
        Request::BlocksByRoot(roots) => {
            json!({ "blocksByRoot": roots.iter().map(|r| hex0x(r)).collect::<Vec<_>>() })
        }
        Request::BlocksByRange { start_height, count } => {
            json!({ "blocksByRange": { "startHeight": start_height, "count": count } })
        }
    }
}

/// What one input made the node do. Keys appear only when non-empty, values in action order:
/// `entered` (views entered, with the cause), `votes` (own votes cast, from `PersistVote`),
/// `proposals` (broadcast), `verdicts` (on raw votes handed in), `certified` (certificates now
/// held, built here or received), `certificates` (broadcast), `finalized`, `epochChanged`,
/// `requests`, `evidence`, `halted`. `BroadcastVote` (always the vote just persisted) and
/// `StoreBlock` (every block judged valid) are left out.
pub(crate) fn summarize(actions: &[Action]) -> anyhow::Result<Value> {
    let mut map: Map<String, Value> = Map::new();
    let mut push = |key: &str, value: Value| {
        if let Value::Array(list) = map.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
            list.push(value);
        }
    };
    for action in actions {
        match action {
            Action::EnteredView { view, cause, .. } => {
                push("entered", json!({ "view": view, "cause": cause_name(*cause) }));
            }
            Action::PersistVote(v) => push("votes", vote_json(&v.data)),
            Action::BroadcastProposal(p) => push(
                "proposals",
                json!({
                    "view": p.message.view,
                    "epoch": p.message.epoch,
                    "height": p.message.block.height,
                    "parentRoot": hex0x(&p.message.block.parent_root),
                    "blockRoot": hex0x(&p.message.block.root()?),
                }),
            ),
            Action::VoteChecked { vote, verdict } => push(
                "verdicts",
                json!({
                    "operatorIndex": vote.operator_index,
                    "vote": vote_json(&vote.data),
                    "verdict": verdict_name(*verdict),
                }),
            ),
            Action::Certified { certificate, local } => {
                let mut cert = vote_json(&certificate.data);
                cert["local"] = json!(local);
                push("certified", cert);
            }
            Action::BroadcastCertificate(c) => {
                let mut cert = vote_json(&c.data);
                cert["signers"] = c.to_json()["signers"].clone();
                push("certificates", cert);
            }
            Action::Finalized { root, block, .. } => {
                push("finalized", json!({ "height": block.height, "root": hex0x(root) }));
            }
            Action::EpochChanged { epoch, .. } => push("epochChanged", json!(epoch)),
            Action::Request(request) => push("requests", request_json(request)),
            Action::Evidence(e) => push(
                "evidence",
                json!({
                    "operatorIndex": e.operator_index,
                    "view": e.view,
                    "epoch": e.epoch,
                    "first": vote_json(&e.first.data),
                    "second": vote_json(&e.second.data),
                }),
            ),
            Action::Halted { reason } => push("halted", json!(reason)),
            Action::BroadcastVote(_) | Action::StoreBlock { .. } => {}
        }
    }
    Ok(Value::Object(map))
}

/// Epoch, view and finalized head of the node.
pub(crate) fn final_state(engine: &Engine) -> Value {
    let (root, height) = engine.finalized();
    json!({
        "epoch": engine.epoch(),
        "view": engine.view(),
        "finalizedHeight": height,
        "finalizedRoot": hex0x(&root),
    })
}

pub(crate) fn evaluate(input: &Value) -> anyhow::Result<Value> {
    let mut engine = node(input)?;
    let mut steps = Vec::new();
    for (i, step) in get_array(input, "steps")?.iter().enumerate() {
        let (now_ms, input) = input_of(step).with_context(|| format!("steps[{i}]"))?;
        steps.push(summarize(&engine.handle(now_ms, input))?);
    }
    Ok(json!({ "steps": steps, "final": final_state(&engine) }))
}

/// Checks a case built by the generator before it is written.
pub(crate) fn finish(name: &str, description: &str, input: Value) -> anyhow::Result<Case> {
    super::evaluated(name, description, input, evaluate)
}
