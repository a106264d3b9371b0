//! The node's gRPC services (tonic): `avs.node.v1.NodeService` plus server reflection (v1 and
//! v1alpha), served
//! on `--grpc-addr:--grpc-port` until the node's shutdown token is cancelled.
//!
//! The generated types stay in `avs-proto`; this module converts at the edge. `Checkin` takes
//! the same signed message the gossip `checkin` topic carries and runs it through the same
//! [`OperatorPool::accept`], recording the TCP peer address tonic observed. `GetStatus` and
//! `ListOperators` read the node's status channel and the pool. `SubscribeFinalized` replays
//! finalized blocks from the store from `from_height`, then follows the node loop's
//! finalization feed (a bounded broadcast; a subscriber that falls too far behind is told to
//! resubscribe rather than silently skipping blocks).
//!
//! The service is unauthenticated and may be exposed (`--grpc-addr`), so everything a request
//! can make the node spend is bounded (review finding M4): the size of a message, the streams
//! and handlers of a connection, how long a handler may take, the signature checks check-ins
//! cost ([`budget`]: cheap checks first, then a global and per-operator token bucket), the
//! number of finalized-block subscriptions, and what one subscription holds (one page of
//! history and a short backlog; a subscriber that stops reading is dropped with a status).
//!
//! [`client`] is the other direction: the worker that sends this node's check-ins to a remote
//! node's `Checkin`, with backoff.

pub mod automation;
pub mod budget;
pub mod client;
pub mod tasks;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use avs_consensus::types::{
    Block, Height, MAX_PROOF_BYTES, MAX_TASK_DATA_BYTES, MAX_TASKS_PER_BLOCK, Root, encode,
};
use avs_proto::v1 as pb;
use avs_proto::v1::node_service_server::{NodeService, NodeServiceServer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::codegen::tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

use self::budget::{Rate, VerifyBudget};
use crate::chain_store::ChainStore;
use crate::pool::checkin::MAX_VERSION_BYTES;
use crate::pool::{Checkin, CheckinError, Observed, OperatorPool, PoolError, SignedCheckin};
use crate::status::NodeStatus;

/// Finalized blocks kept for slow stream subscribers before they are told they lagged.
pub const FINALIZED_FEED_CAPACITY: usize = 256;
/// Largest request message decoded. The largest legitimate request is a check-in, a few hundred
/// bytes (a 64-byte version, a 96-byte signature); anything larger is refused from its length
/// prefix (`OUT_OF_RANGE`), before it is buffered or decoded.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest `SubmitTask` request: a task at the protocol's limits and its framing.
pub const MAX_TASK_REQUEST_BYTES: usize = crate::gossip::MAX_SIGNED_TASK_BYTES + 1024;
/// Largest response message encoded: one finalized block of the largest size (16 task results
/// of at most 512 KiB of data and 64 KiB of proof each, about 9.1 MiB), with 64 KiB to spare for
/// the block's fixed fields, its certificate (under 1 KiB) and the protobuf framing. Larger is
/// a bug, refused rather than sent.
pub const MAX_RESPONSE_BYTES: usize =
    MAX_TASKS_PER_BLOCK * (MAX_TASK_DATA_BYTES + MAX_PROOF_BYTES + 64) + 64 * 1024;
/// Requests one connection may have in handlers at once; more are refused
/// (`RESOURCE_EXHAUSTED`, load shedding) rather than queued.
const MAX_CONCURRENT_PER_CONNECTION: usize = 32;
/// HTTP/2 streams one connection may hold open (SETTINGS_MAX_CONCURRENT_STREAMS). Unlike the
/// handler limit above, this also counts open `SubscribeFinalized` streams.
const MAX_STREAMS_PER_CONNECTION: u32 = 32;
/// How long a handler may take, reading its request included (a unary request trickled in
/// slowly is cut off); open streams are not cut, only the time to answer their request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings on idle connections, so that a vanished client's streams (and the subscription
/// slots they hold) are released within `KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT`.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest header block a request may carry (gRPC clients send well under 1 KiB).
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Blocks a stream reads from the store per page while replaying history.
const REPLAY_PAGE_BLOCKS: u64 = 64;
/// Bytes of blocks after which a page ends early: with blocks of up to ~10 MiB, 64 of them
/// would not be a bounded page.
const REPLAY_PAGE_BYTES: usize = 1 << 20;

pub use crate::core::FinalizedEvent;

/// The node loop's side of the finalization feed.
pub type FinalizedFeed = broadcast::Sender<Arc<FinalizedEvent>>;

/// What the service reads. Cheap to clone.
#[derive(Clone)]
pub struct GrpcState {
    pub pool: Arc<OperatorPool>,
    pub status: watch::Receiver<NodeStatus>,
    pub chain: ChainStore,
    pub finalized: FinalizedFeed,
    pub avs: Arc<crate::avs::AvsTasks>,
    pub automation: Arc<crate::automation::Automation>,
}

/// The limits that are the service's own (the transport's are constants above).
#[derive(Debug, Clone)]
pub struct Limits {
    /// `SubscribeFinalized` streams open at once, over all connections; more are refused with
    /// `RESOURCE_EXHAUSTED`.
    pub max_subscriptions: usize,
    /// Blocks queued for one subscriber that has not read them yet (at least 1).
    pub subscriber_backlog: usize,
    /// How long a subscriber may leave a full backlog unread before it is dropped.
    pub subscriber_stall: Duration,
    /// Signature checks gRPC check-ins may cost, over all clients.
    pub verify_global: Rate,
    /// Signature checks gRPC check-ins naming one operator may cost.
    pub verify_per_operator: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_subscriptions: 16,
            subscriber_backlog: 16,
            subscriber_stall: Duration::from_secs(30),
            // About 1 ms of CPU a pairing: 16 a second is under 2% of one core, and serves 80
            // operators checking in over gRPC every 5 s (gRPC is for the few outside the gossip
            // mesh; the others' check-ins arrive by gossip and do not count here).
            verify_global: Rate { burst: 32, per_second: 16 },
            // One check-in per 5 s, and a few retries.
            verify_per_operator: Rate { burst: 3, per_second: 1 },
        }
    }
}

/// Binds the gRPC listener; a clear error names the flag to change.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot bind the gRPC services to {addr}: {e}; choose another --grpc-port")
    })
}

/// Serves `NodeService` and reflection with the default [`Limits`] until `shutdown` is
/// cancelled, then drains.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: GrpcState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_with_limits(listener, state, Limits::default(), shutdown).await
}

/// [`serve`] with the given service limits.
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    state: GrpcState,
    limits: Limits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "gRPC services listening");
    }
    // Both reflection protocols: grpcurl and Python's grpcio-reflection still speak only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(avs_proto::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?.max_decoding_message_size(MAX_REQUEST_BYTES);
    let reflection_v1alpha =
        reflection().build_v1alpha()?.max_decoding_message_size(MAX_REQUEST_BYTES);
    let tasks = avs_proto::v1::task_service_server::TaskServiceServer::new(tasks::Tasks::new(
        Arc::clone(&state.avs),
    ))
    .max_decoding_message_size(MAX_TASK_REQUEST_BYTES)
    .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let automation =
        avs_proto::automation_v1::automation_service_server::AutomationServiceServer::new(
            automation::AutomationApi::new(Arc::clone(&state.automation)),
        )
        .max_decoding_message_size(MAX_TASK_REQUEST_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let node = NodeServiceServer::new(Service::new(state, limits))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    transport()
        .add_service(node)
        .add_service(tasks)
        .add_service(automation)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// The transport's limits (tonic's defaults are all unbounded): per-connection handlers and
/// streams, a handler timeout, keepalive pings, and the header size.
fn transport() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(MAX_CONCURRENT_PER_CONNECTION)
        .load_shed(true)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .timeout(REQUEST_TIMEOUT)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
}

struct Service {
    state: GrpcState,
    limits: Limits,
    budget: VerifyBudget,
    subscriptions: Arc<Semaphore>,
}

impl Service {
    fn new(state: GrpcState, limits: Limits) -> Self {
        let budget =
            VerifyBudget::new(limits.verify_global, limits.verify_per_operator, Instant::now());
        let subscriptions = Arc::new(Semaphore::new(limits.max_subscriptions));
        Self { state, limits, budget, subscriptions }
    }

    /// A slot for one more subscription, or `RESOURCE_EXHAUSTED`.
    fn subscription_slot(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.subscriptions.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this node serves at most {} finalized-block subscriptions at once; retry later",
                self.limits.max_subscriptions
            ))
        })
    }
}

/// Converts the protobuf check-in; out-of-range fields are refused, never truncated.
pub fn signed_from_proto(request: pb::CheckinRequest) -> Result<SignedCheckin, Status> {
    let c = request.checkin.ok_or_else(|| Status::invalid_argument("checkin is missing"))?;
    let address: [u8; 20] = c
        .address
        .as_slice()
        .try_into()
        .map_err(|_| Status::invalid_argument("address must be 20 bytes"))?;
    if c.version.len() > MAX_VERSION_BYTES {
        return Err(Status::invalid_argument(format!(
            "version is longer than {MAX_VERSION_BYTES} bytes"
        )));
    }
    let version = avs_consensus::types::byte_list(c.version.as_bytes())
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let metrics_port = u16::try_from(c.metrics_port)
        .map_err(|_| Status::invalid_argument("metrics_port must fit in 16 bits"))?;
    let signature = request
        .signature
        .try_into()
        .map_err(|_| Status::invalid_argument("signature must be 96 bytes"))?;
    Ok(SignedCheckin {
        message: Checkin {
            address,
            version,
            metrics_port,
            finalized_height: c.finalized_height,
            events_seen: c.events_seen,
            is_aggregator: c.is_aggregator,
            timestamp_ms: c.timestamp_ms,
        },
        signature,
    })
}

/// The protobuf form of a signed check-in (what the client mode sends).
pub fn signed_to_proto(signed: &SignedCheckin) -> pb::CheckinRequest {
    let c = &signed.message;
    pb::CheckinRequest {
        checkin: Some(pb::Checkin {
            address: c.address.to_vec(),
            version: String::from_utf8_lossy(c.version.as_ref()).into_owned(),
            metrics_port: u32::from(c.metrics_port),
            finalized_height: c.finalized_height,
            events_seen: c.events_seen,
            is_aggregator: c.is_aggregator,
            timestamp_ms: c.timestamp_ms,
        }),
        signature: signed.signature.to_vec(),
    }
}

fn refusal(e: PoolError) -> Status {
    match e {
        PoolError::Refused(e) => match e {
            CheckinError::Malformed(_) => Status::invalid_argument(e.to_string()),
            CheckinError::UnknownOperator(_) => Status::permission_denied(e.to_string()),
            CheckinError::BadSignature(_) => Status::unauthenticated(e.to_string()),
            // The node already holds this operator's check-in, or one at most half a period
            // older: for a client, delivered.
            CheckinError::Replayed { .. } | CheckinError::TooSoon { .. } => {
                Status::already_exists(e.to_string())
            }
            CheckinError::Stale { .. } | CheckinError::Future { .. } => {
                Status::failed_precondition(e.to_string())
            }
        },
        PoolError::NoOperatorSet | PoolError::EpochMoved { .. } => {
            Status::unavailable(e.to_string())
        }
        PoolError::Store(_) | PoolError::Encoding(_) => {
            tracing::warn!(error = %e, "recording a gRPC check-in failed");
            Status::internal("cannot record the check-in")
        }
    }
}

fn finalized_to_proto(event: &FinalizedEvent) -> Result<pb::FinalizedBlock, Status> {
    let direct = event.certificate.data.block_root == event.root;
    Ok(pb::FinalizedBlock {
        height: event.block.height.get(),
        epoch: event.certificate.data.epoch.get(),
        view: if direct { event.certificate.data.view.get() } else { 0 },
        root: event.root.to_vec(),
        parent_root: event.block.parent_root.to_vec(),
        block_ssz: encode(&event.block).map_err(|e| Status::internal(e.to_string()))?,
        certificate_ssz: encode(&event.certificate).map_err(|e| Status::internal(e.to_string()))?,
    })
}

fn stored_to_proto(root: Root, block: &Block) -> anyhow::Result<pb::FinalizedBlock> {
    // Replayed from the store: the proving certificate is not indexed by height, so only the
    // block is sent (its finality is this node's word; live blocks carry the certificate).
    Ok(pb::FinalizedBlock {
        height: block.height.get(),
        epoch: 0,
        view: 0,
        root: root.to_vec(),
        parent_root: block.parent_root.to_vec(),
        block_ssz: encode(block)?,
        certificate_ssz: Vec::new(),
    })
}

#[tonic::async_trait]
impl NodeService for Service {
    async fn checkin(
        &self,
        request: Request<pb::CheckinRequest>,
    ) -> Result<Response<pb::CheckinResponse>, Status> {
        let observed = Observed::Grpc { remote: request.remote_addr() };
        let signed = signed_from_proto(request.into_inner())?;
        let pool = self.state.pool.clone();
        let now = crate::node::now_ms();
        // The cheap checks first (fresh, a member, not a replay, not too soon): what they
        // refuse costs neither budget nor pairing.
        pool.precheck(&signed, now).map_err(refusal)?;
        self.budget
            .try_take(signed.message.address, Instant::now())
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        // One pairing check: off the async workers.
        let row = tokio::task::spawn_blocking(move || pool.accept(&signed, &observed, now))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(refusal)?;
        Ok(Response::new(pb::CheckinResponse { recorded_at_ms: row.last_ping_ms }))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, Status> {
        let s = self.state.status.borrow().clone();
        let root = s.finalized_root.strip_prefix("0x").unwrap_or(&s.finalized_root);
        let now = crate::node::now_ms();
        Ok(Response::new(pb::Status {
            epoch: s.epoch,
            view: s.view,
            finalized_height: s.finalized_height,
            finalized_root: hex::decode(root).unwrap_or_default(),
            peers: u32::try_from(s.peers).unwrap_or(u32::MAX),
            is_aggregator: s.is_aggregator,
            seconds_since_last_certificate: s
                .last_certificate_ms
                .map(|at| now.saturating_sub(at) / 1000),
        }))
    }

    async fn list_operators(
        &self,
        _request: Request<pb::ListOperatorsRequest>,
    ) -> Result<Response<pb::ListOperatorsResponse>, Status> {
        let operators = self
            .state
            .pool
            .rows(crate::node::now_ms())
            .into_iter()
            .map(|v| pb::OperatorRow {
                address: hex::decode(v.row.address.trim_start_matches("0x")).unwrap_or_default(),
                remote_ip: v.row.remote_ip,
                last_ping_ms: v.row.last_ping_ms,
                version: v.row.version,
                metrics_port: u32::from(v.row.metrics_port),
                block_number: v.row.block_number,
                event_count: v.row.event_count,
                peer_id: v.row.peer_id,
                voting_power: v.row.voting_power,
                is_aggregator: v.row.is_aggregator,
                status: v.status.as_str().to_owned(),
                uptime_percent: v.uptime_percent,
                missed_checkins: v.missed_checkins,
            })
            .collect();
        Ok(Response::new(pb::ListOperatorsResponse { operators }))
    }

    type SubscribeFinalizedStream = ReceiverStream<StreamItem>;

    async fn subscribe_finalized(
        &self,
        request: Request<pb::SubscribeFinalizedRequest>,
    ) -> Result<Response<Self::SubscribeFinalizedStream>, Status> {
        let slot = self.subscription_slot()?;
        // Subscribe before reading the head, so nothing finalized in between is missed.
        let live = self.state.finalized.subscribe();
        let head = self.state.status.borrow().finalized_height;
        let asked = request.into_inner().from_height;
        let from = asked.unwrap_or(head.saturating_add(1));
        if asked.is_some() {
            let chain = self.state.chain.clone();
            let floor = tokio::task::spawn_blocking(move || chain.history_floor())
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::internal(format!("cannot read the history floor: {e:#}")))?;
            if let Some(floor) = floor.filter(|&floor| from < floor.get()) {
                return Err(Status::out_of_range(format!(
                    "blocks below height {floor} are pruned on this node (--history-blocks); \
                     subscribe from {floor} or ask a node that keeps every block"
                )));
            }
        }
        let (sink, rx) = Sink::new(self.limits.subscriber_backlog, self.limits.subscriber_stall);
        let chain = self.state.chain.clone();
        tokio::spawn(async move {
            stream_finalized(chain, live, from, head, sink).await;
            // The subscription's slot is free once its task is done.
            drop(slot);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type StreamItem = Result<pb::FinalizedBlock, Status>;

/// Why a subscription ended.
#[derive(Debug)]
enum End {
    /// The subscriber went away.
    Gone,
    /// The subscriber left a full backlog unread for the whole stall period.
    Stalled {
        next: u64,
    },
    /// The subscriber fell further behind the live feed than the feed keeps.
    Lagged {
        missed: u64,
        next: u64,
    },
    /// The node's finalization feed closed: it is shutting down.
    FeedClosed,
    Failed(Status),
}

/// The task's end of one subscription: at most `backlog` blocks wait unread in it, and one
/// more slot is always kept free for the status that closes the stream, so that a subscriber
/// that stopped reading is still told why it was dropped.
struct Sink {
    tx: mpsc::Sender<StreamItem>,
    backlog: usize,
    stall: Duration,
}

impl Sink {
    fn new(backlog: usize, stall: Duration) -> (Self, mpsc::Receiver<StreamItem>) {
        let backlog = backlog.max(1);
        let (tx, rx) = mpsc::channel(backlog.saturating_add(1));
        (Self { tx, backlog, stall }, rx)
    }

    /// Queues one block once the backlog has room (two free slots: the block's and the one
    /// kept for the closing status). A subscriber that makes no room for `stall` is dropped.
    async fn send(&self, block: pb::FinalizedBlock) -> Result<(), End> {
        let height = block.height;
        match tokio::time::timeout(self.stall, self.tx.reserve_many(2)).await {
            Ok(Ok(mut permits)) => {
                if let Some(permit) = permits.next() {
                    permit.send(Ok(block));
                }
                Ok(())
            }
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Stalled { next: height }),
        }
    }

    /// Ends the stream, with a status saying why unless the subscriber is gone.
    fn close(self, end: End) {
        let status = match end {
            End::Gone => return,
            End::Stalled { next } => Status::resource_exhausted(format!(
                "subscriber left {} blocks unread for {} s and was dropped; resubscribe with \
                 from_height = {next}",
                self.backlog,
                self.stall.as_secs()
            )),
            End::Lagged { missed, next } => Status::resource_exhausted(format!(
                "subscriber fell {missed} blocks behind; resubscribe with from_height = {next}"
            )),
            End::FeedClosed => Status::unavailable("the node is shutting down"),
            End::Failed(status) => status,
        };
        // Fits: `send` always leaves a slot free, and only this task sends.
        let _ = self.tx.try_send(Err(status));
    }
}

/// One subscription: history from the store (`from..=head`), then the live feed.
async fn stream_finalized(
    chain: ChainStore,
    live: broadcast::Receiver<Arc<FinalizedEvent>>,
    from: u64,
    head: u64,
    sink: Sink,
) {
    let end = match replay(&chain, from, head, &sink).await {
        Ok(next) => follow(live, next, &sink).await,
        Err(end) => end,
    };
    sink.close(end);
}

/// Sends the stored finalized blocks `from..=head` a page at a time, as fast as the subscriber
/// takes them. Returns the next height to send; a gap (pruned, or not yet written) ends the
/// replay early and the live feed takes over.
async fn replay(chain: &ChainStore, from: u64, head: u64, sink: &Sink) -> Result<u64, End> {
    let mut next = from;
    while next <= head {
        let reader = chain.clone();
        let page = tokio::task::spawn_blocking(move || read_page(&reader, next, head))
            .await
            .map_err(|e| End::Failed(Status::internal(e.to_string())))?
            .map_err(|e| {
                End::Failed(Status::internal(format!("cannot read finalized blocks: {e:#}")))
            })?;
        let Some(last) = page.last().map(|block| block.height) else { break };
        for block in page {
            sink.send(block).await?;
        }
        next = last.saturating_add(1);
    }
    Ok(next)
}

/// One page of a replay: finalized blocks from `from` (at most to `head`), ending at the first
/// gap, after [`REPLAY_PAGE_BLOCKS`] blocks or once [`REPLAY_PAGE_BYTES`] were read. Only one
/// page of a subscription's history is in memory at a time, whatever `from_height` asked for.
/// The roots come from the finalized index, so nothing is re-hashed.
fn read_page(chain: &ChainStore, from: u64, head: u64) -> anyhow::Result<Vec<pb::FinalizedBlock>> {
    let last = head.min(from.saturating_add(REPLAY_PAGE_BLOCKS - 1));
    let mut page = Vec::new();
    let mut bytes = 0usize;
    for height in from..=last {
        let Some(root) = chain.finalized_root(Height::new(height))? else { break };
        let Some(block) = chain.block(&root)? else { break };
        anyhow::ensure!(
            block.height.get() == height,
            "the finalized index at height {height} names a block of height {}",
            block.height
        );
        let message = stored_to_proto(root, &block)?;
        bytes = bytes.saturating_add(message.block_ssz.len());
        page.push(message);
        if bytes >= REPLAY_PAGE_BYTES {
            break;
        }
    }
    Ok(page)
}

/// Follows the live feed, sending blocks from height `next` on, until the subscriber goes
/// away or falls behind.
async fn follow(
    mut live: broadcast::Receiver<Arc<FinalizedEvent>>,
    mut next: u64,
    sink: &Sink,
) -> End {
    loop {
        let event = tokio::select! {
            () = sink.tx.closed() => return End::Gone,
            event = live.recv() => event,
        };
        match event {
            Ok(event) if event.block.height.get() >= next => {
                let block = match finalized_to_proto(&event) {
                    Ok(block) => block,
                    Err(status) => return End::Failed(status),
                };
                if let Err(end) = sink.send(block).await {
                    return end;
                }
                next = event.block.height.next().get();
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                return End::Lagged { missed, next };
            }
            Err(broadcast::error::RecvError::Closed) => return End::FeedClosed,
        }
    }
}
