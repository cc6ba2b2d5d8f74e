//! Progress of long work, with the reporting interval shortened through
//! `DVSIGNER_PROGRESS_INTERVAL_MS`: a node decrypting many PBKDF2 keystores at start logs
//! `loading keys` lines with done/total as JSON fields and sets the key-loading gauges; `split`
//! and `slashing-protection import` print plain progress lines when stderr is not a terminal.

mod common;

use std::path::Path;
use std::time::Duration;

use common::process::{command, free_port, http_client, wait_ready, Proc};
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::{KdfParams, Keystore, Password};
use serde_json::Value;

/// PBKDF2 rounds of the test keystores: slow enough that a load spans several 20 ms intervals,
/// far cheaper than the EIP-2335 default.
const ROUNDS: u32 = 1 << 16;
const INTERVAL_MS: &str = "20";

/// `n` keystores `k<i>.json` (interop keys) with passwords `<pw>/k<i>.txt`, encrypted in
/// parallel.
fn write_keystores(dir: &Path, pw: &Path, n: u64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::create_dir_all(pw).expect("mkdir");
    std::thread::scope(|s| {
        for i in 0..n {
            s.spawn(move || {
                let ks = Keystore::encrypt(
                    &interop_secret_key(i),
                    &Password::new(format!("password-{i}")),
                    KdfParams::Pbkdf2 { c: ROUNDS },
                    "",
                    "",
                )
                .expect("encrypt");
                std::fs::write(dir.join(format!("k{i}.json")), ks.to_json()).expect("write");
                std::fs::write(pw.join(format!("k{i}.txt")), format!("password-{i}"))
                    .expect("write");
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_logs_key_loading_progress_with_fields_and_gauges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ks, pw) = (dir.path().join("ks"), dir.path().join("pw"));
    const N: u64 = 24;
    write_keystores(&ks, &pw, N);
    let (port, metrics_port) = (free_port(), free_port());
    let args: Vec<String> = vec![
        "--log-format".into(),
        "json".into(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
        "signer".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--insecure-http".into(),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--keystores".into(),
        ks.display().to_string(),
        "--keystores-passwords".into(),
        pw.display().to_string(),
    ];
    let mut node = Proc::start_with_env(
        "node",
        &args,
        &[("DVSIGNER_PROGRESS_INTERVAL_MS", INTERVAL_MS)],
        &dir.path().join("node.log"),
    );
    let client = http_client();
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{port}/upcheck"),
        &mut node,
        Duration::from_secs(120),
    )
    .await;
    let log = node.log_text();
    let progress: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("loading keys:"))
        })
        .collect();
    assert!(!progress.is_empty(), "no progress lines:\n{log}");
    let mut last_done = 0;
    for line in &progress {
        let f = &line["fields"];
        assert_eq!(f["total"], N, "{line}");
        let done = f["done"].as_u64().expect("done is a number");
        assert!(done <= N && done >= last_done, "{line}");
        last_done = done;
        assert!(f["keys_per_second"].is_number(), "{line}");
        let message = f["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("{done}/{N}")), "{line}");
    }
    assert!(
        progress
            .iter()
            .any(|l| l["fields"]["done"].as_u64() < Some(N)),
        "no line while loading was under way:\n{log}"
    );
    assert!(
        progress
            .iter()
            .any(|l| l["fields"]["eta_seconds"].is_number()),
        "no ETA:\n{log}"
    );
    let metrics = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(&format!("dvsigner_keys_loading_total {N}")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("dvsigner_keys_loading_done {N}")),
        "{metrics}"
    );
    node.kill9();
}

#[test]
fn split_and_interchange_import_print_progress_lines_without_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ks, pw) = (dir.path().join("ks"), dir.path().join("pw"));
    write_keystores(&ks, &pw, 6);
    let out = command()
        .env("DVSIGNER_PROGRESS_INTERVAL_MS", INTERVAL_MS)
        .args([
            "split",
            "--keystore",
            &ks.display().to_string(),
            "--passwords",
            &pw.display().to_string(),
            "--threshold",
            "2",
            "--shares",
            "3",
            "--operators",
            "a=https://127.0.0.1:1,b=https://127.0.0.1:2,c=https://127.0.0.1:3",
            "--out",
            &dir.path().join("split").display().to_string(),
            "--kdf",
            "insecure-fast",
        ])
        .output()
        .expect("run split");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let periodic: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("split: decrypting keystores: ") && !l.contains(": done,"))
        .collect();
    assert!(
        !periodic.is_empty(),
        "no periodic progress lines:\n{stderr}"
    );
    for line in &periodic {
        assert!(
            line.contains("/6 (") && line.contains("keystores/s"),
            "{line}"
        );
    }
    assert!(
        stderr.contains("split: decrypting keystores: done, 6/6"),
        "{stderr}"
    );
    assert!(
        stderr.contains("split: writing share keystores: done, 18/18"),
        "{stderr}"
    );
    // No bar drawing codes: stderr is a pipe.
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");

    let interchange = dir.path().join("interchange.json");
    std::fs::write(
        &interchange,
        format!(
            r#"{{"metadata":{{"interchange_format_version":"5","genesis_validators_root":"0x{}"}},"data":[{{"pubkey":"{}","signed_blocks":[{{"slot":"10"}}],"signed_attestations":[]}}]}}"#,
            "00".repeat(32),
            interop_secret_key(0).public_key().bytes().to_hex()
        ),
    )
    .expect("write");
    let out = command()
        .env("DVSIGNER_PROGRESS_INTERVAL_MS", INTERVAL_MS)
        .args([
            "slashing-protection",
            "import",
            "--slashing-db",
            &format!("sqlite:{}", dir.path().join("sp.sqlite").display()),
            "--file",
            &interchange.display().to_string(),
        ])
        .output()
        .expect("run import");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("slashing-protection import of") && l.contains(": done in ")),
        "{stderr}"
    );
}
