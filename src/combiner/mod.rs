//! The combiner: a Web3Signer-compatible endpoint that holds no secrets. For each sign request it
//! sends the unchanged body to every signer node of the validator (to
//! `POST /api/v1/eth2/sign/{share_pubkey}`) over mutually authenticated TLS, combines the first
//! `t` valid partial signatures with Lagrange coefficients, verifies the result under the group
//! public key and answers.
//!
//! Verification strategy (DESIGN.md §2, measured in `benches/`): combine the first `t` partials
//! and verify the result once; only when that fails verify each partial, drop the liars (logged
//! and counted) and wait for more. Honest clusters pay one verification per signature.
//!
//! Answers: 412 once so many nodes refused that `t` can no longer be reached; 503 naming the
//! failing nodes when fewer than `t` valid partials arrived by the deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::stream::{FuturesUnordered, StreamExt};
use tracing::Instrument;

use crate::api::{prepare, request_id, signature_response, ApiError, MAX_BODY_BYTES};
use crate::bls::{PublicKey, PublicKeyBytes, Signature, SigningRoot};
use crate::signing::{Network, SignKind};
use crate::threshold::{self, ShareIndex};

pub mod health;
pub mod metrics;

/// One signer node as the combiner sees it.
#[derive(Debug, Clone)]
pub struct NodeTarget {
    /// Operator name (for logs and errors).
    pub name: String,
    /// Base URL, e.g. `https://node-a:9000`.
    pub url: String,
}

/// One share of a validator: its index, public key and the node holding it.
#[derive(Debug, Clone)]
pub struct ShareTarget {
    /// 1-based Shamir index.
    pub index: ShareIndex,
    /// The share's public key (the identifier sent to the node).
    pub pubkey: PublicKey,
    /// Index into [`Combiner::nodes`].
    pub node: usize,
}

/// A threshold validator.
#[derive(Debug, Clone)]
pub struct ValidatorTarget {
    /// The group (validator) public key.
    pub group_pubkey: PublicKey,
    /// Partials needed.
    pub threshold: usize,
    /// Every share.
    pub shares: Vec<ShareTarget>,
}

/// Per-node counters (exported as metrics by [`metrics::combiner_collector`]).
#[derive(Debug)]
pub struct NodeCounters {
    /// Valid partials received.
    pub partials_ok: AtomicU64,
    /// Partials that failed verification.
    pub partials_wrong: AtomicU64,
    /// 412 answers.
    pub refusals: AtomicU64,
    /// Transport errors, timeouts and other statuses.
    pub failures: AtomicU64,
    /// Time from sending a partial request to the node's answer (any answer).
    pub latency: prometheus_client::metrics::histogram::Histogram,
}

impl Default for NodeCounters {
    fn default() -> Self {
        Self {
            partials_ok: AtomicU64::new(0),
            partials_wrong: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency: crate::metrics::latency_histogram(),
        }
    }
}

/// Shared combiner state.
pub struct Combiner {
    /// Signer nodes.
    pub nodes: Vec<NodeTarget>,
    /// Validators by group public key.
    pub validators: HashMap<PublicKeyBytes, ValidatorTarget>,
    /// Network settings (the combiner recomputes the root to verify partials).
    pub network: Network,
    /// How long to wait for partials.
    pub deadline: Duration,
    /// Pooled mTLS client to the nodes.
    pub client: reqwest::Client,
    /// Counters per node (same order as `nodes`).
    pub counters: Vec<NodeCounters>,
    pool: rayon::ThreadPool,
}

impl Combiner {
    /// Builds a combiner.
    ///
    /// # Errors
    /// When the verification thread pool cannot be created.
    pub fn new(
        nodes: Vec<NodeTarget>,
        validators: Vec<ValidatorTarget>,
        network: Network,
        deadline: Duration,
        client: reqwest::Client,
    ) -> Result<Self, rayon::ThreadPoolBuildError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(num_cpus::get().max(1))
            .thread_name(|i| format!("bls-combine-{i}"))
            .build()?;
        let counters = nodes.iter().map(|_| NodeCounters::default()).collect();
        let validators = validators
            .into_iter()
            .map(|v| (v.group_pubkey.bytes(), v))
            .collect();
        Ok(Self {
            nodes,
            validators,
            network,
            deadline,
            client,
            counters,
            pool,
        })
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let _ = tx.send(f());
        });
        rx.await
            .map_err(|_| ApiError::Internal("combine task dropped".into()))
    }
}

/// The combiner's Web3Signer-compatible router.
pub fn router(state: Arc<Combiner>) -> Router {
    Router::new()
        .route("/upcheck", get(health::upcheck))
        .route("/healthcheck", get(health::healthcheck))
        .route("/api/v1/eth2/publicKeys", get(health::public_keys))
        .route("/api/v1/eth2/sign/{identifier}", axum::routing::post(sign))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// What one node answered.
enum NodeAnswer {
    Partial(Signature),
    Refused(String),
    Failed(String),
}

async fn sign(
    State(c): State<Arc<Combiner>>,
    Path(identifier): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(&headers);
    let span = tracing::info_span!("combine", request_id = %request_id);
    let (kind, response) = async {
        let mut kind = None;
        let response =
            match sign_inner(&c, &identifier, &headers, &body, &request_id, &mut kind).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            };
        (kind, response)
    }
    .instrument(span)
    .await;
    crate::metrics::global().record_sign(kind, response.status().as_u16(), started.elapsed());
    response
}

async fn sign_inner(
    c: &Arc<Combiner>,
    identifier: &str,
    headers: &HeaderMap,
    body: &Bytes,
    request_id: &str,
    kind: &mut Option<SignKind>,
) -> Result<Response, ApiError> {
    // Another network's request is refused here, before any node is asked.
    let prepared = prepare(body, &c.network)?;
    *kind = Some(prepared.kind);
    let pubkey = PublicKeyBytes::parse(identifier)
        .map_err(|_| ApiError::UnknownKey(identifier.to_owned()))?;
    let v = c
        .validators
        .get(&pubkey)
        .ok_or_else(|| ApiError::UnknownKey(pubkey.to_hex()))?;
    let started = Instant::now();
    let signature = combine_from_nodes(c, v, body, prepared.root, request_id).await?;
    tracing::debug!(
        %pubkey, kind = prepared.kind.as_str(),
        ms = started.elapsed().as_secs_f64() * 1e3, "threshold signature"
    );
    Ok(signature_response(headers, &signature))
}

/// Asks one node for its partial on a task of its own, so that a straggler's request runs to
/// completion after the combiner has answered: its keep-alive connection goes back to the pool
/// (dropping an in-flight request would close it and cost a new TLS handshake on the next
/// request), and the node's answer is still counted. Bounded by the client's timeout.
fn spawn_ask(
    c: &Arc<Combiner>,
    share: &ShareTarget,
    body: Bytes,
    request_id: &Arc<str>,
) -> impl std::future::Future<Output = (usize, ShareIndex, NodeAnswer)> {
    let (node, index) = (share.node, share.index);
    let task = tokio::spawn(ask_node(
        Arc::clone(c),
        node,
        index,
        share.pubkey.bytes(),
        body,
        Arc::clone(request_id),
    ));
    async move {
        task.await.unwrap_or_else(|e| {
            (
                node,
                index,
                NodeAnswer::Failed(format!("request task failed: {e}")),
            )
        })
    }
}

async fn ask_node(
    c: Arc<Combiner>,
    node_pos: usize,
    index: ShareIndex,
    share_pk: PublicKeyBytes,
    body: Bytes,
    request_id: Arc<str>,
) -> (usize, ShareIndex, NodeAnswer) {
    let node = &c.nodes[node_pos];
    let url = format!(
        "{}/api/v1/eth2/sign/{share_pk}",
        node.url.trim_end_matches('/')
    );
    let started = Instant::now();
    let res = c
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("x-request-id", &*request_id)
        .body(body)
        .send()
        .await;
    let answer = match res {
        Err(e) => NodeAnswer::Failed(format!("request failed: {e}")),
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            if status == StatusCode::OK {
                match parse_signature(&text) {
                    Some(sig) => NodeAnswer::Partial(sig),
                    None => NodeAnswer::Failed("unparseable signature".into()),
                }
            } else if status == StatusCode::PRECONDITION_FAILED {
                NodeAnswer::Refused(text)
            } else {
                NodeAnswer::Failed(format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    truncate(&text, 200)
                ))
            }
        }
    };
    c.counters[node_pos]
        .latency
        .observe(started.elapsed().as_secs_f64());
    (node_pos, index, answer)
}

fn parse_signature(text: &str) -> Option<Signature> {
    let text = text.trim();
    let hex = if text.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        v.get("signature")?.as_str()?.to_owned()
    } else {
        text.to_owned()
    };
    // The subgroup check is left to the verification of the combined signature (and, when
    // that fails, of each partial): both check it, so a partial outside G2 is still caught.
    Signature::from_hex_without_subgroup_check(&hex).ok()
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

async fn combine_from_nodes(
    c: &Arc<Combiner>,
    v: &ValidatorTarget,
    body: &Bytes,
    root: SigningRoot,
    request_id: &str,
) -> Result<Signature, ApiError> {
    let n = v.shares.len();
    let t = v.threshold;
    let request_id_shared: Arc<str> = Arc::from(request_id);
    let mut pending: FuturesUnordered<_> = v
        .shares
        .iter()
        .map(|s| spawn_ask(c, s, body.clone(), &request_id_shared))
        .collect();
    let deadline = tokio::time::sleep(c.deadline);
    tokio::pin!(deadline);

    let mut candidates: Vec<(usize, ShareIndex, Signature)> = Vec::with_capacity(n);
    let mut verified: Vec<bool> = Vec::with_capacity(n);
    let mut refused: Vec<(String, String)> = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();

    loop {
        let (node, index, answer) = tokio::select! {
            next = pending.next() => match next {
                Some(a) => a,
                None => break,
            },
            () = &mut deadline => {
                for s in &v.shares {
                    let answered = candidates.iter().any(|(nd, _, _)| *nd == s.node)
                        || refused.iter().chain(failed.iter()).any(|(name, _)| *name == c.nodes[s.node].name);
                    if !answered {
                        c.counters[s.node].failures.fetch_add(1, Ordering::Relaxed);
                        failed.push((c.nodes[s.node].name.clone(), format!("no answer within {} ms", c.deadline.as_millis())));
                    }
                }
                break;
            }
        };
        let name = c.nodes[node].name.clone();
        match answer {
            NodeAnswer::Partial(sig) => {
                candidates.push((node, index, sig));
                verified.push(false);
            }
            NodeAnswer::Refused(why) => {
                c.counters[node].refusals.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %name, request_id, reason = %truncate(&why, 200), "node refused");
                refused.push((name, why));
            }
            NodeAnswer::Failed(why) => {
                c.counters[node].failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %name, request_id, error = %why, "node failed");
                failed.push((name, why));
            }
        }
        if refused.len() > n - t {
            let names: Vec<_> = refused.iter().map(|(n, _)| n.as_str()).collect();
            return Err(ApiError::RefusedByNodes(format!(
                "{} of {n} nodes refused ({}); threshold {t} cannot be reached",
                refused.len(),
                names.join(", ")
            )));
        }
        if failed.len() + refused.len() > n - t {
            // Not enough nodes left to reach t: answer now instead of waiting for stragglers.
            break;
        }
        if candidates.len() >= t {
            if let Some(sig) =
                try_combine(c, v, root, &mut candidates, &mut verified, request_id).await?
            {
                for (node, _, _) in &candidates {
                    c.counters[*node]
                        .partials_ok
                        .fetch_add(1, Ordering::Relaxed);
                }
                return Ok(sig);
            }
        }
    }
    let mut reasons: Vec<String> = failed
        .iter()
        .chain(refused.iter())
        .map(|(n, w)| format!("{n}: {}", truncate(w, 120)))
        .collect();
    reasons.sort();
    Err(ApiError::Unavailable(format!(
        "only {} of {t} required partial signatures ({})",
        candidates.len(),
        reasons.join("; ")
    )))
}

/// Combines the first `t` candidates and verifies under the group key; on failure verifies each
/// unverified candidate, drops the wrong ones and tries again if `t` remain.
async fn try_combine(
    c: &Arc<Combiner>,
    v: &ValidatorTarget,
    root: SigningRoot,
    candidates: &mut Vec<(usize, ShareIndex, Signature)>,
    verified: &mut Vec<bool>,
    request_id: &str,
) -> Result<Option<Signature>, ApiError> {
    let t = v.threshold;
    let chosen: Vec<(ShareIndex, Signature)> = candidates
        .iter()
        .take(t)
        .map(|(_, i, s)| (*i, s.clone()))
        .collect();
    let group = v.group_pubkey.clone();
    let combined = c
        .run_blocking(move || {
            threshold::combine(&chosen, t)
                .ok()
                .filter(|sig| sig.verify(&group, &root.0))
        })
        .await?;
    if combined.is_some() {
        return Ok(combined);
    }
    // Someone lied: check every partial we have not checked yet.
    let to_check: Vec<(usize, Signature, PublicKey)> = candidates
        .iter()
        .zip(verified.iter())
        .enumerate()
        .filter(|(_, (_, done))| !**done)
        .filter_map(|(pos, ((node, index, sig), _))| {
            v.shares
                .iter()
                .find(|s| s.node == *node && s.index == *index)
                .map(|s| (pos, sig.clone(), s.pubkey.clone()))
        })
        .collect();
    let results = c
        .run_blocking(move || {
            to_check
                .into_iter()
                .map(|(pos, sig, pk)| (pos, sig.verify(&pk, &root.0)))
                .collect::<Vec<_>>()
        })
        .await?;
    let mut bad = Vec::new();
    for (pos, ok) in results {
        if ok {
            verified[pos] = true;
        } else {
            bad.push(pos);
        }
    }
    for pos in bad.into_iter().rev() {
        let (node, _, _) = candidates.remove(pos);
        verified.remove(pos);
        c.counters[node]
            .partials_wrong
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(node = %c.nodes[node].name, request_id, "node returned a wrong partial signature; left out");
    }
    if candidates.len() < t {
        return Ok(None);
    }
    let chosen: Vec<(ShareIndex, Signature)> = candidates
        .iter()
        .take(t)
        .map(|(_, i, s)| (*i, s.clone()))
        .collect();
    let group = v.group_pubkey.clone();
    c.run_blocking(move || {
        threshold::combine(&chosen, t)
            .ok()
            .filter(|sig| sig.verify(&group, &root.0))
    })
    .await
}
