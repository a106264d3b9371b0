//! JSON plumbing shared by the generator and the checkers: `0x` hex, typed field readers with
//! readable errors, and the canonical writer that makes generation byte-stable.
//!
//! Canonical form: keys sorted by byte order at every level, two-space indentation, one
//! trailing newline, integers as JSON numbers (u64 range), no floats. The same `Value` always
//! gives the same bytes, whatever `serde_json`'s map type is.

use anyhow::{Context, bail};
use serde_json::Value;

/// `0x` + lowercase hex.
pub fn hex0x(bytes: &[u8]) -> Value {
    Value::String(format!("0x{}", hex::encode(bytes)))
}

/// Parses a `0x`-prefixed hex string (`"0x"` is empty bytes).
pub fn parse_hex(value: &Value) -> anyhow::Result<Vec<u8>> {
    let text = value.as_str().with_context(|| format!("expected a hex string, found {value}"))?;
    let digits =
        text.strip_prefix("0x").with_context(|| format!("{text:?} lacks the 0x prefix"))?;
    hex::decode(digits).with_context(|| format!("{text:?} is not valid hex"))
}

/// The field `name` of `obj`, or an error naming it.
pub fn field<'a>(obj: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    obj.get(name).with_context(|| format!("missing field {name:?}"))
}

pub fn get_u64(obj: &Value, name: &str) -> anyhow::Result<u64> {
    field(obj, name)?.as_u64().with_context(|| format!("{name:?} is not a u64 number"))
}

pub fn get_bool(obj: &Value, name: &str) -> anyhow::Result<bool> {
    field(obj, name)?.as_bool().with_context(|| format!("{name:?} is not a boolean"))
}

pub fn get_str<'a>(obj: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    field(obj, name)?.as_str().with_context(|| format!("{name:?} is not a string"))
}

pub fn get_array<'a>(obj: &'a Value, name: &str) -> anyhow::Result<&'a Vec<Value>> {
    field(obj, name)?.as_array().with_context(|| format!("{name:?} is not an array"))
}

pub fn get_hex(obj: &Value, name: &str) -> anyhow::Result<Vec<u8>> {
    parse_hex(field(obj, name)?).with_context(|| format!("field {name:?}"))
}

/// A hex field of exactly `N` bytes.
pub fn get_fixed<const N: usize>(obj: &Value, name: &str) -> anyhow::Result<[u8; N]> {
    let bytes = get_hex(obj, name)?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| anyhow::anyhow!("{name:?} has {len} bytes, expected {N}"))
}

/// Canonical text of `value` (see the module doc).
pub fn canonical(value: &Value) -> anyhow::Result<String> {
    let mut out = String::new();
    write_value(value, 0, &mut out)?;
    out.push('\n');
    Ok(out)
}

fn write_value(value: &Value, depth: usize, out: &mut String) -> anyhow::Result<()> {
    let pad = |depth: usize, out: &mut String| out.extend(std::iter::repeat_n("  ", depth));
    match value {
        Value::Number(n) if n.is_f64() => bail!("floats are not allowed in vectors: {n}"),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            out.push_str(&serde_json::to_string(value)?);
        }
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                pad(depth + 1, out);
                write_value(item, depth + 1, out)?;
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            pad(depth, out);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push_str("{\n");
            for (i, key) in keys.iter().enumerate() {
                pad(depth + 1, out);
                out.push_str(&serde_json::to_string(key)?);
                out.push_str(": ");
                write_value(&map[key.as_str()], depth + 1, out)?;
                out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
            }
            pad(depth, out);
            out.push('}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_and_refuses_floats() {
        let text = canonical(&json!({"b": [1, {"z": 1, "a": "0x"}], "a": {}})).unwrap();
        assert_eq!(
            text,
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    {\n      \"a\": \"0x\",\n      \"z\": 1\n    }\n  ]\n}\n"
        );
        assert!(canonical(&json!({"x": 1.5})).is_err());
        assert_eq!(canonical(&json!(u64::MAX)).unwrap(), "18446744073709551615\n");
    }

    #[test]
    fn hex_round_trip_and_refusals() {
        assert_eq!(parse_hex(&hex0x(&[0xab, 1])).unwrap(), vec![0xab, 1]);
        assert_eq!(parse_hex(&json!("0x")).unwrap(), Vec::<u8>::new());
        assert!(parse_hex(&json!("ab")).is_err());
        assert!(parse_hex(&json!("0xabc")).is_err());
        assert!(get_fixed::<2>(&json!({"h": "0x01"}), "h").is_err());
    }
}
