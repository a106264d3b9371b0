//! The gRPC server and the client mode in-process, over real TCP on 127.0.0.1.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use avs_proto::v1::node_service_client::NodeServiceClient;
use tonic::codegen::tokio_stream;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use super::*;
use crate::pool::CheckinSigner;
use crate::pool::tests::{DIGEST, key, table};
use crate::store::MemoryStore;

struct Server {
    addr: SocketAddr,
    pool: Arc<OperatorPool>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(listener: tokio::net::TcpListener) -> Server {
    let store: Arc<dyn crate::store::Store> = Arc::new(MemoryStore::new());
    let pool = Arc::new(OperatorPool::open(store.clone()).unwrap());
    pool.set_operators(table(0, &[0, 1])).unwrap();
    let (_tx, status) = watch::channel(NodeStatus { view: 5, ..NodeStatus::default() });
    let (finalized, _) = broadcast::channel(8);
    let state = GrpcState { pool: pool.clone(), status, chain: ChainStore::new(store), finalized };
    let shutdown = CancellationToken::new();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(serve(listener, state, shutdown.clone()));
    Server { addr, pool, shutdown, task }
}

fn signer(i: u8) -> CheckinSigner {
    let (_tx, status) = watch::channel(NodeStatus::default());
    CheckinSigner::new(key(i), [i; 20], DIGEST, 5052, status, Arc::new(AtomicU64::new(0)))
}

#[tokio::test]
async fn reflection_lists_the_node_service_and_shutdown_is_graceful() {
    let server = start(bind("127.0.0.1:0".parse().unwrap()).await.unwrap()).await;
    let url = format!("http://{}", server.addr);
    let channel = tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await;
    let mut reflection = ServerReflectionClient::new(channel.unwrap());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.iter().any(|n| n == "avs.node.v1.NodeService"), "{names:?}");

    let mut client = NodeServiceClient::connect(url).await.unwrap();
    let status = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.view, 5);
    drop((client, reflection, replies));
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_failed_checkin_is_retried_until_the_remote_is_up() {
    // Reserve a port, then leave it closed: the client's first attempts fail.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let stop = CancellationToken::new();
    let first_attempt_before = crate::node::now_ms();
    tokio::spawn(client::run_checkin_client(format!("http://{addr}"), signer(1), stop.clone()));
    // Sequencing, not timing: the remote comes up after the client started.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let up_at = crate::node::now_ms();
    let server = start(tokio::net::TcpListener::bind(addr).await.unwrap()).await;
    let mut row = None;
    for _ in 0..300 {
        if let Some(view) = server.pool.rows(crate::node::now_ms()).into_iter().next() {
            row = Some(view.row);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = row.expect("the check-in arrived once the remote was up");
    assert_eq!(row.address, format!("0x{}", "01".repeat(20)));
    assert_eq!(row.remote_ip, "127.0.0.1");
    // The check-in that failed was kept and delivered, not replaced by a later one.
    assert!(
        (first_attempt_before..up_at).contains(&row.checkin_timestamp_ms),
        "{} not in {first_attempt_before}..{up_at}",
        row.checkin_timestamp_ms
    );
    stop.cancel();
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[test]
fn proto_checkins_with_out_of_range_fields_are_refused() {
    let signed = crate::pool::checkin::sign(
        Checkin { address: [1; 20], timestamp_ms: 1, ..Checkin::default() },
        &key(1),
        DIGEST,
    )
    .unwrap();
    let good = signed_to_proto(&signed);
    assert_eq!(signed_from_proto(good.clone()).unwrap(), signed);
    let mut bad = good.clone();
    bad.checkin.as_mut().unwrap().metrics_port = 70_000;
    assert_eq!(signed_from_proto(bad).unwrap_err().code(), tonic::Code::InvalidArgument);
    let mut bad = good.clone();
    bad.checkin.as_mut().unwrap().version = "v".repeat(65);
    assert_eq!(signed_from_proto(bad).unwrap_err().code(), tonic::Code::InvalidArgument);
    let mut bad = good;
    bad.checkin = None;
    assert_eq!(signed_from_proto(bad).unwrap_err().code(), tonic::Code::InvalidArgument);
}
