//! Req/resp: the SSZ messages of the sync protocols, and this node's answers to peers.
//!
//! | protocol | request | response chunks |
//! |---|---|---|
//! | `status` | `StatusMessage` (ours) | one `StatusMessage` (theirs) |
//! | `blocks_by_range` | `BlocksByRangeRequest{start_height, count}` | finalized `Block`s in height order, stopping at the first gap |
//! | `blocks_by_root` | `BlocksByRootRequest{roots}` | the `Block`s we hold, in request order, unknown roots skipped |
//! | `certificates` | `CertificatesRequest{epoch, from_view}` | stored `Certificate`s of that epoch with `view >= from_view`, in view order, at most [`MAX_CERTIFICATES_PER_RESPONSE`] (the newest) |
//!
//! A node that is behind asks a peer's status, then the peer's certificates of its own epoch
//! from its own view on: a finalization certificate among them moves its engine to that view
//! and makes it fetch the missing ancestors by root. One epoch at a time, because a
//! certificate can only be checked with its epoch's keys.

use avs_consensus::ssz_check::{Shape, SszShape};
use avs_consensus::types::{Block, Certificate, Root, decode, encode};
use avs_p2p::{ReqRespProtocol, ResponseChunk, ResponseCode};
use ssz_rs::prelude::*;

use crate::chain_store::ChainStore;

/// Most blocks one `blocks_by_range` or `blocks_by_root` response carries.
pub const MAX_BLOCKS_PER_RESPONSE: u64 = 64;
/// Most certificates one `certificates` response carries.
pub const MAX_CERTIFICATES_PER_RESPONSE: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct StatusMessage {
    pub epoch: u64,
    pub view: u64,
    pub finalized_height: u64,
    pub finalized_root: Root,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct BlocksByRangeRequest {
    pub start_height: u64,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct BlocksByRootRequest {
    pub roots: List<Root, 64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct CertificatesRequest {
    pub epoch: u64,
    pub from_view: u64,
}

// Shapes for the strict decoder (`avs_consensus::types::decode` checks layout before ssz_rs).
impl SszShape for StatusMessage {
    fn shape() -> Shape {
        Shape::Fixed(8 + 8 + 8 + 32)
    }
}
impl SszShape for BlocksByRangeRequest {
    fn shape() -> Shape {
        Shape::Fixed(16)
    }
}
impl SszShape for CertificatesRequest {
    fn shape() -> Shape {
        Shape::Fixed(16)
    }
}
impl SszShape for BlocksByRootRequest {
    fn shape() -> Shape {
        Shape::Container(vec![Shape::List(Box::new(Shape::Fixed(32)), 64)])
    }
}

/// Answers one inbound request from what this node stores. `status` is ours, read by the caller
/// from the engine. Malformed requests get INVALID_REQUEST with the reason; store failures get
/// SERVER_ERROR.
pub fn answer(
    chain: &ChainStore,
    protocol: ReqRespProtocol,
    request: &[u8],
    status: &StatusMessage,
) -> Vec<ResponseChunk> {
    match try_answer(chain, protocol, request, status) {
        Ok(chunks) => chunks,
        Err(Refusal::Invalid(reason)) => {
            vec![ResponseChunk::error(ResponseCode::InvalidRequest, &reason)]
        }
        Err(Refusal::Server(reason)) => {
            tracing::warn!(protocol = protocol.name(), %reason, "cannot answer a peer's request");
            vec![ResponseChunk::error(ResponseCode::ServerError, "internal error")]
        }
    }
}

enum Refusal {
    Invalid(String),
    Server(String),
}

fn invalid(e: impl std::fmt::Display) -> Refusal {
    Refusal::Invalid(e.to_string())
}

fn server(e: impl std::fmt::Display) -> Refusal {
    Refusal::Server(e.to_string())
}

fn encode_all<T: SimpleSerialize>(items: &[T]) -> Result<Vec<ResponseChunk>, Refusal> {
    items.iter().map(|item| encode(item).map(ResponseChunk::success).map_err(server)).collect()
}

fn try_answer(
    chain: &ChainStore,
    protocol: ReqRespProtocol,
    request: &[u8],
    status: &StatusMessage,
) -> Result<Vec<ResponseChunk>, Refusal> {
    match protocol {
        ReqRespProtocol::Status => {
            decode::<StatusMessage>(request).map_err(invalid)?;
            encode_all(std::slice::from_ref(status))
        }
        ReqRespProtocol::BlocksByRange => {
            let req = decode::<BlocksByRangeRequest>(request).map_err(invalid)?;
            if req.count == 0 || req.count > MAX_BLOCKS_PER_RESPONSE {
                return Err(invalid(format!(
                    "count must be 1..={MAX_BLOCKS_PER_RESPONSE}, got {}",
                    req.count
                )));
            }
            let blocks = chain.finalized_range(req.start_height, req.count).map_err(server)?;
            encode_all(&blocks)
        }
        ReqRespProtocol::BlocksByRoot => {
            let req = decode::<BlocksByRootRequest>(request).map_err(invalid)?;
            let mut blocks: Vec<Block> = Vec::new();
            for root in req.roots.iter() {
                if let Some(block) = chain.block(root).map_err(server)? {
                    blocks.push(block);
                }
            }
            encode_all(&blocks)
        }
        ReqRespProtocol::Certificates => {
            let req = decode::<CertificatesRequest>(request).map_err(invalid)?;
            let mut certs: Vec<Certificate> = chain
                .certificates_of_epoch(req.epoch)
                .map_err(server)?
                .into_iter()
                .filter(|c| c.data.view >= req.from_view)
                .collect();
            let excess = certs.len().saturating_sub(MAX_CERTIFICATES_PER_RESPONSE);
            certs.drain(..excess);
            encode_all(&certs)
        }
    }
}

/// Decodes the success chunks of a response, refusing the whole response on any error chunk
/// or undecodable payload (the peer is then not asked again for this).
pub fn decode_chunks<T: SimpleSerialize + SszShape>(
    chunks: Vec<ResponseChunk>,
) -> anyhow::Result<Vec<T>> {
    chunks
        .into_iter()
        .map(|chunk| match chunk.code {
            ResponseCode::Success => {
                decode::<T>(&chunk.payload).map_err(|e| anyhow::anyhow!("{e}"))
            }
            code => Err(anyhow::anyhow!(
                "peer answered {code:?}: {}",
                String::from_utf8_lossy(&chunk.payload)
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::sync::Arc;

    fn chain() -> ChainStore {
        ChainStore::new(Arc::new(MemoryStore::new()))
    }

    #[test]
    fn malformed_and_oversized_requests_are_invalid_requests() {
        let status = StatusMessage::default();
        for (protocol, request) in [
            (ReqRespProtocol::Status, vec![1, 2, 3]),
            (
                ReqRespProtocol::BlocksByRange,
                encode(&BlocksByRangeRequest { start_height: 0, count: 0 }).unwrap(),
            ),
            (
                ReqRespProtocol::BlocksByRange,
                encode(&BlocksByRangeRequest { start_height: 0, count: 1000 }).unwrap(),
            ),
            (ReqRespProtocol::Certificates, vec![0; 3]),
            (ReqRespProtocol::BlocksByRoot, vec![0xff; 5]),
        ] {
            let chunks = answer(&chain(), protocol, &request, &status);
            assert_eq!(chunks.len(), 1, "{protocol}");
            assert_eq!(chunks[0].code, ResponseCode::InvalidRequest, "{protocol}");
        }
    }

    #[test]
    fn status_answers_ours_and_unknown_data_answers_nothing() {
        let ours =
            StatusMessage { epoch: 1, view: 7, finalized_height: 3, finalized_root: [9; 32] };
        let request = encode(&StatusMessage::default()).unwrap();
        let chunks = answer(&chain(), ReqRespProtocol::Status, &request, &ours);
        assert_eq!(decode_chunks::<StatusMessage>(chunks).unwrap(), vec![ours.clone()]);

        let range = encode(&BlocksByRangeRequest { start_height: 1, count: 8 }).unwrap();
        assert!(answer(&chain(), ReqRespProtocol::BlocksByRange, &range, &ours).is_empty());
        let roots = BlocksByRootRequest { roots: List::try_from(vec![[1u8; 32]]).unwrap() };
        let roots = encode(&roots).unwrap();
        assert!(answer(&chain(), ReqRespProtocol::BlocksByRoot, &roots, &ours).is_empty());
    }

    #[test]
    fn error_chunks_fail_decoding() {
        let chunks = vec![ResponseChunk::error(ResponseCode::ResourceUnavailable, "gone")];
        let err = decode_chunks::<StatusMessage>(chunks).unwrap_err().to_string();
        assert!(err.contains("gone"), "{err}");
    }
}
