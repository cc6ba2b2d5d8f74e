//! The ceremony definition file every operator runs with (strict serde).
//!
//! ```json
//! {
//!   "version": 1,
//!   "name": "holesky-batch-1",
//!   "operators": [
//!     { "name": "a", "url": "https://a.example:9500", "node_url": "https://a.example:9000",
//!       "tls_fingerprint": "AB:CD:..." }
//!   ],
//!   "threshold": 3,
//!   "validators": 2,
//!   "withdrawal_credentials": "0x01000000000000000000000089...",
//!   "fork_version": "0x01017000",
//!   "network_name": "holesky",
//!   "amount_gwei": 32000000000,
//!   "on_misbehaviour": "abort"
//! }
//! ```
//!
//! `url` is the operator's ceremony endpoint, `node_url` its signer node (written to
//! `cluster.json`); `tls_fingerprint` / `tls_ca` identify the operator's certificate, used both
//! to authenticate its ceremony server and to admit it as a client.
//!
//! Invariants: unknown fields are refused; [`CeremonyDefinition::id`] is SHA-256 over the
//! compact serialization of the parsed definition, so every operator derives the same id from
//! the same content regardless of whitespace, and every message carries it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Error;
use crate::cluster::{CaSource, Operator};
use crate::tls::Fingerprint;

/// The format version this build understands.
pub const DEFINITION_VERSION: u32 = 1;

/// One operator of the ceremony.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyOperator {
    /// Unique name (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// The operator's ceremony endpoint, `https://host:port`.
    pub url: String,
    /// The operator's signer node URL, for `cluster.json`.
    pub node_url: String,
    /// SHA-256 fingerprint of the operator's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<Fingerprint>,
    /// CA that issued the operator's TLS certificate (PEM path or inline PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<CaSource>,
}

/// What to do when a dealer is found to have dealt invalid shares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMisbehaviour {
    /// Stop the ceremony, naming the dealer.
    #[default]
    Abort,
    /// Leave the dealer's contribution out (it still receives a share); needs >= t dealers left.
    Disqualify,
}

/// The ceremony definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyDefinition {
    /// Format version, [`DEFINITION_VERSION`].
    pub version: u32,
    /// A label for humans (part of the ceremony id, so reusing a definition for a second
    /// ceremony needs a new name).
    pub name: String,
    /// The operators; share index = position + 1.
    pub operators: Vec<CeremonyOperator>,
    /// Signatures needed (t), a strict majority of the operators.
    pub threshold: u32,
    /// How many validators to create.
    pub validators: u32,
    /// The deposits' withdrawal credentials (32 bytes hex).
    #[serde(with = "hex_bytes")]
    pub withdrawal_credentials: [u8; 32],
    /// Genesis fork version of the network (4 bytes hex).
    #[serde(with = "hex_bytes")]
    pub fork_version: [u8; 4],
    /// Network name for the deposit file (`mainnet`, `holesky`, ...).
    pub network_name: String,
    /// Deposit amount per validator in Gwei.
    pub amount_gwei: u64,
    /// What to do with a misbehaving dealer.
    #[serde(default)]
    pub on_misbehaviour: OnMisbehaviour,
}

/// Largest number of validators one ceremony creates.
pub const MAX_VALIDATORS: u32 = 1000;

impl CeremonyDefinition {
    /// Parses and checks definition JSON.
    ///
    /// # Errors
    /// [`Error::DefinitionJson`] for bad JSON or unknown fields, [`Error::Definition`] for
    /// failed checks (see [`CeremonyDefinition::check`]).
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let d: Self = serde_json::from_str(text)?;
        d.check()?;
        Ok(d)
    }

    /// Checks: version; 2..=64 operators with unique well-formed names and https/http URLs,
    /// each with a fingerprint or a CA; `n/2 < t <= n`; `1..=1000` validators; amount at
    /// least 1 ETH; withdrawal credentials prefix 0x00, 0x01 or 0x02.
    ///
    /// # Errors
    /// [`Error::Definition`] naming the first failed check.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Definition(m));
        if self.version != DEFINITION_VERSION {
            return bad(format!(
                "version {} (this build reads {DEFINITION_VERSION})",
                self.version
            ));
        }
        check_operators(&self.operators, self.threshold)?;
        if self.validators == 0 || self.validators > MAX_VALIDATORS {
            return bad(format!(
                "{} validators; need 1 to {MAX_VALIDATORS}",
                self.validators
            ));
        }
        if self.amount_gwei < 1_000_000_000 {
            return bad(format!("amount {} gwei is below 1 ETH", self.amount_gwei));
        }
        if !matches!(self.withdrawal_credentials[0], 0..=2) {
            return bad(format!(
                "withdrawal credentials prefix 0x{:02x} is not 0x00, 0x01 or 0x02",
                self.withdrawal_credentials[0]
            ));
        }
        if self.network_name.is_empty() {
            return bad("empty network_name".into());
        }
        Ok(())
    }

    /// The ceremony id: SHA-256 of the compact serialization, `0x` hex.
    pub fn id(&self) -> String {
        // invariant: strings, numbers and hex only, so serialization cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("0x{}", hex::encode(Sha256::digest(json.as_bytes())))
    }

    /// The position (0-based) of the named operator.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.operators.iter().position(|o| o.name == name)
    }

    /// The operators as `cluster.json` lists them (node URL and TLS identity).
    pub fn cluster_operators(&self) -> Vec<Operator> {
        self.operators
            .iter()
            .map(|o| Operator {
                name: o.name.clone(),
                url: o.node_url.clone(),
                tls_fingerprint: o.tls_fingerprint,
                tls_ca: o.tls_ca.clone(),
            })
            .collect()
    }
}

/// Checks an operator list and its threshold: 2..=64 operators with unique well-formed names
/// and http(s) URLs (the ceremony URL https); `n/2 < t <= n`.
///
/// # Errors
/// [`Error::Definition`] naming the first failed check.
pub(super) fn check_operators(operators: &[CeremonyOperator], threshold: u32) -> Result<(), Error> {
    let bad = |m: String| Err(Error::Definition(m));
    let n = operators.len();
    if !(2..=64).contains(&n) {
        return bad(format!("{n} operators; need 2 to 64"));
    }
    let mut names = BTreeSet::new();
    for op in operators {
        if !valid_name(&op.name) {
            return bad(format!("invalid operator name {:?}", op.name));
        }
        if !names.insert(op.name.as_str()) {
            return bad(format!("operator {} listed twice", op.name));
        }
        for url in [&op.url, &op.node_url] {
            if !url.starts_with("https://") && !url.starts_with("http://") {
                return bad(format!("operator {}: url {url:?} is not http(s)", op.name));
            }
        }
        if !op.url.starts_with("https://") {
            return bad(format!("operator {}: ceremony url must be https", op.name));
        }
    }
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    if threshold <= n / 2 || threshold > n {
        return bad(format!(
            "threshold {threshold} of {n}: need a strict majority ({} to {n})",
            n / 2 + 1
        ));
    }
    Ok(())
}

/// Whether `name` is a well-formed operator name (letters, digits, `.`, `_`, `-`; 1 to 64
/// characters; not starting with `.`).
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `0x`-hex serde for fixed-size byte arrays.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer, const N: usize>(
        b: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(b)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        crate::bls::parse_hex::<N>(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let ops: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                format!(
                    r#"{{"name":"{n}","url":"https://{n}:1","node_url":"https://{n}:2","tls_fingerprint":"{}"}}"#,
                    "00".repeat(32)
                )
            })
            .collect();
        format!(
            r#"{{"version":1,"name":"x","operators":[{}],"threshold":2,"validators":2,
            "withdrawal_credentials":"0x01{}","fork_version":"0x00000000","network_name":"mainnet",
            "amount_gwei":32000000000}}"#,
            ops.join(","),
            "00".repeat(31)
        )
    }

    #[test]
    fn parses_checks_and_ids() {
        let d = CeremonyDefinition::from_json(&sample()).expect("valid");
        assert_eq!(d.on_misbehaviour, OnMisbehaviour::Abort);
        assert_eq!(d.position("c"), Some(2));
        let pretty = serde_json::to_string_pretty(&d).expect("ser");
        let again = CeremonyDefinition::from_json(&pretty).expect("round trip");
        assert_eq!(again.id(), d.id());
        let renamed = sample().replace(r#""name":"x""#, r#""name":"y""#);
        assert_ne!(
            CeremonyDefinition::from_json(&renamed).expect("valid").id(),
            d.id()
        );
    }

    #[test]
    fn refuses_bad_definitions() {
        let s = sample();
        for (from, to) in [
            (r#""threshold":2"#, r#""threshold":1"#),
            (r#""threshold":2"#, r#""threshold":4"#),
            (r#""validators":2"#, r#""validators":0"#),
            (r#""amount_gwei":32000000000"#, r#""amount_gwei":5"#),
            (
                r#""withdrawal_credentials":"0x01"#,
                r#""withdrawal_credentials":"0x07"#,
            ),
            (r#""name":"b""#, r#""name":"a""#),
            ("https://c:1", "http://c:1"),
            (r#""version":1"#, r#""version":1,"extra":1"#),
        ] {
            let text = s.replacen(from, to, 1);
            assert_ne!(text, s, "{from}");
            assert!(CeremonyDefinition::from_json(&text).is_err(), "{to}");
        }
    }
}
