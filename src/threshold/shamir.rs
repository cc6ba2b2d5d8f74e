//! Shamir secret sharing of a BLS secret key with Feldman commitments.
//!
//! `f(x) = sk + a_1 x + ... + a_{t-1} x^{t-1}` over the scalar field; share `i` (1-based) is
//! `sk_i = f(i)`, commitments are `C_k = a_k G1` with `C_0` the group public key, and anyone
//! holding the commitments can compute `pk_i = sum_k i^k C_k` and check a share against it.
//!
//! Invariants: coefficients are drawn from the OS RNG, non-zero (so the polynomial has exactly
//! degree t - 1 and no commitment is the identity) and zeroized when `split` returns; every
//! share is a valid non-zero BLS secret key; a [`Commitments`] value always has >= 2 valid
//! points.

use std::fmt;
use std::num::NonZeroU64;

use rand::RngCore;
use zeroize::Zeroizing;

use super::curve::{self, Scalar};
use super::Error;
use crate::bls::{parse_hex, PublicKey};
use crate::keys::secret::SecretKey;

/// A 1-based share index: the x-coordinate at which the polynomial was evaluated. Index 0
/// (the secret itself) cannot be represented. Serializes as a JSON number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareIndex(NonZeroU64);

impl ShareIndex {
    /// `None` for 0.
    pub fn new(i: u64) -> Option<Self> {
        NonZeroU64::new(i).map(Self)
    }

    /// The index as a number (>= 1).
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl From<NonZeroU64> for ShareIndex {
    fn from(v: NonZeroU64) -> Self {
        Self(v)
    }
}

impl fmt::Display for ShareIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for ShareIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareIndex({})", self.0)
    }
}

impl serde::Serialize for ShareIndex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0.get())
    }
}

impl<'de> serde::Deserialize<'de> for ShareIndex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        Self::new(v).ok_or_else(|| serde::de::Error::custom("share index 0 is not allowed"))
    }
}

/// One share of a validator key: its index and the secret `sk_i = f(i)`. The secret zeroizes
/// on drop; `Debug` prints only the index and the share public key.
pub struct KeyShare {
    /// The 1-based index.
    pub index: ShareIndex,
    /// The share's secret key (an ordinary BLS key: a node signs with it as with a whole key).
    pub secret: SecretKey,
}

impl KeyShare {
    /// The share public key `pk_i = sk_i G1`.
    pub fn public_key(&self) -> &PublicKey {
        self.secret.public_key()
    }
}

impl fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyShare(index={}, pk={})",
            self.index,
            self.public_key().bytes()
        )
    }
}

/// Feldman commitments `[C_0, ..., C_{t-1}]`, `C_k = a_k G1`, `C_0` = the group public key.
/// Serializes as a list of `0x`-prefixed compressed G1 points; deserialization validates every
/// point and the length (>= 2).
#[derive(Clone, PartialEq, Eq)]
pub struct Commitments(Vec<PublicKey>);

impl Commitments {
    /// Wraps a list of points.
    ///
    /// # Errors
    /// [`Error::TooFewCommitments`] for fewer than 2 points (threshold < 2).
    pub fn new(points: Vec<PublicKey>) -> Result<Self, Error> {
        if points.len() < 2 {
            return Err(Error::TooFewCommitments(points.len()));
        }
        Ok(Self(points))
    }

    /// The points, `C_0` first.
    pub fn points(&self) -> &[PublicKey] {
        &self.0
    }

    /// `C_0`, the group (whole-key) public key.
    pub fn group_public_key(&self) -> &PublicKey {
        // invariant: `new` and deserialization guarantee at least two points.
        &self.0[0]
    }

    /// The threshold t (the number of commitments: the polynomial has degree t - 1).
    pub fn threshold(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap_or(u32::MAX)
    }

    /// The public key of share `index`: `sum_k index^k C_k`.
    ///
    /// # Errors
    /// [`Error::IdentityShareKey`] when the sum is the identity (impossible for commitments
    /// produced by [`split`]; only malformed commitments do this).
    pub fn share_public_key(&self, index: ShareIndex) -> Result<PublicKey, Error> {
        curve::g1_poly_eval(&self.0, index.get()).ok_or(Error::IdentityShareKey(index))
    }

    /// Whether `pk` is the public key these commitments give share `index`.
    pub fn verify_share(&self, index: ShareIndex, pk: &PublicKey) -> bool {
        self.share_public_key(index)
            .is_ok_and(|expected| expected.bytes() == pk.bytes())
    }
}

impl fmt::Debug for Commitments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|p| p.bytes()))
            .finish()
    }
}

impl serde::Serialize for Commitments {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|p| p.bytes().to_hex()))
    }
}

impl<'de> serde::Deserialize<'de> for Commitments {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hexes = Vec::<String>::deserialize(d)?;
        let mut points = Vec::with_capacity(hexes.len());
        for (position, h) in hexes.iter().enumerate() {
            let p = parse_hex::<48>(h)
                .and_then(|b| PublicKey::from_bytes(&b))
                .map_err(|source| Error::InvalidCommitment { position, source })
                .map_err(serde::de::Error::custom)?;
            points.push(p);
        }
        Self::new(points).map_err(serde::de::Error::custom)
    }
}

/// Splits `sk` into `n` shares of which any `t` reconstruct it (in the exponent: they sign).
///
/// Returns the shares with indices `1..=n`, in order, and the Feldman commitments. The
/// majority rule (t > n/2) is a policy of `cluster::split`, not enforced here.
///
/// # Errors
/// [`Error::InvalidThreshold`] unless `2 <= t <= n`; [`Error::DegenerateSharing`] if the RNG
/// repeatedly yields a zero share.
pub fn split(sk: &SecretKey, t: u32, n: u32) -> Result<(Vec<KeyShare>, Commitments), Error> {
    if t < 2 || t > n {
        return Err(Error::InvalidThreshold {
            threshold: t.into(),
            shares: n.into(),
        });
    }
    for _attempt in 0..16 {
        if let Some(result) = try_split(sk, t, n) {
            return Ok(result);
        }
    }
    Err(Error::DegenerateSharing)
}

/// One attempt; `None` when a zero coefficient or share was drawn.
fn try_split(sk: &SecretKey, t: u32, n: u32) -> Option<(Vec<KeyShare>, Commitments)> {
    let mut coefficients = Vec::with_capacity(t as usize);
    coefficients.push(Scalar::from_secret(sk));
    let mut commitments = Vec::with_capacity(t as usize);
    commitments.push(sk.public_key().clone());
    let mut wide = Zeroizing::new([0u8; 64]);
    for _ in 1..t {
        rand::rngs::OsRng.fill_bytes(wide.as_mut());
        let a = Scalar::from_be_bytes_wide(wide.as_ref());
        if a.is_zero() {
            return None;
        }
        // The coefficient as a key gives a_k G1 through blst's safe API.
        let as_key = SecretKey::from_bytes(&a.to_be_bytes()).ok()?;
        commitments.push(as_key.public_key().clone());
        coefficients.push(a);
    }
    let mut shares = Vec::with_capacity(n as usize);
    for i in 1..=u64::from(n) {
        let x = Scalar::from_u64(i);
        // Horner: y = (((a_{t-1}) x + a_{t-2}) x + ...) x + a_0; every `y` drops zeroized.
        let mut iter = coefficients.iter().rev();
        let mut y = iter.next()?.add(&Scalar::from_u64(0));
        for a in iter {
            y = y.mul(&x).add(a);
        }
        let secret = SecretKey::from_bytes(&y.to_be_bytes()).ok()?;
        shares.push(KeyShare {
            index: ShareIndex::new(i)?,
            secret,
        });
    }
    Some((shares, Commitments(commitments)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_index_zero_is_unrepresentable() {
        assert!(ShareIndex::new(0).is_none());
        assert!(serde_json::from_str::<ShareIndex>("0").is_err());
        let i: ShareIndex = serde_json::from_str("3").expect("3");
        assert_eq!(i.get(), 3);
        assert_eq!(serde_json::to_string(&i).expect("ser"), "3");
    }

    #[test]
    fn thresholds_outside_two_to_n_are_refused() {
        let sk = SecretKey::random();
        for (t, n) in [(0, 3), (1, 3), (4, 3), (2, 1)] {
            assert_eq!(
                split(&sk, t, n).err(),
                Some(Error::InvalidThreshold {
                    threshold: t.into(),
                    shares: n.into()
                })
            );
        }
        assert!(split(&sk, 2, 2).is_ok());
    }

    /// Hand-checkable sharing: with sk = 5 and a_1 = 3 (f(x) = 5 + 3x), share 2 must be 11 and
    /// the commitments must give pk_2 = 11 G1.
    #[test]
    fn feldman_evaluation_matches_known_polynomial() {
        let key = |v: u8| {
            let mut b = [0u8; 32];
            b[31] = v;
            SecretKey::from_bytes(&b).expect("small scalar")
        };
        let c = Commitments::new(vec![
            key(5).public_key().clone(),
            key(3).public_key().clone(),
        ])
        .expect("two points");
        assert_eq!(
            c.share_public_key(ShareIndex::new(2).expect("2"))
                .expect("pk"),
            *key(11).public_key()
        );
        assert!(c.verify_share(ShareIndex::new(1).expect("1"), key(8).public_key()));
        assert!(!c.verify_share(ShareIndex::new(1).expect("1"), key(9).public_key()));
    }

    #[test]
    fn identity_share_key_is_an_error() {
        // f(x) = 1 - x has f(1) = 0: C_0 = G1, C_1 = -G1 (r - 1 as a scalar).
        let mut one = [0u8; 32];
        one[31] = 1;
        let minus_one = Scalar::from_u64(0).sub(&Scalar::from_u64(1)).to_be_bytes();
        let c = Commitments::new(vec![
            SecretKey::from_bytes(&one).expect("1").public_key().clone(),
            SecretKey::from_bytes(&minus_one)
                .expect("r-1")
                .public_key()
                .clone(),
        ])
        .expect("two points");
        let i1 = ShareIndex::new(1).expect("1");
        assert_eq!(
            c.share_public_key(i1).err(),
            Some(Error::IdentityShareKey(i1))
        );
    }

    #[test]
    fn commitments_serde_round_trip_and_validation() {
        let sk = SecretKey::random();
        let (_, c) = split(&sk, 3, 5).expect("split");
        let json = serde_json::to_string(&c).expect("ser");
        assert!(json.starts_with("[\"0x"), "{json}");
        let back: Commitments = serde_json::from_str(&json).expect("de");
        assert_eq!(back, c);
        assert_eq!(back.threshold(), 3);
        assert_eq!(back.group_public_key(), sk.public_key());
        let one = format!("[\"{}\"]", sk.public_key().bytes().to_hex());
        assert!(serde_json::from_str::<Commitments>(&one).is_err());
        let mut inf = String::from("0xc0");
        inf.push_str(&"00".repeat(47));
        let bad = format!("[\"{}\",\"{inf}\"]", sk.public_key().bytes().to_hex());
        assert!(serde_json::from_str::<Commitments>(&bad).is_err());
    }

    #[test]
    fn debug_does_not_print_share_secret() {
        let sk = SecretKey::random();
        let (shares, _) = split(&sk, 2, 3).expect("split");
        let secret_hex = hex::encode(shares[0].secret.expose_secret().as_ref());
        let dbg = format!("{:?}", shares[0]);
        assert!(!dbg.contains(&secret_hex));
        assert!(dbg.contains("index=1"), "{dbg}");
    }
}
