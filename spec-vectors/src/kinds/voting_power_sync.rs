//! `voting_power_sync_test`: VotingPowerSyncTask (protocol section 7.1), produced by the real
//! `avs-internal-tasks` code.
//!
//! Two actions share the format, selected by the input `action`:
//! - `compute`: an operator set, an L1 and an L2 registry snapshot -> the update
//!   (`compute_update`) as JSON, its SSZ bytes and `hash_tree_root`, and the operator set after
//!   `apply_update`; or an `error` code when the update cannot be computed or applied.
//! - `validate`: a parent state, a task result and the attester's own view of the chains
//!   (snapshots and confirmed heads) -> the verdict of the real `VotingPowerSyncTask` validator,
//!   driven through `TaskDefinition::validate` with a `SourceCache` filled from the inputs and no
//!   performer.
//!
//! The validator reports its reasons as free text (`TaskValidity` carries a `String`); the
//! vectors carry stable reason codes instead, mapped from that text in [`reason_code`]. An
//! unknown text fails generation and checking, so a changed message cannot silently change the
//! vectors' meaning.

use avs_consensus::types::{Epoch, Height, OperatorIndex};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use avs_consensus::task::{TaskDefinition, TaskValidity};
use avs_consensus::types::{
    ChainState, Operator, OperatorSet, TaskResult, byte_list, encode, root_of,
};
use avs_internal_tasks::VOTING_POWER_SYNC_TASK_ID;
use avs_internal_tasks::source::{Chain, ChainSnapshot, Heads, RegisteredOperator, SourceCache};
use avs_internal_tasks::update::{
    ChainBlock, SyncState, UpdateError, VotingPowerUpdate, apply_update, compute_update,
};
use avs_internal_tasks::voting_power::{MAX_LAG_BLOCKS, NoObserver, VotingPowerSyncTask};
use serde_json::{Value, json};
use ssz_rs::prelude::{List, Vector};

use super::common::{secret, sig_bytes};
use super::{Case, evaluated};
use crate::Fixture;
use crate::json::{field, get_array, get_fixed, get_hex, get_str, get_u64, hex0x};

const FORMAT: &str = "voting_power_sync_test";

pub fn check(fixture: &Fixture) -> anyhow::Result<()> {
    super::check_output(fixture, FORMAT, evaluate)
}

fn evaluate(input: &Value) -> anyhow::Result<Value> {
    match get_str(input, "action")? {
        "compute" => evaluate_compute(input),
        "validate" => evaluate_validate(input),
        other => bail!("unknown action {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading inputs

fn parse_operator(value: &Value) -> anyhow::Result<Operator> {
    Ok(Operator {
        address: get_fixed::<20>(value, "address")?,
        pubkey: Vector::try_from(get_hex(value, "pubkey")?)
            .map_err(|(_, e)| anyhow!("pubkey: {e}"))?,
        pop: Vector::try_from(get_hex(value, "pop")?).map_err(|(_, e)| anyhow!("pop: {e}"))?,
        power: get_u64(value, "power")?,
    })
}

fn parse_set(value: &Value) -> anyhow::Result<OperatorSet> {
    let operators = value
        .as_array()
        .context("an operator set is not an array")?
        .iter()
        .map(parse_operator)
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(OperatorSet {
        operators: List::try_from(operators).map_err(|(_, e)| anyhow!("operators: {e}"))?,
    })
}

/// `{block: {number, hash}, operators: [{address, power, pubkey?, pop?}]}`; absent keys are
/// empty (L2 registries and already-registered L1 operators need none).
fn parse_snapshot(value: &Value) -> anyhow::Result<ChainSnapshot> {
    let block = field(value, "block")?;
    let block = ChainBlock { number: get_u64(block, "number")?, hash: get_fixed(block, "hash")? };
    let mut snapshot = ChainSnapshot { block, ..ChainSnapshot::default() };
    for reg in get_array(value, "operators")? {
        let optional = |name: &str| match reg.get(name) {
            Some(_) => get_hex(reg, name),
            None => Ok(Vec::new()),
        };
        let op = RegisteredOperator {
            address: get_fixed(reg, "address")?,
            pubkey: optional("pubkey")?,
            pop: optional("pop")?,
            power: get_u64(reg, "power")?,
        };
        anyhow::ensure!(
            snapshot.operators.insert(op.address, op).is_none(),
            "an address is registered twice in one snapshot"
        );
    }
    Ok(snapshot)
}

// ---------------------------------------------------------------------------------------------
// compute

fn update_json(update: &VotingPowerUpdate) -> Value {
    let block = |b: &ChainBlock| json!({ "number": b.number, "hash": hex0x(&b.hash) });
    json!({
        "baseEpoch": update.base_epoch,
        "l1Block": block(&update.l1_block),
        "l2Block": block(&update.l2_block),
        "changes": update.changes.iter().map(|c| json!({
            "address": hex0x(&c.address),
            "oldPower": c.old_power,
            "newPower": c.new_power,
            "l2Power": c.l2_power,
        })).collect::<Vec<_>>(),
        "newOperators": update.new_operators.iter().map(|n| json!({
            "address": hex0x(&n.address),
            "pubkey": hex0x(n.pubkey.as_ref()),
            "pop": hex0x(n.pop.as_ref()),
            "power": n.power,
            "l2Power": n.l2_power,
        })).collect::<Vec<_>>(),
    })
}

fn error_code(error: &UpdateError) -> &'static str {
    match error {
        UpdateError::TooMany => "tooMany",
        UpdateError::NotInSet(_) => "notInSet",
        UpdateError::StalePower { .. } => "stalePower",
        UpdateError::AlreadyInSet(_) => "alreadyInSet",
        UpdateError::Unsorted(_) => "unsorted",
        UpdateError::NoPower(_) => "noPower",
        UpdateError::DuplicateKey(_) => "duplicateKey",
    }
}

fn evaluate_compute(input: &Value) -> anyhow::Result<Value> {
    let base_epoch = Epoch::new(get_u64(input, "baseEpoch")?);
    let set = parse_set(field(input, "operators")?)?;
    let l1 = parse_snapshot(field(input, "l1")?)?;
    let l2 = parse_snapshot(field(input, "l2")?)?;
    let update = match compute_update(base_epoch, &set, &l1, &l2) {
        Ok(u) => u,
        Err(e) => return Ok(json!({ "error": error_code(&e) })),
    };
    let next = match apply_update(&set, &update) {
        Ok(next) => next,
        Err(e) => return Ok(json!({ "error": error_code(&e) })),
    };
    Ok(json!({
        "update": update_json(&update),
        "ssz": hex0x(&encode(&update)?),
        "root": hex0x(&root_of(&update)?),
        "empty": update.is_empty(),
        "nextOperators": next.operators.iter().map(|o| json!({
            "address": hex0x(&o.address),
            "power": o.power,
        })).collect::<Vec<_>>(),
    }))
}

// ---------------------------------------------------------------------------------------------
// validate

/// Stable code of a validator reason (see the module doc).
fn reason_code(verdict: &TaskValidity) -> anyhow::Result<(&'static str, Option<&'static str>)> {
    let invalid = [
        ("data is not an update", "undecodable"),
        ("proof_of_task is not the update's root", "proofMismatch"),
        ("update is for epoch", "wrongBaseEpoch"),
        ("update changes nothing", "emptyUpdate"),
        ("update differs from my sources", "updateMismatch"),
        ("is not after the last applied update's l1 block", "l1NotAfterLast"),
        ("is before the last applied update's l2 block", "l2BeforeLast"),
    ];
    let not_yet = [
        ("is beyond my source's confirmed head", "beyondConfirmedHead"),
        ("source has not answered yet", "noHeads"),
        ("fetching ", "fetching"),
    ];
    let find = |table: &[(&str, &'static str)], text: &str| {
        table
            .iter()
            .find(|(needle, _)| text.contains(needle))
            .map(|(_, code)| *code)
            .with_context(|| format!("validator reason {text:?} has no code"))
    };
    match verdict {
        TaskValidity::Valid => Ok(("valid", None)),
        TaskValidity::Invalid(text) => {
            // Chain-specific reasons name the chain first (`l1 block 7 ...`).
            let chain = if text.starts_with("l1 ") { "l1" } else { "l2" };
            let code = if text.contains(" hash 0x") && text.contains("differs from my source") {
                if chain == "l1" { "l1HashMismatch" } else { "l2HashMismatch" }
            } else if text.contains(" is stale: ") {
                if chain == "l1" { "l1Stale" } else { "l2Stale" }
            } else {
                find(&invalid, text)?
            };
            Ok(("invalid", Some(code)))
        }
        TaskValidity::NotYet(text) => Ok(("notYet", Some(find(&not_yet, text)?))),
    }
}

fn evaluate_validate(input: &Value) -> anyhow::Result<Value> {
    let parent_json = field(input, "parent")?;
    let set = parse_set(field(parent_json, "operators")?)?;
    // A parent that does not end its epoch: the block under judgement is in `parent.epoch`.
    let mut parent = ChainState {
        epoch: Epoch::new(get_u64(parent_json, "epoch")?),
        height: Height::new(get_u64(parent_json, "height")?),
        parent_root: [0; 32],
        operators: set.clone(),
        next_operators: set,
        task_states: Default::default(),
    };
    if let Some(last) = parent_json.get("lastSync") {
        let state =
            SyncState { l1_block: get_u64(last, "l1Block")?, l2_block: get_u64(last, "l2Block")? };
        parent.set_task_state(VOTING_POWER_SYNC_TASK_ID, &encode(&state)?)?;
    }
    let result_json = field(input, "result")?;
    let result = TaskResult {
        task_definition_id: VOTING_POWER_SYNC_TASK_ID,
        performer_index: OperatorIndex::ZERO,
        proof_of_task: byte_list(&get_hex(result_json, "proofOfTask")?)?,
        data: byte_list(&get_hex(result_json, "data")?)?,
        signature: Default::default(),
    };
    let attester = field(input, "attester")?;
    let cache = SourceCache::new();
    let heads = field(attester, "heads")?;
    cache.set_heads(Heads { l1: get_u64(heads, "l1")?, l2: get_u64(heads, "l2")? });
    for (chain, name) in [(Chain::L1, "l1"), (Chain::L2, "l2")] {
        for snapshot in get_array(attester, name)? {
            cache.insert(chain, parse_snapshot(snapshot)?);
        }
    }
    let task = VotingPowerSyncTask::new(cache, None, Arc::new(NoObserver));
    let (verdict, reason) = reason_code(&task.validate(&parent, &result, 0))?;
    Ok(match reason {
        Some(reason) => json!({ "verdict": verdict, "reason": reason }),
        None => json!({ "verdict": verdict }),
    })
}

// ---------------------------------------------------------------------------------------------
// Case builders

fn address(i: u8) -> [u8; 20] {
    [i; 20]
}

/// Operator `i` (deterministic key of `common`) with `power`, as set JSON.
fn set_member(i: u8, power: u64) -> anyhow::Result<Value> {
    let key = secret(usize::from(i))?;
    Ok(json!({
        "address": hex0x(&address(i)),
        "pubkey": hex0x(&key.public_key().to_bytes()),
        "pop": hex0x(sig_bytes(&key.proof_of_possession())?.as_ref()),
        "power": power,
    }))
}

fn set_json(members: &[(u8, u64)]) -> anyhow::Result<Value> {
    Ok(Value::Array(members.iter().map(|&(i, p)| set_member(i, p)).collect::<anyhow::Result<_>>()?))
}

/// A registration: `Reg::Known` carries only address and power (already in the set), `Reg::New`
/// also operator `i`'s key and PoP, `Reg::BadPop` operator `i`'s key with operator `i + 1`'s PoP.
#[derive(Clone, Copy)]
enum Reg {
    Known(u8, u64),
    New(u8, u64),
    BadPop(u8, u64),
}

fn reg_json(reg: Reg) -> anyhow::Result<Value> {
    Ok(match reg {
        Reg::Known(i, power) => json!({ "address": hex0x(&address(i)), "power": power }),
        Reg::New(i, power) => set_member(i, power)?,
        Reg::BadPop(i, power) => {
            let mut value = set_member(i, power)?;
            let other = secret(usize::from(i) + 1)?;
            value["pop"] = hex0x(sig_bytes(&other.proof_of_possession())?.as_ref());
            value
        }
    })
}

/// Block hashes are a function of chain and number, so that "same number, other hash" is a
/// deliberate choice of a case.
fn block_hash(chain_tag: u8, number: u64) -> [u8; 32] {
    let mut hash = [chain_tag; 32];
    hash[24..].copy_from_slice(&number.to_be_bytes());
    hash
}

const L1_TAG: u8 = 0xa1;
const L2_TAG: u8 = 0xb2;

fn snapshot_json(tag: u8, number: u64, regs: &[Reg]) -> anyhow::Result<Value> {
    Ok(json!({
        "block": { "number": number, "hash": hex0x(&block_hash(tag, number)) },
        "operators": regs.iter().map(|r| reg_json(*r)).collect::<anyhow::Result<Vec<_>>>()?,
    }))
}

fn l2_regs(powers: &[(u8, u64)]) -> Vec<Reg> {
    powers.iter().map(|&(i, p)| Reg::Known(i, p)).collect()
}

fn compute_case(
    name: &str,
    given: &str,
    set: &[(u8, u64)],
    l1: &[Reg],
    l2: &[(u8, u64)],
) -> anyhow::Result<Case> {
    let input = json!({
        "action": "compute",
        "baseEpoch": 3,
        "operators": set_json(set)?,
        "l1": snapshot_json(L1_TAG, 1_000, l1)?,
        "l2": snapshot_json(L2_TAG, 500, &l2_regs(l2))?,
    });
    let output = evaluate(&input)?;
    let then = match output.get("error").and_then(Value::as_str) {
        Some(code) => format!("it is refused ({code})"),
        None if output["empty"] == json!(true) => "the update is empty".to_owned(),
        None => "the update lists every difference and applying it gives the new set".to_owned(),
    };
    let description =
        format!("Given {given}, when the VotingPowerSync update is computed, then {then}.");
    evaluated(name, &description, input, evaluate)
}

/// The baseline of the validate cases: epoch 3, operators 0..2 of power 100; L1 at block 1000
/// raises operator 0 to 150 and registers operator 5; L2 at block 500 still records 100 each.
const PARENT_EPOCH: Epoch = Epoch::new(3);
const BASE_SET: &[(u8, u64)] = &[(0, 100), (1, 100), (2, 100)];
const L1_NUMBER: u64 = 1_000;
const L2_NUMBER: u64 = 500;
const L1_REGS: &[Reg] =
    &[Reg::Known(0, 150), Reg::Known(1, 100), Reg::Known(2, 100), Reg::New(5, 40)];
const L2_POWERS: &[(u8, u64)] = &[(0, 100), (1, 100), (2, 100)];

fn native_set(members: &[(u8, u64)]) -> anyhow::Result<OperatorSet> {
    parse_set(&set_json(members)?)
}

fn native_snapshot(tag: u8, number: u64, regs: &[Reg]) -> anyhow::Result<ChainSnapshot> {
    parse_snapshot(&snapshot_json(tag, number, regs)?)
}

/// What a performer would propose: the real `compute_update` on the given view.
fn proposed(base_epoch: Epoch, l1: &[Reg]) -> anyhow::Result<VotingPowerUpdate> {
    Ok(compute_update(
        base_epoch,
        &native_set(BASE_SET)?,
        &native_snapshot(L1_TAG, L1_NUMBER, l1)?,
        &native_snapshot(L2_TAG, L2_NUMBER, &l2_regs(L2_POWERS))?,
    )?)
}

/// A task result carrying `update` with its root as proof.
fn result_of(update: &VotingPowerUpdate) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    Ok((encode(update)?, root_of(update)?.to_vec()))
}

/// The attester's view: confirmed heads and the snapshots its cache holds.
struct View {
    heads: (u64, u64),
    l1: Vec<Value>,
    l2: Vec<Value>,
}

fn agreeing_view() -> anyhow::Result<View> {
    Ok(View {
        heads: (L1_NUMBER, L2_NUMBER),
        l1: vec![snapshot_json(L1_TAG, L1_NUMBER, L1_REGS)?],
        l2: vec![snapshot_json(L2_TAG, L2_NUMBER, &l2_regs(L2_POWERS))?],
    })
}

fn validate_case(
    name: &str,
    given: &str,
    result: (Vec<u8>, Vec<u8>),
    view: View,
) -> anyhow::Result<Case> {
    validate_case_after(name, given, result, view, None)
}

/// [`validate_case`] with a parent whose last applied update named `(l1, l2)` blocks.
fn validate_case_after(
    name: &str,
    given: &str,
    (data, proof): (Vec<u8>, Vec<u8>),
    view: View,
    last_sync: Option<(u64, u64)>,
) -> anyhow::Result<Case> {
    let mut parent =
        json!({ "epoch": PARENT_EPOCH, "height": 41, "operators": set_json(BASE_SET)? });
    if let Some((l1, l2)) = last_sync {
        parent["lastSync"] = json!({ "l1Block": l1, "l2Block": l2 });
    }
    let input = json!({
        "action": "validate",
        "parent": parent,
        "result": { "data": hex0x(&data), "proofOfTask": hex0x(&proof) },
        "attester": {
            "heads": { "l1": view.heads.0, "l2": view.heads.1 },
            "l1": view.l1,
            "l2": view.l2,
        },
    });
    let output = evaluate(&input)?;
    let then = match output.get("reason").and_then(Value::as_str) {
        Some(reason) => format!("the verdict is {} ({reason})", output["verdict"]),
        None => format!("the verdict is {}", output["verdict"]),
    };
    let description = format!(
        "Given {given}, when an attester validates the VotingPowerSync result, then {then}."
    );
    evaluated(name, &description, input, evaluate)
}

fn compute_cases() -> anyhow::Result<Vec<Case>> {
    use Reg::{BadPop, Known, New};
    let set = &[(0, 100), (1, 100), (2, 100)];
    let l2 = &[(0, 100), (1, 100), (2, 100)];
    Ok(vec![
        compute_case(
            "compute_no_change",
            "L1 holding exactly the set's powers",
            set,
            &[Known(0, 100), Known(1, 100), Known(2, 100)],
            l2,
        )?,
        compute_case(
            "compute_increase",
            "L1 raising operator 1 from 100 to 250 (L2 still records 100)",
            set,
            &[Known(0, 100), Known(1, 250), Known(2, 100)],
            l2,
        )?,
        compute_case(
            "compute_decrease",
            "L1 lowering operator 2 from 100 to 30 (L2 has no record of it: l2Power 0)",
            set,
            &[Known(0, 100), Known(1, 100), Known(2, 30)],
            &[(0, 100), (1, 100)],
        )?,
        compute_case(
            "compute_drop_to_zero",
            "operator 1 no longer registered on L1 (power 0): it is removed",
            set,
            &[Known(0, 100), Known(2, 100)],
            l2,
        )?,
        compute_case(
            "compute_valid_newcomer",
            "operator 7 registered on L1 with power 60, its BLS key and a valid proof of \
             possession (L2 records 55 for it)",
            set,
            &[Known(0, 100), Known(1, 100), Known(2, 100), New(7, 60)],
            &[(0, 100), (1, 100), (2, 100), (7, 55)],
        )?,
        compute_case(
            "compute_newcomer_bad_pop_ignored",
            "operator 7 registered on L1 with power 60 and its key but operator 8's proof of \
             possession: it does not join",
            set,
            &[Known(0, 100), Known(1, 100), Known(2, 100), BadPop(7, 60)],
            l2,
        )?,
        compute_case(
            "compute_several_changes_sorted",
            "a set listed out of address order (9, 4, 6, 2) where L1 changes 9, 6 and 2 and \
             drops 4, and registers newcomers 8 and 3 (changes and newcomers sorted by address; \
             newcomers appended after the kept operators)",
            &[(9, 10), (4, 20), (6, 30), (2, 40)],
            &[Known(9, 11), Known(6, 29), Known(2, 400), New(8, 5), New(3, 7)],
            &[(9, 10), (4, 20), (6, 30), (2, 40), (3, 1)],
        )?,
        compute_case(
            "compute_l2_differs_only",
            "L1 equal to the set while L2 records other powers (L2 is carried in l2Power only, \
             never a reason to change)",
            set,
            &[Known(0, 100), Known(1, 100), Known(2, 100)],
            &[(0, 999), (1, 1), (2, 0), (4, 50)],
        )?,
        compute_case(
            "compute_l2_power_carried",
            "L1 raising operator 0 to 500 while L2 already records 480 for it",
            set,
            &[Known(0, 500), Known(1, 100), Known(2, 100)],
            &[(0, 480), (1, 100), (2, 100)],
        )?,
        compute_case(
            "compute_duplicate_address_in_set",
            "a malformed set naming operator 1 twice (powers 100 and 50) and L1 at 100 for it: \
             the change computed for the second entry does not match the first",
            &[(0, 100), (1, 100), (1, 50)],
            &[Known(0, 100), Known(1, 100)],
            &[(0, 100), (1, 100)],
        )?,
    ])
}

fn validate_cases() -> anyhow::Result<Vec<Case>> {
    use Reg::{Known, New};
    let good = proposed(PARENT_EPOCH, L1_REGS)?;
    let mut cases = vec![validate_case(
        "validate_matching",
        "an update (operator 0 to 150, operator 5 joins) that the attester's own L1 and L2 \
         snapshots reproduce",
        result_of(&good)?,
        agreeing_view()?,
    )?];

    let (data, _) = result_of(&good)?;
    cases.push(validate_case(
        "validate_proof_not_root",
        "the matching update with a proofOfTask of 32 zero bytes",
        (data, vec![0; 32]),
        agreeing_view()?,
    )?);

    cases.push(validate_case(
        "validate_wrong_base_epoch",
        "an update computed for epoch 4 in a block of epoch 3",
        result_of(&proposed(PARENT_EPOCH.next(), L1_REGS)?)?,
        agreeing_view()?,
    )?);

    cases.push(validate_case_after(
        "validate_l1_block_not_after_last",
        "the matching update at L1 block 1000 in a chain whose last applied update named L1 \
         block 1000 (an update may not reuse or go back to an earlier L1 block)",
        result_of(&good)?,
        agreeing_view()?,
        Some((L1_NUMBER, L2_NUMBER)),
    )?);
    cases.push(validate_case_after(
        "validate_l2_block_before_last",
        "the matching update (L1 block 1000, L2 block 500) in a chain whose last applied \
         update named L1 block 999 and L2 block 501",
        result_of(&good)?,
        agreeing_view()?,
        Some((L1_NUMBER - 1, L2_NUMBER + 1)),
    )?);
    cases.push(validate_case_after(
        "validate_after_last_update",
        "the matching update (L1 block 1000, L2 block 500) in a chain whose last applied \
         update named L1 block 999 and the same L2 block 500",
        result_of(&good)?,
        agreeing_view()?,
        Some((L1_NUMBER - 1, L2_NUMBER)),
    )?);

    let mut view = agreeing_view()?;
    view.l1[0]["block"]["hash"] = hex0x(&[0xee; 32]);
    cases.push(validate_case(
        "validate_l1_hash_differs",
        "an attester whose L1 block 1000 has another hash (a fork)",
        result_of(&good)?,
        view,
    )?);

    let mut view = agreeing_view()?;
    view.l2[0]["block"]["hash"] = hex0x(&[0xdd; 32]);
    cases.push(validate_case(
        "validate_l2_hash_differs",
        "an attester whose L2 block 500 has another hash",
        result_of(&good)?,
        view,
    )?);

    let mut view = agreeing_view()?;
    view.l1[0] = snapshot_json(
        L1_TAG,
        L1_NUMBER,
        &[Known(0, 140), Known(1, 100), Known(2, 100), New(5, 40)],
    )?;
    cases.push(validate_case(
        "validate_source_disagrees_on_power",
        "an attester whose L1 source (same block and hash) gives operator 0 power 140, not 150",
        result_of(&good)?,
        view,
    )?);

    cases.push(validate_case(
        "validate_beyond_confirmed_head",
        "an attester whose confirmed L1 head is 999 (block 1000 not reached, not cached)",
        result_of(&good)?,
        View { heads: (L1_NUMBER - 1, L2_NUMBER), l1: vec![], l2: agreeing_view()?.l2 },
    )?);

    cases.push(validate_case(
        "validate_not_fetched_yet",
        "an attester whose confirmed L1 head is 1000 but whose cache does not hold block 1000 yet",
        result_of(&good)?,
        View { heads: (L1_NUMBER, L2_NUMBER), l1: vec![], l2: agreeing_view()?.l2 },
    )?);

    let mut view = agreeing_view()?;
    view.heads.0 = L1_NUMBER + MAX_LAG_BLOCKS + 1;
    cases.push(validate_case(
        "validate_stale_l1_block",
        "an attester whose confirmed L1 head is 257 blocks past block 1000 (the limit is 256)",
        result_of(&good)?,
        view,
    )?);

    let junk = vec![1, 2, 3];
    let junk_root = root_of(&byte_list::<{ avs_consensus::types::MAX_TASK_DATA_BYTES }>(&junk)?)?;
    cases.push(validate_case(
        "validate_undecodable_data",
        "data of 3 bytes that is not an SSZ VotingPowerUpdate",
        (junk, junk_root.to_vec()),
        agreeing_view()?,
    )?);

    let same = [Known(0, 100), Known(1, 100), Known(2, 100)];
    let mut view = agreeing_view()?;
    view.l1[0] = snapshot_json(L1_TAG, L1_NUMBER, &same)?;
    cases.push(validate_case(
        "validate_empty_update",
        "an update that changes nothing (with its correct root), the attester agreeing",
        result_of(&proposed(PARENT_EPOCH, &same)?)?,
        view,
    )?);
    Ok(cases)
}

pub fn generate() -> anyhow::Result<Vec<Case>> {
    let mut cases = compute_cases()?;
    cases.extend(validate_cases()?);
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_verdict_and_outcome_is_covered() {
        let cases = generate().unwrap();
        let output =
            |name: &str| cases.iter().find(|c| c.name == name).unwrap().body["output"].clone();
        assert_eq!(output("validate_matching"), json!({ "verdict": "valid" }));
        assert_eq!(output("validate_proof_not_root")["reason"], "proofMismatch");
        assert_eq!(output("validate_wrong_base_epoch")["reason"], "wrongBaseEpoch");
        assert_eq!(output("validate_l1_block_not_after_last")["reason"], "l1NotAfterLast");
        assert_eq!(output("validate_l2_block_before_last")["reason"], "l2BeforeLast");
        assert_eq!(output("validate_after_last_update"), json!({ "verdict": "valid" }));
        assert_eq!(output("validate_l1_hash_differs")["reason"], "l1HashMismatch");
        assert_eq!(output("validate_source_disagrees_on_power")["reason"], "updateMismatch");
        assert_eq!(output("validate_beyond_confirmed_head")["verdict"], "notYet");
        assert_eq!(output("validate_undecodable_data")["reason"], "undecodable");
        assert_eq!(output("validate_empty_update")["reason"], "emptyUpdate");
        assert_eq!(output("compute_no_change")["empty"], true);
        assert_eq!(output("compute_newcomer_bad_pop_ignored")["empty"], true);
        assert_eq!(output("compute_valid_newcomer")["update"]["newOperators"][0]["l2Power"], 55);
    }

    #[test]
    fn a_changed_verdict_fails_its_check() {
        let case = generate().unwrap().into_iter().find(|c| c.name == "validate_matching").unwrap();
        let mut body = Value::Object(case.body);
        body["_info"] = json!({ "fixtureFormat": FORMAT });
        let fixture = |body: &Value| Fixture {
            path: "x.json".into(),
            test_id: "x".into(),
            body: body.clone(),
        };
        check(&fixture(&body)).unwrap();
        body["output"]["verdict"] = json!("invalid");
        assert!(check(&fixture(&body)).is_err());
    }
}
