//! `settlement_test`: what the `AttestationCenter` contract (contracts/README.md) is given for a
//! finalized block, computed from the block, its finalization certificate and the epoch's
//! operator set: the uncompressed EIP-2537 points, the roots it recomputes and the quorum.
//!
//! Inputs: `genesis` (its operators are the epoch's set), `block`, `certificate`. Output:
//! `blockRoot`, `voteDomain`, `signingRoot`, `taskIds` (the ids `TaskResultSettled` carries),
//! `keysG1` (each operator's key, 128 bytes), `signatureG2` (256 bytes), `signers` (the bitlist
//! bytes as they are), `signedPower`, `totalPower`, `quorum`, `signatureValid`.

use anyhow::Context;
use avs_consensus::KeyTable;
use avs_consensus::signing::{DOMAIN_VOTE, domain, network_digest, task_id, vote_signing_root};
use avs_consensus::task::task_message;
use avs_consensus::types::{
    Block, BlockBody, Certificate, GenesisConfig, VoteData, encode, root_of,
};
use avs_consensus::types::{Epoch, Height, OperatorIndex, View};
use avs_node::settlement::settle_call;
use serde_json::{Value, json};

use super::common::{self, secret};
use super::ssz_json::JsonForm;
use super::{Case, evaluated};
use crate::Fixture;
use crate::json::{field, hex0x};

const FORMAT: &str = "settlement_test";

pub fn check(fixture: &Fixture) -> anyhow::Result<()> {
    super::check_output(fixture, FORMAT, evaluate)
}

fn evaluate(input: &Value) -> anyhow::Result<Value> {
    let genesis = GenesisConfig::from_json(field(input, "genesis")?).context("genesis")?;
    let block = Block::from_json(field(input, "block")?).context("block")?;
    let certificate =
        Certificate::from_json(field(input, "certificate")?).context("certificate")?;
    let digest = network_digest(&genesis)?;
    let table = KeyTable::new(Epoch::ZERO, &genesis.operators, digest)?;
    let call = settle_call(&certificate, &genesis.operators, &block)?;
    let signed = table.signed_power(&certificate.signers)?;
    let keys: Vec<Value> = call.set.keys.chunks(128).map(hex0x).collect();
    let task_ids = block
        .body
        .tasks
        .iter()
        .map(|t| {
            let performer = genesis
                .operators
                .operators
                .get(t.performer_index.position().unwrap_or(usize::MAX))
                .map(|op| op.pubkey.clone())
                .context("performer outside the set")?;
            Ok(hex0x(&task_id(&task_message(t, performer))?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(json!({
        "blockRoot": hex0x(&root_of(&block)?),
        "voteDomain": hex0x(&domain(DOMAIN_VOTE, digest)),
        "signingRoot": hex0x(&vote_signing_root(&certificate.data, digest)?),
        "taskIds": task_ids,
        "keysG1": keys,
        "signatureG2": hex0x(&call.certificate.signature),
        "signers": hex0x(&encode(&certificate.signers)?),
        "signedPower": signed.to_string(),
        "totalPower": table.total_power().to_string(),
        "quorum": table.has_quorum(signed),
        "signatureValid": avs_consensus::verify::verify_certificate(&table, &certificate).is_ok(),
    }))
}

pub fn generate() -> anyhow::Result<Vec<Case>> {
    let genesis = common::genesis("avs-spec-vectors", &[10, 20, 30, 40])?;
    let digest = network_digest(&genesis)?;
    let data = b"settled task";
    let hashed = <sha2::Sha256 as sha2::Digest>::digest(data);
    let task = avs_consensus::testkit::avs_result(
        &secret(2)?,
        OperatorIndex::new(2),
        1,
        &hashed,
        data,
        digest,
    )?;
    let block = Block {
        height: Height::new(12),
        parent_root: [0x11; 32],
        proposer_index: OperatorIndex::new(1),
        state_root: [0x22; 32],
        body: BlockBody { tasks: vec![task].try_into().map_err(|_| anyhow::anyhow!("tasks"))? },
    };
    let root = root_of(&block)?;
    let mut cases = Vec::new();
    for (name, signers, given) in [
        (
            "all_sign",
            vec![0, 1, 2, 3],
            "Given every operator signed the finalization, then the contract's inputs verify and reach quorum",
        ),
        (
            "three_of_four",
            vec![1, 2, 3],
            "Given operators 1, 2 and 3 (power 90 of 100) signed, then quorum holds",
        ),
        (
            "below_quorum",
            vec![0, 3],
            "Given operators 0 and 3 (power 50 of 100: 150 is not above 200) signed, then the signature verifies but quorum does not hold",
        ),
    ] {
        let certificate = common::certificate(
            4,
            &signers,
            VoteData::finalize(Epoch::ZERO, View::new(9), root),
            digest,
        )?;
        let input = json!({
            "genesis": genesis.to_json(),
            "block": block.to_json(),
            "certificate": certificate.to_json(),
        });
        cases.push(evaluated(name, given, input, evaluate)?);
    }
    Ok(cases)
}
