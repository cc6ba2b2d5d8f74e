//! Threshold BLS over BLS12-381 (Ethereum's `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`
//! ciphersuite, min_pk): Shamir secret sharing of a validator key, Feldman commitments that let
//! anyone check a share's public key, and Lagrange combination of partial signatures.
//!
//! - [`split`] draws `f(x) = sk + a_1 x + ... + a_{t-1} x^{t-1}` with fresh random non-zero
//!   coefficients and hands out `sk_i = f(i)` for `i = 1..=n` with commitments `C_k = a_k G1`.
//! - [`Commitments::share_public_key`] computes `pk_i = sum_k i^k C_k`.
//! - [`Polynomial`], [`sum_commitments`] and [`sum_shares`] are the pieces of a joint
//!   Feldman DKG (`crate::dkg`): each dealer's polynomial, and the sums that make the group's.
//! - [`Polynomial::with_constant`], [`interpolate_shares`] and [`interpolate_commitments`] are
//!   the pieces of a reshare (`crate::dkg::reshare`): Lagrange-weighted sums over the dealers.
//! - [`combine`] computes `sigma = sum_{i in S} lambda_i sigma_i`, with
//!   `lambda_i = prod_{j in S, j != i} j / (j - i) mod r`, as one G2 multi-scalar multiplication.
//!
//! - [`verify_batch`] checks many signatures (of different keys and messages) with one final
//!   exponentiation, [`verify_hashed`] one signature against a message hashed once with
//!   [`hash_to_g2`]; both on the calling thread only (the combiner's verification).
//!
//! Invariants: share index 0 is unrepresentable ([`ShareIndex`] wraps `NonZeroU64`), so a share
//! can never be the secret itself and the blsttc-style `x = i + 1` off-by-one cannot happen.
//! Every secret scalar (coefficients, shares, Horner intermediates) lives in a zeroizing type.
//! All blst FFI is confined to `curve.rs`. BLS is deterministic, so any t valid partials combine
//! to exactly the signature of the whole key.
//!
//! References: Shamir, "How to share a secret" (1979); Feldman, "A practical scheme for
//! non-interactive verifiable secret sharing" (1987); `docs/design-decisions.md`.

mod combine;
mod curve;
mod error;
mod lagrange;
mod poly;
mod shamir;

pub use combine::{combine, combine_full_width};
pub use curve::{
    hash_to_g2, sign_hashed, signature_in_g2, verify_batch, verify_hashed, BatchEntry,
    HashedMessage,
};
pub use error::Error;
pub use poly::{
    interpolate_commitments, interpolate_shares, sum_commitments, sum_shares, Polynomial,
};
pub use shamir::{split, Commitments, KeyShare, ShareIndex};
