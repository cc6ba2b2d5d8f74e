//! PostgreSQL over TLS against real PostgreSQL 15 servers started here (whatever
//! `DVSIGNER_TEST_PG_URL` says: these need their own server configuration): `ssl = on` with a
//! certificate from a CA generated here, pg_hba `hostssl` only (SCRAM for `postgres`, `cert` for
//! `certuser`), and for the no-TLS case a server with `ssl = off` and the clear-text `password`
//! method behind a recording TCP proxy. Also: database error messages say each part once.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::pg::{PgServer, ServerOptions};
use common::process::{command, free_port, signer_args, wait_ready, Proc};
use dvsigner::bls::{PublicKeyBytes, SigningRoot};
use dvsigner::slashing::{SlashableMessage, SlashingDb, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "pg-tls-test-secret";
const GVR: [u8; 32] = [7; 32];

/// The TLS server and the files the clients use.
struct Fixture {
    server: PgServer,
    /// CA of the server and client certificates.
    ca: PathBuf,
    /// A CA that signed neither, with another name.
    other_ca: PathBuf,
    /// A CA that signed neither, with the same name as `ca` (another key).
    same_name_ca: PathBuf,
    /// `certuser`'s certificate and key (from `ca`).
    client: (PathBuf, PathBuf),
}

/// Started once per test process; its watcher stops it when the process exits.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let staging = std::env::temp_dir().join(format!("dvsigner-pgtls-{}", std::process::id()));
        let pki =
            dvsigner::tls::DevPki::generate(&staging.join("a"), &["db.example"], &["certuser"])
                .unwrap();
        dvsigner::tls::DevPki::generate(&staging.join("b"), &["db.example"], &[]).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "another CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let other = params
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        std::fs::write(staging.join("other-ca.pem"), other.pem()).unwrap();
        let server_id = pki.identity("db.example").unwrap();
        let server = PgServer::start(&ServerOptions {
            tls: Some((server_id.cert.clone(), server_id.key.clone())),
            client_ca: Some(pki.ca_cert.clone()),
            hba: vec![
                "hostssl all certuser 127.0.0.1/32 cert".into(),
                "hostssl all all 127.0.0.1/32 scram-sha-256".into(),
            ],
            password: Some(PASSWORD.into()),
            roles: vec!["certuser".into()],
        });
        // The files live (and are removed) with the server's directory.
        let dir = server.dir.join("pki");
        std::fs::rename(&staging, &dir).unwrap();
        server.adopt(&dir);
        Fixture {
            ca: dir.join("a/ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            same_name_ca: dir.join("b/ca.pem"),
            client: (dir.join("a/certuser.pem"), dir.join("a/certuser-key.pem")),
            server,
        }
    })
}

/// A new database on `server` owned by `owner`.
fn fresh_db(server: &PgServer, owner: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "dvs_tls_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    server.create_db(&name, owner);
    name
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DB?PARAMS`.
fn url(port: u16, db: &str, params: &str) -> String {
    format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/{db}?{params}")
}

/// How many connections to `db` use TLS, and how many do not.
fn tls_connections(server: &PgServer, db: &str) -> (i64, i64) {
    let q = |ssl: bool| {
        server.count(
            &format!(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
                 WHERE a.datname = $1 AND s.ssl = {ssl}"
            ),
            db,
        )
    };
    (q(true), q(false))
}

fn pubkey(n: u8) -> PublicKeyBytes {
    let mut b = [n; 48];
    b[..4].copy_from_slice(&std::process::id().to_be_bytes());
    PublicKeyBytes(b)
}

async fn sign_block(db: &SlashingDb, pk: PublicKeyBytes, slot: u64, root: u8) -> Verdict {
    db.check_and_record(
        pk,
        GVR,
        SlashableMessage::Block { slot },
        SigningRoot([root; 32]),
    )
    .await
    .unwrap()
}

/// The message of a failed open, as the binary prints it (`{:#}`: every cause in the chain).
async fn open_error(url: &str) -> String {
    match SlashingDb::open(url).await {
        Ok(_) => panic!("{url}: opened"),
        Err(e) => format!("{:#}", anyhow::Error::from(e)),
    }
}

/// Opens `url` and records one block, which must be allowed.
async fn open_and_record(url: &str) -> SlashingDb {
    let db = SlashingDb::open(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(sign_block(&db, pubkey(1), 5, 1).await, Verdict::Allowed);
    db
}

fn block_v2(slot: u64, body_root_byte: &str) -> String {
    format!(
        concat!(
            r#"{{"type":"BLOCK_V2","fork_info":{{"fork":{{"previous_version":"0x04000000","#,
            r#""current_version":"0x05000000","epoch":"364032"}},"genesis_validators_root":"#,
            r#""0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"}},"#,
            r#""beacon_block":{{"version":"ELECTRA","block_header":{{"slot":"{slot}","#,
            r#""proposer_index":"7","parent_root":"0x{z}","state_root":"0x{z}","body_root":"0x{b}"}}}}}}"#
        ),
        slot = slot,
        z = "00".repeat(32),
        b = body_root_byte.repeat(32)
    )
}

/// `dvsigner signer --slashing-db postgres://…?sslmode=verify-full&sslrootcert=…` signs a
/// block, refuses a conflicting one (the record is in the database), and every connection it
/// holds to its database is TLS. `--check-config` shows the mode in effect and no password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_process_signs_and_records_over_verify_full_tls() {
    let f = fixture();
    let db = fresh_db(&f.server, "postgres");
    let url = url(
        f.server.port,
        &db,
        &format!("sslmode=verify-full&sslrootcert={}", p(&f.ca)),
    );

    let dir = tempfile::tempdir().unwrap();
    let check = command()
        .args([
            "signer",
            "--check-config",
            "--insecure-http",
            "--data-dir",
            &p(dir.path()),
            "--slashing-db",
            &url,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("# slashing-db sslmode in effect: verify-full"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sslmode=verify-full&sslrootcert="),
        "{stdout}"
    );
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    let port = free_port();
    let mut node = Proc::start(
        "signer",
        &signer_args(port, dir.path(), Some(&url)),
        &dir.path().join("node.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(
        &client,
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(60),
    )
    .await;
    let key = dvsigner::keys::interop::interop_secret_key(2)
        .public_key()
        .bytes()
        .to_hex();
    let sign = |body: String| {
        let (client, url) = (client.clone(), format!("{base}/api/v1/eth2/sign/{key}"));
        async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(sign(block_v2(4242, "01")).await, 200, "{}", node.log_text());
    assert_eq!(sign(block_v2(4242, "02")).await, 412, "{}", node.log_text());
    assert_eq!(sign(block_v2(4242, "01")).await, 200, "identical re-sign");

    let (tls, plain) = tls_connections(&f.server, &db);
    assert!(tls >= 1 && plain == 0, "tls {tls}, plain {plain}");
    let log = node.log_text();
    assert!(log.contains("sslmode=verify-full"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
}

/// verify-ca checks the chain only: a certificate that does not name the host is accepted;
/// verify-full refuses the same server, naming the host-name mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_accepts_a_certificate_for_another_host_name() {
    let f = fixture();
    let db = fresh_db(&f.server, "postgres");
    // The certificate names db.example, localhost and 127.0.0.1; other.example is dialled at
    // 127.0.0.1 through hostaddr.
    let url = format!(
        "postgres://postgres:{PASSWORD}@other.example:{}/{db}?hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={}",
        f.server.port,
        p(&f.ca)
    );
    let sdb = open_and_record(&url).await;
    let (tls, plain) = tls_connections(&f.server, &db);
    assert!(tls >= 1 && plain == 0, "tls {tls}, plain {plain}");
    drop(sdb);
}

/// verify-full refuses a certificate that does not name the host, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_host_name_mismatch() {
    let f = fixture();
    let db = fresh_db(&f.server, "postgres");
    let url = format!(
        "postgres://postgres:{PASSWORD}@other.example:{}/{db}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
        f.server.port,
        p(&f.ca)
    );
    let e = open_error(&url).await;
    assert!(
        e.contains("(sslmode=verify-full)")
            && e.contains("server certificate verification failed")
            && e.contains("certificate not valid for name \"other.example\""),
        "{e}"
    );
    assert!(!e.contains(PASSWORD), "{e}");
    // The same server under its own name passes.
    drop(open_and_record(&format!(
        "postgres://postgres:{PASSWORD}@db.example:{}/{db}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
        f.server.port,
        p(&f.ca)
    ))
    .await);
}

/// require encrypts without verifying (the client has no CA here and the server's CA is not a
/// public one); prefer uses the TLS the server offers; require with sslrootcert verifies the
/// chain (libpq's rule) and refuses another CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encrypts_and_verifies_only_with_a_root_certificate() {
    let f = fixture();
    let db = fresh_db(&f.server, "postgres");
    let sdb = open_and_record(&url(f.server.port, &db, "sslmode=require")).await;
    let (tls, plain) = tls_connections(&f.server, &db);
    assert!(tls >= 1 && plain == 0, "tls {tls}, plain {plain}");
    drop(sdb);

    // prefer takes the TLS the server offers (this server has hostssl rules only).
    let db2 = fresh_db(&f.server, "postgres");
    let sdb = open_and_record(&url(f.server.port, &db2, "sslmode=prefer")).await;
    let (tls, plain) = tls_connections(&f.server, &db2);
    assert!(tls >= 1 && plain == 0, "tls {tls}, plain {plain}");
    drop(sdb);

    let e = open_error(&url(
        f.server.port,
        &db,
        &format!("sslmode=require&sslrootcert={}", p(&f.other_ca)),
    ))
    .await;
    assert!(
        e.contains("(sslmode=verify-ca)") && e.contains("not issued by a trusted CA"),
        "{e}"
    );
}

/// A server certificate from another CA is refused with a message about certificate
/// verification (not a generic "db error"), each part once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_from_another_ca_is_refused_clearly() {
    let f = fixture();
    let db = fresh_db(&f.server, "postgres");
    let other = "it is not issued by a trusted CA (sslrootcert, or the Mozilla roots when none \
                 is given)";
    let same_name = "its signature does not verify with the trusted CA of that name \
                     (sslrootcert): it was issued by another CA or altered";
    for (ca, why) in [(&f.other_ca, other), (&f.same_name_ca, same_name)] {
        for mode in ["verify-full", "verify-ca"] {
            let e = open_error(&url(
                f.server.port,
                &db,
                &format!("sslmode={mode}&sslrootcert={}", p(ca)),
            ))
            .await;
            let expected = format!(
                "cannot connect to PostgreSQL at 127.0.0.1:{} (sslmode={mode}): error performing \
                 TLS handshake: server certificate verification failed: {why}",
                f.server.port
            );
            assert_eq!(e, expected);
        }
    }
}

/// A role whose pg_hba line is `cert`: with sslcert/sslkey it connects (and records), without
/// them the server's refusal is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_required_given_and_missing() {
    let f = fixture();
    let db = fresh_db(&f.server, "certuser");
    let base = format!("postgres://certuser@127.0.0.1:{}/{db}", f.server.port);
    let verify = format!("sslmode=verify-full&sslrootcert={}", p(&f.ca));
    let sdb = open_and_record(&format!(
        "{base}?{verify}&sslcert={}&sslkey={}",
        p(&f.client.0),
        p(&f.client.1)
    ))
    .await;
    drop(sdb);

    let e = open_error(&format!("{base}?{verify}")).await;
    assert!(
        e.contains("(sslmode=verify-full): FATAL: connection requires a valid client certificate"),
        "{e}"
    );
    assert!(!e.contains("db error"), "{e}");
}

/// Records every byte the client sends to `upstream`, for one connection at a time.
async fn recording_proxy(upstream: u16) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut ri, mut wi) = inbound.split();
                let (mut ro, mut wo) = outbound.split();
                let up = async {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = ri.read(&mut buf).await {
                        if n == 0 || wo.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = wo.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut ro, &mut wi).await;
                    let _ = wi.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (port, seen)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// With require or verify-full, a server that does not offer TLS ends the attempt before the
/// startup message: the only bytes sent are the 8-byte TLS request. (Control: the same server
/// under sslmode=disable receives the password in clear, so the recording would show it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_but_not_offered_fails_before_any_password_is_sent() {
    let server = PgServer::start(&ServerOptions {
        hba: vec!["host all all 127.0.0.1/32 password".into()],
        password: Some(PASSWORD.into()),
        ..ServerOptions::default()
    });
    let db = fresh_db(&server, "postgres");
    let ssl_request: &[u8] = &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let ca = fixture().ca.clone();
    for params in [
        "sslmode=require".to_owned(),
        format!("sslmode=verify-full&sslrootcert={}", p(&ca)),
        format!("sslmode=verify-ca&sslrootcert={}", p(&ca)),
    ] {
        let (port, seen) = recording_proxy(server.port).await;
        let e = open_error(&url(port, &db, &params)).await;
        assert!(
            e.contains("error performing TLS handshake: server does not support TLS"),
            "{params}: {e}"
        );
        let sent = seen.lock().unwrap().clone();
        assert_eq!(sent, ssl_request, "{params}: sent {sent:?}");
    }

    let (port, seen) = recording_proxy(server.port).await;
    drop(open_and_record(&url(port, &db, "sslmode=disable")).await);
    let sent = seen.lock().unwrap().clone();
    assert!(
        contains(&sent, PASSWORD.as_bytes()),
        "the recording shows a clear-text password when one is sent"
    );
}

/// A TLS connection closed under the node is replaced by a new TLS connection before the next
/// operation; the history is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_over_tls_after_the_connection_is_closed() {
    let f = fixture();
    let db = fresh_db(&f.server, "postgres");
    let sdb = open_and_record(&url(
        f.server.port,
        &db,
        &format!("sslmode=verify-full&sslrootcert={}", p(&f.ca)),
    ))
    .await;
    assert!(f.server.terminate_connections(&db) >= 1);
    let mut verdict = None;
    let mut failures = 0;
    for _ in 0..20 {
        match sdb
            .check_and_record(
                pubkey(1),
                GVR,
                SlashableMessage::Block { slot: 6 },
                SigningRoot([2; 32]),
            )
            .await
        {
            Ok(v) => {
                verdict = Some(v);
                break;
            }
            Err(_) => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(verdict, Some(Verdict::Allowed), "signing resumed");
    assert!(failures <= 1, "{failures} operations failed after the loss");
    assert!(matches!(
        sign_block(&sdb, pubkey(1), 5, 9).await,
        Verdict::Refused(_)
    ));
    let (tls, plain) = tls_connections(&f.server, &db);
    assert!(tls >= 1 && plain == 0, "tls {tls}, plain {plain}");
}

/// The binary's messages for a bad connection string and for a server refusal name each part
/// once and carry the server's own words.
#[test]
fn database_errors_name_each_part_once() {
    let f = fixture();
    let db = fresh_db(&f.server, "postgres");
    let dir = tempfile::tempdir().unwrap();
    let run = |url: &str| {
        let args = signer_args(free_port(), dir.path(), Some(url));
        let out = command().args(&args).output().unwrap();
        assert!(!out.status.success(), "{url}: started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let bad = run(&url(f.server.port, &db, "bogus=1"));
    assert!(bad.contains("unknown option `bogus`"), "{bad}");
    assert_eq!(bad.matches("invalid connection string").count(), 1, "{bad}");

    let wrong = run(&format!(
        "postgres://postgres:wrong@127.0.0.1:{}/{db}?sslmode=verify-full&sslrootcert={}",
        f.server.port,
        p(&f.ca)
    ));
    let expected = format!(
        "error: opening slashing-protection database: cannot connect to PostgreSQL at \
         127.0.0.1:{} (sslmode=verify-full): FATAL: password authentication failed for user \
         \"postgres\" (SQLSTATE 28P01)",
        f.server.port
    );
    assert!(wrong.lines().any(|l| l == expected), "{wrong}");
    assert!(!wrong.contains("db error"), "{wrong}");
}
