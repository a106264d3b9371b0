//! `ssz_test`: every container of `avs_consensus::types` as a JSON value, its SSZ encoding and
//! its `hash_tree_root`; and byte strings that a strict decoder must refuse.
//!
//! Valid fixture: `typeName`, `value` -> `output: {serialized, hashTreeRoot}`; the checker also
//! decodes `serialized` and requires the JSON of the result to equal `value`.
//! Invalid fixture: `typeName`, `serialized` -> `output: {decodes: false}`.

use anyhow::{Context, bail, ensure};
use avs_consensus::types::{
    Block, BlockBody, Certificate, ChainState, GenesisConfig, OperatorSet, Proposal,
    SignedProposal, SignedVote, SigningData, TaskResult, VoteData, byte_list, decode, encode,
    root_of,
};
use avs_consensus::types::{Epoch, Height, OperatorIndex, View};
use serde_json::{Value, json};
use ssz_rs::prelude::{Deserialize, List, SimpleSerialize, Vector};

use super::common::{self, digest};
use super::ssz_json::JsonForm;
use super::{Case, evaluated};
use crate::Fixture;
use crate::json::{get_hex, get_str, hex0x};

const FORMAT: &str = "ssz_test";

pub fn check(fixture: &Fixture) -> anyhow::Result<()> {
    super::check_output(fixture, FORMAT, evaluate)
}

/// Encodes `value` as `T`, or reports whether `serialized` decodes as `T`.
fn typed<T>(input: &Value, strict_decode: fn(&[u8]) -> anyhow::Result<T>) -> anyhow::Result<Value>
where
    T: JsonForm + SimpleSerialize + Clone,
{
    if let Some(value) = input.get("value") {
        let parsed = T::from_json(value).context("value")?;
        let serialized = encode(&parsed)?;
        let back = strict_decode(&serialized).context("our own encoding does not decode")?;
        ensure!(&back.to_json() == value, "value does not survive encode/decode");
        Ok(json!({ "serialized": hex0x(&serialized), "hashTreeRoot": hex0x(&root_of(&parsed)?) }))
    } else {
        let bytes = get_hex(input, "serialized")?;
        Ok(json!({ "decodes": strict_decode(&bytes).is_ok() }))
    }
}

fn checked<T: SimpleSerialize + avs_consensus::ssz_check::SszShape>(
    bytes: &[u8],
) -> anyhow::Result<T> {
    Ok(decode::<T>(bytes)?)
}

/// `SigningData` is never decoded from the wire; its strict form is "exactly 64 bytes".
fn signing_data(bytes: &[u8]) -> anyhow::Result<SigningData> {
    ensure!(bytes.len() == 64, "SigningData is 64 bytes, got {}", bytes.len());
    SigningData::deserialize(bytes).map_err(|e| anyhow::anyhow!("{e}"))
}

fn evaluate(input: &Value) -> anyhow::Result<Value> {
    match get_str(input, "typeName")? {
        "TaskResult" => typed::<TaskResult>(input, checked),
        "BlockBody" => typed::<BlockBody>(input, checked),
        "Block" => typed::<Block>(input, checked),
        "Proposal" => typed::<Proposal>(input, checked),
        "SignedProposal" => typed::<SignedProposal>(input, checked),
        "VoteData" => typed::<VoteData>(input, checked),
        "SignedVote" => typed::<SignedVote>(input, checked),
        "Certificate" => typed::<Certificate>(input, checked),
        "Operator" => typed::<avs_consensus::types::Operator>(input, checked),
        "OperatorSet" => typed::<OperatorSet>(input, checked),
        "GenesisConfig" => typed::<GenesisConfig>(input, checked),
        "ChainState" => typed::<ChainState>(input, checked),
        "SigningData" => typed::<SigningData>(input, signing_data),
        other => bail!("unknown typeName {other:?}"),
    }
}

/// Sample values of every container, built from real keys and signatures.
struct Samples {
    task: TaskResult,
    block: Block,
    proposal: Proposal,
    signed_proposal: SignedProposal,
    vote: SignedVote,
    certificate: Certificate,
    genesis: GenesisConfig,
    state: ChainState,
}

fn samples() -> anyhow::Result<Samples> {
    let genesis = common::genesis("avs-spec-vectors", &[10, 20, 30, 40])?;
    let d = digest(&genesis)?;
    let task = TaskResult {
        task_definition_id: 10001,
        performer_index: OperatorIndex::new(2),
        proof_of_task: byte_list(&[0xaa; 5])?,
        data: byte_list(b"task output")?,
        signature: Vector::try_from(vec![0xbb; 96]).map_err(|(_, e)| anyhow::anyhow!("{e}"))?,
    };
    let body = BlockBody {
        tasks: List::try_from(vec![task.clone(), TaskResult::default()])
            .map_err(|(_, e)| anyhow::anyhow!("{e}"))?,
    };
    let state = avs_consensus::state::genesis_state(&genesis);
    let block = Block {
        height: Height::new(7),
        parent_root: [0x11; 32],
        proposer_index: OperatorIndex::new(3),
        state_root: root_of(&state)?,
        body,
    };
    let proposal = Proposal { view: View::new(12), epoch: Epoch::new(1), block: block.clone() };
    let notarize = VoteData::notarize(Epoch::new(1), View::new(11), [0x22; 32]);
    let certificate = common::certificate(4, &[1, 2, 3], notarize, d)?;
    let nullify =
        common::certificate(4, &[0, 1, 3], VoteData::nullify(Epoch::new(1), View::new(10)), d)?;
    let signed_proposal =
        common::signed_proposal(1, proposal.clone(), vec![nullify, certificate.clone()], d)?;
    let vote = common::vote(2, VoteData::finalize(Epoch::new(1), View::new(11), [0x22; 32]), d)?;
    Ok(Samples { task, block, proposal, signed_proposal, vote, certificate, genesis, state })
}

fn valid(name: &str, type_name: &str, what: &str, value: Value) -> anyhow::Result<Case> {
    let description = format!(
        "Given {what}, when it is SSZ-encoded and merkleized as {type_name}, then `serialized` and \
         `hashTreeRoot` are as given, and decoding `serialized` gives back `value`."
    );
    evaluated(name, &description, json!({ "typeName": type_name, "value": value }), evaluate)
}

fn invalid(name: &str, type_name: &str, what: &str, bytes: &[u8]) -> anyhow::Result<Case> {
    let description = format!(
        "Given {what}, when it is decoded as {type_name}, then a strict decoder refuses it."
    );
    let case = evaluated(
        name,
        &description,
        json!({ "typeName": type_name, "serialized": hex0x(bytes) }),
        evaluate,
    )?;
    ensure!(case.body["output"]["decodes"] == json!(false), "{name}: our decoder accepts it");
    Ok(case)
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) -> anyhow::Result<()> {
    let slot = bytes.get_mut(at..at + 4).context("offset outside the encoding")?;
    slot.copy_from_slice(&value.to_le_bytes());
    Ok(())
}

pub fn generate() -> anyhow::Result<Vec<Case>> {
    let s = samples()?;
    let mut cases = vec![
        valid("task_result", "TaskResult", "a task result with proof and data", s.task.to_json())?,
        valid(
            "task_result_empty",
            "TaskResult",
            "the default task result",
            TaskResult::default().to_json(),
        )?,
        valid(
            "block_body_empty",
            "BlockBody",
            "an empty block body",
            BlockBody::default().to_json(),
        )?,
        valid("block", "Block", "a block with two task results", s.block.to_json())?,
        valid("proposal", "Proposal", "a proposal for view 12 of epoch 1", s.proposal.to_json())?,
        valid(
            "signed_proposal",
            "SignedProposal",
            "a signed proposal justified by a nullification and a notarization",
            s.signed_proposal.to_json(),
        )?,
        valid(
            "vote_data_notarize",
            "VoteData",
            "NOTARIZE vote data",
            VoteData::notarize(Epoch::ZERO, View::new(1), [3; 32]).to_json(),
        )?,
        valid(
            "vote_data_nullify",
            "VoteData",
            "NULLIFY vote data (zero root)",
            VoteData::nullify(Epoch::ZERO, View::new(1)).to_json(),
        )?,
        valid(
            "vote_data_max_values",
            "VoteData",
            "FINALIZE vote data with view and epoch 2^64-1",
            VoteData::finalize(Epoch::new(u64::MAX), View::new(u64::MAX), [0xff; 32]).to_json(),
        )?,
        valid("signed_vote", "SignedVote", "a signed FINALIZE vote", s.vote.to_json())?,
        valid(
            "certificate",
            "Certificate",
            "a notarization signed by 3 of 4 operators",
            s.certificate.to_json(),
        )?,
        valid(
            "operator",
            "Operator",
            "one operator with key and proof of possession",
            s.genesis.operators.operators[0].to_json(),
        )?,
        valid(
            "operator_set",
            "OperatorSet",
            "a set of four operators",
            s.genesis.operators.to_json(),
        )?,
        valid(
            "operator_set_empty",
            "OperatorSet",
            "an empty operator set",
            OperatorSet::default().to_json(),
        )?,
        valid(
            "genesis_config",
            "GenesisConfig",
            "a genesis configuration of four operators",
            s.genesis.to_json(),
        )?,
        valid("chain_state", "ChainState", "the genesis state of that network", s.state.to_json())?,
        valid(
            "signing_data",
            "SigningData",
            "a signing container",
            SigningData { object_root: [1; 32], domain: [2; 32] }.to_json(),
        )?,
    ];

    let vote = encode(&s.vote.data)?;
    cases.push(invalid(
        "vote_data_truncated",
        "VoteData",
        "48 of VoteData's 49 bytes",
        &vote[..48],
    )?);
    let mut long = vote.clone();
    long.push(0);
    cases.push(invalid(
        "vote_data_trailing_byte",
        "VoteData",
        "VoteData's 49 bytes plus one",
        &long,
    )?);
    cases.push(invalid("signed_vote_empty", "SignedVote", "an empty byte string", &[])?);
    let signed_vote = encode(&s.vote)?;
    cases.push(invalid(
        "signed_vote_truncated",
        "SignedVote",
        "a signed vote missing its last byte",
        &signed_vote[..signed_vote.len() - 1],
    )?);

    // Block: fixed part is height 8 + parent 32 + proposer 8 + state 32 + body offset 4 = 84.
    let block = encode(&s.block)?;
    let mut bad = block.clone();
    put_u32(&mut bad, 80, 85)?;
    cases.push(invalid(
        "block_offset_not_at_fixed_end",
        "Block",
        "a block whose body offset is 85 instead of 84",
        &bad,
    )?);
    let mut bad = block.clone();
    put_u32(&mut bad, 80, u32::try_from(block.len() + 1)?)?;
    cases.push(invalid(
        "block_offset_past_end",
        "Block",
        "a block whose body offset points past the end",
        &bad,
    )?);
    let mut bad = encode(&Block::default())?;
    bad.push(0);
    cases.push(invalid(
        "block_garbage_in_empty_list",
        "Block",
        "a block whose empty task list has one stray byte",
        &bad,
    )?);

    let many = BlockBody {
        tasks: List::try_from(vec![TaskResult::default(); 16])
            .map_err(|(_, e)| anyhow::anyhow!("{e}"))?,
    };
    let mut bytes = encode(&many)?;
    // Append a 17th empty TaskResult: shift every task offset by 4 and add one more.
    let task_len = encode(&TaskResult::default())?.len();
    bytes = over_limit_list(&bytes, 4, 16, task_len)?;
    cases.push(invalid(
        "block_body_too_many_tasks",
        "BlockBody",
        "a block body with 17 task results (limit 16)",
        &bytes,
    )?);

    let cert = encode(&s.certificate)?;
    let mut bad = cert.clone();
    *bad.last_mut().context("empty")? = 0;
    cases.push(invalid(
        "certificate_bitlist_without_marker",
        "Certificate",
        "a certificate whose signers bitlist lacks its marker bit",
        &bad,
    )?);
    let mut big = encode(&Certificate { signers: Default::default(), ..s.certificate.clone() })?;
    big.truncate(big.len() - 1);
    big.extend(std::iter::repeat_n(0u8, 128));
    big.push(0x02); // 1025 bits: one over MAX_OPERATORS
    cases.push(invalid(
        "certificate_bitlist_over_limit",
        "Certificate",
        "a certificate with a 1025-bit signers bitlist (limit 1024)",
        &big,
    )?);

    // SignedProposal: fixed part is message offset 4 + signature 96 + justification offset 4.
    let sp = encode(&s.signed_proposal)?;
    let just_at = u32::from_le_bytes(sp[100..104].try_into()?) as usize;
    let mut bad = sp.clone();
    let (first, second) = (just_at, just_at + 4);
    let a: [u8; 4] = bad[first..first + 4].try_into()?;
    let b: [u8; 4] = bad[second..second + 4].try_into()?;
    bad[first..first + 4].copy_from_slice(&b);
    bad[second..second + 4].copy_from_slice(&a);
    cases.push(invalid(
        "signed_proposal_decreasing_offsets",
        "SignedProposal",
        "a signed proposal whose two justification offsets are swapped",
        &bad,
    )?);
    let proposal = encode(&s.proposal)?;
    let mut bad = proposal.clone();
    put_u32(&mut bad, 16, 19)?;
    cases.push(invalid(
        "proposal_offset_inside_fixed_part",
        "Proposal",
        "a proposal whose block offset points into the fixed part",
        &bad,
    )?);

    let set = encode(&s.genesis.operators)?;
    cases.push(invalid(
        "operator_set_partial_operator",
        "OperatorSet",
        "an operator set with a trailing partial operator",
        &set[..set.len() - 5],
    )?);
    let mut genesis = s.genesis.clone();
    genesis.network_name = byte_list(&[b'n'; 64])?;
    let mut bytes = encode(&genesis)?;
    bytes = grow_first_bytes_field(&bytes, 28)?;
    cases.push(invalid(
        "genesis_config_name_over_limit",
        "GenesisConfig",
        "a genesis configuration with a 65-byte network name (limit 64)",
        &bytes,
    )?);
    let state = encode(&s.state)?;
    let mut bad = state.clone();
    put_u32(&mut bad, 48, 8)?;
    cases.push(invalid(
        "chain_state_first_offset_too_small",
        "ChainState",
        "a chain state whose first offset is 8",
        &bad,
    )?);
    cases.push(invalid("signing_data_short", "SigningData", "63 bytes", &[0u8; 63])?);

    // TaskResult: id 2 + performer 8 + proof offset 4 (at 10) + data offset 4 (at 14) = 18.
    let task = encode(&s.task)?;
    let mut bad = task.clone();
    let (proof_at, data_at) = (
        u32::from_le_bytes(task[10..14].try_into()?),
        u32::from_le_bytes(task[14..18].try_into()?),
    );
    put_u32(&mut bad, 10, data_at)?;
    put_u32(&mut bad, 14, proof_at)?;
    cases.push(invalid(
        "task_result_decreasing_offsets",
        "TaskResult",
        "a task result whose proof and data offsets are swapped",
        &bad,
    )?);
    let operator = encode(&s.genesis.operators.operators[0])?;
    cases.push(invalid(
        "operator_truncated",
        "Operator",
        "171 of Operator's 172 bytes",
        &operator[..operator.len() - 1],
    )?);
    Ok(cases)
}

/// A list of `count` variable-size items of `item_len` bytes, in a container whose only field
/// is that list (offset at 0, list at `list_at`), rewritten with one more item.
fn over_limit_list(
    bytes: &[u8],
    list_at: usize,
    count: usize,
    item_len: usize,
) -> anyhow::Result<Vec<u8>> {
    let items = bytes.get(list_at..).context("short")?;
    let mut out = bytes.get(..list_at).context("short")?.to_vec();
    let new_count = count + 1;
    for i in 0..new_count {
        out.extend_from_slice(&u32::try_from(new_count * 4 + i * item_len)?.to_le_bytes());
    }
    let body = items.get(count * 4..).context("short")?;
    out.extend_from_slice(body);
    out.extend_from_slice(body.get(..item_len).context("no item to copy")?);
    Ok(out)
}

/// `GenesisConfig` bytes with one byte added to its first variable field (the network name),
/// the following offset (`operators`, at `next_offset_at`) shifted accordingly.
fn grow_first_bytes_field(bytes: &[u8], next_offset_at: usize) -> anyhow::Result<Vec<u8>> {
    let next: [u8; 4] =
        bytes.get(next_offset_at..next_offset_at + 4).context("short")?.try_into()?;
    let next = u32::from_le_bytes(next) as usize;
    let mut out = bytes.to_vec();
    put_u32(&mut out, next_offset_at, u32::try_from(next + 1)?)?;
    out.insert(next, b'n');
    Ok(out)
}
