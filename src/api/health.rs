//! `GET /healthcheck` and `GET /api/v1/eth2/highWatermark` of a node, in Web3Signer's shapes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::NodeState;
use crate::http::request::{json_response, text_response};
use crate::http::ApiError;

/// Web3Signer's health document: `{"status","checks":[..],"outcome"}`; 503 when any check is
/// DOWN (a key file that failed to load, an unreachable database, a node not yet synced or
/// that lost contact with its cluster peers).
pub(super) async fn healthcheck(State(state): State<Arc<NodeState>>) -> Response {
    let mut checks = vec![json!({"id": "default-check", "status": "UP"})];
    let mut all_up = true;

    let load = state
        .load_status
        .read()
        .map(|s| s.clone())
        .unwrap_or_default();
    let mut key_checks = Vec::new();
    for check in load.checks() {
        let up = check.errors == 0;
        all_up &= up;
        key_checks.push(json!({
            "id": check.health_id,
            "status": status(up),
            "data": {"keys-loaded": check.loaded, "error-count": check.errors},
        }));
    }
    let keys_up = key_checks.iter().all(|c| c["status"] == "UP");
    checks.push(json!({"id": "keys-check", "status": status(keys_up), "checks": key_checks}));

    if let Some(db) = &state.slashing {
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(3), db.ping()).await,
            Ok(Ok(()))
        );
        all_up &= up;
        checks.push(json!({"id": "slashing-protection-db-health-check", "status": status(up)}));
    }

    let not_ready = state.not_ready.read().map(|r| r.clone()).unwrap_or(None);
    // Lost contact with the peers (or catching up after it returned) is DOWN too: slashable
    // duties are refused meanwhile.
    let not_ready = not_ready.or_else(|| state.cluster_sync.get().and_then(|s| s.slashable_gate()));
    let sync = state
        .cluster_sync
        .get()
        .and_then(|s| serde_json::to_value(s.snapshot()).ok());
    if not_ready.is_some() || sync.is_some() {
        let mut data = sync.unwrap_or_else(|| json!({}));
        let up = not_ready.is_none();
        if let (Some(reason), Some(obj)) = (not_ready, data.as_object_mut()) {
            obj.insert("reason".into(), Value::from(reason));
        }
        all_up &= up;
        checks.push(json!({"id": "cluster-sync", "status": status(up), "data": data}));
    }

    let doc = json!({"status": status(all_up), "checks": checks, "outcome": status(all_up)});
    let code = if all_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, &doc)
}

fn status(up: bool) -> &'static str {
    if up {
        "UP"
    } else {
        "DOWN"
    }
}

/// `GET /api/v1/eth2/highWatermark`: `{"epoch":"E","slot":"S"}` or `{}` when none is set
/// (Web3Signer's answer), read from the database on every call; 404 when slashing protection is
/// off (Web3Signer registers the route only with it), 500 when the database fails.
pub(super) async fn high_watermark(State(state): State<Arc<NodeState>>) -> Response {
    let Some(db) = &state.slashing else {
        return text_response(
            StatusCode::NOT_FOUND,
            "Not Found: slashing protection is disabled on this node",
        );
    };
    match db.high_watermark().await {
        Ok(hw) => json_response(StatusCode::OK, &crate::slashing::high_watermark_json(hw)),
        Err(e) => ApiError::Slashing(e).into_response(),
    }
}
