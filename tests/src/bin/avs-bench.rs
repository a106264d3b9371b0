//! `avs-bench`: end-to-end finality latency of a local network of real `avs-node` processes,
//! next to the critical-path floor measured in the same run, and each node's peak memory.
//!
//! Flow: measure the floor on the idle machine (loopback UDP hop, BLS sign, single verify,
//! certificate verify for N signers, a fsynced append in the directory the nodes write to);
//! start N nodes with the tests crate's [`Cluster`] (one aggregator by default); wait until every
//! node's log shows `warmup + blocks` heights finalized; read each node's peak RSS (`VmHWM`);
//! then read the node logs (microsecond timestamps) and print the table. Nothing polls the
//! nodes while they run: the measurement does not load them.
//!
//! Definitions (per measured height h, heights `<= warmup` are skipped), from the log lines
//! `proposed view=V height=H` (the leader), `entered view ... view=V` and `finalized height=H`:
//! - proposal time: the leader's last `proposed` line for h before h was first finalized;
//! - latency = the latest `finalized height=h` over all nodes - proposal time (every node
//!   holds h final);
//! - view entry stagger: for the view that proposed h, last minus first node entering it.
//!
//! Floor = 3 hops (proposal, NOTARIZE votes, FINALIZE votes: every node builds both certificates
//! from its own pool) + 4 signs (proposal, leader's NOTARIZE, replica's NOTARIZE, FINALIZE)
//! + 3 fsyncs (leader's and replica's NOTARIZE, FINALIZE: each own vote is durable before it is
//!   sent) + 1 single verify (the proposal) + 2 certificate-sized verifies (the aggregate checks
//!   of the NOTARIZE and FINALIZE quorums).
//!
//! Run: `cargo build -p avs-node && cargo run -p avs-tests --bin avs-bench -- --nodes 4`.
//!
//! With `--simulated-peers P`, one real node runs against `nodes - 1` operators played by the
//! harness of `avs_tests::peers` through P libp2p peers: the rows for operator counts whose
//! processes do not fit on the machine.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use avs_consensus::KeyTable;
use avs_consensus::bls::{self, SecretKey};
use avs_consensus::signing::vote_signing_root;
use avs_consensus::types::{Certificate, Epoch, Operator, OperatorSet, Signers, View, VoteData};
use avs_consensus::verify::verify_certificate;
use avs_tests::peers::{PeersSpec, SimulatedNetwork};
use avs_tests::{Cluster, ClusterSpec, NodeProcess};

const USAGE: &str = "avs-bench [--nodes N] [--blocks B] [--warmup W] [--slot-ms MS] \
                     [--aggregators A] [--timeout-s S] [--simulated-peers P]";

struct Args {
    nodes: usize,
    blocks: u64,
    warmup: u64,
    slot_ms: u64,
    aggregators: usize,
    timeout: Duration,
    /// 0: `nodes` real processes. P > 0: one real node, the other operators played by the
    /// simulated-peer harness through P libp2p peers.
    simulated_peers: usize,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut given: BTreeMap<String, u64> = BTreeMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let name = flag.strip_prefix("--").with_context(|| format!("usage: {USAGE}"))?;
            let value =
                it.next().with_context(|| format!("{flag} needs a value; usage: {USAGE}"))?;
            let value: u64 = value.parse().with_context(|| format!("{flag} {value}"))?;
            given.insert(name.to_owned(), value);
        }
        let nodes = usize::try_from(given.remove("nodes").unwrap_or(4))?;
        // 16 nodes share 2 cores: longer slots keep the pacing from dominating the run.
        let default_slot = if nodes > 8 { 2000 } else { 1000 };
        let args = Self {
            nodes,
            blocks: given.remove("blocks").unwrap_or(30),
            warmup: given.remove("warmup").unwrap_or(3),
            slot_ms: given.remove("slot-ms").unwrap_or(default_slot),
            aggregators: usize::try_from(given.remove("aggregators").unwrap_or(1))?,
            timeout: Duration::from_secs(given.remove("timeout-s").unwrap_or(600)),
            simulated_peers: usize::try_from(given.remove("simulated-peers").unwrap_or(0))?,
        };
        if let Some(unknown) = given.keys().next() {
            bail!("unknown flag --{unknown}; usage: {USAGE}");
        }
        if args.simulated_peers > 0 && args.nodes > 1024 {
            bail!("--simulated-peers plays at most 1024 operators");
        }
        if args.nodes < 4 || args.blocks == 0 || args.aggregators == 0 || args.slot_ms < 100 {
            bail!("need --nodes >= 4, --blocks >= 1, --aggregators >= 1, --slot-ms >= 100");
        }
        Ok(args)
    }
}

/// Median of the durations of `n` runs of `f`, in microseconds.
fn median_us(n: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Floor {
    hop_us: f64,
    sign_us: f64,
    verify_us: f64,
    cert_verify_us: f64,
    fsync_us: f64,
}

impl Floor {
    fn total_us(&self) -> f64 {
        3.0 * self.hop_us
            + 4.0 * self.sign_us
            + 3.0 * self.fsync_us
            + self.verify_us
            + 2.0 * self.cert_verify_us
    }

    fn measure(nodes: usize) -> anyhow::Result<Self> {
        // Loopback hop: half the round trip of an 8-byte UDP ping between two sockets.
        let server = UdpSocket::bind("127.0.0.1:0")?;
        let client = UdpSocket::bind("127.0.0.1:0")?;
        client.connect(server.local_addr()?)?;
        server.set_read_timeout(Some(Duration::from_secs(2)))?;
        client.set_read_timeout(Some(Duration::from_secs(2)))?;
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = server.recv_from(&mut buf) {
                if n == 1 || server.send_to(&buf[..n], from).is_err() {
                    break;
                }
            }
        });
        let mut buf = [0u8; 64];
        let rtt_us = median_us(2000, || {
            client.send(&[7u8; 8]).expect("send");
            client.recv(&mut buf).expect("echo");
        });
        client.send(&[0u8])?;
        let _ = echo.join();

        // BLS on a network of `nodes` operators, as the nodes run it.
        let keys: Vec<SecretKey> = (0..nodes)
            .map(|i| {
                let mut seed = [0xbe; 32];
                seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
                SecretKey::from_seed(&seed)
            })
            .collect::<Result<_, _>>()?;
        // Distinct addresses: a set that repeats one is inadmissible (docs/protocol.md, 3).
        let operators: Vec<Operator> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Operator {
                address: {
                    let mut address = [0u8; 20];
                    address[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    address
                },
                pubkey: k.public_key().to_bytes().to_vec().try_into().expect("48"),
                pop: k.proof_of_possession().to_bytes().to_vec().try_into().expect("96"),
                power: 100,
            })
            .collect();
        let set = OperatorSet { operators: operators.try_into().expect("<= 1024") };
        let table = KeyTable::new(Epoch::ZERO, &set, [1, 2, 3, 4])?;
        let data = VoteData::finalize(Epoch::ZERO, View::new(9), [0x11; 32]);
        let root = vote_signing_root(&data, table.digest())?;
        let sign_us = median_us(200, || {
            std::hint::black_box(keys[0].sign(&root));
        });
        let sig = keys[0].sign(&root);
        let pk = keys[0].public_key();
        let verify_us = median_us(200, || assert!(bls::verify(&pk, &root, &sig)));
        let sigs: Vec<bls::Signature> = keys.iter().map(|k| k.sign(&root)).collect();
        let cert = Certificate {
            data,
            signers: Signers::try_from(vec![true; nodes].as_slice()).expect("bitlist"),
            signature: bls::aggregate_signatures(&sigs)
                .context("aggregate")?
                .to_bytes()
                .to_vec()
                .try_into()
                .expect("96"),
        };
        let cert_verify_us = median_us(200, || assert!(verify_certificate(&table, &cert).is_ok()));

        // The nodes' data directories are in the system temp dir (see `Cluster::start`).
        let dir = tempfile::Builder::new().prefix("avs-bench-fsync-").tempdir()?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("append.log"))?;
        let fsync_us = median_us(100, || {
            file.write_all(&[0x5a; 153]).expect("append");
            file.sync_data().expect("fdatasync");
        });
        Ok(Self { hop_us: rtt_us / 2.0, sign_us, verify_us, cert_verify_us, fsync_us })
    }
}

/// Unix µs of an RFC 3339 UTC timestamp as tracing writes it (`2026-11-21T14:36:49.123456Z`).
fn parse_timestamp(ts: &str) -> Option<u64> {
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    let micros: i64 = digits.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs * 1_000_000 + micros).ok()
}

/// The value of `name=` on a tracing text line.
fn field(line: &str, name: &str) -> Option<u64> {
    let key = format!(" {name}=");
    let (_, rest) = line.split_once(&key)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `(unix µs, line)` of a node's log lines whose message is `message`.
fn lines_of<'a>(log: &'a str, message: &'a str) -> impl Iterator<Item = (u64, &'a str)> + 'a {
    let marker = format!(": {message} ");
    log.lines().filter_map(move |line| {
        if !line.contains(&marker) {
            return None;
        }
        Some((line.split_whitespace().next().and_then(parse_timestamp)?, line))
    })
}

/// `height -> unix µs` of a node's `finalized` log lines.
fn finalized_times(log: &str) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for (t, line) in lines_of(log, "finalized") {
        if let Some(h) = field(line, "height") {
            out.entry(h).or_insert(t);
        }
    }
    out
}

/// `(unix µs, view, height)` of a node's `proposed` lines.
fn proposals(log: &str) -> Vec<(u64, u64, u64)> {
    lines_of(log, "proposed")
        .filter_map(|(t, line)| Some((t, field(line, "view")?, field(line, "height")?)))
        .collect()
}

/// `view -> unix µs` of a node's first `entered view` line per view (epoch 0).
fn entries(log: &str) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for (t, line) in lines_of(log, "entered view") {
        if field(line, "epoch") == Some(0)
            && let Some(v) = field(line, "view")
        {
            out.entry(v).or_insert(t);
        }
    }
    out
}

/// Peak and current resident set (kB) of a process, from `/proc/<pid>/status`.
/// What one node has spent so far: CPU time (user + system) and gossip and req/resp payload
/// bytes (uncompressed: before snappy, gossipsub framing and the transport) in and out, at a
/// finalized height.
#[derive(Debug, Clone, Copy)]
struct Spent {
    cpu_ms: f64,
    bytes_in: f64,
    bytes_out: f64,
    height: u64,
}

fn spent(node: &NodeProcess, ticks_per_second: f64) -> Option<Spent> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", node.pid()?)).ok()?;
    // After the command name's ")": state, ppid, ..., utime (14th field) and stime (15th).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let bytes = |direction: &str| {
        node.metric_sum("avs_p2p_payload_bytes_total", &format!("direction=\"{direction}\""))
    };
    Some(Spent {
        cpu_ms: (ticks(11)? + ticks(12)?) * 1000.0 / ticks_per_second,
        bytes_in: bytes("Inbound").ok()?,
        bytes_out: bytes("Outbound").ok()?,
        height: node.status().ok()?.finalized_height,
    })
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux when unknown).
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Per node, what one finalized height cost between two readings: `(cpu ms, bytes in, bytes
/// out)`, medians over the nodes.
fn per_height(start: &[Option<Spent>], end: &[Option<Spent>]) -> Option<(f64, f64, f64)> {
    let mut cpu = Vec::new();
    let mut bytes_in = Vec::new();
    let mut bytes_out = Vec::new();
    for (a, b) in start.iter().zip(end) {
        let (Some(a), Some(b)) = (a, b) else { continue };
        let heights = b.height.saturating_sub(a.height);
        if heights == 0 {
            continue;
        }
        let h = heights as f64;
        cpu.push((b.cpu_ms - a.cpu_ms) / h);
        bytes_in.push((b.bytes_in - a.bytes_in) / h);
        bytes_out.push((b.bytes_out - a.bytes_out) / h);
    }
    for v in [&mut cpu, &mut bytes_in, &mut bytes_out] {
        v.sort_by(f64::total_cmp);
    }
    let median = |v: &[f64]| v.get(v.len() / 2).copied();
    Some((median(&cpu)?, median(&bytes_in)?, median(&bytes_out)?))
}

fn memory_kb(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "avs-bench: {} nodes, {} aggregator(s), slot {} ms, {} blocks after {} warm-up, {cpus} CPUs",
        args.nodes, args.aggregators, args.slot_ms, args.blocks, args.warmup
    );
    let floor = Floor::measure(args.nodes)?;
    println!(
        "floor components (medians, idle machine): hop {:.1} us, sign {:.1} us, verify {:.1} us, \
         cert verify/{} {:.1} us, fsync {:.1} us => floor {:.2} ms",
        floor.hop_us,
        floor.sign_us,
        floor.verify_us,
        args.nodes,
        floor.cert_verify_us,
        floor.fsync_us,
        floor.total_us() / 1000.0
    );
    if args.simulated_peers > 0 {
        return simulated(&args, &floor);
    }

    let spec = ClusterSpec {
        nodes: args.nodes,
        aggregators: args.aggregators,
        standby: Vec::new(),
        slot_ms: args.slot_ms,
        only_bootnode: None,
        encrypted_node0: false,
        ..ClusterSpec::default()
    };
    let cluster = Cluster::start(&spec)?;
    let target = args.warmup + args.blocks;
    // What each node has spent once the warm-up heights are final, and again at the end: the
    // difference per height is what a view costs a node (two HTTP reads per node, not a poll).
    let hz = ticks_per_second();
    let warm = cluster.wait_for("the warm-up heights", args.timeout, |c| {
        Ok(c.nodes.iter().all(|n| finalized_times(&n.log()).contains_key(&args.warmup)))
    });
    let at_warmup: Vec<Option<Spent>> = if warm.is_ok() {
        cluster.nodes.iter().map(|n| spent(n, hz)).collect()
    } else {
        Vec::new()
    };
    let waited =
        cluster.wait_for(&format!("every node to finalize height {target}"), args.timeout, |c| {
            Ok(c.nodes.iter().all(|n| finalized_times(&n.log()).contains_key(&target)))
        });
    let memory: Vec<Option<(u64, u64)>> =
        cluster.nodes.iter().map(|n| n.pid().and_then(memory_kb)).collect();
    let at_end: Vec<Option<Spent>> = cluster.nodes.iter().map(|n| spent(n, hz)).collect();
    let cost = per_height(&at_warmup, &at_end);
    match cost {
        Some((cpu, bytes_in, bytes_out)) => println!(
            "per finalized height and node (medians): CPU {cpu:.1} ms, payload in {:.1} KiB, \
             out {:.1} KiB",
            bytes_in / 1024.0,
            bytes_out / 1024.0
        ),
        None => println!("per-height cost: not measured (the warm-up never completed)"),
    }
    let texts: Vec<String> = cluster.nodes.iter().map(NodeProcess::log).collect();
    let finals: Vec<BTreeMap<u64, u64>> = texts.iter().map(|l| finalized_times(l)).collect();
    let entered: Vec<BTreeMap<u64, u64>> = texts.iter().map(|l| entries(l)).collect();
    let proposed: Vec<(u64, u64, u64)> = texts.iter().flat_map(|l| proposals(l)).collect();
    let nullified: u64 = cluster
        .nodes
        .iter()
        .filter_map(|n| n.metric("avs_node_nullified_views_total").ok().flatten())
        .map(|v| v as u64)
        .max()
        .unwrap_or(0);
    let peaks: Vec<u64> = memory.iter().flatten().map(|(hwm, _)| *hwm).collect();
    let peak_max = peaks.iter().max().copied().unwrap_or(0);
    let mut sorted_peaks = peaks.clone();
    sorted_peaks.sort_unstable();
    let peak_median = sorted_peaks.get(sorted_peaks.len() / 2).copied().unwrap_or(0);
    println!(
        "peak RSS per node (VmHWM): max {:.1} MiB, median {:.1} MiB over {} nodes",
        peak_max as f64 / 1024.0,
        peak_median as f64 / 1024.0,
        peaks.len()
    );
    // A network that stops finalizing is a result too: report what was measured until then.
    let stalled = waited.is_err();
    if let Err(e) = &waited {
        println!(
            "STALLED: {} (last finalized heights: {:?})",
            e.to_string().lines().next().unwrap_or_default(),
            finals.iter().map(|l| l.keys().next_back().copied().unwrap_or(0)).collect::<Vec<_>>()
        );
    }
    // Every height, each exactly once on every node: none skipped.
    let gaps: usize =
        finals.iter().map(|f| (1..=target).filter(|h| !f.contains_key(h)).count()).sum();

    let mut latency = Vec::new();
    let mut stagger = Vec::new();
    let mut skipped = 0;
    for h in (args.warmup + 1)..=target {
        let final_us = finals.iter().map(|l| l.get(&h).copied()).collect::<Option<Vec<u64>>>();
        let Some(final_us) = final_us else {
            skipped += 1;
            continue;
        };
        let first = final_us.iter().min().copied().unwrap_or(0);
        let last = final_us.iter().max().copied().unwrap_or(0);
        let proposal = proposed
            .iter()
            .filter(|(t, _, height)| *height == h && *t <= first)
            .max_by_key(|(t, _, _)| *t);
        let Some(&(proposal_us, view, _)) = proposal else {
            skipped += 1;
            continue;
        };
        latency.push(last.saturating_sub(proposal_us) as f64 / 1000.0);
        let times: Vec<u64> = entered.iter().filter_map(|e| e.get(&view).copied()).collect();
        if times.len() == entered.len() {
            let spread = times.iter().max().unwrap_or(&0) - times.iter().min().unwrap_or(&0);
            stagger.push(spread as f64 / 1000.0);
        }
    }
    if latency.is_empty() {
        bail!("no height could be measured (skipped {skipped}, stalled: {stalled})");
    }
    latency.sort_by(f64::total_cmp);
    stagger.sort_by(f64::total_cmp);
    let floor_ms = floor.total_us() / 1000.0;
    let hop_ms = floor.hop_us / 1000.0;
    let (p50, p99) = (percentile(&latency, 0.5), percentile(&latency, 0.99));
    let stagger50 = if stagger.is_empty() { f64::NAN } else { percentile(&stagger, 0.5) };
    println!(
        "measured {} heights ({skipped} skipped: not finalized by every node or no proposal line); \
         heights missing on some node: {gaps}; nullified views (max over nodes): {nullified}",
        latency.len()
    );
    println!(
        "latency (proposal -> every node finalized): p50 {p50:.1} ms, p99 {p99:.1} ms; \
         p50/floor = {:.2} (goal <= 3 at 4 nodes, <= 10 at 16), p99/p50 = {:.2} (goal <= 3)",
        p50 / floor_ms,
        p99 / p50
    );
    println!(
        "view entry stagger (first to last node entering the view): p50 {stagger50:.2} ms = {:.1} \
         hops (goal <= 5), p99 {:.2} ms",
        stagger50 / hop_ms,
        if stagger.is_empty() { f64::NAN } else { percentile(&stagger, 0.99) }
    );
    println!();
    println!(
        "| nodes | slot | heights | floor | p50 | p99 | p50/floor | p99/p50 | stagger p50 (hops) | nullified | peak RSS max (median) | CPU per height | payload in/out per height |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let (cpu, bytes_in, bytes_out) = cost.unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    println!(
        "| {} | {} ms | {} of {}{} | {floor_ms:.2} ms | {p50:.1} ms | {p99:.1} ms | {:.2} | {:.2} | {stagger50:.2} ms ({:.1}) | {nullified} | {:.1} MiB ({:.1} MiB) | {cpu:.1} ms | {:.1} / {:.1} KiB |",
        args.nodes,
        args.slot_ms,
        latency.len(),
        args.blocks,
        if stalled { ", stalled" } else { "" },
        p50 / floor_ms,
        p99 / p50,
        stagger50 / hop_ms,
        peak_max as f64 / 1024.0,
        peak_median as f64 / 1024.0,
        bytes_in / 1024.0,
        bytes_out / 1024.0
    );
    Ok(())
}

/// One real node against `nodes - 1` operators played by the simulated-peer harness
/// (`avs_tests::peers`): the node's CPU, payload bytes and peak memory per finalized height, and
/// its latency from the proposal leaving the leader (the harness, or the node itself) to the
/// node's `finalized` line.
fn simulated(args: &Args, floor: &Floor) -> anyhow::Result<()> {
    let net = SimulatedNetwork::start(&PeersSpec {
        operators: args.nodes,
        peers: args.simulated_peers,
        slot_ms: args.slot_ms,
        certificates: true,
        node_args: Vec::new(),
    })?;
    let target = args.warmup + args.blocks;
    let hz = ticks_per_second();
    let started = Instant::now();
    let wait = |height: u64| -> anyhow::Result<()> {
        loop {
            if let Some(e) = net.report().error {
                bail!("the harness stopped: {e}");
            }
            if finalized_times(&net.node.log()).contains_key(&height) {
                return Ok(());
            }
            if started.elapsed() > args.timeout {
                bail!("height {height} not finalized in {:?}", args.timeout);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    wait(args.warmup)?;
    let at_warmup = spent(&net.node, hz);
    let waited = wait(target);
    let memory = net.node.pid().and_then(memory_kb);
    let at_end = spent(&net.node, hz);
    let report = net.report();
    let log = net.node.log();
    let finals = finalized_times(&log);
    let own: BTreeMap<u64, u64> = proposals(&log).into_iter().map(|(t, _, h)| (h, t)).collect();
    let mut latency: Vec<f64> = ((args.warmup + 1)..=target)
        .filter_map(|h| {
            let proposed = report.proposed_at_us.get(&h).or_else(|| own.get(&h))?;
            Some(finals.get(&h)?.saturating_sub(*proposed) as f64 / 1000.0)
        })
        .collect();
    latency.sort_by(f64::total_cmp);
    let mut sending: Vec<f64> = ((args.warmup + 1)..=target)
        .filter_map(|h| {
            let from = report.proposed_at_us.get(&h)?;
            Some(report.sent_at_us.get(&h)?.saturating_sub(*from) as f64 / 1000.0)
        })
        .collect();
    sending.sort_by(f64::total_cmp);
    let nullified = net.node.metric("avs_node_nullified_views_total").ok().flatten().unwrap_or(0.0);
    let shed = net.node.metric("avs_node_validation_shed_total").ok().flatten().unwrap_or(0.0);
    let dropped = net.node.metric("avs_p2p_dropped_events_total").ok().flatten().unwrap_or(0.0);
    drop(net);
    if let Err(e) = &waited {
        println!("STALLED: {e}");
    }
    if latency.is_empty() {
        bail!("no height could be measured");
    }
    let (p50, p99) = (percentile(&latency, 0.5), percentile(&latency, 0.99));
    let floor_ms = floor.total_us() / 1000.0;
    let cost = per_height(&[at_warmup], &[at_end]);
    let (cpu, bytes_in, bytes_out) = cost.unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let peak_mib = memory.map_or(f64::NAN, |(hwm, _)| hwm as f64 / 1024.0);
    println!(
        "harness: {} messages published ({} failed), node-led heights {:?}, views nullified by \
         the harness {:?}, requests from the node {:?}; node: {nullified} views nullified, \
         {shed} gossip messages shed by validation, {dropped} events dropped by the network task",
        report.published,
        report.publish_failures,
        report.node_proposed,
        report.nullified_views,
        report.requests
    );
    if !sending.is_empty() {
        println!(
            "harness: from its proposal to its last FINALIZE vote sent, p50 {:.1} ms (the part of \
             the latency spent in the harness's own publishing)",
            percentile(&sending, 0.5)
        );
    }
    println!();
    println!(
        "| operators | measured how | slot | heights | CPU per height | payload in / out per height | peak RSS | floor | p50 | p99 | p50 / floor |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | 1 real node, {} simulated through {} peers | {} ms | {} of {}{} | {cpu:.1} ms | {:.1} / {:.1} KiB | {peak_mib:.1} MiB | {floor_ms:.2} ms | {p50:.1} ms | {p99:.1} ms | {:.1} |",
        args.nodes,
        args.nodes - 1,
        args.simulated_peers,
        args.slot_ms,
        latency.len(),
        args.blocks,
        if waited.is_err() { ", stalled" } else { "" },
        bytes_in / 1024.0,
        bytes_out / 1024.0,
        p50 / floor_ms,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_log_lines_parse() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.5Z"), Some(1_500_000));
        assert_eq!(parse_timestamp("2000-03-01T00:00:00.000001Z"), Some(951_868_800_000_001));
        let log = "2026-11-21T14:36:49.123456Z  INFO avs_node::core: finalized height=3 view=4 root=ab tasks=0\n\
                   2026-11-21T14:36:49.000001Z DEBUG avs_node::core: proposed view=4 height=3\n\
                   2026-11-21T14:36:48.000000Z DEBUG avs_node::core: entered view epoch=0 view=4 cause=Notarized at_ms=1\n\
                   2026-11-21T14:36:50.000000Z  INFO avs_node::core: peer is ahead their_finalized=9\n";
        let times = finalized_times(log);
        assert_eq!(times.len(), 1);
        assert_eq!(times.get(&3), parse_timestamp("2026-11-21T14:36:49.123456Z").as_ref());
        assert_eq!(
            proposals(log),
            vec![(parse_timestamp("2026-11-21T14:36:49.000001Z").unwrap(), 4, 3)]
        );
        assert_eq!(entries(log).get(&4), parse_timestamp("2026-11-21T14:36:48.000000Z").as_ref());
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.99), 4.0);
    }
}
