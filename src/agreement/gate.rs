//! The sign path's use of agreement: before a node checks and records a block or attestation
//! in its slashing database, the members agree on one root for the duty; a request for another
//! root is refused (412) and one that gets no decision in time answers 503.

use std::time::Instant;

use super::driver::{duty_of, AgreementError, Driver};
use super::types::Duty;
use crate::bls::{PublicKeyBytes, SigningRoot};
use crate::http::ApiError;
use crate::metrics::{self, RefusalReason};
use crate::slashing::SlashableMessage;

/// Lets the request for `root` (signed with this node's key `share`) go on to the slashing
/// check only if the cluster decided `root` for its duty. A key outside the cluster definition
/// is not agreed on.
///
/// # Errors
/// [`ApiError::PreconditionFailed`] naming the duty and the decided root when another root was
/// decided; [`ApiError::Unavailable`] naming the duty on timeout; [`ApiError::Internal`] when
/// storage failed.
pub async fn check(
    driver: &Driver,
    share: PublicKeyBytes,
    msg: SlashableMessage,
    root: SigningRoot,
) -> Result<(), ApiError> {
    let Some(group) = driver.roster().group_of_share(&share) else {
        return Ok(());
    };
    let duty = duty_of(msg);
    let started = Instant::now();
    let outcome = driver.agree(group, duty, root.0).await;
    let m = metrics::global();
    match outcome {
        Ok(decided) if decided == root.0 => {
            m.record_agreement("same_root", started.elapsed());
            Ok(())
        }
        Ok(decided) => {
            m.record_agreement("other_root", started.elapsed());
            m.record_refusal_reason(RefusalReason::Agreement);
            let text = format!(
                "agreement: {} was decided as root 0x{} (this request: {})",
                describe(group, duty),
                hex::encode(decided),
                root.to_hex()
            );
            tracing::warn!(validator = %group, duty = ?duty, "refused to sign: {text}");
            Err(ApiError::PreconditionFailed(text))
        }
        Err(e @ AgreementError::Timeout(_)) => {
            m.record_agreement("timeout", started.elapsed());
            tracing::warn!(validator = %group, duty = ?duty, "{e}");
            Err(ApiError::Unavailable(format!(
                "agreement: {e} on the {}",
                describe(group, duty)
            )))
        }
        Err(e) => {
            m.record_agreement("error", started.elapsed());
            Err(ApiError::Internal(format!(
                "agreement on the {}: {e}",
                describe(group, duty)
            )))
        }
    }
}

/// "attestation of validator 0x… for target epoch 12" / "block of validator 0x… at slot 5".
pub fn describe(validator: PublicKeyBytes, duty: Duty) -> String {
    match duty {
        Duty::Block { slot } => format!("block of validator {validator} at slot {slot}"),
        Duty::Attestation { target_epoch } => {
            format!("attestation of validator {validator} for target epoch {target_epoch}")
        }
    }
}
