//! Network configuration. The node fills this from its CLI/config file; tests shorten the
//! gossipsub heartbeat so meshes form quickly.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};

use crate::codec::MAX_PAYLOAD_SIZE;
use crate::rpc::RpcLimits;
pub use crate::service::guard::GuardConfig;
use crate::topic::{NetworkDigest, TopicKind};

/// Where the node's libp2p identity comes from.
#[derive(Debug, Clone)]
pub enum NodeKeySource {
    /// Load the key at this path, or generate and store one (mode 0600) if there is none, so the
    /// peer id is stable across restarts.
    File(PathBuf),
    /// Use this key (tests, or a node that manages keys itself).
    Provided(Box<Keypair>),
}

/// Gossipsub mesh parameters.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub heartbeat_interval: Duration,
    pub mesh_n: usize,
    pub mesh_n_low: usize,
    pub mesh_n_high: usize,
    pub mesh_outbound_min: usize,
    /// Heartbeats a message stays in the cache (and so can still be validated and forwarded).
    pub history_length: usize,
    pub history_gossip: usize,
    /// How long seen message ids are remembered to drop duplicates.
    pub duplicate_cache_time: Duration,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(700),
            mesh_n: 8,
            mesh_n_low: 6,
            mesh_n_high: 12,
            mesh_outbound_min: 2,
            history_length: 6,
            history_gossip: 3,
            duplicate_cache_time: Duration::from_secs(120),
        }
    }
}

/// The largest decompressed payload each topic may carry. The network knows nothing of the
/// messages' types, so the node fills these from its own (a vote has one fixed size); the
/// snappy transform refuses a payload whose preamble declares more **before** decompressing
/// it, and gossipsub charges the sender an invalid-message penalty for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipSizeLimits {
    pub block: usize,
    pub vote: usize,
    pub certificate: usize,
    pub checkin: usize,
    pub task: usize,
}

impl GossipSizeLimits {
    /// Every topic at the protocol-wide maximum ([`MAX_PAYLOAD_SIZE`]).
    pub const fn uniform() -> Self {
        Self {
            block: MAX_PAYLOAD_SIZE,
            vote: MAX_PAYLOAD_SIZE,
            certificate: MAX_PAYLOAD_SIZE,
            checkin: MAX_PAYLOAD_SIZE,
            task: MAX_PAYLOAD_SIZE,
        }
    }

    /// The limit of a topic of this kind.
    pub fn of(&self, kind: TopicKind) -> usize {
        match kind {
            TopicKind::Block => self.block,
            TopicKind::Vote { .. } => self.vote,
            TopicKind::Certificate => self.certificate,
            TopicKind::Checkin => self.checkin,
            TopicKind::Task => self.task,
        }
    }

    /// The largest of them (what one gossipsub frame must be able to carry).
    pub fn largest(&self) -> usize {
        self.block.max(self.vote).max(self.certificate).max(self.checkin).max(self.task)
    }
}

impl Default for GossipSizeLimits {
    fn default() -> Self {
        Self::uniform()
    }
}

/// When a peer's gossipsub score gets it disconnected.
#[derive(Debug, Clone)]
pub struct ScoringConfig {
    /// A connected peer whose score falls below this is disconnected and banned. It sits
    /// between gossipsub's publish (-50) and graylist (-80) thresholds: a graylisted peer's
    /// messages are no longer even read, so it could never be penalised further and would
    /// hold a connection slot forever if the disconnect threshold were lower.
    pub disconnect_threshold: f64,
    /// How long a peer disconnected for its score may not reconnect.
    pub ban_duration: Duration,
    /// How often scores are checked.
    pub check_interval: Duration,
    /// Reports of garbage req/resp answers (`NetworkHandle::report_peer`) that ban a peer.
    pub max_strikes: u32,
    /// Weight of one invalid (rejected) message in a topic's P4 penalty (negative; the
    /// penalty grows with the square of the count). With -20 and positive topic scores capped
    /// at 50, two rejections (-80) disconnect a new peer and three (-180) any peer.
    pub invalid_message_weight: f64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            disconnect_threshold: -60.0,
            ban_duration: Duration::from_secs(600),
            check_interval: Duration::from_secs(1),
            max_strikes: 3,
            invalid_message_weight: -20.0,
        }
    }
}

/// Everything the network service needs.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub node_key: NodeKeySource,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/udp/9000/quic-v1` and
    /// `/ip4/0.0.0.0/tcp/9000`.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers dialled at start and redialled while disconnected.
    pub bootnodes: Vec<Multiaddr>,
    pub network_digest: NetworkDigest,
    /// Number of vote subnets; the subscription filter admits `vote_0 .. vote_{n-1}`.
    pub vote_subnet_count: u64,
    pub gossip: GossipConfig,
    /// Largest payload per topic, checked before decompression.
    pub gossip_limits: GossipSizeLimits,
    pub scoring: ScoringConfig,
    pub rpc_limits: RpcLimits,
    /// Upper bound of any outbound request's timeout, and how long an inbound request may wait
    /// for its response.
    pub request_timeout: Duration,
    /// Most concurrent req/resp streams per connection and protocol.
    pub max_concurrent_streams: usize,
    /// Most inbound requests waiting on the node for a response; beyond it requests are
    /// answered with a server error at once.
    pub max_pending_inbound_requests: usize,
    /// Most established connections in total.
    pub max_connections: u32,
    /// Most connections still being set up, per direction.
    pub max_pending_connections: u32,
    /// Most connections to one peer (a QUIC and a TCP dial can race).
    pub max_connections_per_peer: u32,
    /// Peers that the connection limits neither count nor refuse (the operator set's nodes).
    pub trusted_peers: Vec<PeerId>,
    /// Inbound connections per IP and bans by address, kept across restarts.
    pub guard: GuardConfig,
    pub idle_connection_timeout: Duration,
    /// The longest redial back-off (bootnodes and lost peers start at 1 s and double).
    pub bootnode_redial_interval: Duration,
    /// Connections the node looks for peers to reach; below it a discovery lookup runs every
    /// `discovery_interval`.
    pub target_peers: usize,
    pub discovery_interval: Duration,
    /// Capacity of the handle → service command channel.
    pub command_channel_capacity: usize,
    /// Capacity of the service → node event channel.
    pub event_channel_capacity: usize,
}

impl NetworkConfig {
    /// Defaults for a network with the given digest and node key.
    pub fn new(network_digest: NetworkDigest, node_key: NodeKeySource) -> Self {
        Self {
            node_key,
            listen_addrs: Vec::new(),
            bootnodes: Vec::new(),
            network_digest,
            vote_subnet_count: 1,
            gossip: GossipConfig::default(),
            gossip_limits: GossipSizeLimits::default(),
            scoring: ScoringConfig::default(),
            rpc_limits: RpcLimits::default(),
            request_timeout: Duration::from_secs(10),
            max_concurrent_streams: 64,
            max_pending_inbound_requests: 256,
            max_connections: 128,
            max_pending_connections: 32,
            max_connections_per_peer: 2,
            trusted_peers: Vec::new(),
            guard: GuardConfig::default(),
            idle_connection_timeout: Duration::from_secs(60),
            bootnode_redial_interval: Duration::from_secs(30),
            target_peers: 32,
            discovery_interval: Duration::from_secs(5),
            command_channel_capacity: 1024,
            event_channel_capacity: 4096,
        }
    }
}
