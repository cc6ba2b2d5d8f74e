//! HashiCorp Vault key source: BLS keys (whole keys or threshold shares) read from a KV version 2
//! secrets engine, through the `vaultrs` client.
//!
//! Two ways to name keys:
//! - Web3Signer key-config documents (`type: hashicorp`, see [`crate::keys::key_config`] and
//!   `docs/web3signer-compatibility.md`): one secret per document, `keyPath` is the full
//!   KV v2 HTTP path (`/v1/<mount>/data/<path>`), `keyName` the field holding the hex key.
//! - Bulk mode ([`VaultBulkSource`], `dvsigner signer --vault-*`): every secret listed under one
//!   KV v2 folder (`LIST /v1/<mount>/metadata/<folder>`), one level deep, each holding its key in
//!   the same field.
//!
//! Vault API (developer.hashicorp.com/vault/api-docs): KV v2 read
//! `GET /v1/<mount>/data/<path>` answers `{"data":{"data":{..},"metadata":{..}}}`; list answers
//! `{"data":{"keys":[..]}}` (names ending in `/` are folders); AppRole login
//! `POST /v1/auth/<mount>/login` with `{role_id, secret_id}` answers `{"auth":{"client_token":..}}`;
//! Kubernetes login `POST /v1/auth/<mount, default kubernetes>/login` with `{role, jwt}` (the
//! pod's service-account token) answers `{"auth":{"client_token":..,"lease_duration":SECONDS}}`.
//! Every request carries the token in `X-Vault-Token`.
//!
//! Logins: a token is used as given; AppRole logs in once per read session (one start-up load,
//! one `/reload`). Kubernetes logins are cached per server, mount, role and service-account token
//! file (`LOGINS`) with their lease: a session reuses the cached token while more than a third
//! of its lease is left, and otherwise logs in again, re-reading the service-account token file
//! (Kubernetes rotates it). A token with no lease (`lease_duration` 0) is not cached. A session
//! whose cached token Vault refuses (403: revoked) forgets it and runs once more with a fresh
//! login. Nothing runs in the background: tokens are only refreshed when Vault is read.
//!
//! Transport: the HTTP client is built here with our rustls configuration (ring provider, the
//! Vault CA file or pinned certificate fingerprints), so neither OpenSSL nor a system trust
//! store is involved; `vaultrs` is compiled without TLS features of its own.
//!
//! Invariants:
//! - Tokens, AppRole secret ids and keys are held in zeroizing types on our side ([`VaultToken`],
//!   [`SecretKey`]); the key's hex text goes from the parsed response straight into a zeroizing
//!   buffer. Copies inside `vaultrs`/`reqwest`/`serde_json` buffers (the response body and the
//!   JSON value `vaultrs` decodes first) are freed, not wiped: that is the limit of using the
//!   `vaultrs` client.
//! - Every error names the secret by its KV v2 path (and the server URL), never the secret value,
//!   the token, or Vault's own error text.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, MapAccess, Visitor};
use zeroize::Zeroizing;

use crate::keys::key_config::HashicorpKeyConfig;
use crate::keys::secret::SecretKey;
use crate::tls;

/// Environment variable holding a Vault token (used when no token file is given).
pub const TOKEN_ENV: &str = "DVSIGNER_VAULT_TOKEN";

/// Errors talking to Vault or decoding a key from it. Messages name paths, never secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `keyPath` that is not a KV v2 data path.
    #[error("keyPath {0} is not a kv v2 data path (/v1/<mount>/data/<path>)")]
    KeyPath(String),
    /// The server URL is not a valid `http(s)://host:port` URL.
    #[error("invalid vault url {0}")]
    Url(String),
    /// The TLS settings could not be turned into a client configuration.
    #[error("vault tls configuration for {url}: {source}")]
    Tls {
        /// The server.
        url: String,
        /// The cause.
        source: tls::Error,
    },
    /// The known-servers file does not list this server.
    #[error("known-servers file {file} has no entry for {server}")]
    NotKnownServer {
        /// The file.
        file: PathBuf,
        /// `host:port`.
        server: String,
    },
    /// The HTTP client could not be built.
    #[error("vault http client: {0}")]
    Client(String),
    /// No token was configured.
    #[error("no vault token for {path}: give a token (file) or set {TOKEN_ENV}")]
    NoToken {
        /// What needed the token.
        path: String,
    },
    /// A token, role-id, secret-id or service-account token file could not be read or is empty.
    #[error("cannot read vault credential file {path}: {reason}")]
    CredentialFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// The authentication method is not supported.
    #[error("vault authMethod {0:?} not supported (only TOKEN)")]
    UnsupportedAuth(String),
    /// The server could not be reached or did not answer in time.
    #[error("vault at {url} unreachable while reading {path}: {reason}")]
    Unreachable {
        /// The server.
        url: String,
        /// The secret path (or login path).
        path: String,
        /// The transport error.
        reason: String,
    },
    /// Vault refused the token (403: invalid token or policy without read access).
    #[error("vault at {url} denied access to {path} (http 403): token invalid or not allowed to read it")]
    Denied {
        /// The server.
        url: String,
        /// The secret path.
        path: String,
    },
    /// The secret does not exist (404).
    #[error("secret {path} not found in vault at {url}")]
    NotFound {
        /// The server.
        url: String,
        /// The secret path.
        path: String,
    },
    /// Any other HTTP error status from Vault.
    #[error("vault at {url} answered http {code} for {path}")]
    Status {
        /// The server.
        url: String,
        /// The secret path.
        path: String,
        /// The HTTP status.
        code: u16,
    },
    /// The response is not a KV v2 answer.
    #[error("vault at {url} sent an unexpected response for {path}")]
    BadResponse {
        /// The server.
        url: String,
        /// The secret path.
        path: String,
    },
    /// An AppRole or Kubernetes login failed.
    #[error("vault {method} login at {url}/v1/auth/{mount}/login failed: {reason}")]
    Login {
        /// `approle` or `kubernetes`.
        method: &'static str,
        /// The server.
        url: String,
        /// The auth mount.
        mount: String,
        /// Status or transport problem, and for Kubernetes the role (never the credentials).
        reason: String,
    },
    /// The secret has no field with the key's name.
    #[error("secret {path} has no string field `{field}`")]
    MissingField {
        /// The secret path.
        path: String,
        /// The expected field.
        field: String,
    },
    /// The field is not 32 bytes of hex.
    #[error("field `{field}` of secret {path} is not a 32-byte hex bls key")]
    Malformed {
        /// The secret path.
        path: String,
        /// The field.
        field: String,
    },
    /// The 32 bytes are not a valid BLS secret key.
    #[error("field `{field}` of secret {path} is not a valid bls secret key (zero or >= r)")]
    InvalidScalar {
        /// The secret path.
        path: String,
        /// The field.
        field: String,
    },
    /// The bulk folder lists no secrets.
    #[error("vault at {url} lists no secrets under {path}")]
    EmptyFolder {
        /// The server.
        url: String,
        /// The metadata path listed.
        path: String,
    },
    /// The helper thread running the Vault client failed.
    #[error("vault client thread: {0}")]
    Runtime(String),
}

/// A Vault token (or AppRole secret id), zeroized on drop, redacted in `Debug`.
pub struct VaultToken(Zeroizing<String>);

impl VaultToken {
    /// Wraps a token value (already read from a file or the environment).
    pub fn new(token: Zeroizing<String>) -> Self {
        Self(token)
    }

    /// Reads a token file: the first line, trimmed.
    ///
    /// # Errors
    /// [`Error::CredentialFile`] when unreadable or empty.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let fail = |reason: String| Error::CredentialFile {
            path: path.to_owned(),
            reason,
        };
        let raw = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
        let first = raw.lines().next().unwrap_or("").trim();
        if first.is_empty() {
            return Err(fail("empty".into()));
        }
        Ok(Self(Zeroizing::new(first.to_owned())))
    }

    /// Reads [`TOKEN_ENV`]; `None` when unset or empty.
    pub fn from_env() -> Option<Self> {
        let value = Zeroizing::new(std::env::var(TOKEN_ENV).ok()?);
        let trimmed = value.trim();
        (!trimmed.is_empty()).then(|| Self(Zeroizing::new(trimmed.to_owned())))
    }

    fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for VaultToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultToken(..)")
    }
}

/// Kubernetes auth method login: the pod's service-account token (a JWT) is exchanged for a
/// Vault token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesAuth {
    /// The auth mount (usually `kubernetes`), without slashes.
    pub mount: String,
    /// The Vault role.
    pub role: String,
    /// The service-account token file, read at each login.
    pub jwt_file: PathBuf,
}

/// How to authenticate to Vault.
#[derive(Debug)]
pub enum VaultAuth {
    /// A token sent as is.
    Token(VaultToken),
    /// AppRole login (`POST /v1/auth/<mount>/login`); the returned client token is used.
    AppRole {
        /// The auth mount (usually `approle`).
        mount: String,
        /// The role id.
        role_id: VaultToken,
        /// The secret id.
        secret_id: VaultToken,
    },
    /// Kubernetes login; the returned client token is cached with its lease.
    Kubernetes(KubernetesAuth),
}

/// How the Vault server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultTls {
    /// Plain HTTP (`tlsEnabled: false`); only sensible on loopback.
    Disabled,
    /// The certificate chains to this CA file (host name checked).
    Ca(PathBuf),
    /// The certificate has one of these SHA-256 fingerprints (Web3Signer known-servers file).
    Pinned(Vec<tls::Fingerprint>),
}

/// Where the Vault server is.
#[derive(Debug, Clone)]
pub struct VaultServer {
    /// `https://host:port` (or `http://` with [`VaultTls::Disabled`]), without a path.
    pub url: String,
    /// Certificate checking.
    pub tls: VaultTls,
    /// Timeout of each request.
    pub timeout: Duration,
}

/// Bulk mode: every secret directly under `folder` in the KV v2 engine at `mount`.
#[derive(Debug)]
pub struct VaultBulkSource {
    /// The server.
    pub server: VaultServer,
    /// Authentication.
    pub auth: VaultAuth,
    /// KV v2 mount (e.g. `secret`).
    pub mount: String,
    /// Folder inside the mount (e.g. `validators`; empty for the mount's root).
    pub folder: String,
    /// Field of each secret that holds the hex key (Web3Signer's default `value`).
    pub key_name: String,
}

/// A key read in bulk mode, with the KV v2 path it came from.
#[derive(Debug)]
pub struct VaultKey {
    /// `/v1/<mount>/data/<path>`.
    pub path: String,
    /// The key.
    pub secret: SecretKey,
}

/// An authenticated connection to one Vault server.
pub struct VaultConnection {
    client: vaultrs::client::VaultClient,
    url: String,
    /// The `LOGINS` entry whose token this connection reuses, when it reuses one.
    cached: Option<LoginKey>,
}

/// Identifies a cached Kubernetes login.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LoginKey {
    url: String,
    mount: String,
    role: String,
    jwt_file: PathBuf,
}

/// A Vault token from a Kubernetes login and its lease.
struct CachedLogin {
    token: Zeroizing<String>,
    obtained: std::time::Instant,
    lease: Duration,
}

impl CachedLogin {
    /// Usable while more than a third of the lease is left.
    fn fresh(&self) -> bool {
        self.obtained.elapsed() < self.lease.saturating_mul(2) / 3
    }
}

/// Kubernetes logins of this process, reused across read sessions (start, `/reload`, each
/// key-config file) while fresh. Holds at most one entry per server, mount, role and token file.
static LOGINS: std::sync::Mutex<std::collections::BTreeMap<LoginKey, CachedLogin>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn logins() -> std::sync::MutexGuard<'static, std::collections::BTreeMap<LoginKey, CachedLogin>> {
    // A panic while holding the lock cannot leave the map inconsistent (single inserts/removes).
    LOGINS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads a service-account token file: its content, trimmed.
fn read_jwt(path: &Path) -> Result<Zeroizing<String>, Error> {
    let fail = |reason: String| Error::CredentialFile {
        path: path.to_owned(),
        reason,
    };
    let raw = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
    let jwt = raw.trim();
    if jwt.is_empty() {
        return Err(fail("empty".into()));
    }
    Ok(Zeroizing::new(jwt.to_owned()))
}

impl fmt::Debug for VaultConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultConnection")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The KV v2 HTTP path of a secret, as errors name it.
pub fn data_path(mount: &str, path: &str) -> String {
    format!("/v1/{mount}/data/{path}")
}

/// Splits a Web3Signer `keyPath` (`/v1/<mount>/data/<path>`) into mount and secret path.
///
/// # Errors
/// [`Error::KeyPath`] for any other shape.
pub fn split_key_path(key_path: &str) -> Result<(String, String), Error> {
    let bad = || Error::KeyPath(key_path.to_owned());
    let rest = key_path
        .strip_prefix("/v1/")
        .or_else(|| key_path.strip_prefix("v1/"))
        .ok_or_else(bad)?;
    let (mount, path) = rest.split_once("/data/").ok_or_else(bad)?;
    if mount.is_empty() || path.is_empty() || path.ends_with('/') {
        return Err(bad());
    }
    Ok((mount.to_owned(), path.to_owned()))
}

impl VaultConnection {
    /// Builds the HTTP client and authenticates (for AppRole, by logging in).
    ///
    /// # Errors
    /// [`Error::Url`], [`Error::Tls`], [`Error::Client`], and for AppRole [`Error::Login`].
    pub async fn connect(server: &VaultServer, auth: &VaultAuth) -> Result<Self, Error> {
        let url = server.url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&url).map_err(|_| Error::Url(url.clone()))?;
        let mut builder = reqwest::Client::builder()
            .timeout(server.timeout)
            .connect_timeout(server.timeout)
            .redirect(reqwest::redirect::Policy::none());
        builder = match (&server.tls, parsed.scheme()) {
            (VaultTls::Disabled, "http") => builder,
            (VaultTls::Ca(ca), "https") => {
                builder.use_preconfigured_tls(client_tls(&url, Some(ca.clone()), Vec::new())?)
            }
            (VaultTls::Pinned(pins), "https") => {
                builder.use_preconfigured_tls(client_tls(&url, None, pins.clone())?)
            }
            _ => return Err(Error::Url(url)),
        };
        let http = builder.build().map_err(|e| Error::Client(e.to_string()))?;
        let settings = vaultrs::client::VaultClientSettingsBuilder::default()
            .address(url.as_str())
            .token("")
            .ca_certs(Vec::new())
            .verify(true)
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        let middle = vaultrs::api::EndpointMiddleware {
            token: String::new(),
            version: "v1".to_owned(),
            wrap: None,
            namespace: None,
        };
        let client = vaultrs::client::VaultClient {
            http: rustify::clients::reqwest::Client::new(&url, http),
            middle,
            settings,
        };
        let mut conn = Self {
            client,
            url,
            cached: None,
        };
        conn.authenticate(auth).await?;
        Ok(conn)
    }

    /// Runs `session` on a new authenticated connection. When the connection reused a cached
    /// Kubernetes login and Vault refused it (403), the login is forgotten and `session` runs
    /// once more on a connection with a fresh login.
    ///
    /// # Errors
    /// As [`VaultConnection::connect`] and `session`.
    pub async fn with_session<T>(
        server: &VaultServer,
        auth: &VaultAuth,
        session: impl AsyncFn(&VaultConnection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let conn = Self::connect(server, auth).await?;
        match session(&conn).await {
            Err(Error::Denied { .. }) if conn.cached.is_some() => {
                if let Some(key) = &conn.cached {
                    logins().remove(key);
                }
                tracing::info!(url = %conn.url, "vault: cached login refused, logging in again");
                let conn = Self::connect(server, auth).await?;
                session(&conn).await
            }
            result => result,
        }
    }

    async fn authenticate(&mut self, auth: &VaultAuth) -> Result<(), Error> {
        use vaultrs::client::Client;
        match auth {
            VaultAuth::Token(token) => self.client.set_token(token.expose_secret()),
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let login = vaultrs::auth::approle::login(
                    &self.client,
                    mount,
                    role_id.expose_secret(),
                    secret_id.expose_secret(),
                )
                .await
                .map_err(|e| Error::Login {
                    method: "approle",
                    url: self.url.clone(),
                    mount: mount.clone(),
                    reason: failure_reason(e),
                })?;
                let token = Zeroizing::new(login.client_token);
                self.client.set_token(&token);
            }
            VaultAuth::Kubernetes(k) => {
                let key = LoginKey {
                    url: self.url.clone(),
                    mount: k.mount.clone(),
                    role: k.role.clone(),
                    jwt_file: k.jwt_file.clone(),
                };
                {
                    let mut cache = logins();
                    match cache.get(&key) {
                        Some(login) if login.fresh() => {
                            self.client.set_token(&login.token);
                            self.cached = Some(key);
                            return Ok(());
                        }
                        Some(_) => {
                            cache.remove(&key);
                        }
                        None => {}
                    }
                }
                let jwt = read_jwt(&k.jwt_file)?;
                let obtained = std::time::Instant::now();
                let login = vaultrs::auth::kubernetes::login(&self.client, &k.mount, &k.role, &jwt)
                    .await
                    .map_err(|e| Error::Login {
                        method: "kubernetes",
                        url: self.url.clone(),
                        mount: k.mount.clone(),
                        reason: format!("{} (role {})", failure_reason(e), k.role),
                    })?;
                let token = Zeroizing::new(login.client_token);
                self.client.set_token(&token);
                tracing::info!(
                    url = %self.url,
                    mount = %k.mount,
                    role = %k.role,
                    lease_seconds = login.lease_duration,
                    "vault: kubernetes login"
                );
                if login.lease_duration > 0 {
                    logins().insert(
                        key,
                        CachedLogin {
                            token,
                            obtained,
                            lease: Duration::from_secs(login.lease_duration),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Reads one secret and decodes the hex key in its field `key_name`.
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Denied`], [`Error::NotFound`], [`Error::Status`],
    /// [`Error::BadResponse`], [`Error::MissingField`], [`Error::Malformed`],
    /// [`Error::InvalidScalar`], each naming the secret's KV v2 path.
    pub async fn read_key(
        &self,
        mount: &str,
        path: &str,
        key_name: &str,
    ) -> Result<SecretKey, Error> {
        let full = data_path(mount, path);
        let fields: SecretFields = vaultrs::kv2::read(&self.client, mount, path)
            .await
            .map_err(|e| self.request_error(&full, e))?;
        let Some(hex_key) = fields
            .0
            .into_iter()
            .find(|(k, _)| k == key_name)
            .map(|x| x.1)
        else {
            return Err(Error::MissingField {
                path: full,
                field: key_name.to_owned(),
            });
        };
        let digits = hex_key.trim();
        let digits = digits.strip_prefix("0x").unwrap_or(digits);
        let mut bytes = Zeroizing::new([0u8; 32]);
        if hex::decode_to_slice(digits, bytes.as_mut()).is_err() {
            return Err(Error::Malformed {
                path: full,
                field: key_name.to_owned(),
            });
        }
        SecretKey::from_bytes(&bytes).map_err(|_| Error::InvalidScalar {
            path: full,
            field: key_name.to_owned(),
        })
    }

    /// Lists the secret names (folders excluded) directly under `folder`.
    ///
    /// # Errors
    /// As [`VaultConnection::read_key`], naming the metadata path.
    pub async fn list(&self, mount: &str, folder: &str) -> Result<Vec<String>, Error> {
        let full = format!("/v1/{mount}/metadata/{folder}");
        let names = vaultrs::kv2::list(&self.client, mount, folder)
            .await
            .map_err(|e| self.request_error(&full, e))?;
        Ok(names.into_iter().filter(|n| !n.ends_with('/')).collect())
    }

    fn request_error(&self, path: &str, e: vaultrs::error::ClientError) -> Error {
        let (url, path) = (self.url.clone(), path.to_owned());
        match classify(e) {
            Failure::Status(403) => Error::Denied { url, path },
            Failure::Status(404) => Error::NotFound { url, path },
            Failure::Status(code) => Error::Status { url, path, code },
            Failure::Transport(reason) => Error::Unreachable { url, path, reason },
            Failure::Response => Error::BadResponse { url, path },
        }
    }
}

enum Failure {
    Status(u16),
    Transport(String),
    Response,
}

/// A login failure as it may be logged: the status, the transport problem, or "unexpected
/// response".
fn failure_reason(e: vaultrs::error::ClientError) -> String {
    match classify(e) {
        Failure::Status(code) => format!("http {code}"),
        Failure::Transport(reason) => reason,
        Failure::Response => "unexpected response".into(),
    }
}

/// Reduces a `vaultrs` error to what may be logged: a status code or a transport problem. Vault's
/// error texts and response bodies are dropped (a body could echo a secret).
fn classify(e: vaultrs::error::ClientError) -> Failure {
    use rustify::errors::ClientError as Rest;
    use vaultrs::error::ClientError as Vault;
    match e {
        Vault::APIError { code, .. } => Failure::Status(code),
        Vault::RestClientError { source } => match source {
            Rest::ServerResponseError { code, .. } => Failure::Status(code),
            Rest::RequestError { source, .. } => {
                let inner: &(dyn std::error::Error + Send + Sync + 'static) = source.as_ref();
                Failure::Transport(transport_reason(inner))
            }
            Rest::ReqwestBuildError { source } => Failure::Transport(transport_reason(&source)),
            Rest::RequestBuildError { .. } | Rest::UrlBuildError { .. } => {
                Failure::Transport("invalid request url".into())
            }
            _ => Failure::Response,
        },
        _ => Failure::Response,
    }
}

/// A short transport reason (connection refused, timeout, TLS failure) from reqwest's error chain.
fn transport_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

fn client_tls(
    url: &str,
    ca: Option<PathBuf>,
    pinned: Vec<tls::Fingerprint>,
) -> Result<rustls::ClientConfig, Error> {
    tls::client_config(tls::ClientTlsOptions {
        ca,
        pinned,
        identity: None,
    })
    .map_err(|source| Error::Tls {
        url: url.to_owned(),
        source,
    })
}

/// `data.data` of a KV v2 secret: string fields kept in zeroizing strings, other fields ignored.
struct SecretFields(Vec<(String, Zeroizing<String>)>);

impl<'de> serde::Deserialize<'de> for SecretFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = SecretFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of secret fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretFields, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    match map.next_value::<FieldValue>()? {
                        FieldValue::Text(v) => out.push((key, v)),
                        FieldValue::Other => {}
                    }
                }
                Ok(SecretFields(out))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

enum FieldValue {
    Text(Zeroizing<String>),
    Other,
}

impl<'de> serde::Deserialize<'de> for FieldValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = FieldValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret field")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FieldValue, E> {
                Ok(FieldValue::Text(Zeroizing::new(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<FieldValue, E> {
                Ok(FieldValue::Text(Zeroizing::new(v)))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<FieldValue, E> {
                Ok(FieldValue::Other)
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<FieldValue, E> {
                Ok(FieldValue::Other)
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<FieldValue, E> {
                Ok(FieldValue::Other)
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<FieldValue, E> {
                Ok(FieldValue::Other)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<FieldValue, E> {
                Ok(FieldValue::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FieldValue, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(FieldValue::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldValue, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(FieldValue::Other)
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// Loads every key of a bulk source. All-or-nothing: a node configured with a Vault folder
/// refuses to start with part of it.
///
/// # Errors
/// The first failure (login, listing, any secret), naming its path; [`Error::EmptyFolder`] when
/// the folder lists no secrets.
pub async fn load_bulk(source: &VaultBulkSource) -> Result<Vec<VaultKey>, Error> {
    VaultConnection::with_session(&source.server, &source.auth, async |conn| {
        bulk_session(conn, source).await
    })
    .await
}

async fn bulk_session(
    conn: &VaultConnection,
    source: &VaultBulkSource,
) -> Result<Vec<VaultKey>, Error> {
    let folder = source.folder.trim_matches('/');
    let names = conn.list(&source.mount, folder).await?;
    if names.is_empty() {
        return Err(Error::EmptyFolder {
            url: conn.url.clone(),
            path: format!("/v1/{}/metadata/{folder}", source.mount),
        });
    }
    let mut keys = Vec::with_capacity(names.len());
    for name in names {
        let path = if folder.is_empty() {
            name
        } else {
            format!("{folder}/{name}")
        };
        let secret = conn
            .read_key(&source.mount, &path, &source.key_name)
            .await?;
        keys.push(VaultKey {
            path: data_path(&source.mount, &path),
            secret,
        });
    }
    Ok(keys)
}

/// The server and TLS settings a Web3Signer `hashicorp` document describes.
///
/// With `tlsEnabled` and a `tlsKnownServersPath`, the server's certificate must have the
/// fingerprint listed for `serverHost:serverPort`; without a known-servers file, it must chain
/// to the CA in the `VAULT_CACERT` environment variable (Vault's own CLI variable).
///
/// # Errors
/// [`Error::NotKnownServer`], [`Error::Tls`] for an unreadable known-servers file, or a missing
/// CA.
pub fn key_config_server(cfg: &HashicorpKeyConfig) -> Result<VaultServer, Error> {
    let host_port = format!("{}:{}", cfg.server_host, cfg.server_port);
    let (scheme, tls_mode) = if !cfg.tls_enabled {
        ("http", VaultTls::Disabled)
    } else if let Some(file) = &cfg.tls_known_servers_path {
        let known = tls::load_allowed_clients(file).map_err(|source| Error::Tls {
            url: format!("https://{host_port}"),
            source,
        })?;
        let fp = known.get(&host_port).ok_or_else(|| Error::NotKnownServer {
            file: file.clone(),
            server: host_port.clone(),
        })?;
        ("https", VaultTls::Pinned(vec![*fp]))
    } else {
        match std::env::var_os("VAULT_CACERT") {
            Some(ca) if !ca.is_empty() => ("https", VaultTls::Ca(PathBuf::from(ca))),
            _ => {
                return Err(Error::Tls {
                    url: format!("https://{host_port}"),
                    source: tls::Error::NoServerTrust,
                })
            }
        }
    };
    Ok(VaultServer {
        url: format!("{scheme}://{host_port}"),
        tls: tls_mode,
        timeout: cfg.timeout,
    })
}

/// Reads the key a `hashicorp` key-config document names. Blocking: runs the async client on a
/// private single-thread runtime in a helper thread, so it may be called from any thread
/// (including the blocking key loaders and `/reload`).
///
/// # Errors
/// As [`key_config_server`], [`VaultConnection::connect`] and [`VaultConnection::read_key`];
/// [`Error::NoToken`] when the document has neither `token` nor `authMethod: KUBERNETES` and
/// [`TOKEN_ENV`] is unset.
pub fn read_key_config_blocking(cfg: &HashicorpKeyConfig) -> Result<SecretKey, Error> {
    let (mount, path) = split_key_path(&cfg.key_path)?;
    let server = key_config_server(cfg)?;
    let auth = match (&cfg.kubernetes, &cfg.token) {
        (Some(k), _) => VaultAuth::Kubernetes(KubernetesAuth {
            mount: k.auth_path.clone(),
            role: k.role.clone(),
            jwt_file: k.service_account_token_path.clone(),
        }),
        (None, Some(t)) => VaultAuth::Token(VaultToken(Zeroizing::new(String::clone(t)))),
        (None, None) => VaultAuth::Token(VaultToken::from_env().ok_or_else(|| Error::NoToken {
            path: cfg.key_path.clone(),
        })?),
    };
    block_on(|| {
        VaultConnection::with_session(&server, &auth, async |conn| {
            conn.read_key(&mount, &path, &cfg.key_name).await
        })
    })
}

/// [`load_bulk`] for blocking callers (the key loaders and `/reload`), as
/// [`read_key_config_blocking`].
///
/// # Errors
/// As [`load_bulk`].
pub fn load_bulk_blocking(source: &VaultBulkSource) -> Result<Vec<VaultKey>, Error> {
    block_on(|| load_bulk(source))
}

/// Runs the future `make` returns on a private single-thread runtime in a helper thread, so
/// that it may be called from any thread, inside a runtime's blocking pool or outside any
/// runtime.
fn block_on<T, F>(make: impl FnOnce() -> F + Send) -> Result<T, Error>
where
    T: Send,
    F: std::future::Future<Output = Result<T, Error>>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Runtime(e.to_string()))?;
                rt.block_on(make())
            })
            .join()
            .map_err(|_| Error::Runtime("vault client thread panicked".into()))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_path_split() {
        assert_eq!(
            split_key_path("/v1/secret/data/validator-1").ok(),
            Some(("secret".to_owned(), "validator-1".to_owned()))
        );
        assert_eq!(
            split_key_path("/v1/kv/team/data/a/b").ok(),
            Some(("kv/team".to_owned(), "a/b".to_owned()))
        );
        for bad in [
            "/v1/secret/validator-1",
            "secret/data/x",
            "/v1//data/x",
            "/v1/s/data/",
        ] {
            assert!(
                matches!(split_key_path(bad), Err(Error::KeyPath(p)) if p == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn secret_fields_keep_strings_and_skip_others() {
        let f: SecretFields = serde_json::from_str(
            r#"{"value":"0xabc","n":1,"b":true,"o":{"x":[1,2]},"l":["a"],"z":null}"#,
        )
        .expect("parses");
        assert_eq!(f.0.len(), 1);
        assert_eq!(f.0[0].0, "value");
        assert_eq!(f.0[0].1.as_str(), "0xabc");
    }

    #[test]
    fn token_file_and_debug() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t");
        std::fs::write(&p, "s.hunter2\n").expect("write");
        let t = VaultToken::from_file(&p).expect("read");
        assert_eq!(t.expose_secret(), "s.hunter2");
        assert!(!format!("{t:?}").contains("hunter2"));
        std::fs::write(&p, "\n").expect("write");
        assert!(matches!(
            VaultToken::from_file(&p),
            Err(Error::CredentialFile { .. })
        ));
    }

    #[test]
    fn error_is_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
