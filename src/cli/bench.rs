//! `dvsigner bench`: drives any Web3Signer-compatible URL with ATTESTATION sign requests over
//! keep-alive HTTP(S) and prints throughput and latency beside the raw blst signing rate
//! measured in the same run on the same cores, as a ratio.
//!
//! Requests use source epoch 0 and a fresh, strictly increasing target epoch each (starting at
//! the current Unix time in milliseconds), so a slashing-protected signer allows every one of
//! them, in any order, run after run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

use crate::bls::SigningRoot;
use crate::keys::SecretKey;

/// `dvsigner bench` options.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Base URL of the signer or combiner, e.g. https://127.0.0.1:9000.
    #[arg(long)]
    pub url: String,
    /// CA certificate (PEM) to trust for the server.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// How many of the server's keys to use (0 = all).
    #[arg(long, default_value_t = 0)]
    pub validators: usize,
    /// Concurrency levels to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub concurrency: Vec<usize>,
    /// Seconds to run each concurrency level.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Instead of a timed run: one request per validator, all at once; print the total time.
    #[arg(long)]
    pub burst: bool,
    /// Seconds spent measuring the raw blst baseline.
    #[arg(long, default_value_t = 2.0)]
    pub baseline_seconds: f64,
}

/// Connections a burst keeps on the wire at once.
const BURST_CONNECTIONS: usize = 256;

/// Figures of one measured level.
#[derive(Debug, Clone)]
pub struct LevelResult {
    /// Concurrent requests in flight.
    pub concurrency: usize,
    /// Successful requests.
    pub ok: usize,
    /// Failed requests.
    pub failed: usize,
    /// Successful requests per second.
    pub rate: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When the server is unreachable or lists no keys.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let raw = raw_blst_rate(Duration::from_secs_f64(args.baseline_seconds)).await;
    println!(
        "baseline raw blst: {:.0} signatures/s on {} cores ({:.0}/s on one core)",
        raw.all_cores,
        num_cpus::get(),
        raw.one_core
    );
    let pool = args
        .concurrency
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(BURST_CONNECTIONS);
    let client = client(&args, pool)?;
    let base = args.url.trim_end_matches('/').to_owned();
    let keys: Vec<String> = client
        .get(format!("{base}/api/v1/eth2/publicKeys"))
        .send()
        .await
        .context("fetching publicKeys")?
        .error_for_status()?
        .json()
        .await
        .context("publicKeys is not a JSON array")?;
    let keys: Vec<String> = match args.validators {
        0 => keys,
        n => keys.into_iter().take(n).collect(),
    };
    if keys.is_empty() {
        bail!("the server lists no keys");
    }
    let target = Arc::new(AtomicU64::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64,
    ));
    if args.burst {
        let (elapsed, ok, failed) = burst(&client, &base, &keys, &target).await;
        println!(
            "burst: {} validators, {ok} signed, {failed} failed in {:.3} s ({:.0}/s); raw blst for the same count: {:.3} s; ratio {:.2}",
            keys.len(),
            elapsed.as_secs_f64(),
            ok as f64 / elapsed.as_secs_f64(),
            keys.len() as f64 / raw.all_cores,
            (keys.len() as f64 / raw.all_cores) / elapsed.as_secs_f64(),
        );
        return Ok(());
    }
    for &c in &args.concurrency {
        let r = timed_level(
            &client,
            &base,
            &keys,
            &target,
            c,
            Duration::from_secs_f64(args.seconds),
        )
        .await;
        println!(
            "concurrency {:>3}: {:>7.0} signatures/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ok {} failed {}  ratio to raw {}-core blst {:.2}",
            r.concurrency,
            r.rate,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.ok,
            r.failed,
            num_cpus::get(),
            r.rate / raw.all_cores
        );
    }
    Ok(())
}

/// Raw signing rates measured in this process.
#[derive(Debug, Clone, Copy)]
pub struct RawRate {
    /// Signatures/s with one thread per core.
    pub all_cores: f64,
    /// Signatures/s on one thread.
    pub one_core: f64,
}

/// Measures blst signing on one core and on all cores (distinct roots, one key).
pub async fn raw_blst_rate(duration: Duration) -> RawRate {
    tokio::task::spawn_blocking(move || {
        let sk = SecretKey::random();
        let one = sign_for(&sk, duration / 2, 1);
        let all = sign_for(&sk, duration, num_cpus::get().max(1));
        RawRate {
            all_cores: all,
            one_core: one,
        }
    })
    .await
    .unwrap_or(RawRate {
        all_cores: f64::NAN,
        one_core: f64::NAN,
    })
}

fn sign_for(sk: &SecretKey, duration: Duration, threads: usize) -> f64 {
    let count = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let count = &count;
            s.spawn(move || {
                let mut i = 0u64;
                while start.elapsed() < duration {
                    let mut root = [0u8; 32];
                    root[..8].copy_from_slice(&i.to_le_bytes());
                    root[8..16].copy_from_slice(&(t as u64).to_le_bytes());
                    std::hint::black_box(sk.sign(&SigningRoot(root)));
                    i += 1;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn client(args: &BenchArgs, pool: usize) -> anyhow::Result<reqwest::Client> {
    http_client(
        args.ca.as_deref(),
        args.client_cert.as_deref().zip(args.client_key.as_deref()),
        pool,
    )
}

/// A keep-alive HTTP/1.1 client trusting `ca` and presenting `identity` (cert, key) if given.
///
/// # Errors
/// Unreadable or invalid PEM files.
pub fn http_client(
    ca: Option<&std::path::Path>,
    identity: Option<(&std::path::Path, &std::path::Path)>,
    pool: usize,
) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .http1_only()
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(30));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        pem.extend(std::fs::read(key).with_context(|| format!("reading {}", key.display()))?);
        b = b.identity(reqwest::Identity::from_pem(&pem)?);
    }
    Ok(b.build()?)
}

/// A mainnet-shaped ATTESTATION sign request with source 0 and the given target epoch.
pub fn attestation_body(target: u64) -> String {
    format!(
        concat!(
            r#"{{"type":"ATTESTATION","fork_info":{{"fork":{{"previous_version":"0x04000000","#,
            r#""current_version":"0x05000000","epoch":"364032"}},"genesis_validators_root":"#,
            r#""0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"}},"#,
            r#""attestation":{{"slot":"{slot}","index":"0","beacon_block_root":"#,
            r#""0x{root}","source":{{"epoch":"0","root":"0x{root}"}},"#,
            r#""target":{{"epoch":"{target}","root":"0x{root}"}}}}}}"#
        ),
        slot = target.saturating_mul(32),
        target = target,
        root = "ab".repeat(32)
    )
}

async fn one_request(client: &reqwest::Client, url: &str, target: u64) -> bool {
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(attestation_body(target))
        .send()
        .await;
    match res {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            tracing::debug!(%status, body, "bench request failed");
            false
        }
        Err(e) => {
            tracing::debug!(error = %e, "bench request failed");
            false
        }
    }
}

/// Runs `concurrency` request loops against the keys for `duration`.
pub async fn timed_level(
    client: &reqwest::Client,
    base: &str,
    keys: &[String],
    target: &Arc<AtomicU64>,
    concurrency: usize,
    duration: Duration,
) -> LevelResult {
    let start = Instant::now();
    let next_key = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let client = client.clone();
        let urls: Arc<Vec<String>> = Arc::new(
            keys.iter()
                .map(|k| format!("{base}/api/v1/eth2/sign/{k}"))
                .collect(),
        );
        let next_key = next_key.clone();
        let target = target.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0usize;
            while start.elapsed() < duration {
                let i = next_key.fetch_add(1, Ordering::Relaxed) % urls.len();
                let t = target.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                if one_request(&client, &urls[i], t).await {
                    lat.push(t0.elapsed());
                } else {
                    failed += 1;
                }
            }
            (lat, failed)
        });
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    while let Some(Ok((l, f))) = tasks.join_next().await {
        lat.extend(l);
        failed += f;
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    LevelResult {
        concurrency,
        ok: lat.len(),
        failed,
        rate: lat.len() as f64 / elapsed,
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
    }
}

async fn burst(
    client: &reqwest::Client,
    base: &str,
    keys: &[String],
    target: &Arc<AtomicU64>,
) -> (Duration, usize, usize) {
    let t = target.fetch_add(1, Ordering::Relaxed);
    // Everything is queued at once, as at the start of a slot; at most BURST_CONNECTIONS are on
    // the wire together so connections are reused instead of paying a handshake each.
    let permits = Arc::new(tokio::sync::Semaphore::new(BURST_CONNECTIONS));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in keys {
        let client = client.clone();
        let url = format!("{base}/api/v1/eth2/sign/{k}");
        let permits = permits.clone();
        tasks.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return false;
            };
            one_request(&client, &url, t).await
        });
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        if matches!(r, Ok(true)) {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    (start.elapsed(), ok, failed)
}

/// The `q` quantile of sorted latencies (zero when empty).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}
