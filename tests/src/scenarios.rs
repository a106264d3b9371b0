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
        roots.insert(status.finalized_height, status.finalized_root);
    }
}

fn no_evidence(cluster: &Cluster) {
    for node in &cluster.nodes {
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

#[test]
fn switching_the_only_aggregator_off_stops_finality_and_a_standby_resumes_it() {
    let spec = ClusterSpec { standby: vec![1], ..ClusterSpec::default() };
    let cluster = Cluster::start(&spec).unwrap();
    cluster
        .wait_for("finality with node0 aggregating", FINALITY, |c| {
            Ok(c.min_finalized().is_some_and(|h| h >= 2))
        })
        .unwrap();
    assert!(cluster.nodes[0].set_aggregator(false).unwrap(), "node0 was the aggregator");
    // Let certificates already in flight land, then the height must stand still.
    std::thread::sleep(Duration::from_secs(3));
    let stalled = cluster.nodes[0].status().unwrap().finalized_height;
    std::thread::sleep(Duration::from_secs(6));
    let statuses: Vec<Status> = cluster.statuses().into_iter().flatten().collect();
    assert!(
        statuses.iter().all(|s| s.finalized_height <= stalled),
        "finality went on with no aggregator: {statuses:?} (stalled at {stalled})"
    );
    assert!(statuses.iter().all(|s| !s.is_aggregator));
    assert!(!cluster.nodes[1].set_aggregator(true).unwrap(), "node1 was a standby, off");
    cluster
        .wait_for("finality to resume with node1 aggregating", FINALITY, |c| {
            Ok(c.min_finalized().is_some_and(|h| h >= stalled + 2))
        })
        .unwrap();
    assert_agreement(&cluster);
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
