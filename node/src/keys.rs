//! An operator's keys on disk: `avs-node keys generate` writes them, the node loads them.
//!
//! A keys directory (mode 0700) holds:
//!
//! | file | secret | what |
//! |---|---|---|
//! | `bls.seed` | yes (0600) | 32 bytes of seed material (hex) from which the BLS12-381 key is derived with `KeyGen` |
//! | `eth.key` | yes (0600) | secp256k1 secret key (hex) whose Ethereum address identifies the operator |
//! | `node.key` | yes (0600) | libp2p identity (protobuf), so the peer id survives restarts |
//! | `operator.json` | no | the public half: address, BLS public key, proof of possession, peer id |
//!
//! `operator.json` is what an operator hands to whoever builds the genesis. Generation refuses to
//! overwrite any existing key file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use avs_consensus::bls::SecretKey;
use serde::{Deserialize, Serialize};
use sha3::{Digest, Keccak256};

pub const BLS_SEED_FILE: &str = "bls.seed";
pub const ETH_KEY_FILE: &str = "eth.key";
pub const NODE_KEY_FILE: &str = "node.key";
pub const OPERATOR_FILE: &str = "operator.json";

/// The public half of an operator's keys, as written to `operator.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorPublic {
    /// `0x`-prefixed 20-byte Ethereum address.
    pub address: String,
    /// `0x`-prefixed 48-byte compressed BLS public key.
    pub bls_pubkey: String,
    /// `0x`-prefixed 96-byte proof of possession of `bls_pubkey`.
    pub pop: String,
    /// libp2p peer id of the node.
    pub peer_id: String,
}

/// The keys a running node needs.
#[derive(Debug)]
pub struct OperatorKeys {
    pub bls: SecretKey,
    pub address: [u8; 20],
    pub node_key: avs_p2p::Keypair,
}

/// Generates a fresh operator key set in `dir` and returns its public half.
pub fn generate(dir: &Path) -> anyhow::Result<OperatorPublic> {
    for file in [BLS_SEED_FILE, ETH_KEY_FILE, NODE_KEY_FILE, OPERATOR_FILE] {
        if dir.join(file).exists() {
            bail!("{} already exists; refusing to overwrite keys", dir.join(file).display());
        }
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating keys directory {}", dir.display()))?;

    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let mut eth = [0u8; 32];
    // A secp256k1 secret must be below the group order; the library checks and we retry.
    let eth_key = loop {
        getrandom::fill(&mut eth).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        if let Ok(key) = libp2p::identity::secp256k1::SecretKey::try_from_bytes(eth) {
            break key;
        }
    };
    write_secret(&dir.join(BLS_SEED_FILE), &hex::encode(seed))?;
    write_secret(&dir.join(ETH_KEY_FILE), &hex::encode(eth_key.to_bytes()))?;
    let node_key = avs_p2p::load_or_generate_node_key(&dir.join(NODE_KEY_FILE))?;

    let bls = SecretKey::from_seed(&seed).map_err(|e| anyhow::anyhow!("deriving BLS key: {e}"))?;
    let public = OperatorPublic {
        address: format!("0x{}", hex::encode(eth_address(&eth_key))),
        bls_pubkey: format!("0x{}", hex::encode(bls.public_key().to_bytes())),
        pop: format!("0x{}", hex::encode(bls.proof_of_possession().to_bytes())),
        peer_id: node_key.public().to_peer_id().to_string(),
    };
    let json = serde_json::to_string_pretty(&public)?;
    fs::write(dir.join(OPERATOR_FILE), format!("{json}\n"))
        .with_context(|| format!("writing {}", dir.join(OPERATOR_FILE).display()))?;
    Ok(public)
}

/// Loads the keys of `dir` for a running node.
pub fn load(dir: &Path) -> anyhow::Result<OperatorKeys> {
    let seed = read_hex(&dir.join(BLS_SEED_FILE), 32)?;
    let bls = SecretKey::from_seed(&seed).map_err(|e| anyhow::anyhow!("deriving BLS key: {e}"))?;
    let eth = read_hex(&dir.join(ETH_KEY_FILE), 32)?;
    let eth_key = libp2p::identity::secp256k1::SecretKey::try_from_bytes(eth).map_err(|e| {
        anyhow::anyhow!("{}: not a secp256k1 key: {e}", dir.join(ETH_KEY_FILE).display())
    })?;
    let node_path = dir.join(NODE_KEY_FILE);
    if !node_path.exists() {
        bail!("{} is missing; generate keys with `avs-node keys generate`", node_path.display());
    }
    let node_key = avs_p2p::load_or_generate_node_key(&node_path)?;
    Ok(OperatorKeys { bls, address: eth_address(&eth_key), node_key })
}

/// Name of the lock file a running node holds in its keys directory.
pub const LOCK_FILE: &str = "avs-node.lock";

/// A running node's exclusive hold on its keys directory; released when dropped (or when the
/// process dies: the lock is the kernel's, not the file's existence).
#[derive(Debug)]
pub struct KeysLock {
    _file: fs::File,
}

/// Takes the keys directory for this process. Two nodes on one operator's keys would sign
/// two different votes in the same view, which every peer records as equivocation; the second
/// process is refused instead (review T40).
pub fn lock(dir: &Path) -> anyhow::Result<KeysLock> {
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(KeysLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "another avs-node process is running with the keys in {}: two nodes on one \
             operator's keys would sign conflicting votes and be recorded as equivocating; stop \
             the other one first",
            dir.display()
        ),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Reads `operator.json` from a keys directory.
pub fn load_public(dir: &Path) -> anyhow::Result<OperatorPublic> {
    let path = dir.join(OPERATOR_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The Ethereum address of a secp256k1 key: the last 20 bytes of keccak256 of the
/// uncompressed public key without its 0x04 prefix.
pub fn eth_address(key: &libp2p::identity::secp256k1::SecretKey) -> [u8; 20] {
    let keypair = libp2p::identity::secp256k1::Keypair::from(key.clone());
    let uncompressed = keypair.public().to_bytes_uncompressed();
    let hash = Keccak256::digest(&uncompressed[1..]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    address
}

fn write_secret(path: &Path, hex: &str) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(hex.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

fn read_hex(path: &Path, len: usize) -> anyhow::Result<Vec<u8>> {
    let meta = fs::metadata(path).with_context(|| {
        format!("{} is missing; generate keys with `avs-node keys generate`", path.display())
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "secret key file is readable by other users; chmod 600 it");
    }
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = hex::decode(text.trim().trim_start_matches("0x"))
        .with_context(|| format!("{}: not hex", path.display()))?;
    if bytes.len() != len {
        bail!("{}: expected {len} bytes, found {}", path.display(), bytes.len());
    }
    Ok(bytes)
}

/// `0x`-prefixed hex to a fixed-size array, with the field name in the error.
pub fn parse_hex_array<const N: usize>(field: &str, text: &str) -> anyhow::Result<[u8; N]> {
    let bytes = hex::decode(text.strip_prefix("0x").unwrap_or(text))
        .with_context(|| format!("{field}: not hex"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| anyhow::anyhow!("{field}: expected {N} bytes, found {}", b.len()))
}

/// The default keys directory of a data directory.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_of_the_keys_directory_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let error = lock(dir.path()).unwrap_err().to_string();
        assert!(error.contains("another avs-node process"), "{error}");
        drop(first);
        assert!(lock(dir.path()).is_ok());
    }

    #[test]
    fn eth_address_matches_a_known_vector() {
        // Private key 1: address 0x7e5f4552091a69125d5dfcb7b8c2659029395bdf (well known).
        let mut sk = [0u8; 32];
        sk[31] = 1;
        let key = libp2p::identity::secp256k1::SecretKey::try_from_bytes(sk).unwrap();
        assert_eq!(hex::encode(eth_address(&key)), "7e5f4552091a69125d5dfcb7b8c2659029395bdf");
    }

    #[test]
    fn generate_writes_private_files_and_a_verifiable_public_half() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("op");
        let public = generate(&keys).unwrap();
        for file in [BLS_SEED_FILE, ETH_KEY_FILE, NODE_KEY_FILE] {
            let mode = fs::metadata(keys.join(file)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
        assert_eq!(fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(load_public(&keys).unwrap(), public);

        let pubkey: [u8; 48] = parse_hex_array("bls_pubkey", &public.bls_pubkey).unwrap();
        let pop: [u8; 96] = parse_hex_array("pop", &public.pop).unwrap();
        avs_consensus::bls::verify_pop(0, &pubkey, &pop).unwrap();

        let loaded = load(&keys).unwrap();
        assert_eq!(loaded.bls.public_key().to_bytes(), pubkey);
        assert_eq!(format!("0x{}", hex::encode(loaded.address)), public.address);
        assert_eq!(loaded.node_key.public().to_peer_id().to_string(), public.peer_id);

        let err = generate(&keys).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(load_public(&keys).unwrap(), public, "a refused generate changed nothing");
    }
}
