//! Slashing protection with real processes: a crash under load loses no record that a returned
//! signature depended on; concurrent conflicting requests yield exactly one signature, in one
//! process (SQLite) and across two processes sharing one PostgreSQL.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{free_port, signer_args, wait_ready, Proc};
use common::requests::attestation_body;
use dvsigner::keys::interop::interop_secret_key;

fn pk(i: u64) -> String {
    interop_secret_key(i).public_key().bytes().to_hex()
}

fn attestation(source: u64, target: u64, root_byte: &str) -> String {
    attestation_body(target)
        .replace(
            "\"source\":{\"epoch\":\"0\"",
            &format!("\"source\":{{\"epoch\":\"{source}\""),
        )
        .replace(&"ab".repeat(32), &root_byte.repeat(32))
}

fn block_v2(slot: u64, body_root_byte: &str) -> String {
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
        b = body_root_byte.repeat(32)
    )
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    body: String,
) -> reqwest::StatusCode {
    match client
        .post(format!("{base}/api/v1/eth2/sign/{key}"))
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(r) => r.status(),
        Err(_) => reqwest::StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// 50 concurrent BLOCK_V2 requests for one validator and slot with different roots, spread over
/// the given signer URLs: exactly one is signed, every other is refused with 412.
async fn exactly_one_of_fifty(bases: &[String]) {
    let client = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50u32 {
        let client = client.clone();
        let base = bases[i as usize % bases.len()].clone();
        tasks.spawn(async move {
            post(
                &client,
                &base,
                &pk(2),
                block_v2(12_345_678, &format!("{:02x}", i + 1)),
            )
            .await
        });
    }
    let mut ok = 0;
    let mut refused = 0;
    while let Some(s) = tasks.join_next().await {
        match s.expect("task").as_u16() {
            200 => ok += 1,
            412 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, refused), (1, 49));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_conflicting_blocks_one_process_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut node = Proc::start(
        "signer",
        &signer_args(port, dir.path(), None),
        &dir.path().join("node.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(
        &client,
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(60),
    )
    .await;
    exactly_one_of_fifty(&[base]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_conflicting_blocks_two_processes_one_postgres() {
    let db = common::pg::fresh_db();
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let mut bases = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..2 {
        let port = free_port();
        let data = dir.path().join(format!("n{i}"));
        let mut p = Proc::start(
            &format!("signer{i}"),
            &signer_args(port, &data, Some(&db)),
            &dir.path().join(format!("n{i}.log")),
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(
            &client,
            &format!("{base}/upcheck"),
            &mut p,
            Duration::from_secs(60),
        )
        .await;
        bases.push(base);
        nodes.push(p);
    }
    exactly_one_of_fifty(&bases).await;
}

/// kill -9 under sign load, restart on the same database: every duty a client got a signature
/// for is recorded (a conflicting request is refused with 412; the identical one is re-signed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_under_load_loses_no_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let args = signer_args(port, dir.path(), None);
    let mut node = Proc::start("signer", &args, &dir.path().join("node-1.log"));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(
        &client,
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(60),
    )
    .await;

    // Load: 16 workers, each owning distinct (validator, target) duties, bounded in count.
    let signed: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..16u64 {
        let (client, base, signed) = (client.clone(), base.clone(), signed.clone());
        workers.spawn(async move {
            for k in 0..2_000u64 {
                if Instant::now() > stop_at + Duration::from_secs(5) {
                    break;
                }
                let validator = w % 5;
                let target = 100 + w * 10_000 + k;
                let status =
                    post(&client, &base, &pk(validator), attestation(1, target, "ab")).await;
                if status == 200 {
                    signed.lock().expect("lock").push((validator, target));
                } else if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    break; // the node is gone
                }
            }
        });
    }
    tokio::time::sleep_until(stop_at.into()).await;
    node.kill9();
    while workers.join_next().await.is_some() {}
    let signed = signed.lock().expect("lock").clone();
    assert!(
        signed.len() > 50,
        "too little load before the crash: {}",
        signed.len()
    );

    let mut node = Proc::start("signer", &args, &dir.path().join("node-2.log"));
    wait_ready(
        &client,
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(60),
    )
    .await;
    let mut checked = 0;
    for (validator, target) in &signed {
        // Same target, different vote: a double vote if (and only if) the record survived.
        let s = post(
            &client,
            &base,
            &pk(*validator),
            attestation(1, *target, "cd"),
        )
        .await;
        assert_eq!(
            s.as_u16(),
            412,
            "validator {validator} target {target}: record lost in the crash"
        );
        checked += 1;
    }
    // And the identical message is still signable (repeat).
    let (v, t) = signed[0];
    assert_eq!(
        post(&client, &base, &pk(v), attestation(1, t, "ab"))
            .await
            .as_u16(),
        200
    );
    assert_eq!(checked, signed.len());
}

/// `dvsigner slashing-protection import|export` as operators run it: import a conformance
/// interchange, export filtered by public key, and refuse a corrupt file without importing anything.
#[test]
fn interchange_import_export_commands() {
    use std::process::Command;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite:{}", dir.path().join("sp.sqlite").display());
    let vector = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/slashing-interchange/tests/generated/multiple_validators_multiple_blocks_and_attestations.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&vector).expect("read")).expect("json");
    let interchange = dir.path().join("in.json");
    std::fs::write(&interchange, doc["steps"][0]["interchange"].to_string()).expect("write");
    let keys: Vec<String> = doc["steps"][0]["interchange"]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v["pubkey"].as_str().expect("pubkey").to_owned())
        .collect();
    let run = |args: &[&str]| {
        let out = Command::new(common::process::bin())
            .args(args)
            .output()
            .expect("run");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = run(&[
        "slashing-protection",
        "import",
        "--slashing-db",
        &db,
        "--file",
        &interchange.display().to_string(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("imported 3 validator(s)"), "{text}");

    let out = dir.path().join("out.json");
    let (ok, text) = run(&[
        "slashing-protection",
        "export",
        "--slashing-db",
        &db,
        "--file",
        &out.display().to_string(),
        "--pubkeys",
        &keys[1],
    ]);
    assert!(ok, "{text}");
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("read")).expect("json");
    assert_eq!(exported["metadata"]["interchange_format_version"], "5");
    let data = exported["data"].as_array().expect("data");
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["pubkey"].as_str(), Some(keys[1].as_str()));
    let original = doc["steps"][0]["interchange"]["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|v| v["pubkey"] == keys[1])
        .expect("validator");
    assert_eq!(
        data[0]["signed_blocks"].as_array().map(Vec::len),
        original["signed_blocks"].as_array().map(Vec::len)
    );

    // A corrupt file imports nothing and says why.
    let corrupt = dir.path().join("corrupt.json");
    let mut bad = doc["steps"][0]["interchange"].clone();
    bad["data"][2]["signed_blocks"][0]["slot"] = serde_json::Value::from("not-a-number");
    std::fs::write(&corrupt, bad.to_string()).expect("write");
    let db2 = format!("sqlite:{}", dir.path().join("sp2.sqlite").display());
    let (ok, text) = run(&[
        "slashing-protection",
        "import",
        "--slashing-db",
        &db2,
        "--file",
        &corrupt.display().to_string(),
    ]);
    assert!(!ok, "corrupt import succeeded: {text}");
    assert!(text.contains("nothing was imported"), "{text}");
    let all = dir.path().join("all.json");
    let (_, text) = run(&[
        "slashing-protection",
        "export",
        "--slashing-db",
        &db2,
        "--file",
        &all.display().to_string(),
    ]);
    let exported: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&all).unwrap_or_else(|_| "{\"data\":[]}".into()),
    )
    .expect("json");
    assert!(
        exported["data"].as_array().is_none_or(|d| d
            .iter()
            .all(|v| v["signed_blocks"].as_array().is_none_or(Vec::is_empty))),
        "{text}"
    );
}
