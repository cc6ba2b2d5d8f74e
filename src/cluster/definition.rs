//! `cluster.json`: the cluster definition (`docs/design-decisions.md`, "Files"), strict serde
//! and verification.
//!
//! ```json
//! {
//!   "version": 1,
//!   "operators": [
//!     { "name": "a", "url": "https://node-a:9000", "tls_fingerprint": "AB:CD:...", "tls_ca": "ca.pem" }
//!   ],
//!   "validators": [
//!     { "group_pubkey": "0x..", "threshold": 3, "share_count": 4,
//!       "commitments": ["0x..", "0x..", "0x.."],
//!       "shares": [ { "index": 1, "pubkey": "0x..", "operator": "a" } ] }
//!   ]
//! }
//! ```
//!
//! `tls_fingerprint` (SHA-256 of the node's certificate DER) and `tls_ca` (a PEM file path, or
//! the PEM text itself when it starts with `-----BEGIN`) are both optional.
//!
//! Invariants: unknown fields are refused everywhere; every point is validated on parsing; a
//! [`ClusterDefinition`] only exists after [`ClusterDefinition::verify`] passed; the
//! [`ClusterDefinition::hash`] is SHA-256 over the compact JSON serialization of the parsed
//! definition (struct field order, lower-case `0x` hex, absent optional fields omitted), so two
//! files that parse to the same definition have the same hash whatever their whitespace.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Error;
use crate::bls::{parse_hex, PublicKey, PublicKeyBytes};
use crate::threshold::{Commitments, ShareIndex};
use crate::tls::Fingerprint;

/// The format version this build reads and writes.
pub const CLUSTER_VERSION: u32 = 1;

/// An operator: one signer node, how to reach it and how to recognise its TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Unique name (letters, digits, `.`, `_`, `-`); also the directory name `split` writes.
    pub name: String,
    /// Base URL of the node's Web3Signer API, e.g. `https://node-a:9000`.
    pub url: String,
    /// SHA-256 fingerprint of the node's TLS certificate, if pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<Fingerprint>,
    /// CA that issued the node's TLS certificate, if CA-verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<CaSource>,
}

impl Operator {
    /// An operator with no TLS information (set `tls_fingerprint` / `tls_ca` afterwards).
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            tls_fingerprint: None,
            tls_ca: None,
        }
    }
}

/// Where an operator's CA certificate is: a PEM file path, or inline PEM text. Serializes as a
/// single string; text starting with `-----BEGIN` is inline PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// A PEM file (relative paths are relative to the reader's working directory).
    Path(PathBuf),
    /// The PEM text itself.
    Pem(String),
}

impl Serialize for CaSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Path(p) => s.collect_str(&p.display()),
            Self::Pem(pem) => s.serialize_str(pem),
        }
    }
}

impl<'de> Deserialize<'de> for CaSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim_start().starts_with("-----BEGIN") {
            Ok(Self::Pem(s))
        } else if s.is_empty() {
            Err(serde::de::Error::custom("empty tls_ca"))
        } else {
            Ok(Self::Path(PathBuf::from(s)))
        }
    }
}

/// One validator of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorDefinition {
    /// The whole key's public key (what the validator client asks to sign with).
    #[serde(with = "pubkey_hex")]
    pub group_pubkey: PublicKey,
    /// t: how many partial signatures make a signature.
    pub threshold: u32,
    /// n: how many shares exist.
    pub share_count: u32,
    /// Feldman commitments, `commitments[0]` = `group_pubkey`, t entries.
    pub commitments: Commitments,
    /// The shares, one per operator holding one.
    pub shares: Vec<ShareDefinition>,
}

impl ValidatorDefinition {
    /// The share with this index.
    pub fn share(&self, index: ShareIndex) -> Option<&ShareDefinition> {
        self.shares.iter().find(|s| s.index == index)
    }
}

/// One share of a validator key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareDefinition {
    /// The 1-based share index.
    pub index: ShareIndex,
    /// The share public key (what the node is asked to sign with).
    #[serde(with = "pubkey_hex")]
    pub pubkey: PublicKey,
    /// The operator whose node holds the share.
    pub operator: String,
}

/// The wire form, field order = canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    version: u32,
    operators: Vec<Operator>,
    validators: Vec<ValidatorDefinition>,
}

/// A verified cluster definition with lookup indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDefinition {
    file: ClusterFile,
    by_group: BTreeMap<PublicKeyBytes, usize>,
    by_share: BTreeMap<PublicKeyBytes, (usize, usize)>,
}

/// SHA-256 of the canonical serialization; prints as `0x`-prefixed lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterHash(pub [u8; 32]);

impl fmt::Display for ClusterHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for ClusterHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterHash({self})")
    }
}

impl ClusterDefinition {
    /// Builds and verifies a definition of the current [`CLUSTER_VERSION`].
    ///
    /// # Errors
    /// Any verification failure (see [`ClusterDefinition::verify`]).
    pub fn new(
        operators: Vec<Operator>,
        validators: Vec<ValidatorDefinition>,
    ) -> Result<Self, Error> {
        Self::from_file(ClusterFile {
            version: CLUSTER_VERSION,
            operators,
            validators,
        })
    }

    fn from_file(file: ClusterFile) -> Result<Self, Error> {
        let (by_group, by_share) = check(&file)?;
        Ok(Self {
            file,
            by_group,
            by_share,
        })
    }

    /// Parses and verifies `cluster.json` text.
    ///
    /// # Errors
    /// [`Error::Json`] for malformed JSON, unknown fields or invalid points; verification errors.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        Self::from_file(serde_json::from_str(text)?)
    }

    /// Reads, parses and verifies a `cluster.json` file.
    ///
    /// # Errors
    /// [`Error::Io`] when unreadable, otherwise as [`ClusterDefinition::from_json`].
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Pretty-printed JSON for humans (the hash does not depend on the layout).
    pub fn to_json_pretty(&self) -> String {
        // invariant: every field serializes infallibly (strings, numbers, hex), so this cannot
        // fail; fall back to the compact form rather than panic.
        serde_json::to_string_pretty(&self.file).unwrap_or_else(|_| self.canonical_json())
    }

    /// Writes [`ClusterDefinition::to_json_pretty`] to `path`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.to_json_pretty() + "\n").map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })
    }

    fn canonical_json(&self) -> String {
        // invariant: as above, serializing these types cannot fail.
        serde_json::to_string(&self.file).unwrap_or_default()
    }

    /// SHA-256 of the canonical (compact, field-ordered) JSON serialization.
    pub fn hash(&self) -> ClusterHash {
        ClusterHash(Sha256::digest(self.canonical_json().as_bytes()).into())
    }

    /// Re-runs every check: version; operator names unique and well-formed, URLs http(s);
    /// per validator: `share_count` == number of shares, indices exactly `1..=n`, each share's
    /// operator exists and holds no other share of that validator, `n/2 < t <= n`,
    /// `commitments.len() == t`, `commitments[0] == group_pubkey`, every share public key equals
    /// `commitments.share_public_key(index)`; group and share keys unique in the cluster.
    /// A constructed value has always passed these checks.
    ///
    /// # Errors
    /// The first failed check.
    pub fn verify(&self) -> Result<(), Error> {
        check(&self.file).map(|_| ())
    }

    /// The format version.
    pub fn version(&self) -> u32 {
        self.file.version
    }

    /// All operators, in file order.
    pub fn operators(&self) -> &[Operator] {
        &self.file.operators
    }

    /// All validators, in file order.
    pub fn validators(&self) -> &[ValidatorDefinition] {
        &self.file.validators
    }

    /// The validator with this group public key.
    pub fn validator(&self, group_pubkey: &PublicKeyBytes) -> Option<&ValidatorDefinition> {
        self.by_group
            .get(group_pubkey)
            .map(|i| &self.file.validators[*i])
    }

    /// The operator with this name.
    pub fn operator(&self, name: &str) -> Option<&Operator> {
        self.file.operators.iter().find(|o| o.name == name)
    }

    /// Which operator (index in [`ClusterDefinition::operators`]) each trusted peer certificate
    /// belongs to: the fingerprints of `allowed_clients` (operator name → client certificate
    /// fingerprint) first, then each operator's `tls_fingerprint`.
    ///
    /// # Errors
    /// The name in `allowed_clients` that is no operator of the cluster.
    pub fn peer_fingerprints(
        &self,
        allowed_clients: &BTreeMap<String, Fingerprint>,
    ) -> Result<BTreeMap<Fingerprint, usize>, String> {
        let operators = self.operators();
        let mut trusted = BTreeMap::new();
        for (name, fp) in allowed_clients {
            let i = operators
                .iter()
                .position(|o| &o.name == name)
                .ok_or_else(|| name.clone())?;
            trusted.insert(*fp, i);
        }
        for (i, op) in operators.iter().enumerate() {
            if let Some(fp) = op.tls_fingerprint {
                trusted.entry(fp).or_insert(i);
            }
        }
        Ok(trusted)
    }

    /// The validator and share a share public key belongs to.
    pub fn share(
        &self,
        share_pubkey: &PublicKeyBytes,
    ) -> Option<(&ValidatorDefinition, &ShareDefinition)> {
        self.by_share.get(share_pubkey).map(|(v, s)| {
            let validator = &self.file.validators[*v];
            (validator, &validator.shares[*s])
        })
    }

    /// The shares an operator's node holds: `(group public key, share index, share public key)`.
    pub fn shares_of<'a>(
        &'a self,
        operator: &'a str,
    ) -> impl Iterator<Item = (&'a PublicKey, ShareIndex, &'a PublicKey)> + 'a {
        self.file.validators.iter().flat_map(move |v| {
            v.shares
                .iter()
                .filter(move |s| s.operator == operator)
                .map(move |s| (&v.group_pubkey, s.index, &s.pubkey))
        })
    }
}

impl Serialize for ClusterDefinition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.file.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ClusterDefinition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let file = ClusterFile::deserialize(d)?;
        Self::from_file(file).map_err(serde::de::Error::custom)
    }
}

/// Smallest strict majority of n.
pub(crate) fn majority(n: u32) -> u32 {
    n / 2 + 1
}

type Indices = (
    BTreeMap<PublicKeyBytes, usize>,
    BTreeMap<PublicKeyBytes, (usize, usize)>,
);

fn check(file: &ClusterFile) -> Result<Indices, Error> {
    if file.version != CLUSTER_VERSION {
        return Err(Error::UnsupportedVersion {
            found: file.version,
            supported: CLUSTER_VERSION,
        });
    }
    let mut operators = BTreeSet::new();
    for op in &file.operators {
        check_operator_name(&op.name)?;
        if !(op.url.starts_with("https://") || op.url.starts_with("http://")) {
            return Err(Error::InvalidUrl {
                operator: op.name.clone(),
                url: op.url.clone(),
            });
        }
        if !operators.insert(op.name.as_str()) {
            return Err(Error::DuplicateOperator(op.name.clone()));
        }
    }
    let mut by_group = BTreeMap::new();
    let mut by_share = BTreeMap::new();
    for (vi, v) in file.validators.iter().enumerate() {
        let vk = v.group_pubkey.bytes();
        if by_group.insert(vk, vi).is_some() {
            return Err(Error::DuplicateValidator(vk));
        }
        check_validator(v, &operators)?;
        for (si, s) in v.shares.iter().enumerate() {
            if by_share.insert(s.pubkey.bytes(), (vi, si)).is_some() {
                return Err(Error::DuplicateShareKey(s.pubkey.bytes()));
            }
        }
    }
    if let Some(k) = by_share.keys().find(|k| by_group.contains_key(*k)) {
        return Err(Error::DuplicateShareKey(*k));
    }
    Ok((by_group, by_share))
}

pub(crate) fn check_operator_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidOperatorName(name.to_owned()))
    }
}

fn check_validator(v: &ValidatorDefinition, operators: &BTreeSet<&str>) -> Result<(), Error> {
    let validator = v.group_pubkey.bytes();
    let (t, n) = (v.threshold, v.share_count);
    if t < majority(n) || t > n {
        return Err(Error::ThresholdNotMajority {
            validator,
            threshold: t,
            shares: n,
            minimum: majority(n),
        });
    }
    if v.commitments.threshold() != t {
        return Err(Error::ThresholdMismatch {
            validator,
            threshold: t,
            commitments: v.commitments.threshold(),
        });
    }
    if v.shares.len() != n as usize {
        return Err(Error::ShareCountMismatch {
            validator,
            declared: n,
            actual: v.shares.len(),
        });
    }
    if v.commitments.group_public_key() != &v.group_pubkey {
        return Err(Error::GroupKeyMismatch {
            validator,
            found: v.commitments.group_public_key().bytes(),
        });
    }
    let mut indices = BTreeSet::new();
    let mut holders = BTreeSet::new();
    for s in &v.shares {
        // n distinct indices all within 1..=n means exactly 1..=n.
        if s.index.get() > u64::from(n) || !indices.insert(s.index) {
            return Err(Error::BadShareIndex {
                validator,
                index: s.index,
                shares: n,
            });
        }
        if !operators.contains(s.operator.as_str()) {
            return Err(Error::UnknownOperator {
                validator,
                index: s.index,
                operator: s.operator.clone(),
            });
        }
        if !holders.insert(s.operator.as_str()) {
            return Err(Error::OperatorHoldsTwoShares {
                validator,
                operator: s.operator.clone(),
            });
        }
        if !v.commitments.verify_share(s.index, &s.pubkey) {
            return Err(Error::ShareKeyMismatch {
                validator,
                index: s.index,
                found: s.pubkey.bytes(),
            });
        }
    }
    Ok(())
}

/// Serde for a validated [`PublicKey`] as `0x`-prefixed hex.
mod pubkey_hex {
    use super::{parse_hex, PublicKey};

    pub(super) fn serialize<S: serde::Serializer>(pk: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&pk.bytes().to_hex())
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<PublicKey, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        parse_hex::<48>(&text)
            .and_then(|b| PublicKey::from_bytes(&b))
            .map_err(serde::de::Error::custom)
    }
}
