//! Ceremony messages as operators publish them (serde only, no logic). Every message is an
//! [`Envelope`] carrying the ceremony id and the author's name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::seal::Sealed;
use crate::threshold::Commitments;

/// A published round message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    /// [`super::CeremonyDefinition::id`].
    pub ceremony: String,
    /// The author.
    pub operator: String,
    /// The round's content.
    pub body: T,
}

/// Round 1: one X25519 public key (hex) per peer, by peer name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// Peer name -> key for that peer's shares to us.
    pub keys: BTreeMap<String, String>,
}

/// Round 2: the dealer's commitments and proofs per validator, and sealed shares per peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dealing {
    /// One per validator, in order.
    pub validators: Vec<DealtValidator>,
    /// Peer name -> sealed concatenation of that peer's 32-byte shares, one per validator.
    pub shares: BTreeMap<String, Sealed>,
}

/// A dealer's public part for one validator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealtValidator {
    /// Feldman commitments of the dealer's polynomial.
    pub commitments: Commitments,
    /// Proof of possession of the constant term (`0x` hex BLS signature).
    pub pop: String,
}

/// Round 3: the receiver's complaints (empty when every dealing verified).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Complaints {
    /// The complaints.
    pub complaints: Vec<Complaint>,
}

/// One complaint against a dealer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Complaint {
    /// The accused dealer.
    pub dealer: String,
    /// What failed.
    pub reason: String,
}

/// Round 4: the operator's cluster.json hash and partial deposit signatures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partials {
    /// [`crate::cluster::ClusterDefinition::hash`] as computed by the author.
    pub cluster_hash: String,
    /// Dealers the author counted as qualified.
    pub qualified: Vec<String>,
    /// One `0x` hex partial signature per validator.
    pub signatures: Vec<String>,
}

/// Round 5: the final hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// The cluster.json hash.
    pub cluster_hash: String,
    /// SHA-256 of the deposit data file contents.
    pub deposit_hash: String,
}

/// Reshare round 2: a dealer's commitments per validator (constant term = its old share public
/// key) and the sealed values `f_i(j)` per new operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReshareDealing {
    /// Feldman commitments of the dealer's polynomial, one per validator of the old cluster.
    pub commitments: Vec<Commitments>,
    /// New operator name -> sealed concatenation of its 32-byte values, one per validator.
    pub shares: BTreeMap<String, Sealed>,
}

/// Reshare round 4: the author's new `cluster.json` hash and, from a new operator, one partial
/// signature per validator over [`crate::dkg::reshare::check_root`] with its new share.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReshareCheck {
    /// [`crate::cluster::ClusterDefinition::hash`] of the new cluster as computed by the author.
    pub cluster_hash: String,
    /// The dealers whose sharings the author combined, per validator.
    pub dealers: Vec<Vec<String>>,
    /// One `0x` hex partial signature per validator (empty from an operator leaving the set).
    pub signatures: Vec<String>,
}

/// Reshare round 5: the final hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReshareConfirmation {
    /// The new cluster.json hash.
    pub cluster_hash: String,
}
