//! What the node reports about itself after each step of its loop: read by the HTTP API
//! (`/lean/v0/status`, health), the operator pool's check-ins, gRPC and the telemetry page
//! through one watch channel.

use serde::Serialize;

/// The node's own view of the chain and of its role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
    /// Set when the consensus cannot go on (see the node's log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
}
