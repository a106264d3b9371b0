//! `avs_task_test`: an AVS task submission (docs/protocol.md, 7.3) as a node judges it: its
//! task id and signing root, whether its signature verifies, the request a node sends to the
//! AVS's validation service, and the verdict (for `service` tasks, from the service's answer).
//!
//! Inputs: `genesis` (with `taskDefinitions`), `submission` (a `SignedTaskMessage`), and for
//! `service` tasks `serviceAnswer: {status, body}` (the HTTP status and the body text).
//! Output: `taskId`, `signingRoot`, `signatureValid`, `definition` (its validation kind, or
//! null when the genesis has no such AVS task), `performerIndex` and `performerAddress` (null
//! when the key is not in the set), `validationRequest` (the JSON body POSTed to the service),
//! `verdict` (`valid`, `invalid` or `notYet`; null when the submission is refused before
//! validation), `inBlock` (the `TaskResult` a leader puts in a block) and its `taskResultRoot`.

use anyhow::Context;
use avs_consensus::TaskValidity;
use avs_consensus::signing::{network_digest, task_id, task_signing_root};
use avs_consensus::task::{sign_task, verify_task_signature};
use avs_consensus::types::OperatorIndex;
use avs_consensus::types::{
    AvsTaskDefinition, GenesisConfig, SignedTaskMessage, TaskMessage, TaskResult, Validation,
    byte_list, root_of,
};
use avs_node::avs::service::{ValidationRequest, validity_of};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::common::{self, secret};
use super::ssz_json::JsonForm;
use super::{Case, evaluated};
use crate::Fixture;
use crate::json::{field, get_str, get_u64, hex0x};

const FORMAT: &str = "avs_task_test";

pub fn check(fixture: &Fixture) -> anyhow::Result<()> {
    super::check_output(fixture, FORMAT, evaluate)
}

fn verdict_name(v: &TaskValidity) -> &'static str {
    match v {
        TaskValidity::Valid => "valid",
        TaskValidity::Invalid(_) => "invalid",
        TaskValidity::NotYet(_) => "notYet",
    }
}

fn evaluate(input: &Value) -> anyhow::Result<Value> {
    let genesis = GenesisConfig::from_json(field(input, "genesis")?).context("genesis")?;
    let digest = network_digest(&genesis)?;
    let signed = SignedTaskMessage::from_json(field(input, "submission")?).context("submission")?;
    let message = &signed.message;
    let id = task_id(message)?;
    let valid_signature = verify_task_signature(digest, message, signed.signature.as_ref());
    let definition = genesis
        .task_definitions
        .iter()
        .find(|d| d.id == message.task_definition_id)
        .and_then(|d| Validation::from_u8(d.validation));
    let performer =
        genesis.operators.operators.iter().position(|op| op.pubkey == message.performer);
    let address = performer.and_then(|i| genesis.operators.operators.get(i)).map(|op| op.address);
    let request = address.map(|address| ValidationRequest {
        task_definition_id: message.task_definition_id,
        proof_of_task: avs_node::avs::hex0x(&message.proof_of_task),
        data: avs_node::avs::hex0x(&message.data),
        performer: avs_node::avs::hex0x(&address),
        task_id: avs_node::avs::hex0x(&id),
    });
    let verdict = match (definition, valid_signature, performer) {
        (Some(Validation::Sha256), true, Some(_)) => Some(
            if message.proof_of_task.as_ref() == Sha256::digest(message.data.as_ref()).as_slice() {
                TaskValidity::Valid
            } else {
                TaskValidity::Invalid("proof".into())
            },
        ),
        (Some(Validation::Service), true, Some(_)) => {
            let answer = field(input, "serviceAnswer")?;
            let status = u16::try_from(get_u64(answer, "status")?)?;
            Some(validity_of(status, get_str(answer, "body")?.as_bytes()))
        }
        _ => None,
    };
    let in_block = performer.map(|i| TaskResult {
        task_definition_id: message.task_definition_id,
        performer_index: OperatorIndex::at(i),
        proof_of_task: message.proof_of_task.clone(),
        data: message.data.clone(),
        signature: signed.signature.clone(),
    });
    Ok(json!({
        "taskId": hex0x(&id),
        "signingRoot": hex0x(&task_signing_root(message, digest)?),
        "signatureValid": valid_signature,
        "definition": definition.map(Validation::name),
        "performerIndex": performer,
        "performerAddress": address.map(|a| hex0x(&a)),
        "validationRequest": request.map(serde_json::to_value).transpose()?,
        "verdict": verdict.as_ref().map(verdict_name),
        "inBlock": in_block.as_ref().map(JsonForm::to_json),
        "taskResultRoot": in_block.as_ref().map(|r| root_of(r).map(|root| hex0x(&root))).transpose()?,
    }))
}

const SHA: u16 = 1;
const SERVICE: u16 = 2;

fn genesis() -> anyhow::Result<GenesisConfig> {
    let mut genesis = common::genesis("avs-spec-vectors", &[10, 20, 30, 40])?;
    let mut definitions: Vec<AvsTaskDefinition> =
        genesis.task_definitions.iter().cloned().collect();
    definitions.push(AvsTaskDefinition {
        id: SERVICE,
        name: byte_list(b"price-oracle")?,
        validation: Validation::Service.as_u8(),
    });
    genesis.task_definitions =
        definitions.try_into().map_err(|_| anyhow::anyhow!("task definitions"))?;
    Ok(genesis)
}

fn submission(
    genesis: &GenesisConfig,
    performer: usize,
    signer: usize,
    id: u16,
    proof: &[u8],
    data: &[u8],
) -> anyhow::Result<SignedTaskMessage> {
    let message = TaskMessage {
        task_definition_id: id,
        performer: secret(performer)?
            .public_key()
            .to_bytes()
            .to_vec()
            .try_into()
            .map_err(|_| anyhow::anyhow!("key"))?,
        proof_of_task: byte_list(proof)?,
        data: byte_list(data)?,
    };
    Ok(sign_task(&secret(signer)?, message, network_digest(genesis)?)?)
}

pub fn generate() -> anyhow::Result<Vec<Case>> {
    let g = genesis()?;
    let data = b"price ETH/USD 3150.25 at block 21000000";
    let hashed = Sha256::digest(data);
    let mut cases = Vec::new();
    let mut add = |name: &str,
                   given: &str,
                   s: SignedTaskMessage,
                   answer: Option<(u16, &str)>|
     -> anyhow::Result<()> {
        let mut input = json!({ "genesis": g.to_json(), "submission": s.to_json() });
        if let Some((status, body)) = answer {
            input["serviceAnswer"] = json!({ "status": status, "body": body });
        }
        cases.push(evaluated(name, given, input, evaluate)?);
        Ok(())
    };
    add(
        "sha256_valid",
        "Given a SHA256 task whose proof is the SHA-256 of its data, signed by its performer, then it is valid",
        submission(&g, 1, 1, SHA, &hashed, data)?,
        None,
    )?;
    add(
        "sha256_wrong_proof",
        "Given a SHA256 task whose proof is not the SHA-256 of its data, then it is invalid",
        submission(&g, 1, 1, SHA, &[0; 32], data)?,
        None,
    )?;
    add(
        "forged_signature",
        "Given a task naming operator 1 as performer but signed by operator 2, then the signature does not verify and it is refused before validation",
        submission(&g, 1, 2, SHA, &hashed, data)?,
        None,
    )?;
    add(
        "unknown_definition",
        "Given a task of a definition the genesis does not declare, then it is refused before validation",
        submission(&g, 0, 0, 77, &hashed, data)?,
        None,
    )?;
    add(
        "performer_not_a_member",
        "Given a task whose performer key is not in the operator set, then it is refused before validation",
        submission(&g, 9, 9, SHA, &hashed, data)?,
        None,
    )?;
    let ok = r#"{"data":true,"error":false,"message":null}"#;
    add(
        "service_valid",
        "Given a service task, when the service answers data true with status 200, then it is valid",
        submission(&g, 3, 3, SERVICE, b"QmProofCid", data)?,
        Some((200, ok)),
    )?;
    add(
        "service_invalid",
        "Given a service task, when the service answers data false, then it is invalid with the service's message",
        submission(&g, 3, 3, SERVICE, b"QmProofCid", data)?,
        Some((200, r#"{"data":false,"error":false,"message":"price off by 3%"}"#)),
    )?;
    add(
        "service_error",
        "Given a service task, when the service answers error true, then it is not yet judged (never valid)",
        submission(&g, 3, 3, SERVICE, b"QmProofCid", data)?,
        Some((200, r#"{"data":true,"error":true,"message":"db down"}"#)),
    )?;
    add(
        "service_http_503",
        "Given a service task, when the service answers HTTP 503, then it is not yet judged",
        submission(&g, 3, 3, SERVICE, b"QmProofCid", data)?,
        Some((503, ok)),
    )?;
    add(
        "service_garbage",
        "Given a service task, when the service's answer is not the protocol's JSON, then it is not yet judged",
        submission(&g, 3, 3, SERVICE, b"QmProofCid", data)?,
        Some((200, "OK")),
    )?;
    Ok(cases)
}
