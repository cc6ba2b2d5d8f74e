//! `POST /reload` (202, re-scans key sources in the background, applies only the delta) and
//! `GET /reload` (status of the last reload), as Web3Signer 25.12+.
//! In-flight requests keep the `Arc` of the key they looked up, so a reload never drops them.
//! The sources are the keystores and key-config directories, the Keymanager API's imported
//! keystores, the Vault bulk folder and the PKCS#11 token; with `--key-cache` unchanged
//! keystores come from the cache. A Vault folder or token that cannot be read during a reload
//! keeps the keys it gave before (an outage must not take keys away); at start it is fatal.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{KeySources, LoadStatus, NodeState};
use crate::http::request::json_response;
use crate::keys::cache::{CacheSession, CacheStats, KeyCache};
use crate::keys::hsm::{self, HsmConfig};
use crate::keys::managed::ManagedKeys;
use crate::keys::store::{self, LoadOptions};
use crate::keys::vault::{self, VaultBulkSource};
use crate::keys::{KeyOrigin, LoadedKey};
use crate::progress::{Progress, Reporter};

#[derive(Debug, Default)]
pub(super) struct ReloadState {
    running: bool,
    last: Option<(String, std::time::SystemTime, Option<String>)>,
}

pub(super) async fn start(State(state): State<Arc<NodeState>>) -> Response {
    {
        let Ok(mut r) = state.reload.lock() else {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"status": "error"}),
            );
        };
        if r.running {
            return json_response(
                StatusCode::CONFLICT,
                &json!({"status": "error", "message": "a reload is already running"}),
            );
        }
        r.running = true;
    }
    let task_state = state.clone();
    tokio::task::spawn_blocking(move || {
        let outcome = reload_keys(&task_state);
        if let Ok(mut r) = task_state.reload.lock() {
            r.running = false;
            r.last = Some(match outcome {
                Ok((status, err)) => (status, std::time::SystemTime::now(), err),
                Err(e) => ("failed".into(), std::time::SystemTime::now(), Some(e)),
            });
        }
    });
    json_response(
        StatusCode::ACCEPTED,
        &json!({"status": "accepted", "message": "Reload initiated"}),
    )
}

pub(super) async fn status(State(state): State<Arc<NodeState>>) -> Response {
    let doc = match state.reload.lock() {
        Ok(r) if r.running => json!({"status": "running"}),
        Ok(r) => match &r.last {
            None => json!({"status": "idle"}),
            Some((status, at, err)) => {
                let secs = at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let mut v = json!({"status": status, "lastOperationTime": secs.to_string()});
                if let Some(e) = err {
                    v["lastError"] = json!(e);
                }
                v
            }
        },
        Err(_) => json!({"status": "failed"}),
    };
    json_response(StatusCode::OK, &doc)
}

/// What one load of every key source produced (start-up and `/reload`).
#[derive(Debug, Default)]
pub struct KeysLoad {
    /// Per source (`keystores`, `key-config`, `imported`, `vault-bulk`, `hsm`), its report.
    pub reports: Vec<(&'static str, store::LoadReport)>,
    /// Key-cache outcome, when the cache is on.
    pub cache: Option<Result<CacheStats, crate::keys::cache::Error>>,
}

impl KeysLoad {
    /// The `/healthcheck` counts of the operator's sources.
    pub fn status(&self) -> LoadStatus {
        let mut status = LoadStatus::default();
        for (source, report) in &self.reports {
            let counts = Some((report.keys.len(), report.errors.len()));
            match *source {
                "keystores" => status.keystores = counts,
                "key-config" => status.key_config = counts,
                // Shown once there is something imported (or failing) to report.
                "imported" if !report.keys.is_empty() || !report.errors.is_empty() => {
                    status.imported = counts
                }
                VAULT_BULK => status.vault_bulk = counts,
                HSM => status.hsm = counts,
                _ => {}
            }
        }
        status
    }

    /// The first failure of a whole-source backend (Vault bulk folder, PKCS#11 token), as a
    /// message naming the source: at start such a failure stops the node.
    pub fn backend_failure(&self) -> Option<String> {
        self.reports
            .iter()
            .filter(|(source, _)| matches!(*source, VAULT_BULK | HSM))
            .find_map(|(_, report)| report.errors.first())
            .map(|(what, error)| format!("loading keys from {}: {error}", what.display()))
    }

    /// Whether the read of `source` failed in this load.
    fn failed(&self, source: &str) -> bool {
        self.reports
            .iter()
            .any(|(s, report)| *s == source && !report.errors.is_empty())
    }

    /// All loaded keys, in source order.
    pub fn into_keys(self) -> Vec<crate::keys::LoadedKey> {
        self.reports
            .into_iter()
            .flat_map(|(_, report)| report.keys)
            .collect()
    }
}

/// Loads every key source: the keystores directory, the key-config directory, the Keymanager's
/// imported keystores, the Vault bulk folder and the PKCS#11 token (in this order: the first
/// source of a key wins), keystores through the key cache when one is given (its file is
/// rewritten when the keystores changed). CPU-heavy and blocking: call from a blocking thread.
/// While keystores are decrypted it logs `loading keys` with `done`, `total`,
/// `keys_per_second` and `eta_seconds` every [`crate::progress::interval`], and keeps the
/// `dvsigner_keys_loading_total` / `_done` gauges current.
///
/// # Errors
/// When a configured directory cannot be read at all (per-file failures, and a Vault folder or
/// token that cannot be read, are in the reports; see [`KeysLoad::backend_failure`]).
pub fn load_key_sources(
    sources: &KeySources,
    managed: Option<&ManagedKeys>,
    cache: Option<&KeyCache>,
) -> Result<KeysLoad, String> {
    let session = cache.map(|c| c.session(c.len() + 4096));
    let (total_gauge, done_gauge) = crate::metrics::global().key_loading_gauges();
    let progress = Arc::new(Progress::with_gauges(0, total_gauge, done_gauge));
    let _reporter = Reporter::spawn(Arc::clone(&progress), crate::progress::interval(), |s| {
        // Nothing to count yet (no keystores, or a Vault folder or token being read).
        if s.total == 0 {
            return;
        }
        tracing::info!(
            done = s.done,
            total = s.total,
            keys_per_second = (s.per_second * 10.0).round() / 10.0,
            eta_seconds = s.eta_seconds,
            "loading keys: {}",
            s.describe("keys")
        );
    });
    let options = LoadOptions {
        cache: session.as_ref(),
        imported: false,
        progress: Some(&progress),
    };
    let mut load = KeysLoad::default();
    if let Some((dir, pw)) = &sources.keystores {
        let report = store::load_keystores_dir_with(dir, pw, options)
            .map_err(|e| format!("reading keystores from {}: {e}", dir.display()))?;
        load.reports.push(("keystores", report));
    }
    if let Some(dir) = &sources.key_config {
        let report = store::load_key_config_dir_with(dir, options)
            .map_err(|e| format!("reading key configs from {}: {e}", dir.display()))?;
        load.reports.push(("key-config", report));
    }
    if let Some(managed) = managed {
        let report = managed.load(options).map_err(|e| e.to_string())?;
        load.reports.push(("imported", report));
    }
    if let Some(source) = &sources.vault_bulk {
        load.reports.push((VAULT_BULK, vault_bulk_report(source)));
    }
    if let Some(config) = &sources.hsm {
        load.reports.push((HSM, hsm_report(config)));
    }
    load.cache = session.map(CacheSession::finish);
    Ok(load)
}

/// Report names of the whole-source backends.
const VAULT_BULK: &str = "vault-bulk";
const HSM: &str = "hsm";

/// Every key under the Vault bulk folder, or one error naming the server and folder (all or
/// nothing: a folder is not used in part).
fn vault_bulk_report(source: &VaultBulkSource) -> store::LoadReport {
    let what = format!(
        "vault {} ({}/{})",
        source.server.url, source.mount, source.folder
    );
    backend_report(what, || {
        vault::load_bulk_blocking(source).map(|keys| {
            keys.into_iter()
                .map(|k| LoadedKey {
                    secret: k.secret,
                    origin: KeyOrigin::Vault { path: k.path },
                })
                .collect()
        })
    })
}

/// Every share wrapped in the PKCS#11 token, or one error naming the token.
fn hsm_report(config: &HsmConfig) -> store::LoadReport {
    let what = format!("pkcs#11 token \"{}\"", config.token_label);
    backend_report(what, || {
        hsm::load(config).map(|shares| {
            shares
                .into_iter()
                .map(|s| LoadedKey {
                    secret: s.secret,
                    origin: KeyOrigin::Hsm {
                        token: config.token_label.clone(),
                        object: s.object,
                    },
                })
                .collect()
        })
    })
}

/// The report of a whole-source backend: its keys, or its one error under the name `what`.
fn backend_report<E: std::fmt::Display>(
    what: String,
    read: impl FnOnce() -> Result<Vec<LoadedKey>, E>,
) -> store::LoadReport {
    let started = std::time::Instant::now();
    let mut report = store::LoadReport::default();
    match read() {
        Ok(keys) => report.keys = keys,
        Err(e) => report.errors.push((what.into(), e.to_string())),
    }
    report.elapsed = started.elapsed();
    report
}

/// Re-reads every key source and swaps in the new key set (holding `key_ops`, so a Keymanager
/// import or delete cannot interleave). Returns the status word and the first error, if any.
fn reload_keys(state: &NodeState) -> Result<(String, Option<String>), String> {
    let _ops = state.key_ops.blocking_lock();
    let load = load_key_sources(
        &state.sources,
        state.managed_keys.get(),
        state.key_cache.get().map(|c| &**c),
    )?;
    let first_error = load.reports.iter().find_map(|(_, report)| {
        report.errors.first().map(|(p, e)| {
            // Messages of file sources already start with their file; name it only once.
            let p = p.display().to_string();
            if e.starts_with(&p) {
                e.clone()
            } else {
                format!("{p}: {e}")
            }
        })
    });
    if let Some(Err(e)) = &load.cache {
        tracing::warn!(error = %e, "key cache not written");
    }
    let status = load.status();
    // A backend that could not be read keeps the keys it gave before.
    let (keep_vault, keep_hsm) = (load.failed(VAULT_BULK), load.failed(HSM));
    if let Some(failure) = load.backend_failure() {
        tracing::warn!(error = %failure, "reload: keeping the keys this backend gave before");
    }
    let diff = state
        .keys
        .replace_all(load.into_keys(), |origin| match origin {
            KeyOrigin::Vault { .. } => keep_vault,
            KeyOrigin::Hsm { .. } => keep_hsm,
            _ => false,
        });
    tracing::info!(
        added = diff.added.len(),
        removed = diff.removed.len(),
        "keys reloaded"
    );
    if let Ok(mut s) = state.load_status.write() {
        *s = status;
    }
    let word = if first_error.is_some() {
        "completed_with_errors"
    } else {
        "completed"
    };
    Ok((word.to_owned(), first_error))
}
