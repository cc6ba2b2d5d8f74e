//! The ceremony state machine and its transport (see the module docs of [`super`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use super::definition::{CeremonyDefinition, OnMisbehaviour};
use super::deposit::DepositDataEntry;
use super::seal::{seal, OpeningKey, Sealed};
use super::wire::{
    Complaint, Complaints, Confirmation, Dealing, DealtValidator, Envelope, Keys, Partials,
};
use super::Error;
use crate::bls::{PublicKey, Signature};
use crate::cluster::{ClusterDefinition, ShareDefinition, ValidatorDefinition};
use crate::keys::SecretKey;
use crate::threshold::{self, Commitments, KeyShare, Polynomial, ShareIndex};

/// Bounded waits.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long to wait for every operator to publish a round.
    pub round: Duration,
    /// One HTTP request.
    pub request: Duration,
    /// How long a failed operator keeps telling peers why before it exits.
    pub abort_linger: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            round: Duration::from_secs(300),
            request: Duration::from_secs(5),
            abort_linger: Duration::from_secs(3),
        }
    }
}

/// Test-only misbehaviour (hidden CLI flag): proves detection paths.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Deal a share to this operator that does not match our commitments.
    CorruptShareFor(String),
    /// Vanish (stop serving, publish nothing more) once every peer fetched our dealings.
    StopAfterDealing,
    /// Reshare only: re-share a random secret instead of our old share, so our constant
    /// commitment is not our share public key in the old `cluster.json`.
    WrongSecret,
}

/// One operator's part in a ceremony.
#[derive(Debug)]
pub struct Participant {
    /// The definition (checked).
    pub definition: CeremonyDefinition,
    /// Our operator name.
    pub me: String,
    /// Where our ceremony server listens.
    pub listener: TcpListener,
    /// Our server's TLS (requiring peers' client certificates).
    pub server_tls: Arc<rustls::ServerConfig>,
    /// An mTLS client per peer, trusting that peer's server identity.
    pub clients: BTreeMap<String, reqwest::Client>,
    /// Bounded waits.
    pub timeouts: Timeouts,
    /// Test-only fault.
    pub fault: Option<Fault>,
}

/// What a successful ceremony gives one operator.
#[derive(Debug)]
pub struct CeremonyOutput {
    /// The common cluster definition.
    pub cluster: ClusterDefinition,
    /// Our share of each validator, in definition order.
    pub shares: Vec<KeyShare>,
    /// The deposit data entries.
    pub deposits: Vec<DepositDataEntry>,
    /// The deposit data file contents (identical on every operator).
    pub deposit_json: String,
    /// Keeps serving our confirmation until every peer fetched it; see [`Linger::finish`].
    pub linger: Linger,
}

/// The still-running ceremony server after success.
#[derive(Debug)]
pub struct Linger {
    board: Board,
    peers: Vec<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    bound: Duration,
}

impl Linger {
    /// Waits (bounded by the round timeout) until every peer fetched our confirmation, then
    /// stops the server.
    pub async fn finish(mut self) {
        let start = Instant::now();
        while start.elapsed() < self.bound {
            let done = {
                let b = lock(&self.board);
                let fetched = b.fetched.get(&ROUND_CONFIRM.0);
                self.peers
                    .iter()
                    .all(|p| fetched.is_some_and(|f| f.contains(p)))
            };
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

pub(super) type Round = (u8, &'static str);
pub(super) const ROUND_KEYS: Round = (1, "1/5 (encryption keys)");
pub(super) const ROUND_DEALINGS: Round = (2, "2/5 (dealings)");
pub(super) const ROUND_COMPLAINTS: Round = (3, "3/5 (complaints)");
const ROUND_PARTIALS: Round = (4, "4/5 (deposit signatures)");
pub(super) const ROUND_CONFIRM: Round = (5, "5/5 (confirmation)");

#[derive(Debug, Default)]
struct BoardState {
    rounds: BTreeMap<u8, Arc<Vec<u8>>>,
    aborted: Option<String>,
    fetched: BTreeMap<u8, BTreeSet<String>>,
}

type Board = Arc<Mutex<BoardState>>;

fn lock(b: &Board) -> std::sync::MutexGuard<'_, BoardState> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, serde::Deserialize)]
struct FromQuery {
    from: Option<String>,
}

async fn serve_round(
    State(board): State<Board>,
    Path(round): Path<u8>,
    Query(q): Query<FromQuery>,
) -> Response {
    let mut b = lock(&board);
    if let Some(reason) = &b.aborted {
        return (StatusCode::CONFLICT, reason.clone()).into_response();
    }
    match b.rounds.get(&round).cloned() {
        Some(body) => {
            if let Some(from) = q.from {
                b.fetched.entry(round).or_default().insert(from);
            }
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body.as_ref().clone(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not yet").into_response(),
    }
}

/// The message a dealer's constant term signs as proof of possession.
pub fn pop_message(ceremony: &str, dealer: &str, validator: usize) -> Vec<u8> {
    format!("dvsigner-dkg-pop-v1|{ceremony}|{dealer}|{validator}").into_bytes()
}

fn seal_context(ceremony: &str, dealer: &str, receiver: &str) -> String {
    format!("dvsigner-dkg-shares-v1|{ceremony}|{dealer}|{receiver}")
}

/// One operator's view of the ceremony network: its published rounds (served by its own
/// server) and an mTLS client per peer. Shared by the DKG and the reshare.
pub(super) struct Net {
    /// The ceremony id every message carries.
    pub(super) id: String,
    /// Our name.
    pub(super) me: String,
    /// Everyone else, sorted by name.
    pub(super) peers: Vec<String>,
    urls: BTreeMap<String, String>,
    clients: BTreeMap<String, reqwest::Client>,
    board: Board,
    /// Bounded waits.
    pub(super) timeouts: Timeouts,
}

impl Net {
    pub(super) fn publish<T: Serialize>(&self, round: Round, body: T) -> Result<(), Error> {
        let env = Envelope {
            ceremony: self.id.clone(),
            operator: self.me.clone(),
            body,
        };
        let bytes = serde_json::to_vec(&env).map_err(|e| Error::Crypto(e.to_string()))?;
        lock(&self.board).rounds.insert(round.0, Arc::new(bytes));
        tracing::info!(round = round.1, "published");
        Ok(())
    }

    /// Fetches `round` from every peer, logging each answer; bounded by the round timeout.
    pub(super) async fn collect<T: DeserializeOwned>(
        &self,
        round: Round,
    ) -> Result<BTreeMap<String, T>, Error> {
        self.collect_from(round, &self.peers).await
    }

    /// Fetches `round` from the given peers only (a round only some operators publish).
    pub(super) async fn collect_from<T: DeserializeOwned>(
        &self,
        round: Round,
        from: &[String],
    ) -> Result<BTreeMap<String, T>, Error> {
        let deadline = Instant::now() + self.timeouts.round;
        let mut pending: FuturesUnordered<_> = from
            .iter()
            .map(|p| async move { (p.clone(), self.fetch_one(p, round, deadline).await) })
            .collect();
        let mut got = BTreeMap::new();
        let mut missing: Vec<(String, String)> = Vec::new();
        while let Some((peer, res)) = pending.next().await {
            match res {
                Ok(bytes) => {
                    let env: Envelope<T> =
                        serde_json::from_slice(&bytes).map_err(|e| Error::Malformed {
                            operator: peer.clone(),
                            round: round.1,
                            reason: e.to_string(),
                        })?;
                    if env.ceremony != self.id {
                        return Err(Error::DefinitionMismatch {
                            operator: peer,
                            theirs: env.ceremony,
                            ours: self.id.clone(),
                        });
                    }
                    if env.operator != peer {
                        return Err(Error::Malformed {
                            operator: peer,
                            round: round.1,
                            reason: format!("message signed as {:?}", env.operator),
                        });
                    }
                    got.insert(peer.clone(), env.body);
                    let waiting: Vec<&str> = from
                        .iter()
                        .filter(|p| !got.contains_key(*p))
                        .map(String::as_str)
                        .collect();
                    tracing::info!(
                        round = round.1,
                        from = %peer,
                        received = got.len(),
                        of = from.len(),
                        waiting = %waiting.join(","),
                        "operator answered"
                    );
                }
                Err(FetchError::Aborted(reason)) => {
                    return Err(Error::PeerAborted {
                        operator: peer,
                        reason,
                    })
                }
                Err(FetchError::Timeout(detail)) => missing.push((peer, detail)),
            }
        }
        if let Some((_, detail)) = missing.first() {
            return Err(Error::NoAnswer {
                round: round.1,
                operators: missing
                    .iter()
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                detail: detail.clone(),
            });
        }
        Ok(got)
    }

    /// Waits (bounded by the round timeout) until every peer fetched our `round` message.
    pub(super) async fn wait_fetched_by_all(&self, round: Round) {
        let start = Instant::now();
        while start.elapsed() < self.timeouts.round {
            let all = {
                let b = lock(&self.board);
                let fetched = b.fetched.get(&round.0);
                self.peers
                    .iter()
                    .all(|p| fetched.is_some_and(|f| f.contains(p)))
            };
            if all {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn fetch_one(
        &self,
        peer: &str,
        round: Round,
        deadline: Instant,
    ) -> Result<Vec<u8>, FetchError> {
        let (Some(client), Some(base)) = (self.clients.get(peer), self.urls.get(peer)) else {
            return Err(FetchError::Timeout("no client configured".into()));
        };
        let url = format!(
            "{}/dkg/v1/round/{}?from={}",
            base.trim_end_matches('/'),
            round.0,
            self.me
        );
        let mut last = String::from("no attempt");
        loop {
            if Instant::now() >= deadline {
                return Err(FetchError::Timeout(format!("{peer}: {last}")));
            }
            match client.get(&url).timeout(self.timeouts.request).send().await {
                Ok(r) if r.status() == reqwest::StatusCode::OK => match r.bytes().await {
                    Ok(b) => return Ok(b.to_vec()),
                    Err(e) => last = e.to_string(),
                },
                Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => {
                    let reason = r.text().await.unwrap_or_default();
                    return Err(FetchError::Aborted(reason));
                }
                Ok(r) => last = format!("status {}", r.status()),
                Err(e) => last = error_chain(&e),
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

enum FetchError {
    Aborted(String),
    Timeout(String),
}

/// Starts our ceremony server on `listener` and returns the network handle and the server's
/// [`Linger`]. `endpoints` maps every operator (us included) to its ceremony URL.
pub(super) fn open(
    id: String,
    me: &str,
    endpoints: BTreeMap<String, String>,
    listener: TcpListener,
    server_tls: Arc<rustls::ServerConfig>,
    clients: BTreeMap<String, reqwest::Client>,
    timeouts: Timeouts,
) -> (Net, Linger) {
    let board: Board = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router = Router::new()
        .route("/dkg/v1/round/{round}", get(serve_round))
        .with_state(board.clone());
    let options = crate::http::server::ServerOptions {
        handshake_timeout: Duration::from_secs(5),
        header_read_timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(1),
        // The ceremony listener is its own mutual-TLS endpoint, reached at the operators'
        // URLs of the definition; `--http-host-allowlist` guards the signer and combiner only.
        host_allowlist: crate::http::server::HostAllowlist::Off,
    };
    let server = tokio::spawn(async move {
        let shutdown = async {
            let _ = stop_rx.await;
        };
        if let Err(e) =
            crate::http::server::run(listener, Some(server_tls), router, options, shutdown).await
        {
            tracing::error!(error = %e, "ceremony server failed");
        }
    });
    let peers: Vec<String> = endpoints.keys().filter(|o| *o != me).cloned().collect();
    let net = Net {
        id,
        me: me.to_owned(),
        peers: peers.clone(),
        urls: endpoints,
        clients,
        board: board.clone(),
        timeouts,
    };
    let linger = Linger {
        board,
        peers,
        stop: Some(stop_tx),
        server: Some(server),
        bound: timeouts.round,
    };
    (net, linger)
}

/// Ends a failed ceremony: publishes the reason to peers (for [`Timeouts::abort_linger`]),
/// stops the server and returns the error. An injected fault vanishes silently instead.
pub(super) async fn fail(net: &Net, mut linger: Linger, e: Error) -> Error {
    if !matches!(e, Error::FaultInjected) {
        tracing::error!(error = %e, "ceremony failed");
        lock(&net.board).aborted = Some(format!("operator {}: {e}", net.me));
        tokio::time::sleep(net.timeouts.abort_linger).await;
    }
    linger.shutdown().await;
    e
}

/// Runs the ceremony as `participant.me`. On failure the reason is published to peers (for
/// [`Timeouts::abort_linger`]) and the server stops; on success the server keeps serving our
/// confirmation until [`Linger::finish`].
///
/// # Errors
/// Any [`Error`], naming the operator at fault when there is one.
pub async fn run(participant: Participant) -> Result<CeremonyOutput, Error> {
    let Participant {
        definition,
        me,
        listener,
        server_tls,
        clients,
        timeouts,
        fault,
    } = participant;
    definition.check()?;
    let my_pos = definition
        .position(&me)
        .ok_or_else(|| Error::UnknownOperator(me.clone()))?;
    let endpoints = definition
        .operators
        .iter()
        .map(|o| (o.name.clone(), o.url.clone()))
        .collect();
    let (net, linger) = open(
        definition.id(),
        &me,
        endpoints,
        listener,
        server_tls,
        clients,
        timeouts,
    );
    tracing::info!(ceremony = %net.id, operator = %me, "ceremony started");
    match protocol(&definition, my_pos, &net, fault.as_ref()).await {
        Ok((cluster, shares, deposits, deposit_json)) => Ok(CeremonyOutput {
            cluster,
            shares,
            deposits,
            deposit_json,
            linger,
        }),
        Err(e) => Err(fail(&net, linger, e).await),
    }
}

type Outcome = (
    ClusterDefinition,
    Vec<KeyShare>,
    Vec<DepositDataEntry>,
    String,
);

async fn protocol(
    def: &CeremonyDefinition,
    my_pos: usize,
    net: &Net,
    fault: Option<&Fault>,
) -> Result<Outcome, Error> {
    let me = net.me.as_str();
    let v_count = def.validators as usize;
    let t = def.threshold;
    let index_of = |name: &str| -> Result<ShareIndex, Error> {
        let pos = def
            .position(name)
            .ok_or_else(|| Error::UnknownOperator(name.to_owned()))?;
        ShareIndex::new(pos as u64 + 1).ok_or(Error::UnknownOperator(name.to_owned()))
    };
    let my_index = index_of(me)?;
    debug_assert_eq!(my_index.get(), my_pos as u64 + 1);

    // Round 1: opening keys, one per peer.
    let mut opening: BTreeMap<String, OpeningKey> = BTreeMap::new();
    for p in &net.peers {
        opening.insert(p.clone(), OpeningKey::generate()?);
    }
    net.publish(
        ROUND_KEYS,
        Keys {
            keys: opening
                .iter()
                .map(|(p, k)| (p.clone(), hex::encode(k.public())))
                .collect(),
        },
    )?;
    let peer_keys: BTreeMap<String, Keys> = net.collect(ROUND_KEYS).await?;

    // Round 2: deal.
    let polys: Vec<Polynomial> = (0..v_count)
        .map(|_| Polynomial::random(t))
        .collect::<Result<_, _>>()?;
    let mut dealt = Vec::with_capacity(v_count);
    for (v, poly) in polys.iter().enumerate() {
        let pop = poly
            .constant_key()?
            .sign_message(&pop_message(&net.id, me, v));
        dealt.push(DealtValidator {
            commitments: poly.commitments().clone(),
            pop: pop.to_hex(),
        });
    }
    let mut sealed = BTreeMap::new();
    for (peer, keys) in &peer_keys {
        let key_hex = keys.keys.get(me).ok_or_else(|| Error::Malformed {
            operator: peer.clone(),
            round: ROUND_KEYS.1,
            reason: format!("no key for {me}"),
        })?;
        let key: [u8; 32] = crate::bls::parse_hex::<32>(key_hex).map_err(|e| Error::Malformed {
            operator: peer.clone(),
            round: ROUND_KEYS.1,
            reason: e.to_string(),
        })?;
        let j = index_of(peer)?;
        let corrupt = matches!(fault, Some(Fault::CorruptShareFor(x)) if x == peer);
        let eval_at = if corrupt {
            ShareIndex::new(j.get() + 100).ok_or(Error::FaultInjected)?
        } else {
            j
        };
        let mut plain = Zeroizing::new(Vec::with_capacity(32 * v_count));
        for poly in &polys {
            plain.extend_from_slice(poly.evaluate(eval_at)?.expose_secret().as_ref());
        }
        sealed.insert(
            peer.clone(),
            seal(&key, &plain, &seal_context(&net.id, me, peer))?,
        );
    }
    let my_own: Vec<SecretKey> = polys
        .iter()
        .map(|p| p.evaluate(my_index))
        .collect::<Result<_, _>>()?;
    let my_commitments: Vec<Commitments> = polys.iter().map(|p| p.commitments().clone()).collect();
    drop(polys);
    net.publish(
        ROUND_DEALINGS,
        Dealing {
            validators: dealt,
            shares: sealed,
        },
    )?;
    if fault == Some(&Fault::StopAfterDealing) {
        // Vanish once every peer holds our dealing, so they fail in the complaints round.
        net.wait_fetched_by_all(ROUND_DEALINGS).await;
        return Err(Error::FaultInjected);
    }
    let dealings: BTreeMap<String, Dealing> = net.collect(ROUND_DEALINGS).await?;

    // Verify what we received.
    let mut received: BTreeMap<String, (Vec<Commitments>, Vec<SecretKey>)> = BTreeMap::new();
    let mut complaints = Vec::new();
    for (dealer, dealing) in dealings {
        let opener = opening.remove(&dealer);
        match check_dealing(def, net, &dealer, my_index, &dealing, opener) {
            Ok(parts) => {
                received.insert(dealer, parts);
            }
            Err(reason) => {
                tracing::warn!(%dealer, %reason, "invalid dealing");
                complaints.push(Complaint { dealer, reason });
            }
        }
    }
    let accused = complaint_round(
        net,
        me,
        complaints,
        |dealer| def.position(dealer).is_some(),
        "unknown",
        def.on_misbehaviour,
    )
    .await?;
    let qualified: Vec<String> = def
        .operators
        .iter()
        .map(|o| o.name.clone())
        .filter(|n| !accused.contains_key(n))
        .collect();
    if qualified.len() < t as usize {
        return Err(Error::TooFewQualified {
            qualified: qualified.len(),
            disqualified: accused.keys().cloned().collect::<Vec<_>>().join(", "),
            threshold: t,
        });
    }
    if !accused.is_empty() {
        tracing::warn!(disqualified = %accused.keys().cloned().collect::<Vec<_>>().join(", "), "dealers disqualified");
    }

    // Aggregate over the qualified dealers.
    let mut shares = Vec::with_capacity(v_count);
    let mut validators = Vec::with_capacity(v_count);
    for v in 0..v_count {
        let mut cs = Vec::new();
        let mut parts = Vec::new();
        for q in &qualified {
            if q == me {
                cs.push(my_commitments[v].clone());
                parts.push(
                    SecretKey::from_bytes(&my_own[v].expose_secret())
                        .map_err(|_| Error::Threshold(threshold::Error::DegenerateSharing))?,
                );
            } else if let Some((c, s)) = received.get(q) {
                cs.push(c[v].clone());
                parts.push(
                    SecretKey::from_bytes(&s[v].expose_secret())
                        .map_err(|_| Error::Threshold(threshold::Error::DegenerateSharing))?,
                );
            }
        }
        if cs.len() != qualified.len() {
            // We complained about a dealer no one else did and the mode is disqualify: our
            // complaint is published, so every operator excluded it; this cannot happen.
            return Err(Error::Definition(
                "internal: missing qualified dealing".into(),
            ));
        }
        let group = threshold::sum_commitments(&cs)?;
        let secret = threshold::sum_shares(&parts)?;
        if !group.verify_share(my_index, secret.public_key()) {
            return Err(Error::Threshold(threshold::Error::IdentityShareKey(
                my_index,
            )));
        }
        let mut defs = Vec::with_capacity(def.operators.len());
        for op in &def.operators {
            let idx = index_of(&op.name)?;
            defs.push(ShareDefinition {
                index: idx,
                pubkey: group.share_public_key(idx)?,
                operator: op.name.clone(),
            });
        }
        validators.push(ValidatorDefinition {
            group_pubkey: group.group_public_key().clone(),
            threshold: t,
            share_count: u32::try_from(def.operators.len()).unwrap_or(u32::MAX),
            commitments: group,
            shares: defs,
        });
        shares.push(KeyShare {
            index: my_index,
            secret,
        });
    }
    let cluster = ClusterDefinition::new(def.cluster_operators(), validators)?;
    let cluster_hash = cluster.hash().to_string();
    tracing::info!(%cluster_hash, "cluster.json computed");

    // Round 4: deposit signature shares.
    let roots: Vec<crate::bls::SigningRoot> = cluster
        .validators()
        .iter()
        .map(|v| {
            crate::signing::deposit_signing_root(
                v.group_pubkey.bytes().0,
                def.withdrawal_credentials,
                def.amount_gwei,
                def.fork_version,
            )
        })
        .collect();
    let my_partials: Vec<Signature> = shares
        .iter()
        .zip(&roots)
        .map(|(s, r)| s.secret.sign(r))
        .collect();
    net.publish(
        ROUND_PARTIALS,
        Partials {
            cluster_hash: cluster_hash.clone(),
            qualified: qualified.clone(),
            signatures: my_partials.iter().map(Signature::to_hex).collect(),
        },
    )?;
    let partials: BTreeMap<String, Partials> = net.collect(ROUND_PARTIALS).await?;
    for (op, p) in &partials {
        same_result(op, "cluster.json", &p.cluster_hash, &cluster_hash)?;
        if p.signatures.len() != v_count {
            return Err(Error::Malformed {
                operator: op.clone(),
                round: ROUND_PARTIALS.1,
                reason: format!("{} signatures for {v_count} validators", p.signatures.len()),
            });
        }
    }
    let mut deposits = Vec::with_capacity(v_count);
    for (v, validator) in cluster.validators().iter().enumerate() {
        let mut collected: Vec<(ShareIndex, Signature)> = vec![(my_index, my_partials[v].clone())];
        for (op, p) in &partials {
            let idx = index_of(op)?;
            let share_pk: &PublicKey = &validator
                .share(idx)
                .ok_or(Error::UnknownOperator(op.clone()))?
                .pubkey;
            let sig = Signature::from_hex(&p.signatures[v])
                .ok()
                .filter(|s| s.verify(share_pk, &roots[v].0))
                .ok_or_else(|| Error::BadPartial {
                    operator: op.clone(),
                    validator: v,
                })?;
            collected.push((idx, sig));
        }
        let sig = threshold::combine(&collected, t as usize)?;
        if !sig.verify(&validator.group_pubkey, &roots[v].0) {
            return Err(Error::CombinedSignature(v));
        }
        deposits.push(DepositDataEntry::new(
            &validator.group_pubkey,
            def.withdrawal_credentials,
            def.amount_gwei,
            def.fork_version,
            &def.network_name,
            &sig,
        ));
    }
    let deposit_json =
        serde_json::to_string_pretty(&deposits).map_err(|e| Error::Crypto(e.to_string()))? + "\n";
    let deposit_hash = format!("0x{}", hex::encode(Sha256::digest(deposit_json.as_bytes())));

    // Round 5: confirm.
    net.publish(
        ROUND_CONFIRM,
        Confirmation {
            cluster_hash: cluster_hash.clone(),
            deposit_hash: deposit_hash.clone(),
        },
    )?;
    let confirms: BTreeMap<String, Confirmation> = net.collect(ROUND_CONFIRM).await?;
    for (op, c) in &confirms {
        same_result(op, "cluster.json", &c.cluster_hash, &cluster_hash)?;
        same_result(op, "deposit data", &c.deposit_hash, &deposit_hash)?;
    }
    tracing::info!(%cluster_hash, %deposit_hash, "every operator confirmed identical results");
    Ok((cluster, shares, deposits, deposit_json))
}

/// Checks one dealer's dealing for us: shape, proofs of possession, opening, and every share
/// against the dealer's commitments. `Err` is the complaint's reason.
fn check_dealing(
    def: &CeremonyDefinition,
    net: &Net,
    dealer: &str,
    my_index: ShareIndex,
    dealing: &Dealing,
    opener: Option<OpeningKey>,
) -> Result<(Vec<Commitments>, Vec<SecretKey>), String> {
    let v_count = def.validators as usize;
    if dealing.validators.len() != v_count {
        return Err(format!(
            "{} dealt validators, expected {v_count}",
            dealing.validators.len()
        ));
    }
    let mut commitments = Vec::with_capacity(v_count);
    for (v, d) in dealing.validators.iter().enumerate() {
        if d.commitments.threshold() != def.threshold {
            return Err(format!(
                "validator {v}: {} commitments, expected {}",
                d.commitments.threshold(),
                def.threshold
            ));
        }
        let pop = Signature::from_hex(&d.pop).map_err(|e| format!("validator {v}: pop: {e}"))?;
        if !pop.verify(
            d.commitments.group_public_key(),
            &pop_message(&net.id, dealer, v),
        ) {
            return Err(format!(
                "validator {v}: proof of possession does not verify"
            ));
        }
        commitments.push(d.commitments.clone());
    }
    let shares = open_dealt(
        net,
        &seal_context(&net.id, dealer, net.me.as_str()),
        my_index,
        &dealing.shares,
        &commitments,
        opener,
        "share",
    )?;
    Ok((commitments, shares))
}

/// Opens the scalars a dealer sealed for us under `context` (the DKG's and the reshare's seal
/// contexts differ; 32 bytes per validator, one per commitment) and checks each against the
/// dealer's `commitments` at `my_index`: the DKG's shares and the reshare's values. `what`
/// names them in the errors. `Err` is the complaint's reason.
pub(super) fn open_dealt(
    net: &Net,
    context: &str,
    my_index: ShareIndex,
    sealed: &BTreeMap<String, Sealed>,
    commitments: &[Commitments],
    opener: Option<OpeningKey>,
    what: &str,
) -> Result<Vec<SecretKey>, String> {
    let me = net.me.as_str();
    let v_count = commitments.len();
    let sealed = sealed
        .get(me)
        .ok_or_else(|| format!("no {what}s sealed for us"))?;
    let opener = opener.ok_or_else(|| "no opening key".to_owned())?;
    let plain = opener.open(sealed, context).map_err(|e| e.to_string())?;
    if plain.len() != 32 * v_count {
        return Err(format!(
            "{} bytes of {what}s, expected {}",
            plain.len(),
            32 * v_count
        ));
    }
    let mut opened = Vec::with_capacity(v_count);
    for (v, chunk) in plain.chunks_exact(32).enumerate() {
        let mut b = Zeroizing::new([0u8; 32]);
        b.copy_from_slice(chunk);
        let sk = SecretKey::from_bytes(&b)
            .map_err(|_| format!("validator {v}: {what} is not a valid scalar"))?;
        if !commitments[v].verify_share(my_index, sk.public_key()) {
            return Err(format!(
                "validator {v}: {what} for {me} does not match the dealer's commitments"
            ));
        }
        opened.push(sk);
    }
    Ok(opened)
}

/// `Ok` when `operator`'s hash of `what` equals ours, else [`Error::ResultMismatch`].
pub(super) fn same_result(
    operator: &str,
    what: &'static str,
    theirs: &str,
    ours: &str,
) -> Result<(), Error> {
    if theirs == ours {
        return Ok(());
    }
    Err(Error::ResultMismatch {
        operator: operator.to_owned(),
        what,
        theirs: theirs.to_owned(),
        ours: ours.to_owned(),
    })
}

/// Round 3 of the DKG and of a reshare: publishes this operator's complaints, collects
/// everyone's, and returns the accused dealers, each with its first accuser and reason (this
/// operator's own complaints first). A complaint against a name `is_dealer` rejects makes its
/// author's message malformed (`what` names the kind in the error). With
/// [`OnMisbehaviour::Abort`] the first accused dealer aborts the ceremony.
///
/// # Errors
/// Transport errors of the round, [`Error::Malformed`], [`Error::Misbehaviour`].
pub(super) async fn complaint_round(
    net: &Net,
    me: &str,
    complaints: Vec<Complaint>,
    is_dealer: impl Fn(&str) -> bool,
    what: &str,
    on_misbehaviour: OnMisbehaviour,
) -> Result<BTreeMap<String, (String, String)>, Error> {
    net.publish(
        ROUND_COMPLAINTS,
        Complaints {
            complaints: complaints.clone(),
        },
    )?;
    let all_complaints: BTreeMap<String, Complaints> = net.collect(ROUND_COMPLAINTS).await?;
    let mut accused: BTreeMap<String, (String, String)> = BTreeMap::new();
    for c in &complaints {
        accused
            .entry(c.dealer.clone())
            .or_insert((me.to_owned(), c.reason.clone()));
    }
    for (accuser, cs) in &all_complaints {
        for c in &cs.complaints {
            if !is_dealer(&c.dealer) {
                return Err(Error::Malformed {
                    operator: accuser.clone(),
                    round: ROUND_COMPLAINTS.1,
                    reason: format!("complaint against {what} {:?}", c.dealer),
                });
            }
            accused
                .entry(c.dealer.clone())
                .or_insert((accuser.clone(), c.reason.clone()));
        }
    }
    if let Some((dealer, (accuser, reason))) = accused.iter().next() {
        if on_misbehaviour == OnMisbehaviour::Abort {
            return Err(Error::Misbehaviour {
                dealer: dealer.clone(),
                accuser: accuser.clone(),
                reason: reason.clone(),
            });
        }
    }
    Ok(accused)
}
