//! Keymanager API (`/eth/v1/keystores`) through the real binary over HTTP: bearer-token
//! authentication, import (persisted across restarts, duplicates, per-entry errors, slashing
//! interchange first), delete (export of the signed history, key refused afterwards for every
//! sign type even while its keystore is still on disk, across `/reload` and restarts), and
//! re-import.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::http::key_check;
use common::process::{dev_keystores, free_port, signer_args, wait_ready, Proc};
use common::requests::attestation_body;
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::{KdfParams, Keystore, Password};
use serde_json::{json, Value};

const MAINNET_GVR: &str = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95";

fn pk(i: u64) -> String {
    interop_secret_key(i).public_key().bytes().to_hex()
}

/// A fast (PBKDF2, 16 rounds) keystore of interop key `i` with an EIP-2334 path.
fn keystore(i: u64, password: &str) -> String {
    Keystore::encrypt(
        &interop_secret_key(i),
        &Password::new(password.into()),
        KdfParams::insecure_fast(),
        &format!("m/12381/3600/{i}/0/0"),
        "",
    )
    .expect("encrypt")
    .to_json()
}

fn randao(epoch: u64) -> String {
    json!({
        "type": "RANDAO_REVEAL",
        "fork_info": {
            "fork": {"previous_version": "0x04000000", "current_version": "0x05000000", "epoch": "364032"},
            "genesis_validators_root": MAINNET_GVR,
        },
        "randao_reveal": {"epoch": epoch.to_string()},
    })
    .to_string()
}

fn attestation(target: u64) -> String {
    attestation_body(target)
}

/// A signer process with the Keymanager API on, and its data directory.
struct Node {
    proc_: Proc,
    url: String,
    data: PathBuf,
    extra: Vec<String>,
    client: reqwest::Client,
}

impl Node {
    async fn start(work: &Path, name: &str, extra: &[&str]) -> Self {
        let data = work.join("data");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let client = reqwest::Client::new();
        let (proc_, url) = Self::spawn(work, name, &data, &extra, &client).await;
        Self {
            proc_,
            url,
            data,
            extra,
            client,
        }
    }

    async fn spawn(
        work: &Path,
        name: &str,
        data: &Path,
        extra: &[String],
        client: &reqwest::Client,
    ) -> (Proc, String) {
        let port = free_port();
        let mut args = signer_args(port, data, None);
        args.extend(extra.iter().cloned());
        let mut p = Proc::start(name, &args, &work.join(format!("{name}.log")));
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(
            client,
            &format!("{url}/upcheck"),
            &mut p,
            Duration::from_secs(30),
        )
        .await;
        (p, url)
    }

    async fn restart(&mut self, work: &Path, name: &str) {
        assert!(
            self.proc_.terminate(Duration::from_secs(10)).is_some(),
            "signer did not stop"
        );
        let (p, url) = Self::spawn(work, name, &self.data, &self.extra, &self.client).await;
        self.proc_ = p;
        self.url = url;
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.data.join("keymanager-token"))
            .expect("generated token file")
            .trim()
            .to_owned()
    }

    async fn km(&self, method: reqwest::Method, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}/eth/v1/keystores", self.url))
            .bearer_auth(self.token());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("keymanager request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
        )
    }

    async fn sign(&self, pubkey: &str, body: String) -> (u16, String) {
        let res = self
            .client
            .post(format!("{}/api/v1/eth2/sign/{pubkey}", self.url))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .expect("sign request");
        (res.status().as_u16(), res.text().await.expect("body"))
    }

    async fn public_keys(&self) -> Vec<String> {
        common::http::public_keys(&self.url).await
    }

    async fn listed(&self) -> Vec<Value> {
        let (s, v) = self.km(reqwest::Method::GET, None).await;
        assert_eq!(s, 200, "{v}");
        v["data"].as_array().expect("data array").clone()
    }

    async fn health(&self) -> (u16, Value) {
        common::http::health(&self.url).await
    }

    /// `/reload`, which must complete without errors.
    async fn reload(&self) {
        let (status, error) = common::http::reload(&self.url).await;
        assert_eq!(status, "completed", "reload: {error}");
    }
}

fn statuses(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|e| e["status"].as_str().expect("status").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_is_enforced_and_token_is_private() {
    let work = tempfile::tempdir().expect("tempdir");
    let node = Node::start(work.path(), "auth", &["--keymanager-api"]).await;
    let url = format!("{}/eth/v1/keystores", node.url);
    let token = node.token();
    assert_eq!(token.len(), 64, "generated token is 32 random bytes in hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node.data.join("keymanager-token"))
            .expect("token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    ] {
        let body = json!({"keystores": [], "passwords": [], "pubkeys": []});
        let none = node
            .client
            .request(method.clone(), &url)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(none.status(), 401, "{method} without a token");
        let v: Value = none.json().await.expect("json error body");
        assert!(v["message"].is_string(), "{v}");
        let wrong = node
            .client
            .request(method.clone(), &url)
            .bearer_auth(format!("{token}x"))
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(wrong.status(), 403, "{method} with a wrong token");
        let v: Value = wrong.json().await.expect("json error body");
        assert!(v["message"].is_string(), "{v}");
    }
    let basic = node
        .client
        .get(&url)
        .header("authorization", format!("Basic {token}"))
        .send()
        .await
        .expect("request");
    assert_eq!(basic.status(), 401, "only the Bearer scheme is accepted");

    // With the token: the dev keystores are listed, sorted, deletable.
    let listed = node.listed().await;
    let keys: Vec<&str> = listed
        .iter()
        .map(|e| e["validating_pubkey"].as_str().expect("pubkey"))
        .collect();
    let mut want: Vec<String> = (0..5).map(pk).collect();
    want.sort();
    assert_eq!(keys, want);
    assert!(listed.iter().all(|e| e["readonly"] == false));
    assert!(
        !node.proc_.log_text().contains(&token),
        "the token must never be logged"
    );

    // A node without the flag does not serve the API.
    std::fs::create_dir_all(work.path().join("plain")).expect("mkdir");
    let plain = Node::start(&work.path().join("plain"), "plain", &[]).await;
    let r = plain
        .client
        .get(format!("{}/eth/v1/keystores", plain.url))
        .bearer_auth("anything")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.expect("json");
    assert!(v["message"]
        .as_str()
        .expect("message")
        .contains("not enabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_flag_is_used() {
    let work = tempfile::tempdir().expect("tempdir");
    let token_file = work.path().join("token.txt");
    std::fs::write(&token_file, "s3cret-token\n").expect("write");
    let node = Node::start(
        work.path(),
        "tokenfile",
        &[
            "--key-manager-api-enabled=true",
            "--keymanager-token-file",
            token_file.to_str().expect("utf-8"),
        ],
    )
    .await;
    let url = format!("{}/eth/v1/keystores", node.url);
    let ok = node
        .client
        .get(&url)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    assert!(
        !node.data.join("keymanager-token").exists(),
        "no token is generated when a token file is given"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_persists_across_restart_with_duplicate_and_bad_password_entries() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(work.path(), "import", &["--keymanager-api"]).await;
    let (dev_ks, dev_pw) = dev_keystores();
    let dev0 = std::fs::read_to_string(dev_ks.join("interop-0.json")).expect("dev keystore");
    let dev0_pw = std::fs::read_to_string(dev_pw.join("interop-0.txt")).expect("dev password");

    // Empty import: 200 with no entries. Mismatched lengths and a malformed body: 400.
    let (s, v) = node
        .km(
            reqwest::Method::POST,
            Some(json!({"keystores": [], "passwords": []})),
        )
        .await;
    assert_eq!((s, v.clone()), (200, json!({"data": []})));
    let (s, v) = node
        .km(
            reqwest::Method::POST,
            Some(json!({"keystores": [keystore(10, "a")], "passwords": []})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].is_string());
    let (s, _) = node
        .km(reqwest::Method::POST, Some(json!({"keystores": "x"})))
        .await;
    assert_eq!(s, 400);

    let body = json!({
        "keystores": [keystore(10, "pw-ten"), keystore(11, "pw-eleven"), keystore(10, "pw-ten"), dev0, "{not a keystore"],
        "passwords": ["pw-ten", "WRONG", "pw-ten", dev0_pw.trim(), "x"],
    });
    let (s, v) = node.km(reqwest::Method::POST, Some(body)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        statuses(&v),
        ["imported", "error", "duplicate", "duplicate", "error"],
        "{v}"
    );
    assert!(
        v["data"][1]["message"]
            .as_str()
            .expect("message")
            .contains("decrypt"),
        "{v}"
    );
    let (s, sig) = node.sign(&pk(10), randao(1)).await;
    assert_eq!(s, 200, "{sig}");
    let (s, _) = node.sign(&pk(11), randao(1)).await;
    assert_eq!(s, 404, "the entry with the wrong password was not imported");

    let listed = node.listed().await;
    let ten = listed
        .iter()
        .find(|e| e["validating_pubkey"] == pk(10))
        .expect("imported key listed");
    assert_eq!(ten["derivation_path"], "m/12381/3600/10/0/0");
    assert_eq!(ten["readonly"], false);

    // Persisted with private permissions, and loaded again after a restart.
    let stored = node
        .data
        .join("keymanager/keystores")
        .join(format!("{}.json", pk(10)));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [
            stored.clone(),
            node.data
                .join("keymanager/passwords")
                .join(format!("{}.txt", pk(10))),
        ] {
            let mode = std::fs::metadata(&f)
                .expect("persisted")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", f.display());
        }
    }
    node.reload().await;
    assert!(
        node.public_keys().await.contains(&pk(10)),
        "/reload keeps imported keys"
    );
    node.restart(work.path(), "import-2").await;
    assert!(node.public_keys().await.contains(&pk(10)));
    let (s, sig2) = node.sign(&pk(10), randao(1)).await;
    assert_eq!((s, &sig2), (200, &sig), "same key, same signature");
    let (s, v) = node
        .km(
            reqwest::Method::POST,
            Some(json!({"keystores": [keystore(10, "other")], "passwords": ["other"]})),
        )
        .await;
    assert_eq!((s, statuses(&v)), (200, vec!["duplicate".to_owned()]));

    // A persisted password damaged on disk: the node starts, without that key, and its
    // healthcheck names the failure; repaired and reloaded, it is back.
    let password_file = node
        .data
        .join("keymanager/passwords")
        .join(format!("{}.txt", pk(10)));
    let good = std::fs::read(&password_file).expect("password");
    std::fs::write(&password_file, "WRONG").expect("damage");
    node.restart(work.path(), "import-3").await;
    assert!(!node.public_keys().await.contains(&pk(10)));
    let (s, v) = node.health().await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(
        key_check(&v, "keymanager-imported-loading"),
        json!({"id": "keymanager-imported-loading", "status": "DOWN",
               "data": {"keys-loaded": 0, "error-count": 1}}),
        "{v}"
    );
    std::fs::write(&password_file, good).expect("repair");
    node.reload().await;
    assert!(node.public_keys().await.contains(&pk(10)));
    let (s, v) = node.health().await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        key_check(&v, "keymanager-imported-loading")["status"],
        "UP",
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_interchange_refuses_slashable_requests() {
    let work = tempfile::tempdir().expect("tempdir");
    let node = Node::start(work.path(), "interchange", &["--keymanager-api"]).await;
    let interchange = |pubkey: String| {
        json!({
            "metadata": {"interchange_format_version": "5", "genesis_validators_root": MAINNET_GVR},
            "data": [{
                "pubkey": pubkey,
                "signed_blocks": [],
                "signed_attestations": [{"source_epoch": "0", "target_epoch": "100"}],
            }],
        })
        .to_string()
    };

    // A broken interchange fails the whole request and imports nothing.
    let (s, v) = node
        .km(
            reqwest::Method::POST,
            Some(json!({
                "keystores": [keystore(12, "p")],
                "passwords": ["p"],
                "slashing_protection": "{\"metadata\": 5}",
            })),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(!node.public_keys().await.contains(&pk(12)));

    let (s, v) = node
        .km(
            reqwest::Method::POST,
            Some(json!({
                "keystores": [keystore(12, "p")],
                "passwords": ["p"],
                "slashing_protection": interchange(pk(12)),
            })),
        )
        .await;
    assert_eq!((s, statuses(&v)), (200, vec!["imported".to_owned()]), "{v}");
    let (s, body) = node.sign(&pk(12), attestation(50)).await;
    assert_eq!(s, 412, "target 50 is below the imported target 100: {body}");
    let (s, body) = node.sign(&pk(12), attestation(100)).await;
    assert_eq!(s, 412, "target 100 with an unknown root: {body}");
    let (s, body) = node.sign(&pk(12), attestation(101)).await;
    assert_eq!(s, 200, "{body}");
}

/// Interop key `secret_of`'s keystore (password `password`) whose `pubkey` field names interop
/// key `claimed` instead: the password is right, the pair is forged.
fn forged_keystore(secret_of: u64, claimed: u64, password: &str) -> String {
    let mut doc: Value = serde_json::from_str(&keystore(secret_of, password)).expect("json");
    doc["pubkey"] = json!(pk(claimed).trim_start_matches("0x"));
    doc.to_string()
}

/// The message a forged keystore must produce (at start-up and on import).
fn forged_message(secret_of: u64, claimed: u64) -> String {
    format!(
        "keystore pubkey field {} does not match its secret key (public key {})",
        pk(claimed),
        pk(secret_of)
    )
}

/// The `slashing_protection` of an import is applied only to the keys imported by that request:
/// entries for a key whose keystore failed (wrong password, forged `pubkey`) or that is not in
/// the request are not imported (those keys sign below the interchange's watermark once they are
/// imported later without one). A forged keystore is reported as such, on import and when a
/// key-config file names one at start-up, never as a decryption or password failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_applies_slashing_protection_only_to_imported_keys_and_names_forged_keystores() {
    let work = tempfile::tempdir().expect("tempdir");
    let cfg = work.path().join("key-config");
    std::fs::create_dir_all(&cfg).expect("mkdir");
    std::fs::write(cfg.join("forged.json"), forged_keystore(21, 22, "pw")).expect("write");
    std::fs::write(cfg.join("forged.pass"), "pw").expect("write");
    std::fs::write(
        cfg.join("forged.yaml"),
        "type: file-keystore\nkeystoreFile: forged.json\nkeystorePasswordFile: forged.pass\n",
    )
    .expect("write");
    let node = Node::start(
        work.path(),
        "filter",
        &[
            "--keymanager-api",
            "--key-config",
            &cfg.display().to_string(),
        ],
    )
    .await;
    let log = node.proc_.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("forged.yaml"))
        .unwrap_or_else(|| panic!("no start-up error for forged.yaml:\n{log}"));
    assert!(line.contains(&forged_message(21, 22)), "{line}");
    assert!(
        !line.contains("decrypt") && !line.contains("password"),
        "{line}"
    );
    let loaded = node.public_keys().await;
    assert!(!loaded.contains(&pk(21)) && !loaded.contains(&pk(22)));

    let entry = |i: u64| {
        json!({
            "pubkey": pk(i),
            "signed_blocks": [],
            "signed_attestations": [{"source_epoch": "0", "target_epoch": "100"}],
        })
    };
    let interchange = json!({
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": MAINNET_GVR},
        "data": [entry(13), entry(14), entry(15), entry(18), entry(19)],
    })
    .to_string();
    let (s, v) = node
        .km(
            reqwest::Method::POST,
            Some(json!({
                "keystores": [keystore(13, "p"), keystore(14, "p"), forged_keystore(18, 19, "p")],
                "passwords": ["p", "WRONG", "p"],
                "slashing_protection": interchange,
            })),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(statuses(&v), ["imported", "error", "error"], "{v}");
    let wrong = v["data"][1]["message"].as_str().expect("message");
    assert!(wrong.contains("wrong password"), "{wrong}");
    let forged = v["data"][2]["message"].as_str().expect("message");
    assert_eq!(forged, forged_message(18, 19), "{v}");
    let loaded = node.public_keys().await;
    assert!(loaded.contains(&pk(13)));
    for i in [14, 18, 19] {
        assert!(!loaded.contains(&pk(i)), "key {i} must not be loaded");
    }
    let (s, body) = node.sign(&pk(13), attestation(50)).await;
    assert_eq!(s, 412, "key 13's imported watermark applies: {body}");

    // The keys whose entries were in that interchange but were not imported by it: imported
    // now without one, they have no history, so target 50 signs.
    let (s, v) = node
        .km(
            reqwest::Method::POST,
            Some(json!({
                "keystores": [keystore(14, "p"), keystore(15, "p"), keystore(18, "p"), keystore(19, "p")],
                "passwords": ["p", "p", "p", "p"],
            })),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(statuses(&v), ["imported"; 4], "{v}");
    for i in [14, 15, 18, 19] {
        let (s, body) = node.sign(&pk(i), attestation(50)).await;
        assert_eq!(s, 200, "no slashing data was imported for key {i}: {body}");
    }

    // An interchange the database refuses (another chain's genesis_validators_root) fails the
    // whole request: nothing is imported.
    let other_chain = json!({
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": format!("0x{}", "11".repeat(32))},
        "data": [entry(16)],
    })
    .to_string();
    let (s, v) = node
        .km(
            reqwest::Method::POST,
            Some(json!({
                "keystores": [keystore(16, "p")],
                "passwords": ["p"],
                "slashing_protection": other_chain,
            })),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(!node.public_keys().await.contains(&pk(16)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_exports_history_and_keeps_the_key_refused_until_reimported() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(work.path(), "delete", &["--keymanager-api"]).await;
    let (s, body) = node.sign(&pk(0), attestation(5)).await;
    assert_eq!(s, 200, "{body}");

    let (s, v) = node
        .km(
            reqwest::Method::DELETE,
            Some(json!({"pubkeys": [pk(0), pk(20)]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(statuses(&v), ["deleted", "not_found"]);
    let check_export = |v: &Value| {
        let text = v["slashing_protection"]
            .as_str()
            .expect("slashing_protection is a JSON string");
        let doc: Value = serde_json::from_str(text).expect("EIP-3076 JSON");
        assert_eq!(doc["metadata"]["interchange_format_version"], "5");
        assert_eq!(doc["metadata"]["genesis_validators_root"], MAINNET_GVR);
        let data = doc["data"].as_array().expect("data");
        assert_eq!(data.len(), 1, "only the deleted key: {doc}");
        assert_eq!(data[0]["pubkey"], pk(0));
        let atts = data[0]["signed_attestations"].as_array().expect("atts");
        assert!(
            atts.iter().any(|a| a["target_epoch"] == "5"),
            "the signed attestation is exported: {doc}"
        );
    };
    check_export(&v);

    // Refused for every sign type, although interop-0.json is still in --keystores.
    assert_refused(&node).await;
    node.reload().await;
    assert_refused(&node).await;
    node.restart(work.path(), "delete-2").await;
    assert_refused(&node).await;

    // A second delete still returns the history, as not_active.
    let (s, v) = node
        .km(reqwest::Method::DELETE, Some(json!({"pubkeys": [pk(0)]})))
        .await;
    assert_eq!((s, statuses(&v)), (200, vec!["not_active".to_owned()]));
    check_export(&v);

    // Re-import enables it again (and persists that).
    let (dev_ks, dev_pw) = dev_keystores();
    let dev0 = std::fs::read_to_string(dev_ks.join("interop-0.json")).expect("dev keystore");
    let dev0_pw = std::fs::read_to_string(dev_pw.join("interop-0.txt")).expect("dev password");
    let (s, v) = node
        .km(
            reqwest::Method::POST,
            Some(json!({"keystores": [dev0], "passwords": [dev0_pw.trim()]})),
        )
        .await;
    assert_eq!((s, statuses(&v)), (200, vec!["imported".to_owned()]), "{v}");
    let (s, b) = node.sign(&pk(0), randao(7)).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = node.sign(&pk(0), attestation(5)).await;
    assert_eq!(s, 200, "the identical attestation is a safe repeat: {b}");
    let other_root = attestation(5).replace("abab", "cdcd");
    let (s, b) = node.sign(&pk(0), other_root).await;
    assert_eq!(
        s, 412,
        "double vote: history survived delete and re-import: {b}"
    );
    node.restart(work.path(), "delete-3").await;
    let (s, b) = node.sign(&pk(0), attestation(8)).await;
    assert_eq!(s, 200, "still enabled after a restart: {b}");
}

async fn assert_refused(node: &Node) {
    let (s, b) = node.sign(&pk(0), attestation(6)).await;
    assert_eq!(s, 412, "attestation after delete: {b}");
    let (s, b) = node.sign(&pk(0), randao(7)).await;
    assert_eq!(s, 412, "randao after delete: {b}");
    assert!(!node.public_keys().await.contains(&pk(0)));
    let listed = node.listed().await;
    assert!(listed.iter().all(|e| e["validating_pubkey"] != pk(0)));
}
