//! Stake sources and the cache the task definitions read.
//!
//! A [`StakeSource`] answers, for L1 and L2, "which block numbers can you vouch for" (the head
//! minus a confirmation depth) and "what did the registry hold at block n" (a
//! [`ChainSnapshot`]). Sources do I/O (JSON-RPC) or at least wait on time, while the consensus
//! engine calls `perform`/`validate` synchronously and must never block: so a background
//! refresher (the node's `tasks` module) asks the source and fills a [`SourceCache`], and the
//! task definitions only read the cache. What the cache lacks is recorded as wanted, so the
//! refresher fetches it on its next pass, and the task answers `NotYet` meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::update::ChainBlock;

/// The two chains VotingPowerSync reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Chain {
    /// The stake truth.
    L1,
    /// Where the AVS records operators' power.
    L2,
}

impl Chain {
    pub fn name(self) -> &'static str {
        match self {
            Chain::L1 => "l1",
            Chain::L2 => "l2",
        }
    }
}

/// An operator as a registry contract holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredOperator {
    pub address: [u8; 20],
    /// Compressed BLS key (L1 only; empty on L2).
    pub pubkey: Vec<u8>,
    /// Proof of possession of `pubkey` (L1 only; empty on L2).
    pub pop: Vec<u8>,
    pub power: u64,
}

/// A registry's content at one block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainSnapshot {
    pub block: ChainBlock,
    /// Operators with non-zero power, by address.
    pub operators: BTreeMap<[u8; 20], RegisteredOperator>,
}

/// Highest block numbers a source vouches for (head minus the confirmation depth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    pub l1: u64,
    pub l2: u64,
}

impl Heads {
    pub fn get(&self, chain: Chain) -> u64 {
        match chain {
            Chain::L1 => self.l1,
            Chain::L2 => self.l2,
        }
    }
}

/// Why a source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{chain} block {number} is beyond the confirmed head {head}")]
    NotReached { chain: &'static str, number: u64, head: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("registry data is malformed: {0}")]
    Malformed(String),
}

pub type SourceFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SourceError>> + Send + 'a>>;

/// Where stake comes from: the embedded schedule or real chains.
pub trait StakeSource: Send + Sync {
    /// A short name for logs (`embedded`, `json-rpc`).
    fn kind(&self) -> &'static str;
    /// Confirmed heads of both chains.
    fn heads(&self) -> SourceFuture<'_, Heads>;
    /// The registry of `chain` at block `number` (at most the confirmed head).
    fn snapshot(&self, chain: Chain, number: u64) -> SourceFuture<'_, ChainSnapshot>;
    /// The hash of `chain`'s block `number` now: the refresher compares it with the cached
    /// snapshots' to drop those a reorganization replaced. By default read through
    /// [`Self::snapshot`]; sources with a cheaper call override it.
    fn block_hash(&self, chain: Chain, number: u64) -> SourceFuture<'_, [u8; 32]> {
        Box::pin(async move { Ok(self.snapshot(chain, number).await?.block.hash) })
    }
}

/// When a chain's confirmed head moves, its newest cached snapshots (at most
/// [`REORG_RECHECK_NEWEST`], within this many blocks of the head) are re-checked against the
/// chain's current block hash: a reorganization deeper than the confirmation depth replaces
/// them, and a node that kept the old one would judge task results against a chain the others
/// no longer see. Bounded so that a paid RPC endpoint sees a few calls per new block, not one per
/// cached snapshot per pass.
pub const REORG_RECHECK_DEPTH: u64 = 128;
pub const REORG_RECHECK_NEWEST: usize = 4;

/// Snapshots kept per chain; older ones are evicted first.
const MAX_SNAPSHOTS: usize = 64;
/// Block numbers waiting to be fetched; beyond this, new requests are dropped (and re-asked
/// on the engine's next judgement).
const MAX_WANTED: usize = 64;

#[derive(Debug, Default)]
struct CacheInner {
    heads: Option<Heads>,
    snapshots: BTreeMap<(Chain, u64), Arc<ChainSnapshot>>,
    wanted: BTreeSet<(Chain, u64)>,
}

/// What a cache lookup found.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(Arc<ChainSnapshot>),
    /// The source has not confirmed this block yet (or not answered at all).
    NotReached {
        head: Option<u64>,
    },
    /// Confirmed but not fetched yet; the refresher has been asked for it.
    Fetching,
}

/// Shared between the refresher (writer) and the task definitions (readers).
#[derive(Debug, Clone, Default)]
pub struct SourceCache {
    inner: Arc<Mutex<CacheInner>>,
}

impl SourceCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn heads(&self) -> Option<Heads> {
        self.lock().heads
    }

    pub fn set_heads(&self, heads: Heads) {
        self.lock().heads = Some(heads);
    }

    pub fn insert(&self, chain: Chain, snapshot: ChainSnapshot) {
        let mut inner = self.lock();
        let number = snapshot.block.number;
        inner.wanted.remove(&(chain, number));
        inner.snapshots.insert((chain, number), Arc::new(snapshot));
        while inner.snapshots.keys().filter(|(c, _)| *c == chain).count() > MAX_SNAPSHOTS {
            let Some(oldest) = inner.snapshots.keys().find(|(c, _)| *c == chain).copied() else {
                break;
            };
            inner.snapshots.remove(&oldest);
        }
    }

    /// The snapshot of `chain` at `number`, or why there is none yet.
    pub fn lookup(&self, chain: Chain, number: u64) -> Lookup {
        let mut inner = self.lock();
        if let Some(s) = inner.snapshots.get(&(chain, number)) {
            return Lookup::Found(s.clone());
        }
        let head = inner.heads.map(|h| h.get(chain));
        if head.is_none_or(|h| number > h) {
            return Lookup::NotReached { head };
        }
        if inner.wanted.len() < MAX_WANTED {
            inner.wanted.insert((chain, number));
        }
        Lookup::Fetching
    }

    /// Block numbers the refresher should fetch (confirmed, asked for, not cached).
    pub fn wanted(&self) -> Vec<(Chain, u64)> {
        let inner = self.lock();
        let heads = inner.heads;
        inner
            .wanted
            .iter()
            .filter(|(c, n)| heads.is_some_and(|h| *n <= h.get(*c)))
            .copied()
            .collect()
    }

    /// The cached snapshots of `chain` at `from` or above, as `(number, hash)`.
    pub fn cached_since(&self, chain: Chain, from: u64) -> Vec<(u64, [u8; 32])> {
        self.lock()
            .snapshots
            .range((chain, from)..=(chain, u64::MAX))
            .map(|(&(_, number), s)| (number, s.block.hash))
            .collect()
    }

    /// Drops the snapshot of `chain` at `number` (a reorganization replaced its block); the
    /// next lookup fetches it again.
    pub fn evict(&self, chain: Chain, number: u64) {
        self.lock().snapshots.remove(&(chain, number));
    }

    /// Forgets a wanted block the source refused, so the list cannot fill with bad numbers.
    pub fn unwant(&self, chain: Chain, number: u64) {
        self.lock().wanted.remove(&(chain, number));
    }
}

/// One refresher pass: heads, the snapshots at the confirmed heads (what a performer uses), and
/// every wanted snapshot (what attesters asked for). Errors are returned for logging; what was
/// fetched before the error stays cached.
pub async fn refresh(source: &dyn StakeSource, cache: &SourceCache) -> Result<Heads, SourceError> {
    let heads = source.heads().await?;
    let before = cache.heads();
    cache.set_heads(heads);
    for chain in [Chain::L1, Chain::L2] {
        if before.is_some_and(|b| b.get(chain) >= heads.get(chain)) {
            continue;
        }
        let from = heads.get(chain).saturating_sub(REORG_RECHECK_DEPTH);
        let cached = cache.cached_since(chain, from);
        for &(number, hash) in cached.iter().rev().take(REORG_RECHECK_NEWEST) {
            // A failed read is not a reorganization: the snapshot stays, and the next head
            // that moves checks it again.
            let Ok(now) = source.block_hash(chain, number).await else { continue };
            if now != hash {
                tracing::warn!(
                    chain = chain.name(),
                    block = number,
                    "a reorganization deeper than the confirmation depth replaced a cached \
                     block; its snapshot is read again (raise --confirmations?)"
                );
                cache.evict(chain, number);
            }
        }
    }
    for chain in [Chain::L1, Chain::L2] {
        let number = heads.get(chain);
        if !matches!(cache.lookup(chain, number), Lookup::Found(_)) {
            let snapshot = source.snapshot(chain, number).await?;
            cache.insert(chain, snapshot);
        }
    }
    for (chain, number) in cache.wanted() {
        match source.snapshot(chain, number).await {
            Ok(snapshot) => cache.insert(chain, snapshot),
            Err(e @ SourceError::NotReached { .. }) => {
                cache.unwant(chain, number);
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(heads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::snapshot;

    #[test]
    fn lookups_distinguish_not_reached_from_not_fetched_and_record_wants() {
        let cache = SourceCache::new();
        assert!(matches!(cache.lookup(Chain::L1, 5), Lookup::NotReached { head: None }));
        cache.set_heads(Heads { l1: 10, l2: 3 });
        assert!(matches!(cache.lookup(Chain::L1, 11), Lookup::NotReached { head: Some(10) }));
        assert!(matches!(cache.lookup(Chain::L1, 7), Lookup::Fetching));
        assert_eq!(cache.wanted(), vec![(Chain::L1, 7)]);
        cache.insert(Chain::L1, snapshot(7, &[(1, 5)]));
        assert!(cache.wanted().is_empty());
        assert!(matches!(cache.lookup(Chain::L1, 7), Lookup::Found(_)));
        assert!(matches!(cache.lookup(Chain::L2, 7), Lookup::NotReached { head: Some(3) }));
    }

    /// A source whose block 7 of L1 is replaced (a reorganization) after the first read.
    struct Reorganizing {
        reorged: std::sync::atomic::AtomicBool,
        reads: std::sync::atomic::AtomicU32,
    }

    impl StakeSource for Reorganizing {
        fn kind(&self) -> &'static str {
            "test"
        }
        fn heads(&self) -> SourceFuture<'_, Heads> {
            // The head moves on when the reorganization comes (that is when it is looked for).
            let l1 = if self.reorged.load(std::sync::atomic::Ordering::Relaxed) { 8 } else { 7 };
            Box::pin(async move { Ok(Heads { l1, l2: 3 }) })
        }
        fn snapshot(&self, chain: Chain, number: u64) -> SourceFuture<'_, ChainSnapshot> {
            use std::sync::atomic::Ordering;
            self.reads.fetch_add(1, Ordering::Relaxed);
            let mut s = snapshot(number, &[(1, 5)]);
            if chain == Chain::L1 && self.reorged.load(Ordering::Relaxed) {
                s.block.hash = [0xee; 32];
            }
            Box::pin(async move { Ok(s) })
        }
    }

    #[tokio::test]
    async fn a_cached_snapshot_whose_block_was_reorganized_away_is_read_again() {
        use std::sync::atomic::Ordering;
        let source = Reorganizing { reorged: false.into(), reads: 0.into() };
        let cache = SourceCache::new();
        refresh(&source, &cache).await.unwrap();
        let Lookup::Found(before) = cache.lookup(Chain::L1, 7) else { panic!("not cached") };
        source.reorged.store(true, Ordering::Relaxed);
        refresh(&source, &cache).await.unwrap();
        // Dropped: the next lookup asks for it, and the next pass reads the new block.
        assert!(matches!(cache.lookup(Chain::L1, 7), Lookup::Fetching));
        refresh(&source, &cache).await.unwrap();
        let Lookup::Found(after) = cache.lookup(Chain::L1, 7) else { panic!("not cached") };
        assert_ne!(before.block.hash, after.block.hash, "the replaced block's snapshot was kept");
        assert_eq!(after.block.hash, [0xee; 32]);
        let Lookup::Found(l2) = cache.lookup(Chain::L2, 3) else { panic!("not cached") };
        assert_eq!(l2.block.hash, snapshot(3, &[]).block.hash, "the other chain is untouched");
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = SourceCache::new();
        for n in 0..(MAX_SNAPSHOTS as u64 + 10) {
            cache.insert(Chain::L1, snapshot(n, &[]));
        }
        assert!(matches!(cache.lookup(Chain::L1, 0), Lookup::NotReached { .. }));
        assert!(matches!(cache.lookup(Chain::L1, MAX_SNAPSHOTS as u64 + 9), Lookup::Found(_)));
        cache.set_heads(Heads { l1: 10_000, l2: 0 });
        for n in 1000..2000 {
            let _ = cache.lookup(Chain::L1, n);
        }
        assert_eq!(cache.wanted().len(), MAX_WANTED);
    }
}
