//! The embedded stake source: a deterministic, scripted L1/L2 stake schedule.
//!
//! Both chains are simulated from a JSON file: block `n` of a chain is produced at
//! `start_ms + n * block_ms`, its hash is `sha256("avs-embedded-chain" || chain || n)`, and an
//! operator's power at block `n` is the last step of its schedule at or before `n` (zero
//! before its first step). Every node given the same file reads the same chains, so the
//! devnet and the tests can script stake changes and registrations; a node given a different
//! file plays an attester whose chain source disagrees.
//!
//! ```json
//! {
//!   "start_ms": 1767225600000, "l1_block_ms": 1000, "l2_block_ms": 1000,
//!   "operators": [
//!     { "address": "0x…", "bls_pubkey": "0x…", "pop": "0x…",
//!       "l1": [{ "from_block": 0, "power": 100 }, { "from_block": 20, "power": 500 }],
//!       "l2": [{ "from_block": 0, "power": 100 }] }
//!   ]
//! }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::source::{
    Chain, ChainSnapshot, Heads, RegisteredOperator, SourceError, SourceFuture, StakeSource,
};
use crate::update::ChainBlock;

/// The schedule file, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StakeSchedule {
    /// Unix milliseconds of block 0 of both chains.
    pub start_ms: u64,
    pub l1_block_ms: u64,
    pub l2_block_ms: u64,
    pub operators: Vec<ScheduledOperator>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledOperator {
    pub address: String,
    pub bls_pubkey: String,
    pub pop: String,
    /// Stake on L1 (the truth), by block.
    #[serde(default)]
    pub l1: Vec<Step>,
    /// Power recorded on L2, by block.
    #[serde(default)]
    pub l2: Vec<Step>,
}

/// From `from_block` on (until the next step), the power is `power`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub from_block: u64,
    pub power: u64,
}

/// Why a schedule file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cannot read stake schedule {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("stake schedule {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("stake schedule: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
struct Parsed {
    address: [u8; 20],
    pubkey: Vec<u8>,
    pop: Vec<u8>,
    l1: Vec<Step>,
    l2: Vec<Step>,
}

impl StakeSchedule {
    pub fn load(path: &Path) -> Result<Self, ScheduleError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScheduleError::Read { path: path.display().to_string(), source })?;
        serde_json::from_str(&text).map_err(|e| ScheduleError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, format!("{json}\n"))
    }

    fn parse(&self) -> Result<Vec<Parsed>, ScheduleError> {
        if self.l1_block_ms == 0 || self.l2_block_ms == 0 {
            return Err(ScheduleError::Invalid("block times must be positive".into()));
        }
        let mut seen = HashSet::new();
        self.operators
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let field = |name: &str| format!("operators[{i}].{name}");
                let address: [u8; 20] = hex_bytes(&op.address, 20, &field("address"))?
                    .try_into()
                    .map_err(|_| ScheduleError::Invalid(field("address")))?;
                if !seen.insert(address) {
                    return Err(ScheduleError::Invalid(format!(
                        "{} appears twice",
                        field("address")
                    )));
                }
                for (name, steps) in [("l1", &op.l1), ("l2", &op.l2)] {
                    if steps.windows(2).any(|w| w[0].from_block >= w[1].from_block) {
                        return Err(ScheduleError::Invalid(format!(
                            "{} steps must have increasing from_block",
                            field(name)
                        )));
                    }
                }
                Ok(Parsed {
                    address,
                    pubkey: hex_bytes(&op.bls_pubkey, 48, &field("bls_pubkey"))?,
                    pop: hex_bytes(&op.pop, 96, &field("pop"))?,
                    l1: op.l1.clone(),
                    l2: op.l2.clone(),
                })
            })
            .collect()
    }
}

fn hex_bytes(text: &str, len: usize, field: &str) -> Result<Vec<u8>, ScheduleError> {
    let bytes = hex::decode(text.strip_prefix("0x").unwrap_or(text))
        .map_err(|e| ScheduleError::Invalid(format!("{field}: {e}")))?;
    if bytes.len() != len {
        return Err(ScheduleError::Invalid(format!(
            "{field}: expected {len} bytes, got {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Unix milliseconds now; injected so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The embedded source over a validated schedule.
pub struct EmbeddedSource {
    start_ms: u64,
    l1_block_ms: u64,
    l2_block_ms: u64,
    operators: Vec<Parsed>,
    confirmations: u64,
    now: Clock,
}

impl std::fmt::Debug for EmbeddedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedSource")
            .field("start_ms", &self.start_ms)
            .field("operators", &self.operators.len())
            .field("confirmations", &self.confirmations)
            .finish()
    }
}

impl EmbeddedSource {
    pub fn new(
        schedule: &StakeSchedule,
        confirmations: u64,
        now: Clock,
    ) -> Result<Self, ScheduleError> {
        Ok(Self {
            start_ms: schedule.start_ms,
            l1_block_ms: schedule.l1_block_ms,
            l2_block_ms: schedule.l2_block_ms,
            operators: schedule.parse()?,
            confirmations,
            now,
        })
    }

    fn head(&self, chain: Chain) -> u64 {
        let block_ms = match chain {
            Chain::L1 => self.l1_block_ms,
            Chain::L2 => self.l2_block_ms,
        };
        let elapsed = (self.now)().saturating_sub(self.start_ms);
        elapsed.checked_div(block_ms).unwrap_or(0).saturating_sub(self.confirmations)
    }

    /// The hash of block `number` of an embedded chain.
    pub fn block_hash(chain: Chain, number: u64) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"avs-embedded-chain");
        h.update(chain.name().as_bytes());
        h.update(number.to_le_bytes());
        h.finalize().into()
    }

    fn snapshot_now(&self, chain: Chain, number: u64) -> Result<ChainSnapshot, SourceError> {
        let head = self.head(chain);
        if number > head {
            return Err(SourceError::NotReached { chain: chain.name(), number, head });
        }
        let mut operators = BTreeMap::new();
        for op in &self.operators {
            let steps = match chain {
                Chain::L1 => &op.l1,
                Chain::L2 => &op.l2,
            };
            let power =
                steps.iter().take_while(|s| s.from_block <= number).last().map_or(0, |s| s.power);
            if power > 0 {
                let (pubkey, pop) = match chain {
                    Chain::L1 => (op.pubkey.clone(), op.pop.clone()),
                    Chain::L2 => (Vec::new(), Vec::new()),
                };
                operators.insert(
                    op.address,
                    RegisteredOperator { address: op.address, pubkey, pop, power },
                );
            }
        }
        Ok(ChainSnapshot {
            block: ChainBlock { number, hash: Self::block_hash(chain, number) },
            operators,
        })
    }
}

impl StakeSource for EmbeddedSource {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn heads(&self) -> SourceFuture<'_, Heads> {
        let heads = Heads { l1: self.head(Chain::L1), l2: self.head(Chain::L2) };
        Box::pin(async move { Ok(heads) })
    }

    fn snapshot(&self, chain: Chain, number: u64) -> SourceFuture<'_, ChainSnapshot> {
        let result = self.snapshot_now(chain, number);
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn schedule() -> StakeSchedule {
        let reg = crate::test_support::registered(1, 100);
        StakeSchedule {
            start_ms: 1_000_000,
            l1_block_ms: 1000,
            l2_block_ms: 500,
            operators: vec![ScheduledOperator {
                address: format!("0x{}", hex::encode(reg.address)),
                bls_pubkey: format!("0x{}", hex::encode(&reg.pubkey)),
                pop: format!("0x{}", hex::encode(&reg.pop)),
                l1: vec![Step { from_block: 0, power: 100 }, Step { from_block: 20, power: 500 }],
                l2: vec![Step { from_block: 5, power: 100 }],
            }],
        }
    }

    #[test]
    fn heads_follow_time_minus_confirmations_and_powers_follow_the_steps() {
        let now = Arc::new(AtomicU64::new(1_000_000 + 30_500));
        let clock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::Relaxed)) as Clock
        };
        let source = EmbeddedSource::new(&schedule(), 2, clock).unwrap();
        assert_eq!(source.head(Chain::L1), 28);
        assert_eq!(source.head(Chain::L2), 59);
        let power = |chain, n| {
            source.snapshot_now(chain, n).unwrap().operators.values().next().map(|o| o.power)
        };
        assert_eq!(power(Chain::L1, 19), Some(100));
        assert_eq!(power(Chain::L1, 20), Some(500));
        assert_eq!(power(Chain::L2, 4), None);
        assert_eq!(power(Chain::L2, 5), Some(100));
        assert!(matches!(
            source.snapshot_now(Chain::L1, 29),
            Err(SourceError::NotReached { head: 28, .. })
        ));
        now.store(1_000_000 + 31_000, Ordering::Relaxed);
        assert!(source.snapshot_now(Chain::L1, 29).is_ok());
        assert_ne!(
            EmbeddedSource::block_hash(Chain::L1, 3),
            EmbeddedSource::block_hash(Chain::L2, 3)
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_the_field_named() {
        let mut s = schedule();
        s.operators[0].l1.reverse();
        let err = EmbeddedSource::new(&s, 0, Arc::new(|| 0)).unwrap_err().to_string();
        assert!(err.contains("operators[0].l1"), "{err}");
        let mut s = schedule();
        s.operators[0].pop = "0x12".into();
        let err = EmbeddedSource::new(&s, 0, Arc::new(|| 0)).unwrap_err().to_string();
        assert!(err.contains("operators[0].pop"), "{err}");
        let mut s = schedule();
        s.operators.push(s.operators[0].clone());
        assert!(EmbeddedSource::new(&s, 0, Arc::new(|| 0)).is_err());
        let mut s = schedule();
        s.l1_block_ms = 0;
        assert!(EmbeddedSource::new(&s, 0, Arc::new(|| 0)).is_err());
    }
}
