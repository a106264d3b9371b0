//! The node's gRPC services (tonic): `avs.node.v1.NodeService` plus server reflection, served
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
//! [`client`] is the other direction: the worker that sends this node's check-ins to a remote
//! node's `Checkin`, with backoff.

pub mod client;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use avs_consensus::types::{Block, Root, encode};
use avs_proto::v1 as pb;
use avs_proto::v1::node_service_server::{NodeService, NodeServiceServer};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::codegen::tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

use crate::chain_store::ChainStore;
use crate::pool::checkin::MAX_VERSION_BYTES;
use crate::pool::{Checkin, CheckinError, Observed, OperatorPool, PoolError, SignedCheckin};
use crate::status::NodeStatus;

/// Finalized blocks kept for slow stream subscribers before they are told they lagged.
pub const FINALIZED_FEED_CAPACITY: usize = 256;
/// Requests one connection may have in flight.
const MAX_CONCURRENT_PER_CONNECTION: usize = 32;
/// Blocks a stream sends from the store per read while replaying history.
const REPLAY_BATCH: u64 = 64;

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
}

/// Binds the gRPC listener; a clear error names the flag to change.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot bind the gRPC services to {addr}: {e}; choose another --grpc-port")
    })
}

/// Serves `NodeService` and reflection until `shutdown` is cancelled, then drains.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: GrpcState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "gRPC services listening");
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(avs_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    tonic::transport::Server::builder()
        // Each check-in costs a pairing check: one client cannot hold more than this many.
        .concurrency_limit_per_connection(MAX_CONCURRENT_PER_CONNECTION)
        .add_service(NodeServiceServer::new(Service { state }))
        .add_service(reflection)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}

struct Service {
    state: GrpcState,
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
            CheckinError::Replayed { .. } => Status::already_exists(e.to_string()),
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
        height: event.block.height,
        epoch: event.certificate.data.epoch,
        view: if direct { event.certificate.data.view } else { 0 },
        root: event.root.to_vec(),
        parent_root: event.block.parent_root.to_vec(),
        block_ssz: encode(&event.block).map_err(|e| Status::internal(e.to_string()))?,
        certificate_ssz: encode(&event.certificate).map_err(|e| Status::internal(e.to_string()))?,
    })
}

fn stored_to_proto(root: Root, block: &Block) -> Result<pb::FinalizedBlock, Status> {
    // Replayed from the store: the proving certificate is not indexed by height, so only the
    // block is sent (its finality is this node's word; live blocks carry the certificate).
    Ok(pb::FinalizedBlock {
        height: block.height,
        epoch: 0,
        view: 0,
        root: root.to_vec(),
        parent_root: block.parent_root.to_vec(),
        block_ssz: encode(block).map_err(|e| Status::internal(e.to_string()))?,
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
            })
            .collect();
        Ok(Response::new(pb::ListOperatorsResponse { operators }))
    }

    type SubscribeFinalizedStream = ReceiverStream<Result<pb::FinalizedBlock, Status>>;

    async fn subscribe_finalized(
        &self,
        request: Request<pb::SubscribeFinalizedRequest>,
    ) -> Result<Response<Self::SubscribeFinalizedStream>, Status> {
        // Subscribe before reading the head, so nothing finalized in between is missed.
        let live = self.state.finalized.subscribe();
        let head = self.state.status.borrow().finalized_height;
        let from = request.into_inner().from_height.unwrap_or(head.saturating_add(1));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(stream_finalized(self.state.chain.clone(), live, from, head, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type StreamTx = mpsc::Sender<Result<pb::FinalizedBlock, Status>>;

async fn stream_finalized(
    chain: ChainStore,
    mut live: broadcast::Receiver<Arc<FinalizedEvent>>,
    from: u64,
    head: u64,
    tx: StreamTx,
) {
    let mut next = from;
    while next <= head {
        let chain2 = chain.clone();
        let batch = tokio::task::spawn_blocking(move || {
            let blocks = chain2.finalized_range(next, REPLAY_BATCH)?;
            blocks
                .into_iter()
                .map(|b| Ok((b.root()?, b)))
                .collect::<anyhow::Result<Vec<(Root, Block)>>>()
        })
        .await;
        let blocks = match batch {
            Ok(Ok(blocks)) if !blocks.is_empty() => blocks,
            // A gap (pruned, or not yet written): continue from the live feed.
            Ok(Ok(_)) => break,
            Ok(Err(e)) => {
                let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                return;
            }
        };
        for (root, block) in blocks {
            next = block.height.saturating_add(1);
            if tx.send(stored_to_proto(root, &block)).await.is_err() {
                return;
            }
        }
    }
    loop {
        let event = tokio::select! {
            () = tx.closed() => return,
            event = live.recv() => event,
        };
        match event {
            Ok(event) if event.block.height >= next => {
                next = event.block.height.saturating_add(1);
                if tx.send(finalized_to_proto(&event)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let message = format!(
                    "subscriber fell {n} blocks behind; resubscribe with from_height = {next}"
                );
                let _ = tx.send(Err(Status::resource_exhausted(message))).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
