//! A real consensus client end to end: an unmodified Lodestar 1.5.1 devnet finalizes through a
//! 3-of-4 dvsigner cluster.
//!
//! Processes (all on 127.0.0.1, all killed by PID at the end, see `common::process::Proc`):
//! - `lodestar dev` beacon node: minimal preset, interop genesis validators, short slots, Altair,
//!   Bellatrix (mock execution engine) and Capella scheduled at epochs 1, 2 and 3; it holds no key.
//! - four `dvsigner signer` nodes (mutual TLS, their own SQLite slashing databases) holding
//!   3-of-4 shares made by `dvsigner split` of the interop keys, and a `dvsigner combiner`;
//!   nodes and combiner load the chain config the beacon node serves (`/eth/v1/config/spec`).
//! - `lodestar validator` whose only signer is the combiner (`--externalSigner.url https://...`,
//!   our CA through `NODE_EXTRA_CA_CERTS`).
//!
//! Pass: the chain finalizes past the last fork within a bounded time; there is a block of every
//! fork; every sign type Lodestar uses went through the combiner; the validator logs no error;
//! then one signer node is killed and the chain finalizes two more epochs with no failed sign
//! request. The last line printed holds the figures.
//!
//! The second test runs the same devnet with TWO unmodified Lodestar validator clients, each with
//! its own `--graffiti` and its own combiner, both signing for all validators through the same
//! four nodes (cluster history sync and agreement on): the chain finalizes, every slot after the
//! first epoch has a block, no block carries a slashing, and each client's only errors are the
//! 412s of the races it lost (as many as its combiner answered); then one node is killed and the
//! chain finalizes two more epochs the same way.
//!
//! Lodestar comes from `tests/lodestar/` (`npm ci` there, as `.ci/run` does; the lock file pins
//! the 2023 dependency tree Lodestar 1.5.1 needs). Without it the test fails, naming the command.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{
    cluster_pki, https_operators, peer_sync_args, split_interop, tls_signer_args,
    write_peer_allowlist, NODES,
};
use common::process::{free_port, Proc};
use common::requests::https_client;
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::tls::DevPki;
use serde_json::Value;

/// Writes a line to stderr past the test harness's output capture, so CI logs show the progress
/// and the figures of a passing run too.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Interop genesis validators, all signed by the cluster.
const VALIDATORS: u64 = 8;
const SECONDS_PER_SLOT: u64 = 3;
/// Minimal preset.
const SLOTS_PER_EPOCH: u64 = 8;
const ALTAIR_EPOCH: u64 = 1;
const BELLATRIX_EPOCH: u64 = 2;
const CAPELLA_EPOCH: u64 = 3;
/// Finalized epoch to reach before killing a node: past the last fork.
const FINALIZED_TARGET: u64 = CAPELLA_EPOCH + 1;
/// Further finalized epochs required with one node down.
const FINALIZED_AFTER_KILL: u64 = 2;
/// Whole-test bound: the test must finish within 10 minutes.
const TEST_BOUND: Duration = Duration::from_secs(9 * 60);
/// Time from start to genesis: beacon node, cluster and validator client start meanwhile.
const GENESIS_DELAY_SECS: u64 = 20;

/// Sign types Lodestar 1.5.1 sends without a builder (docs/web3signer-compatibility.md).
const EXPECTED_TYPES: [&str; 8] = [
    "ATTESTATION",
    "BLOCK_V2",
    "RANDAO_REVEAL",
    "AGGREGATION_SLOT",
    "AGGREGATE_AND_PROOF",
    "SYNC_COMMITTEE_MESSAGE",
    "SYNC_COMMITTEE_SELECTION_PROOF",
    "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF",
];

fn lodestar_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lodestar/node_modules/.bin/lodestar")
}

/// Starts a non-dvsigner program (node) with its output in `log`, as a [`Proc`] (killed by PID
/// on drop).
fn spawn(
    name: &str,
    program: &Path,
    args: &[String],
    envs: &[(&str, String)],
    cwd: &Path,
    log: &Path,
) -> Proc {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("clone");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name} ({}): {e}", program.display()));
    Proc {
        child,
        name: name.to_owned(),
        log: log.to_owned(),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The chain parameters every Lodestar process gets (they must agree).
fn chain_params() -> Vec<String> {
    let mut a = Vec::new();
    for (k, v) in [
        ("SECONDS_PER_SLOT", SECONDS_PER_SLOT),
        ("ALTAIR_FORK_EPOCH", ALTAIR_EPOCH),
        ("BELLATRIX_FORK_EPOCH", BELLATRIX_EPOCH),
        ("CAPELLA_FORK_EPOCH", CAPELLA_EPOCH),
    ] {
        a.push(format!("--params.{k}"));
        a.push(v.to_string());
    }
    a
}

/// The test's working directory (logs, databases), removed on success and kept, named on
/// stderr, when the test fails.
struct KeepOnFailure(Option<tempfile::TempDir>);

impl KeepOnFailure {
    fn path(&self) -> PathBuf {
        self.0
            .as_ref()
            .map(|d| d.path().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for KeepOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.0.take() {
                say!("logs kept in {}", d.keep().display());
            }
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn dump(procs: &[&Proc]) -> String {
    procs
        .iter()
        .map(|p| {
            format!(
                "--- {} ({}):\n{}",
                p.name,
                p.log.display(),
                tail(&p.log_text(), 40)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let r = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

async fn finalized_epoch(client: &reqwest::Client, rest: u16) -> Option<u64> {
    let v = get_json(
        client,
        &format!("http://127.0.0.1:{rest}/eth/v1/beacon/states/head/finality_checkpoints"),
    )
    .await?;
    v["data"]["finalized"]["epoch"].as_str()?.parse().ok()
}

/// Metrics of one scrape: (metric name, labels) -> value.
type Scrape = BTreeMap<(String, BTreeMap<String, String>), f64>;

async fn scrape(client: &reqwest::Client, port: u16) -> Scrape {
    let text = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics reachable")
        .text()
        .await
        .expect("metrics text");
    let mut out = Scrape::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let mut labels = BTreeMap::new();
                for pair in rest.trim_end_matches('}').split(',') {
                    if let Some((k, v)) = pair.split_once('=') {
                        labels.insert(k.to_owned(), v.trim_matches('"').to_owned());
                    }
                }
                (n.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        out.insert((name, labels), value);
    }
    out
}

/// Sign requests answered by the combiner, by (type, status).
fn sign_counts(s: &Scrape) -> BTreeMap<(String, String), u64> {
    s.iter()
        .filter(|((name, _), _)| name == "dvsigner_sign_requests_total")
        .map(|((_, l), v)| {
            (
                (l["type"].clone(), l["status"].clone()),
                // invariant: counters are non-negative integers.
                *v as u64,
            )
        })
        .collect()
}

/// Failed sign requests (status other than 200), all types.
fn failures(s: &Scrape) -> u64 {
    sign_counts(s)
        .iter()
        .filter(|((_, status), _)| status != "200")
        .map(|(_, n)| n)
        .sum()
}

/// A latency quantile (seconds) of all sign requests, from the combiner's histogram (upper bound
/// of the bucket holding the quantile).
fn latency_quantile(s: &Scrape, q: f64) -> f64 {
    let mut buckets: BTreeMap<u64, f64> = BTreeMap::new();
    for ((name, l), v) in s {
        if name == "dvsigner_sign_duration_seconds_bucket" {
            let le = l["le"].parse::<f64>().unwrap_or(f64::INFINITY);
            // Sort key: microseconds (le is a power-of-two multiple of 0.5 ms, or +Inf).
            let key = if le.is_finite() {
                (le * 1e6) as u64
            } else {
                u64::MAX
            };
            *buckets.entry(key).or_default() += v;
        }
    }
    let total = buckets.values().last().copied().unwrap_or(0.0);
    for (le, cumulative) in &buckets {
        if *cumulative >= q * total {
            return if *le == u64::MAX {
                f64::INFINITY
            } else {
                *le as f64 / 1e6
            };
        }
    }
    f64::NAN
}

/// Lines Lodestar logged at level error (its format: `... error: message`).
fn error_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("error:") || l.contains("\u{1b}[31merror"))
        .map(str::to_owned)
        .collect()
}

/// The installed Lodestar, or a failure naming the install command.
fn lodestar_installed() -> PathBuf {
    let lodestar = lodestar_bin();
    assert!(
        lodestar.exists(),
        "Lodestar is not installed at {}: run `npm ci --prefix tests/lodestar` (as .ci/run does); \
         it needs node and npm",
        lodestar.display()
    );
    lodestar
}

/// A new working directory named `dvsigner-lodestar-…`, kept on failure.
fn work_dir() -> KeepOnFailure {
    KeepOnFailure(Some(
        tempfile::Builder::new()
            .prefix("dvsigner-lodestar-")
            .tempdir()
            .expect("tempdir"),
    ))
}

/// `lodestar dev` in `base/beacon` (log `base/beacon.log`): interop genesis of [`VALIDATORS`]
/// validators [`GENESIS_DELAY_SECS`] from now, no keys, REST API on 127.0.0.1. Returns the
/// process and the REST port.
fn start_beacon(lodestar: &Path, base: &Path) -> (Proc, u16) {
    let rest = free_port();
    let genesis_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + GENESIS_DELAY_SECS;
    let bn_dir = base.join("beacon");
    std::fs::create_dir_all(&bn_dir).expect("mkdir");
    let mut bn_args = strings(&[
        "dev",
        "--preset",
        "minimal",
        "--dataDir",
        &bn_dir.join("data").display().to_string(),
        "--genesisValidators",
        &VALIDATORS.to_string(),
        "--genesisTime",
        &genesis_time.to_string(),
        "--execution.engineMock",
        "--eth1",
        "false",
        "--discv5",
        "false",
        "--listenAddress",
        "127.0.0.1",
        "--port",
        &free_port().to_string(),
        "--rest.address",
        "127.0.0.1",
        "--rest.port",
        &rest.to_string(),
        "--logLevel",
        "info",
    ]);
    bn_args.extend(chain_params());
    let beacon = spawn(
        "lodestar beacon",
        lodestar,
        &bn_args,
        &[],
        &bn_dir,
        &base.join("beacon.log"),
    );
    (beacon, rest)
}

/// The chain config as the beacon node serves it (`/eth/v1/config/spec`; JSON is YAML) written
/// to `base/config.yaml`, for nodes and combiners: its path. Waits up to 60 s for the REST API.
async fn chain_config(http: &reqwest::Client, rest: u16, beacon: &mut Proc, base: &Path) -> String {
    let mut spec = None;
    let wait_spec = Instant::now();
    while spec.is_none() && wait_spec.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(s)) = beacon.child.try_wait() {
            panic!("beacon node exited ({s}):\n{}", beacon.log_text());
        }
        spec = get_json(http, &format!("http://127.0.0.1:{rest}/eth/v1/config/spec")).await;
        if spec.is_none() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let spec = spec.unwrap_or_else(|| {
        panic!(
            "beacon node REST API not up after 60 s:\n{}",
            beacon.log_text()
        )
    });
    assert_eq!(spec["data"]["PRESET_BASE"], "minimal", "{spec}");
    let config = base.join("config.yaml");
    std::fs::write(&config, spec["data"].to_string()).expect("config");
    config.display().to_string()
}

/// The four signer nodes on `ports` with the shares under `shares` (as `dvsigner split` wrote
/// them), the chain config `config`, data in `base/data/<node>`, logs `base/<node>.log`, and
/// `extra(node)` appended to each one's arguments.
fn start_nodes(
    pki: &DevPki,
    base: &Path,
    ports: &[u16],
    shares: &Path,
    config: &str,
    extra: impl Fn(&str) -> Vec<String>,
) -> Vec<Proc> {
    NODES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut args = tls_signer_args(
                pki,
                name,
                ports[i],
                &base.join(format!("data/{name}")),
                &shares.join(name),
            );
            args.extend(["--network".into(), config.to_owned()]);
            args.extend(extra(name));
            Proc::start(name, &args, &base.join(format!("{name}.log")))
        })
        .collect()
}

/// A combiner called `name` (log `base/<name>.log`) for `cluster_json` and the chain config:
/// the process, its port and its metrics port.
fn start_combiner(
    pki: &DevPki,
    base: &Path,
    name: &str,
    cluster_json: &Path,
    config: &str,
) -> (Proc, u16, u16) {
    let port = free_port();
    let metrics_port = free_port();
    let mut args: Vec<String> = vec![
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    args.extend(common::cluster::combiner_args(pki, port, cluster_json));
    args.extend(["--network".into(), config.to_owned()]);
    let combiner = Proc::start(name, &args, &base.join(format!("{name}.log")));
    (combiner, port, metrics_port)
}

/// Waits (60 s bound) until the combiner on `port` sees all four nodes UP.
async fn wait_combiner_sees_all_nodes(
    tls_client: &reqwest::Client,
    combiner: &mut Proc,
    port: u16,
    nodes: &[Proc],
) {
    let wait_up = Instant::now();
    loop {
        if let Ok(Some(s)) = combiner.child.try_wait() {
            panic!("{} exited ({s}):\n{}", combiner.name, combiner.log_text());
        }
        let health = get_json(tls_client, &format!("https://127.0.0.1:{port}/healthcheck")).await;
        let up = health
            .as_ref()
            .and_then(|v| v["checks"][1]["checks"].as_array().cloned())
            .map(|a| a.iter().filter(|c| c["status"] == "UP").count())
            .unwrap_or(0);
        if up == NODES.len() {
            return;
        }
        let all: Vec<&Proc> = nodes.iter().chain([&*combiner]).collect();
        assert!(
            wait_up.elapsed() < Duration::from_secs(60),
            "cluster not healthy after 60 s ({health:?}):\n{}",
            dump(&all)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An unmodified `lodestar validator` called `name` (files in `base/<name>`, log
/// `base/<name>.log`) for all [`VALIDATORS`], whose only signer is the combiner on
/// `combiner_port` (trusted through `NODE_EXTRA_CA_CERTS`), with `extra` arguments.
fn start_validator(
    lodestar: &Path,
    base: &Path,
    name: &str,
    rest: u16,
    combiner_port: u16,
    ca: &Path,
    extra: &[&str],
) -> Proc {
    let pubkeys = (0..VALIDATORS)
        .map(|i| interop_secret_key(i).public_key().bytes().to_hex())
        .collect::<Vec<_>>()
        .join(",");
    let vc_dir = base.join(name);
    std::fs::create_dir_all(&vc_dir).expect("mkdir");
    let mut vc_args = strings(&[
        "validator",
        "--preset",
        "minimal",
        "--network",
        "dev",
        "--dataDir",
        &vc_dir.join("data").display().to_string(),
        "--beaconNodes",
        &format!("http://127.0.0.1:{rest}"),
        "--externalSigner.url",
        &format!("https://127.0.0.1:{combiner_port}"),
        "--externalSigner.pubkeys",
        &pubkeys,
        "--logLevel",
        "info",
    ]);
    vc_args.extend(strings(extra));
    vc_args.extend(chain_params());
    spawn(
        &format!("lodestar {name}"),
        lodestar,
        &vc_args,
        &[("NODE_EXTRA_CA_CERTS", ca.display().to_string())],
        &vc_dir,
        &base.join(format!("{name}.log")),
    )
}

/// Successful partial signatures the combiner got from `node`.
fn partials_ok(s: &Scrape, node: &str) -> f64 {
    s.iter()
        .filter(|((name, l), _)| {
            name == "dvsigner_combiner_partials_total"
                && l.get("node").map(String::as_str) == Some(node)
                && l.get("result").map(String::as_str) == Some("ok")
        })
        .map(|(_, v)| *v)
        .sum::<f64>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lodestar_devnet_finalizes_through_the_threshold_cluster() {
    let started = Instant::now();
    let lodestar = lodestar_installed();
    let dir = work_dir();
    let base = dir.path();
    let path = |rel: &str| base.join(rel);
    let http = reqwest::Client::new();

    // 1. Beacon node: interop genesis, no validator keys.
    let (mut beacon, rest) = start_beacon(&lodestar, &base);

    // 2. Whole interop keys split 3-of-4; TLS for nodes, combiner and the combiner's client cert.
    let pki = cluster_pki(&path("tls"), &NODES, false);
    let node_ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let out = path("cluster");
    split_interop(
        &base,
        0..VALIDATORS,
        3,
        &https_operators(&NODES, &node_ports),
        &out,
    );

    // 3. The chain config as the beacon node serves it for nodes and combiner.
    let config_arg = chain_config(&http, rest, &mut beacon, &base).await;
    let mut nodes = start_nodes(&pki, &base, &node_ports, &out, &config_arg, |_| Vec::new());
    let (mut combiner, combiner_port, metrics_port) = start_combiner(
        &pki,
        &base,
        "combiner",
        &out.join("cluster.json"),
        &config_arg,
    );
    let tls_client = https_client(&pki.ca_cert, None, Duration::from_secs(5));
    wait_combiner_sees_all_nodes(&tls_client, &mut combiner, combiner_port, &nodes).await;

    // 4. The validator client: the combiner is its only signer.
    let mut validator = start_validator(
        &lodestar,
        &base,
        "validator",
        rest,
        combiner_port,
        &pki.ca_cert,
        &[],
    );

    // 5. Finality past the last fork, with a block of every fork and every sign type.
    let deadline = started + TEST_BOUND;
    let finalized = {
        let mut watched = [&mut beacon, &mut validator, &mut combiner];
        wait_finalized(
            &http,
            rest,
            FINALIZED_TARGET,
            started,
            deadline,
            &mut watched,
        )
        .await
    };
    let finalized = finalized.unwrap_or_else(|e| {
        let all: Vec<&Proc> = [&beacon, &validator, &combiner]
            .into_iter()
            .chain(nodes.iter())
            .collect();
        panic!("{e}\n{}", dump(&all))
    });
    let forks = block_forks(&http, rest, finalized * SLOTS_PER_EPOCH).await;
    for fork in ["phase0", "altair", "bellatrix", "capella"] {
        assert!(
            forks.contains_key(fork),
            "no {fork} block signed and imported (blocks per fork: {forks:?})"
        );
    }
    let before = scrape(&http, metrics_port).await;
    let counts = sign_counts(&before);
    for t in EXPECTED_TYPES {
        assert!(
            counts
                .get(&(t.to_owned(), "200".to_owned()))
                .copied()
                .unwrap_or(0)
                > 0,
            "Lodestar never had {t} signed through the combiner: {counts:?}"
        );
    }
    assert_eq!(
        failures(&before),
        0,
        "failed sign requests: {counts:?}\n{}",
        dump(&[&combiner])
    );
    let vc_errors = error_lines(&validator.log_text());
    assert!(
        vc_errors.is_empty(),
        "the validator client logged errors:\n{}",
        vc_errors.join("\n")
    );

    // 6. One signer node killed (SIGKILL by PID): the chain goes on finalizing, nothing fails.
    let killed_pid = nodes[3].pid();
    nodes[3].kill9();
    let at_kill = scrape(&http, metrics_port).await;
    say!(
        "[{:>3} s] killed {} (pid {killed_pid})",
        started.elapsed().as_secs(),
        NODES[3]
    );
    let log_len_at_kill = validator.log_text().len();
    let finalized_after = {
        let mut watched = [&mut beacon, &mut validator, &mut combiner];
        wait_finalized(
            &http,
            rest,
            finalized + FINALIZED_AFTER_KILL,
            started,
            deadline,
            &mut watched,
        )
        .await
    };
    let finalized_after = finalized_after.unwrap_or_else(|e| {
        let all: Vec<&Proc> = [&beacon, &validator, &combiner]
            .into_iter()
            .chain(nodes.iter())
            .collect();
        panic!(
            "after killing {} (pid {killed_pid}): {e}\n{}",
            NODES[3],
            dump(&all)
        )
    });
    let after = scrape(&http, metrics_port).await;
    let counts_after = sign_counts(&after);
    assert_eq!(
        failures(&after),
        0,
        "failed sign requests after the kill: {counts_after:?}\n{}",
        dump(&[&combiner])
    );
    let log = validator.log_text();
    let vc_errors = error_lines(log.get(log_len_at_kill..).unwrap_or_default());
    assert!(
        vc_errors.is_empty(),
        "the validator client logged errors after the kill:\n{}",
        vc_errors.join("\n")
    );
    let ok = partials_ok;
    let (d_at_kill, d_after) = (ok(&at_kill, NODES[3]), ok(&after, NODES[3]));
    assert!(d_at_kill > 0.0, "{} never signed before its kill", NODES[3]);
    assert_eq!(d_after, d_at_kill, "{} signed after its kill", NODES[3]);
    for node in &NODES[..3] {
        assert!(
            ok(&after, node) > ok(&at_kill, node),
            "{node} signed nothing after the kill"
        );
    }

    // 7. Stop everything (by PID), then the figures.
    validator.terminate(Duration::from_secs(10));
    beacon.terminate(Duration::from_secs(10));
    combiner.terminate(Duration::from_secs(5));
    // node-d was killed and reaped already: its PID may belong to another process by now.
    for n in &mut nodes {
        if matches!(n.child.try_wait(), Ok(None)) {
            n.terminate(Duration::from_secs(5));
        }
    }
    let per_type = counts_after
        .iter()
        .filter(|((_, status), n)| status == "200" && **n > 0)
        .map(|((t, _), n)| format!("{t}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    say!(
        "lodestar 1.5.1 devnet: finalized epoch {finalized_after} ({finalized} when {} was killed), \
         blocks per fork {forks:?}, signatures {per_type}, combiner latency (histogram bucket bounds) p50 <= {:.1} ms p99 <= {:.1} ms, \
         failures 0, wall {:.0} s",
        NODES[3],
        latency_quantile(&after, 0.5) * 1e3,
        latency_quantile(&after, 0.99) * 1e3,
        started.elapsed().as_secs_f64()
    );
}

/// Graffiti of the two validator clients of the race test (so their blocks always differ).
const GRAFFITI: [&str; 2] = ["dvsigner-race-vc-a", "dvsigner-race-vc-b"];

/// What the canonical chain holds in `from..=to`: the slots without a block, the blocks per
/// graffiti (decoded; empty when not one of [`GRAFFITI`]), and the slots whose block carries a
/// proposer or attester slashing.
struct ChainContents {
    missed: Vec<u64>,
    by_graffiti: BTreeMap<String, u64>,
    slashings: Vec<u64>,
}

async fn chain_contents(http: &reqwest::Client, rest: u16, from: u64, to: u64) -> ChainContents {
    let mut c = ChainContents {
        missed: Vec::new(),
        by_graffiti: BTreeMap::new(),
        slashings: Vec::new(),
    };
    for slot in from..=to {
        let Some(v) = get_json(
            http,
            &format!("http://127.0.0.1:{rest}/eth/v2/beacon/blocks/{slot}"),
        )
        .await
        else {
            c.missed.push(slot);
            continue;
        };
        let body = &v["data"]["message"]["body"];
        let graffiti = body["graffiti"]
            .as_str()
            .and_then(|h| hex::decode(h.trim_start_matches("0x")).ok())
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .trim_end_matches('\0')
                    .to_owned()
            })
            .unwrap_or_default();
        *c.by_graffiti.entry(graffiti).or_default() += 1;
        let count = |k: &str| body[k].as_array().map_or(0, Vec::len);
        if count("proposer_slashings") + count("attester_slashings") > 0 {
            c.slashings.push(slot);
        }
    }
    c
}

/// The errors of a Lodestar validator log, each with its continuation lines (Lodestar prints a
/// multi-line message, e.g. the beacon node's "Multiple errors on publish…" followed by one line
/// per failed item, before the next timestamped entry).
fn error_entries(log: &str) -> Vec<String> {
    let starts_entry = |l: &str| {
        let b = l.as_bytes();
        // "Dec-07 00:38:23.223[]  ..." : a month, a dash, a day, a space.
        b.len() > 7 && b[0].is_ascii_uppercase() && b[3] == b'-' && b[6] == b' '
    };
    let mut entries = Vec::new();
    let mut current: Option<String> = None;
    for line in log.lines() {
        if starts_entry(line) {
            entries.extend(current.take());
            if line.contains("error:") || line.contains("\u{1b}[31merror") {
                current = Some(line.to_owned());
            }
        } else if let Some(c) = current.as_mut() {
            c.push('\n');
            c.push_str(line);
        }
    }
    entries.extend(current);
    entries
}

/// Whether a Lodestar error entry is only the beacon node refusing to publish a message it
/// already has: with two validator clients on one beacon node, both get the SAME signature for
/// a duty they agree on (agreement decides one root, so the threshold signature is identical)
/// and non-slashable duties (sync committee messages and contributions), and whichever client
/// publishes second is told "already known" (gossip: `PublishError.Duplicate`). Every item of a
/// "Multiple errors" entry must be such a duplicate; stack-trace lines are ignored.
fn is_duplicate_publication(entry: &str) -> bool {
    let duplicate = |l: &str| l.contains("ALREADY_KNOWN") || l.contains("PublishError.Duplicate");
    let mut lines = entry.lines();
    let head = lines.next().unwrap_or_default();
    if !head.contains("Error publishing") {
        return false;
    }
    if duplicate(head) {
        return true;
    }
    if !head.contains("Multiple errors on publish") {
        return false;
    }
    // The continuation: the items, then (for an error with a stack) the message again
    // ("Error:  - …: Multiple errors on publish…", the items) and the stack frames.
    let items: Vec<&str> = lines
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("at ") && !l.contains("Multiple errors on publish")
        })
        .collect();
    !items.is_empty() && items.iter().all(|l| duplicate(l))
}

/// The errors of a Lodestar validator log in three groups: 412 answers of the signer (the
/// combiner's "Precondition Failed" body, which Lodestar logs as the error's message), the beacon
/// node's refusals to publish a duplicate ([`is_duplicate_publication`]), and all other errors.
fn errors_412_duplicates_others(log: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (refusals, rest): (Vec<_>, Vec<_>) = error_entries(log)
        .into_iter()
        .partition(|e| e.contains("Precondition Failed"));
    let (duplicates, others) = rest.into_iter().partition(|e| is_duplicate_publication(e));
    (refusals, duplicates, others)
}

/// Sign requests the combiner answered with `status`, by type.
fn answered_with(s: &Scrape, status: &str) -> BTreeMap<String, u64> {
    sign_counts(s)
        .into_iter()
        .filter(|((_, st), n)| st == status && *n > 0)
        .map(|((t, _), n)| (t, n))
        .collect()
}

/// Two unmodified Lodestar validator clients with different graffiti, each with its own
/// combiner, both running all validators against the same four nodes (cluster sync and
/// agreement on): the chain finalizes with a block in every slot after the first epoch, no block
/// carries a slashing, and each client's only errors are the 412s of the races it lost; then
/// one node is killed and the chain finalizes two more epochs the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lodestar_clients_race_through_their_own_combiners() {
    let started = Instant::now();
    let lodestar = lodestar_installed();
    let dir = work_dir();
    let base = dir.path();
    let path = |rel: &str| base.join(rel);
    let http = reqwest::Client::new();

    let (mut beacon, rest) = start_beacon(&lodestar, &base);

    // The cluster as the previous test's, plus cluster sync (peer identities, allow-list) and
    // agreement on one root per duty.
    let pki = cluster_pki(&path("tls"), &NODES, true);
    let allowlist = path("peers.txt");
    write_peer_allowlist(&pki, &NODES, &allowlist);
    let node_ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let out = path("cluster");
    split_interop(
        &base,
        0..VALIDATORS,
        3,
        &https_operators(&NODES, &node_ports),
        &out,
    );
    let cluster_json = out.join("cluster.json");
    let config_arg = chain_config(&http, rest, &mut beacon, &base).await;
    let mut nodes = start_nodes(&pki, &base, &node_ports, &out, &config_arg, |name| {
        let mut a = peer_sync_args(&pki, name, &cluster_json, &allowlist);
        a.extend(strings(&[
            // Devnet epochs are not mainnet's wall-clock epochs.
            "--no-sync-watermark-from-genesis",
            "--agreement",
            "on",
        ]));
        a
    });
    let tls_client = https_client(&pki.ca_cert, None, Duration::from_secs(5));
    let mut combiners = Vec::new();
    for name in ["combiner-a", "combiner-b"] {
        let (mut p, port, metrics) = start_combiner(&pki, &base, name, &cluster_json, &config_arg);
        wait_combiner_sees_all_nodes(&tls_client, &mut p, port, &nodes).await;
        combiners.push((p, port, metrics));
    }

    // Both validator clients sign for every validator, each through its own combiner. Their
    // own slashing protection databases are separate; doppelganger protection (which would
    // see the other client's attestations and stop) stays off.
    let mut validators: Vec<Proc> = ["validator-a", "validator-b"]
        .iter()
        .zip(&combiners)
        .zip(GRAFFITI)
        .map(|((name, (_, port, _)), graffiti)| {
            start_validator(
                &lodestar,
                &base,
                name,
                rest,
                *port,
                &pki.ca_cert,
                &[
                    "--graffiti",
                    graffiti,
                    "--doppelgangerProtectionEnabled",
                    "false",
                ],
            )
        })
        .collect();

    let deadline = started + TEST_BOUND;
    let all_logs =
        |beacon: &Proc, validators: &[Proc], combiners: &[(Proc, u16, u16)], nodes: &[Proc]| {
            let all: Vec<&Proc> = [beacon]
                .into_iter()
                .chain(validators)
                .chain(combiners.iter().map(|(p, _, _)| p))
                .chain(nodes)
                .collect();
            dump(&all)
        };
    let finalized = {
        let (va, vb) = validators.split_at_mut(1);
        let (ca, cb) = combiners.split_at_mut(1);
        let mut watched = [
            &mut beacon,
            &mut va[0],
            &mut vb[0],
            &mut ca[0].0,
            &mut cb[0].0,
        ];
        wait_finalized(
            &http,
            rest,
            FINALIZED_TARGET,
            started,
            deadline,
            &mut watched,
        )
        .await
    };
    let finalized = finalized.unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            all_logs(&beacon, &validators, &combiners, &nodes)
        )
    });

    // Every slot after the first epoch up to the finalized checkpoint has a block, no block
    // carries a slashing, and both clients' blocks made it in.
    let last = finalized * SLOTS_PER_EPOCH;
    let chain = chain_contents(&http, rest, SLOTS_PER_EPOCH, last).await;
    assert!(
        chain.missed.is_empty(),
        "slots without a block: {:?} (blocks by graffiti {:?})\n{}",
        chain.missed,
        chain.by_graffiti,
        all_logs(&beacon, &validators, &combiners, &nodes)
    );
    assert!(
        chain.slashings.is_empty(),
        "blocks with slashings at slots {:?}",
        chain.slashings
    );
    for g in chain.by_graffiti.keys() {
        assert!(
            GRAFFITI.contains(&g.as_str()),
            "a block with graffiti {g:?}: {:?}",
            chain.by_graffiti
        );
    }

    // Each client logged errors only for the races it lost (the combiner's 412), as many as
    // its combiner answered 412, and the combiners answered nothing but 200 and 412.
    let check_clients = |validators: &[Proc], combiner_scrapes: &[Scrape], from: &[usize]| {
        let mut lost = Vec::new();
        for (i, (v, s)) in validators.iter().zip(combiner_scrapes).enumerate() {
            let log = v.log_text();
            let (refusals, duplicates, others) =
                errors_412_duplicates_others(log.get(from[i]..).unwrap_or_default());
            say!(
                "{}: {} lost races (412), {} duplicate publications refused by the beacon node",
                v.name,
                refusals.len(),
                duplicates.len()
            );
            assert!(
                others.is_empty(),
                "{} logged errors other than lost races:\n{}",
                v.name,
                others.join("\n")
            );
            let counts = sign_counts(s);
            let not_ok: Vec<_> = counts
                .iter()
                .filter(|((_, st), n)| st != "200" && st != "412" && **n > 0)
                .collect();
            assert!(
                not_ok.is_empty(),
                "{}'s combiner failed requests: {counts:?}",
                v.name
            );
            lost.push((refusals.len(), answered_with(s, "412")));
        }
        lost
    };
    let mut scrapes = Vec::new();
    for (_, _, metrics) in &combiners {
        scrapes.push(scrape(&http, *metrics).await);
    }
    let lost_before = check_clients(&validators, &scrapes, &[0, 0]);

    // One node killed (SIGKILL by PID): the chain goes on finalizing, still with a block in every
    // slot and nothing but lost races in the clients' logs.
    let killed_pid = nodes[3].pid();
    nodes[3].kill9();
    say!(
        "[{:>3} s] killed {} (pid {killed_pid})",
        started.elapsed().as_secs(),
        NODES[3]
    );
    let log_len_at_kill: Vec<usize> = validators.iter().map(|v| v.log_text().len()).collect();
    let finalized_after = {
        let (va, vb) = validators.split_at_mut(1);
        let (ca, cb) = combiners.split_at_mut(1);
        let mut watched = [
            &mut beacon,
            &mut va[0],
            &mut vb[0],
            &mut ca[0].0,
            &mut cb[0].0,
        ];
        wait_finalized(
            &http,
            rest,
            finalized + FINALIZED_AFTER_KILL,
            started,
            deadline,
            &mut watched,
        )
        .await
    };
    let finalized_after = finalized_after.unwrap_or_else(|e| {
        panic!(
            "after killing {} (pid {killed_pid}): {e}\n{}",
            NODES[3],
            all_logs(&beacon, &validators, &combiners, &nodes)
        )
    });
    let last_after = finalized_after * SLOTS_PER_EPOCH;
    let chain_after = chain_contents(&http, rest, last + 1, last_after).await;
    assert!(
        chain_after.missed.is_empty(),
        "slots without a block after the kill: {:?}\n{}",
        chain_after.missed,
        all_logs(&beacon, &validators, &combiners, &nodes)
    );
    assert!(
        chain_after.slashings.is_empty(),
        "blocks with slashings at slots {:?}",
        chain_after.slashings
    );
    let mut scrapes_after = Vec::new();
    for (_, _, metrics) in &combiners {
        scrapes_after.push(scrape(&http, *metrics).await);
    }
    check_clients(&validators, &scrapes_after, &log_len_at_kill);
    for s in &scrapes_after {
        assert!(
            partials_ok(s, NODES[0]) + partials_ok(s, NODES[1]) + partials_ok(s, NODES[2]) > 0.0,
            "a combiner got no partial signature"
        );
    }

    // Stop everything (by PID), then compare each client's logged refusals with its combiner's
    // 412 answers over the whole run (the logs are complete once the clients exited).
    for v in &mut validators {
        v.terminate(Duration::from_secs(10));
    }
    let lost_total = check_clients(&validators, &scrapes_after, &[0, 0]);
    for ((v, (logged, by_type)), g) in validators.iter().zip(&lost_total).zip(GRAFFITI) {
        let answered: u64 = by_type.values().sum();
        assert_eq!(
            *logged as u64, answered,
            "{} ({g}) logged {logged} lost races, its combiner answered 412 {answered} times ({by_type:?})",
            v.name
        );
        for t in by_type.keys() {
            assert!(
                t == "BLOCK_V2" || t == "ATTESTATION",
                "{} got 412 for {t}, which no race can lose",
                v.name
            );
        }
    }
    beacon.terminate(Duration::from_secs(10));
    for (c, _, _) in &mut combiners {
        c.terminate(Duration::from_secs(5));
    }
    for n in &mut nodes {
        if matches!(n.child.try_wait(), Ok(None)) {
            n.terminate(Duration::from_secs(5));
        }
    }
    let mut blocks = chain.by_graffiti.clone();
    for (g, n) in &chain_after.by_graffiti {
        *blocks.entry(g.clone()).or_default() += n;
    }
    say!(
        "two lodestar 1.5.1 clients: finalized epoch {finalized_after} ({finalized} when {} was killed), \
         blocks by graffiti {blocks:?} (slots {SLOTS_PER_EPOCH}..={last_after}, none missed, no slashings), \
         lost races (412) per client: {} before the kill {:?}, whole run {:?}; wall {:.0} s",
        NODES[3],
        GRAFFITI.join("/"),
        lost_before.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        lost_total
            .iter()
            .map(|(n, t)| format!("{n} {t:?}"))
            .collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
}

/// Polls the finalized epoch once a second until it reaches `target`; fails early when a
/// watched process exits, and at `deadline`.
async fn wait_finalized(
    http: &reqwest::Client,
    rest: u16,
    target: u64,
    started: Instant,
    deadline: Instant,
    watched: &mut [&mut Proc],
) -> Result<u64, String> {
    let mut seen = None;
    loop {
        for p in watched.iter_mut() {
            if let Ok(Some(s)) = p.child.try_wait() {
                return Err(format!("{} exited ({s})", p.name));
            }
        }
        if let Some(e) = finalized_epoch(http, rest).await {
            if seen != Some(e) {
                say!(
                    "[{:>3} s] finalized epoch {e} (target {target})",
                    started.elapsed().as_secs()
                );
            }
            if e >= target {
                return Ok(e);
            }
            seen = Some(e);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "finalized epoch {seen:?} has not reached {target} within the test bound"
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Blocks in the canonical chain up to `last_slot`, counted by fork (`version` of
/// `/eth/v2/beacon/blocks/{slot}`; empty slots answer 404).
async fn block_forks(http: &reqwest::Client, rest: u16, last_slot: u64) -> BTreeMap<String, u64> {
    let mut forks = BTreeMap::new();
    for slot in 1..=last_slot {
        if let Some(v) = get_json(
            http,
            &format!("http://127.0.0.1:{rest}/eth/v2/beacon/blocks/{slot}"),
        )
        .await
        {
            if let Some(fork) = v["version"].as_str() {
                *forks.entry(fork.to_owned()).or_default() += 1;
            }
        }
    }
    forks
}

/// The classifier on lines as Lodestar 1.5.1 printed them in a CI run: duplicates (also a
/// "Multiple errors" entry whose every item is a duplicate), a lost race, and errors that are
/// neither (one item of a "Multiple errors" entry that is not a duplicate is enough).
#[test]
fn lodestar_errors_are_told_apart() {
    let log = "\
Dec-07 00:38:23.223[]                \u{1b}[31merror\u{1b}[39m: Error publishing attestations slot=1  - Internal Server Error: ATTESTATION_ERROR_ATTESTATION_ALREADY_KNOWN
Dec-07 00:38:24.001[]                 info: Published attestations slot=1, count=8
Dec-07 00:38:49.344[]                \u{1b}[31merror\u{1b}[39m: Error publishing SyncCommitteeContribution slot=9, index=1  - Internal Server Error: Multiple errors on publishContributionAndProofs
SYNC_COMMITTEE_ERROR_SYNC_COMMITTEE_AGGREGATOR_ALREADY_KNOWN
PublishError.Duplicate
Error:  - Internal Server Error: Multiple errors on publishContributionAndProofs
SYNC_COMMITTEE_ERROR_SYNC_COMMITTEE_AGGREGATOR_ALREADY_KNOWN
PublishError.Duplicate
    at publishContributionAndProofs (file.js:1:1)
    at async Promise.all (index 0)
Dec-07 00:38:58.388[]                \u{1b}[31merror\u{1b}[39m: Error publishing SyncCommitteeContribution slot=12, index=1  - Internal Server Error: PublishError.Duplicate
Dec-07 00:38:59.000[]                \u{1b}[31merror\u{1b}[39m: Error signing block slot=13 - Precondition Failed: duty already decided
Dec-07 00:39:01.326[]                \u{1b}[31merror\u{1b}[39m: Error publishing SyncCommitteeContribution slot=13, index=2  - Internal Server Error: Multiple errors on publishContributionAndProofs
SYNC_COMMITTEE_ERROR_SYNC_COMMITTEE_AGGREGATOR_ALREADY_KNOWN
SYNC_COMMITTEE_ERROR_INVALID_SIGNATURE
Dec-07 00:39:02.000[]                \u{1b}[31merror\u{1b}[39m: Error publishing attestations slot=14  - Internal Server Error: ATTESTATION_ERROR_INVALID_SIGNATURE
Dec-07 00:39:03.000[]                \u{1b}[31merror\u{1b}[39m: Error on fetching duties - Service Unavailable
";
    let (refusals, duplicates, others) = errors_412_duplicates_others(log);
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(refusals[0].contains("slot=13 - Precondition Failed"));
    assert_eq!(duplicates.len(), 3, "{duplicates:?}");
    assert_eq!(others.len(), 3, "{others:?}");
    assert!(others[0].contains("INVALID_SIGNATURE") && others[0].contains("slot=13, index=2"));
    assert!(others[1].contains("slot=14"));
    assert!(others[2].contains("fetching duties"));
}
