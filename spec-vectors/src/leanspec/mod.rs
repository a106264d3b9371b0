//! leanSpec's public vectors that apply to avs-node, vendored in `spec-vectors/vendor/leanspec/`
//! (MIT; source commit, generator and licence in its README).
//!
//! The folder layout and formats are documented in that folder's README. Each submodule checks
//! one `fixtureFormat`.

pub mod slot_clock;

use std::path::PathBuf;

/// Where the leanSpec vectors are: the vendored copy, as `.cargo/config.toml` names it for
/// every crate of the workspace.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("LEANSPEC_VECTORS_DIR"))
}
