//! Agreement messages between nodes: `POST /api/v1/cluster/agreement` with a JSON [`Batch`].
//!
//! Inbound ([`Inbound::accept`]): the route handler has already authorised the client by its TLS
//! certificate (another operator of the cluster, as for the history route). The batch must name
//! this cluster and that operator; its certificates are kept when the cluster trusts them
//! ([`super::auth::KeyRing::learn`]); every top-level message must be the sending operator's own
//! (its `from` is that operator's member index for the validator) and is handed to the driver,
//! which checks its signature and the protocol rules in the background. Refusals are counted by
//! reason in `dvsigner_agreement_messages_refused_total`.
//!
//! Outbound ([`Outbound`]): one queue and one sender task per peer over the node's peer HTTP
//! client (mutual TLS, keep-alive). A message is sent at once; what queued up while earlier
//! posts were in flight goes out together in one batch (at most [`MAX_IN_FLIGHT`] posts per
//! peer). Queues are bounded ([`MAX_QUEUE`], the oldest message is dropped) and a message that
//! waited longer than its life (the agreement timeout) is dropped: a failed post is never
//! retried, the engine's round timers send again what still matters.
//!
//! Round trips: every answered post is a round-trip sample for its peer (smoothed as TCP does,
//! see [`RttEstimate`]); a peer nothing was posted to for [`PROBE_EVERY`] gets an empty
//! batch, which measures the round trip and keeps the connection open. The driver sizes round 1
//! from these figures ([`Transport::round_trip`]), so the fast path fits into round 1 over WAN
//! links too.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use super::auth::{KeyRing, Roster};
use super::driver::{Driver, Transport};
use super::types::SignedMessage;

/// The route.
pub const AGREEMENT_PATH: &str = "/api/v1/cluster/agreement";
/// Messages per outgoing batch.
pub const MAX_BATCH: usize = 256;
/// Messages a received batch may hold.
pub const MAX_BATCH_IN: usize = 4096;
/// Messages queued per peer.
pub const MAX_QUEUE: usize = 65_536;
/// Posts in flight per peer (one while the peer is unreachable).
pub const MAX_IN_FLIGHT: usize = 32;
/// Largest request body of the route.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// A post is abandoned after this long (or twice the message life when that is longer): it is
/// not cut at the message life, because cancelling a slow post closes its connection and the
/// next one pays a new handshake and TCP slow start, which under a burst over long links takes
/// longer than the life again.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer is taken for unreachable after at least this long without any answer while a post
/// to it is in flight (otherwise twice its round-trip bound, at most the message life).
pub const MIN_SILENCE: Duration = Duration::from_millis(200);
/// While posts to a peer are in flight, a new post waits this long for more messages.
pub const GATHER: Duration = Duration::from_millis(5);
/// A peer nothing was posted to for this long gets an empty batch (round-trip probe).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Connections kept open to each peer ([`Outbound::spawn`]): a burst of duties sends up to
/// [`MAX_IN_FLIGHT`] posts to a peer at once, and a post on a new connection waits three round
/// trips (TCP, TLS, the request) plus TCP slow start, which over long links takes most of the
/// message life.
pub const WARM_CONNECTIONS: usize = 16;
/// The warm connections are used again this often (a peer closes an idle connection after 30 s,
/// the client after 90 s), and opened again at once when the peer answers after it was
/// unreachable.
pub const WARM_EVERY: Duration = Duration::from_secs(20);

/// One POST body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The sender's cluster hash (`0x` hex).
    pub cluster_hash: String,
    /// The sending operator.
    pub operator: String,
    /// DER certificates (`0x` hex) of the signers of the messages, nested ones included.
    pub certificates: Vec<String>,
    /// The messages.
    pub messages: Vec<SignedMessage>,
}

/// Why a batch was refused as a whole (HTTP 400), with its metric reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Another cluster.
    #[error("batch of cluster {0}")]
    WrongCluster(String),
    /// Named another operator than the client certificate's.
    #[error("batch names operator {0:?}, the client certificate another")]
    WrongOperator(String),
    /// Too many messages or certificates, or certificates that are not hex.
    #[error("malformed batch: {0}")]
    Malformed(&'static str),
    /// A batch without certificates holds a message signed by an operator whose certificate
    /// this node does not hold (the sender leaves the certificates out once the peer has them;
    /// after a restart it has not): HTTP 428, the sender sends the batch again with them.
    #[error("batch signed by operator {0} whose certificate is not known here")]
    CertificatesNeeded(String),
}

impl BatchError {
    /// The metric reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::WrongCluster(_) => "wrong_cluster",
            Self::WrongOperator(_) => "wrong_operator",
            Self::Malformed(_) => "malformed",
            Self::CertificatesNeeded(_) => "certificates_needed",
        }
    }
}

/// Receives batches for the driver.
#[derive(Debug, Clone)]
pub struct Inbound {
    driver: Driver,
    cluster_hash: String,
}

impl Inbound {
    /// Inbound side of `driver` in the cluster `cluster_hash` (`0x` hex).
    pub fn new(driver: Driver, cluster_hash: String) -> Self {
        Self {
            driver,
            cluster_hash,
        }
    }

    /// The driver.
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    /// Accepts a batch from operator `peer` (authorised by its TLS certificate): returns the
    /// number of messages handed to the driver.
    ///
    /// # Errors
    /// [`BatchError`]: nothing of the batch is used.
    pub fn accept(&self, peer: &str, batch: Batch) -> Result<usize, BatchError> {
        let metrics = crate::metrics::global();
        if batch.cluster_hash != self.cluster_hash {
            return Err(BatchError::WrongCluster(batch.cluster_hash));
        }
        if batch.operator != peer {
            return Err(BatchError::WrongOperator(batch.operator));
        }
        let roster = self.driver.roster();
        let ring = roster.ring();
        if batch.messages.len() > MAX_BATCH_IN
            || batch.certificates.len() > 4 * ring.operators().len()
        {
            return Err(BatchError::Malformed("too many messages or certificates"));
        }
        let Some(sender) = ring.operator_index(peer) else {
            return Err(BatchError::WrongOperator(batch.operator));
        };
        let mut certs = Vec::with_capacity(batch.certificates.len());
        for c in &batch.certificates {
            let raw = c.strip_prefix("0x").unwrap_or(c);
            let der = hex::decode(raw).map_err(|_| BatchError::Malformed("certificate hex"))?;
            certs.push(der);
        }
        let unknown = ring.learn(certs.iter().map(Vec::as_slice));
        for _ in 0..unknown {
            metrics.record_agreement_refused("unknown_certificate");
        }
        // A batch without certificates from a sender that left them out (it sent them before)
        // while this node does not hold one it needs (restarted since): 428, sent again with
        // them. A batch that carried certificates is used as it is (a signer the cluster does
        // not trust is refused message by message, as a bad signature).
        let mut signers = Vec::new();
        for msg in batch
            .messages
            .iter()
            .filter(|_| batch.certificates.is_empty())
        {
            if let Some(v) = roster.validator(&msg.message.instance.validator) {
                signers.clear();
                super::driver::collect_signers(msg, &mut signers);
                for &m in &signers {
                    if let Some(&op) = v.members.get(usize::from(m)) {
                        if !ring.knows(op) {
                            return Err(BatchError::CertificatesNeeded(
                                ring.operators().get(op).cloned().unwrap_or_default(),
                            ));
                        }
                    }
                }
            }
        }
        let mut delivered = 0;
        for msg in batch.messages {
            let m = &msg.message;
            let Some(v) = roster.validator(&m.instance.validator) else {
                metrics.record_agreement_refused("unknown_validator");
                continue;
            };
            if v.me.is_none() {
                metrics.record_agreement_refused("not_a_member");
                continue;
            }
            if v.members.get(usize::from(m.from)) != Some(&sender) {
                metrics.record_agreement_refused("wrong_sender");
                continue;
            }
            if self.driver.deliver(msg) {
                delivered += 1;
            }
        }
        Ok(delivered)
    }
}

struct Queued {
    at: Instant,
    msg: Arc<SignedMessage>,
    signers: Arc<[usize]>,
}

struct PeerQueue {
    name: String,
    url: String,
    queue: Mutex<VecDeque<Queued>>,
    wake: Notify,
    /// Round-trip estimate (smoothed round trip and its variation, as TCP keeps them).
    rtt: Mutex<RttEstimate>,
    /// Nothing has been heard from the peer since a post that failed or stayed unanswered for
    /// the message life.
    down: std::sync::atomic::AtomicBool,
    /// When the peer last answered a post (any HTTP answer).
    heard: Mutex<Option<Instant>>,
    /// Whether batches carry the signers' certificates: until the peer has accepted a batch
    /// with them, again when it asks (428) or was unreachable (it may have restarted).
    with_certificates: std::sync::atomic::AtomicBool,
    /// The peer's `/upcheck` (connection warming).
    upcheck: String,
    /// Times the peer was taken for unreachable (its connections may be gone since).
    downs: std::sync::atomic::AtomicU64,
}

/// Smoothed round trip and mean deviation in microseconds (RFC 6298's SRTT and RTTVAR, gains
/// 1/8 and 1/4); `srtt == 0` before the first sample.
#[derive(Debug, Default, Clone, Copy)]
struct RttEstimate {
    srtt: u64,
    rttvar: u64,
}

impl RttEstimate {
    fn observe(&mut self, sample_us: u64) {
        let r = sample_us.max(1);
        if self.srtt == 0 {
            self.srtt = r;
            self.rttvar = r / 2;
        } else {
            self.rttvar = (3 * self.rttvar + self.srtt.abs_diff(r)) / 4;
            self.srtt = (7 * self.srtt + r) / 8;
        }
    }

    /// A round trip the peer answers within nearly always: `SRTT + 4 RTTVAR` (TCP's
    /// retransmission bound). It follows a slower network within a sample or two (through the
    /// variation) and a faster one within a few seconds.
    fn bound(&self) -> Option<Duration> {
        (self.srtt > 0).then(|| Duration::from_micros(self.srtt + 4 * self.rttvar))
    }
}

impl PeerQueue {
    /// The queue of the peer `name` whose API is at `base` (no trailing slash).
    fn new(name: &str, base: &str) -> Self {
        Self {
            name: name.to_owned(),
            url: format!("{base}{AGREEMENT_PATH}"),
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            rtt: Mutex::new(RttEstimate::default()),
            down: std::sync::atomic::AtomicBool::new(false),
            heard: Mutex::new(None),
            with_certificates: std::sync::atomic::AtomicBool::new(true),
            upcheck: format!("{base}/upcheck"),
            downs: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Takes one round-trip sample (an answered post).
    fn observe(&self, sample: Duration) {
        let Ok(mut e) = self.rtt.lock() else {
            return;
        };
        e.observe(u64::try_from(sample.as_micros()).unwrap_or(u64::MAX));
        if let Some(b) = e.bound() {
            crate::metrics::global().set_agreement_peer_rtt(&self.name, b);
        }
    }

    fn rtt(&self) -> Option<Duration> {
        self.rtt.lock().ok()?.bound()
    }

    /// The peer answered a post now.
    fn heard(&self) {
        if let Ok(mut h) = self.heard.lock() {
            *h = Some(Instant::now());
        }
    }

    /// Whether the peer answered a post at or after `t`.
    fn heard_since(&self, t: Instant) -> bool {
        self.heard
            .lock()
            .ok()
            .and_then(|h| *h)
            .is_some_and(|h| h >= t)
    }

    fn set_down(&self, down: bool) {
        if down {
            self.with_certificates
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let was = self.down.swap(down, std::sync::atomic::Ordering::Relaxed);
        if was != down {
            if down {
                self.downs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(peer = %self.name, "agreement: peer unreachable (rounds it leads are skipped until it answers again)");
            } else {
                tracing::info!(peer = %self.name, "agreement: peer reachable again");
            }
        }
    }
}

/// Sends to the peers (implements [`Transport`]).
pub struct Outbound {
    cluster_hash: String,
    me: String,
    ring: Arc<KeyRing>,
    /// By operator index; None for this node.
    peers: Vec<Option<Arc<PeerQueue>>>,
    life: Duration,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("me", &self.me)
            .field("life", &self.life)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// Queues for the operators of `roster` other than this node, at `urls` (by operator index,
    /// the base URLs of cluster.json); messages live `life` in a queue.
    pub fn new(roster: &Roster, cluster_hash: String, urls: &[String], life: Duration) -> Self {
        let ring = roster.ring().clone();
        let me = ring.operators()[ring.me()].clone();
        let peers = ring
            .operators()
            .iter()
            .enumerate()
            .map(|(i, name)| {
                (i != ring.me()).then(|| {
                    Arc::new(PeerQueue::new(
                        name,
                        urls.get(i).map_or("", |u| u.trim_end_matches('/')),
                    ))
                })
            })
            .collect();
        Self {
            cluster_hash,
            me,
            ring,
            peers,
            life,
        }
    }

    /// Spawns one sender task per peer posting with `client`, and one keeping
    /// [`WARM_CONNECTIONS`] connections to it open ([`Outbound::keep_warm`]); abort them to
    /// stop.
    pub fn spawn(self: &Arc<Self>, client: reqwest::Client) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for peer in self.peers.iter().flatten() {
            let this = self.clone();
            let (p, c) = (peer.clone(), client.clone());
            tasks.push(tokio::spawn(async move { this.sender_loop(p, c).await }));
            let (p, c, life) = (peer.clone(), client.clone(), self.life);
            tasks.push(tokio::spawn(async move {
                Self::keep_warm(p, c, life, WARM_CONNECTIONS).await;
            }));
        }
        tasks
    }

    /// Keeps `connections` pooled connections to `peer` open: once the peer answered a post
    /// (the round-trip probes find it), again every [`WARM_EVERY`], and at once when it answers
    /// after it was unreachable, `connections` concurrent `GET /upcheck` (an idle connection
    /// is reused, a missing one opened). Nothing is sent to a peer taken for unreachable: its
    /// probes find it again without a handshake storm.
    async fn keep_warm(
        peer: Arc<PeerQueue>,
        client: reqwest::Client,
        life: Duration,
        connections: usize,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut warmed: Option<(Instant, u64)> = None;
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            let downs = peer.downs.load(Relaxed);
            if peer.down.load(Relaxed)
                || !Instant::now()
                    .checked_sub(WARM_EVERY)
                    .is_some_and(|t| peer.heard_since(t))
                || warmed.is_some_and(|(at, d)| d == downs && at.elapsed() < WARM_EVERY)
            {
                continue;
            }
            let timeout = life.saturating_mul(2).max(POST_TIMEOUT);
            let answered =
                crate::http::warm_connections(&client, &peer.upcheck, connections, timeout).await;
            tracing::debug!(peer = %peer.name, answered, "agreement: connections to peer warmed");
            warmed = Some((Instant::now(), downs));
        }
    }

    /// Takes what is queued for `peer` (dropping expired messages), at most [`MAX_BATCH`].
    fn drain(&self, peer: &PeerQueue) -> Vec<Queued> {
        let Ok(mut q) = peer.queue.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut out = Vec::new();
        while out.len() < MAX_BATCH {
            let Some(item) = q.pop_front() else { break };
            if now.duration_since(item.at) > self.life {
                crate::metrics::global().record_agreement_dropped("expired");
                continue;
            }
            out.push(item);
        }
        if !q.is_empty() {
            peer.wake.notify_one();
        }
        out
    }

    /// Puts `items` back at the head of the queue of `peer` (a batch it asked to receive again
    /// with the certificates).
    fn requeue(&self, peer: &PeerQueue, items: Vec<Queued>) {
        if let Ok(mut q) = peer.queue.lock() {
            for item in items.into_iter().rev() {
                q.push_front(item);
            }
        }
        peer.wake.notify_one();
    }

    fn batch(&self, items: &[Queued], with_certificates: bool) -> Batch {
        let mut ops = Vec::new();
        if with_certificates {
            ops.push(self.ring.me());
            for i in items {
                ops.extend(i.signers.iter().copied());
            }
            ops.sort_unstable();
            ops.dedup();
        }
        Batch {
            cluster_hash: self.cluster_hash.clone(),
            operator: self.me.clone(),
            certificates: self
                .ring
                .certificates(ops)
                .iter()
                .map(|c| format!("0x{}", hex::encode(c)))
                .collect(),
            messages: items.iter().map(|i| (*i.msg).clone()).collect(),
        }
    }

    async fn sender_loop(self: Arc<Self>, peer: Arc<PeerQueue>, client: reqwest::Client) {
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        loop {
            // To an unreachable peer one post at a time (each would open a connection that
            // cannot complete); up to MAX_IN_FLIGHT again once one got through.
            let wanted = if peer.down.load(std::sync::atomic::Ordering::Relaxed) {
                u32::try_from(MAX_IN_FLIGHT).unwrap_or(u32::MAX)
            } else {
                1
            };
            let Ok(permit) = in_flight.clone().acquire_many_owned(wanted).await else {
                return;
            };
            // Posts already in flight: let what the engine produces in the next few
            // milliseconds join this post (a burst of instances then fills a few posts on
            // warm connections instead of opening a new connection per message).
            if in_flight.available_permits() + (wanted as usize) < MAX_IN_FLIGHT {
                tokio::time::sleep(GATHER).await;
            }
            let items = loop {
                let items = self.drain(&peer);
                if !items.is_empty() {
                    break items;
                }
                // Idle for PROBE_EVERY: an empty batch measures the round trip (and keeps the
                // connection open for the next real message).
                if tokio::time::timeout(PROBE_EVERY, peer.wake.notified())
                    .await
                    .is_err()
                {
                    break Vec::new();
                }
            };
            let with_certificates = peer
                .with_certificates
                .load(std::sync::atomic::Ordering::Relaxed);
            let batch = self.batch(&items, with_certificates);
            let body = serde_json::to_vec(&batch).unwrap_or_default();
            let request = client
                .post(&peer.url)
                .timeout(self.life.saturating_mul(2).max(POST_TIMEOUT))
                .header("content-type", "application/json")
                .body(body)
                .send();
            let count = items.len();
            let peer = peer.clone();
            let life = self.life;
            let this = self.clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                tokio::pin!(request);
                // A post still unanswered after twice the peer's round-trip bound (at least
                // MIN_SILENCE, at most the message life) while nothing else was heard from the
                // peer either: it is unreachable (a partition, a dead host). Under a burst the
                // peer answers other posts meanwhile, so queueing alone does not make it
                // unreachable. The post goes on (cancelling it would close its connection, and
                // the next post would pay a new handshake and TCP slow start again): a slow
                // answer is still an answer.
                let silence = peer
                    .rtt()
                    .map_or(life, |r| r.saturating_mul(2).max(MIN_SILENCE).min(life));
                let answer = match tokio::time::timeout(silence, &mut request).await {
                    Ok(r) => r,
                    Err(_) => {
                        if !peer.heard_since(sent) {
                            peer.set_down(true);
                        }
                        request.await
                    }
                };
                match answer {
                    Ok(r) if r.status().is_success() => {
                        peer.observe(sent.elapsed());
                        peer.heard();
                        peer.set_down(false);
                        if with_certificates {
                            peer.with_certificates
                                .store(false, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Ok(r)
                        if r.status() == reqwest::StatusCode::PRECONDITION_REQUIRED
                            && !with_certificates =>
                    {
                        // The peer holds no certificate of a signer (it restarted): the same
                        // messages again, with the certificates. (A batch that carried them
                        // is never answered 428; it would count as refused below.)
                        peer.heard();
                        peer.set_down(false);
                        peer.with_certificates
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        tracing::debug!(peer = %peer.name, messages = count, "agreement batch to be sent again with certificates");
                        this.requeue(&peer, items);
                    }
                    Ok(r) => {
                        peer.heard();
                        peer.set_down(false);
                        if count > 0 {
                            crate::metrics::global().record_agreement_dropped("refused_by_peer");
                        }
                        tracing::debug!(peer = %peer.name, status = r.status().as_u16(), messages = count, "agreement batch refused");
                    }
                    Err(e) => {
                        if !peer.heard_since(sent) {
                            peer.set_down(true);
                        }
                        if count > 0 {
                            crate::metrics::global().record_agreement_dropped("send_failed");
                        }
                        tracing::debug!(peer = %peer.name, error = %e, messages = count, "agreement batch not delivered");
                    }
                }
                drop(permit);
            });
        }
    }
}

impl Transport for Outbound {
    fn unreachable(&self, op: usize) -> bool {
        self.peers
            .get(op)
            .and_then(Option::as_ref)
            .is_some_and(|p| p.down.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn round_trip(&self, to: &[usize], nth: usize) -> Option<Duration> {
        let mut rtts: Vec<Duration> = to
            .iter()
            .filter_map(|&op| self.peers.get(op)?.as_ref()?.rtt())
            .collect();
        rtts.sort_unstable();
        rtts.get(nth.checked_sub(1)?).copied()
    }

    fn send(&self, to: &[usize], msg: &SignedMessage, signers: &[usize]) {
        let msg = Arc::new(msg.clone());
        let signers: Arc<[usize]> = Arc::from(signers);
        let now = Instant::now();
        for &op in to {
            let Some(Some(peer)) = self.peers.get(op) else {
                continue;
            };
            if let Ok(mut q) = peer.queue.lock() {
                if q.len() >= MAX_QUEUE {
                    q.pop_front();
                    crate::metrics::global().record_agreement_dropped("queue_full");
                }
                q.push_back(Queued {
                    at: now,
                    msg: msg.clone(),
                    signers: signers.clone(),
                });
            }
            peer.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The estimate starts at the first sample (bound 3x it), follows a slower path within one
    /// sample (through the variation), and settles near the round trip on a steady path.
    #[test]
    fn round_trip_estimate_follows_the_path() {
        let ms = |v: u64| v * 1000;
        let mut e = RttEstimate::default();
        assert_eq!(e.bound(), None);
        e.observe(ms(1));
        assert_eq!(e.bound(), Some(Duration::from_millis(3)));
        for _ in 0..20 {
            e.observe(ms(1));
        }
        assert!(e.bound() < Some(Duration::from_millis(2)));
        // The path becomes 180 ms: one sample lifts the bound above it.
        e.observe(ms(180));
        let after_one = e.bound().expect("bound");
        assert!(after_one >= Duration::from_millis(180), "{after_one:?}");
        // Steady at 180 ms: the bound comes down close to it, never below.
        for _ in 0..60 {
            e.observe(ms(180));
        }
        let steady = e.bound().expect("bound");
        assert!(
            steady >= Duration::from_millis(180) && steady < Duration::from_millis(190),
            "{steady:?}"
        );
        // Back to 1 ms: it decreases within a few dozen samples.
        for _ in 0..40 {
            e.observe(ms(1));
        }
        assert!(
            e.bound() < Some(Duration::from_millis(10)),
            "{:?}",
            e.bound()
        );
    }

    /// A local HTTP/1.1 server answering every request 200 on keep-alive connections; counts
    /// the connections it accepted and the requests it answered.
    async fn counting_server() -> (
        String,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (conns, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, r) = (conns.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut chunk).await {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            r.fetch_add(1, Ordering::SeqCst);
                            if stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (base, conns, requests)
    }

    /// Connections to a peer are opened once it answered, reused when warmed again (after it
    /// was unreachable), and nothing is sent to it while it is unreachable or before it
    /// answered anything.
    #[tokio::test]
    async fn connections_to_a_peer_are_kept_warm_and_reused() {
        use std::sync::atomic::Ordering;
        let (base, conns, requests) = counting_server().await;
        let peer = Arc::new(PeerQueue::new("peer", &base));
        let client = reqwest::Client::builder().build().expect("client");
        let task = tokio::spawn(Outbound::keep_warm(
            peer.clone(),
            client,
            Duration::from_secs(1),
            6,
        ));
        let settle = || tokio::time::sleep(PROBE_EVERY + Duration::from_millis(700));
        // Never heard from: nothing is sent.
        settle().await;
        assert_eq!(requests.load(Ordering::SeqCst), 0);
        // It answered (a probe): six connections are opened.
        peer.heard();
        settle().await;
        assert_eq!(requests.load(Ordering::SeqCst), 6);
        assert_eq!(conns.load(Ordering::SeqCst), 6);
        // Not again before WARM_EVERY.
        settle().await;
        assert_eq!(requests.load(Ordering::SeqCst), 6);
        // Unreachable: nothing is sent.
        peer.set_down(true);
        settle().await;
        assert_eq!(requests.load(Ordering::SeqCst), 6);
        // It answers again: warmed again at once, over the same six connections.
        peer.heard();
        peer.set_down(false);
        settle().await;
        assert_eq!(requests.load(Ordering::SeqCst), 12);
        assert_eq!(conns.load(Ordering::SeqCst), 6);
        task.abort();
    }
}
