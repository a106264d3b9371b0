//! Protocol timing derived from the genesis configuration: genesis in ms, slot duration,
//! interval, nullify timeout. Pure arithmetic with checked operations; the slot clock itself
//! (which interval a wall-clock time falls in) is `clock`.

use crate::error::ConsensusError;
use crate::types::GenesisConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub genesis_ms: u64,
    pub slot_ms: u64,
    pub interval_ms: u64,
    pub nullify_ms: u64,
}

impl Timing {
    pub fn new(
        genesis: &GenesisConfig,
        nullify_timeout_intervals: u64,
    ) -> Result<Self, ConsensusError> {
        let bad = |what: &str| ConsensusError::Config(what.to_string());
        // Same acceptance rules as the node's slot clock.
        crate::clock::SlotClock::new(
            genesis.genesis_time,
            genesis.slot_duration_ms,
            genesis.intervals_per_slot,
        )
        .map_err(|e| ConsensusError::Config(e.to_string()))?;
        let interval_ms = genesis
            .slot_duration_ms
            .checked_div(genesis.intervals_per_slot)
            .filter(|i| *i > 0)
            .ok_or_else(|| bad("slot shorter than one ms per interval"))?;
        if nullify_timeout_intervals == 0 {
            return Err(bad("nullify timeout must be at least one interval"));
        }
        Ok(Self {
            genesis_ms: genesis
                .genesis_time
                .checked_mul(1000)
                .ok_or_else(|| bad("genesis_time too large"))?,
            slot_ms: genesis.slot_duration_ms,
            interval_ms,
            nullify_ms: interval_ms
                .checked_mul(nullify_timeout_intervals)
                .ok_or_else(|| bad("nullify timeout too large"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let g = GenesisConfig {
            genesis_time: 10,
            slot_duration_ms: 4000,
            intervals_per_slot: 5,
            ..Default::default()
        };
        let t = Timing::new(&g, 3).unwrap();
        assert_eq!((t.genesis_ms, t.interval_ms, t.nullify_ms), (10_000, 800, 2400));
        assert!(Timing::new(&GenesisConfig::default(), 3).is_err());
        assert!(Timing::new(&g, 0).is_err());
        let huge = GenesisConfig { genesis_time: u64::MAX, ..g };
        assert!(Timing::new(&huge, 3).is_err());
    }
}
