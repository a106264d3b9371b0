//! The running node: wiring of store, engine, network, clock and HTTP API, and the one loop
//! that drives the engine.
//!
//! One task owns the [`Engine`]. It `select!`s over the slot clock (a tick at every interval
//! boundary, or earlier when the engine asked for a wake-up), network events, messages whose
//! BLS signatures were checked on the blocking pool, blocks fetched from peers, and shutdown.
//! Every engine call returns actions that [`Node::execute`] runs in order; an own vote is
//! fsynced before anything after it in the batch runs (persist before publish), and a failed
//! vote write stops the node rather than risk publishing an unpersisted vote.
//!
//! Gossip is validated off the loop: the loop snapshots the engine's [`GossipContext`], a
//! worker decodes and verifies, reports Accept/Ignore/Reject to the network (which only then
//! forwards), and hands the `Verified` message back to the loop through a bounded channel.
//! The aggregator flag is read once per tick and fresh for every vote fed to the engine.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use avs_consensus::clock::SlotClock;
use avs_consensus::gossip::{GossipContext, GossipOutcome};
use avs_consensus::types::{Block, Certificate, SignedProposal, SignedVote, encode};
use avs_consensus::verify::{Incoming, Verified};
use avs_consensus::{Action, Engine, EngineConfig, Input};
use avs_p2p::{
    GossipMessage, GossipTopic, InboundRequest, Multiaddr, NetworkConfig, NetworkEvent,
    NetworkHandle, NodeKeySource, PeerId, ReqRespProtocol, TopicKind, ValidationOutcome,
};
use prometheus_client::registry::Registry;
use ssz_rs::prelude::List;
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::aggregator::AggregatorController;
use crate::chain_store::ChainStore;
use crate::config::NodeConfig;
use crate::genesis::GenesisFile;
use crate::grpc::{FinalizedEvent, FinalizedFeed, GrpcState};
use crate::http::{ApiState, NodeStatus, PoolApi};
use crate::metrics::NodeMetrics;
use crate::pool::{CheckinSigner, OperatorPool};
use crate::store::{RocksStore, Store, WriteBatch};
use crate::sync::{BlocksByRootRequest, CertificatesRequest, StatusMessage, answer, decode_chunks};

/// Vote subnets of the network. One subnet until operator sets grow past what one topic
/// carries comfortably.
pub const VOTE_SUBNET_COUNT: u64 = 1;
/// Gossip messages validated at once on the blocking pool; further ones wait, and beyond the
/// network's event queue they are ignored and counted.
const MAX_VALIDATIONS_IN_FLIGHT: usize = 64;
/// How often a node checks whether a peer is ahead of it.
const SYNC_CHECK_INTERVAL: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The vote subnet an operator publishes its votes on.
pub fn vote_subnet(operator_index: u64) -> u64 {
    operator_index.checked_rem(VOTE_SUBNET_COUNT).unwrap_or(0)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A message whose signature a worker checked, on its way back to the engine.
enum Checked {
    Proposal(Verified<SignedProposal>),
    Vote(Verified<SignedVote>),
    Certificate(Verified<Certificate>),
}

/// Something a background request produced for the engine.
enum Fetched {
    Blocks(Vec<Block>),
    Certificates(Vec<Certificate>),
}

/// Runs a node until `shutdown` is cancelled.
pub async fn run(config: NodeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let genesis_path =
        config.genesis.clone().context("--genesis is required (see `avs-node genesis`)")?;
    let genesis = GenesisFile::load(&genesis_path)?.to_config()?;
    let keys_dir =
        config.keys_dir.clone().unwrap_or_else(|| crate::keys::default_dir(&config.data_dir));
    let keys = crate::keys::load(&keys_dir)?;
    let clock =
        SlotClock::new(genesis.genesis_time, genesis.slot_duration_ms, genesis.intervals_per_slot)?;

    let db_path = config.data_dir.join("db");
    let store: Arc<dyn Store> = Arc::new(
        RocksStore::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?,
    );
    let chain = ChainStore::new(store.clone());
    let pool = Arc::new(OperatorPool::open(store.clone())?);
    let tasks = crate::tasks::NodeTasks::build(&config, &genesis)?;
    let engine_config = EngineConfig::new(genesis.clone());
    let nullify_intervals = engine_config.nullify_timeout_intervals;
    let engine = match chain.load_restart()? {
        Some((anchor, persisted)) => {
            tracing::info!(
                height = anchor.block.height,
                own_votes = persisted.own_votes.len(),
                certificates = persisted.certificates.len(),
                "resuming from the store"
            );
            Engine::restart(engine_config, keys.bls.clone(), tasks.registry(), anchor, persisted)
        }
        None => Engine::new(engine_config, keys.bls.clone(), tasks.registry()),
    }
    .map_err(|e| anyhow::anyhow!("starting the consensus engine: {e}"))?;
    // A key outside the set follows the chain without voting: an operator registered on L1
    // joins through VotingPowerSync, and the engine picks its index up at the epoch switch.
    let me = engine.operator_index();
    if me.is_none() {
        tracing::warn!(
            epoch = engine.epoch(),
            "this node's BLS key is not in the operator set: following the chain without \
             voting until an epoch's set includes it (check --keys-dir and the genesis file if \
             it should be a member)"
        );
    }

    let mut registry = Registry::default();
    let aggregator = AggregatorController::new(config.is_aggregator, &mut registry);
    let metrics = NodeMetrics::register(&mut registry);
    tasks.register_metrics(&mut registry);
    tasks.spawn_refresher(shutdown.child_token());
    let digest = engine.network_digest();
    let mut net_config =
        NetworkConfig::new(digest, NodeKeySource::Provided(Box::new(keys.node_key.clone())));
    net_config.vote_subnet_count = VOTE_SUBNET_COUNT;
    net_config.gossip = gossip_timing(&clock, nullify_intervals);
    net_config.listen_addrs = listen_addrs(config.p2p_addr, config.p2p_port)?;
    net_config.bootnodes = config
        .bootnodes
        .iter()
        .map(|b| b.parse::<Multiaddr>().with_context(|| format!("--bootnode {b}")))
        .collect::<anyhow::Result<_>>()?;
    let net = avs_p2p::spawn(net_config, &mut registry, shutdown.child_token())?;

    pool.set_operators(engine.key_table())?;
    let mut topics = vec![
        TopicKind::Block,
        TopicKind::Certificate,
        TopicKind::Vote { subnet: me.map_or(0, vote_subnet) },
        TopicKind::Checkin,
    ];
    if config.is_aggregator || me.is_none() {
        // Hot standby: an aggregator at boot listens to every subnet whatever its flag later.
        topics.extend((0..VOTE_SUBNET_COUNT).map(|subnet| TopicKind::Vote { subnet }));
    }
    for kind in topics {
        net.handle.subscribe(GossipTopic::new(digest, kind)).await?;
    }

    let (status_tx, status_rx) = watch::channel(NodeStatus::default());
    let api = ApiState {
        aggregator: Some(aggregator.clone()),
        admin_token: config.admin_token.as_deref().map(Arc::from),
        registry: Arc::new(registry),
        status: status_rx.clone(),
    };
    let listener = crate::http::bind((config.http_addr, config.http_port).into()).await?;
    let pool_api = PoolApi {
        pool: pool.clone(),
        status: status_rx.clone(),
        explorer_url: Arc::from(config.explorer_url.as_str()),
        profile_url: Arc::from(config.eigenlayer_profile_url.as_str()),
    };
    let http = tokio::spawn(crate::http::serve_with_pool(
        listener,
        api,
        Some(pool_api),
        shutdown.child_token(),
    ));
    let (finalized_feed, _) = broadcast::channel(crate::grpc::FINALIZED_FEED_CAPACITY);
    let grpc_state = GrpcState {
        pool: pool.clone(),
        status: status_rx.clone(),
        chain: chain.clone(),
        finalized: finalized_feed.clone(),
    };
    let grpc_listener = crate::grpc::bind((config.grpc_addr, config.grpc_port).into()).await?;
    let grpc = tokio::spawn(crate::grpc::serve(grpc_listener, grpc_state, shutdown.child_token()));
    let signer = CheckinSigner::new(
        keys.bls.clone(),
        keys.address,
        digest,
        config.http_port,
        status_rx.clone(),
        pool.events(),
    );
    if let Some(url) = config.checkin_remote.clone() {
        tokio::spawn(crate::grpc::client::run_checkin_client(
            url,
            signer.clone(),
            shutdown.child_token(),
        ));
    }
    tokio::spawn(crate::pool::run_gossip_checkins(
        signer,
        pool.clone(),
        net.handle.clone(),
        shutdown.child_token(),
    ));

    tracing::info!(
        operator = ?me,
        peer = %net.handle.local_peer_id(),
        epoch = engine.epoch(),
        view = engine.view(),
        aggregator = config.is_aggregator,
        "node started"
    );
    let (checked_tx, checked_rx) = mpsc::channel(1024);
    let (fetched_tx, fetched_rx) = mpsc::channel(64);
    let mut node = Node {
        engine,
        chain,
        net: net.handle.clone(),
        digest,
        clock,
        aggregator,
        metrics,
        status: status_tx,
        validations: Arc::new(Semaphore::new(MAX_VALIDATIONS_IN_FLIGHT)),
        checked_tx,
        fetched_tx,
        wakeup_at: None,
        last_certificate_ms: None,
        peers: 0,
        pending_fetches: VecDeque::new(),
        tasks,
        pool,
        finalized_feed,
    };
    let result = node.run_loop(net.events, checked_rx, fetched_rx, &shutdown).await;
    shutdown.cancel();
    if let Err(e) = node.chain.store().flush() {
        tracing::error!(error = %e, "flushing the store on shutdown failed");
    }
    let _ = net.task.await;
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP API stopped with an error"),
        Err(e) => tracing::error!(error = %e, "HTTP API task failed"),
    }
    match grpc.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "gRPC services stopped with an error"),
        Err(e) => tracing::error!(error = %e, "gRPC task failed"),
    }
    tracing::info!("node stopped");
    result
}

/// Gossip timing derived from the slot clock, so that the engine's re-sends get through.
///
/// The engine re-sends a stalled view's votes and certificates every nullify timeout (three
/// intervals), with identical bytes. Gossipsub drops an id it still remembers, so its duplicate
/// cache must forget within that period: two intervals. It must also outlive the window in
/// which peers advertise the message (IHAVE for `history_gossip` heartbeats), or an
/// advertisement could bring a message back to a node that has just forgotten it: with a
/// heartbeat of half an interval, that window is one and a half intervals.
fn gossip_timing(clock: &SlotClock, nullify_intervals: u64) -> avs_p2p::GossipConfig {
    let interval = clock.interval_ms().max(20);
    let heartbeat = Duration::from_millis((interval / 2).clamp(10, 700));
    let resend = interval.saturating_mul(nullify_intervals.max(3));
    avs_p2p::GossipConfig {
        heartbeat_interval: heartbeat,
        // Served to IWANT for 6 intervals, so a slow requester still gets what was advertised
        // (IHAVE stops after 1.5 intervals, before the duplicate cache forgets, so a longer
        // cache cannot bring a message back).
        history_length: 12,
        history_gossip: 3,
        duplicate_cache_time: Duration::from_millis(resend.saturating_mul(2) / 3),
        ..avs_p2p::GossipConfig::default()
    }
}

fn listen_addrs(ip: IpAddr, port: u16) -> anyhow::Result<Vec<Multiaddr>> {
    let family = if ip.is_ipv4() { "ip4" } else { "ip6" };
    Ok(vec![
        format!("/{family}/{ip}/udp/{port}/quic-v1").parse()?,
        format!("/{family}/{ip}/tcp/{port}").parse()?,
    ])
}

struct Node {
    engine: Engine,
    chain: ChainStore,
    net: NetworkHandle,
    digest: [u8; 4],
    clock: SlotClock,
    aggregator: AggregatorController,
    metrics: NodeMetrics,
    status: watch::Sender<NodeStatus>,
    validations: Arc<Semaphore>,
    checked_tx: mpsc::Sender<Checked>,
    fetched_tx: mpsc::Sender<Fetched>,
    wakeup_at: Option<u64>,
    last_certificate_ms: Option<u64>,
    peers: u64,
    /// Roots the engine asked for that are not yet requested (one request at a time per root).
    pending_fetches: VecDeque<avs_consensus::types::Root>,
    /// Internal tasks: their logs and metrics (the engine holds their registry).
    tasks: crate::tasks::NodeTasks,
    /// Check-ins from gossip are verified and recorded here; it follows the operator set.
    pool: Arc<OperatorPool>,
    /// Finalized blocks for gRPC `SubscribeFinalized` streams.
    finalized_feed: FinalizedFeed,
}

impl Node {
    async fn run_loop(
        &mut self,
        mut events: mpsc::Receiver<NetworkEvent>,
        mut checked: mpsc::Receiver<Checked>,
        mut fetched: mpsc::Receiver<Fetched>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut sync_check = tokio::time::interval(SYNC_CHECK_INTERVAL);
        sync_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Enter the current view at once instead of waiting for the next boundary.
        self.tick().await?;
        loop {
            let now = now_ms();
            let next = self
                .wakeup_at
                .map_or(self.clock.next_tick_ms(now), |w| w.min(self.clock.next_tick_ms(now)));
            let sleep = tokio::time::sleep(Duration::from_millis(next.saturating_sub(now)));
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = sleep => self.tick().await?,
                Some(event) = events.recv() => self.on_network_event(event),
                Some(message) = checked.recv() => self.on_checked(message).await?,
                Some(result) = fetched.recv() => self.on_fetched(result).await?,
                _ = sync_check.tick() => self.sync_check(),
            }
            self.publish_status();
        }
    }

    async fn tick(&mut self) -> anyhow::Result<()> {
        self.wakeup_at = None;
        let is_aggregator = self.aggregator.observe_tick();
        let actions = self.engine.handle(Input::Tick { now_ms: now_ms(), is_aggregator });
        self.execute(actions).await
    }

    async fn feed(&mut self, input: Input) -> anyhow::Result<()> {
        let actions = self.engine.handle(input);
        self.execute(actions).await
    }

    /// Runs the engine's actions in order. See the module doc for the persistence rule.
    async fn execute(&mut self, actions: Vec<Action>) -> anyhow::Result<()> {
        let mut batch = WriteBatch::new();
        let mut finalized_any = false;
        for action in actions {
            match action {
                Action::PersistVote(vote) => {
                    // Everything stored so far in this batch goes first: it is older.
                    self.chain.write(std::mem::take(&mut batch))?;
                    let chain = self.chain.clone();
                    tokio::task::spawn_blocking(move || chain.persist_vote(&vote))
                        .await
                        .context("vote persistence task")?
                        .context("persisting an own vote failed; stopping before it is sent")?;
                    self.metrics.votes_persisted.inc();
                }
                Action::BroadcastProposal(proposal) => {
                    self.tasks.proposed(&proposal);
                    self.publish(TopicKind::Block, encode(&proposal)?).await;
                }
                Action::BroadcastVote(vote) => {
                    let subnet = vote_subnet(vote.operator_index);
                    self.publish(TopicKind::Vote { subnet }, encode(&vote)?).await;
                }
                Action::BroadcastCertificate(cert) => {
                    self.publish(TopicKind::Certificate, encode(&cert)?).await;
                }
                Action::Notarized { certificate, block } => {
                    self.saw_certificate();
                    self.chain.put_certificate(&mut batch, &certificate)?;
                    if let Some(block) = block {
                        self.chain.put_block(&mut batch, &certificate.data.block_root, &block)?;
                    }
                }
                Action::Nullified { certificate } => {
                    self.saw_certificate();
                    self.chain.put_certificate(&mut batch, &certificate)?;
                }
                Action::Finalized { root, block, certificate } => {
                    self.saw_certificate();
                    self.chain.put_finalized(&mut batch, &root, &block)?;
                    self.chain.put_certificate(&mut batch, &certificate)?;
                    self.metrics
                        .finalized_height
                        .set(i64::try_from(block.height).unwrap_or(i64::MAX));
                    tracing::info!(
                        height = block.height,
                        root = %hex::encode(&root[..4]),
                        tasks = block.body.tasks.len(),
                        "finalized"
                    );
                    self.tasks.finalized(&block);
                    // No subscriber is the normal case: nothing to do then.
                    let _ = self.finalized_feed.send(Arc::new(FinalizedEvent {
                        root,
                        block,
                        certificate,
                    }));
                    finalized_any = true;
                }
                Action::EpochChanged { epoch, operators } => {
                    tracing::info!(epoch, operators = operators.operators.len(), "epoch changed");
                    // Rows of operators that left the set expire now.
                    if let Err(e) = self.pool.set_operators(self.engine.key_table()) {
                        tracing::warn!(error = %e, "updating the operator pool's set failed");
                    }
                }
                Action::FetchBlock(root) => {
                    if !self.pending_fetches.contains(&root) {
                        self.pending_fetches.push_back(root);
                    }
                }
                Action::Evidence(evidence) => {
                    self.metrics.evidence.inc();
                    tracing::warn!(?evidence, "equivocation evidence");
                }
                Action::ScheduleWakeup { at_ms } => {
                    self.wakeup_at = Some(self.wakeup_at.map_or(at_ms, |w| w.min(at_ms)));
                }
            }
        }
        if finalized_any && let Some(anchor) = self.engine.anchor() {
            self.chain.put_anchor(&mut batch, &anchor)?;
        }
        self.chain.write(batch)?;
        self.start_fetches();
        Ok(())
    }

    fn saw_certificate(&mut self) {
        let now = now_ms();
        self.last_certificate_ms = Some(now);
        self.metrics.last_certificate_seconds.set(i64::try_from(now / 1000).unwrap_or(i64::MAX));
    }

    async fn publish(&self, kind: TopicKind, data: Vec<u8>) {
        let topic = GossipTopic::new(self.digest, kind);
        if let Err(e) = self.net.publish(topic, data).await {
            // No peers yet, or a duplicate: the engine re-broadcasts what matters.
            tracing::debug!(topic = %kind.name(), error = %e, "publish failed");
        }
    }

    fn on_network_event(&mut self, event: NetworkEvent) {
        match event {
            NetworkEvent::Gossip(message) => self.validate(message),
            NetworkEvent::Request(request) => self.answer(request),
            NetworkEvent::PeerConnected(peer) => {
                self.peers = self.peers.saturating_add(1);
                tracing::debug!(%peer, "peer connected");
                self.sync_with(peer);
            }
            NetworkEvent::PeerDisconnected(peer) => {
                self.peers = self.peers.saturating_sub(1);
                tracing::debug!(%peer, "peer disconnected");
            }
        }
    }

    /// Decodes and verifies a gossip message on the blocking pool, reports the verdict to
    /// the network, and hands a verified message back to the loop.
    fn validate(&self, message: GossipMessage) {
        let context = self.engine.gossip_context();
        let net = self.net.clone();
        let checked_tx = self.checked_tx.clone();
        let permits = self.validations.clone();
        let metrics = self.metrics.clone();
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else { return };
            let GossipMessage { topic, data, peer, message_id } = message;
            let kind = topic.kind;
            let verdict = tokio::task::spawn_blocking(move || {
                check_gossip(&context, &pool, peer, kind, &data)
            })
            .await;
            let (outcome, checked) = match verdict {
                Ok(result) => result,
                Err(e) => {
                    tracing::error!(error = %e, "validation task failed");
                    (GossipOutcome::Ignore("validation task failed".into()), None)
                }
            };
            let label = match &outcome {
                GossipOutcome::Accept => ValidationOutcome::Accept,
                GossipOutcome::Ignore(reason) => {
                    tracing::debug!(topic = %kind.name(), %peer, %reason, "gossip ignored");
                    ValidationOutcome::Ignore
                }
                GossipOutcome::Reject(reason) => {
                    tracing::debug!(topic = %kind.name(), %peer, %reason, "gossip rejected");
                    ValidationOutcome::Reject
                }
            };
            metrics.gossip_outcome(&kind.name(), label);
            let _ = net.report_validation(message_id, peer, label);
            if let Some(checked) = checked
                && checked_tx.try_send(checked).is_err()
            {
                metrics.dropped_checked.inc();
            }
        });
    }

    async fn on_checked(&mut self, message: Checked) -> anyhow::Result<()> {
        let input = match message {
            Checked::Proposal(p) => Input::Proposal(Incoming::Verified(p)),
            Checked::Vote(v) => Input::Vote {
                vote: Incoming::Verified(v),
                is_aggregator: self.aggregator.is_enabled(),
            },
            Checked::Certificate(c) => Input::Certificate(Incoming::Verified(c)),
        };
        self.feed(input).await
    }

    async fn on_fetched(&mut self, fetched: Fetched) -> anyhow::Result<()> {
        match fetched {
            Fetched::Blocks(blocks) => {
                for block in blocks {
                    self.feed(Input::Block(block)).await?;
                }
            }
            Fetched::Certificates(certs) => {
                for cert in certs {
                    // Raw: the engine verifies against the key table of its current epoch.
                    self.feed(Input::Certificate(Incoming::Raw(cert))).await?;
                }
            }
        }
        Ok(())
    }

    fn answer(&self, request: InboundRequest) {
        let InboundRequest { peer, protocol, request, responder } = request;
        let chunks = answer(&self.chain, protocol, &request, &self.status_message());
        tracing::debug!(%peer, protocol = protocol.name(), chunks = chunks.len(), "answered request");
        responder.respond(chunks);
    }

    fn status_message(&self) -> StatusMessage {
        let (finalized_root, finalized_height) = self.engine.finalized();
        StatusMessage {
            epoch: self.engine.epoch(),
            view: self.engine.view(),
            finalized_height,
            finalized_root,
        }
    }

    /// Requests the blocks the engine is missing, from every connected peer in turn.
    fn start_fetches(&mut self) {
        if self.pending_fetches.is_empty() {
            return;
        }
        let roots: Vec<_> = self.pending_fetches.drain(..).take(64).collect();
        let net = self.net.clone();
        let tx = self.fetched_tx.clone();
        tokio::spawn(async move {
            let Ok(request) = List::try_from(roots.clone()) else { return };
            let Ok(request) = encode(&BlocksByRootRequest { roots: request }) else { return };
            let peers = net.connected_peers().await.unwrap_or_default();
            for peer in peers {
                let response = net
                    .request(peer, ReqRespProtocol::BlocksByRoot, request.clone(), REQUEST_TIMEOUT)
                    .await;
                match response.map_err(anyhow::Error::from).and_then(decode_chunks::<Block>) {
                    Ok(blocks) if !blocks.is_empty() => {
                        let _ = tx.send(Fetched::Blocks(blocks)).await;
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(%peer, error = %e, "blocks_by_root failed"),
                }
            }
            tracing::debug!(missing = roots.len(), "no peer had the requested blocks");
        });
    }

    /// Every few seconds: ask one peer where it is, and catch up if it is ahead.
    fn sync_check(&self) {
        let net = self.net.clone();
        let me = self.status_message();
        let tx = self.fetched_tx.clone();
        tokio::spawn(async move {
            let peers = net.connected_peers().await.unwrap_or_default();
            if let Some(peer) =
                peers.get(usize::try_from(now_ms() % 1024).unwrap_or(0) % peers.len().max(1))
            {
                catch_up(net, *peer, me, tx).await;
            }
        });
    }

    fn sync_with(&self, peer: PeerId) {
        tokio::spawn(catch_up(
            self.net.clone(),
            peer,
            self.status_message(),
            self.fetched_tx.clone(),
        ));
    }

    fn publish_status(&self) {
        let (root, height) = self.engine.finalized();
        let status = NodeStatus {
            epoch: self.engine.epoch(),
            view: self.engine.view(),
            finalized_height: height,
            finalized_root: format!("0x{}", hex::encode(root)),
            peers: self.peers,
            is_aggregator: self.aggregator.is_enabled(),
            operator_index: self.engine.operator_index(),
            last_certificate_ms: self.last_certificate_ms,
        };
        self.tasks.set_view(status.view);
        self.metrics.view.set(i64::try_from(status.view).unwrap_or(i64::MAX));
        self.metrics.epoch.set(i64::try_from(status.epoch).unwrap_or(i64::MAX));
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}

/// Asks `peer` for its status and, if it is ahead of `me`, for its certificates of our epoch
/// from our view on; the engine takes it from there (catch-up, then fetching ancestors).
async fn catch_up(net: NetworkHandle, peer: PeerId, me: StatusMessage, tx: mpsc::Sender<Fetched>) {
    let Ok(request) = encode(&me) else { return };
    let theirs = match net.request(peer, ReqRespProtocol::Status, request, REQUEST_TIMEOUT).await {
        Ok(chunks) => match decode_chunks::<StatusMessage>(chunks) {
            Ok(mut s) if s.len() == 1 => s.remove(0),
            _ => return,
        },
        Err(e) => {
            tracing::debug!(%peer, error = %e, "status request failed");
            return;
        }
    };
    let ahead = theirs.epoch > me.epoch
        || (theirs.epoch == me.epoch && theirs.view > me.view.saturating_add(1))
        || theirs.finalized_height > me.finalized_height.saturating_add(1);
    if !ahead {
        return;
    }
    tracing::info!(%peer, our_view = me.view, their_view = theirs.view, their_finalized = theirs.finalized_height, "peer is ahead; catching up");
    let request = CertificatesRequest { epoch: me.epoch, from_view: me.view };
    let Ok(request) = encode(&request) else { return };
    match net.request(peer, ReqRespProtocol::Certificates, request, REQUEST_TIMEOUT).await {
        Ok(chunks) => match decode_chunks::<Certificate>(chunks) {
            Ok(certs) if !certs.is_empty() => {
                let _ = tx.send(Fetched::Certificates(certs)).await;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%peer, error = %e, "bad certificates response"),
        },
        Err(e) => tracing::debug!(%peer, error = %e, "certificates request failed"),
    }
}

fn check_gossip(
    context: &GossipContext,
    pool: &OperatorPool,
    peer: PeerId,
    kind: TopicKind,
    data: &[u8],
) -> (GossipOutcome, Option<Checked>) {
    let (outcome, checked) = judge_gossip(context, pool, peer, kind, data);
    if kind != TopicKind::Checkin && outcome == GossipOutcome::Accept {
        pool.count_event();
    }
    (outcome, checked)
}

fn judge_gossip(
    context: &GossipContext,
    pool: &OperatorPool,
    peer: PeerId,
    kind: TopicKind,
    data: &[u8],
) -> (GossipOutcome, Option<Checked>) {
    match kind {
        TopicKind::Block => {
            let (outcome, verified) = context.validate_proposal_bytes(data);
            (outcome, verified.map(Checked::Proposal))
        }
        TopicKind::Vote { .. } => {
            let (outcome, verified) = context.validate_vote_bytes(data);
            (outcome, verified.map(Checked::Vote))
        }
        TopicKind::Certificate => {
            let (outcome, verified) = context.validate_certificate_bytes(data);
            (outcome, verified.map(Checked::Certificate))
        }
        // Verified against the pool's set (the engine's current one) and recorded here: the
        // loop has nothing to do with check-ins.
        TopicKind::Checkin => (pool.validate_gossip(data, &peer.to_string(), now_ms()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_forgets_before_the_engine_resends_and_after_peers_stop_advertising() {
        for slot_ms in [1_000, 4_000, 12_000] {
            let clock = SlotClock::new(0, slot_ms, 5).unwrap();
            let gossip = gossip_timing(&clock, 3);
            let resend = Duration::from_millis(clock.interval_ms() * 3);
            let advertised = gossip.heartbeat_interval * gossip.history_gossip as u32;
            assert!(gossip.duplicate_cache_time < resend, "slot {slot_ms}: {gossip:?}");
            assert!(gossip.duplicate_cache_time > advertised, "slot {slot_ms}: {gossip:?}");
        }
    }
}
