//! Deterministic "interop" validator keys, as used by Ethereum client test networks.
//!
//! Spec: the eth2.0-pm interop "mocked start" key generation
//! (<https://github.com/ethereum/eth2.0-pm/tree/master/interop/mocked_start>):
//! `sk = int.from_bytes(sha256(index.to_bytes(32, "little")), "little") % r`, where r is the
//! BLS12-381 scalar field order, then encoded big-endian as usual.
//!
//! These keys are PUBLIC: anyone can compute them. They exist for tests and dev clusters only and
//! must never hold real funds.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::keys::secret::SecretKey;

/// The BLS12-381 scalar field order r, as little-endian 64-bit limbs.
const R: [u64; 4] = [
    0xffff_ffff_0000_0001,
    0x53bd_a402_fffe_5bfe,
    0x3339_d808_09a1_d805,
    0x73ed_a753_299d_7d48,
];

/// The interop secret key of validator `index`. PUBLIC key material: dev and tests only.
pub fn interop_secret_key(index: u64) -> SecretKey {
    let mut preimage = [0u8; 32];
    preimage[..8].copy_from_slice(&index.to_le_bytes());
    let digest = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(preimage)));

    let mut limbs = Zeroizing::new([0u64; 4]);
    for (i, limb) in limbs.iter_mut().enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[8 * i..8 * i + 8]);
        *limb = u64::from_le_bytes(word);
    }
    // 2^256 < 3r, so at most two subtractions reduce the value below r.
    while !less_than(&limbs, &R) {
        subtract_in_place(&mut limbs, &R);
    }
    let mut be = Zeroizing::new([0u8; 32]);
    for (i, limb) in limbs.iter().enumerate() {
        be[(3 - i) * 8..(4 - i) * 8].copy_from_slice(&limb.to_be_bytes());
    }
    // invariant: the value is below r, and it is zero only if SHA-256 output is a multiple of r,
    // which no one can find.
    SecretKey::from_bytes(&be).expect("interop scalar is in range and non-zero")
}

fn less_than(a: &[u64; 4], b: &[u64; 4]) -> bool {
    for i in (0..4).rev() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
    }
    false
}

fn subtract_in_place(a: &mut [u64; 4], b: &[u64; 4]) {
    let mut borrow = false;
    for i in 0..4 {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        a[i] = d;
        borrow = b1 || b2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bls::PublicKeyBytes;

    // Public facts: the first interop keypairs, as listed by client test suites (e.g. Nethermind's
    // mocked-start QuickStartTests, Teku's ValidatorLoaderTest).
    const KNOWN: [(&str, &str); 5] = [
        (
            "25295f0d1d592a90b333e26e85149708208e9f8e8bc18f6c77bd62f8ad7a6866",
            "a99a76ed7796f7be22d5b7e85deeb7c5677e88e511e0b337618f8c4eb61349b4bf2d153f649f7b53359fe8b94a38e44c",
        ),
        (
            "51d0b65185db6989ab0b560d6deed19c7ead0e24b9b6372cbecb1f26bdfad000",
            "b89bebc699769726a318c8e9971bd3171297c61aea4a6578a7a4f94b547dcba5bac16a89108b6b6a1fe3695d1a874a0b",
        ),
        (
            "315ed405fafe339603932eebe8dbfd650ce5dafa561f6928664c75db85f97857",
            "a3a32b0f8b4ddb83f1a0a853d81dd725dfe577d4f4c3db8ece52ce2b026eca84815c1a7e8e92a4de3d755733bf7e4a9b",
        ),
        (
            "25b1166a43c109cb330af8945d364722757c65ed2bfed5444b5a2f057f82d391",
            "88c141df77cd9d8d7a71a75c826c41a9c9f03c6ee1b180f3e7852f6a280099ded351b58d66e653af8e42816a4d8f532e",
        ),
        (
            "3f5615898238c4c4f906b507ee917e9ea1bb69b93f1dbd11a34d229c3b06784b",
            "81283b7a20e1ca460ebd9bbd77005d557370cabb1f9a44f530c4c4c66230f675f8df8b4c2818851aa7d77a80ca5a4a5e",
        ),
    ];

    #[test]
    fn matches_published_interop_keys() {
        for (index, (sk_hex, pk_hex)) in KNOWN.iter().enumerate() {
            let sk = interop_secret_key(index as u64);
            assert_eq!(
                hex::encode(sk.expose_secret().as_ref()),
                *sk_hex,
                "index {index}"
            );
            let pk = PublicKeyBytes::parse(pk_hex).expect("hex");
            assert_eq!(sk.public_key().bytes(), pk, "index {index}");
        }
    }

    #[test]
    fn short_scalar_is_left_padded() {
        // Public fact (Nethermind GeneratePrivateKey63): key 63 is below 2^248, so its big-endian
        // encoding starts with a zero byte: 0x006edac0...a5dad4bd.
        let sk = interop_secret_key(63);
        let bytes = sk.expose_secret();
        assert_eq!((bytes[0], bytes[1], bytes[31]), (0x00, 0x6e, 0xbd));
    }

    #[test]
    fn reduction_subtracts_r() {
        let mut v = [R[0], R[1], R[2], R[3]];
        assert!(!less_than(&v, &R));
        subtract_in_place(&mut v, &R);
        assert_eq!(v, [0; 4]);
    }
}
