//! A request of another network, end to end with real `dvsigner` processes: a mainnet node and
//! a mainnet combiner refuse fork info of the minimal preset, of holesky, with sepolia's
//! genesis_validators_root, or of a fork mainnet's schedule lacks, with a 400 that names both
//! networks and `--network`, before any SSZ decoding (a BLOCK_V2 with a minimal-preset
//! sync aggregate gets that message, not the bitvector length error) and, for the combiner,
//! before any node is asked. Each refusal moves `dvsigner_wrong_network_requests_total`; the
//! log names a fork version once, however many requests carry it.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::cluster::combiner_args;
use common::process::{free_port, signer_args, wait_ready, Proc};
use common::requests::attestation_body;
use dvsigner::cluster::{split_keys, Operator};
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::tls::DevPki;
use serde_json::{json, Value};

const MAINNET_GVR: &str = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95";
const HOLESKY_GVR: &str = "0x9143aa7c615a7f7115e2b6aac319c03529df8242ae705fba9df39b79c59fa8b1";
const SEPOLIA_GVR: &str = "0xd8ea171f3c94aea21ebc42a1ed61052acf3f9209c00e4efbaaddac09ed9b8078";
/// The genesis_validators_root of the minimal-preset Web3Signer vectors.
const MINIMAL_GVR: &str = "0x04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673";

fn pk(i: u64) -> String {
    interop_secret_key(i).public_key().bytes().to_hex()
}

fn fork_info(previous: &str, current: &str, epoch: u64, gvr: &str) -> Value {
    json!({
        "fork": {"previous_version": previous, "current_version": current, "epoch": epoch.to_string()},
        "genesis_validators_root": gvr
    })
}

/// A mainnet attestation (bench body, Electra fork info) with target `target` and `fork_info`.
fn attestation(target: u64, fi: Value) -> String {
    let mut v: Value = serde_json::from_str(&attestation_body(target)).expect("json");
    v["fork_info"] = fi;
    v.to_string()
}

/// The oracle's mainnet Altair BLOCK_V2 with a minimal-preset sync aggregate (32 bits, where
/// mainnet has 512) and `fork_info`.
fn altair_block_with_minimal_sync_bits(fi: Value) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/fixtures.json");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixtures")).expect("json");
    let mut req = doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "block_v2_altair")
        .expect("altair case")["request"]
        .clone();
    req.as_object_mut().expect("object").remove("signingRoot");
    req["beacon_block"]["block"]["body"]["sync_aggregate"]["sync_committee_bits"] =
        json!("0xffffffff");
    req["fork_info"] = fi;
    req.to_string()
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> (u16, String) {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
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

async fn scrape(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text")
}

fn wrong_network_series(reason: &str, version: &str) -> String {
    format!(
        "dvsigner_wrong_network_requests_total{{reason=\"{reason}\",fork_version=\"{version}\"}}"
    )
}

fn assert_names(body: &str, parts: &[&str]) {
    for part in parts {
        assert!(body.contains(part), "{part:?} missing in: {body}");
    }
}

/// Lines of the refusal log that name `version`.
fn refusal_lines(log: &str, version: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("refused a sign request (400)")
                && l.contains(&format!("fork_version={version}"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mainnet_node_refuses_other_networks_and_unknown_forks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mport = free_port();
    let mut args = signer_args(port, &dir.path().join("data"), None);
    args.extend([
        "--network".into(),
        "mainnet".into(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{mport}"),
    ]);
    let mut node = Proc::start("node", &args, &dir.path().join("node.log"));
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(
        &client,
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(60),
    )
    .await;
    let sign = format!("{base}/api/v1/eth2/sign/{}", pk(0));

    // Minimal-preset fork versions and root, twice.
    let minimal = attestation(
        370_000,
        fork_info("0x00000001", "0x00000001", 0, MINIMAL_GVR),
    );
    for _ in 0..2 {
        let (s, body) = post(&client, &sign, minimal.clone()).await;
        assert_eq!(s, 400, "{body}");
        assert_names(
            &body,
            &[
                "wrong network",
                "configured for mainnet",
                "0x00000001 is of the minimal preset",
                &format!("genesis_validators_root {MINIMAL_GVR} is of no network"),
                &format!("mainnet's is {MAINNET_GVR}"),
                "--network",
            ],
        );
    }
    // Holesky's fork and root.
    let holesky = fork_info("0x06017000", "0x07017000", 165_120, HOLESKY_GVR);
    let (s, body) = post(&client, &sign, attestation(370_000, holesky.clone())).await;
    assert_eq!(s, 400, "{body}");
    assert_names(
        &body,
        &[
            "configured for mainnet",
            "the request is for holesky",
            "current_version 0x07017000 is holesky's",
            "--network holesky",
        ],
    );
    // A BLOCK_V2 whose sync aggregate is sized for the minimal preset: with mainnet fork info
    // the SSZ decoding refuses it; with holesky's the network is named instead.
    let (s, body) = post(
        &client,
        &sign,
        altair_block_with_minimal_sync_bits(fork_info(
            "0x00000000",
            "0x01000000",
            74_240,
            MAINNET_GVR,
        )),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("Bitvector"), "{body}");
    let (s, body) = post(&client, &sign, altair_block_with_minimal_sync_bits(holesky)).await;
    assert_eq!(s, 400, "{body}");
    assert_names(
        &body,
        &["configured for mainnet", "holesky's", "--network holesky"],
    );
    assert!(!body.contains("Bitvector"), "{body}");
    // Mainnet's versions with sepolia's root.
    let (s, body) = post(
        &client,
        &sign,
        attestation(
            370_000,
            fork_info("0x05000000", "0x06000000", 411_392, SEPOLIA_GVR),
        ),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert_names(
        &body,
        &[
            "configured for mainnet",
            &format!(
                "genesis_validators_root {SEPOLIA_GVR} is sepolia's; mainnet's is {MAINNET_GVR}"
            ),
            "--network sepolia",
        ],
    );
    // Mainnet's root after a fork mainnet's schedule does not have.
    let (s, body) = post(
        &client,
        &sign,
        attestation(
            500_001,
            fork_info("0x06000000", "0x07000000", 500_000, MAINNET_GVR),
        ),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert_names(
        &body,
        &[
            "unknown fork",
            "current_version 0x07000000 (fork_info.fork.epoch 500000)",
            "mainnet fork schedule, whose last fork is FULU (0x06000000) at epoch 411392",
            "Upgrade dvsigner",
        ],
    );
    // Nothing of the refused attestations was recorded: the same target signs with mainnet's
    // fork info.
    let (s, body) = post(
        &client,
        &sign,
        attestation(
            370_000,
            fork_info("0x04000000", "0x05000000", 364_032, MAINNET_GVR),
        ),
    )
    .await;
    assert_eq!(s, 200, "{body}");

    let metrics = scrape(mport).await;
    for (reason, version, count) in [
        ("other_network", "0x00000001", 2.0),
        ("other_network", "0x07017000", 2.0),
        ("other_network", "0x06000000", 1.0),
        ("unknown_fork", "0x07000000", 1.0),
    ] {
        let series = wrong_network_series(reason, version);
        assert_eq!(
            sample(&metrics, &series),
            Some(count),
            "{series} in\n{metrics}"
        );
    }
    assert_eq!(
        sample(
            &metrics,
            &wrong_network_series("other_network", "0x01000000")
        ),
        None,
        "the SSZ-refused block is no wrong-network request"
    );

    assert!(node.terminate(Duration::from_secs(15)).is_some());
    let log = node.log_text();
    assert_eq!(refusal_lines(&log, "0x00000001"), 1, "{log}");
    assert_eq!(refusal_lines(&log, "0x07017000"), 1, "{log}");
    assert_eq!(refusal_lines(&log, "0x07000000"), 1, "{log}");
    let unknown_fork_line = log
        .lines()
        .find(|l| l.contains("fork_version=0x07000000"))
        .expect("unknown fork line");
    assert!(unknown_fork_line.contains("ERROR"), "{unknown_fork_line}");
    let start_line = log
        .lines()
        .find(|l| l.contains("role=\"signer\"") || l.contains("role=signer"))
        .unwrap_or_else(|| panic!("no network line:\n{log}"));
    for part in [
        "network=mainnet",
        "genesis_fork_version=0x00000000",
        "preset=Mainnet",
        &format!("genesis_validators_root={MAINNET_GVR}"),
        "last_fork=\"FULU\"",
        "last_fork_epoch=411392",
    ] {
        assert!(start_line.contains(part), "{part}: {start_line}");
    }
}

/// A cluster definition for interop key 0, 2 of 3, whose nodes listen nowhere.
fn cluster_json(dir: &Path) -> std::path::PathBuf {
    let ops: Vec<Operator> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|n| Operator::new(*n, format!("https://127.0.0.1:{}", free_port())))
        .collect();
    let (def, _) = split_keys(&[interop_secret_key(0)], 2, &ops).expect("split");
    let path = dir.join("cluster.json");
    def.save(&path).expect("save");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mainnet_combiner_refuses_without_asking_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::generate(
        &dir.path().join("tls"),
        &["node-a", "node-b", "node-c", "combiner"],
        &["combiner-client"],
    )
    .expect("pki");
    let cluster = cluster_json(dir.path());
    let port = free_port();
    let mport = free_port();
    let mut args = combiner_args(&pki, port, &cluster);
    args.extend([
        "--network".into(),
        "mainnet".into(),
        "--deadline-ms".into(),
        "1000".into(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{mport}"),
    ]);
    let mut combiner = Proc::start("combiner", &args, &dir.path().join("combiner.log"));
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&pki.ca_cert).expect("ca")).expect("pem"),
        )
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let base = format!("https://127.0.0.1:{port}");
    wait_ready(
        &client,
        &format!("{base}/upcheck"),
        &mut combiner,
        Duration::from_secs(60),
    )
    .await;
    let sign = format!("{base}/api/v1/eth2/sign/{}", pk(0));
    let failed = |node: &str| {
        format!("dvsigner_combiner_partials_total{{node=\"{node}\",result=\"failed\"}}")
    };

    let minimal = attestation(
        370_000,
        fork_info("0x00000001", "0x00000001", 0, MINIMAL_GVR),
    );
    for _ in 0..2 {
        let (s, body) = post(&client, &sign, minimal.clone()).await;
        assert_eq!(s, 400, "{body}");
        assert_names(
            &body,
            &[
                "wrong network",
                "configured for mainnet",
                "0x00000001 is of the minimal preset",
                "--network",
            ],
        );
    }
    let (s, body) = post(
        &client,
        &sign,
        attestation(
            370_000,
            fork_info("0x06017000", "0x07017000", 165_120, HOLESKY_GVR),
        ),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert_names(&body, &["configured for mainnet", "--network holesky"]);

    let metrics = scrape(mport).await;
    for node in ["node-a", "node-b", "node-c"] {
        assert_eq!(sample(&metrics, &failed(node)), Some(0.0), "{metrics}");
    }
    assert_eq!(
        sample(
            &metrics,
            &wrong_network_series("other_network", "0x00000001")
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &wrong_network_series("other_network", "0x07017000")
        ),
        Some(1.0),
        "{metrics}"
    );

    // A mainnet request is sent to the nodes (which listen nowhere): the counters move.
    let (s, body) = post(
        &client,
        &sign,
        attestation(
            370_000,
            fork_info("0x04000000", "0x05000000", 364_032, MAINNET_GVR),
        ),
    )
    .await;
    assert_eq!(s, 503, "{body}");
    // The combiner answers once 2 of 3 nodes failed (2 of 3 can no longer be reached).
    let metrics = scrape(mport).await;
    let failures: f64 = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|node| sample(&metrics, &failed(node)).unwrap_or(0.0))
        .sum();
    assert!(failures >= 2.0, "{metrics}");

    assert!(combiner.terminate(Duration::from_secs(15)).is_some());
    let log = combiner.log_text();
    assert_eq!(refusal_lines(&log, "0x00000001"), 1, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("role=\"combiner\"") && l.contains("network=mainnet")),
        "{log}"
    );
}
