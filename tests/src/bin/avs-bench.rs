//! `avs-bench`: end-to-end finality latency of a local network of real `avs-node` processes,
//! next to the critical-path floor measured in the same run, and each node's peak memory.
//!
//! Flow: measure the floor on the idle machine (loopback UDP hop, BLS sign, single verify,
//! certificate verify for N signers, a fsynced append in the directory the nodes write to);
//! start N nodes with the tests crate's [`Cluster`] (one aggregator by default); poll every
//! node's `/lean/v0/status` on its own thread and record each change of view and finalized
//! height; wait until every node finalized `warmup + blocks` heights; read each node's peak RSS
//! (`VmHWM`); then join the samples with the `finalized` lines of the node logs (microsecond
//! timestamps) and print the table.
//!
//! Definitions (per measured height h, heights `<= warmup` are skipped):
//! - view of h: the lowest view any node reported when it first reported `finalized >= h`
//!   (a block is finalized inside the view that proposed it on the good path);
//! - proposal time: the first time the view's leader (computed from the genesis, matched to a
//!   node by the `operator_index` of its status) was seen in that view: it proposes when it
//!   enters the view. Accurate to the poll period (a late sample makes latency look smaller by
//!   at most that period);
//! - final time: the latest `finalized height=h` log line over all nodes;
//! - raw latency = final - proposal;
//! - pacing wait = time until a quorum of nodes had entered the view (a replica holds a
//!   proposal for a view it has not entered; views advance at most once per slot);
//! - net latency = final - max(proposal, quorum entered).
//!
//! Floor = 5 hops (proposal, NOTARIZE vote, notarization, FINALIZE vote, finalization)
//! + 4 signs (proposal, leader's NOTARIZE, replica's NOTARIZE, FINALIZE)
//! + 3 fsyncs (leader's and replica's NOTARIZE, FINALIZE: each own vote is durable before it
//!   is sent) + 3 single verifies (proposal, the two votes completing the quorums at the
//!   aggregator) + 2 certificate verifies.
//!
//! Run: `cargo build -p avs-node && cargo run -p avs-tests --bin avs-bench -- --nodes 4`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use avs_consensus::KeyTable;
use avs_consensus::bls::{self, SecretKey};
use avs_consensus::signing::network_digest;
use avs_consensus::signing::vote_signing_root;
use avs_consensus::types::{Certificate, Operator, OperatorSet, Signers, VoteData};
use avs_consensus::verify::verify_certificate;
use avs_tests::{Cluster, ClusterSpec};

const USAGE: &str = "avs-bench [--nodes N] [--blocks B] [--warmup W] [--slot-ms MS] \
                     [--poll-ms MS] [--aggregators A] [--timeout-s S]";

struct Args {
    nodes: usize,
    blocks: u64,
    warmup: u64,
    slot_ms: u64,
    poll_ms: u64,
    aggregators: usize,
    timeout: Duration,
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
            // Each poll is an HTTP request a dev-profile node serves on the same 2 cores: poll
            // no finer than the measurement needs, or the pollers become the load.
            poll_ms: given.remove("poll-ms").unwrap_or(if nodes > 8 { 50 } else { 20 }),
            aggregators: usize::try_from(given.remove("aggregators").unwrap_or(1))?,
            timeout: Duration::from_secs(given.remove("timeout-s").unwrap_or(600)),
        };
        if let Some(unknown) = given.keys().next() {
            bail!("unknown flag --{unknown}; usage: {USAGE}");
        }
        if args.nodes < 4 || args.blocks == 0 || args.aggregators == 0 || args.slot_ms < 100 {
            bail!("need --nodes >= 4, --blocks >= 1, --aggregators >= 1, --slot-ms >= 100");
        }
        Ok(args)
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
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
        5.0 * self.hop_us
            + 4.0 * self.sign_us
            + 3.0 * self.fsync_us
            + 3.0 * self.verify_us
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
            .map(|i| SecretKey::from_seed(&[u8::try_from(i % 250).unwrap_or(0) + 1; 32]))
            .collect::<Result<_, _>>()?;
        let operators: Vec<Operator> = keys
            .iter()
            .map(|k| Operator {
                address: [0; 20],
                pubkey: k.public_key().to_bytes().to_vec().try_into().expect("48"),
                pop: k.proof_of_possession().to_bytes().to_vec().try_into().expect("96"),
                power: 100,
            })
            .collect();
        let set = OperatorSet { operators: operators.try_into().expect("<= 1024") };
        let table = KeyTable::new(0, &set, [1, 2, 3, 4])?;
        let data = VoteData::finalize(0, 9, [0x11; 32]);
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

/// Status changes seen by one poller: (unix µs, view, finalized height).
type Samples = Vec<(u64, u64, u64)>;

/// The part of `/lean/v0/status` the pollers read.
#[derive(serde::Deserialize)]
struct Polled {
    view: u64,
    finalized_height: u64,
    operator_index: Option<u64>,
}

/// One node's poller result: its operator index and the changes it saw.
struct Polls {
    operator: Option<u64>,
    samples: Samples,
}

fn poll(
    cluster_urls: Vec<String>,
    period: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Polls>> {
    cluster_urls
        .into_iter()
        .map(|url| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(2)))
                    .build()
                    .into();
                let mut samples: Samples = Vec::new();
                let mut operator = None;
                let mut last = None;
                while !stop.load(Ordering::Relaxed) {
                    let before = now_us();
                    let status = agent
                        .get(&url)
                        .call()
                        .ok()
                        .and_then(|mut r| r.body_mut().read_json::<Polled>().ok());
                    if let Some(s) = status {
                        let t = before + (now_us().saturating_sub(before)) / 2;
                        operator = operator.or(s.operator_index);
                        let state = (s.view, s.finalized_height);
                        if last != Some(state) {
                            last = Some(state);
                            samples.push((t, s.view, s.finalized_height));
                        }
                    }
                    std::thread::sleep(period);
                }
                Polls { operator, samples }
            })
        })
        .collect()
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

/// `height -> unix µs` of a node's `finalized` log lines.
fn finalized_times(log: &str) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once(": finalized height=") else { continue };
        let height = rest.split_whitespace().next().and_then(|h| h.parse().ok());
        let ts = line.split_whitespace().next().and_then(parse_timestamp);
        if let (Some(h), Some(t)) = (height, ts) {
            out.entry(h).or_insert(t);
        }
    }
    out
}

/// Peak and current resident set (kB) of a process, from `/proc/<pid>/status`.
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
        "avs-bench: {} nodes, {} aggregator(s), slot {} ms, {} blocks after {} warm-up, \
         status poll every {} ms, {cpus} CPUs",
        args.nodes, args.aggregators, args.slot_ms, args.blocks, args.warmup, args.poll_ms
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

    let spec = ClusterSpec {
        nodes: args.nodes,
        aggregators: args.aggregators,
        standby: Vec::new(),
        slot_ms: args.slot_ms,
    };
    let cluster = Cluster::start(&spec)?;
    // The leader of each view, from the genesis the nodes run.
    let genesis =
        avs_node::genesis::GenesisFile::load(&cluster.dir().join("genesis.json"))?.to_config()?;
    let table = KeyTable::new(0, &genesis.operators, network_digest(&genesis)?)?;
    let stop = Arc::new(AtomicBool::new(false));
    let pollers = poll(
        cluster.nodes.iter().map(|n| n.url("/lean/v0/status")).collect(),
        Duration::from_millis(args.poll_ms),
        stop.clone(),
    );
    let target = args.warmup + args.blocks;
    let waited =
        cluster.wait_for(&format!("every node to finalize height {target}"), args.timeout, |c| {
            // The status endpoint is cheap, but the pollers already load it: read the logs.
            Ok(c.nodes.iter().all(|n| finalized_times(&n.log()).contains_key(&target)))
        });
    let memory: Vec<Option<(u64, u64)>> =
        cluster.nodes.iter().map(|n| n.pid().and_then(memory_kb)).collect();
    stop.store(true, Ordering::Relaxed);
    let polls: Vec<Polls> = pollers
        .into_iter()
        .map(|h| h.join().unwrap_or(Polls { operator: None, samples: Vec::new() }))
        .collect();
    let logs: Vec<BTreeMap<u64, u64>> =
        cluster.nodes.iter().map(|n| finalized_times(&n.log())).collect();
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
        let first = e.to_string();
        println!(
            "STALLED: {} (last finalized heights: {:?})",
            first.lines().next().unwrap_or_default(),
            logs.iter().map(|l| l.keys().next_back().copied().unwrap_or(0)).collect::<Vec<_>>()
        );
    }

    let quorum = args.nodes * 2 / 3 + 1;
    let mut raw = Vec::new();
    let mut net = Vec::new();
    let mut pacing = Vec::new();
    let mut stagger = Vec::new();
    let mut skipped = 0;
    for h in (args.warmup + 1)..=target {
        let view = polls
            .iter()
            .filter_map(|p| p.samples.iter().find(|(_, _, f)| *f >= h).map(|(_, v, _)| *v))
            .min();
        let final_us = logs.iter().map(|l| l.get(&h).copied()).collect::<Option<Vec<u64>>>();
        let (Some(view), Some(final_us)) = (view, final_us) else {
            skipped += 1;
            continue;
        };
        let final_us = final_us.into_iter().max().unwrap_or(0);
        let entry = |p: &Polls| p.samples.iter().find(|(_, v, _)| *v >= view).map(|(t, _, _)| *t);
        let mut entered: Vec<u64> = polls.iter().filter_map(entry).collect();
        entered.sort_unstable();
        let leader = table.leader(view);
        let proposal =
            polls.iter().find(|p| p.operator.is_some() && p.operator == leader).and_then(entry);
        let (Some(proposal), Some(&quorum_in), Some(&first), Some(&last)) =
            (proposal, entered.get(quorum - 1), entered.first(), entered.last())
        else {
            skipped += 1;
            continue;
        };
        raw.push(final_us.saturating_sub(proposal) as f64 / 1000.0);
        net.push(final_us.saturating_sub(quorum_in.max(proposal)) as f64 / 1000.0);
        pacing.push(quorum_in.saturating_sub(proposal) as f64 / 1000.0);
        stagger.push(last.saturating_sub(first) as f64 / 1000.0);
    }
    if raw.is_empty() {
        bail!("no height could be measured (skipped {skipped}, stalled: {stalled})");
    }
    for v in [&mut raw, &mut net, &mut pacing, &mut stagger] {
        v.sort_by(f64::total_cmp);
    }
    let floor_ms = floor.total_us() / 1000.0;
    let (raw50, raw99) = (percentile(&raw, 0.5), percentile(&raw, 0.99));
    let (net50, net99) = (percentile(&net, 0.5), percentile(&net, 0.99));

    println!(
        "measured {} heights ({skipped} skipped: not finalized by every node in the log or not seen by the pollers)",
        raw.len()
    );
    println!(
        "raw latency (proposal -> every node finalized): p50 {raw50:.1} ms, p99 {raw99:.1} ms; \
         p50/floor = {:.2} (goal <= 1.5), p99/p50 = {:.2} (goal <= 2)",
        raw50 / floor_ms,
        raw99 / raw50
    );
    println!(
        "net of pacing (from a quorum in the view): p50 {net50:.1} ms, p99 {net99:.1} ms; \
         p50/floor = {:.2}, p99/p50 = {:.2}",
        net50 / floor_ms,
        net99 / net50
    );
    println!(
        "pacing wait (proposal -> quorum entered the view): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&pacing, 0.5),
        percentile(&pacing, 0.99)
    );
    println!(
        "view entry stagger (first to last node entering a view): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&stagger, 0.5),
        percentile(&stagger, 0.99)
    );
    println!();
    println!(
        "| nodes | slot | heights | floor | raw p50 | raw p99 | p50/floor | p99/p50 | net p50 | net p99 | net p50/floor | peak RSS max (median) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} ms | {} of {}{} | {floor_ms:.2} ms | {raw50:.1} ms | {raw99:.1} ms | {:.2} | {:.2} | {net50:.1} ms | {net99:.1} ms | {:.2} | {:.1} MiB ({:.1} MiB) |",
        args.nodes,
        args.slot_ms,
        raw.len(),
        args.blocks,
        if stalled { ", stalled" } else { "" },
        raw50 / floor_ms,
        raw99 / raw50,
        net50 / floor_ms,
        peak_max as f64 / 1024.0,
        peak_median as f64 / 1024.0
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
        let log = "2026-11-21T14:36:49.123456Z  INFO avs_node::node: finalized height=3 root=ab tasks=0\n\
                   2026-11-21T14:36:50.000000Z  INFO avs_node::node: peer is ahead; catching up their_finalized=9\n";
        let times = finalized_times(log);
        assert_eq!(times.len(), 1);
        assert!(times.contains_key(&3));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.99), 4.0);
    }
}
