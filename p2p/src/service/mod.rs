//! The network task: one tokio task owns the libp2p `Swarm` and runs a `tokio::select!` over
//! swarm events, the bounded command channel, pending inbound responses, a score-check timer,
//! a maintenance timer (redials with back-off, discovery lookups: [`discovery`]) and the
//! cancellation token.
//!
//! Gossip in: gossipsub decompresses the payload (bounded) in its transform, computes the
//! message id, and emits the message; the task parses the topic and hands
//! [`NetworkEvent::Gossip`] to the node. Nothing is forwarded until the node's verdict comes
//! back through [`NetworkHandle::report_validation`]: Accept forwards it to the mesh, Ignore
//! drops it, Reject drops it and charges the sender's score. If the node's event queue is full
//! the message is ignored (and counted), never queued without bound.
//!
//! Req/resp in: a request is decoded by the codec and handed up with a [`Responder`]; the task
//! keeps a bounded set of pending responses and answers a server error if the node drops the
//! responder or does not answer in time.

mod discovery;
pub(crate) mod guard;
mod handle;
#[cfg(test)]
mod tests;
mod types;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;

use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::metrics::Recorder;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, identify, kad, noise, tcp, yamux};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use handle::NetworkHandle;
pub use types::{
    GossipMessage, InboundRequest, NetworkError, NetworkEvent, RequestError, Responder,
    ValidationOutcome,
};

use crate::behaviour::{
    Behaviour, BehaviourError, BehaviourEvent, KAD_PROTOCOL, topic_score_params,
};
use crate::codec::{ResponseChunk, ResponseCode};
use crate::config::{NetworkConfig, NodeKeySource};
use crate::keys::{KeyError, load_or_generate_node_key};
use crate::metrics::{Direction, GossipOutcome, Metrics};
use crate::rpc::{ReqRespProtocol, RpcLimits};
use crate::topic::GossipTopic;
use handle::Command;

/// Why the network service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Behaviour(#[from] BehaviourError),
    #[error("cannot set up the TCP/noise transport: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}; choose another address or port")]
    Listen { addr: Multiaddr, reason: String },
    #[error("invalid network configuration: {0}")]
    Config(&'static str),
}

/// A running network service.
#[derive(Debug)]
pub struct NetworkService {
    pub handle: NetworkHandle,
    /// Events for the node; bounded, see [`NetworkConfig::event_channel_capacity`].
    pub events: mpsc::Receiver<NetworkEvent>,
    /// The task; it ends when `cancel` fires or every handle is dropped.
    pub task: JoinHandle<()>,
}

/// Builds the swarm, starts listening and spawns the network task (must run inside a tokio
/// runtime). Metrics are registered into `registry`.
pub fn spawn(
    config: NetworkConfig,
    registry: &mut Registry,
    cancel: CancellationToken,
) -> Result<NetworkService, StartError> {
    if config.command_channel_capacity == 0 || config.event_channel_capacity == 0 {
        return Err(StartError::Config("channel capacities must be at least 1"));
    }
    if config.vote_subnet_count == 0 {
        return Err(StartError::Config("vote_subnet_count must be at least 1"));
    }
    if config.scoring.check_interval.is_zero()
        || config.bootnode_redial_interval.is_zero()
        || config.discovery_interval.is_zero()
    {
        return Err(StartError::Config(
            "score check, redial and discovery intervals must be positive",
        ));
    }
    if config.max_pending_inbound_requests == 0 {
        return Err(StartError::Config("max_pending_inbound_requests must be at least 1"));
    }
    let keypair = match &config.node_key {
        NodeKeySource::File(path) => load_or_generate_node_key(path)?,
        NodeKeySource::Provided(keypair) => (**keypair).clone(),
    };
    let metrics = Metrics::register(registry);
    let behaviour = Behaviour::new(&keypair, &config, registry)?;
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| StartError::Transport(e.to_string()))?
        .with_quic()
        .with_bandwidth_metrics(registry)
        .with_behaviour(|_| behaviour)
        .map_err(|e| StartError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        .build();
    // Bans kept from an earlier run hold from the start.
    for peer in swarm.behaviour().guard.banned_peers() {
        swarm.behaviour_mut().blocked.block_peer(peer);
    }
    for addr in &config.listen_addrs {
        probe_tcp_port(addr)
            .map_err(|e| StartError::Listen { addr: addr.clone(), reason: e.to_string() })?;
        swarm
            .listen_on(addr.clone())
            .map_err(|e| StartError::Listen { addr: addr.clone(), reason: e.to_string() })?;
    }

    let (command_tx, command_rx) = mpsc::channel(config.command_channel_capacity);
    let (event_tx, event_rx) = mpsc::channel(config.event_channel_capacity);
    let local_peer_id = *swarm.local_peer_id();
    info!(peer = %local_peer_id, "network service starting");
    let handle = NetworkHandle::new(
        command_tx,
        local_peer_id,
        config.rpc_limits,
        config.request_timeout,
        metrics.clone(),
    );
    let service = Service {
        swarm,
        commands: command_rx,
        events: event_tx,
        libp2p_metrics: libp2p::metrics::Metrics::new(registry),
        metrics,
        pending_requests: HashMap::new(),
        pending_responses: FuturesUnordered::new(),
        listen_addrs: Vec::new(),
        connected: HashSet::new(),
        addresses: HashMap::new(),
        awaiting_verdict: HashMap::new(),
        strikes: HashMap::new(),
        redialer: discovery::Redialer::new(
            &config.bootnodes,
            config.bootnode_redial_interval,
            Instant::now(),
        ),
        last_lookup: None,
        config,
    };
    let task = tokio::spawn(service.run(cancel));
    Ok(NetworkService { handle, events: event_rx, task })
}

/// libp2p's TCP listeners set SO_REUSEPORT, so a second node on a taken TCP port would not
/// fail: the kernel would quietly split inbound connections between the two. A plain bind
/// first (dropped at once) turns that clash into a start-up error.
fn probe_tcp_port(addr: &Multiaddr) -> std::io::Result<()> {
    use libp2p::multiaddr::Protocol;
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    match parts.next() {
        Some(Protocol::Tcp(port)) if port != 0 => std::net::TcpListener::bind((ip, port)).map(drop),
        _ => Ok(()),
    }
}

type PendingResponse = Pin<
    Box<
        dyn Future<
                Output = (
                    ReqRespProtocol,
                    ResponseChannel<Vec<ResponseChunk>>,
                    Option<Vec<ResponseChunk>>,
                ),
            > + Send,
    >,
>;

struct PendingRequest {
    reply: oneshot::Sender<Result<Vec<ResponseChunk>, RequestError>>,
}

struct Service {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    metrics: Metrics,
    libp2p_metrics: libp2p::metrics::Metrics,
    pending_requests: HashMap<(ReqRespProtocol, OutboundRequestId), PendingRequest>,
    pending_responses: FuturesUnordered<PendingResponse>,
    listen_addrs: Vec<Multiaddr>,
    connected: HashSet<PeerId>,
    /// The remote address of the newest connection to each connected peer, as the transport
    /// observed it (handed up with each gossip message the peer forwards).
    addresses: HashMap<PeerId, Multiaddr>,
    /// Topic name of each message handed to the node and not yet judged, so verdict metrics
    /// carry the topic. Entries the node never judges are purged once gossipsub's cache has
    /// forgotten the message, which bounds the map by the message rate.
    awaiting_verdict: HashMap<gossipsub::MessageId, (String, Instant)>,
    /// Reports against peers that answered requests with garbage (see `strike`); cleared
    /// when a peer disconnects or is banned.
    strikes: HashMap<PeerId, u32>,
    redialer: discovery::Redialer,
    last_lookup: Option<Instant>,
    config: NetworkConfig,
}

impl Service {
    async fn run(mut self, cancel: CancellationToken) {
        let mut score_check = tokio::time::interval(self.config.scoring.check_interval);
        score_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut maintenance = tokio::time::interval(std::time::Duration::from_millis(250));
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some((protocol, channel, chunks)) = self.pending_responses.next(),
                    if !self.pending_responses.is_empty() =>
                {
                    self.send_response(protocol, channel, chunks);
                }
                _ = score_check.tick() => {
                    self.check_scores();
                    self.purge_stale_verdicts();
                }
                _ = maintenance.tick() => self.maintain_peers(),
            }
        }
        info!("network service stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::ReportValidation { message_id, source, outcome } => {
                let topic = self.awaiting_verdict.remove(&message_id).map(|(name, _)| name);
                self.report(&message_id, &source, outcome, topic.as_deref().unwrap_or("unknown"));
            }
            Command::ReportPeer { peer, reason } => self.strike(peer, &reason),
            Command::Subscribe { topic, reply } => {
                let _ = reply.send(self.subscribe(topic));
            }
            Command::Unsubscribe { topic, reply } => {
                let _ = reply.send(
                    self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic.to_ident_topic()),
                );
            }
            Command::Request { peer, protocol, request, reply } => {
                self.metrics.bytes("rpc", Direction::Outbound, request.len());
                let id = self.swarm.behaviour_mut().rpc_mut(protocol).send_request(&peer, request);
                self.pending_requests.insert((protocol, id), PendingRequest { reply });
            }
            Command::Dial { addr, reply } => {
                let _ = reply
                    .send(self.swarm.dial(addr).map_err(|e| NetworkError::Dial(e.to_string())));
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.connected.iter().copied().collect());
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.listen_addrs.clone());
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::MeshPeers { topic, reply } => {
                let peers =
                    self.swarm.behaviour().gossipsub.mesh_peers(&topic.hash()).copied().collect();
                let _ = reply.send(peers);
            }
        }
    }

    fn publish(
        &mut self,
        topic: GossipTopic,
        data: Vec<u8>,
    ) -> Result<gossipsub::MessageId, NetworkError> {
        let name = topic.kind.name();
        let len = data.len();
        match self.swarm.behaviour_mut().gossipsub.publish(topic.hash(), data) {
            Ok(id) => {
                self.metrics.gossip(&name, GossipOutcome::Published);
                self.metrics.bytes("gossip", Direction::Outbound, len);
                Ok(id)
            }
            Err(e) => {
                self.metrics.gossip(&name, GossipOutcome::PublishFailed);
                Err(NetworkError::Publish(e.to_string()))
            }
        }
    }

    fn subscribe(&mut self, topic: GossipTopic) -> Result<bool, NetworkError> {
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        let subscribed = gossipsub
            .subscribe(&topic.to_ident_topic())
            .map_err(|e| NetworkError::Subscribe(format!("{topic}: {e:?}")))?;
        gossipsub
            .set_topic_params(topic.to_ident_topic(), topic_score_params(&self.config.scoring))
            .map_err(|e| NetworkError::Subscribe(e.to_owned()))?;
        Ok(subscribed)
    }

    /// Passes a verdict to gossipsub (which forwards or penalises) and counts it.
    fn report(
        &mut self,
        message_id: &gossipsub::MessageId,
        source: &PeerId,
        outcome: ValidationOutcome,
        topic: &str,
    ) {
        let acceptance = MessageAcceptance::from(outcome);
        let known = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, source, acceptance);
        if !known {
            debug!(%message_id, peer = %source, "verdict for a message no longer cached");
            // gossipsub only scores a verdict while it still caches the message: a Reject that
            // comes later (a lazy vote check, a busy node) would cost its sender nothing, so it
            // becomes a strike instead (review T12).
            if outcome == ValidationOutcome::Reject {
                self.strike(*source, "a rejected gossip message, judged after it left the cache");
            }
        }
        let gossip_outcome = match outcome {
            ValidationOutcome::Accept => GossipOutcome::Accepted,
            ValidationOutcome::Ignore => GossipOutcome::Ignored,
            ValidationOutcome::Reject => GossipOutcome::Rejected,
        };
        self.metrics.gossip(topic, gossip_outcome);
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => {
                self.libp2p_metrics.record(&event);
                self.on_gossipsub(event);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => {
                self.libp2p_metrics.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    // Remember a few of the peer's own addresses so req/resp can redial it,
                    // discovery can hand them on, and we can redial it if it goes away.
                    let addrs: Vec<Multiaddr> =
                        info.listen_addrs.into_iter().take(discovery::MAX_ADDRS_PER_PEER).collect();
                    let speaks_kad = info.protocols.contains(&KAD_PROTOCOL);
                    for addr in &addrs {
                        self.swarm.add_peer_address(peer_id, addr.clone());
                        if speaks_kad {
                            self.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
                        }
                    }
                    if !self.swarm.behaviour().guard.is_banned(&peer_id) {
                        self.redialer.learn(peer_id, &addrs, Instant::now());
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => {
                self.libp2p_metrics.record(&event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => {
                self.libp2p_metrics.record(&event);
                self.on_kad(event);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Status(event)) => {
                self.on_rpc(ReqRespProtocol::Status, event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::BlocksByRange(event)) => {
                self.on_rpc(ReqRespProtocol::BlocksByRange, event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::BlocksByRoot(event)) => {
                self.on_rpc(ReqRespProtocol::BlocksByRoot, event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Certificates(event)) => {
                self.on_rpc(ReqRespProtocol::Certificates, event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Votes(event)) => {
                self.on_rpc(ReqRespProtocol::Votes, event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::Blocked(never)) => match never {},
            SwarmEvent::ConnectionEstablished { peer_id, num_established, endpoint, .. }
                if num_established.get() == 1 && self.connected.insert(peer_id) =>
            {
                self.addresses.insert(peer_id, endpoint.get_remote_address().clone());
                self.metrics.peers.set(self.connected.len() as i64);
                self.redialer.connected(&peer_id, Instant::now());
                debug!(peer = %peer_id, "peer connected");
                self.emit(NetworkEvent::PeerConnected(peer_id), "peer");
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. }
                if self.connected.remove(&peer_id) =>
            {
                self.addresses.remove(&peer_id);
                self.metrics.peers.set(self.connected.len() as i64);
                self.redialer.disconnected(&peer_id, Instant::now());
                self.strikes.remove(&peer_id);
                debug!(peer = %peer_id, "peer disconnected");
                self.emit(NetworkEvent::PeerDisconnected(peer_id), "peer");
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listen_addrs.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
            }
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                warn!(?addresses, ?reason, "listener closed");
                self.listen_addrs.retain(|a| !addresses.contains(a));
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, %error, "outgoing connection failed");
            }
            _ => {}
        }
    }

    fn on_gossipsub(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message { propagation_source, message_id, message } = event else {
            return;
        };
        // The subscription filter only lets us join our own topics, so this parse succeeds for
        // every message we are handed; anything else is ignored rather than trusted.
        let Ok(topic) = GossipTopic::parse(message.topic.as_str()) else {
            self.report(&message_id, &propagation_source, ValidationOutcome::Ignore, "unknown");
            return;
        };
        let name = topic.kind.name();
        self.metrics.gossip(&name, GossipOutcome::Received);
        self.metrics.bytes("gossip", Direction::Inbound, message.data.len());
        let event = NetworkEvent::Gossip(GossipMessage {
            topic,
            data: message.data,
            peer: propagation_source,
            peer_addr: self.addresses.get(&propagation_source).cloned(),
            message_id: message_id.clone(),
        });
        if self.events.try_send(event).is_ok() {
            self.awaiting_verdict.insert(message_id, (name, Instant::now()));
        } else {
            // Full (or the node is gone): drop the message rather than queue it, and release it
            // from gossipsub's cache without blaming the sender.
            self.metrics.dropped_event("gossip");
            self.metrics.gossip(&name, GossipOutcome::Dropped);
            self.report(&message_id, &propagation_source, ValidationOutcome::Ignore, &name);
        }
    }

    fn on_rpc(
        &mut self,
        protocol: ReqRespProtocol,
        event: request_response::Event<Vec<u8>, Vec<ResponseChunk>>,
    ) {
        let name = protocol.name();
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.metrics.rpc(name, Direction::Inbound, "received");
                    self.metrics.bytes("rpc", Direction::Inbound, request.len());
                    self.on_inbound_request(peer, protocol, request, channel);
                }
                request_response::Message::Response { request_id, response } => {
                    self.metrics.rpc(name, Direction::Outbound, "success");
                    let len = response.iter().map(|c| c.payload.len()).sum();
                    self.metrics.bytes("rpc", Direction::Inbound, len);
                    if let Some(pending) = self.pending_requests.remove(&(protocol, request_id)) {
                        let _ = pending.reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                debug!(peer = %peer, protocol = name, %error, "outbound request failed");
                let (result, error) = match error {
                    OutboundFailure::Timeout => ("timeout", RequestError::Timeout),
                    OutboundFailure::DialFailure => ("dial_failure", RequestError::DialFailure),
                    OutboundFailure::ConnectionClosed => ("closed", RequestError::ConnectionClosed),
                    OutboundFailure::UnsupportedProtocols => {
                        ("unsupported", RequestError::UnsupportedProtocol(protocol))
                    }
                    OutboundFailure::Io(e) => ("io", RequestError::Stream(e.to_string())),
                };
                self.metrics.rpc(name, Direction::Outbound, result);
                if let Some(pending) = self.pending_requests.remove(&(protocol, request_id)) {
                    let _ = pending.reply.send(Err(error));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(peer = %peer, protocol = name, %error, "inbound request failed");
                self.metrics.rpc(name, Direction::Inbound, "failed");
            }
            request_response::Event::ResponseSent { .. } => {
                self.metrics.rpc(name, Direction::Inbound, "answered");
            }
        }
    }

    fn on_inbound_request(
        &mut self,
        peer: PeerId,
        protocol: ReqRespProtocol,
        request: Vec<u8>,
        channel: ResponseChannel<Vec<ResponseChunk>>,
    ) {
        if self.pending_responses.len() >= self.config.max_pending_inbound_requests {
            self.metrics.dropped_event("request");
            let busy = vec![ResponseChunk::error(ResponseCode::ServerError, "node overloaded")];
            let _ = self.swarm.behaviour_mut().rpc_mut(protocol).send_response(channel, busy);
            return;
        }
        let (tx, rx) = oneshot::channel();
        let timeout = self.config.request_timeout;
        self.pending_responses.push(Box::pin(async move {
            let chunks = tokio::time::timeout(timeout, rx).await.ok().and_then(Result::ok);
            (protocol, channel, chunks)
        }));
        let event = NetworkEvent::Request(InboundRequest {
            peer,
            protocol,
            request,
            responder: Responder { tx },
        });
        // If the queue is full the event (and its responder) is dropped, which resolves the
        // pending response above into a server error.
        self.emit(event, "request");
    }

    fn send_response(
        &mut self,
        protocol: ReqRespProtocol,
        channel: ResponseChannel<Vec<ResponseChunk>>,
        chunks: Option<Vec<ResponseChunk>>,
    ) {
        let limits: RpcLimits = self.config.rpc_limits;
        let chunks = match chunks {
            Some(chunks) => match crate::rpc::check_response(&limits, protocol, &chunks) {
                Ok(()) => chunks,
                Err(reason) => {
                    warn!(protocol = protocol.name(), %reason, "node produced an invalid response");
                    vec![ResponseChunk::error(ResponseCode::ServerError, "invalid response")]
                }
            },
            None => vec![ResponseChunk::error(ResponseCode::ServerError, "no response")],
        };
        let len = chunks.iter().map(|c| c.payload.len()).sum();
        self.metrics.bytes("rpc", Direction::Outbound, len);
        // Fails only if the stream is already gone (peer left or timed out).
        let _ = self.swarm.behaviour_mut().rpc_mut(protocol).send_response(channel, chunks);
    }

    fn emit(&mut self, event: NetworkEvent, kind: &'static str) {
        if self.events.try_send(event).is_err() {
            self.metrics.dropped_event(kind);
        }
    }

    /// One strike against `peer`; the last one bans it.
    fn strike(&mut self, peer: PeerId, reason: &str) {
        let strikes = self.strikes.entry(peer).or_insert(0);
        *strikes = strikes.saturating_add(1);
        debug!(%peer, %reason, strikes = *strikes, "peer reported");
        if *strikes >= self.config.scoring.max_strikes {
            self.strikes.remove(&peer);
            warn!(%peer, %reason, "banning a peer that kept answering with garbage");
            self.ban(peer);
        }
    }

    /// Disconnects `peer` and bans it (and the addresses it was seen on) for the ban duration.
    fn ban(&mut self, peer: PeerId) {
        let behaviour = self.swarm.behaviour_mut();
        // The guard bans the addresses the peer was seen on too, and keeps the ban in the ban
        // file; then the block list disconnects it.
        behaviour.guard.ban(peer, self.config.scoring.ban_duration);
        behaviour.blocked.block_peer(peer);
        behaviour.kad.remove_peer(&peer);
        self.redialer.forget(&peer);
    }

    /// Disconnects and bans peers whose score fell below the threshold; lifts expired bans.
    fn check_scores(&mut self) {
        let threshold = self.config.scoring.disconnect_threshold;
        let low: Vec<(PeerId, f64)> = self
            .connected
            .iter()
            .filter_map(|peer| {
                let score = self.swarm.behaviour().gossipsub.peer_score(peer)?;
                (score < threshold).then_some((*peer, score))
            })
            .collect();
        for (peer, score) in low {
            warn!(peer = %peer, score, "disconnecting peer for low gossip score");
            self.metrics.score_disconnects.inc();
            self.ban(peer);
        }
        for peer in self.swarm.behaviour_mut().guard.expire() {
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
    }

    fn purge_stale_verdicts(&mut self) {
        let gossip = &self.config.gossip;
        // Twice the time gossipsub keeps a message waiting for its verdict.
        let beats =
            u32::try_from(gossip.history_length).unwrap_or(u32::MAX).saturating_mul(2).max(2);
        let ttl = gossip.heartbeat_interval.saturating_mul(beats);
        let now = Instant::now();
        self.awaiting_verdict.retain(|_, (_, since)| now.duration_since(*since) < ttl);
    }

    /// Peers learned from Kademlia: kept for dialling (while we are below the target).
    fn on_kad(&mut self, event: kad::Event) {
        let now = Instant::now();
        match event {
            kad::Event::RoutingUpdated { peer, addresses, .. }
                if !self.swarm.behaviour().guard.is_banned(&peer)
                    && peer != *self.swarm.local_peer_id() =>
            {
                self.redialer.learn(peer, &addresses.into_vec(), now);
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                ..
            } => {
                for info in ok.peers {
                    if !self.swarm.behaviour().guard.is_banned(&info.peer_id)
                        && info.peer_id != *self.swarm.local_peer_id()
                    {
                        self.redialer.learn(info.peer_id, &info.addrs, now);
                    }
                }
            }
            _ => {}
        }
    }

    /// Redials what is due (bootnodes always; other peers while below the target) and looks
    /// for more peers while below the target.
    fn maintain_peers(&mut self) {
        let now = Instant::now();
        let below_target = self.connected.len() < self.config.target_peers;
        let (connected, guard) = (&self.connected, &self.swarm.behaviour().guard);
        let (bootnodes, peers) = self
            .redialer
            .due(now, |p| connected.contains(p) || guard.is_banned(p) || !below_target);
        for addr in bootnodes {
            if let Err(error) = self.swarm.dial(addr.clone()) {
                debug!(%addr, %error, "bootnode dial failed");
            }
        }
        for (peer, addrs) in peers {
            let opts = DialOpts::peer_id(peer).addresses(addrs).build();
            if let Err(error) = self.swarm.dial(opts) {
                debug!(%peer, %error, "redial failed");
            }
        }
        let lookup_due = self
            .last_lookup
            .is_none_or(|t| now.duration_since(t) >= self.config.discovery_interval);
        if below_target && lookup_due && !self.connected.is_empty() {
            self.last_lookup = Some(now);
            self.swarm.behaviour_mut().kad.get_closest_peers(PeerId::random());
        }
    }
}
