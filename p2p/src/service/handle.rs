//! The cloneable handle the node uses to drive the network task.
//!
//! Every call is one message on the bounded command channel. A full channel is never waited on
//! (the network task must not be able to stall consensus): the call fails with
//! [`NetworkError::Busy`] and the refusal is counted in `avs_p2p_dropped_commands_total`.

use std::time::Duration;

use libp2p::gossipsub::MessageId;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::types::{NetworkError, RequestError, ValidationOutcome};
use crate::codec::ResponseChunk;
use crate::metrics::Metrics;
use crate::rpc::{ReqRespProtocol, RpcLimits};
use crate::topic::GossipTopic;

pub(crate) type Reply<T> = oneshot::Sender<T>;

/// Commands from handles to the task.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        topic: GossipTopic,
        data: Vec<u8>,
        reply: Reply<Result<MessageId, NetworkError>>,
    },
    ReportValidation {
        message_id: MessageId,
        source: PeerId,
        outcome: ValidationOutcome,
    },
    ReportPeer {
        peer: PeerId,
        reason: String,
    },
    Subscribe {
        topic: GossipTopic,
        reply: Reply<Result<bool, NetworkError>>,
    },
    Unsubscribe {
        topic: GossipTopic,
        reply: Reply<bool>,
    },
    Request {
        peer: PeerId,
        protocol: ReqRespProtocol,
        request: Vec<u8>,
        reply: Reply<Result<Vec<ResponseChunk>, RequestError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<Result<(), NetworkError>>,
    },
    ConnectedPeers {
        reply: Reply<Vec<PeerId>>,
    },
    ListenAddrs {
        reply: Reply<Vec<Multiaddr>>,
    },
    PeerScore {
        peer: PeerId,
        reply: Reply<Option<f64>>,
    },
    MeshPeers {
        topic: GossipTopic,
        reply: Reply<Vec<PeerId>>,
    },
}

/// Handle to the network task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    rpc_limits: RpcLimits,
    max_request_timeout: Duration,
    metrics: Metrics,
}

impl NetworkHandle {
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        local_peer_id: PeerId,
        rpc_limits: RpcLimits,
        max_request_timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        Self { commands, local_peer_id, rpc_limits, max_request_timeout, metrics }
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    fn send(&self, command: Command) -> Result<(), NetworkError> {
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                self.metrics.dropped_commands.inc();
                NetworkError::Busy
            }
            mpsc::error::TrySendError::Closed(_) => NetworkError::Stopped,
        })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetworkError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply))?;
        rx.await.map_err(|_| NetworkError::Stopped)
    }

    /// Publishes SSZ bytes on a topic (compressed with raw snappy on the way out). Returns the
    /// message id.
    pub async fn publish(
        &self,
        topic: GossipTopic,
        data: Vec<u8>,
    ) -> Result<MessageId, NetworkError> {
        self.call(|reply| Command::Publish { topic, data, reply }).await?
    }

    /// Queues a publish without waiting for the network task: `Busy` when its command queue is
    /// full (the caller keeps the message and retries), never a wait. Failures inside the task
    /// (no peers, a duplicate) are counted there.
    pub fn publish_nowait(&self, topic: GossipTopic, data: Vec<u8>) -> Result<(), NetworkError> {
        let (reply, _ignored) = oneshot::channel();
        self.send(Command::Publish { topic, data, reply })
    }

    /// Reports the verdict on a received gossip message, charged to `propagation_source`.
    pub fn report_validation(
        &self,
        message_id: MessageId,
        propagation_source: PeerId,
        outcome: ValidationOutcome,
    ) -> Result<(), NetworkError> {
        self.send(Command::ReportValidation { message_id, source: propagation_source, outcome })
    }

    /// Reports a peer that answered a request with something no honest node sends (a bad
    /// signature, an answer that does not match the request). Each report is a strike; at
    /// [`crate::config::ScoringConfig::max_strikes`] the peer is disconnected and banned like a
    /// peer whose gossip score fell too low.
    pub fn report_peer(&self, peer: PeerId, reason: impl Into<String>) -> Result<(), NetworkError> {
        self.send(Command::ReportPeer { peer, reason: reason.into() })
    }

    /// Subscribes to a topic (and turns scoring on for it). `Ok(false)` if already subscribed.
    pub async fn subscribe(&self, topic: GossipTopic) -> Result<bool, NetworkError> {
        self.call(|reply| Command::Subscribe { topic, reply }).await?
    }

    /// Unsubscribes; false if we were not subscribed.
    pub async fn unsubscribe(&self, topic: GossipTopic) -> Result<bool, NetworkError> {
        self.call(|reply| Command::Unsubscribe { topic, reply }).await
    }

    /// Sends a request and waits for the whole response, at most `timeout` (clamped to the
    /// configured request timeout). Oversize requests are refused before anything is sent.
    pub async fn request(
        &self,
        peer: PeerId,
        protocol: ReqRespProtocol,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<ResponseChunk>, RequestError> {
        let max = self.rpc_limits.max_request_size;
        if request.len() > max {
            return Err(RequestError::TooLarge { protocol, len: request.len(), max });
        }
        let (reply, rx) = oneshot::channel();
        self.send(Command::Request { peer, protocol, request, reply })?;
        match tokio::time::timeout(timeout.min(self.max_request_timeout), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NetworkError::Stopped.into()),
            // Dropping `rx` is enough: the task discards the late response.
            Err(_) => Err(RequestError::Timeout),
        }
    }

    /// Dials an address (a bootnode, or a peer learned elsewhere).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetworkError> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NetworkError> {
        self.call(|reply| Command::ConnectedPeers { reply }).await
    }

    /// Addresses we listen on (empty until the listeners are up).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetworkError> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }

    /// A peer's gossipsub score as this node sees it.
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, NetworkError> {
        self.call(|reply| Command::PeerScore { peer, reply }).await
    }

    /// Our mesh peers on a topic.
    pub async fn mesh_peers(&self, topic: GossipTopic) -> Result<Vec<PeerId>, NetworkError> {
        self.call(|reply| Command::MeshPeers { topic, reply }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_command_channel_is_an_error_and_is_counted() {
        let (tx, mut rx) = mpsc::channel(1);
        let metrics = Metrics::default();
        let handle = NetworkHandle::new(
            tx,
            PeerId::random(),
            RpcLimits::default(),
            Duration::from_secs(1),
            metrics.clone(),
        );
        let id = MessageId::new(b"id");
        let peer = PeerId::random();
        assert_eq!(handle.report_validation(id.clone(), peer, ValidationOutcome::Accept), Ok(()));
        assert_eq!(
            handle.report_validation(id.clone(), peer, ValidationOutcome::Accept),
            Err(NetworkError::Busy)
        );
        assert_eq!(metrics.dropped_commands.get(), 1);
        // Exactly one command is queued: nothing grew past the bound.
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err());
        drop(rx);
        assert_eq!(
            handle.report_validation(id, peer, ValidationOutcome::Ignore),
            Err(NetworkError::Stopped)
        );
    }

    #[tokio::test]
    async fn oversize_request_is_refused_before_queueing() {
        let (tx, mut rx) = mpsc::channel(4);
        let limits = RpcLimits { max_request_size: 4, ..RpcLimits::default() };
        let handle = NetworkHandle::new(
            tx,
            PeerId::random(),
            limits,
            Duration::from_secs(1),
            Metrics::default(),
        );
        let result = handle
            .request(PeerId::random(), ReqRespProtocol::Status, vec![0; 5], Duration::from_secs(1))
            .await;
        assert_eq!(
            result,
            Err(RequestError::TooLarge { protocol: ReqRespProtocol::Status, len: 5, max: 4 })
        );
        assert!(rx.try_recv().is_err(), "nothing was sent to the task");
    }
}
