//! Shared by the node benchmarks (`node.rs`, `scale.rs`): whole-key keystores on disk, a real
//! `dvsigner signer` process (the binary Cargo built for this benchmark) over mutual TLS with
//! SQLite slashing protection, and `/proc` readings of that process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::{KdfParams, Keystore, Password};
use dvsigner::tls::DevPki;
use rayon::prelude::*;

/// Password of every benchmark keystore.
pub(crate) const PASSWORD: &str = "bench";

/// `n` whole-key keystores of interop keys 0..n (PBKDF2 with 16 rounds: decryption costs
/// nothing, so start-up measures the signer, not the KDF), kept in
/// `target/tmp/node-bench-keys-N/` between runs. Returns (keystores, passwords).
pub(crate) fn keystores(n: usize) -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("node-bench-keys-{n}"));
    let (ks, pw) = (root.join("keystores"), root.join("passwords"));
    let marker = root.join("complete");
    if marker.exists() {
        return (ks, pw);
    }
    let started = Instant::now();
    for d in [&ks, &pw] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).expect("mkdir");
    }
    (0..n).into_par_iter().for_each(|i| {
        let sk = interop_secret_key(i as u64);
        let k = Keystore::encrypt(
            &sk,
            &Password::new(PASSWORD.into()),
            KdfParams::insecure_fast(),
            "",
            "",
        )
        .expect("encrypt");
        std::fs::write(ks.join(format!("k{i:06}.json")), k.to_json()).expect("write");
        std::fs::write(pw.join(format!("k{i:06}.txt")), PASSWORD).expect("write");
    });
    std::fs::write(&marker, n.to_string()).expect("marker");
    println!(
        "generated {n} keystores in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        root.display()
    );
    (ks, pw)
}

/// A CA, the node's server certificate and a client certificate.
pub(crate) fn pki(dir: &Path) -> DevPki {
    DevPki::generate(&dir.join("tls"), &["node"], &["client"]).expect("dev PKI")
}

/// A keep-alive client of the node presenting the PKI's client certificate (mutual TLS);
/// HTTP/1.1 only, or HTTP/2 on one connection with `http2`.
pub(crate) fn client(pki: &DevPki, pool: usize, http2: bool) -> reqwest::Client {
    let id = &pki.clients[0];
    dvsigner::cli::bench::http_client(Some(&pki.ca_cert), Some((&id.cert, &id.key)), pool, http2)
        .expect("client")
}

/// A running `dvsigner signer` process, killed when dropped.
pub(crate) struct Node {
    child: Child,
    /// `https://127.0.0.1:PORT`.
    pub(crate) url: String,
    log: PathBuf,
}

/// How a [`Node`] is started.
pub(crate) struct NodeOptions<'a> {
    /// Working directory (data dir, log).
    pub(crate) dir: &'a Path,
    /// Certificates.
    pub(crate) pki: &'a DevPki,
    /// Keystores and passwords directories.
    pub(crate) keys: (&'a Path, &'a Path),
    /// `--key-cache` with a password file in `dir`.
    pub(crate) key_cache: bool,
}

impl Node {
    /// Starts the signer on a free loopback port (mutual TLS, SQLite slashing database in its
    /// data directory) and returns as soon as the process runs.
    pub(crate) fn spawn(o: &NodeOptions<'_>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let id = o.pki.identity("node").expect("node identity");
        let data = o.dir.join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let log = o.dir.join("signer.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dvsigner"));
        cmd.env("DVSIGNER_LOG", "info")
            .arg("signer")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data)
            .arg("--keystores")
            .arg(o.keys.0)
            .arg("--keystores-passwords")
            .arg(o.keys.1)
            .arg("--tls-cert")
            .arg(&id.cert)
            .arg("--tls-key")
            .arg(&id.key)
            .arg("--tls-client-ca")
            .arg(&o.pki.ca_cert);
        if o.key_cache {
            let pw = o.dir.join("key-cache-password");
            std::fs::write(&pw, "bench key cache password").expect("write");
            cmd.arg("--key-cache")
                .arg("--key-cache-password-file")
                .arg(pw);
        }
        let log_file = std::fs::File::create(&log).expect("log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn dvsigner signer");
        Self {
            child,
            url: format!("https://127.0.0.1:{port}"),
            log,
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `publicKeys` (bounded by `bound`) until it lists `n` keys; returns the time from
    /// `since` to that moment.
    pub(crate) async fn wait_keys(
        &mut self,
        client: &reqwest::Client,
        n: usize,
        since: Instant,
        bound: Duration,
    ) -> Duration {
        while since.elapsed() < bound {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("signer exited ({status}):\n{}", self.log_text());
            }
            if let Ok(r) = client
                .get(format!("{}/api/v1/eth2/publicKeys", self.url))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if let Ok(keys) = r.json::<Vec<String>>().await {
                    if keys.len() == n {
                        return since.elapsed();
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "signer did not list {n} keys within {bound:?}:\n{}",
            self.log_text()
        );
    }

    /// The process's log so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident and peak resident memory (VmRSS, VmHWM) in bytes, from /proc/PID/status.
    pub(crate) fn memory(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (kib("VmRSS:"), kib("VmHWM:"))
    }

    /// SIGTERM, then waits (bounded) for a clean exit; SIGKILL if it does not come.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The median of `v` (zero when empty).
pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A byte count in MiB.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
