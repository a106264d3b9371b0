//! The gRPC server and the client mode in-process, over real TCP on 127.0.0.1.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use avs_consensus::types::{BlockBody, Certificate, Height, OperatorIndex, TaskResult, byte_list};
use avs_proto::v1::node_service_client::NodeServiceClient;
use tonic::Code;
use tonic::codegen::tokio_stream;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use super::*;
use crate::pool::CheckinSigner;
use crate::pool::tests::{DIGEST, key, table};
use crate::store::{MemoryStore, WriteBatch};

struct Server {
    addr: SocketAddr,
    pool: Arc<OperatorPool>,
    finalized: FinalizedFeed,
    automation: Arc<crate::automation::Automation>,
    store: Arc<dyn crate::store::Store>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn client(&self) -> NodeServiceClient<tonic::transport::Channel> {
        NodeServiceClient::connect(self.url()).await.unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// The service over `chain`, with operators `members` and the finalized head at `head`.
async fn start_with(
    listener: tokio::net::TcpListener,
    members: &[u8],
    limits: Limits,
    chain: ChainStore,
    head: u64,
) -> Server {
    let pool = Arc::new(OperatorPool::open(chain.store().clone()).unwrap());
    pool.set_operators(table(0, members)).unwrap();
    let status = NodeStatus { view: 5, finalized_height: head, ..NodeStatus::default() };
    let (_tx, status) = watch::channel(status);
    let (finalized, _) = broadcast::channel(8);
    let avs = crate::avs::AvsTasks::none(chain.store().clone());
    let network = crate::automation::auth::Network {
        name: "avs-test".into(),
        digest: DIGEST,
        node: alloy::primitives::Address::repeat_byte(0x0d),
    };
    let automation =
        Arc::new(crate::automation::Automation::open(chain.store().clone(), network).unwrap());
    let store = chain.store().clone();
    let state = GrpcState {
        pool: pool.clone(),
        status,
        chain,
        finalized: finalized.clone(),
        avs,
        automation: automation.clone(),
    };
    let shutdown = CancellationToken::new();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(serve_with_limits(listener, state, limits, shutdown.clone()));
    Server { addr, pool, finalized, automation, store, shutdown, task }
}

async fn start(listener: tokio::net::TcpListener) -> Server {
    start_with(listener, &[0, 1], Limits::default(), memory_chain(), 0).await
}

async fn local() -> tokio::net::TcpListener {
    bind("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn memory_chain() -> ChainStore {
    ChainStore::new(Arc::new(MemoryStore::new()))
}

/// A block at `height` carrying `data_bytes` bytes of task data.
fn block(height: u64, data_bytes: usize) -> Block {
    let task =
        TaskResult { data: byte_list(&vec![7; data_bytes]).unwrap(), ..TaskResult::default() };
    let tasks = if data_bytes == 0 { Vec::new() } else { vec![task] };
    Block {
        height: Height::new(height),
        body: BlockBody { tasks: tasks.try_into().unwrap() },
        ..Block::default()
    }
}

/// Stores finalized blocks at `heights`; returns their roots.
fn finalize(chain: &ChainStore, blocks: &[Block]) -> Vec<Root> {
    let mut batch = WriteBatch::new();
    let roots: Vec<Root> = blocks.iter().map(|b| b.root().unwrap()).collect();
    for (root, block) in roots.iter().zip(blocks) {
        chain.put_finalized(&mut batch, root, block).unwrap();
    }
    chain.write(batch).unwrap();
    roots
}

fn live_event(height: u64) -> Arc<FinalizedEvent> {
    let block = block(height, 0);
    Arc::new(FinalizedEvent {
        root: block.root().unwrap(),
        block,
        certificate: Certificate::default(),
        epoch_end: None,
        operators: Default::default(),
    })
}

/// A check-in of operator `i` at `ts`, signed with `key(signer)` (a valid G2 point either way;
/// the right signature only when `signer == i`).
fn checkin_request(i: u8, signer: u8, ts: u64) -> pb::CheckinRequest {
    let message = Checkin { address: [i; 20], timestamp_ms: ts, ..Checkin::default() };
    signed_to_proto(&crate::pool::checkin::sign(message, &key(signer), DIGEST).unwrap())
}

fn signer(i: u8) -> CheckinSigner {
    let (_tx, status) = watch::channel(NodeStatus::default());
    CheckinSigner::new(key(i), [i; 20], DIGEST, 5052, status, Arc::new(AtomicU64::new(0)))
}

/// grpcurl and Python's grpcio-reflection speak only the older `v1alpha` reflection protocol;
/// a node serving only `v1` answers them UNIMPLEMENTED.
#[tokio::test]
async fn reflection_v1alpha_clients_list_the_services_too() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaMessage;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaReply;

    let server = start(local().await).await;
    let channel = tonic::transport::Endpoint::from_shared(server.url()).unwrap().connect().await;
    let mut reflection = AlphaClient::new(channel.unwrap());
    let request = AlphaRequest {
        host: String::new(),
        message_request: Some(AlphaMessage::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1alpha reflection is served")
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(AlphaReply::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.iter().any(|n| n == "avs.node.v1.NodeService"), "{names:?}");
    drop((reflection, replies));
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn reflection_lists_the_node_service_and_shutdown_is_graceful() {
    let server = start(local().await).await;
    let url = server.url();
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
    assert!(names.iter().any(|n| n == "avs.automation.v1.AutomationService"), "{names:?}");

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

#[tokio::test]
async fn an_oversized_request_is_refused_from_its_length_before_it_is_decoded() {
    let server = start(local().await).await;
    let mut client = server.client().await;
    // Just over the cap (a default tonic server would decode it and refuse the version), and
    // the review's 5 MiB (T34).
    for size in [MAX_REQUEST_BYTES + 1, 5 << 20] {
        let mut request = checkin_request(0, 0, crate::node::now_ms());
        request.checkin.as_mut().unwrap().version = "v".repeat(size);
        let err = client.checkin(request).await.unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange, "{size} bytes: {err:?}");
        assert!(err.message().contains(&MAX_REQUEST_BYTES.to_string()), "{err:?}");
    }
    assert_eq!(server.pool.verifications(), 0);
    // A legitimate check-in on the same connection still goes through.
    client.checkin(checkin_request(0, 0, crate::node::now_ms())).await.unwrap();
    assert_eq!(server.pool.verifications(), 1);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn a_replayed_or_too_frequent_checkin_costs_no_pairing() {
    let server = start(local().await).await;
    let mut client = server.client().await;
    let ts = crate::node::now_ms();
    client.checkin(checkin_request(1, 1, ts)).await.unwrap();
    assert_eq!(server.pool.verifications(), 1);
    // The same check-in again (T34), and forged ones with a replayed or too-soon timestamp:
    // refused as already held, before the signature is looked at.
    for request in
        [checkin_request(1, 1, ts), checkin_request(1, 0, ts), checkin_request(1, 0, ts + 1)]
    {
        let err = client.checkin(request).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    }
    assert_eq!(server.pool.verifications(), 1);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn checkin_signature_checks_stop_at_the_global_budget() {
    // T33 in small: 4 connections x 16 concurrent forged check-ins (member addresses, fresh
    // timestamps, valid points that are not the operator's signature). No refill, so the
    // outcome does not depend on timing.
    let limits = Limits {
        verify_global: Rate { burst: 3, per_second: 0 },
        verify_per_operator: Rate { burst: 64, per_second: 0 },
        ..Limits::default()
    };
    let members = [0, 1, 2, 3, 4, 5];
    let server = start_with(local().await, &members, limits, memory_chain(), 0).await;
    let ts = crate::node::now_ms();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let client = server.client().await;
        for i in 0..16u8 {
            let mut client = client.clone();
            let operator = i % 6;
            let request = checkin_request(operator, operator + 1, ts);
            calls.spawn(async move { client.checkin(request).await.unwrap_err().code() });
        }
    }
    let codes = calls.join_all().await;
    let count = |code| codes.iter().filter(|&&c| c == code).count();
    assert_eq!(count(Code::Unauthenticated), 3, "{codes:?}");
    assert_eq!(count(Code::ResourceExhausted), 61, "{codes:?}");
    assert_eq!(server.pool.verifications(), 3, "no pairing beyond the budget");
    assert!(server.pool.rows(ts).is_empty());
    server.stop().await;
}

#[tokio::test]
async fn subscriptions_beyond_the_cap_are_refused_until_one_ends() {
    let limits = Limits { max_subscriptions: 2, ..Limits::default() };
    let server = start_with(local().await, &[0], limits, memory_chain(), 0).await;
    let mut client = server.client().await;
    let request = || pb::SubscribeFinalizedRequest { from_height: None };
    let first = client.subscribe_finalized(request()).await.unwrap().into_inner();
    let _second = client.subscribe_finalized(request()).await.unwrap().into_inner();
    let err = client.subscribe_finalized(request()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("at most 2"), "{err:?}");
    // Ending one frees its slot once the server sees the stream reset (asynchronous: poll).
    drop(first);
    let mut reopened = None;
    for _ in 0..100 {
        match client.subscribe_finalized(request()).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(e) if e.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(reopened.is_some(), "the slot of the ended subscription was not freed");
    drop((reopened, _second, client));
    server.stop().await;
}

#[tokio::test]
async fn a_subscription_replays_stored_history_then_follows_the_feed() {
    let chain = memory_chain();
    let blocks: Vec<Block> = (0..=3).map(|h| block(h, 10)).collect();
    let roots = finalize(&chain, &blocks);
    let server = start_with(local().await, &[0], Limits::default(), chain, 3).await;
    let mut client = server.client().await;
    let request = pb::SubscribeFinalizedRequest { from_height: Some(1) };
    let mut stream = client.subscribe_finalized(request).await.unwrap().into_inner();
    for height in 1..=3u64 {
        let got = stream.message().await.unwrap().unwrap();
        assert_eq!(got.height, height);
        assert_eq!(got.root, roots[height as usize].to_vec(), "the root from the index");
        assert_eq!(got.block_ssz, encode(&blocks[height as usize]).unwrap());
    }
    // Heights already sent are not repeated; the next one comes with its certificate.
    server.finalized.send(live_event(3)).unwrap();
    server.finalized.send(live_event(4)).unwrap();
    let live = stream.message().await.unwrap().unwrap();
    assert_eq!(live.height, 4);
    assert!(!live.certificate_ssz.is_empty());
    drop((stream, client));
    server.stop().await;
}

#[tokio::test]
async fn a_subscription_below_the_pruned_history_is_refused_not_silently_skipped() {
    let chain = memory_chain().with_history(Some(2));
    let blocks: Vec<Block> = (1..=6).map(|h| block(h, 10)).collect();
    let roots = finalize(&chain, &blocks);
    let (_, genesis) = avs_consensus::testkit::genesis(&[1, 1, 1, 1], 1, 4000).unwrap();
    let mut anchor = avs_consensus::Anchor::genesis(&genesis).unwrap();
    anchor.block = blocks[5].clone();
    let mut batch = WriteBatch::new();
    chain.put_anchor(&mut batch, &anchor).unwrap();
    chain.write(batch).unwrap();
    assert_eq!(chain.history_floor().unwrap(), Some(Height::new(4)));
    let server = start_with(local().await, &[0], Limits::default(), chain, 6).await;
    let mut client = server.client().await;
    let request = pb::SubscribeFinalizedRequest { from_height: Some(2) };
    let status = client.subscribe_finalized(request).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange);
    assert!(status.message().contains("below height 4"), "{}", status.message());
    // From the floor on, the history is there.
    let request = pb::SubscribeFinalizedRequest { from_height: Some(4) };
    let mut stream = client.subscribe_finalized(request).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!((first.height, first.root), (4, roots[3].to_vec()));
    drop((stream, client));
    server.stop().await;
}

/// Drains what a stopped stream task left queued: the blocks' heights, and the closing status.
async fn drain(rx: &mut mpsc::Receiver<StreamItem>) -> (Vec<u64>, Status) {
    let mut heights = Vec::new();
    loop {
        match rx.recv().await.expect("the stream ends with a status") {
            Ok(block) => heights.push(block.height),
            Err(status) => {
                assert!(rx.recv().await.is_none(), "nothing after the status");
                return (heights, status);
            }
        }
    }
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_dropped_with_a_status_not_buffered() {
    // Function level, so that no HTTP/2 buffer sits in between. A stall of zero: a full
    // backlog drops the subscriber at once, whatever the timing.
    let chain = memory_chain();
    finalize(&chain, &(0..10).map(|h| block(h, 10)).collect::<Vec<_>>());
    let (feed, _) = broadcast::channel(4);
    // Replaying history to a subscriber that reads nothing.
    let (sink, mut rx) = Sink::new(3, Duration::ZERO);
    let task = tokio::spawn(stream_finalized(chain.clone(), feed.subscribe(), 0, 9, sink));
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the stream task ended instead of waiting for the subscriber")
        .unwrap();
    let (heights, status) = drain(&mut rx).await;
    assert!(heights.len() <= 3, "at most the backlog is queued: {heights:?}");
    assert_eq!(heights, (0..heights.len() as u64).collect::<Vec<_>>());
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let resume = format!("from_height = {}", heights.len());
    assert!(status.message().contains(&resume), "{status:?}");

    // Following the live feed: more blocks than the backlog and the feed hold.
    let (sink, mut rx) = Sink::new(3, Duration::ZERO);
    let task = tokio::spawn(stream_finalized(chain, feed.subscribe(), 10, 9, sink));
    for height in 10..30 {
        let _ = feed.send(live_event(height));
        tokio::task::yield_now().await;
    }
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the stream task ended instead of waiting for the subscriber")
        .unwrap();
    let (heights, status) = drain(&mut rx).await;
    assert!(heights.len() <= 3, "{heights:?}");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("resubscribe with from_height"), "{status:?}");
}

#[test]
fn a_replay_page_is_bounded_in_bytes_and_stops_at_the_head_and_at_gaps() {
    let chain = memory_chain();
    // Blocks of half a page each: a page holds two of them, not 64.
    let big: Vec<Block> = (0..4).map(|h| block(h, REPLAY_PAGE_BYTES / 2)).collect();
    finalize(&chain, &big);
    let heights = |page: Vec<pb::FinalizedBlock>| page.iter().map(|b| b.height).collect::<Vec<_>>();
    assert_eq!(heights(read_page(&chain, 0, 100).unwrap()), [0, 1]);
    assert_eq!(heights(read_page(&chain, 2, 100).unwrap()), [2, 3]);
    // Small blocks: at most a page of blocks, never past the head, and a gap ends it.
    let chain = memory_chain();
    finalize(&chain, &(0..100).map(|h| block(h, 0)).collect::<Vec<_>>());
    assert_eq!(read_page(&chain, 0, 1000).unwrap().len() as u64, REPLAY_PAGE_BLOCKS);
    assert_eq!(heights(read_page(&chain, 5, 7).unwrap()), [5, 6, 7]);
    assert!(read_page(&chain, 100, 1000).unwrap().is_empty());
    assert_eq!(read_page(&chain, 98, 1000).unwrap().len(), 2);
}

#[test]
fn the_largest_finalized_block_fits_the_response_limit() {
    let task = TaskResult {
        task_definition_id: 1,
        performer_index: OperatorIndex::new(2),
        proof_of_task: byte_list(&vec![1; avs_consensus::types::MAX_PROOF_BYTES]).unwrap(),
        data: byte_list(&vec![2; avs_consensus::types::MAX_TASK_DATA_BYTES]).unwrap(),
        signature: Default::default(),
    };
    let tasks = vec![task; avs_consensus::types::MAX_TASKS_PER_BLOCK];
    let block = Block { body: BlockBody { tasks: tasks.try_into().unwrap() }, ..Block::default() };
    let event = FinalizedEvent {
        root: [0; 32],
        block,
        certificate: Certificate::default(),
        epoch_end: None,
        operators: Default::default(),
    };
    let message = finalized_to_proto(&event).unwrap();
    // A full signers bitlist adds one bit per operator to the certificate.
    let certificate = message.certificate_ssz.len() + avs_consensus::types::MAX_OPERATORS / 8 + 1;
    // Each field: its bytes, plus at most 1 byte of tag and 10 of length or varint.
    let framing = 7 * 11;
    let size = message.block_ssz.len() + certificate + 32 + 32 + framing;
    assert!(size <= MAX_RESPONSE_BYTES, "{size} > {MAX_RESPONSE_BYTES}");
}

#[test]
fn the_grpc_help_says_the_service_is_open_and_states_the_real_limits() {
    use clap::CommandFactory;
    let cli = crate::cli::Cli::command();
    let run = cli.find_subcommand("run").unwrap();
    let help = |flag: &str| {
        let arg = run.get_arguments().find(|a| a.get_long() == Some(flag)).unwrap();
        let text = arg.get_long_help().or(arg.get_help()).unwrap().to_string();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let addr = help("grpc-addr");
    assert!(!addr.contains("safe"), "{addr}");
    for claim in ["unauthenticated", "anyone", "check-ins", "signature verification", "IP address"]
    {
        assert!(addr.contains(claim), "--grpc-addr help lacks {claim:?}: {addr}");
    }
    // The limits it states are the ones the server applies.
    let d = Limits::default();
    let limits = [
        format!("{} KiB requests", MAX_REQUEST_BYTES / 1024),
        format!("{MAX_STREAMS_PER_CONNECTION} streams per connection"),
        format!("{} s handler timeout", REQUEST_TIMEOUT.as_secs()),
        format!(
            "{} signature checks a second in bursts of {}",
            d.verify_global.per_second, d.verify_global.burst
        ),
        format!("{} a second per operator", d.verify_per_operator.per_second),
        format!("{} finalized-block subscriptions", d.max_subscriptions),
    ];
    for limit in limits {
        assert!(addr.contains(&limit), "--grpc-addr help lacks {limit:?}: {addr}");
    }
    assert!(help("grpc-port").contains("Unauthenticated"));
}

/// Issue 15, item 1: a wallet signs in and manages its own automations over gRPC; calls
/// without a valid token, bad definitions and another owner's ids are refused clearly.
#[tokio::test]
async fn a_wallet_signs_in_and_manages_only_its_own_automations() {
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;
    use avs_proto::automation_v1 as apb;
    use avs_proto::automation_v1::automation_service_client::AutomationServiceClient;

    let server = start(local().await).await;
    let mut client = AutomationServiceClient::connect(server.url()).await.unwrap();
    let sign_in = |client: &mut AutomationServiceClient<tonic::transport::Channel>,
                   wallet: PrivateKeySigner| {
        let mut client = client.clone();
        async move {
            let owner = wallet.address().to_vec();
            let challenge = client
                .get_challenge(apb::GetChallengeRequest { owner })
                .await
                .unwrap()
                .into_inner();
            let signature =
                wallet.sign_message_sync(challenge.message.as_bytes()).unwrap().as_bytes().to_vec();
            let request = apb::GetKeyRequest { message: challenge.message, signature };
            client.get_key(request).await.unwrap().into_inner().token
        }
    };
    fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    }
    let definition = |expression: &str| {
        crate::automation::example::cron_get(
            "hourly",
            expression,
            "ping",
            "http://127.0.0.1:9/hook",
        )
    };
    let create = |definition| apb::CreateTaskRequest { definition: Some(definition) };
    // What consensus does with this node's requests: it proposes them, the block is final.
    let finalize = |server: &Server| {
        use crate::automation::consensus::AUTOMATION_TASK_ID;
        let tasks: Vec<TaskResult> = server
            .automation
            .take_for_block(crate::node::now_ms(), 16)
            .iter()
            .map(|data| TaskResult {
                task_definition_id: AUTOMATION_TASK_ID,
                data: byte_list(data).unwrap(),
                ..TaskResult::default()
            })
            .collect();
        let block =
            Block { body: BlockBody { tasks: tasks.try_into().unwrap() }, ..Block::default() };
        let mut batch = WriteBatch::new();
        let certificate = avs_consensus::types::Certificate::default();
        server.automation.record_finality(&block, &[0; 32], &certificate, &mut batch).unwrap();
        server.store.write(batch, crate::store::Durability::Sync).unwrap();
    };

    let alice = sign_in(&mut client, PrivateKeySigner::from_slice(&[1; 32]).unwrap()).await;
    let mallory = sign_in(&mut client, PrivateKeySigner::from_slice(&[2; 32]).unwrap()).await;

    // No token, a forged one, a malformed cron: refused, nothing stored.
    let none = client.create_task(create(definition("0 0 * * * *"))).await.unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    let forged = format!("{}00", alice.trim_end_matches(char::is_alphanumeric));
    let err = client.create_task(with_token(&forged, create(definition("0 0 * * * *")))).await;
    assert_eq!(err.unwrap_err().code(), Code::Unauthenticated);
    let err = client.create_task(with_token(&alice, create(definition("0 0 * * *")))).await;
    let err = err.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("trigger.cron.expression"), "{}", err.message());
    let listed = client.list_tasks(with_token(&alice, apb::ListTasksRequest::default())).await;
    assert!(listed.unwrap().into_inner().tasks.is_empty());

    // Alice's automation: created, listed, readable and cancellable by her only.
    let task = client
        .create_task(with_token(&alice, create(definition("0 0 * * * *"))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(task.state, i32::from(apb::TaskState::Pending));
    let id = apb::TaskIdRequest { id: task.id.clone() };
    let pending = client.get_task(with_token(&alice, id.clone())).await.unwrap().into_inner();
    assert_eq!(pending, task);
    finalize(&server);
    let listed = client.list_tasks(with_token(&alice, apb::ListTasksRequest::default())).await;
    let active = apb::AutomationTask { state: apb::TaskState::Active.into(), ..task.clone() };
    assert_eq!(listed.unwrap().into_inner().tasks, vec![active]);
    let theirs = client.get_task(with_token(&mallory, id.clone())).await.unwrap_err();
    assert_eq!(theirs.code(), Code::PermissionDenied);
    let theirs = client.cancel_task(with_token(&mallory, id.clone())).await.unwrap_err();
    assert_eq!(theirs.code(), Code::PermissionDenied);
    let early = client.delete_task(with_token(&alice, id.clone())).await.unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    client.cancel_task(with_token(&alice, id.clone())).await.unwrap();
    finalize(&server);
    let cancelled = client.get_task(with_token(&alice, id.clone())).await.unwrap().into_inner();
    assert_eq!(cancelled.state, i32::from(apb::TaskState::Cancelled));
    client.delete_task(with_token(&alice, id.clone())).await.unwrap();
    finalize(&server);
    let gone = client.get_task(with_token(&alice, id)).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    server.stop().await;
}
