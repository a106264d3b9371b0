//! The node's libp2p identity key on disk.
//!
//! The key is a libp2p protobuf-encoded ed25519 keypair. It is written once, to a temporary
//! file created with mode 0600 and renamed into place, so a crash never leaves a half-written
//! key and the secret is never readable by other users, even briefly.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// Why the node key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read node key {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "node key {path} is not a libp2p-encoded ed25519 key ({reason}); move it away to generate a new one"
    )]
    Decode { path: PathBuf, reason: String },
    #[error("cannot write node key {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Loads the key at `path`, or generates an ed25519 key and stores it there.
pub fn load_or_generate_node_key(path: &Path) -> Result<Keypair, KeyError> {
    match fs::read(path) {
        Ok(bytes) => {
            warn_if_readable_by_others(path);
            let keypair = Keypair::from_protobuf_encoding(&bytes)
                .map_err(|e| KeyError::Decode { path: path.to_owned(), reason: e.to_string() })?;
            if keypair.key_type() != libp2p::identity::KeyType::Ed25519 {
                return Err(KeyError::Decode {
                    path: path.to_owned(),
                    reason: format!("key type is {:?}", keypair.key_type()),
                });
            }
            Ok(keypair)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            store(path, &keypair)?;
            tracing::info!(path = %path.display(), peer = %keypair.public().to_peer_id(), "generated node key");
            Ok(keypair)
        }
        Err(source) => Err(KeyError::Read { path: path.to_owned(), source }),
    }
}

fn store(path: &Path, keypair: &Keypair) -> Result<(), KeyError> {
    let write_err = |source| KeyError::Write { path: path.to_owned(), source };
    let encoded = keypair
        .to_protobuf_encoding()
        .map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(write_err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(write_err)?;
    file.write_all(&encoded).and_then(|()| file.sync_all()).map_err(write_err)?;
    fs::rename(&tmp, path).map_err(write_err)
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "node key is readable by other users; run chmod 600 on it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_persists_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("node.key");
        let first = load_or_generate_node_key(&path).unwrap();
        let second = load_or_generate_node_key(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn garbage_key_file_is_a_clear_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        fs::write(&path, b"not a key").unwrap();
        assert!(matches!(load_or_generate_node_key(&path), Err(KeyError::Decode { .. })));
        assert_eq!(fs::read(&path).unwrap(), b"not a key");
    }
}
