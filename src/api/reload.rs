//! `POST /reload` (202, re-scans key sources in the background, applies only the delta) and
//! `GET /reload` (status of the last reload), as Web3Signer 25.12+.
//! In-flight requests keep the `Arc` of the key they looked up, so a reload never drops them.
//! Reading the sources and applying the delta is [`crate::keys::sources::reload`]; this file
//! is the HTTP side only.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::NodeState;
use crate::http::request::json_response;
use crate::keys::sources;

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

/// Re-reads every key source and swaps in the new key set (holding `key_ops`, so a Keymanager
/// import or delete cannot interleave). Returns the status word and the first error, if any.
fn reload_keys(state: &NodeState) -> Result<(String, Option<String>), String> {
    let _ops = state.key_ops.blocking_lock();
    let outcome = sources::reload(
        &state.keys,
        &state.sources,
        state.key_cache.get().map(|c| &**c),
    )?;
    if let Ok(mut s) = state.load_status.write() {
        *s = outcome.status;
    }
    let word = if outcome.first_error.is_some() {
        "completed_with_errors"
    } else {
        "completed"
    };
    Ok((word.to_owned(), outcome.first_error))
}
