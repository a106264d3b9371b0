//! The simulated-peer harness ([`crate::peers`]) against a real node: what the scaling rows of
//! the README measure is only as good as the harness's faithfulness to the protocol, so this
//! checks it plays by the node's rules. The node finalizes with operators it knows only through
//! the harness, from votes alone (no certificate is handed to it), in views led by the harness
//! and by itself, and judges none of the harness's messages invalid.

use super::*;
use crate::peers::{PeersSpec, SimulatedNetwork};

#[test]
fn a_real_node_finalizes_with_simulated_operators_from_their_votes() {
    let net = SimulatedNetwork::start(&PeersSpec {
        operators: 7,
        peers: 3,
        slot_ms: 500,
        certificates: false,
        node_args: Vec::new(),
    })
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let reached = loop {
        let report = net.report();
        assert!(
            report.error.is_none(),
            "the harness stopped: {:?}\n{}",
            report.error,
            net.node.log()
        );
        let finalized = net.node.status().map(|s| s.finalized_height).unwrap_or(0);
        let node_led = report.node_proposed.iter().any(|&h| h <= finalized);
        if finalized >= 12 && node_led {
            break finalized;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node finalized {finalized} heights, node-led heights {:?}; harness: {report:?}\n{}",
            report.node_proposed,
            net.node.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = net.report();
    assert!(report.nullified_views.is_empty(), "the node's own views were nullified: {report:?}");
    assert_eq!(report.publish_failures, 0, "{report:?}");
    assert!(reached <= report.finalized_height, "the node never runs ahead of the operators");
    let rejected =
        net.node.metric_sum("avs_p2p_gossip_messages_total", "outcome=\"Rejected\"").unwrap();
    assert_eq!(rejected, 0.0, "the node judged a harness message invalid\n{}", net.node.log());
}
