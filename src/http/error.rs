//! The one error type of the Web3Signer face that becomes an HTTP response, for node and
//! combiner alike. Status codes follow Web3Signer (400 bad request, 404 unknown key, 412
//! refused, 500 root or internal failure; order in `docs/web3signer-compatibility.md`);
//! internal details are logged, never sent.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::bls::PublicKeyBytes;
use crate::{signing, slashing};

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request could not be parsed (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The signing root could not be computed or did not match (500, as Web3Signer).
    #[error(transparent)]
    Signing(signing::Error),
    /// No key for this identifier (404).
    #[error("no key for public key {0}")]
    UnknownKey(String),
    /// The slashing-protection database refused the message (412).
    #[error("refused by slashing protection: {refusal}")]
    Refused {
        /// The key asked to sign.
        pubkey: PublicKeyBytes,
        /// Why.
        refusal: slashing::Refusal,
    },
    /// Refused for a reason decided elsewhere, given as text (412): e.g. a combiner whose signer
    /// nodes refused so that the threshold can no longer be reached.
    #[error("refused: {0}")]
    PreconditionFailed(String),
    /// The slashing-protection database failed (500; details logged).
    #[error("slashing protection database: {0}")]
    Slashing(#[from] slashing::Error),
    /// The node is not ready to sign (503).
    #[error("not ready: {0}")]
    Unavailable(String),
    /// A background task failed (500; details logged).
    #[error("internal: {0}")]
    Internal(String),
}

impl From<signing::Error> for ApiError {
    fn from(e: signing::Error) -> Self {
        match e {
            signing::Error::Malformed(m) => Self::BadRequest(m),
            signing::Error::WrongNetwork(m) => Self::BadRequest(m.to_string()),
            e @ (signing::Error::Root(_) | signing::Error::RootMismatch { .. }) => Self::Signing(e),
        }
    }
}

impl ApiError {
    /// The HTTP status Web3Signer uses for this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Signing(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::UnknownKey(_) => StatusCode::NOT_FOUND,
            Self::Refused { .. } | Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::Slashing(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let reason = status.canonical_reason().unwrap_or("Error");
        // Web3Signer answers with the reason phrase; we add the detail where it is safe to show
        // (it never contains key material), and log the rest.
        let body = match &self {
            Self::BadRequest(m) => format!("{reason}: {m}"),
            Self::Signing(e) => format!("{reason}: {e}"),
            Self::UnknownKey(pk) => format!("{reason}: no key for public key {pk}"),
            Self::Refused { refusal, .. } => format!("{reason}: {refusal}"),
            Self::PreconditionFailed(m) => format!("{reason}: {m}"),
            Self::Unavailable(m) => format!("{reason}: {m}"),
            Self::Slashing(e) => {
                tracing::error!(error = %e, "slashing protection database error");
                reason.to_owned()
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                reason.to_owned()
            }
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<ApiError>();
    }

    #[test]
    fn status_codes_follow_web3signer() {
        assert_eq!(ApiError::BadRequest("x".into()).status(), 400);
        assert_eq!(ApiError::UnknownKey("0x".into()).status(), 404);
        assert_eq!(
            ApiError::Signing(signing::Error::Root("no fork_info".into())).status(),
            500
        );
        assert_eq!(ApiError::Unavailable("syncing".into()).status(), 503);
    }

    async fn answer(e: ApiError) -> (u16, String, String) {
        let r = e.into_response();
        let status = r.status().as_u16();
        let ct = r.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, ct, String::from_utf8(body.to_vec()).expect("utf-8"))
    }

    #[tokio::test]
    async fn responses_carry_reason_and_safe_detail_only() {
        let text = "text/plain; charset=utf-8".to_owned();
        assert_eq!(
            answer(ApiError::BadRequest("missing field `type`".into())).await,
            (
                400,
                text.clone(),
                "Bad Request: missing field `type`".into()
            )
        );
        assert_eq!(
            answer(ApiError::UnknownKey("0xab".into())).await,
            (
                404,
                text.clone(),
                "Not Found: no key for public key 0xab".into()
            )
        );
        let pubkey = PublicKeyBytes([1; 48]);
        let refusal = slashing::Refusal::ValidatorDisabled { pubkey };
        let want = format!("Precondition Failed: {refusal}");
        assert_eq!(
            answer(ApiError::Refused { pubkey, refusal }).await,
            (412, text.clone(), want)
        );
        assert_eq!(
            answer(ApiError::PreconditionFailed("3 of 4 nodes refused".into())).await,
            (
                412,
                text.clone(),
                "Precondition Failed: 3 of 4 nodes refused".into()
            )
        );
        assert_eq!(
            answer(ApiError::Unavailable("peer sync pending".into())).await,
            (
                503,
                text.clone(),
                "Service Unavailable: peer sync pending".into()
            )
        );
        // Internal details are logged, never sent.
        assert_eq!(
            answer(ApiError::Internal("/var/lib/secret path".into())).await,
            (500, text.clone(), "Internal Server Error".into())
        );
        assert_eq!(
            answer(ApiError::Slashing(slashing::Error::PostgresSettings(
                "disk full at /data".into()
            )))
            .await,
            (500, text, "Internal Server Error".into())
        );
    }
}
