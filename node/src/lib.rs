//! avs-node: the binary's library half. `main.rs` parses the command line and calls in here.
//!
//! - [`cli`]: the command line (clap derive), one struct per concern.
//! - [`config`]: layering of command line, TOML file and defaults into a [`config::NodeConfig`].
//! - [`logging`]: tracing subscriber with `RUST_LOG`-style filters, text or JSON.
//! - [`aggregator`]: the runtime aggregator flag and its `lean_is_aggregator` gauge.
//! - [`http`]: the HTTP API (health, aggregator admin, status, metrics).
//! - [`store`]: the durable store (RocksDB, and a memory backend for tests).
//! - [`chain_store`]: the chain's typed layout on the store (votes, certificates, blocks, anchor).
//! - [`keys`], [`keystore`], [`genesis`]: operator keys on disk (EIP-2335 and v3 keystores) and
//!   the genesis file.
//! - [`node`]: `avs-node run`: builds the components, starts them, supervises.
//! - [`core`]: the consensus core without I/O: engine, store writes, sync requests, verdicts.
//! - [`driver`]: the loop that drives the core on its own thread and carries out its effects.
//! - [`gossip`]: gossip validation off the loop (typed verdicts, check-ins).
//! - [`sync`]: req/resp messages, this node's answers and its requests.
//! - [`status`]: what the node reports about itself (API, check-ins, gRPC), and `avs-node status`.
//! - [`devnet`]: a local network of node processes.
//! - [`metrics`]: the node's own Prometheus metrics.
//! - [`tasks`]: internal tasks (VotingPowerSyncTask): registry, stake source refresher, logs.
//! - [`pool`]: the operator pool: signed check-ins, their verification, one row per operator.
//! - [`grpc`]: the gRPC `NodeService` (check-ins, status, operators, finalized stream), the
//!   `TaskService`, the `AutomationService` and the check-in client mode.
//! - [`automation`]: client automations (wallet sign-in, definitions; issue 15).

pub mod aggregator;
pub mod automation;
pub mod avs;
pub mod chain_store;
pub mod cli;
pub mod config;
pub mod core;
pub mod devnet;
pub mod disk;
pub mod driver;
pub mod example_avs;
pub mod genesis;
pub mod gossip;
pub mod grpc;
pub mod http;
pub mod keys;
pub mod keystore;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod pool;
pub mod settlement;
#[cfg(test)]
mod sim;
pub mod status;
pub mod store;
pub mod sync;
pub mod tasks;
