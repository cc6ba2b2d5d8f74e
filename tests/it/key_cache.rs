//! `--key-cache` through the real binary: the first start decrypts every keystore and writes the
//! cache (mode 0600, no plaintext secret in it); the second start takes every key from the
//! cache; a changed keystore is decrypted again while the others still hit; a wrong cache
//! password rebuilds the cache instead of failing. Signatures equal local ones throughout.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::process::{free_port, wait_ready, Proc};
use common::requests::attestation_body;
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::{KdfParams, Keystore, Password};

const KEYS: [u64; 3] = [30, 31, 32];

fn pk(i: u64) -> String {
    interop_secret_key(i).public_key().bytes().to_hex()
}

fn write_keystore(ks: &Path, pw: &Path, i: u64, password: &str) {
    let k = Keystore::encrypt(
        &interop_secret_key(i),
        &Password::new(password.into()),
        KdfParams::insecure_fast(),
        "",
        "",
    )
    .expect("encrypt");
    std::fs::write(ks.join(format!("k{i}.json")), k.to_json()).expect("write keystore");
    std::fs::write(pw.join(format!("k{i}.txt")), password).expect("write password");
}

/// The `key cache used` line of a log: (hits, misses).
fn cache_line(log: &str) -> (usize, usize) {
    let line = log
        .lines()
        .find(|l| l.contains("key cache used"))
        .unwrap_or_else(|| panic!("no `key cache used` line in:\n{log}"));
    let field = |name: &str| -> usize {
        let at = line
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("no {name} in {line}"));
        line[at + name.len() + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .expect("number")
    };
    (field("hits"), field("misses"))
}

struct Setup {
    work: tempfile::TempDir,
    client: reqwest::Client,
}

impl Setup {
    fn new() -> Self {
        let work = tempfile::tempdir().expect("tempdir");
        for d in ["ks", "pw", "data"] {
            std::fs::create_dir_all(work.path().join(d)).expect("mkdir");
        }
        for i in KEYS {
            write_keystore(&work.path().join("ks"), &work.path().join("pw"), i, "pw");
        }
        std::fs::write(work.path().join("cache-pw"), "cache password\n").expect("write");
        Self {
            work,
            client: reqwest::Client::new(),
        }
    }

    fn path(&self, p: &str) -> std::path::PathBuf {
        self.work.path().join(p)
    }

    /// Starts a signer with the cache, checks every key signs correctly, stops it, and
    /// returns its log.
    async fn run(&self, name: &str) -> String {
        let port = free_port();
        let args: Vec<String> = [
            "signer",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--insecure-http",
            "--data-dir",
            self.path("data").to_str().expect("utf-8"),
            "--keystores",
            self.path("ks").to_str().expect("utf-8"),
            "--keystores-passwords",
            self.path("pw").to_str().expect("utf-8"),
            "--key-cache",
            "--key-cache-password-file",
            self.path("cache-pw").to_str().expect("utf-8"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut p = Proc::start(name, &args, &self.path(&format!("{name}.log")));
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(
            &self.client,
            &format!("{url}/upcheck"),
            &mut p,
            Duration::from_secs(60),
        )
        .await;
        let body = attestation_body(3);
        let prepared = dvsigner::signing::prepare(
            body.as_bytes(),
            &dvsigner::signing::Network::from_name_or_path("mainnet").expect("mainnet"),
        )
        .expect("prepare");
        for i in KEYS {
            let res = self
                .client
                .post(format!("{url}/api/v1/eth2/sign/{}", pk(i)))
                .header("content-type", "application/json")
                .header("accept", "text/plain")
                .body(body.clone())
                .send()
                .await
                .expect("sign");
            assert_eq!(res.status(), 200, "key {i}");
            let sig = res.text().await.expect("body");
            assert_eq!(
                sig.trim(),
                interop_secret_key(i).sign(&prepared.root).to_hex(),
                "key {i} from the cache signs like the real key"
            );
        }
        assert!(p.terminate(Duration::from_secs(10)).is_some(), "stop");
        p.log_text()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_start_hits_the_cache_and_a_changed_keystore_misses() {
    let s = Setup::new();
    let log = s.run("first").await;
    assert_eq!(cache_line(&log), (0, 3), "first start decrypts everything");
    let cache = s.path("data").join("key-cache");
    let bytes = std::fs::read(&cache).expect("cache file written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cache)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    for i in KEYS {
        let secret = interop_secret_key(i).expose_secret();
        assert!(
            !bytes.windows(32).any(|w| w == secret.as_ref()),
            "key {i} is not stored in plaintext"
        );
    }

    let log = s.run("second").await;
    assert_eq!(cache_line(&log), (3, 0), "second start: all from the cache");

    // Re-encrypt one keystore under another password: only it is decrypted again.
    write_keystore(&s.path("ks"), &s.path("pw"), KEYS[1], "new password");
    let log = s.run("third").await;
    assert_eq!(cache_line(&log), (2, 1), "the changed keystore misses");
    let log = s.run("fourth").await;
    assert_eq!(cache_line(&log), (3, 0));

    // A removed keystore is dropped from the cache; its key is no longer loaded.
    std::fs::remove_file(s.path("ks").join(format!("k{}.json", KEYS[2]))).expect("rm");
    std::fs::write(
        s.path("ks").join(format!("k{}.json", KEYS[2])),
        Keystore::encrypt(
            &interop_secret_key(KEYS[2]),
            &Password::new("pw".into()),
            KdfParams::insecure_fast(),
            "",
            "",
        )
        .expect("encrypt")
        .to_json(),
    )
    .expect("rewrite");
    let log = s.run("fifth").await;
    assert_eq!(
        cache_line(&log),
        (2, 1),
        "same key, new keystore bytes: decrypted again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cache_password_rebuilds_instead_of_failing() {
    let s = Setup::new();
    let log = s.run("first").await;
    assert_eq!(cache_line(&log), (0, 3));
    std::fs::write(s.path("cache-pw"), "another password\n").expect("write");
    let log = s.run("other-password").await;
    assert!(log.contains("unusable"), "{log}");
    assert_eq!(cache_line(&log), (0, 3));
    let log = s.run("again").await;
    assert_eq!(cache_line(&log), (3, 0), "rebuilt under the new password");
}
