//! Public BLS12-381 types of Ethereum's ciphersuite
//! (`BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`, min_pk: public keys in G1, signatures in G2).
//!
//! Invariants: a [`PublicKey`] is always a valid, non-identity G1 point in the subgroup
//! (IETF KeyValidate); a [`Signature`] decoded from the network is always in the G2 subgroup.
//! Secret keys live in [`crate::keys::secret`], never here.

use std::fmt;

use blst::min_pk;
use blst::BLST_ERROR;

/// Domain separation tag of Ethereum's proof-of-possession BLS ciphersuite.
pub const DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// Errors decoding BLS points.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input had the wrong number of bytes.
    #[error("expected {expected} bytes, got {actual}")]
    Length {
        /// Bytes required.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The bytes are not valid hex.
    #[error("invalid hex: {0}")]
    Hex(String),
    /// The bytes do not encode a valid point of the right group.
    #[error("invalid {what}: {reason:?}")]
    Point {
        /// "public key" or "signature".
        what: &'static str,
        /// blst's reason.
        reason: BlstReason,
    },
}

/// blst's decoding error, kept as a plain enum so [`Error`] is `Eq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlstReason {
    /// Not a point encoding.
    BadEncoding,
    /// Not on the curve.
    NotOnCurve,
    /// Not in the prime-order subgroup.
    NotInGroup,
    /// The identity point where it is not allowed.
    Identity,
    /// Any other blst error.
    Other,
}

impl From<BLST_ERROR> for BlstReason {
    fn from(e: BLST_ERROR) -> Self {
        match e {
            BLST_ERROR::BLST_BAD_ENCODING => Self::BadEncoding,
            BLST_ERROR::BLST_POINT_NOT_ON_CURVE => Self::NotOnCurve,
            BLST_ERROR::BLST_POINT_NOT_IN_GROUP => Self::NotInGroup,
            BLST_ERROR::BLST_PK_IS_INFINITY => Self::Identity,
            _ => Self::Other,
        }
    }
}

/// Parses `0x`-prefixed or bare hex into exactly `N` bytes.
///
/// # Errors
/// [`Error::Hex`] for non-hex input, [`Error::Length`] for the wrong length.
pub fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], Error> {
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if s.len() != 2 * N {
        return Err(Error::Length {
            expected: N,
            actual: s.len() / 2,
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|e| Error::Hex(e.to_string()))?;
    Ok(out)
}

/// The 48-byte compressed encoding of a public key, used as the identity of a key everywhere
/// (maps, database rows, URLs). Not validated: see [`PublicKey`] for a checked point.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKeyBytes(pub [u8; 48]);

impl PublicKeyBytes {
    /// Parses Web3Signer-style identifiers: any case, with or without `0x`.
    ///
    /// # Errors
    /// When the text is not 48 bytes of hex.
    pub fn parse(s: &str) -> Result<Self, Error> {
        parse_hex::<48>(s.trim()).map(Self)
    }

    /// Lower-case `0x`-prefixed hex, the form Web3Signer prints.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

impl fmt::Display for PublicKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKeyBytes({})", self.to_hex())
    }
}

impl serde::Serialize for PublicKeyBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKeyBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A validated public key (on the curve, in the subgroup, not the identity).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    point: min_pk::PublicKey,
    bytes: PublicKeyBytes,
}

impl PublicKey {
    /// Decodes and validates a compressed public key.
    ///
    /// # Errors
    /// [`Error::Point`] unless the bytes are a valid non-identity G1 subgroup point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != 48 {
            return Err(Error::Length {
                expected: 48,
                actual: bytes.len(),
            });
        }
        let point = min_pk::PublicKey::key_validate(bytes).map_err(|e| Error::Point {
            what: "public key",
            reason: e.into(),
        })?;
        let mut b = [0u8; 48];
        b.copy_from_slice(bytes);
        Ok(Self {
            point,
            bytes: PublicKeyBytes(b),
        })
    }

    /// Wraps a point that blst produced itself (e.g. from a secret key).
    pub(crate) fn from_point(point: min_pk::PublicKey) -> Self {
        Self {
            bytes: PublicKeyBytes(point.compress()),
            point,
        }
    }

    /// The compressed encoding.
    pub fn bytes(&self) -> PublicKeyBytes {
        self.bytes
    }

    /// The blst point, for the threshold module's curve arithmetic.
    pub(crate) fn point(&self) -> &min_pk::PublicKey {
        &self.point
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.bytes.to_hex())
    }
}

/// A 32-byte signing root: `hash_tree_root(SigningData(object_root, domain))`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SigningRoot(pub [u8; 32]);

impl SigningRoot {
    /// `0x`-prefixed lower-case hex.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for SigningRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningRoot({})", self.to_hex())
    }
}

/// A BLS signature (a G2 point).
#[derive(Clone, PartialEq, Eq)]
pub struct Signature(min_pk::Signature);

impl Signature {
    /// Decodes a compressed signature and checks it is in the G2 subgroup.
    ///
    /// # Errors
    /// [`Error::Point`] for anything that is not a valid subgroup point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != 96 {
            return Err(Error::Length {
                expected: 96,
                actual: bytes.len(),
            });
        }
        min_pk::Signature::sig_validate(bytes, false)
            .map(Self)
            .map_err(|e| Error::Point {
                what: "signature",
                reason: e.into(),
            })
    }

    /// Decodes a compressed signature (a point on the curve) WITHOUT the G2
    /// subgroup check, which costs about as much as the decompression again. Only for values
    /// that are afterwards verified with [`Signature::verify`] (which performs the subgroup
    /// check), directly or through a combination of them: the combiner's partials.
    ///
    /// # Errors
    /// [`Error::Length`], hex errors, or [`Error::Point`] when the bytes are not a curve point.
    pub fn from_hex_without_subgroup_check(s: &str) -> Result<Self, Error> {
        let b = parse_hex::<96>(s.trim())?;
        min_pk::Signature::from_bytes(&b)
            .map(Self)
            .map_err(|e| Error::Point {
                what: "signature",
                reason: e.into(),
            })
    }

    /// Parses `0x`-prefixed hex (as nodes return it) and validates the point.
    ///
    /// # Errors
    /// As [`Signature::from_bytes`], plus hex errors.
    pub fn from_hex(s: &str) -> Result<Self, Error> {
        let b = parse_hex::<96>(s.trim())?;
        Self::from_bytes(&b)
    }

    pub(crate) fn from_point(sig: min_pk::Signature) -> Self {
        Self(sig)
    }

    pub(crate) fn point(&self) -> &min_pk::Signature {
        &self.0
    }

    /// The 96-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; 96] {
        self.0.compress()
    }

    /// `0x`-prefixed lower-case hex, Web3Signer's response format.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.to_bytes()))
    }

    /// Verifies this signature over `msg` under `pk` (single-threaded core verification, so
    /// callers can budget CPU under load).
    pub fn verify(&self, pk: &PublicKey, msg: &[u8]) -> bool {
        self.0.verify(true, msg, DST, &[], &pk.point, false) == BLST_ERROR::BLST_SUCCESS
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_identifier_forms_agree() {
        let hex = "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07";
        let a = PublicKeyBytes::parse(hex).expect("bare");
        let b = PublicKeyBytes::parse(&format!("0x{}", hex.to_uppercase())).expect("upper");
        assert_eq!(a, b);
        assert_eq!(a.to_hex(), format!("0x{hex}"));
        assert!(PublicKeyBytes::parse("0x1234").is_err());
    }

    /// A curve point outside G2 (found by perturbing a real signature's x coordinate until it
    /// decodes) passes the cheap decoding but neither the checked decoding nor verification.
    #[test]
    fn points_outside_g2_decode_unchecked_but_never_verify() {
        let sk = crate::keys::interop::interop_secret_key(0);
        let pk = sk.public_key();
        let msg = [7u8; 32];
        let good = sk.sign(&SigningRoot(msg));
        assert!(good.verify(pk, &msg));
        let good_hex = good.to_hex();
        assert!(Signature::from_hex_without_subgroup_check(&good_hex)
            .expect("valid point")
            .verify(pk, &msg));
        let mut bytes = good.to_bytes();
        let mut found = None;
        for v in 0..=255u8 {
            bytes[95] = v;
            let hex = format!("0x{}", hex::encode(bytes));
            if let Ok(sig) = Signature::from_hex_without_subgroup_check(&hex) {
                if hex != good_hex {
                    found = Some((hex, sig));
                    break;
                }
            }
        }
        let (hex, sig) = found.expect("about half of all x coordinates are on the curve");
        assert!(
            Signature::from_hex(&hex).is_err(),
            "not in G2: the checked decoding refuses it"
        );
        assert!(!sig.verify(pk, &msg));
    }

    #[test]
    fn identity_public_key_is_refused() {
        let mut inf = [0u8; 48];
        inf[0] = 0xc0;
        assert!(PublicKey::from_bytes(&inf).is_err());
    }
}
