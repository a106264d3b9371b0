//! `avs-spec-vectors`: run the conformance vectors against a live node.
//!
//! `avs-spec-vectors run-api --url http://127.0.0.1:5052` sends every `api_endpoint_test`
//! vector to the node at that URL and prints one line per vector, then a `N passed, N failed`
//! summary; the exit code is non-zero if any failed.

use std::path::PathBuf;
use std::process::ExitCode;

use avs_spec_vectors::api::{ApiTarget, ContentTypeCheck};
use avs_spec_vectors::{Fixture, fixture_files, leanspec};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "avs-spec-vectors", version, about = "Run avs-node conformance vectors")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API vectors against a running node's HTTP API.
    RunApi {
        /// Base URL of the node's HTTP API.
        #[arg(long, default_value = "http://127.0.0.1:5052")]
        url: String,
        /// Folders of api_endpoint_test vectors. Defaults to leanSpec's `api/` folder.
        #[arg(long = "dir")]
        dirs: Vec<PathBuf>,
        /// Compare only the media type of Content-Type (before `;`), not the whole header.
        #[arg(long)]
        lenient_content_type: bool,
        /// Bearer token for nodes started with --admin-token.
        #[arg(long, env = "AVS_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
}

#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    let Command::RunApi { url, dirs, lenient_content_type, admin_token } = Cli::parse().command;
    let check =
        if lenient_content_type { ContentTypeCheck::MediaType } else { ContentTypeCheck::Exact };
    let target = ApiTarget::new(&url, check, admin_token);
    let dirs = if dirs.is_empty() { vec![leanspec::vectors_dir().join("api")] } else { dirs };
    let (mut passed, mut failed) = (0usize, 0usize);
    for dir in dirs {
        let files = match fixture_files(&dir) {
            Ok(files) => files,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        for path in files {
            let outcome =
                Fixture::load(&path).and_then(|f| avs_spec_vectors::api::check(&f, &target));
            match outcome {
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
    println!("{passed} passed, {failed} failed");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
