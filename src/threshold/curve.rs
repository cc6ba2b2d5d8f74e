//! The only place in the crate that calls blst's C functions directly: arithmetic in the
//! BLS12-381 scalar field (order r) and the two point operations the threshold scheme needs
//! (a G1 polynomial evaluation "in the exponent" and a G2 multi-scalar multiplication).
//!
//! Invariants:
//! - A [`Scalar`] is always a reduced field element (blst keeps `blst_fr` in Montgomery form
//!   and every `blst_fr_*` function returns reduced values); it is wiped when dropped, because
//!   polynomial coefficients, shares and every intermediate of their arithmetic are secrets.
//! - Points are only ever built from values blst produced or validated ([`PublicKey`],
//!   [`Signature`]), so every sum stays in the prime-order subgroup.
//!
//! Spec: `draft-irtf-cfrg-bls-signature` (scalars are big-endian 32-byte integers below r) and
//! blst's `bindings/blst.h` (point multiplications take little-endian scalars and a bit count).
#![allow(unsafe_code)]

use blst::{
    blst_bendian_from_scalar, blst_fp12, blst_fp12_finalverify, blst_fr, blst_fr_add,
    blst_fr_eucl_inverse, blst_fr_from_scalar, blst_fr_from_uint64, blst_fr_inverse, blst_fr_mul,
    blst_fr_sub, blst_hash_to_g2, blst_lendian_from_scalar, blst_miller_loop, blst_miller_loop_n,
    blst_p1, blst_p1_add_or_double, blst_p1_affine, blst_p1_affine_generator, blst_p1_from_affine,
    blst_p1_is_inf, blst_p1_mult, blst_p1_to_affine, blst_p1s_to_affine, blst_p2,
    blst_p2_add_or_double, blst_p2_add_or_double_affine, blst_p2_affine, blst_p2_affine_in_g2,
    blst_p2_cneg, blst_p2_double, blst_p2_from_affine, blst_p2_mult, blst_p2_to_affine,
    blst_p2s_mult_pippenger, blst_p2s_mult_pippenger_scratch_sizeof, blst_scalar,
    blst_scalar_fr_check, blst_scalar_from_be_bytes, blst_scalar_from_bendian, blst_scalar_from_fr,
    min_pk,
};
use zeroize::{Zeroize, Zeroizing};

use crate::bls::{PublicKey, Signature};
use crate::keys::secret::SecretKey;

/// Bits of a reduced scalar (r < 2^255).
const SCALAR_BITS: usize = 255;

/// An element of the BLS12-381 scalar field, zeroized on drop. Deliberately not `Copy`/`Clone`.
pub(crate) struct Scalar(blst_fr);

impl Drop for Scalar {
    fn drop(&mut self) {
        self.0.l.zeroize();
    }
}

impl Scalar {
    /// The field element `v`.
    pub(crate) fn from_u64(v: u64) -> Self {
        let limbs: [u64; 4] = [v, 0, 0, 0];
        let mut out = blst_fr::default();
        // SAFETY: `out` is a valid, writable blst_fr and `limbs` is the 4-limb array the C
        // function reads (`const uint64_t a[4]`).
        unsafe { blst_fr_from_uint64(&mut out, limbs.as_ptr()) };
        Self(out)
    }

    /// The scalar of a secret key (its canonical big-endian encoding, already below r).
    pub(crate) fn from_secret(sk: &SecretKey) -> Self {
        let bytes = sk.expose_secret();
        let mut s = blst_scalar::default(); // blst_scalar zeroizes itself on drop
        let mut out = blst_fr::default();
        // SAFETY: `bytes` is exactly 32 readable bytes; `s` and `out` are valid and writable.
        unsafe {
            blst_scalar_from_bendian(&mut s, bytes.as_ptr());
            blst_fr_from_scalar(&mut out, &s);
        }
        Self(out)
    }

    /// Reduces an arbitrary-length big-endian integer modulo r (used on 64 random bytes, so the
    /// result is uniform up to a 2^-256 bias).
    pub(crate) fn from_be_bytes_wide(bytes: &[u8]) -> Self {
        let mut s = blst_scalar::default();
        let mut out = blst_fr::default();
        // SAFETY: `bytes.as_ptr()` points to `bytes.len()` readable bytes; `s` and `out` are
        // valid and writable. The boolean result (non-zero) is checked by callers via is_zero.
        unsafe {
            blst_scalar_from_be_bytes(&mut s, bytes.as_ptr(), bytes.len());
            blst_fr_from_scalar(&mut out, &s);
        }
        Self(out)
    }

    /// `self + other mod r`.
    pub(crate) fn add(&self, other: &Scalar) -> Scalar {
        let mut out = blst_fr::default();
        // SAFETY: all three pointers are to valid blst_fr values; blst allows any aliasing.
        unsafe { blst_fr_add(&mut out, &self.0, &other.0) };
        Scalar(out)
    }

    /// `self - other mod r`.
    pub(crate) fn sub(&self, other: &Scalar) -> Scalar {
        let mut out = blst_fr::default();
        // SAFETY: as in `add`.
        unsafe { blst_fr_sub(&mut out, &self.0, &other.0) };
        Scalar(out)
    }

    /// `self * other mod r`.
    pub(crate) fn mul(&self, other: &Scalar) -> Scalar {
        let mut out = blst_fr::default();
        // SAFETY: as in `add`.
        unsafe { blst_fr_mul(&mut out, &self.0, &other.0) };
        Scalar(out)
    }

    /// Constant-time inverse, or `None` for zero. Safe to use on secret values.
    #[allow(dead_code)] // kept for completeness; Lagrange only inverts public values
    pub(crate) fn invert(&self) -> Option<Scalar> {
        if self.is_zero() {
            return None;
        }
        let mut out = blst_fr::default();
        // SAFETY: valid in/out blst_fr pointers.
        unsafe { blst_fr_inverse(&mut out, &self.0) };
        Some(Scalar(out))
    }

    /// Variable-time inverse, or `None` for zero. Only for public values (Lagrange
    /// denominators are functions of the public share indices).
    pub(crate) fn invert_public(&self) -> Option<Scalar> {
        if self.is_zero() {
            return None;
        }
        let mut out = blst_fr::default();
        // SAFETY: valid in/out blst_fr pointers.
        unsafe { blst_fr_eucl_inverse(&mut out, &self.0) };
        Some(Scalar(out))
    }

    /// Whether this is the zero element (Montgomery form of 0 is 0).
    pub(crate) fn is_zero(&self) -> bool {
        self.0.l.iter().all(|l| *l == 0)
    }

    fn to_blst_scalar(&self) -> blst_scalar {
        let mut s = blst_scalar::default();
        // SAFETY: valid in/out pointers.
        unsafe { blst_scalar_from_fr(&mut s, &self.0) };
        s
    }

    /// The canonical 32-byte big-endian encoding (what [`SecretKey::from_bytes`] takes).
    pub(crate) fn to_be_bytes(&self) -> Zeroizing<[u8; 32]> {
        let s = self.to_blst_scalar();
        let mut out = Zeroizing::new([0u8; 32]);
        // SAFETY: `out` has 32 writable bytes; `s` is a valid scalar. It is reduced, as
        // asserted in debug builds.
        unsafe {
            debug_assert!(blst_scalar_fr_check(&s));
            blst_bendian_from_scalar(out.as_mut_ptr(), &s);
        }
        out
    }

    /// The 32-byte little-endian encoding, the form blst's point multiplications take.
    fn to_le_bytes(&self) -> Zeroizing<[u8; 32]> {
        let s = self.to_blst_scalar();
        let mut out = Zeroizing::new([0u8; 32]);
        // SAFETY: `out` has 32 writable bytes; `s` is a valid scalar.
        unsafe { blst_lendian_from_scalar(out.as_mut_ptr(), &s) };
        out
    }
}

/// Evaluates `sum_k x^k * points[k]` in G1 (Horner's rule, one 64-bit multiplication per
/// coefficient). Returns `None` for an empty list or when the sum is the identity (which no
/// valid public key is).
pub(crate) fn g1_poly_eval(points: &[PublicKey], x: u64) -> Option<PublicKey> {
    let (last, rest) = points.split_last()?;
    let x_le = x.to_le_bytes();
    let mut acc = blst_p1::default();
    let last_aff: &blst_p1_affine = last.point().into();
    // SAFETY: every pointer is to a valid, initialised blst value owned by this frame;
    // `x_le` holds the 64 bits announced to blst_p1_mult; blst permits out == in aliasing.
    unsafe {
        blst_p1_from_affine(&mut acc, last_aff);
        for p in rest.iter().rev() {
            let aff: &blst_p1_affine = p.point().into();
            let mut q = blst_p1::default();
            blst_p1_from_affine(&mut q, aff);
            let cur = acc;
            blst_p1_mult(&mut acc, &cur, x_le.as_ptr(), 64);
            let cur = acc;
            blst_p1_add_or_double(&mut acc, &cur, &q);
        }
        if blst_p1_is_inf(&acc) {
            return None;
        }
        let mut out = blst_p1_affine::default();
        blst_p1_to_affine(&mut out, &acc);
        Some(PublicKey::from_point(min_pk::PublicKey::from(out)))
    }
}

/// `sum_i points[i]` in G1. Returns `None` for an empty list or when the sum is the identity
/// (which no valid public key is).
pub(crate) fn g1_sum(points: &[PublicKey]) -> Option<PublicKey> {
    let mut acc = blst_p1::default(); // the identity
                                      // SAFETY: every pointer is to a valid, initialised blst value owned by this frame; blst
                                      // permits out == in aliasing (we copy anyway).
    unsafe {
        for p in points {
            let aff: &blst_p1_affine = p.point().into();
            let mut q = blst_p1::default();
            blst_p1_from_affine(&mut q, aff);
            let cur = acc;
            blst_p1_add_or_double(&mut acc, &cur, &q);
        }
        if points.is_empty() || blst_p1_is_inf(&acc) {
            return None;
        }
        let mut out = blst_p1_affine::default();
        blst_p1_to_affine(&mut out, &acc);
        Some(PublicKey::from_point(min_pk::PublicKey::from(out)))
    }
}

/// `sum_i scalars[i] * points[i]` in G1, one full-width multiplication per point (resharing
/// combines a handful of commitments, so no multi-scalar algorithm is needed). Returns `None`
/// for empty or unequal-length inputs, or when the sum is the identity (which no valid public
/// key is).
pub(crate) fn g1_weighted_sum(points: &[PublicKey], scalars: &[Scalar]) -> Option<PublicKey> {
    if points.is_empty() || points.len() != scalars.len() {
        return None;
    }
    let mut acc = blst_p1::default(); // the identity
    for (p, s) in points.iter().zip(scalars) {
        let le = s.to_le_bytes();
        let aff: &blst_p1_affine = p.point().into();
        let mut q = blst_p1::default();
        // SAFETY: every pointer is to a valid, initialised blst value owned by this frame;
        // `le` holds the 32 bytes (>= 255 bits) announced to blst_p1_mult; outputs are
        // distinct local values (copies are taken before aliasing calls).
        unsafe {
            blst_p1_from_affine(&mut q, aff);
            let base = q;
            blst_p1_mult(&mut q, &base, le.as_ptr(), SCALAR_BITS);
            let cur = acc;
            blst_p1_add_or_double(&mut acc, &cur, &q);
        }
    }
    // SAFETY: valid in/out pointers to local values.
    unsafe {
        if blst_p1_is_inf(&acc) {
            return None;
        }
        let mut out = blst_p1_affine::default();
        blst_p1_to_affine(&mut out, &acc);
        Some(PublicKey::from_point(min_pk::PublicKey::from(out)))
    }
}

/// How the G2 multi-scalar multiplication is computed; see [`g2_msm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))] // the alternatives exist for the timing test
pub(crate) enum MsmStrategy {
    /// One `blst_p2_mult` per point, summed, on the calling thread.
    Serial,
    /// `blst_p2s_mult_pippenger` on the calling thread.
    Pippenger,
    /// The Rust binding's `MultiPoint::mult`, which below 32 points spreads plain
    /// multiplications over blst's own thread pool.
    BindingPool,
}

/// `sum_i scalars[i] * points[i]` in G2 with the default strategy.
///
/// The default is [`MsmStrategy::Pippenger`] on the caller's thread. Measured on the 2-core
/// development machine for 3 points (`msm_strategies_agree_and_timings` in `combine.rs`):
/// Pippenger ~7% less CPU than three serial multiplications; the binding's pool path costs
/// ~10% more total CPU than serial and moves it onto blst's threads, where the caller cannot
/// budget it. The combiner runs many combines concurrently, so CPU, not latency, is what to
/// save.
///
/// # Panics
/// If the slices differ in length (an internal invariant of the callers).
pub(crate) fn g2_msm(points: &[Signature], scalars: &[Scalar]) -> Signature {
    g2_msm_with(points, scalars, MsmStrategy::Pippenger)
}

/// [`g2_msm`] with an explicit strategy (all strategies give the same point).
///
/// # Panics
/// If the slices differ in length.
pub(crate) fn g2_msm_with(
    points: &[Signature],
    scalars: &[Scalar],
    strategy: MsmStrategy,
) -> Signature {
    assert_eq!(
        points.len(),
        scalars.len(),
        "invariant: one scalar per point"
    );
    let affines: Vec<blst_p2_affine> = points
        .iter()
        .map(|s| *<&blst_p2_affine>::from(s.point()))
        .collect();
    let mut flat = Zeroizing::new(Vec::with_capacity(32 * scalars.len()));
    for s in scalars {
        flat.extend_from_slice(s.to_le_bytes().as_ref());
    }
    let acc = match (strategy, affines.is_empty()) {
        (_, true) => blst_p2::default(),
        (MsmStrategy::Serial, false) => msm_serial(&affines, &flat),
        (MsmStrategy::Pippenger, false) => msm_pippenger(&affines, &flat),
        (MsmStrategy::BindingPool, false) => {
            use blst::MultiPoint;
            affines.as_slice().mult(&flat, SCALAR_BITS)
        }
    };
    let mut out = blst_p2_affine::default();
    // SAFETY: valid in/out pointers.
    unsafe { blst_p2_to_affine(&mut out, &acc) };
    Signature::from_point(min_pk::Signature::from(out))
}

fn msm_serial(affines: &[blst_p2_affine], scalars_le: &[u8]) -> blst_p2 {
    let mut acc = blst_p2::default(); // the identity
    for (p, s) in affines.iter().zip(scalars_le.chunks_exact(32)) {
        let mut q = blst_p2::default();
        // SAFETY: `p` is a valid affine point, `s` holds the 32 bytes (>= 255 bits) announced
        // to blst_p2_mult; outputs are distinct local values.
        unsafe {
            blst_p2_from_affine(&mut q, p);
            let base = q;
            blst_p2_mult(&mut q, &base, s.as_ptr(), SCALAR_BITS);
            let cur = acc;
            blst_p2_add_or_double(&mut acc, &cur, &q);
        }
    }
    acc
}

fn msm_pippenger(affines: &[blst_p2_affine], scalars_le: &[u8]) -> blst_p2 {
    let n = affines.len();
    let point_ptrs: [*const blst_p2_affine; 2] = [affines.as_ptr(), std::ptr::null()];
    let scalar_ptrs: [*const u8; 2] = [scalars_le.as_ptr(), std::ptr::null()];
    let mut ret = blst_p2::default();
    // SAFETY: the scratch size comes from blst itself (in bytes, so /8 u64 words, rounded up);
    // `affines` holds `n` contiguous points and `scalars_le` `n` contiguous 32-byte scalars, as
    // the null-terminated one-element pointer arrays announce.
    unsafe {
        let words = blst_p2s_mult_pippenger_scratch_sizeof(n).div_ceil(8);
        let mut scratch = vec![0u64; words.max(1)];
        blst_p2s_mult_pippenger(
            &mut ret,
            point_ptrs.as_ptr(),
            n,
            scalar_ptrs.as_ptr(),
            SCALAR_BITS,
            scratch.as_mut_ptr(),
        );
    }
    ret
}

/// `(sum_i coeffs[i] * points[i]) * scale` in G2, for small signed public coefficients
/// (Lagrange numerators over a common denominator, [`super::lagrange::SmallCoefficients`]):
/// each small multiple by double-and-add from the affine point (variable time, public data
/// only), and the one full-width multiplication by `scale` (the inverse of the denominator)
/// only when it is given. Same point as [`g2_msm`] with the full-width coefficients
/// `coeffs[i] * scale`.
///
/// # Panics
/// If the slices differ in length (an internal invariant of the callers).
pub(crate) fn g2_small_combination(
    points: &[Signature],
    coeffs: &[i64],
    scale: Option<&Scalar>,
) -> Signature {
    assert_eq!(
        points.len(),
        coeffs.len(),
        "invariant: one coefficient per point"
    );
    let mut acc = blst_p2::default(); // the identity
    for (point, c) in points.iter().zip(coeffs) {
        let base: &blst_p2_affine = point.point().into();
        let m = c.unsigned_abs();
        if m == 0 {
            continue;
        }
        let mut q = blst_p2::default();
        // SAFETY: `base` is a valid affine point; every output is a local value (blst allows
        // an output to alias an input).
        unsafe {
            blst_p2_from_affine(&mut q, base);
            for bit in (0..(63 - m.leading_zeros())).rev() {
                let cur = q;
                blst_p2_double(&mut q, &cur);
                if m >> bit & 1 == 1 {
                    let cur = q;
                    blst_p2_add_or_double_affine(&mut q, &cur, base);
                }
            }
            blst_p2_cneg(&mut q, *c < 0);
            let cur = acc;
            blst_p2_add_or_double(&mut acc, &cur, &q);
        }
    }
    if let Some(scale) = scale {
        let le = scale.to_le_bytes();
        let cur = acc;
        // SAFETY: valid points; `le` holds the 32 bytes (>= 255 bits) announced.
        unsafe { blst_p2_mult(&mut acc, &cur, le.as_ptr(), SCALAR_BITS) };
    }
    let mut out = blst_p2_affine::default();
    // SAFETY: valid in/out pointers.
    unsafe { blst_p2_to_affine(&mut out, &acc) };
    Signature::from_point(min_pk::Signature::from(out))
}

/// A message hashed to G2 with Ethereum's ciphersuite (`hash_to_curve`, [`crate::bls::DST`]),
/// kept so that every check of the same message reuses it (hashing costs about a third of a
/// verification).
#[derive(Clone, Copy)]
pub struct HashedMessage(blst_p2_affine);

impl std::fmt::Debug for HashedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashedMessage")
    }
}

/// Hashes `msg` to G2 (Ethereum's DST, no augmentation).
pub fn hash_to_g2(msg: &[u8]) -> HashedMessage {
    let dst = crate::bls::DST;
    let mut p = blst_p2::default();
    let mut out = blst_p2_affine::default();
    // SAFETY: `msg` and `dst` are readable for the lengths given, `aug` is empty (null, 0);
    // `p` and `out` are valid, writable locals.
    unsafe {
        blst_hash_to_g2(
            &mut p,
            msg.as_ptr(),
            msg.len(),
            dst.as_ptr(),
            dst.len(),
            std::ptr::null(),
            0,
        );
        blst_p2_to_affine(&mut out, &p);
    }
    HashedMessage(out)
}

/// `sk * H(m)` for a message already hashed: the signature blst's `SecretKey::sign` makes from
/// the message itself (it hashes, then does exactly this). `secret` is the key's big-endian
/// scalar; the copy blst makes of it wipes itself on drop.
pub fn sign_hashed(secret: &[u8; 32], hashed: &HashedMessage) -> Signature {
    let mut scalar = blst_scalar::default();
    let mut point = blst_p2::default();
    let mut out = blst_p2_affine::default();
    // SAFETY: `secret` holds the 32 bytes read; `scalar`, `point` and `out` are valid, writable
    // locals and `hashed.0` a valid affine point; a null serialisation output is allowed (blst
    // then writes only `out`).
    unsafe {
        blst_scalar_from_bendian(&mut scalar, secret.as_ptr());
        blst_p2_from_affine(&mut point, &hashed.0);
        blst::blst_sign_pk2_in_g1(std::ptr::null_mut(), &mut out, &point, &scalar);
    }
    Signature::from_point(min_pk::Signature::from(out))
}

/// Whether the signature is in the prime-order subgroup G2 (not only on the curve).
pub fn signature_in_g2(sig: &Signature) -> bool {
    let aff: &blst_p2_affine = sig.point().into();
    // SAFETY: `aff` is a valid affine point.
    unsafe { blst_p2_affine_in_g2(aff) }
}

/// Checks `e(pk, H(m)) == e(G1, sig)` on the calling thread only, with the subgroup check of
/// `sig`: the same answer as [`Signature::verify`] for the message `hashed` was made from, for
/// the cost of two Miller loops and one final exponentiation (no hashing, no thread pool).
pub fn verify_hashed(sig: &Signature, pk: &PublicKey, hashed: &HashedMessage) -> bool {
    if !signature_in_g2(sig) {
        return false;
    }
    let sig_aff: &blst_p2_affine = sig.point().into();
    let pk_aff: &blst_p1_affine = pk.point().into();
    let mut lhs = blst_fp12::default();
    let mut rhs = blst_fp12::default();
    // SAFETY: every pointer is to a valid affine point or a writable local fp12; the
    // generator pointer is blst's static constant.
    unsafe {
        blst_miller_loop(&mut lhs, &hashed.0, pk_aff);
        blst_miller_loop(&mut rhs, sig_aff, blst_p1_affine_generator());
        blst_fp12_finalverify(&lhs, &rhs)
    }
}

/// One entry of [`verify_batch`]: a signature, the key it must verify under, and its message
/// hashed to G2.
#[derive(Debug, Clone, Copy)]
pub struct BatchEntry<'a> {
    /// The signature (decoded; its subgroup check is part of the batch check).
    pub signature: &'a Signature,
    /// The public key.
    pub public_key: &'a PublicKey,
    /// The message, hashed.
    pub message: &'a HashedMessage,
}

/// Verifies every entry at once, on the calling thread: with a fresh random non-zero 64-bit
/// scalar `r_i` per entry, checks `prod_i e(r_i pk_i, H(m_i)) == e(G1, sum_i r_i sig_i)` (one
/// Miller loop per distinct message plus one, one final exponentiation for the whole batch;
/// the `r_i pk_i` of entries sharing a message are summed first), after the
/// subgroup check of every signature. True only if (except with probability at most 2^-64 per
/// batch, over the scalars drawn here) every entry verifies on its own; false when any entry
/// fails. Entries sharing a message are accepted too (each keeps its own scalar). An empty
/// batch is false.
pub fn verify_batch(entries: &[BatchEntry<'_>]) -> bool {
    use rand::RngCore;
    if entries.is_empty() {
        return false;
    }
    if entries.len() == 1 {
        let e = entries[0];
        return verify_hashed(e.signature, e.public_key, e.message);
    }
    if !entries.iter().all(|e| signature_in_g2(e.signature)) {
        return false;
    }
    let mut rng = rand::thread_rng();
    let n = entries.len();
    let scalars: Vec<[u8; 8]> = (0..n)
        .map(|_| loop {
            let r = rng.next_u64();
            if r != 0 {
                break r.to_le_bytes();
            }
        })
        .collect();
    // r_i * pk_i in G1 (64-bit multiplications), summed per distinct message: entries that
    // share a message share its Miller loop, since prod_i e(r_i pk_i, H(m)) over them is
    // e(sum_i r_i pk_i, H(m)) (one slot's attesters and sync committee members all sign one
    // root). Then the sums to affine all at once.
    let mut groups: Vec<(blst_p2_affine, blst_p1)> = Vec::new();
    for (e, r) in entries.iter().zip(&scalars) {
        let aff: &blst_p1_affine = e.public_key.point().into();
        let mut p = blst_p1::default();
        let mut q = blst_p1::default();
        // SAFETY: valid affine input, writable locals, `r` holds the 64 bits announced.
        unsafe {
            blst_p1_from_affine(&mut p, aff);
            blst_p1_mult(&mut q, &p, r.as_ptr(), 64);
        }
        match groups.iter_mut().find(|(m, _)| *m == e.message.0) {
            // SAFETY: valid points; blst allows the output to alias an input.
            Some((_, sum)) => {
                let sum: *mut blst_p1 = sum;
                unsafe { blst_p1_add_or_double(sum, sum, &q) }
            }
            None => groups.push((e.message.0, q)),
        }
    }
    // A sum at infinity (probability about 2^-64 over the scalars for distinct keys) would
    // drop its message from the check: refuse the batch, and the caller checks one by one.
    // SAFETY: valid points.
    if groups.iter().any(|(_, sum)| unsafe { blst_p1_is_inf(sum) }) {
        return false;
    }
    let g = groups.len();
    let sums: Vec<blst_p1> = groups.iter().map(|(_, sum)| *sum).collect();
    let mut scaled_aff = vec![blst_p1_affine::default(); g];
    let scaled_ptrs: [*const blst_p1; 2] = [sums.as_ptr(), std::ptr::null()];
    // SAFETY: `sums` holds `g` contiguous points (null-terminated one-element pointer array)
    // and `scaled_aff` has room for `g` outputs.
    unsafe { blst_p1s_to_affine(scaled_aff.as_mut_ptr(), scaled_ptrs.as_ptr(), g) };
    // sum r_i * sig_i in G2 (one multi-scalar multiplication with 64-bit scalars).
    let sigs: Vec<blst_p2_affine> = entries
        .iter()
        .map(|e| *<&blst_p2_affine>::from(e.signature.point()))
        .collect();
    let flat: Vec<u8> = scalars.iter().flatten().copied().collect();
    let mut sum = blst_p2::default();
    let point_ptrs: [*const blst_p2_affine; 2] = [sigs.as_ptr(), std::ptr::null()];
    let scalar_ptrs: [*const u8; 2] = [flat.as_ptr(), std::ptr::null()];
    let msgs: Vec<blst_p2_affine> = groups.iter().map(|(m, _)| *m).collect();
    let mut sum_aff = blst_p2_affine::default();
    let mut lhs = blst_fp12::default();
    let mut rhs = blst_fp12::default();
    // SAFETY: the scratch size comes from blst itself (bytes, rounded up to u64 words); `sigs`
    // and `flat` hold `n` contiguous points and 8-byte scalars as the null-terminated pointer
    // arrays announce; `msgs` and `scaled_aff` hold `n` contiguous affine points each.
    unsafe {
        let words = blst_p2s_mult_pippenger_scratch_sizeof(n).div_ceil(8);
        let mut scratch = vec![0u64; words.max(1)];
        blst_p2s_mult_pippenger(
            &mut sum,
            point_ptrs.as_ptr(),
            n,
            scalar_ptrs.as_ptr(),
            64,
            scratch.as_mut_ptr(),
        );
        blst_p2_to_affine(&mut sum_aff, &sum);
        let qs: [*const blst_p2_affine; 2] = [msgs.as_ptr(), std::ptr::null()];
        let ps: [*const blst_p1_affine; 2] = [scaled_aff.as_ptr(), std::ptr::null()];
        blst_miller_loop_n(&mut lhs, qs.as_ptr(), ps.as_ptr(), g);
        blst_miller_loop(&mut rhs, &sum_aff, blst_p1_affine_generator());
        blst_fp12_finalverify(&lhs, &rhs)
    }
}
