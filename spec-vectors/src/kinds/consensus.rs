//! `consensus_test`: a sequence of inputs to one node's state machine (`avs_consensus::Engine`)
//! and, per input, a summary of what the node did.
//!
//! Inputs: `genesis` (`GenesisConfig`, `ssz` JSON form), `nullifyTimeoutIntervals`, `nodeIkm`
//! (the node's BLS key material), optional `persisted` (`ownVotes`, `certificates`, `blocks`:
//! the node restarts from the genesis anchor with them), and `steps`, each one of
//! `{"tick": {nowMs, isAggregator}}`, `{"proposal": SignedProposal}`,
//! `{"vote": {signedVote, isAggregator}}`, `{"certificate": Certificate}`, `{"block": Block}`.
//! No task definition is registered: every block body is empty.
//!
//! Output: `steps` (one summary per input, see [`summarize`]) and `final` (epoch, view and
//! finalized head after the last input).

use anyhow::{Context, bail};
use avs_consensus::bls::SecretKey;
use avs_consensus::types::{
    Block, Certificate, GenesisConfig, SignedProposal, SignedVote, VoteData, VoteKind,
};
use avs_consensus::{
    Action, Anchor, Engine, EngineConfig, Incoming, Input, Persisted, TaskRegistry,
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
    config.nullify_timeout_intervals = get_u64(input, "nullifyTimeoutIntervals")?;
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

/// Parses one step into an engine input (messages are handed over raw: the engine verifies).
pub(crate) fn input_of(step: &Value) -> anyhow::Result<Input> {
    let obj = step.as_object().context("a step is not an object")?;
    let (kind, body) = match obj.iter().next() {
        Some(entry) if obj.len() == 1 => entry,
        _ => bail!("a step must have exactly one key: {step}"),
    };
    Ok(match kind.as_str() {
        "tick" => Input::Tick {
            now_ms: get_u64(body, "nowMs")?,
            is_aggregator: get_bool(body, "isAggregator")?,
        },
        "proposal" => Input::Proposal(Incoming::Raw(SignedProposal::from_json(body)?)),
        "vote" => Input::Vote {
            vote: Incoming::Raw(SignedVote::from_json(field(body, "signedVote")?)?),
            is_aggregator: get_bool(body, "isAggregator")?,
        },
        "certificate" => Input::Certificate(Incoming::Raw(Certificate::from_json(body)?)),
        "block" => Input::Block(Block::from_json(body)?),
        other => bail!("unknown step kind {other:?}"),
    })
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

/// What one input made the node do. Keys appear only when non-empty, values in action order:
/// `votes` (own votes cast, from `PersistVote`), `proposals` (broadcast), `certificates`
/// (broadcast: built here or re-sent), `notarized`, `nullified`, `finalized`, `epochChanged`,
/// `fetchBlocks`, `evidence`. `BroadcastVote` (always the vote just persisted, or a re-send)
/// and `ScheduleWakeup` (the node's timer policy) are left out.
pub(crate) fn summarize(actions: &[Action]) -> anyhow::Result<Value> {
    let mut map: Map<String, Value> = Map::new();
    let mut push = |key: &str, value: Value| {
        if let Value::Array(list) = map.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
            list.push(value);
        }
    };
    for action in actions {
        match action {
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
            Action::BroadcastCertificate(c) => {
                let mut cert = vote_json(&c.data);
                cert["signers"] = c.to_json()["signers"].clone();
                push("certificates", cert);
            }
            Action::Notarized { certificate, .. } => push(
                "notarized",
                json!({
                    "view": certificate.data.view,
                    "blockRoot": hex0x(&certificate.data.block_root),
                }),
            ),
            Action::Nullified { certificate } => push("nullified", json!(certificate.data.view)),
            Action::Finalized { root, block, .. } => {
                push("finalized", json!({ "height": block.height, "root": hex0x(root) }));
            }
            Action::EpochChanged { epoch, .. } => push("epochChanged", json!(epoch)),
            Action::FetchBlock(root) => push("fetchBlocks", hex0x(root)),
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
            Action::BroadcastVote(_) | Action::ScheduleWakeup { .. } => {}
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
        let input = input_of(step).with_context(|| format!("steps[{i}]"))?;
        steps.push(summarize(&engine.handle(input))?);
    }
    Ok(json!({ "steps": steps, "final": final_state(&engine) }))
}

/// Checks a case built by the generator before it is written.
pub(crate) fn finish(name: &str, description: &str, input: Value) -> anyhow::Result<Case> {
    super::evaluated(name, description, input, evaluate)
}
