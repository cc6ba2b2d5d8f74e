//! Lagrange combination of partial signatures: `sigma = sum_{i in S} lambda_i sigma_i`.
//!
//! Invariants: the caller chooses which partials to trust (the combiner verifies them or the
//! result); this function only does the arithmetic, and it fails loudly rather than produce a
//! wrong signature from too few or repeated shares.
//!
//! Cost: share indices are small (1..=n), so the Lagrange coefficients are small integers over
//! one small common denominator ([`super::lagrange::small_coefficients_at_zero`]): each partial
//! costs a few point doublings and additions, and only a denominator other than 1 (for 3-of-4,
//! the set {1, 2, 4}) costs one full-width multiplication by its inverse. The textbook path
//! (full-width coefficients, one multi-scalar multiplication) remains for large indices and is
//! the benchmarks' raw baseline ([`combine_full_width`]). For it, blst's Pippenger on the
//! caller's thread: for 3 points ~7% less CPU than three serial `blst_p2_mult`s, and the Rust
//! binding's `MultiPoint::mult` (below 32 points it spreads plain multiplications over blst's
//! thread pool) ~10% more CPU than serial, on threads the caller cannot budget. The
//! `msm_strategies_agree_and_timings` test checks all paths agree and prints the figures.

use super::curve::{self, Scalar};
use super::lagrange::{coefficients_at_zero, small_coefficients_at_zero};
use super::{Error, ShareIndex};
use crate::bls::Signature;

/// Combines partial signatures `(index, sigma_i)` into the group signature.
///
/// Uses the first `threshold` partials (the polynomial has degree `threshold - 1`, so any
/// `threshold` valid partials give the same result); every given partial is checked for a
/// duplicate index. The result is not verified here.
///
/// # Errors
/// [`Error::NotEnoughShares`] when fewer than `threshold` partials (or `threshold` == 0) are
/// given; [`Error::DuplicateShareIndex`] when an index repeats.
pub fn combine(partials: &[(ShareIndex, Signature)], threshold: usize) -> Result<Signature, Error> {
    if threshold == 0 || partials.len() < threshold {
        return Err(Error::NotEnoughShares {
            current: partials.len(),
            required: threshold.max(1),
        });
    }
    let mut all: Vec<ShareIndex> = partials.iter().map(|(i, _)| *i).collect();
    all.sort_unstable();
    if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::DuplicateShareIndex(w[0]));
    }
    let chosen = &partials[..threshold];
    let indices: Vec<ShareIndex> = chosen.iter().map(|(i, _)| *i).collect();
    let points: Vec<Signature> = chosen.iter().map(|(_, s)| s.clone()).collect();
    if let Some(small) = small_coefficients_at_zero(&indices) {
        let scale = match small.denominator {
            1 => None,
            d => Some(
                Scalar::from_u64(d)
                    .invert_public()
                    .ok_or(Error::DuplicateShareIndex(indices[0]))?,
            ),
        };
        return Ok(curve::g2_small_combination(
            &points,
            &small.numerators,
            scale.as_ref(),
        ));
    }
    combine_full_width(&indices, &points)
}

/// The textbook combination: the full-width Lagrange coefficients and one multi-scalar
/// multiplication (blst's Pippenger). [`combine`] takes it only when the indices are too large
/// for small coefficients; the benchmarks use it as the raw baseline.
///
/// # Errors
/// [`Error::DuplicateShareIndex`] when an index repeats.
///
/// # Panics
/// If the slices differ in length.
pub fn combine_full_width(
    indices: &[ShareIndex],
    points: &[Signature],
) -> Result<Signature, Error> {
    let lambdas = coefficients_at_zero(indices)?;
    Ok(curve::g2_msm(points, &lambdas))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::curve::{g2_msm_with, MsmStrategy};
    use super::super::split;
    use super::*;
    use crate::bls::SigningRoot;
    use crate::keys::secret::SecretKey;

    fn partials(t: u32, n: u32) -> (SecretKey, Vec<(ShareIndex, Signature)>, SigningRoot) {
        let sk = SecretKey::random();
        let (shares, _) = split(&sk, t, n).expect("split");
        let root = SigningRoot([0x42; 32]);
        let p = shares
            .iter()
            .map(|s| (s.index, s.secret.sign(&root)))
            .collect();
        (sk, p, root)
    }

    #[test]
    fn msm_strategies_agree_and_timings() {
        let (sk, p, root) = partials(3, 4);
        let expected = sk.sign(&root);
        let idx: Vec<ShareIndex> = p[..3].iter().map(|(i, _)| *i).collect();
        let sigs: Vec<Signature> = p[..3].iter().map(|(_, s)| s.clone()).collect();
        let lambdas = coefficients_at_zero(&idx).expect("distinct");
        let rounds = 500u32;
        for strategy in [
            MsmStrategy::Serial,
            MsmStrategy::Pippenger,
            MsmStrategy::BindingPool,
        ] {
            assert_eq!(
                g2_msm_with(&sigs, &lambdas, strategy),
                expected,
                "{strategy:?}"
            );
            let cpu0 = process_cpu_ms();
            let thread0 = thread_cpu_ns();
            let t0 = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(g2_msm_with(&sigs, &lambdas, strategy));
            }
            let wall = t0.elapsed() / rounds;
            let cpu = (process_cpu_ms() - cpu0) * 1000.0 / f64::from(rounds);
            let thread = (thread_cpu_ns() - thread0) / 1000.0 / f64::from(rounds);
            println!(
                "3-point G2 MSM {strategy:?}: wall {wall:?}, calling-thread cpu {thread:.0} us, \
                 process cpu ~{cpu:.0} us"
            );
        }
        let t0 = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(combine(&p, 3).expect("combine"));
        }
        let combine_t = t0.elapsed() / rounds;
        let t0 = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(combine_full_width(&idx, &sigs).expect("combine"));
        }
        let full_t = t0.elapsed() / rounds;
        let p124: Vec<(ShareIndex, Signature)> = [0, 1, 3].iter().map(|k| p[*k].clone()).collect();
        let t0 = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(combine(&p124, 3).expect("combine"));
        }
        let denominator_t = t0.elapsed() / rounds;
        println!(
            "combine 3-of-4 with small coefficients: {{1,2,3}} {combine_t:?}, {{1,2,4}} (one \
             full multiplication by 1/3) {denominator_t:?}; full-width {full_t:?}"
        );
        let t0 = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(sk.sign(&root));
        }
        let sign_t = t0.elapsed() / rounds;
        println!("one blst sign: {sign_t:?}");
    }

    /// utime + stime of this process in milliseconds (Linux `/proc/self/stat`, 100 Hz ticks);
    /// 0 elsewhere. Coarse, only for the printed figures.
    fn process_cpu_ms() -> f64 {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return 0.0;
        };
        let Some(after) = stat.rsplit(')').next() else {
            return 0.0;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        ticks * 10.0
    }

    /// CPU time of the calling thread in nanoseconds (Linux `/proc/thread-self/schedstat`).
    fn thread_cpu_ns() -> f64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    }

    #[test]
    fn zero_threshold_is_an_error() {
        assert_eq!(
            combine(&[], 0).err(),
            Some(Error::NotEnoughShares {
                current: 0,
                required: 1
            })
        );
    }

    #[test]
    fn extra_partials_beyond_threshold_are_ignored_but_checked_for_duplicates() {
        let (sk, p, root) = partials(2, 4);
        assert_eq!(combine(&p, 2).expect("combine"), sk.sign(&root));
        let mut dup = p.clone();
        dup[3].0 = dup[0].0;
        assert_eq!(
            combine(&dup, 2).err(),
            Some(Error::DuplicateShareIndex(dup[0].0))
        );
    }

    /// Every t-subset of every share set up to 5-of-7, in every order the combiner may hold
    /// them, combines to the group signature, with or without a common denominator.
    #[test]
    fn every_subset_combines_to_the_group_signature() {
        for (t, n) in [(2u32, 3u32), (3, 4), (4, 7), (5, 7)] {
            let (sk, p, root) = partials(t, n);
            let expected = sk.sign(&root);
            for mask in 0u32..(1 << n) {
                if mask.count_ones() != t {
                    continue;
                }
                let mut chosen: Vec<(ShareIndex, Signature)> = p
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| mask & (1 << k) != 0)
                    .map(|(_, e)| e.clone())
                    .collect();
                if mask % 2 == 1 {
                    chosen.reverse();
                }
                assert_eq!(
                    combine(&chosen, t as usize).expect("combine"),
                    expected,
                    "{t}-of-{n} mask {mask:b}"
                );
            }
        }
    }

    /// Large indices (beyond small integers) take the full-width path and still combine; a
    /// wrong partial gives a different signature either way.
    #[test]
    fn large_indices_use_the_full_width_path() {
        use crate::threshold::curve::Scalar;
        let sk = SecretKey::random();
        let root = SigningRoot([7; 32]);
        // A degree-1 polynomial f(x) = sk + a x, evaluated at huge indices.
        let a = Scalar::from_u64(0xdead_beef);
        let at = |x: u64| {
            let v = Scalar::from_secret(&sk).add(&a.mul(&Scalar::from_u64(x)));
            SecretKey::from_bytes(&v.to_be_bytes()).expect("non-zero share")
        };
        let xs = [1u64 << 62, (1 << 62) + 3];
        let ids: Vec<ShareIndex> = xs
            .iter()
            .map(|x| ShareIndex::new(*x).expect("non-zero"))
            .collect();
        assert_eq!(
            super::super::lagrange::small_coefficients_at_zero(&ids),
            None
        );
        let p: Vec<(ShareIndex, Signature)> = ids
            .iter()
            .zip(xs)
            .map(|(i, x)| (*i, at(x).sign(&root)))
            .collect();
        assert_eq!(combine(&p, 2).expect("combine"), sk.sign(&root));
        let mut wrong = p.clone();
        wrong[1].1 = wrong[0].1.clone();
        assert_ne!(combine(&wrong, 2).expect("combine"), sk.sign(&root));
        let small = partials(2, 3).1;
        let mut wrong_small = small[..2].to_vec();
        wrong_small[1].1 = wrong_small[0].1.clone();
        assert_ne!(
            combine(&wrong_small, 2).expect("combine"),
            combine(&small, 2).expect("combine")
        );
    }
}
