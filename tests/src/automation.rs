//! Client automation across real node processes (issue 15, docs/protocol.md 7.5): an
//! automation created on one node is carried in a block and served by every node once final,
//! and a cancellation submitted to another node reaches them all.

use std::time::{Duration, Instant};

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use avs_proto::automation_v1 as pb;
use avs_proto::automation_v1::automation_service_client::AutomationServiceClient;
use tonic::transport::Channel;

use super::*;

const PATIENCE: Duration = Duration::from_secs(60);

async fn client(node: &NodeProcess) -> AutomationServiceClient<Channel> {
    let url = format!("http://127.0.0.1:{}", node.grpc_port);
    AutomationServiceClient::connect(url).await.unwrap()
}

/// Signs `wallet` in on `client`'s node; the bearer token.
async fn sign_in(
    client: &mut AutomationServiceClient<Channel>,
    wallet: &PrivateKeySigner,
) -> String {
    let owner = wallet.address().to_vec();
    let challenge =
        client.get_challenge(pb::GetChallengeRequest { owner }).await.unwrap().into_inner();
    let signature =
        wallet.sign_message_sync(challenge.message.as_bytes()).unwrap().as_bytes().to_vec();
    let request = pb::GetKeyRequest { message: challenge.message, signature };
    client.get_key(request).await.unwrap().into_inner().token
}

fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Waits until every node in `sessions` answers `id` in `state`.
async fn until_everywhere(
    sessions: &mut [(AutomationServiceClient<Channel>, String)],
    id: &[u8],
    state: pb::TaskState,
) {
    let deadline = Instant::now() + PATIENCE;
    for (i, (client, token)) in sessions.iter_mut().enumerate() {
        loop {
            let request = with_token(token, pb::TaskIdRequest { id: id.to_vec() });
            let answer = client.get_task(request).await;
            if answer.as_ref().is_ok_and(|t| t.get_ref().state == i32::from(state)) {
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
        let definition = pb::TaskDefinition {
            name: "hourly ping".into(),
            trigger: Some(pb::Trigger {
                kind: Some(pb::trigger::Kind::Cron(pb::CronTrigger {
                    expression: "0 0 * * * *".into(),
                })),
            }),
            nodes: vec![pb::WorkflowNode {
                name: "ping".into(),
                kind: Some(pb::workflow_node::Kind::Rest(pb::RestCall {
                    url: "http://127.0.0.1:9/hook".into(),
                    method: "GET".into(),
                    body: String::new(),
                })),
            }],
        };
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
