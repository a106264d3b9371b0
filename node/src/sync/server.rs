//! This node's answers to peers' requests: from the store (blocks, certificates) and from the
//! engine's pool (votes of a view). Malformed requests get INVALID_REQUEST with the reason;
//! store failures get SERVER_ERROR. Every answer is bounded (at most 64 blocks, 256
//! certificates, the votes of one view).
//!
//! Store-backed answers ([`is_store_backed`]) are read off the consensus loop, by a worker
//! holding only the [`ChainStore`] (review H3); status and votes come from the engine's memory
//! and are answered on the loop. Every peer has a [`RequestQuota`] per protocol: a peer that
//! asks more often than an honest catch-up ever needs gets RESOURCE_UNAVAILABLE at no cost.

use std::collections::{HashMap, HashSet};

use avs_consensus::Engine;
use avs_consensus::types::{Block, decode, encode};
use avs_p2p::{PeerId, ReqRespProtocol, ResponseChunk, ResponseCode};
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

/// Whether a request is answered from the store (off the loop) rather than from the engine.
pub fn is_store_backed(protocol: ReqRespProtocol) -> bool {
    matches!(
        protocol,
        ReqRespProtocol::BlocksByRange
            | ReqRespProtocol::BlocksByRoot
            | ReqRespProtocol::Certificates
    )
}

/// Answers one inbound request (store-backed ones read `chain`, the others `engine`).
pub fn answer(
    chain: &ChainStore,
    engine: &Engine,
    protocol: ReqRespProtocol,
    request: &[u8],
) -> Vec<ResponseChunk> {
    if is_store_backed(protocol) {
        answer_from_store(chain, protocol, request)
    } else {
        finish(protocol, from_engine(engine, protocol, request))
    }
}

/// Answers a store-backed request (see [`is_store_backed`]); needs only the store, so it can
/// run on any thread.
pub fn answer_from_store(
    chain: &ChainStore,
    protocol: ReqRespProtocol,
    request: &[u8],
) -> Vec<ResponseChunk> {
    finish(protocol, from_store(chain, protocol, request))
}

fn finish(
    protocol: ReqRespProtocol,
    answer: Result<Vec<ResponseChunk>, Refusal>,
) -> Vec<ResponseChunk> {
    match answer {
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

/// The answer to a request refused for the sender's rate or the node's load.
pub fn busy() -> Vec<ResponseChunk> {
    vec![ResponseChunk::error(ResponseCode::ResourceUnavailable, "rate limited; try later")]
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

fn from_engine(
    engine: &Engine,
    protocol: ReqRespProtocol,
    request: &[u8],
) -> Result<Vec<ResponseChunk>, Refusal> {
    match protocol {
        ReqRespProtocol::Status => {
            decode::<StatusMessage>(request).map_err(invalid)?;
            encode_all(std::slice::from_ref(&status_of(engine)))
        }
        ReqRespProtocol::Votes => {
            let req = decode::<VotesRequest>(request).map_err(invalid)?;
            encode_all(&engine.votes_of(req.epoch, req.view))
        }
        other => Err(server(format!("{} is answered from the store", other.name()))),
    }
}

fn from_store(
    chain: &ChainStore,
    protocol: ReqRespProtocol,
    request: &[u8],
) -> Result<Vec<ResponseChunk>, Refusal> {
    match protocol {
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
            let mut asked = HashSet::new();
            // A root asked twice is read (and sent) once.
            for root in req.roots.iter().filter(|root| asked.insert(**root)) {
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
        other => Err(server(format!("{} is answered from the engine", other.name()))),
    }
}

/// Requests a peer may make per protocol: a burst, then a steady rate. Generous for honest
/// use (a node catching up asks for 64 blocks or 256 certificates at a time, a stalled one
/// polls votes and certificates every few hundred milliseconds), far below what would keep a
/// store or the loop busy.
fn allowance(protocol: ReqRespProtocol) -> (u64, u64) {
    match protocol {
        ReqRespProtocol::Status => (8, 2),
        ReqRespProtocol::Votes => (16, 8),
        ReqRespProtocol::Certificates => (16, 8),
        ReqRespProtocol::BlocksByRange | ReqRespProtocol::BlocksByRoot => (32, 16),
    }
}

/// A token bucket per (peer, protocol); the caller passes the time, so it is deterministic.
#[derive(Debug, Default)]
pub struct RequestQuota {
    /// Tokens in thousandths, and when they were last topped up.
    buckets: HashMap<(PeerId, ReqRespProtocol), (u64, u64)>,
}

impl RequestQuota {
    /// Takes one request from `peer`'s allowance for `protocol`; false when it has none left.
    pub fn allow(&mut self, peer: PeerId, protocol: ReqRespProtocol, now_ms: u64) -> bool {
        let (burst, per_second) = allowance(protocol);
        let full = burst.saturating_mul(1000);
        let (tokens, last) = self.buckets.entry((peer, protocol)).or_insert((full, now_ms));
        let refill = now_ms.saturating_sub(*last).saturating_mul(per_second);
        *tokens = tokens.saturating_add(refill).min(full);
        // Never backwards: after a wall-clock step back, the time up to `last` was refilled
        // already and must not count twice when the clock comes forward again.
        *last = (*last).max(now_ms);
        if *tokens < 1000 {
            return false;
        }
        *tokens = tokens.saturating_sub(1000);
        true
    }

    /// Drops the buckets that have refilled completely: they are what a fresh peer gets, so
    /// forgetting them changes nothing, while reconnecting does not reset a drained one.
    pub fn forget_idle(&mut self, now_ms: u64) {
        self.buckets.retain(|(_, protocol), (tokens, last)| {
            let (burst, per_second) = allowance(*protocol);
            let refill = now_ms.saturating_sub(*last).saturating_mul(per_second);
            tokens.saturating_add(refill) < burst.saturating_mul(1000)
        });
    }

    /// Buckets held (peers with a recent request, per protocol).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::MemoryStore;
    use avs_consensus::testkit;
    use avs_consensus::types::{Epoch, Height, View};
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
                encode(&BlocksByRangeRequest { start_height: Height::ZERO, count: 0 }).unwrap(),
            ),
            (
                ReqRespProtocol::BlocksByRange,
                encode(&BlocksByRangeRequest { start_height: Height::ZERO, count: 1000 }).unwrap(),
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

        let range =
            encode(&BlocksByRangeRequest { start_height: Height::new(1), count: 8 }).unwrap();
        assert!(answer(&chain, &engine, ReqRespProtocol::BlocksByRange, &range).is_empty());
        let roots = BlocksByRootRequest { roots: List::try_from(vec![[1u8; 32]]).unwrap() };
        let roots = encode(&roots).unwrap();
        assert!(answer(&chain, &engine, ReqRespProtocol::BlocksByRoot, &roots).is_empty());
        let votes = encode(&VotesRequest { epoch: Epoch::ZERO, view: View::ZERO }).unwrap();
        assert!(answer(&chain, &engine, ReqRespProtocol::Votes, &votes).is_empty());
    }

    /// Review T17: the same root asked 64 times is read and sent once.
    #[test]
    fn a_root_asked_many_times_is_answered_once() {
        let (chain, _) = setup();
        let block = Block { height: Height::new(1), ..Default::default() };
        let root = block.root().unwrap();
        let mut batch = crate::store::WriteBatch::new();
        chain.put_unfinal_block(&mut batch, &root, &block).unwrap();
        chain.write(batch).unwrap();
        let request =
            encode(&BlocksByRootRequest { roots: List::try_from(vec![root; 64]).unwrap() })
                .unwrap();
        let chunks = answer_from_store(&chain, ReqRespProtocol::BlocksByRoot, &request);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].code, ResponseCode::Success);
    }

    /// Review T15: a peer asking faster than its allowance is refused at once; the allowance
    /// refills with time, and other peers and protocols have their own.
    #[test]
    fn a_peer_beyond_its_request_rate_is_refused_until_it_refills() {
        let mut quota = RequestQuota::default();
        let (flooder, other) = (PeerId::random(), PeerId::random());
        let certs = ReqRespProtocol::Certificates;
        let granted = (0..100).filter(|_| quota.allow(flooder, certs, 1_000)).count();
        assert_eq!(granted, 16, "the burst, then nothing");
        assert!(quota.allow(other, certs, 1_000), "another peer has its own");
        assert!(quota.allow(flooder, ReqRespProtocol::Status, 1_000), "another protocol too");
        assert!(!quota.allow(flooder, certs, 1_100), "0.8 of a request refilled");
        assert!(quota.allow(flooder, certs, 1_125), "one request per 125 ms");
        quota.forget_idle(1_125);
        assert!(!quota.allow(flooder, certs, 1_125), "a drained bucket is not forgotten");
        quota.forget_idle(10_000);
        assert_eq!(quota.buckets(), 0, "refilled buckets are");
    }

    /// The quota reads the wall clock: a step back (NTP) must not hand out the stepped-back
    /// time's tokens a second time when the clock comes forward again.
    #[test]
    fn a_wall_clock_step_back_does_not_refill_a_drained_bucket() {
        let mut quota = RequestQuota::default();
        let (peer, certs) = (PeerId::random(), ReqRespProtocol::Certificates);
        let granted = (0..100).filter(|_| quota.allow(peer, certs, 60_000)).count();
        assert_eq!(granted, 16);
        assert!(!quota.allow(peer, certs, 50_000), "10 s back: nothing refilled");
        assert!(!quota.allow(peer, certs, 60_000), "back where it was drained: still nothing");
        assert!(quota.allow(peer, certs, 60_125), "then one request per 125 ms, as before");
    }
}
