//! Errors of the cluster module.

use std::path::PathBuf;

use crate::bls::PublicKeyBytes;
use crate::threshold::ShareIndex;

/// A cluster definition that cannot be read, or that fails verification, or a split request
/// that cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The JSON is malformed or has unknown fields.
    #[error("invalid cluster definition json: {0}")]
    Json(#[from] serde_json::Error),
    /// The `version` field is not one this build understands.
    #[error("unsupported cluster definition version {found} (supported: {supported})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The version this build writes and reads.
        supported: u32,
    },
    /// Two operators have the same name.
    #[error("operator {0:?} is defined twice")]
    DuplicateOperator(String),
    /// An operator name is empty or has characters other than letters, digits, `.`, `_`, `-`
    /// (names become directory names), or starts with `.`.
    #[error("invalid operator name {0:?}: use letters, digits, '.', '_' and '-'")]
    InvalidOperatorName(String),
    /// An operator URL is not `http://` or `https://`.
    #[error("operator {operator:?}: url {url:?} is not http(s)")]
    InvalidUrl {
        /// The operator.
        operator: String,
        /// The URL.
        url: String,
    },
    /// A share names an operator that is not defined.
    #[error("validator {validator}: share {index} belongs to unknown operator {operator:?}")]
    UnknownOperator {
        /// The group public key.
        validator: PublicKeyBytes,
        /// The share.
        index: ShareIndex,
        /// The missing operator.
        operator: String,
    },
    /// Two validators have the same group public key.
    #[error("validator {0} is defined twice")]
    DuplicateValidator(PublicKeyBytes),
    /// A share public key appears twice in the cluster (or equals a group key).
    #[error("share public key {0} appears twice in the cluster")]
    DuplicateShareKey(PublicKeyBytes),
    /// t is not a strict majority of n, or exceeds n.
    #[error(
        "validator {validator}: threshold {threshold} of {shares} is not allowed: the threshold must \
         be a strict majority (t > n/2, here at least {minimum}) and at most n, so that two \
         disjoint groups of operators can never both sign, yet the cluster still signs when a \
         minority is down"
    )]
    ThresholdNotMajority {
        /// The group public key (all zeros when refused before any key exists).
        validator: PublicKeyBytes,
        /// t.
        threshold: u32,
        /// n.
        shares: u32,
        /// The smallest allowed t for this n.
        minimum: u32,
    },
    /// `threshold` differs from the number of commitments.
    #[error("validator {validator}: threshold {threshold} but {commitments} commitments")]
    ThresholdMismatch {
        /// The group public key.
        validator: PublicKeyBytes,
        /// Declared t.
        threshold: u32,
        /// Commitments given.
        commitments: u32,
    },
    /// `share_count` differs from the number of shares listed.
    #[error("validator {validator}: share_count {declared} but {actual} shares listed")]
    ShareCountMismatch {
        /// The group public key.
        validator: PublicKeyBytes,
        /// Declared n.
        declared: u32,
        /// Shares listed.
        actual: usize,
    },
    /// Share indices are not exactly `1..=n` (a gap, a repeat or an index above n).
    #[error("validator {validator}: share index {index} is repeated or outside 1..={shares}")]
    BadShareIndex {
        /// The group public key.
        validator: PublicKeyBytes,
        /// The offending index.
        index: ShareIndex,
        /// n.
        shares: u32,
    },
    /// An operator holds two shares of one validator, which would let it count twice.
    #[error("validator {validator}: operator {operator:?} holds more than one share")]
    OperatorHoldsTwoShares {
        /// The group public key.
        validator: PublicKeyBytes,
        /// The operator.
        operator: String,
    },
    /// The first commitment is not the group public key.
    #[error("validator {validator}: commitments[0] is {found}, not the group public key")]
    GroupKeyMismatch {
        /// The group public key.
        validator: PublicKeyBytes,
        /// `commitments[0]`.
        found: PublicKeyBytes,
    },
    /// A share public key does not match the commitments.
    #[error(
        "validator {validator}: share {index} public key {found} does not match the commitments"
    )]
    ShareKeyMismatch {
        /// The group public key.
        validator: PublicKeyBytes,
        /// The share.
        index: ShareIndex,
        /// The share public key in the definition.
        found: PublicKeyBytes,
    },
    /// Splitting needs at least two operators.
    #[error("need at least 2 operators to split keys, got {0}")]
    TooFewOperators(usize),
    /// The threshold arithmetic failed.
    #[error(transparent)]
    Threshold(#[from] crate::threshold::Error),
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<super::Error>();
    }
}
