//! Chain watching for block and event triggers (docs/protocol.md, 7.5): each node reads its own
//! chain nodes (`--automation-rpc`) and keeps, per chain, the recent headers and the logs of the
//! contracts its active event automations name. The engine's synchronous votes and proposals
//! read this cache ([`ChainWatch`]); the watcher ([`watch`]) fills it off the consensus thread.
//!
//! The cache holds a contiguous run of headers, each one's parent hash checked against the one
//! before: a break (a reorganization) drops the last [`REORG_DEPTH`] blocks and their logs,
//! which are read again. A log is kept only if its block hash is the header's.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use tokio_util::sync::CancellationToken;

use super::Automation;

/// Headers (and their logs) kept per chain; older ones leave the window.
pub const WINDOW_BLOCKS: u64 = 4096;
/// Blocks read before the head seen when the watch starts.
pub const BACKLOG_BLOCKS: u64 = 256;
/// Blocks dropped when a parent hash does not match: reorganizations up to this deep are read
/// again (event triggers wait for at most [`super::spec::MAX_CONFIRMATIONS`]).
pub const REORG_DEPTH: u64 = 64;
/// Headers read per poll at most (a node far behind catches up over several polls).
pub const MAX_BLOCKS_PER_POLL: u64 = 256;
/// Logs kept per chain at most; beyond, the oldest blocks' logs leave first.
pub const MAX_LOGS: usize = 100_000;
/// Blocks one `eth_getLogs` asks for at most (chain nodes refuse wide ranges; 500 is within
/// the limits common ones set).
pub const LOG_RANGE_BLOCKS: u64 = 500;
/// Polls running in which one contract's one block must be refused before it is marked
/// unreadable (docs/protocol.md, 7.5) ...
pub const UNREADABLE_AFTER: u32 = 3;
/// ... over at least this long (ms): a passing refusal (a lagging or rate-limited chain node)
/// marks nothing.
pub const UNREADABLE_AFTER_MS: u64 = 60_000;
/// `eth_getLogs` requests one poll makes at most per chain; the rest waits for the next poll.
pub const MAX_LOG_REQUESTS_PER_POLL: usize = 64;
/// The longest pause of log reading after polls that the chain node's trouble ended.
pub const MAX_LOG_PAUSE_MS: u64 = 30_000;
/// How often each chain is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// One JSON-RPC call's deadline.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One block header, as the watcher read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub hash: [u8; 32],
    pub parent: [u8; 32],
    /// Unix seconds.
    pub timestamp: u64,
}

/// One log of a watched contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLog {
    pub address: [u8; 20],
    pub topics: Vec<[u8; 32]>,
    pub data: Vec<u8>,
    pub tx_hash: [u8; 32],
}

/// What this node knows of one chain.
#[derive(Debug, Default)]
pub struct ChainCache {
    headers: BTreeMap<u64, Header>,
    logs: BTreeMap<(u64, u64), ChainLog>,
    /// The held logs again, by contract: `(address, block, index)`.
    by_address: BTreeSet<([u8; 20], u64, u64)>,
    /// Per watched contract: its logs are held for every block of the window up to this one.
    covered: HashMap<[u8; 20], u64>,
    /// Per contract: the newest block whose logs were evicted ([`MAX_LOGS`]); not held there.
    evicted: HashMap<[u8; 20], u64>,
    /// Per contract: blocks whose logs the chain node would not give ([`UNREADABLE_AFTER`]
    /// polls running); covered past, but not held there.
    unreadable: HashMap<[u8; 20], BTreeSet<u64>>,
    /// Per contract: the one block its last reads were refused at, in how many polls running,
    /// and since when (ms).
    stuck: HashMap<[u8; 20], (u64, u32, u64)>,
    /// Polls running that the chain node's trouble ended with no logs given, and no log
    /// request before this time (ms): a chain node in trouble is not asked again every poll.
    log_failures: u32,
    logs_paused_until_ms: u64,
    /// See [`ChainCache::generation`].
    generation: u64,
}

impl ChainCache {
    /// The newest block read.
    pub fn head(&self) -> Option<u64> {
        self.headers.last_key_value().map(|(n, _)| *n)
    }

    /// The oldest block held.
    pub fn low(&self) -> Option<u64> {
        self.headers.first_key_value().map(|(n, _)| *n)
    }

    pub fn header(&self, number: u64) -> Option<&Header> {
        self.headers.get(&number)
    }

    pub fn log(&self, number: u64, index: u64) -> Option<&ChainLog> {
        self.logs.get(&(number, index))
    }

    /// Are `address`'s logs held for block `number`?
    pub fn covers(&self, address: &[u8; 20], number: u64) -> bool {
        self.low().is_some_and(|low| low <= number)
            && self.covered.get(address).is_some_and(|to| number <= *to)
            && self.evicted.get(address).is_none_or(|gone| number > *gone)
            && self.unreadable.get(address).is_none_or(|blocks| !blocks.contains(&number))
    }

    /// The held logs of `address` from block `from` on, oldest first, with their block number
    /// and index (an index look-up: no walk over other contracts' logs).
    pub fn logs_of<'a>(
        &'a self,
        address: &'a [u8; 20],
        from: u64,
    ) -> impl Iterator<Item = ((u64, u64), &'a ChainLog)> + 'a {
        self.by_address
            .range((*address, from, 0)..=(*address, u64::MAX, u64::MAX))
            .filter_map(|(_, n, i)| Some(((*n, *i), self.logs.get(&(*n, *i))?)))
    }

    /// Appends `number`'s header if it extends the run; `false` (nothing changed) if its
    /// parent is not the held header before it.
    pub fn push_header(&mut self, number: u64, header: Header) -> bool {
        if let Some(head) = self.head() {
            let extends = number == head + 1
                && self.headers.get(&head).is_some_and(|h| h.hash == header.parent);
            if !extends {
                return false;
            }
        }
        self.headers.insert(number, header);
        while self.headers.len() as u64 > WINDOW_BLOCKS {
            self.headers.pop_first();
        }
        if let Some(low) = self.low() {
            self.drop_logs(|n, _| n < low);
            for blocks in self.unreadable.values_mut() {
                blocks.retain(|n| *n >= low);
            }
            self.unreadable.retain(|_, blocks| !blocks.is_empty());
        }
        true
    }

    /// Drops the logs `gone` picks, from both maps.
    fn drop_logs(&mut self, gone: impl Fn(u64, &ChainLog) -> bool) {
        let by_address = &mut self.by_address;
        self.logs.retain(|(n, i), log| {
            let drop = gone(*n, log);
            if drop {
                by_address.remove(&(log.address, *n, *i));
            }
            !drop
        });
    }

    /// Keeps `log` of block `number` if that block is held with `block_hash`.
    pub fn push_log(
        &mut self,
        number: u64,
        index: u64,
        block_hash: [u8; 32],
        log: ChainLog,
    ) -> bool {
        if self.headers.get(&number).is_none_or(|h| h.hash != block_hash) {
            return false;
        }
        let address = log.address;
        if let Some(old) = self.logs.insert((number, index), log) {
            self.by_address.remove(&(old.address, number, index));
        }
        self.by_address.insert((address, number, index));
        while self.logs.len() > MAX_LOGS {
            // Evicted logs are no longer "held": votes on them wait rather than refuse.
            if let Some(((gone, index), log)) = self.logs.pop_first() {
                self.by_address.remove(&(log.address, gone, index));
                let mark = self.evicted.entry(log.address).or_default();
                *mark = (*mark).max(gone);
            }
        }
        true
    }

    /// `address`'s logs are now held up to block `to`.
    pub fn set_covered(&mut self, address: [u8; 20], to: u64) {
        self.covered.insert(address, to);
        self.stuck.remove(&address);
    }

    /// `address`'s logs of block `number` were refused in this poll at `now_ms`; `true` once
    /// that happened in [`UNREADABLE_AFTER`] polls running over [`UNREADABLE_AFTER_MS`], when
    /// the block is marked unreadable for it and its logs are held past it.
    fn read_failed(&mut self, address: [u8; 20], number: u64, now_ms: u64) -> bool {
        let stuck = self.stuck.entry(address).or_insert((number, 0, now_ms));
        if stuck.0 != number {
            *stuck = (number, 0, now_ms);
        }
        stuck.1 += 1;
        if stuck.1 < UNREADABLE_AFTER || now_ms.saturating_sub(stuck.2) < UNREADABLE_AFTER_MS {
            return false;
        }
        self.unreadable.entry(address).or_default().insert(number);
        self.set_covered(address, number);
        true
    }

    /// Ends a poll's log reading at `now_ms`: after one that the chain node's trouble ended
    /// (no answer, no connection, a 5xx) with no logs given, log reading pauses: twice
    /// [`POLL_INTERVAL`], doubling after each such poll, up to [`MAX_LOG_PAUSE_MS`]. Refusals
    /// do not pause it: they are answers, and the stuck contract they concern costs one
    /// request a poll.
    fn logs_read(&mut self, troubled: bool, answered: usize, now_ms: u64) {
        if !troubled || answered > 0 {
            self.log_failures = 0;
            self.logs_paused_until_ms = 0;
            return;
        }
        self.log_failures = self.log_failures.saturating_add(1);
        let interval = u64::try_from(POLL_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let pause = interval.saturating_mul(1 << self.log_failures.min(16)).min(MAX_LOG_PAUSE_MS);
        self.logs_paused_until_ms = now_ms.saturating_add(pause);
    }

    /// Stops holding the logs of contracts not in `watched`.
    pub fn retain_addresses(&mut self, watched: &HashSet<[u8; 20]>) {
        self.covered.retain(|a, _| watched.contains(a));
        self.unreadable.retain(|a, _| watched.contains(a));
        self.stuck.retain(|a, _| watched.contains(a));
        self.drop_logs(|_, log| !watched.contains(&log.address));
    }

    /// Drops every block after `to`, and their logs (a reorganization).
    pub fn rewind(&mut self, to: u64) {
        self.headers.retain(|n, _| *n <= to);
        self.drop_logs(|n, _| n > to);
        for covered in self.covered.values_mut() {
            *covered = (*covered).min(to);
        }
        for blocks in self.unreadable.values_mut() {
            blocks.retain(|n| *n <= to);
        }
        // A refusal below the rewind still counts: a chain node whose head keeps going back
        // must not keep a refused block from ever being marked.
        self.stuck.retain(|_, (n, _, _)| *n <= to);
        self.generation = self.generation.wrapping_add(1);
    }

    /// Changes at each rewind: what a reader worked out from the logs held before (a leader's
    /// place in an event automation's logs) holds only within one generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// The chains this node watches, shared by the watchers (writers) and the engine's calls.
#[derive(Default)]
pub struct ChainWatch {
    chains: RwLock<HashMap<u64, ChainCache>>,
    /// Each watched chain's endpoint: the provider reads go through, and its URL (writes).
    endpoints: RwLock<HashMap<u64, (DynProvider, String)>>,
}

impl std::fmt::Debug for ChainWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainWatch").finish_non_exhaustive()
    }
}

impl ChainWatch {
    /// Starts holding `chain_id` (its watcher fills it).
    pub fn add(&self, chain_id: u64) {
        self.chains.write().unwrap_or_else(|e| e.into_inner()).entry(chain_id).or_default();
    }

    /// Watches `chain_id` through `provider` at `url`.
    pub fn add_endpoint(&self, chain_id: u64, provider: DynProvider, url: String) {
        self.add(chain_id);
        self.endpoints.write().unwrap_or_else(|e| e.into_inner()).insert(chain_id, (provider, url));
    }

    /// The provider of `chain_id`, if watched.
    pub fn provider(&self, chain_id: u64) -> Option<DynProvider> {
        let endpoints = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        endpoints.get(&chain_id).map(|(p, _)| p.clone())
    }

    /// The URL of `chain_id`'s endpoint, if watched.
    pub fn url(&self, chain_id: u64) -> Option<String> {
        let endpoints = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        endpoints.get(&chain_id).map(|(_, u)| u.clone())
    }

    pub fn watches(&self, chain_id: u64) -> bool {
        self.chains.read().unwrap_or_else(|e| e.into_inner()).contains_key(&chain_id)
    }

    /// `read` of `chain_id`'s cache, if this node watches it.
    pub fn read<R>(&self, chain_id: u64, read: impl FnOnce(&ChainCache) -> R) -> Option<R> {
        self.chains.read().unwrap_or_else(|e| e.into_inner()).get(&chain_id).map(read)
    }

    /// `write` of `chain_id`'s cache.
    pub fn write<R>(&self, chain_id: u64, write: impl FnOnce(&mut ChainCache) -> R) -> R {
        write(self.chains.write().unwrap_or_else(|e| e.into_inner()).entry(chain_id).or_default())
    }
}

/// A provider for `url` whose answers are capped like the stake sources'.
pub fn provider(url: &str) -> anyhow::Result<DynProvider> {
    let parsed: alloy::transports::http::reqwest::Url =
        url.parse().map_err(|e| anyhow::anyhow!("--automation-rpc: not a valid URL ({e})"))?;
    let is_local = parsed.host_str().is_some_and(|h| h == "localhost" || h == "127.0.0.1");
    let transport = avs_internal_tasks::transport::CappedHttp::new(
        parsed,
        avs_internal_tasks::transport::MAX_RESPONSE_BYTES,
    );
    let client = alloy::rpc::client::RpcClient::new(transport, is_local);
    Ok(ProviderBuilder::new().connect_client(client).erased())
}

/// `call` within [`CALL_TIMEOUT`], its error named by `what`.
pub(crate) async fn timed<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::IntoFuture<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call.into_future()).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(anyhow::anyhow!("{what}: {e}")),
        Err(_) => Err(anyhow::anyhow!("{what}: no answer within {CALL_TIMEOUT:?}")),
    }
}

/// Watches the chain behind `provider` until `shutdown`: its chain id is read first (retried),
/// then every [`POLL_INTERVAL`] new headers and the logs of the contracts `automation`'s active
/// event triggers on that chain name. Errors are logged and the next poll tries again.
pub async fn watch(
    url: String,
    provider: DynProvider,
    automation: Arc<Automation>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(500);
    let chain_id = loop {
        match timed("eth_chainId", provider.get_chain_id()).await {
            Ok(id) => break id,
            Err(e) => {
                tracing::warn!(error = %e, "automation chain not reachable; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    automation.chains().add_endpoint(chain_id, provider.clone(), url);
    tracing::info!(chain_id, "watching a chain for automation triggers");
    let mut failing = false;
    loop {
        match poll(&provider, chain_id, &automation).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(chain_id, "automation chain readable again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(chain_id, error = %e, "reading the automation chain failed");
            }
            Err(e) => tracing::debug!(chain_id, error = %e, "reading the automation chain failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

/// One poll: new headers, then the watched contracts' logs up to the last header read.
async fn poll(
    provider: &DynProvider,
    chain_id: u64,
    automation: &Automation,
) -> anyhow::Result<()> {
    let watch = automation.chains();
    read_headers(provider, chain_id, watch).await?;
    let watched: HashSet<[u8; 20]> = automation.watched_contracts(chain_id).into_iter().collect();
    read_logs(provider, chain_id, watch, &watched, crate::node::now_ms()).await
}

/// Reads the headers after the last one held (from [`BACKLOG_BLOCKS`] before the head on the
/// first poll), at most [`MAX_BLOCKS_PER_POLL`]; a broken parent link rewinds [`REORG_DEPTH`].
/// A head below the one held drops the blocks above it, and [`REORG_DEPTH`] more if the block
/// at the head is not the one held (so does a head at the same height with another hash).
pub async fn read_headers(
    provider: &DynProvider,
    chain_id: u64,
    watch: &ChainWatch,
) -> anyhow::Result<()> {
    let latest =
        timed("eth_getBlockByNumber", provider.get_block_by_number(BlockNumberOrTag::Latest))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no latest block"))?;
    let head = latest.header.number;
    if let Some(held) = watch.read(chain_id, ChainCache::head).flatten()
        && head <= held
    {
        // Nothing new, or the chain node's head went back or was replaced at the same height
        // (a reorganization to a chain no longer than the one held, or another chain node
        // behind this one): held blocks above its head are not on its chain now, and the block
        // at its head is, only if it is still the one held.
        let same = watch
            .read(chain_id, |c| c.header(head).is_some_and(|h| h.hash == latest.header.hash.0))
            .unwrap_or(false);
        if same && head == held {
            return Ok(());
        }
        let back = if same { head } else { head.saturating_sub(1 + REORG_DEPTH) };
        tracing::warn!(
            chain_id,
            head,
            held,
            back_to = back,
            "the chain's head went back or changed; reading again"
        );
        watch.write(chain_id, |cache| cache.rewind(back));
        return Ok(());
    }
    let from = watch
        .read(chain_id, ChainCache::head)
        .flatten()
        .map_or(head.saturating_sub(BACKLOG_BLOCKS), |h| h + 1);
    let to = head.min(from.saturating_add(MAX_BLOCKS_PER_POLL - 1));
    let header_of = |block: &alloy::rpc::types::Block| Header {
        hash: block.header.hash.0,
        parent: block.header.parent_hash.0,
        timestamp: block.header.timestamp,
    };
    for number in from..=to {
        // The latest block was read already.
        let header = if number == head {
            header_of(&latest)
        } else {
            let block = timed(
                "eth_getBlockByNumber",
                provider.get_block_by_number(BlockNumberOrTag::Number(number)),
            )
            .await?
            .ok_or_else(|| anyhow::anyhow!("block {number} not found"))?;
            header_of(&block)
        };
        if !watch.write(chain_id, |cache| cache.push_header(number, header)) {
            let back = number.saturating_sub(1 + REORG_DEPTH);
            tracing::warn!(chain_id, number, back_to = back, "chain reorganized; reading again");
            watch.write(chain_id, |cache| cache.rewind(back));
            return Ok(());
        }
    }
    Ok(())
}

/// What a chain node made of one `eth_getLogs`.
enum LogAnswer {
    Logs(Vec<alloy::rpc::types::Log>),
    /// It refused this request (an error answer, a 4xx other than 429, an answer over the
    /// cap): a narrower one may pass.
    Refused(String),
    /// No answer in time: a narrower request may be lighter, but a single block that times
    /// out says nothing about that block.
    TimedOut,
    /// The chain node is in trouble, not the request (no connection, 429, 5xx, an answer with
    /// a log that lacks its block, index or transaction).
    Failed(String),
}

async fn get_logs(provider: &DynProvider, filter: &Filter) -> LogAnswer {
    use alloy::transports::TransportErrorKind;
    match tokio::time::timeout(CALL_TIMEOUT, provider.get_logs(filter)).await {
        Err(_) => LogAnswer::TimedOut,
        Ok(Ok(logs)) => {
            let whole = logs.iter().all(|l| {
                l.block_number.is_some()
                    && l.log_index.is_some()
                    && l.block_hash.is_some()
                    && l.transaction_hash.is_some()
                    && !l.removed
            });
            if whole {
                LogAnswer::Logs(logs)
            } else {
                LogAnswer::Failed("a log without its block, index or transaction".into())
            }
        }
        Ok(Err(e)) => {
            let refused = e.as_error_resp().is_some()
                || match e.as_transport_err() {
                    Some(TransportErrorKind::HttpError(http)) => {
                        (400..500).contains(&http.status) && !http.is_rate_limit_err()
                    }
                    // The answer cap of `avs_internal_tasks::transport::CappedHttp`.
                    Some(TransportErrorKind::Custom(custom)) => {
                        custom.to_string().contains("bytes; refused")
                    }
                    _ => false,
                };
            if refused {
                LogAnswer::Refused(e.to_string())
            } else {
                LogAnswer::Failed(e.to_string())
            }
        }
    }
}

/// Reads the logs of the `watched` contracts up to the last header held, each from where its
/// logs are held (a contract new here from the window's start), in requests of at most
/// [`LOG_RANGE_BLOCKS`] blocks shared by the contracts at the same point, at most
/// [`MAX_LOG_REQUESTS_PER_POLL`] requests. A refused request is split, contracts first, then
/// blocks, so one contract or block the chain node will not answer for holds up only itself
/// (docs/protocol.md, 7.5); a failed one ends the poll's log reading. An error only for a
/// reorganization seen between the reads (the range is read again on the next poll).
pub async fn read_logs(
    provider: &DynProvider,
    chain_id: u64,
    watch: &ChainWatch,
    watched: &HashSet<[u8; 20]>,
    now_ms: u64,
) -> anyhow::Result<()> {
    watch.write(chain_id, |cache| cache.retain_addresses(watched));
    let Some((low, last, paused_until)) =
        watch.read(chain_id, |c| Some((c.low()?, c.head()?, c.logs_paused_until_ms))).flatten()
    else {
        return Ok(());
    };
    if now_ms < paused_until {
        return Ok(());
    }
    // Contracts at the same point share requests; a contract refused at the block it starts
    // at asks for that block alone (one request a poll, not a narrowing again).
    let mut by_start: BTreeMap<u64, Vec<[u8; 20]>> = BTreeMap::new();
    let mut stuck: Vec<(Vec<[u8; 20]>, u64, bool)> = Vec::new();
    for address in watched {
        let (start, stuck_at) = watch
            .read(chain_id, |c| {
                let start = c.covered.get(address).map_or(low, |to| (to + 1).max(low));
                (start, c.stuck.get(address).map(|(n, _, _)| *n))
            })
            .unwrap_or((low, None));
        if start > last {
            continue;
        }
        if stuck_at == Some(start) {
            stuck.push((vec![*address], start, true));
        } else {
            by_start.entry(start).or_default().push(*address);
        }
    }
    // The contracts nearest the head first (the ones in step), then those catching up, then the
    // stuck ones: the budget never starves the contracts in step.
    let mut jobs: Vec<(Vec<[u8; 20]>, u64, bool)> = by_start
        .into_iter()
        .rev()
        .map(|(start, mut addresses)| {
            addresses.sort_unstable();
            (addresses, start, false)
        })
        .collect();
    stuck.sort_unstable();
    jobs.extend(stuck);
    let (mut asked, mut answered, mut troubled) = (0usize, 0usize, false);
    // Contracts whose logs stopped in this poll: not read further until the next one.
    let mut stopped: HashSet<[u8; 20]> = HashSet::new();
    'poll: for (addresses, start, stuck) in jobs {
        let mut from = start;
        while from <= last {
            let to = last.min(from.saturating_add(LOG_RANGE_BLOCKS - 1));
            // Depth first, the earlier blocks first, so each contract's logs are read in order;
            // a stuck contract's block alone first.
            let mut requests = if stuck && from == start && from < to {
                vec![(addresses.clone(), from + 1, to), (addresses.clone(), from, from)]
            } else {
                vec![(addresses.clone(), from, to)]
            };
            while let Some((mut group, a, b)) = requests.pop() {
                group.retain(|address| !stopped.contains(address));
                if group.is_empty() {
                    continue;
                }
                if asked == MAX_LOG_REQUESTS_PER_POLL {
                    break 'poll;
                }
                asked += 1;
                let filter = Filter::new()
                    .address(group.iter().map(|a| Address::from(*a)).collect::<Vec<_>>())
                    .from_block(a)
                    .to_block(b);
                let answer = get_logs(provider, &filter).await;
                if matches!(answer, LogAnswer::Logs(_)) {
                    answered += 1;
                }
                let (error, timed_out) = match answer {
                    LogAnswer::Logs(logs) => {
                        keep_logs(watch, chain_id, &group, b, logs)?;
                        continue;
                    }
                    LogAnswer::Failed(e) => {
                        tracing::debug!(chain_id, from = a, to = b, error = %e, "reading logs failed; trying again next poll");
                        troubled = true;
                        break 'poll;
                    }
                    LogAnswer::Refused(e) => (e, false),
                    LogAnswer::TimedOut => (format!("no answer within {CALL_TIMEOUT:?}"), true),
                };
                if let Some([first, second]) = halves(&mut group, a, b) {
                    tracing::debug!(chain_id, from = a, to = b, %error, "logs not given; splitting the request");
                    requests.push(second);
                    requests.push(first);
                } else if timed_out {
                    // One block that takes too long: the chain node is slow, not this block.
                    tracing::debug!(
                        chain_id,
                        block = a,
                        "one block's logs took too long; trying again next poll"
                    );
                    troubled = true;
                    break 'poll;
                } else {
                    let address = group[0];
                    if watch.write(chain_id, |cache| cache.read_failed(address, a, now_ms)) {
                        tracing::warn!(
                            chain_id,
                            contract = %Address::from(address),
                            block = a,
                            %error,
                            "the chain node will not give this contract's logs of this block: \
                             its events there get no vote from this node"
                        );
                    } else {
                        stopped.insert(address);
                        tracing::debug!(chain_id, block = a, %error, "one contract's logs refused; trying again next poll");
                    }
                }
            }
            from = to + 1;
        }
    }
    watch.write(chain_id, |cache| cache.logs_read(troubled, answered, now_ms));
    Ok(())
}

/// One `eth_getLogs`: the contracts, the first block and the last.
type LogRequest = (Vec<[u8; 20]>, u64, u64);

/// One log request in two: the contracts in halves while there are several, else the blocks;
/// `None` for one contract's one block.
fn halves(group: &mut Vec<[u8; 20]>, a: u64, b: u64) -> Option<[LogRequest; 2]> {
    if group.len() > 1 {
        let right = group.split_off(group.len() / 2);
        Some([(std::mem::take(group), a, b), (right, a, b)])
    } else if a < b {
        let middle = a + (b - a) / 2;
        Some([(group.clone(), a, middle), (std::mem::take(group), middle + 1, b)])
    } else {
        None
    }
}

/// Holds `logs`, the answer for `group` up to block `to`; an error (after a rewind) if a log's
/// block is not the header held: the chain moved between the reads.
fn keep_logs(
    watch: &ChainWatch,
    chain_id: u64,
    group: &[[u8; 20]],
    to: u64,
    logs: Vec<alloy::rpc::types::Log>,
) -> anyhow::Result<()> {
    let moved = watch.write(chain_id, |cache| {
        for log in logs {
            let (Some(number), Some(index), Some(block_hash), Some(tx)) =
                (log.block_number, log.log_index, log.block_hash, log.transaction_hash)
            else {
                continue;
            };
            let entry = ChainLog {
                address: log.inner.address.0.0,
                topics: log.inner.data.topics().iter().map(|t| t.0).collect(),
                data: log.inner.data.data.to_vec(),
                tx_hash: tx.0,
            };
            // Not asked for, or outside the blocks held: nothing this node would vote on.
            let held =
                cache.low().zip(cache.head()).is_some_and(|(l, h)| (l..=h).contains(&number));
            if !group.contains(&entry.address) || !held {
                continue;
            }
            if !cache.push_log(number, index, block_hash.0, entry) {
                return Some(number);
            }
        }
        for address in group {
            cache.set_covered(*address, to);
        }
        None
    });
    if let Some(number) = moved {
        // From before the block whose hash differs, and at least the usual depth.
        let back = to.saturating_sub(REORG_DEPTH).min(number.saturating_sub(1));
        watch.write(chain_id, |cache| cache.rewind(back));
        anyhow::bail!("a log's block is not the one read; reading from {back} again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(n: u8, parent: u8) -> Header {
        Header { hash: [n; 32], parent: [parent; 32], timestamp: u64::from(n) }
    }

    #[test]
    fn headers_must_link_and_a_break_is_refused() {
        let mut cache = ChainCache::default();
        assert!(cache.push_header(10, header(10, 9)));
        assert!(cache.push_header(11, header(11, 10)));
        // Another parent: a reorganization, refused until the watcher rewinds.
        assert!(!cache.push_header(12, header(12, 99)));
        // A gap is refused too.
        assert!(!cache.push_header(13, header(13, 12)));
        assert_eq!(cache.head(), Some(11));
    }

    #[test]
    fn logs_are_kept_only_for_their_held_block_and_leave_on_rewind() {
        let mut cache = ChainCache::default();
        cache.push_header(10, header(10, 9));
        cache.push_header(11, header(11, 10));
        let log = ChainLog { address: [7; 20], topics: vec![], data: vec![1], tx_hash: [1; 32] };
        assert!(!cache.push_log(11, 0, [99; 32], log.clone()), "another block's hash");
        assert!(cache.push_log(11, 0, [11; 32], log.clone()));
        cache.set_covered([7; 20], 11);
        assert!(cache.covers(&[7; 20], 11));
        assert!(!cache.covers(&[8; 20], 11), "a contract not watched is not covered");
        cache.rewind(10);
        assert_eq!(cache.log(11, 0), None);
        assert!(!cache.covers(&[7; 20], 11));
        assert!(cache.covers(&[7; 20], 10));
        assert!(cache.push_header(11, header(11, 10)));
    }
}
