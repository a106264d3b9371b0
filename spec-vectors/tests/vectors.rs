//! Runs every conformance vector as its own test (libtest-mimic), one per file.
//!
//! A missing or incomplete folder is itself a failing test, so vectors are never skipped by
//! accident: `cargo test -p avs-spec-vectors` lists each file by name.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use avs_node::aggregator::AggregatorController;
use avs_node::http::{ApiState, NodeStatus};
use avs_spec_vectors::api::{ApiTarget, ContentTypeCheck};
use avs_spec_vectors::{Fixture, fixture_files, leanspec};
use libtest_mimic::{Arguments, Failed, Trial};

type Check = fn(&Fixture) -> anyhow::Result<()>;

/// Our node's HTTP API, served on an ephemeral 127.0.0.1 port for the life of this process
/// (nextest runs each vector in its own process, so each gets a fresh node API).
fn node_api() -> &'static ApiTarget {
    static API: OnceLock<ApiTarget> = OnceLock::new();
    API.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let Ok(runtime) = runtime else { return };
            runtime.block_on(async move {
                let mut registry = prometheus_client::registry::Registry::default();
                let aggregator = AggregatorController::new(false, &mut registry);
                let (_status_tx, status) = tokio::sync::watch::channel(NodeStatus::default());
                let state = ApiState {
                    aggregator: Some(aggregator),
                    admin_token: None,
                    registry: Arc::new(registry),
                    status,
                };
                let listener = avs_node::http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let shutdown = tokio_util::sync::CancellationToken::new();
                avs_node::http::serve(listener, state, shutdown).await.unwrap();
            });
        });
        let addr = rx.recv().expect("the in-process API started");
        ApiTarget::new(&format!("http://{addr}"), ContentTypeCheck::Exact, None)
    })
}

fn api_check(fixture: &Fixture) -> anyhow::Result<()> {
    avs_spec_vectors::api::check(fixture, node_api())
}

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
    folder_trials("leanspec::api", &lean.join("api"), 7, api_check, &mut trials);
    libtest_mimic::run(&args, trials).exit();
}
