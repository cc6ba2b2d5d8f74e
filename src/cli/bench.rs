//! `dvsigner bench`: drives any Web3Signer-compatible URL with ATTESTATION sign requests over
//! keep-alive HTTP(S) and prints throughput, latency and failures by status code beside the raw
//! blst signing rate measured in the same run on the same cores, as a ratio.
//!
//! When the server runs on this machine (`--server-pid`, or else the process owning the URL's
//! listening socket when the URL is on loopback) it also prints the server process's CPU time
//! per signature (user + system time of all its threads, from `/proc/PID/stat`) and its ratio
//! to the CPU time of one raw blst signature (thread CPU time of the baseline's threads). CPU
//! ratios hold on a shared machine where wall-clock rates swing with other load.
//!
//! Requests use source epoch 0 and a fresh, strictly increasing target epoch each, starting at
//! the current Unix time in microseconds (or `--start-epoch` when that is higher). A run takes
//! fewer than one target per microsecond, so its targets never get ahead of the clock and each
//! later run starts above every target epoch an earlier one signed: a slashing-protected signer
//! allows every request, run after run, also after pruning raised its low watermarks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

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
    /// Instead of a timed run: one request per validator, all at once, on new connections;
    /// print the total time of each burst and the median.
    #[arg(long)]
    pub burst: bool,
    /// How many bursts `--burst` runs.
    #[arg(long, default_value_t = 5)]
    pub bursts: usize,
    /// Seconds spent measuring the raw blst baseline.
    #[arg(long, default_value_t = 2.0)]
    pub baseline_seconds: f64,
    /// PID of the server process, for its CPU time per signature (default: the process that
    /// owns the URL's listening socket, when the URL is on loopback and that process is
    /// readable; the dev cluster's nodes and combiner are all one process).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Lowest target epoch to use (default: the current Unix time in microseconds).
    #[arg(long)]
    pub start_epoch: Option<u64>,
    /// Speak HTTP/2 (ALPN `h2` only; the server must offer it): every request on one
    /// connection (a burst: one new connection instead of up to 256). Default: HTTP/1.1
    /// keep-alive.
    #[arg(long)]
    pub http2: bool,
}

/// Connections a burst keeps on the wire at once.
pub const BURST_CONNECTIONS: usize = 256;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// The server answered with this non-2xx status.
    Status(u16),
    /// No answer: connection, TLS or timeout error, or a body that could not be read.
    Transport,
}

/// Failed requests counted by cause.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures(pub BTreeMap<Failure, usize>);

impl Failures {
    /// Counts one failure.
    pub fn add(&mut self, f: Failure) {
        *self.0.entry(f).or_default() += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Failures) {
        for (&f, &n) in &other.0 {
            *self.0.entry(f).or_default() += n;
        }
    }

    /// All failures.
    pub fn total(&self) -> usize {
        self.0.values().sum()
    }
}

impl std::fmt::Display for Failures {
    /// `none`, or e.g. `412: 3, 503: 1, transport: 2` (statuses in ascending order).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, (kind, n)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match kind {
                Failure::Status(s) => write!(f, "{s}: {n}")?,
                Failure::Transport => write!(f, "transport: {n}")?,
            }
        }
        Ok(())
    }
}

/// Figures of one measured level.
#[derive(Debug, Clone)]
pub struct LevelResult {
    /// Concurrent requests in flight.
    pub concurrency: usize,
    /// Successful requests.
    pub ok: usize,
    /// Failed requests.
    pub failed: usize,
    /// Failed requests by cause.
    pub failures: Failures,
    /// Successful requests per second.
    pub rate: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
}

/// Figures of one burst.
#[derive(Debug, Clone)]
pub struct BurstResult {
    /// From the first request sent to the last answer received.
    pub elapsed: Duration,
    /// Successful requests.
    pub ok: usize,
    /// Failed requests by cause.
    pub failures: Failures,
}

/// CPU time of a server process, sampled around a measurement.
#[derive(Debug, Clone, Copy)]
pub struct ServerCpu {
    pid: u32,
    start: Duration,
}

impl ServerCpu {
    /// Starts measuring process `pid` (None when its `/proc/PID/stat` cannot be read).
    pub fn start(pid: u32) -> Option<Self> {
        process_cpu(pid).map(|start| Self { pid, start })
    }

    /// CPU time the process used since [`ServerCpu::start`].
    pub fn elapsed(&self) -> Option<Duration> {
        process_cpu(self.pid).map(|now| now.saturating_sub(self.start))
    }
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When the server is unreachable or lists no keys.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let raw = raw_blst_rate(Duration::from_secs_f64(args.baseline_seconds)).await;
    println!(
        "baseline raw blst: {:.0} signatures/s on {} cores ({:.0}/s on one core), {:.1} us CPU per signature",
        raw.all_cores,
        num_cpus::get(),
        raw.one_core,
        raw.cpu_per_signature.as_secs_f64() * 1e6
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
    let server_pid = args.server_pid.or_else(|| {
        reqwest::Url::parse(&base)
            .ok()
            .and_then(|u| loopback_port(&u))
            .and_then(find_listener_pid)
    });
    match server_pid {
        Some(pid) if process_cpu(pid).is_some() => {
            println!("server process: PID {pid} (CPU time of the whole process)");
        }
        _ => {
            println!("server process: not found on this machine (no CPU figures; see --server-pid)")
        }
    }
    let target = Arc::new(AtomicU64::new(first_target(args.start_epoch)));
    let cpu_line = |cpu: Option<Duration>, ok: usize| match cpu {
        Some(cpu) if ok > 0 => {
            let per = cpu / ok as u32;
            format!(
                "  server CPU {:.1} us/signature = {:.2} x raw blst",
                per.as_secs_f64() * 1e6,
                per.as_secs_f64() / raw.cpu_per_signature.as_secs_f64()
            )
        }
        _ => String::new(),
    };
    if args.burst {
        let mut times = Vec::new();
        for i in 0..args.bursts.max(1) {
            // New connections for every burst: its time includes the handshakes.
            let client = self::client(&args, BURST_CONNECTIONS)?;
            let t = target.fetch_add(1, Ordering::Relaxed);
            let cpu = server_pid.and_then(ServerCpu::start);
            let r = burst(&client, &base, &keys, t).await;
            let cpu = cpu.and_then(|c| c.elapsed());
            println!(
                "burst {}: {} validators, {} signed in {:.3} s ({:.0}/s), failures: {}{}",
                i + 1,
                keys.len(),
                r.ok,
                r.elapsed.as_secs_f64(),
                r.ok as f64 / r.elapsed.as_secs_f64(),
                r.failures,
                cpu_line(cpu, r.ok)
            );
            times.push(r.elapsed);
        }
        times.sort_unstable();
        let p50 = percentile(&times, 0.5);
        println!(
            "bursts: p50 {:.3} s of {}; raw blst for the same count on {} cores: {:.3} s (ratio {:.2})",
            p50.as_secs_f64(),
            times.len(),
            num_cpus::get(),
            keys.len() as f64 / raw.all_cores,
            (keys.len() as f64 / raw.all_cores) / p50.as_secs_f64(),
        );
        return Ok(());
    }
    // One request per key first: a validator's first signed attestation becomes its low
    // watermark, so it must come before the concurrent requests of the levels (whose targets
    // reach the server out of order); this also opens the connections.
    let warm = burst(
        &client,
        &base,
        &keys,
        target.fetch_add(1, Ordering::Relaxed),
    )
    .await;
    println!(
        "warm-up: one request per key, {} signed, failures: {}",
        warm.ok, warm.failures
    );
    for &c in &args.concurrency {
        let cpu = server_pid.and_then(ServerCpu::start);
        let r = timed_level(
            &client,
            &base,
            &keys,
            &target,
            c,
            Duration::from_secs_f64(args.seconds),
            false,
        )
        .await;
        let cpu = cpu.and_then(|c| c.elapsed());
        println!(
            "concurrency {:>3}: {:>7.0} signatures/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ok {} failed {} ({})  ratio to raw {}-core blst {:.2}{}",
            r.concurrency,
            r.rate,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.ok,
            r.failed,
            r.failures,
            num_cpus::get(),
            r.rate / raw.all_cores,
            cpu_line(cpu, r.ok)
        );
    }
    Ok(())
}

/// The first target epoch of a run: the current Unix time in microseconds, or `floor` when
/// higher.
pub fn first_target(floor: Option<u64>) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    now.max(floor.unwrap_or(0))
}

/// User + system CPU time of process `pid` (all its threads, live and exited), from
/// `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&stat)
}

/// Clock ticks of `/proc` times: Linux reports them in USER_HZ, 100 on every architecture.
const USER_HZ: u64 = 100;

/// User + system time from the text of a `/proc/PID/stat` file (fields 14 and 15, counted
/// after the parenthesised command name, which may itself hold spaces and parentheses).
pub fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    let (_, after) = stat.rsplit_once(')')?;
    // After the name: field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// CPU time of the calling thread (nanoseconds on CPU, from `/proc/thread-self/schedstat`).
pub fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    parse_schedstat(&s)
}

/// The time on CPU (first field, nanoseconds) of a `/proc/.../schedstat` text.
pub fn parse_schedstat(s: &str) -> Option<Duration> {
    s.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

/// The port of `url` when its host is a loopback address or `localhost`.
pub fn loopback_port(url: &reqwest::Url) -> Option<u16> {
    let host = url.host_str()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if local {
        url.port_or_known_default()
    } else {
        None
    }
}

/// The socket inodes of the listening TCP sockets on `port` in the text of `/proc/net/tcp` or
/// `/proc/net/tcp6`.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit_once(':')?.1;
            let local_port = u16::from_str_radix(local_port, 16).ok()?;
            if local_port != port || *f.get(3)? != LISTEN {
                return None;
            }
            f.get(9)?.parse().ok()
        })
        .collect()
}

/// The process that owns a listening TCP socket on `port`, if this user may see it.
pub fn find_listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if wanted.iter().any(|w| link.as_os_str() == w.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// Raw signing rates measured in this process.
#[derive(Debug, Clone, Copy)]
pub struct RawRate {
    /// Signatures/s with one thread per core.
    pub all_cores: f64,
    /// Signatures/s on one thread.
    pub one_core: f64,
    /// CPU time of one signature: the signing threads' CPU time over the signatures they made
    /// (robust to other load, unlike the rates).
    pub cpu_per_signature: Duration,
}

/// Measures blst signing on one core and on all cores (distinct roots, one key).
pub async fn raw_blst_rate(duration: Duration) -> RawRate {
    tokio::task::spawn_blocking(move || {
        let sk = SecretKey::random();
        let one = sign_for(&sk, duration / 2, 1);
        let all = sign_for(&sk, duration, num_cpus::get().max(1));
        RawRate {
            all_cores: all.rate,
            one_core: one.rate,
            cpu_per_signature: all.cpu_per_signature,
        }
    })
    .await
    .unwrap_or(RawRate {
        all_cores: f64::NAN,
        one_core: f64::NAN,
        cpu_per_signature: Duration::ZERO,
    })
}

struct Signed {
    rate: f64,
    cpu_per_signature: Duration,
}

fn sign_for(sk: &SecretKey, duration: Duration, threads: usize) -> Signed {
    let count = AtomicUsize::new(0);
    let cpu_ns = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (count, cpu_ns) = (&count, &cpu_ns);
            s.spawn(move || {
                let cpu_start = thread_cpu();
                let mut i = 0u64;
                while start.elapsed() < duration {
                    let mut root = [0u8; 32];
                    root[..8].copy_from_slice(&i.to_le_bytes());
                    root[8..16].copy_from_slice(&(t as u64).to_le_bytes());
                    // blst itself (hashing every root), not `SecretKey::sign`, whose reuse of
                    // recently hashed roots would flatter the floor.
                    std::hint::black_box(sk.sign_message(&root));
                    i += 1;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                if let (Some(a), Some(b)) = (cpu_start, thread_cpu()) {
                    cpu_ns.fetch_add(b.saturating_sub(a).as_nanos() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    let n = count.load(Ordering::Relaxed);
    Signed {
        rate: n as f64 / start.elapsed().as_secs_f64(),
        cpu_per_signature: Duration::from_nanos(cpu_ns.load(Ordering::Relaxed) / n.max(1) as u64),
    }
}

fn client(args: &BenchArgs, pool: usize) -> anyhow::Result<reqwest::Client> {
    http_client(
        args.ca.as_deref(),
        args.client_cert.as_deref().zip(args.client_key.as_deref()),
        pool,
        args.http2,
    )
}

/// A keep-alive HTTP/1.1 client trusting `ca` and presenting `identity` (cert, key) if given;
/// with `http2` an HTTP/2 client (ALPN `h2` only) that multiplexes every request on one
/// connection (with `h2` merely offered, a burst on a new client would still open a connection
/// per request in flight before the first handshake completes).
///
/// # Errors
/// Unreadable or invalid PEM files.
pub fn http_client(
    ca: Option<&std::path::Path>,
    identity: Option<(&std::path::Path, &std::path::Path)>,
    pool: usize,
    http2: bool,
) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(30));
    b = if http2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
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

/// Sends one ATTESTATION sign request for target epoch `target`.
///
/// # Errors
/// The failure: the status of a non-2xx answer, or a transport error.
pub async fn one_request(client: &reqwest::Client, url: &str, target: u64) -> Result<(), Failure> {
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(attestation_body(target))
        .send()
        .await;
    match res {
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "bench answer unreadable");
                Err(Failure::Transport)
            }
        },
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            tracing::debug!(%status, body, "bench request failed");
            Err(Failure::Status(status.as_u16()))
        }
        Err(e) => {
            tracing::debug!(error = %e, "bench request failed");
            Err(Failure::Transport)
        }
    }
}

/// Runs `concurrency` request loops against the keys for `duration`. Without `shared_roots`
/// each request has a target epoch of its own (every signing root distinct: the worst case for
/// a signer); with it the keys take turns on one target epoch after the other (the `k`-th
/// round over the keys signs target `first + k`): every key signs the same root as the
/// others, as the attesters of one slot do since Electra. `target` ends above every target
/// used.
pub async fn timed_level(
    client: &reqwest::Client,
    base: &str,
    keys: &[String],
    target: &Arc<AtomicU64>,
    concurrency: usize,
    duration: Duration,
    shared_roots: bool,
) -> LevelResult {
    let first = target.load(Ordering::Relaxed);
    let start = Instant::now();
    let next_key = Arc::new(AtomicUsize::new(0));
    let urls: Arc<Vec<String>> = Arc::new(
        keys.iter()
            .map(|k| format!("{base}/api/v1/eth2/sign/{k}"))
            .collect(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let client = client.clone();
        let urls = urls.clone();
        let next_key = next_key.clone();
        let target = target.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut failures = Failures::default();
            while start.elapsed() < duration {
                let j = next_key.fetch_add(1, Ordering::Relaxed);
                let i = j % urls.len();
                let t = if shared_roots {
                    let t = first + (j / urls.len()) as u64;
                    target.fetch_max(t + 1, Ordering::Relaxed);
                    t
                } else {
                    target.fetch_add(1, Ordering::Relaxed)
                };
                let t0 = Instant::now();
                match one_request(&client, &urls[i], t).await {
                    Ok(()) => lat.push(t0.elapsed()),
                    Err(f) => failures.add(f),
                }
            }
            (lat, failures)
        });
    }
    let mut lat = Vec::new();
    let mut failures = Failures::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((l, f)) => {
                lat.extend(l);
                failures.merge(&f);
            }
            Err(_) => failures.add(Failure::Transport),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    LevelResult {
        concurrency,
        ok: lat.len(),
        failed: failures.total(),
        failures,
        rate: lat.len() as f64 / elapsed,
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
    }
}

/// One request per key, all queued at once as at the start of a slot, all with target epoch
/// `target`; at most [`BURST_CONNECTIONS`] are on the wire together, so a client without idle
/// connections opens that many (their handshakes count in the time).
pub async fn burst(
    client: &reqwest::Client,
    base: &str,
    keys: &[String],
    target: u64,
) -> BurstResult {
    let permits = Arc::new(tokio::sync::Semaphore::new(BURST_CONNECTIONS));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in keys {
        let client = client.clone();
        let url = format!("{base}/api/v1/eth2/sign/{k}");
        let permits = permits.clone();
        tasks.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return Err(Failure::Transport);
            };
            one_request(&client, &url, target).await
        });
    }
    let mut ok = 0;
    let mut failures = Failures::default();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(f)) => failures.add(f),
            Err(_) => failures.add(Failure::Transport),
        }
    }
    BurstResult {
        elapsed: start.elapsed(),
        ok,
        failures,
    }
}

/// The `q` quantile of sorted latencies (zero when empty).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_utime_plus_stime_after_the_command_name() {
        // A command name with spaces and a parenthesis; utime 150, stime 57 ticks.
        let stat = "4242 (dv (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 57 3 4 20 0 9 0 \
                    1000 2000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        assert_eq!(parse_stat_cpu(stat), Some(Duration::from_millis(2070)));
        assert_eq!(parse_stat_cpu("4242 (no closing"), None);
        assert_eq!(parse_stat_cpu("4242 (short) S 1 2"), None);
        assert_eq!(
            parse_stat_cpu("1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 5"),
            None,
            "a field that is not a number"
        );
    }

    #[test]
    fn this_process_has_cpu_time_and_this_thread_counts_its_own() {
        let pid = std::process::id();
        let before = process_cpu(pid).expect("own /proc/PID/stat");
        let thread_before = thread_cpu().expect("own schedstat");
        // Busy for at least two clock ticks of CPU time.
        let mut x = 0u64;
        while thread_cpu()
            .expect("schedstat")
            .saturating_sub(thread_before)
            < Duration::from_millis(30)
        {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(process_cpu(pid).expect("stat") > before);
        assert_eq!(
            parse_schedstat("214712548 456144774 72\n"),
            Some(Duration::from_nanos(214_712_548))
        );
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn listening_sockets_are_found_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:2328 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0000000000000000 20 4 30 10 -1\n\
   2: 00000000:2329 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 333 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 9000), vec![111]);
        assert_eq!(listening_inodes(table, 9001), vec![333]);
        assert!(listening_inodes(table, 9002).is_empty());
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000001000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 444 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(v6, 9000), vec![444]);
    }

    #[test]
    fn the_owner_of_a_loopback_listener_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert_eq!(find_listener_pid(port), Some(std::process::id()));
        drop(listener);
        assert_eq!(find_listener_pid(port), None);
    }

    #[test]
    fn only_loopback_urls_have_a_local_port() {
        let port = |u: &str| loopback_port(&reqwest::Url::parse(u).expect("url"));
        assert_eq!(port("https://127.0.0.1:9000"), Some(9000));
        assert_eq!(port("http://127.0.0.2:81/"), Some(81));
        assert_eq!(port("https://LOCALHOST"), Some(443));
        assert_eq!(port("http://[::1]:5"), Some(5));
        assert_eq!(port("https://node-a.example:9000"), None);
        assert_eq!(port("https://10.0.0.1:9000"), None);
    }

    #[test]
    fn failures_are_counted_by_status() {
        let mut f = Failures::default();
        assert_eq!(f.to_string(), "none");
        f.add(Failure::Status(503));
        f.add(Failure::Transport);
        f.add(Failure::Status(412));
        f.add(Failure::Status(412));
        let mut g = Failures::default();
        g.add(Failure::Status(412));
        f.merge(&g);
        assert_eq!(f.total(), 5);
        assert_eq!(f.to_string(), "412: 3, 503: 1, transport: 1");
    }

    #[test]
    fn runs_start_at_the_clock_in_microseconds_or_the_floor() {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_micros() as u64;
        let first = first_target(None);
        assert!(
            first >= now_us && first < now_us + 60_000_000,
            "{first} vs {now_us}"
        );
        assert_eq!(first_target(Some(1 << 60)), 1 << 60);
        assert!(first_target(Some(5)) >= now_us);
        // A later run starts above the targets an earlier run used at under one per us.
        let used_until = first + 1_000;
        std::thread::sleep(Duration::from_millis(2));
        assert!(first_target(None) > used_until);
    }
}
