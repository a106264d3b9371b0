//! Client mode: send this node's signed check-ins to a remote node's gRPC `Checkin`
//! (`--checkin-remote`), for operators whose node is outside the gossip mesh.
//!
//! A failed check-in is kept and retried, not dropped: after a failure the worker waits
//! [`Backoff`] (exponential from 1 s to 60 s, with jitter so that many clients do not retry in
//! step) and sends the pending check-in again, re-signed with the current state only when it is
//! about to go stale. The connection is rebuilt after transport errors. The backoff resets only
//! after the remote has been healthy for [`HEALTHY_PERIOD`], so a flapping remote is not hit at
//! full rate. Logging: one warning when failures start, then at most one summary per
//! [`LOG_EVERY`], and one line when check-ins resume.

use std::time::Duration;

use avs_proto::v1::node_service_client::NodeServiceClient;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use super::signed_to_proto;
use crate::pool::checkin::MAX_AGE_MS;
use crate::pool::{CHECKIN_PERIOD, CheckinSigner, SignedCheckin};

pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Successes for this long reset the backoff.
pub const HEALTHY_PERIOD: Duration = Duration::from_secs(30);
/// At most one failure summary per this period.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// Exponential backoff with "equal jitter": the n-th consecutive failure waits a uniformly
/// random time in `[d/2, d]` with `d = min(BACKOFF_MAX, BACKOFF_MIN * 2^(n-1))`, never less
/// than [`BACKOFF_MIN`].
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
    healthy_since: Option<Instant>,
}

impl Backoff {
    /// The ceiling of the next wait (before jitter) after one more failure.
    fn ceiling(failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(16);
        BACKOFF_MIN.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
    }

    /// Records a failure and returns how long to wait before retrying. `random` is any
    /// uniformly random `u64` (a parameter so that tests are deterministic).
    pub fn on_failure(&mut self, random: u64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.healthy_since = None;
        let ceiling = Self::ceiling(self.failures);
        let half = ceiling / 2;
        let span = u64::try_from(ceiling.saturating_sub(half).as_millis()).unwrap_or(u64::MAX);
        let jitter = Duration::from_millis(random.checked_rem(span.saturating_add(1)).unwrap_or(0));
        half.saturating_add(jitter).clamp(BACKOFF_MIN, BACKOFF_MAX)
    }

    /// Records a success at `now`; the failure count resets once successes have lasted
    /// [`HEALTHY_PERIOD`].
    pub fn on_success(&mut self, now: Instant) {
        let since = *self.healthy_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= HEALTHY_PERIOD {
            self.failures = 0;
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // Jitter only: if the OS cannot give randomness, no jitter is still correct.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Whether the remote recorded the check-in (or had already recorded it: a lost response).
fn delivered(result: &Result<(), tonic::Status>) -> bool {
    match result {
        Ok(()) => true,
        Err(status) => status.code() == Code::AlreadyExists,
    }
}

/// Sends this node's check-ins to `url` every period until `shutdown`.
pub async fn run_checkin_client(url: String, signer: CheckinSigner, shutdown: CancellationToken) {
    let endpoint = Endpoint::from_shared(url.clone());
    // Logs name the remote by its origin only: a path or query may carry a credential.
    let url = crate::config::url_origin(&url);
    let endpoint = match endpoint {
        Ok(e) => e.connect_timeout(RPC_TIMEOUT).timeout(RPC_TIMEOUT),
        Err(e) => {
            tracing::error!(%url, error = %e, "--checkin-remote is not a valid URL; client mode off");
            return;
        }
    };
    tracing::info!(%url, "sending check-ins to a remote node");
    let mut client: Option<NodeServiceClient<Channel>> = None;
    let mut backoff = Backoff::default();
    let mut pending: Option<SignedCheckin> = None;
    let mut failing_since_log: u64 = 0;
    let mut last_warn: Option<Instant> = None;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let now_ms = crate::node::now_ms();
        // The pending check-in is retried as is, unless it would be refused as stale by the
        // time it arrives: then the current state, freshly signed, supersedes it.
        let checkin = match pending.take() {
            Some(p) if p.message.timestamp_ms.saturating_add(MAX_AGE_MS / 2) > now_ms => p,
            _ => match signer.sign_at(now_ms) {
                Ok(signed) => signed,
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign this node's check-in");
                    wait = CHECKIN_PERIOD;
                    continue;
                }
            },
        };
        let result = send(&endpoint, &mut client, &checkin).await;
        if delivered(&result) {
            backoff.on_success(Instant::now());
            if failing_since_log > 0 || last_warn.is_some() {
                tracing::info!(%url, "check-ins to the remote node resumed");
            }
            failing_since_log = 0;
            last_warn = None;
            wait = CHECKIN_PERIOD;
            continue;
        }
        let error =
            result.err().map(|s| format!("{}: {}", s.code(), s.message())).unwrap_or_default();
        pending = Some(checkin);
        wait = backoff.on_failure(random_u64());
        failing_since_log = failing_since_log.saturating_add(1);
        let due = last_warn.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if due {
            tracing::warn!(
                %url,
                %error,
                failures = failing_since_log,
                retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "check-in to the remote node failed; retrying with backoff"
            );
            last_warn = Some(Instant::now());
            failing_since_log = 0;
        } else {
            tracing::debug!(%url, %error, "check-in to the remote node failed");
        }
    }
}

async fn send(
    endpoint: &Endpoint,
    client: &mut Option<NodeServiceClient<Channel>>,
    checkin: &SignedCheckin,
) -> Result<(), tonic::Status> {
    let c = match client {
        Some(c) => c,
        None => {
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| tonic::Status::unavailable(format!("connect: {e}")))?;
            client.insert(NodeServiceClient::new(channel))
        }
    };
    match c.checkin(signed_to_proto(checkin)).await {
        Ok(_) => Ok(()),
        Err(status) => {
            if matches!(status.code(), Code::Unavailable | Code::Unknown | Code::DeadlineExceeded) {
                // Transport trouble: reconnect next time.
                *client = None;
            }
            Err(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_bounds_with_jitter() {
        let mut b = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let low = b.clone().on_failure(0);
            let high = b.clone().on_failure(u64::MAX - 1);
            let max = b.on_failure(u64::MAX);
            for wait in [low, high, max] {
                assert!((BACKOFF_MIN..=BACKOFF_MAX).contains(&wait), "{wait:?}");
            }
            ceilings.push(Backoff::ceiling(b.failures()));
        }
        let secs: Vec<u64> = ceilings.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        // Jitter spreads the wait over [d/2, d].
        let mut b = Backoff { failures: 4, healthy_since: None };
        let waits: Vec<Duration> =
            [0, 1_000, 4_000].iter().map(|&r| b.clone().on_failure(r)).collect();
        assert_eq!(waits[0], Duration::from_secs(8));
        assert_eq!(waits[1], Duration::from_secs(9));
        assert_eq!(waits[2], Duration::from_secs(12));
        b.on_failure(0);
        assert_eq!(b.failures(), 5);
    }

    #[test]
    fn backoff_resets_only_after_a_healthy_period() {
        let start = Instant::now();
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.on_failure(0);
        }
        b.on_success(start);
        b.on_success(start + HEALTHY_PERIOD / 2);
        assert_eq!(b.failures(), 5, "one success is not a healthy period");
        // A failure in between restarts the healthy period.
        b.on_failure(0);
        b.on_success(start + HEALTHY_PERIOD);
        assert_eq!(b.failures(), 6);
        b.on_success(start + HEALTHY_PERIOD * 2);
        assert_eq!(b.failures(), 0);
        assert_eq!(b.on_failure(u64::MAX), BACKOFF_MIN);
    }

    #[test]
    fn a_check_in_the_remote_already_holds_counts_as_delivered() {
        assert!(delivered(&Ok(())));
        assert!(delivered(&Err(tonic::Status::already_exists("replayed"))));
        assert!(!delivered(&Err(tonic::Status::unavailable("down"))));
        assert!(!delivered(&Err(tonic::Status::unauthenticated("bad signature"))));
    }
}
