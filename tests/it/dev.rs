//! `dvsigner dev` as an operator runs it: it prints the combiner URL and CA, serves the
//! interop keys through a 3-of-4 cluster over TLS, and stops cleanly on Ctrl-C (SIGINT).

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::Proc;
use common::requests::{attestation_body, https_client};
use dvsigner::keys::interop::interop_secret_key;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_signs_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("dev");
    let args: Vec<String> = [
        "dev",
        "--dir",
        &work.display().to_string(),
        "--base-port",
        "0",
        "--validators",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut dev = Proc::start("dev", &args, &dir.path().join("dev.log"));

    // The printed instructions name the combiner URL and the CA.
    let start = Instant::now();
    let url = loop {
        let log = dev.log_text();
        if let Some(line) = log
            .lines()
            .find(|l| l.trim_start().starts_with("combiner "))
        {
            break line.split_whitespace().nth(1).expect("url").to_owned();
        }
        if let Ok(Some(s)) = dev.child.try_wait() {
            panic!("dev exited ({s}):\n{log}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no combiner URL printed:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = dev.log_text();
    assert!(
        ["Lighthouse", "Teku", "Lodestar", "Prysm", "Nimbus"]
            .iter()
            .all(|client| log.contains(client)),
        "{log}"
    );
    let ca = work.join("tls/ca.pem");
    assert!(log.contains(&ca.display().to_string()), "{log}");

    let client = https_client(&ca, None, Duration::from_secs(30));
    let mut keys: Vec<String> = client
        .get(format!("{url}/api/v1/eth2/publicKeys"))
        .send()
        .await
        .expect("keys")
        .json()
        .await
        .expect("json");
    keys.sort();
    let mut want: Vec<String> = (0..2)
        .map(|i| interop_secret_key(i).public_key().bytes().to_hex())
        .collect();
    want.sort();
    assert_eq!(keys, want);
    let body = attestation_body(1_000);
    let r = client
        .post(format!("{url}/api/v1/eth2/sign/{}", want[0]))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("sign");
    assert_eq!(r.status(), 200);
    let sig: serde_json::Value = r.json().await.expect("json");
    let network = dvsigner::signing::Network::from_name_or_path("mainnet").expect("mainnet");
    let root = dvsigner::signing::prepare(body.as_bytes(), &network)
        .expect("prepare")
        .root;
    let whole_key_sig = [interop_secret_key(0), interop_secret_key(1)]
        .iter()
        .find(|k| k.public_key().bytes().to_hex() == want[0])
        .expect("key")
        .sign(&root)
        .to_hex();
    assert_eq!(sig["signature"].as_str(), Some(whole_key_sig.as_str()));

    // Ctrl-C stops everything cleanly.
    Command::new("kill")
        .arg("-INT")
        .arg(dev.pid().to_string())
        .status()
        .expect("kill");
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = dev.child.try_wait() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "dev did not stop:\n{}",
            dev.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}\n{}", dev.log_text());
    assert!(dev.log_text().contains("dev cluster stopped"));
}
