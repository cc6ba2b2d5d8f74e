//! PKCS#11 share storage, end to end with SoftHSM2: `dvsigner hsm import` wraps a keystore's
//! key under the token's AES key, and the real `dvsigner signer` unwraps it at start and signs.
//!
//! Each test initialises its own token in a temp directory (`SOFTHSM2_CONF` names a private
//! `softhsm2.conf` whose `directories.tokendir` is in the temp dir). Needs `softhsm2-util` and
//! the module at [`MODULE`] (`apt-get install softhsm2`; `.ci/run` installs it): without them
//! the tests fail with that message.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::http::{assert_signs, health, key_check, public_keys, reload};
use common::process::{command, free_port, http_client as client, wait_ready, Proc};
use dvsigner::keys::{KdfParams, Keystore, Password, SecretKey};
use serde_json::Value;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const LABEL: &str = "dvsigner-test";
const SO_PIN: &str = "so-pin-8811";
const PIN: &str = "user-pin-4242";

struct Token {
    dir: tempfile::TempDir,
    conf: PathBuf,
    pin_file: PathBuf,
}

impl Token {
    /// A fresh SoftHSM2 token store with one initialised token labelled [`LABEL`].
    fn init() -> Self {
        assert!(
            Path::new(MODULE).exists(),
            "SoftHSM2 module {MODULE} missing: apt-get install softhsm2 (.ci/run installs it)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).expect("mkdir");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("conf");
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                LABEL,
                "--so-pin",
                SO_PIN,
                "--pin",
                PIN,
            ])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap_or_else(|e| {
                panic!("softhsm2-util not runnable ({e}): apt-get install softhsm2")
            });
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).expect("pin file");
        Self {
            dir,
            conf,
            pin_file,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a low-cost keystore of `sk` and its password file; returns their paths.
    fn keystore(&self, name: &str, sk: &SecretKey) -> (PathBuf, PathBuf) {
        let password = format!("pw-{name}");
        let ks = Keystore::encrypt(
            sk,
            &Password::new(password.clone()),
            KdfParams::insecure_fast(),
            "",
            "hsm test share",
        )
        .expect("encrypt");
        let ks_path = self.path(&format!("{name}.json"));
        let pw_path = self.path(&format!("{name}.txt"));
        std::fs::write(&ks_path, ks.to_json()).expect("keystore");
        std::fs::write(&pw_path, password).expect("password");
        (ks_path, pw_path)
    }

    fn token_args(&self, label: &str, pin_file: &Path) -> Vec<String> {
        vec![
            "--module".into(),
            MODULE.into(),
            "--token-label".into(),
            label.into(),
            "--pin-file".into(),
            pin_file.display().to_string(),
        ]
    }

    /// Runs `dvsigner hsm ARGS` against this token store.
    fn hsm(&self, args: &[String]) -> Output {
        command()
            .arg("hsm")
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .expect("run dvsigner hsm")
    }

    fn import(&self, ks: &Path, pw: &Path) -> Output {
        let mut args = vec!["import".to_owned()];
        args.extend(self.token_args(LABEL, &self.pin_file));
        args.extend([
            "--keystore".into(),
            ks.display().to_string(),
            "--password-file".into(),
            pw.display().to_string(),
        ]);
        self.hsm(&args)
    }

    fn import_ok(&self, ks: &Path, pw: &Path) -> Value {
        let out = self.import(ks, pw);
        assert!(
            out.status.success(),
            "hsm import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("import prints json")
    }

    /// Starts a node whose only key source is the token.
    fn node(&self, name: &str, label: &str, pin_file: &Path) -> (Proc, String) {
        let port = free_port();
        let log = self.path(&format!("{name}.log"));
        let args: Vec<String> = [
            "signer",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--insecure-http",
            "--data-dir",
            &self.path("data").display().to_string(),
            "--hsm-module",
            MODULE,
            "--hsm-token-label",
            label,
            "--hsm-pin-file",
            &pin_file.display().to_string(),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let conf = self.conf.display().to_string();
        (
            Proc::start_with_env(name, &args, &[("SOFTHSM2_CONF", &conf)], &log),
            format!("http://127.0.0.1:{port}"),
        )
    }
}

/// Every regular file under `dir`, recursively (bounded depth).
fn files_under(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, depth - 1, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_shares_are_unwrapped_by_the_node_and_sign() {
    let t = Token::init();
    let shares = [
        SecretKey::random(),
        SecretKey::random(),
        SecretKey::random(),
    ];
    let (ks0, pw0) = t.keystore("share0", &shares[0]);
    let (ks1, pw1) = t.keystore("share1", &shares[1]);
    let first = t.import_ok(&ks0, &pw0);
    assert_eq!(first["wrap_key_created"], true);
    assert_eq!(first["pubkey"], shares[0].public_key().bytes().to_hex());
    let second = t.import_ok(&ks1, &pw1);
    assert_eq!(second["wrap_key_created"], false);
    // The same share twice is refused.
    let again = t.import(&ks0, &pw0);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is already stored on token"));

    let (mut node, base) = t.node("node", LABEL, &t.pin_file);
    wait_ready(
        &client(),
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(30),
    )
    .await;
    let keys = public_keys(&base).await;
    let want = |n: usize| {
        let mut v: Vec<String> = shares[..n]
            .iter()
            .map(|s| s.public_key().bytes().to_hex())
            .collect();
        v.sort();
        v
    };
    assert_eq!(keys, want(2));
    for s in &shares[..2] {
        assert_signs(&base, s, 7).await;
    }
    let (code, doc) = health(&base).await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!(
        key_check(&doc, "pkcs11-loading")["data"]["keys-loaded"],
        2,
        "{doc}"
    );

    // A share imported while the node runs is unwrapped by the next /reload.
    let (ks2, pw2) = t.keystore("share2", &shares[2]);
    t.import_ok(&ks2, &pw2);
    let (status, error) = reload(&base).await;
    assert_eq!(status, "completed", "{error}");
    let keys = public_keys(&base).await;
    assert_eq!(keys, want(3));
    assert_signs(&base, &shares[2], 7).await;
    let log = node.log_text();
    assert!(!log.contains(PIN), "pin in log");
    node.terminate(Duration::from_secs(10));

    // No file anywhere in the test's tree (node data dir, token store, logs) holds a share's
    // plaintext, raw or as hex.
    let mut files = Vec::new();
    files_under(t.dir.path(), 8, &mut files);
    assert!(files.iter().any(|f| f.starts_with(t.path("data"))));
    assert!(files.iter().any(|f| f.starts_with(t.path("tokens"))));
    for s in &shares {
        let raw = s.expose_secret();
        let hex_lower = hex::encode(raw.as_ref());
        for f in &files {
            let bytes = std::fs::read(f).expect("read");
            assert!(
                !contains(&bytes, raw.as_ref()),
                "share bytes in {}",
                f.display()
            );
            assert!(
                !contains(&bytes, hex_lower.as_bytes()),
                "share hex in {}",
                f.display()
            );
        }
    }
}

#[test]
fn wrapping_key_is_sensitive_and_never_extractable() {
    let t = Token::init();
    let share = SecretKey::random();
    let (ks, pw) = t.keystore("share", &share);
    t.import_ok(&ks, &pw);
    let mut args = vec!["list".to_owned()];
    args.extend(t.token_args(LABEL, &t.pin_file));
    let out = t.hsm(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let key = &v["wrap_key"];
    assert_eq!(key["label"], "dvsigner-wrap");
    assert_eq!(key["extractable"], false, "{v}");
    assert_eq!(key["never_extractable"], true, "{v}");
    assert_eq!(key["sensitive"], true, "{v}");
    assert_eq!(key["always_sensitive"], true, "{v}");
    assert_eq!(key["token"], true, "{v}");
    assert_eq!(key["value_readable"], false, "{v}");
    let label = format!("dvsigner-share-{}", share.public_key().bytes().to_hex());
    assert_eq!(v["shares"], serde_json::json!([label]));
}

#[test]
fn wrong_pin_stops_the_node_without_showing_the_pin() {
    let t = Token::init();
    let share = SecretKey::random();
    let (ks, pw) = t.keystore("share", &share);
    t.import_ok(&ks, &pw);
    let wrong = t.path("wrong-pin");
    std::fs::write(&wrong, "wrong-pin-1357\n").expect("write");
    let (mut node, _) = t.node("node", LABEL, &wrong);
    let (ok, log) = node.wait_exit(Duration::from_secs(30));
    assert!(!ok, "node started with a wrong pin:\n{log}");
    assert!(
        log.contains(&format!("wrong pin for token \"{LABEL}\"")),
        "{log}"
    );
    assert!(
        !log.contains("wrong-pin-1357") && !log.contains(PIN),
        "{log}"
    );
}

#[test]
fn token_without_shares_stops_the_node() {
    let t = Token::init();
    let (mut node, _) = t.node("node", LABEL, &t.pin_file);
    let (ok, log) = node.wait_exit(Duration::from_secs(30));
    assert!(!ok, "node started without shares:\n{log}");
    assert!(
        log.contains(&format!(
            "wrapping key \"dvsigner-wrap\" not found on token \"{LABEL}\""
        )),
        "{log}"
    );
}

#[test]
fn absent_token_is_named() {
    let t = Token::init();
    let (mut node, _) = t.node("node", "no-such-token", &t.pin_file);
    let (ok, log) = node.wait_exit(Duration::from_secs(30));
    assert!(!ok, "node started without its token:\n{log}");
    assert!(
        log.contains(&format!(
            "no token labelled \"no-such-token\" in pkcs#11 module {MODULE}"
        )),
        "{log}"
    );
    assert!(log.contains(LABEL), "present tokens listed: {log}");
    assert!(!log.contains(PIN), "{log}");
}
