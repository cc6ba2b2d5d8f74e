//! `dvsigner dkg` end to end: four operator processes on loopback over mutual TLS run a 3-of-4
//! ceremony; outputs are checked share by share, by threshold signing, and the deposit data by
//! an independent implementation (py_ecc, `tests/dkg/verify_deposits.py`). Misbehaviour: a
//! dealer sending a wrong share is named; an operator vanishing mid-ceremony makes everyone
//! fail with nothing written.

use crate::common::process;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dvsigner::bls::SigningRoot;
use dvsigner::cluster::ClusterDefinition;
use dvsigner::keys::{Keystore, Password};
use dvsigner::threshold::{combine, ShareIndex};
use process::{free_port, wait_all, Proc};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

struct Setup {
    dir: tempfile::TempDir,
    definition: PathBuf,
}

impl Setup {
    fn new(validators: u32) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ops = Vec::new();
        for name in NAMES {
            let id =
                dvsigner::tls::generate_self_signed(&dir.path().join("tls"), name).expect("cert");
            let port = free_port();
            ops.push(serde_json::json!({
                "name": name,
                "url": format!("https://127.0.0.1:{port}"),
                "node_url": format!("https://127.0.0.1:{}", 9000 + port % 1000),
                "tls_fingerprint": id.fingerprint.to_string(),
            }));
        }
        let def = serde_json::json!({
            "version": 1,
            "name": "test-ceremony",
            "operators": ops,
            "threshold": 3,
            "validators": validators,
            "withdrawal_credentials": format!("0x01{}", "ab".repeat(31)),
            "fork_version": "0x01017000",
            "network_name": "holesky",
            "amount_gwei": 32_000_000_000u64,
        });
        let definition = dir.path().join("ceremony.json");
        std::fs::write(
            &definition,
            serde_json::to_string_pretty(&def).expect("json"),
        )
        .expect("write");
        std::fs::write(dir.path().join("password.txt"), "correct horse\n").expect("pw");
        Self { dir, definition }
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("out-{name}"))
    }

    fn start(&self, name: &str, fault: Option<&str>) -> Proc {
        let tls = self.dir.path().join("tls");
        let mut args: Vec<String> = vec![
            "dkg".into(),
            "--definition".into(),
            self.definition.display().to_string(),
            "--operator".into(),
            name.into(),
            "--tls-cert".into(),
            tls.join(format!("{name}.pem")).display().to_string(),
            "--tls-key".into(),
            tls.join(format!("{name}-key.pem")).display().to_string(),
            "--out".into(),
            self.out(name).display().to_string(),
            "--password-file".into(),
            self.dir.path().join("password.txt").display().to_string(),
            "--kdf".into(),
            "insecure-fast".into(),
            "--round-timeout-secs".into(),
            "6".into(),
            "--request-timeout-secs".into(),
            "2".into(),
        ];
        if let Some(f) = fault {
            args.push("--test-fault".into());
            args.push(f.into());
        }
        Proc::start(name, &args, &self.dir.path().join(format!("{name}.log")))
    }

    /// Starts all four (with an optional fault for `d`) and waits (bounded) for every exit.
    fn run_all(&self, fault_d: Option<&str>) -> Vec<(Proc, bool)> {
        let procs: Vec<Proc> = NAMES
            .iter()
            .map(|n| self.start(n, if *n == "d" { fault_d } else { None }))
            .collect();
        wait_all(procs, Duration::from_secs(60), "ceremony")
    }

    fn assert_nothing_written(&self) {
        for name in NAMES {
            let out = self.out(name);
            assert!(!out.exists(), "{} exists", out.display());
            let staging = dvsigner::dkg::output::staging_dir(&out);
            assert!(!staging.exists(), "{} exists", staging.display());
        }
    }
}

fn deposit_file(out: &Path) -> PathBuf {
    std::fs::read_dir(out)
        .expect("out dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("deposit_data-") && n.ends_with(".json"))
        })
        .expect("deposit file")
}

fn py_ecc_available() -> bool {
    Command::new("python3")
        .args(["-c", "import py_ecc.bls"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn three_of_four_ceremony_produces_verifiable_outputs() {
    let setup = Setup::new(2);
    let results = setup.run_all(None);
    for (p, ok) in &results {
        assert!(ok, "{} failed:\n{}", p.name, p.log_text());
    }
    // Progress was shown.
    let log_a = results[0].0.log_text();
    assert!(log_a.contains("2/5 (dealings)"), "{log_a}");
    assert!(log_a.contains("cluster.json hash: 0x"), "{log_a}");

    // cluster.json identical everywhere.
    let texts: Vec<String> = NAMES
        .iter()
        .map(|n| std::fs::read_to_string(setup.out(n).join("cluster.json")).expect("cluster"))
        .collect();
    assert!(texts.iter().all(|t| *t == texts[0]));
    let cluster = ClusterDefinition::from_json(&texts[0]).expect("valid cluster.json");
    assert_eq!(cluster.validators().len(), 2);

    // Every share keystore decrypts to a share that verifies against the commitments.
    let password = Password::new("correct horse".into());
    let mut shares = std::collections::BTreeMap::new();
    for (pos, name) in NAMES.iter().enumerate() {
        let index = ShareIndex::new(pos as u64 + 1).expect("index");
        let ks_dir = setup.out(name).join("keystores");
        let files: Vec<PathBuf> = std::fs::read_dir(&ks_dir)
            .expect("keystores")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(files.len(), 2, "{name}");
        for f in files {
            let ks =
                Keystore::from_json(&std::fs::read_to_string(&f).expect("read")).expect("keystore");
            let sk = ks.decrypt(&password).expect("decrypt");
            let (validator, share) = cluster
                .share(&sk.public_key().bytes())
                .expect("share listed in cluster.json");
            assert_eq!(share.operator, *name);
            assert_eq!(share.index, index);
            assert!(validator.commitments.verify_share(index, sk.public_key()));
            let pw = setup
                .out(name)
                .join("passwords")
                .join(format!("{}.txt", sk.public_key().bytes().to_hex()));
            assert_eq!(std::fs::read_to_string(pw).expect("pw"), "correct horse");
            shares.insert((validator.group_pubkey.bytes(), pos + 1), sk);
        }
    }

    // Any 3 shares sign under the group key; 2 do not suffice.
    let root = SigningRoot([0x5a; 32]);
    for v in cluster.validators() {
        let gk = v.group_pubkey.bytes();
        for subset in [[1, 2, 3], [2, 3, 4], [1, 2, 4], [4, 1, 3]] {
            let partials: Vec<_> = subset
                .iter()
                .map(|i| {
                    (
                        ShareIndex::new(*i as u64).expect("i"),
                        shares[&(gk, *i)].sign(&root),
                    )
                })
                .collect();
            let sig = combine(&partials, 3).expect("combine");
            assert!(sig.verify(&v.group_pubkey, &root.0), "{subset:?}");
            let two = combine(&partials[..2], 2).expect("combine 2");
            assert!(!two.verify(&v.group_pubkey, &root.0));
        }
    }

    // Deposit data: identical everywhere, right keys, verified independently.
    let deposits: Vec<String> = NAMES
        .iter()
        .map(|n| std::fs::read_to_string(deposit_file(&setup.out(n))).expect("deposit"))
        .collect();
    assert!(deposits.iter().all(|d| *d == deposits[0]));
    let entries: Vec<serde_json::Value> = serde_json::from_str(&deposits[0]).expect("json");
    assert_eq!(entries.len(), 2);
    for (e, v) in entries.iter().zip(cluster.validators()) {
        assert_eq!(
            e["pubkey"],
            v.group_pubkey.bytes().to_hex().trim_start_matches("0x")
        );
        assert_eq!(e["amount"], 32_000_000_000u64);
        assert_eq!(e["network_name"], "holesky");
        assert_eq!(e["fork_version"], "01017000");
        assert_eq!(
            e["withdrawal_credentials"],
            format!("01{}", "ab".repeat(31))
        );
    }
    if !py_ecc_available() {
        assert!(
            std::env::var_os("DVSIGNER_REQUIRE_PY_ECC").is_none(),
            "py_ecc is required (pip install py_ecc)"
        );
        eprintln!("SKIPPED independent deposit verification: python3 -c 'import py_ecc' fails");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dkg/verify_deposits.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(deposit_file(&setup.out("a")));
    for v in cluster.validators() {
        cmd.arg(v.group_pubkey.bytes().to_hex().trim_start_matches("0x"));
    }
    let out = cmd.output().expect("python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The checker itself rejects a tampered signature (it can fail).
    let mut bad = entries.clone();
    let sig = bad[0]["signature"].as_str().expect("sig").to_owned();
    bad[0]["signature"] = entries[1]["signature"].clone();
    assert_ne!(sig, bad[0]["signature"].as_str().expect("sig"));
    let bad_path = setup.dir.path().join("bad.json");
    std::fs::write(&bad_path, serde_json::to_string(&bad).expect("json")).expect("write");
    let st = Command::new("python3")
        .arg(&script)
        .arg(&bad_path)
        .output()
        .expect("python3");
    assert!(!st.status.success());
}

#[test]
fn corrupt_share_is_detected_and_named() {
    let setup = Setup::new(2);
    let results = setup.run_all(Some("corrupt-share:b"));
    for (p, ok) in &results {
        assert!(!ok, "{} succeeded despite a corrupt dealing", p.name);
    }
    let log_b = results[1].0.log_text();
    assert!(
        log_b.contains("operator d dealt invalid shares (reported by b)"),
        "{log_b}"
    );
    for (p, _) in &results {
        let log = p.log_text();
        assert!(log.contains("operator d"), "{}: {log}", p.name);
    }
    setup.assert_nothing_written();
}

#[test]
fn operator_vanishing_mid_ceremony_fails_cleanly() {
    let setup = Setup::new(2);
    let results = setup.run_all(Some("stop-after-dealing"));
    for (p, ok) in &results {
        assert!(!ok, "{} succeeded without operator d", p.name);
    }
    for (p, _) in &results[..3] {
        let log = p.log_text();
        assert!(
            log.contains("did not answer round 3/5 (complaints)") && log.contains("operator(s) d"),
            "{}: {log}",
            p.name
        );
    }
    setup.assert_nothing_written();
}
