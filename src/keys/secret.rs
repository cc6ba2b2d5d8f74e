//! Secret-bearing types. Every type here zeroizes on drop, prints only a redacted `Debug`, has no
//! `Display`/`Serialize`, and exposes narrow operations instead of byte getters.

use std::fmt;
use std::path::Path;

use blst::min_pk;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::bls::{PublicKey, Signature, SigningRoot, DST};

/// Errors creating secret values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The 32 bytes are zero or not below the curve order.
    #[error("secret key is not a valid BLS12-381 scalar (zero or >= r)")]
    InvalidScalar,
    /// A password or token file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A BLS secret key (a whole validator key or a threshold share; both sign the same way).
pub struct SecretKey {
    // blst's SecretKey derives Zeroize with drop, so the scalar is wiped when this drops.
    inner: min_pk::SecretKey,
    public: PublicKey,
}

impl SecretKey {
    /// Builds a key from its 32-byte big-endian scalar.
    ///
    /// # Errors
    /// [`Error::InvalidScalar`] for 0 or a value not below r.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, Error> {
        let inner = min_pk::SecretKey::from_bytes(bytes).map_err(|_| Error::InvalidScalar)?;
        let public = PublicKey::from_point(inner.sk_to_pk());
        Ok(Self { inner, public })
    }

    /// A fresh random key from the operating system's RNG.
    pub fn random() -> Self {
        use rand::RngCore;
        loop {
            let mut ikm = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(ikm.as_mut());
            if let Ok(inner) = min_pk::SecretKey::key_gen(ikm.as_ref(), &[]) {
                let public = PublicKey::from_point(inner.sk_to_pk());
                return Self { inner, public };
            }
        }
    }

    /// Signs a signing root: `sk * H(root)`, with `H(root)` from [`super::hashed_roots`]
    /// when another key signed the root recently (the same signature as hashing it now).
    pub fn sign(&self, root: &SigningRoot) -> Signature {
        let hashed = super::hashed_roots::hashed(&root.0);
        let secret = Zeroizing::new(self.inner.to_bytes());
        crate::threshold::sign_hashed(&secret, &hashed)
    }

    /// Signs an arbitrary message (used by the BLS conformance vectors).
    pub fn sign_message(&self, msg: &[u8]) -> Signature {
        Signature::from_point(self.inner.sign(msg, DST, &[]))
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The raw scalar, for keystore encryption and share splitting only.
    pub fn expose_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.inner.to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(pk={})", self.public.bytes())
    }
}

/// A keystore password or similar secret string, zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Password(String);

impl Password {
    /// Wraps a password string as given (no trimming).
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// Reads a password file the way Web3Signer and Lighthouse do: the first line, without its
    /// trailing `\r\n` / `\n`.
    ///
    /// # Errors
    /// [`Error::ReadFile`] when the file cannot be read.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let raw =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        let first = raw.split('\n').next().unwrap_or("");
        let first = first.strip_suffix('\r').unwrap_or(first);
        Ok(Self(first.to_owned()))
    }

    /// The password text, for the KDF only.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let sk = SecretKey::from_bytes(&[7u8; 32]).expect("valid scalar");
        let secret_hex = hex::encode(sk.expose_secret().as_ref());
        let dbg = format!("{sk:?}");
        assert!(!dbg.contains(&secret_hex), "{dbg}");
        let p = Password::new("hunter2".into());
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn zero_scalar_is_refused() {
        assert!(SecretKey::from_bytes(&[0u8; 32]).is_err());
        assert!(SecretKey::from_bytes(&[0xffu8; 32]).is_err());
    }

    #[test]
    fn password_file_takes_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pw");
        std::fs::write(&p, "secret pass\r\nsecond").expect("write");
        assert_eq!(
            Password::from_file(&p).expect("read").expose_secret(),
            "secret pass"
        );
    }
}
