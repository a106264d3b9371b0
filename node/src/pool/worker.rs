//! The check-in worker: every [`CHECKIN_PERIOD`] the node signs its own check-in, records it in
//! its own pool (gossipsub does not deliver a node's messages back to it) and publishes it on
//! the gossip `checkin` topic. The gRPC client mode (`crate::grpc::client`) uses the same
//! [`CheckinSigner`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use avs_consensus::bls::SecretKey;
use avs_consensus::signing::NetworkDigest;
use avs_consensus::types::{byte_list, encode};
use avs_p2p::{GossipTopic, NetworkHandle, TopicKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::checkin::{self, Checkin, CheckinError, MAX_VERSION_BYTES, SignedCheckin};
use super::{CHECKIN_PERIOD, Observed, OperatorPool, PoolError};
use crate::status::NodeStatus;

/// Builds and signs this node's check-in from its current status.
#[derive(Clone)]
pub struct CheckinSigner {
    key: SecretKey,
    address: [u8; 20],
    digest: NetworkDigest,
    metrics_port: u16,
    status: watch::Receiver<NodeStatus>,
    /// Consensus messages this node accepted from gossip: its "events seen".
    events: Arc<AtomicU64>,
}

impl std::fmt::Debug for CheckinSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckinSigner").field("address", &hex::encode(self.address)).finish()
    }
}

impl CheckinSigner {
    pub fn new(
        key: SecretKey,
        address: [u8; 20],
        digest: NetworkDigest,
        metrics_port: u16,
        status: watch::Receiver<NodeStatus>,
        events: Arc<AtomicU64>,
    ) -> Self {
        Self { key, address, digest, metrics_port, status, events }
    }

    pub fn address(&self) -> [u8; 20] {
        self.address
    }

    /// This node's check-in as of `now_ms`, signed.
    pub fn sign_at(&self, now_ms: u64) -> Result<SignedCheckin, CheckinError> {
        let status = self.status.borrow().clone();
        let version = env!("CARGO_PKG_VERSION");
        let version = byte_list::<MAX_VERSION_BYTES>(
            version.as_bytes().get(..version.len().min(MAX_VERSION_BYTES)).unwrap_or_default(),
        )
        .map_err(|e| CheckinError::Malformed(e.to_string()))?;
        let message = Checkin {
            address: self.address,
            version,
            metrics_port: self.metrics_port,
            finalized_height: status.finalized_height,
            events_seen: self.events.load(Ordering::Relaxed),
            is_aggregator: status.is_aggregator,
            timestamp_ms: now_ms,
        };
        checkin::sign(message, &self.key, self.digest)
    }
}

/// Signs, records and publishes this node's check-in every period until `shutdown`.
pub async fn run_gossip_checkins(
    signer: CheckinSigner,
    pool: Arc<OperatorPool>,
    net: NetworkHandle,
    shutdown: CancellationToken,
) {
    let topic = GossipTopic::new(signer.digest, TopicKind::Checkin);
    let mut period = tokio::time::interval(CHECKIN_PERIOD);
    period.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = period.tick() => {}
        }
        let now = crate::node::now_ms();
        let signed = match signer.sign_at(now) {
            Ok(signed) => signed,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign this node's check-in");
                continue;
            }
        };
        // Recording our own goes through the same verification as anyone's: a key that is
        // not in the set shows up here, not as a silent absence on every other node.
        let pool2 = pool.clone();
        let own = signed.clone();
        match tokio::task::spawn_blocking(move || pool2.accept(&own, &Observed::Local, now)).await {
            Ok(Ok(_)) | Ok(Err(PoolError::NoOperatorSet)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "own check-in not recorded"),
            Err(e) => tracing::error!(error = %e, "own check-in task failed"),
        }
        let bytes = match encode(&signed) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode this node's check-in");
                continue;
            }
        };
        if let Err(e) = net.publish(topic, bytes).await {
            // No peers yet: the next period sends a fresh one.
            tracing::debug!(error = %e, "publishing the check-in failed");
        }
    }
}
