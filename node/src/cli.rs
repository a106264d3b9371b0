//! The `avs-node` command line: clap derive, one struct per concern.
//!
//! Every setting that may also come from the TOML config file is declared here with its built-in
//! default, and [`crate::config`] decides, per setting, which layer wins (CLI > file > default).
//! clap records where each value came from, so a default shown in `--help` is the one in force.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::defaults;

/// One operator's node of a BLS-attested AVS consensus network.
///
/// Nodes join a libp2p gossipsub mesh and agree, with BLS12-381 votes, on a chain of blocks that
/// carry task results; a block is final once operators holding more than 2/3 of the voting power
/// signed it.
#[derive(Debug, Parser)]
#[command(name = "avs-node", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node: join the mesh, follow the chain, vote, and serve the HTTP API.
    Run(Box<RunArgs>),
    /// Start a local multi-node network on 127.0.0.1 and show its progress until Ctrl-C.
    Devnet(DevnetArgs),
    /// Manage operator keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Build a genesis file from operators' public keys and the network's time settings.
    Genesis(GenesisArgs),
    /// Print a running node's state (from its HTTP API): chain, peers, role, health.
    Status(StatusArgs),
    /// Print a shell completion script for avs-node to standard output.
    Completions(CompletionsArgs),
    /// The example AVS (a hash-chain task): its validation service and a performer.
    #[command(subcommand, name = "example-avs")]
    ExampleAvs(ExampleAvsCommand),
}

#[derive(Debug, Subcommand)]
pub enum ExampleAvsCommand {
    /// Serve the example validation service (POST /task/validate, docs/protocol.md 7.3).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value_t = crate::example_avs::default_listen())]
        listen: std::net::SocketAddr,
    },
    /// Perform hash-chain tasks as an operator: sign each with the operator's BLS key and submit
    /// it to a node's gRPC TaskService.
    Perform(ExamplePerformArgs),
}

#[derive(Debug, Args)]
pub struct ExamplePerformArgs {
    /// The node's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub grpc_url: String,
    /// The operator's keys directory.
    #[arg(long, value_name = "DIR")]
    pub keys_dir: PathBuf,
    /// File whose first line is the keystores' password (else asked on the terminal).
    #[arg(long, value_name = "FILE")]
    pub keys_password_file: Option<PathBuf>,
    /// Open plaintext keys (devnet and tests only).
    #[arg(long)]
    pub insecure_plaintext_keys: bool,
    /// The network's genesis file (its digest is part of what is signed).
    #[arg(long, value_name = "FILE")]
    pub genesis: PathBuf,
    /// The task definition id (a `service` task of the genesis whose service is the example's).
    #[arg(long, default_value_t = 1)]
    pub task_id: u16,
    /// How many tasks to submit (0: until Ctrl-C).
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Milliseconds between two tasks.
    #[arg(long, default_value_t = 2000)]
    pub every_ms: u64,
}

/// Logging, shared by every subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log filter in `RUST_LOG` syntax, e.g. `info,avs_p2p=debug`. The `RUST_LOG` environment
    /// variable is used when this flag is absent.
    #[arg(long, global = true, env = "RUST_LOG", default_value = defaults::LOG_FILTER)]
    pub log_filter: String,

    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Settings of `avs-node run`. Each may also be set in the `--config` file; the command line wins.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML config file. Its values are used for every flag not given on the command line.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub grpc: GrpcArgs,
    #[command(flatten)]
    pub roles: RoleArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub tasks: TaskArgs,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Node")]
pub struct NodeArgs {
    /// Directory for the database and node state. Created if missing.
    #[arg(long, value_name = "DIR", default_value = defaults::DATA_DIR)]
    pub data_dir: PathBuf,

    /// Genesis file (see `avs-node genesis`).
    #[arg(long, value_name = "FILE")]
    pub genesis: Option<PathBuf>,

    /// Directory holding this operator's keys (see `avs-node keys generate`). [default:
    /// <data-dir>/keys]
    #[arg(long, value_name = "DIR")]
    pub keys_dir: Option<PathBuf>,

    /// File whose first line is the password of the keys' keystores. Without it the node asks
    /// on the terminal, and refuses to start when there is none.
    #[arg(long, value_name = "FILE", env = "AVS_KEYS_PASSWORD_FILE")]
    pub keys_password_file: Option<PathBuf>,

    /// Start on unencrypted keys (`bls.seed`, `eth.key`). For throwaway devnets and tests only:
    /// anyone who can read the files can sign as this operator.
    #[arg(long)]
    pub insecure_plaintext_keys: bool,

    /// Keep only this many finalized blocks behind the newest (at least 128). Without it every
    /// block is kept, which a network needs on some nodes: newcomers replay from genesis.
    #[arg(long, value_name = "BLOCKS")]
    pub history_blocks: Option<u64>,

    /// Free space the data directory's filesystem must keep: the node refuses to start below
    /// it, and while running reports unhealthy and logs an error before the store fails.
    #[arg(long, value_name = "MIB", default_value_t = defaults::MIN_FREE_DISK_MIB)]
    pub min_free_disk_mib: u64,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "P2P network")]
pub struct NetworkArgs {
    /// Address to listen on for peers (QUIC on UDP and TCP share the port number).
    #[arg(long, value_name = "IP", default_value_t = defaults::P2P_ADDR)]
    pub p2p_addr: IpAddr,

    /// Port to listen on for peers.
    #[arg(long, value_name = "PORT", default_value_t = defaults::P2P_PORT)]
    pub p2p_port: u16,

    /// Peers to dial at start, as multiaddrs (`/ip4/1.2.3.4/udp/9000/quic-v1/p2p/12D3...`).
    /// Repeat the flag or separate with commas.
    #[arg(long = "bootnode", value_name = "MULTIADDR", value_delimiter = ',')]
    pub bootnodes: Vec<String>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "HTTP API")]
pub struct HttpArgs {
    /// Address of the HTTP API (health, status, admin, metrics). Keep it on loopback (then only
    /// Host names localhost, 127.0.0.1 and [::1] are served); any other address requires
    /// `--admin-token`.
    #[arg(long, value_name = "IP", default_value_t = defaults::HTTP_ADDR)]
    pub http_addr: IpAddr,

    /// Port of the HTTP API.
    #[arg(long, value_name = "PORT", default_value_t = defaults::HTTP_PORT)]
    pub http_port: u16,

    /// When set, admin routes require `Authorization: Bearer <TOKEN>`.
    #[arg(long, value_name = "TOKEN", env = "AVS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "gRPC")]
pub struct GrpcArgs {
    /// Port of the gRPC services (operator check-ins, status, operator list, finalized-block
    /// stream). Unauthenticated, without TLS: see --grpc-addr before exposing it.
    #[arg(long, value_name = "PORT", default_value_t = defaults::GRPC_PORT)]
    pub grpc_port: u16,

    /// Address of the gRPC services. They are unauthenticated and unencrypted: bound beyond
    /// loopback, anyone who reaches the port can submit check-ins (each one that passes the
    /// cheap checks costs this node a BLS signature verification) and read every operator's
    /// observed IP address and peer id, the node's status and the finalized blocks. Limits
    /// bound the cost (64 KiB requests, 32 streams per connection, a 10 s handler timeout, 16
    /// signature checks a second in bursts of 32 and 1 a second per operator, 16
    /// finalized-block subscriptions), but expose it only to the clients that need it (a
    /// firewall, or a proxy with authentication).
    #[arg(long, value_name = "IP", default_value_t = defaults::GRPC_ADDR)]
    pub grpc_addr: IpAddr,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Operator pool")]
pub struct PoolArgs {
    /// Block explorer page of an address on the telemetry dashboard: a prefix the address is
    /// appended to, or a template containing `{address}`.
    #[arg(long, value_name = "URL", default_value = defaults::EXPLORER_URL)]
    pub explorer_url: String,

    /// EigenLayer profile page of an operator on the telemetry dashboard: a prefix the address
    /// is appended to, or a template containing `{address}`.
    #[arg(long, value_name = "URL", default_value = defaults::EIGENLAYER_PROFILE_URL)]
    pub eigenlayer_profile_url: String,

    /// Also send this node's signed check-ins to a remote node's gRPC service
    /// (e.g. `http://10.0.0.2:2206`), for nodes outside the gossip mesh. Retried with
    /// exponential backoff (1 s to 60 s, with jitter) while the remote is unreachable.
    #[arg(long, value_name = "URL")]
    pub checkin_remote: Option<String>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Roles")]
pub struct RoleArgs {
    /// Start with the aggregator role on (subscribes to every vote subnet). The role can be
    /// switched at runtime with `POST /lean/v0/admin/aggregator`. `--is-aggregator` alone
    /// means true; `--is-aggregator=false` overrides a config file's true.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value_t = false,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub is_aggregator: bool,

    /// Perform the internal tasks (VotingPowerSyncTask, id 10001) when this node leads a view.
    /// `--internal-tasks` alone means true.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value_t = false,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub internal_tasks: bool,

    /// Period of VotingPowerSyncTask in milliseconds (5400000 = 1h30m).
    #[arg(long, value_name = "MS", default_value_t = defaults::SYNC_INTERVAL_MS)]
    pub sync_interval: u64,
}

/// Where VotingPowerSyncTask reads stake: an embedded schedule, or two JSON-RPC chains.
#[derive(Debug, Args)]
#[command(next_help_heading = "Internal tasks")]
pub struct TaskArgs {
    /// Embedded stake source: a scripted L1/L2 stake schedule (JSON, see `avs-node devnet`).
    #[arg(long, value_name = "FILE")]
    pub stake_schedule: Option<PathBuf>,

    /// JSON-RPC endpoint of the L1 chain (stake truth, `StakeRegistry`).
    /// Read from `AVS_L1_RPC` when not given: keeps an API key in the URL out of `ps`.
    #[arg(long, value_name = "URL", env = "AVS_L1_RPC", hide_env_values = true)]
    pub l1_rpc: Option<String>,

    /// JSON-RPC endpoint of the L2 chain (recorded power, `PowerRegistry`).
    /// Read from `AVS_L2_RPC` when not given: keeps an API key in the URL out of `ps`.
    #[arg(long, value_name = "URL", env = "AVS_L2_RPC", hide_env_values = true)]
    pub l2_rpc: Option<String>,

    /// Address of the `StakeRegistry` contract on L1.
    #[arg(long, value_name = "ADDRESS")]
    pub l1_registry: Option<String>,

    /// Address of the `PowerRegistry` contract on L2.
    #[arg(long, value_name = "ADDRESS")]
    pub l2_registry: Option<String>,

    /// Blocks below a chain's head before they are read (reorg safety).
    #[arg(long, value_name = "BLOCKS", default_value_t = crate::tasks::DEFAULT_CONFIRMATIONS)]
    pub confirmations: u64,

    /// The validation service of an AVS task as `TASK_ID=URL` (this node's attester POSTs each
    /// result of that task to it before voting). Repeat per task.
    #[arg(long = "task-service", value_name = "TASK_ID=URL")]
    pub task_services: Vec<String>,

    /// How long a validation service has to answer, in milliseconds [default: 2000].
    #[arg(long, value_name = "MS")]
    pub task_service_timeout_ms: Option<u64>,

    /// JSON-RPC endpoint of the chain holding the AttestationCenter contract: while this node
    /// is an aggregator it settles finalized blocks with AVS tasks there (its operator key pays).
    /// Read from `AVS_SETTLEMENT_RPC` when not given.
    #[arg(long, value_name = "URL", env = "AVS_SETTLEMENT_RPC", hide_env_values = true)]
    pub settlement_rpc: Option<String>,

    /// Address of the AttestationCenter contract.
    #[arg(long, value_name = "ADDRESS")]
    pub settlement_contract: Option<String>,

    /// JSON-RPC endpoint of a chain whose block and event triggers this node watches for
    /// client automations (its chain id is read from it). Repeat per chain.
    #[arg(long = "automation-rpc", value_name = "URL")]
    pub automation_rpc: Vec<String>,
}

/// Settings of `avs-node devnet`.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Number of node processes to start.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,

    /// Slot duration in milliseconds (5 intervals per slot, at least 100).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = avs_consensus::clock::DEFAULT_SLOT_DURATION_MS,
        value_parser = clap::value_parser!(u64).range(100..)
    )]
    pub slot_ms: u64,

    /// How many nodes start with the aggregator role on (the first ones by index).
    #[arg(long, default_value_t = 1)]
    pub aggregators: u16,

    /// Directory for the devnet's keys, genesis and per-node data. A fresh temporary directory
    /// when absent.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Restart a node that exits (after 2 s), instead of leaving it down. Either way the others
    /// go on.
    #[arg(long)]
    pub restart_crashed: bool,

    /// Keep the temporary data directory (keys, genesis, stores, logs) after a clean run. It is
    /// always kept when a node crashed.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate an operator's keys: BLS key with proof of possession (EIP-2335 keystore),
    /// Ethereum address key (v3 keystore) and libp2p identity, written owner-only.
    Generate(KeysGenerateArgs),
    /// Import an EIP-2335 BLS keystore and a v3 Ethereum keystore made elsewhere into a new keys
    /// directory (both must open with the password; a new libp2p identity is generated).
    Import(KeysImportArgs),
    /// Show what keys directories hold (addresses, public keys, peer ids), without a password.
    List(KeysListArgs),
}

/// Where the keystores' password comes from.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// File whose first line is the keystores' password. Without it the password is asked on
    /// the terminal.
    #[arg(long, value_name = "FILE", env = "AVS_KEYS_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeysGenerateArgs {
    /// Directory to write the keys to. Refuses to overwrite existing keys.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    #[command(flatten)]
    pub password: PasswordArgs,

    /// Write the secrets unencrypted (`bls.seed`, `eth.key`) instead of keystores. For throwaway
    /// devnets and tests only; the node then needs the same flag to start.
    #[arg(long, conflicts_with = "password_file")]
    pub insecure_plaintext_keys: bool,
}

#[derive(Debug, Args)]
pub struct KeysImportArgs {
    /// Directory to create with the imported keys. Refuses to overwrite existing keys.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// EIP-2335 keystore of the BLS12-381 key (e.g. `keystore-m_12381_3600_0_0_0-*.json`).
    #[arg(long, value_name = "FILE")]
    pub bls_keystore: PathBuf,

    /// Web3 Secret Storage (v3) keystore of the Ethereum key (geth, `cast wallet`, ...).
    #[arg(long, value_name = "FILE")]
    pub eth_keystore: PathBuf,

    #[command(flatten)]
    pub password: PasswordArgs,
}

#[derive(Debug, Args)]
pub struct KeysListArgs {
    /// Keys directory to show; repeat for several. [default: <default data dir>/keys]
    #[arg(long = "keys-dir", value_name = "DIR")]
    pub keys_dirs: Vec<PathBuf>,

    /// One JSON object per directory instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The node's HTTP API.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:5052")]
    pub url: String,

    /// Print the raw status JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct GenesisArgs {
    /// Operator entry as `KEYS_DIR:POWER` (public files of `avs-node keys generate`). Repeat per
    /// operator.
    #[arg(long = "operator", value_name = "KEYS_DIR:POWER", required = true)]
    pub operators: Vec<String>,

    /// Genesis time, unix seconds. Defaults to 30 seconds from now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub genesis_time: Option<u64>,

    /// Slot duration in milliseconds: a multiple of --intervals-per-slot, at least 100. Every
    /// vote must cross the network within one interval, so slots under 2000 ms suit only
    /// networks on one host (a warning says so).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = avs_consensus::clock::DEFAULT_SLOT_DURATION_MS,
        value_parser = clap::value_parser!(u64).range(100..)
    )]
    pub slot_ms: u64,

    /// Intervals (ticks) per slot.
    #[arg(long, default_value_t = avs_consensus::clock::DEFAULT_INTERVALS_PER_SLOT)]
    pub intervals_per_slot: u64,

    /// Name of the network; it is part of the network digest, so two networks never mix.
    #[arg(long, default_value = "avs-mainnet")]
    pub network_name: String,

    /// An AVS task definition as `ID:NAME:VALIDATION` (id 1 to 9999; validation `service`: each
    /// attester asks its own validation service, or `sha256`: built in). Repeat per task.
    #[arg(long = "task", value_name = "ID:NAME:VALIDATION")]
    pub tasks: Vec<crate::genesis::GenesisTask>,

    /// Where to write the genesis file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        // clap's own checks: conflicting names, bad defaults, missing value names.
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_and_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} --{id} has no help text");
            }
            for sub in cmd.get_subcommands() {
                assert!(sub.get_about().is_some(), "{path} {} has no about", sub.get_name());
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&Cli::command(), "avs-node");
    }
}
