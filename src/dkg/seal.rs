//! Sealing a dealer's shares for one receiver: ephemeral-ephemeral X25519 (RFC 7748), HKDF-SHA256
//! (RFC 5869) and ChaCha20-Poly1305 (RFC 8439), all from `ring`.
//!
//! The receiver publishes one fresh X25519 key per dealer ([`OpeningKey`]); the dealer seals
//! with its own fresh key against it ([`seal`]). Each key agreement happens once, so the
//! derived AEAD key encrypts exactly one message and a zero nonce is safe. The salt is the
//! ceremony id and the info/AAD name dealer and receiver, so a sealed box cannot be replayed
//! into another ceremony or pair.
//!
//! Invariants: plaintexts and opened shares are in `Zeroizing` buffers; ring wipes its
//! ephemeral private keys.

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::hkdf;
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Error;

/// A receiver's private key for opening one dealer's box (single use).
pub struct OpeningKey {
    private: EphemeralPrivateKey,
    public: [u8; 32],
}

impl fmt::Debug for OpeningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpeningKey(public={})", hex::encode(self.public))
    }
}

impl OpeningKey {
    /// A fresh key.
    ///
    /// # Errors
    /// [`Error::Crypto`] when the system RNG fails.
    pub fn generate() -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let private = EphemeralPrivateKey::generate(&X25519, &rng)
            .map_err(|_| Error::Crypto("no randomness".into()))?;
        let pk = private
            .compute_public_key()
            .map_err(|_| Error::Crypto("x25519 public key".into()))?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pk.as_ref());
        Ok(Self { private, public })
    }

    /// The public half to publish.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Opens a box sealed for this key.
    ///
    /// # Errors
    /// [`Error::Crypto`] when the box does not authenticate (wrong key, context or tampering).
    pub fn open(self, sealed: &Sealed, context: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        let key = derive(self.private, &sealed.ephemeral, context)?;
        let mut buf = Zeroizing::new(sealed.ciphertext.clone());
        let plain_len = key
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(context.as_bytes()),
                buf.as_mut_slice(),
            )
            .map_err(|_| Error::Crypto("sealed shares do not authenticate".into()))?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

/// A sealed box: the dealer's ephemeral public key and the ciphertext with its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// The dealer's X25519 public key (hex).
    #[serde(with = "hexser")]
    pub ephemeral: [u8; 32],
    /// ChaCha20-Poly1305 ciphertext and tag (hex).
    #[serde(with = "hexser")]
    pub ciphertext: Vec<u8>,
}

/// Seals `plaintext` for the receiver's `receiver_public` key under `context` (which must
/// bind ceremony, dealer and receiver).
///
/// # Errors
/// [`Error::Crypto`] when the RNG fails or the receiver key is not a valid X25519 key.
pub fn seal(receiver_public: &[u8; 32], plaintext: &[u8], context: &str) -> Result<Sealed, Error> {
    let mine = OpeningKey::generate()?;
    let ephemeral = mine.public;
    let key = derive(mine.private, receiver_public, context)?;
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::from(context.as_bytes()),
        &mut buf,
    )
    .map_err(|_| Error::Crypto("sealing failed".into()))?;
    Ok(Sealed {
        ephemeral,
        ciphertext: buf,
    })
}

fn derive(
    private: EphemeralPrivateKey,
    peer_public: &[u8; 32],
    context: &str,
) -> Result<LessSafeKey, Error> {
    let peer = UnparsedPublicKey::new(&X25519, peer_public);
    let unbound = agreement::agree_ephemeral(private, &peer, |shared| {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"dvsigner-dkg-seal-v1");
        let prk = salt.extract(shared);
        let info = [context.as_bytes()];
        prk.expand(&info, &CHACHA20_POLY1305)
            .map(UnboundKey::from)
            .map_err(|_| Error::Crypto("hkdf".into()))
    })
    .map_err(|_| Error::Crypto("x25519 agreement with an invalid key".into()))??;
    Ok(LessSafeKey::new(unbound))
}

/// Plain lower-case hex serde for byte strings.
mod hexser {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer, T: AsRef<[u8]>>(b: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b.as_ref()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<Vec<u8>>>(
        d: D,
    ) -> Result<T, D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(s).map_err(serde::de::Error::custom)?;
        T::try_from(v).map_err(|_| serde::de::Error::custom("wrong length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let receiver = OpeningKey::generate().expect("key");
        let sealed = seal(&receiver.public(), b"secret shares", "c|a|b").expect("seal");
        assert_ne!(sealed.ciphertext[..13], b"secret shares"[..]);
        let json = serde_json::to_string(&sealed).expect("ser");
        let back: Sealed = serde_json::from_str(&json).expect("de");
        assert_eq!(
            receiver.open(&back, "c|a|b").expect("open").as_slice(),
            b"secret shares"
        );
        let receiver = OpeningKey::generate().expect("key");
        let sealed = seal(&receiver.public(), b"x", "c|a|b").expect("seal");
        assert!(receiver.open(&sealed, "c|a|d").is_err());
        let receiver = OpeningKey::generate().expect("key");
        let mut sealed = seal(&receiver.public(), b"x", "ctx").expect("seal");
        sealed.ciphertext[0] ^= 1;
        assert!(receiver.open(&sealed, "ctx").is_err());
    }
}
