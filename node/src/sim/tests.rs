//! Scenarios on the production path. Each run's invariants are checked by `check::Checker`;
//! liveness is asserted as heights reached in simulated time (never wall-clock time).
//!
//! `SIM_SEEDS=n` sets the number of random seeds of `random_faults_*` (200 by default, in four
//! shards that run in parallel).

use avs_consensus::testkit::Change;
use avs_consensus::types::Height;

use super::{Byzantine, Fault, Scenario, Sim};

fn run(scenario: Scenario) -> Sim {
    let mut sim = Sim::new(scenario);
    sim.run();
    sim.checker.assert_clean();
    sim
}

fn min_height(sim: &Sim, nodes: impl IntoIterator<Item = usize>) -> u64 {
    nodes.into_iter().filter_map(|i| sim.finalized_height(i)).min().unwrap_or(0)
}

/// A quiet network makes one block per slot (the leader's pace), never more, and never
/// nullifies.
#[test]
fn quiet_network_finalizes_every_slot_without_nullifying() {
    for seed in 0..5 {
        let sim = run(Scenario::quiet(4, seed));
        // 20 s of 1 s slots: the first view starts at genesis, one block per slot after.
        let low = min_height(&sim, 0..4);
        let high = (0..4).filter_map(|i| sim.finalized_height(i)).max().unwrap_or(0);
        assert!(low >= 18, "seed {seed}: only {low} heights in 20 slots");
        assert!(high <= 21, "seed {seed}: {high} heights in 20 slots: faster than the interval");
        for i in 0..4 {
            assert_eq!(sim.nullified_views(i), 0, "seed {seed}: node {i} nullified a view");
            // The status an operator reads: no nullified view, and a finality latency from the
            // node's NOTARIZE to the finalization that is a few link delays (5-40 ms each),
            // not a slot (it would be one if measured from entering the view).
            let status = sim.status(i).unwrap();
            assert_eq!(status.nullified_views, 0);
            let latency = status.last_finality_latency_ms.expect("a measured finality");
            assert!((1..500).contains(&latency), "seed {seed}: node {i}: {latency} ms");
        }
        assert_eq!(sim.stats.shed, 0);
    }
}

/// Killing the only aggregator (no restart) loses at most the views in flight: every node
/// acts on the quorums in its own pool.
#[test]
fn finality_goes_on_after_the_only_aggregator_dies() {
    let mut scenario = Scenario::quiet(4, 7);
    scenario.faults = vec![Fault::Crash { node: 0, at_ms: 5_000 }];
    let mut sim = Sim::new(scenario);
    sim.run_until(5_000);
    let at_crash = min_height(&sim, 1..4);
    sim.run();
    sim.checker.assert_clean();
    let after = min_height(&sim, 1..4);
    assert!(
        after >= at_crash + 10,
        "from {at_crash} only to {after} in 15 slots without the aggregator"
    );
}

/// An aggregator that keeps its certificates to itself changes nothing for the others.
#[test]
fn a_withholding_aggregator_does_not_stall_finality() {
    let mut scenario = Scenario::quiet(4, 11);
    scenario.byzantine = vec![(0, Byzantine::WithholdCertificates)];
    let sim = run(scenario);
    assert!(min_height(&sim, 1..4) >= 15);
}

/// A leader that withholds its proposals costs its own views only.
#[test]
fn a_withholding_leader_costs_only_its_views() {
    let mut scenario = Scenario::quiet(4, 12);
    scenario.byzantine = vec![(2, Byzantine::WithholdProposals)];
    scenario.run_ms = 30_000;
    let sim = run(scenario);
    let low = min_height(&sim, [0, 1, 3]);
    assert!(low >= 12, "only {low} heights with one silent leader of four");
}

/// Operators join, change power and leave at runtime; each change ends an epoch and the
/// network goes on under the new set, the joiner included.
#[test]
fn operator_set_changes_at_runtime() {
    let mut scenario = Scenario::quiet(4, 21);
    scenario.joiners = vec![4];
    scenario.membership = vec![
        (Height::new(3), Change::Add { id: 4, power: 1 }),
        (Height::new(8), Change::SetPower { id: 2, power: 3 }),
        (Height::new(13), Change::Remove { id: 1 }),
    ];
    scenario.run_ms = 40_000;
    let sim = run(scenario);
    let low = min_height(&sim, [0, 2, 3, 4]);
    assert!(low >= 25, "only {low} heights over three operator-set changes");
    // The joiner follows from genesis and ends at the same head as the others.
    let (joiner, first) = (sim.finalized_height(4).unwrap(), sim.finalized_height(0).unwrap());
    assert!(joiner.abs_diff(first) <= 1, "the joiner is at {joiner}, node 0 at {first}");
}

/// A follower killed and restarted ten times in a row never contradicts its own votes (the
/// checker sees every vote it ever sent) and catches up after each restart.
#[test]
fn a_follower_restarted_ten_times_keeps_its_word_and_catches_up() {
    let mut scenario = Scenario::quiet(4, 31);
    let mut faults = Vec::new();
    for k in 0..10u64 {
        // Down for a varying part of a slot, so it dies at every phase of a view.
        faults.push(Fault::Crash { node: 3, at_ms: 3_000 + k * 2_300 });
        faults.push(Fault::Restart { node: 3, at_ms: 3_000 + k * 2_300 + 150 + k * 170 });
    }
    scenario.faults = faults;
    scenario.run_ms = 40_000;
    let sim = run(scenario);
    let others = min_height(&sim, 0..3);
    let restarted = sim.finalized_height(3).unwrap_or(0);
    assert!(others >= 30);
    assert!(restarted + 2 >= others, "restarted node at {restarted}, the others at {others}");
}

/// A node down for more than 200 heights catches up by range sync and votes again.
#[test]
fn a_node_down_for_200_heights_catches_up() {
    let mut scenario = Scenario::quiet(4, 41);
    scenario.slot_ms = 500;
    scenario.faults =
        vec![Fault::Crash { node: 2, at_ms: 2_000 }, Fault::Restart { node: 2, at_ms: 172_000 }];
    scenario.run_ms = 185_000;
    let mut sim = Sim::new(scenario);
    sim.run_until(172_000);
    let gap = min_height(&sim, [0, 1, 3]) - sim.checker.height_of(2);
    assert!(gap >= 200, "the node was only {gap} heights behind");
    sim.run();
    sim.checker.assert_clean();
    let others = min_height(&sim, [0, 1, 3]);
    let back = sim.finalized_height(2).unwrap_or(0);
    assert!(back + 3 >= others, "after 13 s it is at {back}, the others at {others}");
}

/// 16 and 32 nodes with partial connectivity, latency up to 80 ms and clock skew.
#[test]
fn sixteen_and_thirty_two_nodes_finalize_every_height() {
    for (n, degree) in [(16, 6), (32, 8)] {
        let mut scenario = Scenario::quiet(n, 51 + n as u64);
        scenario.degree = degree;
        scenario.latency_ms = (10, 80);
        scenario.skew_ms = 50;
        scenario.run_ms = 15_000;
        let sim = run(scenario);
        let low = min_height(&sim, 0..n);
        let nullified: u64 = (0..n).map(|i| sim.nullified_views(i)).max().unwrap_or(0);
        assert!(
            low >= 12,
            "{n} nodes: only {low} heights in 15 slots; nullified views {nullified}; {:?}",
            sim.stats
        );
    }
}

/// Busy machines: validation takes 8 ms a message at 16 nodes (queues fill, messages are
/// shed), and every height is still finalized by every node.
#[test]
fn busy_nodes_shed_and_still_finalize() {
    let mut scenario = Scenario::quiet(16, 61);
    scenario.validation_ms = 8;
    scenario.latency_ms = (10, 60);
    scenario.run_ms = 20_000;
    let sim = run(scenario);
    let low = min_height(&sim, 0..16);
    assert!(low >= 10, "only {low} heights on busy nodes");
}

/// 10% of all deliveries lost: what a view misses is pulled.
#[test]
fn lossy_links_are_repaired_by_pulls() {
    let mut scenario = Scenario::quiet(7, 71);
    scenario.loss_per_mille = 100;
    scenario.run_ms = 30_000;
    let sim = run(scenario);
    let low = min_height(&sim, 0..7);
    assert!(low >= 15, "only {low} heights with 10% loss");
}

/// A third of all deliveries lost on four nodes (nothing is ever re-sent): the repair paths
/// (pulls of a stalled view's votes and certificates, status probes, certificates carried in
/// proposals) keep the chain going.
#[test]
fn a_third_of_all_messages_lost_on_four_nodes() {
    let mut scenario = Scenario::quiet(4, 72);
    scenario.loss_per_mille = 330;
    scenario.run_ms = 60_000;
    let sim = run(scenario);
    let low = min_height(&sim, 0..4);
    assert!(low >= 10, "only {low} heights with 33% loss");
}

/// Random networks and faults, seeds `shard, shard + 4, ...`. Safety always; liveness once
/// the faults are over.
fn random_faults(shard: u64) {
    let seeds: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    for seed in (shard..seeds).step_by(4) {
        let scenario = random_scenario(seed);
        let settle = scenario.run_ms - 10_000;
        let mut sim = Sim::new(scenario.clone());
        sim.run_until(settle);
        let before = min_height(&sim, honest_up(&sim, &scenario));
        sim.run();
        if !sim.checker.violations.is_empty() {
            panic!("seed {seed} ({scenario:?}):\n{}", sim.checker.violations.join("\n"));
        }
        let after = min_height(&sim, honest_up(&sim, &scenario));
        assert!(
            after >= before + 4,
            "seed {seed}: from {before} only to {after} in 10 fault-free slots ({scenario:?})"
        );
    }
}

#[test]
fn random_faults_shard_0() {
    random_faults(0);
}

#[test]
fn random_faults_shard_1() {
    random_faults(1);
}

#[test]
fn random_faults_shard_2() {
    random_faults(2);
}

#[test]
fn random_faults_shard_3() {
    random_faults(3);
}

fn honest_up(sim: &Sim, scenario: &Scenario) -> Vec<usize> {
    (0..sim.node_count())
        .filter(|i| sim.is_up(*i) && !scenario.byzantine.iter().any(|(b, _)| b == i))
        .collect()
}

/// 4 to 7 equal operators; up to f of them byzantine or crashing (crashes end in a restart
/// before the last 10 s); one aggregator that may be among them; some loss, latency, skew.
fn random_scenario(seed: u64) -> Scenario {
    let mut rng = super::Rng::new(seed.wrapping_mul(0x5851_f42d_4c95_7f2d) ^ 0xa5);
    let n = rng.range(4, 7) as usize;
    let f = (n - 1) / 3;
    let mut scenario = Scenario::quiet(n, seed);
    scenario.run_ms = 20_000;
    scenario.latency_ms = (rng.range(1, 20), rng.range(20, 150));
    scenario.loss_per_mille = rng.range(0, 50);
    scenario.skew_ms = rng.range(0, 100);
    scenario.aggregators = vec![rng.range(0, n as u64 - 1) as usize];
    let mut faulty: Vec<usize> = Vec::new();
    while faulty.len() < f {
        let i = rng.range(0, n as u64 - 1) as usize;
        if !faulty.contains(&i) {
            faulty.push(i);
        }
    }
    for &i in &faulty {
        match rng.range(0, 2) {
            0 => scenario.byzantine.push((i, Byzantine::WithholdProposals)),
            1 => scenario.byzantine.push((i, Byzantine::WithholdCertificates)),
            _ => {
                let mut t = rng.range(500, 4_000);
                while t + 3_000 < 10_000 {
                    let down = rng.range(100, 3_000);
                    scenario.faults.push(Fault::Crash { node: i, at_ms: t });
                    scenario.faults.push(Fault::Restart { node: i, at_ms: t + down });
                    t += down + rng.range(500, 4_000);
                }
            }
        }
    }
    // The aggregator may also crash once (it is counted among the faulty if it does).
    let aggregator = scenario.aggregators[0];
    if faulty.contains(&aggregator) && rng.chance(500) {
        scenario.faults.push(Fault::Crash { node: aggregator, at_ms: rng.range(1_000, 7_000) });
        scenario.faults.push(Fault::Restart { node: aggregator, at_ms: 9_500 });
    }
    scenario
}
