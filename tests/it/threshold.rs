//! Property tests of the threshold scheme against the whole-key signature (BLS is
//! deterministic, so "combines correctly" means byte-equal to `sk.sign(root)`).

use dvsigner::bls::{Signature, SigningRoot};
use dvsigner::keys::SecretKey;
use dvsigner::threshold::{combine, split, Commitments, Error, ShareIndex};
use proptest::prelude::*;

/// A valid secret key from arbitrary bytes: clearing the top bit keeps it below r's order of
/// magnitude; the rare invalid value (0 or >= r) is skipped by `prop_assume`.
fn key_from(bytes: [u8; 32]) -> Option<SecretKey> {
    let mut b = bytes;
    b[0] &= 0x3f;
    SecretKey::from_bytes(&b).ok()
}

fn t_n() -> impl Strategy<Value = (u32, u32)> {
    (2u32..=7).prop_flat_map(|n| (2u32..=n, Just(n)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Every t-subset of the n partial signatures (in index order and reversed) combines to
    /// exactly the whole key's signature, which verifies under the group public key.
    #[test]
    fn every_t_subset_combines_to_the_whole_key_signature(
        key in any::<[u8; 32]>(),
        root in any::<[u8; 32]>(),
        (t, n) in t_n(),
    ) {
        let sk = key_from(key);
        prop_assume!(sk.is_some());
        let sk = sk.expect("assumed");
        let root = SigningRoot(root);
        let (shares, commitments) = split(&sk, t, n).expect("valid t, n");
        prop_assert_eq!(shares.len(), n as usize);
        prop_assert_eq!(commitments.group_public_key(), sk.public_key());
        prop_assert_eq!(commitments.threshold(), t);
        let expected = sk.sign(&root);
        let partials: Vec<(ShareIndex, Signature)> =
            shares.iter().map(|s| (s.index, s.secret.sign(&root))).collect();
        let mut subsets = 0;
        for mask in 0u32..(1 << n) {
            if mask.count_ones() != t {
                continue;
            }
            let mut subset: Vec<(ShareIndex, Signature)> = (0..n as usize)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| partials[i].clone())
                .collect();
            let sig = combine(&subset, t as usize).expect("t distinct partials");
            prop_assert_eq!(sig.to_bytes(), expected.to_bytes(), "subset mask {:b}", mask);
            subset.reverse();
            let sig = combine(&subset, t as usize).expect("t distinct partials");
            prop_assert_eq!(sig.to_bytes(), expected.to_bytes(), "reversed mask {:b}", mask);
            subsets += 1;
        }
        prop_assert!(subsets >= 1);
        prop_assert!(expected.verify(sk.public_key(), &root.0));
    }

    /// Fewer than t partials and a repeated index are errors, never a wrong signature.
    #[test]
    fn too_few_or_duplicate_partials_are_refused(
        root in any::<[u8; 32]>(),
        (t, n) in t_n(),
    ) {
        let sk = SecretKey::random();
        let root = SigningRoot(root);
        let (shares, _) = split(&sk, t, n).expect("valid t, n");
        let partials: Vec<(ShareIndex, Signature)> =
            shares.iter().map(|s| (s.index, s.secret.sign(&root))).collect();
        let few = &partials[..t as usize - 1];
        prop_assert_eq!(
            combine(few, t as usize).err(),
            Some(Error::NotEnoughShares { current: t as usize - 1, required: t as usize })
        );
        let mut dup: Vec<(ShareIndex, Signature)> = partials[..t as usize - 1].to_vec();
        dup.push(partials[0].clone());
        prop_assert_eq!(combine(&dup, t as usize).err(), Some(Error::DuplicateShareIndex(partials[0].0)));
    }

    /// Every share's public key matches the Feldman commitments (also after a JSON round trip);
    /// a share key from another index or another split does not.
    #[test]
    fn shares_verify_against_commitments_and_tampered_ones_do_not((t, n) in t_n()) {
        let sk = SecretKey::random();
        let (shares, commitments) = split(&sk, t, n).expect("valid t, n");
        let json = serde_json::to_string(&commitments).expect("serialize");
        let reparsed: Commitments = serde_json::from_str(&json).expect("parse");
        let (other_shares, _) = split(&sk, t, n).expect("valid t, n");
        for (k, s) in shares.iter().enumerate() {
            prop_assert!(commitments.verify_share(s.index, s.public_key()));
            prop_assert!(reparsed.verify_share(s.index, s.public_key()));
            prop_assert_eq!(commitments.share_public_key(s.index).expect("pk"), s.public_key().clone());
            let neighbour = &shares[(k + 1) % shares.len()];
            prop_assert!(!commitments.verify_share(s.index, neighbour.public_key()));
            // Same secret, fresh polynomial: share i differs, so it must not verify.
            prop_assert!(!commitments.verify_share(s.index, other_shares[k].public_key()));
        }
    }
}

/// Combining valid partials of one key with a partial from another key does not give the
/// group signature, so the combiner's final verification catches a lying node.
#[test]
fn foreign_partial_breaks_the_combination() {
    let sk = SecretKey::random();
    let root = SigningRoot([7; 32]);
    let (shares, _) = split(&sk, 3, 4).expect("3-of-4");
    let (foreign, _) = split(&SecretKey::random(), 3, 4).expect("3-of-4");
    let partials = vec![
        (shares[0].index, shares[0].secret.sign(&root)),
        (shares[1].index, shares[1].secret.sign(&root)),
        (shares[2].index, foreign[2].secret.sign(&root)),
    ];
    let sig = combine(&partials, 3).expect("combine");
    assert_ne!(sig.to_bytes(), sk.sign(&root).to_bytes());
    assert!(!sig.verify(sk.public_key(), &root.0));
}
