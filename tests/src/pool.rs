//! The operator pool end to end: check-ins over gossip reach every node's `/operator`, the
//! telemetry page renders them in a real browser (headless Chromium), and the gRPC service
//! answers a real tonic client and refuses forged, replayed and stale check-ins without
//! changing anything.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use avs_consensus::signing::network_digest;
use avs_node::pool::checkin::{Checkin, sign};
use avs_proto::v1 as pb;
use avs_proto::v1::node_service_client::NodeServiceClient;
use serde_json::Value;
use tonic::Code;

use super::*;

const POOL_FILL: Duration = Duration::from_secs(60);
const FINALITY: Duration = Duration::from_secs(90);

fn addresses(cluster: &Cluster) -> BTreeSet<String> {
    cluster
        .nodes
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(n.dir.join("keys/operator.json")).unwrap();
            let public: Value = serde_json::from_str(&text).unwrap();
            public["address"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn operators(node: &NodeProcess) -> anyhow::Result<Vec<Value>> {
    let mut response = agent().get(&node.url("/operator")).call()?;
    let body: Value = response.body_mut().read_json()?;
    body["data"].as_array().cloned().context("no data array in /operator")
}

fn row_of<'a>(rows: &'a [Value], address: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r["address"] == address)
}

/// Path of a Chromium binary, installing Debian's `chromium` package when it is missing and
/// this process may (root). Serialized: two tests must not run apt at once.
fn chromium() -> anyhow::Result<PathBuf> {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let path = PathBuf::from("/usr/bin/chromium");
    if path.is_file() {
        return Ok(path);
    }
    if !is_root() {
        bail!("/usr/bin/chromium is missing; install it with `apt-get install -y chromium`");
    }
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "chromium"][..]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get {args:?} failed while installing chromium");
        }
    }
    if !path.is_file() {
        bail!("apt-get installed chromium but {} is missing", path.display());
    }
    Ok(path)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The DOM of `url` after headless Chromium loaded it (`--dump-dom`), killed if it hangs.
fn dump_dom(url: &str) -> anyhow::Result<String> {
    let browser = chromium()?;
    let profile = tempfile::Builder::new().prefix("avs-chromium-").tempdir()?;
    let out = tempfile::NamedTempFile::new()?;
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .stdin(Stdio::null())
        .stdout(out.reopen()?)
        .stderr(Stdio::null())
        .spawn()
        .context("starting chromium")?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("chromium exited with {status}");
            }
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("chromium did not finish loading {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(std::fs::read_to_string(out.path())?)
}

#[test]
fn checkins_reach_every_pool_and_the_dashboard_shows_every_operator() {
    let cluster = Cluster::start(&ClusterSpec::default()).unwrap();
    let expected = addresses(&cluster);
    assert_eq!(expected.len(), 4);
    cluster
        .wait_for("every node's pool to list all four operators as Active", POOL_FILL, |c| {
            for node in &c.nodes {
                let rows = operators(node)?;
                let seen: BTreeSet<String> =
                    rows.iter().filter_map(|r| r["address"].as_str().map(str::to_owned)).collect();
                if seen != expected || rows.iter().any(|r| r["status"] != "Active") {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .unwrap();
    // Each operator's own node forwards its check-ins to its peers: the address shown is that
    // connection's (genesis names every operator's peer id), not a relay's peer id.
    cluster
        .wait_for("every row to show its operator's own address", Duration::from_secs(30), |c| {
            for node in &c.nodes {
                for row in operators(node)? {
                    let remote = row["remote_ip"].as_str().unwrap_or_default();
                    if remote != "local" && remote != "127.0.0.1" {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })
        .unwrap();
    for node in &cluster.nodes {
        let rows = operators(node).unwrap();
        assert_eq!(rows.len(), 4, "one row per operator");
        let own = std::fs::read_to_string(node.dir.join("keys/operator.json")).unwrap();
        let own: Value = serde_json::from_str(&own).unwrap();
        for row in &rows {
            assert_eq!(row["voting_power"], 100);
            assert_eq!(row["version"], env!("CARGO_PKG_VERSION"));
            assert!(row["last_seen"].as_str().unwrap().ends_with(" ago"), "{row}");
            // The observed origin, never a claimed one: our own row is local, the others the
            // address of the operator's own node as our transport saw it.
            let remote = row["remote_ip"].as_str().unwrap();
            if row["address"] == own["address"] {
                assert_eq!(remote, "local");
            } else {
                assert_eq!(remote, "127.0.0.1", "{row}");
            }
            assert!(row["checkins"].as_u64().unwrap() >= 1, "{row}");
            assert!(row["uptime_percent"].as_u64().unwrap() <= 100, "{row}");
        }
    }

    // The dashboard, rendered by a real browser: a row per operator with explorer links.
    let dom = dump_dom(&cluster.nodes[0].url("/telemetry")).unwrap();
    assert_eq!(dom.matches("class=\"operator\"").count(), 4, "{dom}");
    for address in &expected {
        assert!(dom.contains(&format!("data-address=\"{address}\"")), "{address} missing: {dom}");
        assert!(dom.contains(&format!("https://etherscan.io/address/{address}")), "{dom}");
        assert!(dom.contains(&format!("https://app.eigenlayer.xyz/operator/{address}")), "{dom}");
    }
    assert!(dom.contains("id=\"finalized\""), "{dom}");
    // The progress charts (inline SVG) and the uptime columns, as the browser built them.
    assert!(dom.contains("id=\"height-chart\"") && dom.contains("id=\"latency-chart\""), "{dom}");
    assert!(dom.contains("<th>Uptime</th>") && dom.contains("<th>Missed check-ins</th>"), "{dom}");
}

struct Signer {
    key: avs_consensus::bls::SecretKey,
    address: [u8; 20],
}

fn signer(node: &NodeProcess) -> Signer {
    let keys = avs_node::keys::load(&node.dir.join("keys"), &crate::unlock(&node.dir)).unwrap();
    Signer { key: keys.bls, address: keys.address }
}

fn request(
    key: &avs_consensus::bls::SecretKey,
    address: [u8; 20],
    digest: [u8; 4],
    ts: u64,
    height: u64,
) -> pb::CheckinRequest {
    let checkin = Checkin {
        address,
        version: avs_consensus::types::byte_list(b"test-client").unwrap(),
        metrics_port: 1234,
        finalized_height: height,
        events_seen: 1,
        is_aggregator: false,
        timestamp_ms: ts,
    };
    avs_node::grpc::signed_to_proto(&sign(checkin, key, digest).unwrap())
}

fn now_ms() -> u64 {
    avs_node::node::now_ms()
}

#[test]
fn the_grpc_service_answers_a_tonic_client_and_refuses_bad_checkins() {
    let cluster = Cluster::start(&ClusterSpec::default()).unwrap();
    let genesis = avs_node::genesis::GenesisFile::load(&cluster.dir().join("genesis.json"))
        .unwrap()
        .to_config()
        .unwrap();
    let digest = network_digest(&genesis).unwrap();
    let target = &cluster.nodes[0];
    let subject = signer(&cluster.nodes[1]);
    let other = signer(&cluster.nodes[2]);
    let subject_hex = format!("0x{}", hex_encode(&subject.address));
    cluster
        .wait_for("node0's pool to hold node1's row", POOL_FILL, |c| {
            Ok(row_of(&operators(&c.nodes[0])?, &subject_hex).is_some())
        })
        .unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let url = format!("http://127.0.0.1:{}", target.grpc_port);
        let mut client = NodeServiceClient::connect(url).await.unwrap();

        let status = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
        assert_eq!(status.finalized_root.len(), 32);
        let listed = client.list_operators(pb::ListOperatorsRequest {}).await.unwrap();
        let listed = listed.into_inner().operators;
        assert!(listed.iter().any(|r| r.address == subject.address), "{listed:?}");
        assert!(
            listed.iter().all(|r| r.voting_power == 100 && r.status != "Offline"),
            "{listed:?}"
        );
        assert!(
            listed.iter().all(|r| r.uptime_percent > 0 && r.uptime_percent <= 100),
            "{listed:?}"
        );

        // A valid check-in from outside the mesh, dated a few seconds ahead so that node1's own
        // gossip check-ins (older) cannot replace it while the refusals below are checked. The
        // forgeries are dated one minimum gap (2.5 s) later, so they are judged by their
        // signature and not refused as too soon; both stay inside the 10 s future limit.
        let ts = now_ms() + 5_000;
        let later = ts + avs_node::pool::MIN_CHECKIN_GAP_MS;
        let valid = request(&subject.key, subject.address, digest, ts, 777_000);
        let reply = client.checkin(valid.clone()).await.unwrap().into_inner();
        assert!(reply.recorded_at_ms > 0);
        let recorded = row_of(&operators(target).unwrap(), &subject_hex).cloned().unwrap();
        assert_eq!(recorded["block_number"], 777_000);
        assert_eq!(recorded["remote_ip"], "127.0.0.1", "the observed TCP peer");
        assert_eq!(recorded["version"], "test-client");

        let refusals = [
            // Replayed: the same message again.
            ("replayed", valid.clone(), Code::AlreadyExists),
            // Forged: node2's key signing for node1's address.
            (
                "forged",
                request(&other.key, subject.address, digest, later, 777_001),
                Code::Unauthenticated,
            ),
            // Another network's signature.
            (
                "other network",
                request(&subject.key, subject.address, [0; 4], later, 777_002),
                Code::Unauthenticated,
            ),
            // Stale, and too far in the future.
            (
                "stale",
                request(&subject.key, subject.address, digest, now_ms() - 120_000, 777_003),
                Code::FailedPrecondition,
            ),
            (
                "future",
                request(&subject.key, subject.address, digest, now_ms() + 600_000, 777_004),
                Code::FailedPrecondition,
            ),
            // Not an operator of the set.
            (
                "outsider",
                request(&subject.key, [0x42; 20], digest, later, 777_005),
                Code::PermissionDenied,
            ),
        ];
        for (what, bad, code) in refusals {
            let err = client.checkin(bad).await.expect_err(what);
            assert_eq!(err.code(), code, "{what}: {err:?}");
            let rows = operators(target).unwrap();
            assert!(row_of(&rows, "0x4242424242424242424242424242424242424242").is_none());
            let now = row_of(&rows, &subject_hex).cloned().unwrap();
            if now["checkin_timestamp_ms"] == recorded["checkin_timestamp_ms"] {
                // Still our valid check-in's row: exactly as it was.
                assert_eq!(stored_fields(&now), stored_fields(&recorded), "{what} changed the row");
            } else {
                // Only a newer genuine check-in of node1 may have replaced it, never ours.
                assert!(now["checkin_timestamp_ms"].as_u64() > Some(ts), "{what}: {now}");
                assert_ne!(now["version"], "test-client", "{what}: {now}");
            }
        }
        // Malformed input is refused before any verification.
        let mut short = valid.clone();
        short.checkin.as_mut().unwrap().address.pop();
        assert_eq!(client.checkin(short).await.unwrap_err().code(), Code::InvalidArgument);
        let mut no_sig = valid.clone();
        no_sig.signature.truncate(10);
        assert_eq!(client.checkin(no_sig).await.unwrap_err().code(), Code::InvalidArgument);

        // The finalized-block stream delivers at least one block, with its certificate.
        let mut stream = client
            .subscribe_finalized(pb::SubscribeFinalizedRequest { from_height: None })
            .await
            .unwrap()
            .into_inner();
        let block = tokio::time::timeout(FINALITY, stream.message())
            .await
            .expect("a block is finalized within the bound")
            .unwrap()
            .expect("the stream stays open");
        assert!(block.height > status.finalized_height, "{block:?}");
        assert_eq!(block.root.len(), 32);
        assert!(!block.block_ssz.is_empty() && !block.certificate_ssz.is_empty());
        // History from the store, from height 1, in height order.
        let mut history = client
            .subscribe_finalized(pb::SubscribeFinalizedRequest { from_height: Some(1) })
            .await
            .unwrap()
            .into_inner();
        let first =
            tokio::time::timeout(FINALITY, history.message()).await.unwrap().unwrap().unwrap();
        let second =
            tokio::time::timeout(FINALITY, history.message()).await.unwrap().unwrap().unwrap();
        assert_eq!((first.height, second.height), (1, 2));
        assert_eq!(second.parent_root, first.root);
    });
}

/// A row without the fields derived from the clock at request time.
fn stored_fields(row: &Value) -> Value {
    let mut row = row.clone();
    if let Some(map) = row.as_object_mut() {
        map.remove("last_seen");
        map.remove("status");
    }
    row
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
