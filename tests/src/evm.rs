//! A real EVM for the tests: anvil (foundry 1.7.1, Prague, so with the EIP-2537 BLS12-381
//! precompiles) from the npm registry, installed once into the user's cache (never vendored),
//! run on 127.0.0.1 only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use anyhow::{Context, bail};

pub const ANVIL_PACKAGE: &str = "@foundry-rs/anvil-linux-amd64@1.7.1";

/// The anvil binary, installed with npm on first use.
pub fn anvil() -> anyhow::Result<PathBuf> {
    use avs_node::example_avs::devnet::{ANVIL_IN_PREFIX, npm_prefix};
    let prefix = npm_prefix().context("HOME is not set")?;
    let bin = prefix.join(ANVIL_IN_PREFIX);
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("1.7.1"));
    if !installed {
        std::fs::create_dir_all(&prefix)?;
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(ANVIL_PACKAGE)
            .output()
            .context("running npm (Node.js is needed for the real-chain tests)")?;
        if !out.status.success() {
            bail!("npm install {ANVIL_PACKAGE} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        // The package ships the binary without its run bit.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(bin)
}

/// One anvil process: a block every second (or on each transaction when `block_time` is
/// `None`), unlocked deterministic accounts. Killed on drop.
pub struct Anvil {
    pub url: String,
    child: Child,
}

impl Anvil {
    pub fn start(
        bin: &Path,
        chain_id: u64,
        block_time: Option<u64>,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let port = avs_node::devnet::free_port()?;
        let mut command = Command::new(bin);
        command.args(["--host", "127.0.0.1", "--port", &port.to_string()]).args([
            "--chain-id",
            &chain_id.to_string(),
            "--hardfork",
            "prague",
        ]);
        if let Some(seconds) = block_time {
            command.args(["--block-time", &seconds.to_string()]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log)?)
            .stderr(Stdio::null())
            .spawn()
            .context("starting anvil")?;
        Ok(Self { url: format!("http://127.0.0.1:{port}"), child })
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A provider for `url` and its first unlocked account, once the node answers.
pub async fn provider(url: &str) -> anyhow::Result<(DynProvider, Address)> {
    let provider = ProviderBuilder::new().connect_http(url.parse()?).erased();
    // Bounds the wait for the node to boot on a loaded machine, nothing more.
    for _ in 0..600 {
        if let Ok(accounts) = provider.get_accounts().await
            && let Some(first) = accounts.first()
        {
            return Ok((provider, *first));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the EVM node at {url} did not answer")
}
