//! Prometheus metrics of the network service, registered under the `avs_p2p_` prefix in the
//! node's one registry. libp2p's own metrics (gossipsub, identify, ping, connections, bandwidth)
//! go under `libp2p_` in the same registry.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What happened to a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub(crate) enum GossipOutcome {
    Received,
    Accepted,
    Ignored,
    Rejected,
    /// The node's event queue was full; the message was ignored.
    Dropped,
    Published,
    PublishFailed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct GossipLabels {
    pub(crate) topic: String,
    pub(crate) outcome: GossipOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub(crate) enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct BytesLabels {
    pub(crate) kind: &'static str,
    pub(crate) direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct RpcLabels {
    pub(crate) protocol: &'static str,
    pub(crate) direction: Direction,
    pub(crate) result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub(crate) kind: &'static str,
}

/// The service's metrics; cheap to clone (all handles are shared).
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    pub(crate) peers: Gauge,
    pub(crate) gossip_messages: Family<GossipLabels, Counter>,
    pub(crate) payload_bytes: Family<BytesLabels, Counter>,
    pub(crate) rpc_requests: Family<RpcLabels, Counter>,
    pub(crate) dropped_commands: Counter,
    pub(crate) dropped_events: Family<KindLabels, Counter>,
    pub(crate) score_disconnects: Counter,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let r = registry.sub_registry_with_prefix("avs_p2p");
        r.register("peers", "Connected peers", metrics.peers.clone());
        r.register(
            "gossip_messages",
            "Gossip messages by topic and outcome",
            metrics.gossip_messages.clone(),
        );
        r.register(
            "payload_bytes",
            "Uncompressed gossip and req/resp payload bytes by direction",
            metrics.payload_bytes.clone(),
        );
        r.register(
            "rpc_requests",
            "Req/resp requests by protocol, direction and result",
            metrics.rpc_requests.clone(),
        );
        r.register(
            "dropped_commands",
            "Commands refused because the network command queue was full",
            metrics.dropped_commands.clone(),
        );
        r.register(
            "dropped_events",
            "Events dropped because the node's event queue was full",
            metrics.dropped_events.clone(),
        );
        r.register(
            "score_disconnects",
            "Peers disconnected and banned for a low gossipsub score",
            metrics.score_disconnects.clone(),
        );
        metrics
    }

    pub(crate) fn gossip(&self, topic: &str, outcome: GossipOutcome) {
        self.gossip_messages
            .get_or_create(&GossipLabels { topic: topic.to_owned(), outcome })
            .inc();
    }

    pub(crate) fn bytes(&self, kind: &'static str, direction: Direction, len: usize) {
        self.payload_bytes.get_or_create(&BytesLabels { kind, direction }).inc_by(len as u64);
    }

    pub(crate) fn rpc(&self, protocol: &'static str, direction: Direction, result: &'static str) {
        self.rpc_requests.get_or_create(&RpcLabels { protocol, direction, result }).inc();
    }

    pub(crate) fn dropped_event(&self, kind: &'static str) {
        self.dropped_events.get_or_create(&KindLabels { kind }).inc();
    }
}
