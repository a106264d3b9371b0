//! The node's own metrics, prefixed `avs_node_`, in the one registry the whole process shares
//! (p2p and libp2p register theirs into it too; gossip verdicts are counted once, by p2p, as
//! `avs_p2p_gossip_messages_total{topic,outcome}`). `lean_is_aggregator` lives with the
//! aggregator controller.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    pub kind: &'static str,
    /// `built` from this node's own pool, or `received`.
    pub origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViewLabels {
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub topic: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug)]
pub struct NodeMetrics {
    pub finalized_height: Gauge,
    pub view: Gauge,
    pub epoch: Gauge,
    /// Unix seconds of the last certificate held.
    pub last_certificate_seconds: Gauge,
    pub votes_persisted: Counter,
    pub evidence: Counter,
    pub certificates: Family<CertificateLabels, Counter>,
    pub views_entered: Family<ViewLabels, Counter>,
    pub nullified_views: Counter,
    /// Gossip refused by the checks off the loop, by topic and reason.
    pub gossip_refused: Family<RefusalLabels, Counter>,
    /// Gossip ignored because every validation slot was taken (the node is overloaded).
    pub validation_shed: Counter,
    /// Gossip ignored because its sender already held its share of the validation slots.
    pub validation_shed_peer: Counter,
    /// Validations running now.
    pub validations_in_flight: Gauge,
    /// Seconds from a gossip message's arrival to its hand-over to the consensus loop.
    pub validation_seconds: Histogram,
    /// Checked gossip dropped because the consensus loop's queue was full (reported Ignore).
    pub checked_dropped: Counter,
    /// Own publishes waiting for room in the network's command queue.
    pub outbox: Gauge,
    /// Peers' requests refused for their quota or because the store readers were busy.
    pub requests_refused: Counter,
    /// Own publishes dropped because the outbox was full.
    pub outbox_dropped: Counter,
    /// Seconds the consensus loop spent on one event.
    pub loop_seconds: Histogram,
    /// Bytes free for this process on the data directory's filesystem.
    pub disk_free_bytes: Gauge,
    /// Seconds from this node's NOTARIZE vote on a block to holding its finalization.
    pub finality_latency: Histogram,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        let buckets = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0];
        Self {
            finalized_height: Gauge::default(),
            view: Gauge::default(),
            epoch: Gauge::default(),
            last_certificate_seconds: Gauge::default(),
            votes_persisted: Counter::default(),
            evidence: Counter::default(),
            certificates: Family::default(),
            views_entered: Family::default(),
            nullified_views: Counter::default(),
            gossip_refused: Family::default(),
            validation_shed: Counter::default(),
            validation_shed_peer: Counter::default(),
            validations_in_flight: Gauge::default(),
            validation_seconds: Histogram::new(buckets),
            checked_dropped: Counter::default(),
            outbox: Gauge::default(),
            outbox_dropped: Counter::default(),
            requests_refused: Counter::default(),
            loop_seconds: Histogram::new(buckets),
            disk_free_bytes: Gauge::default(),
            finality_latency: Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0,
            ]),
        }
    }
}

impl NodeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("avs_node");
        r.register(
            "finalized_height",
            "Height of the last finalized block",
            m.finalized_height.clone(),
        );
        r.register("view", "Current view within the epoch", m.view.clone());
        r.register(
            "disk_free_bytes",
            "Bytes available on the data directory's filesystem (see --min-free-disk-mib)",
            m.disk_free_bytes.clone(),
        );
        r.register("epoch", "Current epoch", m.epoch.clone());
        r.register(
            "last_certificate_timestamp_seconds",
            "Unix time of the last certificate this node held",
            m.last_certificate_seconds.clone(),
        );
        r.register("votes_persisted", "Own votes written with fsync", m.votes_persisted.clone());
        r.register("evidence", "Equivocations observed", m.evidence.clone());
        r.register(
            "certificates",
            "Certificates held, by kind and origin (built from this node's pool, or received)",
            m.certificates.clone(),
        );
        r.register("views_entered", "Views entered, by cause", m.views_entered.clone());
        r.register(
            "nullified_views",
            "Views this node left on a nullification",
            m.nullified_views.clone(),
        );
        r.register(
            "gossip_refused",
            "Gossip refused by the checks before the consensus loop, by topic and reason",
            m.gossip_refused.clone(),
        );
        r.register(
            "validation_shed",
            "Gossip ignored unchecked because every validation slot was taken",
            m.validation_shed.clone(),
        );
        r.register(
            "validation_shed_peer",
            "Gossip ignored unchecked because its sender already held its share of validation slots",
            m.validation_shed_peer.clone(),
        );
        r.register(
            "validations_in_flight",
            "Gossip validations running",
            m.validations_in_flight.clone(),
        );
        r.register(
            "validation_seconds",
            "Time from a gossip message's arrival to its hand-over to the consensus loop",
            m.validation_seconds.clone(),
        );
        r.register(
            "checked_dropped",
            "Checked gossip ignored because the consensus loop's queue was full",
            m.checked_dropped.clone(),
        );
        r.register("outbox", "Own publishes waiting for the network task", m.outbox.clone());
        r.register(
            "requests_refused",
            "Peers' requests answered RESOURCE_UNAVAILABLE (over quota or store readers busy)",
            m.requests_refused.clone(),
        );
        r.register(
            "outbox_dropped",
            "Own publishes dropped because the outbox was full",
            m.outbox_dropped.clone(),
        );
        r.register(
            "loop_seconds",
            "Time the consensus loop spent on one event",
            m.loop_seconds.clone(),
        );
        r.register(
            "finality_latency_seconds",
            "Time from this node's NOTARIZE vote on a block to holding its finalization",
            m.finality_latency.clone(),
        );
        m
    }
}
