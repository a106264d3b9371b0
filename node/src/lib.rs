//! avs-node: the binary's library half. `main.rs` parses the command line and calls in here.
//!
//! - [`cli`]: the command line (clap derive), one struct per concern.
//! - [`config`]: layering of command line, TOML file and defaults into a [`config::NodeConfig`].
//! - [`logging`]: tracing subscriber with `RUST_LOG`-style filters, text or JSON.
//! - [`aggregator`]: the runtime aggregator flag and its `lean_is_aggregator` gauge.
//! - [`http`]: the HTTP API (health, aggregator admin, status, metrics).
//! - [`store`]: the durable store (RocksDB, and a memory backend for tests).

pub mod aggregator;
pub mod cli;
pub mod config;
pub mod http;
pub mod logging;
pub mod store;
