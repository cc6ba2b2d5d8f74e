//! Threshold BLS (INTERFACE STUB: the threshold helper replaces this).

use crate::bls::Signature;

/// 1-based share index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareIndex(pub std::num::NonZeroU64);

/// Errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Placeholder.
    #[error("threshold")]
    Stub,
}

/// Lagrange-combines partials.
///
/// # Errors
/// Stub.
pub fn combine(partials: &[(ShareIndex, Signature)], threshold: usize) -> Result<Signature, Error> {
    let _ = (partials, threshold);
    todo!()
}
