//! `POST /reload` (202, re-scans key sources in the background, applies only the delta) and
//! `GET /reload` (status of the last reload), as Web3Signer 25.12+.
//! In-flight requests keep the `Arc` of the key they looked up, so a reload never drops them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::health::json_response;
use super::{LoadStatus, NodeState};
use crate::keys::store;

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

/// Re-reads every key source and swaps in the new key set. Returns the status word and the
/// first error, if any.
fn reload_keys(state: &NodeState) -> Result<(String, Option<String>), String> {
    let mut loaded = Vec::new();
    let mut status = LoadStatus::default();
    let mut first_error = None;
    if let Some((dir, pw)) = &state.sources.keystores {
        let report = store::load_keystores_dir(dir, pw).map_err(|e| e.to_string())?;
        status.keystores = Some((report.keys.len(), report.errors.len()));
        first_error = first_error.or_else(|| {
            report
                .errors
                .first()
                .map(|(p, e)| format!("{}: {e}", p.display()))
        });
        loaded.extend(report.keys);
    }
    if let Some(dir) = &state.sources.key_config {
        let report = store::load_key_config_dir(dir).map_err(|e| e.to_string())?;
        status.key_config = Some((report.keys.len(), report.errors.len()));
        first_error = first_error.or_else(|| {
            report
                .errors
                .first()
                .map(|(p, e)| format!("{}: {e}", p.display()))
        });
        loaded.extend(report.keys);
    }
    let diff = state.keys.replace_all(loaded);
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
