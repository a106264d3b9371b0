//! Finding peers and staying connected (docs/protocol.md, section 16).
//!
//! Peers are found with libp2p's Kademlia (server mode: every node answers queries): each
//! peer's listen addresses, learned through identify, go into the routing table, and while the
//! node has fewer than `target_peers` connections it looks up a random key every
//! `discovery_interval` and dials the peers it learns of. So a node that knows one bootnode
//! soon knows every node, and losing the bootnode, or any single node, leaves a connected mesh.
//!
//! Lost connections are redialled with exponential back-off (1 s doubling up to
//! `bootnode_redial_interval`), the bootnodes by address and every other peer by the addresses
//! it announced; a successful connection resets its back-off.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;

/// First redial delay; each failure doubles it up to the configured maximum.
pub(crate) const FIRST_REDIAL: Duration = Duration::from_secs(1);
/// Addresses kept per peer.
pub(crate) const MAX_ADDRS_PER_PEER: usize = 8;
/// Peers remembered for redialling, at most (the oldest are forgotten first).
pub(crate) const MAX_KNOWN_PEERS: usize = 1024;

#[derive(Debug, Clone)]
struct Backoff {
    delay: Duration,
    next: Instant,
}

impl Backoff {
    fn failed(&mut self, now: Instant, max: Duration) {
        self.next = now + self.delay;
        self.delay = (self.delay * 2).min(max);
    }
}

/// What to redial, and when.
#[derive(Debug)]
pub(crate) struct Redialer {
    max_delay: Duration,
    bootnodes: Vec<(Multiaddr, Backoff)>,
    /// Peers we were connected to (or discovered), with their addresses, while not connected.
    peers: HashMap<PeerId, (Vec<Multiaddr>, Backoff)>,
}

/// The peer id in a multiaddr's `/p2p/` part, if any.
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

impl Redialer {
    pub(crate) fn new(bootnodes: &[Multiaddr], max_delay: Duration, now: Instant) -> Self {
        let fresh = Backoff { delay: FIRST_REDIAL, next: now };
        Self {
            max_delay: max_delay.max(FIRST_REDIAL),
            bootnodes: bootnodes.iter().map(|a| (a.clone(), fresh.clone())).collect(),
            peers: HashMap::new(),
        }
    }

    /// A peer to keep connected to, at these addresses (from identify or discovery).
    pub(crate) fn learn(&mut self, peer: PeerId, addrs: &[Multiaddr], now: Instant) {
        if addrs.is_empty() {
            return;
        }
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_KNOWN_PEERS {
            let oldest = self.peers.iter().max_by_key(|(_, (_, b))| b.next).map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                self.peers.remove(&oldest);
            }
        }
        let entry = self
            .peers
            .entry(peer)
            .or_insert_with(|| (Vec::new(), Backoff { delay: FIRST_REDIAL, next: now }));
        for addr in addrs {
            if !entry.0.contains(addr) && entry.0.len() < MAX_ADDRS_PER_PEER {
                entry.0.push(addr.clone());
            }
        }
    }

    /// A connection to `peer` is up: its back-off (and its bootnode's) starts over.
    pub(crate) fn connected(&mut self, peer: &PeerId, now: Instant) {
        if let Some((_, backoff)) = self.peers.get_mut(peer) {
            *backoff = Backoff { delay: FIRST_REDIAL, next: now + FIRST_REDIAL };
        }
        for (addr, backoff) in &mut self.bootnodes {
            if peer_of(addr).as_ref() == Some(peer) {
                *backoff = Backoff { delay: FIRST_REDIAL, next: now + FIRST_REDIAL };
            }
        }
    }

    /// The connection to `peer` is gone: redial it soon.
    pub(crate) fn disconnected(&mut self, peer: &PeerId, now: Instant) {
        if let Some((_, backoff)) = self.peers.get_mut(peer) {
            backoff.next = now + backoff.delay;
        }
    }

    /// Forgets a peer (banned).
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// What is due now: bootnode addresses, and peers with their addresses. `skip` says which
    /// peers not to dial (connected or banned). Each returned target's back-off is doubled,
    /// so a target that keeps failing is tried less and less often.
    pub(crate) fn due(
        &mut self,
        now: Instant,
        skip: impl Fn(&PeerId) -> bool,
    ) -> (Vec<Multiaddr>, Vec<(PeerId, Vec<Multiaddr>)>) {
        let max = self.max_delay;
        let mut bootnodes = Vec::new();
        for (addr, backoff) in &mut self.bootnodes {
            if backoff.next <= now && !peer_of(addr).is_some_and(|p| skip(&p)) {
                backoff.failed(now, max);
                bootnodes.push(addr.clone());
            }
        }
        let mut peers = Vec::new();
        for (peer, (addrs, backoff)) in &mut self.peers {
            if backoff.next <= now && !skip(peer) {
                backoff.failed(now, max);
                peers.push((*peer, addrs.clone()));
            }
        }
        peers.sort_by_key(|(p, _)| *p);
        (bootnodes, peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16, peer: Option<PeerId>) -> Multiaddr {
        let mut a: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        if let Some(p) = peer {
            a.push(Protocol::P2p(p));
        }
        a
    }

    #[test]
    fn bootnodes_back_off_exponentially_and_reset_on_connect() {
        let boot = PeerId::random();
        let t0 = Instant::now();
        let mut r = Redialer::new(&[addr(1, Some(boot))], Duration::from_secs(8), t0);
        let none = |_: &PeerId| false;
        assert_eq!(r.due(t0, none).0.len(), 1, "dialled at once");
        assert!(r.due(t0, none).0.is_empty(), "not again before its delay");
        let mut at = t0;
        let mut gaps = Vec::new();
        for _ in 0..5 {
            let mut step = Duration::ZERO;
            loop {
                step += Duration::from_millis(250);
                if !r.due(at + step, none).0.is_empty() {
                    break;
                }
            }
            gaps.push(step.as_millis());
            at += step;
        }
        assert_eq!(gaps, vec![1000, 2000, 4000, 8000, 8000]);
        r.connected(&boot, at);
        // Connected: skipped while connected, then 1 s after a disconnect.
        assert!(r.due(at + Duration::from_secs(5), |p| *p == boot).0.is_empty());
        assert_eq!(r.due(at + Duration::from_secs(1), none).0.len(), 1);
    }

    #[test]
    fn lost_peers_are_redialled_at_their_addresses() {
        let t0 = Instant::now();
        let mut r = Redialer::new(&[], Duration::from_secs(30), t0);
        let p = PeerId::random();
        r.learn(p, &[addr(5, None), addr(5, None), addr(6, None)], t0);
        r.connected(&p, t0);
        let connected = |q: &PeerId| *q == p;
        assert!(r.due(t0 + Duration::from_secs(60), connected).1.is_empty());
        let later = t0 + Duration::from_secs(61);
        r.disconnected(&p, later);
        assert!(r.due(later, |_| false).1.is_empty());
        let due = r.due(later + FIRST_REDIAL, |_| false).1;
        assert_eq!(due, vec![(p, vec![addr(5, None), addr(6, None)])], "deduplicated addresses");
        r.forget(&p);
        assert!(r.due(later + Duration::from_secs(100), |_| false).1.is_empty());
    }
}
