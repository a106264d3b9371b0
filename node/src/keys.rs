//! An operator's keys on disk: `avs-node keys generate` (or `keys import`) writes them, the node
//! loads them.
//!
//! A keys directory (mode 0700) holds:
//!
//! | file | secret | what |
//! |---|---|---|
//! | `bls.keystore.json` | encrypted (0600) | the BLS12-381 secret key, an EIP-2335 keystore (scrypt) |
//! | `eth.keystore.json` | encrypted (0600) | the secp256k1 key whose Ethereum address identifies the operator, a Web3 Secret Storage v3 keystore |
//! | `node.key` | yes (0600) | libp2p identity (protobuf), so the peer id survives restarts; it authenticates transport, never votes |
//! | `operator.json` | no | the public half: address, BLS public key, proof of possession, peer id |
//!
//! One password opens both keystores: from `--password-file` (`--keys-password-file` for `run`),
//! else asked on the terminal. With `--insecure-plaintext-keys` (throwaway devnets and tests) the
//! two secrets are kept unencrypted instead, as `bls.seed` (32 bytes of seed material from which
//! the BLS key is derived with `KeyGen`) and `eth.key` (hex); a node starts on plaintext keys only
//! when given that flag too.
//!
//! `operator.json` is what an operator hands to whoever builds the genesis. Writing refuses to
//! overwrite any existing key file, and loading checks the secrets against `operator.json`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use avs_consensus::bls::SecretKey;
use libp2p::identity::secp256k1;
use serde::{Deserialize, Serialize};
use sha3::{Digest, Keccak256};

use crate::keystore::{self, Eip2335, Password};

pub const BLS_KEYSTORE_FILE: &str = "bls.keystore.json";
pub const ETH_KEYSTORE_FILE: &str = "eth.keystore.json";
pub const BLS_SEED_FILE: &str = "bls.seed";
pub const ETH_KEY_FILE: &str = "eth.key";
pub const NODE_KEY_FILE: &str = "node.key";
pub const OPERATOR_FILE: &str = "operator.json";

const KEY_FILES: [&str; 6] = [
    BLS_KEYSTORE_FILE,
    ETH_KEYSTORE_FILE,
    BLS_SEED_FILE,
    ETH_KEY_FILE,
    NODE_KEY_FILE,
    OPERATOR_FILE,
];

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

/// The keys a running node needs. Its `Debug` shows no secret.
pub struct OperatorKeys {
    pub bls: SecretKey,
    pub address: [u8; 20],
    /// The secp256k1 secret behind `address`: signs this node's settlement transactions.
    pub eth_secret: zeroize::Zeroizing<[u8; 32]>,
    pub node_key: avs_p2p::Keypair,
}

impl std::fmt::Debug for OperatorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorKeys")
            .field("bls", &self.bls)
            .field("address", &format!("0x{}", hex::encode(self.address)))
            .field("eth_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// How the two secrets are kept on disk.
#[derive(Debug)]
pub enum Protection {
    /// EIP-2335 and v3 keystores under this password.
    Encrypted(Password),
    /// `bls.seed` and `eth.key` in the clear: devnets and tests only.
    InsecurePlaintext,
}

/// How a node opens its keys directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unlock {
    /// File whose first line is the keystores' password; without it the password is asked on
    /// the terminal.
    pub password_file: Option<PathBuf>,
    /// Start on plaintext keys (`bls.seed`, `eth.key`) when that is what the directory holds.
    pub insecure_plaintext: bool,
}

/// Generates a fresh operator key set in `dir` and returns its public half.
pub fn generate(dir: &Path, protection: &Protection) -> anyhow::Result<OperatorPublic> {
    refuse_existing(dir)?;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut seed[..]).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let bls =
        SecretKey::from_seed(&seed[..]).map_err(|e| anyhow::anyhow!("deriving BLS key: {e}"))?;
    let mut eth = zeroize::Zeroizing::new([0u8; 32]);
    // A secp256k1 secret must be below the group order; the library checks and we retry.
    let eth_key = loop {
        getrandom::fill(&mut eth[..]).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        if let Ok(key) = secp256k1::SecretKey::try_from_bytes(*eth) {
            break key;
        }
    };
    create_dir(dir)?;
    match protection {
        Protection::Encrypted(password) => {
            let pubkey = bls.public_key().to_bytes();
            Eip2335::encrypt(&bls.to_bytes(), &pubkey, password, "avs-node operator BLS key")?
                .write(&dir.join(BLS_KEYSTORE_FILE))?;
            keystore::write_eth(&dir.join(ETH_KEYSTORE_FILE), &eth_key.to_bytes(), password)?;
        }
        Protection::InsecurePlaintext => {
            write_secret(&dir.join(BLS_SEED_FILE), &hex::encode(*seed))?;
            write_secret(&dir.join(ETH_KEY_FILE), &hex::encode(eth_key.to_bytes()))?;
        }
    }
    write_public(dir, &bls, &eth_key)
}

/// Imports keystores made elsewhere (an EIP-2335 BLS keystore, for example from
/// staking-deposit-cli or ethdo, and a v3 Ethereum keystore, for example from geth or
/// `cast wallet`) into a new keys directory. Both must open with `password`; they are copied
/// verbatim, and a fresh libp2p identity is generated.
pub fn import(
    dir: &Path,
    bls_keystore: &Path,
    eth_keystore: &Path,
    password: &Password,
) -> anyhow::Result<OperatorPublic> {
    refuse_existing(dir)?;
    // Each file is read once: what is checked is what is copied.
    let read = |path: &Path| {
        fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let (bls_text, eth_text) = (read(bls_keystore)?, read(eth_keystore)?);
    let keystore = Eip2335::parse(&bls_text, bls_keystore)?;
    let secret = keystore
        .decrypt(password)
        .with_context(|| format!("opening {}", bls_keystore.display()))?;
    let bls = bls_from_keystore_secret(&keystore, &secret, bls_keystore)?;
    // eth-keystore reads from a path: the text read above, in a private scratch directory.
    let scratch = tempfile::tempdir().context("a scratch directory for the import")?;
    let eth_copy = scratch.path().join(ETH_KEYSTORE_FILE);
    write_secret(&eth_copy, eth_text.trim_end())?;
    let eth = keystore::read_eth(&eth_copy, password)
        .with_context(|| format!("opening {}", eth_keystore.display()))?;
    let eth_key = secp256k1::SecretKey::try_from_bytes(eth.to_vec())
        .map_err(|e| anyhow::anyhow!("{}: not a secp256k1 key: {e}", eth_keystore.display()))?;
    create_dir(dir)?;
    write_secret(&dir.join(BLS_KEYSTORE_FILE), bls_text.trim_end())?;
    write_secret(&dir.join(ETH_KEYSTORE_FILE), eth_text.trim_end())?;
    write_public(dir, &bls, &eth_key)
}

/// Loads the keys of `dir` for a running node, checked against its `operator.json`.
pub fn load(dir: &Path, unlock: &Unlock) -> anyhow::Result<OperatorKeys> {
    let (bls, eth_key) = if dir.join(BLS_KEYSTORE_FILE).exists() {
        let password = Password::obtain(
            unlock.password_file.as_deref(),
            "--keys-password-file",
            &format!("Password of the keys in {}", dir.display()),
            false,
        )?;
        let path = dir.join(BLS_KEYSTORE_FILE);
        let keystore = Eip2335::load(&path)?;
        let secret =
            keystore.decrypt(&password).with_context(|| format!("opening {}", path.display()))?;
        let bls = bls_from_keystore_secret(&keystore, &secret, &path)?;
        let path = dir.join(ETH_KEYSTORE_FILE);
        let eth = keystore::read_eth(&path, &password)?;
        let eth_key = secp256k1::SecretKey::try_from_bytes(eth.to_vec())
            .map_err(|e| anyhow::anyhow!("{}: not a secp256k1 key: {e}", path.display()))?;
        (bls, eth_key)
    } else if dir.join(BLS_SEED_FILE).exists() {
        ensure!(
            unlock.insecure_plaintext,
            "{} holds plaintext keys ({BLS_SEED_FILE}, {ETH_KEY_FILE}); a node starts on them only \
             with --insecure-plaintext-keys (throwaway devnets and tests). For a real operator, \
             generate encrypted keys with `avs-node keys generate` or bring keystores with \
             `avs-node keys import`",
            dir.display()
        );
        let seed = read_hex(&dir.join(BLS_SEED_FILE), 32)?;
        let bls =
            SecretKey::from_seed(&seed).map_err(|e| anyhow::anyhow!("deriving BLS key: {e}"))?;
        let eth = read_hex(&dir.join(ETH_KEY_FILE), 32)?;
        let eth_key = secp256k1::SecretKey::try_from_bytes(eth).map_err(|e| {
            anyhow::anyhow!("{}: not a secp256k1 key: {e}", dir.join(ETH_KEY_FILE).display())
        })?;
        (bls, eth_key)
    } else {
        bail!(
            "{} holds no operator keys; generate them with `avs-node keys generate --out {}`",
            dir.display(),
            dir.display()
        );
    };
    let node_path = dir.join(NODE_KEY_FILE);
    if !node_path.exists() {
        bail!("{} is missing; generate keys with `avs-node keys generate`", node_path.display());
    }
    let node_key = avs_p2p::load_or_generate_node_key(&node_path)?;
    let address = eth_address(&eth_key);
    let public = load_public(dir)?;
    ensure!(
        public.bls_pubkey == format!("0x{}", hex::encode(bls.public_key().to_bytes()))
            && public.address == format!("0x{}", hex::encode(address)),
        "the secret keys in {} do not match its {OPERATOR_FILE}: a key file was replaced",
        dir.display()
    );
    let eth_secret = zeroize::Zeroizing::new(eth_key.to_bytes());
    Ok(OperatorKeys { bls, address, eth_secret, node_key })
}

/// What a keys directory holds, read without any password (`avs-node keys list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeysSummary {
    pub dir: PathBuf,
    /// `"encrypted"` (keystores) or `"plaintext"`.
    pub protection: &'static str,
    #[serde(flatten)]
    pub public: OperatorPublic,
}

pub fn summary(dir: &Path) -> anyhow::Result<KeysSummary> {
    let public = load_public(dir)?;
    let protection = if dir.join(BLS_KEYSTORE_FILE).exists() {
        let keystore = Eip2335::load(&dir.join(BLS_KEYSTORE_FILE))?;
        ensure!(
            format!("0x{}", keystore.pubkey) == public.bls_pubkey,
            "{}: its public key differs from {OPERATOR_FILE}'s",
            dir.join(BLS_KEYSTORE_FILE).display()
        );
        "encrypted"
    } else if dir.join(BLS_SEED_FILE).exists() {
        "plaintext"
    } else {
        bail!("{} holds {OPERATOR_FILE} but no secret keys", dir.display());
    };
    Ok(KeysSummary { dir: dir.to_path_buf(), protection, public })
}

/// The BLS key of a decrypted keystore, checked against the keystore's own `pubkey`.
fn bls_from_keystore_secret(
    keystore: &Eip2335,
    secret: &[u8],
    path: &Path,
) -> anyhow::Result<SecretKey> {
    let bls = SecretKey::from_bytes(secret)
        .map_err(|e| anyhow::anyhow!("{}: not a BLS12-381 secret key: {e}", path.display()))?;
    ensure!(
        hex::encode(bls.public_key().to_bytes()) == keystore.pubkey.trim_start_matches("0x"),
        "{}: the decrypted key does not match the keystore's pubkey",
        path.display()
    );
    Ok(bls)
}

fn refuse_existing(dir: &Path) -> anyhow::Result<()> {
    for file in KEY_FILES {
        if dir.join(file).exists() {
            bail!("{} already exists; refusing to overwrite keys", dir.join(file).display());
        }
    }
    Ok(())
}

/// Creates the keys directory owner-only; one that exists already is made owner-only too.
fn create_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating keys directory {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} owner-only", dir.display()))
}

/// Generates the libp2p identity and writes `operator.json`.
fn write_public(
    dir: &Path,
    bls: &SecretKey,
    eth_key: &secp256k1::SecretKey,
) -> anyhow::Result<OperatorPublic> {
    let node_key = avs_p2p::load_or_generate_node_key(&dir.join(NODE_KEY_FILE))?;
    let public = OperatorPublic {
        address: format!("0x{}", hex::encode(eth_address(eth_key))),
        bls_pubkey: format!("0x{}", hex::encode(bls.public_key().to_bytes())),
        pop: format!("0x{}", hex::encode(bls.proof_of_possession().to_bytes())),
        peer_id: node_key.public().to_peer_id().to_string(),
    };
    let json = serde_json::to_string_pretty(&public)?;
    fs::write(dir.join(OPERATOR_FILE), format!("{json}\n"))
        .with_context(|| format!("writing {}", dir.join(OPERATOR_FILE).display()))?;
    Ok(public)
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
pub fn eth_address(key: &secp256k1::SecretKey) -> [u8; 20] {
    let keypair = secp256k1::Keypair::from(key.clone());
    let uncompressed = keypair.public().to_bytes_uncompressed();
    let hash = Keccak256::digest(&uncompressed[1..]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    address
}

/// Writes a new secret file, owner-only, and syncs it. Never overwrites.
pub(crate) fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
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

    fn password_file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("password.txt");
        fs::write(&path, format!("{text}\n")).unwrap();
        path
    }

    fn unlock(password_file: Option<PathBuf>) -> Unlock {
        Unlock { password_file, insecure_plaintext: false }
    }

    #[test]
    fn generate_writes_private_files_and_a_verifiable_public_half() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("op");
        let password = Password::new("operator password".to_owned());
        let public = generate(&keys, &Protection::Encrypted(password)).unwrap();
        for file in [BLS_KEYSTORE_FILE, ETH_KEYSTORE_FILE, NODE_KEY_FILE] {
            let mode = fs::metadata(keys.join(file)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
        for plaintext in [BLS_SEED_FILE, ETH_KEY_FILE] {
            assert!(!keys.join(plaintext).exists(), "{plaintext} written next to keystores");
        }
        assert_eq!(fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(load_public(&keys).unwrap(), public);
        assert_eq!(summary(&keys).unwrap().protection, "encrypted");

        let pubkey: [u8; 48] = parse_hex_array("bls_pubkey", &public.bls_pubkey).unwrap();
        let pop: [u8; 96] = parse_hex_array("pop", &public.pop).unwrap();
        avs_consensus::bls::verify_pop(avs_consensus::types::OperatorIndex::ZERO, &pubkey, &pop)
            .unwrap();

        let file = password_file(dir.path(), "operator password");
        let loaded = load(&keys, &unlock(Some(file))).unwrap();
        assert_eq!(loaded.bls.public_key().to_bytes(), pubkey);
        assert_eq!(format!("0x{}", hex::encode(loaded.address)), public.address);
        assert_eq!(loaded.node_key.public().to_peer_id().to_string(), public.peer_id);

        let wrong = password_file(dir.path(), "not the password");
        let error = load(&keys, &unlock(Some(wrong))).unwrap_err();
        assert!(format!("{error:#}").contains("wrong password"), "{error:#}");

        let err = generate(&keys, &Protection::InsecurePlaintext).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(load_public(&keys).unwrap(), public, "a refused generate changed nothing");
    }

    #[test]
    fn plaintext_keys_start_a_node_only_with_the_explicit_flag() {
        let dir = tempfile::tempdir().unwrap();
        let public = generate(dir.path(), &Protection::InsecurePlaintext).unwrap();
        assert_eq!(summary(dir.path()).unwrap().protection, "plaintext");
        let error = load(dir.path(), &Unlock::default()).unwrap_err().to_string();
        assert!(error.contains("--insecure-plaintext-keys"), "{error}");
        let unlock = Unlock { password_file: None, insecure_plaintext: true };
        let keys = load(dir.path(), &unlock).unwrap();
        assert_eq!(format!("0x{}", hex::encode(keys.address)), public.address);
    }

    #[test]
    fn imported_keystores_keep_the_operators_identity_and_a_wrong_password_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("elsewhere");
        let password = Password::new("shared password".to_owned());
        let original = generate(&source, &Protection::Encrypted(password)).unwrap();
        let (bls, eth) = (source.join(BLS_KEYSTORE_FILE), source.join(ETH_KEYSTORE_FILE));

        let target = dir.path().join("imported");
        let error = import(&target, &bls, &eth, &Password::new("guess".to_owned())).unwrap_err();
        assert!(format!("{error:#}").contains("wrong password"), "{error:#}");
        assert!(!target.exists(), "a refused import created {}", target.display());

        let imported = import(&target, &bls, &eth, &Password::new("shared password".to_owned()));
        let imported = imported.unwrap();
        assert_eq!(
            (&imported.address, &imported.bls_pubkey),
            (&original.address, &original.bls_pubkey)
        );
        let file = password_file(dir.path(), "shared password");
        let keys = load(&target, &unlock(Some(file))).unwrap();
        assert_eq!(format!("0x{}", hex::encode(keys.address)), original.address);
    }

    #[test]
    fn a_key_file_swapped_under_operator_json_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        generate(&a, &Protection::InsecurePlaintext).unwrap();
        generate(&b, &Protection::InsecurePlaintext).unwrap();
        fs::remove_file(a.join(BLS_SEED_FILE)).unwrap();
        fs::copy(b.join(BLS_SEED_FILE), a.join(BLS_SEED_FILE)).unwrap();
        let unlock = Unlock { password_file: None, insecure_plaintext: true };
        let error = load(&a, &unlock).unwrap_err().to_string();
        assert!(error.contains("do not match"), "{error}");
    }
}
