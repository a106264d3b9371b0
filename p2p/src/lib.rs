//! avs-p2p: the libp2p networking of avs-node.
//!
//! It owns the libp2p `Swarm` (QUIC, with TCP + noise + yamux as fallback; identify; ping;
//! gossipsub; three req/resp protocols; connection limits) in one tokio task, and gives the
//! node a cloneable [`NetworkHandle`] and a bounded stream of [`NetworkEvent`]s. It knows
//! nothing of consensus: it hands raw gossip up and takes verdicts back.
//!
//! # How a gossip message travels
//!
//! 1. **Socket to gossipsub.** A peer's RPC arrives on a QUIC or TCP/noise/yamux stream.
//!    gossipsub checks the topic against [`AvsTopicFilter`] (our network digest only) and the
//!    message is anonymous (no author, seqno or signature; payloads carry BLS signatures).
//! 2. **Decompress once.** The snappy transform reads the raw block's preamble, refuses more
//!    than the topic's limit ([`GossipSizeLimits`]: a vote's exact size, a block's 10 MiB)
//!    *before allocating*, and decompresses. Invalid snappy fails here: the message
//!    is dropped, never forwarded, and the sender takes an invalid-message score penalty.
//! 3. **Message id.** `SHA256(0x01000000 ‖ u64_le(len(topic)) ‖ topic ‖ data)[..20]` over the
//!    decompressed data (see [`gossip`]); duplicates are dropped by id.
//! 4. **Hand-off.** The network task parses the topic into a [`GossipTopic`] and sends
//!    [`NetworkEvent::Gossip`] `{ topic, data, peer, message_id }` to the node. If the event
//!    queue is full the message is ignored and counted, never queued without bound.
//! 5. **Verdict back.** The node calls [`NetworkHandle::report_validation`] with
//!    Accept (forward to the mesh), Ignore (drop, no penalty) or Reject (drop and penalise the
//!    propagation source). Until then nothing is forwarded.
//! 6. **Penalise.** Rejections feed gossipsub's P4 penalty (quadratic in the count); a peer
//!    whose score falls below the disconnect threshold is disconnected and banned for a while.
//!
//! Publishing runs the other way: [`NetworkHandle::publish`] takes SSZ bytes, the transform
//! compresses them with raw snappy, and gossipsub sends them to the mesh.
//!
//! # Req/resp
//!
//! `/avs/req/{status|blocks_by_range|blocks_by_root|certificates|votes}/1/ssz_snappy`: a request is
//! `varint(len) ‖ snappy_frame(ssz)`, a response zero or more chunks
//! `code ‖ varint(len) ‖ snappy_frame(payload)` (see [`codec`] and [`rpc`]). Lengths are
//! checked before decompression; requests time out; inbound requests reach the node with a
//! [`Responder`] and are answered with a server error if it does not answer in time.
//!
//! # Modules
//!
//! [`codec`] (varint, snappy block and frame, req/resp chunks), [`gossip`] (message id,
//! transform), [`topic`], [`rpc`] (protocols, limits, stream codec), [`config`], [`keys`]
//! (node key on disk), `behaviour` (composition, gossipsub config and scoring), `metrics`,
//! `service` (the task and the handle).

mod behaviour;
pub mod codec;
pub mod config;
pub mod gossip;
pub mod keys;
mod metrics;
pub mod rpc;
mod service;
pub mod topic;

#[cfg(test)]
mod vector_tests;

pub use behaviour::BehaviourError;
pub use codec::{ResponseChunk, ResponseCode};
pub use config::{
    GossipConfig, GossipSizeLimits, GuardConfig, NetworkConfig, NodeKeySource, ScoringConfig,
};
pub use keys::{KeyError, load_or_generate_node_key};
pub use rpc::{ReqRespProtocol, RpcLimits};
pub use service::{
    GossipMessage, InboundRequest, NetworkError, NetworkEvent, NetworkHandle, NetworkService,
    RequestError, Responder, StartError, ValidationOutcome, spawn,
};
pub use topic::{AvsTopicFilter, GossipTopic, NetworkDigest, TopicError, TopicKind};

/// libp2p types that appear in this crate's API.
pub use libp2p::gossipsub::MessageId;
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};

/// The IP address in a multiaddr (its first `/ip4` or `/ip6` component), if any.
pub fn ip_of(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    addr.iter().find_map(|part| match part {
        libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip.into()),
        libp2p::multiaddr::Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}
pub use tokio_util::sync::CancellationToken;
