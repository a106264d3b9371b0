//! `avs-node run`: build each component from the configuration, start it, supervise.
//!
//! Components (each its own module): the store and the consensus [`Core`] on it, the p2p
//! network (`avs_p2p`), the consensus loop on its own thread ([`Driver`]), the HTTP API, the
//! gRPC services, the operator pool's check-ins and the task source refresher. They talk
//! through bounded channels and a status watch; shutdown is one cancellation token.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use avs_consensus::EngineConfig;
use avs_consensus::clock::SlotClock;
use avs_p2p::{GossipTopic, Multiaddr, NetworkConfig, NodeKeySource, TopicKind};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::aggregator::AggregatorController;
use crate::chain_store::ChainStore;
use crate::config::NodeConfig;
use crate::core::{Core, CoreConfig};
use crate::disk::DiskWatch;
use crate::driver::Driver;
use crate::genesis::GenesisFile;
use crate::grpc::GrpcState;
use crate::http::{ApiState, PoolApi};
use crate::metrics::NodeMetrics;
use crate::pool::{CheckinSigner, OperatorPool};
use crate::status::NodeStatus;
use crate::store::{RocksStore, Store};
use crate::sync::server::RequestQuota;

pub use crate::driver::now_ms;

/// Vote subnets of the network. One subnet until operator sets grow past what one topic
/// carries comfortably; every node subscribes to all of them (docs/protocol.md, section 9).
pub const VOTE_SUBNET_COUNT: u64 = 1;

/// Runs a node until `shutdown` is cancelled.
pub async fn run(config: NodeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let genesis_path =
        config.node.genesis.clone().context("--genesis is required (see `avs-node genesis`)")?;
    let genesis_file = GenesisFile::load(&genesis_path)?;
    let genesis = genesis_file.to_config()?;
    let keys_dir = config
        .node
        .keys_dir
        .clone()
        .unwrap_or_else(|| crate::keys::default_dir(&config.node.data_dir));
    // Held until the node stops: a second process on the same keys is refused.
    let _keys_lock = crate::keys::lock(&keys_dir)?;
    let keys = crate::keys::load(&keys_dir, &config.node.keys_unlock)?;
    let clock =
        SlotClock::new(genesis.genesis_time, genesis.slot_duration_ms, genesis.intervals_per_slot)?;

    // ----- build -----
    std::fs::create_dir_all(&config.node.data_dir)
        .with_context(|| format!("creating {}", config.node.data_dir.display()))?;
    let disk =
        Arc::new(DiskWatch::new(config.node.data_dir.clone(), config.node.min_free_disk_mib));
    let free_bytes = disk.check_at_start()?;
    let db_path = config.node.data_dir.join("db");
    let store: Arc<dyn Store> = Arc::new(
        RocksStore::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?,
    );
    let chain = ChainStore::new(store.clone()).with_history(config.node.history_blocks);
    let pool = Arc::new(OperatorPool::open(store.clone())?);
    // Genesis names each operator's peer id: a check-in its own node forwards shows that
    // connection's address on the telemetry page.
    pool.set_own_peers(genesis_file.operators.iter().filter_map(|op| {
        let address = crate::keys::parse_hex_array::<20>("address", &op.address).ok()?;
        Some((address, op.peer_id.clone()?))
    }));
    let tasks = crate::tasks::NodeTasks::build(&config, &genesis)?;
    let avs = crate::avs::AvsTasks::open(
        &genesis,
        avs_consensus::signing::network_digest(&genesis)?,
        config.tasks.avs.clone(),
        store.clone(),
    )?;
    let automation = Arc::new(crate::automation::Automation::open(
        store.clone(),
        crate::automation::auth::Network {
            name: genesis_file.network_name.clone(),
            digest: avs_consensus::signing::network_digest(&genesis)?,
            node: alloy::primitives::Address::from(keys.address),
        },
    )?);
    let mut task_registry = tasks.registry();
    avs.register(&mut task_registry)?;
    automation.register(&mut task_registry)?;
    let mut registry = Registry::default();
    let aggregator = AggregatorController::new(config.roles.is_aggregator, &mut registry);
    let metrics = NodeMetrics::register(&mut registry);
    metrics.disk_free_bytes.set(i64::try_from(free_bytes).unwrap_or(i64::MAX));
    tokio::spawn(disk.clone().watch(metrics.disk_free_bytes.clone(), shutdown.child_token()));
    tasks.register_metrics(&mut registry);
    avs.register_metrics(&mut registry);
    let mut core = Core::open(
        chain.clone(),
        CoreConfig {
            engine: EngineConfig::new(genesis.clone()),
            key: keys.bls.clone(),
            registry: task_registry,
            seed: now_ms(),
            vote_subnets: VOTE_SUBNET_COUNT,
        },
        metrics.clone(),
    )?;
    core.set_avs(avs.clone());
    core.set_automation(automation.clone());
    let engine = core.engine();
    // A key outside the set follows the chain without voting: an operator registered on L1
    // joins through VotingPowerSync, and the engine picks its index up at the epoch switch.
    let me = engine.operator_index();
    if me.is_none() {
        tracing::warn!(
            epoch = %engine.epoch(),
            "this node's BLS key is not in the operator set: following the chain without \
             voting until an epoch's set includes it (check --keys-dir and the genesis file if \
             it should be a member)"
        );
    }
    let digest = engine.network_digest();
    let mut net_config =
        NetworkConfig::new(digest, NodeKeySource::Provided(Box::new(keys.node_key.clone())));
    net_config.vote_subnet_count = VOTE_SUBNET_COUNT;
    net_config.gossip_limits = crate::gossip::size_limits();
    // The genesis operators' nodes get connection slots whatever strangers hold.
    net_config.trusted_peers = genesis_file
        .operators
        .iter()
        .filter_map(|op| op.peer_id.as_deref()?.parse().ok())
        .collect();
    net_config.guard.ban_file = Some(config.node.data_dir.join("p2p-bans"));
    net_config.gossip = gossip_timing(&clock);
    net_config.listen_addrs = listen_addrs(config.network.p2p_addr, config.network.p2p_port)?;
    net_config.bootnodes = config
        .network
        .bootnodes
        .iter()
        .map(|b| b.parse::<Multiaddr>().with_context(|| format!("--bootnode {b}")))
        .collect::<anyhow::Result<_>>()?;
    pool.set_operators(engine.key_table())?;
    avs.set_operators(engine.key_table());
    tracing::info!(
        operator = ?me,
        epoch = %engine.epoch(),
        view = %engine.view(),
        aggregator = config.roles.is_aggregator,
        "consensus core ready"
    );

    // ----- start -----
    let net = avs_p2p::spawn(net_config, &mut registry, shutdown.child_token())
        .context("starting the p2p network (--p2p-addr, --p2p-port)")?;
    let topics = [TopicKind::Block, TopicKind::Certificate, TopicKind::Checkin, TopicKind::Task]
        .into_iter()
        .chain((0..VOTE_SUBNET_COUNT).map(|subnet| TopicKind::Vote { subnet }));
    for kind in topics {
        net.handle.subscribe(GossipTopic::new(digest, kind)).await?;
    }
    tasks.spawn_refresher(shutdown.child_token());
    let settler = match &config.tasks.settlement {
        Some(settlement) => Some(crate::settlement::Settler::spawn(
            settlement.clone(),
            &keys.eth_secret,
            &mut registry,
            shutdown.child_token(),
        )?),
        None => None,
    };
    for url in &config.tasks.automation_rpc {
        let provider = crate::automation::chain::provider(url)?;
        tokio::spawn(crate::automation::chain::watch(
            url.clone(),
            provider,
            automation.clone(),
            shutdown.child_token(),
        ));
    }
    automation.set_aggregator(aggregator.clone());
    tokio::spawn(crate::automation::runner::run(automation.clone(), shutdown.child_token()));
    avs.spawn_workers(
        net.handle.clone(),
        GossipTopic::new(digest, TopicKind::Task),
        shutdown.child_token(),
    );
    let (status_tx, status_rx) = watch::channel(NodeStatus::default());
    let api = ApiState {
        aggregator: Some(aggregator.clone()),
        admin_token: config.http.admin_token.as_deref().map(Arc::from),
        registry: Arc::new(registry),
        status: status_rx.clone(),
        disk: Some(disk),
    };
    let listener = crate::http::bind((config.http.http_addr, config.http.http_port).into()).await?;
    let history = crate::status::History::default();
    tokio::spawn(history.clone().follow(status_rx.clone(), shutdown.child_token()));
    let pool_api = PoolApi {
        pool: pool.clone(),
        status: status_rx.clone(),
        explorer_url: Arc::from(config.pool.explorer_url.as_str()),
        profile_url: Arc::from(config.pool.eigenlayer_profile_url.as_str()),
        history,
        avs: Some(avs.clone()),
    };
    // Health follows this network's slot: no certificate for 10 slots is "not following".
    let http_options = crate::http::ServeOptions {
        health: crate::http::HealthPolicy::slots(
            Duration::from_millis(genesis.slot_duration_ms),
            crate::http::HealthPolicy::DEFAULT_SLOTS,
        ),
        ..crate::http::ServeOptions::new(listener.local_addr()?)
    };
    let http = tokio::spawn(crate::http::serve_with(
        listener,
        api,
        Some(pool_api),
        http_options,
        shutdown.child_token(),
    ));
    let (finalized_feed, _) = broadcast::channel(crate::grpc::FINALIZED_FEED_CAPACITY);
    let grpc_state = GrpcState {
        pool: pool.clone(),
        status: status_rx.clone(),
        chain: chain.clone(),
        finalized: finalized_feed.clone(),
        avs: avs.clone(),
        automation: automation.clone(),
    };
    let grpc_listener =
        crate::grpc::bind((config.grpc.grpc_addr, config.grpc.grpc_port).into()).await?;
    let grpc = tokio::spawn(crate::grpc::serve(grpc_listener, grpc_state, shutdown.child_token()));
    let signer = CheckinSigner::new(
        keys.bls.clone(),
        keys.address,
        digest,
        config.http.http_port,
        status_rx.clone(),
        pool.events(),
    );
    if let Some(url) = config.pool.checkin_remote.clone() {
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
    tracing::info!(peer = %net.handle.local_peer_id(), "node started");
    let driver = Driver {
        core,
        net: net.handle.clone(),
        digest,
        clock,
        aggregator,
        metrics,
        status: status_tx,
        tasks,
        pool,
        avs,
        settler,
        finalized_feed,
        runtime: tokio::runtime::Handle::current(),
        quota: RequestQuota::default(),
    };
    let consensus = spawn_consensus_thread(driver, net.events, shutdown.child_token())?;

    // ----- supervise -----
    let result = match consensus.await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("the consensus thread stopped without a result")),
    };
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "consensus loop failed; stopping the node");
    }
    shutdown.cancel();
    if let Err(e) = chain.store().flush() {
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

/// Runs the consensus loop on its own thread (a current-thread runtime), so an fsync or a
/// pairing there never stalls the network task or the API.
fn spawn_consensus_thread(
    driver: Driver,
    events: tokio::sync::mpsc::Receiver<avs_p2p::NetworkEvent>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<()>>> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("avs-consensus".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the consensus thread's runtime")
                .and_then(|rt| rt.block_on(driver.run(events, shutdown)));
            let _ = done_tx.send(result);
        })
        .context("starting the consensus thread")?;
    Ok(done_rx)
}

/// Gossip timing derived from the slot clock (docs/protocol.md, section 16). Nothing is
/// re-published with identical bytes (repair is by pull), so the duplicate cache keeps its
/// long default; the message cache (12 heartbeats of half an interval) covers a vote waiting
/// up to one interval for its lazy check before it is forwarded.
fn gossip_timing(clock: &SlotClock) -> avs_p2p::GossipConfig {
    let interval = clock.interval_ms().max(20);
    avs_p2p::GossipConfig {
        heartbeat_interval: Duration::from_millis((interval / 2).clamp(10, 700)),
        history_length: 12,
        history_gossip: 3,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_remembers_longer_than_it_serves_and_serves_past_a_lazy_check() {
        for slot_ms in [1_000, 4_000, 12_000] {
            let clock = SlotClock::new(0, slot_ms, 5).unwrap();
            let gossip = gossip_timing(&clock);
            let cached = gossip.heartbeat_interval * gossip.history_length as u32;
            assert!(gossip.duplicate_cache_time > cached, "slot {slot_ms}: {gossip:?}");
            assert!(
                cached >= Duration::from_millis(clock.interval_ms()),
                "slot {slot_ms}: {gossip:?}"
            );
        }
    }
}
