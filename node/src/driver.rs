//! The loop that drives the node's [`Core`] on its own thread, and carries out its effects on
//! the network.
//!
//! One thread (`avs-consensus`, a current-thread tokio runtime) owns the core, so the core may
//! block on an fsync or a pairing without stalling the network task or the API. Its loop is a
//! `biased` `select!`, local work first: answers to our requests, then checked gossip from the
//! validation workers, then the clock (interval ticks and the core's deadlines), then network
//! events. After every event it runs the effects, retries the outbox and publishes the status.
//!
//! Gossip validation runs on the main runtime's blocking pool ([`crate::gossip::check`]). A
//! message takes a validation slot before any work is queued; with every slot taken it is
//! ignored at once and counted (`avs_node_validation_shed_total`), never queued without bound.
//! Of the slots, [`URGENT_SLOTS`] are kept for votes and certificates of the views around the
//! current one, so a flood of anything else cannot shed them.
//! One peer holds at most [`MAX_VALIDATIONS_PER_PEER`] of the slots; beyond its share its
//! messages are ignored and counted (`avs_node_validation_shed_peer_total`), so a flood from
//! one peer leaves room for everyone else's.
//! A checked message that finds the loop's queue full is ignored too, so gossipsub does not
//! forward what the node dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use avs_consensus::clock::SlotClock;
use avs_consensus::gossip::GossipError;
use avs_p2p::{
    GossipMessage, GossipTopic, InboundRequest, NetworkDigest, NetworkEvent, NetworkHandle, PeerId,
    TopicKind, ValidationOutcome,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::aggregator::AggregatorController;
use crate::avs::AvsTasks;
use crate::core::{Checked, Core, Effect};
use crate::gossip::{
    MAX_VALIDATIONS_PER_PEER, Outcome, PeerShares, URGENT_SLOTS, ValidationSlots, outcome,
};
use crate::grpc::FinalizedFeed;
use crate::metrics::{NodeMetrics, RefusalLabels};
use crate::pool::OperatorPool;
use crate::status::NodeStatus;
use crate::sync::server::{self, RequestQuota};
use crate::tasks::NodeTasks;

/// Gossip messages validated at once; beyond this they are ignored unchecked.
pub const MAX_VALIDATIONS_IN_FLIGHT: usize = 64;
/// Checked gossip waiting for the loop.
const CHECKED_QUEUE: usize = 1024;
/// Answers to our requests waiting for the loop.
const RESPONSE_QUEUE: usize = 256;
/// Own publishes waiting for room in the network task's queue.
const OUTBOX: usize = 1024;
/// Peers' store-backed requests read at once (on the blocking pool); beyond it a request is
/// answered RESOURCE_UNAVAILABLE.
const STORE_READERS: usize = 4;
/// How long a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What the validation workers hand the loop.
enum Validated {
    Checked {
        checked: Box<Checked>,
        id: avs_p2p::MessageId,
        peer: PeerId,
        received: Instant,
    },
    /// Gossip of a later epoch: the sender can help us catch up.
    LaterEpoch(PeerId),
}

/// Everything the loop needs besides the core.
pub struct Driver {
    pub core: Core,
    pub net: NetworkHandle,
    pub digest: NetworkDigest,
    pub clock: SlotClock,
    pub aggregator: AggregatorController,
    pub metrics: NodeMetrics,
    pub status: watch::Sender<NodeStatus>,
    pub tasks: NodeTasks,
    pub pool: Arc<OperatorPool>,
    pub avs: Arc<AvsTasks>,
    /// Settles finalized AVS tasks on chain while this node is an aggregator.
    pub settler: Option<crate::settlement::Settler>,
    pub finalized_feed: FinalizedFeed,
    /// The main runtime: validation and requests run there, not on the loop's thread.
    pub runtime: tokio::runtime::Handle,
    /// Each peer's request allowance.
    pub quota: RequestQuota,
}

struct Channels {
    checked_tx: mpsc::Sender<Validated>,
    responses_tx: mpsc::Sender<(u64, Result<Vec<avs_p2p::ResponseChunk>, String>)>,
    slots: ValidationSlots,
    shares: PeerShares,
    /// Store reads answering peers' requests at once.
    store_permits: Arc<Semaphore>,
}

impl Driver {
    /// Runs the loop until `shutdown` is cancelled or the core fails (a store error).
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<NetworkEvent>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let (checked_tx, mut checked) = mpsc::channel(CHECKED_QUEUE);
        let (responses_tx, mut responses) = mpsc::channel(RESPONSE_QUEUE);
        let channels = Channels {
            checked_tx,
            responses_tx,
            slots: ValidationSlots::new(MAX_VALIDATIONS_IN_FLIGHT, URGENT_SLOTS),
            shares: PeerShares::new(MAX_VALIDATIONS_PER_PEER),
            store_permits: Arc::new(Semaphore::new(STORE_READERS)),
        };
        let mut outbox: VecDeque<(TopicKind, Vec<u8>)> = VecDeque::new();
        let avs = Arc::clone(&self.avs);
        // Enter the current view at once instead of waiting for the next boundary.
        let effects = self.core.tick(now_ms(), self.aggregator.observe_tick())?;
        self.carry_out(effects, &channels, &mut outbox);
        loop {
            let now = now_ms();
            let next_tick = self.clock.next_tick_ms(now);
            let wake = self.core.next_wakeup().map_or(next_tick, |w| w.min(next_tick));
            let sleep = tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now)));
            let started = Instant::now();
            let effects = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                Some((id, result)) = responses.recv() => {
                    self.core.on_response(now_ms(), id, result, self.aggregator.is_enabled())?
                }
                Some(validated) = checked.recv() => match validated {
                    Validated::Checked { checked, id, peer, received } => {
                        self.metrics.validation_seconds.observe(received.elapsed().as_secs_f64());
                        self.core.on_gossip(now_ms(), *checked, id, peer, self.aggregator.is_enabled())?
                    }
                    Validated::LaterEpoch(peer) => self.core.on_later_epoch(now_ms(), peer),
                },
                () = sleep => self.core.tick(now_ms(), self.aggregator.observe_tick())?,
                // A task verdict arrived: a proposal that waited on it is judged now.
                () = avs.changed() => self.core.tick(now_ms(), self.aggregator.observe_tick())?,
                Some(event) = events.recv() => self.on_network_event(event, &channels),
            };
            self.metrics.loop_seconds.observe(started.elapsed().as_secs_f64());
            self.carry_out(effects, &channels, &mut outbox);
            self.flush(&mut outbox);
            self.publish_status();
        }
    }

    fn on_network_event(&mut self, event: NetworkEvent, channels: &Channels) -> Vec<Effect> {
        match event {
            NetworkEvent::Gossip(message) => {
                self.validate(message, channels);
                Vec::new()
            }
            NetworkEvent::Request(request) => {
                self.answer(request, channels);
                Vec::new()
            }
            NetworkEvent::PeerConnected(peer) => {
                tracing::debug!(%peer, "peer connected");
                self.core.peer_connected(peer)
            }
            NetworkEvent::PeerDisconnected(peer) => {
                tracing::debug!(%peer, "peer disconnected");
                self.core.peer_disconnected(&peer);
                self.quota.forget_idle(now_ms());
                Vec::new()
            }
        }
    }

    /// Answers a peer's request: refused at once beyond the peer's quota or when the store
    /// workers are all busy; store-backed answers are read on the blocking pool, the others
    /// (status, votes: the engine's memory) here.
    fn answer(&mut self, request: InboundRequest, channels: &Channels) {
        let InboundRequest { peer, protocol, request, responder } = request;
        if !self.quota.allow(peer, protocol, now_ms()) {
            self.metrics.requests_refused.inc();
            tracing::debug!(%peer, protocol = protocol.name(), "request over the peer's quota");
            responder.respond(server::busy());
            return;
        }
        if !server::is_store_backed(protocol) {
            let chunks = self.core.answer(protocol, &request);
            tracing::trace!(%peer, protocol = protocol.name(), chunks = chunks.len(), "answered");
            responder.respond(chunks);
            return;
        }
        let Ok(permit) = Arc::clone(&channels.store_permits).try_acquire_owned() else {
            self.metrics.requests_refused.inc();
            responder.respond(server::busy());
            return;
        };
        let chain = self.core.chain().clone();
        self.runtime.spawn_blocking(move || {
            let _permit = permit;
            let chunks = server::answer_from_store(&chain, protocol, &request);
            tracing::trace!(%peer, protocol = protocol.name(), chunks = chunks.len(), "answered");
            responder.respond(chunks);
        });
    }

    /// Takes a validation slot (or ignores the message at once), then checks it on the
    /// blocking pool and reports or forwards the outcome.
    fn validate(&self, message: GossipMessage, channels: &Channels) {
        let GossipMessage { topic, data, peer, peer_addr, message_id } = message;
        let Some(share) = channels.shares.try_take(peer) else {
            self.metrics.validation_shed_peer.inc();
            let _ = self.net.report_validation(message_id, peer, ValidationOutcome::Ignore);
            return;
        };
        let context = self.core.context();
        let urgent = crate::gossip::is_urgent(&context, topic.kind, &data);
        let Some(permit) = channels.slots.take(urgent) else {
            self.metrics.validation_shed.inc();
            let _ = self.net.report_validation(message_id, peer, ValidationOutcome::Ignore);
            return;
        };
        let received = Instant::now();
        let pool = Arc::clone(&self.pool);
        let avs = Arc::clone(&self.avs);
        let net = self.net.clone();
        let metrics = self.metrics.clone();
        let tx = channels.checked_tx.clone();
        metrics.validations_in_flight.inc();
        self.runtime.spawn_blocking(move || {
            let _held = (permit, share);
            let kind = topic.kind;
            let result = crate::gossip::check(
                &context,
                &pool,
                &avs,
                kind,
                &data,
                &peer,
                peer_addr.as_ref(),
                now_ms(),
            );
            metrics.validations_in_flight.dec();
            match result {
                Outcome::Consensus(checked) => {
                    let validated = Validated::Checked {
                        checked: Box::new(checked),
                        id: message_id.clone(),
                        peer,
                        received,
                    };
                    if tx.try_send(validated).is_err() {
                        metrics.checked_dropped.inc();
                        let _ = net.report_validation(message_id, peer, ValidationOutcome::Ignore);
                    }
                }
                Outcome::Refused(error) => {
                    refused(&metrics, kind, &error, &peer);
                    let _ = net.report_validation(message_id, peer, outcome(error.verdict()));
                    if matches!(error, GossipError::LaterEpoch { .. }) {
                        let _ = tx.try_send(Validated::LaterEpoch(peer));
                    }
                }
                Outcome::Checkin(result) | Outcome::Task(result) => {
                    let verdict = match result {
                        Ok(()) => ValidationOutcome::Accept,
                        Err((verdict, reason)) => {
                            tracing::debug!(%peer, %reason, topic = %kind.name(), "gossip refused");
                            outcome(verdict)
                        }
                    };
                    let _ = net.report_validation(message_id, peer, verdict);
                }
            }
        });
    }

    fn carry_out(
        &mut self,
        effects: Vec<Effect>,
        channels: &Channels,
        outbox: &mut VecDeque<(TopicKind, Vec<u8>)>,
    ) {
        for effect in effects {
            match effect {
                Effect::Publish { kind, data } => {
                    if outbox.len() >= OUTBOX {
                        outbox.pop_front();
                        self.metrics.outbox_dropped.inc();
                    }
                    outbox.push_back((kind, data));
                }
                Effect::Verdict { id, peer, outcome } => {
                    let _ = self.net.report_validation(id, peer, outcome);
                }
                Effect::Request { id, peer, protocol, data } => {
                    let net = self.net.clone();
                    let tx = channels.responses_tx.clone();
                    self.runtime.spawn(async move {
                        let result = net
                            .request(peer, protocol, data, REQUEST_TIMEOUT)
                            .await
                            .map_err(|e| e.to_string());
                        let _ = tx.send((id, result)).await;
                    });
                }
                Effect::Proposed(proposal) => self.tasks.proposed(&proposal),
                Effect::Finalized(event) => {
                    self.tasks.finalized(&event.block);
                    self.avs.finalized(&event);
                    if let Some(settler) = &self.settler {
                        settler.offer(&event, self.aggregator.is_enabled());
                    }
                    // No subscriber is the normal case: nothing to do then.
                    let _ = self.finalized_feed.send(event);
                }
                Effect::EpochChanged(table) => {
                    self.avs.set_operators(Arc::clone(&table));
                    // Rows of operators that left the set expire now.
                    if let Err(e) = self.pool.set_operators(table) {
                        tracing::warn!(error = %e, "updating the operator pool's set failed");
                    }
                }
                Effect::PeerMisbehaved { peer, reason } => {
                    tracing::debug!(%peer, %reason, "peer misbehaved on req/resp");
                    let _ = self.net.report_peer(peer, reason);
                }
            }
        }
    }

    /// Hands queued publishes to the network task while it has room; the rest wait for the
    /// next event (a full queue is never waited on: the loop must not stall on the network).
    fn flush(&self, outbox: &mut VecDeque<(TopicKind, Vec<u8>)>) {
        while let Some((kind, data)) = outbox.pop_front() {
            let topic = GossipTopic::new(self.digest, kind);
            match self.net.publish_nowait(topic, data.clone()) {
                Ok(()) => {}
                Err(avs_p2p::NetworkError::Busy) => {
                    outbox.push_front((kind, data));
                    break;
                }
                Err(e) => tracing::debug!(topic = %kind.name(), error = %e, "publish failed"),
            }
        }
        self.metrics.outbox.set(i64::try_from(outbox.len()).unwrap_or(i64::MAX));
    }

    fn publish_status(&self) {
        let status = self.core.status(self.aggregator.is_enabled());
        self.tasks.set_view(status.view);
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}

fn refused(metrics: &NodeMetrics, kind: TopicKind, error: &GossipError, peer: &PeerId) {
    tracing::debug!(topic = %kind.name(), %peer, %error, "gossip refused");
    metrics
        .gossip_refused
        .get_or_create(&RefusalLabels { topic: kind.name().to_string(), reason: error.label() })
        .inc();
}
