//! The node's own metrics, prefixed `avs_node_`, in the one registry the whole process shares
//! (p2p and libp2p register theirs into it too). `lean_is_aggregator` lives with the
//! aggregator controller.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GossipLabels {
    pub topic: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct NodeMetrics {
    pub finalized_height: Gauge,
    pub view: Gauge,
    pub epoch: Gauge,
    /// Unix seconds of the last certificate seen; with no aggregator on it stops moving.
    pub last_certificate_seconds: Gauge,
    pub votes_persisted: Counter,
    pub evidence: Counter,
    /// Verified messages dropped because the engine's queue was full.
    pub dropped_checked: Counter,
    pub gossip: Family<GossipLabels, Counter>,
}

impl NodeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let r = registry.sub_registry_with_prefix("avs_node");
        r.register(
            "finalized_height",
            "Height of the last finalized block",
            metrics.finalized_height.clone(),
        );
        r.register("view", "Current view within the epoch", metrics.view.clone());
        r.register("epoch", "Current epoch", metrics.epoch.clone());
        r.register(
            "last_certificate_timestamp_seconds",
            "Unix time of the last certificate this node saw",
            metrics.last_certificate_seconds.clone(),
        );
        r.register(
            "votes_persisted",
            "Own votes written with fsync",
            metrics.votes_persisted.clone(),
        );
        r.register("evidence", "Equivocations observed", metrics.evidence.clone());
        r.register(
            "checked_dropped",
            "Verified gossip dropped because the engine queue was full",
            metrics.dropped_checked.clone(),
        );
        r.register(
            "gossip_validated",
            "Gossip messages by topic and verdict",
            metrics.gossip.clone(),
        );
        metrics
    }

    pub fn gossip_outcome(&self, topic: &str, outcome: avs_p2p::ValidationOutcome) {
        let outcome = match outcome {
            avs_p2p::ValidationOutcome::Accept => "accept",
            avs_p2p::ValidationOutcome::Ignore => "ignore",
            avs_p2p::ValidationOutcome::Reject => "reject",
        };
        self.gossip.get_or_create(&GossipLabels { topic: topic.to_owned(), outcome }).inc();
    }
}
