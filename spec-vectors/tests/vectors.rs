//! Runs every conformance vector as its own test (libtest-mimic), one per file.
//!
//! A missing or incomplete folder is itself a failing test, so vectors are never skipped by
//! accident: `cargo test -p avs-spec-vectors` lists each file by name.

use std::path::Path;

use avs_spec_vectors::{Fixture, fixture_files, leanspec};
use libtest_mimic::{Arguments, Failed, Trial};

type Check = fn(&Fixture) -> anyhow::Result<()>;

fn folder_trials(
    suite: &str,
    dir: &Path,
    expected_files: usize,
    check: Check,
    trials: &mut Vec<Trial>,
) {
    let files = match fixture_files(dir) {
        Ok(files) => files,
        Err(e) => {
            trials.push(Trial::test(format!("{suite}::folder"), move || {
                Err(Failed::from(format!("{e:#}")))
            }));
            return;
        }
    };
    let found = files.len();
    trials.push(Trial::test(format!("{suite}::folder_is_complete"), move || {
        if found >= expected_files {
            Ok(())
        } else {
            Err(format!("found {found} vector files, expected at least {expected_files}").into())
        }
    }));
    for path in files {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        trials.push(Trial::test(format!("{suite}::{name}"), move || {
            let fixture = Fixture::load(&path).map_err(|e| format!("{e:#}"))?;
            check(&fixture).map_err(|e| Failed::from(format!("{}: {e:#}", fixture.test_id)))
        }));
    }
}

fn main() {
    let args = Arguments::from_args();
    let lean = leanspec::vectors_dir();
    let mut trials = Vec::new();
    folder_trials(
        "leanspec::slot_clock",
        &lean.join("slot_clock"),
        leanspec::slot_clock::EXPECTED_FILES,
        leanspec::slot_clock::check,
        &mut trials,
    );
    libtest_mimic::run(&args, trials).exit();
}
