//! `avs-spec-vectors`: generate our conformance vectors, check that the committed ones are up
//! to date, and run the API vectors against a live node.
//!
//! - `generate [--out DIR]` writes every vector under `DIR` (default: this crate's `vectors/`),
//!   replacing each kind's folder. Same code, same bytes.
//! - `check [--dir DIR]` regenerates in memory and fails, listing each file, if anything under
//!   `DIR` differs, is missing or is extra. CI runs this.
//! - `run-api --url http://127.0.0.1:5052` sends every `api_endpoint_test` vector to the node
//!   at that URL and prints one line per vector, then a `N passed, N failed, N skipped`
//!   summary; the exit code is non-zero if any failed.

use std::path::PathBuf;
use std::process::ExitCode;

use avs_spec_vectors::api::{ApiTarget, ContentTypeCheck, skip_reason};
use avs_spec_vectors::{Fixture, fixture_files, kinds, leanspec};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "avs-spec-vectors", version, about = "avs-node conformance vectors")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write every vector (deterministic).
    Generate {
        /// Output folder; each kind's subfolder is replaced.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fail if the committed vectors differ from what the generator writes now.
    Check {
        /// Folder holding the committed vectors.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run the API vectors against a running node's HTTP API.
    RunApi {
        /// Base URL of the node's HTTP API.
        #[arg(long, default_value = "http://127.0.0.1:5052")]
        url: String,
        /// Folders of api_endpoint_test vectors. Defaults to leanSpec's `api/` folder and ours.
        #[arg(long = "dir")]
        dirs: Vec<PathBuf>,
        /// Compare only the media type of Content-Type (before `;`), not the whole header.
        #[arg(long)]
        lenient_content_type: bool,
        /// Bearer token the node was started with (vectors that test authentication need
        /// `spec-vectors-admin-token`).
        #[arg(long, env = "AVS_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// The node has no aggregator controller: run only the vectors that expect that.
        #[arg(long)]
        no_aggregator_controller: bool,
    },
}

#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Generate { out } => {
            let out = out.unwrap_or_else(kinds::vectors_dir);
            match kinds::write_all(&out) {
                Ok(n) => {
                    println!("wrote {n} vectors under {}", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { dir } => {
            let dir = dir.unwrap_or_else(kinds::vectors_dir);
            match kinds::differences(&dir) {
                Ok(problems) if problems.is_empty() => {
                    println!("vectors under {} are up to date", dir.display());
                    ExitCode::SUCCESS
                }
                Ok(problems) => {
                    for p in &problems {
                        eprintln!("stale: {p}");
                    }
                    eprintln!(
                        "{} vector file(s) out of date; run `cargo run -p avs-spec-vectors -- generate`",
                        problems.len()
                    );
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::RunApi {
            url,
            dirs,
            lenient_content_type,
            admin_token,
            no_aggregator_controller,
        } => {
            let check = if lenient_content_type {
                ContentTypeCheck::MediaType
            } else {
                ContentTypeCheck::Exact
            };
            let mut target = ApiTarget::new(&url, check, admin_token);
            if no_aggregator_controller {
                target = target.without_controller();
            }
            let dirs = if dirs.is_empty() {
                vec![leanspec::vectors_dir().join("api"), kinds::vectors_dir().join("api_endpoint")]
            } else {
                dirs
            };
            run_api(&target, &dirs)
        }
    }
}

#[allow(clippy::print_stderr)]
fn run_api(target: &ApiTarget, dirs: &[PathBuf]) -> ExitCode {
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    for dir in dirs {
        let files = match fixture_files(dir) {
            Ok(files) => files,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        for path in files {
            let fixture = match Fixture::load(&path) {
                Ok(f) => f,
                Err(e) => {
                    failed += 1;
                    println!("FAIL {}: {e:#}", path.display());
                    continue;
                }
            };
            if let Some(reason) = skip_reason(&fixture, target) {
                skipped += 1;
                println!("SKIP {}: {reason}", path.display());
                continue;
            }
            match avs_spec_vectors::api::check(&fixture, target) {
                Ok(()) => {
                    passed += 1;
                    println!("PASS {}", path.display());
                }
                Err(e) => {
                    failed += 1;
                    println!("FAIL {}: {e:#}", path.display());
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
