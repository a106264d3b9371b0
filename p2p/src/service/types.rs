//! What crosses the boundary between the network task and the node: events up, verdicts and
//! responses back, and the errors the handle returns.

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use crate::codec::{ResponseChunk, ResponseCode};
use crate::rpc::ReqRespProtocol;
use crate::topic::GossipTopic;

/// Something the node must act on.
#[derive(Debug)]
pub enum NetworkEvent {
    /// A gossip message waiting for a verdict: report it with
    /// [`crate::NetworkHandle::report_validation`] (nothing is forwarded until then; unreported
    /// messages expire from the cache after a few heartbeats).
    Gossip(GossipMessage),
    /// A peer's request; answer it through the responder.
    Request(InboundRequest),
    /// First connection to a peer opened. Peer events are dropped (and counted) if the queue
    /// is full; [`crate::NetworkHandle::connected_peers`] is the authoritative view.
    PeerConnected(PeerId),
    /// Last connection to a peer closed.
    PeerDisconnected(PeerId),
}

/// A received gossip message, decompressed once.
#[derive(Debug, Clone)]
pub struct GossipMessage {
    pub topic: GossipTopic,
    /// The SSZ bytes (snappy already removed, at most 10 MiB).
    pub data: Vec<u8>,
    /// The peer that forwarded it to us: the one the verdict is charged to.
    pub peer: PeerId,
    /// The remote address of our connection to `peer` (`None` if it closed meanwhile). The
    /// transport authenticated `peer`, so this is where that peer's node is, not where the
    /// message's author is: gossip is relayed.
    pub peer_addr: Option<Multiaddr>,
    pub message_id: MessageId,
}

/// The node's verdict on a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationOutcome {
    /// Valid: forward it to the mesh.
    Accept,
    /// Not forwarded, sender not penalised (duplicates, too old or too new, cannot judge yet).
    Ignore,
    /// Not forwarded, sender penalised (bad signature, bad SSZ, non-member): only what the
    /// sender is answerable for.
    Reject,
}

impl From<ValidationOutcome> for MessageAcceptance {
    fn from(outcome: ValidationOutcome) -> Self {
        match outcome {
            ValidationOutcome::Accept => MessageAcceptance::Accept,
            ValidationOutcome::Ignore => MessageAcceptance::Ignore,
            ValidationOutcome::Reject => MessageAcceptance::Reject,
        }
    }
}

/// A request from a peer.
#[derive(Debug)]
pub struct InboundRequest {
    pub peer: PeerId,
    pub protocol: ReqRespProtocol,
    /// The SSZ request body.
    pub request: Vec<u8>,
    pub responder: Responder,
}

/// Answers one inbound request. Dropping it unanswered (or not answering within the request
/// timeout) sends the peer a server error.
#[derive(Debug)]
pub struct Responder {
    pub(crate) tx: oneshot::Sender<Vec<ResponseChunk>>,
}

impl Responder {
    /// Sends the response chunks (zero or more). Returns false if the request is gone (timed
    /// out or the connection closed).
    pub fn respond(self, chunks: Vec<ResponseChunk>) -> bool {
        self.tx.send(chunks).is_ok()
    }

    /// Answers with one error chunk.
    pub fn respond_error(self, code: ResponseCode, message: &str) -> bool {
        self.respond(vec![ResponseChunk::error(code, message)])
    }
}

/// Errors of the network handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("network command queue is full: the network task is overloaded, retry later")]
    Busy,
    #[error("network service has stopped")]
    Stopped,
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("subscription refused: {0}")]
    Subscribe(String),
    #[error("dial failed: {0}")]
    Dial(String),
}

/// Why an outbound request produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("request of {len} bytes exceeds the {protocol} limit of {max}")]
    TooLarge { protocol: ReqRespProtocol, len: usize, max: usize },
    #[error("request timed out")]
    Timeout,
    #[error("could not dial the peer")]
    DialFailure,
    #[error("connection closed before the response arrived")]
    ConnectionClosed,
    #[error("peer does not support {0}")]
    UnsupportedProtocol(ReqRespProtocol),
    #[error("stream error: {0}")]
    Stream(String),
}
