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

/// The Lagrange coefficients at zero as small integers over one common denominator:
/// `lambda_i = numerators[i] / denominator mod r`.
///
/// The share indices of a cluster are small (1..=n), so the rationals
/// `prod_{j != i} j / (j - i)` have small numerators and denominators: for 3-of-4 they are
/// (3, -3, 1) for {1, 2, 3}, (2, -2, 1) for {1, 3, 4}, (6, -8, 3) for {2, 3, 4} and
/// (8, -6, 1) / 3 for {1, 2, 4}. A combination with them costs a few point additions and
/// doublings per partial, plus one full multiplication by `1 / denominator` when it is not 1,
/// instead of one full-width multiplication per partial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SmallCoefficients {
    /// One signed numerator per index, in the given order; `|numerator| < 2^32`.
    pub numerators: Vec<i64>,
    /// The common (positive) denominator.
    pub denominator: u64,
}

/// Largest numerator magnitude [`small_coefficients_at_zero`] returns (beyond it a
/// double-and-add chain stops being cheaper than the full-width path).
const SMALL_LIMIT: u128 = 1 << 32;

/// [`SmallCoefficients`] for `indices`, or `None` when an index repeats or the integers would
/// not stay small (large or many indices); then [`coefficients_at_zero`] is the way.
pub(crate) fn small_coefficients_at_zero(indices: &[ShareIndex]) -> Option<SmallCoefficients> {
    // Each lambda_i as a reduced fraction num / den with den > 0.
    let mut fractions: Vec<(i128, i128)> = Vec::with_capacity(indices.len());
    for (a, xi) in indices.iter().enumerate() {
        let xi = i128::from(xi.get());
        let mut num: i128 = 1;
        let mut den: i128 = 1;
        for (b, xj) in indices.iter().enumerate() {
            if a == b {
                continue;
            }
            let xj = i128::from(xj.get());
            num = num.checked_mul(xj)?;
            den = den.checked_mul(xj - xi)?;
        }
        if den == 0 {
            return None;
        }
        if den < 0 {
            num = -num;
            den = -den;
        }
        let g = gcd(num.unsigned_abs(), den.unsigned_abs());
        // invariant: g divides both and is at least 1 (den != 0).
        let g = i128::try_from(g).ok()?;
        fractions.push((num / g, den / g));
    }
    let mut common: i128 = 1;
    for (_, den) in &fractions {
        let g = i128::try_from(gcd(common.unsigned_abs(), den.unsigned_abs())).ok()?;
        common = (common / g).checked_mul(*den)?;
    }
    let denominator = u64::try_from(common).ok()?;
    let mut numerators = Vec::with_capacity(fractions.len());
    for (num, den) in fractions {
        let c = num.checked_mul(common / den)?;
        if c.unsigned_abs() >= SMALL_LIMIT {
            return None;
        }
        numerators.push(i64::try_from(c).ok()?);
    }
    Some(SmallCoefficients {
        numerators,
        denominator,
    })
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
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

    /// The small form is the same field element as the full-width one, for every subset of
    /// sizes 2..=5 of the indices 1..=7 and a few sparse sets; large indices fall back.
    #[test]
    fn small_coefficients_equal_the_field_coefficients() {
        let mut sets: Vec<Vec<u64>> = Vec::new();
        for mask in 1u32..(1 << 7) {
            let set: Vec<u64> = (1..=7u64).filter(|v| mask & (1 << (v - 1)) != 0).collect();
            if (2..=5).contains(&set.len()) {
                sets.push(set);
            }
        }
        sets.push(vec![4, 1, 3]);
        sets.push(vec![10, 3, 7, 9, 1]);
        sets.push(vec![2, 5, 7]);
        let mut with_denominator = 0;
        for set in &sets {
            let ids: Vec<ShareIndex> = set.iter().map(|v| idx(*v)).collect();
            let full = coefficients_at_zero(&ids).expect("distinct");
            let small = small_coefficients_at_zero(&ids).expect("small indices stay small");
            let inv = Scalar::from_u64(small.denominator)
                .invert_public()
                .expect("non-zero");
            if small.denominator != 1 {
                with_denominator += 1;
            }
            for (c, lambda) in small.numerators.iter().zip(&full) {
                let magnitude = Scalar::from_u64(c.unsigned_abs());
                let signed = if *c < 0 {
                    Scalar::from_u64(0).sub(&magnitude)
                } else {
                    magnitude
                };
                assert_eq!(
                    *signed.mul(&inv).to_be_bytes(),
                    *lambda.to_be_bytes(),
                    "{set:?}"
                );
            }
        }
        assert!(with_denominator > 0, "some sets need a common denominator");
        // Hand-computed: {1, 2, 4}: 8/3, -2, 1/3.
        let s = small_coefficients_at_zero(&[idx(1), idx(2), idx(4)]).expect("small");
        assert_eq!(s.numerators, vec![8, -6, 1]);
        assert_eq!(s.denominator, 3);
        let s = small_coefficients_at_zero(&[idx(1), idx(2), idx(3)]).expect("small");
        assert_eq!((s.numerators, s.denominator), (vec![3, -3, 1], 1));
        assert_eq!(
            small_coefficients_at_zero(&[idx(1 << 40), idx(3), idx(1 << 41)]),
            None,
            "large indices take the full-width path"
        );
        assert_eq!(small_coefficients_at_zero(&[idx(2), idx(2)]), None);
    }
}
