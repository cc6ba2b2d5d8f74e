//! Progress of long work, with the reporting interval shortened through
//! `DVSIGNER_PROGRESS_INTERVAL_MS`: a node decrypting many PBKDF2 keystores at start logs
//! `loading keys` lines with done/total as JSON fields and sets the key-loading gauges; `split`
//! and `slashing-protection import|export` print plain progress lines when stderr is not a
//! terminal, import and export counting validators (done/total) and records while their one
//! transaction runs, on SQLite and PostgreSQL.

use crate::common;

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
            .any(|l| l.starts_with("reading ") && l.contains("interchange.json (0.0 MB)")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("slashing-protection import: done, 1/1 (")
                && l.ends_with(", 1/1 records")),
        "{stderr}"
    );
}

/// Validators of the large interchange: with the histories below, importing and exporting
/// them spans many 1 ms intervals (tens of milliseconds at least) on any machine.
const LARGE: u64 = 3000;

/// An interchange of `n` validators (interop keys), each with one block and `attestations`
/// attestations (`1 + attestations` records).
fn large_interchange(n: u64, attestations: u64) -> String {
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let votes: Vec<Value> = (0..attestations)
                .map(|e| {
                    serde_json::json!({
                        "source_epoch": e.to_string(),
                        "target_epoch": (e + 1).to_string(),
                    })
                })
                .collect();
            serde_json::json!({
                "pubkey": interop_secret_key(i).public_key().bytes().to_hex(),
                "signed_blocks": [{"slot": (100 + i).to_string()}],
                "signed_attestations": votes,
            })
        })
        .collect();
    serde_json::json!({
        "metadata": {
            "interchange_format_version": "5",
            "genesis_validators_root": format!("0x{}", "00".repeat(32)),
        },
        "data": data,
    })
    .to_string()
}

/// Runs `dvsigner slashing-protection ACTION` with a 1 ms progress interval; returns stdout and
/// stderr after asserting success.
fn interchange_command(action: &str, db: &str, file: &Path) -> (String, String) {
    let out = command()
        .env("DVSIGNER_PROGRESS_INTERVAL_MS", "1")
        .args([
            "slashing-protection",
            action,
            "--slashing-db",
            db,
            "--file",
            &file.display().to_string(),
        ])
        .output()
        .expect("run dvsigner");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // No bar drawing codes: stderr is a pipe.
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    (stdout, stderr)
}

/// Checks the plain lines of `label`: periodic `LABEL: D/N (R validators/s, …), …records` lines
/// with the validator total `n` and non-decreasing D, taking at least two values, at least one
/// line while the work was under way, and the final `LABEL: done, N/N (…)` line ending with `final_records`.
fn assert_interchange_progress(stderr: &str, label: &str, n: u64, final_records: &str) {
    let prefix = format!("{label}: ");
    let periodic: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter(|l| !l.starts_with("done") && !l.starts_with("working"))
        .collect();
    assert!(periodic.len() >= 2, "too few progress lines:\n{stderr}");
    let mut last = 0;
    let mut values = std::collections::BTreeSet::new();
    for line in &periodic {
        let (counts, rest) = line.split_once(" (").unwrap_or_else(|| panic!("{line}"));
        let (done, total) = counts.split_once('/').unwrap_or_else(|| panic!("{line}"));
        let done: u64 = done.parse().unwrap_or_else(|_| panic!("{line}"));
        assert_eq!(total, n.to_string(), "{line}");
        assert!(done >= last && done <= n, "{line} after {last}");
        last = done;
        values.insert(done);
        assert!(rest.contains(" validators/s, ETA "), "{line}");
        assert!(rest.contains(" records"), "{line}");
    }
    let first: u64 = periodic[0]
        .split_once('/')
        .and_then(|(d, _)| d.parse().ok())
        .unwrap_or(n);
    assert!(first < n, "no line while the work was under way:\n{stderr}");
    assert!(values.len() >= 2, "done never moved:\n{stderr}");
    let done_line = format!("{prefix}done, {n}/{n} (");
    let finals: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&done_line))
        .collect();
    assert_eq!(finals.len(), 1, "{stderr}");
    assert!(finals[0].ends_with(final_records), "{}", finals[0]);
}

/// Imports `LARGE` validators with `attestations` attestations each into `db`, exports them
/// again, and checks both commands' progress lines and the round trip.
fn large_import_and_export_report_progress(db: &str, dir: &Path, attestations: u64) {
    let file = dir.join("large.json");
    let json = large_interchange(LARGE, attestations);
    std::fs::write(&file, &json).expect("write");
    let records = (1 + attestations) * LARGE;

    let (stdout, stderr) = interchange_command("import", db, &file);
    let mb = format!("({:.1} MB)", json.len() as f64 / 1e6);
    assert!(
        stderr
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("reading ") && l.ends_with(&mb)),
        "{stderr}"
    );
    assert_interchange_progress(
        &stderr,
        "slashing-protection import",
        LARGE,
        &format!(", {records}/{records} records"),
    );
    // Import lines also carry the record total, and records never run ahead of it.
    assert!(
        stderr
            .lines()
            .filter(|l| l.starts_with("slashing-protection import: ") && l.contains(" ("))
            .all(|l| l.ends_with(&format!("/{records} records"))),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!(
            "imported {LARGE} validator(s): {LARGE} block(s), {} attestation(s)",
            attestations * LARGE
        )),
        "{stdout}"
    );

    let exported = dir.join("exported.json");
    let (_, stderr) = interchange_command("export", db, &exported);
    assert_interchange_progress(
        &stderr,
        "slashing-protection export",
        LARGE,
        &format!(", {records} records"),
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("writing ") && l.contains("exported.json (")),
        "{stderr}"
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&exported).expect("read")).expect("json");
    let data = doc["data"].as_array().expect("data");
    assert_eq!(data.len() as u64, LARGE);
    let exported_records: usize = data
        .iter()
        .map(|v| {
            v["signed_blocks"].as_array().map_or(0, Vec::len)
                + v["signed_attestations"].as_array().map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(exported_records as u64, records);
}

#[test]
fn large_interchange_import_and_export_print_validator_progress_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite:{}", dir.path().join("sp.sqlite").display());
    // SQLite answers in microseconds: long histories make the work last.
    large_import_and_export_report_progress(&db, dir.path(), 30);
}

#[test]
fn large_interchange_import_and_export_print_validator_progress_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every statement is a round trip: short histories already take long.
    large_import_and_export_report_progress(&common::pg::fresh_db(), dir.path(), 2);
}
