//! The composed libp2p behaviour and the gossipsub configuration and scoring it runs with.
//!
//! Gossipsub is anonymous (no author, sequence number or signature: authenticity comes from the
//! BLS signatures inside the payloads) with `validate_messages()`, so nothing is forwarded
//! until the node reports a verdict. Scoring is on: each of our topics gets parameters whose
//! invalid-message penalty (P4, the square of the number of rejected messages) dominates
//! everything a peer can earn, so a peer that keeps sending rejected messages falls through the
//! gossip, publish and graylist thresholds and, below the configured disconnect threshold, is
//! disconnected by the service.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    StreamProtocol, allow_block_list, connection_limits, gossipsub, identify, kad, ping,
    request_response,
};
use prometheus_client::registry::Registry;

use crate::config::{NetworkConfig, ScoringConfig};
use crate::gossip::{SnappyTransform, gossipsub_message_id};
use crate::rpc::{ReqRespProtocol, RpcCodec};
use crate::service::guard::AddressGuard;
use crate::topic::AvsTopicFilter;

/// Agent and protocol version announced through identify.
const IDENTIFY_PROTOCOL: &str = "/avs/id/1.0.0";
/// The Kademlia protocol peers are discovered with (service::discovery).
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/avs/kad/1.0.0");

pub(crate) type Gossipsub = gossipsub::Behaviour<SnappyTransform, AvsTopicFilter>;
pub(crate) type Rpc = request_response::Behaviour<RpcCodec>;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) guard: AddressGuard,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) gossipsub: Gossipsub,
    pub(crate) status: Rpc,
    pub(crate) blocks_by_range: Rpc,
    pub(crate) blocks_by_root: Rpc,
    pub(crate) certificates: Rpc,
    pub(crate) votes: Rpc,
}

/// Why the behaviour could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum BehaviourError {
    #[error("invalid gossipsub configuration: {0}")]
    Gossipsub(String),
}

impl Behaviour {
    pub(crate) fn new(
        keypair: &Keypair,
        config: &NetworkConfig,
        registry: &mut Registry,
    ) -> Result<Self, BehaviourError> {
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(config.max_connections))
            .with_max_established_per_peer(Some(config.max_connections_per_peer))
            .with_max_pending_incoming(Some(config.max_pending_connections))
            .with_max_pending_outgoing(Some(config.max_pending_connections));

        let mut gossipsub = gossipsub::Behaviour::new_with_subscription_filter_and_transform(
            gossipsub::MessageAuthenticity::Anonymous,
            gossipsub_config(config)?,
            AvsTopicFilter::new(config.network_digest, config.vote_subnet_count),
            SnappyTransform::new(config.gossip_limits),
        )
        .map_err(|e| BehaviourError::Gossipsub(e.to_owned()))?
        .with_metrics(registry.sub_registry_with_prefix("libp2p_gossipsub"), Default::default());
        gossipsub
            .with_peer_score(peer_score_params(), peer_score_thresholds())
            .map_err(BehaviourError::Gossipsub)?;

        let rpc = |protocol: ReqRespProtocol| {
            request_response::Behaviour::with_codec(
                RpcCodec::new(config.rpc_limits),
                [(protocol, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(config.request_timeout)
                    .with_max_concurrent_streams(config.max_concurrent_streams),
            )
        };

        let local = keypair.public().to_peer_id();
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_periodic_bootstrap_interval(Some(config.discovery_interval * 12));
        let mut kad =
            kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), kad_config);
        // Answer queries even before any address of ours is confirmed external (on a private
        // network or loopback it never is).
        kad.set_mode(Some(kad::Mode::Server));

        // The operator set's peers are neither counted nor refused by the general limits: the
        // slots a sybil flood can fill are not the ones the committee needs.
        let mut limits = connection_limits::Behaviour::new(limits);
        for peer in &config.trusted_peers {
            limits.bypass_peer_id(peer);
        }

        Ok(Self {
            guard: AddressGuard::new(config.guard.clone(), config.trusted_peers.iter().copied()),
            limits,
            blocked: Default::default(),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), keypair.public())
                    .with_agent_version(format!("avs-node/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
            kad,
            gossipsub,
            status: rpc(ReqRespProtocol::Status),
            blocks_by_range: rpc(ReqRespProtocol::BlocksByRange),
            blocks_by_root: rpc(ReqRespProtocol::BlocksByRoot),
            certificates: rpc(ReqRespProtocol::Certificates),
            votes: rpc(ReqRespProtocol::Votes),
        })
    }

    pub(crate) fn rpc_mut(&mut self, protocol: ReqRespProtocol) -> &mut Rpc {
        match protocol {
            ReqRespProtocol::Status => &mut self.status,
            ReqRespProtocol::BlocksByRange => &mut self.blocks_by_range,
            ReqRespProtocol::BlocksByRoot => &mut self.blocks_by_root,
            ReqRespProtocol::Certificates => &mut self.certificates,
            ReqRespProtocol::Votes => &mut self.votes,
        }
    }
}

fn gossipsub_config(config: &NetworkConfig) -> Result<gossipsub::Config, BehaviourError> {
    let gossip = &config.gossip;
    // gossipsub's builder checks these only for per-topic overrides, not for the defaults.
    let ordered = gossip.mesh_outbound_min <= gossip.mesh_n_low
        && gossip.mesh_n_low <= gossip.mesh_n
        && gossip.mesh_n <= gossip.mesh_n_high
        && gossip.mesh_outbound_min * 2 <= gossip.mesh_n;
    if !ordered {
        return Err(BehaviourError::Gossipsub(
            "mesh sizes must satisfy 2·outbound_min <= n, outbound_min <= n_low <= n <= n_high"
                .into(),
        ));
    }
    if gossip.heartbeat_interval.is_zero() {
        return Err(BehaviourError::Gossipsub("heartbeat interval must be positive".into()));
    }
    gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(gossipsub_message_id)
        .heartbeat_interval(gossip.heartbeat_interval)
        // gossipsub waits 5 s for its first heartbeat by default; one interval is enough for
        // subscriptions to be exchanged, and meshes form that much sooner after start.
        .heartbeat_initial_delay(gossip.heartbeat_interval)
        .mesh_n(gossip.mesh_n)
        .mesh_n_low(gossip.mesh_n_low)
        .mesh_n_high(gossip.mesh_n_high)
        .mesh_outbound_min(gossip.mesh_outbound_min)
        .history_length(gossip.history_length)
        .history_gossip(gossip.history_gossip)
        .duplicate_cache_time(gossip.duplicate_cache_time)
        // The largest payload of any topic, compressed in snappy's worst case, plus protobuf
        // framing.
        .max_transmit_size(snap::raw::max_compress_len(config.gossip_limits.largest()) + 1024)
        .build()
        .map_err(|e| BehaviourError::Gossipsub(e.to_string()))
}

fn peer_score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        // Operators often share hosting providers and tests run on one address: IP
        // colocation is not evidence of a Sybil attack here.
        ip_colocation_factor_weight: 0.0,
        topic_score_cap: 50.0,
        // No application score yet: keep it out of the sum.
        app_specific_weight: 0.0,
        // Broken IWANT promises and early re-GRAFTs happen to honest peers that are merely slow
        // (a busy validator, a short message cache): only a sustained pattern is misbehaviour,
        // as in Lighthouse's parameters.
        behaviour_penalty_threshold: 6.0,
        decay_interval: Duration::from_secs(1),
        ..Default::default()
    }
}

fn peer_score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 100.0,
        opportunistic_graft_threshold: 5.0,
    }
}

/// Scoring parameters of one of our topics. Only the invalid-message penalty and a small
/// time-in-mesh reward are on: delivery-rate penalties (P3) assume steady traffic, which a
/// quiet committee does not have.
pub(crate) fn topic_score_params(scoring: &ScoringConfig) -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(600)),
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: scoring.invalid_message_weight,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(
            3600,
        )),
        ..Default::default()
    }
}
