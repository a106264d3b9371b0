//! Conformance vectors: loading fixture files and checking them against our implementation.
//!
//! A fixture file holds one JSON object with exactly one key (the test id) whose value is the
//! fixture, in the lean consensus conventions: camelCase fields, `0x` hex bytes, an `_info` block
//! with `fixtureFormat` and a Given/When/Then `description`. [`Fixture::load`] reads that
//! envelope; the format modules check one fixture each and return a readable reason on mismatch.
//!
//! Our own vectors are produced by [`kinds`]: every kind generates its cases from the real
//! implementation (`avs-consensus`, and the node's HTTP router) and checks a fixture by running
//! the same code again. [`json`] holds the hex helpers and the canonical writer that makes
//! generation byte-stable.
//!
//! The runner (`tests/vectors.rs`) turns every file into its own test and fails when a folder it
//! expects is missing, or when a file under `vectors/` belongs to no known kind, so a vector is
//! never skipped silently.

pub mod api;
pub mod json;
pub mod kinds;
pub mod leanspec;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

/// One fixture file: its test id and the fixture object.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub path: PathBuf,
    pub test_id: String,
    pub body: Value,
}

impl Fixture {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let Value::Object(map) = value else { bail!("{}: not a JSON object", path.display()) };
        if map.len() != 1 {
            bail!("{}: expected exactly one test id key, found {}", path.display(), map.len());
        }
        let (test_id, body) = map.into_iter().next().context("one entry")?;
        Ok(Self { path: path.to_owned(), test_id, body })
    }

    /// `_info.fixtureFormat`.
    pub fn format(&self) -> anyhow::Result<&str> {
        self.body
            .pointer("/_info/fixtureFormat")
            .and_then(Value::as_str)
            .context("missing _info.fixtureFormat")
    }

    pub fn field(&self, pointer: &str) -> anyhow::Result<&Value> {
        self.body.pointer(pointer).with_context(|| format!("missing field {pointer}"))
    }
}

/// Reads a JSON number that must be a whole, non-negative integer. Python writes some of these as
/// floats (`1700000000800.0`), so a whole float below 2^53 is accepted; anything else is refused.
pub fn whole_u64(value: &Value) -> anyhow::Result<u64> {
    if let Some(n) = value.as_u64() {
        return Ok(n);
    }
    match value.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 9_007_199_254_740_992.0 =>
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(f as u64)
        }
        _ => bail!("expected a whole non-negative number, found {value}"),
    }
}

/// The `*.json` files of `dir`, sorted, failing if the folder is missing or empty.
pub fn fixture_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("vector folder {} is missing", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    if files.is_empty() {
        bail!("vector folder {} holds no .json files", dir.display());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_accept_python_floats_and_refuse_fractions() {
        assert_eq!(whole_u64(&serde_json::json!(1700000000800.0)).unwrap(), 1_700_000_000_800);
        assert_eq!(whole_u64(&serde_json::json!(u64::MAX)).unwrap(), u64::MAX);
        assert!(whole_u64(&serde_json::json!(1.5)).is_err());
        assert!(whole_u64(&serde_json::json!(-1)).is_err());
        assert!(whole_u64(&serde_json::json!("7")).is_err());
    }
}
