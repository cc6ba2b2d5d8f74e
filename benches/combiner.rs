//! Combiner benchmark: CPU per threshold signature and bursts, beside raw blst costs measured in
//! the same run on the same cores (these machines are shared and noisy: quote the ratios).
//!
//! 1. raw blst, CPU time per operation: the binding's `verify` (which spreads onto blst's
//!    thread pool), a single-threaded verify, a textbook 3-of-4 combine (full-width Lagrange
//!    coefficients; dvsigner's own small-coefficient combine printed beside it for each
//!    3-subset), and the combiner's batched path
//!    (combine + batch verification, per signature, at batch sizes 1, 8 and 64);
//! 2. a 3-of-4 cluster of real processes (4 `dvsigner signer` over mutual TLS with SQLite
//!    slashing protection, and a `dvsigner combiner`), all on this machine: ATTESTATION
//!    requests through the combiner at 64 in flight; CPU time of the combiner process and of
//!    all five processes per threshold signature (from /proc/PID/stat), and the ratio of the
//!    combiner's to raw (verify + combine);
//! 3. bursts: one ATTESTATION per validator, all sent at once (1,000 validators, then 10,000
//!    with `DVSIGNER_BENCH_BURST_10K=1`): time until the last answer, errors by status.
//!
//! Run: `cargo bench --bench combiner` (`DVSIGNER_BENCH_SECONDS`: the closed-loop duration,
//! default 10; `DVSIGNER_BENCH_BURSTS`: bursts per size, default 5;
//! `DVSIGNER_BENCH_COMBINER_ARGS`: more arguments for the combiner, split at white space).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dvsigner::bls::{Signature, SigningRoot};
use dvsigner::combiner::verify::{combine_and_verify, CombineJob, VerifyStats};
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::{KdfParams, Keystore, Password, SecretKey};
use dvsigner::threshold::{
    combine, combine_full_width, hash_to_g2, split, verify_hashed, ShareIndex,
};
use dvsigner::tls::DevPki;

const NODES: [&str; 4] = ["node-a", "node-b", "node-c", "node-d"];

/// utime + stime of a process (zero when unreadable).
fn proc_cpu(pid: u32) -> Duration {
    dvsigner::cli::bench::process_cpu(pid).unwrap_or_default()
}

/// CPU time of the calling thread (zero when unreadable).
fn thread_cpu() -> Duration {
    dvsigner::cli::bench::thread_cpu().unwrap_or_default()
}

/// Process CPU per operation (every thread, blst's pool included).
fn cpu_per_op<F: FnMut()>(iters: u32, mut f: F) -> Duration {
    let start = proc_cpu(std::process::id());
    for _ in 0..iters {
        f();
    }
    proc_cpu(std::process::id()).saturating_sub(start) / iters
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn start(args: &[String], log: &Path) -> Self {
        let log = std::fs::File::create(log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_dvsigner"))
            .args(args)
            .env("DVSIGNER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start dvsigner");
        Self(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

struct Cluster {
    combiner_url: String,
    /// The combiner's plain-HTTP metrics address (`--metrics-listen`).
    metrics_url: String,
    combiner: Proc,
    nodes: Vec<Proc>,
    client: reqwest::Client,
    keys: Vec<String>,
    _dir: tempfile::TempDir,
}

fn run_ok(args: &[String]) {
    let out = Command::new(env!("CARGO_BIN_EXE_dvsigner"))
        .args(args)
        .output()
        .expect("run dvsigner");
    assert!(
        out.status.success(),
        "dvsigner {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn start_cluster(validators: u64) -> anyhow::Result<Cluster> {
    let dir = tempfile::tempdir()?;
    let servers = [&NODES[..], &["combiner"]].concat();
    let pki = DevPki::generate(&dir.path().join("tls"), &servers, &["combiner-client"])?;
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let whole = dir.path().join("whole");
    std::fs::create_dir_all(&whole)?;
    std::fs::write(whole.join("pw.txt"), "bench")?;
    let t0 = Instant::now();
    for i in 0..validators {
        let ks = Keystore::encrypt(
            &interop_secret_key(i),
            &Password::new("bench".into()),
            KdfParams::insecure_fast(),
            "",
            "",
        )?;
        std::fs::write(whole.join(format!("v{i}.json")), ks.to_json())?;
    }
    let operators = NODES
        .iter()
        .zip(&ports)
        .map(|(n, p)| format!("{n}=https://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let out = dir.path().join("split");
    run_ok(&[
        "split".into(),
        "--keystore".into(),
        s(&whole),
        "--password-file".into(),
        s(&whole.join("pw.txt")),
        "--threshold".into(),
        "3".into(),
        "--shares".into(),
        "4".into(),
        "--operators".into(),
        operators,
        "--out".into(),
        s(&out),
        "--kdf".into(),
        "insecure-fast".into(),
    ]);
    println!(
        "({validators} validators split 3-of-4 in {:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    let mut nodes = Vec::new();
    for (name, port) in NODES.iter().zip(&ports) {
        let id = pki.identity(name).expect("node identity");
        let share = out.join(name);
        nodes.push(Proc::start(
            &[
                "signer".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--data-dir".into(),
                s(&dir.path().join(format!("data-{name}"))),
                "--keystores".into(),
                s(&share.join("keystores")),
                "--keystores-passwords".into(),
                s(&share.join("passwords")),
                "--tls-cert".into(),
                s(&id.cert),
                "--tls-key".into(),
                s(&id.key),
                "--tls-client-ca".into(),
                s(&pki.ca_cert),
            ],
            &dir.path().join(format!("{name}.log")),
        ));
    }
    let cport = free_port();
    let mport = free_port();
    let id = pki.identity("combiner").expect("combiner identity");
    let client_id = pki.identity("combiner-client").expect("client identity");
    let mut combiner_args: Vec<String> = vec![
        "--metrics-listen".into(),
        format!("127.0.0.1:{mport}"),
        "combiner".into(),
        "--listen".into(),
        format!("127.0.0.1:{cport}"),
        "--cluster".into(),
        s(&out.join("cluster.json")),
        "--tls-cert".into(),
        s(&id.cert),
        "--tls-key".into(),
        s(&id.key),
        "--node-ca".into(),
        s(&pki.ca_cert),
        "--client-cert".into(),
        s(&client_id.cert),
        "--client-key".into(),
        s(&client_id.key),
    ];
    combiner_args.extend(
        std::env::var("DVSIGNER_BENCH_COMBINER_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned),
    );
    let combiner = Proc::start(&combiner_args, &dir.path().join("combiner.log"));
    let pem = std::fs::read(&pki.ca_cert)?;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
        .pool_max_idle_per_host(20_000)
        .timeout(Duration::from_secs(60))
        .build()?;
    let combiner_url = format!("https://127.0.0.1:{cport}");
    let keys: Vec<String> = (0..validators)
        .map(|i| interop_secret_key(i).public_key().bytes().to_hex())
        .collect();
    // Ready when a signature comes back (every node has loaded its keys).
    let t0 = Instant::now();
    let mut ready = false;
    for _ in 0..1200 {
        let mut ok = true;
        for k in [&keys[0], &keys[keys.len() - 1]] {
            let r = client
                .post(format!("{combiner_url}/api/v1/eth2/sign/{k}"))
                .header("content-type", "application/json")
                .body(attestation(1, 0))
                .send()
                .await;
            ok &= matches!(r, Ok(r) if r.status().is_success());
        }
        if ok {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::ensure!(
        ready,
        "cluster not ready after 300 s (logs in {:?})",
        dir.path()
    );
    println!("(cluster ready in {:.1} s)", t0.elapsed().as_secs_f64());
    // Let the combiner's connection warm-up finish before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(Cluster {
        combiner_url,
        metrics_url: format!("http://127.0.0.1:{mport}/metrics"),
        combiner,
        nodes,
        client,
        keys,
        _dir: dir,
    })
}

/// An ATTESTATION with source epoch 0, target `target` and committee `index` (validators of one
/// committee sign the same root).
fn attestation(target: u64, index: u64) -> String {
    format!(
        concat!(
            r#"{{"type":"ATTESTATION","fork_info":{{"fork":{{"previous_version":"0x04000000","#,
            r#""current_version":"0x05000000","epoch":"364032"}},"genesis_validators_root":"#,
            r#""0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"}},"#,
            r#""attestation":{{"slot":"{slot}","index":"{index}","beacon_block_root":"#,
            r#""0x{root}","source":{{"epoch":"0","root":"0x{root}"}},"#,
            r#""target":{{"epoch":"{target}","root":"0x{root}"}}}}}}"#
        ),
        slot = target.saturating_mul(32),
        index = index,
        target = target,
        root = "ab".repeat(32)
    )
}

/// Status of one sign request (0: transport error).
async fn sign(client: &reqwest::Client, url: &str, body: String) -> (u16, Option<String>) {
    match client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let _ = r.bytes().await;
            (status, retry)
        }
        Err(_) => (0, None),
    }
}

struct Cpu {
    combiner: Duration,
    nodes: Duration,
}

/// The combiner's node requests so far, from its metrics: partials (ok + late + wrong),
/// other answers (refusals and failures), and requests not sent (spares or waiting requests
/// dropped once their sign request was answered, or shed).
#[derive(Debug, Default, Clone, Copy)]
struct NodeRequests {
    partials: f64,
    others: f64,
    not_sent: f64,
}

impl std::ops::Sub for NodeRequests {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            partials: self.partials - o.partials,
            others: self.others - o.others,
            not_sent: self.not_sent - o.not_sent,
        }
    }
}

impl std::fmt::Display for NodeRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node requests: {:.0} partials, {:.0} other answers, {:.0} not sent",
            self.partials, self.others, self.not_sent
        )
    }
}

async fn node_requests(c: &Cluster) -> NodeRequests {
    let text = match c.client.get(&c.metrics_url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let mut n = NodeRequests::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        if line.starts_with("dvsigner_combiner_partials") {
            if ["ok", "late", "wrong"]
                .iter()
                .any(|r| line.contains(&format!("result=\"{r}\"")))
            {
                n.partials += v;
            } else {
                n.others += v;
            }
        } else if line.starts_with("dvsigner_combiner_node_not_sent") {
            n.not_sent += v;
        }
    }
    n
}

fn cluster_cpu(c: &Cluster) -> Cpu {
    Cpu {
        combiner: proc_cpu(c.combiner.pid()),
        nodes: c.nodes.iter().map(|n| proc_cpu(n.pid())).sum(),
    }
}

/// Closed loop at `concurrency` for `seconds`; distinct targets (distinct roots) per request.
async fn closed_loop(
    c: &Cluster,
    target: &Arc<AtomicU64>,
    concurrency: usize,
    seconds: f64,
) -> (usize, usize, Duration, Cpu, Cpu) {
    let start = Instant::now();
    let before = cluster_cpu(c);
    let next = Arc::new(AtomicUsize::new(0));
    let urls: Arc<Vec<String>> = Arc::new(
        c.keys
            .iter()
            .map(|k| format!("{}/api/v1/eth2/sign/{k}", c.combiner_url))
            .collect(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, urls, target) =
            (c.client.clone(), next.clone(), urls.clone(), target.clone());
        tasks.spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            while start.elapsed().as_secs_f64() < seconds {
                let i = next.fetch_add(1, Ordering::Relaxed) % urls.len();
                let t = target.fetch_add(1, Ordering::Relaxed);
                if sign(&client, &urls[i], attestation(t, 0)).await.0 == 200 {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        });
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(Ok((o, f))) = tasks.join_next().await {
        ok += o;
        failed += f;
    }
    let elapsed = start.elapsed();
    let after = cluster_cpu(c);
    (ok, failed, elapsed, before, after)
}

/// One request per validator, all sent at once; time until the last answer and statuses.
async fn burst(c: &Cluster, target: u64) -> (Duration, BTreeMap<u16, usize>, usize) {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, k) in c.keys.iter().enumerate() {
        let client = c.client.clone();
        let url = format!("{}/api/v1/eth2/sign/{k}", c.combiner_url);
        // 64 committees: validators of one committee sign the same root.
        let body = attestation(target, i as u64 % 64);
        tasks.spawn(async move { sign(&client, &url, body).await });
    }
    let mut statuses = BTreeMap::new();
    let mut retry_after = 0;
    while let Some(r) = tasks.join_next().await {
        let (status, retry) = r.unwrap_or((0, None));
        *statuses.entry(status).or_insert(0) += 1;
        if status == 503 && retry.is_some() {
            retry_after += 1;
        }
    }
    (start.elapsed(), statuses, retry_after)
}

async fn bursts(c: &Cluster, rounds: usize, target: &Arc<AtomicU64>) {
    // Not counted: opens the client's connections to the combiner.
    let t = target.fetch_add(1, Ordering::Relaxed);
    let (d, st, _) = burst(c, t).await;
    println!(
        "warm-up burst ({} validators): {:.3} s {st:?}",
        c.keys.len(),
        d.as_secs_f64()
    );
    let mut times = Vec::new();
    for r in 0..rounds {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let t = target.fetch_add(1, Ordering::Relaxed);
        let before = cluster_cpu(c);
        let requests_before = node_requests(c).await;
        let (d, st, retry) = burst(c, t).await;
        let after = cluster_cpu(c);
        // Late partials arrive after the last answer: let them in before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let requests = node_requests(c).await - requests_before;
        let ok = st.get(&200).copied().unwrap_or(0);
        println!(
            "burst {} ({} validators): last answer after {:.3} s; statuses {st:?} (503 with Retry-After: {retry}); CPU combiner {:.2} s, nodes {:.2} s; {requests}",
            r + 1,
            c.keys.len(),
            d.as_secs_f64(),
            (after.combiner - before.combiner).as_secs_f64(),
            (after.nodes - before.nodes).as_secs_f64(),
        );
        times.push((d, ok));
    }
    times.sort();
    if let Some((p50, _)) = times.get(times.len() / 2) {
        println!(
            "burst {} validators: p50 of {rounds} = {:.3} s (min {:.3} s, max {:.3} s)",
            c.keys.len(),
            p50.as_secs_f64(),
            times[0].0.as_secs_f64(),
            times[times.len() - 1].0.as_secs_f64()
        );
    }
}

fn raw_figures() -> (Duration, Duration, Duration) {
    let sk = SecretKey::random();
    let (shares, commitments) = split(&sk, 3, 4).expect("split");
    let group = commitments.group_public_key().clone();
    let root = SigningRoot([7; 32]);
    let partials: Vec<(ShareIndex, Signature)> = shares
        .iter()
        .take(3)
        .map(|s| (s.index, s.secret.sign(&root)))
        .collect();
    let whole = sk.sign(&root);
    let verify_binding = cpu_per_op(600, || {
        std::hint::black_box(whole.verify(&group, &root.0));
    });
    let t0 = thread_cpu();
    for _ in 0..600 {
        std::hint::black_box(verify_hashed(&whole, &group, &hash_to_g2(&root.0)));
    }
    let verify_single = (thread_cpu() - t0) / 600;
    // The raw baseline is the textbook combination (full-width Lagrange coefficients, one
    // multi-scalar multiplication); dvsigner's own (small integer coefficients) is printed
    // beside it, for each of the four 3-subsets a 3-of-4 combiner can get.
    let indices: Vec<ShareIndex> = partials.iter().map(|(i, _)| *i).collect();
    let points: Vec<Signature> = partials.iter().map(|(_, s)| s.clone()).collect();
    let combine_cpu = cpu_per_op(600, || {
        std::hint::black_box(combine_full_width(&indices, &points).ok());
    });
    let all: Vec<(ShareIndex, Signature)> = shares
        .iter()
        .map(|s| (s.index, s.secret.sign(&root)))
        .collect();
    let subsets: Vec<Duration> = (0..4)
        .map(|skip| {
            let chosen: Vec<(ShareIndex, Signature)> = all
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != skip)
                .map(|(_, e)| e.clone())
                .collect();
            cpu_per_op(600, || {
                std::hint::black_box(combine(&chosen, 3).ok());
            })
        })
        .collect();
    println!("== raw blst (process CPU per operation)");
    println!(
        "verify, blst binding (its thread pool)  {:>7.1} us",
        us(verify_binding)
    );
    println!(
        "verify, single-threaded (hash + check)  {:>7.1} us",
        us(verify_single)
    );
    println!(
        "combine 3-of-4, textbook (full width)   {:>7.1} us",
        us(combine_cpu)
    );
    println!(
        "combine 3-of-4, dvsigner's (small coefficients): {{2,3,4}} {:.1} us, {{1,3,4}} {:.1} us, {{1,2,4}} {:.1} us, {{1,2,3}} {:.1} us",
        us(subsets[0]),
        us(subsets[1]),
        us(subsets[2]),
        us(subsets[3])
    );
    // The combiner's path per signature: combine + batch verification, every root distinct
    // (hashed once: the process keeps its latest hashed roots, and the partials' signing
    // above already hashed them), then all on one root (one Miller loop per batch).
    let validators: Vec<(PublicKeyG, Vec<(ShareIndex, Signature)>)> = (0..64u8)
        .map(|i| {
            let sk = SecretKey::random();
            let (shares, c) = split(&sk, 3, 4).expect("split");
            let root = SigningRoot([i; 32]);
            // Each validator's partials from a different 3-subset, as the first three nodes
            // to answer vary.
            let p = shares
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != usize::from(i % 4))
                .map(|(_, s)| (s.index, s.secret.sign(&root)))
                .collect();
            (c.group_public_key().clone(), p)
        })
        .collect();
    // The same 64 validators' partials over one root (one slot's attesters since Electra).
    let one_root: Vec<(PublicKeyG, Vec<(ShareIndex, Signature)>)> = (0..64u8)
        .map(|i| {
            let sk = SecretKey::random();
            let (shares, c) = split(&sk, 3, 4).expect("split");
            let p = shares
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != usize::from(i % 4))
                .map(|(_, s)| (s.index, s.secret.sign(&SigningRoot([200; 32]))))
                .collect();
            (c.group_public_key().clone(), p)
        })
        .collect();
    for (batch, shared) in [(1usize, false), (8, false), (64, false), (64, true)] {
        let jobs: Vec<CombineJob> = if shared { &one_root } else { &validators }
            .iter()
            .take(batch)
            .enumerate()
            .map(|(i, (g, p))| CombineJob {
                partials: p.clone(),
                threshold: 3,
                group: g.clone(),
                root: SigningRoot(if shared { [200; 32] } else { [i as u8; 32] }),
                hashed: None,
            })
            .collect();
        let stats = VerifyStats::default();
        let rounds = (640 / batch).max(10) as u32;
        let t0 = thread_cpu();
        for _ in 0..rounds {
            let out = combine_and_verify(&jobs, &stats);
            assert!(out.iter().all(|o| o.signature.is_some()));
        }
        let per_sig = (thread_cpu() - t0) / (rounds * batch as u32);
        println!(
            "combiner path (combine + batch verify; each root hashed once per process), batch {batch:>2}{}: {:>7.1} us per signature = {:.2} x (binding verify + combine), {:.2} x (single-threaded verify + combine)",
            if shared { ", one root" } else { ", distinct roots" },
            us(per_sig),
            per_sig.as_secs_f64() / (verify_binding + combine_cpu).as_secs_f64(),
            per_sig.as_secs_f64() / (verify_single + combine_cpu).as_secs_f64(),
        );
    }
    (verify_binding, verify_single, combine_cpu)
}

type PublicKeyG = dvsigner::bls::PublicKey;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::var("DVSIGNER_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let rounds: usize = std::env::var("DVSIGNER_BENCH_BURSTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("{} cores", num_cpus::get());
    let (verify_binding, verify_single, combine_cpu) =
        tokio::task::spawn_blocking(raw_figures).await?;
    let raw = verify_binding + combine_cpu;

    let target = Arc::new(AtomicU64::new(1000));
    let cluster = start_cluster(1000).await?;
    println!("== 3-of-4 cluster of processes (4 signers with SQLite + combiner, mutual TLS), 1,000 validators");
    // Warm-up, then the measured level.
    let _ = closed_loop(&cluster, &target, 64, 2.0).await;
    let requests_before = node_requests(&cluster).await;
    let (ok, failed, elapsed, before, after) = closed_loop(&cluster, &target, 64, seconds).await;
    let requests = node_requests(&cluster).await - requests_before;
    let comb = (after.combiner - before.combiner) / ok.max(1) as u32;
    let nodes = (after.nodes - before.nodes) / ok.max(1) as u32;
    println!(
        "64 in flight: {:.0} threshold signatures/s, ok {ok}, failed {failed}; {requests}",
        ok as f64 / elapsed.as_secs_f64()
    );
    println!(
        "CPU per threshold signature: combiner {:.0} us = {:.2} x raw (binding verify + combine = {:.0} us), {:.2} x (single-threaded verify + combine = {:.0} us); nodes {:.0} us; total {:.0} us",
        us(comb),
        comb.as_secs_f64() / raw.as_secs_f64(),
        us(raw),
        comb.as_secs_f64() / (verify_single + combine_cpu).as_secs_f64(),
        us(verify_single + combine_cpu),
        us(nodes),
        us(comb + nodes)
    );
    bursts(&cluster, rounds, &target).await;
    drop(cluster);

    if std::env::var("DVSIGNER_BENCH_BURST_10K").is_ok_and(|v| v == "1") {
        let cluster = start_cluster(10_000).await?;
        println!("== the same cluster with 10,000 validators");
        bursts(&cluster, rounds.min(3), &target).await;
    }
    Ok(())
}
