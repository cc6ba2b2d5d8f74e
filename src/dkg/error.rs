//! Errors of the DKG ceremony.

use std::path::PathBuf;

/// What can stop a ceremony. Every variant that involves another operator names it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ceremony definition is unusable.
    #[error("invalid ceremony definition: {0}")]
    Definition(String),
    /// The definition file is not valid JSON of the expected shape.
    #[error("ceremony definition: {0}")]
    DefinitionJson(#[from] serde_json::Error),
    /// `--operator` is not one of the definition's operators.
    #[error("operator {0:?} is not in the ceremony definition")]
    UnknownOperator(String),
    /// Operators did not publish a round before the deadline.
    #[error("operator(s) {operators} did not answer round {round} in time ({detail})")]
    NoAnswer {
        /// The round's name.
        round: &'static str,
        /// Comma-separated operator names.
        operators: String,
        /// The last error seen for the first of them.
        detail: String,
    },
    /// An operator stopped the ceremony and said why.
    #[error("operator {operator} aborted the ceremony: {reason}")]
    PeerAborted {
        /// Who.
        operator: String,
        /// Their error.
        reason: String,
    },
    /// An operator runs a different ceremony definition (its id differs).
    #[error("operator {operator} runs a different ceremony definition (id {theirs}, ours {ours})")]
    DefinitionMismatch {
        /// Who.
        operator: String,
        /// Their ceremony id.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// A message does not parse or has the wrong shape.
    #[error("operator {operator} sent a malformed {round} message: {reason}")]
    Malformed {
        /// Who.
        operator: String,
        /// The round's name.
        round: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A dealer was accused and the definition says to abort.
    #[error("operator {dealer} dealt invalid shares (reported by {accuser}): {reason}")]
    Misbehaviour {
        /// The accused dealer.
        dealer: String,
        /// Who reported it.
        accuser: String,
        /// The receiver's finding.
        reason: String,
    },
    /// After disqualification fewer than t dealers remain.
    #[error(
        "only {qualified} dealer(s) left after disqualifying {disqualified}; need {threshold}"
    )]
    TooFewQualified {
        /// Qualified dealers.
        qualified: usize,
        /// Comma-separated disqualified dealers.
        disqualified: String,
        /// The threshold.
        threshold: u32,
    },
    /// Operators computed different results (cluster.json or deposit data).
    #[error("operator {operator} computed a different {what} ({theirs}, ours {ours})")]
    ResultMismatch {
        /// Who.
        operator: String,
        /// `cluster.json` or `deposit data`.
        what: &'static str,
        /// Their hash.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// An operator's partial deposit signature does not verify under its share key.
    #[error(
        "operator {operator} sent an invalid deposit signature share for validator {validator}"
    )]
    BadPartial {
        /// Who.
        operator: String,
        /// Validator position (0-based).
        validator: usize,
    },
    /// The combined deposit signature does not verify (cannot happen with verified partials).
    #[error("combined deposit signature for validator {0} does not verify")]
    CombinedSignature(usize),
    /// Threshold arithmetic failed.
    #[error("threshold: {0}")]
    Threshold(#[from] crate::threshold::Error),
    /// The resulting cluster definition does not verify.
    #[error("cluster definition: {0}")]
    Cluster(#[from] crate::cluster::Error),
    /// Sealing or opening a share failed, or no randomness.
    #[error("share encryption: {0}")]
    Crypto(String),
    /// TLS configuration.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::Error),
    /// HTTP client construction.
    #[error("http client: {0}")]
    Http(String),
    /// Keystore encryption.
    #[error("keystore: {0}")]
    Keystore(#[from] crate::keys::keystore::Error),
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The output directory already exists (a finished ceremony is never overwritten).
    #[error("output directory {0} already exists; remove it or choose another --out")]
    OutputExists(PathBuf),
    /// Reshare: a dealer has no keystore for its share of this validator.
    #[error("no old share keystore of validator {validator} among --keystores (a dealer needs all its old shares)")]
    MissingOldShare {
        /// The validator's group public key.
        validator: String,
    },
    /// Reshare: the combined commitments do not keep the validator's group key (cannot happen
    /// once every dealer's constant commitment was checked; checked anyway).
    #[error("reshared group key of validator {validator} is {found}, not the old group key")]
    GroupKeyChanged {
        /// The old group public key.
        validator: String,
        /// What the combination gave.
        found: String,
    },
    /// Reshare: a new operator's check signature does not verify under its new share key.
    #[error("operator {operator} cannot sign with its new share of validator {validator}")]
    BadCheckSignature {
        /// Who.
        operator: String,
        /// Validator position (0-based).
        validator: usize,
    },
    /// Reshare: the new shares' combined check signature does not verify under the group key.
    #[error("the new shares of validator {0} do not sign under the group key")]
    CheckSignature(usize),
    /// A test-only fault stopped this operator.
    #[error("stopped by injected test fault")]
    FaultInjected,
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<super::Error>();
    }
}
