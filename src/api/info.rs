//! `GET /api/v1/dvsigner/info` on a node: role `signer`, the network, the genesis validators root
//! the slashing-protection database is pinned to, and the operator name in the cluster.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use super::NodeState;
use crate::http::info::{Info, NetworkInfo};

/// The handler.
pub(super) async fn info(State(state): State<Arc<NodeState>>) -> Response {
    // A database that does not answer makes the root unknown, not the route fail.
    let root = match &state.slashing {
        Some(db) => tokio::time::timeout(
            std::time::Duration::from_secs(2),
            db.genesis_validators_root(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .flatten(),
        None => None,
    };
    let operator = state
        .cluster_sync
        .get()
        .map(|sync| sync.operator().to_owned());
    Info::new("signer", NetworkInfo::of(&state.network, root), operator).response()
}
