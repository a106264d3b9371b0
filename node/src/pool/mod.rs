//! The operator pool: who is up, what they run and how far their chain view is.
//!
//! Data flow: every node signs a [`Checkin`] every [`CHECKIN_PERIOD`] and publishes it on the
//! gossip `checkin` topic (and, in client mode, sends it over gRPC to a remote node). A received
//! check-in is decoded strictly and screened cheaply first ([`OperatorPool::precheck`]: fresh, a
//! member of the current epoch's set, newer than the operator's recorded check-in by at least
//! [`MIN_CHECKIN_GAP_MS`]); only then is its signature verified (one pairing,
//! [`checkin::verify_signature`]), and [`OperatorPool::record`] repeats the replay check under the
//! lock and writes the operator's row, one per address, under
//! `operator:0x<address hex>` in [`Column::OperatorPool`]. The remote address kept is one the
//! node observed, never one the sender claims: the TCP peer of a gRPC call, or, over gossip,
//! the connection of the operator's own node (its peer id from the genesis file) when that node
//! forwarded the check-in itself; a relayed check-in keeps the address last seen directly, or
//! shows [`VIA_GOSSIP`]. The node loop hands the pool each new operator set; rows of operators that
//! left the set are deleted then. `/operator`, `/telemetry` and gRPC `ListOperators` read
//! [`OperatorPool::rows`], which derives the status (Active / Late / Offline) from the age.

pub mod checkin;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use avs_consensus::Verdict;
use avs_consensus::operators::KeyTable;
use avs_consensus::types::OperatorIndex;
use serde::{Deserialize, Serialize};

pub use checkin::{Checkin, CheckinError, SignedCheckin, VerifiedCheckin};
pub use worker::{CheckinSigner, run_gossip_checkins};

use crate::store::{Column, Durability, Store, StoreError, WriteBatch};

/// How often a node checks in.
pub const CHECKIN_PERIOD: Duration = Duration::from_secs(5);
/// An operator's check-in is refused (before any pairing) unless it was signed at least this
/// long after the one recorded for it: half a period, so an honest node's check-ins (one per
/// period) always pass while a flood of validly signed ones (review finding M2) costs one
/// pairing and one store write per operator per this interval, not one per message.
pub const MIN_CHECKIN_GAP_MS: u64 = CHECKIN_PERIOD.as_secs() * 1000 / 2;
/// Up to this age a row is Active (three periods: one lost check-in is not news).
pub const ACTIVE_WITHIN_MS: u64 = 15_000;
/// Up to this age a row is Late; older ones are Offline.
pub const LATE_WITHIN_MS: u64 = 60_000;

const KEY_PREFIX: &[u8] = b"operator:";
/// Most rows read back from the store (the operator set is at most 1024).
const MAX_ROWS: usize = 4096;

/// How a check-in reached this node: decides the recorded remote address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// This node's own check-in.
    Local,
    /// Over gossip, forwarded to us by this peer (not necessarily the origin), whose
    /// connection the transport observed at `addr`.
    Gossip { peer: String, addr: Option<std::net::IpAddr> },
    /// Over gRPC, from this TCP peer address (`None` if the transport did not say).
    Grpc { remote: Option<std::net::SocketAddr> },
}

/// What the telemetry shows for an operator only ever seen through relays.
pub const VIA_GOSSIP: &str = "via gossip";

impl Observed {
    /// The operator's node address as this arrival shows it. Gossip is relayed, so a gossip
    /// arrival shows the operator's address only when the forwarding peer is the operator's own
    /// node (`own_peer`, from the genesis file): the transport authenticated that peer, and the
    /// BLS signature the operator. Otherwise it shows nothing (`None`).
    fn remote_ip(&self, own_peer: Option<&str>) -> Option<String> {
        match self {
            Observed::Local => Some("local".into()),
            Observed::Gossip { peer, addr: Some(addr) } if own_peer == Some(peer.as_str()) => {
                Some(addr.to_string())
            }
            Observed::Gossip { .. } => None,
            Observed::Grpc { remote: Some(addr) } => Some(addr.ip().to_string()),
            Observed::Grpc { remote: None } => Some("unknown".into()),
        }
    }

    fn peer_id(&self) -> String {
        match self {
            Observed::Gossip { peer, .. } => peer.clone(),
            _ => String::new(),
        }
    }
}

/// One operator's row, as stored (JSON) and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRow {
    /// `0x`-prefixed lowercase hex.
    pub address: String,
    pub remote_ip: String,
    /// Unix milliseconds at which this node recorded the last check-in.
    pub last_ping_ms: u64,
    /// The check-in's own timestamp: replays must be newer than this.
    pub checkin_timestamp_ms: u64,
    pub version: String,
    pub metrics_port: u16,
    pub block_number: u64,
    pub event_count: u64,
    pub peer_id: String,
    pub voting_power: u64,
    pub is_aggregator: bool,
    /// The signed timestamp of the first check-in this node recorded from the operator.
    #[serde(default)]
    pub first_checkin_ms: u64,
    /// Check-ins recorded since then.
    #[serde(default)]
    pub checkins: u64,
}

impl PoolRow {
    /// Check-ins the operator should have made since its first one this node saw, up to
    /// `now_ms`: one per [`CHECKIN_PERIOD`] between its first and last signed timestamps
    /// (rounded: signing times jitter), plus one per whole period since the last arrived (after
    /// half a period of grace).
    pub fn expected_checkins(&self, now_ms: u64) -> u64 {
        // A row stored before the counts existed has no first check-in: nothing to judge yet.
        if self.first_checkin_ms == 0 {
            return self.checkins;
        }
        let period = CHECKIN_PERIOD.as_millis() as u64;
        let span = self.checkin_timestamp_ms.saturating_sub(self.first_checkin_ms);
        // Half a period of grace: a check-in a little late is not missed yet.
        let silent = now_ms.saturating_sub(self.last_ping_ms).saturating_sub(period / 2);
        (span.saturating_add(period / 2) / period)
            .saturating_add(1)
            .saturating_add(silent / period)
            .max(self.checkins)
    }
}

/// Liveness derived from the age of the last check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Liveness {
    Active,
    Late,
    Offline,
}

impl Liveness {
    pub fn from_age_ms(age_ms: u64) -> Self {
        if age_ms <= ACTIVE_WITHIN_MS {
            Liveness::Active
        } else if age_ms <= LATE_WITHIN_MS {
            Liveness::Late
        } else {
            Liveness::Offline
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Active => "Active",
            Liveness::Late => "Late",
            Liveness::Offline => "Offline",
        }
    }
}

/// "45s ago", "5m30s ago", "2h15m ago", "3d4h ago": the two largest units, like the
/// reference's `LastSeen`.
pub fn last_seen(age_ms: u64) -> String {
    let secs = age_ms / 1000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h ago")
    } else if h > 0 {
        format!("{h}h{m}m ago")
    } else if m > 0 {
        format!("{m}m{s}s ago")
    } else {
        format!("{s}s ago")
    }
}

/// A row with what is derived from the clock, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorView {
    #[serde(flatten)]
    pub row: PoolRow,
    pub last_seen: String,
    pub status: Liveness,
    /// Share of the expected check-ins that arrived since this node first saw the operator.
    pub uptime_percent: u64,
    /// Expected check-ins that did not arrive since then.
    pub missed_checkins: u64,
}

/// Why recording failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Refused(#[from] CheckinError),
    #[error("the check-in was verified against epoch {checked}, the pool is at epoch {current}")]
    EpochMoved { checked: u64, current: u64 },
    #[error("the node has no operator set yet")]
    NoOperatorSet,
    #[error("operator pool store: {0}")]
    Store(#[from] StoreError),
    #[error("operator pool row: {0}")]
    Encoding(String),
}

struct Inner {
    rows: BTreeMap<[u8; 20], PoolRow>,
    table: Option<Arc<KeyTable>>,
}

/// The pool: rows in memory, written through to the store. Thread-safe; cheap to share as an
/// `Arc`. One mutex orders record and expiry, so two copies of one check-in arriving at once
/// cannot both pass the replay check.
#[derive(Debug)]
pub struct OperatorPool {
    store: Arc<dyn Store>,
    inner: Mutex<Inner>,
    /// Mirror of the current set for readers that must not wait on the mutex.
    table: RwLock<Option<Arc<KeyTable>>>,
    /// Consensus messages this node accepted from gossip (reported as its "events seen").
    events: Arc<AtomicU64>,
    /// Signature checks (pairings) run on check-ins: what a flood costs, and what the cheap
    /// checks before them save.
    verifications: AtomicU64,
    /// Each operator's own libp2p peer id, where known (the genesis file names them): decides
    /// whether a gossip arrival came straight from the operator's node.
    own_peers: RwLock<BTreeMap<[u8; 20], String>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("rows", &self.rows.len()).finish()
    }
}

fn key(address: &[u8; 20]) -> Vec<u8> {
    [KEY_PREFIX, format!("0x{}", hex::encode(address)).as_bytes()].concat()
}

fn parse_address(text: &str) -> Option<[u8; 20]> {
    let raw = hex::decode(text.strip_prefix("0x")?).ok()?;
    raw.try_into().ok()
}

impl OperatorPool {
    /// Loads the stored rows. A row that does not parse is deleted (it is a cache of
    /// check-ins, refreshed every few seconds), not fatal.
    pub fn open(store: Arc<dyn Store>) -> Result<Self, PoolError> {
        let mut rows = BTreeMap::new();
        let mut bad = WriteBatch::new();
        for (k, v) in store.range(Column::OperatorPool, KEY_PREFIX, MAX_ROWS)? {
            if !k.starts_with(KEY_PREFIX) {
                break;
            }
            match serde_json::from_slice::<PoolRow>(&v).ok().and_then(|row| {
                let addr = parse_address(&row.address)?;
                (key(&addr) == k).then_some((addr, row))
            }) {
                Some((addr, row)) => {
                    rows.insert(addr, row);
                }
                None => bad.delete(Column::OperatorPool, k),
            }
        }
        if !bad.is_empty() {
            tracing::warn!(rows = bad.len(), "dropping unreadable operator pool rows");
            store.write(bad, Durability::Buffered)?;
        }
        Ok(Self {
            store,
            inner: Mutex::new(Inner { rows, table: None }),
            table: RwLock::new(None),
            events: Arc::new(AtomicU64::new(0)),
            verifications: AtomicU64::new(0),
            own_peers: RwLock::new(BTreeMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every write is one batch).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records operators' own peer ids (from the genesis file; later joiners are not in it and
    /// show the last address seen directly, or [`VIA_GOSSIP`]).
    pub fn set_own_peers(&self, peers: impl IntoIterator<Item = ([u8; 20], String)>) {
        self.own_peers.write().unwrap_or_else(|e| e.into_inner()).extend(peers);
    }

    /// The operator set check-ins are verified against.
    pub fn table(&self) -> Option<Arc<KeyTable>> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adopts the current epoch's set: rows of operators no longer in it are deleted and the
    /// others' voting power follows the new set. Cheap when the set did not change.
    pub fn set_operators(&self, table: Arc<KeyTable>) -> Result<(), PoolError> {
        let mut inner = self.lock();
        if inner
            .table
            .as_ref()
            .is_some_and(|t| t.epoch() == table.epoch() && t.set_root() == table.set_root())
        {
            return Ok(());
        }
        let members: BTreeMap<[u8; 20], u64> =
            table.operator_set().operators.iter().map(|op| (op.address, op.power)).collect();
        let mut batch = WriteBatch::new();
        let mut updated = inner.rows.clone();
        updated.retain(|addr, row| match members.get(addr) {
            Some(power) => {
                row.voting_power = *power;
                true
            }
            None => {
                batch.delete(Column::OperatorPool, key(addr));
                false
            }
        });
        for (addr, row) in &updated {
            batch.put(Column::OperatorPool, key(addr), encode_row(row)?);
        }
        self.store.write(batch, Durability::Buffered)?;
        let expired = inner.rows.len().saturating_sub(updated.len());
        if expired > 0 {
            tracing::info!(expired, epoch = %table.epoch(), "expired operator pool rows");
        }
        inner.rows = updated;
        inner.table = Some(table.clone());
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Some(table);
        Ok(())
    }

    /// Records a verified check-in, unless it is a replay or was checked against an older set.
    /// A refused check-in changes nothing.
    pub fn record(
        &self,
        verified: &VerifiedCheckin,
        observed: &Observed,
        now_ms: u64,
    ) -> Result<PoolRow, PoolError> {
        let mut inner = self.lock();
        if let Some(current) = inner.table.as_ref().map(|t| t.epoch())
            && current.get() != verified.epoch
        {
            return Err(PoolError::EpochMoved { checked: verified.epoch, current: current.get() });
        }
        let c = &verified.checkin;
        // Again under the lock: two copies may both have passed the precheck.
        check_newer(&inner.rows, c)?;
        let previous = inner.rows.get(&c.address);
        let own_peer =
            self.own_peers.read().unwrap_or_else(|e| e.into_inner()).get(&c.address).cloned();
        // A relayed arrival keeps the address last seen directly.
        let remote_ip = observed
            .remote_ip(own_peer.as_deref())
            .or_else(|| previous.map(|p| p.remote_ip.clone()))
            .unwrap_or_else(|| VIA_GOSSIP.to_owned());
        let row = PoolRow {
            address: format!("0x{}", hex::encode(c.address)),
            remote_ip,
            last_ping_ms: now_ms,
            checkin_timestamp_ms: c.timestamp_ms,
            version: String::from_utf8_lossy(c.version.as_ref()).into_owned(),
            metrics_port: c.metrics_port,
            block_number: c.finalized_height,
            event_count: c.events_seen,
            peer_id: observed.peer_id(),
            voting_power: verified.voting_power,
            is_aggregator: c.is_aggregator,
            first_checkin_ms: previous
                .map(|p| p.first_checkin_ms)
                .filter(|&first| first != 0)
                .unwrap_or(c.timestamp_ms),
            checkins: previous.map_or(0, |p| p.checkins).saturating_add(1),
        };
        self.store.put(
            Column::OperatorPool,
            &key(&c.address),
            &encode_row(&row)?,
            Durability::Buffered,
        )?;
        inner.rows.insert(c.address, row.clone());
        Ok(row)
    }

    /// The cheap checks, no pairing and no write: the pool has a set, the check-in is fresh,
    /// names a member, and is newer than that operator's recorded one by at least
    /// [`MIN_CHECKIN_GAP_MS`]. [`Self::accept`] runs it first; the gRPC service also runs it
    /// before spending its verification budget.
    pub fn precheck(&self, signed: &SignedCheckin, now_ms: u64) -> Result<(), PoolError> {
        self.screen(signed, now_ms).map(|_| ())
    }

    /// [`Self::precheck`], returning the set and the operator's index in it.
    fn screen(
        &self,
        signed: &SignedCheckin,
        now_ms: u64,
    ) -> Result<(Arc<KeyTable>, OperatorIndex), PoolError> {
        let table = self.table().ok_or(PoolError::NoOperatorSet)?;
        let index = checkin::precheck(&table, &signed.message, now_ms)?;
        check_newer(&self.lock().rows, &signed.message)?;
        Ok((table, index))
    }

    /// The whole path for a check-in from gossip or a client: the cheap checks, then the
    /// signature (one pairing), then the record. Cheapest first, so a replayed, too frequent,
    /// stale or non-member check-in costs no pairing whatever its signature.
    pub fn accept(
        &self,
        signed: &SignedCheckin,
        observed: &Observed,
        now_ms: u64,
    ) -> Result<PoolRow, PoolError> {
        let (table, index) = self.screen(signed, now_ms)?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let verified = checkin::verify_signature(&table, signed, index)?;
        self.record(&verified, observed, now_ms)
    }

    /// Signature checks run on check-ins since the pool was opened.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Counts one consensus message accepted from gossip.
    pub fn count_event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// The counter behind [`Self::count_event`], for the check-in signer.
    pub fn events(&self) -> Arc<AtomicU64> {
        self.events.clone()
    }

    /// The gossip verdict on a check-in, recording it when valid. Malformed and forged
    /// check-ins are the forwarder's fault (Reject); stale, replayed, too soon, non-member (see
    /// [`CheckinError::is_senders_fault`]) or ones that cannot be judged yet are dropped without
    /// penalty (Ignore). The cheap checks come first (see [`Self::accept`]), so a forged
    /// check-in that is also replayed or too soon is Ignored without a pairing: a byzantine
    /// operator's flood costs one pairing per [`MIN_CHECKIN_GAP_MS`]. Either way a refused
    /// check-in changes nothing.
    pub fn validate_gossip(
        &self,
        data: &[u8],
        peer: &str,
        peer_ip: Option<std::net::IpAddr>,
        now_ms: u64,
    ) -> Result<(), (Verdict, String)> {
        let signed = checkin::decode_signed(data).map_err(|e| (Verdict::Reject, e.to_string()))?;
        let observed = Observed::Gossip { peer: peer.to_owned(), addr: peer_ip };
        match self.accept(&signed, &observed, now_ms) {
            Ok(_) => Ok(()),
            Err(PoolError::Refused(e)) if e.is_senders_fault() => {
                Err((Verdict::Reject, e.to_string()))
            }
            Err(e) => Err((Verdict::Ignore, e.to_string())),
        }
    }

    /// Every row, with status and "last seen" derived at `now_ms`, in address order.
    pub fn rows(&self, now_ms: u64) -> Vec<OperatorView> {
        self.lock()
            .rows
            .values()
            .map(|row| {
                let age = now_ms.saturating_sub(row.last_ping_ms);
                let expected = row.expected_checkins(now_ms);
                OperatorView {
                    row: row.clone(),
                    last_seen: last_seen(age),
                    status: Liveness::from_age_ms(age),
                    uptime_percent: row.checkins.saturating_mul(100) / expected.max(1),
                    missed_checkins: expected.saturating_sub(row.checkins),
                }
            })
            .collect()
    }

    /// The stored row of `address`, if any (what the store holds, read back).
    pub fn stored_row(&self, address: &[u8; 20]) -> Result<Option<PoolRow>, PoolError> {
        self.store
            .get(Column::OperatorPool, &key(address))?
            .map(|v| serde_json::from_slice(&v).map_err(|e| PoolError::Encoding(e.to_string())))
            .transpose()
    }
}

/// Refuses a check-in not newer than the operator's recorded one (a replay), or newer by less
/// than [`MIN_CHECKIN_GAP_MS`] (more often than an operator checks in).
fn check_newer(rows: &BTreeMap<[u8; 20], PoolRow>, c: &Checkin) -> Result<(), CheckinError> {
    let Some(last) = rows.get(&c.address).map(|row| row.checkin_timestamp_ms) else {
        return Ok(());
    };
    let got = c.timestamp_ms;
    if got <= last {
        return Err(CheckinError::Replayed { got, last });
    }
    if got < last.saturating_add(MIN_CHECKIN_GAP_MS) {
        return Err(CheckinError::TooSoon { got, last, min_gap_ms: MIN_CHECKIN_GAP_MS });
    }
    Ok(())
}

fn encode_row(row: &PoolRow) -> Result<Vec<u8>, PoolError> {
    serde_json::to_vec(row).map_err(|e| PoolError::Encoding(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests;
