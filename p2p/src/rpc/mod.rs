//! Request/response protocols
//! `/avs/req/{status|blocks_by_range|blocks_by_root|certificates|votes}/1/ssz_snappy`.
//!
//! Each protocol runs as its own libp2p `request_response` behaviour (a request picks its
//! protocol by picking the behaviour), all sharing [`RpcCodec`]. A request is one
//! `varint ‖ frame` message; a response is zero or more chunks `code ‖ varint ‖ frame` ended by
//! the responder closing the stream. Sizes are bounded per protocol by [`RpcLimits`].

mod codec;

use std::fmt;

pub use codec::RpcCodec;
pub(crate) use codec::check_response;

use crate::codec::MAX_PAYLOAD_SIZE;

/// The req/resp protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReqRespProtocol {
    Status,
    BlocksByRange,
    /// Blocks by root: what a node fetches when a proposal or certificate names a block it
    /// does not hold.
    BlocksByRoot,
    Certificates,
    /// The verified votes a peer holds for one view: how a node that missed votes (or whose
    /// own vote never left it) repairs a stalled view without re-publishing anything.
    Votes,
}

impl ReqRespProtocol {
    pub const ALL: [ReqRespProtocol; 5] = [
        ReqRespProtocol::Status,
        ReqRespProtocol::BlocksByRange,
        ReqRespProtocol::BlocksByRoot,
        ReqRespProtocol::Certificates,
        ReqRespProtocol::Votes,
    ];

    /// The multistream protocol id.
    pub fn protocol_id(&self) -> &'static str {
        match self {
            ReqRespProtocol::Status => "/avs/req/status/1/ssz_snappy",
            ReqRespProtocol::BlocksByRange => "/avs/req/blocks_by_range/1/ssz_snappy",
            ReqRespProtocol::BlocksByRoot => "/avs/req/blocks_by_root/1/ssz_snappy",
            ReqRespProtocol::Certificates => "/avs/req/certificates/1/ssz_snappy",
            ReqRespProtocol::Votes => "/avs/req/votes/1/ssz_snappy",
        }
    }

    /// Short name for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            ReqRespProtocol::Status => "status",
            ReqRespProtocol::BlocksByRange => "blocks_by_range",
            ReqRespProtocol::BlocksByRoot => "blocks_by_root",
            ReqRespProtocol::Certificates => "certificates",
            ReqRespProtocol::Votes => "votes",
        }
    }
}

impl AsRef<str> for ReqRespProtocol {
    fn as_ref(&self) -> &str {
        self.protocol_id()
    }
}

impl fmt::Display for ReqRespProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.protocol_id())
    }
}

/// Size limits of req/resp messages; everything read is checked against them before
/// decompression, everything written before sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcLimits {
    /// Largest SSZ request body (requests are small: a status or a range).
    pub max_request_size: usize,
    /// Largest SSZ payload of one success chunk.
    pub max_chunk_size: usize,
    /// Most chunks in one blocks, certificates or votes response (status has one); a votes
    /// response holds up to three votes per operator of a 1024-operator set.
    pub max_response_chunks: usize,
    /// Most payload bytes in one whole response.
    pub max_response_bytes: usize,
}

impl Default for RpcLimits {
    fn default() -> Self {
        Self {
            max_request_size: 64 * 1024,
            max_chunk_size: MAX_PAYLOAD_SIZE,
            max_response_chunks: 3072,
            max_response_bytes: 4 * MAX_PAYLOAD_SIZE,
        }
    }
}

impl RpcLimits {
    /// Fewest chunks a complete response on `protocol` has: a status always answers.
    pub fn min_chunks(&self, protocol: ReqRespProtocol) -> usize {
        match protocol {
            ReqRespProtocol::Status => 1,
            ReqRespProtocol::BlocksByRange
            | ReqRespProtocol::BlocksByRoot
            | ReqRespProtocol::Certificates
            | ReqRespProtocol::Votes => 0,
        }
    }

    /// Most chunks a response on `protocol` may have.
    pub fn max_chunks(&self, protocol: ReqRespProtocol) -> usize {
        match protocol {
            ReqRespProtocol::Status => 1,
            ReqRespProtocol::BlocksByRange
            | ReqRespProtocol::BlocksByRoot
            | ReqRespProtocol::Certificates
            | ReqRespProtocol::Votes => self.max_response_chunks,
        }
    }
}
