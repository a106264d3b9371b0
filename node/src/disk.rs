//! Free space on the data directory's filesystem.
//!
//! A full disk makes the store's next write fail and the node stop; that is safe (an own vote
//! is never sent before it is stored) but abrupt. This is the warning before it: the free
//! space is exported as `avs_node_disk_free_bytes`, a node refuses to start with less than
//! `--min-free-disk-mib`, and while running below it logs an error every
//! [`DiskWatch::ERROR_EVERY`] and answers unhealthy on `/lean/v0/health`, naming the directory
//! and what to do.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

const MIB: u64 = 1024 * 1024;

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The last free-space reading of a directory and the minimum it must keep. Shared between the
/// watcher task and the health route.
#[derive(Debug)]
pub struct DiskWatch {
    path: PathBuf,
    min_bytes: u64,
    /// The last reading; `u64::MAX` until the first.
    free: AtomicU64,
}

impl DiskWatch {
    /// How often the free space is read.
    pub const PERIOD: Duration = Duration::from_secs(10);
    /// How often a low-space error is logged while it lasts.
    pub const ERROR_EVERY: Duration = Duration::from_secs(60);

    pub fn new(path: PathBuf, min_free_mib: u64) -> Self {
        Self { path, min_bytes: min_free_mib.saturating_mul(MIB), free: AtomicU64::new(u64::MAX) }
    }

    /// Reads the free space now and remembers it.
    pub fn read(&self) -> std::io::Result<u64> {
        let free = free_bytes(&self.path)?;
        self.free.store(free, Ordering::Relaxed);
        Ok(free)
    }

    /// Why the last reading is too low, or `None`.
    pub fn low(&self) -> Option<String> {
        let free = self.free.load(Ordering::Relaxed);
        (free < self.min_bytes).then(|| {
            format!(
                "only {} MiB free on the filesystem of {} (minimum {} MiB, --min-free-disk-mib): \
                 free space or move the data directory before the store fails and the node stops",
                free / MIB,
                self.path.display(),
                self.min_bytes / MIB
            )
        })
    }

    /// A fresh reading, refused when below the minimum: what `run` checks before opening the
    /// store.
    pub fn check_at_start(&self) -> anyhow::Result<u64> {
        let free = self
            .read()
            .with_context(|| format!("cannot read free space of {}", self.path.display()))?;
        if let Some(reason) = self.low() {
            anyhow::bail!("refusing to start: {reason}");
        }
        Ok(free)
    }

    /// Reads every [`Self::PERIOD`] into `gauge` until `shutdown`, logging an error at most
    /// every [`Self::ERROR_EVERY`] while the space is low.
    pub async fn watch(self: Arc<Self>, gauge: Gauge, shutdown: CancellationToken) {
        // The start-up check has just read it: the first reading here is one period later.
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + Self::PERIOD, Self::PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<Instant> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.read() {
                Ok(free) => {
                    gauge.set(i64::try_from(free).unwrap_or(i64::MAX));
                    match self.low() {
                        Some(reason)
                            if last_error.is_none_or(|at| at.elapsed() >= Self::ERROR_EVERY) =>
                        {
                            tracing::error!("{reason}");
                            last_error = Some(Instant::now());
                        }
                        Some(_) => {}
                        None if last_error.take().is_some() => {
                            tracing::info!(
                                free_mib = free / MIB,
                                "free disk space is back above the minimum"
                            );
                        }
                        None => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot read free disk space")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_free_space_and_refuses_below_the_minimum() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);

        let fine = DiskWatch::new(dir.path().to_owned(), 0);
        assert!(fine.check_at_start().is_ok());
        assert_eq!(fine.low(), None);

        // A minimum above what any filesystem here has: refused, with the path and the flag.
        let demanding = DiskWatch::new(dir.path().to_owned(), u64::MAX / MIB);
        let err = demanding.check_at_start().unwrap_err().to_string();
        assert!(err.contains("refusing to start"), "{err}");
        assert!(err.contains("--min-free-disk-mib"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(demanding.low().is_some());
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_pass() {
        let watch = DiskWatch::new(PathBuf::from("/nonexistent/avs-node-data"), 0);
        assert!(watch.check_at_start().is_err());
        assert_eq!(watch.low(), None, "no reading yet is not low");
    }
}
