//! `quorum_test`: operator powers and a signers bitlist -> certified or not, by the strict rule
//! `3 * signed > 2 * total` in exact integers (`avs_consensus::KeyTable`).
//!
//! Inputs: `powers` (u64 per operator, index order), `signers` (one boolean per operator).
//! Output: `certified`, and `signedPower` / `totalPower` as decimal strings (they can exceed
//! u64), or `certified: false` with an `error` code when the input cannot be judged:
//! `"signersLength"` (not one bit per operator) or `"emptyOperatorSet"` (total power zero).
//! The checker builds a real key table (keys from `common`, which do not affect the result).

use anyhow::Context;
use avs_consensus::ConsensusError;
use avs_consensus::operators::KeyTable;
use avs_consensus::types::Epoch;
use avs_consensus::types::Signers;
use serde_json::{Value, json};

use super::common::operator_set;
use super::{Case, evaluated};
use crate::Fixture;
use crate::json::get_array;

const FORMAT: &str = "quorum_test";

pub fn check(fixture: &Fixture) -> anyhow::Result<()> {
    super::check_output(fixture, FORMAT, evaluate)
}

fn evaluate(input: &Value) -> anyhow::Result<Value> {
    let powers: Vec<u64> = get_array(input, "powers")?
        .iter()
        .map(|p| p.as_u64().context("a power is not a u64"))
        .collect::<anyhow::Result<_>>()?;
    let bits: Vec<bool> = get_array(input, "signers")?
        .iter()
        .map(|b| b.as_bool().context("a signer is not a boolean"))
        .collect::<anyhow::Result<_>>()?;
    let set = operator_set(&powers)?;
    let table = match KeyTable::new(Epoch::ZERO, &set, [0; 4]) {
        Ok(table) => table,
        Err(ConsensusError::EmptyOperatorSet) => {
            return Ok(json!({ "certified": false, "error": "emptyOperatorSet" }));
        }
        Err(e) => return Err(e.into()),
    };
    let signers = Signers::try_from(bits.as_slice()).map_err(|e| anyhow::anyhow!("{e}"))?;
    match table.signed_power(&signers) {
        Ok(signed) => Ok(json!({
            "certified": table.has_quorum(signed),
            "signedPower": signed.to_string(),
            "totalPower": table.total_power().to_string(),
        })),
        Err(ConsensusError::SignersLength { .. }) => {
            Ok(json!({ "certified": false, "error": "signersLength" }))
        }
        Err(e) => Err(e.into()),
    }
}

fn case(name: &str, given: &str, powers: &[u64], signers: &[bool]) -> anyhow::Result<Case> {
    let input = json!({ "powers": powers, "signers": signers });
    let output = evaluate(&input)?;
    let then = match output.get("error").and_then(Value::as_str) {
        Some(error) => format!("the input is refused ({error})"),
        None if output["certified"] == json!(true) => "it is certified".to_owned(),
        None => "it is not certified".to_owned(),
    };
    let description = format!(
        "Given {given}, when the signers' power is compared with the total by \
         3 * signed > 2 * total, then {then}."
    );
    evaluated(name, &description, input, evaluate)
}

pub fn generate() -> anyhow::Result<Vec<Case>> {
    const T: bool = true;
    const F: bool = false;
    let max = u64::MAX;
    // 2^64-1 is divisible by 3, so three operators of power max/3 sum to exactly max.
    let third = max / 3;
    Ok(vec![
        case(
            "four_equal_three_sign",
            "4 operators of power 1 and 3 signers (3*3 > 8)",
            &[1, 1, 1, 1],
            &[T, T, T, F],
        )?,
        case(
            "four_equal_two_sign",
            "4 operators of power 1 and 2 signers (6 > 8 is false)",
            &[1, 1, 1, 1],
            &[T, F, T, F],
        )?,
        case(
            "three_equal_two_sign_exactly_two_thirds",
            "3 operators of power 1 and 2 signers: exactly 2/3 is not enough",
            &[1, 1, 1],
            &[T, T, F],
        )?,
        case(
            "three_equal_all_sign",
            "3 operators of power 1, all signing",
            &[1, 1, 1],
            &[T, T, T],
        )?,
        case(
            "nine_six_signed_exactly_two_thirds",
            "total 9 and signed 6: exactly 2/3",
            &[2, 2, 2, 3],
            &[T, T, T, F],
        )?,
        case(
            "nine_seven_signed_just_above",
            "total 9 and signed 7: one above 2/3",
            &[1, 2, 3, 3],
            &[T, F, T, T],
        )?,
        case(
            "floor_rule_would_accept",
            "total 4 and signed 2 (floor(8/3) = 2 would wrongly accept)",
            &[1, 1, 1, 1],
            &[T, T, F, F],
        )?,
        case(
            "weighted_single_heavy_operator",
            "one operator with 70 of 100 power signing alone",
            &[70, 10, 10, 10],
            &[T, F, F, F],
        )?,
        case(
            "weighted_heavy_operator_missing",
            "the 70-power operator missing, the others signing",
            &[70, 10, 10, 10],
            &[F, T, T, T],
        )?,
        case(
            "zero_power_signers_count_nothing",
            "two zero-power signers and one of three power-1 signers",
            &[0, 0, 1, 1, 1],
            &[T, T, T, F, F],
        )?,
        case(
            "large_powers_exactly_two_thirds",
            "three operators of power (2^64-1)/3 with two signing: exactly 2/3 in u128",
            &[third, third, third],
            &[T, T, F],
        )?,
        case(
            "large_powers_one_above_two_thirds",
            "powers (2^64-1)/3, (2^64-1)/3 + 1, (2^64-1)/3 - 1 (total 2^64-1) with the first two \
             signing: 2/3 of the total plus one",
            &[third, third + 1, third - 1],
            &[T, T, F],
        )?,
        case(
            "large_powers_sum_above_u64",
            "four operators of power 2^64-1 and three signing (sums exceed u64)",
            &[max, max, max, max],
            &[T, T, T, F],
        )?,
        case(
            "large_powers_two_of_three_max",
            "three operators of power 2^64-1 and two signing: exactly 2/3",
            &[max, max, max],
            &[T, T, F],
        )?,
        case(
            "large_powers_one_below_boundary",
            "powers 2^64-1, 2^64-1, 2^64-2 with the two largest signing",
            &[max, max, max - 1],
            &[T, T, F],
        )?,
        case(
            "sixteen_max_eleven_sign",
            "16 operators of power 2^64-1 and 11 signing (11*3 > 32)",
            &[max; 16],
            &[T, T, T, T, T, T, T, T, T, T, T, F, F, F, F, F],
        )?,
        case(
            "sixteen_max_ten_sign",
            "16 operators of power 2^64-1 and 10 signing (30 > 32 is false)",
            &[max; 16],
            &[T, T, T, T, T, T, T, T, T, T, F, F, F, F, F, F],
        )?,
        case("no_signers", "4 operators and no signer", &[1, 1, 1, 1], &[F, F, F, F])?,
        case(
            "signers_too_short",
            "4 operators and a 3-bit signers list",
            &[1, 1, 1, 1],
            &[T, T, T],
        )?,
        case(
            "signers_too_long",
            "4 operators and a 5-bit signers list",
            &[1, 1, 1, 1],
            &[T, T, T, T, T],
        )?,
        case("zero_total_power", "2 operators of power 0", &[0, 0], &[T, T])?,
    ])
}
