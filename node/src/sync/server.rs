//! This node's answers to peers' requests: from the store (blocks, certificates) and from the
//! engine's pool (votes of a view). Malformed requests get INVALID_REQUEST with the reason;
//! store failures get SERVER_ERROR. Every answer is bounded (at most 64 blocks, 256
//! certificates, the votes of one view).

use avs_consensus::Engine;
use avs_consensus::types::{Block, decode, encode};
use avs_p2p::{ReqRespProtocol, ResponseChunk, ResponseCode};
use ssz_rs::prelude::SimpleSerialize;

use super::{
    BlocksByRangeRequest, BlocksByRootRequest, CertificatesRequest, MAX_BLOCKS_PER_RESPONSE,
    MAX_CERTIFICATES_PER_RESPONSE, StatusMessage, VotesRequest,
};
use crate::chain_store::ChainStore;

/// Our status, as a peer's `status` request is answered.
pub fn status_of(engine: &Engine) -> StatusMessage {
    let (finalized_root, finalized_height) = engine.finalized();
    StatusMessage { epoch: engine.epoch(), view: engine.view(), finalized_height, finalized_root }
}

/// Answers one inbound request.
pub fn answer(
    chain: &ChainStore,
    engine: &Engine,
    protocol: ReqRespProtocol,
    request: &[u8],
) -> Vec<ResponseChunk> {
    match try_answer(chain, engine, protocol, request) {
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
    engine: &Engine,
    protocol: ReqRespProtocol,
    request: &[u8],
) -> Result<Vec<ResponseChunk>, Refusal> {
    match protocol {
        ReqRespProtocol::Status => {
            decode::<StatusMessage>(request).map_err(invalid)?;
            encode_all(std::slice::from_ref(&status_of(engine)))
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
            let certs = chain
                .certificates_from(req.epoch, req.from_view, MAX_CERTIFICATES_PER_RESPONSE)
                .map_err(server)?;
            encode_all(&certs)
        }
        ReqRespProtocol::Votes => {
            let req = decode::<VotesRequest>(request).map_err(invalid)?;
            encode_all(&engine.votes_of(req.epoch, req.view))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::MemoryStore;
    use avs_consensus::testkit;
    use avs_consensus::{EngineConfig, TaskRegistry};
    use ssz_rs::prelude::List;

    fn setup() -> (ChainStore, Engine) {
        let (keys, genesis) = testkit::genesis(&[1, 1, 1, 1], 1, 4000).unwrap();
        let engine =
            Engine::new(EngineConfig::new(genesis), keys[0].clone(), TaskRegistry::new()).unwrap();
        (ChainStore::new(Arc::new(MemoryStore::new())), engine)
    }

    #[test]
    fn malformed_and_oversized_requests_are_invalid_requests() {
        let (chain, engine) = setup();
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
            (ReqRespProtocol::Votes, vec![0; 17]),
        ] {
            let chunks = answer(&chain, &engine, protocol, &request);
            assert_eq!(chunks.len(), 1, "{protocol}");
            assert_eq!(chunks[0].code, ResponseCode::InvalidRequest, "{protocol}");
        }
    }

    #[test]
    fn status_answers_ours_and_unknown_data_answers_nothing() {
        let (chain, engine) = setup();
        let request = encode(&StatusMessage::default()).unwrap();
        let chunks = answer(&chain, &engine, ReqRespProtocol::Status, &request);
        assert_eq!(
            super::super::decode_chunks::<StatusMessage>(chunks).unwrap(),
            vec![status_of(&engine)]
        );

        let range = encode(&BlocksByRangeRequest { start_height: 1, count: 8 }).unwrap();
        assert!(answer(&chain, &engine, ReqRespProtocol::BlocksByRange, &range).is_empty());
        let roots = BlocksByRootRequest { roots: List::try_from(vec![[1u8; 32]]).unwrap() };
        let roots = encode(&roots).unwrap();
        assert!(answer(&chain, &engine, ReqRespProtocol::BlocksByRoot, &roots).is_empty());
        let votes = encode(&VotesRequest { epoch: 0, view: 0 }).unwrap();
        assert!(answer(&chain, &engine, ReqRespProtocol::Votes, &votes).is_empty());
    }
}
