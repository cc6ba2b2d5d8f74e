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

fn start_private_server() -> String {
    let server = PgServer::start(&ServerOptions::default());
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
    // Shared by every test of this process: stopped by its watcher once the process is gone.
    std::mem::forget(server);
    url
}

/// Settings of a private server beyond the defaults (no TLS, `trust` for everyone).
#[derive(Default)]
pub struct ServerOptions {
    /// `ssl = on` with this certificate chain and key (PEM files, copied into the data dir).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `ssl_ca_file`: the CA that client certificates must chain to (PEM, copied).
    pub client_ca: Option<PathBuf>,
    /// When not empty, pg_hba.conf is exactly `local all all trust` followed by these lines
    /// (e.g. `hostssl all all 127.0.0.1/32 scram-sha-256`).
    pub hba: Vec<String>,
    /// Password given to the `postgres` role.
    pub password: Option<String>,
    /// Further login roles to create (no password).
    pub roles: Vec<String>,
}

/// A private PostgreSQL 15 server on a free 127.0.0.1 port, in its own temp directory (owned by
/// `postgres` when we are root). Dropping it stops the server and removes the directory; a
/// watcher does the same if the test process dies first.
pub struct PgServer {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// Its directory (Unix socket, log, `data/`); files put here are removed with it.
    pub dir: PathBuf,
    data: PathBuf,
    root: bool,
}

impl PgServer {
    /// initdb, apply `opts`, start (waiting until it accepts connections), set passwords and
    /// roles.
    pub fn start(opts: &ServerOptions) -> Self {
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
            chown_postgres(&dir, false);
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
        let mut conf = String::new();
        if let Some((cert, key)) = &opts.tls {
            install(root, cert, &data.join("server.crt"));
            install(root, key, &data.join("server.key"));
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        if let Some(ca) = &opts.client_ca {
            install(root, ca, &data.join("client-ca.crt"));
            conf.push_str("ssl_ca_file = 'client-ca.crt'\n");
        }
        if !conf.is_empty() {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))
                .expect("open postgresql.conf");
            std::io::Write::write_all(&mut f, conf.as_bytes()).expect("write postgresql.conf");
        }
        if !opts.hba.is_empty() {
            let hba = format!("local all all trust\n{}\n", opts.hba.join("\n"));
            std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        }
        let port = super::port::free_port();
        let opts_line = format!(
            "-p {port} -h 127.0.0.1 -k {} -c max_connections=200",
            path(&dir)
        );
        // Stop the server once this test process is gone (a drop does it earlier).
        let watcher = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; {BIN}/pg_ctl -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            data = path(&data),
            dir = path(&dir),
        );
        run(
            pg_command(root, &format!("{BIN}/pg_ctl")).args([
                "-D",
                path(&data),
                "-o",
                &opts_line,
                "-l",
                path(&dir.join("log")),
                "-w",
                "start",
            ]),
            "pg_ctl start",
        );
        // The watcher must outlive this process (it stops PostgreSQL after we exit): never
        // waited.
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
        let server = Self {
            port,
            dir,
            data,
            root,
        };
        let mut setup = Vec::new();
        if let Some(pw) = &opts.password {
            setup.push(format!("ALTER ROLE postgres PASSWORD '{pw}'"));
        }
        for role in &opts.roles {
            setup.push(format!("CREATE ROLE {role} LOGIN"));
        }
        if !setup.is_empty() {
            server.sql(&setup.join(";"));
        }
        server
    }

    /// Connection string of the superuser over the Unix socket (`trust`, no TLS).
    pub fn admin_conn(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            path(&self.dir),
            self.port
        )
    }

    /// Runs `sql` as the superuser over the Unix socket.
    pub fn sql(&self, sql: &str) {
        let conn = self.admin_conn();
        let sql = sql.to_owned();
        on_private_runtime(async move {
            let (client, driver) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("admin connection: {e:?}"));
            let driver = tokio::spawn(driver);
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            drop(client);
            let _ = driver.await;
        });
    }

    /// Runs a query returning one `bigint` as the superuser over the Unix socket.
    pub fn count(&self, sql: &str, param: &str) -> i64 {
        let conn = self.admin_conn();
        let (sql, param) = (sql.to_owned(), param.to_owned());
        on_private_runtime(async move {
            let (client, driver) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("admin connection: {e:?}"));
            let driver = tokio::spawn(driver);
            let n: i64 = client
                .query_one(&sql, &[&param])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
                .get(0);
            drop(client);
            let _ = driver.await;
            n
        })
    }

    /// Closes every server connection to database `name`; returns how many were closed.
    pub fn terminate_connections(&self, name: &str) -> i64 {
        self.count(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    }

    /// Creates database `name` owned by `owner`.
    pub fn create_db(&self, name: &str, owner: &str) {
        self.sql(&format!("CREATE DATABASE {name} OWNER {owner}"));
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Makes files created under [`PgServer::dir`] removable by the watcher (which runs as
    /// `postgres`).
    pub fn adopt(&self, p: &Path) {
        if self.root {
            chown_postgres(p, true);
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = pg_command(self.root, &format!("{BIN}/pg_ctl"))
            .args(["-D", path(&self.data), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `f` to completion on a private current-thread runtime on its own thread, so it works
/// from sync and async tests alike.
fn on_private_runtime<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
    .join()
    .expect("private runtime thread")
}

fn chown_postgres(p: &Path, recursive: bool) {
    let mut cmd = Command::new("chown");
    if recursive {
        cmd.arg("-R");
    }
    let ok = cmd
        .args(["postgres:postgres", path(p)])
        .status()
        .expect("run chown");
    assert!(ok.success(), "chown of {} failed", p.display());
}

/// Copies `from` to `to` with mode 0600, owned by `postgres` when we are root (the server
/// refuses a key file others can read).
fn install(root: bool, from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    std::fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod 0600");
    if root {
        chown_postgres(to, false);
    }
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
