//! Key material: secret types ([`secret`]), EIP-2335 keystores ([`keystore`]), Web3Signer
//! key-config files ([`key_config`]), the in-memory key store and directory loaders ([`store`]),
//! the public interop test keys ([`interop`]), the Keymanager API's storage ([`managed`]), the
//! opt-in encrypted key cache ([`cache`]), the signing roots recently hashed to the curve
//! ([`hashed_roots`]), and the external key backends: HashiCorp Vault
//! ([`vault`]) and PKCS#11 tokens ([`hsm`]); [`sources`] puts every source of a signer node's
//! keys behind one interface, read at start-up and by `/reload`.

pub mod cache;
pub mod hashed_roots;
pub mod hsm;
pub mod interop;
pub mod key_config;
pub mod keystore;
pub mod managed;
pub mod secret;
pub mod sources;
pub mod store;
pub mod vault;

pub use keystore::{KdfParams, Keystore};
pub use secret::{Password, SecretKey};
pub use store::{KeyDiff, KeyOrigin, KeyStore, LoadReport, LoadedKey};
