//! Scenarios with real node processes (one at a time: see `.config/nextest.toml`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

const FINALITY: Duration = Duration::from_secs(90);

#[test]
fn the_node_binary_is_built_and_reports_its_version() {
    let bin = avs_node_binary().unwrap();
    let out = std::process::Command::new(bin).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("avs-node {}", env!("CARGO_PKG_VERSION")));
}

/// Every node that reports a height reports the same root for it.
fn assert_agreement(cluster: &Cluster) {
    let mut roots: BTreeMap<u64, String> = BTreeMap::new();
    for status in cluster.statuses().into_iter().flatten() {
        if let Some(root) = roots.get(&status.finalized_height) {
            assert_eq!(root, &status.finalized_root, "two finalized roots at one height");
        }
        roots.insert(status.finalized_height, status.node.finalized_root);
    }
}

fn no_evidence(cluster: &Cluster) {
    no_evidence_on(&cluster.nodes);
}

fn no_evidence_on(nodes: &[NodeProcess]) {
    for node in nodes {
        let count = node.metric("avs_node_evidence_total").unwrap();
        assert_eq!(
            count,
            Some(0.0),
            "node{} saw equivocation evidence (or exports no count)",
            node.index
        );
    }
}

#[test]
fn four_nodes_finalize_blocks_and_agree() {
    let cluster = Cluster::start(&ClusterSpec::default()).unwrap();
    cluster
        .wait_for("every node to finalize height 3", FINALITY, |c| {
            Ok(c.min_finalized().is_some_and(|h| h >= 3))
        })
        .unwrap();
    // Heights move on while we read; keep reading until one snapshot has all four equal.
    cluster
        .wait_for("a snapshot where all nodes report one height", FINALITY, |c| {
            let statuses: Vec<Status> = c.statuses().into_iter().flatten().collect();
            assert_agreement(c);
            Ok(statuses.len() == 4
                && statuses.windows(2).all(|w| w[0].finalized_height == w[1].finalized_height))
        })
        .unwrap();
    for status in cluster.statuses().into_iter().flatten() {
        assert_eq!(status.peers, 3, "full mesh on 4 nodes");
    }
    no_evidence(&cluster);
}

#[test]
fn a_killed_node_restarts_catches_up_and_never_contradicts_its_votes() {
    let mut cluster = Cluster::start(&ClusterSpec::default()).unwrap();
    cluster
        .wait_for("finality before the crash", FINALITY, |c| {
            Ok(c.min_finalized().is_some_and(|h| h >= 2))
        })
        .unwrap();
    cluster.nodes[3].kill_9().unwrap();
    let before = cluster.nodes[0].status().unwrap().finalized_height;
    // Three of four equal operators still hold more than 2/3: the chain goes on without it.
    cluster
        .wait_for("finality without node3", FINALITY, |c| {
            Ok(c.nodes[0].status()?.finalized_height >= before + 3)
        })
        .unwrap();
    cluster.nodes[3].start().unwrap();
    let target = cluster.nodes[0].status().unwrap().finalized_height;
    cluster
        .wait_for("node3 to catch up past the others' height at its restart", FINALITY, |c| {
            Ok(c.nodes[3].status()?.finalized_height > target)
        })
        .unwrap();
    assert_agreement(&cluster);
    assert!(cluster.nodes[3].log().contains("resuming from the store"), "node3 did not resume");
    // Any vote contradicting one node3 stored before the crash would be equivocation evidence
    // at the others.
    no_evidence(&cluster);
}

/// The aggregator flag decides who publishes certificates first, not whether there are any:
/// with it off everywhere, every node still acts on the quorums in its own pool.
#[test]
fn finality_goes_on_with_the_aggregator_flag_off_everywhere() {
    let cluster = Cluster::start(&ClusterSpec::default()).unwrap();
    cluster
        .wait_for("finality with node0 aggregating", FINALITY, |c| {
            Ok(c.min_finalized().is_some_and(|h| h >= 2))
        })
        .unwrap();
    assert!(cluster.nodes[0].set_aggregator(false).unwrap(), "node0 was the aggregator");
    // The status shows the flag as the loop last read it (at its next event).
    cluster
        .wait_for("every status to show the flag off", FINALITY, |c| {
            Ok(c.statuses().into_iter().flatten().all(|s| !s.is_aggregator))
        })
        .unwrap();
    let off_at = cluster.min_finalized().unwrap();
    cluster
        .wait_for("finality with no aggregator", FINALITY, |c| {
            Ok(c.min_finalized().is_some_and(|h| h >= off_at + 3))
        })
        .unwrap();
    assert_agreement(&cluster);
    no_evidence(&cluster);
}

/// `kill -9` of the only aggregator, which is also every other node's only bootnode: the
/// others found each other through discovery, so they stay connected and keep finalizing.
#[test]
fn killing_the_only_aggregator_and_bootnode_does_not_stop_finality() {
    let spec = ClusterSpec { only_bootnode: Some(0), ..ClusterSpec::default() };
    let mut cluster = Cluster::start(&spec).unwrap();
    cluster
        .wait_for("a full mesh found through one bootnode, and finality", FINALITY, |c| {
            let statuses: Vec<Status> = c.statuses().into_iter().flatten().collect();
            Ok(statuses.len() == 4
                && statuses.iter().all(|s| s.peers == 3 && s.finalized_height >= 2))
        })
        .unwrap();
    cluster.nodes[0].kill_9().unwrap();
    let survivors = |c: &Cluster| -> anyhow::Result<Vec<Status>> {
        c.nodes[1..].iter().map(NodeProcess::status).collect()
    };
    let at_kill = survivors(&cluster).unwrap().iter().map(|s| s.finalized_height).max().unwrap();
    cluster
        .wait_for("finality on the three survivors", FINALITY, |c| {
            Ok(survivors(c)?.iter().all(|s| s.finalized_height >= at_kill + 3))
        })
        .unwrap();
    assert_agreement(&cluster);
    no_evidence_on(&cluster.nodes[1..]);
}

/// A follower killed and restarted ten times in a row (at random points of its views): it
/// never signs against a vote it stored (the others would record equivocation evidence), and
/// it catches up after the last restart.
#[test]
fn a_follower_killed_and_restarted_ten_times_keeps_its_word_and_catches_up() {
    let mut cluster = Cluster::start(&ClusterSpec::default()).unwrap();
    cluster
        .wait_for("finality before the crashes", FINALITY, |c| {
            Ok(c.min_finalized().is_some_and(|h| h >= 2))
        })
        .unwrap();
    let mut pause_ms = 300u64;
    for round in 0..10 {
        cluster.nodes[3].kill_9().unwrap();
        std::thread::sleep(Duration::from_millis(pause_ms));
        cluster.nodes[3].start().unwrap();
        cluster
            .wait_for(&format!("node3's API after restart {round}"), FINALITY, |c| {
                Ok(c.nodes[3].status().is_ok())
            })
            .unwrap();
        // Vary where in a view the next kill lands.
        std::thread::sleep(Duration::from_millis(200 + pause_ms % 900));
        pause_ms = (pause_ms * 7 + 130) % 1700;
    }
    let target = cluster.nodes[0].status().unwrap().finalized_height;
    cluster
        .wait_for("node3 to catch up after ten restarts", FINALITY, |c| {
            Ok(c.nodes[3].status()?.finalized_height > target)
        })
        .unwrap();
    assert_agreement(&cluster);
    no_evidence(&cluster);
}

/// A node down while the others finalize 200 heights catches up (blocks by range, 64 at a
/// time) and takes part again.
#[test]
fn a_node_down_for_200_heights_catches_up() {
    let spec = ClusterSpec { slot_ms: 250, ..ClusterSpec::default() };
    let mut cluster = Cluster::start(&spec).unwrap();
    cluster
        .wait_for("finality before the outage", FINALITY, |c| {
            Ok(c.min_finalized().is_some_and(|h| h >= 2))
        })
        .unwrap();
    cluster.nodes[2].kill_9().unwrap();
    let down_at = cluster.nodes[0].status().unwrap().finalized_height;
    cluster
        .wait_for("200 heights without node2", Duration::from_secs(300), |c| {
            Ok(c.nodes[0].status()?.finalized_height >= down_at + 200)
        })
        .unwrap();
    cluster.nodes[2].start().unwrap();
    let target = cluster.nodes[0].status().unwrap().finalized_height;
    cluster
        .wait_for("node2 to catch up 200 heights", FINALITY, |c| {
            Ok(c.nodes[2].status()?.finalized_height > target)
        })
        .unwrap();
    assert_agreement(&cluster);
    no_evidence(&cluster);
}

#[test]
fn leanspec_api_vectors_pass_against_a_running_node() {
    let spec = ClusterSpec { nodes: 1, ..ClusterSpec::default() };
    let cluster = Cluster::start(&spec).unwrap();
    cluster
        .wait_for("the node's API", Duration::from_secs(30), |c| Ok(c.nodes[0].status().is_ok()))
        .unwrap();
    let target = avs_spec_vectors::api::ApiTarget::new(
        &cluster.nodes[0].url(""),
        avs_spec_vectors::api::ContentTypeCheck::Exact,
        None,
    );
    let dir = avs_spec_vectors::leanspec::vectors_dir().join("api");
    let files = avs_spec_vectors::fixture_files(&dir).unwrap();
    assert_eq!(files.len(), 7, "leanSpec ships 7 api vectors");
    for path in files {
        let fixture = avs_spec_vectors::Fixture::load(&path).unwrap();
        avs_spec_vectors::api::check(&fixture, &target)
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    }
}

/// `kill -9` of one devnet node: the devnet reports it, keeps the others running, restarts it
/// with `--restart-crashed`, and keeps the data directory (with the logs) when it stops.
#[test]
fn the_devnet_survives_a_killed_node_and_keeps_its_logs() {
    let (mut devnet, lines, reader) =
        spawn_devnet(&["--nodes", "4", "--slot-ms", "1000", "--restart-crashed"]);
    let seen = |pattern: &str| lines.lock().unwrap().iter().any(|l| l.contains(pattern));
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + FINALITY;
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait("finality", &|| seen("finalized #3"));
    // The devnet's node processes are its children; kill one of them (not node0's aggregator).
    let children: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1));
            // The devnet's anvil (its settlement chain) is a child too: only nodes count.
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            ppid == Some(&devnet.id().to_string()) && comm.trim() == "avs-node"
        })
        .collect();
    assert!(children.len() >= 4, "found {} node processes", children.len());
    let victim = children[2];
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(victim as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    wait("the crash report", &|| seen("exited (signal: 9"));
    wait("the restart", &|| seen("restarted (restart 1)"));
    let after = lines.lock().unwrap().len();
    wait("finality after the restart", &|| {
        lines.lock().unwrap()[after..].iter().filter(|l| l.contains("finalized #")).count() >= 3
    });
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(devnet.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    devnet.wait().unwrap();
    reader.join().unwrap();
    let lines = lines.lock().unwrap();
    let kept = lines.iter().find_map(|l| l.strip_prefix("devnet stopped; data and logs kept in "));
    let dir =
        kept.and_then(|k| k.split(" (").next()).expect("the devnet says where it kept the logs");
    let logs = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().join("node.log").is_file())
        .count();
    assert!(logs >= 4, "{logs} node logs kept in {dir}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Issue 14: the devnet's example AVS tasks are finalized and settled on its anvil in every
/// epoch: the aggregator hands each epoch's operator set over to the contract
/// (`advanceEpoch`) before it settles the next epoch's blocks.
#[test]
fn the_devnet_settles_its_avs_tasks_across_epoch_changes() {
    crate::evm::anvil().unwrap();
    let (mut devnet, lines, reader) = spawn_devnet(&["--nodes", "4", "--slot-ms", "1000"]);
    // The settled count of each "example AVS" line, with the epoch the line before it showed.
    let settled_in_epoch = |epoch: u64| {
        let lines = lines.lock().unwrap();
        let mut current = 0;
        let mut best = None;
        for line in lines.iter() {
            if let Some(rest) = line.split(" epoch ").nth(1)
                && line.starts_with('[')
            {
                current = rest.split(' ').next().and_then(|e| e.parse().ok()).unwrap_or(current);
            }
            if let Some(count) = line
                .split(", ")
                .find_map(|part| {
                    part.strip_suffix(
                        " blocks settled on chain (AttestationCenter verified each certificate)",
                    )
                })
                .and_then(|n| n.parse::<u64>().ok())
                && current >= epoch
            {
                best = Some((current, count));
            }
        }
        best
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut first_in_epoch_two = None;
    let result = loop {
        if let Some((_, count)) = settled_in_epoch(2) {
            match first_in_epoch_two {
                None => first_in_epoch_two = Some(count),
                Some(first) if count > first => break Ok(count),
                Some(_) => {}
            }
        }
        if std::time::Instant::now() > deadline {
            break Err(lines.lock().unwrap().clone());
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(devnet.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    devnet.wait().unwrap();
    reader.join().unwrap();
    if let Err(lines) = result {
        panic!("no settlement after the second epoch change: {lines:#?}");
    }
}

type DevnetLines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// `avs-node devnet` with `args`, its standard output collected line by line.
fn spawn_devnet(args: &[&str]) -> (std::process::Child, DevnetLines, std::thread::JoinHandle<()>) {
    use std::io::BufRead;
    let mut devnet = std::process::Command::new(avs_node_binary().unwrap())
        .arg("devnet")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = DevnetLines::default();
    let out = devnet.stdout.take().unwrap();
    let sink = std::sync::Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (devnet, lines, reader)
}
