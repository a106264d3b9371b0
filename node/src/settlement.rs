//! On-chain settlement (docs/protocol.md, 7.3; contracts/README.md): finalized blocks that
//! carry AVS task results are submitted, with their finalization certificate, to the
//! `AttestationCenter` contract, which verifies the BLS12-381 aggregate signature with the
//! EIP-2537 precompiles.
//!
//! [`settle_call`] turns a certificate, its epoch's operator set and the block into the
//! contract's calldata (uncompressed EIP-2537 points, the signers bitlist as it is, the block's
//! fields). [`Settler`] runs beside the node: an aggregator (the runtime flag, read for each
//! finalized block) submits each finalized block with AVS tasks unless the contract already
//! holds that height (another aggregator was first): a submission is never repeated. The gas
//! each settlement used is logged and counted.

use std::sync::Arc;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use avs_consensus::bls::{PublicKey, Signature};
use avs_consensus::types::{
    Block, Certificate, ChainState, FIRST_INTERNAL_TASK_ID, OperatorSet, VoteKind, encode, root_of,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::core::FinalizedEvent;

alloy::sol!(
    #[sol(rpc)]
    AttestationCenter,
    "../contracts/artifacts/AttestationCenter.json"
);

/// Finalized blocks waiting for the settler; beyond it a block is skipped (and logged).
const QUEUE: usize = 256;
/// A failed settlement is tried again this many times, after 1, 2, 4, ... times the base.
const RETRIES: u32 = 4;
const RETRY_BASE: std::time::Duration = std::time::Duration::from_millis(500);
/// Task bytes (data and proofs) beyond which a block cannot be settled in one transaction
/// (calldata and on-chain hashing: about 1 MB fits in 30M gas; contracts/README.md).
pub const MAX_SETTLED_TASK_BYTES: usize = 768 * 1024;

/// The `settle` arguments for one finalized block.
#[derive(Clone)]
pub struct SettleCall {
    pub certificate: AttestationCenter::Certificate,
    pub set: AttestationCenter::OperatorKeys,
    pub header: AttestationCenter::BlockHeader,
    pub tasks: Vec<AttestationCenter::TaskResult>,
}

/// The contract's view of an operator set: uncompressed keys, concatenated, and powers.
pub fn operator_keys(set: &OperatorSet) -> anyhow::Result<AttestationCenter::OperatorKeys> {
    let mut keys = Vec::with_capacity(set.operators.len() * 128);
    let mut powers = Vec::with_capacity(set.operators.len());
    for (i, op) in set.operators.iter().enumerate() {
        let key = PublicKey::from_bytes(op.pubkey.as_ref())
            .map_err(|e| anyhow::anyhow!("operator {i}'s key: {e}"))?;
        keys.extend_from_slice(&key.to_eip2537());
        powers.push(op.power);
    }
    Ok(AttestationCenter::OperatorKeys { keys: Bytes::from(keys), powers })
}

/// The calldata that settles `block` with its finalization `certificate`, signed by `set` (the
/// certificate's epoch's operator set).
pub fn settle_call(
    certificate: &Certificate,
    set: &OperatorSet,
    block: &Block,
) -> anyhow::Result<SettleCall> {
    anyhow::ensure!(
        certificate.data.kind == VoteKind::Finalize as u8,
        "only a finalization certificate settles a block"
    );
    let signature = Signature::from_bytes(certificate.signature.as_ref())
        .map_err(|e| anyhow::anyhow!("certificate signature: {e}"))?;
    let signers = encode(&certificate.signers)?;
    Ok(SettleCall {
        certificate: AttestationCenter::Certificate {
            viewNumber: certificate.data.view.get(),
            epoch: certificate.data.epoch.get(),
            signers: Bytes::from(signers),
            signature: Bytes::from(signature.to_eip2537().to_vec()),
        },
        set: operator_keys(set)?,
        header: AttestationCenter::BlockHeader {
            height: block.height.get(),
            parentRoot: B256::from(block.parent_root),
            proposerIndex: block.proposer_index.get(),
            stateRoot: B256::from(block.state_root),
        },
        tasks: block
            .body
            .tasks
            .iter()
            .map(|t| AttestationCenter::TaskResult {
                taskDefinitionId: t.task_definition_id,
                performerIndex: t.performer_index.get(),
                proofOfTask: Bytes::from(t.proof_of_task.to_vec()),
                data: Bytes::from(t.data.to_vec()),
                signature: Bytes::from(t.signature.to_vec()),
            })
            .collect(),
    })
}

/// The post-state part of `advanceEpoch`: the next operator set in full (compressed keys and
/// proofs, as the state commits to them, and the uncompressed keys the contract will use) and
/// the roots of the state's other fields.
pub fn post_state(state: &ChainState) -> anyhow::Result<AttestationCenter::PostState> {
    let mut next = Vec::with_capacity(state.next_operators.operators.len());
    for (i, op) in state.next_operators.operators.iter().enumerate() {
        let key = PublicKey::from_bytes(op.pubkey.as_ref())
            .map_err(|e| anyhow::anyhow!("next operator {i}'s key: {e}"))?;
        next.push(AttestationCenter::NextOperator {
            addr: op.address.into(),
            pubkey: Bytes::from(op.pubkey.to_vec()),
            pop: Bytes::from(op.pop.to_vec()),
            power: op.power,
            pubkeyG1: Bytes::from(key.to_eip2537().to_vec()),
        });
    }
    Ok(AttestationCenter::PostState {
        operatorsRoot: B256::from(root_of(&state.operators)?),
        nextOperators: next,
        taskStatesRoot: B256::from(root_of(&state.task_states)?),
    })
}

/// Where to settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementConfig {
    /// JSON-RPC endpoint of the chain that holds the contract.
    pub rpc: String,
    pub contract: [u8; 20],
}

#[derive(Clone)]
struct Metrics {
    settled: Counter,
    skipped: Counter,
    failed: Counter,
    gas: Histogram,
}

impl Metrics {
    fn new() -> Self {
        Self {
            settled: Counter::default(),
            skipped: Counter::default(),
            failed: Counter::default(),
            gas: Histogram::new([250e3, 300e3, 350e3, 400e3, 500e3, 750e3, 1e6, 2e6, 4e6]),
        }
    }
}

/// The settlement submitter: [`Settler::offer`] from the consensus loop, a task beside it.
#[derive(Clone)]
pub struct Settler {
    tx: mpsc::Sender<Arc<FinalizedEvent>>,
    metrics: Metrics,
}

/// True when the block carries an AVS task result (the only ones worth settling).
pub fn has_avs_tasks(block: &Block) -> bool {
    block.body.tasks.iter().any(|t| t.task_definition_id < FIRST_INTERNAL_TASK_ID)
}

impl Settler {
    /// Starts the submitter; transactions are signed with `eth_secret` (the operator's key).
    pub fn spawn(
        config: SettlementConfig,
        eth_secret: &[u8; 32],
        registry: &mut Registry,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let signer = PrivateKeySigner::from_bytes(&B256::from(*eth_secret))?;
        let from = signer.address();
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(config.rpc.parse()?)
            .erased();
        let metrics = Metrics::new();
        let r = registry.sub_registry_with_prefix("avs_node_settlement");
        r.register("blocks", "Blocks this node settled on chain", metrics.settled.clone());
        r.register(
            "skipped",
            "Finalized blocks not submitted: already settled by another aggregator",
            metrics.skipped.clone(),
        );
        r.register("failures", "Settlement submissions that failed", metrics.failed.clone());
        r.register("gas", "Gas used by each settlement transaction", metrics.gas.clone());
        let (tx, rx) = mpsc::channel(QUEUE);
        let contract = Address::from(config.contract);
        tracing::info!(
            rpc = %crate::config::url_origin(&config.rpc),
            %contract,
            %from,
            "settling finalized AVS tasks on chain while this node is an aggregator"
        );
        tokio::spawn(run(provider, contract, from, rx, metrics.clone(), shutdown));
        Ok(Self { tx, metrics })
    }

    /// A finalized block: queued when this node is an aggregator now and the block carries AVS
    /// tasks or ends its epoch. Only a block with its own finalization certificate can be
    /// settled (the contract recomputes the root the certificate signs); one finalized as an
    /// ancestor of another is skipped.
    pub fn offer(&self, event: &Arc<FinalizedEvent>, is_aggregator: bool) {
        if !is_aggregator || !(has_avs_tasks(&event.block) || event.epoch_end.is_some()) {
            return;
        }
        if event.certificate.data.block_root != event.root {
            self.metrics.skipped.inc();
            tracing::warn!(
                height = %event.block.height,
                "finalized through a descendant's certificate: not settleable on chain"
            );
            return;
        }
        if self.tx.try_send(Arc::clone(event)).is_err() {
            self.metrics.failed.inc();
            tracing::warn!(
                height = %event.block.height,
                "settlement queue full: block not submitted"
            );
        }
    }
}

async fn run(
    provider: DynProvider,
    contract: Address,
    from: Address,
    mut rx: mpsc::Receiver<Arc<FinalizedEvent>>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let center = AttestationCenter::new(contract, provider);
    loop {
        let job = tokio::select! {
            () = shutdown.cancelled() => return,
            Some(job) = rx.recv() => job,
            else => return,
        };
        let height = job.block.height;
        let data: usize =
            job.block.body.tasks.iter().map(|t| t.data.len() + t.proof_of_task.len()).sum();
        if data > MAX_SETTLED_TASK_BYTES {
            metrics.skipped.inc();
            tracing::warn!(
                %height,
                bytes = data,
                "block's task data too large for one settlement transaction"
            );
            continue;
        }
        let mut outcome = settle(&center, from, &job).await;
        // A chain or RPC hiccup is retried with back-off before the block is given up.
        for attempt in 1..=RETRIES {
            let Err(e) = &outcome else { break };
            tracing::debug!(%height, attempt, error = %format!("{e:#}"), "settlement failed; retrying");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY_BASE * 2u32.pow(attempt)) => {}
            }
            outcome = settle(&center, from, &job).await;
        }
        match outcome {
            Ok(Some(gas)) => {
                metrics.settled.inc();
                metrics.gas.observe(gas as f64);
                tracing::info!(
                    %height,
                    tasks = job.block.body.tasks.len(),
                    gas,
                    "block settled on chain"
                );
            }
            Ok(None) => {
                metrics.skipped.inc();
                tracing::debug!(%height, "block already settled on chain");
            }
            Err(e) => {
                metrics.failed.inc();
                tracing::warn!(%height, error = %format!("{e:#}"), "settling a block failed");
            }
        }
    }
}

/// Submits one block unless the contract holds its height already; the gas it used.
async fn settle(
    center: &AttestationCenter::AttestationCenterInstance<DynProvider>,
    from: Address,
    job: &FinalizedEvent,
) -> anyhow::Result<Option<u64>> {
    let block = &job.block;
    let epoch = job.certificate.data.epoch.get();
    let current = center.currentEpoch().call().await?;
    let hand_over = job.epoch_end.as_deref().filter(|_| current == epoch);
    if hand_over.is_none() && center.settledRoot(block.height.get()).call().await? != B256::ZERO {
        return Ok(None);
    }
    anyhow::ensure!(
        current >= epoch,
        "the contract is at epoch {current}, the block at epoch {epoch}: an earlier epoch's \
         hand-over is missing on chain"
    );
    let call = settle_call(&job.certificate, &job.operators, block)?;
    let pending = match hand_over {
        Some(state) => {
            center
                .advanceEpoch(
                    call.certificate,
                    call.set,
                    call.header,
                    call.tasks,
                    post_state(state)?,
                )
                .from(from)
                .send()
                .await
        }
        None => {
            center
                .settle(call.certificate, call.set, call.header, call.tasks)
                .from(from)
                .send()
                .await
        }
    };
    let pending = match pending {
        Ok(pending) => pending,
        Err(e) => {
            // Another aggregator's transaction may have landed between the check and ours.
            let settled = center.settledRoot(block.height.get()).call().await? != B256::ZERO;
            let handed_over = center.currentEpoch().call().await? > epoch;
            if settled && (hand_over.is_none() || handed_over) {
                tracing::debug!(error = %e, "refused: settled meanwhile by another aggregator");
                return Ok(None);
            }
            return Err(e.into());
        }
    };
    let receipt = pending.get_receipt().await?;
    anyhow::ensure!(receipt.status(), "the settle transaction reverted");
    Ok(Some(receipt.gas_used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use avs_consensus::types::{
        BlockBody, Epoch, Height, Operator, OperatorIndex, Signers, TaskResult, View, VoteData,
        byte_list, root_of,
    };
    use serde_json::Value;

    fn hex(v: &Value) -> Vec<u8> {
        let text = v.as_str().unwrap();
        hex::decode(text.strip_prefix("0x").unwrap()).unwrap()
    }

    /// The contract's own fixtures (generated by an independent Python implementation,
    /// contracts/test/gen_fixtures.py) and this crate's encoding agree on every input.
    #[test]
    fn the_calldata_matches_the_contract_fixtures() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/fixtures");
        for name in
            ["settle_valid_4_of_4.json", "settle_valid_3_of_4.json", "settle_gas_16_signers.json"]
        {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            let file: Value = serde_json::from_str(&text).unwrap();
            let fixture = file.as_object().unwrap().values().next().unwrap();
            let operators: Vec<Operator> = fixture["genesis"]["operators"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| Operator {
                    address: hex(&o["address"]).try_into().unwrap(),
                    pubkey: hex(&o["pubkey"]).try_into().unwrap(),
                    pop: hex(&o["pop"]).try_into().unwrap(),
                    power: o["power"].as_u64().unwrap(),
                })
                .collect();
            let set = OperatorSet { operators: operators.try_into().unwrap() };
            let step = &fixture["steps"][0];
            let b = &step["block"];
            let tasks: Vec<TaskResult> = b["body"]["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| TaskResult {
                    task_definition_id: t["taskDefinitionId"].as_u64().unwrap() as u16,
                    performer_index: OperatorIndex::new(t["performerIndex"].as_u64().unwrap()),
                    proof_of_task: byte_list(&hex(&t["proofOfTask"])).unwrap(),
                    data: byte_list(&hex(&t["data"])).unwrap(),
                    signature: hex(&t["signature"]).try_into().unwrap(),
                })
                .collect();
            let block = Block {
                height: Height::new(b["height"].as_u64().unwrap()),
                parent_root: hex(&b["parentRoot"]).try_into().unwrap(),
                proposer_index: OperatorIndex::new(b["proposerIndex"].as_u64().unwrap()),
                state_root: hex(&b["stateRoot"]).try_into().unwrap(),
                body: BlockBody { tasks: tasks.try_into().unwrap() },
            };
            let c = &step["certificate"];
            let root = root_of(&block).unwrap();
            assert_eq!(root.to_vec(), hex(&c["blockRoot"]), "{name}: block root");
            let signers: Signers = ssz_rs::Deserialize::deserialize(&hex(&c["signers"])).unwrap();
            let certificate = Certificate {
                data: VoteData {
                    kind: 2,
                    view: View::new(c["view"].as_u64().unwrap()),
                    epoch: Epoch::new(c["epoch"].as_u64().unwrap()),
                    block_root: root,
                },
                signers,
                signature: hex(&c["signature"]).try_into().unwrap(),
            };
            let call = settle_call(&certificate, &set, &block).unwrap();
            assert_eq!(call.certificate.signature.to_vec(), hex(&c["signatureG2"]), "{name}: G2");
            let keys: Vec<u8> = fixture["genesis"]["operators"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|o| hex(&o["pubkeyG1"]))
                .collect();
            assert_eq!(call.set.keys.to_vec(), keys, "{name}: G1 keys");
            assert_eq!(call.certificate.signers.to_vec(), hex(&c["signers"]), "{name}: signers");
            // The task ids the contract emits are the protocol's.
            let ids: Vec<Vec<u8>> =
                step["expected"]["taskIds"].as_array().unwrap().iter().map(hex).collect();
            for (task, id) in block.body.tasks.iter().zip(ids) {
                let performer =
                    set.operators[task.performer_index.position().unwrap()].pubkey.clone();
                let message = avs_consensus::task::task_message(task, performer);
                assert_eq!(
                    avs_consensus::signing::task_id(&message).unwrap().to_vec(),
                    id,
                    "{name}: task id"
                );
            }
        }
    }

    #[test]
    fn only_a_finalization_settles() {
        let mut certificate = Certificate::default();
        certificate.data.kind = VoteKind::Notarize as u8;
        let Err(err) = settle_call(&certificate, &OperatorSet::default(), &Block::default()) else {
            panic!("a notarization was turned into settlement calldata");
        };
        assert!(err.to_string().contains("finalization"), "{err}");
    }
}
