//! avs-consensus: a pure, deterministic Simplex-style BFT over weighted BLS votes.
//!
//! Data flow: the node decodes gossip into the SSZ containers of `types`, checks signatures
//! with the pure functions of `verify` (against a per-epoch `operators::KeyTable` built with
//! `bls`), and feeds the results to `engine::Engine::handle`, which returns the actions to
//! execute (persist own vote, broadcast, fetch a block, report finality, schedule a tick).
//! `state` and `task` define the replicated state and the hook tasks implement; `pool` checks
//! votes lazily and turns a quorum of them into a certificate; `gossip` is what a node checks
//! before forwarding. Nothing here does I/O, reads a clock, spawns threads or draws
//! randomness: time comes in as an argument. `testkit` holds fixtures for simulations.
//! `docs/protocol.md` is the normative description this crate implements.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

pub mod bls;
pub mod clock;
pub mod engine;
pub mod error;
pub mod gossip;
pub mod ids;
pub mod operators;
pub mod pool;
pub mod signing;
pub mod ssz_check;
pub mod state;
pub mod task;
pub mod testkit;
pub mod timing;
pub mod types;
pub mod verify;

pub use engine::{
    Action, Anchor, Engine, EngineConfig, EntryCause, Input, Persisted, Request, Verdict,
};
pub use error::ConsensusError;
pub use operators::{KeyTable, is_quorum};
pub use pool::Evidence;
pub use task::{TaskDefinition, TaskRegistry, TaskValidity};
pub use verify::{Incoming, Verified};
