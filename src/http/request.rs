//! Per-request pieces of the Web3Signer face: the request id, `Accept` negotiation of a
//! signature response, the body limit, and JSON/text response helpers.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::bls::Signature;

/// Largest accepted request body (Web3Signer enforces none; 1 MiB is far above any real block
/// header or full phase0/altair block request). Larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The layer that enforces [`MAX_BODY_BYTES`] on every route of a router.
pub fn body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_BODY_BYTES)
}

/// Header carrying the request id between client, combiner and nodes.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id of a sign request: the client's `x-request-id` header (as the combiner sends
/// it to every node, so one id follows a request through the cluster) when it is 1 to 128
/// visible ASCII characters, or else a new one unique within this process.
pub fn request_id(headers: &HeaderMap) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    headers
        .get(REQUEST_ID_HEADER)
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

/// Web3Signer's content negotiation: JSON when any Accept media range is `application/json` or
/// `*/*` (case-insensitive, parameters ignored), otherwise bare hex as text/plain.
pub fn wants_json(headers: &HeaderMap) -> bool {
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

/// The 200 response carrying a signature, in the format the request's `Accept` header asks for:
/// `{"signature":"0x.."}` as JSON, or the bare hex as text/plain.
pub fn signature_response(headers: &HeaderMap, signature: &Signature) -> Response {
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

/// A JSON document with status `code`.
pub fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        v.to_string(),
    )
        .into_response()
}

/// A fixed text/plain answer with status `code`.
pub fn text_response(code: StatusCode, text: &'static str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body, Bytes};
    use axum::http::{HeaderValue, Request};
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

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
        // Any of several Accept headers counts.
        let mut two = accept("text/plain");
        two.append(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&two));
    }

    #[tokio::test]
    async fn signature_response_follows_accept() {
        let sig =
            crate::keys::interop::interop_secret_key(0).sign(&crate::bls::SigningRoot([7; 32]));
        let hex = sig.to_hex();
        let json = signature_response(&accept("application/json"), &sig);
        assert_eq!(json.status(), StatusCode::OK);
        assert_eq!(
            json.headers()[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        let body = to_bytes(json.into_body(), usize::MAX).await.expect("body");
        assert_eq!(body, format!("{{\"signature\":\"{hex}\"}}").as_bytes());

        let text = signature_response(&HeaderMap::new(), &sig);
        assert_eq!(
            text.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let body = to_bytes(text.into_body(), usize::MAX).await.expect("body");
        assert_eq!(body, hex.as_bytes());
    }

    #[test]
    fn request_id_is_the_clients_when_sane_else_new_and_unique() {
        let with = |v: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(
                REQUEST_ID_HEADER,
                HeaderValue::from_bytes(v).expect("header"),
            );
            request_id(&h)
        };
        assert_eq!(with(b"vc-42"), "vc-42");
        let longest = "a".repeat(128);
        assert_eq!(with(longest.as_bytes()), longest);
        // Too long, empty, with spaces or non-ASCII: replaced by a generated id.
        for bad in [
            "a".repeat(129).into_bytes(),
            Vec::new(),
            b"a b".to_vec(),
            "\u{e9}t\u{e9}".as_bytes().to_vec(),
        ] {
            let id = with(&bad);
            assert!(
                id.starts_with(&format!("{:x}-", std::process::id())),
                "{bad:?} gave {id}"
            );
        }
        let (a, b) = (request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn bodies_above_the_limit_get_413() {
        let app = Router::new()
            .route(
                "/",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            .layer(body_limit());
        let send = |len: usize| {
            let app = app.clone();
            async move {
                let req = Request::post("/")
                    .body(Body::from(vec![b'x'; len]))
                    .expect("request");
                app.oneshot(req).await.expect("infallible")
            }
        };
        let at_limit = send(MAX_BODY_BYTES).await;
        assert_eq!(at_limit.status(), StatusCode::OK);
        let body = to_bytes(at_limit.into_body(), usize::MAX)
            .await
            .expect("body");
        assert_eq!(body, MAX_BODY_BYTES.to_string().as_bytes());
        assert_eq!(
            send(MAX_BODY_BYTES + 1).await.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
