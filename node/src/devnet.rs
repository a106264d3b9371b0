//! `avs-node devnet`: a local network of real node processes on 127.0.0.1.
//!
//! It generates keys and a genesis (or reuses those already in `--data-dir`), starts one
//! `avs-node run` child per operator with its own data directory and ports, every node's
//! bootnodes being all the others, and prints one progress line per second from the nodes'
//! status endpoints until Ctrl-C or SIGTERM, then stops every child (SIGTERM, then SIGKILL
//! after a grace period). Each child's log is in `<data-dir>/node<i>/node.log`.
//!
//! Stake follows an embedded, scripted schedule (`<data-dir>/stake-schedule.json`, see
//! `avs_internal_tasks::embedded`): operator 1's L1 stake triples at L1 block
//! [`POWER_CHANGE_BLOCK`], and one more operator, whose node the devnet also starts (keys
//! generated, not in the genesis set), registers on L1 at block [`JOIN_BLOCK`]. Every node runs
//! with `--internal-tasks`, so VotingPowerSync (id 10001) proposes each change, the others
//! attest it, and its finalization ends the epoch; the progress output prints those steps from
//! the nodes' task metrics.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::cli::DevnetArgs;
use crate::genesis::{GenesisFile, GenesisOperator};
use crate::keys;
use crate::status::StatusReport;
use avs_internal_tasks::embedded::{ScheduledOperator, StakeSchedule, Step};

const GRACE: Duration = Duration::from_secs(10);
/// L1 block (one per second from genesis) at which operator 1's stake goes from 100 to 300.
pub const POWER_CHANGE_BLOCK: u64 = 15;
/// L1 block at which the extra operator registers with power 100.
pub const JOIN_BLOCK: u64 = 35;
/// Block time of both embedded chains.
const DEVNET_BLOCK_MS: u64 = 1000;
/// The devnet checks stake at the shortest allowed period, so changes show within seconds.
const DEVNET_SYNC_INTERVAL_MS: u64 = crate::config::MIN_SYNC_INTERVAL_MS;

/// One child node of the devnet.
struct DevNode {
    index: usize,
    http_port: u16,
    child: Child,
    /// How to start it again (`--restart-crashed`).
    cmd: Command,
    /// Since when it is down (it exited), if it is.
    down_since: Option<Instant>,
    restarts: u32,
}

/// A crashed node is restarted this long after it exited (`--restart-crashed`).
const RESTART_DELAY: Duration = Duration::from_secs(2);

pub async fn run(args: DevnetArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let n = usize::from(args.nodes);
    if usize::from(args.aggregators) > n {
        bail!("--aggregators {} is more than --nodes {n}", args.aggregators);
    }
    let (dir, temp) = match &args.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new().prefix("avs-devnet-").tempdir()?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let genesis_path = prepare(&dir, n, args.slot_ms)?;
    let schedule_path = dir.join("stake-schedule.json");
    let genesis = GenesisFile::load(&genesis_path)?;
    let exe = std::env::current_exe().context("locating the avs-node binary")?;

    // Node `n` is the operator that joins through VotingPowerSync: not in the genesis set.
    let ports = node_ports(n + 1)?;
    let mut peer_ids: Vec<String> =
        genesis.operators.iter().map(|o| o.peer_id.clone().unwrap_or_default()).collect();
    let newcomer_public = keys::load_public(&dir.join(format!("node{n}/keys")))?;
    peer_ids.push(newcomer_public.peer_id.clone());
    let genesis_config = genesis.to_config()?;
    let newcomer_address = crate::keys::parse_hex_array::<20>("address", &newcomer_public.address)?;
    let avs = crate::example_avs::devnet::start(
        &dir,
        &genesis_config,
        &[newcomer_address],
        shutdown.child_token(),
    )
    .await?;

    println!("devnet: {n} nodes, slot {} ms, data in {}", args.slot_ms, dir.display());
    let mut nodes = Vec::with_capacity(n.saturating_add(1));
    // The joining operator's node starts when the network has made it a member: a key outside
    // the set would have its check-ins refused by the members.
    let mut newcomer: Option<(Command, u16)> = None;
    for (i, &(p2p, http, _)) in ports.iter().enumerate() {
        let node_dir = dir.join(format!("node{i}"));
        let log = std::fs::File::create(node_dir.join("node.log"))?;
        let mut cmd = Command::new(&exe);
        // A throwaway network: plaintext keys, so nodes start without a password.
        cmd.args(run_args(&LocalNode {
            dir: &node_dir,
            genesis: &genesis_path,
            ports: &ports,
            peer_ids: &peer_ids,
            index: i,
            only_bootnode: None,
            password_file: None,
        }));
        if i < usize::from(args.aggregators) {
            cmd.arg("--is-aggregator");
        }
        cmd.arg("--internal-tasks")
            .args(["--sync-interval", &DEVNET_SYNC_INTERVAL_MS.to_string()])
            .arg("--stake-schedule")
            .arg(&schedule_path)
            .args(&avs.node_args);
        if let Some(rpc) = &avs.chain {
            // The example automations' chain: every node watches it.
            cmd.args(["--automation-rpc", rpc]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).kill_on_drop(true);
        println!(
            "  node{i}: http://127.0.0.1:{http}  p2p {p2p}  log {}{}",
            node_dir.join("node.log").display(),
            if i < usize::from(args.aggregators) {
                "  (aggregator)"
            } else if i == n {
                "  (not in genesis: started once its L1 registration is synced and final)"
            } else {
                ""
            }
        );
        if i == n {
            newcomer = Some((cmd, http));
        } else {
            let child = cmd.spawn().with_context(|| format!("starting node {i}"))?;
            nodes.push(DevNode {
                index: i,
                http_port: http,
                child,
                cmd,
                down_since: None,
                restarts: 0,
            });
        }
    }
    // The example AVS's performer: each genesis operator in turn, to its own node.
    let performers = (0..n)
        .map(|i| {
            let unlock = keys::Unlock { password_file: None, insecure_plaintext: true };
            let key = keys::load(&dir.join(format!("node{i}/keys")), &unlock)?.bls;
            Ok((key, format!("http://127.0.0.1:{}", ports[i].2)))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::example_avs::devnet::spawn_performer(
        performers,
        avs_consensus::signing::network_digest(&genesis_config)?,
        avs.submitted.clone(),
        shutdown.child_token(),
    );
    let automations = avs.chain.as_ref().filter(|_| n >= 2).map(|rpc| {
        crate::automation::example::spawn(
            rpc.clone(),
            crate::example_avs::devnet::CHAIN_ID,
            format!("http://127.0.0.1:{}", ports[0].2),
            format!("http://127.0.0.1:{}/lean/v0/health", ports[1].1),
            shutdown.child_token(),
        )
    });
    println!("Ctrl-C stops the devnet. Switch the aggregator role of node i at runtime with:");
    println!(
        "  curl -X POST -H 'Content-Type: application/json' -d '{{\"enabled\":true}}' http://127.0.0.1:{}/lean/v0/admin/aggregator",
        nodes.last().map_or(0, |n| n.http_port)
    );

    println!(
        "stake schedule {}: node1's L1 stake 100 -> 300 at L1 block {POWER_CHANGE_BLOCK}, node{n} \
         registers at block {JOIN_BLOCK}; VotingPowerSync (10001) checks every {} s",
        schedule_path.display(),
        DEVNET_SYNC_INTERVAL_MS / 1000
    );
    println!(
        "A node that exits is reported and the others go on{}.",
        if args.restart_crashed {
            "; it is restarted after 2 s"
        } else {
            " (--restart-crashed restarts it)"
        }
    );
    let started = Instant::now();
    let mut crashed = false;
    let mut task_counts = TaskCounts::default();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let result = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            _ = ticker.tick() => {
                for (i, status) in exited(&mut nodes) {
                    crashed = true;
                    println!(
                        "  node{i} exited ({status}); the others go on; its log: {}",
                        dir.join(format!("node{i}/node.log")).display()
                    );
                }
                if args.restart_crashed {
                    for line in restart_due(&mut nodes) {
                        println!("  {line}");
                    }
                }
                println!("{}", progress_line(started.elapsed(), &nodes).await);
                if let Some(line) = avs_line(&nodes, &avs).await {
                    println!("  {line}");
                    let example = automations.as_ref().and_then(|p| {
                        p.line.lock().unwrap_or_else(|e| e.into_inner()).clone()
                    });
                    if let Some(line) = example {
                        println!("  {line}");
                    }
                }
                for event in task_events(&nodes, &mut task_counts).await {
                    println!("  {event}");
                }
                // Two updates final (the power change, then the registration): node n joins.
                if task_counts.seen.iter().map(|c| c[3]).max().unwrap_or(0) >= 2
                    && let Some((mut cmd, http_port)) = newcomer.take()
                {
                    match cmd.spawn() {
                        Ok(child) => {
                            println!("  node{n} is in the operator set now: started it");
                            nodes.push(DevNode {
                                index: n,
                                http_port,
                                child,
                                cmd,
                                down_since: None,
                                restarts: 0,
                            });
                        }
                        Err(e) => break Err(anyhow::anyhow!("starting node{n}: {e}")),
                    }
                }
            }
        }
    };
    stop_all(&mut nodes).await;
    match temp {
        Some(temp) if crashed || args.keep => {
            let kept = temp.keep();
            let why = if crashed { "a node crashed" } else { "--keep" };
            println!("devnet stopped; data and logs kept in {} ({why})", kept.display());
        }
        Some(_) => println!("devnet stopped; its temporary data directory is removed"),
        None => println!("devnet stopped; data kept in {}", dir.display()),
    }
    result
}

/// Keys for every node and the genesis, created once per data directory.
fn prepare(dir: &Path, n: usize, slot_ms: u64) -> anyhow::Result<PathBuf> {
    let genesis_path = dir.join("genesis.json");
    for i in 0..=n {
        let keys_dir = dir.join(format!("node{i}/keys"));
        if !keys_dir.join(keys::OPERATOR_FILE).exists() {
            // A throwaway network: plaintext keys, so nodes start without a password.
            keys::generate(&keys_dir, &keys::Protection::InsecurePlaintext)?;
        }
    }
    if genesis_path.exists() {
        let existing = GenesisFile::load(&genesis_path)?;
        if existing.operators.len() != n {
            bail!(
                "{} has {} operators but --nodes is {n}; use another --data-dir",
                genesis_path.display(),
                existing.operators.len()
            );
        }
        let schedule = dir.join("stake-schedule.json");
        if !schedule.exists() {
            let newcomer = keys::load_public(&dir.join(format!("node{n}/keys")))?;
            stake_schedule(&existing, &newcomer).write(&schedule)?;
        }
        return Ok(genesis_path);
    }
    let operators = (0..n)
        .map(|i| {
            let public = keys::load_public(&dir.join(format!("node{i}/keys")))?;
            Ok(GenesisOperator::from_public(&public, 100))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let genesis = GenesisFile {
        network_name: "avs-devnet".into(),
        // A few seconds ahead, so every node is up when view 0 starts.
        genesis_time: crate::node::now_ms() / 1000 + 3,
        slot_duration_ms: slot_ms,
        intervals_per_slot: avs_consensus::clock::DEFAULT_INTERVALS_PER_SLOT,
        operators,
        tasks: vec![crate::genesis::GenesisTask {
            id: crate::example_avs::devnet::TASK_ID,
            name: crate::example_avs::devnet::TASK_NAME.into(),
            validation: "service".into(),
        }],
    };
    genesis.to_config()?;
    genesis.write(&genesis_path)?;
    let newcomer = keys::load_public(&dir.join(format!("node{n}/keys")))?;
    stake_schedule(&genesis, &newcomer).write(&dir.join("stake-schedule.json"))?;
    Ok(genesis_path)
}

/// The devnet's scripted stake: every genesis operator at its genesis power on both chains;
/// operator 1 (0 with a single node) triples on L1 at [`POWER_CHANGE_BLOCK`] (L2 keeps the old
/// record); `newcomer` registers on L1 at [`JOIN_BLOCK`].
pub fn stake_schedule(genesis: &GenesisFile, newcomer: &keys::OperatorPublic) -> StakeSchedule {
    let changed = usize::from(genesis.operators.len() > 1);
    let mut operators: Vec<ScheduledOperator> = genesis
        .operators
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let mut l1 = vec![Step { from_block: 0, power: op.power }];
            if i == changed {
                l1.push(Step { from_block: POWER_CHANGE_BLOCK, power: op.power.saturating_mul(3) });
            }
            ScheduledOperator {
                address: op.address.clone(),
                bls_pubkey: op.bls_pubkey.clone(),
                pop: op.pop.clone(),
                l1,
                l2: vec![Step { from_block: 0, power: op.power }],
            }
        })
        .collect();
    operators.push(ScheduledOperator {
        address: newcomer.address.clone(),
        bls_pubkey: newcomer.bls_pubkey.clone(),
        pop: newcomer.pop.clone(),
        l1: vec![Step { from_block: JOIN_BLOCK, power: 100 }],
        l2: Vec::new(),
    });
    StakeSchedule {
        start_ms: genesis.genesis_time.saturating_mul(1000),
        l1_block_ms: DEVNET_BLOCK_MS,
        l2_block_ms: DEVNET_BLOCK_MS,
        operators,
    }
}

/// `(p2p, http, grpc)` ports of one local node.
pub type Ports = (u16, u16, u16);

/// One node of a local network on 127.0.0.1, as `avs-node run` starts it: the devnet, the
/// multi-process tests and `avs-bench` all build its command line with [`run_args`].
#[derive(Debug, Clone, Copy)]
pub struct LocalNode<'a> {
    /// The node's directory: its data, and its keys in `keys/`.
    pub dir: &'a Path,
    pub genesis: &'a Path,
    /// Every node's ports and peer id, by index.
    pub ports: &'a [Ports],
    pub peer_ids: &'a [String],
    pub index: usize,
    /// Dial only this node (which itself dials no one), instead of every other node.
    pub only_bootnode: Option<usize>,
    /// The keystores' password file; `None` for plaintext keys.
    pub password_file: Option<&'a Path>,
}

/// The `avs-node run` arguments of `node`: its own directory, keys and ports on 127.0.0.1,
/// and every other node (or only `only_bootnode`) as a QUIC bootnode.
pub fn run_args(node: &LocalNode<'_>) -> Vec<String> {
    let (p2p, http, grpc) = node.ports.get(node.index).copied().unwrap_or_default();
    let mut args: Vec<String> = vec![
        "run".into(),
        "--data-dir".into(),
        node.dir.display().to_string(),
        "--genesis".into(),
        node.genesis.display().to_string(),
        "--keys-dir".into(),
        node.dir.join("keys").display().to_string(),
        "--p2p-addr".into(),
        "127.0.0.1".into(),
        "--p2p-port".into(),
        p2p.to_string(),
        "--http-port".into(),
        http.to_string(),
        "--grpc-port".into(),
        grpc.to_string(),
    ];
    match node.password_file {
        Some(file) => args.extend(["--keys-password-file".into(), file.display().to_string()]),
        None => args.push("--insecure-plaintext-keys".into()),
    }
    for (j, (&(peer_p2p, _, _), peer_id)) in node.ports.iter().zip(node.peer_ids).enumerate() {
        if j != node.index && node.only_bootnode.is_none_or(|o| o == j) {
            args.push("--bootnode".into());
            args.push(format!("/ip4/127.0.0.1/udp/{peer_p2p}/quic-v1/p2p/{peer_id}"));
        }
    }
    args
}

/// `(p2p, http, grpc)` ports for each of `n` local nodes.
pub fn node_ports(n: usize) -> anyhow::Result<Vec<Ports>> {
    (0..n).map(|_| Ok((free_port()?, free_port()?, free_port()?))).collect()
}

/// A port free for TCP and UDP on 127.0.0.1, chosen *below* Linux's ephemeral range
/// (32768-60999). Between this check and the node's own bind the port is free for anyone to
/// take, and every port-0 bind of other processes draws from the ephemeral range (a CI run lost
/// a node's gRPC port that way); ports here are handed out in sequence from a per-process
/// offset, so they collide neither with those nor with each other. The test harness uses it too.
pub fn free_port() -> anyhow::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let start = std::process::id().wrapping_mul(97) % SPAN;
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(LOW + (start + step) % SPAN)?;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        if tcp.is_ok() && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("found no port free for both TCP and UDP on 127.0.0.1 below the ephemeral range")
}

/// Nodes that exited since the last look (each reported once, when it goes down).
fn exited(nodes: &mut [DevNode]) -> Vec<(usize, std::process::ExitStatus)> {
    let mut out = Vec::new();
    for node in nodes.iter_mut().filter(|n| n.down_since.is_none()) {
        if let Ok(Some(status)) = node.child.try_wait() {
            node.down_since = Some(Instant::now());
            out.push((node.index, status));
        }
    }
    out
}

/// Restarts the nodes that have been down for [`RESTART_DELAY`]; what happened, per node.
fn restart_due(nodes: &mut [DevNode]) -> Vec<String> {
    let mut out = Vec::new();
    for node in nodes.iter_mut() {
        if node.down_since.is_none_or(|t| t.elapsed() < RESTART_DELAY) {
            continue;
        }
        match node.cmd.spawn() {
            Ok(child) => {
                node.child = child;
                node.down_since = None;
                node.restarts = node.restarts.saturating_add(1);
                out.push(format!("node{} restarted (restart {})", node.index, node.restarts));
            }
            Err(e) => {
                node.down_since = Some(Instant::now());
                out.push(format!("node{} could not be restarted: {e}; trying again", node.index));
            }
        }
    }
    out
}

/// GETs `path` from every node's HTTP API on the blocking pool (short timeout, so one stuck
/// node does not hold up the progress line) and parses each answer with `read`.
async fn poll_nodes<T: Send + 'static>(
    nodes: &[DevNode],
    path: &'static str,
    read: fn(&mut ureq::Body) -> Option<T>,
) -> Vec<Option<T>> {
    let ports: Vec<u16> = nodes.iter().map(|n| n.http_port).collect();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(500)))
            .build()
            .into();
        ports
            .iter()
            .map(|port| {
                read(agent.get(&format!("http://127.0.0.1:{port}{path}")).call().ok()?.body_mut())
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

async fn progress_line(elapsed: Duration, nodes: &[DevNode]) -> String {
    let statuses: Vec<Option<StatusReport>> =
        poll_nodes(nodes, "/lean/v0/status", |body| body.read_json::<StatusReport>().ok()).await;
    let best = statuses.iter().flatten().max_by_key(|s| (s.finalized_height, s.epoch, s.view));
    let mut line = format!("[{:>4}s]", elapsed.as_secs());
    match best {
        Some(s) => {
            let _ = write!(
                line,
                " epoch {} view {:>3} finalized #{:<4} {}",
                s.epoch,
                s.view,
                s.finalized_height,
                s.finalized_root.get(..10).unwrap_or(&s.finalized_root)
            );
        }
        None => line.push_str(" waiting for the nodes' APIs"),
    }
    let nullified: u64 = statuses.iter().flatten().map(|s| s.nullified_views).sum();
    let mut latencies: Vec<u64> =
        statuses.iter().flatten().filter_map(|s| s.last_finality_latency_ms).collect();
    latencies.sort_unstable();
    match latencies.get(latencies.len() / 2) {
        Some(ms) => {
            let _ = write!(line, " | last finality {ms} ms | nullified views {nullified}");
        }
        None => {
            let _ = write!(line, " | nullified views {nullified}");
        }
    }
    let aggregators: Vec<String> = statuses
        .iter()
        .enumerate()
        .filter(|(_, s)| s.as_ref().is_some_and(|s| s.is_aggregator))
        .map(|(i, _)| format!("node{i}"))
        .collect();
    let _ = write!(
        line,
        " | aggregator: {}",
        if aggregators.is_empty() {
            "none (every node still certifies from its own pool)".to_owned()
        } else {
            aggregators.join(",")
        }
    );
    line.push_str(" |");
    for (i, status) in statuses.iter().enumerate() {
        match status {
            Some(s) => {
                let _ = write!(
                    line,
                    " n{i}:e{}/v{}/f{}/p{}",
                    s.epoch, s.view, s.finalized_height, s.peers
                );
            }
            None => {
                let _ = write!(line, " n{i}:down");
            }
        }
    }
    line
}

/// The example AVS's progress: tasks submitted, finalized (as the first node to answer
/// reports them) and blocks settled on chain (the aggregators' count). Every 10 s.
async fn avs_line(nodes: &[DevNode], avs: &crate::example_avs::devnet::Started) -> Option<String> {
    static TICKS: AtomicU32 = AtomicU32::new(0);
    if TICKS.fetch_add(1, Ordering::Relaxed) % 10 != 9 {
        return None;
    }
    let finalized: Vec<Option<usize>> =
        poll_nodes(nodes, "/tasks?status=finalized&limit=1000", |body| {
            let value: serde_json::Value = body.read_json().ok()?;
            Some(value["data"].as_array()?.len())
        })
        .await;
    let settled: Vec<Option<u64>> = poll_nodes(nodes, "/metrics", |body| {
        let text = body.read_to_string().ok()?;
        let line = text.lines().find(|l| l.starts_with("avs_node_settlement_blocks_total "))?;
        line.rsplit(' ').next()?.parse::<f64>().ok().map(|v| v as u64)
    })
    .await;
    let finalized = finalized.into_iter().flatten().max().unwrap_or(0);
    let settled: u64 = settled.into_iter().flatten().sum();
    let chain = match &avs.chain {
        Some(_) => format!(
            ", {settled} blocks settled on chain (AttestationCenter verified each certificate)"
        ),
        None => String::new(),
    };
    Some(format!(
        "example AVS: {} tasks submitted, {finalized} finalized{chain}",
        avs.submitted.load(std::sync::atomic::Ordering::Relaxed)
    ))
}

async fn stop_all(nodes: &mut [DevNode]) {
    for node in nodes.iter().filter(|n| n.down_since.is_none()) {
        if let Some(pid) = node.child.id() {
            terminate(pid);
        }
    }
    let deadline = Instant::now() + GRACE;
    for node in nodes.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, node.child.wait()).await.is_err() {
            let _ = node.child.kill().await;
        }
    }
}

/// SIGTERM, so the child flushes its store and closes its connections.
fn terminate(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// Per node: VotingPowerSync results proposed, judged valid, refused, and applied (final).
#[derive(Debug, Default)]
struct TaskCounts {
    seen: Vec<[u64; 4]>,
}

const SYNC_METRICS: [(&str, &str); 4] = [
    ("avs_node_task_performed_total", ""),
    ("avs_node_task_validations_total", "verdict=\"valid\""),
    ("avs_node_task_validations_total", "verdict=\"invalid\""),
    ("avs_node_task_applied_total", ""),
];

/// The value of `name{...task_id="10001"...label...}` in Prometheus text, 0 when absent.
fn sync_metric(text: &str, name: &str, label: &str) -> u64 {
    let task = format!("task_id=\"{}\"", avs_internal_tasks::VOTING_POWER_SYNC_TASK_ID);
    text.lines()
        .filter(|l| l.split('{').next() == Some(name) && l.contains(&task) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Lines describing what changed in the nodes' VotingPowerSync counters since the last call:
/// who proposed the update, who attested or refused it, where it was applied.
async fn task_events(nodes: &[DevNode], counts: &mut TaskCounts) -> Vec<String> {
    let now: Vec<Option<[u64; 4]>> = poll_nodes(nodes, "/metrics", |body| {
        let text = body.read_to_string().ok()?;
        Some(SYNC_METRICS.map(|(name, label)| sync_metric(&text, name, label)))
    })
    .await;
    counts.seen.resize(nodes.len(), [0; 4]);
    let what =
        ["proposed (performed) by", "attested valid by", "REFUSED by", "applied (block final) on"];
    let mut lines = Vec::new();
    for (k, label) in what.iter().enumerate() {
        let who: Vec<String> = now
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let c = (*c)?;
                (c[k] > counts.seen[i][k]).then(|| format!("node{i}"))
            })
            .collect();
        if !who.is_empty() {
            lines.push(format!("VotingPowerSync (task 10001) {label} {}", who.join(",")));
        }
    }
    for (i, c) in now.into_iter().enumerate() {
        if let Some(c) = c {
            counts.seen[i] = c;
        }
    }
    lines
}

#[cfg(test)]
mod launcher_tests {
    use super::*;

    #[test]
    fn run_args_name_the_nodes_own_place_and_its_bootnodes() {
        let ports = [(9000, 5052, 2206), (9001, 5053, 2207), (9002, 5054, 2208)];
        let ids = ["A".to_owned(), "B".to_owned(), "C".to_owned()];
        let node = LocalNode {
            dir: Path::new("/d/node1"),
            genesis: Path::new("/d/genesis.json"),
            ports: &ports,
            peer_ids: &ids,
            index: 1,
            only_bootnode: None,
            password_file: None,
        };
        let args = run_args(&node).join(" ");
        assert!(args.starts_with("run --data-dir /d/node1 --genesis /d/genesis.json"), "{args}");
        assert!(args.contains("--keys-dir /d/node1/keys --p2p-addr 127.0.0.1 --p2p-port 9001"));
        assert!(args.contains("--http-port 5053 --grpc-port 2207 --insecure-plaintext-keys"));
        assert!(args.contains("--bootnode /ip4/127.0.0.1/udp/9000/quic-v1/p2p/A"), "{args}");
        assert!(args.contains("--bootnode /ip4/127.0.0.1/udp/9002/quic-v1/p2p/C"), "{args}");
        assert!(!args.contains("/p2p/B"), "not itself: {args}");

        let password = Path::new("/d/pw");
        let only = LocalNode { only_bootnode: Some(2), password_file: Some(password), ..node };
        let args = run_args(&only).join(" ");
        assert!(args.contains("--keys-password-file /d/pw"), "{args}");
        assert!(!args.contains("--insecure-plaintext-keys") && !args.contains("/p2p/A"), "{args}");
        let bootnode = run_args(&LocalNode { index: 2, ..only }).join(" ");
        assert!(!bootnode.contains("--bootnode"), "the only bootnode dials no one: {bootnode}");
    }
}
