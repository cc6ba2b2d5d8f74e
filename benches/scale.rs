//! 10,000 validators on one signer node (`DVSIGNER_BENCH_VALIDATORS`, default 10,000):
//!
//! 1. start-up of the real `dvsigner signer` process (mutual TLS, SQLite) with `--key-cache`:
//!    the first start (every keystore decrypted, cache written) and the cached start, each from
//!    the process start until `publicKeys` lists every key. The keystores use PBKDF2 with 16
//!    rounds so that the first start is quick to run; the cached start does not depend on the
//!    keystores' KDF (one scrypt run at the EIP-2335 default cost for the cache password, then
//!    every keystore file is read and matched against its cache entry);
//! 2. memory: resident set (VmRSS) idle after the cached start, and VmRSS/VmHWM after one
//!    attestation per validator;
//! 3. `GET /api/v1/eth2/publicKeys` latency on a keep-alive connection (p50/p99 of 50);
//! 4. the slashing database over a simulated stretch of attestations, written through the
//!    database API (`SlashingDb::check_and_record_many`, one transaction per epoch for all
//!    validators, source = target - 1, as a node records them): first without pruning up to
//!    epoch 336 (the size per recorded attestation, extrapolated to a year of 82,125 epochs),
//!    then on with the node's default pruning (keep 250 epochs, every 12 hours = every 112
//!    epochs) to `DVSIGNER_BENCH_EPOCHS` (default 672): the steady-state size, the time of
//!    each prune, and how long a sign request's check-and-record waits while a prune runs (a
//!    probe validator records one attestation every 5 ms during each prune; the prunes
//!    alternate between all validators in one transaction, as before chunking, and the node's
//!    chunks of `PRUNE_CHUNK` validators per transaction);
//! 5. interchange export of the pruned database and its import into an empty one.
//!
//! Run: `cargo bench --bench scale` (CI does not run benchmarks; a small size for a quick look:
//! `DVSIGNER_BENCH_VALIDATORS=1000 DVSIGNER_BENCH_EPOCHS=448`).

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use dvsigner::bls::{PublicKeyBytes, SigningRoot};
use dvsigner::cli::bench::{burst, first_target, percentile, BURST_CONNECTIONS};
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::slashing::{SlashableMessage, SlashingDb, Verdict, PRUNE_CHUNK};
use rayon::prelude::*;
use support::{mib, Node, NodeOptions};

/// Epochs in a year (365 days of 225 epochs of 6.4 minutes).
const YEAR_EPOCHS: u64 = 82_125;
/// The node's default pruning: epochs kept, and epochs between prunes (12 hours).
const KEEP_EPOCHS: u64 = 250;
const PRUNE_EVERY: u64 = 112;
/// The first prune that deletes anything comes at this epoch (3 x 112 > 250).
const FIRST_DELETING_PRUNE: u64 = 336;
/// Mainnet's genesis validators root (the database pins itself to one chain).
const GVR: [u8; 32] = [
    0x4b, 0x36, 0x3d, 0xb9, 0x4e, 0x28, 0x61, 0x20, 0xd7, 0x6e, 0xb9, 0x05, 0x34, 0x0f, 0xdd, 0x4e,
    0x54, 0xbf, 0xe9, 0xf0, 0x6b, 0xf3, 0x3f, 0xf6, 0xcf, 0x5a, 0xd2, 0x7f, 0x51, 0x1b, 0xfe, 0x95,
];

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let n: usize = env("DVSIGNER_BENCH_VALIDATORS", 10_000);
    let epochs: u64 = env("DVSIGNER_BENCH_EPOCHS", 672).max(FIRST_DELETING_PRUNE);
    println!(
        "== {n} validators on one signer node ({} cores)",
        num_cpus::get()
    );
    node_figures(n).await;
    slashing_figures(n, epochs).await;
}

async fn node_figures(n: usize) {
    let (ks, pw) = support::keystores(n);
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = support::pki(dir.path());
    let client = support::client(&pki, BURST_CONNECTIONS, false);
    let options = NodeOptions {
        dir: dir.path(),
        pki: &pki,
        keys: (&ks, &pw),
        key_cache: true,
    };
    let started = Instant::now();
    let mut first = Node::spawn(&options);
    let first_start = first
        .wait_keys(&client, n, started, Duration::from_secs(1200))
        .await;
    first.stop();
    let started = Instant::now();
    let mut node = Node::spawn(&options);
    let cached_start = node
        .wait_keys(&client, n, started, Duration::from_secs(1200))
        .await;
    assert!(
        node.log_text().contains(&format!("hits={n}")),
        "the second start takes every key from the cache:\n{}",
        node.log_text()
    );
    println!(
        "start-up until publicKeys lists {n} keys: first start (decrypt, write the key cache) {:.2} s, cached start {:.2} s",
        first_start.as_secs_f64(),
        cached_start.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_rss, _) = node.memory();

    let mut lat = Vec::new();
    let mut body_len = 0;
    for _ in 0..50 {
        let t = Instant::now();
        let body = client
            .get(format!("{}/api/v1/eth2/publicKeys", node.url))
            .send()
            .await
            .expect("publicKeys")
            .bytes()
            .await
            .expect("body");
        lat.push(t.elapsed());
        body_len = body.len();
    }
    lat.sort_unstable();
    println!(
        "publicKeys ({n} keys, {:.0} KiB) on a keep-alive connection: p50 {:.2} ms, p99 {:.2} ms",
        body_len as f64 / 1024.0,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );

    let keys: Vec<String> = (0..n as u64)
        .into_par_iter()
        .map(|i| interop_secret_key(i).public_key().bytes().to_hex())
        .collect();
    let r = burst(&client, &node.url, &keys, first_target(None)).await;
    let (rss, hwm) = node.memory();
    println!(
        "memory: VmRSS idle after the cached start {:.1} MiB; after one attestation per validator ({} signed, failures: {} in {:.2} s) VmRSS {:.1} MiB, peak VmHWM {:.1} MiB",
        mib(idle_rss),
        r.ok,
        r.failures,
        r.elapsed.as_secs_f64(),
        mib(rss),
        mib(hwm)
    );
    node.stop();
}

/// Bytes of the database: (file size including the WAL, pages in use x page size).
fn db_size(path: &Path) -> (u64, u64) {
    let file = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let files = file(path) + file(Path::new(&wal));
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open read-only");
    let q = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).expect(sql) as u64;
    let used = (q("PRAGMA page_count") - q("PRAGMA freelist_count")) * q("PRAGMA page_size");
    (files, used)
}

/// Records an attestation of `key` every 5 ms (targets from `first_target` up) until `stop`;
/// returns each check-and-record's wait, sorted.
async fn probe_during(
    db: SlashingDb,
    key: PublicKeyBytes,
    first_target: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Duration> {
    let mut waits = Vec::new();
    let mut target = first_target;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        target += 1;
        let t = Instant::now();
        let verdict = db
            .check_and_record(
                key,
                GVR,
                SlashableMessage::Attestation {
                    source_epoch: target - 1,
                    target_epoch: target,
                },
                SigningRoot([7; 32]),
            )
            .await
            .expect("probe");
        waits.push(t.elapsed());
        assert_eq!(verdict, Verdict::Allowed);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    waits.sort();
    waits
}

async fn record_epoch(db: &SlashingDb, pubkeys: &[PublicKeyBytes], epoch: u64) {
    let requests: Vec<_> = pubkeys
        .iter()
        .enumerate()
        .map(|(i, pk)| {
            let mut root = [0u8; 32];
            root[..8].copy_from_slice(&epoch.to_le_bytes());
            root[8..16].copy_from_slice(&(i as u64).to_le_bytes());
            (
                *pk,
                GVR,
                SlashableMessage::Attestation {
                    source_epoch: epoch - 1,
                    target_epoch: epoch,
                },
                SigningRoot(root),
            )
        })
        .collect();
    let verdicts = db.check_and_record_many(&requests).await.expect("writer");
    for v in verdicts {
        assert_eq!(v.expect("database"), Verdict::Allowed);
    }
}

async fn slashing_figures(n: usize, epochs: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("slashing.sqlite");
    let db = SlashingDb::open(&format!("sqlite:{}", path.display()))
        .await
        .expect("open");
    let pubkeys: Vec<PublicKeyBytes> = (0..n as u64)
        .into_par_iter()
        .map(|i| interop_secret_key(i).public_key().bytes())
        .collect();
    db.register_validators(&pubkeys).await.expect("register");
    // A validator outside the recorded set, signing while the prunes run.
    let probe_key = interop_secret_key(n as u64).public_key().bytes();
    db.register_validators(&[probe_key])
        .await
        .expect("register");
    println!(
        "== slashing database (SQLite), {n} validators, one attestation per validator and epoch"
    );

    let t = Instant::now();
    for epoch in 1..=FIRST_DELETING_PRUNE {
        record_epoch(&db, &pubkeys, epoch).await;
    }
    let write = t.elapsed();
    let rows = FIRST_DELETING_PRUNE * n as u64;
    let (files, used) = db_size(&path);
    let per_row = used as f64 / rows as f64;
    println!(
        "measured: {FIRST_DELETING_PRUNE} epochs without pruning = {rows} attestations written in {:.1} s ({:.0}/s): file {:.1} MiB, pages in use {:.1} MiB ({per_row:.1} bytes per attestation)",
        write.as_secs_f64(),
        rows as f64 / write.as_secs_f64(),
        mib(files),
        mib(used)
    );
    let year_rows = YEAR_EPOCHS * n as u64;
    println!(
        "extrapolated: a year ({YEAR_EPOCHS} epochs, {year_rows} attestations) without pruning: {:.1} GiB",
        per_row * year_rows as f64 / (1024.0 * 1024.0 * 1024.0)
    );

    let mut prunes = Vec::new();
    let mut before_last = (0, 0);
    for epoch in FIRST_DELETING_PRUNE..=epochs {
        if epoch > FIRST_DELETING_PRUNE {
            record_epoch(&db, &pubkeys, epoch).await;
        }
        if epoch % PRUNE_EVERY == 0 {
            before_last = db_size(&path);
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let probe = tokio::spawn(probe_during(
                db.clone(),
                probe_key,
                epoch * 1_000,
                stop.clone(),
            ));
            // Every other prune in one transaction (as before chunking), for comparison.
            let chunk = if prunes.len() % 2 == 0 {
                usize::MAX
            } else {
                PRUNE_CHUNK
            };
            let t = Instant::now();
            let deleted = db
                .prune_in_chunks(KEEP_EPOCHS, 32, chunk)
                .await
                .expect("prune");
            let took = t.elapsed();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let waits = probe.await.expect("probe");
            prunes.push((epoch, chunk, deleted, took, waits));
        }
    }
    let (files, used) = db_size(&path);
    for (epoch, chunk, deleted, took, waits) in &prunes {
        let how = if *chunk == usize::MAX {
            "all validators in one transaction".to_owned()
        } else {
            format!("{chunk} validators per transaction")
        };
        println!(
            "prune at epoch {epoch} (keep {KEEP_EPOCHS}, {how}): {deleted} attestations deleted in {:.2} s; a check-and-record meanwhile ({} probes): p50 {:.1} ms, p99 {:.1} ms, longest {:.1} ms",
            took.as_secs_f64(),
            waits.len(),
            percentile(waits, 0.5).as_secs_f64() * 1e3,
            percentile(waits, 0.99).as_secs_f64() * 1e3,
            waits.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
    println!(
        "measured: with the default pruning, at epoch {epochs}: before the last prune pages in use {:.1} MiB (file {:.1} MiB), after it {:.1} MiB (file {:.1} MiB; SQLite reuses freed pages, the file does not shrink); this is the steady state for any length of time",
        mib(before_last.1),
        mib(before_last.0),
        mib(used),
        mib(files)
    );

    let t = Instant::now();
    let json = db.export_interchange(None).await.expect("export");
    let export = t.elapsed();
    let fresh = SlashingDb::open(&format!(
        "sqlite:{}",
        dir.path().join("imported.sqlite").display()
    ))
    .await
    .expect("open");
    let t = Instant::now();
    let report = fresh.import_interchange(&json).await.expect("import");
    let import = t.elapsed();
    println!(
        "interchange of the pruned database ({} validators, {} attestations, {:.1} MiB of JSON): export {:.2} s, import into an empty database {:.2} s",
        report.validators,
        report.attestations,
        mib(json.len() as u64),
        export.as_secs_f64(),
        import.as_secs_f64()
    );
}
