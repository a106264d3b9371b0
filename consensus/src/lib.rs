//! avs-consensus: the pure, deterministic protocol crate (see ARCHITECTURE.md).
//!
//! So far it holds the slot clock arithmetic; types, BLS, the operator set and the state
//! machine land with the consensus issue.

pub mod clock;
