//! Threshold signing end to end with real processes and TLS: `dvsigner split`, four
//! `dvsigner signer` nodes (mutual TLS, their own slashing DBs) and a `dvsigner combiner`.
//! Checks: every oracle fixture through the combiner gives exactly the unsplit key's signature
//! (computed by py_ecc, not by us); a slashable request is 412; one node killed still signs; two
//! killed is 503 naming them; a stalled node does not slow signing; a node returning wrong
//! partials is left out and reported.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{
    att, cluster_pki, combiner_args, group_pk, https_operators, split_interop, tls_client,
    tls_signer_args, NODES,
};
use common::process::{free_port, run_ok, Proc};
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::{Keystore, Password};
use dvsigner::signing::Network;
use dvsigner::tls::DevPki;
use serde_json::Value;

const DEADLINE_MS: u64 = 1500;

struct Cluster {
    dir: tempfile::TempDir,
    pki: DevPki,
    node_ports: Vec<u16>,
    nodes: Vec<Option<Proc>>,
    client: reqwest::Client,
}

impl Cluster {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn node_args(&self, i: usize) -> Vec<String> {
        tls_signer_args(
            &self.pki,
            NODES[i],
            self.node_ports[i],
            &self.path(&format!("data/{}", NODES[i])),
            &self.path("cluster").join(NODES[i]),
        )
    }

    fn start_node(&mut self, i: usize) {
        let log = self.path(&format!(
            "{}-{}.log",
            NODES[i],
            Instant::now().elapsed().as_nanos()
        ));
        self.nodes[i] = Some(Proc::start(NODES[i], &self.node_args(i), &log));
    }

    fn start_combiner(&self, cluster_json: &Path, port: u16, tag: &str) -> Proc {
        let mut args = combiner_args(&self.pki, port, cluster_json);
        args.extend(["--deadline-ms".into(), DEADLINE_MS.to_string()]);
        Proc::start(
            "combiner",
            &args,
            &self.path(&format!("combiner-{tag}.log")),
        )
    }

    /// Waits until the combiner reports all four nodes UP.
    async fn wait_healthy(&self, port: u16, combiner: &mut Proc, want_up: usize) {
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = combiner.child.try_wait() {
                panic!("combiner exited ({s}):\n{}", combiner.log_text());
            }
            if let Ok(r) = self
                .client
                .get(format!("https://127.0.0.1:{port}/healthcheck"))
                .send()
                .await
            {
                if let Ok(v) = r.json::<Value>().await {
                    let up = v["checks"][1]["checks"]
                        .as_array()
                        .map(|a| a.iter().filter(|c| c["status"] == "UP").count())
                        .unwrap_or(0);
                    if up >= want_up {
                        return;
                    }
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "cluster not healthy:\n{}",
                combiner.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn sign(&self, port: u16, pubkey: &str, body: &str) -> (u16, String, Duration) {
        let t0 = Instant::now();
        let r = self
            .client
            .post(format!(
                "https://127.0.0.1:{port}/api/v1/eth2/sign/{pubkey}"
            ))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("combiner reachable");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"), t0.elapsed())
    }
}

fn local_signature(body: &str, i: u64) -> String {
    let network = Network::from_name_or_path("mainnet").expect("mainnet");
    let prepared = dvsigner::signing::prepare(body.as_bytes(), &network).expect("prepare");
    interop_secret_key(i).sign(&prepared.root).to_hex()
}

fn signature_of(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    v["signature"].as_str().expect("signature").to_owned()
}

/// Edits the node URL of one operator in a copy of cluster.json.
fn with_operator_url(src: &Path, dst: &Path, operator: &str, url: &str) {
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(src).expect("read")).expect("json");
    for op in v["operators"].as_array_mut().expect("operators") {
        if op["name"] == operator {
            op["url"] = Value::from(url);
        }
    }
    std::fs::write(dst, serde_json::to_string_pretty(&v).expect("json")).expect("write");
}

/// A Web3Signer-compatible impostor for node-d: right TLS identity, wrong partial signatures.
async fn start_lying_node(pki: &DevPki) -> (u16, tokio::sync::oneshot::Sender<()>) {
    use axum::routing::{get, post};
    let id = pki.identity("node-d").expect("identity");
    let tls = dvsigner::tls::server_config(&dvsigner::tls::ServerTlsFiles {
        cert: id.cert.clone(),
        key: id.key.clone(),
        client_ca: Some(pki.ca_cert.clone()),
        allowed_clients: None,
    })
    .expect("tls");
    let wrong = Arc::new(dvsigner::keys::SecretKey::random());
    let app = axum::Router::new()
        .route("/upcheck", get(|| async { "OK" }))
        .route(
            "/api/v1/eth2/sign/{id}",
            post(move |body: axum::body::Bytes| {
                let wrong = wrong.clone();
                async move {
                    let network = Network::from_name_or_path("mainnet").expect("mainnet");
                    let root = dvsigner::signing::prepare(&body, &network)
                        .expect("prepare")
                        .root;
                    axum::Json(serde_json::json!({"signature": wrong.sign(&root).to_hex()}))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
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
    (port, tx)
}

/// Accepts connections and never answers.
async fn start_stalled_node() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let h = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..1_000 {
            match listener.accept().await {
                Ok((s, _)) => held.push(s),
                Err(_) => break,
            }
        }
    });
    (port, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_of_four_cluster_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = cluster_pki(&dir.path().join("tls"), &NODES, false);
    let client = tls_client(&pki);

    // Two whole validator keys (interop 0 and 1) as keystores, split 3-of-4.
    let node_ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let out = dir.path().join("cluster");
    let split_text = split_interop(
        dir.path(),
        0..2,
        3,
        &https_operators(&NODES, &node_ports),
        &out,
    );
    assert!(split_text.contains("3-of-4"), "{split_text}");
    // `cluster verify` accepts the definition and a share keystore of node-b.
    let share = std::fs::read_dir(out.join("node-b/keystores"))
        .expect("dir")
        .next()
        .expect("one")
        .expect("entry")
        .path();
    let share_pw = out
        .join("node-b/passwords")
        .join(share.with_extension("txt").file_name().expect("name"));
    let verify = run_ok(&[
        "cluster".into(),
        "verify".into(),
        out.join("cluster.json").display().to_string(),
        "--share-keystore".into(),
        share.display().to_string(),
        "--password-file".into(),
        share_pw.display().to_string(),
    ]);
    assert!(verify.contains("share keystore OK"), "{verify}");
    // A share keystore holds a share, not the whole key.
    let share_sk = Keystore::from_json(&std::fs::read_to_string(&share).expect("read"))
        .expect("ks")
        .decrypt(&Password::from_file(&share_pw).expect("pw"))
        .expect("decrypt");
    assert!(
        share_sk.public_key().bytes().to_hex() != group_pk(0)
            && share_sk.public_key().bytes().to_hex() != group_pk(1)
    );

    let mut c = Cluster {
        dir,
        pki,
        node_ports,
        nodes: vec![None, None, None, None],
        client,
    };
    for i in 0..4 {
        c.start_node(i);
    }
    let cport = free_port();
    let cluster_json = out.join("cluster.json");
    let mut combiner = c.start_combiner(&cluster_json, cport, "1");
    c.wait_healthy(cport, &mut combiner, 4).await;

    // publicKeys lists the group keys.
    let mut keys: Vec<String> = c
        .client
        .get(format!("https://127.0.0.1:{cport}/api/v1/eth2/publicKeys"))
        .send()
        .await
        .expect("keys")
        .json()
        .await
        .expect("json");
    keys.sort();
    let mut want = vec![group_pk(0), group_pk(1)];
    want.sort();
    assert_eq!(keys, want);

    // Every sign type: the threshold signature is exactly the unsplit key's signature, as
    // computed by the independent oracle.
    for case in &common::oracle::cases_in_signable_order() {
        let body = serde_json::to_string(&case["request"]).expect("body");
        let (status, text, _) = c.sign(cport, &group_pk(0), &body).await;
        assert_eq!(
            status,
            200,
            "{}: {text}\n{}",
            case["name"],
            combiner.log_text()
        );
        assert_eq!(
            signature_of(&text),
            case["signature"].as_str().expect("sig"),
            "{}",
            case["name"]
        );
    }

    // Slashable: a double vote through the combiner is refused by the nodes → 412.
    let first = att(407_000);
    let (s, _, _) = c.sign(cport, &group_pk(1), &first).await;
    assert_eq!(s, 200);
    let double = first.replace(&"ab".repeat(32), &"cd".repeat(32));
    let (s, text, _) = c.sign(cport, &group_pk(1), &double).await;
    assert_eq!(s, 412, "{text}");

    // One node killed: still signs, and the signature is the whole key's.
    c.nodes[3].as_mut().expect("node-d").kill9();
    let body = att(407_001);
    let (s, text, _) = c.sign(cport, &group_pk(0), &body).await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(signature_of(&text), local_signature(&body, 0));

    // Two killed: 503 within the deadline, naming the failing nodes.
    c.nodes[2].as_mut().expect("node-c").kill9();
    let (s, text, took) = c.sign(cport, &group_pk(0), &att(407_002)).await;
    assert_eq!(s, 503, "{text}");
    assert!(text.contains("node-c") && text.contains("node-d"), "{text}");
    assert!(
        took < Duration::from_millis(DEADLINE_MS + 2_000),
        "503 took {took:?}"
    );
    drop(combiner);

    // node-c back; node-d's place taken by a node that accepts connections and never answers:
    // signing completes with the three live nodes, without waiting for the deadline.
    c.start_node(2);
    let (stall_port, _staller) = start_stalled_node().await;
    let stalled_json = c.path("cluster-stalled.json");
    with_operator_url(
        &cluster_json,
        &stalled_json,
        "node-d",
        &format!("https://127.0.0.1:{stall_port}"),
    );
    let cport2 = free_port();
    let mut combiner2 = c.start_combiner(&stalled_json, cport2, "2");
    c.wait_healthy(cport2, &mut combiner2, 3).await;
    for k in 0..5 {
        let body = att(407_100 + k);
        let (s, text, took) = c.sign(cport2, &group_pk(0), &body).await;
        assert_eq!(s, 200, "{text}");
        assert_eq!(signature_of(&text), local_signature(&body, 0));
        assert!(
            took < Duration::from_millis(DEADLINE_MS / 2),
            "a stalled node slowed signing to {took:?}"
        );
    }
    drop(combiner2);

    // node-d replaced by an impostor returning wrong partials: signing still works (the liar is
    // left out) and the combiner reports it.
    let (liar_port, _liar) = start_lying_node(&c.pki).await;
    let liar_json = c.path("cluster-liar.json");
    with_operator_url(
        &cluster_json,
        &liar_json,
        "node-d",
        &format!("https://127.0.0.1:{liar_port}"),
    );
    let cport3 = free_port();
    let mut combiner3 = c.start_combiner(&liar_json, cport3, "3");
    c.wait_healthy(cport3, &mut combiner3, 4).await;
    for k in 0..5 {
        let body = att(407_200 + k);
        let (s, text, _) = c.sign(cport3, &group_pk(0), &body).await;
        assert_eq!(s, 200, "{text}\n{}", combiner3.log_text());
        assert_eq!(signature_of(&text), local_signature(&body, 0));
    }
    let log = combiner3.log_text();
    assert!(
        log.contains("wrong partial") && log.contains("node-d"),
        "liar not reported:\n{log}"
    );
}
