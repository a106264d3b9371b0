//! The work executions need off the consensus thread (docs/protocol.md, 7.5): running the
//! workflows of pending executions (the results this node proposes when it leads), re-running
//! the contract reads of results it votes on, and sending the contract writes of results it
//! ran once they are final.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::eips::BlockId;
use alloy::eips::eip2718::Encodable2718;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use avs_proto::automation_v1 as pb;
use prost::Message;
use tokio_util::sync::CancellationToken;

use super::chain::timed;
use super::execution::{
    EXPIRE_AFTER_BLOCKS, MAX_OUTPUT_BYTES, Prepared, ReadKey, ReadOutcome, calldata, has_writes,
    pinned_block, with_trigger,
};
use super::{Automation, AutomationError, SEND, SEND_SIGNED, TaskId, scan_wrapping, send_key};
use crate::store::{Column, Durability, WriteBatch};

/// How often the runner looks for work.
const TICK: Duration = Duration::from_millis(250);
/// A REST call's deadline.
const REST_TIMEOUT: Duration = Duration::from_secs(10);
/// A chain call's deadline.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pending executions read per tick at most.
const OPEN_PER_TICK: usize = 256;
/// Gas one contract write may use at most (the sender pays what it uses).
const MAX_WRITE_GAS: u64 = 1_000_000;
/// Writes to send looked at per tick at most.
pub(crate) const SENDS_PER_TICK: usize = 64;
/// Re-run reads per tick at most: one slow chain cannot hold up the runner's other work.
const READS_PER_TICK: usize = 16;

/// The REST responses this node got, per execution and step, kept until the execution is
/// final here: preparing a result again reuses them instead of calling the server again
/// (docs/protocol.md, 7.5).
#[derive(Debug, Default)]
pub(crate) struct RestResponses(HashMap<(TaskId, u64, usize), RestResponse>);

/// A REST call's status (0 when none came), body (at most [`MAX_OUTPUT_BYTES`]) and error.
type RestResponse = (u32, Vec<u8>, String);

impl RestResponses {
    /// Holds no response.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs until `shutdown`; contract writes are signed with the automation's own sender key.
pub async fn run(automation: Arc<Automation>, shutdown: CancellationToken) {
    let http = match alloy::transports::http::reqwest::Client::builder()
        .timeout(REST_TIMEOUT)
        .redirect(alloy::transports::http::reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "automation runner: no HTTP client; executions stop");
            return;
        }
    };
    let signer = match automation
        .sender_secret()
        .map_err(anyhow::Error::from)
        .and_then(|secret| Ok(PrivateKeySigner::from_bytes(&B256::from(*secret))?))
    {
        Ok(signer) => signer,
        Err(e) => {
            tracing::error!(error = %e, "automation runner: no sender key; writes stop");
            return;
        }
    };
    tracing::info!(
        sender = %signer.address(),
        "automation contract writes are sent from this address (not the operator key): fund it"
    );
    let mut responses = RestResponses::default();
    let mut send_cursor = Vec::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
        rerun_reads(&automation).await;
        if let Err(e) = prepare(&automation, &http, &mut responses).await {
            tracing::warn!(error = %e, "automation runner: cannot read pending executions");
        }
        if let Err(e) = send_writes(&automation, &signer, &mut send_cursor).await {
            tracing::warn!(error = %e, "automation runner: sending a contract write failed");
        }
    }
}

/// `eth_call` of `key`: the return data, or a revert's data; an error for anything else (the
/// read is tried again, never reported as its result).
pub async fn read(provider: &DynProvider, key: &ReadKey) -> anyhow::Result<ReadOutcome> {
    let request = TransactionRequest::default()
        .to(Address::from(key.address))
        .input(Bytes::from(key.calldata.clone()).into());
    let call = provider.call(request).block(BlockId::number(key.block));
    // Truncated here, so the runner and every re-run compare the same bytes.
    let capped = |data: Bytes| data.iter().copied().take(MAX_OUTPUT_BYTES).collect::<Vec<u8>>();
    match tokio::time::timeout(CALL_TIMEOUT, call.into_future()).await {
        Ok(Ok(data)) => Ok((true, capped(data))),
        Ok(Err(e)) => match e.as_error_resp().and_then(|r| r.as_revert_data()) {
            Some(data) => Ok((false, capped(data))),
            None => Err(anyhow::anyhow!("eth_call: {e}")),
        },
        Err(_) => Err(anyhow::anyhow!("eth_call: no answer within {CALL_TIMEOUT:?}")),
    }
}

/// The reads votes wait for.
async fn rerun_reads(automation: &Automation) {
    for key in automation.wanted_reads().into_iter().take(READS_PER_TICK) {
        let outcome = match automation.chains().provider(key.chain_id) {
            Some(provider) => read(&provider, &key).await,
            None => Err(anyhow::anyhow!("chain {} is not watched", key.chain_id)),
        };
        match outcome {
            Ok(outcome) => automation.read_done(key, outcome),
            // Dropped from the queue: the next judgement of a vote that needs it asks again.
            Err(e) => {
                automation.read_failed(&key);
                tracing::debug!(error = %e, "re-running a read failed");
            }
        }
    }
}

/// Runs the workflow of each pending execution this node has no fresh result for.
pub(crate) async fn prepare(
    automation: &Automation,
    http: &alloy::transports::http::reqwest::Client,
    responses: &mut RestResponses,
) -> Result<(), AutomationError> {
    let open = automation.open_executions(OPEN_PER_TICK)?;
    let now = crate::node::now_ms();
    {
        // Results of executions no longer pending (deleted with their automation) leave.
        let held: Vec<(TaskId, u64)> = automation.inner().prepared.keys().copied().collect();
        let gone: Vec<(TaskId, u64)> =
            held.into_iter().filter(|(id, key)| !automation.is_open(id, *key)).collect();
        let mut inner = automation.inner();
        for key in gone {
            inner.prepared.remove(&key);
        }
    }
    responses.0.retain(|(id, key, _), _| automation.is_open(id, *key));
    let finalized = automation.finalized_height();
    for (id, task, execution) in open {
        let definition = task.definition.unwrap_or_default();
        if finalized.saturating_add(1) >= execution.height.saturating_add(EXPIRE_AFTER_BLOCKS) {
            // Too old to run: closed as expired by whoever leads next.
            let result = pb::ExecutionResult {
                automation_id: id.to_vec(),
                key: execution.key,
                runner: automation.node_address().to_vec(),
                expired: true,
                ..Default::default()
            };
            let prepared = Prepared {
                bytes: result.encode_to_vec(),
                at_ms: now,
                proposed_ms: None,
                writes: false,
            };
            if !automation.is_prepared(&(id, execution.key), now) {
                automation.inner().prepared.insert((id, execution.key), prepared);
            }
            continue;
        }
        let writes = has_writes(&definition);
        // Only an aggregator proposes writes: others need not run them.
        if writes && !automation.is_aggregator() {
            continue;
        }
        if automation.is_prepared(&(id, execution.key), now) {
            continue;
        }
        match run_workflow(automation, http, &definition, (&id, &execution), responses).await {
            Ok(result) => {
                let result = pb::ExecutionResult {
                    automation_id: id.to_vec(),
                    key: execution.key,
                    runner: automation.node_address().to_vec(),
                    ..result
                };
                tracing::debug!(id = %super::id_hex(&id), key = execution.key, success = result.success, "workflow ran");
                automation.inner().prepared.insert(
                    (id, execution.key),
                    Prepared {
                        bytes: result.encode_to_vec(),
                        at_ms: crate::node::now_ms(),
                        proposed_ms: None,
                        writes,
                    },
                );
            }
            Err(e) => tracing::debug!(error = %e, "a workflow could not run yet; trying again"),
        }
    }
    Ok(())
}

/// Runs `definition`'s steps for `execution`, stopping at the first failed one. A chain that
/// cannot be read is an error (tried again later), never a failed step: attesters re-run
/// reads and would not agree.
async fn run_workflow(
    automation: &Automation,
    http: &alloy::transports::http::reqwest::Client,
    definition: &pb::TaskDefinition,
    (id, execution): (&TaskId, &pb::Execution),
    responses: &mut RestResponses,
) -> anyhow::Result<pb::ExecutionResult> {
    let mut steps = Vec::new();
    for (i, node) in definition.nodes.iter().enumerate() {
        let step = match &node.kind {
            Some(pb::workflow_node::Kind::ContractRead(call)) => {
                let provider = automation
                    .chains()
                    .provider(call.chain_id)
                    .ok_or_else(|| anyhow::anyhow!("chain {} is not watched", call.chain_id))?;
                let block = match pinned_block(call, execution) {
                    Some(block) => block,
                    None => {
                        automation.chains().read(call.chain_id, |c| c.head()).flatten().ok_or_else(
                            || anyhow::anyhow!("no block of chain {} yet", call.chain_id),
                        )?
                    }
                };
                let key = ReadKey {
                    chain_id: call.chain_id,
                    address: <[u8; 20]>::try_from(call.address.as_slice())?,
                    calldata: calldata(call, execution),
                    block,
                };
                let (ok, output) = read(&provider, &key).await?;
                pb::StepResult {
                    name: node.name.clone(),
                    ok,
                    error: if ok { String::new() } else { "reverted".into() },
                    output,
                    block_number: block,
                    ..Default::default()
                }
            }
            Some(pb::workflow_node::Kind::ContractWrite(call)) => pb::StepResult {
                name: node.name.clone(),
                ok: true,
                output: calldata(call, execution),
                ..Default::default()
            },
            Some(pb::workflow_node::Kind::Rest(rest)) => {
                let cached = (*id, execution.key, i);
                let (status, output, error) = match responses.0.get(&cached) {
                    Some(response) => response.clone(),
                    None => {
                        let response = rest_call(http, rest, execution).await;
                        // No answer, a server error or "too many requests" may pass: asked
                        // again when the result is prepared again.
                        let passing = matches!(response.0, 0 | 429 | 500..);
                        if !passing {
                            responses.0.insert(cached, response.clone());
                        }
                        response
                    }
                };
                pb::StepResult {
                    name: node.name.clone(),
                    ok: (200..300).contains(&status),
                    output,
                    error,
                    http_status: status,
                    ..Default::default()
                }
            }
            None => anyhow::bail!("node {:?} has no kind", node.name),
        };
        let ok = step.ok;
        steps.push(step);
        if !ok {
            break;
        }
    }
    let success = steps.len() == definition.nodes.len() && steps.iter().all(|s| s.ok);
    Ok(pb::ExecutionResult { steps, success, ..Default::default() })
}

/// One REST call.
async fn rest_call(
    http: &alloy::transports::http::reqwest::Client,
    rest: &pb::RestCall,
    execution: &pb::Execution,
) -> RestResponse {
    let url = with_trigger(&rest.url, execution);
    let request = if rest.method.eq_ignore_ascii_case("POST") {
        http.post(&url).body(with_trigger(&rest.body, execution))
    } else {
        http.get(&url)
    };
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) => return (0, Vec::new(), format!("request failed: {}", e.without_url())),
    };
    let status = u32::from(response.status().as_u16());
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_OUTPUT_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= MAX_OUTPUT_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return (0, Vec::new(), format!("reading the body: {}", e.without_url())),
        }
    }
    (status, body, String::new())
}

/// Sends the contract writes queued for this node: each is signed once and the signed
/// transaction kept before it is sent, so a restart sends the same transaction (same nonce)
/// rather than a second one. Its hash is then recorded in the execution.
///
/// Each call looks at up to [`SENDS_PER_TICK`] rows from where the last one stopped (wrapping
/// around), so writes that wait (a chain this node does not watch) never hold up the others.
pub(crate) async fn send_writes(
    automation: &Automation,
    signer: &PrivateKeySigner,
    cursor: &mut Vec<u8>,
) -> anyhow::Result<()> {
    for (k, row) in scan_wrapping(&*automation.store, SEND, cursor, SENDS_PER_TICK)? {
        // One row's failure (an unwatched chain, a reverting write) never holds up the others.
        if let Err(e) = send_one(automation, signer, &k, row).await {
            tracing::warn!(error = %e, "an automation contract write failed; trying again later");
        }
    }
    Ok(())
}

async fn send_one(
    automation: &Automation,
    signer: &PrivateKeySigner,
    k: &[u8],
    row: Vec<u8>,
) -> anyhow::Result<()> {
    let (Some((id, key)), Some(&step)) = (super::execution_of_key(k), k.get(41)) else {
        return Ok(());
    };
    // A row with nothing to send (its automation deleted while it was being sent) goes.
    let call = match automation.lookup(&id, None)?.and_then(|task| {
        let node = task.definition?.nodes.into_iter().nth(usize::from(step))?;
        match node.kind? {
            pb::workflow_node::Kind::ContractWrite(call) => Some(call),
            _ => None,
        }
    }) {
        Some(call) if !row.is_empty() => call,
        _ => {
            tracing::debug!(id = %super::id_hex(&id), key, "a write of no automation is not sent");
            let mut batch = WriteBatch::new();
            batch.delete(Column::Automation, k.to_vec());
            automation.store.write(batch, Durability::Sync)?;
            return Ok(());
        }
    };
    let Some((&kind, body)) = row.split_first() else { return Ok(()) };
    let Some(url) = automation.chains().url(call.chain_id) else {
        anyhow::bail!("a contract write on chain {} (not watched) waits", call.chain_id);
    };
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer.clone()))
        .connect_http(url.parse()?);
    let raw = if kind == SEND_SIGNED {
        body.to_vec()
    } else {
        let request = TransactionRequest::default()
            .to(Address::from_slice(&call.address))
            .input(Bytes::from(body.to_vec()).into())
            .gas_limit(MAX_WRITE_GAS);
        let filled = timed("filling the transaction", provider.fill(request)).await?;
        let envelope = filled
            .try_into_envelope()
            .map_err(|e| anyhow::anyhow!("the transaction is not signed: {e}"))?;
        let raw = envelope.encoded_2718();
        let mut batch = WriteBatch::new();
        let value = [&[SEND_SIGNED][..], &raw].concat();
        batch.put(Column::Automation, send_key(&id, key, step), value);
        automation.store.write(batch, Durability::Sync)?;
        raw
    };
    let hash = keccak256(&raw);
    let mined =
        timed("eth_getTransactionReceipt", provider.get_transaction_receipt(hash)).await?.is_some();
    if !mined {
        let _sent = timed("eth_sendRawTransaction", provider.send_raw_transaction(&raw)).await?;
    }
    tracing::info!(
        id = %super::id_hex(&id),
        key,
        tx = %hash,
        chain_id = call.chain_id,
        "automation contract write sent"
    );
    automation.write_sent(&id, key, step, hash.0)?;
    Ok(())
}
