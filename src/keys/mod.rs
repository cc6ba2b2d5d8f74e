//! Key material: secret types ([`secret`]), EIP-2335 keystores ([`keystore`]), Web3Signer
//! key-config files ([`key_config`]), the in-memory key store and directory loaders ([`store`]),
//! and the public interop test keys ([`interop`]); the Keymanager API's storage ([`managed`]) and
//! the opt-in encrypted key cache ([`cache`]).

pub mod cache;
pub mod interop;
pub mod key_config;
pub mod keystore;
pub mod managed;
pub mod secret;
pub mod store;

pub use keystore::{KdfParams, Keystore};
pub use secret::{Password, SecretKey};
pub use store::{KeyDiff, KeyOrigin, KeyStore, LoadReport, LoadedKey};
