//! HTTP/2 on a real `dvsigner signer` process over mutual TLS: a client that offers `h2` in
//! ALPN gets HTTP/2 and can put a whole burst of sign requests on its one connection (every
//! answer a valid signature); a client offering only `http/1.1` keeps HTTP/1.1; `--http2 off`
//! answers HTTP/1.1 to everyone; the Host allow-list applies to HTTP/2's `:authority`.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::http::public_keys_with;
use common::process::{dev_keystores, free_port, wait_ready, Proc};
use dvsigner::bls::{PublicKey, Signature};
use dvsigner::signing::Network;
use dvsigner::tls::DevPki;
use reqwest::Version;

/// A client trusting the PKI's CA and presenting `node-client`; HTTP/1.1 only when `h1_only`
/// (else ALPN offers `h2` and `http/1.1`); `localhost` and `node-a` resolve to `port`.
fn client(pki: &DevPki, h1_only: bool, port: u16) -> reqwest::Client {
    let id = pki.identity("node-client").expect("client identity");
    let mut pem = std::fs::read(&id.cert).expect("client cert");
    pem.extend(std::fs::read(&id.key).expect("client key"));
    let ca = std::fs::read(&pki.ca_cert).expect("CA");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .resolve("node-a", addr)
        .timeout(Duration::from_secs(30));
    if h1_only {
        b = b.http1_only();
    }
    b.build().expect("client")
}

/// A node on 127.0.0.1:`port` with the dev keystores, TLS as `node-a`, clients chaining to the
/// PKI's CA required, and `extra` options.
fn start_node(pki: &DevPki, port: u16, dir: &Path, extra: &[&str]) -> Proc {
    let (ks, pw) = dev_keystores();
    let id = pki.identity("node-a").expect("node identity");
    let mut args: Vec<String> = [
        "signer",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &dir.join("data").display().to_string(),
        "--keystores",
        &ks.display().to_string(),
        "--keystores-passwords",
        &pw.display().to_string(),
        "--tls-cert",
        &id.cert.display().to_string(),
        "--tls-key",
        &id.key.display().to_string(),
        "--tls-client-ca",
        &pki.ca_cert.display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Proc::start("node-a", &args, &dir.join("node.log"))
}

/// A node started (see [`start_node`]) in a temporary directory, and what its tests use.
struct Fixture {
    _dir: tempfile::TempDir,
    pki: DevPki,
    port: u16,
    /// `https://localhost:PORT`.
    base: String,
    node: Proc,
}

/// A new PKI and a node started with `extra` options, ready (`/upcheck` answered over
/// HTTP/1.1).
async fn fixture(extra: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki =
        DevPki::generate(&dir.path().join("pki"), &["node-a"], &["node-client"]).expect("pki");
    let port = free_port();
    let mut node = start_node(&pki, port, dir.path(), extra);
    let base = format!("https://localhost:{port}");
    let url = format!("{base}/upcheck");
    wait_ready(
        &client(&pki, true, port),
        &url,
        &mut node,
        Duration::from_secs(30),
    )
    .await;
    Fixture {
        _dir: dir,
        pki,
        port,
        base,
        node,
    }
}

/// Signs one attestation per key at target `target`, all at once, and checks every answer:
/// 200, HTTP version `version`, a signature over the root computed here under that key.
async fn burst(
    client: &reqwest::Client,
    base: &str,
    keys: &[String],
    target: u64,
    version: Version,
) {
    let network = Network::from_name_or_path("mainnet").expect("mainnet");
    let body = common::requests::attestation_body(target);
    let root = dvsigner::signing::prepare(body.as_bytes(), &network)
        .expect("prepare")
        .root;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, pk) in keys.iter().cycle().take(keys.len() * 40).enumerate() {
        let client = client.clone();
        let url = format!("{base}/api/v1/eth2/sign/{pk}");
        // Forty requests per key: the first of each is new, the rest repeat it (Web3Signer
        // signs a repeated identical attestation again).
        let body = body.clone();
        let pk = pk.clone();
        tasks.spawn(async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            let v = r.version();
            let status = r.status().as_u16();
            let text = r.text().await.expect("body");
            (pk, v, status, text)
        });
    }
    let mut n = 0;
    while let Some(joined) = tasks.join_next().await {
        let (pk, v, status, text) = joined.expect("task");
        assert_eq!(status, 200, "{text}");
        assert_eq!(v, version);
        let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let sig = Signature::from_hex(json["signature"].as_str().expect("signature")).expect("hex");
        let public = PublicKey::from_bytes(&dvsigner::bls::parse_hex::<48>(&pk).expect("hex"))
            .expect("public key");
        assert!(
            sig.verify(&public, &root.0),
            "signature of {pk} does not verify"
        );
        n += 1;
    }
    assert_eq!(n, keys.len() * 40);
}

#[tokio::test]
async fn http2_clients_get_http2_and_http1_clients_keep_http1() {
    let Fixture {
        _dir,
        pki,
        port,
        base,
        mut node,
    } = fixture(&[]).await;
    let h2 = client(&pki, false, port);
    let h1 = client(&pki, true, port);

    let up = h2
        .get(format!("{base}/upcheck"))
        .send()
        .await
        .expect("upcheck");
    assert_eq!((up.status().as_u16(), up.version()), (200, Version::HTTP_2));
    let keys = public_keys_with(&h2, &base).await;
    assert_eq!(keys.len(), 5, "{keys:?}");
    // 200 concurrent sign requests multiplexed on the HTTP/2 client's one connection.
    burst(&h2, &base, &keys, 900_001, Version::HTTP_2).await;
    // The same node still serves HTTP/1.1 to a client that offers only that.
    burst(&h1, &base, &keys, 900_002, Version::HTTP_11).await;

    // The Host allow-list (default `localhost,127.0.0.1`) reads HTTP/2's `:authority`.
    let refused = h2
        .get(format!("https://node-a:{port}/upcheck"))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.version(), Version::HTTP_2);
    assert_eq!(refused.status().as_u16(), 403);
    assert_eq!(
        refused.text().await.expect("body"),
        r#"{"message":"Host not authorized."}"#
    );
    node.terminate(Duration::from_secs(10));
}

#[tokio::test]
async fn http2_off_answers_http1_to_a_client_offering_h2() {
    let Fixture {
        _dir,
        pki,
        port,
        base,
        mut node,
    } = fixture(&["--http2", "off"]).await;
    let h2 = client(&pki, false, port);
    let keys = public_keys_with(&h2, &base).await;
    burst(&h2, &base, &keys, 900_001, Version::HTTP_11).await;
    node.terminate(Duration::from_secs(10));
}

/// A node stops promptly (SIGTERM) while an HTTP/2 client holds an idle connection and no
/// longer answers anything (as one behind a partition): the client never acknowledges the
/// GOAWAY, and the node closes that connection once no stream is in flight instead of waiting
/// for the whole drain timeout (10 s).
#[tokio::test]
async fn a_node_stops_promptly_while_a_silent_http2_client_holds_a_connection() {
    use std::sync::Arc;
    use std::time::Instant;

    let Fixture {
        _dir,
        pki,
        port,
        base,
        mut node,
    } = fixture(&[]).await;

    let id = pki.identity("node-client").expect("client identity");
    let mut tls = dvsigner::tls::client_config(dvsigner::tls::ClientTlsOptions {
        ca: Some(pki.ca_cert.clone()),
        pinned: Vec::new(),
        identity: Some((id.cert.clone(), id.key.clone())),
    })
    .expect("client TLS");
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .expect("TLS");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    // Drive the connection only until one request is answered, then keep it open unpolled:
    // from then on the client answers neither the GOAWAY nor pings.
    let mut conn = Box::pin(conn);
    let request = hyper::Request::builder()
        .uri(format!("{base}/upcheck"))
        .body(String::new())
        .expect("request");
    let status = tokio::select! {
        r = sender.send_request(request) => r.expect("answer").status(),
        r = &mut conn => panic!("connection ended first: {r:?}"),
    };
    assert_eq!(status, 200);

    let asked = Instant::now();
    let exit = node.terminate(Duration::from_secs(15));
    let took = asked.elapsed();
    assert!(
        exit.is_some_and(|s| s.success()),
        "node did not stop cleanly: {exit:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the node took {took:?} to stop while a silent HTTP/2 client held a connection"
    );
    drop(conn);
}
