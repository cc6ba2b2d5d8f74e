//! Operations, end to end with real `dvsigner` processes: Prometheus metrics move with the
//! requests that cause them, logs carry the request id from combiner to nodes and never a
//! secret, and SIGTERM under load loses neither an answered request nor its slashing record.

use crate::common::process;
use crate::common::requests::{attestation_body, https_client};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dvsigner::keys::interop::interop_secret_key;
use process::{bin, free_port, signer_args, wait_ready, Proc};

fn pk(i: u64) -> String {
    interop_secret_key(i).public_key().bytes().to_hex()
}

/// An attestation with target `target` whose beacon block root starts with `byte`.
fn attestation(target: u64, byte: &str) -> String {
    attestation_body(target).replacen(
        &format!("\"beacon_block_root\":\"0x{}", "ab".repeat(32)),
        &format!("\"beacon_block_root\":\"0x{}", byte.repeat(32)),
        1,
    )
}

/// Starts `dvsigner ARGS` with `DVSIGNER_LOG=level`, stderr (the log) to `log`, stdout to
/// `log.stdout`.
fn start(name: &str, args: &[String], log: &Path, level: &str) -> Proc {
    let err = std::fs::File::create(log).expect("log file");
    let out = std::fs::File::create(log.with_extension("stdout")).expect("stdout file");
    let child = Command::new(bin())
        .args(args)
        .env("DVSIGNER_LOG", level)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn dvsigner");
    Proc {
        child,
        name: name.to_owned(),
        log: log.to_owned(),
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: String,
    request_id: Option<&str>,
) -> (u16, String) {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(id) = request_id {
        req = req.header("x-request-id", id);
    }
    let r = req.send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// The value of the sample line `series` in an OpenMetrics text (None when absent).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let r = client.get(url).send().await.expect("scrape");
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = r.text().await.expect("text");
    assert!(text.ends_with("# EOF\n"), "{text}");
    text
}

/// A node with `--metrics-listen`: a signature, a double vote and an unknown key each move
/// exactly their series; gauges report the loaded keys and readiness. Debug logs of the same
/// process carry the request id in the sign span and no password or secret key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_metrics_move_and_logs_hold_no_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mport = free_port();
    let mut args = signer_args(port, &dir.path().join("data"), None);
    args.extend(["--metrics-listen".into(), format!("127.0.0.1:{mport}")]);
    let log = dir.path().join("node.log");
    let mut node = start("node", &args, &log, "debug");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let metrics = format!("http://127.0.0.1:{mport}/metrics");
    wait_ready(
        &client,
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(60),
    )
    .await;

    let before = scrape(&client, &metrics).await;
    let ok = "dvsigner_sign_requests_total{type=\"ATTESTATION\",status=\"200\"}";
    let refused = "dvsigner_sign_requests_total{type=\"ATTESTATION\",status=\"412\"}";
    let unknown = "dvsigner_sign_requests_total{type=\"ATTESTATION\",status=\"404\"}";
    let bad = "dvsigner_sign_requests_total{type=\"unknown\",status=\"400\"}";
    let double_vote = "dvsigner_slashing_refusals_total{reason=\"double_vote\"}";
    let surround = "dvsigner_slashing_refusals_total{reason=\"surrounding_vote\"}";
    let checks = "dvsigner_slashing_check_duration_seconds_count";
    let hashed = "dvsigner_signing_root_hashes_total{result=\"hashed\"}";
    let reused = "dvsigner_signing_root_hashes_total{result=\"reused\"}";
    for series in [
        ok,
        refused,
        unknown,
        bad,
        double_vote,
        surround,
        checks,
        hashed,
        reused,
    ] {
        assert_eq!(sample(&before, series), Some(0.0), "{series} in\n{before}");
    }
    assert_eq!(sample(&before, "dvsigner_keys_loaded"), Some(5.0));
    assert_eq!(sample(&before, "dvsigner_ready"), Some(1.0));

    let sign = format!("{base}/api/v1/eth2/sign/{}", pk(0));
    let (s, _) = post(&client, &sign, attestation(7, "ab"), Some("ops-req-1")).await;
    assert_eq!(s, 200);
    let (s, _) = post(&client, &sign, attestation(7, "cd"), Some("ops-req-2")).await;
    assert_eq!(s, 412);
    // Another validator signing the same attestation: the same signing root, hashed once.
    let sign_1 = format!("{base}/api/v1/eth2/sign/{}", pk(1));
    let (s, _) = post(&client, &sign_1, attestation(7, "ab"), None).await;
    assert_eq!(s, 200);
    let (s, _) = post(&client, &sign, "{\"type\":".into(), None).await;
    assert_eq!(s, 400);
    let (s, _) = post(
        &client,
        &format!("{base}/api/v1/eth2/sign/0x{}", "a0".repeat(48)),
        attestation(7, "ab"),
        None,
    )
    .await;
    assert_eq!(s, 404);

    let after = scrape(&client, &metrics).await;
    assert_eq!(sample(&after, ok), Some(2.0), "{after}");
    assert_eq!(sample(&after, refused), Some(1.0));
    assert_eq!(sample(&after, unknown), Some(1.0));
    assert_eq!(sample(&after, bad), Some(1.0));
    assert_eq!(sample(&after, double_vote), Some(1.0));
    assert_eq!(sample(&after, surround), Some(0.0));
    assert_eq!(sample(&after, checks), Some(3.0));
    assert_eq!(sample(&after, hashed), Some(1.0), "{after}");
    assert_eq!(sample(&after, reused), Some(1.0), "{after}");
    assert_eq!(
        sample(
            &after,
            "dvsigner_sign_duration_seconds_count{type=\"ATTESTATION\"}"
        ),
        Some(4.0)
    );

    assert!(node.terminate(Duration::from_secs(15)).is_some());
    let text = node.log_text();
    // The sign span names the request id, on the lines of that request.
    assert!(
        text.lines()
            .any(|l| l.contains("request_id=ops-req-1") && l.contains("signed")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("request_id=ops-req-2") && l.contains("refused")),
        "{text}"
    );
    assert_no_secrets(
        &text,
        &["dvsigner-dev-password"],
        &(0..5).collect::<Vec<_>>(),
    );
}

/// Fails when `text` contains a password or the secret key of an interop index, in hex or
/// as a decimal/byte-array dump.
fn assert_no_secrets(text: &str, passwords: &[&str], interop: &[u64]) {
    let lower = text.to_ascii_lowercase();
    for p in passwords {
        assert!(!text.contains(p), "password {p:?} in log:\n{text}");
    }
    for &i in interop {
        let sk = interop_secret_key(i);
        let bytes = sk.expose_secret();
        assert_secret_bytes_absent(&lower, &bytes[..], &format!("interop secret {i}"));
    }
}

fn assert_secret_bytes_absent(lower_text: &str, bytes: &[u8], what: &str) {
    let hex = hex::encode(bytes);
    assert!(
        !lower_text.contains(&hex[..16]),
        "{what} (hex) appears in the log"
    );
    let debug = format!("{:?}", &bytes[..8]);
    let debug = debug.trim_end_matches(']');
    assert!(
        !lower_text.contains(debug),
        "{what} (byte array) appears in the log"
    );
}

/// `dvsigner dev` with JSON debug logs: every log line is one JSON object; a request id sent to
/// the combiner reaches the nodes' sign spans; neither the whole keys, the share keys nor any
/// password appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_request_id_to_nodes_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("dev");
    let args: Vec<String> = [
        "--log-format",
        "json",
        "dev",
        "--dir",
        &work.display().to_string(),
        "--base-port",
        "0",
        "--validators",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = dir.path().join("dev.log");
    let mut dev = start("dev", &args, &log, "debug");
    let stdout = log.with_extension("stdout");
    let start_t = Instant::now();
    let url = loop {
        let out = std::fs::read_to_string(&stdout).unwrap_or_default();
        if let Some(line) = out
            .lines()
            .find(|l| l.trim_start().starts_with("combiner "))
        {
            break line.split_whitespace().nth(1).expect("url").to_owned();
        }
        if let Ok(Some(s)) = dev.child.try_wait() {
            panic!("dev exited ({s}):\n{}", dev.log_text());
        }
        assert!(start_t.elapsed() < Duration::from_secs(120), "no URL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let client = https_client(&work.join("tls/ca.pem"), None, Duration::from_secs(30));
    let (s, body) = post(
        &client,
        &format!("{url}/api/v1/eth2/sign/{}", pk(0)),
        attestation(3, "ab"),
        Some("ops-cluster-req-9"),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    // Give the nodes that answered after the threshold was reached time to log.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(dev.terminate(Duration::from_secs(20)).is_some());

    let text = dev.log_text();
    let mut node_spans = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("fields").is_some(),
            "{line}"
        );
        if v["span"]["name"] == "sign"
            && v["span"]["request_id"] == "ops-cluster-req-9"
            && v["fields"]["message"] == "signed"
        {
            node_spans += 1;
        }
    }
    assert!(
        node_spans >= 3,
        "expected the id in at least t=3 node sign spans:\n{text}"
    );

    // Secrets: the whole key, every share key and every password written by dev.
    let mut passwords = vec!["dvsigner-dev-password".to_owned()];
    let mut share_secrets = Vec::new();
    for op in std::fs::read_dir(work.join("cluster")).expect("cluster dir") {
        let op = op.expect("entry").path();
        if !op.is_dir() {
            continue;
        }
        for ks in std::fs::read_dir(op.join("keystores")).expect("keystores") {
            let ks = ks.expect("entry").path();
            let stem = ks.file_stem().expect("stem").to_string_lossy().into_owned();
            let pw_path = op.join("passwords").join(format!("{stem}.txt"));
            let pw = dvsigner::keys::Password::from_file(&pw_path).expect("password");
            let keystore = dvsigner::keys::Keystore::from_json(
                &std::fs::read_to_string(&ks).expect("read keystore"),
            )
            .expect("keystore");
            let sk = keystore.decrypt(&pw).expect("decrypt");
            share_secrets.push(sk.expose_secret());
            passwords.push(pw.expose_secret().to_owned());
        }
    }
    assert_eq!(share_secrets.len(), 4);
    let pw_refs: Vec<&str> = passwords.iter().map(String::as_str).collect();
    assert_no_secrets(&text, &pw_refs, &[0]);
    let lower = text.to_ascii_lowercase();
    for (i, s) in share_secrets.iter().enumerate() {
        assert_secret_bytes_absent(&lower, &s[..], &format!("share secret {i}"));
    }
}

/// What one request of the load saw.
enum Outcome {
    Signed,
    /// A complete 412: concurrent out-of-order targets for one validator are correctly refused
    /// below the first recorded target (low watermark). Nothing was recorded for it.
    Refused,
    ConnectionError,
    Other(u16, String),
}

/// SIGTERM while 32 clients sign as fast as they can: the node exits 0; every request got a full
/// 200 or a connection error; after a restart every answered duty conflicts (412: its record was
/// committed) and no failed one does (it was never accepted, so nothing was recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drops_nothing_accepted() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let mut node = start(
        "node",
        &signer_args(port, &data, None),
        &dir.path().join("node.log"),
        "info",
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(
        &client,
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(60),
    )
    .await;
    let sign = format!("{base}/api/v1/eth2/sign/{}", pk(1));

    let next = Arc::new(AtomicU64::new(1));
    let seen: Arc<Mutex<Vec<(u64, Outcome)>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, sign, next, seen) = (client.clone(), sign.clone(), next.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..2_000 {
                let target = next.fetch_add(1, Ordering::Relaxed);
                let res = client
                    .post(&sign)
                    .header("content-type", "application/json")
                    .header("accept", "application/json")
                    .body(attestation(target, "ab"))
                    .send()
                    .await;
                let outcome = match res {
                    Err(_) => Outcome::ConnectionError,
                    Ok(r) => {
                        let status = r.status().as_u16();
                        match r.text().await {
                            Ok(body) if status == 200 && body.contains("\"signature\":\"0x") => {
                                Outcome::Signed
                            }
                            Ok(body) if status == 412 && body.contains("low watermark") => {
                                Outcome::Refused
                            }
                            Ok(body) => Outcome::Other(status, body),
                            Err(e) => Outcome::Other(status, format!("truncated body: {e}")),
                        }
                    }
                };
                let stop = !matches!(outcome, Outcome::Signed | Outcome::Refused);
                seen.lock().expect("lock").push((target, outcome));
                if stop {
                    break;
                }
            }
        }));
    }
    // Let the load build up, then ask the node to stop.
    let t0 = Instant::now();
    while next.load(Ordering::Relaxed) < 200 && t0.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = node.terminate(Duration::from_secs(20)).expect("node exits");
    assert!(status.success(), "exit {status}:\n{}", node.log_text());
    for t in tasks {
        t.await.expect("task");
    }
    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    let signed: Vec<u64> = seen
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Signed))
        .map(|(t, _)| *t)
        .collect();
    let failed: Vec<u64> = seen
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::ConnectionError))
        .map(|(t, _)| *t)
        .collect();
    for (t, o) in &seen {
        if let Outcome::Other(s, b) = o {
            panic!("target {t}: HTTP {s} {b}");
        }
    }
    assert!(signed.len() >= 150, "only {} signed", signed.len());
    let log = node.log_text();
    assert!(
        log.contains("shutdown requested") && log.contains("signer stopped"),
        "{log}"
    );

    // Restart on the same data directory and probe every duty with a conflicting request.
    let port2 = free_port();
    let mut node2 = start(
        "node2",
        &signer_args(port2, &data, None),
        &dir.path().join("node2.log"),
        "info",
    );
    let base2 = format!("http://127.0.0.1:{port2}");
    wait_ready(
        &client,
        &format!("{base2}/upcheck"),
        &mut node2,
        Duration::from_secs(60),
    )
    .await;
    let sign2 = format!("{base2}/api/v1/eth2/sign/{}", pk(1));
    let probe = |target: u64| {
        let (client, sign2) = (client.clone(), sign2.clone());
        async move {
            let (s, _) = post(&client, &sign2, attestation(target, "cd"), None).await;
            (target, s)
        }
    };
    let results = futures::future::join_all(signed.iter().chain(&failed).map(|t| probe(*t))).await;
    for (target, s) in results {
        if signed.contains(&target) {
            assert_eq!(s, 412, "signed target {target} lost its record");
        } else {
            assert_eq!(
                s, 200,
                "failed target {target} was recorded: accepted, then dropped"
            );
        }
    }
}
