//! `GET /api/v1/cluster/history`: this node's signed-duty history for a page of the cluster's
//! validators, for the other nodes of its cluster; `POST /api/v1/cluster/notify`: a peer
//! announces new history, which this node then pulls (wire types in `cluster::protocol`);
//! `POST /api/v1/cluster/agreement`: a peer's agreement messages (`agreement::wire`).
//!
//! Only a client whose TLS certificate identifies another operator of the cluster is answered
//! (`ClusterSync::authorize`); anyone else gets 403, and a node without `--cluster` 404. The
//! route is served whether or not this node is ready to sign: peers need it to become ready.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::NodeState;
use crate::cluster::protocol::{HistoryQuery, Notice};
use crate::http::server::ClientCertificate;

pub(super) async fn history(
    State(state): State<Arc<NodeState>>,
    client: Option<Extension<ClientCertificate>>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(sync) = state.cluster_sync.get() else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let fingerprint = client.map(|Extension(ClientCertificate(fp))| fp);
    let Some(peer) = sync.authorize(fingerprint) else {
        tracing::warn!(client = ?fingerprint, "history request from a client that is not a cluster peer");
        return (StatusCode::FORBIDDEN, "Forbidden").into_response();
    };
    let Ok(Query(query)) = query else {
        return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
    };
    match sync.export_page(query).await {
        Ok(page) => {
            tracing::debug!(peer, offset = page.validator_offset, "history page served");
            axum::Json(page).into_response()
        }
        Err(e) => {
            tracing::error!(peer, error = %e, "history export failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
        }
    }
}

pub(super) async fn notify(
    State(state): State<Arc<NodeState>>,
    client: Option<Extension<ClientCertificate>>,
    body: axum::body::Bytes,
) -> Response {
    let Some(sync) = state.cluster_sync.get() else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let fingerprint = client.map(|Extension(ClientCertificate(fp))| fp);
    let Some(peer) = sync.authorize(fingerprint) else {
        tracing::warn!(client = ?fingerprint, "notice from a client that is not a cluster peer");
        return (StatusCode::FORBIDDEN, "Forbidden").into_response();
    };
    let notice: Notice = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(peer, error = %e, "malformed notice ignored");
            return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
        }
    };
    match sync.accept_notice(peer, &notice) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::warn!(peer, error = %e, "notice ignored");
            (StatusCode::BAD_REQUEST, "Bad Request").into_response()
        }
    }
}

pub(super) async fn agreement(
    State(state): State<Arc<NodeState>>,
    client: Option<Extension<ClientCertificate>>,
    body: axum::body::Bytes,
) -> Response {
    let (Some(inbound), Some(sync)) = (state.agreement.get(), state.cluster_sync.get()) else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let metrics = crate::metrics::global();
    let fingerprint = client.map(|Extension(ClientCertificate(fp))| fp);
    let Some(peer) = sync.authorize(fingerprint) else {
        metrics.record_agreement_refused("not_a_peer");
        tracing::warn!(client = ?fingerprint, "agreement messages from a client that is not a cluster peer");
        return (StatusCode::FORBIDDEN, "Forbidden").into_response();
    };
    let batch: crate::agreement::wire::Batch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            metrics.record_agreement_refused("malformed");
            tracing::warn!(peer, error = %e, "malformed agreement batch ignored");
            return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
        }
    };
    match inbound.accept(peer, batch) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e @ crate::agreement::wire::BatchError::CertificatesNeeded(_)) => {
            metrics.record_agreement_refused(e.reason());
            tracing::debug!(peer, error = %e, "agreement batch: certificates needed");
            (StatusCode::PRECONDITION_REQUIRED, "Certificates Needed").into_response()
        }
        Err(e) => {
            metrics.record_agreement_refused(e.reason());
            tracing::warn!(peer, error = %e, "agreement batch refused");
            (StatusCode::BAD_REQUEST, "Bad Request").into_response()
        }
    }
}
