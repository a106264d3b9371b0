//! In-process network tests: real swarms on 127.0.0.1 (TCP, and one QUIC test), short
//! gossipsub heartbeats, and bounded polling instead of timing assertions.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use prometheus_client::registry::Registry;

use super::*;
use crate::config::ScoringConfig;
use crate::gossip::{MESSAGE_DOMAIN_VALID_SNAPPY, compute_message_id};
use crate::topic::TopicKind;

const DIGEST: [u8; 4] = [0xaa, 0xbb, 0xcc, 0xdd];
/// Upper bound for any condition to become true; generous so a loaded machine cannot fail a
/// correct test, and never asserted as a duration.
const PATIENCE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

struct Node {
    handle: NetworkHandle,
    events: mpsc::Receiver<NetworkEvent>,
    cancel: CancellationToken,
    registry: Registry,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn config(listen: &str) -> NetworkConfig {
    let mut config =
        NetworkConfig::new(DIGEST, NodeKeySource::Provided(Box::new(Keypair::generate_ed25519())));
    config.listen_addrs = vec![listen.parse().unwrap()];
    config.gossip.heartbeat_interval = Duration::from_millis(100);
    config.gossip.mesh_n = 2;
    config.gossip.mesh_n_low = 1;
    config.gossip.mesh_n_high = 4;
    config.gossip.mesh_outbound_min = 1;
    config.scoring.check_interval = Duration::from_millis(100);
    config
}

fn tcp_config() -> NetworkConfig {
    config("/ip4/127.0.0.1/tcp/0")
}

fn start(config: NetworkConfig) -> Node {
    let mut registry = Registry::default();
    let cancel = CancellationToken::new();
    let service = spawn(config, &mut registry, cancel.clone()).expect("network starts");
    Node { handle: service.handle, events: service.events, cancel, registry }
}

async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("condition never became true: {what}");
}

async fn address_of(node: &Node) -> Multiaddr {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(addr) = node.handle.listen_addrs().await.unwrap().into_iter().next() {
            return addr.with(Protocol::P2p(node.handle.local_peer_id()));
        }
        assert!(Instant::now() < deadline, "node never started listening");
        tokio::time::sleep(POLL).await;
    }
}

async fn connect(from: &Node, to: &Node) {
    from.handle.dial(address_of(to).await).await.expect("dial starts");
    let peer = to.handle.local_peer_id();
    let handle = &from.handle;
    eventually("connected", move || async move {
        handle.connected_peers().await.unwrap().contains(&peer)
    })
    .await;
}

/// The next event `pick` accepts; other events are passed over.
async fn next_event<T>(node: &mut Node, mut pick: impl FnMut(NetworkEvent) -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let event = tokio::time::timeout_at(deadline, node.events.recv())
            .await
            .expect("expected event did not arrive")
            .expect("network task ended");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

async fn next_gossip(node: &mut Node) -> GossipMessage {
    next_event(node, |event| match event {
        NetworkEvent::Gossip(message) => Some(message),
        _ => None,
    })
    .await
}

async fn next_request(node: &mut Node) -> InboundRequest {
    next_event(node, |event| match event {
        NetworkEvent::Request(request) => Some(request),
        _ => None,
    })
    .await
}

async fn wait_for_mesh(node: &Node, topic: GossipTopic, peers: &[PeerId]) {
    let handle = &node.handle;
    eventually("mesh formed", move || async move {
        let mesh = handle.mesh_peers(topic).await.unwrap();
        peers.iter().all(|p| mesh.contains(p))
    })
    .await;
}

fn block_topic() -> GossipTopic {
    GossipTopic::new(DIGEST, TopicKind::Block)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_mesh_and_deliver_gossip() {
    let mut nodes: Vec<Node> = (0..3).map(|_| start(tcp_config())).collect();
    connect(&nodes[0], &nodes[1]).await;
    connect(&nodes[1], &nodes[2]).await;
    connect(&nodes[2], &nodes[0]).await;
    let topic = block_topic();
    for node in &nodes {
        assert!(node.handle.subscribe(topic).await.unwrap());
    }
    // A full mesh: every node has grafted both others, so each knows every subscription.
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.handle.local_peer_id()).collect();
    for (i, node) in nodes.iter().enumerate() {
        let others: Vec<PeerId> = ids.iter().copied().filter(|p| *p != ids[i]).collect();
        wait_for_mesh(node, topic, &others).await;
    }

    let data = b"a block, in ssz".repeat(50);
    let id = nodes[0].handle.publish(topic, data.clone()).await.unwrap();
    assert_eq!(
        id.0,
        compute_message_id(MESSAGE_DOMAIN_VALID_SNAPPY, topic.to_string().as_bytes(), &data)
    );
    for node in &mut nodes[1..] {
        let message = next_gossip(node).await;
        assert_eq!(message.topic, topic);
        assert_eq!(message.data, data, "payload arrives decompressed");
        assert_eq!(message.message_id, id);
        node.handle
            .report_validation(message.message_id, message.peer, ValidationOutcome::Accept)
            .unwrap();
    }

    // Another network's topics are refused by the subscription filter.
    let foreign = GossipTopic::new([0; 4], TopicKind::Block);
    assert!(matches!(nodes[0].handle.subscribe(foreign).await, Err(NetworkError::Subscribe(_))));

    // Verdicts are fire-and-forget; a later round trip proves node 1 has handled its verdict
    // (commands are handled in order) before its metrics are read.
    nodes[1].handle.connected_peers().await.unwrap();
    let metrics = encode_metrics(&nodes[1]);
    assert!(
        metrics.contains("avs_p2p_gossip_messages_total{topic=\"block\",outcome=\"Accepted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("avs_p2p_gossip_messages_total{topic=\"block\",outcome=\"Received\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("avs_p2p_peers 2"), "{metrics}");
}

fn encode_metrics(node: &Node) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &node.registry).unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_message_is_not_forwarded_and_its_sender_is_penalised() {
    // A line: sender — validator — receiver. The receiver can only get what the validator
    // forwards.
    let sender = start(tcp_config());
    let mut validator = start(tcp_config());
    let mut receiver = start(tcp_config());
    connect(&sender, &validator).await;
    connect(&receiver, &validator).await;
    let topic = block_topic();
    for node in [&sender, &validator, &receiver] {
        node.handle.subscribe(topic).await.unwrap();
    }
    let sender_id = sender.handle.local_peer_id();
    let receiver_id = receiver.handle.local_peer_id();
    wait_for_mesh(&validator, topic, &[sender_id, receiver_id]).await;
    wait_for_mesh(&receiver, topic, &[validator.handle.local_peer_id()]).await;
    wait_for_mesh(&sender, topic, &[validator.handle.local_peer_id()]).await;

    // Accepted messages flow through the validator: the path works.
    sender.handle.publish(topic, b"valid one".to_vec()).await.unwrap();
    let message = next_gossip(&mut validator).await;
    assert_eq!(message.peer, sender_id);
    validator
        .handle
        .report_validation(message.message_id, message.peer, ValidationOutcome::Accept)
        .unwrap();
    assert_eq!(next_gossip(&mut receiver).await.data, b"valid one");

    // A rejected one is not forwarded, and the sender's score drops.
    let before = validator.handle.peer_score(sender_id).await.unwrap().expect("scoring is on");
    sender.handle.publish(topic, b"forged".to_vec()).await.unwrap();
    let message = next_gossip(&mut validator).await;
    assert_eq!(message.data, b"forged");
    validator
        .handle
        .report_validation(message.message_id, message.peer, ValidationOutcome::Reject)
        .unwrap();
    // Commands are handled in order, so this reads the score after the verdict.
    let after = validator.handle.peer_score(sender_id).await.unwrap().unwrap();
    assert!(after < before, "score {before} -> {after} should drop after a rejection");
    assert!(after < 0.0, "one rejection outweighs what a new peer has earned: {after}");

    // The next accepted message reaches the receiver, and the rejected one never came before
    // it on the same connection.
    sender.handle.publish(topic, b"valid two".to_vec()).await.unwrap();
    let message = next_gossip(&mut validator).await;
    validator
        .handle
        .report_validation(message.message_id, message.peer, ValidationOutcome::Accept)
        .unwrap();
    assert_eq!(next_gossip(&mut receiver).await.data, b"valid two");

    // A sender that keeps it up is disconnected.
    for i in 0..10u8 {
        if sender.handle.publish(topic, vec![0xee, i]).await.is_err() {
            break; // The validator dropped us: nobody left to publish to.
        }
        let Ok(Some(message)) = tokio::time::timeout(PATIENCE, async {
            loop {
                match validator.events.recv().await {
                    Some(NetworkEvent::Gossip(message)) => return Some(message),
                    Some(NetworkEvent::PeerDisconnected(peer)) if peer == sender_id => return None,
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await
        else {
            break;
        };
        validator
            .handle
            .report_validation(message.message_id, message.peer, ValidationOutcome::Reject)
            .unwrap();
    }
    let handle = &validator.handle;
    eventually("sender disconnected for its score", move || async move {
        !handle.connected_peers().await.unwrap().contains(&sender_id)
    })
    .await;
    let score = validator.handle.peer_score(sender_id).await.unwrap().unwrap();
    assert!(score < ScoringConfig::default().disconnect_threshold, "score {score}");
    assert!(encode_metrics(&validator).contains("avs_p2p_score_disconnects_total 1"));
    drop(receiver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_round_trip() {
    let client = start(tcp_config());
    let mut server = start(tcp_config());
    connect(&client, &server).await;
    let server_id = server.handle.local_peer_id();

    let chunks = vec![
        ResponseChunk::success(vec![1; 100]),
        ResponseChunk::success(vec![2; 70_000]),
        ResponseChunk::error(ResponseCode::ResourceUnavailable, "pruned"),
    ];
    let expected = chunks.clone();
    let request = tokio::spawn({
        let handle = client.handle.clone();
        async move {
            handle
                .request(
                    server_id,
                    ReqRespProtocol::BlocksByRange,
                    vec![7; 16],
                    Duration::from_secs(30),
                )
                .await
        }
    });
    let inbound = next_request(&mut server).await;
    assert_eq!(inbound.peer, client.handle.local_peer_id());
    assert_eq!(inbound.protocol, ReqRespProtocol::BlocksByRange);
    assert_eq!(inbound.request, vec![7; 16]);
    assert!(inbound.responder.respond(chunks));
    assert_eq!(request.await.unwrap().unwrap(), expected);

    // A responder dropped unanswered becomes a server error, not a hang.
    let request = tokio::spawn({
        let handle = client.handle.clone();
        async move {
            handle
                .request(server_id, ReqRespProtocol::Status, vec![1], Duration::from_secs(30))
                .await
        }
    });
    drop(next_request(&mut server).await);
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.len(), 1);
    assert_eq!(response[0].code, ResponseCode::ServerError);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_times_out_when_the_responder_never_answers() {
    let client = start(tcp_config());
    let mut server = start(tcp_config());
    connect(&client, &server).await;
    let server_id = server.handle.local_peer_id();
    let request = tokio::spawn({
        let handle = client.handle.clone();
        async move {
            handle
                .request(
                    server_id,
                    ReqRespProtocol::Certificates,
                    vec![1, 2],
                    Duration::from_millis(300),
                )
                .await
        }
    });
    // Hold the responder, never answering, until the client has given up.
    let held = next_request(&mut server).await;
    assert_eq!(request.await.unwrap(), Err(RequestError::Timeout));
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_requests_are_refused_on_both_sides() {
    // The client allows larger requests than the server, so its request reaches the wire and
    // the server must refuse it on the length prefix.
    let mut client_config = tcp_config();
    client_config.rpc_limits.max_request_size = 1 << 20;
    let client = start(client_config);
    let mut server = start(tcp_config());
    connect(&client, &server).await;
    let server_id = server.handle.local_peer_id();
    let server_limit = RpcLimits::default().max_request_size;

    // Refused locally, before sending.
    let mut small_client_config = tcp_config();
    small_client_config.rpc_limits.max_request_size = 8;
    let small = start(small_client_config);
    let refused = small
        .handle
        .request(server_id, ReqRespProtocol::Status, vec![0; 9], Duration::from_secs(5))
        .await;
    assert!(matches!(refused, Err(RequestError::TooLarge { len: 9, max: 8, .. })), "{refused:?}");

    // Refused by the server: the stream fails and the node never sees the request.
    let result = client
        .handle
        .request(
            server_id,
            ReqRespProtocol::Status,
            vec![0; server_limit + 1],
            Duration::from_secs(30),
        )
        .await;
    assert!(result.is_err(), "oversize request must fail, got {result:?}");

    // The server still serves, and the first request its node sees is the valid one.
    let request = tokio::spawn({
        let handle = client.handle.clone();
        async move {
            handle
                .request(server_id, ReqRespProtocol::Status, vec![5], Duration::from_secs(30))
                .await
        }
    });
    let inbound = next_request(&mut server).await;
    assert_eq!(inbound.request, vec![5]);
    inbound.responder.respond(vec![ResponseChunk::success(vec![6])]);
    assert_eq!(request.await.unwrap().unwrap(), vec![ResponseChunk::success(vec![6])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_transport_carries_requests() {
    let client = start(config("/ip4/127.0.0.1/udp/0/quic-v1"));
    let mut server = start(config("/ip4/127.0.0.1/udp/0/quic-v1"));
    connect(&client, &server).await;
    let server_id = server.handle.local_peer_id();
    let request = tokio::spawn({
        let handle = client.handle.clone();
        async move {
            handle
                .request(server_id, ReqRespProtocol::Status, vec![3; 40], Duration::from_secs(30))
                .await
        }
    });
    let inbound = next_request(&mut server).await;
    inbound.responder.respond(vec![ResponseChunk::success(vec![4; 40])]);
    assert_eq!(request.await.unwrap().unwrap(), vec![ResponseChunk::success(vec![4; 40])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_key_file_gives_a_stable_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let mut first = tcp_config();
    first.node_key = NodeKeySource::File(path.clone());
    let id = start(first).handle.local_peer_id();
    let mut second = tcp_config();
    second.node_key = NodeKeySource::File(path);
    assert_eq!(start(second).handle.local_peer_id(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_on_a_taken_port_is_a_clear_error() {
    for listen in ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"] {
        let node = start(config(listen));
        let taken = address_of(&node).await;
        let taken: Multiaddr = taken.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect();
        let mut config = tcp_config();
        config.listen_addrs = vec![taken.clone()];
        let error = spawn(config, &mut Registry::default(), CancellationToken::new()).unwrap_err();
        assert!(matches!(&error, StartError::Listen { addr, .. } if *addr == taken), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_event_queue_drops_gossip_instead_of_growing() {
    let publisher = start(tcp_config());
    let mut small = tcp_config();
    small.event_channel_capacity = 1;
    let receiver = start(small);
    connect(&publisher, &receiver).await;
    let topic = block_topic();
    publisher.handle.subscribe(topic).await.unwrap();
    receiver.handle.subscribe(topic).await.unwrap();
    wait_for_mesh(&receiver, topic, &[publisher.handle.local_peer_id()]).await;
    wait_for_mesh(&publisher, topic, &[receiver.handle.local_peer_id()]).await;
    // The receiver never reads its events: the PeerConnected event fills the one slot, so
    // every gossip message must be dropped (and released to gossipsub as Ignore).
    for i in 0..3u8 {
        publisher.handle.publish(topic, vec![i; 10]).await.unwrap();
    }
    let registry = &receiver.registry;
    eventually("three gossip messages dropped", move || async move {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.contains("avs_p2p_dropped_events_total{kind=\"gossip\"} 3")
            && text.contains("avs_p2p_gossip_messages_total{topic=\"block\",outcome=\"Ignored\"} 3")
    })
    .await;
    assert_eq!(receiver.events.len(), 1, "the queue never grows past its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootnodes_are_dialled_at_start() {
    let bootnode = start(tcp_config());
    let mut config = tcp_config();
    config.bootnodes = vec![address_of(&bootnode).await];
    let node = start(config);
    let peer = bootnode.handle.local_peer_id();
    let handle = &node.handle;
    eventually("connected to the bootnode", move || async move {
        handle.connected_peers().await.unwrap().contains(&peer)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_the_task() {
    let mut registry = Registry::default();
    let cancel = CancellationToken::new();
    // Production defaults (only the listen address set) must build.
    let mut config =
        NetworkConfig::new(DIGEST, NodeKeySource::Provided(Box::new(Keypair::generate_ed25519())));
    config.listen_addrs = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let service = spawn(config, &mut registry, cancel.clone()).unwrap();
    assert!(service.handle.connected_peers().await.is_ok());
    cancel.cancel();
    tokio::time::timeout(PATIENCE, service.task).await.expect("task ends").unwrap();
    assert_eq!(service.handle.connected_peers().await, Err(NetworkError::Stopped));
}

#[tokio::test]
async fn invalid_configuration_is_refused() {
    let mut config = tcp_config();
    config.command_channel_capacity = 0;
    let error = spawn(config, &mut Registry::default(), CancellationToken::new()).unwrap_err();
    assert!(matches!(error, StartError::Config(_)), "{error}");
    let mut config = tcp_config();
    config.scoring.check_interval = Duration::ZERO;
    let error = spawn(config, &mut Registry::default(), CancellationToken::new()).unwrap_err();
    assert!(matches!(error, StartError::Config(_)), "{error}");
    let mut config = tcp_config();
    config.gossip.mesh_n_low = 5; // above mesh_n
    let error = spawn(config, &mut Registry::default(), CancellationToken::new()).unwrap_err();
    assert!(matches!(error, StartError::Behaviour(_)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_snappy_from_a_peer_never_reaches_the_node_and_is_penalised() {
    use libp2p::gossipsub::{MessageAuthenticity, ValidationMode};

    let mut node = start(tcp_config());
    let topic = block_topic();
    node.handle.subscribe(topic).await.unwrap();
    let addr = address_of(&node).await;

    // A bare gossipsub peer that sends payloads exactly as given, without snappy.
    let raw_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Anonymous)
        .message_id_fn(crate::gossip::gossipsub_message_id)
        .heartbeat_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut raw: Swarm<gossipsub::Behaviour> = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| {
            gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, raw_config).unwrap()
        })
        .unwrap()
        .build();
    let raw_id = *raw.local_peer_id();
    raw.behaviour_mut().subscribe(&topic.to_ident_topic()).unwrap();
    raw.dial(addr).unwrap();
    let (publish_tx, mut publish_rx) = mpsc::channel::<(Vec<u8>, oneshot::Sender<bool>)>(4);
    let driver = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = raw.select_next_some() => {}
                request = publish_rx.recv() => match request {
                    Some((data, done)) => {
                        let result = raw.behaviour_mut().publish(topic.hash(), data);
                        let _ = done.send(result.is_ok());
                    }
                    None => break,
                },
            }
        }
    });
    let publish = |data: Vec<u8>| {
        let publish_tx = publish_tx.clone();
        async move {
            let (done, result) = oneshot::channel();
            publish_tx.send((data, done)).await.unwrap();
            result.await.unwrap()
        }
    };

    // Garbage first (retried until the raw peer knows we subscribe), then a valid payload.
    let garbage = vec![0xff; 32];
    let mut sent = false;
    for _ in 0..(PATIENCE.as_millis() / POLL.as_millis()) {
        if publish(garbage.clone()).await {
            sent = true;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    assert!(sent, "raw peer never saw our subscription");
    assert!(publish(crate::codec::compress_block(b"valid").unwrap()).await);

    // The node's first gossip event is the valid message: the garbage never got through.
    let message = next_gossip(&mut node).await;
    assert_eq!(message.data, b"valid");
    assert_eq!(message.peer, raw_id);
    let score = node.handle.peer_score(raw_id).await.unwrap().unwrap();
    assert!(score < 0.0, "invalid snappy must cost the sender: score {score}");

    drop(publish_tx);
    driver.await.unwrap();
}

/// A peer reported for garbage answers `max_strikes` times is disconnected and banned: its
/// reconnection is refused, and the ban is in the ban file for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_reported_for_garbage_answers_is_banned_and_stays_banned() {
    let dir = tempfile::tempdir().unwrap();
    let mut victim_config = tcp_config();
    victim_config.guard.ban_file = Some(dir.path().join("bans"));
    let victim = start(victim_config);
    let liar = start(tcp_config());
    connect(&liar, &victim).await;
    let liar_id = liar.handle.local_peer_id();
    // The dialer sees the connection first; the strikes are counted once the victim does too.
    let handle = &victim.handle;
    eventually("the victim sees the liar", move || async move {
        handle.connected_peers().await.unwrap().contains(&liar_id)
    })
    .await;
    for _ in 0..ScoringConfig::default().max_strikes - 1 {
        victim.handle.report_peer(liar_id, "garbage").unwrap();
    }
    // Not yet: strikes below the limit change nothing.
    assert!(victim.handle.connected_peers().await.unwrap().contains(&liar_id));
    victim.handle.report_peer(liar_id, "garbage").unwrap();
    let handle = &victim.handle;
    eventually("the liar is disconnected", move || async move {
        !handle.connected_peers().await.unwrap().contains(&liar_id)
    })
    .await;
    let _ = liar.handle.dial(address_of(&victim).await).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!victim.handle.connected_peers().await.unwrap().contains(&liar_id), "reconnected");
    let bans = std::fs::read_to_string(dir.path().join("bans")).unwrap();
    assert!(bans.contains(&format!("peer {liar_id} ")), "{bans}");
}
