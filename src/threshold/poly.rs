//! Secret polynomials and sums of sharings, for a joint Feldman DKG (`crate::dkg`).
//!
//! A dealer draws `f(x) = a_0 + a_1 x + ... + a_{t-1} x^{t-1}` with every coefficient random
//! and non-zero; nobody ever learns the group secret `sum_i a_{i,0}`: operator `j` only ever
//! adds the values `f_i(j)` it received ([`sum_shares`]) and everyone adds the dealers' public
//! commitments ([`sum_commitments`]). Because Feldman commitments are additively homomorphic,
//! the summed commitments verify the summed shares.
//!
//! Invariants: coefficients live in zeroizing [`Scalar`]s and are wiped when the
//! [`Polynomial`] drops; evaluation at 0 is unrepresentable ([`ShareIndex`]).

use std::fmt;

use rand::RngCore;
use zeroize::Zeroizing;

use super::curve::{self, Scalar};
use super::lagrange::coefficients_at_zero;
use super::{Commitments, Error, ShareIndex};
use crate::bls::PublicKey;
use crate::keys::secret::SecretKey;

/// A dealer's secret polynomial of degree `t - 1` with its Feldman commitments. Not `Clone`;
/// `Debug` prints only the degree and `C_0`.
pub struct Polynomial {
    coefficients: Vec<Scalar>,
    commitments: Commitments,
}

impl Polynomial {
    /// Draws a random polynomial with `t` non-zero coefficients (so `t` commitments).
    ///
    /// # Errors
    /// [`Error::InvalidThreshold`] for `t < 2`; [`Error::DegenerateSharing`] if the RNG keeps
    /// returning zero.
    pub fn random(t: u32) -> Result<Self, Error> {
        Self::draw(None, t)
    }

    /// Draws a random polynomial with `t` coefficients whose constant term is `secret` (the
    /// other coefficients random and non-zero), so `C_0` is `secret`'s public key: what a
    /// dealer uses to re-share its existing share (`crate::dkg::reshare`).
    ///
    /// # Errors
    /// As [`Polynomial::random`].
    pub fn with_constant(secret: &SecretKey, t: u32) -> Result<Self, Error> {
        Self::draw(Some(secret), t)
    }

    fn draw(constant: Option<&SecretKey>, t: u32) -> Result<Self, Error> {
        if t < 2 {
            return Err(Error::InvalidThreshold {
                threshold: t.into(),
                shares: t.into(),
            });
        }
        let mut coefficients = Vec::with_capacity(t as usize);
        let mut points = Vec::with_capacity(t as usize);
        if let Some(secret) = constant {
            coefficients.push(Scalar::from_secret(secret));
            points.push(secret.public_key().clone());
        }
        let mut wide = Zeroizing::new([0u8; 64]);
        let mut attempts = 0;
        while coefficients.len() < t as usize {
            attempts += 1;
            if attempts > 16 * t {
                return Err(Error::DegenerateSharing);
            }
            rand::rngs::OsRng.fill_bytes(wide.as_mut());
            let a = Scalar::from_be_bytes_wide(wide.as_ref());
            if a.is_zero() {
                continue;
            }
            let Ok(as_key) = SecretKey::from_bytes(&a.to_be_bytes()) else {
                continue;
            };
            points.push(as_key.public_key().clone());
            coefficients.push(a);
        }
        Ok(Self {
            coefficients,
            commitments: Commitments::new(points)?,
        })
    }

    /// The Feldman commitments `a_k G1`.
    pub fn commitments(&self) -> &Commitments {
        &self.commitments
    }

    /// The constant term as a key (to prove possession of `C_0`).
    ///
    /// # Errors
    /// Never in practice: coefficients are non-zero reduced scalars.
    pub fn constant_key(&self) -> Result<SecretKey, Error> {
        let a0 = self.coefficients.first().ok_or(Error::DegenerateSharing)?;
        SecretKey::from_bytes(&a0.to_be_bytes()).map_err(|_| Error::DegenerateSharing)
    }

    /// `f(index)` as a key share.
    ///
    /// # Errors
    /// [`Error::DegenerateSharing`] when the value is zero (probability ~2^-255).
    pub fn evaluate(&self, index: ShareIndex) -> Result<SecretKey, Error> {
        let x = Scalar::from_u64(index.get());
        let mut iter = self.coefficients.iter().rev();
        let mut y = iter
            .next()
            .ok_or(Error::DegenerateSharing)?
            .add(&Scalar::from_u64(0));
        for a in iter {
            y = y.mul(&x).add(a);
        }
        SecretKey::from_bytes(&y.to_be_bytes()).map_err(|_| Error::DegenerateSharing)
    }
}

impl fmt::Debug for Polynomial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Polynomial(degree={}, c0={})",
            self.coefficients.len().saturating_sub(1),
            self.commitments.group_public_key().bytes()
        )
    }
}

/// The key whose scalar is the sum of the given keys' scalars: operator `j`'s DKG share
/// `sum_i f_i(j)`.
///
/// # Errors
/// [`Error::NotEnoughShares`] for an empty list; [`Error::DegenerateSharing`] when the sum is
/// zero.
pub fn sum_shares(shares: &[SecretKey]) -> Result<SecretKey, Error> {
    let (first, rest) = shares.split_first().ok_or(Error::NotEnoughShares {
        current: 0,
        required: 1,
    })?;
    let mut acc = Scalar::from_secret(first);
    for s in rest {
        acc = acc.add(&Scalar::from_secret(s));
    }
    SecretKey::from_bytes(&acc.to_be_bytes()).map_err(|_| Error::DegenerateSharing)
}

/// Coefficient-wise sum of commitments of equal length: the group's commitments.
///
/// # Errors
/// [`Error::TooFewCommitments`] for an empty list or lengths that differ (reported as the
/// offending length); [`Error::IdentityCommitment`] when a summed coefficient is the identity.
pub fn sum_commitments(all: &[Commitments]) -> Result<Commitments, Error> {
    let first = all.first().ok_or(Error::TooFewCommitments(0))?;
    let t = first.points().len();
    if let Some(bad) = all.iter().find(|c| c.points().len() != t) {
        return Err(Error::TooFewCommitments(bad.points().len()));
    }
    let mut out: Vec<PublicKey> = Vec::with_capacity(t);
    for k in 0..t {
        let column: Vec<PublicKey> = all.iter().map(|c| c.points()[k].clone()).collect();
        let p = curve::g1_sum(&column).ok_or(Error::IdentityCommitment(k))?;
        out.push(p);
    }
    Commitments::new(out)
}

/// Lagrange interpolation at zero of secret values given at share indices:
/// `sum_i lambda_i y_i` with `lambda_i` the coefficients at zero for the given indices. In a
/// reshare, new operator `j` turns the values `f_i(j)` it received from the dealers `i in Q`
/// into its new share this way.
///
/// # Errors
/// [`Error::NotEnoughShares`] for an empty list; [`Error::DuplicateShareIndex`] when an index
/// repeats; [`Error::DegenerateSharing`] when the result is zero.
pub fn interpolate_shares(points: &[(ShareIndex, &SecretKey)]) -> Result<SecretKey, Error> {
    if points.is_empty() {
        return Err(Error::NotEnoughShares {
            current: 0,
            required: 1,
        });
    }
    let indices: Vec<ShareIndex> = points.iter().map(|(i, _)| *i).collect();
    let lambdas = coefficients_at_zero(&indices)?;
    let mut acc = Scalar::from_u64(0);
    for ((_, y), lambda) in points.iter().zip(&lambdas) {
        acc = acc.add(&Scalar::from_secret(y).mul(lambda));
    }
    SecretKey::from_bytes(&acc.to_be_bytes()).map_err(|_| Error::DegenerateSharing)
}

/// Lagrange interpolation at zero of commitment vectors given at share indices, coefficient by
/// coefficient: `C'_k = sum_i lambda_i C_{i,k}`. The commitments of the polynomial
/// `sum_i lambda_i f_i`, so they verify the shares [`interpolate_shares`] computes.
///
/// # Errors
/// [`Error::TooFewCommitments`] for an empty list or lengths that differ (reported as the
/// offending length); [`Error::DuplicateShareIndex`]; [`Error::IdentityCommitment`] when a
/// coefficient sums to the identity.
pub fn interpolate_commitments(
    points: &[(ShareIndex, &Commitments)],
) -> Result<Commitments, Error> {
    let (_, first) = points.first().ok_or(Error::TooFewCommitments(0))?;
    let t = first.points().len();
    if let Some((_, bad)) = points.iter().find(|(_, c)| c.points().len() != t) {
        return Err(Error::TooFewCommitments(bad.points().len()));
    }
    let indices: Vec<ShareIndex> = points.iter().map(|(i, _)| *i).collect();
    let lambdas = coefficients_at_zero(&indices)?;
    let mut out = Vec::with_capacity(t);
    for k in 0..t {
        let column: Vec<PublicKey> = points.iter().map(|(_, c)| c.points()[k].clone()).collect();
        out.push(curve::g1_weighted_sum(&column, &lambdas).ok_or(Error::IdentityCommitment(k))?);
    }
    Commitments::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bls::SigningRoot;
    use crate::threshold::combine;

    fn idx(i: u64) -> ShareIndex {
        ShareIndex::new(i).expect("non-zero")
    }

    /// Three dealers, 2-of-3: summed shares verify against summed commitments and any two
    /// sign under the summed C_0 (which equals the sum of the dealers' C_0).
    #[test]
    fn joint_sharing_is_consistent() {
        let polys: Vec<Polynomial> = (0..3)
            .map(|_| Polynomial::random(2).expect("poly"))
            .collect();
        let commitments: Vec<Commitments> = polys.iter().map(|p| p.commitments().clone()).collect();
        let group = sum_commitments(&commitments).expect("sum");
        let c0s: Vec<PublicKey> = commitments
            .iter()
            .map(|c| c.group_public_key().clone())
            .collect();
        assert_eq!(group.group_public_key(), &curve::g1_sum(&c0s).expect("sum"));
        let mut shares = Vec::new();
        for j in 1..=3 {
            let parts: Vec<SecretKey> = polys
                .iter()
                .map(|p| p.evaluate(idx(j)).expect("eval"))
                .collect();
            for (p, part) in polys.iter().zip(&parts) {
                assert!(p.commitments().verify_share(idx(j), part.public_key()));
            }
            let share = sum_shares(&parts).expect("sum");
            assert!(group.verify_share(idx(j), share.public_key()));
            shares.push(share);
        }
        let root = SigningRoot([7; 32]);
        let partials = vec![
            (idx(1), shares[0].sign(&root)),
            (idx(3), shares[2].sign(&root)),
        ];
        let sig = combine(&partials, 2).expect("combine");
        assert!(sig.verify(group.group_public_key(), &root.0));
        let wrong = sum_shares(&[polys[0].evaluate(idx(2)).expect("eval")]).expect("one");
        assert!(!group.verify_share(idx(2), wrong.public_key()));
    }

    /// Resharing a 3-of-4 sharing of a known key to 2-of-3 through dealers {1, 3, 4}: the
    /// interpolated shares verify against the interpolated commitments, whose C_0 is the old
    /// group key, and any two new shares sign exactly like the whole key.
    #[test]
    fn resharing_keeps_the_group_key() {
        let sk = SecretKey::random();
        let (old, old_commitments) = crate::threshold::split(&sk, 3, 4).expect("split");
        let dealers: Vec<&crate::threshold::KeyShare> =
            [0usize, 2, 3].iter().map(|i| &old[*i]).collect();
        let polys: Vec<Polynomial> = dealers
            .iter()
            .map(|d| Polynomial::with_constant(&d.secret, 2).expect("poly"))
            .collect();
        for (d, p) in dealers.iter().zip(&polys) {
            assert_eq!(p.commitments().group_public_key(), d.public_key());
            assert!(old_commitments.verify_share(d.index, p.commitments().group_public_key()));
        }
        let cs: Vec<(ShareIndex, &Commitments)> = dealers
            .iter()
            .zip(&polys)
            .map(|(d, p)| (d.index, p.commitments()))
            .collect();
        let new_commitments = interpolate_commitments(&cs).expect("commitments");
        assert_eq!(new_commitments.threshold(), 2);
        assert_eq!(new_commitments.group_public_key(), sk.public_key());
        let mut new_shares = Vec::new();
        for j in 1..=3 {
            let values: Vec<SecretKey> = polys
                .iter()
                .map(|p| p.evaluate(idx(j)).expect("eval"))
                .collect();
            let points: Vec<(ShareIndex, &SecretKey)> =
                dealers.iter().map(|d| d.index).zip(values.iter()).collect();
            let share = interpolate_shares(&points).expect("share");
            assert!(new_commitments.verify_share(idx(j), share.public_key()));
            new_shares.push(share);
        }
        let root = SigningRoot([9; 32]);
        let expected = sk.sign(&root);
        for (a, b) in [(1u64, 2u64), (1, 3), (3, 2)] {
            let partials = vec![
                (idx(a), new_shares[a as usize - 1].sign(&root)),
                (idx(b), new_shares[b as usize - 1].sign(&root)),
            ];
            assert_eq!(combine(&partials, 2).expect("combine"), expected);
        }
        // An old share does not combine with a new one.
        let mixed = vec![
            (idx(1), new_shares[0].sign(&root)),
            (idx(2), old[1].secret.sign(&root)),
        ];
        assert_ne!(combine(&mixed, 2).expect("combine"), expected);
        assert!(interpolate_shares(&[]).is_err());
        assert!(interpolate_commitments(&[]).is_err());
        let v = polys[0].evaluate(idx(1)).expect("eval");
        assert!(interpolate_shares(&[(idx(1), &v), (idx(1), &v)]).is_err());
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert!(Polynomial::random(1).is_err());
        assert!(sum_shares(&[]).is_err());
        assert!(sum_commitments(&[]).is_err());
        let a = Polynomial::random(2).expect("2");
        let b = Polynomial::random(3).expect("3");
        assert!(sum_commitments(&[a.commitments().clone(), b.commitments().clone()]).is_err());
        let dbg = format!("{a:?}");
        assert!(dbg.starts_with("Polynomial(degree=1"), "{dbg}");
    }
}
