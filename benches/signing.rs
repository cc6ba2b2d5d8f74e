//! Signing benchmarks: every figure is printed beside blst costs measured in the same run on the
//! same cores, as a ratio (these machines are shared and noisy; absolute numbers drift).
//!
//! 1. raw blst: sign on one core and on all cores; verify; 3-of-4 combine;
//! 2. partial-verification strategies of the combiner: combine then verify once, versus verify
//!    every partial then combine;
//! 3. a signer node holding whole keys (HTTPS keep-alive, SQLite slashing protection on):
//!    ATTESTATION requests/s and p50/p99 at concurrency 1 and 64, ratio to raw all-core blst;
//! 4. a 3-of-4 cluster (4 nodes + combiner, all on this machine) through the combiner at
//!    concurrency 64, ratio to the CPU bound of one threshold signature
//!    (4 share signatures + combine + verify, from the blst figures of step 1).
//!
//! Run: `cargo bench --bench signing` (`DVSIGNER_BENCH_SECONDS` sets each level's duration).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dvsigner::app::dev::{LocalCluster, LocalClusterOptions};
use dvsigner::app::node::{NodeConfig, SlashingConfig};
use dvsigner::app::{bind, KdfChoice, ListenerConfig};
use dvsigner::bls::SigningRoot;
use dvsigner::cli::bench::{http_client, raw_blst_rate, timed_level, LevelResult};
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::sources::KeystoresDir;
use dvsigner::keys::{KdfParams, Keystore, Password, SecretKey};
use dvsigner::threshold::{combine, split, ShareIndex};

const VALIDATORS: u64 = 16;

/// Process CPU time (user + system, all threads) from /proc/self/stat, in clock ticks of 10 ms.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // Fields after the command name, by position: 0 = state (field 3), so utime (field 14) is
    // index 11 and stime (field 15) index 12. Some fields (tpgid) can be negative.
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((tick(11) + tick(12)) * 10)
}

/// CPU time per operation (all threads the operation uses, e.g. blst's own pool in verify).
fn cpu_per_op<F: FnMut()>(iters: u32, mut f: F) -> Duration {
    let start = process_cpu();
    for _ in 0..iters {
        f();
    }
    (process_cpu().saturating_sub(start)) / iters
}

fn per_op<F: FnMut()>(iters: u32, mut f: F) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed() / iters
}

fn print_level(label: &str, r: &LevelResult, baseline: f64, baseline_name: &str) {
    println!(
        "{label:<34} c={:<3} {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  (ok {}, failed {})  = {:.2} x {baseline_name}",
        r.concurrency,
        r.rate,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.ok,
        r.failed,
        r.rate / baseline
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::var("DVSIGNER_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let cores = num_cpus::get();

    // 1. raw blst
    let raw = raw_blst_rate(Duration::from_secs(2)).await;
    let sk = SecretKey::random();
    let mut i = 0u64;
    let mut next_root = || {
        i += 1;
        let mut r = [0u8; 32];
        r[..8].copy_from_slice(&i.to_le_bytes());
        SigningRoot(r)
    };
    let sign = per_op(500, || {
        std::hint::black_box(sk.sign_message(&next_root().0));
    });
    let (shares, commitments) = split(&sk, 3, 4)?;
    let root = next_root();
    let partials: Vec<(ShareIndex, dvsigner::bls::Signature)> = shares
        .iter()
        .take(3)
        .map(|s| (s.index, s.secret.sign(&root)))
        .collect();
    let group = commitments.group_public_key().clone();
    let share_pks: Vec<_> = shares
        .iter()
        .take(3)
        .map(|s| s.public_key().clone())
        .collect();
    let combine_t = per_op(300, || {
        std::hint::black_box(combine(&partials, 3).ok());
    });
    let whole_sig = sk.sign(&root);
    let verify = per_op(300, || {
        std::hint::black_box(whole_sig.verify(&group, &root.0));
    });
    let sign_cpu = cpu_per_op(1000, || {
        std::hint::black_box(sk.sign_message(&next_root().0));
    });
    let combine_cpu = cpu_per_op(600, || {
        std::hint::black_box(combine(&partials, 3).ok());
    });
    let verify_cpu = cpu_per_op(400, || {
        std::hint::black_box(whole_sig.verify(&group, &root.0));
    });
    println!("== raw blst ({cores} cores)");
    println!(
        "sign                  {:>8.1} us wall {:>8.1} us CPU   ({:.0}/s one core, {:.0}/s all cores)",
        sign.as_secs_f64() * 1e6,
        sign_cpu.as_secs_f64() * 1e6,
        raw.one_core,
        raw.all_cores
    );
    println!(
        "verify                {:>8.1} us wall {:>8.1} us CPU",
        verify.as_secs_f64() * 1e6,
        verify_cpu.as_secs_f64() * 1e6
    );
    println!(
        "combine 3-of-4 {{1,2,3}} (small coefficients) {:>8.1} us wall {:>8.1} us CPU",
        combine_t.as_secs_f64() * 1e6,
        combine_cpu.as_secs_f64() * 1e6
    );

    // 2. verification strategies
    let combine_first = per_op(200, || {
        let s = combine(&partials, 3).expect("combine");
        assert!(s.verify(&group, &root.0));
    });
    let verify_each = per_op(200, || {
        for ((_, p), pk) in partials.iter().zip(&share_pks) {
            assert!(p.verify(pk, &root.0));
        }
        let s = combine(&partials, 3).expect("combine");
        std::hint::black_box(s);
    });
    println!("== combiner verification strategy (3-of-4, per signature)");
    println!(
        "combine, then verify once      {:>8.1} us",
        combine_first.as_secs_f64() * 1e6
    );
    println!(
        "verify each partial, combine   {:>8.1} us   ({:.2} x combine-first)",
        verify_each.as_secs_f64() * 1e6,
        verify_each.as_secs_f64() / combine_first.as_secs_f64()
    );

    // 3. whole-key node
    let dir = tempfile::tempdir()?;
    let pki = dvsigner::tls::DevPki::generate(&dir.path().join("tls"), &["node"], &["client"])?;
    let ks_dir = dir.path().join("keys");
    std::fs::create_dir_all(ks_dir.join("pw"))?;
    for v in 0..VALIDATORS {
        let ks = Keystore::encrypt(
            &interop_secret_key(v),
            &Password::new("bench".into()),
            KdfParams::insecure_fast(),
            "",
            "",
        )?;
        std::fs::write(ks_dir.join(format!("k{v}.json")), ks.to_json())?;
        std::fs::write(ks_dir.join("pw").join(format!("k{v}.txt")), "bench")?;
    }
    let node_id = pki.identity("node").expect("node identity");
    let keys: Vec<String> = (0..VALIDATORS)
        .map(|v| interop_secret_key(v).public_key().bytes().to_hex())
        .collect();
    let client = http_client(Some(&pki.ca_cert), None, 128, false)?;
    let target = Arc::new(AtomicU64::new(1_000_000));
    let mut node_64 = None;
    for protected in [true, false] {
        let listener = bind("127.0.0.1:0".parse()?).await?;
        let node_url = format!("https://{}", listener.local_addr()?);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let tls = dvsigner::tls::ServerTlsFiles {
            cert: node_id.cert.clone(),
            key: node_id.key.clone(),
            client_ca: None,
            allowed_clients: None,
        };
        let mut config = NodeConfig::new(
            ListenerConfig::new(listener.local_addr()?, Some(tls)),
            dir.path().join(format!("data-{protected}")),
        )?;
        config.key_sources = config.key_sources.with(KeystoresDir {
            keystores: ks_dir.clone(),
            passwords: ks_dir.join("pw"),
        });
        if !protected {
            config.slashing = SlashingConfig::Off;
        }
        let node = tokio::spawn(dvsigner::app::node::run(config, listener, async {
            let _ = stop_rx.await;
        }));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let label = if protected {
            println!(
                "== signer node, whole keys, HTTPS keep-alive, slashing protection on (SQLite)"
            );
            "node ATTESTATION, protected"
        } else {
            println!("== signer node, whole keys, HTTPS keep-alive, slashing protection off");
            "node ATTESTATION, unprotected"
        };
        let levels: &[usize] = if protected { &[1, 64] } else { &[64] };
        for &c in levels {
            let r = timed_level(
                &client,
                &node_url,
                &keys,
                &target,
                c,
                Duration::from_secs_f64(seconds),
                false,
            )
            .await;
            print_level(label, &r, raw.all_cores, &format!("raw {cores}-core blst"));
            if c == 64 && protected {
                node_64 = Some(r);
            }
        }
        let _ = stop_tx.send(());
        node.await??;
    }

    // 4. threshold cluster
    let cluster = LocalCluster::start(LocalClusterOptions {
        dir: dir.path().join("cluster"),
        validators: VALIDATORS,
        combiner_port: 0,
        kdf: KdfChoice::InsecureFast,
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = http_client(Some(&cluster.pki.ca_cert), None, 128, false)?;
    // CPU bound: 4 share signatures + combine + verify per threshold signature, on all cores,
    // from CPU time (blst's verify spreads over its own thread pool, so wall time understates it).
    let cost = 4.0 * sign_cpu.as_secs_f64() + combine_cpu.as_secs_f64() + verify_cpu.as_secs_f64();
    let bound = cores as f64 / cost;
    println!("== 3-of-4 cluster (4 nodes + combiner on this machine), through the combiner");
    println!("CPU bound of one threshold signature: 4 x sign + combine + verify = {:.0} us -> {bound:.0}/s on {cores} cores", cost * 1e6);
    let r = timed_level(
        &client,
        &cluster.combiner_url,
        &cluster.pubkeys,
        &target,
        64,
        Duration::from_secs_f64(seconds),
        false,
    )
    .await;
    print_level("threshold ATTESTATION", &r, bound, "threshold CPU bound");
    if let Some(n) = node_64 {
        println!("threshold / whole-key node at c=64: {:.2}", r.rate / n.rate);
    }
    cluster.stop().await?;
    Ok(())
}
