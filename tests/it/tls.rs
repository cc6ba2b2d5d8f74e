//! Real TLS handshakes over 127.0.0.1 between configurations built by `dvsigner::tls`.

use std::path::PathBuf;
use std::sync::Arc;

use dvsigner::tls::{
    client_config, generate_self_signed, server_config, ClientTlsOptions, DevPki, Fingerprint,
    ServerTlsFiles,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Outcome of one connection as seen by each side.
#[derive(Debug)]
struct Outcome {
    /// The server completed the handshake (client authenticated, if required).
    server_ok: bool,
    /// The client got the server's application reply.
    client_ok: bool,
}

impl Outcome {
    fn accepted(&self) -> bool {
        self.server_ok && self.client_ok
    }
    fn refused(&self) -> bool {
        !self.server_ok && !self.client_ok
    }
}

/// One server on 127.0.0.1:0 answering "pong" to "ping" once, one client connection.
async fn exchange(server: Arc<rustls::ServerConfig>, client: rustls::ClientConfig) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let Ok(mut tls) = acceptor.accept(tcp).await else {
            return false;
        };
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut buf = [0u8; 4];
        if tls.read_exact(&mut buf).await.is_err() || &buf != b"ping" {
            return false;
        }
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        tls.write_all(b"pong").await.is_ok() && tls.shutdown().await.is_ok()
    });
    let connector = TlsConnector::from(Arc::new(client));
    let client_ok = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let name = ServerName::try_from("localhost").ok()?;
        let mut tls = connector.connect(name, tcp).await.ok()?;
        tls.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"pong")
    }
    .await
    .unwrap_or(false);
    let server_ok = server_task.await.expect("server task");
    Outcome {
        server_ok,
        client_ok,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    pki: DevPki,
    other: DevPki,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::generate(
        &dir.path().join("pki"),
        &["node-a"],
        &["combiner", "stranger"],
    )
    .expect("pki");
    let other = DevPki::generate(&dir.path().join("other"), &[], &["intruder"]).expect("other pki");
    Fixture {
        _dir: dir,
        pki,
        other,
    }
}

impl Fixture {
    fn server_files(&self, client_ca: bool, allowed: Option<PathBuf>) -> ServerTlsFiles {
        let node = &self.pki.servers[0];
        ServerTlsFiles {
            cert: node.cert.clone(),
            key: node.key.clone(),
            client_ca: client_ca.then(|| self.pki.ca_cert.clone()),
            allowed_clients: allowed,
        }
    }

    fn client(&self, identity: Option<(&PathBuf, &PathBuf)>) -> rustls::ClientConfig {
        client_config(ClientTlsOptions {
            ca: Some(self.pki.ca_cert.clone()),
            pinned: vec![],
            identity: identity.map(|(c, k)| (c.clone(), k.clone())),
        })
        .expect("client config")
    }

    fn combiner(&self) -> rustls::ClientConfig {
        let c = self.pki.identity("combiner").expect("combiner");
        self.client(Some((&c.cert, &c.key)))
    }

    fn allow_list(&self, names: &[&str]) -> PathBuf {
        let path = self
            ._dir
            .path()
            .join(format!("allowed-{}", names.join("-")));
        let mut text = String::from("# NAME SHA256-FINGERPRINT\n");
        for n in names {
            let id = self
                .pki
                .identity(n)
                .or_else(|| self.other.identity(n))
                .expect("known name");
            // Alternate the two accepted spellings.
            let fp = if text.len() % 2 == 0 {
                id.fingerprint.to_string()
            } else {
                hex::encode(id.fingerprint.0)
            };
            text.push_str(&format!("{n} {fp}\n"));
        }
        std::fs::write(&path, text).expect("write allow list");
        path
    }
}

#[tokio::test]
async fn ca_signed_client_is_accepted() {
    let f = fixture();
    let server = server_config(&f.server_files(true, None)).expect("server");
    let out = exchange(server, f.combiner()).await;
    assert!(out.accepted(), "{out:?}");
}

#[tokio::test]
async fn client_from_another_ca_is_refused() {
    let f = fixture();
    let server = server_config(&f.server_files(true, None)).expect("server");
    let intruder = f.other.identity("intruder").expect("intruder");
    let out = exchange(server, f.client(Some((&intruder.cert, &intruder.key)))).await;
    assert!(out.refused(), "{out:?}");
}

#[tokio::test]
async fn missing_client_certificate_is_refused_when_auth_is_required() {
    let f = fixture();
    let server = server_config(&f.server_files(true, None)).expect("server");
    let out = exchange(server, f.client(None)).await;
    assert!(out.refused(), "{out:?}");
    let allow = f.allow_list(&["combiner"]);
    let server = server_config(&f.server_files(false, Some(allow))).expect("server");
    let out = exchange(server, f.client(None)).await;
    assert!(out.refused(), "{out:?}");
}

#[tokio::test]
async fn no_client_auth_configured_accepts_anonymous_clients() {
    let f = fixture();
    let server = server_config(&f.server_files(false, None)).expect("server");
    let out = exchange(server, f.client(None)).await;
    assert!(out.accepted(), "{out:?}");
}

#[tokio::test]
async fn allow_list_accepts_listed_and_refuses_unlisted_certificates() {
    let f = fixture();
    // "intruder" is from another CA: accepted only because its fingerprint is listed.
    let allow = f.allow_list(&["combiner", "intruder"]);
    let server = server_config(&f.server_files(false, Some(allow))).expect("server");
    let out = exchange(server.clone(), f.combiner()).await;
    assert!(out.accepted(), "listed CA-signed: {out:?}");
    let intruder = f.other.identity("intruder").expect("intruder");
    let out = exchange(
        server.clone(),
        f.client(Some((&intruder.cert, &intruder.key))),
    )
    .await;
    assert!(out.accepted(), "listed foreign: {out:?}");
    // "stranger" is signed by the same CA but not listed, and the CA is not configured.
    let stranger = f.pki.identity("stranger").expect("stranger");
    let out = exchange(server, f.client(Some((&stranger.cert, &stranger.key)))).await;
    assert!(out.refused(), "unlisted: {out:?}");
}

#[tokio::test]
async fn ca_and_allow_list_together_accept_either() {
    let f = fixture();
    let allow = f.allow_list(&["intruder"]);
    let server = server_config(&f.server_files(true, Some(allow))).expect("server");
    let stranger = f.pki.identity("stranger").expect("stranger");
    let out = exchange(
        server.clone(),
        f.client(Some((&stranger.cert, &stranger.key))),
    )
    .await;
    assert!(out.accepted(), "CA-signed: {out:?}");
    let intruder = f.other.identity("intruder").expect("intruder");
    let out = exchange(
        server.clone(),
        f.client(Some((&intruder.cert, &intruder.key))),
    )
    .await;
    assert!(out.accepted(), "listed: {out:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let nobody = generate_self_signed(dir.path(), "nobody").expect("self-signed");
    let out = exchange(server, f.client(Some((&nobody.cert, &nobody.key)))).await;
    assert!(out.refused(), "neither: {out:?}");
}

/// Presents a fixed certificate chain with a signing key that does not belong to it (rustls's
/// own builders refuse such a pair, so it is injected through the resolver).
#[derive(Debug)]
struct MismatchedIdentity(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for MismatchedIdentity {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// A listed fingerprint is not enough without the matching private key: the server checks the
/// handshake signature against the listed certificate and refuses.
#[tokio::test]
async fn listed_certificate_with_wrong_key_is_refused() {
    let f = fixture();
    let allow = f.allow_list(&["combiner"]);
    let server = server_config(&f.server_files(false, Some(allow))).expect("server");
    let combiner = f.pki.identity("combiner").expect("combiner");
    let stranger = f.pki.identity("stranger").expect("stranger");
    let chain = dvsigner::tls::load_certs(&combiner.cert).expect("chain");
    let wrong_key = dvsigner::tls::load_private_key(&stranger.key).expect("key");
    let signer = dvsigner::tls::provider()
        .key_provider
        .load_private_key(wrong_key)
        .expect("signing key");
    let mut client = f.client(None);
    client.client_auth_cert_resolver = Arc::new(MismatchedIdentity(Arc::new(
        rustls::sign::CertifiedKey::new(chain, signer),
    )));
    let out = exchange(server.clone(), client).await;
    assert!(out.refused(), "{out:?}");
    // Control: the same path with the right key is accepted.
    assert!(exchange(server, f.combiner()).await.accepted());
}

#[tokio::test]
async fn pinned_fingerprint_accepts_self_signed_server_and_wrong_pin_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_id = generate_self_signed(dir.path(), "solo").expect("self-signed");
    let files = ServerTlsFiles {
        cert: server_id.cert.clone(),
        key: server_id.key.clone(),
        client_ca: None,
        allowed_clients: None,
    };
    let server = server_config(&files).expect("server");
    let pinned = client_config(ClientTlsOptions {
        ca: None,
        pinned: vec![server_id.fingerprint],
        identity: None,
    })
    .expect("client");
    let out = exchange(server.clone(), pinned).await;
    assert!(out.accepted(), "pinned: {out:?}");

    let wrong = client_config(ClientTlsOptions {
        ca: None,
        pinned: vec![Fingerprint([0x5a; 32])],
        identity: None,
    })
    .expect("client");
    let out = exchange(server.clone(), wrong).await;
    assert!(out.refused(), "wrong pin: {out:?}");

    // A CA that did not sign it does not help either.
    let f = fixture();
    let out = exchange(server, f.client(None)).await;
    assert!(out.refused(), "unrelated CA: {out:?}");
}

#[tokio::test]
async fn ca_verification_checks_the_host_name() {
    // A server certificate signed by the trusted CA but issued to another name.
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::generate(dir.path(), &["node-b"], &[]).expect("pki");
    let files = ServerTlsFiles {
        cert: pki.servers[0].cert.clone(),
        key: pki.servers[0].key.clone(),
        client_ca: None,
        allowed_clients: None,
    };
    let server = server_config(&files).expect("server");
    let client = client_config(ClientTlsOptions {
        ca: Some(pki.ca_cert.clone()),
        pinned: vec![],
        identity: None,
    })
    .expect("client");
    // SAN includes localhost, which the client dials: accepted.
    assert!(exchange(server.clone(), client).await.accepted());
    // Dialling a name that is not in the SAN list ("node-a") must fail.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = TlsAcceptor::from(server);
    tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });
    let connector = TlsConnector::from(Arc::new(
        client_config(ClientTlsOptions {
            ca: Some(pki.ca_cert.clone()),
            pinned: vec![],
            identity: None,
        })
        .expect("client"),
    ));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("node-a").expect("name");
    assert!(connector.connect(name, tcp).await.is_err());
}
