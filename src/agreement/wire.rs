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
/// Posts in flight per peer.
pub const MAX_IN_FLIGHT: usize = 4;
/// Largest request body of the route.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

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
}

impl BatchError {
    /// The metric reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::WrongCluster(_) => "wrong_cluster",
            Self::WrongOperator(_) => "wrong_operator",
            Self::Malformed(_) => "malformed",
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
                    Arc::new(PeerQueue {
                        name: name.clone(),
                        url: format!(
                            "{}{AGREEMENT_PATH}",
                            urls.get(i).map_or("", |u| u.trim_end_matches('/'))
                        ),
                        queue: Mutex::new(VecDeque::new()),
                        wake: Notify::new(),
                    })
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

    /// Spawns one sender task per peer posting with `client`; abort them to stop.
    pub fn spawn(self: &Arc<Self>, client: reqwest::Client) -> Vec<tokio::task::JoinHandle<()>> {
        self.peers
            .iter()
            .flatten()
            .map(|peer| {
                let this = self.clone();
                let peer = peer.clone();
                let client = client.clone();
                tokio::spawn(async move { this.sender_loop(peer, client).await })
            })
            .collect()
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

    fn batch(&self, items: &[Queued]) -> Batch {
        let mut ops = vec![self.ring.me()];
        for i in items {
            ops.extend(i.signers.iter().copied());
        }
        ops.sort_unstable();
        ops.dedup();
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
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let items = loop {
                let items = self.drain(&peer);
                if !items.is_empty() {
                    break items;
                }
                peer.wake.notified().await;
            };
            let batch = self.batch(&items);
            let request = client
                .post(&peer.url)
                .timeout(self.life.max(Duration::from_millis(500)))
                .json(&batch);
            let name = peer.name.clone();
            let count = items.len();
            tokio::spawn(async move {
                match request.send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        crate::metrics::global().record_agreement_dropped("refused_by_peer");
                        tracing::debug!(peer = %name, status = r.status().as_u16(), messages = count, "agreement batch refused");
                    }
                    Err(e) => {
                        crate::metrics::global().record_agreement_dropped("send_failed");
                        tracing::debug!(peer = %name, error = %e, messages = count, "agreement batch not delivered");
                    }
                }
                drop(permit);
            });
        }
    }
}

impl Transport for Outbound {
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
