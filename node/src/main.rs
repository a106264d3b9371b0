//! `avs-node` entry point: parse the command line, set up logging, dispatch the subcommand.

use std::process::ExitCode;

use anyhow::Context;
use avs_node::cli::{Cli, Command, ExampleAvsCommand, KeysCommand};
use avs_node::config::{FileConfig, NodeConfig};
use avs_node::genesis::GenesisFile;
use avs_node::keys::Protection;
use avs_node::keystore::Password;
use clap::{CommandFactory, FromArgMatches};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
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

fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            let run_matches =
                matches.subcommand_matches("run").context("run subcommand matches")?;
            let file = match &args.config {
                Some(path) => FileConfig::load(path)?,
                None => FileConfig::default(),
            };
            let config = NodeConfig::resolve(
                &args,
                run_matches,
                matches,
                (&cli.log.log_filter, cli.log.log_format),
                file,
            )?;
            avs_node::logging::init(&config.log.filter, config.log.format)?;
            tracing::debug!(?config, "configuration resolved");
            runtime()?.block_on(async move {
                let shutdown = shutdown_on_signals()?;
                avs_node::node::run(config, shutdown).await
            })
        }
        Command::ExampleAvs(ExampleAvsCommand::Serve { listen }) => {
            avs_node::logging::init(&cli.log.log_filter, cli.log.log_format)?;
            runtime()?.block_on(async move {
                let shutdown = shutdown_on_signals()?;
                let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
                    anyhow::anyhow!("cannot listen on {listen}: {e}; choose another --listen")
                })?;
                avs_node::example_avs::serve(listener, shutdown).await
            })
        }
        Command::ExampleAvs(ExampleAvsCommand::Perform(args)) => {
            avs_node::logging::init(&cli.log.log_filter, cli.log.log_format)?;
            let keys = avs_node::keys::load(
                &args.keys_dir,
                &avs_node::keys::Unlock {
                    password_file: args.keys_password_file.clone(),
                    insecure_plaintext: args.insecure_plaintext_keys,
                },
            )?;
            let genesis = avs_node::genesis::GenesisFile::load(&args.genesis)?.to_config()?;
            let digest = avs_consensus::signing::network_digest(&genesis)?;
            runtime()?.block_on(async move {
                let shutdown = shutdown_on_signals()?;
                avs_node::example_avs::perform_loop(
                    &args.grpc_url,
                    &keys.bls,
                    args.task_id,
                    digest,
                    args.count,
                    std::time::Duration::from_millis(args.every_ms),
                    shutdown,
                )
                .await
            })
        }
        Command::Devnet(args) => {
            avs_node::logging::init(&cli.log.log_filter, cli.log.log_format)?;
            runtime()?.block_on(async move {
                let shutdown = shutdown_on_signals()?;
                avs_node::devnet::run(args, shutdown).await
            })
        }
        Command::Keys(KeysCommand::Generate(args)) => {
            let protection = if args.insecure_plaintext_keys {
                Protection::InsecurePlaintext
            } else {
                Protection::Encrypted(Password::obtain(
                    args.password.password_file.as_deref(),
                    "--password-file",
                    "Password for the new keystores",
                    true,
                )?)
            };
            let public = avs_node::keys::generate(&args.out, &protection)?;
            println!("{}", serde_json::to_string_pretty(&public)?);
            Ok(())
        }
        Command::Keys(KeysCommand::Import(args)) => {
            let password = Password::obtain(
                args.password.password_file.as_deref(),
                "--password-file",
                "Password of the keystores",
                false,
            )?;
            let public = avs_node::keys::import(
                &args.out,
                &args.bls_keystore,
                &args.eth_keystore,
                &password,
            )?;
            println!("{}", serde_json::to_string_pretty(&public)?);
            Ok(())
        }
        Command::Keys(KeysCommand::List(args)) => {
            let dirs = if args.keys_dirs.is_empty() {
                vec![avs_node::keys::default_dir(&avs_node::config::expand_home(
                    avs_node::config::defaults::DATA_DIR.into(),
                )?)]
            } else {
                args.keys_dirs
            };
            for dir in dirs {
                let summary = avs_node::keys::summary(&dir)?;
                if args.json {
                    println!("{}", serde_json::to_string(&summary)?);
                } else {
                    println!("{}", summary.dir.display());
                    println!("  keys:       {}", summary.protection);
                    println!("  address:    {}", summary.public.address);
                    println!("  bls_pubkey: {}", summary.public.bls_pubkey);
                    println!("  peer_id:    {}", summary.public.peer_id);
                }
            }
            Ok(())
        }
        Command::Status(args) => avs_node::status::print_remote(&args.url, args.json),
        Command::Completions(args) => {
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "avs-node",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Genesis(args) => {
            let genesis = GenesisFile::from_args(&args, avs_node::node::now_ms())?;
            if let Some(note) = genesis.short_slot_note() {
                println!("note: {note}");
            }
            genesis.write(&args.out)?;
            println!("wrote {}", args.out.display());
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// One root token, cancelled by SIGINT or SIGTERM.
fn shutdown_on_signals() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        cancel.cancel();
    });
    Ok(token)
}
