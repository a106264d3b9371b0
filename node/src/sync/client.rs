//! This node's requests: which peer is asked, what is in flight, and what an answer is for.
//!
//! Pure bookkeeping (no I/O, no clock): the node core decides *what* to ask (the engine's
//! `Request`s, the periodic status probe) and this picks *whom*, remembers the request under an
//! id, and hands the purpose back with the answer. Peers are picked with a small seeded
//! generator, so a simulation replays exactly.

use std::collections::{BTreeMap, BTreeSet};

use avs_consensus::types::{Epoch, Height, Root, View};
use avs_p2p::PeerId;

/// Most requests in flight at once; further ones are skipped (the engine asks again).
pub const MAX_IN_FLIGHT: usize = 64;

/// What a request is for, and so how its answer is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A status probe: is the peer ahead of us?
    Status,
    /// Certificates of an epoch from a view on (the answer is checked against them).
    Certificates { epoch: Epoch, from_view: View },
    /// A view's votes.
    Votes,
    /// Blocks by root; on an empty or failed answer another peer is asked.
    BlocksByRoot { roots: Vec<Root>, tried: Vec<PeerId> },
    /// Finalized blocks by height; on an empty or failed answer another peer is asked.
    BlocksByRange { start_height: Height, count: u64, tried: Vec<PeerId> },
}

#[derive(Debug)]
pub struct InFlight {
    pub peer: PeerId,
    pub purpose: Purpose,
}

/// Connected peers and requests in flight.
#[derive(Debug)]
pub struct SyncClient {
    peers: BTreeSet<PeerId>,
    in_flight: BTreeMap<u64, InFlight>,
    next_id: u64,
    rng: u64,
    /// Requests not sent because too many were in flight.
    pub skipped: u64,
}

impl SyncClient {
    pub fn new(seed: u64) -> Self {
        Self {
            peers: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            next_id: 0,
            rng: seed | 1,
            skipped: 0,
        }
    }

    pub fn connected(&mut self, peer: PeerId) {
        self.peers.insert(peer);
    }

    pub fn disconnected(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.contains(peer)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: enough to spread requests over peers, reproducible from the seed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Up to `n` distinct connected peers not in `exclude`, in a random order.
    pub fn pick(&mut self, n: usize, exclude: &[PeerId]) -> Vec<PeerId> {
        let mut candidates: Vec<PeerId> =
            self.peers.iter().filter(|p| !exclude.contains(p)).copied().collect();
        let mut out = Vec::with_capacity(n.min(candidates.len()));
        while out.len() < n && !candidates.is_empty() {
            let len = u64::try_from(candidates.len()).unwrap_or(u64::MAX);
            let i = usize::try_from(self.next_random() % len).unwrap_or(0);
            out.push(candidates.swap_remove(i));
        }
        out
    }

    /// Registers a request to `peer`; `None` when too many are in flight.
    pub fn start(&mut self, peer: PeerId, purpose: Purpose) -> Option<u64> {
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.skipped = self.skipped.saturating_add(1);
            return None;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.in_flight.insert(id, InFlight { peer, purpose });
        Some(id)
    }

    /// The request an answer (or failure) belongs to.
    pub fn finish(&mut self, id: u64) -> Option<InFlight> {
        self.in_flight.remove(&id)
    }

    /// Roots already being fetched.
    pub fn roots_in_flight(&self) -> BTreeSet<Root> {
        self.in_flight
            .values()
            .filter_map(|f| match &f.purpose {
                Purpose::BlocksByRoot { roots, .. } => Some(roots.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// A range request for this start is already in flight.
    pub fn range_in_flight(&self, start: Height) -> bool {
        self.in_flight.values().any(
            |f| matches!(f.purpose, Purpose::BlocksByRange { start_height, .. } if start_height == start),
        )
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_distinct_connected_peers_and_bounds_what_is_in_flight() {
        let mut client = SyncClient::new(7);
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for p in &peers {
            client.connected(*p);
        }
        let picked = client.pick(3, &peers[..1]);
        assert_eq!(picked.len(), 3);
        assert!(!picked.contains(&peers[0]));
        assert_eq!(picked.iter().collect::<BTreeSet<_>>().len(), 3);
        assert_eq!(client.pick(10, &[]).len(), 5);
        for _ in 0..MAX_IN_FLIGHT {
            assert!(client.start(peers[1], Purpose::Votes).is_some());
        }
        assert!(client.start(peers[1], Purpose::Votes).is_none());
        assert_eq!(client.skipped, 1);
        assert!(client.finish(0).is_some());
        assert!(client.finish(0).is_none());
    }
}
