//! Key material: secret types ([`secret`]), EIP-2335 keystores ([`keystore`]), Web3Signer
//! key-config files ([`key_config`]), the in-memory key store and directory loaders ([`store`]),
//! the public interop test keys ([`interop`]), the Keymanager API's storage ([`managed`]), the
//! opt-in encrypted key cache ([`cache`]), and the external key backends: HashiCorp Vault
//! ([`vault`]) and PKCS#11 tokens ([`hsm`]).

pub mod cache;
pub mod hsm;
pub mod interop;
pub mod key_config;
pub mod keystore;
pub mod managed;
pub mod secret;
pub mod store;
pub mod vault;

pub use keystore::{KdfParams, Keystore};
pub use secret::{Password, SecretKey};
pub use store::{KeyDiff, KeyOrigin, KeyStore, LoadReport, LoadedKey};
