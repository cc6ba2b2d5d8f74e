//! Key material: secret types, EIP-2335 keystores, Web3Signer key-config files, the in-memory
//! key store (INTERFACE STUB for everything but `secret`: the keys helper replaces this).

pub mod secret;
pub mod store;

pub use secret::{Password, SecretKey};
pub use store::{KeyOrigin, KeyStore, LoadReport, LoadedKey};
