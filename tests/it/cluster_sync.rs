//! Cluster history sync with real `dvsigner signer` processes over mutual TLS:
//! - a node whose database was wiped answers 503 until it merged history from enough peers, then
//!   refuses (412) whatever conflicts with what the cluster signed while it was away;
//! - a conflicting request reaching the wiped node and two honest nodes never yields a signature;
//! - a peer sending garbage, or history for keys outside the cluster, is reported and nothing of
//!   its answer is merged; non-peers get 403 on the history route;
//! - two nodes pulling from each other at the same time converge to the union of their histories;
//! - a node that stores new records notifies its peers, which pull them at once (no waiting for
//!   the periodic pull); notices from non-peers or naming another operator are refused;
//! - `set_initial_watermarks` refuses the past only for validators without history.

use crate::common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cluster::{
    cluster_pki, combiner_args, https_operators, peer_sync_args, split_interop, tls_signer_args,
    write_peer_allowlist, NODES,
};
use common::process::{free_port, run_ok, Proc};
use common::requests::{attestation_body, https_client};
use dvsigner::cluster::ClusterDefinition;
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::tls::DevPki;
use serde_json::{json, Value};

const GVR: &str = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95";

struct Setup {
    dir: tempfile::TempDir,
    pki: DevPki,
    ports: Vec<u16>,
    cluster_json: PathBuf,
    definition: ClusterDefinition,
    /// Client presenting `combiner-client` (allowed by TLS, not a peer).
    client: reqwest::Client,
}

fn client_with(pki: &DevPki, identity: &str) -> reqwest::Client {
    let id = pki.identity(identity).expect("identity");
    https_client(&pki.ca_cert, Some(id), Duration::from_secs(10))
}

/// PKI, one validator (interop key 0) split 3-of-4, the peer allow-list.
fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = cluster_pki(&dir.path().join("tls"), &NODES, true);
    write_peer_allowlist(&pki, &NODES, &dir.path().join("peers.txt"));
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let out = dir.path().join("cluster");
    split_interop(dir.path(), 0..1, 3, &https_operators(&NODES, &ports), &out);
    let cluster_json = out.join("cluster.json");
    let definition = ClusterDefinition::load(&cluster_json).expect("cluster.json");
    let client = client_with(&pki, "combiner-client");
    Setup {
        dir,
        pki,
        ports,
        cluster_json,
        definition,
        client,
    }
}

impl Setup {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.path(&format!("data/{}", NODES[i]))
    }

    fn share_pk(&self, i: usize) -> String {
        let (_, _, pk) = self
            .definition
            .shares_of(NODES[i])
            .next()
            .expect("one share");
        pk.bytes().to_hex()
    }

    fn url(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.ports[i])
    }

    fn start_node(&self, i: usize, min_peers: usize) -> Proc {
        self.start_node_with(i, min_peers, 1, &[])
    }

    fn start_node_with(
        &self,
        i: usize,
        min_peers: usize,
        interval_secs: u64,
        extra: &[String],
    ) -> Proc {
        let mut args = tls_signer_args(
            &self.pki,
            NODES[i],
            self.ports[i],
            &self.data_dir(i),
            &self.path("cluster").join(NODES[i]),
        );
        args.extend(peer_sync_args(
            &self.pki,
            NODES[i],
            &self.cluster_json,
            &self.path("peers.txt"),
        ));
        args.extend([
            "--sync-min-peers".into(),
            min_peers.to_string(),
            "--sync-interval-secs".into(),
            interval_secs.to_string(),
            "--no-sync-watermark-from-genesis".into(),
            // These tests sign at single nodes (some with fewer than t nodes running) to see
            // what history sync does; agreement (tests/it/agreement.rs) would hold every
            // block and attestation until t nodes agree.
            "--agreement".into(),
            "off".into(),
        ]);
        args.extend(extra.iter().cloned());
        let log = self.path(&format!(
            "{}-{}.log",
            NODES[i],
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_nanos()
        ));
        Proc::start(NODES[i], &args, &log)
    }

    fn start_combiner(&self, port: u16) -> Proc {
        let mut args = combiner_args(&self.pki, port, &self.cluster_json);
        args.extend(["--deadline-ms".into(), "1500".into()]);
        Proc::start("combiner", &args, &self.path("combiner.log"))
    }

    async fn post(&self, base: &str, pubkey: &str, body: &str) -> (u16, String) {
        crate::common::http::sign_json(&self.client, base, pubkey, body).await
    }

    async fn health(&self, i: usize) -> Option<(u16, Value)> {
        let r = self
            .client
            .get(format!("{}/healthcheck", self.url(i)))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.ok()?))
    }

    /// Waits until node `i`'s /healthcheck satisfies `pred`, or panics with its log.
    async fn wait_health(
        &self,
        i: usize,
        node: &mut Proc,
        what: &str,
        pred: impl Fn(u16, &Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = node.child.try_wait() {
                panic!("{} exited ({s}):\n{}", NODES[i], node.log_text());
            }
            if let Some((status, v)) = self.health(i).await {
                if pred(status, &v) {
                    return v;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{} never {what}:\n{}",
                NODES[i],
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_synced(&self, i: usize, node: &mut Proc) {
        self.wait_health(i, node, "synced", |s, _| s == 200).await;
    }
}

fn conflicting(body: &str) -> String {
    body.replace(&"ab".repeat(32), &"cd".repeat(32))
}

fn sync_check(v: &Value) -> Value {
    v["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == "cluster-sync"))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_node_waits_for_history_and_refuses_what_the_cluster_signed() {
    let s = setup();
    let group = interop_secret_key(0).public_key().bytes().to_hex();
    let mut nodes: Vec<Option<Proc>> = (0..4).map(|i| Some(s.start_node(i, 2))).collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        s.wait_synced(i, n.as_mut().expect("node")).await;
    }
    let cport = free_port();
    let mut combiner = s.start_combiner(cport);
    let curl = format!("https://127.0.0.1:{cport}");
    common::process::wait_ready(
        &s.client,
        &format!("{curl}/upcheck"),
        &mut combiner,
        Duration::from_secs(20),
    )
    .await;
    let (st, text) = s.post(&curl, &group, &attestation_body(100)).await;
    assert_eq!(st, 200, "{text}\n{}", combiner.log_text());

    // node-d loses its disk; the cluster goes on signing without it.
    nodes[3].as_mut().expect("d").kill9();
    std::fs::remove_dir_all(s.data_dir(3)).expect("wipe");
    for t in [101, 102] {
        let (st, text) = s.post(&curl, &group, &attestation_body(t)).await;
        assert_eq!(st, 200, "{text}");
    }

    // Only node-a reachable: node-d restarts but may not sign (503), says why; /upcheck is up.
    nodes[1].as_mut().expect("b").kill9();
    nodes[2].as_mut().expect("c").kill9();
    let mut d = s.start_node(3, 2);
    let v = s
        .wait_health(3, &mut d, "reported partial sync", |st, v| {
            st == 503 && sync_check(v)["data"]["peers_merged"] == 1
        })
        .await;
    let check = sync_check(&v);
    assert_eq!(check["status"], "DOWN", "{v}");
    assert!(
        check["data"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("1 of the 2"),
        "{v}"
    );
    assert!(
        check["data"]["peers"]["node-b"]["last_error"].is_string(),
        "{v}"
    );
    let up = s
        .client
        .get(format!("{}/upcheck", s.url(3)))
        .send()
        .await
        .expect("upcheck");
    assert_eq!(up.status().as_u16(), 200);
    let (st, text) = s
        .post(
            &s.url(3),
            &s.share_pk(3),
            &conflicting(&attestation_body(102)),
        )
        .await;
    assert_eq!(st, 503, "{text}");
    // Through the combiner: node-a refuses, node-d is not ready: no signature.
    let (st, text) = s
        .post(&curl, &group, &conflicting(&attestation_body(101)))
        .await;
    assert!(st == 412 || st == 503, "{st} {text}");

    // node-b back: node-d merges from a and b, becomes ready, and refuses every conflict.
    nodes[1] = Some(s.start_node(1, 2));
    s.wait_synced(1, nodes[1].as_mut().expect("b")).await;
    s.wait_synced(3, &mut d).await;
    let v = s.health(3).await.expect("health").1;
    assert_eq!(sync_check(&v)["status"], "UP", "{v}");
    assert!(
        sync_check(&v)["data"]["peers"]["node-a"]["lag_secs"].is_u64(),
        "{v}"
    );
    for t in [100, 101, 102] {
        let (st, text) = s
            .post(
                &s.url(3),
                &s.share_pk(3),
                &conflicting(&attestation_body(t)),
            )
            .await;
        assert_eq!(st, 412, "target {t}: {text}\n{}", d.log_text());
    }
    // A repeat of what the cluster signed is still signable (same root), new duties too.
    let (st, text) = s
        .post(&s.url(3), &s.share_pk(3), &attestation_body(102))
        .await;
    assert_eq!(st, 200, "{text}");

    // node-a reached no peer while the others were down, so it refused blocks and attestations;
    // it signs them again once it pulled from node-b and node-d.
    s.wait_synced(0, nodes[0].as_mut().expect("a")).await;
    // (b) node-c down, the conflicting request reaches node-d and two honest nodes: never 200.
    let (st, text) = s
        .post(&curl, &group, &conflicting(&attestation_body(101)))
        .await;
    assert!(st == 412 || st == 503, "{st} {text}");
    let (st, text) = s.post(&curl, &group, &attestation_body(103)).await;
    assert_eq!(st, 200, "{text}\n{}", combiner.log_text());
}

/// A fake peer with `name`'s server certificate answering every history request with `body`.
async fn start_fake_peer(s: &Setup, i: usize, body: String) -> tokio::sync::oneshot::Sender<()> {
    use axum::routing::get;
    let id = s.pki.identity(NODES[i]).expect("identity");
    let tls = dvsigner::tls::server_config(&dvsigner::tls::ServerTlsFiles {
        cert: id.cert.clone(),
        key: id.key.clone(),
        client_ca: None,
        allowed_clients: None,
    })
    .expect("tls");
    let app = axum::Router::new().route(
        dvsigner::cluster::protocol::HISTORY_PATH,
        get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", s.ports[i]))
        .await
        .expect("bind");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(dvsigner::http::server::run(
        listener,
        Some(tls),
        app,
        Default::default(),
        async {
            let _ = rx.await;
        },
    ));
    tx
}

fn attestations_of(page: &Value) -> Vec<(String, String)> {
    page["interchange"]["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| {
            d["signed_attestations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|a| {
            (
                a["target_epoch"].as_str().unwrap_or("").to_owned(),
                a["signing_root"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn history(client: &reqwest::Client, base: &str) -> (u16, Value) {
    let r = client
        .get(format!(
            "{base}{}?validator_offset=0&limit=10",
            dvsigner::cluster::protocol::HISTORY_PATH
        ))
        .send()
        .await
        .expect("history");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_are_reported_and_nothing_is_merged_from_them() {
    let s = setup();
    let group = interop_secret_key(0).public_key().bytes().to_hex();
    // node-c answers garbage; node-d answers a well-formed page with a record for the cluster's
    // validator and one for a key outside the cluster.
    let _c = start_fake_peer(&s, 2, "this is not json".into()).await;
    let page = json!({
        "cluster_hash": s.definition.hash().to_string(),
        "operator": "node-d",
        "validator_offset": 0,
        "limit": 1,
        "total_validators": 1,
        "interchange": {
            "metadata": {"interchange_format_version": "5", "genesis_validators_root": GVR},
            "data": [
                {"pubkey": group, "signed_blocks": [],
                 "signed_attestations": [{"source_epoch": "0", "target_epoch": "6",
                                          "signing_root": format!("0x{}", "11".repeat(32))}]},
                {"pubkey": interop_secret_key(5).public_key().bytes().to_hex(), "signed_blocks": [],
                 "signed_attestations": [{"source_epoch": "0", "target_epoch": "9"}]}
            ]
        }
    });
    let _d = start_fake_peer(&s, 3, page.to_string()).await;
    // node-a needs 3 peers (never reached), node-b 1.
    let mut a = s.start_node(0, 3);
    let mut b = s.start_node(1, 1);
    s.wait_synced(1, &mut b).await;
    let (st, text) = s
        .post(&s.url(1), &s.share_pk(1), &attestation_body(7))
        .await;
    assert_eq!(st, 200, "{text}");

    // node-a merges node-b's record (target 7) but nothing from node-c or node-d.
    let peer = client_with(&s.pki, "node-b-client");
    let start = Instant::now();
    loop {
        let (st, h) = history(&peer, &s.url(0)).await;
        assert_eq!(st, 200, "{h}");
        let atts = attestations_of(&h);
        assert!(atts.iter().all(|(t, _)| t != "6" && t != "9"), "{h}");
        if atts.iter().any(|(t, _)| t == "7") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{h}\n{}",
            a.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = s
        .wait_health(0, &mut a, "reported both bad peers", |st, v| {
            let p = &sync_check(v)["data"]["peers"];
            st == 503
                && p["node-c"]["last_error"].is_string()
                && p["node-d"]["last_error"].is_string()
        })
        .await;
    let peers = &sync_check(&v)["data"]["peers"];
    assert!(
        peers["node-c"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("malformed"),
        "{v}"
    );
    assert!(
        peers["node-d"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("outside the cluster"),
        "{v}"
    );
    assert_eq!(peers["node-d"]["records_merged"], 0, "{v}");
    assert!(a.log_text().contains("nothing merged from this peer"));

    // After more rounds, still nothing from node-d.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, h) = history(&peer, &s.url(0)).await;
    assert!(
        attestations_of(&h)
            .iter()
            .all(|(t, _)| t != "6" && t != "9"),
        "{h}"
    );
    // Only peers may read the history: the combiner's client certificate gets 403.
    let (st, _) = history(&s.client, &s.url(0)).await;
    assert_eq!(st, 403);
}

fn import(s: &Setup, i: usize, target: u64, root: &str) {
    std::fs::create_dir_all(s.data_dir(i)).expect("mkdir");
    let doc = json!({
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": GVR},
        "data": [{"pubkey": s.share_pk(i), "signed_blocks": [],
                  "signed_attestations": [{"source_epoch": "0", "target_epoch": target.to_string(),
                                           "signing_root": root}]}]
    });
    let file = s.path(&format!("import-{i}.json"));
    std::fs::write(&file, doc.to_string()).expect("write");
    run_ok(&[
        "slashing-protection".into(),
        "import".into(),
        "--slashing-db".into(),
        format!(
            "sqlite:{}",
            s.data_dir(i).join("slashing-protection.sqlite").display()
        ),
        "--file".into(),
        file.display().to_string(),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_pulling_from_each_other_converge() {
    let s = setup();
    let root_of = |t: u64| {
        let network = dvsigner::signing::Network::from_name_or_path("mainnet").expect("net");
        dvsigner::signing::prepare(attestation_body(t).as_bytes(), &network)
            .expect("prepare")
            .root
            .to_hex()
    };
    import(&s, 0, 10, &root_of(10));
    import(&s, 1, 20, &root_of(20));
    let mut a = s.start_node(0, 1);
    let mut b = s.start_node(1, 1);
    s.wait_synced(0, &mut a).await;
    s.wait_synced(1, &mut b).await;
    let peer = client_with(&s.pki, "node-c-client");
    for i in [0, 1] {
        let start = Instant::now();
        loop {
            let (_, h) = history(&peer, &s.url(i)).await;
            let mut targets: Vec<String> =
                attestations_of(&h).into_iter().map(|(t, _)| t).collect();
            targets.sort();
            if targets == ["10", "20"] {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "node {i}: {h}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Each refuses a conflict with the other's record, and may repeat it.
    let (st, text) = s
        .post(
            &s.url(0),
            &s.share_pk(0),
            &conflicting(&attestation_body(20)),
        )
        .await;
    assert_eq!(st, 412, "{text}");
    let (st, text) = s
        .post(
            &s.url(1),
            &s.share_pk(1),
            &conflicting(&attestation_body(10)),
        )
        .await;
    assert_eq!(st, 412, "{text}");
    let (st, text) = s
        .post(&s.url(1), &s.share_pk(1), &attestation_body(10))
        .await;
    assert_eq!(st, 200, "{text}");
}

#[tokio::test]
async fn initial_watermarks_apply_only_without_history() {
    use dvsigner::bls::{PublicKeyBytes, SigningRoot};
    use dvsigner::slashing::{SlashableMessage, SlashingDb, Verdict};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = SlashingDb::open(&format!(
        "sqlite:{}",
        dir.path().join("db.sqlite").display()
    ))
    .await
    .expect("open");
    let fresh = interop_secret_key(1).public_key().bytes();
    let known = interop_secret_key(2).public_key().bytes();
    let gvr = [7u8; 32];
    let vote = |s: u64, t: u64| SlashableMessage::Attestation {
        source_epoch: s,
        target_epoch: t,
    };
    let root = |b: u8| SigningRoot([b; 32]);
    let ok = db
        .check_and_record(known, gvr, vote(2, 3), root(1))
        .await
        .expect("check");
    assert_eq!(ok, Verdict::Allowed);
    let changed = db
        .set_initial_watermarks(&[fresh, known, fresh], 1000, 50)
        .await
        .expect("watermarks");
    // `known` keeps its attestation floors; only its block floor (never set) and `fresh` change.
    assert_eq!(changed, 2);
    let check = |pk: PublicKeyBytes, msg, r| db.check_and_record(pk, gvr, msg, root(r));
    assert!(!check(fresh, vote(49, 50), 2).await.expect("c").is_safe());
    assert!(!check(fresh, vote(10, 51), 2).await.expect("c").is_safe());
    assert!(!check(fresh, SlashableMessage::Block { slot: 1000 }, 2)
        .await
        .expect("c")
        .is_safe());
    assert!(check(fresh, vote(50, 51), 2).await.expect("c").is_safe());
    assert!(check(fresh, SlashableMessage::Block { slot: 1001 }, 2)
        .await
        .expect("c")
        .is_safe());
    assert!(check(known, vote(3, 4), 2).await.expect("c").is_safe());
    assert!(!check(known, SlashableMessage::Block { slot: 999 }, 2)
        .await
        .expect("c")
        .is_safe());
}

/// With the periodic pull an hour away, what node-a signs alone reaches node-d within seconds,
/// through node-a's notice and node-d's windowed pull; node-d then refuses the conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_makes_peers_pull_new_history_at_once() {
    let s = setup();
    let mport = free_port();
    let metrics = vec!["--metrics-listen".to_owned(), format!("127.0.0.1:{mport}")];
    let mut nodes: Vec<Proc> = (0..4)
        .map(|i| s.start_node_with(i, 2, 3600, if i == 3 { &metrics } else { &[] }))
        .collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        s.wait_synced(i, n).await;
    }
    let merged_from_a = |v: &Value| {
        sync_check(v)["data"]["peers"]["node-a"]["records_merged"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = s.health(3).await.expect("health").1;
    assert_eq!(merged_from_a(&before), 0, "{before}");

    let (st, text) = s
        .post(&s.url(0), &s.share_pk(0), &attestation_body(200))
        .await;
    assert_eq!(st, 200, "{text}");
    let v = s
        .wait_health(3, &mut nodes[3], "pulled node-a's new record", |_, v| {
            merged_from_a(v) >= 1
        })
        .await;
    let peer_a = &sync_check(&v)["data"]["peers"]["node-a"];
    assert!(peer_a["notices_received"].as_u64() >= Some(1), "{v}");
    assert!(peer_a["notified_pulls"].as_u64() >= Some(1), "{v}");
    let scrape = reqwest::get(format!("http://127.0.0.1:{mport}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series = |name: &str, peer: &str| -> Option<f64> {
        let prefix = format!("{name}{{peer=\"{peer}\"}} ");
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    };
    assert_eq!(
        series("dvsigner_sync_peer_records_merged_total", "node-a"),
        Some(1.0),
        "{scrape}"
    );
    assert!(
        series("dvsigner_sync_peer_notices_received_total", "node-a") >= Some(1.0),
        "{scrape}"
    );
    assert!(
        series("dvsigner_sync_peer_lag_seconds", "node-b").is_some(),
        "{scrape}"
    );
    assert!(
        series(
            "dvsigner_sync_peer_last_success_timestamp_seconds",
            "node-c"
        ) > Some(1.7e9),
        "{scrape}"
    );
    assert_eq!(
        series("dvsigner_sync_peer_failures_total", "node-a"),
        Some(0.0),
        "{scrape}"
    );
    let (st, text) = s
        .post(
            &s.url(3),
            &s.share_pk(3),
            &conflicting(&attestation_body(200)),
        )
        .await;
    assert_eq!(st, 412, "{text}\n{}", nodes[3].log_text());
    // The same message is still signable on node-d (a repeat of what the cluster signed).
    let (st, text) = s
        .post(&s.url(3), &s.share_pk(3), &attestation_body(200))
        .await;
    assert_eq!(st, 200, "{text}");

    // Notices are authenticated like history requests and must name the sender.
    let hash = s.definition.hash().to_string();
    let notice =
        |operator: &str| json!({"cluster_hash": hash, "operator": operator, "min_target_epoch": 1});
    let url = format!("{}/api/v1/cluster/notify", s.url(3));
    let r = s
        .client
        .post(&url)
        .json(&notice("node-a"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 403, "combiner-client is not a peer");
    let b = client_with(&s.pki, "node-b-client");
    let r = b
        .post(&url)
        .json(&notice("node-c"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400, "node-b may not speak for node-c");
    let r = b
        .post(&url)
        .json(&json!({"cluster_hash": "0x00", "operator": "node-b"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400, "another cluster's notice");
    let r = b.post(&url).body("not json").send().await.expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let r = b
        .post(&url)
        .json(&notice("node-b"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 204);
    let v = s
        .wait_health(3, &mut nodes[3], "counted node-b's notice", |_, v| {
            sync_check(v)["data"]["peers"]["node-b"]["notices_received"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(
        sync_check(&v)["data"]["peers"]["node-c"]["notices_received"].as_u64(),
        Some(0),
        "{v}"
    );
}
