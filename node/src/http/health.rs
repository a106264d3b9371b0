//! `GET /lean/v0/health`: whether this node is following the chain, in leanSpec's shape.
//!
//! Healthy is `200 {"status": "healthy", "service": "lean-rpc-api"}`, exactly leanSpec's body.
//! Unhealthy is `503` with the same keys, `"status": "unhealthy"`, plus a `"reason"` for the
//! operator.
//!
//! **The rule.** A node is following the chain when its consensus has not halted and it saw a
//! certificate (built or received, of any kind) within the last [`HealthPolicy::max_silence`],
//! by default [`HealthPolicy::DEFAULT_SLOTS`] slot durations. A live network makes a
//! certificate every view, and a view lasts at most about one slot even when its leader is
//! down (the nullification comes within the leader and advance timeouts), so ten silent slots
//! mean the node is isolated (no peers, wrong bootnodes, a dead network task), stuck, or the
//! network itself has lost its quorum: in every case the node is not following. Before the
//! first certificate the silence is counted from when the API started, which gives a node
//! that just started the same allowance to catch up. The peer count is not a rule of its own
//! (a one-operator network has none), but it is named in the reason.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::json_response;
use crate::status::NodeStatus;

/// When the node counts as not following. Cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// The longest time without a certificate that is still healthy.
    pub max_silence: Duration,
}

impl HealthPolicy {
    /// Silent slots tolerated by default: a view lasts at most about one slot.
    pub const DEFAULT_SLOTS: u32 = 10;
    /// The genesis file's default `slot_duration_ms` (`genesis.rs`).
    pub const DEFAULT_SLOT: Duration = Duration::from_millis(4000);

    /// Unhealthy after `slots` slot durations without a certificate.
    pub fn slots(slot_duration: Duration, slots: u32) -> Self {
        Self { max_silence: slot_duration.saturating_mul(slots) }
    }
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self::slots(Self::DEFAULT_SLOT, Self::DEFAULT_SLOTS)
    }
}

/// The answer of [`assess`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Health {
    Healthy,
    Unhealthy(String),
}

/// Applies the module's rule to `status` at `now_ms`, for an API started at `started_ms`
/// (both Unix milliseconds).
pub(crate) fn assess(
    status: &NodeStatus,
    now_ms: u64,
    started_ms: u64,
    policy: HealthPolicy,
) -> Health {
    if let Some(reason) = &status.halted {
        return Health::Unhealthy(format!("consensus halted: {reason} (see the node's log)"));
    }
    let since_ms = status.last_certificate_ms.unwrap_or(started_ms);
    let silent = Duration::from_millis(now_ms.saturating_sub(since_ms));
    if silent <= policy.max_silence {
        return Health::Healthy;
    }
    let what = if status.last_certificate_ms.is_some() {
        "no certificate for"
    } else {
        "no certificate since the API started"
    };
    Health::Unhealthy(format!(
        "not following the chain: {what} {} s (limit {} s); {} peers, view {}",
        silent.as_secs(),
        policy.max_silence.as_secs(),
        status.peers,
        status.view,
    ))
}

/// The HTTP answer for `health`.
pub(crate) fn response(health: Health) -> Response {
    match health {
        Health::Healthy => {
            json_response(StatusCode::OK, json!({ "status": "healthy", "service": "lean-rpc-api" }))
        }
        Health::Unhealthy(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unhealthy", "service": "lean-rpc-api", "reason": reason }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn policy() -> HealthPolicy {
        HealthPolicy::slots(Duration::from_secs(4), 10)
    }

    #[test]
    fn a_recent_certificate_is_healthy_a_silent_one_is_not() {
        let status = NodeStatus { last_certificate_ms: Some(100 * MIN), ..NodeStatus::default() };
        assert_eq!(assess(&status, 100 * MIN + 40_000, 0, policy()), Health::Healthy);
        let Health::Unhealthy(reason) = assess(&status, 100 * MIN + 40_001, 0, policy()) else {
            panic!("41 s of silence is healthy")
        };
        assert!(reason.contains("no certificate for 40 s (limit 40 s)"), "{reason}");
    }

    #[test]
    fn before_the_first_certificate_the_silence_counts_from_the_start() {
        let status = NodeStatus::default();
        assert_eq!(assess(&status, 10 * MIN, 10 * MIN - 1000, policy()), Health::Healthy);
        let Health::Unhealthy(reason) = assess(&status, 10 * MIN, 5 * MIN, policy()) else {
            panic!("5 min without any certificate is healthy")
        };
        assert!(reason.contains("since the API started 300 s"), "{reason}");
        assert!(reason.contains("0 peers"), "{reason}");
    }

    #[test]
    fn a_halted_consensus_is_unhealthy_at_once() {
        let status = NodeStatus {
            last_certificate_ms: Some(MIN),
            halted: Some("store write failed".into()),
            ..NodeStatus::default()
        };
        let Health::Unhealthy(reason) = assess(&status, MIN, MIN, policy()) else {
            panic!("halted is healthy")
        };
        assert!(reason.contains("store write failed"), "{reason}");
    }
}
