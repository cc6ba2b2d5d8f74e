//! The combiner towards nodes that are not dvsigner nodes, and towards nodes that fail.
//!
//! - A Web3Signer-compatible signer that signs only the supplied `signingRoot` (and answers 400
//!   without one) serves as node-d of a 3-of-4 cluster whose node-c is down: requests without
//!   a root from the client still get threshold signatures (the combiner fills the root in).
//! - A 4-of-7 cluster where node-a is not listening, node-b presents a certificate of another
//!   CA, node-c accepts TCP connections and never answers (so its connect timeout, set to half
//!   the deadline, ends the TLS handshake) and node-d answers 500: the 503 names
//!   each of them with its cause, one line each; as a 3-of-4 cluster the combiner answers once
//!   t is out of reach and names the node it did not wait for.
//!
//! - A 3-of-4 cluster of real signer processes whose node-d is killed: the combiner backs it
//!   off after a few failed attempts (one WARN, a periodic summary, skipped requests counted),
//!   tries it again only when fewer than t nodes are healthy, and lets it back in (one INFO)
//!   once it is restarted.
//!
//! - A 3-of-4 cluster whose node-a is stopped, node-b refuses at once (412), node-c refuses
//!   slowly and node-d signs: the combiner answers 412 as soon as the duty cannot be won (one
//!   refusal, fewer than t nodes left that could give a partial), passing on node-b's text;
//!   the same nodes answering 500 instead of refusing give a 503.
//!
//! Every server here is a real process (`dvsigner signer`, `dvsigner combiner`) or an
//! in-test server on 127.0.0.1 with the cluster's mutual TLS.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{
    cluster_pki, combiner_args, https_operators, split_interop, tls_client, tls_signer_args, NODES,
};
use common::process::{free_port, wait_ready, Proc};
use common::requests::{attestation_body, https_client};
use dvsigner::bls::{Signature, SigningRoot};
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::{Keystore, Password, SecretKey};
use dvsigner::signing::Network;
use dvsigner::tls::{DevIdentity, DevPki};
use serde_json::Value;

/// The share secrets `dvsigner split` wrote for one operator, by share public key (hex).
fn operator_shares(share_dir: &Path) -> HashMap<String, SecretKey> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(share_dir.join("keystores")).expect("keystores") {
        let path = entry.expect("entry").path();
        let pw = share_dir
            .join("passwords")
            .join(path.with_extension("txt").file_name().expect("name"));
        let sk = Keystore::from_json(&std::fs::read_to_string(&path).expect("read"))
            .expect("keystore")
            .decrypt(&Password::from_file(&pw).expect("password"))
            .expect("decrypt");
        out.insert(sk.public_key().bytes().to_hex(), sk);
    }
    assert!(!out.is_empty(), "no shares in {}", share_dir.display());
    out
}

/// Serves `app` on `listener` over TLS as `id`, requiring client certificates chaining to
/// `client_ca` (as dvsigner nodes do). Stops when the returned sender is dropped.
fn serve_tls(
    listener: tokio::net::TcpListener,
    id: &DevIdentity,
    client_ca: &Path,
    app: axum::Router,
) -> tokio::sync::oneshot::Sender<()> {
    let tls = dvsigner::tls::server_config(&dvsigner::tls::ServerTlsFiles {
        cert: id.cert.clone(),
        key: id.key.clone(),
        client_ca: Some(client_ca.to_owned()),
        allowed_clients: None,
    })
    .expect("tls");
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

async fn bind() -> (tokio::net::TcpListener, u16) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

/// What a foreign signer saw: every request body it signed.
type Seen = Arc<Mutex<Vec<Value>>>;

/// A Web3Signer-compatible signer of another make: it implements only
/// `POST /api/v1/eth2/sign/{pubkey}` (and `/upcheck`), signs the supplied `signingRoot` with the
/// share of `{pubkey}` without looking at the payload, and answers 400 when the request has no
/// `signingRoot`.
fn foreign_signer(shares: HashMap<String, SecretKey>, seen: Seen) -> axum::Router {
    use axum::extract::Path as UrlPath;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    let shares = Arc::new(shares);
    axum::Router::new()
        .route("/upcheck", get(|| async { "OK" }))
        .route(
            "/api/v1/eth2/sign/{pubkey}",
            post(
                move |UrlPath(pubkey): UrlPath<String>, body: axum::body::Bytes| {
                    let shares = shares.clone();
                    let seen = seen.clone();
                    async move {
                        let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                            return (StatusCode::BAD_REQUEST, "not JSON").into_response();
                        };
                        let Some(root) = v["signingRoot"]
                            .as_str()
                            .and_then(|h| dvsigner::bls::parse_hex::<32>(h).ok())
                        else {
                            return (StatusCode::BAD_REQUEST, "signingRoot is required")
                                .into_response();
                        };
                        let Some(sk) = shares.get(&pubkey.to_lowercase()) else {
                            return (StatusCode::NOT_FOUND, "unknown key").into_response();
                        };
                        let sig = sk.sign(&SigningRoot(root));
                        seen.lock().expect("lock").push(v);
                        axum::Json(serde_json::json!({"signature": sig.to_hex()})).into_response()
                    }
                },
            ),
        )
}

fn start_combiner(dir: &Path, pki: &DevPki, cluster_json: &Path, deadline_ms: u64) -> (Proc, u16) {
    start_combiner_with(dir, pki, cluster_json, deadline_ms, &[])
}

fn start_combiner_with(
    dir: &Path,
    pki: &DevPki,
    cluster_json: &Path,
    deadline_ms: u64,
    extra: &[&str],
) -> (Proc, u16) {
    let port = free_port();
    let mut args = combiner_args(pki, port, cluster_json);
    args.extend(["--deadline-ms".into(), deadline_ms.to_string()]);
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let p = Proc::start("combiner", &args, &dir.join("combiner.log"));
    (p, port)
}

async fn sign(client: &reqwest::Client, port: u16, pubkey: &str, body: &str) -> (u16, String) {
    let r = client
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
    (status, r.text().await.expect("body"))
}

fn root_of(body: &str) -> SigningRoot {
    let network = Network::from_name_or_path("mainnet").expect("mainnet");
    dvsigner::signing::prepare(body.as_bytes(), &network)
        .expect("prepare")
        .root
}

fn without_root(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("signingRoot");
        o.remove("signing_root");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_node_that_signs_only_supplied_roots_completes_the_threshold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = cluster_pki(&dir.path().join("tls"), &NODES, false);
    let client = tls_client(&pki);
    let ports = [free_port(), free_port(), free_port()];
    let (d_listener, d_port) = bind().await;
    let urls = https_operators(&NODES, &[ports[0], ports[1], ports[2], d_port]);
    let out = dir.path().join("cluster");
    split_interop(dir.path(), 0..1, 3, &urls, &out);

    // node-a and node-b are dvsigner nodes; node-c is down (never started); node-d is foreign.
    let mut nodes: Vec<Proc> = (0..2)
        .map(|i| {
            let args = tls_signer_args(
                &pki,
                NODES[i],
                ports[i],
                &dir.path().join(format!("data/{}", NODES[i])),
                &out.join(NODES[i]),
            );
            Proc::start(
                NODES[i],
                &args,
                &dir.path().join(format!("{}.log", NODES[i])),
            )
        })
        .collect();
    let seen: Seen = Arc::default();
    let _foreign = serve_tls(
        d_listener,
        pki.identity("node-d").expect("identity"),
        &pki.ca_cert,
        foreign_signer(operator_shares(&out.join("node-d")), seen.clone()),
    );
    let (mut combiner, cport) = start_combiner(dir.path(), &pki, &out.join("cluster.json"), 3000);
    // `/healthcheck` is 200 once t = 3 nodes answer `/upcheck`: a, b and the foreign d.
    wait_ready(
        &client,
        &format!("https://127.0.0.1:{cport}/healthcheck"),
        &mut combiner,
        Duration::from_secs(90),
    )
    .await;
    for n in &mut nodes {
        assert!(
            matches!(n.child.try_wait(), Ok(None)),
            "{} exited:\n{}",
            n.name,
            n.log_text()
        );
    }

    // The foreign node refuses a request without a root itself (so it cannot have signed one).
    let group = interop_secret_key(0).public_key().clone();
    let group_hex = group.bytes().to_hex();
    let share_d = operator_shares(&out.join("node-d"))
        .into_keys()
        .next()
        .expect("share");
    let direct = reqwest::Client::builder()
        .use_preconfigured_tls(
            dvsigner::tls::client_config(dvsigner::tls::ClientTlsOptions {
                ca: Some(pki.ca_cert.clone()),
                pinned: vec![],
                identity: Some((
                    pki.identity("combiner-client").expect("id").cert.clone(),
                    pki.identity("combiner-client").expect("id").key.clone(),
                )),
            })
            .expect("client tls"),
        )
        .build()
        .expect("client");
    let r = direct
        .post(format!(
            "https://127.0.0.1:{d_port}/api/v1/eth2/sign/{share_d}"
        ))
        .body(attestation_body(1))
        .send()
        .await
        .expect("foreign node reachable");
    assert_eq!(r.status(), 400);

    // Every oracle fixture, sent WITHOUT a signing root: 200 with the unsplit key's signature,
    // which verifies under the group key over the root the oracle computed.
    let cases = common::oracle::cases_in_signable_order();
    let mut kinds = BTreeSet::new();
    for case in &cases {
        let request = without_root(case["request"].clone());
        let body = serde_json::to_string(&request).expect("body");
        let (status, text) = sign(&client, cport, &group_hex, &body).await;
        assert_eq!(
            status,
            200,
            "{}: {text}\n{}",
            case["name"],
            combiner.log_text()
        );
        let v: Value = serde_json::from_str(&text).expect("json");
        let sig = Signature::from_hex(v["signature"].as_str().expect("signature")).expect("sig");
        let root = dvsigner::bls::parse_hex::<32>(case["signing_root"].as_str().expect("root"))
            .expect("root hex");
        assert!(
            sig.verify(&group, &root),
            "{}: does not verify",
            case["name"]
        );
        assert_eq!(
            sig.to_hex(),
            case["signature"].as_str().expect("sig"),
            "{}",
            case["name"]
        );
        kinds.insert(request["type"].as_str().expect("type").to_owned());
    }
    for kind in [
        "ATTESTATION",
        "BLOCK_V2",
        "RANDAO_REVEAL",
        "AGGREGATION_SLOT",
        "AGGREGATE_AND_PROOF_V2",
        "SYNC_COMMITTEE_MESSAGE",
        "VALIDATOR_REGISTRATION",
    ] {
        assert!(kinds.contains(kind), "{kind} not exercised: {kinds:?}");
    }
    // node-d signed each of them (with node-c down no threshold forms without it), and what it
    // received is the client's request plus the computed root.
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), cases.len());
        for (got, case) in seen.iter().zip(&cases) {
            assert_eq!(got["signingRoot"], case["signing_root"], "{}", case["name"]);
            assert_eq!(
                without_root(got.clone()),
                case["request"],
                "{}",
                case["name"]
            );
        }
    }

    // A client that sends the root under Web3Signer's snake-case name: the nodes get it once,
    // as signingRoot, and signing works.
    // (Source above every epoch of the fixtures, which set the nodes' low watermark.)
    let att = attestation_body(900_000).replace(
        "\"source\":{\"epoch\":\"0\"",
        "\"source\":{\"epoch\":\"400000\"",
    );
    assert!(att.contains("400000"), "{att}");
    let root = root_of(&att);
    let mut with_snake: Value = serde_json::from_str(&att).expect("json");
    with_snake["signing_root"] = Value::from(root.to_hex());
    let (status, text) = sign(&client, cport, &group_hex, &with_snake.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        v["signature"].as_str().expect("signature"),
        interop_secret_key(0).sign(&root).to_hex()
    );
    let last = seen.lock().expect("lock").last().cloned().expect("seen");
    assert_eq!(last["signingRoot"], Value::from(root.to_hex()));
    assert!(last.get("signing_root").is_none(), "{last}");
    assert!(Signature::from_hex(v["signature"].as_str().expect("sig"))
        .expect("sig")
        .verify(&group, &root.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_names_each_failing_node_and_its_cause() {
    const NODES: [&str; 7] = [
        "node-a", "node-b", "node-c", "node-d", "node-e", "node-f", "node-g",
    ];
    const DEADLINE_MS: u64 = 1000;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = cluster_pki(&dir.path().join("tls"), &NODES, false);
    let other_pki =
        DevPki::generate(&dir.path().join("other-tls"), &["node-b"], &[]).expect("other pki");
    let client = tls_client(&pki);

    // node-a: nothing listening. node-b: a TLS server whose certificate comes from another CA.
    // node-c: accepts TCP connections and never answers. node-d: answers 500 with a long,
    // multi-line body. node-e..g: healthy signers (3 partials, one short of t = 4).
    let a_port = free_port();
    let (b_listener, b_port) = bind().await;
    let (c_listener, c_port) = bind().await;
    let (d_listener, d_port) = bind().await;
    let mut healthy = Vec::new();
    for _ in 0..3 {
        healthy.push(bind().await);
    }
    let ports: Vec<u16> = [a_port, b_port, c_port, d_port]
        .into_iter()
        .chain(healthy.iter().map(|(_, p)| *p))
        .collect();
    let urls = https_operators(&NODES, &ports);
    let out = dir.path().join("cluster");
    split_interop(dir.path(), 0..1, 4, &urls, &out);

    let _b = serve_tls(
        b_listener,
        other_pki.identity("node-b").expect("identity"),
        &pki.ca_cert,
        foreign_signer(operator_shares(&out.join("node-b")), Seen::default()),
    );
    let _c = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..1_000 {
            match c_listener.accept().await {
                Ok((s, _)) => held.push(s),
                Err(_) => break,
            }
        }
    });
    let d_body = format!(
        "Internal Server Error: slashing database unreachable\n\ncaused by: {}",
        "connection pool timed out waiting for a free connection; ".repeat(8)
    );
    let d_app = {
        use axum::http::StatusCode;
        use axum::routing::{get, post};
        let d_body = d_body.clone();
        axum::Router::new()
            .route("/upcheck", get(|| async { "OK" }))
            .route(
                "/api/v1/eth2/sign/{pubkey}",
                post(move || {
                    let d_body = d_body.clone();
                    async move { (StatusCode::INTERNAL_SERVER_ERROR, d_body) }
                }),
            )
    };
    let _d = serve_tls(
        d_listener,
        pki.identity("node-d").expect("identity"),
        &pki.ca_cert,
        d_app,
    );
    let mut _healthy_servers = Vec::new();
    for ((listener, _), name) in healthy.into_iter().zip(&NODES[4..]) {
        _healthy_servers.push(serve_tls(
            listener,
            pki.identity(name).expect("identity"),
            &pki.ca_cert,
            foreign_signer(operator_shares(&out.join(name)), Seen::default()),
        ));
    }

    let connect_ms = (DEADLINE_MS / 2).to_string();
    let (mut combiner, cport) = start_combiner_with(
        dir.path(),
        &pki,
        &out.join("cluster.json"),
        DEADLINE_MS,
        &["--node-connect-timeout-ms", &connect_ms],
    );
    wait_ready(
        &client,
        &format!("https://127.0.0.1:{cport}/upcheck"),
        &mut combiner,
        Duration::from_secs(60),
    )
    .await;

    let group_hex = interop_secret_key(0).public_key().bytes().to_hex();
    let (status, text) = sign(&client, cport, &group_hex, &attestation_body(5)).await;
    assert_eq!(status, 503, "{text}\n{}", combiner.log_text());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "Service Unavailable: only 3 of 4 required partial signatures; nodes without one:",
        "{text}"
    );
    // One line per failing node, in name order, each naming the node and its URL in full.
    assert_eq!(lines.len(), 5, "{text}");
    for (line, (name, url)) in lines[1..].iter().zip(&urls) {
        assert!(
            line.starts_with(&format!("- {name} ({url}): ")),
            "{line}\n{text}"
        );
    }
    let cause = |i: usize| lines[1 + i].split_once("): ").expect("cause").1;
    assert_eq!(
        cause(0),
        "connection refused (nothing listening at the node's address)"
    );
    assert!(
        cause(1).starts_with("TLS failure: the node's certificate is not trusted"),
        "{}",
        cause(1)
    );
    // node-c never completes the TLS handshake: the connect timeout (set to half the
    // deadline) ends it, and the cause says it was the connection, not the answer.
    assert_eq!(
        cause(2),
        format!(
            "timed out connecting: no TCP/TLS connection within {} ms",
            DEADLINE_MS / 2
        )
    );
    // node-d: status, reason and the start of its body on one line, cut at a word and marked.
    let d = cause(3);
    assert!(
        d.starts_with(
            "HTTP 500 Internal Server Error: Internal Server Error: slashing database \
             unreachable caused by: connection pool timed out"
        ),
        "{d}"
    );
    assert!(d.ends_with('…') && d.chars().count() < 260, "{d}");
    // Nothing repeats its context, and no request URL (with a public key) is quoted.
    assert!(!text.contains("/api/v1/eth2/sign"), "{text}");
    assert!(!text.contains("error sending request"), "{text}");

    // The combiner's /healthcheck describes unreachable nodes the same way.
    let health: Value = client
        .get(format!("https://127.0.0.1:{cport}/healthcheck"))
        .send()
        .await
        .expect("healthcheck")
        .json()
        .await
        .expect("json");
    let node_error = |name: &str| -> String {
        health["checks"][1]["checks"]
            .as_array()
            .expect("node checks")
            .iter()
            .find(|c| c["id"] == format!("node/{name}"))
            .map(|c| c["data"]["error"].as_str().unwrap_or_default().to_owned())
            .expect("node check")
    };
    assert!(
        node_error("node-a").starts_with("connection refused"),
        "{health}"
    );
    assert!(
        node_error("node-b").starts_with("TLS failure: the node's certificate is not trusted"),
        "{health}"
    );
    assert_eq!(
        node_error("node-c"),
        format!(
            "timed out connecting: no TCP/TLS connection within {} ms",
            DEADLINE_MS / 2
        ),
        "{health}"
    );
    drop(combiner);

    // The same four nodes as a 3-of-4 cluster: two fast failures already put t out of reach,
    // so the combiner answers without waiting for node-c, and says that it did not wait.
    let out2 = dir.path().join("cluster-3of4");
    split_interop(dir.path(), 0..1, 3, &urls[..4], &out2);
    let (mut combiner2, cport2) =
        start_combiner(dir.path(), &pki, &out2.join("cluster.json"), 60_000);
    wait_ready(
        &client,
        &format!("https://127.0.0.1:{cport2}/upcheck"),
        &mut combiner2,
        Duration::from_secs(60),
    )
    .await;
    let (status, text) = sign(&client, cport2, &group_hex, &attestation_body(6)).await;
    assert_eq!(status, 503, "{text}\n{}", combiner2.log_text());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].starts_with("Service Unavailable: only 0 of 3 required partial signatures"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("- node-a ") && lines[1].contains("connection refused"),
        "{text}"
    );
    // node-b's TLS failure usually arrives second, but node-d's 500 can come first: then
    // node-a and node-d already put t out of reach and node-b is not awaited.
    assert!(
        lines[2].starts_with("- node-b ")
            && (lines[2].contains("TLS failure") || lines[2].contains("not awaited")),
        "{text}"
    );
    let c_cause = lines[3].split_once("): ").expect("cause").1;
    assert!(
        lines[3].starts_with("- node-c ")
            && c_cause.starts_with("no answer yet after ")
            && c_cause.contains("not awaited"),
        "{text}"
    );
    // node-d's 500 may or may not have arrived before the answer.
    let d_cause = lines[4].split_once("): ").expect("cause").1;
    assert!(
        d_cause.starts_with("HTTP 500 Internal Server Error: ")
            || d_cause.starts_with("no answer yet after "),
        "{text}"
    );
    // Two of node-a, node-b and node-d failed before the answer (that is what ended it).
    assert!(
        !(lines[2].contains("not awaited") && d_cause.starts_with("no answer yet after ")),
        "{text}"
    );
}

/// The value of `series` (name with labels, as exposed) in a Prometheus text scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

async fn scrape(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics reachable")
        .text()
        .await
        .expect("metrics body")
}

/// Log lines of `log` containing every one of `words`.
fn log_lines<'a>(log: &'a str, words: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .collect()
}

/// Waits (bounded) until `pred` holds for the combiner's log.
async fn wait_log(combiner: &Proc, what: &str, pred: impl Fn(&str) -> bool) -> String {
    for _ in 0..300 {
        let log = combiner.log_text();
        if pred(&log) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} never logged:\n{}", combiner.log_text());
}

/// A 3-of-4 cluster of real `dvsigner signer` processes behind a combiner with short probe
/// intervals. node-d is killed: 200 requests all succeed with three nodes, the combiner logs
/// one "down" WARN for node-d (not one per request), stops sending to it (its failed attempts
/// are a few, the rest is counted as skipped, and both add up to the requests) and logs a
/// periodic summary. node-c is killed too: a request that fails names node-d's back-off in
/// its 503; once node-c is backed off as well, fewer than t nodes are healthy and node-d is
/// tried again (its 503 cause is then "connection refused"). node-d restarted on the same
/// port is let back in within a bounded time (INFO "back" line) and signs again without
/// node-c.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_backed_off_logged_once_probed_and_let_back_in() {
    const REQUESTS: u64 = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = cluster_pki(&dir.path().join("tls"), &NODES, false);
    let client = tls_client(&pki);
    // The nodes require client certificates: check their readiness as the combiner would.
    let node_client = https_client(
        &pki.ca_cert,
        Some(pki.identity("combiner-client").expect("identity")),
        Duration::from_secs(10),
    );
    let ports: Vec<u16> = NODES.iter().map(|_| free_port()).collect();
    let urls = https_operators(&NODES, &ports);
    let out = dir.path().join("cluster");
    split_interop(dir.path(), 0..1, 3, &urls, &out);
    let start_node = |i: usize, tag: &str| {
        let args = tls_signer_args(
            &pki,
            NODES[i],
            ports[i],
            &dir.path().join("data").join(NODES[i]),
            &out.join(NODES[i]),
        );
        Proc::start(
            NODES[i],
            &args,
            &dir.path().join(format!("{}-{tag}.log", NODES[i])),
        )
    };
    let mut nodes: Vec<Proc> = (0..4).map(|i| start_node(i, "1")).collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        wait_ready(
            &node_client,
            &format!("{}/upcheck", urls[i].1),
            node,
            Duration::from_secs(60),
        )
        .await;
    }

    let cport = free_port();
    let mport = free_port();
    let mut args = combiner_args(&pki, cport, &out.join("cluster.json"));
    args.extend(
        [
            "--deadline-ms",
            "2000",
            "--node-backoff-failures",
            "3",
            "--node-probe-initial-ms",
            "100",
            "--node-probe-max-ms",
            "400",
            "--node-down-summary-secs",
            "1",
            "--metrics-listen",
        ]
        .map(String::from),
    );
    args.push(format!("127.0.0.1:{mport}"));
    let mut combiner = Proc::start("combiner", &args, &dir.path().join("combiner.log"));
    wait_ready(
        &client,
        &format!("https://127.0.0.1:{cport}/upcheck"),
        &mut combiner,
        Duration::from_secs(60),
    )
    .await;
    let group_hex = interop_secret_key(0).public_key().bytes().to_hex();
    let mut epoch = 1000;
    let mut sign_next = || {
        epoch += 1;
        attestation_body(epoch)
    };
    // All four nodes answer (each signs this one).
    let (status, text) = sign(&client, cport, &group_hex, &sign_next()).await;
    assert_eq!(status, 200, "{text}\n{}", combiner.log_text());
    // The combiner answers with the first three partials; node-d's may still be on its way.
    // Killed before it arrives, that attempt would fail too and the count below be one over.
    let d_answered = |text: &str| {
        ["ok", "late", "refused"]
            .iter()
            .filter_map(|r| {
                sample(
                    text,
                    &format!("dvsigner_combiner_partials_total{{node=\"node-d\",result=\"{r}\"}}"),
                )
            })
            .sum::<f64>()
    };
    let mut first = String::new();
    for _ in 0..100 {
        first = scrape(mport).await;
        if d_answered(&first) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(d_answered(&first), 1.0, "node-d's first partial:\n{first}");

    nodes[3].kill9();
    for _ in 0..REQUESTS {
        let (status, text) = sign(&client, cport, &group_hex, &sign_next()).await;
        assert_eq!(status, 200, "{text}\n{}", combiner.log_text());
    }
    // Every request either tried node-d (a failure) or skipped it; the attempts end on their
    // own tasks, so wait (bounded) until they are all counted.
    let d = r#"{node="node-d"}"#;
    let failed_d = r#"dvsigner_combiner_partials_total{node="node-d",result="failed"}"#;
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = scrape(mport).await;
        let failed = sample(&metrics, failed_d).expect("failed counter");
        let skipped = sample(
            &metrics,
            &format!("dvsigner_combiner_node_skipped_total{d}"),
        )
        .expect("skipped counter");
        if failed + skipped >= REQUESTS as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = sample(&metrics, failed_d).expect("failed counter");
    let skipped = sample(
        &metrics,
        &format!("dvsigner_combiner_node_skipped_total{d}"),
    )
    .expect("skipped counter");
    eprintln!("node-d after {REQUESTS} requests: {failed} failed attempts, {skipped} skipped");
    assert_eq!(failed + skipped, REQUESTS as f64, "{metrics}");
    assert!(
        (3.0..=20.0).contains(&failed),
        "node-d was tried {failed} times:\n{metrics}"
    );
    assert_eq!(
        sample(&metrics, &format!("dvsigner_combiner_node_up{d}")),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"dvsigner_combiner_node_up{node="node-a"}"#),
        Some(1.0),
        "{metrics}"
    );
    for n in ["node-a", "node-b", "node-c"] {
        assert_eq!(
            sample(
                &metrics,
                &format!("dvsigner_combiner_node_skipped_total{{node=\"{n}\"}}")
            ),
            Some(0.0),
            "{metrics}"
        );
    }
    // One WARN for node-d going down, with its cause; no per-request WARN; then a summary.
    let log = wait_log(&combiner, "the down summary", |log| {
        !log_lines(
            log,
            &["signer node still down", "node-d", "requests skipped"],
        )
        .is_empty()
    })
    .await;
    let down = log_lines(&log, &["signer node down", "node-d"]);
    assert_eq!(down.len(), 1, "{log}");
    assert!(
        down[0].contains("WARN") && down[0].contains("connection refused"),
        "{}",
        down[0]
    );
    assert!(log_lines(&log, &["node failed"]).is_empty(), "{log}");
    let summary = log_lines(&log, &["signer node still down", "node-d"]);
    assert!(
        summary[0].contains("WARN") && summary[0].contains("node-d down for "),
        "{}",
        summary[0]
    );

    // node-c dies too. It is not backed off yet, so node-d is still skipped (three healthy
    // nodes can complete the signature) and the 503 says so.
    nodes[2].kill9();
    let (status, text) = sign(&client, cport, &group_hex, &sign_next()).await;
    assert_eq!(status, 503, "{text}");
    let d_line = text
        .lines()
        .find(|l| l.starts_with("- node-d "))
        .unwrap_or_else(|| panic!("{text}"));
    let d_cause = d_line.split_once("): ").expect("cause").1;
    assert!(
        d_cause.starts_with("backed off since ")
            && d_cause.contains(" UTC after ")
            && d_cause.contains(" consecutive failures: ")
            && d_cause.contains("; next probe in "),
        "{text}"
    );
    // Once node-c is backed off as well, fewer than t nodes are healthy: node-d is tried
    // again, and its cause is its real one.
    let mut tried = None;
    for _ in 0..20 {
        let (status, text) = sign(&client, cport, &group_hex, &sign_next()).await;
        assert_eq!(status, 503, "{text}");
        let d_line = text
            .lines()
            .find(|l| l.starts_with("- node-d "))
            .unwrap_or_else(|| panic!("{text}"))
            .to_owned();
        if !d_line.contains("backed off since") {
            tried = Some(d_line);
            break;
        }
    }
    let tried = tried.expect("node-d never tried again with fewer than t healthy nodes");
    assert!(tried.contains("connection refused"), "{tried}");

    // node-d back on the same port: let back in within a bounded time, logged once at INFO
    // with its downtime, and it signs again (without node-c, t = 3 needs it).
    let ok_before = sample(
        &scrape(mport).await,
        r#"dvsigner_combiner_partials_total{node="node-d",result="ok"}"#,
    )
    .expect("ok counter");
    nodes[3] = start_node(3, "2");
    wait_ready(
        &node_client,
        &format!("{}/upcheck", urls[3].1),
        &mut nodes[3],
        Duration::from_secs(60),
    )
    .await;
    let log = wait_log(&combiner, "node-d back", |log| {
        !log_lines(log, &["signer node back", "node-d"]).is_empty()
    })
    .await;
    let back = log_lines(&log, &["signer node back", "node-d"]);
    assert_eq!(back.len(), 1, "{log}");
    assert!(
        back[0].contains("INFO") && back[0].contains("downtime="),
        "{}",
        back[0]
    );
    let (status, text) = sign(&client, cport, &group_hex, &sign_next()).await;
    assert_eq!(status, 200, "{text}\n{}", combiner.log_text());
    let metrics = scrape(mport).await;
    let ok_after = sample(
        &metrics,
        r#"dvsigner_combiner_partials_total{node="node-d",result="ok"}"#,
    )
    .expect("ok counter");
    assert!(ok_after > ok_before, "{metrics}");
    assert_eq!(
        sample(&metrics, &format!("dvsigner_combiner_node_up{d}")),
        Some(1.0),
        "{metrics}"
    );
    eprintln!(
        "{}",
        log_lines(&combiner.log_text(), &["signer node"]).join("\n")
    );
    // Still exactly one "down" line for node-d: it stayed down until it came back.
    assert_eq!(
        log_lines(&combiner.log_text(), &["signer node down", "node-d"]).len(),
        1
    );
}

/// One node's answer to every sign request: a refusal (412 with `text`) after `delay_ms`, or,
/// once `failing` is set, a 500.
fn refusing_node(
    text: &'static str,
    delay_ms: u64,
    failing: Arc<std::sync::atomic::AtomicBool>,
) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/upcheck", get(|| async { "OK" }))
        .route(
            "/api/v1/eth2/sign/{pubkey}",
            post(move || {
                let failing = failing.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    if failing.load(std::sync::atomic::Ordering::SeqCst) {
                        (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                    } else {
                        (StatusCode::PRECONDITION_FAILED, text)
                    }
                }
            }),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_with_too_few_nodes_left_is_412_with_the_nodes_reason() {
    const B_REFUSAL: &str = "Precondition Failed: double vote at target epoch 5: already \
        signed source 4 with root 0xabababababababababababababababababababababababababababababababab";
    const C_REFUSAL: &str = "Precondition Failed: node-c refused too";
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = cluster_pki(&dir.path().join("tls"), &NODES, false);
    let client = tls_client(&pki);

    // node-a: stopped (nothing listening). node-b: refuses at once. node-c: refuses after
    // 5 s (so that its refusal is certainly not among the first answers). node-d: signs.
    let a_port = free_port();
    let (b_listener, b_port) = bind().await;
    let (c_listener, c_port) = bind().await;
    let (d_listener, d_port) = bind().await;
    let urls = https_operators(&NODES, &[a_port, b_port, c_port, d_port]);
    let out = dir.path().join("cluster");
    split_interop(dir.path(), 0..1, 3, &urls, &out);
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _b = serve_tls(
        b_listener,
        pki.identity("node-b").expect("identity"),
        &pki.ca_cert,
        refusing_node(B_REFUSAL, 0, failing.clone()),
    );
    let _c = serve_tls(
        c_listener,
        pki.identity("node-c").expect("identity"),
        &pki.ca_cert,
        refusing_node(C_REFUSAL, 5000, failing.clone()),
    );
    let _d = serve_tls(
        d_listener,
        pki.identity("node-d").expect("identity"),
        &pki.ca_cert,
        foreign_signer(operator_shares(&out.join("node-d")), Seen::default()),
    );

    let (mut combiner, cport) = start_combiner(dir.path(), &pki, &out.join("cluster.json"), 30_000);
    wait_ready(
        &client,
        &format!("https://127.0.0.1:{cport}/upcheck"),
        &mut combiner,
        Duration::from_secs(60),
    )
    .await;
    let group_hex = interop_secret_key(0).public_key().bytes().to_hex();

    // node-a's failure and node-b's refusal leave node-c and node-d: fewer than t = 3, so the
    // duty cannot be won. The combiner answers 412 then, without waiting for node-c (counted
    // as not awaited; a 503 before this rule: only one node had refused).
    let (status, text) = sign(&client, cport, &group_hex, &attestation_body(5)).await;
    assert_eq!(status, 412, "{text}\n{}", combiner.log_text());
    let (seen_part, reason) = text
        .strip_prefix("Precondition Failed: ")
        .and_then(|t| t.split_once(": "))
        .unwrap_or_else(|| panic!("412 text: {text}"));
    assert!(
        seen_part.starts_with("1 of 4 nodes refused, 1 unreachable, ")
            && seen_part.ends_with(" not awaited"),
        "{text}"
    );
    assert_eq!(
        format!("Precondition Failed: {reason}"),
        B_REFUSAL,
        "node-b's own text is passed on: {text}"
    );

    // The same nodes answering 500 instead of refusing: nobody refused, so 503 as before.
    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, text) = sign(&client, cport, &group_hex, &attestation_body(6)).await;
    assert_eq!(status, 503, "{text}\n{}", combiner.log_text());
    assert!(
        text.starts_with("Service Unavailable: only ")
            && text.contains("of 3 required partial signatures")
            && text.contains("HTTP 500 Internal Server Error")
            // Not "412": node URLs carry random ports (one was 41273).
            && !text.contains("Precondition Failed")
            && !text.contains("nodes refused"),
        "{text}"
    );
}
