//! leanSpec's public vectors that apply to avs-node (`../shared/vectors/leanspec/`).
//!
//! The folder layout and formats are documented in that folder's README. Each submodule checks
//! one `fixtureFormat`.

pub mod slot_clock;

use std::path::PathBuf;

/// Where the leanSpec vectors are: `$LEANSPEC_VECTORS_DIR`, or `shared/vectors/leanspec` beside
/// the repository's root (where the developers' machines and CI put it).
pub fn vectors_dir() -> PathBuf {
    std::env::var_os("LEANSPEC_VECTORS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/leanspec")
    })
}
