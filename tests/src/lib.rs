//! Multi-process integration tests: real `avs-node` processes on 127.0.0.1.
//!
//! This library holds the harness (finding the binary, owning child processes so that none
//! outlives its test); the scenarios are its unit tests, so the crate builds one test binary.
//! The binary is the one `cargo nextest run --workspace` builds for the node's own integration
//! tests, in the same target directory and with the same features.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// Path of the `avs-node` binary built alongside this test binary.
pub fn avs_node_binary() -> anyhow::Result<PathBuf> {
    // The test executable is `<target>/<profile>/deps/avs_tests-<hash>`; the binary sits in
    // `<target>/<profile>/`.
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test executable is not in <target>/<profile>/deps")?;
    let bin = profile_dir.join(format!("avs-node{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!(
            "{} is missing: build it with the whole workspace (`scripts/test`) or \
             `cargo build -p avs-node`",
            bin.display()
        );
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_binary_is_built_and_reports_its_version() {
        let bin = avs_node_binary().unwrap();
        let out = std::process::Command::new(bin).arg("--version").output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.trim(), format!("avs-node {}", env!("CARGO_PKG_VERSION")));
    }
}
