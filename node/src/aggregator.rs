//! The aggregator role as a runtime flag (the hot-standby model of leanSpec PR #636).
//!
//! Every node subscribes to all vote subnets when booted with `--is-aggregator`; the flag only
//! changes *duties*. It is read fresh for every vote event ([`AggregatorController::is_enabled`])
//! and once per tick ([`AggregatorController::observe_tick`]), so everything one tick does sees
//! one consistent value. The `lean_is_aggregator` gauge reports the value the last tick actually
//! used, which is what the node was doing, not merely what was requested.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Cloneable handle on the node's aggregator flag.
#[derive(Debug, Clone)]
pub struct AggregatorController {
    flag: Arc<AtomicBool>,
    gauge: Gauge<i64, AtomicI64>,
}

impl AggregatorController {
    /// Seeds the flag (from `--is-aggregator`) and registers `lean_is_aggregator`.
    pub fn new(initial: bool, registry: &mut Registry) -> Self {
        let controller = Self::unregistered(initial);
        registry.register(
            "lean_is_aggregator",
            "Whether this node acted as aggregator at its last tick (1) or not (0)",
            controller.gauge.clone(),
        );
        controller
    }

    /// A controller whose gauge is not exported; for tests and tools.
    pub fn unregistered(initial: bool) -> Self {
        let controller = Self { flag: Arc::new(AtomicBool::new(initial)), gauge: Gauge::default() };
        controller.gauge.set(i64::from(initial));
        controller
    }

    /// The flag as it is now. Use for each vote event.
    pub fn is_enabled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Reads the flag once for a whole tick and records that value in the gauge.
    pub fn observe_tick(&self) -> bool {
        let enabled = self.is_enabled();
        self.gauge.set(i64::from(enabled));
        enabled
    }

    /// Switches the role and returns the previous value. Idempotent.
    pub fn set(&self, enabled: bool) -> bool {
        self.flag.swap(enabled, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_returns_the_previous_value_and_is_idempotent() {
        let c = AggregatorController::unregistered(false);
        assert!(!c.set(true));
        assert!(c.set(true));
        assert!(c.is_enabled());
        assert!(c.set(false));
        assert!(!c.is_enabled());
    }

    #[test]
    fn gauge_follows_what_the_tick_used_not_the_request() {
        let mut registry = Registry::default();
        let c = AggregatorController::new(false, &mut registry);
        c.set(true);
        assert_eq!(c.gauge.get(), 0, "no tick has used the new value yet");
        assert!(c.observe_tick());
        assert_eq!(c.gauge.get(), 1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("lean_is_aggregator 1"), "{text}");
    }
}
