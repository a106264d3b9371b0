//! Encrypted key files: the BLS key in an EIP-2335 keystore, the Ethereum key in a Web3 Secret
//! Storage (v3) keystore, and the password that opens them.
//!
//! The v3 format is read and written by `eth-keystore` (the crate alloy and foundry use). No
//! maintained crate on crates.io reads EIP-2335, so its JSON envelope is written here, on
//! RustCrypto's maintained primitives (`scrypt`, `pbkdf2`, `aes` + `ctr`, `sha2`); the EIP's own
//! test keystores (vendored under `node/tests/data/eip2335/`, CC0) must decrypt in the tests.
//!
//! A keystore is untrusted input (an operator may import one from anywhere): the KDF parameters
//! are bounded before any work ([`MAX_KDF_MEMORY_BYTES`], [`MAX_PBKDF2_ROUNDS`]), so a crafted
//! file cannot make the node allocate gigabytes or spin for hours, and a wrong password is
//! reported as such (checksum mismatch) rather than as a bad key.

use std::fs;
use std::io::IsTerminal;
use std::path::Path;

use aes::cipher::{KeyIvInit, StreamCipher};
use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// scrypt's memory is `128 * n * r` bytes; above 1 GiB a keystore is refused unopened.
pub const MAX_KDF_MEMORY_BYTES: u64 = 1 << 30;
/// PBKDF2 rounds above this are refused (EIP-2335's own vector uses 2^18).
pub const MAX_PBKDF2_ROUNDS: u32 = 1 << 24;
/// scrypt parameters of keystores this node writes: EIP-2335's (and staking-deposit-cli's).
const SCRYPT_LOG_N: u8 = 18;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;

/// A password, wiped from memory when dropped.
pub struct Password(Zeroizing<String>);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// Reads a password file: its first line, without the line ending. An empty password is
    /// refused (a keystore under an empty password is a plaintext key with extra steps).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = Zeroizing::new(
            fs::read_to_string(path)
                .with_context(|| format!("reading the password file {}", path.display()))?,
        );
        let line = text.lines().next().unwrap_or_default();
        ensure!(!line.is_empty(), "the password file {} is empty", path.display());
        Ok(Self::new(line.to_owned()))
    }

    /// The password from `file` when given, else asked on the terminal (twice when `confirm`),
    /// else an error that names `flag`, the option that gives the file.
    pub fn obtain(
        file: Option<&Path>,
        flag: &str,
        prompt: &str,
        confirm: bool,
    ) -> anyhow::Result<Self> {
        if let Some(path) = file {
            return Self::from_file(path);
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "{prompt}: no password; pass {flag} FILE (or run in a terminal to be asked). \
                 For a throwaway devnet only: --insecure-plaintext-keys"
            );
        }
        let first = Zeroizing::new(rpassword::prompt_password(format!("{prompt}: "))?);
        ensure!(!first.is_empty(), "an empty password is refused");
        if confirm {
            let again = Zeroizing::new(rpassword::prompt_password("Repeat the password: ")?);
            ensure!(*first == *again, "the two passwords differ; nothing was written");
        }
        Ok(Self::new(first.to_string()))
    }

    /// EIP-2335's password processing: NFKD, then C0, C1 and DEL control codes removed, UTF-8.
    fn eip2335_bytes(&self) -> Zeroizing<Vec<u8>> {
        // (An empty result, a password of control codes only, is refused by `derive_key`.)
        let normalized: String =
            self.0.nfkd().filter(|c| !matches!(u32::from(*c), 0x00..=0x1f | 0x7f..=0x9f)).collect();
        Zeroizing::new(normalized.into_bytes())
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// An EIP-2335 (version 4) keystore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Eip2335 {
    pub crypto: Crypto,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Hex of the 48-byte compressed public key (no `0x`).
    pub pubkey: String,
    /// EIP-2334 derivation path, or `""` when the key was not derived from a mnemonic.
    pub path: String,
    pub uuid: String,
    pub version: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Crypto {
    pub kdf: Module<KdfParams>,
    pub checksum: Module<serde_json::Map<String, serde_json::Value>>,
    pub cipher: Module<CipherParams>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Module<P> {
    pub function: String,
    pub params: P,
    pub message: String,
}

/// scrypt's or PBKDF2's parameters; which one is named by the module's `function`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KdfParams {
    pub dklen: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prf: Option<String>,
    pub salt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CipherParams {
    pub iv: String,
}

impl Eip2335 {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// A keystore from its JSON text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let keystore: Self = serde_json::from_str(text)
            .with_context(|| format!("{} is not an EIP-2335 keystore", path.display()))?;
        ensure!(
            keystore.version == 4,
            "{}: EIP-2335 keystores are version 4, this one says {}",
            path.display(),
            keystore.version
        );
        Ok(keystore)
    }

    /// Encrypts a 32-byte secret under `password` with EIP-2335's scrypt parameters.
    pub fn encrypt(
        secret: &[u8; 32],
        pubkey: &[u8; 48],
        password: &Password,
        description: &str,
    ) -> anyhow::Result<Self> {
        let mut salt = [0u8; 32];
        let mut iv = [0u8; 16];
        let mut uuid = [0u8; 16];
        for buf in [&mut salt[..], &mut iv[..], &mut uuid[..]] {
            getrandom::fill(buf).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        }
        let kdf = Module {
            function: "scrypt".to_owned(),
            params: KdfParams {
                dklen: 32,
                n: Some(1 << SCRYPT_LOG_N),
                r: Some(SCRYPT_R),
                p: Some(SCRYPT_P),
                salt: hex::encode(salt),
                ..KdfParams::default()
            },
            message: String::new(),
        };
        let key = derive_key(&kdf, password)?;
        let mut message = Zeroizing::new(secret.to_vec());
        cipher(&key, &iv, &mut message)?;
        let checksum = checksum(&key, &message);
        Ok(Self {
            crypto: Crypto {
                kdf,
                checksum: Module {
                    function: "sha256".to_owned(),
                    params: serde_json::Map::new(),
                    message: hex::encode(checksum),
                },
                cipher: Module {
                    function: "aes-128-ctr".to_owned(),
                    params: CipherParams { iv: hex::encode(iv) },
                    message: hex::encode(&*message),
                },
            },
            description: Some(description.to_owned()),
            pubkey: hex::encode(pubkey),
            path: String::new(),
            uuid: uuid::Builder::from_random_bytes(uuid).into_uuid().to_string(),
            version: 4,
        })
    }

    /// The secret, when `password` is the right one. A wrong password fails the checksum and is
    /// reported as a wrong password.
    pub fn decrypt(&self, password: &Password) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let crypto = &self.crypto;
        ensure!(
            crypto.checksum.function == "sha256",
            "unsupported checksum function {:?} (EIP-2335 defines sha256)",
            crypto.checksum.function
        );
        ensure!(
            crypto.cipher.function == "aes-128-ctr",
            "unsupported cipher {:?} (EIP-2335 defines aes-128-ctr)",
            crypto.cipher.function
        );
        let message = hex::decode(&crypto.cipher.message).context("cipher.message is not hex")?;
        let expected =
            hex::decode(&crypto.checksum.message).context("checksum.message is not hex")?;
        let iv = hex::decode(&crypto.cipher.params.iv).context("cipher.params.iv is not hex")?;
        let key = derive_key(&crypto.kdf, password)?;
        ensure!(checksum(&key, &message)[..] == expected[..], "wrong password for this keystore");
        let mut secret = Zeroizing::new(message);
        cipher(&key, &iv, &mut secret)?;
        Ok(secret)
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        crate::keys::write_secret(path, &serde_json::to_string_pretty(self)?)
    }
}

/// The decryption key of a KDF module, after its parameters are checked against the bounds.
fn derive_key(kdf: &Module<KdfParams>, password: &Password) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let params = &kdf.params;
    ensure!(params.dklen == 32, "kdf.params.dklen must be 32, found {}", params.dklen);
    let salt = hex::decode(&params.salt).context("kdf.params.salt is not hex")?;
    let password = password.eip2335_bytes();
    ensure!(!password.is_empty(), "the password is empty once its control characters are removed");
    let mut key = Zeroizing::new([0u8; 32]);
    match kdf.function.as_str() {
        "scrypt" => {
            let (Some(n), Some(r), Some(p)) = (params.n, params.r, params.p) else {
                bail!("scrypt needs kdf.params n, r and p");
            };
            check_scrypt(n, r, p)?;
            let log_n = u8::try_from(n.trailing_zeros()).context("scrypt's n")?;
            let params = scrypt::Params::new(log_n, r, p)
                .map_err(|e| anyhow::anyhow!("scrypt parameters: {e}"))?;
            scrypt::scrypt(&password[..], &salt, &params, &mut key[..])
                .map_err(|e| anyhow::anyhow!("scrypt: {e}"))?;
        }
        "pbkdf2" => {
            let Some(rounds) = params.c else { bail!("pbkdf2 needs kdf.params c") };
            ensure!(
                params.prf.as_deref() == Some("hmac-sha256"),
                "pbkdf2's prf must be hmac-sha256, found {:?}",
                params.prf
            );
            check_pbkdf2(rounds)?;
            pbkdf2::pbkdf2::<hmac::Hmac<Sha256>>(&password[..], &salt, rounds, &mut key[..]);
        }
        other => bail!("unsupported kdf {other:?} (EIP-2335 defines scrypt and pbkdf2)"),
    }
    Ok(key)
}

/// scrypt's parameters within bounds: `n` a power of two, `r` at most 64, `p` at most 16, and
/// its memory (`128 * r * (n + p)` bytes, the work array and the blocks) at most
/// [`MAX_KDF_MEMORY_BYTES`].
fn check_scrypt(n: u64, r: u32, p: u32) -> anyhow::Result<()> {
    ensure!(n.is_power_of_two() && n > 1, "scrypt's n must be a power of two, found {n}");
    ensure!(
        (1..=64).contains(&r) && (1..=16).contains(&p),
        "scrypt's r={r}, p={p} are out of range"
    );
    let memory = 128u64.saturating_mul(u64::from(r)).saturating_mul(n.saturating_add(u64::from(p)));
    ensure!(
        memory <= MAX_KDF_MEMORY_BYTES,
        "scrypt parameters need {} MiB; refused above {} MiB",
        memory >> 20,
        MAX_KDF_MEMORY_BYTES >> 20
    );
    Ok(())
}

fn check_pbkdf2(rounds: u32) -> anyhow::Result<()> {
    ensure!(
        (1..=MAX_PBKDF2_ROUNDS).contains(&rounds),
        "pbkdf2 rounds {rounds} out of range (1..={MAX_PBKDF2_ROUNDS})"
    );
    Ok(())
}

/// EIP-2335's checksum: SHA-256 of the decryption key's second half and the cipher message.
fn checksum(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(&key[16..]);
    hash.update(message);
    hash.finalize().into()
}

/// AES-128-CTR with the first half of the decryption key (its own inverse).
fn cipher(key: &[u8; 32], iv: &[u8], data: &mut [u8]) -> anyhow::Result<()> {
    ensure!(iv.len() == 16, "cipher.params.iv must be 16 bytes, found {}", iv.len());
    let mut aes = Aes128Ctr::new_from_slices(&key[..16], iv)
        .map_err(|e| anyhow::anyhow!("aes-128-ctr: {e}"))?;
    aes.apply_keystream(data);
    Ok(())
}

/// Writes the Ethereum secret key as a v3 keystore at `path` (owner-only, never over an
/// existing file), scrypt-protected. `eth-keystore` writes into a fresh private directory; the
/// JSON is then written to `path` exclusively (no symlink followed, mode 0600 from the start).
pub fn write_eth(path: &Path, secret: &[u8; 32], password: &Password) -> anyhow::Result<()> {
    let dir = path.parent().context("keystore path has no directory")?;
    let scratch = tempfile::Builder::new()
        .prefix(".eth-keystore-")
        .tempdir_in(dir)
        .with_context(|| format!("creating a scratch directory in {}", dir.display()))?;
    eth_keystore::encrypt_key(
        scratch.path(),
        &mut rand08::thread_rng(),
        secret,
        password.as_bytes(),
        Some("keystore.json"),
    )
    .map_err(|e| anyhow::anyhow!("encrypting the Ethereum key: {e}"))?;
    let json = fs::read_to_string(scratch.path().join("keystore.json"))?;
    crate::keys::write_secret(path, json.trim_end())
}

/// The bounds [`MAX_KDF_MEMORY_BYTES`] and [`MAX_PBKDF2_ROUNDS`], a 32-byte derived key and a
/// 16-byte IV, checked on a v3 keystore's JSON before `eth-keystore` does any work (it takes
/// any round count and panics on a short key or IV).
fn check_v3(json: &serde_json::Value) -> anyhow::Result<()> {
    let crypto = json.get("crypto").or_else(|| json.get("Crypto")).context("no crypto section")?;
    let params = crypto.get("kdfparams").context("no kdfparams")?;
    let number = |name: &str| params.get(name).and_then(serde_json::Value::as_u64);
    ensure!(number("dklen") == Some(32), "kdfparams.dklen must be 32");
    let small = |name: &str| -> anyhow::Result<u32> {
        number(name)
            .and_then(|v| u32::try_from(v).ok())
            .with_context(|| format!("kdfparams.{name} missing or too large"))
    };
    match crypto.get("kdf").and_then(serde_json::Value::as_str) {
        Some("scrypt") => {
            check_scrypt(number("n").context("kdfparams.n missing")?, small("r")?, small("p")?)?
        }
        Some("pbkdf2") => check_pbkdf2(small("c")?)?,
        other => bail!("unsupported kdf {other:?} (v3 keystores use scrypt or pbkdf2)"),
    }
    let iv = crypto
        .get("cipherparams")
        .and_then(|c| c.get("iv"))
        .and_then(serde_json::Value::as_str)
        .context("no cipherparams.iv")?;
    ensure!(iv.len() == 32, "cipherparams.iv must be 16 bytes of hex");
    Ok(())
}

/// Decrypts a v3 keystore, once its parameters are within bounds.
pub fn read_eth(path: &Path, password: &Password) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON keystore", path.display()))?;
    check_v3(&json).with_context(|| format!("{}", path.display()))?;
    eth_keystore::decrypt_key(path, password.as_bytes()).map(Zeroizing::new).map_err(|e| match e {
        eth_keystore::KeystoreError::MacMismatch => {
            anyhow::anyhow!("{}: wrong password for this keystore", path.display())
        }
        other => anyhow::anyhow!("{}: {other}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/eip2335");
    /// EIP-2335's test password: NFKD turns the fraktur letters into ASCII.
    const EIP_PASSWORD: &str = "𝔱𝔢𝔰𝔱𝔭𝔞𝔰𝔰𝔴𝔬𝔯𝔡🔑";
    const EIP_SECRET: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";

    #[test]
    fn the_eips_own_keystores_decrypt_to_its_secret() {
        for file in ["scrypt.json", "pbkdf2.json"] {
            let keystore = Eip2335::load(&Path::new(VECTORS).join(file)).unwrap();
            let secret = keystore.decrypt(&Password::new(EIP_PASSWORD.to_owned())).unwrap();
            assert_eq!(hex::encode(&*secret), EIP_SECRET, "{file}");
            let key = avs_consensus::bls::SecretKey::from_bytes(&secret).unwrap();
            assert_eq!(hex::encode(key.public_key().to_bytes()), keystore.pubkey, "{file}");
        }
    }

    #[test]
    fn the_password_is_normalized_and_stripped_as_the_eip_says() {
        let password = Password::new(format!("{EIP_PASSWORD}\u{7f}\u{1}\u{85}"));
        assert_eq!(hex::encode(&*password.eip2335_bytes()), "7465737470617373776f7264f09f9491");
    }

    #[test]
    fn a_wrong_password_is_reported_as_one() {
        let keystore = Eip2335::load(&Path::new(VECTORS).join("pbkdf2.json")).unwrap();
        let error = keystore.decrypt(&Password::new("testpassword!".to_owned())).unwrap_err();
        assert!(error.to_string().contains("wrong password"), "{error}");
    }

    #[test]
    fn costly_or_malformed_kdf_parameters_are_refused_before_any_work() {
        let mut keystore = Eip2335::load(&Path::new(VECTORS).join("scrypt.json")).unwrap();
        let password = Password::new(EIP_PASSWORD.to_owned());
        keystore.crypto.kdf.params.n = Some(1 << 24);
        let error = keystore.decrypt(&password).unwrap_err().to_string();
        assert!(error.contains("refused above"), "{error}");
        keystore.crypto.kdf.params.n = Some(1000);
        let error = keystore.decrypt(&password).unwrap_err().to_string();
        assert!(error.contains("power of two"), "{error}");
        // Memory counts the blocks too: a tiny n with a huge r is no way around the cap.
        keystore.crypto.kdf.params.n = Some(2);
        keystore.crypto.kdf.params.r = Some(1 << 22);
        keystore.crypto.kdf.params.p = Some(16);
        let error = keystore.decrypt(&password).unwrap_err().to_string();
        assert!(error.contains("out of range"), "{error}");
        keystore.crypto.kdf.function = "argon2".to_owned();
        let error = keystore.decrypt(&password).unwrap_err().to_string();
        assert!(error.contains("unsupported kdf"), "{error}");
    }

    #[test]
    fn what_is_encrypted_decrypts_and_its_pubkey_is_readable_without_the_password() {
        let key = avs_consensus::bls::SecretKey::from_seed(&[7; 32]).unwrap();
        let password = Password::new("correct horse battery staple".to_owned());
        let pubkey = key.public_key().to_bytes();
        let keystore = Eip2335::encrypt(&key.to_bytes(), &pubkey, &password, "test").unwrap();
        assert_eq!(keystore.pubkey, hex::encode(pubkey));
        assert_eq!(keystore.crypto.kdf.params.n, Some(1 << 18));
        let text = serde_json::to_string(&keystore).unwrap();
        let reread: Eip2335 = serde_json::from_str(&text).unwrap();
        assert_eq!(*reread.decrypt(&password).unwrap(), key.to_bytes().to_vec());
    }

    #[test]
    fn a_password_of_control_characters_only_is_refused() {
        let keystore = Eip2335::load(&Path::new(VECTORS).join("pbkdf2.json")).unwrap();
        let error = keystore.decrypt(&Password::new("\u{1}\u{7f}".to_owned())).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
    }

    /// A v3 keystore is untrusted too: its KDF is bounded, and a short key or IV (on which
    /// eth-keystore would panic) is an error.
    #[test]
    fn costly_or_malformed_v3_keystores_are_refused_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let original: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(Path::new(VECTORS).join("../web3-v3-scrypt.json")).unwrap(),
        )
        .unwrap();
        let password = Password::new("testpassword".to_owned());
        for (edit, expected) in [
            ("/crypto/kdfparams/n", (serde_json::json!(1u64 << 30), "refused above")),
            ("/crypto/kdfparams/dklen", (serde_json::json!(16), "dklen")),
            ("/crypto/cipherparams/iv", (serde_json::json!("00"), "iv")),
        ] {
            let mut keystore = original.clone();
            *keystore.pointer_mut(edit).unwrap() = expected.0;
            let path = dir.path().join("edited.json");
            fs::write(&path, keystore.to_string()).unwrap();
            let error = format!("{:#}", read_eth(&path, &password).unwrap_err());
            assert!(error.contains(expected.1), "{edit}: {error}");
        }
    }

    #[test]
    fn a_web3_secret_storage_test_keystore_decrypts() {
        // A keystore written by another implementation (eth-keyfile; see tests/data/README.md).
        let path = Path::new(VECTORS).join("../web3-v3-scrypt.json");
        let secret = read_eth(&path, &Password::new("testpassword".to_owned())).unwrap();
        assert_eq!(
            hex::encode(&*secret),
            "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d"
        );
        let error = read_eth(&path, &Password::new("wrong".to_owned())).unwrap_err();
        assert!(error.to_string().contains("wrong password"), "{error}");
    }
}
