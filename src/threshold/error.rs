//! Errors of the threshold module.

use super::ShareIndex;

/// What can go wrong splitting a key, checking commitments or combining partial signatures.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The threshold/share-count pair cannot make a threshold scheme.
    #[error("invalid threshold {threshold} of {shares}: need 2 <= threshold <= shares")]
    InvalidThreshold {
        /// Requested threshold t.
        threshold: u64,
        /// Requested number of shares n.
        shares: u64,
    },
    /// Fewer partial signatures than the threshold.
    #[error("not enough shares: {current} given, {required} required")]
    NotEnoughShares {
        /// Partials given.
        current: usize,
        /// The threshold.
        required: usize,
    },
    /// The same share index appears twice among the partials.
    #[error("duplicate share index {0}")]
    DuplicateShareIndex(ShareIndex),
    /// A commitment list shorter than 2 entries (threshold below 2) was given.
    #[error("commitments list has {0} entries, a threshold scheme needs at least 2")]
    TooFewCommitments(usize),
    /// The commitments evaluate to the identity at this index, so they cannot belong to any
    /// valid share (a malformed or malicious definition).
    #[error("commitments give share {0} the identity as public key")]
    IdentityShareKey(ShareIndex),
    /// Sixteen random polynomials in a row gave a zero share (probability about n * 2^-255
    /// each): the random number generator is broken.
    #[error("could not draw a polynomial whose shares are all non-zero")]
    DegenerateSharing,
    /// Summing commitments gave the identity at this position (a dealer chose its
    /// coefficient to cancel the others': only a malicious DKG participant can do this).
    #[error("summed commitment {0} is the identity")]
    IdentityCommitment(usize),
    /// A commitment is not a valid public key.
    #[error("invalid commitment {position}: {source}")]
    InvalidCommitment {
        /// Position in the list (0 = group public key).
        position: usize,
        /// The decoding error.
        source: crate::bls::Error,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<super::Error>();
    }
}
