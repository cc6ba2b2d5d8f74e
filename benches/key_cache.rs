//! Start-up time with many scrypt keystores: first start (every keystore decrypted, cache
//! written) versus cached start (`--key-cache`: one KDF run, then every key from the cache), and
//! the first start against the ideal `N x one scrypt decryption / cores`, measured in the same
//! run on the same machine.
//!
//! N = `DVSIGNER_BENCH_KEYSTORES` (default 10,000). The keystores use the EIP-2335 default
//! scrypt parameters (n = 2^18, r = 8, p = 1), so every decryption is a real scrypt run. To
//! generate them quickly they share one salt and password (one scrypt run for the whole set,
//! then AES-128-CTR per key with its own IV); the loader cannot know that and runs scrypt for
//! each one. The set is kept in `target/tmp/key-cache-bench-N/` between runs.
//!
//! What is timed is the signer's own start-up path: `KeyCache::open` (one KDF) plus
//! `keys::sources::load_key_sources` (directory scan, decryption on all cores through rayon, cache
//! lookups, cache file rewrite).
//!
//! The benchmark uses the binary's allocator ([`dvsigner::alloc::Allocator`]), which gives
//! scrypt's 256 MiB table transparent huge pages; `DVSIGNER_BENCH_SMALL_PAGES=1` turns that
//! off, to compare.
//!
//! Run: `cargo bench --bench key_cache` (`--profile dev` reuses the test build; dependencies,
//! scrypt included, are optimised in both).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aes::cipher::{KeyIvInit, StreamCipher};
use dvsigner::keys::cache::{KeyCache, FILE_NAME};
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::sources::KeystoresDir;
use dvsigner::keys::sources::{self, KeySources};
use dvsigner::keys::{KdfParams, Keystore, Password};
use rand::RngCore;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

#[global_allocator]
static ALLOC: dvsigner::alloc::Allocator = dvsigner::alloc::Allocator;

const PASSWORD: &str = "bench keystore password";
const CACHE_PASSWORD: &str = "bench cache password";

fn main() {
    let n: usize = std::env::var("DVSIGNER_BENCH_KEYSTORES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("key-cache-bench-{n}"));
    let (ks, pw) = (root.join("keystores"), root.join("passwords"));
    let started = Instant::now();
    if generate(&root, &ks, &pw, n) {
        println!(
            "generated {n} scrypt keystores in {:.1} s (kept in {})",
            started.elapsed().as_secs_f64(),
            root.display()
        );
    } else {
        println!("reusing {n} scrypt keystores in {}", root.display());
    }
    let cores = rayon::current_num_threads();
    let huge_pages = std::env::var_os("DVSIGNER_BENCH_SMALL_PAGES").is_none();
    dvsigner::alloc::set_huge_pages(huge_pages);

    // One scrypt decryption, single-threaded (median of 3).
    let text = std::fs::read_to_string(ks.join("k000000.json")).expect("keystore");
    let keystore = Keystore::from_json(&text).expect("parse");
    assert_eq!(keystore.kdf(), KdfParams::scrypt_default());
    let password = Password::new(PASSWORD.into());
    let mut runs: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            keystore.decrypt(&password).expect("decrypt");
            t.elapsed()
        })
        .collect();
    runs.sort();
    let one = runs[1];
    let ideal = one.mul_f64(n as f64 / cores as f64);

    let data = root.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let cache_file = data.join(FILE_NAME);
    let _ = std::fs::remove_file(&cache_file);
    let sources = KeySources::new().with(KeystoresDir {
        keystores: ks.clone(),
        passwords: pw.clone(),
    });
    let first = start(&sources, &cache_file, n, (0, n));
    let cached = start(&sources, &cache_file, n, (n, 0));

    println!(
        "keystores              {n} (scrypt n=2^18 r=8 p=1), {cores} cores, {} pages for the scrypt table",
        if huge_pages { "huge (2 MiB)" } else { "small (4 KiB)" }
    );
    println!("one scrypt decryption  {:.3} s", one.as_secs_f64());
    println!(
        "ideal first start      {:.1} s  (N x one scrypt / cores)",
        ideal.as_secs_f64()
    );
    println!(
        "first start            {:.1} s  = {:.3} x ideal (target <= 1.1)",
        first.as_secs_f64(),
        first.as_secs_f64() / ideal.as_secs_f64()
    );
    println!(
        "cached start           {:.2} s  (target < 30 s)",
        cached.as_secs_f64()
    );
    println!(
        "first / cached         {:.1} x",
        first.as_secs_f64() / cached.as_secs_f64()
    );
}

/// One simulated start: open the cache (one KDF run) and load every keystore through it.
/// Checks the expected (hits, misses).
fn start(sources: &KeySources, cache_file: &Path, n: usize, expect: (usize, usize)) -> Duration {
    let t = Instant::now();
    let cache = KeyCache::open(
        cache_file,
        &Password::new(CACHE_PASSWORD.into()),
        KdfParams::scrypt_default(),
    )
    .expect("open cache");
    let load = sources::load_key_sources(sources, Some(&cache)).expect("load");
    let elapsed = t.elapsed();
    let stats = load.cache.expect("cache on").expect("cache written");
    let loaded: usize = load.reports.iter().map(|(_, r)| r.keys.len()).sum();
    let errors: usize = load.reports.iter().map(|(_, r)| r.errors.len()).sum();
    assert_eq!((loaded, errors), (n, 0), "every keystore loads");
    assert_eq!((stats.hits, stats.misses), expect, "cache hits and misses");
    elapsed
}

/// Writes `n` keystores with the default scrypt parameters unless a complete set is there.
/// Returns whether it generated them.
fn generate(root: &Path, ks: &Path, pw: &Path, n: usize) -> bool {
    let marker = root.join("complete");
    if marker.exists() {
        return false;
    }
    for d in [ks, pw] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let mut salt = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let KdfParams::Scrypt { n: cost, r, p } = KdfParams::scrypt_default() else {
        unreachable!("the default is scrypt")
    };
    let params = scrypt::Params::new(cost.trailing_zeros() as u8, r, p, 32).expect("params");
    let mut dk = [0u8; 32];
    scrypt::scrypt(PASSWORD.as_bytes(), &salt, &params, &mut dk).expect("scrypt");
    (0..n).into_par_iter().for_each(|i| {
        let sk = interop_secret_key(i as u64);
        let mut iv = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let mut ct = *sk.expose_secret();
        ctr::Ctr128BE::<aes::Aes128>::new((&dk[..16]).into(), (&iv).into())
            .apply_keystream(&mut ct);
        let checksum = Sha256::new()
            .chain_update(&dk[16..])
            .chain_update(ct)
            .finalize();
        let doc = serde_json::json!({
            "crypto": {
                "kdf": {"function": "scrypt", "params": {"dklen": 32, "n": cost, "r": r, "p": p, "salt": hex::encode(salt)}, "message": ""},
                "checksum": {"function": "sha256", "params": {}, "message": hex::encode(checksum)},
                "cipher": {"function": "aes-128-ctr", "params": {"iv": hex::encode(iv)}, "message": hex::encode(ct)},
            },
            "description": "benchmark key (interop, public)",
            "pubkey": hex::encode(sk.public_key().bytes().0),
            "path": "",
            "uuid": uuid::Uuid::new_v4().to_string(),
            "version": 4,
        });
        std::fs::write(ks.join(format!("k{i:06}.json")), doc.to_string()).expect("write");
        std::fs::write(pw.join(format!("k{i:06}.txt")), PASSWORD).expect("write");
    });
    std::fs::write(marker, n.to_string()).expect("marker");
    true
}
