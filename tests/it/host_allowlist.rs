//! `--http-host-allowlist` (Web3Signer's option and default `localhost,127.0.0.1`) on real
//! `dvsigner signer` and `dvsigner combiner` processes: a listed host is served, any other gets
//! 403 `{"message":"Host not authorized."}` on every route (peer, Keymanager and unknown routes
//! included), `*` serves any host, a request without a Host header gets 400. Requests are
//! written by hand over TCP so the Host header is exactly what the test says.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::split_interop;
use common::process::{free_port, run_ok, signer_args, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REFUSED_BODY: &str = r#"{"message":"Host not authorized."}"#;

/// A response as read off the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Sends `METHOD PATH HTTP/1.1` to 127.0.0.1:`port` with the given Host header (none when
/// `None`) and `Connection: close`, and reads the whole response.
async fn raw(port: u16, method: &str, path: &str, host: Option<&str>) -> std::io::Result<Raw> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if let Some(h) = host {
        req.push_str(&format!("Host: {h}\r\n"));
    }
    if method == "POST" {
        req.push_str("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("response timed out"))??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Raw {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    })
}

async fn get(port: u16, path: &str, host: Option<&str>) -> Raw {
    raw(port, "GET", path, host).await.expect("request")
}

/// Waits (bounded) until `/upcheck` answers 200 for `host`.
async fn wait_up(port: u16, host: &str, p: &mut Proc) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("{} exited ({status}):\n{}", p.name, p.log_text());
        }
        if let Ok(r) = raw(port, "GET", "/upcheck", Some(host)).await {
            if r.status == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} not up:\n{}", p.name, p.log_text());
}

fn assert_refused(r: &Raw, what: &str) {
    assert_eq!(r.status, 403, "{what}: {r:?}");
    assert_eq!(r.body, REFUSED_BODY, "{what}");
    assert!(
        r.head
            .contains("content-type: application/json; charset=utf-8"),
        "{what}: {r:?}"
    );
}

fn start_signer(dir: &Path, name: &str, allowlist: Option<&str>) -> (Proc, u16) {
    let port = free_port();
    let mut args = signer_args(port, &dir.join(name), None);
    args.push("--keymanager-api".into());
    if let Some(list) = allowlist {
        args.push(format!("--http-host-allowlist={list}"));
    }
    let p = Proc::start(name, &args, &dir.join(format!("{name}.log")));
    (p, port)
}

/// A cluster definition (2-of-3, nodes that are never started) for a combiner, its nodes at
/// 127.0.0.1.
fn cluster_json(dir: &Path) -> std::path::PathBuf {
    let operators: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                format!("n{i}"),
                format!("https://127.0.0.1:{}", free_port()),
            )
        })
        .collect();
    split_cluster(dir, &operators)
}

/// `dvsigner split` of interop key 0 into 2-of-3 for `operators` (name, URL); returns
/// cluster.json (the operators' share folders are next to it).
fn split_cluster<N: AsRef<str>>(dir: &Path, operators: &[(N, String)]) -> std::path::PathBuf {
    let out = dir.join("split");
    split_interop(dir, 0..1, 2, operators, &out);
    out.join("cluster.json")
}

fn start_combiner(dir: &Path, cluster: &Path, name: &str, allowlist: Option<&str>) -> (Proc, u16) {
    let port = free_port();
    let pki = dvsigner::tls::DevPki::generate(&dir.join(format!("{name}-tls")), &["node"], &[])
        .expect("pki");
    let mut args: Vec<String> = vec![
        "combiner".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--insecure-http".into(),
        "--cluster".into(),
        cluster.display().to_string(),
        "--node-ca".into(),
        pki.ca_cert.display().to_string(),
    ];
    if let Some(list) = allowlist {
        args.push("--http-host-allowlist".into());
        args.push(list.into());
    }
    let p = Proc::start(name, &args, &dir.join(format!("{name}.log")));
    (p, port)
}

/// Every route of a signer node, plus an unknown one.
const SIGNER_ROUTES: [(&str, &str); 10] = [
    ("GET", "/upcheck"),
    ("GET", "/healthcheck"),
    ("GET", "/api/v1/eth2/publicKeys"),
    ("GET", "/api/v1/eth2/highWatermark"),
    ("POST", "/api/v1/eth2/sign/0xa99a76ed7796f7be22d5b7e85deeb7c5677e88e511e0b337618f8c4eb61349b4bf2d153f649f7b53359fe8b94a38e44c"),
    ("GET", "/reload"),
    ("GET", "/eth/v1/keystores"),
    ("GET", "/api/v1/cluster/history"),
    ("POST", "/api/v1/cluster/notify"),
    ("GET", "/no/such/route"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_default_allowlist_is_localhost_and_127_0_0_1() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut p, port) = start_signer(dir.path(), "signer", None);
    wait_up(port, &format!("127.0.0.1:{port}"), &mut p).await;

    for host in [
        format!("127.0.0.1:{port}"),
        "localhost".into(),
        "LocalHost:1".into(),
    ] {
        let r = get(port, "/upcheck", Some(&host)).await;
        assert_eq!((r.status, r.body.as_str()), (200, "OK"), "{host}");
    }
    let keys = get(port, "/api/v1/eth2/publicKeys", Some("localhost")).await;
    assert_eq!(keys.status, 200);
    assert!(keys.body.contains("0xa99a76ed"), "{keys:?}");

    for host in [
        format!("evil.example:{port}"),
        "127.0.0.2".into(),
        format!("[::1]:{port}"),
        "localhost.evil.example".into(),
    ] {
        for (method, path) in SIGNER_ROUTES {
            let r = raw(port, method, path, Some(&host)).await.expect("request");
            assert_refused(&r, &format!("{method} {path} Host {host}"));
        }
    }
    for (method, path) in SIGNER_ROUTES {
        let r = raw(port, method, path, None).await.expect("request");
        assert_eq!(r.status, 400, "{method} {path} without Host: {r:?}");
    }
    // HTTP/1.0 may omit Host; the answer is the same.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"GET /upcheck HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    assert!(
        String::from_utf8_lossy(&buf).starts_with("HTTP/1.0 400"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    // The node keeps serving allowed hosts afterwards.
    assert_eq!(get(port, "/upcheck", Some("127.0.0.1")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_custom_allowlist_replaces_the_default_and_star_allows_any() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut listed, port) = start_signer(dir.path(), "listed", Some("Node-A.example,::1"));
    let (mut star, star_port) = start_signer(dir.path(), "star", Some("*"));
    wait_up(port, "node-a.example:9000", &mut listed).await;
    wait_up(star_port, "anything.example", &mut star).await;

    for host in [
        "node-a.example:9000",
        "NODE-A.EXAMPLE",
        "[::1]:9000",
        "[::1]",
    ] {
        let r = get(port, "/healthcheck", Some(host)).await;
        assert_eq!(r.status, 200, "{host}: {r:?}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        "localhost".into(),
        "node-b.example".into(),
    ] {
        assert_refused(
            &get(port, "/upcheck", Some(&host)).await,
            &format!("listed, Host {host}"),
        );
    }

    for host in ["anything.example", "127.0.0.1", "[::1]:1", "10.1.2.3:9000"] {
        let r = get(star_port, "/upcheck", Some(host)).await;
        assert_eq!((r.status, r.body.as_str()), (200, "OK"), "*: {host}");
    }
    let keys = get(star_port, "/api/v1/eth2/publicKeys", Some("x.example")).await;
    assert_eq!(keys.status, 200);
    assert_eq!(get(star_port, "/upcheck", None).await.status, 400);
}

/// Combiners and peers reach a cluster node at its URL in cluster.json: the node answers for
/// that host without listing it, besides `--http-host-allowlist`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node_answers_for_its_own_url_host() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let cluster = split_cluster(
        dir.path(),
        &[
            ("n0", format!("https://Node-0.example:{port}")),
            ("n1", "https://node-1.example:9000".into()),
            ("n2", "https://node-2.example:9000".into()),
        ],
    );
    let share = cluster.parent().expect("split dir").join("n0");
    let pki =
        dvsigner::tls::DevPki::generate(&dir.path().join("tls"), &["node"], &[]).expect("pki");
    let args: Vec<String> = vec![
        "signer".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--insecure-http".into(),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--keystores".into(),
        share.join("keystores").display().to_string(),
        "--keystores-passwords".into(),
        share.join("passwords").display().to_string(),
        "--cluster".into(),
        cluster.display().to_string(),
        "--operator".into(),
        "n0".into(),
        "--peer-ca".into(),
        pki.ca_cert.display().to_string(),
    ];
    let mut p = Proc::start("n0", &args, &dir.path().join("n0.log"));
    wait_up(port, &format!("node-0.example:{port}"), &mut p).await;
    assert_eq!(get(port, "/upcheck", Some("127.0.0.1")).await.status, 200);
    assert_refused(
        &get(port, "/upcheck", Some("node-1.example:9000")).await,
        "a peer's name",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_refuses_an_invalid_allowlist_entry() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = common::process::command()
        .args(signer_args(free_port(), dir.path(), None))
        .arg("--http-host-allowlist=localhost,https://node-a:9000")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--http-host-allowlist") && err.contains("not a host name"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combiner_serves_only_listed_hosts() {
    let dir = tempfile::tempdir().expect("tmp");
    let cluster = cluster_json(dir.path());
    let (mut default, port) = start_combiner(dir.path(), &cluster, "default", None);
    let (mut listed, listed_port) =
        start_combiner(dir.path(), &cluster, "listed", Some("vc.example"));
    let (mut star, star_port) = start_combiner(dir.path(), &cluster, "star", Some("*"));
    wait_up(port, &format!("127.0.0.1:{port}"), &mut default).await;
    wait_up(listed_port, "vc.example", &mut listed).await;
    wait_up(star_port, "elsewhere.example", &mut star).await;

    let routes = [
        ("GET", "/upcheck"),
        ("GET", "/healthcheck"),
        ("GET", "/api/v1/eth2/publicKeys"),
        ("POST", "/api/v1/eth2/sign/0xa99a76ed7796f7be22d5b7e85deeb7c5677e88e511e0b337618f8c4eb61349b4bf2d153f649f7b53359fe8b94a38e44c"),
        ("GET", "/no/such/route"),
    ];
    // Default: localhost and 127.0.0.1 only.
    for host in [format!("127.0.0.1:{port}"), "localhost:1".into()] {
        let r = get(port, "/api/v1/eth2/publicKeys", Some(&host)).await;
        assert_eq!(r.status, 200, "{host}: {r:?}");
        assert!(r.body.contains("0xa99a76ed"), "{r:?}");
    }
    for (method, path) in routes {
        let r = raw(port, method, path, Some("vc.example"))
            .await
            .expect("request");
        assert_refused(&r, &format!("combiner {method} {path}"));
        let r = raw(port, method, path, None).await.expect("request");
        assert_eq!(r.status, 400, "combiner {method} {path} without Host");
    }
    // A list of its own replaces the default.
    assert_eq!(
        get(listed_port, "/upcheck", Some("VC.example:9100"))
            .await
            .status,
        200
    );
    assert_refused(
        &get(
            listed_port,
            "/upcheck",
            Some(&format!("127.0.0.1:{listed_port}")),
        )
        .await,
        "listed combiner, 127.0.0.1",
    );
    // `*`: any host, but one is needed.
    for host in ["elsewhere.example", "vc.example", "127.0.0.1"] {
        assert_eq!(
            get(star_port, "/upcheck", Some(host)).await.status,
            200,
            "{host}"
        );
    }
    assert_eq!(get(star_port, "/upcheck", None).await.status, 400);
}

#[test]
fn config_file_key_and_check_config_show_the_allowlist() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("signer.yaml");
    std::fs::write(
        &file,
        "data-dir: /d\ninsecure-http: true\nhttp-host-allowlist: [node-a.example, 127.0.0.1]\n",
    )
    .expect("write");
    let shown = run_ok(&[
        "signer".into(),
        "--config".into(),
        file.display().to_string(),
        "--check-config".into(),
    ]);
    assert!(
        shown.contains("http-host-allowlist: [node-a.example, 127.0.0.1]  # config file"),
        "{shown}"
    );
    let defaults = run_ok(&[
        "combiner".into(),
        "--insecure-http".into(),
        "--cluster".into(),
        "c.json".into(),
        "--check-config".into(),
    ]);
    assert!(
        defaults.contains("http-host-allowlist: [localhost, 127.0.0.1]  # default"),
        "{defaults}"
    );
    std::fs::write(
        &file,
        "data-dir: /d\ninsecure-http: true\nhttp-host-allowlist: \"node-a:9000\"\n",
    )
    .expect("write");
    let out = common::process::command()
        .args(["signer", "--config"])
        .arg(&file)
        .arg("--check-config")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("http-host-allowlist") && err.contains("node-a:9000"),
        "{err}"
    );
}
