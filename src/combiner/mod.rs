//! The combiner: a Web3Signer-compatible endpoint that holds no secrets. For each sign request it
//! computes the signing root, sends the body with that root filled in as `signingRoot` to every
//! signer node of the validator (to `POST /api/v1/eth2/sign/{share_pubkey}`) over mutually
//! authenticated TLS, combines the first `t` valid partial signatures with Lagrange
//! coefficients, verifies the result under the group public key and answers.
//!
//! Filling in the root lets Web3Signer-compatible signers that sign only a supplied root (and
//! refuse a request without one) serve as nodes. It is safe: a dvsigner node computes the root
//! from the typed payload itself and refuses a supplied root that differs, and the combiner
//! verifies every threshold signature against the root it computed.
//!
//! Verification strategy (measured in `benches/`): combine the first `t` partials and verify
//! the result once; only when that fails verify each partial, drop the liars (logged and
//! counted) and wait for more. Honest clusters pay one verification per signature, and the
//! combined signatures of concurrent requests are verified together in batches
//! ([`verify`]: one final exponentiation per batch; a failed batch falls back to checking each
//! signature, then that request's partials). Each signing root is hashed to G2 once per
//! request. A signature is only ever returned after it verified.
//!
//! Load ([`gate`]): each node gets at most a bounded number of requests at once, in arrival
//! order; a request that can no longer make its deadline is not sent, and a sign request that
//! cannot be answered in time is refused at once with 503 and `Retry-After` (counted in
//! `dvsigner_combiner_shed_total`). Pooled connections to every node are opened at start.
//!
//! Answers: 412 once the duty cannot be won (a node refused and fewer than `t` nodes can still
//! give a partial, or the deadline passed after a refusal), passing on the first refusing node's
//! text; otherwise 503 when fewer than `t` valid partials arrived by the deadline (or failures
//! made `t` unreachable), one line per node without a partial naming its cause
//! ([`node_error`]).
//!
//! Node health ([`node_health`]): after consecutive transport failures a node is backed off —
//! not sent requests while at least `t` of the validator's other nodes are healthy, probed with
//! `GET /upcheck` until it answers — and its state changes are logged once each (down, back,
//! a periodic summary) instead of one line per failed request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;

use crate::bls::{PublicKey, PublicKeyBytes, Signature, SigningRoot};
use crate::http::info::{Info, NetworkInfo, INFO_PATH};
use crate::http::{web3signer, ApiError, BlockingPool, SignRequest, Signer};
use crate::signing::Network;
use crate::threshold::{self, ShareIndex};

pub mod gate;
pub mod health;
pub mod metrics;
pub mod node_error;
pub mod node_health;
pub mod pool;
pub mod verify;

use gate::{GateLimits, NodeGate, NotSent};

use node_health::{HealthSettings, NodeHealth, Transition};

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
    /// Partials that arrived after the combiner had answered the request (not verified).
    pub partials_late: AtomicU64,
    /// 412 answers.
    pub refusals: AtomicU64,
    /// Transport errors, timeouts and other statuses: one per failed attempt, also when it
    /// ends after the combiner answered.
    pub failures: AtomicU64,
    /// Time from sending a partial request to the node's answer (any answer).
    pub latency: prometheus_client::metrics::histogram::Histogram,
    /// Whether the node's latest answer was a failure (transport error, no answer by the deadline,
    /// other status) or a partial that failed verification; a node never asked is not failing.
    /// Any partial or refusal clears it.
    pub failing: AtomicBool,
}

impl NodeCounters {
    fn count_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.failing.store(true, Ordering::Relaxed);
    }
}

impl Default for NodeCounters {
    fn default() -> Self {
        Self {
            partials_ok: AtomicU64::new(0),
            partials_wrong: AtomicU64::new(0),
            partials_late: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency: crate::metrics::latency_histogram(),
            failing: AtomicBool::new(false),
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
    /// Health (back-off state) per node (same order as `nodes`).
    pub health: Vec<NodeHealth>,
    /// Back-off and probe settings.
    pub health_settings: HealthSettings,
    /// The client's connect timeout (TCP and TLS handshake), named in errors.
    pub connect_timeout: Duration,
    /// Bounded, ordered dispatch per node (same order as `nodes`).
    pub gates: Vec<Arc<NodeGate>>,
    /// Combination and batch verification of concurrent requests.
    pub verifier: verify::VerifyQueue,
    /// Sign requests refused with 503 and `Retry-After` because they could not be answered
    /// within the deadline.
    pub shed: AtomicU64,
    /// Connections opened to each node at start ([`Combiner::spawn_warmup`]), at most its
    /// in-flight limit.
    pub warm_connections: usize,
    /// Round-robin turn among nodes equally placed to be a sign request's spares.
    spare_turn: AtomicUsize,
    pool: BlockingPool,
}

impl Combiner {
    /// Builds a combiner.
    ///
    /// # Errors
    /// When the verification threads cannot be created.
    pub fn new(
        nodes: Vec<NodeTarget>,
        validators: Vec<ValidatorTarget>,
        network: Network,
        deadline: Duration,
        client: reqwest::Client,
    ) -> anyhow::Result<Self> {
        let pool = BlockingPool::new("bls-combine", "combine")?;
        let verifier = verify::VerifyQueue::start(num_cpus::get())?;
        let gates = nodes
            .iter()
            .map(|_| Arc::new(NodeGate::new(GateLimits::default())))
            .collect();
        let counters = nodes.iter().map(|_| NodeCounters::default()).collect();
        let health = nodes.iter().map(|_| NodeHealth::default()).collect();
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
            health,
            health_settings: HealthSettings::default(),
            connect_timeout: deadline,
            gates,
            verifier,
            shed: AtomicU64::new(0),
            warm_connections: WARM_CONNECTIONS,
            spare_turn: AtomicUsize::new(0),
            pool,
        })
    }

    /// Replaces the per-node request limits (before serving).
    pub fn set_gate_limits(&mut self, limits: GateLimits) {
        self.gates = self
            .nodes
            .iter()
            .map(|_| Arc::new(NodeGate::new(limits)))
            .collect();
    }

    /// Opens pooled connections to every node in the background, as many as a node's
    /// in-flight limit (at most [`Combiner::warm_connections`]), with concurrent `GET /upcheck`
    /// requests once the node answers one (tried every second for a minute), so that the
    /// first burst does not start with a handshake per request.
    pub fn spawn_warmup(self: &Arc<Self>) {
        if self.warm_connections == 0 {
            return;
        }
        for node in 0..self.nodes.len() {
            let c = Arc::clone(self);
            tokio::spawn(async move {
                let url = format!("{}/upcheck", c.nodes[node].url.trim_end_matches('/'));
                let timeout = c.deadline.saturating_add(c.connect_timeout);
                let mut up = false;
                for _ in 0..60 {
                    let answer = c.client.get(&url).timeout(timeout).send().await;
                    if matches!(answer, Ok(r) if r.status().is_success()) {
                        up = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                if !up {
                    return;
                }
                let n = c.gates[node].limits().max_in_flight.min(c.warm_connections);
                let opened = crate::http::warm_connections(&c.client, &url, n, timeout).await;
                tracing::debug!(node = %c.nodes[node].name, opened, "connections to node warmed");
            });
        }
    }
}

/// Default connections per node opened at start ([`Combiner::spawn_warmup`]).
pub const WARM_CONNECTIONS: usize = 256;

tokio::task_local! {
    /// Seconds for the `Retry-After` header of the current sign request's 503, when it was
    /// refused for load.
    static RETRY_AFTER: std::cell::Cell<Option<u64>>;
}

/// Marks the current sign request's answer as shed for load: its 503 gets `Retry-After`.
fn set_retry_after(secs: u64) {
    let _ = RETRY_AFTER.try_with(|c| c.set(Some(secs.clamp(1, 60))));
}

/// Adds `Retry-After` to a 503 of a sign request refused for load.
async fn retry_after_layer(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (mut response, secs) = RETRY_AFTER
        .scope(std::cell::Cell::new(None), async {
            let r = next.run(request).await;
            (r, RETRY_AFTER.with(std::cell::Cell::get))
        })
        .await;
    if let Some(secs) = secs {
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
    }
    response
}

/// The combiner's Web3Signer-compatible router: the shared face plus `/healthcheck` (node
/// reachability) and the info route.
pub fn router(state: Arc<Combiner>) -> Router {
    let routes = Router::new()
        .route("/healthcheck", get(health::healthcheck))
        .route(INFO_PATH, get(info));
    web3signer::router(state, routes).layer(axum::middleware::from_fn(retry_after_layer))
}

/// `GET /api/v1/dvsigner/info`: the combiner's role, version and network.
async fn info(State(c): State<Arc<Combiner>>) -> Response {
    Info::new("combiner", NetworkInfo::of(&c.network, None), None).response()
}

impl Signer for Combiner {
    fn network(&self) -> &Network {
        &self.network
    }

    /// The group keys, sorted.
    fn public_keys(&self) -> Vec<PublicKeyBytes> {
        let mut keys: Vec<PublicKeyBytes> = self.validators.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    fn span(&self, request_id: &str) -> tracing::Span {
        tracing::info_span!("combine", request_id = %request_id)
    }

    fn sign(
        self: &Arc<Self>,
        request: SignRequest<'_>,
    ) -> impl std::future::Future<Output = Result<Signature, ApiError>> + Send {
        sign(self, request)
    }
}

/// What one node answered.
enum NodeAnswer {
    Partial(Signature),
    /// A partial that arrived after the combiner answered (counted, not decoded).
    Late,
    Refused(String),
    Failed(String),
    /// Not sent: it could no longer make the deadline.
    Overloaded(String),
    /// Not sent: the combiner had answered while it waited.
    NotNeeded,
}

/// The combiner's side of a sign request: look up the group key (404), ask its nodes, combine.
/// A request of another network never gets here: the shared steps refused it before any node
/// is asked.
async fn sign(c: &Arc<Combiner>, request: SignRequest<'_>) -> Result<Signature, ApiError> {
    let SignRequest {
        pubkey,
        prepared,
        body,
        request_id,
    } = request;
    let v = c
        .validators
        .get(&pubkey)
        .ok_or_else(|| ApiError::UnknownKey(pubkey.to_hex()))?;
    let forward = with_signing_root(body, prepared.root)?;
    let started = Instant::now();
    let signature = combine_from_nodes(c, v, &forward, prepared.root, request_id).await?;
    tracing::debug!(
        %pubkey, kind = prepared.kind.as_str(),
        ms = started.elapsed().as_secs_f64() * 1e3, "threshold signature"
    );
    Ok(signature)
}

/// The body sent to the nodes: the client's request with `signingRoot` set to `root` (the root
/// the combiner computed, which equals any root the client supplied: [`signing::prepare`]
/// refuses a differing one) and a snake-case `signing_root` removed, so that no node sees the
/// root twice. Every other top-level member is kept byte for byte; member order carries no
/// meaning in JSON.
///
/// # Errors
/// [`ApiError::BadRequest`] when the body is not a JSON object (which [`signing::prepare`]
/// already refused).
pub fn with_signing_root(body: &[u8], root: SigningRoot) -> Result<Bytes, ApiError> {
    use serde_json::value::RawValue;
    let mut members: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    members.remove("signing_root");
    let root_json = RawValue::from_string(format!("\"{}\"", root.to_hex()))
        .map_err(|e| ApiError::Internal(format!("signing root as JSON: {e}")))?;
    members.insert("signingRoot".to_owned(), root_json);
    serde_json::to_vec(&members)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(format!("forwarded body: {e}")))
}

/// Asks one node for its partial on a task of its own, so that a straggler's request runs to
/// completion after the combiner has answered: its keep-alive connection goes back to the pool
/// (dropping an in-flight request would close it and cost a new TLS handshake on the next
/// request), and the node's answer is still counted (a partial as late). Bounded by
/// [`pool::node_request_timeout`].
fn spawn_ask(
    c: &Arc<Combiner>,
    share: &ShareTarget,
    body: Bytes,
    request_id: &Arc<str>,
    answered: &pool::Answered,
    spare: Option<&pool::Answered>,
) -> impl std::future::Future<Output = (usize, ShareIndex, NodeAnswer)> {
    let (node, index) = (share.node, share.index);
    let task = tokio::spawn(ask_node(
        Arc::clone(c),
        node,
        index,
        share.pubkey.bytes(),
        body,
        Ask {
            request_id: Arc::clone(request_id),
            answered: answered.clone(),
            spare: spare.cloned(),
        },
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

/// What a node request belongs to: its sign request's id and answered flag, and for a spare
/// the flag that makes it needed ([`gate`]).
struct Ask {
    request_id: Arc<str>,
    answered: pool::Answered,
    spare: Option<pool::Answered>,
}

async fn ask_node(
    c: Arc<Combiner>,
    node_pos: usize,
    index: ShareIndex,
    share_pk: PublicKeyBytes,
    body: Bytes,
    ask: Ask,
) -> (usize, ShareIndex, NodeAnswer) {
    let Ask {
        request_id,
        answered,
        spare,
    } = ask;
    let node = &c.nodes[node_pos];
    let until = Instant::now() + c.deadline;
    let _permit = match c.gates[node_pos]
        .acquire(&answered, until, spare.as_ref())
        .await
    {
        Ok(p) => p,
        Err(NotSent::Answered) => return (node_pos, index, NodeAnswer::NotNeeded),
        Err(NotSent::Overloaded { waited, queued }) => {
            let why = format!(
                "not sent: overloaded ({queued} requests queued for it, waited {} ms; the \
                 node's answers take {} ms, more than the time left)",
                waited.as_millis(),
                c.gates[node_pos]
                    .service_time()
                    .unwrap_or_default()
                    .as_millis()
            );
            return (node_pos, index, NodeAnswer::Overloaded(why));
        }
    };
    let url = format!(
        "{}/api/v1/eth2/sign/{share_pk}",
        node.url.trim_end_matches('/')
    );
    let started = Instant::now();
    let timeout = pool::node_request_timeout(c.deadline, c.connect_timeout);
    let res = c
        .client
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("x-request-id", &*request_id)
        .body(body)
        .send()
        .await;
    let describe = |e: &reqwest::Error| {
        node_error::describe_request_error_with(e, timeout, Some(c.connect_timeout))
    };
    // Whether the node gave an HTTP answer (a status line): only requests without one are
    // transport failures for the node's health.
    let mut got_status = true;
    let answer = match res {
        Err(e) => {
            got_status = false;
            NodeAnswer::Failed(describe(&e))
        }
        Ok(r) => {
            let status = r.status();
            match r.text().await {
                Err(e) => {
                    got_status = false;
                    NodeAnswer::Failed(format!(
                        "HTTP {}, then reading its body failed: {}",
                        status.as_u16(),
                        describe(&e)
                    ))
                }
                // After the combiner answered, a partial is only counted: not decoded.
                Ok(_) if status == StatusCode::OK && answered.is_set() => NodeAnswer::Late,
                Ok(text) if status == StatusCode::OK => match parse_signature(&text) {
                    Some(sig) => NodeAnswer::Partial(sig),
                    None => NodeAnswer::Failed(format!(
                        "HTTP 200 but no signature in the body: {}",
                        node_error::snippet(&text, 80)
                    )),
                },
                Ok(text) if status == StatusCode::PRECONDITION_FAILED => NodeAnswer::Refused(text),
                Ok(text) => NodeAnswer::Failed(node_error::describe_status(status, &text)),
            }
        }
    };
    let counters = &c.counters[node_pos];
    let took = started.elapsed();
    counters.latency.observe(took.as_secs_f64());
    if got_status {
        c.gates[node_pos].record_service_time(took);
    }
    if matches!(answer, NodeAnswer::Late)
        || (matches!(answer, NodeAnswer::Partial(_)) && answered.is_set())
    {
        counters.partials_late.fetch_add(1, Ordering::Relaxed);
    }
    // Every answer, also one arriving after the combiner answered: a partial (until its
    // verification fails) or a refusal means the node works, anything else that it does not.
    if matches!(answer, NodeAnswer::Failed(_)) {
        // Counted here, for every attempt, also one that ends after the combiner answered:
        // failures plus skips of a node add up to the requests for its validators.
        counters.count_failure();
    } else {
        counters.failing.store(false, Ordering::Relaxed);
    }
    let now = Instant::now();
    let transition = match (&answer, got_status) {
        (NodeAnswer::Failed(why), false) => {
            c.health[node_pos].record_transport_failure(started, why, &c.health_settings, now)
        }
        (NodeAnswer::Failed(why), true) => c.health[node_pos].record_answer(Some(why), now),
        _ => c.health[node_pos].record_answer(None, now),
    };
    log_transition(&c, node_pos, transition);
    (node_pos, index, answer)
}

/// Logs a node's state change once: WARN when it is backed off (and starts its probe loop) or
/// starts answering with error statuses, INFO when it is back or answers normally again.
fn log_transition(c: &Arc<Combiner>, node_pos: usize, transition: Transition) {
    let node = &c.nodes[node_pos];
    match transition {
        Transition::None => {}
        Transition::WentDown {
            failures,
            cause,
            generation,
        } => {
            tracing::warn!(
                node = %node.name, url = %node.url, failures, error = %cause,
                next_probe_ms = c.health_settings.probe_initial.as_millis() as u64,
                "signer node down: backed off (sign requests are not sent to it while at least \
                 the threshold of other nodes is healthy; probing /upcheck)"
            );
            spawn_probe_loop(Arc::clone(c), node_pos, generation);
        }
        Transition::CameBack { downtime, skipped } => {
            tracing::info!(
                node = %node.name, url = %node.url,
                downtime = %node_health::human_duration(downtime), skipped,
                "signer node back: sending sign requests to it again"
            );
        }
        Transition::StartedErroring(why) => {
            tracing::warn!(
                node = %node.name, url = %node.url, error = %why,
                "signer node answers with errors (logged once until it answers normally again)"
            );
        }
        Transition::StoppedErroring => {
            tracing::info!(node = %node.name, url = %node.url, "signer node answers normally again");
        }
    }
}

/// Probes a backed-off node (`GET /upcheck`) at the times its health state sets, until the
/// back-off period `generation` ends (a probe or a request answered).
fn spawn_probe_loop(c: Arc<Combiner>, node_pos: usize, generation: u64) {
    tokio::spawn(async move {
        let url = format!("{}/upcheck", c.nodes[node_pos].url.trim_end_matches('/'));
        // Bounded: every round sleeps at least the initial probe wait, and the loop ends with
        // the back-off period.
        while let Some(due) = c.health[node_pos].probe_due(generation) {
            tokio::time::sleep_until(due.into()).await;
            if c.health[node_pos].probe_due(generation).is_none() {
                break;
            }
            let result = c.client.get(&url).send().await;
            let failure = match result {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    Some(node_error::describe_status(status, &body))
                }
                Err(e) => Some(node_error::describe_request_error_with(
                    &e,
                    c.deadline,
                    Some(c.connect_timeout),
                )),
            };
            let now = Instant::now();
            match failure {
                None => {
                    let t = c.health[node_pos].record_answer(None, now);
                    log_transition(&c, node_pos, t);
                    break;
                }
                Some(why) => {
                    tracing::debug!(node = %c.nodes[node_pos].name, error = %why, "probe failed");
                    c.health[node_pos].record_probe_failure(&why, &c.health_settings, now);
                }
            }
        }
    });
}

impl Combiner {
    /// Starts the periodic summary: every [`HealthSettings::summary_every`], one WARN line per
    /// backed-off node (how long, how many requests not sent to it, the latest failure). Runs
    /// until the runtime stops.
    pub fn spawn_down_summary(self: &Arc<Self>) {
        let c = Arc::clone(self);
        tokio::spawn(async move {
            let every = c.health_settings.summary_every.max(Duration::from_secs(1));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = Instant::now();
                for (node, health) in c.nodes.iter().zip(&c.health) {
                    if let Some(s) = health.summary(now) {
                        tracing::warn!(
                            node = %node.name, url = %node.url, failures = s.failures,
                            error = %s.cause,
                            "signer node still down: {} down for {}, {} requests skipped",
                            node.name, node_health::human_duration(s.down_for), s.skipped
                        );
                    }
                }
            }
        });
    }
}

fn parse_signature(text: &str) -> Option<Signature> {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        signature: std::borrow::Cow<'a, str>,
    }
    let text = text.trim();
    // The subgroup check is left to the verification of the combined signature (and, when
    // that fails, of each partial): both check it, so a partial outside G2 is still caught.
    if text.starts_with('{') {
        let body: Body<'_> = serde_json::from_str(text).ok()?;
        Signature::from_hex_without_subgroup_check(&body.signature).ok()
    } else {
        Signature::from_hex_without_subgroup_check(text).ok()
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
    let started = Instant::now();
    let request_id_shared: Arc<str> = Arc::from(request_id);
    // Which nodes to ask. While at least `t` of the validator's nodes are healthy, backed-off
    // nodes are not asked: the healthy ones can complete the signature, and a backed-off node
    // would most likely cost a failed connect. With fewer than `t` healthy nodes every node
    // is asked, backed-off ones included: without them the answer is a certain 503, and an
    // attempt is cheap (a dead node fails its connect fast) and doubles as a probe.
    let healthy = v
        .shares
        .iter()
        .filter(|s| !c.health[s.node].is_backed_off())
        .count();
    let ask_backed_off = healthy < t;
    if let Some(retry_after) = admission(c, v, ask_backed_off) {
        c.shed.fetch_add(1, Ordering::Relaxed);
        set_retry_after(retry_after.as_secs_f64().ceil() as u64);
        return Err(ApiError::Unavailable(format!(
            "overloaded: the signer nodes' queues cannot answer within the {} ms deadline; \
             retry in {} s",
            c.deadline.as_millis(),
            retry_after.as_secs_f64().ceil()
        )));
    }
    let mut skipped: Vec<usize> = Vec::new();
    let mut causes: Vec<(usize, String)> = Vec::new();
    let now = Instant::now();
    let mut pending: FuturesUnordered<_> = FuturesUnordered::new();
    let answered_flag = pool::Answered::default();
    let _answered_on_return = answered_flag.guard();
    let mut asked: Vec<&ShareTarget> = Vec::with_capacity(n);
    for s in &v.shares {
        let health = &c.health[s.node];
        if !ask_backed_off && health.is_backed_off() {
            if let Some(why) = health.describe_backed_off(now) {
                health.count_skip();
                tracing::debug!(node = %c.nodes[s.node].name, request_id, reason = %why, "node skipped");
                skipped.push(s.node);
                causes.push((s.node, why));
                continue;
            }
        }
        asked.push(s);
    }
    // The `t` nodes expected to answer first are needed, the others spares (sent at once to
    // a node that is not loaded, else only once wanted: see `gate`).
    let spares_wanted = pool::Answered::default();
    let spare_nodes = spare_nodes(c, &asked, t, ask_backed_off);
    for s in &asked {
        let spare = spare_nodes.contains(&s.node).then_some(&spares_wanted);
        pending.push(spawn_ask(
            c,
            s,
            body.clone(),
            &request_id_shared,
            &answered_flag,
            spare,
        ));
    }
    let deadline = tokio::time::sleep(c.deadline);
    tokio::pin!(deadline);
    // Spares still waiting are wanted once a third of the deadline has passed (unless the
    // needed nodes' queues are why).
    let hedge = tokio::time::sleep(c.deadline / 3);
    tokio::pin!(hedge);

    let mut candidates: Vec<(usize, ShareIndex, Signature)> = Vec::with_capacity(n);
    let mut verified: Vec<bool> = Vec::with_capacity(n);
    // Nodes (positions in `c.nodes`) that answered anything; those that refused; and why each
    // node without a partial gave none.
    let mut answered: Vec<usize> = Vec::with_capacity(n);
    let mut refused: Vec<usize> = Vec::new();
    // The first refusing node's 412 text, passed on when the combiner answers 412.
    let mut first_refusal: Option<String> = None;
    let mut deadline_passed = false;
    let mut overloaded = false;
    // The signing root hashed to G2, once known (from the first combination).
    let mut hashed: Option<threshold::HashedMessage> = None;

    loop {
        let (node, index, answer) = tokio::select! {
            next = pending.next() => match next {
                Some(a) => a,
                None => break,
            },
            () = &mut deadline => {
                deadline_passed = true;
                break;
            }
            () = &mut hedge, if !spares_wanted.is_set() => {
                // Spares help against a silent node, not against load: while a needed node's
                // requests still queue in its gate, more requests would only lengthen the queues.
                let loaded = asked
                    .iter()
                    .filter(|s| !spare_nodes.contains(&s.node))
                    .any(|s| c.gates[s.node].saturated());
                if loaded {
                    hedge
                        .as_mut()
                        .reset(tokio::time::Instant::now() + c.deadline / 8);
                } else {
                    spares_wanted.set();
                }
                continue;
            }
        };
        if !matches!(answer, NodeAnswer::Partial(_)) {
            // A node gave no partial: the spares are needed now.
            spares_wanted.set();
        }
        answered.push(node);
        let name = &c.nodes[node].name;
        match answer {
            NodeAnswer::Partial(sig) => {
                candidates.push((node, index, sig));
                verified.push(false);
            }
            NodeAnswer::Refused(why) => {
                c.counters[node].refusals.fetch_add(1, Ordering::Relaxed);
                first_refusal.get_or_insert_with(|| refusal_text(&why));
                let why = node_error::snippet(&why, node_error::BODY_SNIPPET_CHARS);
                tracing::warn!(node = %name, request_id, reason = %why, "node refused");
                refused.push(node);
                causes.push((node, format!("refused (HTTP 412): {why}")));
            }
            NodeAnswer::Failed(why) => {
                // Per request at DEBUG: state changes are logged once each by `log_transition`.
                tracing::debug!(node = %name, request_id, error = %why, "node failed");
                causes.push((node, why));
            }
            NodeAnswer::Overloaded(why) => {
                tracing::debug!(node = %name, request_id, reason = %why, "node request shed");
                overloaded = true;
                causes.push((node, why));
            }
            // Only once the request is answered, which ends this loop first.
            NodeAnswer::Late | NodeAnswer::NotNeeded => {
                causes.push((node, "no partial (request answered)".into()));
            }
        }
        // The duty cannot be won once a node refused and fewer than t nodes can still give a
        // partial (those that gave one plus those not answered yet): 412, not 503.
        if !refused.is_empty() && candidates.len() + pending.len() < t {
            let unreachable = causes.len() - refused.len();
            return Err(cannot_win(
                n,
                refused.len(),
                unreachable,
                pending.len(),
                first_refusal.as_deref(),
            ));
        }
        if causes.len() > n - t {
            // Not enough nodes left to reach t: answer now instead of waiting for stragglers.
            break;
        }
        if candidates.len() >= t {
            if let Some(sig) = try_combine(
                c,
                v,
                root,
                &mut hashed,
                &mut candidates,
                &mut verified,
                request_id,
            )
            .await?
            {
                for (node, _, _) in &candidates {
                    c.counters[*node]
                        .partials_ok
                        .fetch_add(1, Ordering::Relaxed);
                }
                // Answers that came in while the signature was combined are counted too
                // (partials as late: not used); those still running count themselves.
                while let Some(Some((node, _, answer))) = pending.next().now_or_never() {
                    match answer {
                        NodeAnswer::Partial(_) => {
                            c.counters[node]
                                .partials_late
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        NodeAnswer::Refused(_) => {
                            c.counters[node].refusals.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                return Ok(sig);
            }
            // A partial was wrong (left out): the spares are needed now.
            spares_wanted.set();
        }
    }
    let waited_ms = started.elapsed().as_millis();
    for s in &v.shares {
        if skipped.contains(&s.node) {
            continue;
        }
        if !answered.contains(&s.node) {
            let cause = if deadline_passed {
                // Counted as a failure by its request task if its timeout
                // ([`pool::node_request_timeout`]) ends it; failing until it answers.
                c.counters[s.node].failing.store(true, Ordering::Relaxed);
                node_error::timed_out(c.deadline)
            } else {
                format!(
                    "no answer yet after {waited_ms} ms (not awaited: the other nodes' \
                     failures had already put the threshold out of reach)"
                )
            };
            causes.push((s.node, cause));
        } else if !candidates.iter().any(|(nd, _, _)| *nd == s.node)
            && !causes.iter().any(|(nd, _)| *nd == s.node)
        {
            causes.push((
                s.node,
                "returned a wrong partial signature (left out)".into(),
            ));
        }
    }
    if !refused.is_empty() {
        // Out of time (or partials were wrong) after a refusal: the duty cannot be won.
        let unreachable = causes.len() - refused.len();
        return Err(cannot_win(
            n,
            refused.len(),
            unreachable,
            0,
            first_refusal.as_deref(),
        ));
    }
    // Also shed for load: the deadline passed while a node's request still waited in its
    // queue.
    overloaded |= deadline_passed
        && v.shares.iter().any(|s| {
            !answered.contains(&s.node)
                && !skipped.contains(&s.node)
                && c.gates[s.node].load().1 > 0
        });
    if overloaded {
        c.shed.fetch_add(1, Ordering::Relaxed);
        set_retry_after(retry_after_estimate(c, v).as_secs_f64().ceil() as u64);
    }
    causes.sort_by(|a, b| c.nodes[a.0].name.cmp(&c.nodes[b.0].name));
    let lines: String = causes
        .iter()
        .map(|(nd, why)| {
            let node = &c.nodes[*nd];
            format!("\n- {} ({}): {why}", node.name, node.url)
        })
        .collect();
    Err(ApiError::Unavailable(format!(
        "only {} of {t} required partial signatures; nodes without one:{lines}",
        candidates.len(),
    )))
}

/// Nodes (positions in `c.nodes`) that get the request as spares: all but the `t` of `asked`
/// expected to answer first (shortest queue and recent answer time, [`NodeGate::expected_answer`];
/// ties go round-robin). None when fewer than `t` nodes are healthy (every node is needed then).
fn spare_nodes(c: &Combiner, asked: &[&ShareTarget], t: usize, ask_backed_off: bool) -> Vec<usize> {
    if ask_backed_off || asked.len() <= t {
        return Vec::new();
    }
    let turn = c.spare_turn.fetch_add(1, Ordering::Relaxed);
    let mut ranked: Vec<(Duration, usize, usize)> = asked
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let expected = c.gates[s.node].expected_answer().unwrap_or(Duration::ZERO);
            (expected, (i + turn) % asked.len(), s.node)
        })
        .collect();
    ranked.sort_unstable();
    ranked[t..].iter().map(|(_, _, node)| *node).collect()
}

/// The 412 answer when the duty cannot be won any more: what the combiner saw (`refused` of `n`
/// nodes refused, `unreachable` gave no answer or a wrong one, `pending` were not awaited),
/// then the first refusing node's own text (its "Precondition Failed: " prefix dropped).
fn cannot_win(
    n: usize,
    refused: usize,
    unreachable: usize,
    pending: usize,
    first_refusal: Option<&str>,
) -> ApiError {
    let mut seen = format!("{refused} of {n} nodes refused, {unreachable} unreachable");
    if pending > 0 {
        seen.push_str(&format!(", {pending} not awaited"));
    }
    ApiError::PreconditionFailed(format!("{seen}: {}", first_refusal.unwrap_or_default()))
}

/// A node's 412 body as passed on: its "Precondition Failed: " prefix dropped, whitespace
/// flattened, at most 600 characters (room for a duty, a validator key and a root).
fn refusal_text(body: &str) -> String {
    let text = body.trim_start();
    let text = text.strip_prefix("Precondition Failed:").unwrap_or(text);
    node_error::snippet(text, 600)
}

/// Admission control: `Some(retry after)` when fewer than `t` of the nodes this request
/// would be sent to can be expected to answer within the deadline, judged by their queues
/// and recent answer times ([`NodeGate::expected_answer`]); such a request could only end in
/// a 503 at the deadline, after adding to the queues. Nodes without an answer time yet, and
/// nodes that can take the request at once, count as able ([`gate::shed_for_load`]).
fn admission(c: &Combiner, v: &ValidatorTarget, ask_backed_off: bool) -> Option<Duration> {
    let gates = v
        .shares
        .iter()
        .filter(|s| ask_backed_off || !c.health[s.node].is_backed_off())
        .map(|s| c.gates[s.node].as_ref());
    gate::shed_for_load(gates, v.threshold, c.deadline)
}

/// How long until the validator's `t`-th fastest node has worked through its queue, at least
/// a second: the `Retry-After` of a request shed for load.
fn retry_after_estimate(c: &Combiner, v: &ValidatorTarget) -> Duration {
    let mut expected: Vec<Duration> = v
        .shares
        .iter()
        .map(|s| c.gates[s.node].expected_answer().unwrap_or(Duration::ZERO))
        .collect();
    expected.sort_unstable();
    v.threshold
        .checked_sub(1)
        .and_then(|i| expected.get(i).copied())
        .unwrap_or_default()
        .max(Duration::from_secs(1))
}

/// Combines the first `t` candidates and verifies under the group key (on the verification
/// queue, batched with concurrent requests); on failure verifies each unverified candidate
/// against the root hashed once (`hashed`), drops the wrong ones and tries again if `t` remain.
async fn try_combine(
    c: &Arc<Combiner>,
    v: &ValidatorTarget,
    root: SigningRoot,
    hashed: &mut Option<threshold::HashedMessage>,
    candidates: &mut Vec<(usize, ShareIndex, Signature)>,
    verified: &mut Vec<bool>,
    request_id: &str,
) -> Result<Option<Signature>, ApiError> {
    let t = v.threshold;
    let job = |candidates: &[(usize, ShareIndex, Signature)], hashed| verify::CombineJob {
        partials: candidates
            .iter()
            .take(t)
            .map(|(_, i, s)| (*i, s.clone()))
            .collect(),
        threshold: t,
        group: v.group_pubkey.clone(),
        root,
        hashed,
    };
    let outcome = c.verifier.submit(job(candidates, *hashed)).await?;
    *hashed = Some(outcome.hashed);
    if outcome.signature.is_some() {
        return Ok(outcome.signature);
    }
    let h = outcome.hashed;
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
        .pool
        .run(move || {
            to_check
                .into_iter()
                .map(|(pos, sig, pk)| (pos, threshold::verify_hashed(&sig, &pk, &h)))
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
    bad.sort_unstable();
    for pos in bad.into_iter().rev() {
        let (node, _, _) = candidates.remove(pos);
        verified.remove(pos);
        c.counters[node]
            .partials_wrong
            .fetch_add(1, Ordering::Relaxed);
        c.counters[node].failing.store(true, Ordering::Relaxed);
        tracing::error!(node = %c.nodes[node].name, request_id, "node returned a wrong partial signature; left out");
    }
    if candidates.len() < t {
        return Ok(None);
    }
    Ok(c.verifier.submit(job(candidates, Some(h))).await?.signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn forwarded_body_carries_the_computed_root_once_and_keeps_the_rest() {
        let root = SigningRoot([0xab; 32]);
        let body = br#"{"type":"RANDAO_REVEAL","fork_info":{"fork":{"epoch":"1"}},"randao_reveal":{"epoch":"3"},"x":1.50}"#;
        let out: Value =
            serde_json::from_slice(&with_signing_root(body, root).expect("object")).expect("json");
        let mut want: Value = serde_json::from_slice(body).expect("json");
        want["signingRoot"] = json!(format!("0x{}", "ab".repeat(32)));
        assert_eq!(out, want);
        // Nested values are copied byte for byte (the number keeps its spelling).
        let text = String::from_utf8(with_signing_root(body, root).expect("object").to_vec())
            .expect("utf-8");
        assert!(text.contains(r#""x":1.50"#), "{text}");

        // A root the client supplied under either name ends up once, as signingRoot.
        for key in ["signing_root", "signingRoot"] {
            let body = format!(
                r#"{{"type":"RANDAO_REVEAL","{key}":"0x{}"}}"#,
                "ab".repeat(32)
            );
            let out: Value =
                serde_json::from_slice(&with_signing_root(body.as_bytes(), root).expect("object"))
                    .expect("json");
            assert_eq!(
                out,
                json!({"type": "RANDAO_REVEAL", "signingRoot": format!("0x{}", "ab".repeat(32))})
            );
        }
        assert!(matches!(
            with_signing_root(b"[1]", root),
            Err(ApiError::BadRequest(_))
        ));
    }
}
