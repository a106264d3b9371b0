//! Client automation across real node processes (issue 15, docs/protocol.md 7.5): an
//! automation created on one node is carried in a block and served by every node once final,
//! and a cancellation submitted to another node reaches them all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::signers::local::PrivateKeySigner;
use avs_proto::automation_v1 as pb;
use avs_proto::automation_v1::automation_service_client::AutomationServiceClient;
use tonic::transport::Channel;

use avs_node::automation::example::{self, with_token, word};

use super::*;

const PATIENCE: Duration = Duration::from_secs(60);

async fn client(node: &NodeProcess) -> AutomationServiceClient<Channel> {
    let url = format!("http://127.0.0.1:{}", node.grpc_port);
    AutomationServiceClient::connect(url).await.unwrap()
}

async fn sign_in(
    client: &mut AutomationServiceClient<Channel>,
    wallet: &PrivateKeySigner,
) -> String {
    example::sign_in(client, wallet).await.unwrap()
}

/// Waits until every node in `sessions` answers `id` in `state` (active: or executing).
async fn until_everywhere(
    sessions: &mut [(AutomationServiceClient<Channel>, String)],
    id: &[u8],
    state: pb::TaskState,
) {
    let deadline = Instant::now() + PATIENCE;
    let states: &[pb::TaskState] = match state {
        pb::TaskState::Active => &[pb::TaskState::Active, pb::TaskState::Executing],
        _ => std::slice::from_ref(&state),
    };
    for (i, (client, token)) in sessions.iter_mut().enumerate() {
        loop {
            let request = with_token(token, pb::TaskIdRequest { id: id.to_vec() });
            let answer = client.get_task(request).await;
            if answer
                .as_ref()
                .is_ok_and(|t| states.iter().any(|s| t.get_ref().state == i32::from(*s)))
            {
                break;
            }
            assert!(Instant::now() < deadline, "node {i} never showed {state:?}: {answer:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[test]
fn an_automation_created_on_one_node_is_served_by_every_node_once_final() {
    let cluster =
        Cluster::start(&ClusterSpec { encrypted_node0: false, ..ClusterSpec::default() }).unwrap();
    cluster
        .wait_for("every node's gRPC", Duration::from_secs(30), |c| {
            Ok(c.nodes.iter().all(|n| n.status().is_ok()))
        })
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let wallet = PrivateKeySigner::from_slice(&[0x42; 32]).unwrap();
        let mut sessions = Vec::new();
        for node in &cluster.nodes {
            let mut client = client(node).await;
            let token = sign_in(&mut client, &wallet).await;
            sessions.push((client, token));
        }

        // Created on node 0: pending there, then active on every node.
        let definition =
            example::cron_get("hourly ping", "0 0 * * * *", "ping", "http://127.0.0.1:9/hook");
        let (client0, token0) = &mut sessions[0];
        let request = pb::CreateTaskRequest { definition: Some(definition.clone()) };
        let task = client0.create_task(with_token(token0, request)).await.unwrap().into_inner();
        assert_eq!(task.state, i32::from(pb::TaskState::Pending));
        until_everywhere(&mut sessions, &task.id, pb::TaskState::Active).await;
        for (client, token) in &mut sessions {
            let listed = client.list_tasks(with_token(token, pb::ListTasksRequest::default()));
            let listed = listed.await.unwrap().into_inner().tasks;
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].definition.as_ref(), Some(&definition));
            assert_eq!(listed[0].created_at_ms, task.created_at_ms, "the same record everywhere");
        }

        // Cancelled through node 2: cancelled on every node.
        let (client2, token2) = &mut sessions[2];
        let id = pb::TaskIdRequest { id: task.id.clone() };
        client2.cancel_task(with_token(token2, id)).await.unwrap();
        until_everywhere(&mut sessions, &task.id, pb::TaskState::Cancelled).await;

        // A trigger every second fires on every node, the same instants once each, and
        // never again once cancelled.
        let every_second = pb::TaskDefinition {
            name: "every second".into(),
            trigger: Some(pb::Trigger {
                kind: Some(pb::trigger::Kind::Cron(pb::CronTrigger {
                    expression: "* * * * * *".into(),
                })),
            }),
            ..definition
        };
        let (client1, token1) = &mut sessions[1];
        let request = pb::CreateTaskRequest { definition: Some(every_second) };
        let ticking = client1.create_task(with_token(token1, request)).await.unwrap().into_inner();
        until_everywhere(&mut sessions, &ticking.id, pb::TaskState::Active).await;
        let fired = |sessions: &mut Vec<(AutomationServiceClient<Channel>, String)>| {
            let id = ticking.id.clone();
            let mut sessions = std::mem::take(sessions);
            async move {
                let mut all = Vec::new();
                for (client, token) in &mut sessions {
                    let request = pb::ListExecutionsRequest {
                        id: id.clone(),
                        page_size: 100,
                        page_token: Vec::new(),
                    };
                    let answer = client.list_executions(with_token(token, request)).await;
                    let instants: Vec<u64> = answer
                        .unwrap()
                        .into_inner()
                        .executions
                        .iter()
                        .map(|e| e.instant_ms)
                        .collect();
                    all.push(instants);
                }
                (sessions, all)
            }
        };
        let deadline = Instant::now() + PATIENCE;
        let fired_everywhere = loop {
            let (back, all) = fired(&mut sessions).await;
            sessions = back;
            if all.iter().all(|instants| instants.len() >= 3) {
                break all;
            }
            assert!(Instant::now() < deadline, "firings never reached every node: {all:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        for instants in &fired_everywhere {
            assert!(instants.windows(2).all(|w| w[0] < w[1]), "once each, in order: {instants:?}");
            assert!(
                instants.iter().all(|at| at % 1000 == 0),
                "the trigger's instants: {instants:?}"
            );
            assert_eq!(instants[..3], fired_everywhere[0][..3], "the same firings on every node");
        }
        let (client3, token3) = &mut sessions[3];
        let id = pb::TaskIdRequest { id: ticking.id.clone() };
        client3.cancel_task(with_token(token3, id)).await.unwrap();
        until_everywhere(&mut sessions, &ticking.id, pb::TaskState::Cancelled).await;
        // Firings final before the cancellation may still land; then none.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (back, settled) = fired(&mut sessions).await;
        sessions = back;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (_, later) = fired(&mut sessions).await;
        assert_eq!(later, settled, "a cancelled automation never fires again");
    });
    // Finality went on throughout.
    let heights: Vec<u64> =
        cluster.nodes.iter().map(|n| n.status().map_or(0, |s| s.finalized_height)).collect();
    assert!(heights.iter().all(|h| *h > 2), "{heights:?}");
}

async fn deploy_ping(
    evm: &alloy::providers::DynProvider,
    from: alloy::primitives::Address,
) -> alloy::primitives::Address {
    example::deploy_ping(evm, from).await.unwrap()
}

async fn send(
    evm: &alloy::providers::DynProvider,
    from: alloy::primitives::Address,
    to: alloy::primitives::Address,
    data: Vec<u8>,
) {
    example::send(evm, from, to, data).await.unwrap()
}

async fn executions_of(
    sessions: &mut [(AutomationServiceClient<Channel>, String)],
    id: &[u8],
) -> Vec<Vec<pb::Execution>> {
    let mut all = Vec::new();
    for (client, token) in sessions.iter_mut() {
        let request =
            pb::ListExecutionsRequest { id: id.to_vec(), page_size: 100, page_token: Vec::new() };
        let answer = client.list_executions(with_token(token, request)).await.unwrap();
        all.push(answer.into_inner().executions);
    }
    all
}

/// Waits until every node holds at least `count` executions of `id` with a final result.
async fn until_executed(
    sessions: &mut [(AutomationServiceClient<Channel>, String)],
    id: &[u8],
    count: usize,
) -> Vec<Vec<pb::Execution>> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let all = executions_of(sessions, id).await;
        let finished = |list: &Vec<pb::Execution>| {
            list.iter().filter(|e| e.status != i32::from(pb::ExecutionStatus::Pending)).count()
        };
        if all.iter().all(|list| finished(list) >= count) {
            return all;
        }
        assert!(Instant::now() < deadline, "executions never final everywhere: {all:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Issue 15's done-when: a client signs in, creates an event automation and a cron one on a
/// local anvil chain; the event is emitted; each fires and executes once per firing with more
/// than 2/3 of the power attesting (the certificate is in every execution); an operator whose
/// chain node shows an event that did not happen (its own anvil) makes nothing execute; the
/// write is sent by the aggregator and lands on chain; a cancelled automation never fires again.
#[test]
fn automations_execute_once_per_attested_firing_on_a_real_chain() {
    use alloy::providers::Provider;
    let dir = tempfile::tempdir().unwrap();
    let anvil = crate::evm::anvil().unwrap();
    let chain =
        crate::evm::Anvil::start(&anvil, 31337, Some(1), &dir.path().join("a.log")).unwrap();
    // Node 3's chain node: another chain under the same id, where it will see a ping that the
    // real chain never had.
    let forged =
        crate::evm::Anvil::start(&anvil, 31337, Some(1), &dir.path().join("b.log")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (evm, deployer) = runtime.block_on(crate::evm::provider(&chain.url)).unwrap();
    let (fake_evm, fake_deployer) = runtime.block_on(crate::evm::provider(&forged.url)).unwrap();
    let (ping, sink) = runtime
        .block_on(async { (deploy_ping(&evm, deployer).await, deploy_ping(&evm, deployer).await) });
    let fake_ping = runtime.block_on(deploy_ping(&fake_evm, fake_deployer));
    assert_eq!(fake_ping, ping, "the same address on both chains");

    let rpc = |url: &str| vec!["--automation-rpc".to_string(), url.to_string()];
    let spec = ClusterSpec {
        encrypted_node0: false,
        per_node_args: vec![rpc(&chain.url), rpc(&chain.url), rpc(&chain.url), rpc(&forged.url)],
        ..ClusterSpec::default()
    };
    let cluster = Cluster::start(&spec).unwrap();
    // Each node sends clients' writes from its own automation key (never the operator key),
    // which the operator funds: the test reads it from the node's log.
    let mut senders = Vec::new();
    cluster
        .wait_for("every node's automation sender", Duration::from_secs(30), |c| {
            senders = c
                .nodes
                .iter()
                .filter_map(|n| {
                    let log = n.log();
                    let line = log.lines().find(|l| l.contains("automation contract writes"))?;
                    let at = line.find("sender=0x")? + "sender=".len();
                    line.get(at..at + 42)?.parse::<alloy::primitives::Address>().ok()
                })
                .collect();
            Ok(senders.len() == c.nodes.len())
        })
        .unwrap();
    runtime.block_on(async {
        for to in &senders {
            let tx = alloy::rpc::types::TransactionRequest::default()
                .from(deployer)
                .to(*to)
                .value(alloy::primitives::U256::from(10u128.pow(19)));
            evm.send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
        }
    });
    cluster
        .wait_for("every node's gRPC", Duration::from_secs(30), |c| {
            Ok(c.nodes.iter().all(|n| n.status().is_ok()))
        })
        .unwrap();
    let health = cluster.nodes[1].url("/lean/v0/health");
    runtime.block_on(async {
        let wallet = PrivateKeySigner::from_slice(&[0x43; 32]).unwrap();
        let mut sessions = Vec::new();
        for node in &cluster.nodes {
            let mut client = client(node).await;
            let token = sign_in(&mut client, &wallet).await;
            sessions.push((client, token));
        }
        let call = |address: alloy::primitives::Address, append| pb::ContractCall {
            chain_id: 31337,
            address: address.to_vec(),
            calldata: Vec::new(),
            append_trigger_data: append,
        };
        let on_ping = pb::TaskDefinition {
            name: "copy each ping to the sink".into(),
            trigger: Some(pb::Trigger {
                kind: Some(pb::trigger::Kind::Event(pb::EventTrigger {
                    chain_id: 31337,
                    address: ping.to_vec(),
                    topics: vec![example::PING_TOPIC.to_vec()],
                    confirmations: 1,
                })),
            }),
            nodes: vec![
                pb::WorkflowNode {
                    name: "read_ping".into(),
                    kind: Some(pb::workflow_node::Kind::ContractRead(call(ping, false))),
                },
                pb::WorkflowNode {
                    name: "write_sink".into(),
                    kind: Some(pb::workflow_node::Kind::ContractWrite(call(sink, true))),
                },
            ],
        };
        let every_two_seconds =
            example::cron_get("health every two seconds", "*/2 * * * * *", "health", &health);
        let (client0, token0) = &mut sessions[0];
        let request = pb::CreateTaskRequest { definition: Some(on_ping) };
        let event_task =
            client0.create_task(with_token(token0, request)).await.unwrap().into_inner();
        let request = pb::CreateTaskRequest { definition: Some(every_two_seconds) };
        let cron_task =
            client0.create_task(with_token(token0, request)).await.unwrap().into_inner();
        until_everywhere(&mut sessions, &event_task.id, pb::TaskState::Active).await;
        until_everywhere(&mut sessions, &cron_task.id, pb::TaskState::Active).await;

        // The real ping, and the one only node 3's chain node shows.
        send(&evm, deployer, ping, word(0x1234)).await;
        send(&fake_evm, fake_deployer, fake_ping, word(0x6666)).await;

        let executed = until_executed(&mut sessions, &event_task.id, 1).await;
        let cron = until_executed(&mut sessions, &cron_task.id, 2).await;
        // The cron automation ran its REST step: node 1's health, answered 200.
        for list in &cron {
            let done: Vec<_> = list.iter().filter(|e| !e.steps.is_empty()).collect();
            assert!(done.iter().all(|e| e.status == i32::from(pb::ExecutionStatus::Succeeded)));
            assert!(done.iter().all(|e| e.steps[0].http_status == 200), "{done:?}");
            assert!(list.iter().all(|e| !e.certificate.is_empty() && e.instant_ms % 2000 == 0));
        }
        // Let node 3 lead a few times with its forged ping in hand, then count again.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let executed_later = executions_of(&mut sessions, &event_task.id).await;
        for (list, later) in executed.iter().zip(&executed_later) {
            assert_eq!(list.len(), 1, "the real ping fired once: {list:?}");
            assert_eq!(later.len(), 1, "and the forged one never: {later:?}");
            let execution = &later[0];
            assert_eq!(execution.chain.as_ref().unwrap().data, word(0x1234));
            assert_eq!(execution.status, i32::from(pb::ExecutionStatus::Succeeded));
            assert!(!execution.certificate.is_empty() && !execution.result_certificate.is_empty());
            assert_eq!(execution.steps[0].output, word(0x1234), "read at the event's block");
            assert_eq!(execution.steps[1].output, word(0x1234), "the write carries the ping");
        }
        // Refused for what the honest chain shows (node 3's block has another hash there).
        let refused = (0..3).any(|i| {
            cluster.nodes[i].log().lines().any(|line| {
                line.contains("a firing in a proposal is refused")
                    && line.contains("this node's chain")
            })
        });
        assert!(refused, "node 3 proposed its forged ping and the others refused it");

        // The aggregator sent the write: the sink holds the ping, and node 0 records the
        // transaction.
        let deadline = Instant::now() + PATIENCE;
        let tx_hash = loop {
            let (client0, token0) = &mut sessions[0];
            let key = executed[0][0].key;
            let request = pb::ExecutionRequest { id: event_task.id.clone(), key };
            let execution = client0.get_execution(with_token(token0, request)).await.unwrap();
            let hash = execution.into_inner().steps[1].tx_hash.clone();
            if !hash.is_empty() {
                break alloy::primitives::B256::from_slice(&hash);
            }
            assert!(Instant::now() < deadline, "the write was never sent");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let receipt = loop {
            if let Some(receipt) = evm.get_transaction_receipt(tx_hash).await.unwrap() {
                break receipt;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert!(receipt.status());
        assert_eq!(receipt.to, Some(sink));
        assert_eq!(receipt.from, senders[0], "sent from node 0's automation key");
        let stored =
            evm.call(alloy::rpc::types::TransactionRequest::default().to(sink)).await.unwrap();
        assert_eq!(stored.to_vec(), word(0x1234));

        // Counts, a manual run, and cancellation.
        let (client1, token1) = &mut sessions[1];
        let count = client1
            .get_execution_count(with_token(
                token1,
                pb::TaskIdRequest { id: event_task.id.clone() },
            ))
            .await
            .unwrap()
            .into_inner()
            .count;
        assert_eq!(count, 1);
        let workflows = client1
            .get_workflow_count(with_token(token1, pb::WorkflowCountRequest {}))
            .await
            .unwrap()
            .into_inner()
            .count;
        assert_eq!(workflows, 2);
        let (client0, token0) = &mut sessions[0];
        client0
            .cancel_task(with_token(token0, pb::TaskIdRequest { id: cron_task.id.clone() }))
            .await
            .unwrap();
        until_everywhere(&mut sessions, &cron_task.id, pb::TaskState::Cancelled).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let settled = executions_of(&mut sessions, &cron_task.id).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let later = executions_of(&mut sessions, &cron_task.id).await;
        let keys = |all: &Vec<Vec<pb::Execution>>| -> Vec<Vec<u64>> {
            all.iter().map(|l| l.iter().map(|e| e.key).collect()).collect()
        };
        assert_eq!(keys(&later), keys(&settled), "a cancelled automation never fires again");
    });
}

/// Issue 15, item 5: an operator outside the mesh follows the change log through node 0, then
/// node 1 when node 0 is killed mid-stream (and node 0 again once back): every change arrives
/// once, in order, numbered as every node numbers it.
#[test]
fn an_operator_outside_the_mesh_follows_every_change_once_across_a_killed_stream() {
    let mut cluster =
        Cluster::start(&ClusterSpec { encrypted_node0: false, ..ClusterSpec::default() }).unwrap();
    cluster
        .wait_for("every node's gRPC", Duration::from_secs(30), |c| {
            Ok(c.nodes.iter().all(|n| n.status().is_ok()))
        })
        .unwrap();
    let url = |i: usize, c: &Cluster| format!("http://127.0.0.1:{}", c.nodes[i].grpc_port);
    // The follower runs on its own worker while the test waits.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let received: Arc<std::sync::Mutex<Vec<pb::SyncMessage>>> = Arc::default();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let operator = PrivateKeySigner::from_slice(&[0x77; 32]).unwrap();
    let follower = {
        let received = received.clone();
        let nodes = vec![url(0, &cluster), url(1, &cluster)];
        let operator = operator.clone();
        let shutdown = shutdown.clone();
        runtime.spawn(avs_node::automation::stream::follow(
            nodes,
            operator,
            0,
            move |m| received.lock().unwrap().push(m),
            shutdown,
        ))
    };
    let wallet = PrivateKeySigner::from_slice(&[0x44; 32]).unwrap();
    let hourly =
        |name: &str| example::cron_get(name, "0 0 * * * *", "ping", "http://127.0.0.1:9/hook");
    let assigned = |id: &[u8]| {
        let id = id.to_vec();
        move |m: &pb::SyncMessage| matches!(&m.kind, Some(pb::sync_message::Kind::Assigned(t)) if t.id == id)
    };
    let until = |what: &str, check: &dyn Fn(&[pb::SyncMessage]) -> bool| {
        let deadline = Instant::now() + PATIENCE;
        while !check(&received.lock().unwrap()) {
            assert!(Instant::now() < deadline, "the follower never got {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let create = |i: usize, name: &str, cluster: &Cluster| -> Vec<u8> {
        runtime.block_on(async {
            let mut client = AutomationServiceClient::connect(url(i, cluster)).await.unwrap();
            let token = sign_in(&mut client, &wallet).await;
            let request = pb::CreateTaskRequest { definition: Some(hourly(name)) };
            client.create_task(with_token(&token, request)).await.unwrap().into_inner().id
        })
    };

    let a = create(1, "a", &cluster);
    until("a", &|got| got.iter().any(assigned(&a)));
    // The stream's node dies mid-run; changes go on meanwhile.
    cluster.nodes[0].kill_9().unwrap();
    let b = create(1, "b", &cluster);
    runtime.block_on(async {
        let mut client = AutomationServiceClient::connect(url(2, &cluster)).await.unwrap();
        let token = sign_in(&mut client, &wallet).await;
        client.cancel_task(with_token(&token, pb::TaskIdRequest { id: a.clone() })).await.unwrap();
    });
    let cancelled_a = |m: &pb::SyncMessage| matches!(&m.kind, Some(pb::sync_message::Kind::Cancelled(id)) if *id == a);
    until("b and a's cancellation", &|got| {
        got.iter().any(assigned(&b)) && got.iter().any(cancelled_a)
    });
    cluster.nodes[0].start().unwrap();
    let c = create(3, "c", &cluster);
    until("c", &|got| got.iter().any(assigned(&c)));
    shutdown.cancel();
    let _ = runtime.block_on(follower);

    let got = received.lock().unwrap().clone();
    let sequences: Vec<u64> = got.iter().map(|m| m.sequence).collect();
    assert_eq!(sequences, (1..=got.len() as u64).collect::<Vec<_>>(), "once each, in order");
    // Node 3 numbers the same changes the same: read afresh from it.
    let fresh = runtime.block_on(async {
        let mut client = AutomationServiceClient::connect(url(3, &cluster)).await.unwrap();
        let token = sign_in(&mut client, &operator).await;
        let request = pb::SyncMessagesRequest { from_sequence: 1 };
        let mut stream =
            client.sync_messages(with_token(&token, request)).await.unwrap().into_inner();
        let mut fresh = Vec::new();
        while fresh.len() < got.len() {
            fresh.push(stream.message().await.unwrap().unwrap());
        }
        fresh
    });
    assert_eq!(fresh, got);
}

/// An anvil mining a block per transaction (in a directory kept with it), and a runtime for
/// the watcher's calls.
fn chain_node() -> (tempfile::TempDir, crate::evm::Anvil, tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let anvil = crate::evm::anvil().unwrap();
    let node = crate::evm::Anvil::start(&anvil, 31337, None, &dir.path().join("a.log")).unwrap();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    (dir, node, runtime)
}

/// Which `eth_getLogs` (lower-case 0x addresses, first and last block) a chain node refuses:
/// with a JSON-RPC error (status 200) or with an HTTP status, and a message.
type Refusal = Arc<dyn Fn(&[String], u64, u64) -> Option<(u16, &'static str)> + Send + Sync>;

/// A chain node with limits, in front of anvil at `upstream`: it refuses the `eth_getLogs`
/// that `refuse` picks, and counts the `eth_getLogs` requests in `asked`. Returns its URL.
async fn limited_chain_node(
    upstream: String,
    refuse: Refusal,
    asked: Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    use axum::Json;
    use serde_json::{Value, json};
    let http = alloy::transports::http::reqwest::Client::new();
    let handler = move |Json(request): Json<Value>| {
        let (http, upstream) = (http.clone(), upstream.clone());
        let (asked, refuse) = (Arc::clone(&asked), Arc::clone(&refuse));
        async move {
            if request["method"] == "eth_getLogs" {
                asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let filter = &request["params"][0];
                let number =
                    |v: &Value| u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok();
                let (from, to) =
                    (number(&filter["fromBlock"]).unwrap(), number(&filter["toBlock"]).unwrap());
                let addresses: Vec<String> = match &filter["address"] {
                    Value::Array(list) => {
                        list.iter().filter_map(|a| a.as_str()).map(str::to_lowercase).collect()
                    }
                    Value::String(one) => vec![one.to_lowercase()],
                    _ => Vec::new(),
                };
                if let Some((status, message)) = refuse(&addresses, from, to) {
                    let error = json!({"code": -32005, "message": message});
                    let body = json!({"jsonrpc": "2.0", "id": request["id"], "error": error});
                    let status = axum::http::StatusCode::from_u16(status).unwrap();
                    return (status, Json(body));
                }
            }
            let answer = http.post(&upstream).json(&request).send().await.unwrap();
            (axum::http::StatusCode::OK, Json(answer.json::<Value>().await.unwrap()))
        }
    };
    let app = axum::Router::new().route("/", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Issue 15's review, defect 1: a chain node refuses wide `eth_getLogs` ranges and one busy
/// contract's block; the watcher still holds every other contract's and block's logs, and
/// after three polls marks only that contract's block unreadable (its events there get
/// NotYet votes, never Invalid) and reads that contract on past it (docs/protocol.md, 7.5).
#[test]
fn one_contract_a_chain_node_will_not_answer_for_holds_up_only_itself() {
    use alloy::providers::Provider;
    use avs_node::automation::chain::{self, ChainWatch};
    let (_dir, node, runtime) = chain_node();
    runtime.block_on(async {
        let (evm, from) = crate::evm::provider(&node.url).await.unwrap();
        let mine = |blocks: u64| {
            let evm = evm.clone();
            async move {
                let _: serde_json::Value =
                    evm.raw_request("anvil_mine".into(), (blocks,)).await.unwrap();
            }
        };
        mine(20).await;
        let busy = deploy_ping(&evm, from).await;
        let quiet = deploy_ping(&evm, from).await;
        send(&evm, from, busy, word(1)).await;
        let busy_block = evm.get_block_number().await.unwrap();
        mine(10).await;
        send(&evm, from, quiet, word(2)).await;
        let quiet_block = evm.get_block_number().await.unwrap();
        mine(10).await;
        send(&evm, from, busy, word(3)).await;
        let busy_later = evm.get_block_number().await.unwrap();
        mine(150).await;
        let head = evm.get_block_number().await.unwrap();

        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // A provider's limits: at most 100 blocks a request (refused with HTTP 413), and the
        // busy contract's block holds more logs than it returns (a JSON-RPC error).
        let busy_hex = alloy::hex::encode_prefixed(busy);
        let refuse: Refusal = Arc::new(move |addresses, from, to| {
            if to - from + 1 > 100 {
                Some((413, "block range too large: at most 100 blocks"))
            } else if addresses.contains(&busy_hex) && (from..=to).contains(&busy_block) {
                Some((200, "query returned more than 10000 results"))
            } else {
                None
            }
        });
        let url = limited_chain_node(node.url.clone(), refuse, Arc::clone(&asked)).await;
        let provider = chain::provider(&url).unwrap();
        let chain_id = 31337;
        let watch = ChainWatch::default();
        chain::read_headers(&provider, chain_id, &watch).await.unwrap();
        assert_eq!(watch.read(chain_id, |c| c.head()).flatten(), Some(head));
        let watched = [busy.0.0, quiet.0.0].into_iter().collect();
        let held = |address: alloy::primitives::Address, number: u64| {
            watch.read(chain_id, |c| c.covers(&address.0.0, number)).unwrap()
        };
        let logs = |address: alloy::primitives::Address| {
            watch
                .read(chain_id, |c| {
                    c.logs_of(&address.0.0, 0).map(|(at, _)| at.0).collect::<Vec<_>>()
                })
                .unwrap()
        };

        // First poll: the quiet contract is read to the head in ranges the node accepts; the
        // busy one up to the block before its refused one, and no further.
        let t0 = 1_800_000_000_000;
        chain::read_logs(&provider, chain_id, &watch, &watched, t0).await.unwrap();
        assert!(held(quiet, head), "the quiet contract is read to the head");
        assert_eq!(logs(quiet), vec![quiet_block]);
        assert!(held(busy, busy_block - 1));
        assert!(!held(busy, busy_block) && !held(busy, busy_later), "stopped at its refused block");
        let first_poll = asked.load(std::sync::atomic::Ordering::Relaxed);
        assert!(first_poll < 40, "narrowing down took {first_poll} requests");

        // Refused in more polls, but within a second (a passing refusal): nothing is marked.
        // The stuck contract asks for its block alone: one request a poll.
        for t in [t0 + 500, t0 + 1000] {
            let before = asked.load(std::sync::atomic::Ordering::Relaxed);
            chain::read_logs(&provider, chain_id, &watch, &watched, t).await.unwrap();
            assert!(!held(busy, busy_later), "a refusal of a second marks nothing");
            assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), before + 1);
        }
        // Still refused a minute later: the block is marked unreadable for that contract, and
        // its later logs are read.
        chain::read_logs(&provider, chain_id, &watch, &watched, t0 + 61_000).await.unwrap();
        assert!(!held(busy, busy_block), "the refused block is never claimed as read");
        assert!(held(busy, busy_block + 1) && held(busy, head));
        assert_eq!(logs(busy), vec![busy_later]);
        assert_eq!(logs(quiet), vec![quiet_block], "the quiet contract's logs are kept once");
    });
}

/// Issue 15's review, left over: a chain node whose head goes back (a reorganization to a
/// shorter chain) makes the watcher drop the blocks it no longer has at once, rather than
/// holding them, and voting on them, until the chain grows past them (docs/protocol.md, 7.5).
#[test]
fn a_head_that_goes_back_drops_the_blocks_the_chain_no_longer_has() {
    use alloy::providers::Provider;
    use avs_node::automation::chain::{self, ChainWatch};
    let (_dir, node, runtime) = chain_node();
    runtime.block_on(async {
        let (evm, from) = crate::evm::provider(&node.url).await.unwrap();
        let raw = |method: &'static str, params: serde_json::Value| {
            let evm = evm.clone();
            async move {
                evm.raw_request::<_, serde_json::Value>(method.into(), params).await.unwrap()
            }
        };
        let provider = chain::provider(&node.url).unwrap();
        let (chain_id, watch) = (31337, ChainWatch::default());
        let held = |n: u64| watch.read(chain_id, |c| c.header(n).map(|h| h.hash)).flatten();
        let hash = |n: u64| {
            let evm = evm.clone();
            async move {
                let block = evm.get_block_by_number(n.into()).await.unwrap().unwrap();
                block.header.hash.0
            }
        };

        raw("anvil_mine", serde_json::json!([10])).await;
        let at_ten = raw("evm_snapshot", serde_json::json!([])).await;
        send(&evm, from, from, vec![1]).await;
        raw("anvil_mine", serde_json::json!([9])).await;
        chain::read_headers(&provider, chain_id, &watch).await.unwrap();
        assert_eq!(watch.read(chain_id, |c| c.head()).flatten(), Some(20));
        let old_eleven = held(11).unwrap();
        // Goes back to the block-10 state `snapshot` and grows another block 11 with a
        // transaction carrying `data`; a snapshot of that block-10 state again.
        let (raw, url) = (&raw, &node.url);
        let another_eleven = |snapshot: serde_json::Value, data: u8| async move {
            raw("evm_revert", serde_json::json!([snapshot])).await;
            let again = raw("evm_snapshot", serde_json::json!([])).await;
            // A new provider: the first one's nonce cache still counts the reverted transaction.
            let (evm, _) = crate::evm::provider(url).await.unwrap();
            send(&evm, from, from, vec![data]).await;
            assert_eq!(evm.get_block_number().await.unwrap(), 11);
            again
        };

        // The chain goes back to block 10 and grows another block 11 (another transaction).
        let at_ten_again = another_eleven(at_ten, 2).await;
        assert_ne!(hash(11).await, old_eleven);
        chain::read_headers(&provider, chain_id, &watch).await.unwrap();
        assert!(held(11).is_none_or(|h| h != old_eleven), "block 11 of the old chain is dropped");
        assert!(held(20).is_none(), "blocks the chain no longer has are dropped");
        chain::read_headers(&provider, chain_id, &watch).await.unwrap();
        assert_eq!(held(11), Some(hash(11).await), "the new block 11 is read");
        assert_eq!(held(10), Some(hash(10).await));

        // Replaced at the same height (a one-block reorganization): block 11 changes again.
        let replaced = held(11).unwrap();
        another_eleven(at_ten_again, 3).await;
        assert_ne!(hash(11).await, replaced);
        chain::read_headers(&provider, chain_id, &watch).await.unwrap();
        assert!(held(11).is_none_or(|h| h != replaced), "the replaced block 11 is dropped");
        chain::read_headers(&provider, chain_id, &watch).await.unwrap();
        assert_eq!(held(11), Some(hash(11).await));
    });
}

/// Review of c5c9d60 and 8d9e9b5: a chain node that refuses every log request is asked at most
/// 64 times a poll (not a split per contract and per block for each of many contracts); one in
/// trouble (503 to everything) is asked once, then less and less often.
#[test]
fn a_chain_node_that_refuses_every_log_request_is_asked_a_bounded_number_of_times() {
    use alloy::providers::Provider;
    use avs_node::automation::chain::{self, ChainWatch, MAX_LOG_REQUESTS_PER_POLL};
    use std::sync::atomic::{AtomicU16, Ordering};
    let (_dir, node, runtime) = chain_node();
    runtime.block_on(async {
        let (evm, _) = crate::evm::provider(&node.url).await.unwrap();
        let _: serde_json::Value = evm.raw_request("anvil_mine".into(), (150,)).await.unwrap();
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let status = Arc::new(AtomicU16::new(200));
        let answer = Arc::clone(&status);
        let refuse: Refusal = Arc::new(move |_, _, _| {
            Some((answer.load(Ordering::Relaxed), "query returned more than 10000 results"))
        });
        let url = limited_chain_node(node.url.clone(), refuse, Arc::clone(&asked)).await;
        let provider = chain::provider(&url).unwrap();
        let (chain_id, watch) = (31337, ChainWatch::default());
        chain::read_headers(&provider, chain_id, &watch).await.unwrap();
        let watched = (0..100u8).map(|i| [i; 20]).collect();
        let count = || asked.load(Ordering::Relaxed);
        let t0 = 1_800_000_000_000;
        for (i, t) in [t0, t0 + 500, t0 + 1000].into_iter().enumerate() {
            chain::read_logs(&provider, chain_id, &watch, &watched, t).await.unwrap();
            assert_eq!(count(), (i + 1) * MAX_LOG_REQUESTS_PER_POLL, "each poll within its budget");
        }
        // In trouble: asked once, then not within the pause (1 s, then 2 s).
        status.store(503, Ordering::Relaxed);
        let before = count();
        let t1 = t0 + 10_000;
        for (t, total) in [(t1, 1), (t1 + 500, 1), (t1 + 1000, 2), (t1 + 2000, 2), (t1 + 3000, 3)] {
            chain::read_logs(&provider, chain_id, &watch, &watched, t).await.unwrap();
            assert_eq!(count() - before, total, "at {}", t - t1);
        }
        assert!(watch.read(chain_id, |c| watched.iter().all(|a| !c.covers(a, 1))).unwrap());
    });
}
