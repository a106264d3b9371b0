//! Node configuration: built-in defaults, an optional TOML file, and the command line.
//!
//! Precedence, per setting: **command line (or the environment variable named in `--help`) >
//! config file > built-in default.** clap keeps the default in the parsed value, and reports
//! through [`ArgMatches::value_source`] whether the user actually typed it, which is what lets a
//! file value beat a default without beating an explicit flag. This is the only place that rule is
//! implemented; `config_precedence_cli_over_file_over_default` is the test that pins it.
//!
//! The file mirrors the flags' groups:
//!
//! ```toml
//! [node]
//! data_dir = "/var/lib/avs-node"
//! genesis = "genesis.json"
//! keys_dir = "keys"
//! keys_password_file = "/etc/avs-node/password" # absent: asked on the terminal
//! history_blocks = 100000       # absent: keep every finalized block
//! min_free_disk_mib = 1024
//!
//! [network]
//! p2p_addr = "0.0.0.0"
//! p2p_port = 9000
//! bootnodes = ["/ip4/10.0.0.2/udp/9000/quic-v1/p2p/12D3KooW..."]
//!
//! [http]
//! http_addr = "127.0.0.1"
//! http_port = 5052
//! admin_token = "..."
//!
//! [grpc]
//! grpc_addr = "127.0.0.1"
//! grpc_port = 2206
//!
//! [pool]
//! explorer_url = "https://etherscan.io/address/"
//! eigenlayer_profile_url = "https://app.eigenlayer.xyz/operator/{address}"
//! checkin_remote = "http://10.0.0.2:2206"
//!
//! [roles]
//! is_aggregator = false
//! internal_tasks = false
//! sync_interval = 5400000
//!
//! [tasks]                       # VotingPowerSyncTask's stake source: one of
//! stake_schedule = "stake.json" # the embedded schedule, or
//! l1_rpc = "http://127.0.0.1:8545"
//! l2_rpc = "http://127.0.0.1:8546"
//! l1_registry = "0x…"           # StakeRegistry
//! l2_registry = "0x…"           # PowerRegistry
//! confirmations = 2
//! task_services = ["1=http://127.0.0.1:4002/task/validate"] # AVS validation services
//! task_service_timeout_ms = 2000
//! settlement_rpc = "http://127.0.0.1:8545"      # AttestationCenter's chain
//! settlement_contract = "0x…"
//! automation_rpc = ["http://127.0.0.1:8545"]   # chains of automations' block/event triggers
//!
//! [log]
//! log_filter = "info"
//! log_format = "json"
//! ```
//!
//! Unknown keys are refused, so a typo never silently falls back to a default.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;
use thiserror::Error;

use crate::cli::{LogFormat, RunArgs};

/// Built-in defaults. `--help` shows these values, because clap takes them from here.
pub mod defaults {
    use std::net::{IpAddr, Ipv4Addr};

    pub const DATA_DIR: &str = "~/.avs-node";
    pub const P2P_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    pub const P2P_PORT: u16 = 9000;
    pub const HTTP_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    pub const HTTP_PORT: u16 = 5052;
    pub const GRPC_PORT: u16 = 2206;
    pub const GRPC_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    pub const EXPLORER_URL: &str = "https://etherscan.io/address/";
    pub const EIGENLAYER_PROFILE_URL: &str = "https://app.eigenlayer.xyz/operator/";
    /// 1h30m, the period the reference systems use.
    pub const SYNC_INTERVAL_MS: u64 = 5_400_000;
    pub const LOG_FILTER: &str = "info";
    /// A day of blocks at the default slot is about 10 MiB; a GiB leaves time to react.
    pub const MIN_FREE_DISK_MIB: u64 = 1024;
}

/// Below this, VotingPowerSync would propose before the previous update can be final, and read
/// chains faster than their block time: ten seconds is two and a half default slots.
pub const MIN_SYNC_INTERVAL_MS: u64 = 10_000;

/// Why a configuration was refused. Nothing starts with a refused configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "--sync-interval {value} ms is below the minimum of {MIN_SYNC_INTERVAL_MS} ms \
         (5400000 is 1h30m)"
    )]
    SyncIntervalTooShort { value: u64 },
    #[error(
        "--p2p-port and --{other} are both {port} on overlapping addresses; choose distinct ports"
    )]
    PortClash { other: &'static str, port: u16 },
    #[error(
        "--bootnode {0:?} is not a multiaddr (expected something like /ip4/1.2.3.4/udp/9000/quic-v1/p2p/<peer id>)"
    )]
    Bootnode(String),
    #[error("--admin-token must not be empty; omit it to leave the admin routes open on {0}")]
    EmptyAdminToken(IpAddr),
    #[error(
        "--http-addr {0} is not a loopback address and no --admin-token is set: anyone who can \
         reach it could switch the aggregator role; set --admin-token (or AVS_ADMIN_TOKEN), or \
         keep --http-addr on 127.0.0.1 and reach it through an SSH tunnel"
    )]
    AdminApiExposed(IpAddr),
    #[error("cannot resolve ~ in {0}: HOME is not set; give an absolute --data-dir")]
    NoHome(PathBuf),
    #[error("--{flag} {value:?} must be an http:// or https:// URL")]
    BadUrl { flag: &'static str, value: String },
    #[error("{0}")]
    Tasks(String),
    #[error(
        "--history-blocks {value} is below the minimum of {min}: peers catching up a batch \
         behind must still find their blocks here",
        min = crate::chain_store::MIN_HISTORY_BLOCKS
    )]
    HistoryTooShort { value: u64 },
}

/// The config file, as written. Every field is optional: absent means "not set in the file".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub node: FileNode,
    pub network: FileNetwork,
    pub http: FileHttp,
    pub grpc: FileGrpc,
    pub roles: FileRoles,
    pub pool: FilePool,
    pub tasks: crate::tasks::FileTasks,
    pub log: FileLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileNode {
    pub data_dir: Option<PathBuf>,
    pub genesis: Option<PathBuf>,
    pub keys_dir: Option<PathBuf>,
    pub keys_password_file: Option<PathBuf>,
    pub history_blocks: Option<u64>,
    pub min_free_disk_mib: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileNetwork {
    pub p2p_addr: Option<IpAddr>,
    pub p2p_port: Option<u16>,
    pub bootnodes: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileHttp {
    pub http_addr: Option<IpAddr>,
    pub http_port: Option<u16>,
    pub admin_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileGrpc {
    pub grpc_port: Option<u16>,
    pub grpc_addr: Option<IpAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilePool {
    pub explorer_url: Option<String>,
    pub eigenlayer_profile_url: Option<String>,
    pub checkin_remote: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileRoles {
    pub is_aggregator: Option<bool>,
    pub internal_tasks: Option<bool>,
    pub sync_interval: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileLog {
    pub log_filter: Option<String>,
    pub log_format: Option<LogFormat>,
}

impl FileConfig {
    /// Reads and parses a config file; a missing or malformed file is an error, never ignored.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: parse_error(text, &e),
        })
    }
}

/// Where and why the file does not parse, without its text: toml's own message quotes the
/// offending line, which may hold the admin token or an RPC key.
fn parse_error(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else { return error.message().to_owned() };
    let before = text.get(..span.start).unwrap_or_default();
    let line = before.matches('\n').count().saturating_add(1);
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()).saturating_add(1);
    format!("line {line}, column {column}: {}", error.message())
}

/// The effective configuration of `avs-node run`, after layering, grouped like the flags
/// (`--help`'s headings) and the config file's tables. Its `Debug` (logged at start) shows
/// everything but the secrets, which live in [`HttpSettings`] (the admin token),
/// [`PoolSettings`] (the check-in remote's URL) and [`crate::tasks::TaskConfig`] (RPC URLs):
/// their `Debug` redacts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub node: NodeSettings,
    pub network: NetworkSettings,
    pub http: HttpSettings,
    pub grpc: GrpcSettings,
    pub pool: PoolSettings,
    pub roles: RoleSettings,
    pub tasks: crate::tasks::TaskConfig,
    pub log: LogConfig,
}

/// `Node` flags, `[node]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    pub data_dir: PathBuf,
    pub genesis: Option<PathBuf>,
    pub keys_dir: Option<PathBuf>,
    /// How the keys are opened: the password file, and whether plaintext keys are accepted
    /// (command line only: a config file cannot quietly turn that on).
    pub keys_unlock: crate::keys::Unlock,
    /// Finalized blocks kept behind the newest; `None` keeps all.
    pub history_blocks: Option<u64>,
    pub min_free_disk_mib: u64,
}

/// `P2P network` flags, `[network]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSettings {
    pub p2p_addr: IpAddr,
    pub p2p_port: u16,
    pub bootnodes: Vec<String>,
}

/// `HTTP API` flags, `[http]` table.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub http_addr: IpAddr,
    pub http_port: u16,
    pub admin_token: Option<String>,
}

/// Never shows the admin token, only whether one is set. The destructuring is exhaustive on
/// purpose: a new field does not compile until someone decides whether it may be logged.
impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { http_addr, http_port, admin_token } = self;
        f.debug_struct("HttpSettings")
            .field("http_addr", http_addr)
            .field("http_port", http_port)
            .field("admin_token", &admin_token.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// `gRPC` flags, `[grpc]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcSettings {
    pub grpc_addr: IpAddr,
    pub grpc_port: u16,
}

/// `Operator pool` flags, `[pool]` table.
#[derive(Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub explorer_url: String,
    pub eigenlayer_profile_url: String,
    pub checkin_remote: Option<String>,
}

/// Shows the check-in remote as its origin only. Exhaustive, as [`HttpSettings`]'s.
impl fmt::Debug for PoolSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { explorer_url, eigenlayer_profile_url, checkin_remote } = self;
        f.debug_struct("PoolSettings")
            .field("explorer_url", explorer_url)
            .field("eigenlayer_profile_url", eigenlayer_profile_url)
            .field("checkin_remote", &checkin_remote.as_deref().map(url_origin))
            .finish()
    }
}

/// `Roles` flags, `[roles]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSettings {
    pub is_aggregator: bool,
    pub internal_tasks: bool,
    pub sync_interval_ms: u64,
}

/// What a log shows in place of a secret.
pub(crate) const REDACTED: &str = "<redacted>";

/// `scheme://host[:port]` of `url`, with any user info, path, query or fragment (where RPC
/// providers put API keys) replaced by [`REDACTED`]; a string that is not a URL is redacted
/// whole.
pub(crate) fn url_origin(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return REDACTED.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let hidden = authority.len() != host.len() || !tail.trim_start_matches('/').is_empty();
    if hidden { format!("{scheme}://{host}/{REDACTED}") } else { format!("{scheme}://{host}") }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub filter: String,
    pub format: LogFormat,
}

/// Picks, per setting, the command line's value if the user gave one, else the file's, else the
/// built-in default (which clap already put in the parsed value).
struct Layers<'a> {
    matches: &'a ArgMatches,
}

impl Layers<'_> {
    fn given(&self, id: &str) -> bool {
        matches!(
            self.matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    }

    fn pick<T>(&self, id: &str, cli: T, file: Option<T>) -> T {
        if self.given(id) { cli } else { file.unwrap_or(cli) }
    }
}

impl NodeConfig {
    /// Layers `run`'s arguments over the file over the defaults, then validates the result.
    ///
    /// `run_matches` are the `run` subcommand's matches and `top_matches` the top-level ones
    /// (where the global logging flags live).
    pub fn resolve(
        args: &RunArgs,
        run_matches: &ArgMatches,
        top_matches: &ArgMatches,
        log: (&str, LogFormat),
        file: FileConfig,
    ) -> Result<Self, ConfigError> {
        let run = Layers { matches: run_matches };
        let top = Layers { matches: top_matches };
        let internal_tasks =
            run.pick("internal_tasks", args.roles.internal_tasks, file.roles.internal_tasks);
        let config = NodeConfig {
            node: NodeSettings {
                data_dir: expand_home(run.pick(
                    "data_dir",
                    args.node.data_dir.clone(),
                    file.node.data_dir,
                ))?,
                genesis: args.node.genesis.clone().or(file.node.genesis),
                keys_dir: args.node.keys_dir.clone().or(file.node.keys_dir),
                keys_unlock: crate::keys::Unlock {
                    password_file: args
                        .node
                        .keys_password_file
                        .clone()
                        .or(file.node.keys_password_file),
                    insecure_plaintext: args.node.insecure_plaintext_keys,
                },
                history_blocks: args.node.history_blocks.or(file.node.history_blocks),
                min_free_disk_mib: run.pick(
                    "min_free_disk_mib",
                    args.node.min_free_disk_mib,
                    file.node.min_free_disk_mib,
                ),
            },
            network: NetworkSettings {
                p2p_addr: run.pick("p2p_addr", args.network.p2p_addr, file.network.p2p_addr),
                p2p_port: run.pick("p2p_port", args.network.p2p_port, file.network.p2p_port),
                bootnodes: run.pick(
                    "bootnodes",
                    args.network.bootnodes.clone(),
                    file.network.bootnodes,
                ),
            },
            http: HttpSettings {
                http_addr: run.pick("http_addr", args.http.http_addr, file.http.http_addr),
                http_port: run.pick("http_port", args.http.http_port, file.http.http_port),
                admin_token: args.http.admin_token.clone().or(file.http.admin_token),
            },
            grpc: GrpcSettings {
                grpc_port: run.pick("grpc_port", args.grpc.grpc_port, file.grpc.grpc_port),
                grpc_addr: run.pick("grpc_addr", args.grpc.grpc_addr, file.grpc.grpc_addr),
            },
            pool: PoolSettings {
                explorer_url: run.pick(
                    "explorer_url",
                    args.pool.explorer_url.clone(),
                    file.pool.explorer_url,
                ),
                eigenlayer_profile_url: run.pick(
                    "eigenlayer_profile_url",
                    args.pool.eigenlayer_profile_url.clone(),
                    file.pool.eigenlayer_profile_url,
                ),
                checkin_remote: args.pool.checkin_remote.clone().or(file.pool.checkin_remote),
            },
            roles: RoleSettings {
                is_aggregator: run.pick(
                    "is_aggregator",
                    args.roles.is_aggregator,
                    file.roles.is_aggregator,
                ),
                internal_tasks,
                sync_interval_ms: run.pick(
                    "sync_interval",
                    args.roles.sync_interval,
                    file.roles.sync_interval,
                ),
            },
            tasks: crate::tasks::TaskSettings {
                stake_schedule: args.tasks.stake_schedule.clone().or(file.tasks.stake_schedule),
                l1_rpc: args.tasks.l1_rpc.clone().or(file.tasks.l1_rpc),
                l2_rpc: args.tasks.l2_rpc.clone().or(file.tasks.l2_rpc),
                l1_registry: args.tasks.l1_registry.clone().or(file.tasks.l1_registry),
                l2_registry: args.tasks.l2_registry.clone().or(file.tasks.l2_registry),
                confirmations: run.pick(
                    "confirmations",
                    args.tasks.confirmations,
                    file.tasks.confirmations,
                ),
                task_services: if args.tasks.task_services.is_empty() {
                    file.tasks.task_services.unwrap_or_default()
                } else {
                    args.tasks.task_services.clone()
                },
                task_service_timeout_ms: args
                    .tasks
                    .task_service_timeout_ms
                    .or(file.tasks.task_service_timeout_ms),
                settlement_rpc: args.tasks.settlement_rpc.clone().or(file.tasks.settlement_rpc),
                settlement_contract: args
                    .tasks
                    .settlement_contract
                    .clone()
                    .or(file.tasks.settlement_contract),
                automation_rpc: if args.tasks.automation_rpc.is_empty() {
                    file.tasks.automation_rpc.unwrap_or_default()
                } else {
                    args.tasks.automation_rpc.clone()
                },
            }
            .resolve(internal_tasks)
            .map_err(ConfigError::Tasks)?,
            log: LogConfig {
                filter: top.pick("log_filter", log.0.to_owned(), file.log.log_filter),
                format: top.pick("log_format", log.1, file.log.log_format),
            },
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let Self { node, network, http, grpc, pool, roles, .. } = self;
        if roles.sync_interval_ms < MIN_SYNC_INTERVAL_MS {
            return Err(ConfigError::SyncIntervalTooShort { value: roles.sync_interval_ms });
        }
        if let Some(value) = node.history_blocks
            && value < crate::chain_store::MIN_HISTORY_BLOCKS
        {
            return Err(ConfigError::HistoryTooShort { value });
        }
        let overlaps = |other: IpAddr| {
            network.p2p_addr.is_unspecified() || other.is_unspecified() || network.p2p_addr == other
        };
        let p2p_port = network.p2p_port;
        if p2p_port != 0 && p2p_port == http.http_port && overlaps(http.http_addr) {
            return Err(ConfigError::PortClash { other: "http-port", port: p2p_port });
        }
        if p2p_port != 0 && p2p_port == grpc.grpc_port {
            return Err(ConfigError::PortClash { other: "grpc-port", port: p2p_port });
        }
        if let Some(bad) = network.bootnodes.iter().find(|b| !looks_like_multiaddr(b)) {
            return Err(ConfigError::Bootnode(bad.clone()));
        }
        if http.admin_token.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::EmptyAdminToken(http.http_addr));
        }
        if http.admin_api_exposed() {
            return Err(ConfigError::AdminApiExposed(http.http_addr));
        }
        let urls = [
            ("explorer-url", Some(&pool.explorer_url)),
            ("eigenlayer-profile-url", Some(&pool.eigenlayer_profile_url)),
            ("checkin-remote", pool.checkin_remote.as_ref()),
        ];
        for (flag, url) in urls {
            if let Some(url) = url
                && !is_http_url(url)
            {
                return Err(ConfigError::BadUrl { flag, value: url.clone() });
            }
        }
        Ok(())
    }
}

impl HttpSettings {
    /// The HTTP API would take admin requests from beyond this host with no token: its only
    /// defence off loopback (the Host check protects loopback binds, see `http/guard.rs`).
    fn admin_api_exposed(&self) -> bool {
        !self.http_addr.to_canonical().is_loopback() && self.admin_token.is_none()
    }
}

fn is_http_url(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace))
}

/// A cheap shape check; the p2p layer parses the multiaddr fully when it dials.
fn looks_like_multiaddr(s: &str) -> bool {
    s.starts_with('/') && s.len() > 1 && !s.contains(char::is_whitespace)
}

pub fn expand_home(path: PathBuf) -> Result<PathBuf, ConfigError> {
    match path.strip_prefix("~") {
        Ok(rest) => {
            let home = std::env::var_os("HOME").ok_or_else(|| ConfigError::NoHome(path.clone()))?;
            Ok(PathBuf::from(home).join(rest))
        }
        Err(_) => Ok(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, FromArgMatches};

    fn resolve(argv: &[&str], file: &str) -> Result<NodeConfig, ConfigError> {
        let top = Cli::command().try_get_matches_from(argv).expect("argv parses");
        let cli = Cli::from_arg_matches(&top).expect("matches convert");
        let Command::Run(args) = &cli.command else { panic!("not a run command") };
        let run = top.subcommand_matches("run").expect("run matches");
        let file = FileConfig::parse(file, Path::new("test.toml"))?;
        NodeConfig::resolve(args, run, &top, (&cli.log.log_filter, cli.log.log_format), file)
    }

    #[test]
    fn the_logged_configuration_holds_no_secret() {
        let file = r#"
            [http]
            admin_token = "s3cret-token"
            [tasks]
            l1_rpc = "https://mainnet.example.io/v3/KEY1"
            l2_rpc = "https://user:KEY2@l2.example.io:8545?apikey=KEY3"
            l1_registry = "0x0000000000000000000000000000000000000001"
            l2_registry = "0x0000000000000000000000000000000000000002"
        "#;
        let cfg = resolve(&["avs-node", "run"], file).expect("valid");
        let logged = format!("{cfg:?} {cfg:#?}");
        for secret in ["s3cret-token", "KEY1", "KEY2", "KEY3", "user"] {
            assert!(!logged.contains(secret), "{secret} is in the log line: {logged}");
        }
        assert!(logged.contains("https://mainnet.example.io/<redacted>"), "{logged}");
        assert!(logged.contains("https://l2.example.io:8545/<redacted>"), "{logged}");
        assert!(logged.contains("admin_token: Some(\"<redacted>\")"), "{logged}");
    }

    #[test]
    fn a_file_that_does_not_parse_is_reported_without_its_text() {
        let err = FileConfig::parse("[http]\nadmin_token = \"s3cret-token\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("c.toml") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn url_origin_keeps_scheme_and_host_only() {
        assert_eq!(url_origin("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(url_origin("http://127.0.0.1:8545/"), "http://127.0.0.1:8545");
        assert_eq!(url_origin("wss://h/k"), "wss://h/<redacted>");
        assert_eq!(url_origin("http://h#k"), "http://h/<redacted>");
        assert_eq!(url_origin("not a url KEY"), "<redacted>");
    }

    #[test]
    fn config_precedence_cli_over_file_over_default() {
        let file = r#"
            [network]
            p2p_port = 9100
            [http]
            http_port = 6000
            [roles]
            is_aggregator = true
            sync_interval = 60000
            [log]
            log_format = "json"
        "#;
        let cfg = resolve(
            &[
                "avs-node",
                "run",
                "--p2p-port",
                "9200",
                "--data-dir",
                "/tmp/x",
                "--log-filter",
                "debug",
            ],
            file,
        )
        .unwrap();
        // Given on the command line: the CLI wins over the file.
        assert_eq!(cfg.network.p2p_port, 9200);
        assert_eq!(cfg.log.filter, "debug");
        // Only in the file: the file wins over the default.
        assert_eq!(cfg.http.http_port, 6000);
        assert!(cfg.roles.is_aggregator);
        assert_eq!(cfg.roles.sync_interval_ms, 60_000);
        assert_eq!(cfg.log.format, LogFormat::Json);
        // In neither: the built-in default.
        assert_eq!(cfg.grpc.grpc_port, defaults::GRPC_PORT);
        assert_eq!(cfg.http.http_addr, defaults::HTTP_ADDR);
        assert_eq!(cfg.node.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn role_flags_take_an_explicit_value_that_beats_the_file() {
        let stake = "[tasks]\nstake_schedule = \"stake.json\"\n";
        let file = format!("[roles]\nis_aggregator = true\ninternal_tasks = true\n{stake}");
        let cfg = resolve(&["avs-node", "run"], &file).unwrap();
        assert!(cfg.roles.is_aggregator && cfg.roles.internal_tasks);
        let argv = ["avs-node", "run", "--is-aggregator=false", "--internal-tasks=false"];
        let cfg = resolve(&argv, &file).unwrap();
        assert!(
            !cfg.roles.is_aggregator && !cfg.roles.internal_tasks,
            "=false must beat the file's true"
        );
        let argv = ["avs-node", "run", "--is-aggregator", "--internal-tasks"];
        let cfg = resolve(&argv, stake).unwrap();
        assert!(
            cfg.roles.is_aggregator && cfg.roles.internal_tasks,
            "the bare flag still means true"
        );
        let cfg = resolve(&["avs-node", "run", "--is-aggregator=true"], "").unwrap();
        assert!(cfg.roles.is_aggregator);
        assert!(
            Cli::command()
                .try_get_matches_from(["avs-node", "run", "--is-aggregator=yes!"])
                .is_err()
        );
    }

    #[test]
    fn plaintext_keys_are_a_command_line_decision_and_the_password_file_layers() {
        let file = "[node]\nkeys_password_file = \"/etc/avs/password\"\n";
        let cfg = resolve(&["avs-node", "run"], file).unwrap();
        assert_eq!(cfg.node.keys_unlock.password_file, Some(PathBuf::from("/etc/avs/password")));
        assert!(!cfg.node.keys_unlock.insecure_plaintext);
        let err =
            FileConfig::parse("[node]\ninsecure_plaintext_keys = true\n", Path::new("c.toml"));
        assert!(err.is_err(), "a config file cannot turn plaintext keys on");
        let cfg = resolve(&["avs-node", "run", "--insecure-plaintext-keys"], "").unwrap();
        assert!(cfg.node.keys_unlock.insecure_plaintext);
    }

    #[test]
    fn explicit_cli_value_equal_to_default_still_beats_file() {
        let cfg = resolve(
            &["avs-node", "run", "--http-port", "5052", "--data-dir", "/d"],
            "[http]\nhttp_port = 6000\n",
        )
        .unwrap();
        assert_eq!(cfg.http.http_port, 5052);
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let err = resolve(&["avs-node", "run"], "[network]\np2p_prot = 1\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("p2p_prot"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_a_clear_reason() {
        let err = resolve(&["avs-node", "run", "--sync-interval", "999"], "").unwrap_err();
        assert!(err.to_string().contains("minimum"), "{err}");
        let err = resolve(&["avs-node", "run", "--p2p-port", "7000", "--http-port", "7000"], "")
            .unwrap_err();
        assert!(matches!(err, ConfigError::PortClash { .. }), "{err}");
        let err = resolve(&["avs-node", "run", "--bootnode", "1.2.3.4:9000"], "").unwrap_err();
        assert!(matches!(err, ConfigError::Bootnode(_)), "{err}");
        let err = resolve(&["avs-node", "run"], "[http]\nadmin_token = \"\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::EmptyAdminToken(_)), "{err}");
    }

    #[test]
    fn a_non_loopback_http_addr_needs_an_admin_token() {
        for addr in ["0.0.0.0", "10.0.0.5", "::"] {
            let err = resolve(&["avs-node", "run", "--http-addr", addr], "").unwrap_err();
            assert!(matches!(err, ConfigError::AdminApiExposed(_)), "{addr}: {err}");
            assert!(err.to_string().contains("--admin-token"), "{err}");
            let file = format!("[http]\nhttp_addr = \"{addr}\"\n");
            let err = resolve(&["avs-node", "run"], &file).unwrap_err();
            assert!(matches!(err, ConfigError::AdminApiExposed(_)), "{addr} from the file: {err}");
            let cfg = resolve(&["avs-node", "run", "--http-addr", addr, "--admin-token", "t"], "")
                .expect("a token makes a public bind acceptable");
            assert_eq!(cfg.http.http_addr, addr.parse::<IpAddr>().unwrap());
        }
        for addr in ["127.0.0.1", "127.0.0.2", "::1"] {
            resolve(&["avs-node", "run", "--http-addr", addr], "")
                .expect("loopback needs no token");
        }
    }

    #[test]
    fn pool_settings_layer_and_bad_urls_are_refused() {
        let file = "[pool]\nexplorer_url = \"https://scan.example/a/\"\n\
                    checkin_remote = \"http://10.0.0.2:2206\"\n[grpc]\ngrpc_addr = \"0.0.0.0\"\n";
        let cfg =
            resolve(&["avs-node", "run", "--eigenlayer-profile-url", "https://el/{address}"], file)
                .unwrap();
        assert_eq!(cfg.pool.explorer_url, "https://scan.example/a/");
        assert_eq!(cfg.pool.eigenlayer_profile_url, "https://el/{address}");
        assert_eq!(cfg.pool.checkin_remote.as_deref(), Some("http://10.0.0.2:2206"));
        assert_eq!(cfg.grpc.grpc_addr.to_string(), "0.0.0.0");
        let cfg = resolve(&["avs-node", "run"], "").unwrap();
        assert_eq!(cfg.pool.explorer_url, defaults::EXPLORER_URL);
        assert_eq!(cfg.pool.checkin_remote, None);
        let err =
            resolve(&["avs-node", "run", "--explorer-url", "javascript:alert(1)"], "").unwrap_err();
        assert!(matches!(err, ConfigError::BadUrl { flag: "explorer-url", .. }), "{err}");
        let err =
            resolve(&["avs-node", "run", "--checkin-remote", "10.0.0.2:2206"], "").unwrap_err();
        assert!(matches!(err, ConfigError::BadUrl { flag: "checkin-remote", .. }), "{err}");
    }

    #[test]
    fn home_is_expanded_in_the_default_data_dir() {
        let cfg = resolve(&["avs-node", "run"], "").unwrap();
        assert!(!cfg.node.data_dir.starts_with("~"), "{:?}", cfg.node.data_dir);
        assert!(cfg.node.data_dir.ends_with(".avs-node"));
    }

    #[test]
    fn task_settings_layer_and_an_incomplete_stake_source_is_refused() {
        let file = "[tasks]\nstake_schedule = \"s.json\"\nconfirmations = 3\n";
        let cfg = resolve(&["avs-node", "run", "--confirmations", "5"], file).unwrap();
        assert_eq!(
            cfg.tasks.source,
            crate::tasks::StakeSourceConfig::Schedule(PathBuf::from("s.json"))
        );
        assert_eq!(cfg.tasks.confirmations, 5);
        let cfg = resolve(&["avs-node", "run"], file).unwrap();
        assert_eq!(cfg.tasks.confirmations, 3);
        let err =
            resolve(&["avs-node", "run", "--l1-rpc", "http://127.0.0.1:8545"], "").unwrap_err();
        assert!(matches!(err, ConfigError::Tasks(_)), "{err}");
        let err = resolve(&["avs-node", "run", "--internal-tasks"], "").unwrap_err();
        assert!(err.to_string().contains("needs a stake source"), "{err}");
    }
}
