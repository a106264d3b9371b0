//! `avs-node` entry point: parse the command line, set up logging, dispatch the subcommand.

use std::process::ExitCode;

use anyhow::Context;
use avs_node::cli::{Cli, Command};
use avs_node::config::{FileConfig, NodeConfig};
use avs_node::store::RocksStore;
use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli, &matches) {
        Ok(code) => code,
        Err(e) => {
            // Logging may not be up yet; the error goes to stderr either way.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Run(args) => {
            let run_matches =
                matches.subcommand_matches("run").context("run subcommand matches")?;
            let file = match &args.config {
                Some(path) => FileConfig::load(path)?,
                None => FileConfig::default(),
            };
            let config = NodeConfig::resolve(
                args,
                run_matches,
                matches,
                (&cli.log.log_filter, cli.log.log_format),
                file,
            )?;
            avs_node::logging::init(&config.log.filter, config.log.format)?;
            tracing::info!(?config, "configuration resolved");
            let db_path = config.data_dir.join("db");
            let store = RocksStore::open(&db_path)
                .with_context(|| format!("opening the store at {}", db_path.display()))?;
            tracing::info!(path = %db_path.display(), "store open, schema checked");
            drop(store);
            anyhow::bail!(
                "configuration and store are valid, but this build does not contain the \
                 consensus and network services yet (see ARCHITECTURE.md, Status)"
            )
        }
        Command::Devnet(_) | Command::Keys(_) | Command::Genesis(_) => {
            avs_node::logging::init(&cli.log.log_filter, cli.log.log_format)?;
            let name = matches.subcommand_name().unwrap_or("this subcommand");
            anyhow::bail!(
                "`avs-node {name}` is not available in this build yet (see ARCHITECTURE.md, Status)"
            )
        }
    }
}
