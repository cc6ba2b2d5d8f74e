//! EIP-2335 (version 4) BLS keystores: parse, decrypt, encrypt.
//!
//! Spec: <https://eips.ethereum.org/EIPS/eip-2335>. Supported modules: kdf `scrypt` or `pbkdf2`
//! (prf `hmac-sha256`), both with `dklen` 32; checksum `sha256`; cipher `aes-128-ctr`. Anything else
//! is refused when the file is parsed, before any password is tried.
//!
//! Decryption: `dk = KDF(normalise(password), salt)`; the password is right iff
//! `sha256(dk[16..32] || ciphertext) == checksum` (compared in constant time); then
//! `secret = AES-128-CTR(dk[0..16], iv)(ciphertext)`. Password normalisation is Unicode NFKD
//! followed by removal of the C0, DEL and C1 control codes ([`normalise_password`]).
//!
//! Invariants:
//! - A [`Keystore`] value has passed every format check: a supported version and modules, KDF
//!   parameters within [`MAX_SCRYPT_MEMORY_BYTES`] / [`MAX_PBKDF2_ROUNDS`], a 16-byte IV, a 32-byte
//!   checksum and a 32-byte ciphertext. So [`Keystore::decrypt`] can fail only because of the
//!   password or the key inside.
//! - The normalised password, the derived key and the plaintext secret only ever live in
//!   [`Zeroizing`] buffers.
//! - [`Keystore::decrypt`] never returns a key whose public key differs from the keystore's
//!   `pubkey` field (when the field is present).
//!
//! Memory: scrypt with `n = 2^18, r = 8` (the EIP default) needs 256 MiB per decryption in flight.

pub mod json;

use std::fmt;

use aes::cipher::{KeyIvInit, StreamCipher};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::bls::{self, PublicKeyBytes};
use crate::keys::secret::{Password, SecretKey};

use self::json::{
    ChecksumModule, CipherModule, CipherParams, Crypto, EmptyParams, JsonKeystore, KdfModule,
};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// The only keystore version this module reads and writes.
pub const VERSION: u64 = 4;

/// The largest scrypt working memory (`128 * r * n` bytes) accepted: 1 GiB. Keystores can arrive
/// over the keymanager API, so an unbounded `n` would let a caller exhaust memory.
pub const MAX_SCRYPT_MEMORY_BYTES: u64 = 1 << 30;

/// The largest scrypt parallelism accepted.
pub const MAX_SCRYPT_P: u32 = 16;

/// The largest PBKDF2 iteration count accepted (2^24, 64 times the EIP default).
pub const MAX_PBKDF2_ROUNDS: u32 = 1 << 24;

const DKLEN: u32 = 32;
const SALT_LEN: usize = 32;

/// Errors parsing, decrypting or encrypting a keystore. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not a keystore JSON document (syntax, missing field, wrong type).
    #[error("invalid keystore json: {0}")]
    Json(String),
    /// `version` is not 4.
    #[error("keystore version {0} is not supported (only 4)")]
    UnsupportedVersion(u64),
    /// `crypto.kdf.function` is neither `scrypt` nor `pbkdf2`.
    #[error("kdf function {0:?} is not supported (scrypt, pbkdf2)")]
    UnsupportedKdf(String),
    /// The PBKDF2 `prf` is not `hmac-sha256`.
    #[error("pbkdf2 prf {0:?} is not supported (hmac-sha256)")]
    UnsupportedPrf(String),
    /// `crypto.checksum.function` is not `sha256`.
    #[error("checksum function {0:?} is not supported (sha256)")]
    UnsupportedChecksum(String),
    /// `crypto.cipher.function` is not `aes-128-ctr`.
    #[error("cipher function {0:?} is not supported (aes-128-ctr)")]
    UnsupportedCipher(String),
    /// The KDF `dklen` is not 32.
    #[error("kdf dklen must be 32, got {0}")]
    UnsupportedDkLen(u32),
    /// KDF parameters out of range (not a power of two, zero, over the resource limits, ...).
    #[error("invalid kdf parameters: {0}")]
    InvalidKdfParams(String),
    /// A hex field does not decode.
    #[error("{field} is not valid hex")]
    Hex {
        /// JSON path of the field.
        field: &'static str,
    },
    /// A decoded field has the wrong length.
    #[error("{field} must be {expected} bytes, got {actual}")]
    Length {
        /// JSON path of the field.
        field: &'static str,
        /// Required length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },
    /// `uuid` is not a UUID.
    #[error("invalid uuid {0:?}")]
    Uuid(String),
    /// `pubkey` is not 48 bytes of hex.
    #[error("invalid pubkey field: {0}")]
    Pubkey(bls::Error),
    /// The checksum does not match: the password is wrong (or the file is corrupt).
    #[error("wrong password (checksum mismatch)")]
    WrongPassword,
    /// The decrypted bytes are not a valid BLS secret key (zero or not below r).
    #[error("decrypted secret is not a valid bls secret key")]
    InvalidSecret,
    /// The decrypted key does not belong to the keystore's `pubkey` (the password is right: the
    /// checksum matched; the file pairs a secret with another key's public key).
    #[error(
        "keystore pubkey field {expected} does not match its secret key (public key {actual})"
    )]
    PubkeyMismatch {
        /// The `pubkey` field.
        expected: PublicKeyBytes,
        /// The public key of the decrypted secret.
        actual: PublicKeyBytes,
    },
    /// The KDF library refused its parameters.
    #[error("kdf failed: {0}")]
    Kdf(String),
    /// Writing a keystore or password file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Key-derivation function and cost parameters (the salt is per keystore, see
/// [`Keystore::encrypt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfParams {
    /// scrypt with `dklen` 32.
    Scrypt {
        /// CPU/memory cost, a power of two greater than 1.
        n: u32,
        /// Block size.
        r: u32,
        /// Parallelism.
        p: u32,
    },
    /// PBKDF2-HMAC-SHA256 with `dklen` 32.
    Pbkdf2 {
        /// Iteration count.
        c: u32,
    },
}

impl KdfParams {
    /// The EIP-2335 scrypt parameters: n = 2^18, r = 8, p = 1 (256 MiB per decryption).
    pub fn scrypt_default() -> Self {
        Self::Scrypt {
            n: 1 << 18,
            r: 8,
            p: 1,
        }
    }

    /// The EIP-2335 PBKDF2 parameters: c = 2^18.
    pub fn pbkdf2_default() -> Self {
        Self::Pbkdf2 { c: 1 << 18 }
    }

    /// PBKDF2 with 16 rounds: decrypts in microseconds. **Not for production**: a keystore
    /// written with it gives almost no protection against password guessing. Meant for tests and
    /// throwaway dev clusters only.
    pub fn insecure_fast() -> Self {
        Self::Pbkdf2 { c: 16 }
    }

    /// Checks the parameters against the algorithm's rules and this module's resource limits.
    ///
    /// # Errors
    /// [`Error::InvalidKdfParams`] naming the offending parameter.
    pub fn validate(&self) -> Result<(), Error> {
        match *self {
            Self::Scrypt { n, r, p } => {
                if n < 2 || !n.is_power_of_two() {
                    return Err(Error::InvalidKdfParams(format!(
                        "scrypt n must be a power of two > 1, got {n}"
                    )));
                }
                if r == 0 || p == 0 || p > MAX_SCRYPT_P {
                    return Err(Error::InvalidKdfParams(format!(
                        "scrypt r must be > 0 and p in 1..={MAX_SCRYPT_P}, got r={r} p={p}"
                    )));
                }
                let memory = 128u64 * u64::from(r) * u64::from(n);
                if memory > MAX_SCRYPT_MEMORY_BYTES {
                    return Err(Error::InvalidKdfParams(format!(
                        "scrypt n={n} r={r} needs {memory} bytes, limit {MAX_SCRYPT_MEMORY_BYTES}"
                    )));
                }
                Ok(())
            }
            Self::Pbkdf2 { c } => {
                if c == 0 || c > MAX_PBKDF2_ROUNDS {
                    return Err(Error::InvalidKdfParams(format!(
                        "pbkdf2 c must be in 1..={MAX_PBKDF2_ROUNDS}, got {c}"
                    )));
                }
                Ok(())
            }
        }
    }

    /// Runs the KDF.
    fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, Error> {
        let mut dk = Zeroizing::new([0u8; 32]);
        match *self {
            Self::Scrypt { n, r, p } => {
                // `validate` guarantees n is a power of two, so this is its exact log2.
                let log_n = n.trailing_zeros() as u8;
                let params = scrypt::Params::new(log_n, r, p, dk.len())
                    .map_err(|e| Error::Kdf(e.to_string()))?;
                scrypt::scrypt(password, salt, &params, dk.as_mut())
                    .map_err(|e| Error::Kdf(e.to_string()))?;
            }
            Self::Pbkdf2 { c } => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, c, dk.as_mut()),
        }
        Ok(dk)
    }
}

/// Applies EIP-2335 password normalisation: Unicode NFKD, then remove the control codes
/// U+0000–U+001F, U+007F and U+0080–U+009F (exactly Rust's [`char::is_control`]), then UTF-8.
/// The result is the KDF input.
pub fn normalise_password(password: &Password) -> Zeroizing<Vec<u8>> {
    let raw = password.expose_secret();
    // Room for typical NFKD growth up front, so the buffer is rarely reallocated (a reallocation
    // would leave an unzeroized copy behind).
    let mut out = Zeroizing::new(String::with_capacity(raw.len() * 3 + 16));
    out.extend(raw.nfkd().filter(|c| !c.is_control()));
    Zeroizing::new(std::mem::take(&mut *out).into_bytes())
}

/// A parsed and checked EIP-2335 keystore (its secret still encrypted).
#[derive(Clone, PartialEq, Eq)]
pub struct Keystore {
    kdf: KdfParams,
    salt: Vec<u8>,
    checksum: [u8; 32],
    iv: [u8; 16],
    ciphertext: [u8; 32],
    pubkey: Option<PublicKeyBytes>,
    path: String,
    description: Option<String>,
    uuid: uuid::Uuid,
}

impl Keystore {
    /// Parses and checks a keystore. Unknown top-level fields are ignored (as Web3Signer does);
    /// unknown fields inside `crypto` are refused.
    ///
    /// # Errors
    /// [`Error::Json`] for malformed JSON or missing fields, the `Unsupported*` variants for
    /// versions and functions other than the supported ones, [`Error::InvalidKdfParams`],
    /// [`Error::Hex`], [`Error::Length`], [`Error::Uuid`] and [`Error::Pubkey`] for bad values.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let file: JsonKeystore =
            serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
        if file.version != VERSION {
            return Err(Error::UnsupportedVersion(file.version));
        }
        let Crypto {
            kdf,
            checksum,
            cipher,
        } = file.crypto;

        let (kdf, salt) = parse_kdf(kdf)?;
        if checksum.function != "sha256" {
            return Err(Error::UnsupportedChecksum(checksum.function));
        }
        if cipher.function != "aes-128-ctr" {
            return Err(Error::UnsupportedCipher(cipher.function));
        }
        let checksum = decode_fixed::<32>("crypto.checksum.message", &checksum.message)?;
        let iv = decode_fixed::<16>("crypto.cipher.params.iv", &cipher.params.iv)?;
        let ciphertext = decode_fixed::<32>("crypto.cipher.message", &cipher.message)?;
        let uuid = uuid::Uuid::parse_str(&file.uuid).map_err(|_| Error::Uuid(file.uuid.clone()))?;
        let pubkey = match file.pubkey.as_deref() {
            None | Some("") => None,
            Some(s) => Some(PublicKeyBytes::parse(s).map_err(Error::Pubkey)?),
        };
        Ok(Self {
            kdf,
            salt,
            checksum,
            iv,
            ciphertext,
            pubkey,
            path: file.path,
            description: file.description,
            uuid,
        })
    }

    /// Encrypts `sk` under `password` with fresh random salt (32 bytes), IV and UUID v4.
    ///
    /// # Errors
    /// [`Error::InvalidKdfParams`] when `kdf` fails [`KdfParams::validate`]; [`Error::Kdf`] if
    /// the KDF library refuses them anyway.
    pub fn encrypt(
        sk: &SecretKey,
        password: &Password,
        kdf: KdfParams,
        path: &str,
        description: &str,
    ) -> Result<Self, Error> {
        use rand::RngCore;
        kdf.validate()?;
        let mut salt = vec![0u8; SALT_LEN];
        let mut iv = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut iv);

        let dk = kdf.derive(&normalise_password(password), &salt)?;
        let mut buf = sk.expose_secret();
        apply_aes_128_ctr(&dk, &iv, buf.as_mut());
        let ciphertext = *buf;
        Ok(Self {
            kdf,
            checksum: checksum(&dk, &ciphertext),
            salt,
            iv,
            ciphertext,
            pubkey: Some(sk.public_key().bytes()),
            path: path.to_owned(),
            description: Some(description.to_owned()),
            uuid: uuid::Uuid::new_v4(),
        })
    }

    /// Decrypts the secret key. Slow by design (the KDF): call it off async threads.
    ///
    /// # Errors
    /// [`Error::WrongPassword`] when the checksum does not match, [`Error::InvalidSecret`] when
    /// the plaintext is not a valid scalar, [`Error::PubkeyMismatch`] when it does not match the
    /// `pubkey` field, [`Error::Kdf`] if the KDF library fails.
    pub fn decrypt(&self, password: &Password) -> Result<SecretKey, Error> {
        let dk = self.kdf.derive(&normalise_password(password), &self.salt)?;
        let expected = checksum(&dk, &self.ciphertext);
        if !bool::from(expected.ct_eq(&self.checksum)) {
            return Err(Error::WrongPassword);
        }
        let mut plain = Zeroizing::new(self.ciphertext);
        apply_aes_128_ctr(&dk, &self.iv, plain.as_mut());
        let sk = SecretKey::from_bytes(&plain).map_err(|_| Error::InvalidSecret)?;
        let actual = sk.public_key().bytes();
        match self.pubkey {
            Some(expected) if expected != actual => Err(Error::PubkeyMismatch { expected, actual }),
            _ => Ok(sk),
        }
    }

    /// Serializes to EIP-2335 JSON (pretty-printed; hex without `0x`, `version` 4).
    pub fn to_json(&self) -> String {
        let params = match self.kdf {
            KdfParams::Scrypt { n, r, p } => serde_json::to_value(json::ScryptParams {
                dklen: DKLEN,
                n: u64::from(n),
                r,
                p,
                salt: hex::encode(&self.salt),
            }),
            KdfParams::Pbkdf2 { c } => serde_json::to_value(json::Pbkdf2Params {
                dklen: DKLEN,
                c,
                prf: "hmac-sha256".to_owned(),
                salt: hex::encode(&self.salt),
            }),
        }
        // invariant: structs of strings and integers always serialize.
        .expect("kdf params serialize");
        let file = JsonKeystore {
            crypto: Crypto {
                kdf: KdfModule {
                    function: kdf_name(&self.kdf).to_owned(),
                    params,
                    message: String::new(),
                },
                checksum: ChecksumModule {
                    function: "sha256".to_owned(),
                    params: EmptyParams {},
                    message: hex::encode(self.checksum),
                },
                cipher: CipherModule {
                    function: "aes-128-ctr".to_owned(),
                    params: CipherParams {
                        iv: hex::encode(self.iv),
                    },
                    message: hex::encode(self.ciphertext),
                },
            },
            description: self.description.clone(),
            pubkey: self.pubkey.map(|pk| hex::encode(pk.0)),
            path: self.path.clone(),
            uuid: self.uuid.to_string(),
            version: VERSION,
        };
        // invariant: structs of strings, integers and a JSON value always serialize.
        serde_json::to_string_pretty(&file).expect("keystore serializes")
    }

    /// The `pubkey` field, when present and non-empty.
    pub fn pubkey(&self) -> Option<PublicKeyBytes> {
        self.pubkey
    }

    /// The KDF and its cost parameters.
    pub fn kdf(&self) -> KdfParams {
        self.kdf
    }

    /// The EIP-2334 derivation path (may be empty).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `description` field, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The keystore's UUID.
    pub fn uuid(&self) -> uuid::Uuid {
        self.uuid
    }
}

impl fmt::Debug for Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystore")
            .field("pubkey", &self.pubkey)
            .field("kdf", &self.kdf)
            .field("path", &self.path)
            .field("uuid", &self.uuid)
            .finish_non_exhaustive()
    }
}

fn kdf_name(kdf: &KdfParams) -> &'static str {
    match kdf {
        KdfParams::Scrypt { .. } => "scrypt",
        KdfParams::Pbkdf2 { .. } => "pbkdf2",
    }
}

/// Decodes `crypto.kdf` into checked parameters and the salt.
fn parse_kdf(kdf: KdfModule) -> Result<(KdfParams, Vec<u8>), Error> {
    let bad_params = |e: serde_json::Error| Error::Json(format!("crypto.kdf.params: {e}"));
    let (params, dklen, salt) = match kdf.function.as_str() {
        "scrypt" => {
            let p: json::ScryptParams = serde_json::from_value(kdf.params).map_err(bad_params)?;
            let n = u32::try_from(p.n).map_err(|_| {
                Error::InvalidKdfParams(format!("scrypt n={} is out of range", p.n))
            })?;
            (KdfParams::Scrypt { n, r: p.r, p: p.p }, p.dklen, p.salt)
        }
        "pbkdf2" => {
            let p: json::Pbkdf2Params = serde_json::from_value(kdf.params).map_err(bad_params)?;
            if p.prf != "hmac-sha256" {
                return Err(Error::UnsupportedPrf(p.prf));
            }
            (KdfParams::Pbkdf2 { c: p.c }, p.dklen, p.salt)
        }
        _ => return Err(Error::UnsupportedKdf(kdf.function)),
    };
    if dklen != DKLEN {
        return Err(Error::UnsupportedDkLen(dklen));
    }
    if !kdf.message.is_empty() {
        return Err(Error::InvalidKdfParams(
            "crypto.kdf.message must be empty".to_owned(),
        ));
    }
    params.validate()?;
    let salt = hex::decode(&salt).map_err(|_| Error::Hex {
        field: "crypto.kdf.params.salt",
    })?;
    if salt.is_empty() {
        return Err(Error::Length {
            field: "crypto.kdf.params.salt",
            expected: SALT_LEN,
            actual: 0,
        });
    }
    Ok((params, salt))
}

fn decode_fixed<const N: usize>(field: &'static str, text: &str) -> Result<[u8; N], Error> {
    let bytes = hex::decode(text).map_err(|_| Error::Hex { field })?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| Error::Length {
        field,
        expected: N,
        actual: bytes.len(),
    })
}

/// `sha256(dk[16..32] || ciphertext)`.
fn checksum(dk: &[u8; 32], ciphertext: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&dk[16..]);
    h.update(ciphertext);
    h.finalize().into()
}

/// AES-128-CTR with key `dk[0..16]`, in place (encryption and decryption are the same).
fn apply_aes_128_ctr(dk: &[u8; 32], iv: &[u8; 16], buf: &mut [u8]) {
    let mut cipher = Aes128Ctr::new((&dk[..16]).into(), iv.into());
    cipher.apply_keystream(buf);
}

/// Writes `data` to `path` (created or truncated) with mode 0600 and syncs it to disk.
///
/// # Errors
/// [`Error::Write`] naming the file.
pub fn write_private(path: &std::path::Path, data: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let fail = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(fail)?;
    f.write_all(data).map_err(fail)?;
    f.sync_all().map_err(fail)
}

/// Encrypts each `(key, description)` under `password` into `<keystores>/<pubkey>.json`, with the
/// password in `<passwords>/<pubkey>.txt` (both 0600): the layout `dvsigner signer --keystores
/// --keystores-passwords` (and Web3Signer's bulk loading) reads. Creates both directories.
///
/// # Errors
/// Encryption errors and [`Error::Write`].
pub fn write_keystore_dir(
    keystores: &std::path::Path,
    passwords: &std::path::Path,
    keys: &[(&SecretKey, String)],
    password: &Password,
    kdf: KdfParams,
) -> Result<(), Error> {
    write_keystore_dir_with(keystores, passwords, keys, password, kdf, &|| {})
}

/// [`write_keystore_dir`], calling `written` after each keystore (for progress reports).
///
/// # Errors
/// As [`write_keystore_dir`].
pub fn write_keystore_dir_with(
    keystores: &std::path::Path,
    passwords: &std::path::Path,
    keys: &[(&SecretKey, String)],
    password: &Password,
    kdf: KdfParams,
    written: &dyn Fn(),
) -> Result<(), Error> {
    for dir in [keystores, passwords] {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    for (key, description) in keys {
        let name = key.public_key().bytes().to_hex();
        let ks = Keystore::encrypt(key, password, kdf, "", description)?;
        write_private(
            &keystores.join(format!("{name}.json")),
            ks.to_json().as_bytes(),
        )?;
        write_private(
            &passwords.join(format!("{name}.txt")),
            password.expose_secret().as_bytes(),
        )?;
        written();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn error_is_send_sync() {
        assert_send_sync::<Error>();
    }

    #[test]
    fn round_trip_fast_kdf_and_json() {
        let sk = SecretKey::random();
        let pw = Password::new("correct horse".into());
        let ks = Keystore::encrypt(
            &sk,
            &pw,
            KdfParams::insecure_fast(),
            "m/12381/3600/0/0/0",
            "",
        )
        .expect("encrypt");
        let again = Keystore::from_json(&ks.to_json()).expect("parse own output");
        assert_eq!(again, ks);
        let back = again.decrypt(&pw).expect("decrypt");
        assert_eq!(back.public_key(), sk.public_key());
        assert!(matches!(
            again.decrypt(&Password::new("wrong".into())),
            Err(Error::WrongPassword)
        ));
    }

    #[test]
    fn kdf_limits_are_enforced() {
        assert!(KdfParams::Scrypt { n: 3, r: 8, p: 1 }.validate().is_err());
        assert!(KdfParams::Scrypt {
            n: 1 << 21,
            r: 8,
            p: 1
        }
        .validate()
        .is_err());
        assert!(KdfParams::Scrypt {
            n: 1 << 20,
            r: 8,
            p: 1
        }
        .validate()
        .is_ok());
        assert!(KdfParams::Pbkdf2 { c: 0 }.validate().is_err());
        assert!(KdfParams::scrypt_default().validate().is_ok());
        assert!(KdfParams::pbkdf2_default().validate().is_ok());
    }

    #[test]
    fn pubkey_mismatch_is_refused() {
        let sk = SecretKey::random();
        let other = SecretKey::random();
        let pw = Password::new(String::new());
        let mut ks =
            Keystore::encrypt(&sk, &pw, KdfParams::insecure_fast(), "", "").expect("encrypt");
        ks.pubkey = Some(other.public_key().bytes());
        assert!(matches!(ks.decrypt(&pw), Err(Error::PubkeyMismatch { .. })));
    }
}
