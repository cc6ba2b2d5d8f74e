//! Lagrange coefficients for interpolation at x = 0 over the BLS12-381 scalar field.
//!
//! For a set S of distinct share indices, `lambda_i = prod_{j in S, j != i} j / (j - i) mod r`,
//! so that `f(0) = sum_{i in S} lambda_i f(i)` for every polynomial of degree < |S|.
//!
//! Invariants: indices are non-zero by type and checked distinct here, so every denominator
//! `j - i` is non-zero modulo r (indices are below 2^64 < r). The indices are public, so the
//! variable-time inverse is used.

use std::collections::BTreeSet;

use super::curve::Scalar;
use super::{Error, ShareIndex};

/// The Lagrange coefficients at zero for `indices`, in the same order.
///
/// # Errors
/// [`Error::DuplicateShareIndex`] when an index repeats.
pub(crate) fn coefficients_at_zero(indices: &[ShareIndex]) -> Result<Vec<Scalar>, Error> {
    let mut seen = BTreeSet::new();
    for i in indices {
        if !seen.insert(*i) {
            return Err(Error::DuplicateShareIndex(*i));
        }
    }
    let xs: Vec<Scalar> = indices.iter().map(|i| Scalar::from_u64(i.get())).collect();
    let mut out = Vec::with_capacity(xs.len());
    for (a, xi) in xs.iter().enumerate() {
        let mut num = Scalar::from_u64(1);
        let mut den = Scalar::from_u64(1);
        for (b, xj) in xs.iter().enumerate() {
            if a == b {
                continue;
            }
            num = num.mul(xj);
            den = den.mul(&xj.sub(xi));
        }
        // invariant: indices are distinct and below r, so every factor of `den` is non-zero.
        let inv = den
            .invert_public()
            .ok_or(Error::DuplicateShareIndex(indices[a]))?;
        out.push(num.mul(&inv));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(v: u64) -> ShareIndex {
        ShareIndex::new(v).expect("non-zero")
    }

    /// Interpolating the constant polynomial 1 gives sum lambda_i = 1; interpolating f(x) = x
    /// gives sum lambda_i * i = f(0) = 0 (for |S| >= 2).
    #[test]
    fn coefficients_reproduce_low_degree_polynomials() {
        for set in [
            vec![1u64, 2],
            vec![1, 2, 3],
            vec![2, 5, 7],
            vec![4, 1, 3, 9],
        ] {
            let ids: Vec<ShareIndex> = set.iter().map(|v| idx(*v)).collect();
            let l = coefficients_at_zero(&ids).expect("distinct");
            let mut sum = Scalar::from_u64(0);
            let mut weighted = Scalar::from_u64(0);
            for (lambda, v) in l.iter().zip(&set) {
                sum = sum.add(lambda);
                weighted = weighted.add(&lambda.mul(&Scalar::from_u64(*v)));
            }
            assert_eq!(
                *sum.to_be_bytes(),
                *Scalar::from_u64(1).to_be_bytes(),
                "{set:?}"
            );
            assert!(weighted.is_zero(), "{set:?}");
        }
    }

    /// Hand-computed: S = {1, 2}: lambda_1 = 2/(2-1) = 2, lambda_2 = 1/(1-2) = -1.
    #[test]
    fn two_of_two_coefficients_are_two_and_minus_one() {
        let l = coefficients_at_zero(&[idx(1), idx(2)]).expect("distinct");
        assert_eq!(*l[0].to_be_bytes(), *Scalar::from_u64(2).to_be_bytes());
        let minus_one = Scalar::from_u64(0).sub(&Scalar::from_u64(1));
        assert_eq!(*l[1].to_be_bytes(), *minus_one.to_be_bytes());
    }

    #[test]
    fn duplicate_index_is_refused() {
        let err = coefficients_at_zero(&[idx(1), idx(3), idx(1)]).err();
        assert_eq!(err, Some(Error::DuplicateShareIndex(idx(1))));
    }
}
