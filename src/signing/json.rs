//! JSON primitive encodings of the Web3Signer sign API, as tolerant as Web3Signer itself:
//! a uint64 is a JSON string of decimal digits or a JSON number, a byte string is hex with or
//! without `0x`, and the `type` name is case-insensitive.
//!
//! Spec: Web3Signer eth2 signing API (`openapi-specs/eth2/signing/schemas.yaml`).
//!
//! Invariant: these types only decode; they never allocate for fixed-size values.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::SignKind;

/// A uint64 sent either as `"123"` or `123`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct U64(pub u64);

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = U64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a uint64 as a decimal string or a JSON number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<U64, E> {
                Ok(U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<U64, E> {
                u64::try_from(v)
                    .map(U64)
                    .map_err(|_| E::custom(format!("negative uint64 {v}")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<U64, E> {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!("invalid uint64 {s:?}")));
                }
                s.parse()
                    .map(U64)
                    .map_err(|_| E::custom(format!("uint64 out of range {s:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Strips an optional `0x`/`0X` prefix.
fn strip_0x(s: &str) -> &str {
    s.strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s)
}

/// Exactly `N` bytes of hex (roots, versions, pubkeys, signatures).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bytes<const N: usize>(pub [u8; N]);

impl<const N: usize> fmt::Debug for Bytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl<'de, const N: usize> Deserialize<'de> for Bytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<const N: usize> Visitor<'_> for V<N> {
            type Value = Bytes<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} bytes of hex")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Bytes<N>, E> {
                let h = strip_0x(s);
                if h.len() != 2 * N {
                    return Err(E::custom(format!(
                        "expected {N} bytes of hex, got {} characters",
                        h.len()
                    )));
                }
                let mut out = [0u8; N];
                hex::decode_to_slice(h, &mut out)
                    .map_err(|e| E::custom(format!("bad hex: {e}")))?;
                Ok(Bytes(out))
            }
        }
        d.deserialize_str(V::<N>)
    }
}

/// A variable-length byte string in hex (SSZ-encoded bitfields).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HexBytes(pub Vec<u8>);

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HexBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a hex byte string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HexBytes, E> {
                hex::decode(strip_0x(s))
                    .map(HexBytes)
                    .map_err(|e| E::custom(format!("bad hex: {e}")))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for SignKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SignKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Web3Signer sign type")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SignKind, E> {
                SignKind::ALL
                    .iter()
                    .copied()
                    .find(|k| k.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| E::custom(format!("unknown sign type {s:?}")))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_accepts_strings_and_numbers_only() {
        let ok: Vec<U64> = serde_json::from_str(r#"["0", 7, "18446744073709551615"]"#).unwrap();
        assert_eq!(ok, vec![U64(0), U64(7), U64(u64::MAX)]);
        for bad in [
            r#""""#,
            r#""+1""#,
            r#"" 1""#,
            "-1",
            "1.5",
            r#""18446744073709551616""#,
            "null",
        ] {
            assert!(serde_json::from_str::<U64>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bytes_need_exact_length_and_hex() {
        let a: Bytes<2> = serde_json::from_str(r#""0xABcd""#).unwrap();
        let b: Bytes<2> = serde_json::from_str(r#""abcd""#).unwrap();
        assert_eq!(a, b);
        for bad in [r#""0xabc""#, r#""0xabcdef""#, r#""0xzzzz""#, "12"] {
            assert!(serde_json::from_str::<Bytes<2>>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sign_kind_is_case_insensitive() {
        let k: SignKind = serde_json::from_str(r#""attestation""#).unwrap();
        assert_eq!(k, SignKind::Attestation);
        assert!(serde_json::from_str::<SignKind>(r#""BLS_TO_EXECUTION_CHANGE""#).is_err());
    }
}
