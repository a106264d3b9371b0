//! Protocol timing derived from the genesis configuration: genesis in ms, slot duration,
//! interval, the view timeouts. Pure arithmetic with checked operations; the slot clock itself
//! (which interval a wall-clock time falls in) is `clock`.

use crate::error::ConsensusError;
use crate::types::GenesisConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub genesis_ms: u64,
    /// The slot duration, which is also the leader's block interval (rule 3).
    pub slot_ms: u64,
    pub interval_ms: u64,
    /// Rule 5: no valid proposal this long after the leader's pace.
    pub leader_timeout_ms: u64,
    /// Rule 5: no certificate this long after the leader's pace; also the pull period.
    pub advance_timeout_ms: u64,
}

impl Timing {
    pub fn new(
        genesis: &GenesisConfig,
        leader_timeout_ms: u64,
        advance_timeout_ms: u64,
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
        if leader_timeout_ms == 0 || advance_timeout_ms < leader_timeout_ms {
            return Err(bad("timeouts must satisfy 0 < leader timeout <= advance timeout"));
        }
        Ok(Self {
            genesis_ms: genesis
                .genesis_time
                .checked_mul(1000)
                .ok_or_else(|| bad("genesis_time too large"))?,
            slot_ms: genesis.slot_duration_ms,
            interval_ms,
            leader_timeout_ms,
            advance_timeout_ms,
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
        let t = Timing::new(&g, 1600, 2400).unwrap();
        assert_eq!((t.genesis_ms, t.interval_ms, t.slot_ms), (10_000, 800, 4000));
        assert!(Timing::new(&GenesisConfig::default(), 1600, 2400).is_err());
        assert!(Timing::new(&g, 0, 2400).is_err());
        assert!(Timing::new(&g, 2400, 1600).is_err());
        let huge = GenesisConfig { genesis_time: u64::MAX, ..g };
        assert!(Timing::new(&huge, 1600, 2400).is_err());
    }
}
