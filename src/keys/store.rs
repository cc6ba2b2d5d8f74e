//! In-memory key store and directory loaders (INTERFACE STUB).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::bls::PublicKeyBytes;
use crate::keys::secret::SecretKey;

/// Where a loaded key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// An EIP-2335 keystore in the keystores directory.
    Keystore {
        /// The keystore file.
        path: PathBuf,
    },
    /// A Web3Signer key-config YAML file.
    KeyConfig {
        /// The YAML file.
        path: PathBuf,
    },
}

/// One decrypted key and its origin.
#[derive(Debug)]
pub struct LoadedKey {
    /// The key.
    pub secret: SecretKey,
    /// Its source.
    pub origin: KeyOrigin,
}

/// Result of loading a directory: keys, per-file errors (never secrets), and timing.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Keys loaded.
    pub keys: Vec<LoadedKey>,
    /// Files that failed, with a message naming the file.
    pub errors: Vec<(PathBuf, String)>,
    /// Wall time of the load.
    pub elapsed: Duration,
}

/// Loads `*.json` keystores from `keystores` with passwords `<name>.txt` from `passwords`.
///
/// # Errors
/// When a directory cannot be read.
pub fn load_keystores_dir(keystores: &Path, passwords: &Path) -> std::io::Result<LoadReport> {
    let _ = (keystores, passwords);
    todo!()
}

/// Loads Web3Signer key-config YAML files (`file-keystore`, `file-raw`) from `dir`.
///
/// # Errors
/// When the directory cannot be read.
pub fn load_key_config_dir(dir: &Path) -> std::io::Result<LoadReport> {
    let _ = dir;
    todo!()
}

/// The keys a node can sign with, by public key.
#[derive(Default)]
pub struct KeyStore {
    keys: RwLock<BTreeMap<PublicKeyBytes, (Arc<SecretKey>, KeyOrigin)>>,
}

impl KeyStore {
    /// Looks a key up.
    pub fn get(&self, pk: &PublicKeyBytes) -> Option<Arc<SecretKey>> {
        let _ = pk;
        let _ = &self.keys;
        todo!()
    }

    /// All public keys, sorted.
    pub fn public_keys(&self) -> Vec<PublicKeyBytes> {
        todo!()
    }

    /// Adds keys; returns how many were new.
    pub fn insert_all(&self, keys: Vec<LoadedKey>) -> usize {
        let _ = keys;
        todo!()
    }
}

impl KeyStore {
    /// Replaces the key set; returns (added, removed) public keys.
    pub fn replace_all(&self, keys: Vec<LoadedKey>) -> (Vec<PublicKeyBytes>, Vec<PublicKeyBytes>) {
        let _ = keys;
        todo!()
    }
}
