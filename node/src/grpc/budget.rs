//! The budget of signature checks the gRPC `Checkin` may spend.
//!
//! Every check-in that passes the pool's cheap checks costs one BLS pairing (about a
//! millisecond of CPU), on the same blocking pool and the same cores gossip validation uses.
//! The service is unauthenticated, so without a budget anyone who can reach the port turns it
//! into a pairing oracle: member addresses and fresh timestamps are public, and any valid G2
//! point makes a "check-in" that is only refused after the pairing (review finding M4, test
//! T33). Two token buckets bound that: one per operator address, so that one address cannot
//! take the whole budget, and a global one, which is what bounds the CPU however many
//! connections and addresses are used. A check-in that finds either bucket empty is refused
//! with `RESOURCE_EXHAUSTED` before any pairing; an honest client (one check-in per 5 s) retries
//! with backoff.
//!
//! The clock is a parameter, so that the refill is tested without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Thousandths of a token: the bucket's unit, so that a refill of a few tokens a second is
/// exact at millisecond resolution without floating point.
const MILLI: u64 = 1000;
/// Buckets of operator addresses kept before full ones (which carry no information) are
/// dropped. Only members of the current set reach the budget, at most 1024 of them.
const MAX_TRACKED_OPERATORS: usize = 2048;

/// A token bucket's shape: at most `burst` tokens, refilled at `per_second` tokens a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub per_second: u32,
}

impl Rate {
    fn capacity(self) -> u64 {
        u64::from(self.burst).saturating_mul(MILLI)
    }
}

/// One bucket: its level in thousandths of a token, as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: u64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self { level: rate.capacity(), at: now }
    }

    /// Adds what `rate` refilled between the last update and `now` (a clock that went back
    /// adds nothing).
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed_ms =
            u64::try_from(now.saturating_duration_since(self.at).as_millis()).unwrap_or(u64::MAX);
        // `per_second` tokens a second is `per_second` thousandths a millisecond.
        let added = elapsed_ms.saturating_mul(u64::from(rate.per_second));
        self.level = self.level.saturating_add(added).min(rate.capacity());
        if now > self.at {
            self.at = now;
        }
    }

    fn has_token(&self) -> bool {
        self.level >= MILLI
    }

    fn take(&mut self) {
        self.level = self.level.saturating_sub(MILLI);
    }

    fn is_full(&self, rate: Rate) -> bool {
        self.level >= rate.capacity()
    }
}

/// Which bucket was empty: what the refusal tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exhausted {
    #[error(
        "this node verifies at most {} gRPC check-ins a second (bursts of {}); retry later",
        .0.per_second,
        .0.burst
    )]
    Global(Rate),
    #[error(
        "this node verifies at most {} gRPC check-ins a second per operator (bursts of {}); \
         retry later",
        .0.per_second,
        .0.burst
    )]
    Operator(Rate),
}

#[derive(Debug)]
struct Buckets {
    global: Bucket,
    operators: HashMap<[u8; 20], Bucket>,
}

/// The global and per-operator budget of check-in signature checks. Thread-safe.
#[derive(Debug)]
pub struct VerifyBudget {
    global: Rate,
    per_operator: Rate,
    buckets: Mutex<Buckets>,
}

impl VerifyBudget {
    /// Both buckets start full at `now`.
    pub fn new(global: Rate, per_operator: Rate, now: Instant) -> Self {
        let buckets = Buckets { global: Bucket::full(global, now), operators: HashMap::new() };
        Self { global, per_operator, buckets: Mutex::new(buckets) }
    }

    /// Takes one token from `operator`'s bucket and one from the global one, or neither: a
    /// refused check-in costs nothing from the budget.
    pub fn try_take(&self, operator: [u8; 20], now: Instant) -> Result<(), Exhausted> {
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = &mut *guard;
        buckets.global.refill(self.global, now);
        if buckets.operators.len() >= MAX_TRACKED_OPERATORS {
            self.forget_full(&mut buckets.operators, now);
        }
        let own = buckets
            .operators
            .entry(operator)
            .or_insert_with(|| Bucket::full(self.per_operator, now));
        own.refill(self.per_operator, now);
        if !own.has_token() {
            return Err(Exhausted::Operator(self.per_operator));
        }
        if !buckets.global.has_token() {
            return Err(Exhausted::Global(self.global));
        }
        own.take();
        buckets.global.take();
        Ok(())
    }

    /// Drops the buckets that refilled completely: a new one would start the same.
    fn forget_full(&self, operators: &mut HashMap<[u8; 20], Bucket>, now: Instant) {
        operators.retain(|_, bucket| {
            bucket.refill(self.per_operator, now);
            !bucket.is_full(self.per_operator)
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const GLOBAL: Rate = Rate { burst: 4, per_second: 2 };
    const PER_OPERATOR: Rate = Rate { burst: 2, per_second: 1 };

    #[test]
    fn a_burst_is_served_then_refused_until_the_refill() {
        let t0 = Instant::now();
        let budget = VerifyBudget::new(GLOBAL, PER_OPERATOR, t0);
        // Four operators, one check-in each: the global burst.
        for i in 0..4 {
            assert_eq!(budget.try_take([i; 20], t0), Ok(()), "operator {i}");
        }
        assert_eq!(budget.try_take([4; 20], t0), Err(Exhausted::Global(GLOBAL)));
        // Half a second refills one global token (2 a second), not two.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(budget.try_take([4; 20], t1), Ok(()));
        assert_eq!(budget.try_take([5; 20], t1), Err(Exhausted::Global(GLOBAL)));
        // A clock reading from the past refills nothing.
        assert_eq!(budget.try_take([5; 20], t0), Err(Exhausted::Global(GLOBAL)));
    }

    #[test]
    fn one_operator_cannot_take_the_global_budget() {
        let t0 = Instant::now();
        let budget = VerifyBudget::new(GLOBAL, PER_OPERATOR, t0);
        assert_eq!(budget.try_take([1; 20], t0), Ok(()));
        assert_eq!(budget.try_take([1; 20], t0), Ok(()));
        assert_eq!(budget.try_take([1; 20], t0), Err(Exhausted::Operator(PER_OPERATOR)));
        // The refusal took nothing from the global bucket: two more operators fit.
        assert_eq!(budget.try_take([2; 20], t0), Ok(()));
        assert_eq!(budget.try_take([3; 20], t0), Ok(()));
        assert_eq!(budget.try_take([4; 20], t0), Err(Exhausted::Global(GLOBAL)));
        // One second gives operator 1 one token back.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(budget.try_take([1; 20], t1), Ok(()));
        assert_eq!(budget.try_take([1; 20], t1), Err(Exhausted::Operator(PER_OPERATOR)));
    }

    #[test]
    fn a_bucket_without_refill_never_refills_and_full_buckets_are_forgotten() {
        let t0 = Instant::now();
        let none = Rate { burst: 1, per_second: 0 };
        let budget = VerifyBudget::new(none, PER_OPERATOR, t0);
        assert_eq!(budget.try_take([1; 20], t0), Ok(()));
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(budget.try_take([2; 20], later), Err(Exhausted::Global(none)));

        let budget = VerifyBudget::new(Rate { burst: 10_000, per_second: 0 }, PER_OPERATOR, t0);
        for i in 0..MAX_TRACKED_OPERATORS {
            let address: [u8; 20] = std::array::from_fn(|b| (i >> (8 * (b % 2))) as u8);
            budget.try_take(address, t0).unwrap();
        }
        // Three seconds on, every bucket refilled: the next new operator makes room.
        budget.try_take([0xff; 20], t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(budget.buckets.lock().unwrap().operators.len(), 1);
    }
}
