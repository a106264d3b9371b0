//! What the node reports about itself after each step of its loop: read by the HTTP API
//! (`/lean/v0/status`, health), the operator pool's check-ins, gRPC and the telemetry page
//! through one watch channel.

use serde::Serialize;

/// The node's own view of the chain and of its role. Read back with defaults for absent keys,
/// so `avs-node status` also reads a node of an older version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    pub epoch: u64,
    pub view: u64,
    pub finalized_height: u64,
    /// `0x`-prefixed hex of the finalized block's root.
    pub finalized_root: String,
    pub peers: u64,
    pub is_aggregator: bool,
    pub operator_index: Option<u64>,
    /// Unix milliseconds of the last certificate this node saw (built or received).
    #[serde(skip)]
    pub last_certificate_ms: Option<u64>,
    /// Unix milliseconds of the last finalization this node made.
    #[serde(skip)]
    pub last_finalized_ms: Option<u64>,
    /// Views this node left by nullification since it started (a missing or late leader).
    pub nullified_views: u64,
    /// The last finalization's latency as this node saw it: from its own NOTARIZE vote on the
    /// block (accepting the proposal) to holding the block's finalization, in milliseconds;
    /// `null` before the first (the key is always there: the status has one shape).
    pub last_finality_latency_ms: Option<u64>,
    /// Set when the consensus cannot go on (see the node's log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
}

/// `GET /lean/v0/status`: [`NodeStatus`] as served, with the age of the last certificate. The
/// one type for that JSON: the API writes it, the devnet's progress line and the multi-process
/// tests read it (the node's fields through `Deref`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StatusReport {
    #[serde(flatten)]
    pub node: NodeStatus,
    /// Whole seconds since the last certificate this node saw; `null` before the first.
    pub seconds_since_last_certificate: Option<u64>,
}

impl StatusReport {
    pub fn of(status: &NodeStatus, now_ms: u64) -> Self {
        Self {
            node: status.clone(),
            seconds_since_last_certificate: status
                .last_certificate_ms
                .map(|at| now_ms.saturating_sub(at) / 1000),
        }
    }
}

impl std::ops::Deref for StatusReport {
    type Target = NodeStatus;

    fn deref(&self) -> &NodeStatus {
        &self.node
    }
}

/// One reading of the node's progress, for the telemetry page's charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at_ms: u64,
    pub finalized_height: u64,
    pub finality_latency_ms: Option<u64>,
}

/// The node's recent progress: a sample every [`History::PERIOD`], the last
/// [`History::SAMPLES`] kept (ten minutes). Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct History {
    samples: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Sample>>>,
}

impl History {
    pub const PERIOD: std::time::Duration = std::time::Duration::from_secs(5);
    pub const SAMPLES: usize = 120;

    /// Records `status` as of `now_ms`, dropping the oldest sample beyond [`Self::SAMPLES`].
    pub fn record(&self, status: &NodeStatus, now_ms: u64) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == Self::SAMPLES {
            samples.pop_front();
        }
        samples.push_back(Sample {
            at_ms: now_ms,
            finalized_height: status.finalized_height,
            finality_latency_ms: status.last_finality_latency_ms,
        });
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect()
    }

    /// Samples the node's status every [`Self::PERIOD`] until `shutdown`.
    pub async fn follow(
        self,
        status: tokio::sync::watch::Receiver<NodeStatus>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut every = tokio::time::interval(Self::PERIOD);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {
                    let current = status.borrow().clone();
                    self.record(&current, crate::node::now_ms());
                }
            }
        }
    }
}

/// `avs-node status`: reads a node's `/lean/v0/status` and `/lean/v0/health` and prints a
/// summary (or the status JSON).
pub fn print_remote(url: &str, json: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let base = url.trim_end_matches('/');
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut answer = agent.get(&format!("{base}/lean/v0/status")).call().with_context(|| {
        format!("no answer from {base}: is the node running, and is --url its HTTP API?")
    })?;
    anyhow::ensure!(
        answer.status().is_success(),
        "{base}/lean/v0/status answered {}",
        answer.status()
    );
    let status: StatusReport =
        answer.body_mut().read_json().context("the status answer is not the status JSON")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let health = agent
        .get(&format!("{base}/lean/v0/health"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_json::<serde_json::Value>().ok());
    print!("{}", summary(base, &status, health.as_ref()));
    Ok(())
}

/// The text `avs-node status` prints.
fn summary(base: &str, status: &StatusReport, health: Option<&serde_json::Value>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "node        {base}");
    let health_line = match health {
        Some(h) if h["status"] == "healthy" => "healthy".to_owned(),
        Some(h) => format!(
            "UNHEALTHY: {}",
            h.get("reason").and_then(|r| r.as_str()).unwrap_or("no reason given")
        ),
        None => "unknown (no answer from /lean/v0/health)".to_owned(),
    };
    let _ = writeln!(out, "health      {health_line}");
    if let Some(reason) = &status.halted {
        let _ = writeln!(out, "HALTED      {reason}");
    }
    let root = &status.finalized_root;
    let _ = writeln!(
        out,
        "chain       epoch {}, view {}, finalized #{} ({})",
        status.epoch,
        status.view,
        status.finalized_height,
        root.get(..10).unwrap_or(root)
    );
    let since = status
        .seconds_since_last_certificate
        .map_or("none yet".to_owned(), |s| format!("{s} s ago"));
    let latency = status.last_finality_latency_ms.map_or("-".to_owned(), |ms| format!("{ms} ms"));
    let _ = writeln!(
        out,
        "progress    last certificate {since}; last finality latency {latency}; nullified views {}",
        status.nullified_views
    );
    let _ = writeln!(out, "peers       {}", status.peers);
    let role = if status.is_aggregator { "aggregator" } else { "voter" };
    let operator = status
        .operator_index
        .map_or("not in the current operator set".to_owned(), |i| format!("operator #{i}"));
    let _ = writeln!(out, "role        {role}, {operator}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_what_an_operator_looks_for() {
        let status: StatusReport = serde_json::from_value(serde_json::json!({
            "epoch": 2, "view": 41, "finalized_height": 39, "finalized_root": "0xabcdef0123456789",
            "peers": 3, "is_aggregator": true, "operator_index": 1, "nullified_views": 2,
            "last_finality_latency_ms": 512, "seconds_since_last_certificate": 1,
        }))
        .unwrap();
        let healthy = serde_json::json!({"status": "healthy", "service": "lean-rpc-api"});
        let text = summary("http://127.0.0.1:5052", &status, Some(&healthy));
        for expected in [
            "health      healthy",
            "epoch 2, view 41, finalized #39 (0xabcdef01)",
            "last certificate 1 s ago; last finality latency 512 ms; nullified views 2",
            "peers       3",
            "aggregator, operator #1",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
        }
        let sick = serde_json::json!({"status": "unhealthy", "reason": "no certificate for 40 s"});
        // A node of another version: keys it does not send read as their defaults.
        let halted: StatusReport =
            serde_json::from_value(serde_json::json!({"halted": "store failed"})).unwrap();
        let text = summary("u", &halted, Some(&sick));
        assert!(text.contains("UNHEALTHY: no certificate for 40 s"), "{text}");
        assert!(text.contains("HALTED      store failed"), "{text}");
        assert!(text.contains("not in the current operator set"), "{text}");
    }
}
