//! AVS tasks end to end (issue 14): performers submit signed results over gRPC to a 4-node
//! network whose attesters ask an external validation service (the example AVS's, its own
//! process); the valid ones are finalized on every node and settled, by the aggregator, on a
//! real EVM (anvil, Prague) whose contract verifies the BLS12-381 certificate; the one the
//! service refuses is never finalized; a tampered certificate is refused by the contract.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use avs_consensus::types::{Block, Certificate, decode};
use avs_node::example_avs;
use avs_node::settlement::{AttestationCenter, operator_keys, settle_call};
use avs_proto::v1 as pb;
use avs_proto::v1::node_service_client::NodeServiceClient;
use avs_proto::v1::task_service_client::TaskServiceClient;
use serde_json::Value;

use super::*;
use crate::evm::{Anvil, anvil, provider};

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `avs-node example-avs serve` on a free port: an AVS validation service in its own process.
fn start_service(dir: &Path) -> anyhow::Result<(Service, String)> {
    let port = avs_node::devnet::free_port()?;
    let child = Command::new(avs_node_binary()?)
        .args(["example-avs", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("service.log"))?)
        .spawn()?;
    let service = Service(child);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("{base}/health")).call().is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the validation service did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((service, format!("{base}{}", example_avs::VALIDATE_PATH)))
}

fn task(node: &NodeProcess, id: &str) -> Option<Value> {
    let mut answer = ureq::get(&node.url(&format!("/tasks/{id}"))).call().ok()?;
    let body: Value = answer.body_mut().read_json().ok()?;
    Some(body["data"].clone())
}

fn status_of(node: &NodeProcess, id: &str) -> String {
    task(node, id).and_then(|t| t["status"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// The finalized block at `height`, from a node's gRPC stream (replayed from its store).
async fn block_at(grpc: &str, height: u64) -> anyhow::Result<Block> {
    let mut client = NodeServiceClient::connect(grpc.to_owned()).await?;
    let mut stream = client
        .subscribe_finalized(pb::SubscribeFinalizedRequest { from_height: Some(height) })
        .await?
        .into_inner();
    let first = stream.message().await?.context("no finalized block")?;
    anyhow::ensure!(first.height == height, "asked {height}, got {}", first.height);
    Ok(decode(&first.block_ssz)?)
}

#[test]
fn avs_tasks_are_validated_by_the_avs_service_finalized_and_settled_on_chain() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::Builder::new().prefix("avs-tasks-e2e-").tempdir().unwrap();
    let (_service, service_url) = start_service(dir.path()).unwrap();
    let chain =
        Anvil::start(&anvil().unwrap(), 31337, None, &dir.path().join("anvil.log")).unwrap();
    let (evm, deployer) = runtime.block_on(provider(&chain.url)).unwrap();

    // The contract's constructor takes the network digest, known only once the cluster wrote
    // its genesis; the nodes are started with the address the deployer's next contract gets
    // (fixed by its nonce), and the contract is deployed before any task is submitted.
    let nonce = runtime.block_on(async { evm.get_transaction_count(deployer).await }).unwrap();
    let contract = deployer.create(nonce);
    let spec = ClusterSpec {
        slot_ms: 1000,
        genesis_args: vec!["--task".into(), "1:hash-chain:service".into()],
        node_args: vec![
            "--task-service".into(),
            format!("1={service_url}"),
            "--settlement-rpc".into(),
            chain.url.clone(),
            "--settlement-contract".into(),
            contract.to_string(),
        ],
        ..ClusterSpec::default()
    };
    let cluster = Cluster::start(&spec).unwrap();
    let genesis = avs_node::genesis::GenesisFile::load(&cluster.dir().join("genesis.json"))
        .unwrap()
        .to_config()
        .unwrap();
    let digest = avs_consensus::signing::network_digest(&genesis).unwrap();
    let set = operator_keys(&genesis.operators).unwrap();
    runtime
        .block_on(async {
            let deployed = deploy(&evm, deployer, digest, &set).await?;
            anyhow::ensure!(deployed == contract, "deployed at {deployed}, expected {contract}");
            // The operators pay for their settlements.
            for op in genesis.operators.operators.iter() {
                let tx = alloy::rpc::types::TransactionRequest::default()
                    .from(deployer)
                    .to(Address::from(op.address))
                    .value(U256::from(10u128.pow(19)));
                evm.send_transaction(tx).await?.get_receipt().await?;
            }
            Ok(())
        })
        .unwrap();

    cluster
        .wait_for("every node finalizing", Duration::from_secs(60), |c| {
            Ok(c.min_finalized().is_some_and(|h| h >= 1))
        })
        .unwrap();
    // Performers: operators 0..3 submit valid tasks, operator 3 one its service refuses.
    let keys: Vec<_> = cluster
        .nodes
        .iter()
        .map(|n| avs_node::keys::load(&n.dir.join("keys"), &unlock(&n.dir)).unwrap())
        .collect();
    let grpc = |i: usize| format!("http://127.0.0.1:{}", cluster.nodes[i].grpc_port);
    let mut valid = Vec::new();
    for (i, key) in keys.iter().take(3).enumerate() {
        let (proof, data) = example_avs::perform([i as u8 + 1; 32], 50);
        let signed = example_avs::sign(&key.bls, 1, &proof, &data, digest).unwrap();
        let (id, status) = runtime.block_on(example_avs::submit(&grpc(i), &signed)).unwrap();
        assert_eq!(status, "pending", "task {id}");
        valid.push(id);
    }
    let (mut proof, data) = example_avs::perform([9; 32], 50);
    proof[0] ^= 0xff;
    let bad = example_avs::sign(&keys[3].bls, 1, &proof, &data, digest).unwrap();
    let (bad_id, _) = runtime.block_on(example_avs::submit(&grpc(3), &bad)).unwrap();
    // Bad input changes nothing: an unknown task definition and a forged signature.
    runtime.block_on(async {
        let mut client = TaskServiceClient::connect(grpc(0)).await.unwrap();
        let mut forged = avs_node::grpc::tasks::submission_to_proto(&bad);
        forged.data.push(0);
        let err = client.submit_task(forged).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        let mut unknown = avs_node::grpc::tasks::submission_to_proto(&bad);
        unknown.task_definition_id = 7;
        assert_eq!(
            client.submit_task(unknown).await.unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    });

    // Every valid task is finalized on every node.
    cluster
        .wait_for("the valid tasks finalized on every node", Duration::from_secs(90), |c| {
            Ok(c.nodes.iter().all(|n| valid.iter().all(|id| status_of(n, id) == "finalized")))
        })
        .unwrap();
    let heights: Vec<u64> = valid
        .iter()
        .map(|id| task(&cluster.nodes[0], id).unwrap()["height"].as_u64().unwrap())
        .collect();
    let top = *heights.iter().max().unwrap();
    // Three heights later the refused task is still not finalized anywhere, and its
    // performer's own node says why.
    cluster
        .wait_for("three more heights", Duration::from_secs(60), |c| {
            Ok(c.min_finalized().is_some_and(|h| h >= top + 3))
        })
        .unwrap();
    for node in &cluster.nodes {
        assert_ne!(status_of(node, &bad_id), "finalized", "node {}", node.index);
    }
    let refused = task(&cluster.nodes[3], &bad_id).unwrap();
    assert_eq!(refused["status"], "rejected", "{refused}");
    assert!(refused["reason"].as_str().unwrap().contains("hash chain"), "{refused}");

    // The aggregator settled every block holding a valid task; the contract verified it.
    let center = AttestationCenter::new(contract, &evm);
    runtime
        .block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            for (id, height) in valid.iter().zip(&heights) {
                let root =
                    task(&cluster.nodes[0], id).unwrap()["block_root"].as_str().unwrap().to_owned();
                loop {
                    let settled = center.settledRoot(*height).call().await?;
                    if settled != B256::ZERO {
                        anyhow::ensure!(settled == root.parse::<B256>()?, "settled another root");
                        break;
                    }
                    anyhow::ensure!(Instant::now() < deadline, "height {height} not settled");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Ok(())
        })
        .unwrap();
    let gas = cluster.nodes[0].metric("avs_node_settlement_gas_sum").unwrap().unwrap_or(0.0);
    assert!(gas > 0.0, "gas used is reported");
    for node in &cluster.nodes {
        let finalized = node.metric("avs_node_avs_tasks_finalized_total").unwrap().unwrap_or(0.0);
        assert!(finalized >= 3.0, "node {}: {finalized} finalized tasks counted", node.index);
    }
    let rejected = cluster.nodes[3].metric("avs_node_avs_tasks_rejected_total").unwrap();
    assert!(rejected.unwrap_or(0.0) >= 1.0, "the refused task is counted");

    // A fresh contract for the same network refuses a tampered certificate and accepts the
    // true one (checked with eth_call: nothing is sent).
    let first = valid.first().unwrap();
    let record = task(&cluster.nodes[1], first).unwrap();
    let height = record["height"].as_u64().unwrap();
    let certificate: Certificate =
        decode(&hex_bytes(record["certificate"].as_str().unwrap())).unwrap();
    let block = runtime.block_on(block_at(&grpc(1), height)).unwrap();
    runtime
        .block_on(async {
            let fresh_address = deploy(&evm, deployer, digest, &set).await?;
            let fresh = AttestationCenter::new(fresh_address, &evm);
            let call = settle_call(&certificate, &genesis.operators, &block)?;
            let ok = fresh
                .settle(
                    call.certificate.clone(),
                    call.set.clone(),
                    call.header.clone(),
                    call.tasks.clone(),
                )
                .call()
                .await;
            if let Err(e) = ok {
                anyhow::bail!("the true certificate was refused: {e}");
            }
            // The signature of this block's certificate named for another view (a valid point
            // over another message).
            let mut tampered = call.certificate.clone();
            tampered.viewNumber += 1;
            let refused = fresh
                .settle(tampered, call.set.clone(), call.header.clone(), call.tasks.clone())
                .call()
                .await;
            anyhow::ensure!(refused.is_err(), "a certificate for another view was accepted");
            // A task result changed after finality.
            let mut tasks = call.tasks.clone();
            tasks[0].data = Bytes::from(b"changed".to_vec());
            let refused = fresh.settle(call.certificate, call.set, call.header, tasks).call().await;
            anyhow::ensure!(refused.is_err(), "a changed task result was accepted");
            Ok(())
        })
        .unwrap();
}

/// Deploys `AttestationCenter` for the network `digest` with epoch 0's `set`.
async fn deploy(
    evm: &alloy::providers::DynProvider,
    deployer: Address,
    digest: [u8; 4],
    set: &AttestationCenter::OperatorKeys,
) -> anyhow::Result<Address> {
    let builder =
        AttestationCenter::deploy_builder(evm, digest.into(), set.keys.clone(), set.powers.clone());
    Ok(builder.from(deployer).deploy().await?)
}

fn hex_bytes(text: &str) -> Vec<u8> {
    alloy::hex::decode(text).unwrap()
}
