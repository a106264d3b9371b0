//! Multi-process integration tests: real `avs-node` processes on 127.0.0.1.
//!
//! This library holds the harness ([`Cluster`]: keys, genesis and one `avs-node run` child per
//! operator, each with its own data directory and ports; killing and restarting them; reading
//! their HTTP API). The scenarios are its unit tests, so the crate builds one test binary. The
//! binary under test is the one `cargo nextest run --workspace` builds for the node's own
//! integration tests, in the same target directory and with the same features.
//!
//! Waits are bounded polling loops that fail with the last observed state; no assertion is
//! about how fast something happened.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Path of the `avs-node` binary built alongside this test binary.
pub fn avs_node_binary() -> anyhow::Result<PathBuf> {
    // The test executable is `<target>/<profile>/deps/avs_tests-<hash>`; the binary sits in
    // `<target>/<profile>/`.
    let exe = std::env::current_exe().context("locating the test executable")?;
    let name = format!("avs-node{}", std::env::consts::EXE_SUFFIX);
    // A binary of this crate (`avs-bench`) runs from `<target>/<profile>/` itself.
    if let Some(beside) = exe.parent().map(|dir| dir.join(&name)).filter(|p| p.is_file()) {
        return Ok(beside);
    }
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test executable is not in <target>/<profile>/deps")?;
    let bin = profile_dir.join(&name);
    if !bin.is_file() {
        bail!(
            "{} is missing: build it with the whole workspace (`scripts/test`) or \
             `cargo build -p avs-node`",
            bin.display()
        );
    }
    Ok(bin)
}

/// A node's `/lean/v0/status`: the node's own type for that JSON.
pub use avs_node::status::StatusReport as Status;

/// One `avs-node run` child process.
pub struct NodeProcess {
    pub index: usize,
    pub dir: PathBuf,
    pub p2p_port: u16,
    pub http_port: u16,
    pub grpc_port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl NodeProcess {
    /// A node of a local network, not started yet.
    pub fn new(index: usize, dir: PathBuf, (p2p, http, grpc): Ports, args: Vec<String>) -> Self {
        Self { index, dir, p2p_port: p2p, http_port: http, grpc_port: grpc, args, child: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// (Re)starts the process with the arguments it was created with.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))?;
        let child = Command::new(avs_node_binary()?)
            .args(&self.args)
            .env("RUST_LOG", "info,avs_node=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node{}", self.index))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill_9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    pub fn status(&self) -> anyhow::Result<Status> {
        let mut response = agent().get(&self.url("/lean/v0/status")).call()?;
        Ok(response.body_mut().read_json()?)
    }

    /// The samples of metric `name` (`(line, value)`), as exported now.
    fn samples(&self, name: &str) -> anyhow::Result<Vec<(String, f64)>> {
        let mut response = agent().get(&self.url("/metrics")).call()?;
        let text = response.body_mut().read_to_string()?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#') && l.split([' ', '{']).next() == Some(name))
            .filter_map(|l| Some((l.to_owned(), l.rsplit(' ').next()?.parse().ok()?)))
            .collect())
    }

    /// The node's `/metrics` text, as a scraper gets it.
    pub fn metrics_text(&self) -> anyhow::Result<String> {
        let mut response = agent().get(&self.url("/metrics")).call()?;
        Ok(response.body_mut().read_to_string()?)
    }

    /// The value of a metric (its first sample), if exported.
    pub fn metric(&self, name: &str) -> anyhow::Result<Option<f64>> {
        Ok(self.samples(name)?.first().map(|(_, value)| *value))
    }

    /// The sum of a labelled metric's samples whose labels contain `label` (0 if none).
    pub fn metric_sum(&self, name: &str, label: &str) -> anyhow::Result<f64> {
        Ok(self.samples(name)?.iter().filter(|(l, _)| l.contains(label)).map(|(_, v)| v).sum())
    }

    pub fn set_aggregator(&self, enabled: bool) -> anyhow::Result<bool> {
        let mut response = agent()
            .post(&self.url("/lean/v0/admin/aggregator"))
            .header("content-type", "application/json")
            .send(format!("{{\"enabled\":{enabled}}}"))?;
        let body: serde_json::Value = response.body_mut().read_json()?;
        body["previous"].as_bool().context("no previous in the toggle response")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.kill_9();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into()
}

pub use avs_node::devnet::Ports;

/// The `avs-node run` arguments of node `i` of a local network (the devnet's own builder):
/// its own directory, keys and ports on 127.0.0.1, and as QUIC bootnodes every other node, or
/// only node `only` (which itself gets none: it is found by the others). Keys are opened with
/// the password file beside them when there is one ([`unlock`]).
pub fn run_args(
    node_dir: &Path,
    genesis: &Path,
    ports: &[Ports],
    peer_ids: &[String],
    i: usize,
    only: Option<usize>,
) -> Vec<String> {
    let password_file = unlock(node_dir).password_file;
    avs_node::devnet::run_args(&avs_node::devnet::LocalNode {
        dir: node_dir,
        genesis,
        ports,
        peer_ids,
        index: i,
        only_bootnode: only,
        password_file: password_file.as_deref(),
    })
}

/// A network of node processes sharing one genesis.
pub struct Cluster {
    pub nodes: Vec<NodeProcess>,
    _dir: tempfile::TempDir,
}

/// How a cluster is set up.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: usize,
    /// Nodes `0..aggregators` boot with `--is-aggregator`.
    pub aggregators: usize,
    /// Nodes booted with `--is-aggregator` but switched off right away (hot standbys).
    pub standby: Vec<usize>,
    pub slot_ms: u64,
    /// Every other node knows only this node as its bootnode (default: all others).
    pub only_bootnode: Option<usize>,
    /// Node 0 runs on encrypted keystores as an operator's node does (default), the others on
    /// plaintext keys. Off for the benchmark: a scrypt at start would be node 0's peak memory.
    pub encrypted_node0: bool,
    /// More `avs-node genesis` arguments (AVS task definitions).
    pub genesis_args: Vec<String>,
    /// More `avs-node run` arguments, for every node.
    pub node_args: Vec<String>,
    /// More `avs-node run` arguments for node `i` (entry `i`).
    pub per_node_args: Vec<Vec<String>>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            nodes: 4,
            aggregators: 1,
            standby: Vec::new(),
            slot_ms: 1000,
            only_bootnode: None,
            encrypted_node0: true,
            genesis_args: Vec::new(),
            node_args: Vec::new(),
            per_node_args: Vec::new(),
        }
    }
}

/// Name of the password file beside a node's `keys/` when its keys are encrypted.
pub const PASSWORD_FILE: &str = "keys-password";

/// How a node of these tests opens its keys: with the password file beside them when there
/// is one (encrypted keystores), else as the plaintext keys tests generate for speed.
pub fn unlock(node_dir: &Path) -> avs_node::keys::Unlock {
    let file = node_dir.join(PASSWORD_FILE);
    avs_node::keys::Unlock {
        password_file: file.exists().then_some(file),
        insecure_plaintext: true,
    }
}

/// Generates node keys with the binary: encrypted under a password file beside them when
/// `encrypted`, else plaintext (a keystore costs a scrypt on every start).
fn generate_keys(node_dir: &Path, encrypted: bool) -> anyhow::Result<()> {
    let keys = node_dir.join("keys");
    let keys = keys.to_str().context("utf-8 path")?;
    if encrypted {
        std::fs::create_dir_all(node_dir)?;
        let password = node_dir.join(PASSWORD_FILE);
        std::fs::write(&password, "cluster password\n")?;
        let password = password.to_str().context("utf-8 path")?;
        run_cli(&["keys", "generate", "--out", keys, "--password-file", password])
    } else {
        run_cli(&["keys", "generate", "--out", keys, "--insecure-plaintext-keys"])
    }
}

/// Node `i`'s directory under `dir` with keys generated by the binary (see [`generate_keys`]);
/// their public part, as `avs-node keys generate` wrote it.
pub fn node_with_keys(
    dir: &Path,
    i: usize,
    encrypted: bool,
) -> anyhow::Result<avs_node::keys::OperatorPublic> {
    let node_dir = dir.join(format!("node{i}"));
    generate_keys(&node_dir, encrypted)?;
    avs_node::keys::load_public(&node_dir.join("keys"))
}

/// Writes `dir/genesis.json` with the binary's `genesis` subcommand, as an operator would: the
/// nodes `members` of `dir` (keys from [`node_with_keys`]) at power 100 each, view 0 `lead_s`
/// seconds from now, then `extra` arguments. Returns the file and its genesis time (unix s).
pub fn cli_genesis(
    dir: &Path,
    network_name: &str,
    slot_ms: u64,
    lead_s: u64,
    members: std::ops::Range<usize>,
    extra: &[String],
) -> anyhow::Result<(PathBuf, u64)> {
    let genesis = dir.join("genesis.json");
    let genesis_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        .saturating_add(lead_s);
    let mut args = vec![
        "genesis".to_owned(),
        "--network-name".into(),
        network_name.into(),
        "--genesis-time".into(),
        genesis_time.to_string(),
        "--slot-ms".into(),
        slot_ms.to_string(),
        "--out".into(),
        genesis.display().to_string(),
    ];
    for i in members {
        args.push("--operator".into());
        args.push(format!("{}:100", dir.join(format!("node{i}/keys")).display()));
    }
    args.extend(extra.iter().cloned());
    run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok((genesis, genesis_time))
}

pub fn run_cli(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(avs_node_binary()?).args(args).output()?;
    if !out.status.success() {
        bail!("avs-node {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl Cluster {
    /// Generates keys and a genesis with the binary's own subcommands, then starts every node.
    pub fn start(spec: &ClusterSpec) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("avs-cluster-").tempdir()?;
        // Node 0 runs on encrypted keystores, as an operator's node does; the others on
        // plaintext keys, which start without a scrypt.
        let peer_ids = (0..spec.nodes)
            .map(|i| Ok(node_with_keys(dir.path(), i, i == 0 && spec.encrypted_node0)?.peer_id))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (genesis, _) = cli_genesis(
            dir.path(),
            "avs-test",
            spec.slot_ms,
            2,
            0..spec.nodes,
            &spec.genesis_args,
        )?;

        let ports = avs_node::devnet::node_ports(spec.nodes)?;
        let mut nodes = Vec::new();
        for (i, &node_ports) in ports.iter().enumerate() {
            let node_dir = dir.path().join(format!("node{i}"));
            let mut args = run_args(&node_dir, &genesis, &ports, &peer_ids, i, spec.only_bootnode);
            if i < spec.aggregators || spec.standby.contains(&i) {
                args.push("--is-aggregator".into());
            }
            args.extend(spec.node_args.iter().cloned());
            args.extend(spec.per_node_args.get(i).into_iter().flatten().cloned());
            let mut node = NodeProcess::new(i, node_dir, node_ports, args);
            node.start()?;
            nodes.push(node);
        }
        let cluster = Self { nodes, _dir: dir };
        for &i in &spec.standby {
            cluster.wait_for(&format!("node{i}'s API"), Duration::from_secs(30), |c| {
                Ok(c.nodes[i].status().is_ok())
            })?;
            cluster.nodes[i].set_aggregator(false)?;
        }
        Ok(cluster)
    }

    pub fn statuses(&self) -> Vec<Option<Status>> {
        self.nodes.iter().map(|n| n.status().ok()).collect()
    }

    /// Polls `condition` every 200 ms until it holds or `limit` passes; the error shows what
    /// the nodes reported last and the tail of every log.
    pub fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        mut condition: impl FnMut(&Self) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let mut last_error = None;
        while Instant::now() < deadline {
            match condition(self) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last_error = Some(e),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut report = format!("timed out waiting for {what}; last error: {last_error:?}\n");
        for (node, status) in self.nodes.iter().zip(self.statuses()) {
            report.push_str(&format!("node{}: {status:?}\n", node.index));
            let log = node.log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            for line in tail.into_iter().rev() {
                report.push_str(&format!("  | {line}\n"));
            }
        }
        bail!(report)
    }

    /// Lowest finalized height among the running nodes that answer.
    pub fn min_finalized(&self) -> Option<u64> {
        self.statuses()
            .into_iter()
            .map(|s| s.map(|s| s.finalized_height))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

pub mod evm;
pub mod peers;

#[cfg(test)]
mod adversary;
#[cfg(test)]
mod automation;
#[cfg(test)]
mod avs;
#[cfg(test)]
mod monitoring;
#[cfg(test)]
mod pool;
#[cfg(test)]
mod scale;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod tasks;

impl NodeProcess {
    /// Process id of the running child, for reading its `/proc/<pid>/status` (benchmarks).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}
