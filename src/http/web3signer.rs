//! The Web3Signer eth2 face served by the signer node and by the combiner alike:
//! `GET /upcheck`, `GET /api/v1/eth2/publicKeys` and `POST /api/v1/eth2/sign/{identifier}`, over
//! a [`Signer`] that turns a prepared request into a signature or an error.
//!
//! The sign route does what both sides share, in Web3Signer's order so that status codes match:
//! request id and span, parse and compute the signing root ([`signing::prepare`]; 400 on bad
//! input, another network or an unknown fork; 500 without a payload or `fork_info`, or for a
//! supplied root that differs), parse the identifier (404 when it is no public key), then hands
//! over to the [`Signer`] (key lookup, slashing protection or fan-out, the BLS work) and answers
//! in the format the `Accept` header asks for. Every answer is counted in the sign metrics by
//! sign type (known once the body parsed) and status.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tracing::Instrument;

use super::request::{body_limit, json_response, request_id, signature_response, text_response};
use super::ApiError;
use crate::bls::{PublicKeyBytes, Signature};
use crate::metrics;
use crate::signing::{self, Network, PreparedSign, SignKind};

/// One sign request after the shared steps: the key asked for and the prepared message.
#[derive(Debug)]
pub struct SignRequest<'a> {
    /// The identifier of the URL, parsed.
    pub pubkey: PublicKeyBytes,
    /// Type, signing root (computed from the typed payload) and what slashing protection checks.
    pub prepared: PreparedSign,
    /// The request body as received.
    pub body: &'a Bytes,
    /// The request id (the client's `x-request-id`, or a new one).
    pub request_id: &'a str,
}

/// What serves the Web3Signer face: a signer node (keys, slashing protection) or a combiner
/// (fan-out to nodes, combine).
pub trait Signer: Send + Sync + 'static {
    /// The network whose requests are served (the signing root is computed for it).
    fn network(&self) -> &Network;

    /// The public keys `GET /api/v1/eth2/publicKeys` lists, in the order listed.
    fn public_keys(&self) -> Vec<PublicKeyBytes>;

    /// The span a sign request runs in (carrying its request id).
    fn span(&self, request_id: &str) -> tracing::Span;

    /// Signs a prepared request, or says why not.
    fn sign(
        self: &Arc<Self>,
        request: SignRequest<'_>,
    ) -> impl Future<Output = Result<Signature, ApiError>> + Send;
}

/// The router of the Web3Signer face over `signer`, with `routes` (the side's own routes)
/// merged in; [`body_limit`] applies to every route.
pub fn router<S: Signer>(signer: Arc<S>, routes: Router<Arc<S>>) -> Router {
    routes
        .route("/upcheck", get(upcheck))
        .route("/api/v1/eth2/publicKeys", get(public_keys::<S>))
        .route("/api/v1/eth2/sign/{identifier}", post(sign::<S>))
        .layer(body_limit())
        .with_state(signer)
}

async fn upcheck() -> Response {
    text_response(StatusCode::OK, "OK")
}

async fn public_keys<S: Signer>(State(signer): State<Arc<S>>) -> Response {
    let keys: Vec<String> = signer.public_keys().iter().map(|k| k.to_hex()).collect();
    json_response(StatusCode::OK, &Value::from(keys))
}

async fn sign<S: Signer>(
    State(signer): State<Arc<S>>,
    Path(identifier): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(&headers);
    let span = signer.span(&request_id);
    let (kind, response) = async {
        let (kind, result) = answer(&signer, &identifier, &body, &request_id).await;
        let response = match result {
            Ok(signature) => signature_response(&headers, &signature),
            // Inside the span: an error logged while answering carries the request id.
            Err(e) => e.into_response(),
        };
        (kind, response)
    }
    .instrument(span)
    .await;
    metrics::global().record_sign(kind, response.status().as_u16(), started.elapsed());
    response
}

/// The sign type (None when the body did not parse) and the outcome of one sign request.
async fn answer<S: Signer>(
    signer: &Arc<S>,
    identifier: &str,
    body: &Bytes,
    request_id: &str,
) -> (Option<SignKind>, Result<Signature, ApiError>) {
    let prepared = match prepare(body, signer.network()) {
        Ok(p) => p,
        Err(e) => return (None, Err(e)),
    };
    let kind = prepared.kind;
    let Ok(pubkey) = PublicKeyBytes::parse(identifier) else {
        return (Some(kind), Err(ApiError::UnknownKey(identifier.to_owned())));
    };
    let request = SignRequest {
        pubkey,
        prepared,
        body,
        request_id,
    };
    (Some(kind), signer.sign(request).await)
}

/// [`signing::prepare`] with a request of another network or of an unknown fork counted in
/// `dvsigner_wrong_network_requests_total` and logged once per fork version before it becomes
/// a 400.
fn prepare(body: &[u8], network: &Network) -> Result<PreparedSign, ApiError> {
    signing::prepare(body, network).map_err(|e| {
        if let signing::Error::WrongNetwork(mismatch) = &e {
            metrics::global().record_wrong_network(mismatch);
        }
        ApiError::from(e)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::{to_bytes, Body};
    use axum::http::{header, Request};
    use tower::ServiceExt;

    use super::*;
    use crate::bls::SigningRoot;
    use crate::keys::interop::interop_secret_key;
    use crate::keys::SecretKey;
    use crate::slashing::Refusal;

    /// What the fake saw of one request: key, type, root, body and request id.
    type Seen = (PublicKeyBytes, SignKind, SigningRoot, Bytes, String);

    /// Signs with one key, refuses a second one, and records what it was asked.
    struct Fake {
        network: Network,
        key: SecretKey,
        refused: PublicKeyBytes,
        seen: Mutex<Vec<Seen>>,
    }

    impl Signer for Fake {
        fn network(&self) -> &Network {
            &self.network
        }

        fn public_keys(&self) -> Vec<PublicKeyBytes> {
            vec![self.refused, self.key.public_key().bytes()]
        }

        fn span(&self, request_id: &str) -> tracing::Span {
            tracing::info_span!("fake", request_id = %request_id)
        }

        async fn sign(self: &Arc<Self>, r: SignRequest<'_>) -> Result<Signature, ApiError> {
            self.seen.lock().expect("lock").push((
                r.pubkey,
                r.prepared.kind,
                r.prepared.root,
                r.body.clone(),
                r.request_id.to_owned(),
            ));
            if r.pubkey == self.refused {
                let refusal = Refusal::ValidatorDisabled { pubkey: r.pubkey };
                return Err(ApiError::Refused {
                    pubkey: r.pubkey,
                    refusal,
                });
            }
            if r.pubkey != self.key.public_key().bytes() {
                return Err(ApiError::UnknownKey(r.pubkey.to_hex()));
            }
            Ok(self.key.sign(&r.prepared.root))
        }
    }

    fn attestation() -> String {
        // An electra attestation of mainnet.
        format!(
            concat!(
                r#"{{"type":"ATTESTATION","fork_info":{{"fork":{{"previous_version":"0x04000000","#,
                r#""current_version":"0x05000000","epoch":"364032"}},"genesis_validators_root":"#,
                r#""0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"}},"#,
                r#""attestation":{{"slot":"11649024","index":"0","beacon_block_root":"0x{r}","#,
                r#""source":{{"epoch":"0","root":"0x{r}"}},"target":{{"epoch":"364032","#,
                r#""root":"0x{r}"}}}}}}"#
            ),
            r = "ab".repeat(32)
        )
    }

    struct Answer {
        status: u16,
        content_type: String,
        body: String,
    }

    async fn call(app: &Router, req: Request<Body>) -> Answer {
        let r = app.clone().oneshot(req).await.expect("infallible");
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().expect("ascii").to_owned())
            .unwrap_or_default();
        let body = to_bytes(r.into_body(), usize::MAX).await.expect("body");
        Answer {
            status,
            content_type,
            body: String::from_utf8(body.to_vec()).expect("utf-8"),
        }
    }

    fn post(path: &str) -> axum::http::request::Builder {
        Request::post(path).header(header::CONTENT_TYPE, "application/json")
    }

    fn setup() -> (Arc<Fake>, Router) {
        let fake = Arc::new(Fake {
            network: Network::built_in("mainnet").expect("mainnet"),
            key: interop_secret_key(0),
            refused: interop_secret_key(1).public_key().bytes(),
            seen: Mutex::default(),
        });
        // A side's own route (added with `route_service` so that the route check of the
        // OpenAPI spec, which reads this file, does not take it for a served route).
        let extra = Router::new().route_service(
            "/extra",
            tower::service_fn(|_: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(text_response(StatusCode::OK, "extra"))
            }),
        );
        let app = router(Arc::clone(&fake), extra);
        (fake, app)
    }

    #[tokio::test]
    async fn upcheck_public_keys_and_merged_routes() {
        let (fake, app) = setup();
        let up = call(
            &app,
            Request::get("/upcheck").body(Body::empty()).expect("req"),
        )
        .await;
        assert_eq!(
            (up.status, up.content_type.as_str(), up.body.as_str()),
            (200, "text/plain; charset=utf-8", "OK")
        );
        let keys = call(
            &app,
            Request::get("/api/v1/eth2/publicKeys")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
        assert_eq!(keys.status, 200);
        assert_eq!(keys.content_type, "application/json; charset=utf-8");
        let want: Vec<String> = fake.public_keys().iter().map(|k| k.to_hex()).collect();
        assert_eq!(
            serde_json::from_str::<Vec<String>>(&keys.body).expect("json"),
            want
        );
        let extra = call(
            &app,
            Request::get("/extra").body(Body::empty()).expect("req"),
        )
        .await;
        assert_eq!((extra.status, extra.body.as_str()), (200, "extra"));
    }

    #[tokio::test]
    async fn sign_prepares_hands_over_and_negotiates_the_answer() {
        let (fake, app) = setup();
        let pubkey = fake.key.public_key().bytes();
        let path = format!("/api/v1/eth2/sign/{}", pubkey.to_hex());
        let body = attestation();
        let root = signing::prepare(body.as_bytes(), &fake.network)
            .expect("valid request")
            .root;
        let want = fake.key.sign(&root).to_hex();

        let json = call(
            &app,
            post(&path)
                .header(header::ACCEPT, "application/json")
                .header("x-request-id", "vc-7")
                .body(Body::from(body.clone()))
                .expect("req"),
        )
        .await;
        assert_eq!(json.status, 200, "{}", json.body);
        assert_eq!(json.content_type, "application/json; charset=utf-8");
        assert_eq!(json.body, format!("{{\"signature\":\"{want}\"}}"));

        let text = call(
            &app,
            post(&path).body(Body::from(body.clone())).expect("req"),
        )
        .await;
        assert_eq!(
            (text.status, text.content_type.as_str(), text.body.as_str()),
            (200, "text/plain; charset=utf-8", want.as_str())
        );

        let seen = fake.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 2);
        let (key, kind, seen_root, seen_body, id) = &seen[0];
        assert_eq!(
            (key, kind, seen_root, seen_body.as_ref(), id.as_str()),
            (
                &pubkey,
                &SignKind::Attestation,
                &root,
                body.as_bytes(),
                "vc-7"
            )
        );
        // Without x-request-id the signer gets a generated id.
        assert!(!seen[1].4.is_empty() && seen[1].4 != "vc-7");
    }

    #[tokio::test]
    async fn shared_refusals_come_before_the_signer() {
        let (fake, app) = setup();
        let known = format!(
            "/api/v1/eth2/sign/{}",
            fake.key.public_key().bytes().to_hex()
        );

        let bad = call(&app, post(&known).body(Body::from("{")).expect("req")).await;
        assert_eq!(bad.status, 400);
        assert!(bad.body.starts_with("Bad Request: "), "{}", bad.body);

        let not_a_key = call(
            &app,
            post("/api/v1/eth2/sign/0xnot-a-key")
                .body(Body::from(attestation()))
                .expect("req"),
        )
        .await;
        assert_eq!(
            (not_a_key.status, not_a_key.body.as_str()),
            (404, "Not Found: no key for public key 0xnot-a-key")
        );

        let too_big = call(
            &app,
            post(&known)
                .body(Body::from(vec![
                    b' ';
                    super::super::request::MAX_BODY_BYTES + 1
                ]))
                .expect("req"),
        )
        .await;
        assert_eq!(too_big.status, 413);
        assert!(fake.seen.lock().expect("lock").is_empty());

        // The signer's own error becomes its status.
        let refused = call(
            &app,
            post(&format!("/api/v1/eth2/sign/{}", fake.refused.to_hex()))
                .body(Body::from(attestation()))
                .expect("req"),
        )
        .await;
        assert_eq!(refused.status, 412);
        assert!(
            refused.body.starts_with("Precondition Failed: "),
            "{}",
            refused.body
        );
    }
}
