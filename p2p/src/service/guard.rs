//! Who may connect, by address: a cap on inbound connections per IP, and bans that hold an
//! address rather than a peer id, kept across restarts.
//!
//! A libp2p identity costs one key pair, so bans keyed by peer id alone are no ban at all, and
//! with no limit per address one host can take every connection slot (review M1). The guard is
//! a `NetworkBehaviour` that only admits or denies connections:
//! - an inbound connection from a banned IP is refused before its handshake;
//! - at most `max_inbound_per_ip` inbound connections per IP are kept, counted from
//!   established connections; peers on the trusted list (the operator set's peer ids) do not
//!   count and are not refused;
//! - a ban covers the peer id and every IP it was seen on; it expires, and is written to the
//!   ban file (when the node has one) so a restart keeps it.
//!
//! Loopback addresses are exempt by default: a devnet puts every node on 127.0.0.1, and a
//! process on the host itself can do far worse than open connections.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::ConnectionEstablished;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};
use tracing::warn;

/// The guard's settings.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Most established inbound connections from one IP (trusted peers aside).
    pub max_inbound_per_ip: usize,
    /// Loopback addresses are neither capped nor banned.
    pub exempt_loopback: bool,
    /// Where bans are kept across restarts (`None`: in memory only).
    pub ban_file: Option<PathBuf>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self { max_inbound_per_ip: 8, exempt_loopback: true, ban_file: None }
    }
}

/// Why a connection was refused (handed to libp2p as the denial's cause; not counted).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("address {0} is banned")]
    BannedAddress(IpAddr),
    #[error("peer {0} is banned")]
    BannedPeer(PeerId),
    #[error("{0} already has {1} inbound connections")]
    TooManyFromIp(IpAddr, usize),
}

/// The behaviour; see the module docs.
pub(crate) struct AddressGuard {
    config: GuardConfig,
    trusted: HashSet<PeerId>,
    inbound: HashMap<IpAddr, HashSet<ConnectionId>>,
    seen_at: HashMap<PeerId, HashSet<IpAddr>>,
    banned_ips: HashMap<IpAddr, u64>,
    banned_peers: HashMap<PeerId, u64>,
}

/// Seconds since the Unix epoch (bans are stored as wall-clock expiry, to survive restarts).
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The IP of a multiaddr (`/ip4/..` or `/ip6/..` first), if any.
pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl AddressGuard {
    /// A guard with the bans of `config.ban_file` (expired ones dropped; an unreadable file is
    /// reported and treated as empty, so a damaged file cannot keep the node from starting).
    pub(crate) fn new(config: GuardConfig, trusted: impl IntoIterator<Item = PeerId>) -> Self {
        let mut guard = Self {
            trusted: trusted.into_iter().collect(),
            inbound: HashMap::new(),
            seen_at: HashMap::new(),
            banned_ips: HashMap::new(),
            banned_peers: HashMap::new(),
            config,
        };
        if let Some(path) = guard.config.ban_file.clone() {
            match load_bans(&path, unix_now()) {
                Ok((ips, peers)) => {
                    guard.banned_ips = ips;
                    guard.banned_peers = peers;
                }
                Err(e) => warn!(file = %path.display(), error = %e, "ignoring unreadable ban file"),
            }
        }
        guard
    }

    fn exempt(&self, ip: &IpAddr) -> bool {
        self.config.exempt_loopback && ip.is_loopback()
    }

    /// Bans `peer` and every address it was seen on for `duration`, and saves the bans.
    pub(crate) fn ban(&mut self, peer: PeerId, duration: Duration) {
        let until = unix_now().saturating_add(duration.as_secs());
        self.banned_peers.insert(peer, until);
        let ips: Vec<IpAddr> = self.seen_at.get(&peer).into_iter().flatten().copied().collect();
        for ip in ips {
            if !self.exempt(&ip) {
                self.banned_ips.insert(ip, until);
            }
        }
        self.save();
    }

    /// Whether `peer` is banned now.
    pub(crate) fn is_banned(&self, peer: &PeerId) -> bool {
        self.banned_peers.get(peer).is_some_and(|until| *until > unix_now())
    }

    /// Drops expired bans (and saves if any went); returns the peers whose ban ended.
    pub(crate) fn expire(&mut self) -> Vec<PeerId> {
        let now = unix_now();
        let before = self.banned_ips.len().saturating_add(self.banned_peers.len());
        self.banned_ips.retain(|_, until| *until > now);
        let ended: Vec<PeerId> =
            self.banned_peers.iter().filter(|(_, u)| **u <= now).map(|(p, _)| *p).collect();
        self.banned_peers.retain(|_, until| *until > now);
        if self.banned_ips.len().saturating_add(self.banned_peers.len()) != before {
            self.save();
        }
        ended
    }

    /// The peers banned now (the service blocks them at start).
    pub(crate) fn banned_peers(&self) -> Vec<PeerId> {
        let now = unix_now();
        self.banned_peers.iter().filter(|(_, u)| **u > now).map(|(p, _)| *p).collect()
    }

    fn save(&self) {
        let Some(path) = &self.config.ban_file else { return };
        if let Err(e) = save_bans(path, &self.banned_ips, &self.banned_peers) {
            warn!(file = %path.display(), error = %e, "could not save bans");
        }
    }

    fn check_address(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.exempt(&ip) {
            return Ok(());
        }
        if self.banned_ips.get(&ip).is_some_and(|until| *until > unix_now()) {
            return Err(Refusal::BannedAddress(ip));
        }
        Ok(())
    }

    /// Whether an inbound connection of `peer` from `remote` may be established (it is
    /// recorded once established, in [`Self::established`]).
    fn admit_inbound(&self, peer: PeerId, remote: &Multiaddr) -> Result<(), Refusal> {
        if self.is_banned(&peer) {
            return Err(Refusal::BannedPeer(peer));
        }
        let Some(ip) = ip_of(remote) else { return Ok(()) };
        if self.trusted.contains(&peer) || self.exempt(&ip) {
            return Ok(());
        }
        self.check_address(ip)?;
        let held = self.inbound.get(&ip).map_or(0, HashSet::len);
        if held >= self.config.max_inbound_per_ip {
            return Err(Refusal::TooManyFromIp(ip, held));
        }
        Ok(())
    }

    /// Records an established connection: where its peer was seen, and (inbound, untrusted,
    /// not exempt) its place in its address's count.
    fn established(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        remote: &Multiaddr,
        inbound: bool,
    ) {
        let Some(ip) = ip_of(remote) else { return };
        self.seen_at.entry(peer).or_default().insert(ip);
        if inbound && !self.trusted.contains(&peer) && !self.exempt(&ip) {
            self.inbound.entry(ip).or_default().insert(connection);
        }
    }

    fn closed(&mut self, connection: ConnectionId, remote: &Multiaddr) {
        let Some(ip) = ip_of(remote) else { return };
        if let Some(connections) = self.inbound.get_mut(&ip) {
            connections.remove(&connection);
            if connections.is_empty() {
                self.inbound.remove(&ip);
            }
        }
    }
}

fn denied(refusal: Refusal) -> ConnectionDenied {
    ConnectionDenied::new(refusal)
}

impl NetworkBehaviour for AddressGuard {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _connection: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        // Before the handshake: a banned address costs us no crypto.
        match ip_of(remote) {
            Some(ip) => self.check_address(ip).map_err(denied),
            None => Ok(()),
        }
    }

    fn handle_established_inbound_connection(
        &mut self,
        _connection: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit_inbound(peer, remote).map_err(denied)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    /// Connections are counted once established (another behaviour may still deny one after
    /// this guard admitted it), and uncounted when closed.
    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) => {
                let inbound = matches!(endpoint, ConnectedPoint::Listener { .. });
                self.established(connection_id, peer_id, endpoint.get_remote_address(), inbound);
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                remaining_established,
                ..
            }) => {
                self.closed(connection_id, endpoint.get_remote_address());
                if remaining_established == 0 && !self.is_banned(&peer_id) {
                    self.seen_at.remove(&peer_id);
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// Reads a ban file: one ban per line, `ip <address> <until>` or `peer <peer id> <until>`
/// (`until` in Unix seconds); expired entries are dropped.
fn load_bans(
    path: &Path,
    now: u64,
) -> std::io::Result<(HashMap<IpAddr, u64>, HashMap<PeerId, u64>)> {
    let (mut ips, mut peers) = (HashMap::new(), HashMap::new());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((ips, peers)),
        Err(e) => return Err(e),
    };
    for (number, line) in text.lines().enumerate() {
        let bad = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {}: expected `ip|peer <id> <until>`", number.saturating_add(1)),
            )
        };
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(id), Some(until), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let until: u64 = until.parse().map_err(|_| bad())?;
        if until <= now {
            continue;
        }
        match kind {
            "ip" => ips.insert(id.parse().map_err(|_| bad())?, until),
            "peer" => peers.insert(id.parse().map_err(|_| bad())?, until),
            _ => return Err(bad()),
        };
    }
    Ok((ips, peers))
}

/// Writes the ban file atomically (a temporary file renamed over it).
fn save_bans(
    path: &Path,
    ips: &HashMap<IpAddr, u64>,
    peers: &HashMap<PeerId, u64>,
) -> std::io::Result<()> {
    let mut lines: Vec<String> = ips.iter().map(|(ip, until)| format!("ip {ip} {until}")).collect();
    lines.extend(peers.iter().map(|(peer, until)| format!("peer {peer} {until}")));
    lines.sort();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, lines.join("\n") + "\n")?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/9000").parse().unwrap()
    }

    fn strict() -> GuardConfig {
        GuardConfig { max_inbound_per_ip: 2, exempt_loopback: false, ban_file: None }
    }

    /// Offers an inbound connection as the swarm would; records it if admitted.
    fn inbound(guard: &mut AddressGuard, id: usize, peer: PeerId, ip: &str) -> bool {
        let (local, remote, id) = (addr("0.0.0.0"), addr(ip), ConnectionId::new_unchecked(id));
        let admitted = guard.handle_pending_inbound_connection(id, &local, &remote).is_ok()
            && guard.handle_established_inbound_connection(id, peer, &local, &remote).is_ok();
        if admitted {
            guard.established(id, peer, &remote, true);
        }
        admitted
    }

    /// Review T2/T13: one address cannot take more than its share of inbound connections,
    /// whatever peer ids it uses; other addresses and trusted (operator) peers still get in.
    #[test]
    fn inbound_connections_per_ip_are_capped_but_trusted_peers_get_in() {
        let operator = PeerId::random();
        let mut guard = AddressGuard::new(strict(), [operator]);
        assert!(inbound(&mut guard, 1, PeerId::random(), "10.0.0.1"));
        assert!(inbound(&mut guard, 2, PeerId::random(), "10.0.0.1"));
        assert!(!inbound(&mut guard, 3, PeerId::random(), "10.0.0.1"), "a third sybil");
        assert!(inbound(&mut guard, 4, operator, "10.0.0.1"), "the operator is not counted");
        assert!(inbound(&mut guard, 5, PeerId::random(), "10.0.0.2"));
        guard.closed(ConnectionId::new_unchecked(1), &addr("10.0.0.1"));
        assert!(inbound(&mut guard, 6, PeerId::random(), "10.0.0.1"), "a freed slot");
    }

    /// A ban holds the address, so a new peer id from it is refused before its handshake,
    /// and it survives a restart through the ban file.
    #[test]
    fn a_ban_covers_new_peer_ids_from_the_address_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = GuardConfig { ban_file: Some(dir.path().join("bans")), ..strict() };
        let mut guard = AddressGuard::new(config.clone(), []);
        let bad = PeerId::random();
        assert!(inbound(&mut guard, 1, bad, "10.0.0.9"));
        guard.ban(bad, Duration::from_secs(600));
        assert!(guard.is_banned(&bad));
        assert!(!inbound(&mut guard, 2, PeerId::random(), "10.0.0.9"), "new identity, same host");
        assert!(inbound(&mut guard, 3, PeerId::random(), "10.0.0.10"));

        let mut restarted = AddressGuard::new(config, []);
        assert!(restarted.is_banned(&bad));
        assert_eq!(restarted.banned_peers(), vec![bad]);
        assert!(!inbound(&mut restarted, 1, PeerId::random(), "10.0.0.9"));
        assert!(!inbound(&mut restarted, 2, bad, "10.0.0.11"), "the peer id from elsewhere");
    }

    #[test]
    fn loopback_is_exempt_by_default_and_expired_or_damaged_files_do_no_harm() {
        let mut guard =
            AddressGuard::new(GuardConfig { max_inbound_per_ip: 1, ..GuardConfig::default() }, []);
        let peer = PeerId::random();
        assert!(inbound(&mut guard, 1, peer, "127.0.0.1"));
        assert!(inbound(&mut guard, 2, PeerId::random(), "127.0.0.1"));
        guard.ban(peer, Duration::from_secs(600));
        assert!(inbound(&mut guard, 3, PeerId::random(), "127.0.0.1"), "loopback not banned");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bans");
        std::fs::write(&file, "ip 10.0.0.1 1\npeer 12D3KooWNotAPeer 99999999999\n").unwrap();
        assert!(load_bans(&file, 100).is_err(), "a bad peer id is reported");
        let damaged = GuardConfig { ban_file: Some(file.clone()), ..strict() };
        let mut guard = AddressGuard::new(damaged, []);
        assert!(inbound(&mut guard, 1, PeerId::random(), "10.0.0.1"));
        std::fs::write(&file, "ip 10.0.0.1 1\n").unwrap();
        assert!(load_bans(&file, 100).unwrap().0.is_empty(), "expired");
    }
}
