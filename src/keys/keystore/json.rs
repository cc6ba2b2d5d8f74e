//! EIP-2335 keystore JSON wire types. No logic lives here: [`super::Keystore`] validates these
//! values (function names, versions, lengths, hex) and turns them into checked types.
//!
//! Spec: <https://eips.ethereum.org/EIPS/eip-2335>.
//!
//! Strictness: every nested object refuses unknown fields. The top-level object tolerates them,
//! because real keystores carry extras (Web3Signer's test vectors have `"name"`, some tools add
//! others) and Web3Signer loads them. `kdf.params` is kept as raw JSON because its shape depends
//! on `kdf.function`; [`super::Keystore::from_json`] decodes it into [`ScryptParams`] or
//! [`Pbkdf2Params`].

use serde::{Deserialize, Serialize};

/// The whole keystore file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonKeystore {
    /// The encryption modules.
    pub crypto: Crypto,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Hex public key, normally without `0x`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubkey: Option<String>,
    /// EIP-2334 derivation path, or empty.
    #[serde(default)]
    pub path: String,
    /// UUID v4 text.
    pub uuid: String,
    /// Format version; only 4 is supported.
    pub version: u64,
}

/// `crypto`: the three modules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crypto {
    /// Key-derivation module.
    pub kdf: KdfModule,
    /// Checksum module (password check).
    pub checksum: ChecksumModule,
    /// Cipher module (the encrypted secret).
    pub cipher: CipherModule,
}

/// `crypto.kdf`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfModule {
    /// `"scrypt"` or `"pbkdf2"`.
    pub function: String,
    /// Function-specific parameters, decoded once `function` is known.
    pub params: serde_json::Value,
    /// Always empty for the supported functions.
    pub message: String,
}

/// `crypto.kdf.params` for scrypt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScryptParams {
    /// Derived key length in bytes.
    pub dklen: u32,
    /// CPU/memory cost, a power of two.
    pub n: u64,
    /// Block size.
    pub r: u32,
    /// Parallelism.
    pub p: u32,
    /// Hex salt.
    pub salt: String,
}

/// `crypto.kdf.params` for PBKDF2.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pbkdf2Params {
    /// Derived key length in bytes.
    pub dklen: u32,
    /// Iteration count.
    pub c: u32,
    /// Pseudo-random function; only `"hmac-sha256"` is supported.
    pub prf: String,
    /// Hex salt.
    pub salt: String,
}

/// `crypto.checksum`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksumModule {
    /// Only `"sha256"` is supported.
    pub function: String,
    /// Always `{}`.
    pub params: EmptyParams,
    /// Hex SHA-256 checksum.
    pub message: String,
}

/// An empty `params` object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyParams {}

/// `crypto.cipher`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CipherModule {
    /// Only `"aes-128-ctr"` is supported.
    pub function: String,
    /// The IV.
    pub params: CipherParams,
    /// Hex ciphertext of the secret key.
    pub message: String,
}

/// `crypto.cipher.params`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CipherParams {
    /// Hex 16-byte IV.
    pub iv: String,
}
