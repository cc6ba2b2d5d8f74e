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
        if t < 2 {
            return Err(Error::InvalidThreshold {
                threshold: t.into(),
                shares: t.into(),
            });
        }
        let mut coefficients = Vec::with_capacity(t as usize);
        let mut points = Vec::with_capacity(t as usize);
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
