//! Signing roots recently hashed to G2, shared by every key of the process.
//!
//! A BLS signature is `sk * H(root)`: hashing the root to the curve (`hash_to_G2`, about 190-205
//! us here) costs as much as the multiplication by the key (about 190-220 us). Many validators
//! sign the SAME root: since Electra every attester of a slot signs the same attestation data
//! (committee index 0) when their beacon node gives them the same head, every sync committee
//! member signs the same block root, every aggregation and sync selection proof of a slot signs
//! the same slot, every RANDAO reveal of an epoch the same epoch, and each share holder of a
//! threshold cluster signs its partials of them. So a signer hashes each root once and reuses
//! the point for every other key that signs it while it is recent; the combiner does the same
//! for the roots it verifies combined signatures over.
//!
//! Only public data is kept (the root and its curve point, derived from it by a public
//! function): no secret, nothing to zeroize. Two generations of [`KEPT`] roots: a root is found
//! while it is among the last `KEPT` to `2 * KEPT` distinct roots hashed; memory at most
//! `2 * KEPT` points of 192 bytes (about 100 KiB). The lock is held for a map lookup or insert,
//! never while hashing (two threads that miss the same root both hash it; both get the same
//! point). Counted in `dvsigner_signing_root_hashes_total{result="hashed|reused"}`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::threshold::{hash_to_g2, HashedMessage};

/// Distinct roots per generation.
pub const KEPT: usize = 256;

#[derive(Default)]
struct Generations {
    current: HashMap<[u8; 32], HashedMessage>,
    previous: HashMap<[u8; 32], HashedMessage>,
}

fn cache() -> &'static Mutex<Generations> {
    static CACHE: OnceLock<Mutex<Generations>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// `root` hashed to G2 (Ethereum's DST, no augmentation), from the cache when it holds it.
pub(crate) fn hashed(root: &[u8; 32]) -> HashedMessage {
    if let Ok(mut g) = cache().lock() {
        if let Some(p) = g.current.get(root).copied() {
            drop(g);
            crate::metrics::global().record_root_hash("reused");
            return p;
        }
        if let Some(p) = g.previous.remove(root) {
            insert(&mut g, *root, p);
            drop(g);
            crate::metrics::global().record_root_hash("reused");
            return p;
        }
    }
    let p = hash_to_g2(root);
    if let Ok(mut g) = cache().lock() {
        insert(&mut g, *root, p);
    }
    crate::metrics::global().record_root_hash("hashed");
    p
}

fn insert(g: &mut Generations, root: [u8; 32], p: HashedMessage) {
    if g.current.len() >= KEPT && !g.current.contains_key(&root) {
        g.previous = std::mem::take(&mut g.current);
    }
    g.current.insert(root, p);
}

#[cfg(test)]
pub(crate) fn cached(root: &[u8; 32]) -> bool {
    cache()
        .lock()
        .is_ok_and(|g| g.current.contains_key(root) || g.previous.contains_key(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bls::SigningRoot;
    use crate::keys::secret::SecretKey;

    /// A signature over a reused hash point is the signature blst makes from the root itself,
    /// for the first key that signs a root and every later one; roots stay found for at least
    /// `KEPT` newer distinct roots and are forgotten after `2 * KEPT`.
    #[test]
    fn reused_points_sign_exactly_like_hashing_each_time() {
        let keys: Vec<SecretKey> = (0..4).map(|_| SecretKey::random()).collect();
        let mut roots: Vec<[u8; 32]> = (0..3).map(|_| rand::random()).collect();
        roots.push([0u8; 32]);
        for root in &roots {
            for k in &keys {
                let got = k.sign(&SigningRoot(*root));
                assert_eq!(got, k.sign_message(root), "root {}", hex::encode(root));
                assert!(got.verify(k.public_key(), root));
            }
            assert!(cached(root));
        }
        // Other tests sign concurrently (they only add roots): count this test's own.
        let first: [u8; 32] = rand::random();
        let _ = hashed(&first);
        for _ in 0..KEPT - 1 {
            let _ = hashed(&rand::random());
        }
        assert!(cached(&first), "still within the newest KEPT roots");
        for _ in 0..2 * KEPT {
            let _ = hashed(&rand::random());
        }
        assert!(!cached(&first), "forgotten after 2 * KEPT newer roots");
        let size = cache().lock().map(|g| g.current.len() + g.previous.len());
        assert!(size.is_ok_and(|s| s <= 2 * KEPT));
    }
}
