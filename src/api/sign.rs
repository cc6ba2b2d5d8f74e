//! The node's side of `POST /api/v1/eth2/sign/{identifier}`: after the shared steps of
//! [`crate::http::web3signer`] (parse, compute the root, parse the identifier), key disabled? →
//! key lookup → readiness → cluster agreement on the duty's root (blocks and attestations, with
//! `--agreement on`) → slashing check-and-record → sign on the blocking pool. The order
//! follows Web3Signer so that status codes match.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::NodeState;
use crate::bls::{PublicKeyBytes, Signature};
use crate::http::{ApiError, SignRequest, Signer};
use crate::metrics;
use crate::signing::Network;
use crate::slashing::{Refusal, Verdict};

impl Signer for NodeState {
    fn network(&self) -> &Network {
        &self.network
    }

    fn public_keys(&self) -> Vec<PublicKeyBytes> {
        self.keys.public_keys()
    }

    fn span(&self, request_id: &str) -> tracing::Span {
        tracing::info_span!("sign", request_id = %request_id)
    }

    fn sign(
        self: &Arc<Self>,
        request: SignRequest<'_>,
    ) -> impl Future<Output = Result<Signature, ApiError>> + Send {
        sign(self, request)
    }
}

async fn sign(state: &NodeState, request: SignRequest<'_>) -> Result<Signature, ApiError> {
    let SignRequest {
        pubkey, prepared, ..
    } = request;
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
    // The cluster agrees on one root per duty before any node records or signs it.
    if let (Some(agreement), Some((msg, _))) = (state.agreement.get(), prepared.slashable) {
        crate::agreement::gate::check(agreement.driver(), pubkey, msg, prepared.root).await?;
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
    let signature = state.signer_pool.run(move || key.sign(&root)).await?;
    tracing::debug!(%pubkey, kind = prepared.kind.as_str(), root = %root.to_hex(), "signed");
    Ok(signature)
}

fn poisoned<T>(_: T) -> ApiError {
    ApiError::Internal("lock poisoned".into())
}
