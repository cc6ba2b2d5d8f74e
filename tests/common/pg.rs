//! PostgreSQL for tests: the server named by `DVSIGNER_TEST_PG_URL`, or else a private server
//! started once per test process (initdb + pg_ctl from `/usr/lib/postgresql/15/bin`, run as the
//! `postgres` user when we are root) on a free 127.0.0.1 port. A watcher process stops that
//! server when the test process exits. Nothing is skipped: if PostgreSQL cannot be started,
//! the tests that need it fail.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// URL of a server the tests may create databases on (its `postgres` database).
pub fn pg_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("DVSIGNER_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => start_private_server(),
    })
    .clone()
}

/// Creates a throwaway database with a unique name and returns its URL.
pub fn fresh_db() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "dvs_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    );
    let admin = pg_url();
    let create = format!("CREATE DATABASE {name}");
    // A private runtime on its own thread, so this works from sync and async tests alike.
    let admin2 = admin.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&admin2, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to test PostgreSQL: {e}"));
            let driver = tokio::spawn(conn);
            client
                .batch_execute(&create)
                .await
                .expect("create database");
            drop(client);
            let _ = driver.await;
        });
    })
    .join()
    .expect("create-database thread");
    with_database(&admin, &name)
}

/// Closes every server connection to database `name` (as a server restart or fail-over would,
/// from the client's side) and returns how many were closed.
pub async fn terminate_connections(name: &str) -> u64 {
    let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    let driver = tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .expect("terminate");
    drop(client);
    let _ = driver.await;
    rows.iter().filter(|r| r.get::<_, bool>(0)).count() as u64
}

/// The database name (the URL path) of `url`.
pub fn database_name(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    base.rsplit('/').next().unwrap_or_default().to_owned()
}

/// Replaces the database name (the URL path) of `url`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary (as `postgres` when we are root).
fn pg_command(root: bool, program: &str) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn start_private_server() -> String {
    let root = is_root();
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "dvsigner-pg-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("create pg dir");
    if root {
        let ok = Command::new("chown")
            .args(["postgres:postgres", dir.to_str().expect("utf-8 temp dir")])
            .status()
            .expect("run chown");
        assert!(ok.success(), "chown of {} failed", dir.display());
    }
    let data = dir.join("data");
    run(
        pg_command(root, &format!("{BIN}/initdb")).args([
            "-D",
            path(&data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]),
        "initdb",
    );
    let port = free_port();
    let opts = format!(
        "-p {port} -h 127.0.0.1 -k {} -c max_connections=200",
        path(&dir)
    );
    run(
        pg_command(root, &format!("{BIN}/pg_ctl")).args([
            "-D",
            path(&data),
            "-o",
            &opts,
            "-l",
            path(&dir.join("log")),
            "-w",
            "start",
        ]),
        "pg_ctl start",
    );
    // Stop the server once this test process is gone.
    let watcher = format!(
        "while [ -d /proc/{pid} ]; do sleep 1; done; {BIN}/pg_ctl -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        data = path(&data),
        dir = path(&dir),
    );
    // The watcher must outlive this process (it stops PostgreSQL after we exit): never waited.
    #[allow(clippy::zombie_processes)]
    let _ = pg_command(root, "/bin/sh")
        .args(["-c", &watcher])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn pg watcher");
    if let Ok(pid) = std::fs::read_to_string(data.join("postmaster.pid")) {
        eprintln!(
            "test PostgreSQL pid {} on port {port}",
            pid.lines().next().unwrap_or("?")
        );
    }
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
