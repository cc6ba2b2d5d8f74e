//! A signer node holding whole keys, as operators run it: the real `dvsigner signer` process,
//! HTTPS with mutual TLS and keep-alive, SQLite slashing protection on (every attestation is
//! checked and recorded durably before its signature leaves). The load comes from this process
//! (`dvsigner bench`'s functions) on the same cores.
//!
//! 1. Closed loop: ATTESTATION requests for 1,000 validators at 64 in flight, in interleaved
//!    rounds with the raw blst baseline (rounds: `DVSIGNER_BENCH_ROUNDS`, default 3; seconds per
//!    round: `DVSIGNER_BENCH_SECONDS`, default 5). Per round: the node process's CPU time per
//!    signature (`/proc/PID/stat`) over the CPU time of one raw blst signature (thread CPU
//!    time), and the rate over the raw all-core blst rate. Medians of the rounds are printed.
//!    Every request has a target of its own, so no two requests share a signing root (the
//!    worst case: a signer reuses a root's hash to the curve across keys); with
//!    `DVSIGNER_BENCH_LOOP_SHARED_ROOTS=1` the validators take turns on one target after the
//!    other, all signing the same root as one slot's attesters do. The raw baseline hashes
//!    every root.
//! 2. Bursts (all validators sign the same root, as at the start of a slot): one attestation per validator, all at once, on new connections (the handshakes
//!    count), for 1,000 and 10,000 validators (`DVSIGNER_BENCH_BURSTS`, default "1000,10000";
//!    `DVSIGNER_BENCH_BURST_RUNS` bursts each, default 5): p50 and worst time, failures, the
//!    node's CPU and this process's (the load generator's) CPU per signature. Each size twice:
//!    an HTTP/1.1 client (up to 256 new connections at once), and a client offering HTTP/2 (one
//!    new connection carrying every request), the two alternating run by run
//!    (`DVSIGNER_BENCH_BURST_PROTOCOLS`: "1.1", "2", default both).
//!
//! Run: `cargo bench --bench node`.

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dvsigner::cli::bench::{
    burst, first_target, percentile, raw_blst_rate, timed_level, Failures, ServerCpu,
    BURST_CONNECTIONS,
};
use support::{median, Node, NodeOptions};

/// The bursts of one size over one protocol.
#[derive(Default)]
struct BurstRuns {
    /// Time of each burst until its last answer.
    times: Vec<Duration>,
    failures: Failures,
    /// The node's CPU per signature, microseconds, per burst.
    cpus: Vec<f64>,
    /// This process's (the load generator's) CPU per signature, microseconds, per burst.
    own: Vec<f64>,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let rounds: usize = env("DVSIGNER_BENCH_ROUNDS", 3);
    let seconds: f64 = env("DVSIGNER_BENCH_SECONDS", 5.0);
    let burst_runs: usize = env("DVSIGNER_BENCH_BURST_RUNS", 5);
    let bursts: Vec<usize> = std::env::var("DVSIGNER_BENCH_BURSTS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let loop_validators = 1000;
    let n = bursts
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(loop_validators);
    let cores = num_cpus::get();

    let (ks, pw) = support::keystores(n);
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = support::pki(dir.path());
    let mut node = Node::spawn(&NodeOptions {
        dir: dir.path(),
        pki: &pki,
        keys: (&ks, &pw),
        key_cache: false,
    });
    // `DVSIGNER_BENCH_LOOP_HTTP2=1`: the closed loop over HTTP/2 (one connection) instead.
    let loop_http2 = env("DVSIGNER_BENCH_LOOP_HTTP2", 0) == 1;
    // `DVSIGNER_BENCH_LOOP_SHARED_ROOTS=1`: the closed loop's validators take turns on one
    // target after the other (all sign the same root, as one slot's attesters do) instead of
    // a target per request (every root distinct, the default: no hashed root is ever reused).
    let shared_roots = env("DVSIGNER_BENCH_LOOP_SHARED_ROOTS", 0) == 1;
    let client = support::client(&pki, BURST_CONNECTIONS, loop_http2);
    node.wait_keys(&client, n, Instant::now(), Duration::from_secs(600))
        .await;
    let pid = node.pid();
    let keys: Vec<String> = client
        .get(format!("{}/api/v1/eth2/publicKeys", node.url))
        .send()
        .await
        .expect("publicKeys")
        .json()
        .await
        .expect("keys");
    let target = Arc::new(AtomicU64::new(first_target(None)));

    println!(
        "== signer node process, whole keys, HTTPS + mutual TLS keep-alive, SQLite slashing protection, {cores} cores"
    );
    println!(
        "closed loop: {loop_validators} validators, 64 in flight, {rounds} rounds of {seconds} s (each: raw blst, then the node), {}",
        if shared_roots { "the validators taking turns on one target after the other (shared roots)" } else { "a target per request (distinct roots)" }
    );
    // Warm-up: one request per validator (its first attestation becomes its low watermark, so
    // it must come before the concurrent ones), connections opened.
    let warm = burst(
        &client,
        &node.url,
        &keys,
        target.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    )
    .await;
    assert_eq!(warm.ok, n, "warm-up failures: {}", warm.failures);
    let (mut cpu_ratios, mut rate_ratios, mut cpus, mut raws) = (vec![], vec![], vec![], vec![]);
    let mut raw_rates = vec![];
    let mut failures = Failures::default();
    for round in 1..=rounds {
        let raw = raw_blst_rate(Duration::from_secs(2)).await;
        let cpu = ServerCpu::start(pid).expect("node /proc/PID/stat");
        let r = timed_level(
            &client,
            &node.url,
            &keys[..loop_validators],
            &target,
            64,
            Duration::from_secs_f64(seconds),
            shared_roots,
        )
        .await;
        let used = cpu.elapsed().expect("node /proc/PID/stat");
        failures.merge(&r.failures);
        let per_sig = used.as_secs_f64() / r.ok.max(1) as f64;
        let raw_cpu = raw.cpu_per_signature.as_secs_f64();
        println!(
            "round {round}: node {:.0}/s (raw {cores}-core blst {:.0}/s: {:.2} x), p50 {:.2} ms p99 {:.2} ms, node CPU {:.1} us/signature, raw blst {:.1} us: {:.3} x, failures: {}",
            r.rate,
            raw.all_cores,
            r.rate / raw.all_cores,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            per_sig * 1e6,
            raw_cpu * 1e6,
            per_sig / raw_cpu,
            r.failures
        );
        raw_rates.push(raw.all_cores);
        cpu_ratios.push(per_sig / raw_cpu);
        rate_ratios.push(r.rate / raw.all_cores);
        cpus.push(per_sig * 1e6);
        raws.push(raw_cpu * 1e6);
    }
    println!(
        "closed loop, median of {rounds}: node CPU {:.1} us/signature vs raw blst {:.1} us = {:.3} x (target <= 1.15); rate {:.2} x raw {cores}-core blst (target >= 0.80); failures: {failures}",
        median(&mut cpus),
        median(&mut raws),
        median(&mut cpu_ratios),
        median(&mut rate_ratios),
    );

    let raw_rate = median(&mut raw_rates);
    let me = std::process::id();
    // `DVSIGNER_BENCH_BURST_PROTOCOLS`: "1.1", "2" or both (default).
    let protocols =
        std::env::var("DVSIGNER_BENCH_BURST_PROTOCOLS").unwrap_or_else(|_| "1.1,2".into());
    let protocols: Vec<bool> = [("1.1", false), ("2", true)]
        .into_iter()
        .filter(|(name, _)| protocols.split(',').any(|p| p.trim() == *name))
        .map(|(_, http2)| http2)
        .collect();
    for &size in &bursts {
        let mut runs: [BurstRuns; 2] = Default::default();
        for _ in 0..burst_runs.max(1) {
            for (&http2, runs) in protocols.iter().zip(&mut runs) {
                // A new client per burst: every connection is new, its handshake counts.
                let fresh = support::client(&pki, BURST_CONNECTIONS, http2);
                let t = target.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let cpu = ServerCpu::start(pid).expect("node /proc/PID/stat");
                let mine = ServerCpu::start(me).expect("own /proc/PID/stat");
                let r = burst(&fresh, &node.url, &keys[..size], t).await;
                let used = cpu.elapsed().expect("stat");
                let used_here = mine.elapsed().expect("stat");
                runs.failures.merge(&r.failures);
                runs.times.push(r.elapsed);
                runs.cpus
                    .push(used.as_secs_f64() * 1e6 / r.ok.max(1) as f64);
                runs.own
                    .push(used_here.as_secs_f64() * 1e6 / r.ok.max(1) as f64);
                drop(fresh);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        for (&http2, runs) in protocols.iter().zip(&mut runs) {
            let BurstRuns {
                times,
                failures,
                cpus,
                own,
            } = runs;
            times.sort_unstable();
            let how = if http2 {
                "HTTP/2, one new connection".to_owned()
            } else {
                format!("HTTP/1.1, {BURST_CONNECTIONS} new connections at once")
            };
            let p50 = percentile(times, 0.5).as_secs_f64();
            // The floor: raw blst signing of the same count on every core (rounds' median rate).
            let floor = size as f64 / raw_rate;
            println!(
                "burst of {size} validators, {} runs ({how}): p50 {p50:.3} s = {:.2} x raw blst on {cores} cores ({floor:.3} s), min {:.3} s, max {:.3} s, node CPU {:.1} us/signature, load generator CPU {:.1} us/signature, failures: {failures}",
                times.len(),
                p50 / floor,
                times[0].as_secs_f64(),
                times[times.len() - 1].as_secs_f64(),
                median(cpus),
                median(own),
            );
        }
    }
    node.stop();
}
