//! The operator stream (docs/protocol.md, 7.5; issue 15, item 5): `SyncMessages` serves the
//! automation table's final changes in log order, then each new one; [`follow`] is the
//! client side for an operator outside the mesh: it keeps its place, reconnects with back-off
//! (to the next node of its list), resumes right after the last change it handled and acks
//! as it goes, so no change is lost or handled twice across a reconnect.

use std::sync::Arc;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use avs_proto::automation_v1 as pb;
use avs_proto::automation_v1::automation_service_client::AutomationServiceClient;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::Automation;
use super::example::{sign_in, with_token};

/// Changes read from the store per step.
const BATCH: usize = 256;
/// How often a caught-up stream looks for new changes.
const POLL: Duration = Duration::from_millis(200);
/// Reconnection back-off: first wait and cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// Sends `automation`'s logged changes from `from` on into `sink` until the receiver goes.
pub async fn serve(
    automation: Arc<Automation>,
    mut from: u64,
    sink: mpsc::Sender<Result<pb::SyncMessage, Status>>,
) {
    loop {
        let a = Arc::clone(&automation);
        let read = tokio::task::spawn_blocking(move || a.changes(from, BATCH)).await;
        let changes = match read {
            Ok(Ok(changes)) => changes,
            Ok(Err(e)) => {
                let _ = sink.send(Err(Status::internal(e.to_string()))).await;
                return;
            }
            Err(e) => {
                let _ = sink.send(Err(Status::internal(e.to_string()))).await;
                return;
            }
        };
        if changes.is_empty() {
            tokio::select! {
                () = sink.closed() => return,
                () = tokio::time::sleep(POLL) => continue,
            }
        }
        for change in changes {
            from = change.sequence.saturating_add(1);
            if sink.send(Ok(change)).await.is_err() {
                return;
            }
        }
    }
}

/// Follows the change log through `nodes` (gRPC URLs, tried in turn) as `wallet`, from after
/// `handled` (the last sequence handled; 0: from the first), calling `handle` once per change
/// in order and acking each; returns at `shutdown`. A stream that breaks is reopened after a
/// back-off (250 ms doubling to 8 s, reset by a change received), on the next node.
pub async fn follow(
    nodes: Vec<String>,
    wallet: PrivateKeySigner,
    mut handled: u64,
    mut handle: impl FnMut(pb::SyncMessage),
    shutdown: CancellationToken,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut turn = 0usize;
    loop {
        let Some(node) = nodes.get(turn % nodes.len().max(1)).cloned() else { return };
        turn = turn.wrapping_add(1);
        let session = async {
            let mut client = AutomationServiceClient::connect(node.clone()).await?;
            let token = sign_in(&mut client, &wallet).await?;
            let request = pb::SyncMessagesRequest { from_sequence: handled + 1 };
            let mut stream = client.sync_messages(with_token(&token, request)).await?.into_inner();
            while let Some(change) = stream.message().await? {
                if change.sequence <= handled {
                    continue; // Resent across a reconnect: handled already.
                }
                anyhow::ensure!(
                    change.sequence == handled + 1,
                    "{node} skipped from {handled} to {}",
                    change.sequence
                );
                handled = change.sequence;
                handle(change);
                backoff = BACKOFF_FIRST;
                let ack = pb::AckRequest { sequence: handled };
                client.ack(with_token(&token, ack)).await?;
            }
            anyhow::Ok(())
        };
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = session => outcome,
        };
        match outcome {
            Ok(()) => tracing::info!(%node, handled, "the change stream ended; reconnecting"),
            Err(e) => {
                tracing::warn!(%node, handled, error = %e, "the change stream broke; reconnecting")
            }
        }
        // Jitter: up to a quarter of the wait, from the clock's low bits.
        let jitter =
            Duration::from_millis(crate::node::now_ms() % (backoff.as_millis() as u64 / 4 + 1));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff + jitter) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
