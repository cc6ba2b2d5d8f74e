//! HashiCorp Vault key source, end to end: the real `dvsigner signer` binary reads keys from a
//! Vault KV v2 engine over TLS and signs with them.
//!
//! No Vault server can be installed here, so the tests run an in-process mock over TLS (axum +
//! rustls, certificates from `tls::DevPki`) that implements the documented responses the client
//! uses: KV v2 read (`GET /v1/<mount>/data/<path>` -> `{"data":{"data":{..},"metadata":{..}}}`),
//! KV v2 list (`LIST` or `GET ?list=true` on `/v1/<mount>/metadata/<path>` ->
//! `{"data":{"keys":[..]}}`), AppRole login (`POST /v1/auth/approle/login` ->
//! `{"auth":{"client_token":..}}`), Kubernetes login (`POST /v1/auth/<mount>/login` with
//! `{"role","jwt"}` -> `{"auth":{"client_token":..,"lease_duration":SECONDS}}`; 400 for an
//! unknown role, 403 for a JWT it does not accept), `X-Vault-Token` checked on every KV request
//! (403 `{"errors":["permission denied"]}` otherwise, also for a Kubernetes-issued token past its
//! lease or revoked), 404 `{"errors":[]}` for unknown paths.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use common::http::{assert_signs, health, key_check, public_keys};
use common::process::{free_port, http_client as client, wait_ready, Proc};
use common::requests::attestation_body;
use dvsigner::keys::SecretKey;
use dvsigner::tls::{DevPki, ServerTlsFiles};
use serde_json::{json, Value};

const TOKEN: &str = "hvs.mock-root-token-0123";
const ROLE_ID: &str = "role-id-4f1c";
const SECRET_ID: &str = "secret-id-9a7e";
const APPROLE_TOKEN: &str = "hvs.approle-issued-token-77";
const K8S_ROLE: &str = "dvsigner";
/// Stands in for a service-account JWT (three dot-separated parts, like the real thing).
const K8S_JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnLW1hcmtlci0xMTE";
const K8S_JWT_ROTATED: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyb3RhdGVkIn0.c2lnLW1hcmtlci0yMjI";
/// Prefix of every token the mock's Kubernetes login issues.
const K8S_TOKEN_PREFIX: &str = "hvs.k8s-issued-";

/// One request as the mock saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    token: Option<String>,
}

/// The mock's Kubernetes auth method.
struct K8sAuth {
    /// Its mount (`kubernetes` unless a test moves it).
    mount: String,
    /// The one role it knows.
    role: String,
    /// The service-account JWT it accepts (tests rotate it).
    jwt: String,
    /// `lease_duration` of the tokens it issues, in seconds.
    lease: u64,
    /// Issued tokens and when each expires.
    issued: Vec<(String, Instant)>,
    /// Successful logins.
    logins: usize,
    /// KV requests refused because their Kubernetes-issued token had expired.
    expired_uses: usize,
}

impl Default for K8sAuth {
    fn default() -> Self {
        Self {
            mount: "kubernetes".into(),
            role: K8S_ROLE.into(),
            jwt: K8S_JWT.into(),
            lease: 3600,
            issued: Vec::new(),
            logins: 0,
            expired_uses: 0,
        }
    }
}

#[derive(Default)]
struct MockState {
    /// `mount/path` -> the secret's `data.data`.
    secrets: BTreeMap<String, Value>,
    seen: Vec<Seen>,
    k8s: K8sAuth,
}

type Shared = Arc<Mutex<MockState>>;

struct MockVault {
    url: String,
    port: u16,
    state: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MockVault {
    async fn start(pki: &DevPki, secrets: BTreeMap<String, Value>) -> Self {
        let id = pki.identity("vault").expect("vault identity");
        let tls = dvsigner::tls::server_config(&ServerTlsFiles {
            cert: id.cert.clone(),
            key: id.key.clone(),
            client_ca: None,
            allowed_clients: None,
        })
        .expect("server tls");
        let state: Shared = Arc::new(Mutex::new(MockState {
            secrets,
            ..MockState::default()
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = dvsigner::http::server::run(
                listener,
                Some(tls),
                app,
                dvsigner::http::server::ServerOptions::default(),
                async {
                    let _ = rx.await;
                },
            )
            .await;
        });
        Self {
            url: format!("https://127.0.0.1:{port}"),
            port,
            state,
            stop: Some(tx),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("lock").seen.clone()
    }

    /// Changes the Kubernetes auth method's settings.
    fn k8s(&self, f: impl FnOnce(&mut K8sAuth)) {
        f(&mut self.state.lock().expect("lock").k8s);
    }

    /// (successful Kubernetes logins, KV requests refused for an expired token)
    fn k8s_counts(&self) -> (usize, usize) {
        let st = self.state.lock().expect("lock");
        (st.k8s.logins, st.k8s.expired_uses)
    }
}

impl Drop for MockVault {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn vault_error(status: StatusCode, errors: &[&str]) -> Response {
    (status, Json(json!({ "errors": errors }))).into_response()
}

fn envelope(data: Value, auth: Value) -> Response {
    Json(json!({
        "request_id": "5e4c8a1e-0000-0000-0000-000000000000",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": auth,
    }))
    .into_response()
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let token = headers
        .get("x-vault-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut st = state.lock().expect("lock");
    st.seen.push(Seen {
        method: method.to_string(),
        path: path.clone(),
        token: token.clone(),
    });
    if path == "/v1/auth/approle/login" && method == Method::POST {
        let Ok(creds) = serde_json::from_slice::<Value>(&body) else {
            return vault_error(StatusCode::BAD_REQUEST, &["invalid json"]);
        };
        if creds["role_id"] != ROLE_ID || creds["secret_id"] != SECRET_ID {
            return vault_error(StatusCode::BAD_REQUEST, &["invalid role or secret ID"]);
        }
        return envelope(
            Value::Null,
            json!({
                "client_token": APPROLE_TOKEN,
                "accessor": "accessor-1",
                "policies": ["default", "validators"],
                "token_policies": ["default", "validators"],
                "metadata": {"role_name": "dvsigner"},
                "lease_duration": 3600,
                "renewable": true,
                "entity_id": "entity-1",
                "token_type": "service",
                "orphan": true,
            }),
        );
    }
    if path == format!("/v1/auth/{}/login", st.k8s.mount) && method == Method::POST {
        let Ok(creds) = serde_json::from_slice::<Value>(&body) else {
            return vault_error(StatusCode::BAD_REQUEST, &["invalid json"]);
        };
        let Some(role) = creds["role"].as_str() else {
            return vault_error(StatusCode::BAD_REQUEST, &["missing role"]);
        };
        if role != st.k8s.role {
            let text = format!("invalid role name \"{role}\"");
            return vault_error(StatusCode::BAD_REQUEST, &[&text]);
        }
        if creds["jwt"] != st.k8s.jwt.as_str() {
            return vault_error(StatusCode::FORBIDDEN, &["permission denied"]);
        }
        st.k8s.logins += 1;
        let issued = format!("{K8S_TOKEN_PREFIX}{}", st.k8s.logins);
        let lease = st.k8s.lease;
        st.k8s
            .issued
            .push((issued.clone(), Instant::now() + Duration::from_secs(lease)));
        return envelope(
            Value::Null,
            json!({
                "client_token": issued,
                "accessor": format!("accessor-k8s-{}", st.k8s.logins),
                "policies": ["default", "validators"],
                "token_policies": ["default", "validators"],
                "metadata": {
                    "role": role,
                    "service_account_name": "dvsigner",
                    "service_account_namespace": "validators",
                },
                "lease_duration": lease,
                "renewable": true,
                "entity_id": "entity-k8s",
                "token_type": "service",
                "orphan": true,
            }),
        );
    }
    let k8s_token = token.as_deref().and_then(|t| {
        st.k8s
            .issued
            .iter()
            .find(|(issued, _)| issued == t)
            .map(|(_, expiry)| *expiry)
    });
    match k8s_token {
        Some(expiry) if Instant::now() >= expiry => {
            st.k8s.expired_uses += 1;
            return vault_error(StatusCode::FORBIDDEN, &["permission denied"]);
        }
        Some(_) => {}
        None if token.as_deref() != Some(TOKEN) && token.as_deref() != Some(APPROLE_TOKEN) => {
            return vault_error(StatusCode::FORBIDDEN, &["permission denied"]);
        }
        None => {}
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return vault_error(StatusCode::NOT_FOUND, &[]);
    };
    let listing = method.as_str() == "LIST"
        || (method == Method::GET && uri.query().is_some_and(|q| q.contains("list=true")));
    if let Some((mount, folder)) = rest.split_once("/metadata/").filter(|_| listing) {
        let prefix = format!("{mount}/{}/", folder.trim_end_matches('/'));
        let mut keys: Vec<String> = st
            .secrets
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|tail| match tail.split_once('/') {
                Some((dir, _)) => format!("{dir}/"),
                None => tail.to_owned(),
            })
            .collect();
        keys.dedup();
        if keys.is_empty() {
            return vault_error(StatusCode::NOT_FOUND, &[]);
        }
        return envelope(json!({ "keys": keys }), Value::Null);
    }
    if let Some((mount, secret)) = rest.split_once("/data/").filter(|_| method == Method::GET) {
        return match st.secrets.get(&format!("{mount}/{secret}")) {
            Some(data) => envelope(
                json!({
                    "data": data,
                    "metadata": {
                        "created_time": "2026-01-01T00:00:00.000000Z",
                        "custom_metadata": null,
                        "deletion_time": "",
                        "destroyed": false,
                        "version": 1,
                    },
                }),
                Value::Null,
            ),
            None => vault_error(StatusCode::NOT_FOUND, &[]),
        };
    }
    vault_error(StatusCode::NOT_FOUND, &[])
}

fn node_args(port: u16, data: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "signer",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--insecure-http",
        "--data-dir",
        &data.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn hex_key(sk: &SecretKey) -> String {
    format!("0x{}", hex::encode(sk.expose_secret().as_ref()))
}

fn pks(keys: &[&SecretKey]) -> Vec<String> {
    let mut v: Vec<String> = keys
        .iter()
        .map(|k| k.public_key().bytes().to_hex())
        .collect();
    v.sort();
    v
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).expect("write");
    path.to_owned()
}

struct Fixture {
    dir: tempfile::TempDir,
    pki: DevPki,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::generate(&dir.path().join("pki"), &["vault"], &[]).expect("pki");
    Fixture { dir, pki }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_config_files_read_vault_over_tls_and_sign() {
    let f = fixture();
    let (a, b, c) = (
        SecretKey::random(),
        SecretKey::random(),
        SecretKey::random(),
    );
    let mut secrets = BTreeMap::new();
    secrets.insert("secret/validator-a".into(), json!({ "value": hex_key(&a) }));
    secrets.insert("secret/validator-c".into(), json!({ "value": hex_key(&c) }));
    secrets.insert(
        "kv/team/shares/b".into(),
        json!({ "share": hex_key(&b).trim_start_matches("0x"), "note": 7 }),
    );
    let vault = MockVault::start(&f.pki, secrets).await;
    let cfg = f.dir.path().join("keys");
    std::fs::create_dir_all(&cfg).expect("mkdir");
    // Web3Signer known-servers file: `host:port fingerprint`.
    let fp = &f.pki.identity("vault").expect("id").fingerprint;
    write(
        &cfg.join("known_servers"),
        &format!("# vault\nlocalhost:{} {fp}\n", vault.port),
    );
    // Pinned server certificate (tlsKnownServersPath), token in the file.
    write(
        &cfg.join("a.yaml"),
        &format!(
            "type: \"hashicorp\"\nkeyType: \"BLS\"\nserverHost: \"localhost\"\nserverPort: {}\n\
             keyPath: \"/v1/secret/data/validator-a\"\nkeyName: \"value\"\ntlsEnabled: true\n\
             tlsKnownServersPath: \"known_servers\"\ntoken: \"{TOKEN}\"\ntimeout: 5000\n",
            vault.port
        ),
    );
    // CA validation (VAULT_CACERT), token from DVSIGNER_VAULT_TOKEN, nested mount, other field.
    write(
        &cfg.join("b.yml"),
        &format!(
            "type: hashicorp\nserverHost: 127.0.0.1\nserverPort: {}\n\
             keyPath: /v1/kv/team/data/shares/b\nkeyName: share\ntlsEnabled: true\n",
            vault.port
        ),
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let ca = f.pki.ca_cert.display().to_string();
    let mut node = Proc::start_with_env(
        "node",
        &node_args(
            port,
            &f.dir.path().join("data"),
            &["--key-config", &cfg.display().to_string()],
        ),
        &[("DVSIGNER_VAULT_TOKEN", TOKEN), ("VAULT_CACERT", &ca)],
        &f.dir.path().join("node.log"),
    );
    wait_ready(
        &client(),
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(public_keys(&base).await, pks(&[&a, &b]));
    let health = client()
        .get(format!("{base}/healthcheck"))
        .send()
        .await
        .expect("healthcheck");
    assert_eq!(health.status(), 200, "{}", node.log_text());
    assert_signs(&base, &a, 10).await;
    assert_signs(&base, &b, 10).await;
    let seen = vault.seen();
    let reads: Vec<_> = seen.iter().filter(|s| s.method == "GET").collect();
    assert_eq!(reads.len(), 2, "{seen:?}");
    assert!(reads.iter().all(|s| s.token.as_deref() == Some(TOKEN)));
    assert!(reads
        .iter()
        .any(|s| s.path == "/v1/secret/data/validator-a"));
    assert!(reads.iter().any(|s| s.path == "/v1/kv/team/data/shares/b"));

    // /reload picks up a removed and an added Vault key-config file.
    std::fs::remove_file(cfg.join("b.yml")).expect("rm");
    write(
        &cfg.join("c.yaml"),
        &format!(
            "type: hashicorp\nserverHost: 127.0.0.1\nserverPort: {}\n\
             keyPath: /v1/secret/data/validator-c\nkeyName: value\ntlsEnabled: true\n",
            vault.port
        ),
    );
    reload(&base).await;
    assert_eq!(public_keys(&base).await, pks(&[&a, &c]));
    assert_signs(&base, &c, 11).await;
    let gone = client()
        .post(format!(
            "{base}/api/v1/eth2/sign/{}",
            b.public_key().bytes().to_hex()
        ))
        .header("content-type", "application/json")
        .body(attestation_body(11))
        .send()
        .await
        .expect("sign");
    assert_eq!(
        gone.status(),
        404,
        "a removed key-config file's key is gone"
    );
    assert!(vault
        .seen()
        .iter()
        .any(|s| s.method == "GET" && s.path == "/v1/secret/data/validator-c"));

    let log = node.log_text();
    assert!(!log.contains(TOKEN), "token in log");
    assert!(!log.contains(hex_key(&a).trim_start_matches("0x")));
}

/// `POST /reload` and its outcome, which must be `completed`.
async fn reload(base: &str) {
    let (status, error) = common::http::reload(base).await;
    assert_eq!(status, "completed", "reload: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_mode_with_approle_loads_every_secret_under_the_path() {
    let f = fixture();
    let keys: Vec<SecretKey> = (0..3).map(|_| SecretKey::random()).collect();
    let elsewhere = SecretKey::random();
    let nested = SecretKey::random();
    let mut secrets = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        secrets.insert(
            format!("secret/validators/v{i}"),
            json!({ "value": hex_key(k) }),
        );
    }
    secrets.insert(
        "secret/validators/retired/v9".into(),
        json!({ "value": hex_key(&nested) }),
    );
    secrets.insert(
        "secret/other/x".into(),
        json!({ "value": hex_key(&elsewhere) }),
    );
    let vault = MockVault::start(&f.pki, secrets).await;
    let role = write(&f.dir.path().join("role"), &format!("{ROLE_ID}\n"));
    let secret = write(&f.dir.path().join("secret"), &format!("{SECRET_ID}\n"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut node = Proc::start_with_env(
        "node",
        &node_args(
            port,
            &f.dir.path().join("data"),
            &[
                "--vault-url",
                &vault.url,
                "--vault-ca",
                &f.pki.ca_cert.display().to_string(),
                "--vault-bulk-path",
                "validators",
                "--vault-role-id-file",
                &role.display().to_string(),
                "--vault-secret-id-file",
                &secret.display().to_string(),
            ],
        ),
        &[],
        &f.dir.path().join("node.log"),
    );
    wait_ready(
        &client(),
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(30),
    )
    .await;
    let refs: Vec<&SecretKey> = keys.iter().collect();
    assert_eq!(public_keys(&base).await, pks(&refs));
    for k in &keys {
        assert_signs(&base, k, 3).await;
    }
    let seen = vault.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/auth/approle/login");
    assert_eq!(seen[1].method, "LIST");
    assert_eq!(seen[1].path, "/v1/secret/metadata/validators");
    assert_eq!(seen.len(), 2 + keys.len(), "{seen:?}");
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.token.as_deref() == Some(APPROLE_TOKEN)),
        "{seen:?}"
    );

    // /reload reads the folder again (a new login, a new listing): a secret added since is
    // picked up.
    let added = SecretKey::random();
    vault.state.lock().expect("lock").secrets.insert(
        "secret/validators/added".into(),
        json!({ "value": hex_key(&added) }),
    );
    reload(&base).await;
    let mut all: Vec<&SecretKey> = keys.iter().collect();
    all.push(&added);
    assert_eq!(public_keys(&base).await, pks(&all));
    assert_signs(&base, &added, 4).await;
    assert_eq!(health(&base).await.0, 200);

    // Vault gone: the reload reports the failure and keeps every key the folder gave before;
    // the healthcheck names the folder's check DOWN.
    let (vault_url, vault_port) = (vault.url.clone(), vault.port);
    drop(vault);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", vault_port))
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, error) = common::http::reload(&base).await;
    assert_eq!(status, "completed_with_errors");
    assert!(
        error.contains(&format!("vault approle login at {vault_url}")),
        "{error}"
    );
    assert_eq!(public_keys(&base).await, pks(&all));
    assert_signs(&base, &added, 5).await;
    let (code, doc) = health(&base).await;
    assert_eq!(code, 503, "{doc}");
    let check = key_check(&doc, "hashicorp-bulk-loading");
    assert_eq!(check["status"], "DOWN", "{doc}");
    assert_eq!(check["data"]["error-count"], 1, "{doc}");

    let log = node.log_text();
    for s in [SECRET_ID, APPROLE_TOKEN] {
        assert!(!log.contains(s), "credential in log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_mode_with_token_file_and_custom_field() {
    let f = fixture();
    let k = SecretKey::random();
    let mut secrets = BTreeMap::new();
    secrets.insert("shares/op1/k".into(), json!({ "bls": hex_key(&k) }));
    let vault = MockVault::start(&f.pki, secrets).await;
    let token = write(&f.dir.path().join("token"), &format!("{TOKEN}\n"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut node = Proc::start_with_env(
        "node",
        &node_args(
            port,
            &f.dir.path().join("data"),
            &[
                "--vault-url",
                &vault.url,
                "--vault-kv-mount",
                "shares",
                "--vault-bulk-path",
                "op1",
                "--vault-key-name",
                "bls",
                "--vault-token-file",
                &token.display().to_string(),
            ],
        ),
        &[("VAULT_CACERT", &f.pki.ca_cert.display().to_string())],
        &f.dir.path().join("node.log"),
    );
    wait_ready(
        &client(),
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(public_keys(&base).await, pks(&[&k]));
    assert_signs(&base, &k, 4).await;
}

/// Key-config errors: each file fails on its own with a message naming the file and the KV
/// path, the node still serves the good key, `/healthcheck` is DOWN, and no secret or token is
/// logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_config_errors_name_the_path_and_never_the_secret() {
    let f = fixture();
    let good = SecretKey::random();
    let not_hex = "0xNOTHEXsecretMARKER0000000000000000000000000000000000000000000000";
    let short = "0x1122334455667788991122334455667788991122334455667788991122deadbe";
    let short = &short[..short.len() - 2]; // 31 bytes
    let mut secrets = BTreeMap::new();
    secrets.insert("secret/good".into(), json!({ "value": hex_key(&good) }));
    secrets.insert("secret/nothex".into(), json!({ "value": not_hex }));
    secrets.insert("secret/short".into(), json!({ "value": short }));
    secrets.insert("secret/nofield".into(), json!({ "other": hex_key(&good) }));
    let vault = MockVault::start(&f.pki, secrets).await;
    let dead_port = free_port();
    let cfg = f.dir.path().join("keys");
    std::fs::create_dir_all(&cfg).expect("mkdir");
    let doc = |path: &str, token: &str, port: u16| {
        format!(
            "type: hashicorp\nserverHost: localhost\nserverPort: {port}\nkeyPath: {path}\n\
             tlsEnabled: true\ntoken: {token}\n"
        )
    };
    let bad_token = "hvs.WRONG-token-5150";
    write(
        &cfg.join("good.yaml"),
        &doc("/v1/secret/data/good", TOKEN, vault.port),
    );
    write(
        &cfg.join("forbidden.yaml"),
        &doc("/v1/secret/data/good", bad_token, vault.port),
    );
    write(
        &cfg.join("missing.yaml"),
        &doc("/v1/secret/data/absent", TOKEN, vault.port),
    );
    write(
        &cfg.join("nothex.yaml"),
        &doc("/v1/secret/data/nothex", TOKEN, vault.port),
    );
    write(
        &cfg.join("short.yaml"),
        &doc("/v1/secret/data/short", TOKEN, vault.port),
    );
    write(
        &cfg.join("nofield.yaml"),
        &doc("/v1/secret/data/nofield", TOKEN, vault.port),
    );
    write(
        &cfg.join("down.yaml"),
        &doc("/v1/secret/data/good", TOKEN, dead_port),
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let ca = f.pki.ca_cert.display().to_string();
    let mut node = Proc::start_with_env(
        "node",
        &node_args(
            port,
            &f.dir.path().join("data"),
            &["--key-config", &cfg.display().to_string()],
        ),
        &[("VAULT_CACERT", &ca)],
        &f.dir.path().join("node.log"),
    );
    wait_ready(
        &client(),
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(public_keys(&base).await, pks(&[&good]));
    assert_signs(&base, &good, 5).await;
    let health = client()
        .get(format!("{base}/healthcheck"))
        .send()
        .await
        .expect("healthcheck");
    assert_eq!(health.status(), 503);
    let log = node.log_text();
    let expect = [
        (
            "forbidden.yaml",
            "denied access to /v1/secret/data/good (http 403)",
        ),
        (
            "missing.yaml",
            "secret /v1/secret/data/absent not found in vault",
        ),
        (
            "nothex.yaml",
            "field `value` of secret /v1/secret/data/nothex is not a 32-byte hex bls key",
        ),
        (
            "short.yaml",
            "field `value` of secret /v1/secret/data/short is not a 32-byte hex bls key",
        ),
        (
            "nofield.yaml",
            "secret /v1/secret/data/nofield has no string field `value`",
        ),
        (
            "down.yaml",
            &format!("vault at https://localhost:{dead_port} unreachable while reading /v1/secret/data/good"),
        ),
    ];
    for (file, message) in expect {
        let line = log
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("no log line for {file}:\n{log}"));
        assert!(line.contains(message), "{file}: {line}");
    }
    for secret in [
        "NOTHEXsecretMARKER",
        short.trim_start_matches("0x"),
        hex_key(&good).trim_start_matches("0x"),
        TOKEN,
        bad_token,
    ] {
        assert!(!log.contains(secret), "secret {secret} in log:\n{log}");
    }
}

/// Bulk mode refuses to start on any failure, naming the server and path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_mode_failures_stop_the_node_with_a_clear_error() {
    let f = fixture();
    let good = SecretKey::random();
    let marker = "0xBADsecretVALUEmarker";
    let mut secrets = BTreeMap::new();
    secrets.insert("secret/vals/a".into(), json!({ "value": hex_key(&good) }));
    secrets.insert("secret/broken/b".into(), json!({ "value": marker }));
    let vault = MockVault::start(&f.pki, secrets).await;
    let good_token = write(&f.dir.path().join("token"), TOKEN);
    let bad_token = write(&f.dir.path().join("bad-token"), "hvs.not-the-token-31337");
    let ca = f.pki.ca_cert.display().to_string();
    let dead = format!("https://127.0.0.1:{}", free_port());
    let cases: [(&str, &str, &Path, String); 4] = [
        (
            &vault.url,
            "vals",
            &bad_token,
            "denied access to /v1/secret/metadata/vals (http 403)".into(),
        ),
        (
            &vault.url,
            "nothing-here",
            &good_token,
            "secret /v1/secret/metadata/nothing-here not found".into(),
        ),
        (
            &vault.url,
            "broken",
            &good_token,
            "field `value` of secret /v1/secret/data/broken/b is not a 32-byte hex bls key".into(),
        ),
        (
            &dead,
            "vals",
            &good_token,
            format!("vault at {dead} unreachable while reading /v1/secret/metadata/vals"),
        ),
    ];
    for (i, (url, folder, token, message)) in cases.iter().enumerate() {
        let port = free_port();
        let mut node = Proc::start_with_env(
            "node",
            &node_args(
                port,
                &f.dir.path().join(format!("data{i}")),
                &[
                    "--vault-url",
                    url,
                    "--vault-ca",
                    &ca,
                    "--vault-bulk-path",
                    folder,
                    "--vault-token-file",
                    &token.display().to_string(),
                ],
            ),
            &[],
            &f.dir.path().join(format!("node{i}.log")),
        );
        let (ok, log) = node.wait_exit(Duration::from_secs(30));
        assert!(!ok, "node started despite {message}:\n{log}");
        assert!(log.contains(message), "expected {message:?} in:\n{log}");
        for secret in ["BADsecretVALUEmarker", TOKEN, "not-the-token-31337"] {
            assert!(!log.contains(secret), "secret in log:\n{log}");
        }
    }
}

/// Asserts that `log` holds neither a service-account JWT nor a Vault token.
fn assert_no_credentials(log: &str) {
    for secret in [K8S_JWT, K8S_JWT_ROTATED, K8S_TOKEN_PREFIX, TOKEN] {
        assert!(!log.contains(secret), "credential {secret} in log:\n{log}");
    }
    // No part of the JWT either (each is distinctive enough to never occur by chance).
    for part in K8S_JWT.split('.').chain(K8S_JWT_ROTATED.split('.').skip(1)) {
        assert!(!log.contains(part), "part of a jwt in log:\n{log}");
    }
}

/// `authMethod: KUBERNETES` key-config files: the node logs in with the service-account token
/// from `kubernetesServiceAccountTokenPath`, reads and signs with both keys over one login (the
/// token is cached with its one-hour lease), and when Vault revokes that token a `/reload` logs
/// in again. A file with a role Vault does not know fails on its own, naming the login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_config_kubernetes_auth_logs_in_reuses_the_token_and_signs() {
    let f = fixture();
    let (a, b) = (SecretKey::random(), SecretKey::random());
    let mut secrets = BTreeMap::new();
    secrets.insert("secret/validator-a".into(), json!({ "value": hex_key(&a) }));
    secrets.insert("secret/validator-b".into(), json!({ "value": hex_key(&b) }));
    let vault = MockVault::start(&f.pki, secrets).await;
    let cfg = f.dir.path().join("keys");
    std::fs::create_dir_all(cfg.join("sa")).expect("mkdir");
    write(&cfg.join("sa/token"), &format!("{K8S_JWT}\n"));
    let doc = |key: &str, role: &str| {
        format!(
            "type: hashicorp\nserverHost: localhost\nserverPort: {}\n\
             keyPath: /v1/secret/data/{key}\ntlsEnabled: true\nauthMethod: KUBERNETES\n\
             kubernetesRole: {role}\nkubernetesServiceAccountTokenPath: sa/token\n",
            vault.port
        )
    };
    write(&cfg.join("a.yaml"), &doc("validator-a", K8S_ROLE));
    // The auth mount given explicitly, with Web3Signer's field.
    write(
        &cfg.join("b.yaml"),
        &format!(
            "{}kubernetesAuthPath: kubernetes\n",
            doc("validator-b", K8S_ROLE)
        ),
    );
    write(&cfg.join("wrongrole.yaml"), &doc("validator-a", "intruder"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let ca = f.pki.ca_cert.display().to_string();
    let mut node = Proc::start_with_env(
        "node",
        &node_args(
            port,
            &f.dir.path().join("data"),
            &["--key-config", &cfg.display().to_string()],
        ),
        &[("VAULT_CACERT", &ca)],
        &f.dir.path().join("node.log"),
    );
    wait_ready(
        &client(),
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(public_keys(&base).await, pks(&[&a, &b]));
    assert_signs(&base, &a, 10).await;
    assert_signs(&base, &b, 10).await;
    assert_eq!(vault.k8s_counts(), (1, 0), "one login for both files");
    let reads: Vec<Seen> = vault
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(
        reads
            .iter()
            .all(|s| s.token.as_deref() == Some("hvs.k8s-issued-1")),
        "{reads:?}"
    );
    let log = node.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("wrongrole.yaml"))
        .unwrap_or_else(|| panic!("no log line for wrongrole.yaml:\n{log}"));
    assert!(
        line.contains(&format!(
            "vault kubernetes login at https://localhost:{}/v1/auth/kubernetes/login failed: \
             http 400 (role intruder)",
            vault.port
        )),
        "{line}"
    );
    let (code, _) = health(&base).await;
    assert_eq!(code, 503, "the wrong-role file is a load error");

    // Vault revokes the token: the reload's first read is refused, the node forgets the login,
    // logs in again and reads both keys with the new token.
    std::fs::remove_file(cfg.join("wrongrole.yaml")).expect("rm");
    vault.k8s(|k| k.issued.clear());
    reload(&base).await;
    assert_eq!(public_keys(&base).await, pks(&[&a, &b]));
    assert_eq!(vault.k8s_counts(), (2, 0));
    let last_reads: Vec<Seen> = vault
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .rev()
        .take(2)
        .collect();
    assert!(
        last_reads
            .iter()
            .all(|s| s.token.as_deref() == Some("hvs.k8s-issued-2")),
        "{last_reads:?}"
    );
    assert_eq!(health(&base).await.0, 200);
    assert_signs(&base, &b, 11).await;
    let log = node.log_text();
    assert_eq!(
        log.matches("vault: kubernetes login").count(),
        2,
        "each login is logged:\n{log}"
    );
    assert_no_credentials(&log);
}

/// Bulk mode with `--vault-kubernetes-role` on a non-default auth mount, and token expiry: the
/// mock issues tokens with a 3-second lease and refuses them once expired. After the first
/// token has expired and the service-account token was rotated, a `/reload` logs in again
/// (re-reading the rotated token file) instead of using the expired token, and picks up a key
/// added since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_mode_with_kubernetes_auth_logs_in_again_after_the_lease() {
    let f = fixture();
    let keys: Vec<SecretKey> = (0..2).map(|_| SecretKey::random()).collect();
    let mut secrets = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        secrets.insert(
            format!("secret/validators/v{i}"),
            json!({ "value": hex_key(k) }),
        );
    }
    let vault = MockVault::start(&f.pki, secrets).await;
    vault.k8s(|k| {
        k.mount = "k8s-prod".into();
        k.lease = 3;
    });
    let jwt_file = write(&f.dir.path().join("sa-token"), K8S_JWT);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut node = Proc::start_with_env(
        "node",
        &node_args(
            port,
            &f.dir.path().join("data"),
            &[
                "--vault-url",
                &vault.url,
                "--vault-ca",
                &f.pki.ca_cert.display().to_string(),
                "--vault-bulk-path",
                "validators",
                "--vault-kubernetes-role",
                K8S_ROLE,
                "--vault-kubernetes-token-file",
                &jwt_file.display().to_string(),
                "--vault-kubernetes-mount",
                "k8s-prod",
            ],
        ),
        // A token in the environment is not used when a login method is given.
        &[("DVSIGNER_VAULT_TOKEN", "hvs.not-to-be-used")],
        &f.dir.path().join("node.log"),
    );
    wait_ready(
        &client(),
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(30),
    )
    .await;
    let refs: Vec<&SecretKey> = keys.iter().collect();
    assert_eq!(public_keys(&base).await, pks(&refs));
    assert_signs(&base, &keys[0], 3).await;
    let seen = vault.seen();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/v1/auth/k8s-prod/login")
    );
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.token.as_deref() == Some("hvs.k8s-issued-1")),
        "{seen:?}"
    );
    assert_eq!(vault.k8s_counts(), (1, 0));

    // Kubernetes rotates the service-account token; Vault accepts only the new one. A key is
    // added. Wait (bounded) until the first Vault token has expired.
    write(&jwt_file, K8S_JWT_ROTATED);
    vault.k8s(|k| k.jwt = K8S_JWT_ROTATED.into());
    let added = SecretKey::random();
    vault.state.lock().expect("lock").secrets.insert(
        "secret/validators/added".into(),
        json!({ "value": hex_key(&added) }),
    );
    let expiry = vault.state.lock().expect("lock").k8s.issued[0].1;
    tokio::time::sleep(expiry.saturating_duration_since(Instant::now())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    reload(&base).await;
    let mut all = refs.clone();
    all.push(&added);
    assert_eq!(public_keys(&base).await, pks(&all));
    assert_signs(&base, &added, 4).await;
    assert_eq!(
        vault.k8s_counts(),
        (2, 0),
        "a second login, and the expired token never sent"
    );
    let seen = vault.seen();
    assert!(
        seen.iter()
            .all(|s| s.token.as_deref() != Some("hvs.not-to-be-used")),
        "{seen:?}"
    );
    assert_eq!(health(&base).await.0, 200);
    assert_no_credentials(&node.log_text());
}

/// Kubernetes login failures in bulk mode stop the node with an error naming the login (server,
/// mount, role) or the unreadable token file, and never the JWT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_login_failures_name_the_login_and_never_the_jwt() {
    let f = fixture();
    let mut secrets = BTreeMap::new();
    secrets.insert(
        "secret/vals/a".into(),
        json!({ "value": hex_key(&SecretKey::random()) }),
    );
    let vault = MockVault::start(&f.pki, secrets).await;
    let good_jwt = write(&f.dir.path().join("jwt"), K8S_JWT);
    let wrong_jwt = write(&f.dir.path().join("wrong-jwt"), K8S_JWT_ROTATED);
    let missing = f.dir.path().join("no-such-token");
    let login = format!(
        "vault kubernetes login at {}/v1/auth/kubernetes/login failed",
        vault.url
    );
    let cases: [(&str, &Path, String); 3] = [
        (
            "intruder",
            &good_jwt,
            format!("{login}: http 400 (role intruder)"),
        ),
        (
            K8S_ROLE,
            &wrong_jwt,
            format!("{login}: http 403 (role {K8S_ROLE})"),
        ),
        (
            K8S_ROLE,
            &missing,
            format!("cannot read vault credential file {}", missing.display()),
        ),
    ];
    for (i, (role, jwt, message)) in cases.iter().enumerate() {
        let port = free_port();
        let mut node = Proc::start_with_env(
            "node",
            &node_args(
                port,
                &f.dir.path().join(format!("data{i}")),
                &[
                    "--vault-url",
                    &vault.url,
                    "--vault-ca",
                    &f.pki.ca_cert.display().to_string(),
                    "--vault-bulk-path",
                    "vals",
                    "--vault-kubernetes-role",
                    role,
                    "--vault-kubernetes-token-file",
                    &jwt.display().to_string(),
                ],
            ),
            &[],
            &f.dir.path().join(format!("node{i}.log")),
        );
        let (ok, log) = node.wait_exit(Duration::from_secs(30));
        assert!(!ok, "node started despite {message}:\n{log}");
        assert!(log.contains(message), "expected {message:?} in:\n{log}");
        assert_no_credentials(&log);
    }
    assert_eq!(vault.k8s_counts(), (0, 0));
}
