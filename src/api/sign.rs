//! `POST /api/v1/eth2/sign/{identifier}`: parse → compute root → key lookup → slashing
//! check-and-record → sign → respond in the format the `Accept` header asks for.
//! The order of the first four steps follows Web3Signer so that status codes match.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::{ApiError, NodeState};
use crate::bls::{PublicKeyBytes, Signature};
use crate::metrics;
use crate::signing::{self, Network, PreparedSign, SignKind};
use crate::slashing::{Refusal, Verdict};

pub(super) async fn sign(
    State(state): State<Arc<NodeState>>,
    Path(identifier): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!("sign", request_id = %request_id(&headers));
    let (kind, response) = async {
        let mut kind = None;
        let response = match sign_inner(&state, &identifier, &headers, &body, &mut kind).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        (kind, response)
    }
    .instrument(span)
    .await;
    metrics::global().record_sign(kind, response.status().as_u16(), started.elapsed());
    response
}

async fn sign_inner(
    state: &NodeState,
    identifier: &str,
    headers: &HeaderMap,
    body: &[u8],
    kind: &mut Option<SignKind>,
) -> Result<Response, ApiError> {
    let prepared = prepare(body, &state.network)?;
    *kind = Some(prepared.kind);
    let pubkey = PublicKeyBytes::parse(identifier)
        .map_err(|_| ApiError::UnknownKey(identifier.to_owned()))?;
    // A key deleted through the Keymanager API is refused for every sign type, not only the
    // slashable ones the database checks, even if a key source still holds it.
    if state.keys.is_disabled(&pubkey) {
        let refusal = Refusal::ValidatorDisabled { pubkey };
        metrics::global().record_refusal(&refusal);
        return Err(ApiError::Refused { pubkey, refusal });
    }
    let key = state
        .keys
        .get(&pubkey)
        .ok_or_else(|| ApiError::UnknownKey(pubkey.to_hex()))?;
    if let Some(reason) = state.not_ready.read().map_err(poisoned)?.clone() {
        return Err(ApiError::Unavailable(reason));
    }
    // A node that lost contact with its peers may have missed what they signed meanwhile: no
    // slashable duty until it caught up (other duties cannot be slashed).
    if prepared.slashable.is_some() {
        if let Some(reason) = state.cluster_sync.get().and_then(|s| s.slashable_gate()) {
            return Err(ApiError::Unavailable(reason));
        }
    }
    if let (Some(db), Some((msg, gvr))) = (&state.slashing, prepared.slashable) {
        let check_started = Instant::now();
        let verdict = db.check_and_record(pubkey, gvr, msg, prepared.root).await;
        metrics::global().observe_slashing_check(check_started.elapsed());
        match verdict? {
            Verdict::Allowed => {
                if let Some(sync) = state.cluster_sync.get() {
                    sync.recorded(msg);
                }
            }
            Verdict::Repeat => {}
            Verdict::Refused(refusal) => {
                metrics::global().record_refusal(&refusal);
                tracing::warn!(
                    %pubkey, kind = prepared.kind.as_str(), %refusal,
                    "refused to sign: slashing protection"
                );
                return Err(ApiError::Refused { pubkey, refusal });
            }
        }
    }
    let root = prepared.root;
    let signature = state.run_blocking(move || key.sign(&root)).await?;
    tracing::debug!(%pubkey, kind = prepared.kind.as_str(), root = %root.to_hex(), "signed");
    Ok(signature_response(headers, &signature))
}

/// [`signing::prepare`] for node and combiner alike: a request of another network or of an
/// unknown fork is counted in `dvsigner_wrong_network_requests_total` and logged once per fork
/// version before it becomes a 400.
pub(crate) fn prepare(body: &[u8], network: &Network) -> Result<PreparedSign, ApiError> {
    signing::prepare(body, network).map_err(|e| {
        if let signing::Error::WrongNetwork(mismatch) = &e {
            metrics::global().record_wrong_network(mismatch);
        }
        ApiError::from(e)
    })
}

/// The request id of a sign request: the client's `x-request-id` header (as the combiner sends
/// it to every node, so one id follows a request through the cluster), or a new one.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    headers
        .get("x-request-id")
        .and_then(|h| h.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "{:x}-{:x}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            )
        })
}

fn poisoned<T>(_: T) -> ApiError {
    ApiError::Internal("lock poisoned".into())
}

/// Web3Signer's content negotiation: JSON when any Accept media range is `application/json` or
/// `*/*` (case-insensitive, parameters ignored), otherwise bare hex as text/plain.
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|range| {
                let media = range.split(';').next().unwrap_or("").trim();
                media.eq_ignore_ascii_case("application/json") || media == "*/*"
            })
        })
}

/// Builds the 200 response carrying a signature.
pub(crate) fn signature_response(headers: &HeaderMap, signature: &Signature) -> Response {
    let hex = signature.to_hex();
    if wants_json(headers) {
        (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            format!("{{\"signature\":\"{hex}\"}}"),
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], hex).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn accept_negotiation_matches_web3signer() {
        assert!(!wants_json(&HeaderMap::new()));
        assert!(wants_json(&accept("application/json")));
        assert!(wants_json(&accept("Application/JSON; charset=utf-8")));
        assert!(wants_json(&accept("text/plain, */*;q=0.1")));
        assert!(!wants_json(&accept("text/plain")));
        assert!(!wants_json(&accept("application/*")));
    }
}
