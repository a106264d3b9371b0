//! VotingPowerSync (task 10001) with real node processes: on the embedded stake schedule (a
//! power change and a registration are synced and the next epoch runs on them; attesters whose
//! source disagrees refuse, and a third of the power refusing keeps the set), and on two local
//! EVM chains (anvil from the npm registry) read through alloy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use avs_internal_tasks::embedded::{ScheduledOperator, StakeSchedule, Step};
use avs_node::keys::OperatorPublic;

use super::*;

const LIMIT: Duration = Duration::from_secs(120);
const SLOT_MS: u64 = 1000;
/// The shortest sync interval the node accepts.
const SYNC_INTERVAL_MS: u64 = 10_000;
/// L1 block (one per second from genesis) at which the scripted changes happen: after the
/// first sync check (genesis + 10 s sees block 8 with two confirmations), before the second.
const CHANGE_BLOCK: u64 = 12;

/// Keys for `total` operators, a genesis holding the first `members` of them (power 100 each)
/// and the genesis time.
fn keys_and_genesis(
    dir: &Path,
    members: usize,
    total: usize,
) -> anyhow::Result<(Vec<OperatorPublic>, PathBuf, u64)> {
    let publics =
        (0..total).map(|i| node_with_keys(dir, i, false)).collect::<anyhow::Result<_>>()?;
    let (genesis, genesis_time) = cli_genesis(dir, "avs-tasks-test", SLOT_MS, 3, 0..members, &[])?;
    Ok((publics, genesis, genesis_time))
}

/// Creates one node per key set in `dir`, all dialing each other; node 0 aggregates;
/// `extra(i)` are node i's further arguments. Nodes in `deferred` are not started yet.
fn start_nodes(
    dir: tempfile::TempDir,
    publics: &[OperatorPublic],
    genesis: &Path,
    deferred: &[usize],
    extra: impl Fn(usize) -> Vec<String>,
) -> anyhow::Result<Cluster> {
    let ports = avs_node::devnet::node_ports(publics.len())?;
    let mut nodes = Vec::new();
    let peer_ids: Vec<String> = publics.iter().map(|p| p.peer_id.clone()).collect();
    for (i, &node_ports) in ports.iter().enumerate() {
        let node_dir = dir.path().join(format!("node{i}"));
        let mut args = run_args(&node_dir, genesis, &ports, &peer_ids, i, None);
        if i == 0 {
            args.push("--is-aggregator".into());
        }
        args.extend(extra(i));
        let mut node = NodeProcess::new(i, node_dir, node_ports, args);
        if !deferred.contains(&i) {
            node.start()?;
        }
        nodes.push(node);
    }
    Ok(Cluster { nodes, _dir: dir })
}

fn scheduled(public: &OperatorPublic, l1: Vec<Step>, l2: Vec<Step>) -> ScheduledOperator {
    ScheduledOperator {
        address: public.address.clone(),
        bls_pubkey: public.bls_pubkey.clone(),
        pop: public.pop.clone(),
        l1,
        l2,
    }
}

fn steps(power: u64, change: Option<(u64, u64)>) -> Vec<Step> {
    let mut steps = vec![Step { from_block: 0, power }];
    if let Some((from_block, power)) = change {
        steps.push(Step { from_block, power });
    }
    steps
}

fn sync_args(schedule: &Path, performs: bool) -> Vec<String> {
    let mut args = vec![
        "--stake-schedule".into(),
        schedule.display().to_string(),
        "--sync-interval".into(),
        SYNC_INTERVAL_MS.to_string(),
    ];
    if performs {
        args.push("--internal-tasks".into());
    }
    args
}

/// `/lean/v0/status` as JSON (the harness's `Status` does not carry `operator_index`).
fn raw_status(node: &NodeProcess) -> anyhow::Result<serde_json::Value> {
    let mut response = agent().get(&node.url("/lean/v0/status")).call()?;
    Ok(response.body_mut().read_json()?)
}

/// The value of a labelled sample of task 10001 (`label` like `verdict="valid"`), 0 if absent.
fn task_metric(node: &NodeProcess, name: &str, label: &str) -> anyhow::Result<u64> {
    let mut response = agent().get(&node.url("/metrics")).call()?;
    let text = response.body_mut().read_to_string()?;
    Ok(text
        .lines()
        .filter(|l| l.split('{').next() == Some(name))
        .filter(|l| l.contains("task_id=\"10001\"") && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum())
}

fn epoch_of(node: &NodeProcess) -> anyhow::Result<u64> {
    Ok(node.status()?.epoch)
}

/// Every one of `nodes` reports an epoch of at least `epoch`.
fn all_reached_epoch(nodes: &[NodeProcess], epoch: u64) -> anyhow::Result<bool> {
    Ok(nodes.iter().map(epoch_of).collect::<anyhow::Result<Vec<_>>>()?.iter().all(|e| *e >= epoch))
}

/// After a change to node1 (500) and node4's registration (100), the set is
/// {100, 500, 100, 100, 100}: total 900, a quorum needs more than 600. Nodes 0, 1 and 4 hold
/// 700, so with nodes 2 and 3 killed the chain still finalizes, which it could neither with the
/// genesis weights (200 of 400) nor without node4's votes (600 of 900).
#[test]
fn a_scripted_stake_change_and_a_registration_end_the_epoch_and_the_next_one_runs_on_them() {
    let dir = tempfile::Builder::new().prefix("avs-tasks-").tempdir().unwrap();
    let (publics, genesis, genesis_time) = keys_and_genesis(dir.path(), 4, 5).unwrap();
    let mut operators: Vec<ScheduledOperator> = (0..4)
        .map(|i| {
            let change = (i == 1).then_some((CHANGE_BLOCK, 500));
            scheduled(&publics[i], steps(100, change), steps(100, None))
        })
        .collect();
    operators.push(scheduled(
        &publics[4],
        vec![Step { from_block: CHANGE_BLOCK, power: 100 }],
        Vec::new(),
    ));
    let schedule = dir.path().join("stake-schedule.json");
    StakeSchedule {
        start_ms: genesis_time * 1000,
        l1_block_ms: 1000,
        l2_block_ms: 1000,
        operators,
    }
    .write(&schedule)
    .unwrap();
    // node4 starts once the others run epoch 1, as a newly registered operator would: it joins
    // the mesh when it is in the set, and catches up through req/resp.
    let mut cluster =
        start_nodes(dir, &publics, &genesis, &[4], |_| sync_args(&schedule, true)).unwrap();
    cluster
        .wait_for("nodes 0-3 to enter epoch 1", LIMIT, |c| all_reached_epoch(&c.nodes[..4], 1))
        .unwrap();
    cluster.nodes[4].start().unwrap();
    cluster
        .wait_for("node4, started after its registration, to catch up into epoch 1", LIMIT, |c| {
            all_reached_epoch(&c.nodes, 1)
        })
        .unwrap();
    let s = raw_status(&cluster.nodes[4]).unwrap();
    assert_eq!(s["operator_index"].as_u64(), Some(4), "node4 is appended to the set: {s}");

    let performed: u64 = cluster
        .nodes
        .iter()
        .map(|n| task_metric(n, "avs_node_task_performed_total", "").unwrap())
        .sum();
    assert!(performed >= 1, "some leader proposed the update");
    // A notarization needs more than 2/3 of the power voting NOTARIZE, and every such vote but
    // the performer's own follows a valid verdict; a node that got the certificate before it
    // judged the block may never have judged it, so a quorum is what must show, not all four.
    let vouched = cluster.nodes[..4]
        .iter()
        .filter(|node| {
            let valid =
                task_metric(node, "avs_node_task_validations_total", "verdict=\"valid\"").unwrap();
            let performed = task_metric(node, "avs_node_task_performed_total", "").unwrap();
            valid >= 1 || performed >= 1
        })
        .count();
    assert!(vouched >= 3, "only {vouched} of 4 genesis nodes attested or performed the update");
    for node in &cluster.nodes[..4] {
        assert!(
            task_metric(node, "avs_node_task_applied_total", "").unwrap() >= 1,
            "node{} saw the update final",
            node.index
        );
        assert!(node.log().contains("->500"), "node{} logged the change", node.index);
    }

    cluster.nodes[2].kill_9().unwrap();
    cluster.nodes[3].kill_9().unwrap();
    let before = cluster.nodes[0].status().unwrap().finalized_height;
    cluster
        .wait_for("finality with nodes 0, 1 and 4 (700 of 900) after killing 2 and 3", LIMIT, |c| {
            Ok([0, 1, 4]
                .iter()
                .all(|&i| c.nodes[i].status().is_ok_and(|s| s.finalized_height >= before + 3)))
        })
        .unwrap();
    let roots: Vec<(u64, String)> = [0, 1, 4]
        .iter()
        .filter_map(|&i| cluster.nodes[i].status().ok())
        .map(|s| (s.finalized_height, s.node.finalized_root))
        .collect();
    for pair in roots.windows(2) {
        if pair[0].0 == pair[1].0 {
            assert_eq!(pair[0].1, pair[1].1, "two roots at one height");
        }
    }
}

/// Nodes 2 and 3 (half the power) read a schedule without the change: they refuse the update
/// (it differs from their source), so it never gathers a quorum, while other blocks still do.
#[test]
fn attesters_whose_source_disagrees_refuse_and_a_third_of_the_power_keeps_the_set() {
    let dir = tempfile::Builder::new().prefix("avs-tasks-").tempdir().unwrap();
    let (publics, genesis, genesis_time) = keys_and_genesis(dir.path(), 4, 4).unwrap();
    let write = |name: &str, with_change: bool| {
        let operators = (0..4)
            .map(|i| {
                let change = (with_change && i == 1).then_some((CHANGE_BLOCK, 500));
                scheduled(&publics[i], steps(100, change), steps(100, None))
            })
            .collect();
        let path = dir.path().join(name);
        StakeSchedule {
            start_ms: genesis_time * 1000,
            l1_block_ms: 1000,
            l2_block_ms: 1000,
            operators,
        }
        .write(&path)
        .unwrap();
        path
    };
    let changed = write("changed.json", true);
    let unchanged = write("unchanged.json", false);
    let cluster = start_nodes(dir, &publics, &genesis, &[], |i| {
        if i < 2 { sync_args(&changed, true) } else { sync_args(&unchanged, true) }
    })
    .unwrap();

    cluster
        .wait_for("nodes 2 and 3 to refuse the update", LIMIT, |c| {
            Ok(c.nodes[2..].iter().all(|n| {
                task_metric(n, "avs_node_task_validations_total", "verdict=\"invalid\"")
                    .is_ok_and(|v| v >= 1)
            }))
        })
        .unwrap();
    for node in &cluster.nodes[2..] {
        assert!(
            node.log().contains("differs from my sources"),
            "node{}: refusal reason",
            node.index
        );
    }
    let refused_at = cluster.min_finalized().unwrap_or(0);
    cluster
        .wait_for("finality to go on with other blocks", LIMIT, |c| {
            Ok(c.min_finalized().is_some_and(|h| h >= refused_at + 5))
        })
        .unwrap();
    for node in &cluster.nodes {
        assert_eq!(epoch_of(node).unwrap(), 0, "node{}: the set must not change", node.index);
        assert_eq!(
            task_metric(node, "avs_node_task_applied_total", "").unwrap(),
            0,
            "node{}: an update without a quorum was finalized",
            node.index
        );
    }
    let performed: u64 = cluster.nodes[..2]
        .iter()
        .map(|n| task_metric(n, "avs_node_task_performed_total", "").unwrap())
        .sum();
    assert!(performed >= 1, "nodes 0 and 1 proposed the update");
}

// ----- real chains: two anvil nodes, the registry contracts, alloy -----

mod chain {
    use super::*;
    use alloy::primitives::{Address, Bytes};
    use alloy::providers::DynProvider;
    use avs_internal_tasks::rpc::{PowerRegistry, StakeRegistry};

    pub(super) use crate::evm::{Anvil, anvil, provider};

    fn bytes(hex_text: &str) -> anyhow::Result<Bytes> {
        Ok(hex_text.parse::<Bytes>()?)
    }

    pub(super) fn address(hex_text: &str) -> anyhow::Result<Address> {
        Ok(hex_text.parse()?)
    }

    /// Deploys both registries from the committed artifacts and registers `operators` with
    /// power 100 on L1 and on L2.
    pub(super) async fn deploy(
        l1: &(DynProvider, Address),
        l2: &(DynProvider, Address),
        operators: &[OperatorPublic],
    ) -> anyhow::Result<(Address, Address)> {
        let stake = StakeRegistry::deploy_builder(&l1.0).from(l1.1).deploy().await?;
        let power = PowerRegistry::deploy_builder(&l2.0).from(l2.1).deploy().await?;
        let stake_registry = StakeRegistry::new(stake, &l1.0);
        let power_registry = PowerRegistry::new(power, &l2.0);
        for op in operators {
            let who = address(&op.address)?;
            stake_registry
                .register(who, bytes(&op.bls_pubkey)?, bytes(&op.pop)?, 100)
                .from(l1.1)
                .send()
                .await?
                .get_receipt()
                .await?;
            power_registry.setPower(who, 100).from(l2.1).send().await?.get_receipt().await?;
        }
        Ok((stake, power))
    }

    pub(super) async fn set_stake(
        l1: &(DynProvider, Address),
        registry: Address,
        operator: Address,
        power: u64,
    ) -> anyhow::Result<()> {
        StakeRegistry::new(registry, &l1.0)
            .setPower(operator, power)
            .from(l1.1)
            .send()
            .await?
            .get_receipt()
            .await?;
        Ok(())
    }
}

/// Two local EVM chains (anvil), the registry contracts deployed from the committed
/// artifacts, a stake change sent as a transaction: the nodes read it over JSON-RPC with
/// alloy, certify it, and the next epoch runs on it.
#[test]
fn a_stake_change_on_a_real_evm_chain_is_picked_up_through_json_rpc() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::Builder::new().prefix("avs-tasks-rpc-").tempdir().unwrap();
    let bin = chain::anvil().unwrap();
    let l1_node = chain::Anvil::start(&bin, 31337, Some(1), &dir.path().join("l1.log")).unwrap();
    let l2_node = chain::Anvil::start(&bin, 31338, Some(1), &dir.path().join("l2.log")).unwrap();
    let (publics, genesis, _) = keys_and_genesis(dir.path(), 4, 4).unwrap();
    let (l1, l2, stake, power) = runtime
        .block_on(async {
            let l1 = chain::provider(&l1_node.url).await?;
            let l2 = chain::provider(&l2_node.url).await?;
            let (stake, power) = chain::deploy(&l1, &l2, &publics).await?;
            anyhow::Ok((l1, l2, stake, power))
        })
        .unwrap();
    let (l1_url, l2_url) = (l1_node.url.clone(), l2_node.url.clone());
    // The registrations span several blocks: let them all be buried under the confirmation
    // depth (2 blocks at one per second) before any node reads L1, or a performer may
    // legitimately propose the half-registered set it sees at an earlier block.
    std::thread::sleep(Duration::from_secs(4));
    let cluster = start_nodes(dir, &publics, &genesis, &[], |_| {
        vec![
            "--internal-tasks".into(),
            "--sync-interval".into(),
            SYNC_INTERVAL_MS.to_string(),
            "--l1-rpc".into(),
            l1_url.clone(),
            "--l2-rpc".into(),
            l2_url.clone(),
            "--l1-registry".into(),
            stake.to_string(),
            "--l2-registry".into(),
            power.to_string(),
            "--confirmations".into(),
            "2".into(),
        ]
    })
    .unwrap();
    cluster
        .wait_for("finality before the stake change", LIMIT, |c| {
            Ok(c.min_finalized().is_some_and(|h| h >= 2))
        })
        .unwrap();
    assert!(cluster.nodes.iter().all(|n| epoch_of(n).unwrap() == 0));
    let node1 = chain::address(&publics[1].address).unwrap();
    runtime.block_on(chain::set_stake(&l1, stake, node1, 400)).unwrap();
    drop(l2);
    cluster
        .wait_for("every node to enter epoch 1 after the on-chain change", LIMIT, |c| {
            all_reached_epoch(&c.nodes, 1)
        })
        .unwrap_or_else(|e| {
            // The source's own log lines say why (RPC errors, NotYet reasons) better than the tail.
            let tasks: Vec<String> = cluster.nodes[0]
                .log()
                .lines()
                .filter(|l| l.contains("avs_node::tasks"))
                .map(str::to_owned)
                .collect();
            panic!("{e}\nnode0's task log:\n{}", tasks.join("\n"))
        });
    for node in &cluster.nodes {
        assert!(node.log().contains("->400"), "node{} applied node1's new stake", node.index);
        assert!(
            task_metric(node, "avs_node_task_applied_total", "").unwrap() >= 1,
            "node{} saw the update final",
            node.index
        );
    }
}
