//! `/reload` under load: a bounded stream of sign requests runs over real HTTP while `/reload`
//! removes one keystore and one key-config file and adds another of each. No request may fail
//! except requests for a removed key that started after the removal began (and requests for an
//! added key that started before the reload finished, which get 404 until it lands).

use crate::common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dvsigner::api::{self, NodeState};
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::sources::KeySources;
use dvsigner::keys::sources::{KeyConfigDir, KeystoresDir};
use dvsigner::keys::{KdfParams, KeyStore, Keystore, Password};
use dvsigner::signing::Network;
use dvsigner::slashing::SlashingDb;
use serde_json::{json, Value};

const STAYS: u64 = 40;
const REMOVED: u64 = 41;
const ADDED: u64 = 42;
/// Keys in Web3Signer key-config files (`type: file-raw`).
const CFG_STAYS: u64 = 46;
const CFG_REMOVED: u64 = 47;
const CFG_ADDED: u64 = 48;
const ALL: [u64; 6] = [STAYS, REMOVED, ADDED, CFG_STAYS, CFG_REMOVED, CFG_ADDED];
/// Keystores with the EIP-2335 PBKDF2 cost, so each reload takes a while and overlaps requests.
const SLOW: [u64; 3] = [43, 44, 45];
const MAX_REQUESTS: usize = 4000;
const WORKERS: usize = 8;
const AFTER_RELOAD: usize = 200;

fn pk(i: u64) -> String {
    interop_secret_key(i).public_key().bytes().to_hex()
}

fn write_keystore(ks: &Path, pw: &Path, i: u64, kdf: KdfParams) {
    let k = Keystore::encrypt(
        &interop_secret_key(i),
        &Password::new("pw".into()),
        kdf,
        "",
        "",
    )
    .expect("encrypt");
    std::fs::write(ks.join(format!("k{i}.json")), k.to_json()).expect("write");
    std::fs::write(pw.join(format!("k{i}.txt")), "pw").expect("write");
}

fn write_key_config(dir: &Path, i: u64) {
    let secret = interop_secret_key(i);
    std::fs::write(
        dir.join(format!("k{i}.yaml")),
        format!(
            "type: \"file-raw\"\nkeyType: \"BLS\"\nprivateKey: \"0x{}\"\n",
            hex::encode(secret.expose_secret().as_ref())
        ),
    )
    .expect("write");
}

fn randao(epoch: usize) -> String {
    json!({
        "type": "RANDAO_REVEAL",
        "fork_info": {
            "fork": {"previous_version": "0x04000000", "current_version": "0x05000000", "epoch": "364032"},
            "genesis_validators_root": "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95",
        },
        "randao_reveal": {"epoch": epoch.to_string()},
    })
    .to_string()
}

struct Outcome {
    key: u64,
    started: Instant,
    status: Result<u16, String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_keys_without_failing_in_flight_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ks, pw, cfg) = (
        dir.path().join("ks"),
        dir.path().join("pw"),
        dir.path().join("cfg"),
    );
    for d in [&ks, &pw, &cfg] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    for i in [CFG_STAYS, CFG_REMOVED] {
        write_key_config(&cfg, i);
    }
    for i in [STAYS, REMOVED] {
        write_keystore(&ks, &pw, i, KdfParams::insecure_fast());
    }
    for i in SLOW {
        write_keystore(&ks, &pw, i, KdfParams::pbkdf2_default());
    }
    let sources = KeySources::new()
        .with(KeystoresDir {
            keystores: ks.clone(),
            passwords: pw.clone(),
        })
        .with(KeyConfigDir { dir: cfg.clone() });
    let keys = KeyStore::default();
    keys.insert_all(
        dvsigner::keys::sources::load_key_sources(&sources, None)
            .expect("load")
            .into_keys(),
    );
    assert_eq!(keys.len(), 7);
    let db = SlashingDb::open(&format!(
        "sqlite:{}",
        dir.path().join("db.sqlite").display()
    ))
    .await
    .expect("db");
    let state = NodeState::new(
        Arc::new(keys),
        Some(db),
        Network::from_name_or_path("mainnet").expect("mainnet"),
        sources,
    )
    .expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dvsigner::http::server::run(
        listener,
        None,
        api::router(Arc::new(state)),
        Default::default(),
        async {
            let _ = stop_rx.await;
        },
    ));

    let client = reqwest::Client::new();
    let sent = Arc::new(AtomicUsize::new(0));
    let after_reload = Arc::new(AtomicUsize::new(0));
    let reloaded = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (client, url, sent, after_reload, reloaded, outcomes) = (
            client.clone(),
            url.clone(),
            sent.clone(),
            after_reload.clone(),
            reloaded.clone(),
            outcomes.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let n = sent.fetch_add(1, Ordering::SeqCst);
                if n >= MAX_REQUESTS
                    || reloaded.load(Ordering::SeqCst)
                        && after_reload.fetch_add(1, Ordering::SeqCst) >= AFTER_RELOAD
                {
                    return;
                }
                let key = ALL[n % ALL.len()];
                let started = Instant::now();
                let status = client
                    .post(format!("{url}/api/v1/eth2/sign/{}", pk(key)))
                    .header("content-type", "application/json")
                    .body(randao(n))
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string());
                outcomes.lock().expect("lock").push(Outcome {
                    key,
                    started,
                    status,
                });
            }
        }));
    }

    // Let requests flow, then swap REMOVED for ADDED on disk and reload.
    let bound = Instant::now() + Duration::from_secs(30);
    while sent.load(Ordering::SeqCst) < 150 && Instant::now() < bound {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::fs::remove_file(ks.join(format!("k{REMOVED}.json"))).expect("rm");
    write_keystore(&ks, &pw, ADDED, KdfParams::insecure_fast());
    std::fs::remove_file(cfg.join(format!("k{CFG_REMOVED}.yaml"))).expect("rm");
    write_key_config(&cfg, CFG_ADDED);
    let reload_started = Instant::now();
    let r = client
        .post(format!("{url}/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 202);
    let mut reload_done = None;
    for _ in 0..600 {
        let v: Value = client
            .get(format!("{url}/reload"))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        if v["status"] == "completed" {
            reload_done = Some(Instant::now());
            break;
        }
        assert_ne!(v["status"], "failed", "{v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reload_done = reload_done.expect("reload completed within the bound");
    let during = sent.load(Ordering::SeqCst);
    reloaded.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("worker");
    }
    let _ = stop_tx.send(());
    server.await.expect("server task").expect("server");

    let outcomes = outcomes.lock().expect("lock");
    assert!(during > 150, "requests kept flowing during the reload");
    let mut removed_ok_before = [0; 2];
    let mut added_ok_after = [0; 2];
    for o in outcomes.iter() {
        let status = o
            .status
            .as_ref()
            .unwrap_or_else(|e| panic!("request for key {} failed at transport level: {e}", o.key));
        match (o.key, *status) {
            (STAYS | CFG_STAYS, s) => {
                assert_eq!(s, 200, "key {} stays and must always sign", o.key)
            }
            (REMOVED | CFG_REMOVED, 200) => {
                assert!(
                    o.started < reload_done,
                    "removed key {} signed after the reload",
                    o.key
                );
                removed_ok_before[usize::from(o.key == CFG_REMOVED)] += 1;
            }
            (REMOVED | CFG_REMOVED, 404) => assert!(
                o.started >= reload_started,
                "removed key refused before its removal began"
            ),
            (ADDED | CFG_ADDED, 200) => {
                assert!(
                    o.started >= reload_started,
                    "added key {} signed before it was added",
                    o.key
                );
                added_ok_after[usize::from(o.key == CFG_ADDED)] += 1;
            }
            (ADDED | CFG_ADDED, 404) => assert!(
                o.started < reload_done,
                "added key missing after the reload finished"
            ),
            (key, s) => panic!("unexpected status {s} for key {key}"),
        }
    }
    // Per source: [keystore, key-config file].
    assert!(
        removed_ok_before.iter().all(|n| *n > 0),
        "each removed key signed before its removal: {removed_ok_before:?}"
    );
    assert!(
        added_ok_after.iter().all(|n| *n > 0),
        "each added key signed after the reload: {added_ok_after:?}"
    );
}

/// A key-config file that fails to load on `/reload` is named once in the reload's error (not
/// `FILE: FILE: document 1: …`), and the keys loaded before keep signing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_key_config_is_named_once_in_the_reload_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("key-config");
    std::fs::create_dir(&cfg).expect("mkdir");
    write_key_config(&cfg, CFG_STAYS);
    let port = common::process::free_port();
    let mut args = common::process::signer_args(port, &dir.path().join("data"), None);
    args.extend(["--key-config".into(), cfg.display().to_string()]);
    let mut node = common::process::Proc::start("node", &args, &dir.path().join("node.log"));
    let base = format!("http://127.0.0.1:{port}");
    let client = common::process::http_client();
    common::process::wait_ready(
        &client,
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(60),
    )
    .await;

    let bad = cfg.join("bad.yaml");
    std::fs::write(
        &bad,
        "type: \"file-raw\"\nkeyType: \"BLS\"\nprivateKey: \"0x1234\"\n",
    )
    .expect("write");
    let (status, error) = common::http::reload(&base).await;
    assert_eq!(status, "completed_with_errors", "{error}");
    let named = bad.display().to_string();
    assert_eq!(error.matches(&named).count(), 1, "{error}");
    assert!(error.starts_with(&named), "{error}");
    assert!(common::http::public_keys(&base)
        .await
        .contains(&pk(CFG_STAYS)));
    node.terminate(Duration::from_secs(10));
}
