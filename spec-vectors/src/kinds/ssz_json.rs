//! The JSON form of every SSZ container of `avs_consensus::types`, both ways.
//!
//! Field names are the protocol's, camelCased (`block_root` -> `blockRoot`); unsigned integers
//! are JSON numbers; byte vectors and byte lists are `0x` hex; lists are arrays; a
//! `Certificate.signers` bitlist is the `0x` hex of its SSZ encoding (with the length marker
//! bit), as the consensus-specs write bitlists. A value read back must re-encode to the same
//! JSON, which the `ssz` checker relies on.

use anyhow::{Context, anyhow};
use avs_consensus::types::{
    AvsTaskDefinition, Block, BlockBody, Certificate, ChainState, GenesisConfig, Operator,
    OperatorSet, Proposal, SignedProposal, SignedTaskMessage, SignedVote, Signers, SigningData,
    TaskMessage, TaskResult, TaskState, VoteData, encode,
};
use avs_consensus::types::{Epoch, Height, OperatorIndex, View};
use serde_json::{Value, json};
use ssz_rs::prelude::{Deserialize, List, Vector};

use crate::json::{field, get_array, get_fixed, get_hex, get_u64, hex0x};

/// A container with a JSON form.
pub(crate) trait JsonForm: Sized {
    fn to_json(&self) -> Value;
    fn from_json(value: &Value) -> anyhow::Result<Self>;
}

fn list<T: ssz_rs::SimpleSerialize, const N: usize>(items: Vec<T>) -> anyhow::Result<List<T, N>> {
    List::try_from(items).map_err(|(_, e)| anyhow!("list over its limit {N}: {e}"))
}

fn bytes_list<const N: usize>(obj: &Value, name: &str) -> anyhow::Result<List<u8, N>> {
    list(get_hex(obj, name)?).with_context(|| format!("field {name:?}"))
}

fn bytes_vector<const N: usize>(obj: &Value, name: &str) -> anyhow::Result<Vector<u8, N>> {
    Vector::try_from(get_fixed::<N>(obj, name)?.to_vec()).map_err(|(_, e)| anyhow!("{name}: {e}"))
}

fn items<T: JsonForm>(obj: &Value, name: &str) -> anyhow::Result<Vec<T>> {
    get_array(obj, name)?
        .iter()
        .enumerate()
        .map(|(i, v)| T::from_json(v).with_context(|| format!("{name}[{i}]")))
        .collect()
}

fn u16_field(obj: &Value, name: &str) -> anyhow::Result<u16> {
    u16::try_from(get_u64(obj, name)?).with_context(|| format!("{name:?} exceeds u16"))
}

impl JsonForm for TaskResult {
    fn to_json(&self) -> Value {
        json!({
            "taskDefinitionId": self.task_definition_id,
            "performerIndex": self.performer_index,
            "proofOfTask": hex0x(&self.proof_of_task),
            "data": hex0x(&self.data),
            "signature": hex0x(&self.signature),
        })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            task_definition_id: u16_field(v, "taskDefinitionId")?,
            performer_index: OperatorIndex::new(get_u64(v, "performerIndex")?),
            proof_of_task: bytes_list(v, "proofOfTask")?,
            data: bytes_list(v, "data")?,
            signature: bytes_vector(v, "signature")?,
        })
    }
}

impl JsonForm for TaskMessage {
    fn to_json(&self) -> Value {
        json!({
            "taskDefinitionId": self.task_definition_id,
            "performer": hex0x(&self.performer),
            "proofOfTask": hex0x(&self.proof_of_task),
            "data": hex0x(&self.data),
        })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            task_definition_id: u16_field(v, "taskDefinitionId")?,
            performer: bytes_vector(v, "performer")?,
            proof_of_task: bytes_list(v, "proofOfTask")?,
            data: bytes_list(v, "data")?,
        })
    }
}

impl JsonForm for SignedTaskMessage {
    fn to_json(&self) -> Value {
        json!({ "message": self.message.to_json(), "signature": hex0x(&self.signature) })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            message: TaskMessage::from_json(field(v, "message")?).context("message")?,
            signature: bytes_vector(v, "signature")?,
        })
    }
}

impl JsonForm for AvsTaskDefinition {
    fn to_json(&self) -> Value {
        json!({ "id": self.id, "name": hex0x(&self.name), "validation": self.validation })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            id: u16_field(v, "id")?,
            name: bytes_list(v, "name")?,
            validation: u8::try_from(get_u64(v, "validation")?).context("validation")?,
        })
    }
}

impl JsonForm for BlockBody {
    fn to_json(&self) -> Value {
        json!({ "tasks": self.tasks.iter().map(JsonForm::to_json).collect::<Vec<_>>() })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self { tasks: list(items(v, "tasks")?)? })
    }
}

impl JsonForm for Block {
    fn to_json(&self) -> Value {
        json!({
            "height": self.height,
            "parentRoot": hex0x(&self.parent_root),
            "proposerIndex": self.proposer_index,
            "stateRoot": hex0x(&self.state_root),
            "body": self.body.to_json(),
        })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            height: Height::new(get_u64(v, "height")?),
            parent_root: get_fixed(v, "parentRoot")?,
            proposer_index: OperatorIndex::new(get_u64(v, "proposerIndex")?),
            state_root: get_fixed(v, "stateRoot")?,
            body: BlockBody::from_json(field(v, "body")?).context("body")?,
        })
    }
}

impl JsonForm for Proposal {
    fn to_json(&self) -> Value {
        json!({ "view": self.view, "epoch": self.epoch, "block": self.block.to_json() })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            view: View::new(get_u64(v, "view")?),
            epoch: Epoch::new(get_u64(v, "epoch")?),
            block: Block::from_json(field(v, "block")?).context("block")?,
        })
    }
}

impl JsonForm for SignedProposal {
    fn to_json(&self) -> Value {
        json!({
            "message": self.message.to_json(),
            "signature": hex0x(&self.signature),
            "justification": self.justification.iter().map(JsonForm::to_json).collect::<Vec<_>>(),
        })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            message: Proposal::from_json(field(v, "message")?).context("message")?,
            signature: bytes_vector(v, "signature")?,
            justification: list(items(v, "justification")?)?,
        })
    }
}

impl JsonForm for VoteData {
    fn to_json(&self) -> Value {
        json!({
            "kind": self.kind,
            "view": self.view,
            "epoch": self.epoch,
            "blockRoot": hex0x(&self.block_root),
        })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            kind: u8::try_from(get_u64(v, "kind")?).context("kind exceeds u8")?,
            view: View::new(get_u64(v, "view")?),
            epoch: Epoch::new(get_u64(v, "epoch")?),
            block_root: get_fixed(v, "blockRoot")?,
        })
    }
}

impl JsonForm for SignedVote {
    fn to_json(&self) -> Value {
        json!({
            "data": self.data.to_json(),
            "operatorIndex": self.operator_index,
            "signature": hex0x(&self.signature),
        })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            data: VoteData::from_json(field(v, "data")?).context("data")?,
            operator_index: OperatorIndex::new(get_u64(v, "operatorIndex")?),
            signature: bytes_vector(v, "signature")?,
        })
    }
}

impl JsonForm for Certificate {
    fn to_json(&self) -> Value {
        json!({
            "data": self.data.to_json(),
            "signers": hex0x(&encode(&self.signers).unwrap_or_default()),
            "signature": hex0x(&self.signature),
        })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        let signers = get_hex(v, "signers")?;
        Ok(Self {
            data: VoteData::from_json(field(v, "data")?).context("data")?,
            signers: Signers::deserialize(&signers)
                .map_err(|e| anyhow!("signers is not an SSZ bitlist: {e}"))?,
            signature: bytes_vector(v, "signature")?,
        })
    }
}

impl JsonForm for Operator {
    fn to_json(&self) -> Value {
        json!({
            "address": hex0x(&self.address),
            "pubkey": hex0x(&self.pubkey),
            "pop": hex0x(&self.pop),
            "power": self.power,
        })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            address: get_fixed(v, "address")?,
            pubkey: bytes_vector(v, "pubkey")?,
            pop: bytes_vector(v, "pop")?,
            power: get_u64(v, "power")?,
        })
    }
}

impl JsonForm for OperatorSet {
    fn to_json(&self) -> Value {
        json!({ "operators": self.operators.iter().map(JsonForm::to_json).collect::<Vec<_>>() })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self { operators: list(items(v, "operators")?)? })
    }
}

impl JsonForm for GenesisConfig {
    fn to_json(&self) -> Value {
        json!({
            "networkName": hex0x(&self.network_name),
            "genesisTime": self.genesis_time,
            "slotDurationMs": self.slot_duration_ms,
            "intervalsPerSlot": self.intervals_per_slot,
            "operators": self.operators.to_json(),
            "taskDefinitions": self.task_definitions.iter().map(JsonForm::to_json).collect::<Vec<_>>(),
        })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            network_name: bytes_list(v, "networkName")?,
            genesis_time: get_u64(v, "genesisTime")?,
            slot_duration_ms: get_u64(v, "slotDurationMs")?,
            intervals_per_slot: get_u64(v, "intervalsPerSlot")?,
            operators: OperatorSet::from_json(field(v, "operators")?).context("operators")?,
            task_definitions: list(items(v, "taskDefinitions")?)?,
        })
    }
}

impl JsonForm for ChainState {
    fn to_json(&self) -> Value {
        json!({
            "epoch": self.epoch,
            "height": self.height,
            "parentRoot": hex0x(&self.parent_root),
            "operators": self.operators.to_json(),
            "nextOperators": self.next_operators.to_json(),
            "taskStates": self.task_states.iter().map(JsonForm::to_json).collect::<Vec<_>>(),
        })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            epoch: Epoch::new(get_u64(v, "epoch")?),
            height: Height::new(get_u64(v, "height")?),
            parent_root: get_fixed(v, "parentRoot")?,
            operators: OperatorSet::from_json(field(v, "operators")?).context("operators")?,
            next_operators: OperatorSet::from_json(field(v, "nextOperators")?)
                .context("nextOperators")?,
            task_states: list(items(v, "taskStates")?)?,
        })
    }
}

impl JsonForm for TaskState {
    fn to_json(&self) -> Value {
        json!({ "taskDefinitionId": self.task_definition_id, "data": hex0x(&self.data) })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            task_definition_id: u16_field(v, "taskDefinitionId")?,
            data: bytes_list(v, "data")?,
        })
    }
}

impl JsonForm for SigningData {
    fn to_json(&self) -> Value {
        json!({ "objectRoot": hex0x(&self.object_root), "domain": hex0x(&self.domain) })
    }
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self { object_root: get_fixed(v, "objectRoot")?, domain: get_fixed(v, "domain")? })
    }
}
