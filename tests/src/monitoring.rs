//! What an operator's monitoring reads from a running node: the metrics pass Prometheus's own
//! linter, every metric the repository's Grafana dashboard queries is one the node exports, and
//! `avs-node status` reads the node's health, peers and role.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use super::*;

/// The dashboard, relative to this crate.
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../monitoring/grafana/avs-node.json");

/// `promtool` from Debian's `prometheus` package: `$PROMTOOL`, else on `PATH`, else where
/// `scripts/setup --test` unpacks it.
fn promtool() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PROMTOOL") {
        return Ok(path.into());
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v promtool"]).output()
        && out.status.success()
    {
        return Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    let home = std::env::var_os("HOME").context("HOME")?;
    let cached = PathBuf::from(home).join(".cache/avs-node/promtool/promtool");
    anyhow::ensure!(
        cached.exists(),
        "promtool not found: run `scripts/setup --test` (it unpacks Debian's prometheus package)"
    );
    Ok(cached)
}

/// A four-node network that has finalized a few blocks, so that the labelled families have
/// series (prometheus-client exports nothing for a family before its first sample; gossip
/// refusals, for instance, come with votes that arrive after their certificate). Node 0 runs on
/// encrypted keystores.
fn running_network() -> Cluster {
    let cluster = Cluster::start(&ClusterSpec::default()).unwrap();
    cluster
        .wait_for("six finalized heights and a gossip refusal", Duration::from_secs(90), |c| {
            Ok(c.nodes[0].status()?.finalized_height >= 6
                && c.nodes[0].metric_sum("avs_node_gossip_refused_total", "")? > 0.0)
        })
        .unwrap();
    cluster
}

#[test]
fn the_metrics_pass_promtool_and_the_dashboard_queries_only_exported_metrics() {
    let promtool = promtool().unwrap();
    let cluster = running_network();
    let text = cluster.nodes[0].metrics_text().unwrap();

    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every sample name the node exports, and those its declared families will export once
    // they have samples (a labelled family with no child yet has only its TYPE line).
    let mut exported: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split([' ', '{']).next())
        .map(str::to_owned)
        .collect();
    for declared in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        if let Some((name, kind)) = declared.split_once(' ') {
            match kind {
                "histogram" => exported
                    .extend(["_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}"))),
                _ => {
                    exported.insert(name.to_owned());
                }
            }
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            queried.extend(metric_names(expr));
        }
    }
    assert!(queried.len() >= 10, "the dashboard queries too little: {queried:?}");
    let missing: Vec<_> = queried.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the node does not export: {missing:?}"
    );

    // `avs-node status`, as an operator runs it against the same node.
    let out = Command::new(avs_node_binary().unwrap())
        .args(["status", "--url", &cluster.nodes[0].url("")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for expected in ["health      healthy", "peers       3", "role        aggregator, operator #"] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
}

/// The metric names a PromQL expression reads: identifiers of our namespaces.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| ["avs_", "lean_", "libp2p_"].iter().any(|p| w.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

#[test]
fn metric_names_are_read_out_of_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.5, sum by (le) (rate(avs_node_loop_seconds_bucket[5m])))"
        ),
        ["avs_node_loop_seconds_bucket"]
    );
    assert_eq!(
        metric_names("avs_node_view - ignoring(x) lean_is_aggregator"),
        ["avs_node_view", "lean_is_aggregator"]
    );
}
