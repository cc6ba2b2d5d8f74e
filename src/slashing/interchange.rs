//! EIP-3076 slashing-protection interchange format, version 5: wire types only, no logic.
//!
//! Spec: <https://eips.ethereum.org/EIPS/eip-3076>. Integers are decimal strings; hashes are
//! `0x`-prefixed hex. `signing_root` is optional on every entry: an absent root is kept as
//! `None` all the way into the database (never as the zero root), because EIP-3076 treats
//! "signed something, root unknown" differently from any real root.
//!
//! Parsing is strict (`deny_unknown_fields`), like every file format we own.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bls::PublicKeyBytes;

/// The only interchange format version this module reads and writes.
pub const FORMAT_VERSION: &str = "5";

/// A whole interchange document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interchange {
    /// Format version and chain identity.
    pub metadata: Metadata,
    /// Per-validator history.
    pub data: Vec<ValidatorData>,
}

/// The `metadata` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Must be [`FORMAT_VERSION`] to be imported.
    pub interchange_format_version: String,
    /// The chain's genesis validators root.
    pub genesis_validators_root: Hash256,
}

/// History of one validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorData {
    /// The validator's public key.
    pub pubkey: PublicKeyBytes,
    /// Signed block proposals.
    pub signed_blocks: Vec<SignedBlock>,
    /// Signed attestations.
    pub signed_attestations: Vec<SignedAttestation>,
}

/// One signed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBlock {
    /// The block's slot.
    #[serde(with = "quoted_u64")]
    pub slot: u64,
    /// Its signing root, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_root: Option<Hash256>,
}

/// One signed attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAttestation {
    /// Source checkpoint epoch.
    #[serde(with = "quoted_u64")]
    pub source_epoch: u64,
    /// Target checkpoint epoch.
    #[serde(with = "quoted_u64")]
    pub target_epoch: u64,
    /// Its signing root, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_root: Option<Hash256>,
}

/// A 32-byte hash written as `0x`-prefixed hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hash256(pub [u8; 32]);

impl Serialize for Hash256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(self.0)))
    }
}

impl<'de> Deserialize<'de> for Hash256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        crate::bls::parse_hex::<32>(&s)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// `u64` as a decimal string (EIP-3076 `Uint64`).
mod quoted_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom(format!(
                "not a decimal integer: {s:?}"
            )));
        }
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_root_stays_absent_and_integers_are_quoted() {
        let json = r#"{"metadata":{"interchange_format_version":"5","genesis_validators_root":"0x0000000000000000000000000000000000000000000000000000000000000001"},"data":[{"pubkey":"0xa99a76ed7796f7be22d5b7e85deeb7c5677e88e511e0b337618f8c4eb61349b4bf2d153f649f7b53359fe8b94a38e44c","signed_blocks":[{"slot":"10"}],"signed_attestations":[{"source_epoch":"1","target_epoch":"2","signing_root":"0x0000000000000000000000000000000000000000000000000000000000000000"}]}]}"#;
        let i: Interchange = serde_json::from_str(json).expect("parses");
        assert_eq!(i.data[0].signed_blocks[0].signing_root, None);
        assert_eq!(
            i.data[0].signed_attestations[0].signing_root,
            Some(Hash256([0; 32]))
        );
        assert_eq!(serde_json::to_string(&i).expect("serializes"), json);
    }

    #[test]
    fn unquoted_integers_and_unknown_fields_are_rejected() {
        let bad_int = r#"{"slot":10}"#;
        assert!(serde_json::from_str::<SignedBlock>(bad_int).is_err());
        let negative = r#"{"slot":"-1"}"#;
        assert!(serde_json::from_str::<SignedBlock>(negative).is_err());
        let unknown = r#"{"slot":"1","extra":true}"#;
        assert!(serde_json::from_str::<SignedBlock>(unknown).is_err());
    }
}
