//! The high watermark with real processes: `GET /api/v1/eth2/highWatermark` before and after
//! `dvsigner slashing-protection high-watermark set|remove` changes the database of a running
//! node (no restart), and the operator procedure of README "Moving validators between signers":
//! node A (SQLite) stops at epoch E through a high watermark, its history moves by interchange to
//! node B (PostgreSQL), B signs from E on, A refuses everything at or after E, and no slot or
//! target epoch is signed by both.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::process::{free_port, run_ok, signer_args, wait_ready, Proc};
use common::requests::attestation_body;
use dvsigner::keys::interop::interop_secret_key;
use serde_json::Value;

fn pk(i: u64) -> String {
    interop_secret_key(i).public_key().bytes().to_hex()
}

/// An ATTESTATION request `source → target` whose roots are `root_byte` repeated.
fn attestation(source: u64, target: u64, root_byte: &str) -> String {
    attestation_body(target)
        .replace(
            "\"source\":{\"epoch\":\"0\"",
            &format!("\"source\":{{\"epoch\":\"{source}\""),
        )
        .replace(&"ab".repeat(32), &root_byte.repeat(32))
}

/// A BLOCK_V2 (Electra header) request at `slot` with body root `body_root_byte` repeated.
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

/// POSTs a sign request; returns the status and the body.
async fn sign(client: &reqwest::Client, base: &str, key: &str, body: String) -> (u16, String) {
    let r = client
        .post(format!("{base}/api/v1/eth2/sign/{key}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("sign request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// `GET /api/v1/eth2/highWatermark`: status, content type, JSON body.
async fn high_watermark(client: &reqwest::Client, base: &str) -> (u16, String, Value) {
    let r = client
        .get(format!("{base}/api/v1/eth2/highWatermark"))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = r.text().await.expect("body");
    (
        status,
        ct,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

async fn start(dir: &Path, name: &str, db: Option<&str>, extra: &[&str]) -> (Proc, String) {
    let port = free_port();
    let mut args = signer_args(port, &dir.join(name), db);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let mut p = Proc::start(name, &args, &dir.join(format!("{name}.log")));
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(
        &reqwest::Client::new(),
        &format!("{base}/upcheck"),
        &mut p,
        Duration::from_secs(60),
    )
    .await;
    (p, base)
}

fn hw_cmd(action: &str, db: &str, extra: &[&str]) -> String {
    let mut args: Vec<String> = vec![
        "slashing-protection".into(),
        "high-watermark".into(),
        action.into(),
        "--slashing-db".into(),
        db.into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    run_ok(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_route_reports_the_watermark_a_running_node_enforces() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_node, base) = start(dir.path(), "node", None, &[]).await;
    let db = format!(
        "sqlite:{}",
        dir.path().join("node/slashing-protection.sqlite").display()
    );
    let client = reqwest::Client::new();
    let key = pk(0);

    let (status, ct, body) = high_watermark(&client, &base).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/json; charset=utf-8");
    assert_eq!(body, serde_json::json!({}));
    assert_eq!(sign(&client, &base, &key, block_v2(200, "01")).await.0, 200);

    // Set offline, on the database of the running node.
    let out = hw_cmd("set", &db, &["--epoch", "5", "--slot", "160"]);
    assert!(
        out.contains("high watermark set to epoch 5, slot 160"),
        "{out}"
    );
    assert!(out.contains("no restart needed"), "{out}");
    let (status, _, body) = high_watermark(&client, &base).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"epoch": "5", "slot": "160"}));
    let shown = hw_cmd("show", &db, &[]);
    assert_eq!(shown.trim(), r#"{"epoch":"5","slot":"160"}"#);

    // The node enforces it from its next request.
    let (status, text) = sign(&client, &base, &key, block_v2(160, "02")).await;
    assert_eq!(status, 412, "{text}");
    assert!(
        text.contains("high watermark (epoch 5, slot 160)"),
        "{text}"
    );
    let (status, text) = sign(&client, &base, &key, block_v2(200, "01")).await;
    assert_eq!(
        status, 412,
        "an identical re-sign at the ceiling too: {text}"
    );
    let (status, text) = sign(&client, &base, &key, attestation(4, 5, "03")).await;
    assert_eq!(status, 412, "{text}");
    assert!(text.contains("high watermark"), "{text}");
    assert_eq!(
        sign(&client, &base, &key, attestation(3, 4, "03")).await.0,
        200
    );
    // Below the ceiling, another validator signs as usual.
    assert_eq!(
        sign(&client, &base, &pk(1), block_v2(159, "04")).await.0,
        200
    );
    assert_eq!(
        sign(&client, &base, &pk(1), block_v2(160, "04")).await.0,
        412
    );

    let out = hw_cmd("remove", &db, &[]);
    assert!(
        out.contains("high watermark removed (was epoch 5, slot 160)"),
        "{out}"
    );
    let (status, _, body) = high_watermark(&client, &base).await;
    assert_eq!((status, body), (200, serde_json::json!({})));
    assert_eq!(sign(&client, &base, &key, block_v2(201, "05")).await.0, 200);
    assert_eq!(hw_cmd("show", &db, &[]).trim(), "{}");

    // Without slashing protection there is no watermark to report (Web3Signer has no route).
    let (_bare, bare) = start(dir.path(), "bare", None, &["--no-slashing-protection"]).await;
    assert_eq!(high_watermark(&client, &bare).await.0, 404);
}

/// A duty (what the database protects): a block slot or an attestation target epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Duty {
    Block(u64),
    Target(u64),
}

/// Asks `base` to sign the duties of epoch `e` for `key` (the attestation `e-1 → e` and the
/// block at the epoch's second slot), with roots of `root_byte`; returns those it signed.
async fn duties_of_epoch(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    e: u64,
    root_byte: &str,
) -> Vec<(Duty, u16, String)> {
    let att = sign(client, base, key, attestation(e - 1, e, root_byte)).await;
    let blk = sign(client, base, key, block_v2(e * 32 + 1, root_byte)).await;
    vec![
        (Duty::Target(e), att.0, att.1),
        (Duty::Block(e * 32 + 1), blk.0, blk.1),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_move_from_node_a_to_node_b_at_the_high_watermark() {
    const E: u64 = 6;
    let dir = tempfile::tempdir().expect("tmp");
    let client = reqwest::Client::new();
    let keys = [pk(0), pk(1)];
    let db_a = format!("sqlite:{}", dir.path().join("a.sqlite").display());
    let db_b = common::pg::fresh_db();
    let (mut node_a, a) = start(dir.path(), "a", Some(&db_a), &[]).await;

    let mut signed_by_a: BTreeSet<(usize, Duty)> = BTreeSet::new();
    let mut signed_by_b: BTreeSet<(usize, Duty)> = BTreeSet::new();
    // A signs epochs 1..=3 as usual.
    for e in 1..=3 {
        for (k, key) in keys.iter().enumerate() {
            for (duty, status, text) in duties_of_epoch(&client, &a, key, e, "0a").await {
                assert_eq!(status, 200, "A, epoch {e}: {text}");
                signed_by_a.insert((k, duty));
            }
        }
    }
    // Step 1: the operator sets the high watermark on A's database, A still running.
    let slot = (E * 32).to_string();
    hw_cmd("set", &db_a, &["--epoch", &E.to_string(), "--slot", &slot]);
    assert_eq!(
        high_watermark(&client, &a).await.2,
        serde_json::json!({"epoch": E.to_string(), "slot": slot})
    );
    // A signs until E, and nothing from E on.
    for e in 4..E {
        for (k, key) in keys.iter().enumerate() {
            for (duty, status, text) in duties_of_epoch(&client, &a, key, e, "0a").await {
                assert_eq!(status, 200, "A, epoch {e}: {text}");
                signed_by_a.insert((k, duty));
            }
        }
    }
    for (k, key) in keys.iter().enumerate() {
        for (duty, status, text) in duties_of_epoch(&client, &a, key, E, "0a").await {
            assert_eq!(status, 412, "A at E, {duty:?}: {text}");
            assert!(text.contains("high watermark"), "{text}");
            assert!(!signed_by_a.contains(&(k, duty)));
        }
    }

    // Steps 2-4: once A refuses, its history is final: export it, import it into B's
    // database, start B on it.
    let file = dir.path().join("a-history.json");
    let out = run_ok(&[
        "slashing-protection".into(),
        "export".into(),
        "--slashing-db".into(),
        db_a.clone(),
        "--file".into(),
        file.display().to_string(),
    ]);
    assert!(out.contains("exported"), "{out}");
    let out = run_ok(&[
        "slashing-protection".into(),
        "import".into(),
        "--slashing-db".into(),
        db_b.clone(),
        "--file".into(),
        file.display().to_string(),
    ]);
    assert!(
        out.contains("imported 2 validator(s)") && out.contains("already present"),
        "{out}"
    );
    let (_node_b, b) = start(dir.path(), "b", Some(&db_b), &[]).await;
    assert_eq!(high_watermark(&client, &b).await.2, serde_json::json!({}));

    // B knows every duty A signed: a conflicting request for any of them is refused.
    for &(k, duty) in &signed_by_a {
        let body = match duty {
            Duty::Block(s) => block_v2(s, "0b"),
            Duty::Target(t) => attestation(t - 1, t, "0b"),
        };
        let (status, text) = sign(&client, &b, &keys[k], body).await;
        assert_eq!(status, 412, "B re-signing A's {duty:?}: {text}");
    }
    // B signs from E on; A, still running, keeps refusing those epochs (and later ones).
    for e in E..E + 4 {
        for (k, key) in keys.iter().enumerate() {
            for (duty, status, text) in duties_of_epoch(&client, &b, key, e, "0b").await {
                assert_eq!(status, 200, "B, epoch {e}: {text}");
                signed_by_b.insert((k, duty));
            }
            for (duty, status, text) in duties_of_epoch(&client, &a, key, e, "0a").await {
                assert_eq!(status, 412, "A after the move, {duty:?}: {text}");
                assert!(text.contains("high watermark"), "{text}");
            }
        }
    }

    // No slot and no target epoch was signed by both; A stopped right before E, B began at E.
    assert!(
        signed_by_a.is_disjoint(&signed_by_b),
        "signed by both: {:?}",
        signed_by_a.intersection(&signed_by_b).collect::<Vec<_>>()
    );
    for k in 0..keys.len() {
        let a_targets: Vec<u64> = signed_by_a
            .iter()
            .filter_map(|&(kk, d)| match d {
                Duty::Target(t) if kk == k => Some(t),
                _ => None,
            })
            .collect();
        let b_targets: Vec<u64> = signed_by_b
            .iter()
            .filter_map(|&(kk, d)| match d {
                Duty::Target(t) if kk == k => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(a_targets, (1..E).collect::<Vec<_>>());
        assert_eq!(b_targets, (E..E + 4).collect::<Vec<_>>());
    }
    // B's database now holds both histories; A's holds only its own, all below the watermark.
    let export = |db: &str, name: &str| -> Value {
        let f = dir.path().join(name);
        run_ok(&[
            "slashing-protection".into(),
            "export".into(),
            "--slashing-db".into(),
            db.into(),
            "--file".into(),
            f.display().to_string(),
        ]);
        serde_json::from_str(&std::fs::read_to_string(&f).expect("read")).expect("json")
    };
    let targets = |doc: &Value| -> BTreeSet<u64> {
        doc["data"]
            .as_array()
            .expect("data")
            .iter()
            .flat_map(|v| v["signed_attestations"].as_array().expect("atts").iter())
            .map(|a| a["target_epoch"].as_str().expect("t").parse().expect("u64"))
            .collect()
    };
    assert_eq!(
        targets(&export(&db_b, "b.json")),
        (1..E + 4).collect::<BTreeSet<_>>()
    );
    assert_eq!(
        targets(&export(&db_a, "a-after.json")),
        (1..E).collect::<BTreeSet<_>>()
    );
    assert!(
        node_a.child.try_wait().expect("wait").is_none(),
        "A kept running"
    );
}
