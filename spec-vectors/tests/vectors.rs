//! Runs every conformance vector as its own test (libtest-mimic), one per file: leanSpec's
//! applicable ones and every kind of ours.
//!
//! Nothing is skipped silently: a missing or empty folder is a failing test, a file under
//! `spec-vectors/vectors/` that no known kind reads is a failing test, and
//! `generated::up_to_date` fails when the committed files differ from what the generator writes
//! now. `cargo nextest run -p avs-spec-vectors` lists each file by name.

use std::path::{Path, PathBuf};

use avs_spec_vectors::kinds::{self, KINDS, list_json};
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

/// Every file under `vectors/` must sit directly in a known kind's folder.
fn unread_files(dir: PathBuf) -> Trial {
    Trial::test("vectors::every_file_belongs_to_a_kind", move || {
        let files = list_json(&dir).map_err(|e| format!("{e:#}"))?;
        let unread: Vec<String> = files
            .iter()
            .filter(|path| {
                let mut parts = path.components();
                let kind = parts.next().map(|c| c.as_os_str().to_string_lossy().into_owned());
                let known = kind.is_some_and(|k| KINDS.iter().any(|kind| kind.name == k));
                !(known && parts.count() == 1)
            })
            .map(|p| p.display().to_string())
            .collect();
        if unread.is_empty() {
            Ok(())
        } else {
            Err(format!("no known kind reads these files: {}", unread.join(", ")).into())
        }
    })
}

fn main() {
    let args = Arguments::from_args();
    let lean = leanspec::vectors_dir();
    let ours = kinds::vectors_dir();
    let mut trials = Vec::new();
    folder_trials(
        "leanspec::slot_clock",
        &lean.join("slot_clock"),
        leanspec::slot_clock::EXPECTED_FILES,
        leanspec::slot_clock::check,
        &mut trials,
    );
    folder_trials("leanspec::api", &lean.join("api"), 7, kinds::api_endpoint::check, &mut trials);
    for kind in KINDS {
        folder_trials(kind.name, &ours.join(kind.name), 1, kind.check, &mut trials);
    }
    trials.push(unread_files(ours.clone()));
    trials.push(Trial::test("generated::up_to_date", move || {
        let problems = kinds::differences(&ours).map_err(|e| format!("{e:#}"))?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}\nrun `cargo run -p avs-spec-vectors -- generate`", problems.join("\n"))
                .into())
        }
    }));
    libtest_mimic::run(&args, trials).exit();
}
