//! Our own vector kinds: each one generates its cases from the real implementation and checks a
//! fixture by recomputing it with the same implementation.
//!
//! Every kind except `api_endpoint` follows one pattern: a fixture holds *inputs* and an
//! `output` object, and the kind's `evaluate(inputs) -> output` runs our code. The generator
//! calls `evaluate` to fill `output` (so no expected value is ever written by hand); the checker
//! calls it again and requires deep equality with the stored `output`. `api_endpoint` keeps
//! leanSpec's field names and is checked over HTTP.
//!
//! [`KINDS`] is the one list the generator, the `check` command and the test runner share: a
//! folder of `vectors/` that is not listed here fails the runner.

pub mod api_endpoint;
pub mod avs_task;
pub mod bls;
mod common;
pub mod consensus;
mod consensus_cases;
pub mod quorum;
pub mod settlement;
pub mod signing_root;
pub mod ssz;
mod ssz_json;
pub mod voting_power_sync;

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use serde_json::{Map, Value, json};

use crate::Fixture;
use crate::json::canonical;

/// Version recorded in `_info.generator`.
pub const GENERATOR: &str = concat!("avs-spec-vectors ", env!("CARGO_PKG_VERSION"));

/// One generated vector before it gets its envelope.
#[derive(Debug, Clone)]
pub struct Case {
    /// File stem, `snake_case`, unique within the kind.
    pub name: String,
    /// Given/When/Then.
    pub description: String,
    /// The fixture fields (inputs and `output`), without `_info`.
    pub body: Map<String, Value>,
}

impl Case {
    pub fn new(name: &str, description: &str, body: Value) -> Self {
        let body = match body {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        Self { name: name.to_owned(), description: description.to_owned(), body }
    }
}

/// A vector kind: its folder name, `fixtureFormat`, generator and checker.
pub struct Kind {
    pub name: &'static str,
    pub format: &'static str,
    pub generate: fn() -> anyhow::Result<Vec<Case>>,
    pub check: fn(&Fixture) -> anyhow::Result<()>,
}

/// Every kind we generate, in generation order.
pub const KINDS: &[Kind] = &[
    Kind { name: "ssz", format: "ssz_test", generate: ssz::generate, check: ssz::check },
    Kind { name: "bls", format: "bls_test", generate: bls::generate, check: bls::check },
    Kind {
        name: "signing_root",
        format: "signing_root_test",
        generate: signing_root::generate,
        check: signing_root::check,
    },
    Kind {
        name: "quorum",
        format: "quorum_test",
        generate: quorum::generate,
        check: quorum::check,
    },
    Kind {
        name: "consensus",
        format: "consensus_test",
        generate: consensus::generate,
        check: consensus::check,
    },
    Kind {
        name: "voting_power_sync",
        format: "voting_power_sync_test",
        generate: voting_power_sync::generate,
        check: voting_power_sync::check,
    },
    Kind {
        name: "avs_task",
        format: "avs_task_test",
        generate: avs_task::generate,
        check: avs_task::check,
    },
    Kind {
        name: "settlement",
        format: "settlement_test",
        generate: settlement::generate,
        check: settlement::check,
    },
    Kind {
        name: "api_endpoint",
        format: "api_endpoint_test",
        generate: api_endpoint::generate,
        check: api_endpoint::check,
    },
];

/// Where the committed vectors live.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// Test id of a vector: also the file's single top-level key.
pub fn test_id(kind: &str, name: &str) -> String {
    format!("avs/{kind}/{name}")
}

/// The file text of one case: `{ testId: { ...body, _info } }`, canonical.
pub fn render(kind: &Kind, case: &Case) -> anyhow::Result<String> {
    let id = test_id(kind.name, &case.name);
    let mut body = case.body.clone();
    body.insert(
        "_info".into(),
        json!({
            "fixtureFormat": kind.format,
            "description": case.description,
            "testId": id,
            "generator": GENERATOR,
        }),
    );
    canonical(&Value::Object(Map::from_iter([(id, Value::Object(body))])))
}

/// Every vector file: relative path (`<kind>/<name>.json`) and text.
pub fn generate_all() -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    for kind in KINDS {
        let cases = (kind.generate)().with_context(|| format!("generating {}", kind.name))?;
        ensure!(!cases.is_empty(), "kind {} generated no case", kind.name);
        let mut names = std::collections::BTreeSet::new();
        for case in &cases {
            ensure!(names.insert(case.name.clone()), "{}: duplicate case {}", kind.name, case.name);
            let path = Path::new(kind.name).join(format!("{}.json", case.name));
            files.push((path, render(kind, case)?));
        }
    }
    Ok(files)
}

/// Writes every vector under `out`, replacing the kinds' folders (stale files are removed).
pub fn write_all(out: &Path) -> anyhow::Result<usize> {
    let files = generate_all()?;
    for kind in KINDS {
        let dir = out.join(kind.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for (path, text) in &files {
        let path = out.join(path);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files.len())
}

/// Every `*.json` under `dir`, relative to it, sorted.
pub fn list_json(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path.strip_prefix(root)?.to_owned());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Regenerates in memory and lists every difference from the files under `committed`:
/// changed, missing and extra files. Empty means up to date.
pub fn differences(committed: &Path) -> anyhow::Result<Vec<String>> {
    let generated = generate_all()?;
    let mut problems = Vec::new();
    let on_disk = list_json(committed).unwrap_or_default();
    for (path, text) in &generated {
        match std::fs::read_to_string(committed.join(path)) {
            Ok(current) if &current == text => {}
            Ok(_) => {
                problems.push(format!("{} differs from the generator's output", path.display()))
            }
            Err(_) => problems.push(format!("{} is missing", path.display())),
        }
    }
    for path in on_disk {
        let known = generated.iter().any(|(p, _)| *p == path);
        if !known {
            problems.push(format!("{} is not produced by the generator", path.display()));
        }
    }
    Ok(problems)
}

/// Shared checker of the `evaluate` pattern: recompute `output` from the fixture's inputs and
/// require deep equality.
pub(crate) fn check_output(
    fixture: &Fixture,
    format: &str,
    evaluate: fn(&Value) -> anyhow::Result<Value>,
) -> anyhow::Result<()> {
    ensure!(fixture.format()? == format, "not a {format} fixture");
    let expected = fixture.field("/output")?;
    let actual = evaluate(&fixture.body)?;
    ensure!(&actual == expected, "output differs\n  expected: {expected}\n  ours:     {actual}");
    Ok(())
}

/// Builds a case of the `evaluate` pattern: `output` is computed, never written by hand.
pub(crate) fn evaluated(
    name: &str,
    description: &str,
    inputs: Value,
    evaluate: fn(&Value) -> anyhow::Result<Value>,
) -> anyhow::Result<Case> {
    let output = evaluate(&inputs).with_context(|| format!("case {name}"))?;
    let mut case = Case::new(name, description, inputs);
    case.body.insert("output".into(), output);
    Ok(case)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_every_file_checks() {
        let first = generate_all().unwrap();
        assert_eq!(first, generate_all().unwrap(), "two runs wrote different bytes");
        for (path, text) in &first {
            let value: Value = serde_json::from_str(text).unwrap();
            let (id, body) = value.as_object().unwrap().iter().next().unwrap();
            let fixture = Fixture { path: path.clone(), test_id: id.clone(), body: body.clone() };
            let kind = KINDS.iter().find(|k| path.starts_with(k.name)).unwrap();
            assert_eq!(fixture.format().unwrap(), kind.format);
            if kind.name != "api_endpoint" {
                (kind.check)(&fixture).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            }
        }
    }

    #[test]
    fn a_changed_output_fails_its_check() {
        let kind = KINDS.iter().find(|k| k.name == "quorum").unwrap();
        let case = (kind.generate)().unwrap().remove(0);
        let mut body = Value::Object(case.body);
        body["_info"] = json!({ "fixtureFormat": kind.format });
        let fixture = |body: &Value| Fixture {
            path: PathBuf::from("x.json"),
            test_id: "x".into(),
            body: body.clone(),
        };
        (kind.check)(&fixture(&body)).unwrap();
        let certified = body["output"]["certified"].as_bool().unwrap();
        body["output"]["certified"] = json!(!certified);
        assert!((kind.check)(&fixture(&body)).is_err());
    }
}
