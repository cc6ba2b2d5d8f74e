//! Cluster agreement with real `dvsigner signer` processes (3-of-4, mutual TLS) and two
//! combiners standing for two validator clients that race different messages for the same
//! duties:
//! - racing attestations and blocks: every duty gets exactly one root signed (the combined
//!   signature verifies under the group key), the other request 412, and a node names the
//!   decided root when asked for the other one;
//! - the same root from both combiners: both get the same valid signature;
//! - one node stopped: duties are still decided, the losers get 412 (not 503);
//! - a node restarted after deciding keeps the decision;
//! - a client that is no operator of the cluster gets 403 on the agreement route, counted;
//! - `--agreement off`: nodes sign first come, first served, as before, and the route is 404.
//!
//! The timeouts given to the nodes and combiners are generous (the shared test machine is
//! slow); no test asserts a duration.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::cluster::{
    cluster_pki, combiner_args, https_operators, peer_sync_args, split_interop, tls_signer_args,
    write_peer_allowlist, NODES,
};
use common::http::sign_json;
use common::process::{free_port, wait_ready, Proc};
use common::requests::{attestation_body, https_client};
use dvsigner::bls::{PublicKey, Signature};
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::signing::Network;
use dvsigner::tls::DevPki;
use serde_json::Value;

struct Setup {
    dir: tempfile::TempDir,
    pki: DevPki,
    ports: Vec<u16>,
    metrics_ports: Vec<u16>,
    cluster_json: PathBuf,
    /// Presents `combiner-client` (trusted by the nodes' TLS, no peer).
    client: reqwest::Client,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = cluster_pki(&dir.path().join("tls"), &NODES, true);
    write_peer_allowlist(&pki, &NODES, &dir.path().join("peers.txt"));
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let metrics_ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let out = dir.path().join("cluster");
    split_interop(dir.path(), 0..1, 3, &https_operators(&NODES, &ports), &out);
    let id = pki.identity("combiner-client").expect("identity");
    let client = https_client(&pki.ca_cert, Some(id), Duration::from_secs(30));
    Setup {
        cluster_json: out.join("cluster.json"),
        dir,
        pki,
        ports,
        metrics_ports,
        client,
    }
}

impl Setup {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn url(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.ports[i])
    }

    /// Starts node `i` with agreement flags `extra` and waits until it is ready to sign.
    async fn start_node(&self, i: usize, extra: &[&str]) -> Proc {
        let mut args = vec![
            "--metrics-listen".to_owned(),
            format!("127.0.0.1:{}", self.metrics_ports[i]),
        ];
        args.extend(tls_signer_args(
            &self.pki,
            NODES[i],
            self.ports[i],
            &self.path(&format!("data/{}", NODES[i])),
            &self.path("cluster").join(NODES[i]),
        ));
        args.extend(peer_sync_args(
            &self.pki,
            NODES[i],
            &self.cluster_json,
            &self.path("peers.txt"),
        ));
        args.extend([
            "--sync-interval-secs".to_owned(),
            "1".to_owned(),
            "--no-sync-watermark-from-genesis".to_owned(),
            "--agreement-timeout-ms".to_owned(),
            "10000".to_owned(),
        ]);
        // No `--agreement` flag unless the test gives one: agreement is on by default with
        // `--cluster` and a peer client identity, which these tests rely on.
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let log = self.path(&format!("{}-{}.log", NODES[i], free_port()));
        Proc::start(NODES[i], &args, &log)
    }

    async fn wait_ready(&self, i: usize, node: &mut Proc) {
        wait_ready(
            &self.client,
            &format!("{}/healthcheck", self.url(i)),
            node,
            Duration::from_secs(60),
        )
        .await;
    }

    /// All four nodes, ready.
    async fn start_nodes(&self, extra: &[&str]) -> Vec<Proc> {
        let mut nodes = Vec::new();
        for i in 0..4 {
            nodes.push(self.start_node(i, extra).await);
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            self.wait_ready(i, n).await;
        }
        nodes
    }

    /// A combiner (generous deadline), ready; returns it and its base URL.
    async fn start_combiner(&self, name: &str) -> (Proc, String) {
        let port = free_port();
        let mut args = combiner_args(&self.pki, port, &self.cluster_json);
        args.extend(["--deadline-ms".into(), "15000".into()]);
        let mut p = Proc::start(name, &args, &self.path(&format!("{name}.log")));
        let base = format!("https://127.0.0.1:{port}");
        wait_ready(
            &self.client,
            &format!("{base}/upcheck"),
            &mut p,
            Duration::from_secs(30),
        )
        .await;
        (p, base)
    }

    /// `dvsigner_agreement_messages_refused_total{reason}` of node `i` (0 when absent).
    async fn refused_metric(&self, i: usize, reason: &str) -> u64 {
        let text = reqwest::get(format!(
            "http://127.0.0.1:{}/metrics",
            self.metrics_ports[i]
        ))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
        let series = format!("dvsigner_agreement_messages_refused_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map(|v| v.trim().parse().expect("counter"))
            .unwrap_or(0)
    }
}

fn group() -> String {
    interop_secret_key(0).public_key().bytes().to_hex()
}

fn share_pk(s: &Setup, i: usize) -> String {
    let def = dvsigner::cluster::ClusterDefinition::load(&s.cluster_json).expect("cluster.json");
    let (_, _, pk) = def.shares_of(NODES[i]).next().expect("one share");
    pk.bytes().to_hex()
}

/// The attestation for `target` (source 0) whose roots are `byte` repeated.
fn attestation(target: u64, byte: &str) -> String {
    attestation_body(target).replace(&"ab".repeat(32), &byte.repeat(32))
}

/// A BLOCK_V2 (Electra header) request at `slot` with body root `byte` repeated.
fn block_v2(slot: u64, byte: &str) -> String {
    format!(
        concat!(
            r#"{{"type":"BLOCK_V2","fork_info":{{"fork":{{"previous_version":"0x04000000","#,
            r#""current_version":"0x05000000","epoch":"364032"}},"genesis_validators_root":"#,
            r#""0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"}},"#,
            r#""beacon_block":{{"version":"ELECTRA","block_header":{{"slot":"{slot}","#,
            r#""proposer_index":"7","parent_root":"0x{z}","state_root":"0x{z}","body_root":"0x{b}"}}}}}}"#
        ),
        slot = slot,
        z = "00".repeat(32),
        b = byte.repeat(32)
    )
}

fn root_hex(body: &str) -> String {
    let network = Network::from_name_or_path("mainnet").expect("mainnet");
    dvsigner::signing::prepare(body.as_bytes(), &network)
        .expect("prepare")
        .root
        .to_hex()
}

/// The signature of a 200 answer, checked under the validator's group key over `body`'s root.
fn verified_signature(answer: &str, body: &str) -> String {
    let v: Value = serde_json::from_str(answer).expect("json answer");
    let sig = Signature::from_hex(v["signature"].as_str().expect("signature")).expect("hex");
    let network = Network::from_name_or_path("mainnet").expect("mainnet");
    let root = dvsigner::signing::prepare(body.as_bytes(), &network)
        .expect("prepare")
        .root;
    let pk = PublicKey::from_bytes(&interop_secret_key(0).public_key().bytes().0).expect("pk");
    assert!(
        sig.verify(&pk, &root.0),
        "combined signature does not verify"
    );
    sig.to_hex()
}

/// Two requests for one duty, one through each combiner, sent at the same moment.
struct Race {
    duty: String,
    x: String,
    y: String,
}

fn races(targets: std::ops::Range<u64>, slots: std::ops::Range<u64>) -> Vec<Race> {
    let mut out: Vec<Race> = targets
        .map(|t| Race {
            duty: format!("attestation target {t}"),
            x: attestation(t, "ab"),
            y: attestation(t, "cd"),
        })
        .collect();
    out.extend(slots.map(|s| Race {
        duty: format!("block slot {s}"),
        x: block_v2(s, "11"),
        y: block_v2(s, "22"),
    }));
    out
}

/// Runs the races in duty order, each as two requests sent at the same moment through
/// combiners `a` and `b`; returns per race which body won, asserting exactly one 200 (with a
/// signature valid under the group key) and one 412 naming the decided root.
///
/// Duties go in ascending order as a validator client's do: cluster sync merges peers'
/// records, and a merged record raises the low watermark above duties not signed yet.
async fn run_races(s: &Setup, a: &str, b: &str, races: &[Race]) -> Vec<String> {
    let pk = group();
    let mut winners = Vec::new();
    for r in races {
        let ((sx, tx), (sy, ty)) = tokio::join!(
            sign_json(&s.client, a, &pk, &r.x),
            sign_json(&s.client, b, &pk, &r.y)
        );
        let (winner, answer, refusal) = match (sx, sy) {
            (200, 412) => (&r.x, tx, ty),
            (412, 200) => (&r.y, ty, tx),
            other => panic!(
                "{}: expected one 200 and one 412, got {other:?}: {tx} / {ty}",
                r.duty
            ),
        };
        verified_signature(&answer, winner);
        assert!(
            refusal.contains(&format!("was decided as root {}", root_hex(winner))),
            "{}: the refusal names the decided root: {refusal}",
            r.duty
        );
        winners.push(winner.clone());
    }
    winners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_combiners_get_one_root_per_duty_and_nodes_keep_it() {
    let s = setup();
    let mut nodes = s.start_nodes(&[]).await;
    let (_ca, a) = s.start_combiner("combiner-a").await;
    let (_cb, b) = s.start_combiner("combiner-b").await;

    // (a) 50 attestation duties and 5 block duties, each raced by both combiners.
    let all = races(10..60, 1000..1005);
    let winners = run_races(&s, &a, &b, &all).await;

    // Asked directly for the other root, a node names the duty and the decided root.
    for (r, w) in all
        .iter()
        .zip(&winners)
        .take(3)
        .chain(all.iter().zip(&winners).skip(50))
    {
        let loser = if w == &r.x { &r.y } else { &r.x };
        let (status, text) = sign_json(&s.client, &s.url(1), &share_pk(&s, 1), loser).await;
        assert_eq!(status, 412, "{}: {text}", r.duty);
        assert!(text.contains("agreement: "), "{text}");
        assert!(text.contains(&group()), "names the validator: {text}");
        assert!(
            text.contains(&format!("was decided as root {}", root_hex(w))),
            "names the decided root: {text}"
        );
        assert!(
            text.contains(&format!("(this request: {})", root_hex(loser))),
            "{text}"
        );
        if r.duty.starts_with("block") {
            assert!(text.contains("block of validator"), "{text}");
        } else {
            assert!(text.contains("for target epoch"), "{text}");
        }
    }

    // (b) The same root from both combiners: the same valid signature for both.
    let pk = group();
    for t in 70..75 {
        let body = attestation(t, "ef");
        let ((sa, ta), (sb, tb)) = tokio::join!(
            sign_json(&s.client, &a, &pk, &body),
            sign_json(&s.client, &b, &pk, &body)
        );
        assert_eq!((sa, sb), (200, 200), "target {t}: {ta} / {tb}");
        assert_eq!(
            verified_signature(&ta, &body),
            verified_signature(&tb, &body)
        );
    }

    // (d) Node a restarted after deciding keeps the decisions: the other root is refused by it
    // alone, the decided one signed (a repeat of its own record).
    nodes[0].kill9();
    let mut restarted = s.start_node(0, &[]).await;
    s.wait_ready(0, &mut restarted).await;
    for (r, w) in all.iter().zip(&winners).take(5) {
        let loser = if w == &r.x { &r.y } else { &r.x };
        let (status, text) = sign_json(&s.client, &s.url(0), &share_pk(&s, 0), loser).await;
        assert_eq!(status, 412, "{} after restart: {text}", r.duty);
        assert!(
            text.contains(&format!("was decided as root {}", root_hex(w))),
            "{text}"
        );
        let (status, text) = sign_json(&s.client, &s.url(0), &share_pk(&s, 0), w).await;
        assert_eq!(status, 200, "{} decided root after restart: {text}", r.duty);
    }
    nodes[0] = restarted;

    // (c) Node d stopped: racing duties are still decided; the losers get 412, not 503.
    nodes[3].kill9();
    run_races(&s, &a, &b, &races(80..90, 2000..2002)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_is_no_operator_gets_403_on_the_agreement_route() {
    let s = setup();
    let mut node = s.start_node(0, &[]).await;
    // One node alone never becomes ready (it needs its peers' history), but it serves the
    // agreement route: peers need it before anyone signs.
    wait_ready(
        &s.client,
        &format!("{}/upcheck", s.url(0)),
        &mut node,
        Duration::from_secs(30),
    )
    .await;
    let before = s.refused_metric(0, "not_a_peer").await;
    let batch = serde_json::json!({
        "cluster_hash": "0x".to_owned() + &"00".repeat(32),
        "operator": "node-b",
        "certificates": [],
        "messages": [],
    });
    let url = format!("{}/api/v1/cluster/agreement", s.url(0));
    let r = s.client.post(&url).json(&batch).send().await.expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(s.refused_metric(0, "not_a_peer").await, before + 1);

    // A peer (node-b's client certificate) naming another cluster: 400, counted.
    let peer = https_client(
        &s.pki.ca_cert,
        Some(s.pki.identity("node-b-client").expect("identity")),
        Duration::from_secs(10),
    );
    let wrong_before = s.refused_metric(0, "wrong_cluster").await;
    let r = peer.post(&url).json(&batch).send().await.expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(s.refused_metric(0, "wrong_cluster").await, wrong_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreement_off_keeps_first_come_signing() {
    let s = setup();
    let _nodes = s.start_nodes(&["--agreement", "off"]).await;
    // Two different roots for one duty, each to different nodes: each node signs what it got
    // (with agreement on, one of them would be refused).
    let x = attestation(20, "ab");
    let y = attestation(20, "cd");
    let (sx, tx) = sign_json(&s.client, &s.url(0), &share_pk(&s, 0), &x).await;
    let (sy, ty) = sign_json(&s.client, &s.url(2), &share_pk(&s, 2), &y).await;
    assert_eq!((sx, sy), (200, 200), "{tx} / {ty}");
    // The route is not served.
    let peer = https_client(
        &s.pki.ca_cert,
        Some(s.pki.identity("node-b-client").expect("identity")),
        Duration::from_secs(10),
    );
    let r = peer
        .post(format!("{}/api/v1/cluster/agreement", s.url(0)))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404);
}
