//! Several validator clients racing conflicting messages for the same duties into one cluster.
//!
//! Real processes on 127.0.0.1: four `dvsigner signer` nodes (3-of-4 shares of interop keys,
//! mutual TLS, cluster.json, cluster history sync) and two or three `dvsigner combiner`s, each
//! standing for its own validator client. Between every combiner and every node sits a relay of
//! this test (plain TCP, so TLS passes through untouched) that holds each burst of bytes from the
//! combiner for a random 0-50 ms, drawn anew per burst (a request), so the nodes see the
//! combiners' requests in a different order each time. The nodes reach each other through a
//! relay per node as well (cluster.json's URLs), which adds nothing except to the delayed node.
//!
//! For every duty (one validator and target epoch for ATTESTATION, one validator and slot for
//! BLOCK_V2) each combiner sends its own version at the same moment: attestations with another
//! head (beacon block root) per combiner, blocks with another body root per combiner. Per
//! condition (all four nodes up; one node killed; one node's links delayed by 500 ms more, to it
//! from the combiners and from its peers) and number of combiners (2, 3), the test runs the same
//! duties against a fresh cluster with `--agreement off` and then `--agreement on`, and counts:
//! - duties that got two different signatures: must be 0 in every run (the signatures are each
//!   verified against the validator's group public key over the root of the request they answer);
//! - duties that got no signature although at least t nodes are up: must be 0 with agreement on
//!   (printed, not asserted, with agreement off: there the nodes split);
//! - the losers' status codes: 412 only, with agreement on (also with one node down);
//! - the winners' p50/p99 latency seen by the client, printed for both runs (no bound).
//!
//! `DVSIGNER_TEST_RACE_DUTIES` sets the duties per run (default 1,000, half attestations and
//! half blocks, spread over the validators).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::cluster::{
    att, cluster_pki, combiner_args, group_pk, https_operators, peer_sync_args, split_interop,
    tls_client, tls_signer_args, write_peer_allowlist, NODES,
};
use crate::common::process::{free_port, Proc};
use crate::common::requests::{block_v2_body, https_client};
use dvsigner::bls::{PublicKey, Signature};
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::signing::Network;
use dvsigner::tls::DevPki;

/// Writes a line to stderr past the test harness's output capture, so the figures of a passing
/// run are visible too.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Signatures needed per validator (3-of-4).
const THRESHOLD: usize = 3;
/// Validators of the cluster; each signs its duties one after the other, the validators in
/// parallel (so a node never sees a validator's older duty after a newer one).
const VALIDATORS: u64 = 16;
/// Upper bound of the random hold per burst from a combiner to a node.
const JITTER_MS: u64 = 50;
/// Extra hold on every link towards the delayed node.
const SLOW_NODE_DELAY: Duration = Duration::from_millis(500);
/// The node that is killed or delayed.
const ODD_NODE: usize = 3;
/// Attestations have source epoch 400000 (`common::cluster::att`): targets start above it.
const FIRST_TARGET: u64 = 400_001;
/// Block slots start far above every attestation slot of the run.
const FIRST_SLOT: u64 = 20_000_000;

fn duties_per_run() -> usize {
    std::env::var("DVSIGNER_TEST_RACE_DUTIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    AllUp,
    OneDown,
    OneDelayed,
}

impl Condition {
    fn label(self) -> &'static str {
        match self {
            Self::AllUp => "all 4 nodes up",
            Self::OneDown => "node-d down",
            Self::OneDelayed => "node-d +500 ms",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The delaying relay.

/// A TCP relay on 127.0.0.1 to `127.0.0.1:<target>`: bytes towards the target are held for
/// `base` plus a random 0..=`jitter_ms` ms, drawn anew for each burst (bytes arriving after a
/// pause of more than 2 ms), in order; bytes back are passed on at once. Dropping it stops the
/// listener and every connection it carries.
struct Relay {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    async fn start(target: u16, base: Duration, jitter_ms: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        let task = tokio::spawn(async move {
            // Owned here: aborting the listener task drops the set, which aborts the connections.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        conns.spawn(relay_connection(client, target, base, jitter_ms));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self { port, task }
    }
}

async fn relay_connection(client: TcpStream, target: u16, base: Duration, jitter_ms: u64) {
    // A target that is down: the client's connection is closed at once, as a refused one would be.
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let back = async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    // Bounded queue of (release time, bytes): the reader keeps reading while the writer waits.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(64);
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_arrival: Option<tokio::time::Instant> = None;
        let mut hold = base;
        let mut last_release = tokio::time::Instant::now();
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = tokio::time::Instant::now();
            if last_arrival.is_none_or(|t| now.duration_since(t) > Duration::from_millis(2)) {
                let jitter = if jitter_ms == 0 {
                    0
                } else {
                    rand::thread_rng().gen_range(0..=jitter_ms)
                };
                hold = base + Duration::from_millis(jitter);
            }
            last_arrival = Some(now);
            let release = (now + hold).max(last_release);
            last_release = release;
            if tx.send((release, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to_server.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to_server.shutdown().await;
    };
    tokio::join!(back, read, write);
}

// ---------------------------------------------------------------------------------------------
// The cluster.

struct Cluster {
    _dir: tempfile::TempDir,
    pki: DevPki,
    nodes: Vec<Proc>,
    node_ports: Vec<u16>,
    combiners: Vec<Proc>,
    combiner_ports: Vec<u16>,
    /// Kept alive for the cluster's lifetime (peer relays, then per combiner one per node).
    _relays: Vec<Relay>,
}

impl Cluster {
    fn dump(&self) -> String {
        self.nodes
            .iter()
            .chain(&self.combiners)
            .map(|p| {
                let text = p.log_text();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "--- {}:\n{}",
                    p.name,
                    lines[lines.len().saturating_sub(30)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Four nodes with `--agreement on|off`, `combiners` combiners, every link relayed as the
    /// condition says; returns once every node is ready and every combiner sees four nodes UP.
    async fn start(condition: Condition, combiners: usize, agreement: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dvsigner-race-")
            .tempdir()
            .expect("tempdir");
        let base = dir.path().to_owned();
        let pki = cluster_pki(&base.join("tls"), &NODES, true);
        let allowlist = base.join("peers.txt");
        write_peer_allowlist(&pki, &NODES, &allowlist);
        let node_ports: Vec<u16> = (0..NODES.len()).map(|_| free_port()).collect();
        let base_delay = |node: usize| {
            if condition == Condition::OneDelayed && node == ODD_NODE {
                SLOW_NODE_DELAY
            } else {
                Duration::ZERO
            }
        };
        let mut relays = Vec::new();
        // The nodes' cluster.json names the peer relays: the nodes reach each other through them.
        for (i, port) in node_ports.iter().enumerate() {
            relays.push(Relay::start(*port, base_delay(i), 0).await);
        }
        let peer_relay_ports: Vec<u16> = relays.iter().map(|r| r.port).collect();
        let out = base.join("cluster");
        split_interop(
            &base,
            0..VALIDATORS,
            THRESHOLD,
            &https_operators(&NODES, &peer_relay_ports),
            &out,
        );
        let cluster_json = out.join("cluster.json");
        let cluster_text = std::fs::read_to_string(&cluster_json).expect("cluster.json");

        let mut nodes = Vec::new();
        for (i, name) in NODES.iter().enumerate() {
            let mut args = tls_signer_args(
                &pki,
                name,
                node_ports[i],
                &base.join(format!("data/{name}")),
                &out.join(name),
            );
            args.extend(peer_sync_args(&pki, name, &cluster_json, &allowlist));
            args.extend([
                // The test's epochs are not wall-clock time.
                "--no-sync-watermark-from-genesis".into(),
                "--agreement".into(),
                if agreement { "on" } else { "off" }.into(),
            ]);
            nodes.push(Proc::start(name, &args, &base.join(format!("{name}.log"))));
        }

        // Each combiner gets its own relays and its own copy of cluster.json naming them (the
        // definition differs in the URLs only; the nodes' certificates name 127.0.0.1).
        let mut combiner_ports = Vec::new();
        let mut combiner_procs = Vec::new();
        for c in 0..combiners {
            let mut text = cluster_text.clone();
            for (i, node_port) in node_ports.iter().enumerate() {
                let relay = Relay::start(*node_port, base_delay(i), JITTER_MS).await;
                text = text.replace(
                    &format!("\"https://127.0.0.1:{}\"", peer_relay_ports[i]),
                    &format!("\"https://127.0.0.1:{}\"", relay.port),
                );
                relays.push(relay);
            }
            let own_json = base.join(format!("cluster-combiner-{c}.json"));
            std::fs::write(&own_json, text).expect("write combiner cluster.json");
            let port = free_port();
            let args = combiner_args(&pki, port, &own_json);
            combiner_procs.push(Proc::start(
                &format!("combiner-{c}"),
                &args,
                &base.join(format!("combiner-{c}.log")),
            ));
            combiner_ports.push(port);
        }
        let mut cluster = Self {
            _dir: dir,
            pki,
            nodes,
            node_ports,
            combiners: combiner_procs,
            combiner_ports,
            _relays: relays,
        };
        cluster.wait_ready().await;
        cluster
    }

    /// Every node answers `/healthcheck` 200 (synced, sign gate open) and every combiner sees
    /// all four nodes UP; bounded by 90 s.
    async fn wait_ready(&mut self) {
        let node_client = https_client(
            &self.pki.ca_cert,
            self.pki.identity("combiner-client"),
            Duration::from_secs(2),
        );
        let combiner_client = tls_client(&self.pki);
        let start = Instant::now();
        loop {
            for p in self.nodes.iter_mut().chain(self.combiners.iter_mut()) {
                if let Ok(Some(s)) = p.child.try_wait() {
                    panic!("{} exited ({s}):\n{}", p.name, p.log_text());
                }
            }
            let mut ready = 0;
            for port in &self.node_ports {
                if let Ok(r) = node_client
                    .get(format!("https://127.0.0.1:{port}/healthcheck"))
                    .send()
                    .await
                {
                    ready += usize::from(r.status() == 200);
                }
            }
            for port in &self.combiner_ports {
                let up = async {
                    let v: Value = combiner_client
                        .get(format!("https://127.0.0.1:{port}/healthcheck"))
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    let nodes = v["checks"][1]["checks"].as_array()?.clone();
                    Some(nodes.iter().filter(|c| c["status"] == "UP").count())
                }
                .await;
                ready += usize::from(up == Some(NODES.len()));
            }
            if ready == self.node_ports.len() + self.combiner_ports.len() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "cluster not ready after 90 s ({ready} ready):\n{}",
                self.dump()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The duties.

/// One duty's requests, one per combiner.
struct Duty {
    validator: u64,
    /// `att <target>` or `block <slot>`.
    what: String,
    bodies: Vec<String>,
}

/// The `k`-th duty of `validator`: even `k` an attestation, odd `k` a block; combiner `c`'s
/// version carries head / body root byte `0x11 * (c + 1)`.
fn duty(validator: u64, k: u64, combiners: usize) -> Duty {
    let byte = |c: usize| format!("{:02x}", 0x11 * (c + 1));
    if k % 2 == 0 {
        let target = FIRST_TARGET + k;
        let bodies = (0..combiners)
            .map(|c| {
                att(target).replace(
                    &format!("\"beacon_block_root\":\"0x{}\"", "ab".repeat(32)),
                    &format!("\"beacon_block_root\":\"0x{}\"", byte(c).repeat(32)),
                )
            })
            .collect();
        Duty {
            validator,
            what: format!("att {target}"),
            bodies,
        }
    } else {
        let slot = FIRST_SLOT + k;
        let bodies = (0..combiners)
            .map(|c| block_v2_body(slot, validator, &byte(c)))
            .collect();
        Duty {
            validator,
            what: format!("block {slot}"),
            bodies,
        }
    }
}

/// What one combiner answered for one duty.
struct Answer {
    status: u16,
    text: String,
    latency: Duration,
}

async fn send(client: &reqwest::Client, port: u16, pubkey: &str, body: &str) -> Answer {
    let start = Instant::now();
    let r = client
        .post(format!(
            "https://127.0.0.1:{port}/api/v1/eth2/sign/{pubkey}"
        ))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body.to_owned())
        .send()
        .await;
    match r {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            Answer {
                status,
                text,
                latency: start.elapsed(),
            }
        }
        // A transport failure towards the combiner (it never happens on loopback unless the
        // combiner died): recorded as status 0.
        Err(e) => Answer {
            status: 0,
            text: e.to_string(),
            latency: start.elapsed(),
        },
    }
}

/// The counts of one run.
#[derive(Default)]
struct Figures {
    duties: usize,
    double_signed: usize,
    unsigned: usize,
    /// Status codes of the requests that did not win a duty someone won.
    loser_codes: BTreeMap<u16, usize>,
    /// Status codes of the requests of duties nobody won.
    unsigned_codes: BTreeMap<u16, usize>,
    bad_signatures: usize,
    winners: Vec<Duration>,
    examples: Vec<String>,
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // invariant: 0 <= q <= 1, so the index is within the slice.
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn codes(m: &BTreeMap<u16, usize>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(c, n)| format!("{c}x{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends every duty through every combiner at once and counts the outcomes.
async fn race(cluster: &Cluster, duties: usize) -> Figures {
    let combiners = cluster.combiner_ports.len();
    let clients: Arc<Vec<reqwest::Client>> =
        Arc::new((0..combiners).map(|_| tls_client(&cluster.pki)).collect());
    let ports = Arc::new(cluster.combiner_ports.clone());
    let per_validator = duties.div_ceil(VALIDATORS as usize) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for v in 0..VALIDATORS {
        let clients = clients.clone();
        let ports = ports.clone();
        tasks.spawn(async move {
            let pubkey = group_pk(v);
            let mut out = Vec::new();
            for k in 0..per_validator {
                let d = duty(v, k, ports.len());
                let answers = futures::future::join_all(
                    d.bodies
                        .iter()
                        .enumerate()
                        .map(|(c, body)| send(&clients[c], ports[c], &pubkey, body)),
                )
                .await;
                out.push((d, answers));
            }
            out
        });
    }
    let network = Network::from_name_or_path("mainnet").expect("mainnet");
    let mut f = Figures::default();
    while let Some(done) = tasks.join_next().await {
        for (d, answers) in done.expect("validator task") {
            f.duties += 1;
            let group =
                PublicKey::from_bytes(&interop_secret_key(d.validator).public_key().bytes().0)
                    .expect("group key");
            let mut signatures = BTreeSet::new();
            let mut winners = Vec::new();
            for (c, a) in answers.iter().enumerate() {
                if a.status != 200 {
                    continue;
                }
                let root = dvsigner::signing::prepare(d.bodies[c].as_bytes(), &network)
                    .expect("prepare")
                    .root;
                let sig = serde_json::from_str::<Value>(&a.text)
                    .ok()
                    .and_then(|v| v["signature"].as_str().map(str::to_owned))
                    .and_then(|s| Signature::from_hex(&s).ok());
                match sig {
                    Some(sig) if sig.verify(&group, &root.0) => {
                        signatures.insert(sig.to_hex());
                    }
                    _ => {
                        f.bad_signatures += 1;
                        f.examples.push(format!(
                            "v{} {} combiner-{c}: 200 without a valid signature: {}",
                            d.validator, d.what, a.text
                        ));
                    }
                }
                winners.push(c);
                f.winners.push(a.latency);
            }
            if signatures.len() > 1 {
                f.double_signed += 1;
                f.examples.push(format!(
                    "v{} {}: {} different signatures",
                    d.validator,
                    d.what,
                    signatures.len()
                ));
            }
            let target = if winners.is_empty() {
                f.unsigned += 1;
                if f.examples.len() < 5 {
                    f.examples.push(format!(
                        "v{} {} unsigned: {}",
                        d.validator,
                        d.what,
                        answers
                            .iter()
                            .map(|a| format!("{} {}", a.status, a.text))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    ));
                }
                &mut f.unsigned_codes
            } else {
                &mut f.loser_codes
            };
            for (c, a) in answers.iter().enumerate() {
                if !winners.contains(&c) {
                    *target.entry(a.status).or_default() += 1;
                }
            }
        }
    }
    f.winners.sort();
    f
}

/// One run: a fresh cluster, the condition applied, every duty raced, the counts asserted.
async fn run(condition: Condition, combiners: usize, agreement: bool) -> Figures {
    let mut cluster = Cluster::start(condition, combiners, agreement).await;
    if condition == Condition::OneDown {
        cluster.nodes[ODD_NODE].kill9();
    }
    if agreement {
        // Like a cluster that has been running: the nodes probe idle peers once a second,
        // measure their round trips (round 1 is sized from them, and a peer that does not
        // answer counts as unreachable, so that rounds it leads are skipped) and open their
        // warm connections once a peer answered, which takes a few round trips over node-d's
        // 500 ms links. (The delayed-node cases' occasional unsigned first-target duty was not
        // a cold start: every round 2 led by node-d was lost, see the README's race figures.)
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let duties = duties_per_run();
    let started = Instant::now();
    let f = race(&cluster, duties).await;
    let wall = started.elapsed();
    for (i, p) in cluster.nodes.iter_mut().enumerate() {
        if condition == Condition::OneDown && i == ODD_NODE {
            continue;
        }
        if let Ok(Some(s)) = p.child.try_wait() {
            panic!("{} exited during the run ({s}):\n{}", p.name, p.log_text());
        }
    }
    let mode = if agreement { "on" } else { "off" };
    say!(
        "race | {} | {combiners} combiners | agreement {mode} | duties {} | double-signed {} | \
         unsigned {} | losers {} | unsigned duties' codes {} | winners p50 {:.1} ms p99 {:.1} ms | wall {:.1} s",
        condition.label(),
        f.duties,
        f.double_signed,
        f.unsigned,
        codes(&f.loser_codes),
        codes(&f.unsigned_codes),
        quantile(&f.winners, 0.5).as_secs_f64() * 1e3,
        quantile(&f.winners, 0.99).as_secs_f64() * 1e3,
        wall.as_secs_f64()
    );
    let context = || format!("{}\n{}", f.examples.join("\n"), cluster.dump());
    assert!(f.duties >= duties, "only {} duties ran", f.duties);
    assert_eq!(f.bad_signatures, 0, "invalid signatures: {}", context());
    assert_eq!(f.double_signed, 0, "duties signed twice: {}", context());
    if agreement {
        // At least t nodes are up in every condition: every duty is signed, and every loser
        // is told 412 (also with a node down), never 503.
        assert_eq!(
            f.unsigned,
            0,
            "unsigned duties with agreement on: {}",
            context()
        );
        let not_412: Vec<_> = f.loser_codes.keys().filter(|&&c| c != 412).collect();
        assert!(
            not_412.is_empty(),
            "losers answered {} with agreement on: {}",
            codes(&f.loser_codes),
            context()
        );
    }
    drop_cluster(cluster);
    f
}

fn drop_cluster(mut cluster: Cluster) {
    for p in cluster.combiners.iter_mut().chain(cluster.nodes.iter_mut()) {
        if matches!(p.child.try_wait(), Ok(None)) {
            p.terminate(Duration::from_secs(5));
        }
    }
}

/// Both runs of a condition, agreement off then on, and the comparison line.
async fn compare(condition: Condition, combiners: usize) {
    let off = run(condition, combiners, false).await;
    let on = run(condition, combiners, true).await;
    let ms = |f: &Figures, q| quantile(&f.winners, q).as_secs_f64() * 1e3;
    say!(
        "race figures | {} | {combiners} | {} | double-signed {} / {} | unsigned {} / {} | \
         losers' codes {} / {} | p50 {:.0} / {:.0} ms | p99 {:.0} / {:.0} ms (off / on)",
        condition.label(),
        on.duties,
        off.double_signed,
        on.double_signed,
        off.unsigned,
        on.unsigned,
        codes(&off.loser_codes),
        codes(&on.loser_codes),
        ms(&off, 0.5),
        ms(&on, 0.5),
        ms(&off, 0.99),
        ms(&on, 0.99),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_up_two_combiners() {
    compare(Condition::AllUp, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_up_three_combiners() {
    compare(Condition::AllUp, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_down_two_combiners() {
    compare(Condition::OneDown, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_down_three_combiners() {
    compare(Condition::OneDown, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_delayed_two_combiners() {
    compare(Condition::OneDelayed, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_delayed_three_combiners() {
    compare(Condition::OneDelayed, 3).await;
}
