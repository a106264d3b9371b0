//! The slot clock: pure arithmetic from wall-clock milliseconds to slots and intervals.
//!
//! Time enters the consensus only as a number the caller read (`now_ms`, unix milliseconds), so
//! the state machine stays deterministic and a simulation can drive it with a fake clock. The
//! rules match the lean consensus slot clock, so leanSpec's `slot_clock` vectors apply: any time
//! before genesis clamps to zero, and every division is an integer floor division.
//!
//! One *tick* is one interval boundary. With the defaults (4000 ms slots, 5 intervals) an
//! interval is 800 ms.

use thiserror::Error;

/// Default slot duration, in milliseconds.
pub const DEFAULT_SLOT_DURATION_MS: u64 = 4_000;
/// Default number of intervals (ticks) per slot.
pub const DEFAULT_INTERVALS_PER_SLOT: u64 = 5;

/// Why a clock configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClockError {
    /// Zero-length slots or zero intervals would make every division meaningless.
    #[error("slot duration and intervals per slot must both be greater than zero")]
    Zero,
    /// An interval must be a whole number of milliseconds, or ticks drift against slots.
    #[error(
        "slot duration {slot_duration_ms} ms is not a multiple of {intervals_per_slot} intervals; \
         choose a slot duration divisible by the interval count"
    )]
    UnevenIntervals { slot_duration_ms: u64, intervals_per_slot: u64 },
}

/// A slot clock anchored at `genesis_time` (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotClock {
    genesis_ms: u64,
    slot_duration_ms: u64,
    intervals_per_slot: u64,
    interval_ms: u64,
}

impl SlotClock {
    /// Builds a clock; the slot must split into whole-millisecond intervals.
    pub fn new(
        genesis_time_s: u64,
        slot_duration_ms: u64,
        intervals_per_slot: u64,
    ) -> Result<Self, ClockError> {
        if slot_duration_ms == 0 || intervals_per_slot == 0 {
            return Err(ClockError::Zero);
        }
        if !slot_duration_ms.is_multiple_of(intervals_per_slot) {
            return Err(ClockError::UnevenIntervals { slot_duration_ms, intervals_per_slot });
        }
        Ok(Self {
            genesis_ms: genesis_time_s.saturating_mul(1_000),
            slot_duration_ms,
            intervals_per_slot,
            interval_ms: div(slot_duration_ms, intervals_per_slot),
        })
    }

    /// Genesis as unix milliseconds.
    pub fn genesis_ms(&self) -> u64 {
        self.genesis_ms
    }

    /// Length of one slot in milliseconds.
    pub fn slot_duration_ms(&self) -> u64 {
        self.slot_duration_ms
    }

    /// Number of intervals in one slot.
    pub fn intervals_per_slot(&self) -> u64 {
        self.intervals_per_slot
    }

    /// Length of one interval (one tick) in milliseconds.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// Milliseconds since genesis; zero for any time before it.
    pub fn since_genesis_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.genesis_ms)
    }

    /// Total whole intervals elapsed since genesis.
    pub fn total_intervals(&self, now_ms: u64) -> u64 {
        div(self.since_genesis_ms(now_ms), self.interval_ms)
    }

    /// The slot `now_ms` falls in.
    pub fn current_slot(&self, now_ms: u64) -> u64 {
        div(self.since_genesis_ms(now_ms), self.slot_duration_ms)
    }

    /// The interval within the current slot, `0..intervals_per_slot`.
    pub fn interval_in_slot(&self, now_ms: u64) -> u64 {
        let into_slot =
            self.since_genesis_ms(now_ms).checked_rem(self.slot_duration_ms).unwrap_or(0);
        div(into_slot, self.interval_ms)
    }

    /// The first interval (counted from genesis) of `slot`, or `None` on overflow.
    pub fn slot_start_interval(&self, slot: u64) -> Option<u64> {
        slot.checked_mul(self.intervals_per_slot)
    }

    /// Unix milliseconds at which interval number `interval` (from genesis) begins.
    pub fn interval_start_ms(&self, interval: u64) -> Option<u64> {
        interval.checked_mul(self.interval_ms)?.checked_add(self.genesis_ms)
    }

    /// Unix milliseconds of the first tick strictly after `now_ms` (genesis itself if it is
    /// still ahead). Saturates instead of wrapping at the end of time.
    pub fn next_tick_ms(&self, now_ms: u64) -> u64 {
        if now_ms < self.genesis_ms {
            return self.genesis_ms;
        }
        self.interval_start_ms(self.total_intervals(now_ms).saturating_add(1)).unwrap_or(u64::MAX)
    }
}

/// Floor division; every divisor here was checked non-zero in [`SlotClock::new`], so the
/// zero branch is unreachable and only keeps the arithmetic lint honest.
fn div(a: u64, b: u64) -> u64 {
    a.checked_div(b).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> SlotClock {
        SlotClock::new(1_700_000_000, DEFAULT_SLOT_DURATION_MS, DEFAULT_INTERVALS_PER_SLOT).unwrap()
    }

    #[test]
    fn refuses_degenerate_configs() {
        assert_eq!(SlotClock::new(0, 0, 5), Err(ClockError::Zero));
        assert_eq!(SlotClock::new(0, 4000, 0), Err(ClockError::Zero));
        assert!(matches!(SlotClock::new(0, 4001, 5), Err(ClockError::UnevenIntervals { .. })));
    }

    #[test]
    fn before_genesis_clamps_to_zero() {
        let c = clock();
        assert_eq!(c.total_intervals(0), 0);
        assert_eq!(c.current_slot(1_699_999_999_999), 0);
        assert_eq!(c.next_tick_ms(5), c.genesis_ms());
    }

    #[test]
    fn slots_and_intervals_follow_the_genesis_offset() {
        let c = clock();
        let g = c.genesis_ms();
        assert_eq!(c.interval_ms(), 800);
        assert_eq!(c.total_intervals(g + 799), 0);
        assert_eq!(c.total_intervals(g + 800), 1);
        assert_eq!(c.current_slot(g + 3_999), 0);
        assert_eq!(c.current_slot(g + 4_000), 1);
        assert_eq!(c.interval_in_slot(g + 4_000 + 2_400), 3);
        assert_eq!(c.slot_start_interval(10), Some(50));
        assert_eq!(c.slot_start_interval(u64::MAX), None);
    }

    #[test]
    fn next_tick_is_strictly_after_now() {
        let c = clock();
        let g = c.genesis_ms();
        assert_eq!(c.next_tick_ms(g), g + 800);
        assert_eq!(c.next_tick_ms(g + 799), g + 800);
        assert_eq!(c.next_tick_ms(g + 800), g + 1_600);
        assert_eq!(c.next_tick_ms(u64::MAX), u64::MAX);
    }
}
