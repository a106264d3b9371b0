//! `slot_clock_test`: slot and interval arithmetic against [`avs_consensus::clock::SlotClock`].

use anyhow::{Context, bail, ensure};
use avs_consensus::clock::SlotClock;
use serde_json::Value;

use crate::{Fixture, whole_u64};

/// Number of `slot_clock` files the pinned leanSpec commit ships; a smaller folder is incomplete.
pub const EXPECTED_FILES: usize = 25;

pub fn check(fixture: &Fixture) -> anyhow::Result<()> {
    ensure!(fixture.format()? == "slot_clock_test", "not a slot_clock_test fixture");
    let config = fixture.field("/config")?;
    let seconds_per_slot = whole_u64(config.get("secondsPerSlot").context("secondsPerSlot")?)?;
    let intervals_per_slot =
        whole_u64(config.get("intervalsPerSlot").context("intervalsPerSlot")?)?;
    let ms_per_interval =
        whole_u64(config.get("millisecondsPerInterval").context("millisecondsPerInterval")?)?;

    let op = fixture.field("/operation")?;
    let genesis = op.get("genesisTime").map(whole_u64).transpose()?.unwrap_or(0);
    let slot_ms = seconds_per_slot.checked_mul(1000).context("slot length overflows")?;
    let clock = SlotClock::new(genesis, slot_ms, intervals_per_slot)?;
    // The expected outputs assume these constants; ours must be the same, not merely derived.
    ensure!(
        clock.interval_ms() == ms_per_interval,
        "our interval is {} ms, the vector's is {ms_per_interval} ms",
        clock.interval_ms()
    );

    let now_ms = |key: &str| -> anyhow::Result<u64> {
        whole_u64(op.get(key).with_context(|| format!("missing operation.{key}"))?)
    };
    let kind = op.get("kind").and_then(Value::as_str).context("missing operation.kind")?;
    let (field, actual) = match kind {
        "from_unix_time" => {
            let ms = now_ms("unixSeconds")?.checked_mul(1000).context("time overflows")?;
            ("interval", clock.total_intervals(ms))
        }
        "from_slot" => {
            let slot = now_ms("slot")?;
            ("interval", clock.slot_start_interval(slot).context("slot overflows")?)
        }
        "current_slot" => ("slot", clock.current_slot(now_ms("currentTimeMilliseconds")?)),
        "current_interval" => {
            ("interval", clock.interval_in_slot(now_ms("currentTimeMilliseconds")?))
        }
        "total_intervals" => {
            ("totalIntervals", clock.total_intervals(now_ms("currentTimeMilliseconds")?))
        }
        other => bail!("unknown slot_clock operation kind {other:?}"),
    };
    let output = fixture.field("/output")?;
    let expected =
        whole_u64(output.get(field).with_context(|| format!("missing output.{field}"))?)?;
    ensure!(actual == expected, "{kind}: expected {field} = {expected}, got {actual}");
    ensure!(
        output.as_object().is_some_and(|o| o.len() == 1),
        "output has fields this runner does not check: {output}"
    );
    Ok(())
}
