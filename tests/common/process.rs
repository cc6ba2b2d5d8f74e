//! Real `dvsigner` processes for end-to-end tests: free loopback ports, readiness polling,
//! kill by PID. Every child is killed when its handle drops, so a failing test leaves nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dvsigner"))
}

// Where the process harness's callers look for it; not every test binary uses it.
#[allow(unused_imports)]
pub use super::port::free_port;

/// The repository's public dev keystores (interop keys 0..=4).
pub fn dev_keystores() -> (PathBuf, PathBuf) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("keystores/dev");
    (base.clone(), base.join("passwords"))
}

/// `dvsigner` with a hermetic environment: no inherited `DVSIGNER_*` option variables and no
/// `VAULT_*` settings (so the environment of the test run cannot change what a test means),
/// log level `info`, no stdin.
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    hermetic(&mut cmd);
    cmd
}

/// The environment of [`command`] on any command that runs `dvsigner` (directly or through a
/// wrapper such as `ip netns exec`).
pub fn hermetic(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("DVSIGNER_") || name_text.starts_with("VAULT_") {
            cmd.env_remove(&name);
        }
    }
    // `DVSIGNER_TEST_LOG` (a `DVSIGNER_LOG` filter) raises the started processes' log level
    // when debugging a test.
    let level = std::env::var("DVSIGNER_TEST_LOG").unwrap_or_else(|_| "info".to_owned());
    cmd.env("DVSIGNER_LOG", level).stdin(Stdio::null());
}

/// Runs `dvsigner ARGS` to completion, asserts it succeeded, returns stdout then stderr.
pub fn run_ok(args: &[String]) -> String {
    let out = command().args(args).output().expect("run dvsigner");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dvsigner {args:?} failed:\n{text}");
    text
}

/// A plain HTTP client with a 10 s request timeout.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Waits (bounded by `bound`) until every process has exited by itself; returns each with
/// whether it succeeded. Panics with every log, naming `what`, when the bound passes.
pub fn wait_all(mut procs: Vec<Proc>, bound: Duration, what: &str) -> Vec<(Proc, bool)> {
    let start = Instant::now();
    let mut results = vec![None; procs.len()];
    while results.iter().any(Option::is_none) {
        assert!(
            start.elapsed() < bound,
            "{what} did not end: {}",
            procs
                .iter()
                .map(Proc::log_text)
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        for (p, r) in procs.iter_mut().zip(results.iter_mut()) {
            if r.is_none() {
                if let Ok(Some(s)) = p.child.try_wait() {
                    *r = Some(s.success());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    procs
        .into_iter()
        .zip(results)
        .map(|(p, r)| (p, r.unwrap_or(false)))
        .collect()
}

/// A running child process, killed (SIGKILL) on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `dvsigner ARGS` ([`command`]), logging stdout+stderr to `log`.
    pub fn start(name: &str, args: &[String], log: &Path) -> Self {
        Self::start_with_env(name, args, &[], log)
    }

    /// [`Proc::start`] with extra environment variables (tokens, `VAULT_CACERT`, option
    /// overrides).
    pub fn start_with_env(name: &str, args: &[String], env: &[(&str, &str)], log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("clone");
        let mut cmd = command();
        cmd.args(args).stdout(out).stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn dvsigner");
        Self {
            child,
            name: name.to_owned(),
            log: log.to_owned(),
        }
    }

    /// PID of the child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU time of the child so far (all its threads); zero when unreadable.
    pub fn cpu_time(&self) -> Duration {
        dvsigner::cli::bench::process_cpu(self.pid()).unwrap_or_default()
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM by PID, then wait up to `bound` for exit; returns the exit status if it exited.
    pub fn terminate(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < bound {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits (bounded) for the process to exit by itself; returns whether it succeeded, and
    /// its log. Panics with the log if it is still running after `bound`.
    pub fn wait_exit(&mut self, bound: Duration) -> (bool, String) {
        let start = Instant::now();
        while start.elapsed() < bound {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.success(), self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} still running after {bound:?}:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// Polls `url` until it answers 200 or `bound` passes (panicking with the process log).
pub async fn wait_ready(client: &reqwest::Client, url: &str, proc_: &mut Proc, bound: Duration) {
    let start = Instant::now();
    while start.elapsed() < bound {
        if let Ok(Some(status)) = proc_.child.try_wait() {
            panic!(
                "{} exited early ({status}):\n{}",
                proc_.name,
                proc_.log_text()
            );
        }
        if let Ok(r) = client
            .get(url)
            .timeout(Duration::from_millis(500))
            .send()
            .await
        {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} not ready after {bound:?}:\n{}",
        proc_.name,
        proc_.log_text()
    );
}

/// Arguments for a plain-HTTP signer on `port` with the dev keystores.
pub fn signer_args(port: u16, data_dir: &Path, slashing_db: Option<&str>) -> Vec<String> {
    let (ks, pw) = dev_keystores();
    let mut a: Vec<String> = vec![
        "signer".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--insecure-http".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--keystores".into(),
        ks.display().to_string(),
        "--keystores-passwords".into(),
        pw.display().to_string(),
    ];
    if let Some(db) = slashing_db {
        a.push("--slashing-db".into());
        a.push(db.into());
    }
    a
}
