//! The standard Keymanager API's local-keystore routes (`GET|POST|DELETE /eth/v1/keystores`),
//! as Web3Signer serves them, but with bearer-token authentication enforced.
//!
//! Spec: <https://github.com/ethereum/keymanager-APIs> (`apis/local_keystores.yaml`), EIP-2335
//! keystores, EIP-3076 slashing-protection interchange; Web3Signer behaviour in
//! `docs/web3signer-compatibility.md` ("Keymanager API"). Responses are JSON; errors are
//! `{"message": …}` with 400 (bad body), 401 (no bearer token), 403 (wrong token), 404 (API not
//! enabled) and 500 (details logged, not sent).
//!
//! Invariants:
//! - Every request is authenticated before its body is read; tokens compare in constant time and
//!   are never logged.
//! - Import is ordered so that a key signs only with its history in place: decrypt, import the
//!   interchange for the keys being imported (all or nothing; on failure nothing is written),
//!   persist keystore + password (0600), enable in the slashing DB, then add to the key store.
//! - Delete first makes the key unusable (removed from the store and disabled in memory, so no
//!   sign type can use it), waits briefly for signatures already running, disables it in the
//!   slashing DB, persists the disabled list, deletes the imported files, and only then exports
//!   the history: the export contains every message the key signed here.
//! - Import, delete and `/reload` are serialised by `NodeState::key_ops`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rayon::prelude::*;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::NodeState;
use crate::bls::PublicKeyBytes;
use crate::keys::keystore::{write_private, Error as KeystoreError};
use crate::keys::managed::ManagedKeys;
use crate::keys::{KeyOrigin, Keystore, LoadedKey, Password, SecretKey};
use crate::slashing::interchange::{Hash256, Interchange, Metadata, FORMAT_VERSION};

/// Path of the routes.
pub const KEYSTORES_PATH: &str = "/eth/v1/keystores";

/// Name of the generated token file in the data directory.
pub const TOKEN_FILE_NAME: &str = "keymanager-token";

/// How long a delete waits for signatures that had already looked the key up.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(2);

/// Errors setting up the Keymanager API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token file could not be read or written.
    #[error("keymanager token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The token file's first line is empty.
    #[error("keymanager token file {0} is empty")]
    EmptyToken(String),
}

/// The Keymanager API's bearer token (zeroized on drop, never printed).
pub struct AuthToken(Zeroizing<String>);

impl AuthToken {
    /// Reads the token: the first line of `path`, without its line ending.
    ///
    /// # Errors
    /// [`Error::TokenFile`] when unreadable, [`Error::EmptyToken`] when empty.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let password = Password::from_file(path).map_err(|e| Error::TokenFile {
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let token = password.expose_secret().trim();
        if token.is_empty() {
            return Err(Error::EmptyToken(path.display().to_string()));
        }
        Ok(Self(Zeroizing::new(token.to_owned())))
    }

    /// Reads `path` if it exists, else writes a new random token (32 bytes, hex) to it with
    /// mode 0600.
    ///
    /// # Errors
    /// [`Error::TokenFile`], [`Error::EmptyToken`].
    pub fn load_or_generate(path: &Path) -> Result<Self, Error> {
        if path.exists() {
            return Self::from_file(path);
        }
        use rand::RngCore;
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(raw.as_mut());
        let token = Zeroizing::new(hex::encode(raw.as_ref()));
        write_private(path, token.as_bytes()).map_err(|e| Error::TokenFile {
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self(token))
    }

    /// Constant-time comparison with a presented token.
    fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(..)")
    }
}

/// The enabled Keymanager API: its token and where imported keys are kept.
#[derive(Debug)]
pub struct Keymanager {
    token: AuthToken,
    storage: ManagedKeys,
}

impl Keymanager {
    /// The API with `token`, persisting imported keys in `storage`.
    pub fn new(token: AuthToken, storage: ManagedKeys) -> Self {
        Self { token, storage }
    }
}

fn message(status: StatusCode, message: impl Into<String>) -> Response {
    json_ok_with(status, &json!({ "message": message.into() }))
}

/// A request refused before any work: status and the message sent as `{"message": …}`.
struct Reject(StatusCode, String);

impl Reject {
    fn response(self) -> Response {
        message(self.0, self.1)
    }
}

fn json_ok_with(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn internal(context: &str, error: impl fmt::Display) -> Response {
    tracing::error!(%error, "keymanager: {context}");
    message(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// The enabled API after checking the bearer token, or the error response.
fn authorize<'a>(state: &'a NodeState, headers: &HeaderMap) -> Result<&'a Keymanager, Reject> {
    let Some(km) = state.keymanager.get() else {
        return Err(Reject(
            StatusCode::NOT_FOUND,
            "the keymanager API is not enabled (--keymanager-api)".into(),
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match presented {
        None => Err(Reject(
            StatusCode::UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer <token>)".into(),
        )),
        Some(token) if km.token.matches(token.as_bytes()) => Ok(km),
        Some(_) => Err(Reject(StatusCode::FORBIDDEN, "invalid bearer token".into())),
    }
}

/// `GET /eth/v1/keystores`.
pub(super) async fn list(State(state): State<Arc<NodeState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r.response();
    }
    let entries = state.keys.entries();
    let listed = tokio::task::spawn_blocking(move || {
        entries
            .into_iter()
            .map(|(pk, origin)| {
                let mut item = json!({
                    "validating_pubkey": pk.to_hex(),
                    "readonly": readonly(&origin),
                });
                if let Some(path) = derivation_path(&origin) {
                    item["derivation_path"] = Value::from(path);
                }
                item
            })
            .collect::<Vec<_>>()
    })
    .await;
    match listed {
        Ok(data) => json_ok_with(StatusCode::OK, &json!({ "data": data })),
        Err(e) => internal("listing keys", e),
    }
}

/// Whether the API may not delete a key of this origin. Every origin here can be deleted: the
/// key is disabled and dropped from memory, and only files the API wrote itself are removed.
fn readonly(origin: &KeyOrigin) -> bool {
    match origin {
        KeyOrigin::Keystore { .. }
        | KeyOrigin::KeyConfig { .. }
        | KeyOrigin::Imported { .. }
        | KeyOrigin::Vault { .. }
        | KeyOrigin::Hsm { .. } => false,
    }
}

/// The keystore's EIP-2334 path when the key came straight from a keystore file.
fn derivation_path(origin: &KeyOrigin) -> Option<String> {
    let (KeyOrigin::Keystore { path } | KeyOrigin::Imported { path }) = origin else {
        return None;
    };
    let text = std::fs::read_to_string(path).ok()?;
    let ks = Keystore::from_json(&text).ok()?;
    Some(ks.path().to_owned()).filter(|p| !p.is_empty())
}

/// A password from a request body, moved straight into [`Password`].
struct PasswordField(Password);

impl<'de> Deserialize<'de> for PasswordField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self(Password::new(s)))
    }
}

/// `POST` body. Incoming requests tolerate unknown fields.
#[derive(Deserialize)]
struct ImportRequest {
    keystores: Vec<String>,
    passwords: Vec<PasswordField>,
    /// EIP-3076 JSON as a string (current spec) or, leniently, as an object (older drafts).
    #[serde(default)]
    slashing_protection: Option<Value>,
}

/// `DELETE` body.
#[derive(Deserialize)]
struct DeleteRequest {
    pubkeys: Vec<String>,
}

/// Parses a JSON body; if the body buffer is not shared, it is zeroized afterwards (it may hold
/// passwords).
fn parse_body<T: for<'de> Deserialize<'de>>(body: Bytes) -> Result<T, Reject> {
    let parsed = serde_json::from_slice::<T>(&body).map_err(|e| {
        Reject(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e}"),
        )
    });
    if let Ok(mut owned) = body.try_into_mut() {
        zeroize::Zeroize::zeroize(&mut owned[..]);
    }
    parsed
}

/// The enabled API after checking the bearer token ([`authorize`]), and the parsed body
/// ([`parse_body`]): the token is checked before the body is read.
fn authorized_body<'a, T: for<'de> Deserialize<'de>>(
    state: &'a NodeState,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(&'a Keymanager, T), Reject> {
    let km = authorize(state, headers)?;
    Ok((km, parse_body(body)?))
}

/// Result of one keystore of an import before anything is written.
enum Decrypted {
    Failed(String),
    Duplicate,
    Ready(Box<SecretKey>),
}

/// `POST /eth/v1/keystores`.
pub(super) async fn import(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (km, request): (_, ImportRequest) = match authorized_body(&state, &headers, body) {
        Ok(parts) => parts,
        Err(r) => return r.response(),
    };
    if request.keystores.len() != request.passwords.len() {
        return message(
            StatusCode::BAD_REQUEST,
            format!(
                "{} keystores but {} passwords",
                request.keystores.len(),
                request.passwords.len()
            ),
        );
    }
    let interchange = match request.slashing_protection {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(v @ Value::Object(_)) => Some(v.to_string()),
        Some(_) => {
            return message(
                StatusCode::BAD_REQUEST,
                "slashing_protection must be an EIP-3076 JSON string",
            )
        }
    };
    let interchange: Option<Interchange> = match interchange.as_deref().map(serde_json::from_str) {
        None => None,
        Some(Ok(doc)) => Some(doc),
        Some(Err(e)) => {
            return message(
                StatusCode::BAD_REQUEST,
                format!("invalid slashing_protection interchange: {e}"),
            )
        }
    };
    if request.keystores.is_empty() {
        return json_ok_with(StatusCode::OK, &json!({ "data": [] }));
    }
    let _ops = state.key_ops.lock().await;
    let Some(db) = state.slashing.clone() else {
        return internal("import", "slashing protection is off");
    };

    // 1. Decrypt in parallel (the KDF is slow by design), off the async threads and off the
    //    signing pool.
    let keys = Arc::clone(&state.keys);
    let keystores = request.keystores;
    let passwords: Vec<Password> = request.passwords.into_iter().map(|p| p.0).collect();
    let jobs: Vec<(String, Password)> = keystores.into_iter().zip(passwords).collect();
    let decrypted = tokio::task::spawn_blocking(move || {
        let outcomes: Vec<(String, Password, Decrypted)> = jobs
            .into_par_iter()
            .map(|(text, password)| {
                let outcome = decrypt_one(&keys, &text, &password);
                (text, password, outcome)
            })
            .collect();
        outcomes
    })
    .await;
    let mut decrypted = match decrypted {
        Ok(d) => d,
        Err(e) => return internal("decrypting keystores", e),
    };
    // A key twice in one request is imported once.
    let mut seen = BTreeSet::new();
    for (_, _, outcome) in &mut decrypted {
        if let Decrypted::Ready(sk) = outcome {
            if !seen.insert(sk.public_key().bytes()) {
                *outcome = Decrypted::Duplicate;
            }
        }
    }

    // 2. The interchange for the keys being imported, all or nothing.
    if let Some(mut doc) = interchange {
        doc.data.retain(|v| seen.contains(&v.pubkey));
        // invariant: a parsed interchange always serializes.
        let text = serde_json::to_string(&doc).expect("interchange serializes");
        if let Err(e) = db.import_interchange(&text).await {
            return message(
                StatusCode::BAD_REQUEST,
                format!("slashing_protection not imported (no key was imported): {e}"),
            );
        }
    }

    // 3. Persist, enable, add.
    let mut data = Vec::with_capacity(decrypted.len());
    let mut disabled_changed = false;
    for (text, password, outcome) in decrypted {
        let entry = match outcome {
            Decrypted::Failed(m) => json!({"status": "error", "message": m}),
            Decrypted::Duplicate => json!({"status": "duplicate", "message": ""}),
            Decrypted::Ready(sk) => {
                let pk = sk.public_key().bytes();
                match add_key(&state, km, &db, *sk, &text, &password).await {
                    Ok(was_disabled) => {
                        disabled_changed |= was_disabled;
                        tracing::info!(pubkey = %pk, "keymanager: key imported");
                        json!({"status": "imported", "message": ""})
                    }
                    Err(m) => json!({"status": "error", "message": m}),
                }
            }
        };
        data.push(entry);
    }
    if disabled_changed {
        if let Err(e) = km.storage.save_disabled(&state.keys.disabled()) {
            return internal("saving the disabled-keys list", e);
        }
    }
    json_ok_with(StatusCode::OK, &json!({ "data": data }))
}

fn decrypt_one(keys: &crate::keys::KeyStore, text: &str, password: &Password) -> Decrypted {
    let keystore = match Keystore::from_json(text) {
        Ok(k) => k,
        Err(e) => return Decrypted::Failed(format!("invalid keystore: {e}")),
    };
    let active = |pk: &PublicKeyBytes| keys.contains(pk) && !keys.is_disabled(pk);
    if keystore.pubkey().is_some_and(|pk| active(&pk)) {
        return Decrypted::Duplicate;
    }
    match keystore.decrypt(password) {
        Ok(sk) if active(&sk.public_key().bytes()) => Decrypted::Duplicate,
        Ok(sk) => Decrypted::Ready(Box::new(sk)),
        // The password was right but the file is forged or corrupt: say so, not "decrypt".
        Err(e @ KeystoreError::PubkeyMismatch { .. }) => Decrypted::Failed(e.to_string()),
        Err(e) => Decrypted::Failed(format!("failed to decrypt keystore: {e}")),
    }
}

/// Persists, enables in the slashing DB and adds one key; returns whether it was disabled.
async fn add_key(
    state: &NodeState,
    km: &Keymanager,
    db: &crate::slashing::SlashingDb,
    secret: SecretKey,
    text: &str,
    password: &Password,
) -> Result<bool, String> {
    let pk = secret.public_key().bytes();
    let path = km.storage.persist(&pk, text, password).map_err(|e| {
        tracing::error!(error = %e, "keymanager: persisting an imported keystore");
        "cannot store the keystore".to_owned()
    })?;
    if let Err(e) = db.set_enabled(pk, true).await {
        tracing::error!(error = %e, "keymanager: enabling a validator");
        let _ = km.storage.remove(&pk);
        return Err("cannot enable the validator in the slashing-protection database".into());
    }
    let was_disabled = state.keys.is_disabled(&pk);
    if !state.keys.enable_insert(LoadedKey {
        secret,
        origin: KeyOrigin::Imported { path },
    }) {
        // Loaded meanwhile from another source: the import is still persisted and enabled.
        tracing::info!(pubkey = %pk, "keymanager: key was already loaded");
    }
    Ok(was_disabled)
}

/// `DELETE /eth/v1/keystores`.
pub(super) async fn delete(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (km, request): (_, DeleteRequest) = match authorized_body(&state, &headers, body) {
        Ok(parts) => parts,
        Err(r) => return r.response(),
    };
    let mut pubkeys = Vec::with_capacity(request.pubkeys.len());
    for s in &request.pubkeys {
        match PublicKeyBytes::parse(s) {
            Ok(pk) => pubkeys.push(pk),
            Err(e) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    format!("invalid pubkey {s:?}: {e}"),
                )
            }
        }
    }
    let _ops = state.key_ops.lock().await;
    let Some(db) = state.slashing.clone() else {
        return internal("delete", "slashing protection is off");
    };

    // 1. No new signature from here on, for any sign type.
    let mut removed = Vec::with_capacity(pubkeys.len());
    for pk in &pubkeys {
        removed.push(state.keys.disable(pk));
    }
    // Signatures that looked the key up before it was removed may still finish; wait for them.
    let deadline = Instant::now() + IN_FLIGHT_WAIT;
    for (key, _) in removed.iter().flatten() {
        while Arc::strong_count(key) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // 2. Which of the keys not loaded have history here (not_active) or nothing (not_found).
    let known: BTreeSet<PublicKeyBytes> = match db.export(Some(pubkeys.as_slice())).await {
        Ok(doc) => doc.data.iter().map(|v| v.pubkey).collect(),
        Err(crate::slashing::Error::NoGenesisValidatorsRoot) => BTreeSet::new(),
        Err(e) => return internal("reading slashing-protection history", e),
    };

    // 3. Disable in the DB, delete our files, decide each status.
    let mut data = Vec::with_capacity(pubkeys.len());
    let mut exported = Vec::new();
    let mut done = BTreeSet::new();
    for (pk, removed) in pubkeys.iter().zip(&removed) {
        let files = km.storage.remove(pk);
        let loaded = removed.is_some() && done.insert(*pk);
        let status = if loaded {
            "deleted"
        } else if known.contains(pk) || matches!(files, Ok(true)) || done.contains(pk) {
            "not_active"
        } else {
            state.keys.clear_disabled(pk);
            data.push(json!({"status": "not_found", "message": ""}));
            continue;
        };
        if let Err(e) = files {
            tracing::error!(error = %e, pubkey = %pk, "keymanager: deleting an imported keystore");
            data.push(json!({"status": "error", "message": "key disabled, but its imported keystore could not be deleted"}));
            continue;
        }
        if let Err(e) = db.set_enabled(*pk, false).await {
            tracing::error!(error = %e, pubkey = %pk, "keymanager: disabling a validator");
            data.push(json!({"status": "error", "message": "key removed, but it could not be disabled in the slashing-protection database"}));
            continue;
        }
        tracing::info!(pubkey = %pk, status, "keymanager: key deleted");
        exported.push(*pk);
        data.push(json!({"status": status, "message": ""}));
    }
    if let Err(e) = km.storage.save_disabled(&state.keys.disabled()) {
        return internal("saving the disabled-keys list", e);
    }

    // 4. The history of the deleted keys, after they can no longer sign.
    let doc = match db.export(Some(exported.as_slice())).await {
        Ok(doc) => doc,
        Err(crate::slashing::Error::NoGenesisValidatorsRoot) => Interchange {
            metadata: Metadata {
                interchange_format_version: FORMAT_VERSION.to_owned(),
                genesis_validators_root: Hash256([0; 32]),
            },
            data: Vec::new(),
        },
        Err(e) => return internal("exporting slashing-protection history", e),
    };
    // invariant: an exported interchange always serializes.
    let text = serde_json::to_string(&doc).expect("interchange serializes");
    json_ok_with(
        StatusCode::OK,
        &json!({ "data": data, "slashing_protection": text }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_generated_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(TOKEN_FILE_NAME);
        let t = AuthToken::load_or_generate(&path).expect("generate");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.len(), 64);
        assert!(t.matches(text.as_bytes()));
        assert!(!t.matches(b"nope"));
        assert!(!format!("{t:?}").contains(&text));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = AuthToken::load_or_generate(&path).expect("read");
        assert!(again.matches(text.as_bytes()));
        std::fs::write(&path, "\n").expect("write");
        assert!(matches!(
            AuthToken::from_file(&path),
            Err(Error::EmptyToken(_))
        ));
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
