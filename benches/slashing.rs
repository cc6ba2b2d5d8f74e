//! Group-commit benchmark: N distinct validators (default 10,000; `DVSIGNER_BENCH_VALIDATORS`)
//! each submit one attestation at the same moment. Compares, per backend:
//! - sign only: N BLS signatures (blst, on the blocking pool), the baseline;
//! - record only: N concurrent `check_and_record` calls (coalesced by group commit);
//! - sign + record: check-and-record then sign, as the signer does per request;
//! - sequential: records one at a time (one transaction and one fsync each), for contrast.
//!
//! Sign-only and sign + record rounds alternate ([`ROUNDS`] each, medians compared), so both
//! sides of the ratio run under the same load with the same signing parallelism.
//!
//! PostgreSQL: `DVSIGNER_TEST_PG_URL` if set, else a private server (tests/common/pg.rs).
//! Run: `cargo bench --bench slashing` (or `--profile test` for a quick, less optimized build).

#[allow(unreachable_pub)]
#[path = "../tests/common/pg.rs"]
mod pg;
#[allow(unreachable_pub)]
#[path = "../tests/common/port.rs"]
mod port;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dvsigner::bls::{PublicKeyBytes, SigningRoot};
use dvsigner::keys::secret::SecretKey;
use dvsigner::slashing::{SlashableMessage, SlashingDb, Verdict};

const GVR: [u8; 32] = [1; 32];

fn main() {
    let n: usize = std::env::var("DVSIGNER_BENCH_VALIDATORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(n));
}

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{:>9.0}/s ({:>7.1} ms)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64() * 1e3
    )
}

/// Rounds of each timed measurement per backend; the medians are compared.
const ROUNDS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

async fn run(n: usize) {
    let keys: Vec<Arc<SecretKey>> = (0..n).map(|_| Arc::new(SecretKey::random())).collect();
    let pubkeys: Vec<PublicKeyBytes> = keys.iter().map(|k| k.public_key().bytes()).collect();
    println!(
        "validators: {n}, cores: {}, rounds: {ROUNDS} (medians)",
        num_cpus::get()
    );
    // Untimed: starts the blocking pool's threads, so no measured round pays for that.
    sign_round(&keys, 0).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_url = format!("sqlite:{}", dir.path().join("bench.db").display());
    let pg_url = pg::fresh_db();
    for (name, url) in [("sqlite", sqlite_url), ("postgres", pg_url)] {
        let db = SlashingDb::open(&url).await.expect("open");
        db.ensure_genesis_validators_root(GVR).await.expect("gvr");
        db.register_validators(&pubkeys).await.expect("register");
        // Epoch 1 sets every validator's watermark (untimed warm-up of the same path).
        record_round(&db, &pubkeys, 1).await;
        let mut epoch = 2;
        let mut record = Vec::new();
        let mut sign_only = Vec::new();
        let mut both = Vec::new();
        // Interleaved, so both sides of the ratio see the same machine load; signing runs on
        // the same blocking pool (all cores) with and without protection.
        for _ in 0..ROUNDS {
            record.push(record_round(&db, &pubkeys, epoch).await);
            sign_only.push(sign_round(&keys, epoch).await);
            both.push(sign_and_record_round(&db, &keys, &pubkeys, epoch + 1).await);
            epoch += 2;
        }
        let seq_n = n.min(300);
        let start = Instant::now();
        for (i, pk) in pubkeys.iter().take(seq_n).enumerate() {
            let v = db
                .check_and_record(*pk, GVR, att(epoch), SigningRoot([i as u8; 32]))
                .await
                .expect("record");
            assert_eq!(v, Verdict::Allowed);
        }
        let seq = start.elapsed();
        let show = |v: &[Duration]| {
            v.iter()
                .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
                .collect::<Vec<_>>()
                .join("/")
        };
        let (record, sign_only_m, both_m) = (
            median(record.clone()),
            median(sign_only.clone()),
            median(both.clone()),
        );
        println!(
            "{name:<8} sign only      : {}  rounds ms {}",
            rate(n, sign_only_m),
            show(&sign_only)
        );
        println!("{name:<8} record only    : {}", rate(n, record));
        println!(
            "{name:<8} sign + record  : {}  rounds ms {}",
            rate(n, both_m),
            show(&both)
        );
        println!(
            "{name:<8} sequential     : {}  ({seq_n} records, one commit each)",
            rate(seq_n, seq)
        );
        println!(
            "{name:<8} ratio (sign+record time / sign-only time, medians): {:.2}",
            both_m.as_secs_f64() / sign_only_m.as_secs_f64()
        );
    }
}

fn att(epoch: u64) -> SlashableMessage {
    SlashableMessage::Attestation {
        source_epoch: epoch - 1,
        target_epoch: epoch,
    }
}

fn root_for(i: usize, epoch: u64) -> SigningRoot {
    let mut r = [0u8; 32];
    r[..8].copy_from_slice(&(i as u64).to_be_bytes());
    r[8..16].copy_from_slice(&epoch.to_be_bytes());
    SigningRoot(r)
}

async fn sign_round(keys: &[Arc<SecretKey>], epoch: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let k = k.clone();
            tokio::task::spawn_blocking(move || k.sign(&root_for(i, epoch)))
        })
        .collect();
    for t in tasks {
        t.await.expect("sign task");
    }
    start.elapsed()
}

async fn record_round(db: &SlashingDb, pubkeys: &[PublicKeyBytes], epoch: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = pubkeys
        .iter()
        .enumerate()
        .map(|(i, pk)| {
            let (db, pk) = (db.clone(), *pk);
            tokio::spawn(async move {
                db.check_and_record(pk, GVR, att(epoch), root_for(i, epoch))
                    .await
            })
        })
        .collect();
    for t in tasks {
        let v = t.await.expect("task").expect("record");
        assert_eq!(v, Verdict::Allowed);
    }
    start.elapsed()
}

/// Check-and-record, then sign. The public keys are precomputed (as the signer holds them),
/// so the only extra work over [`sign_round`] is the protection itself.
async fn sign_and_record_round(
    db: &SlashingDb,
    keys: &[Arc<SecretKey>],
    pubkeys: &[PublicKeyBytes],
    epoch: u64,
) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = keys
        .iter()
        .zip(pubkeys)
        .enumerate()
        .map(|(i, (k, pk))| {
            let (db, k, pk) = (db.clone(), k.clone(), *pk);
            tokio::spawn(async move {
                let root = root_for(i, epoch);
                let v = db
                    .check_and_record(pk, GVR, att(epoch), root)
                    .await
                    .expect("record");
                assert_eq!(v, Verdict::Allowed);
                tokio::task::spawn_blocking(move || k.sign(&root))
                    .await
                    .expect("sign task")
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    start.elapsed()
}
