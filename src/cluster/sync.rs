//! Peer history sync: a node whose slashing-protection history is behind its peers'
//! pulls the signed-duty history of its validators from the other nodes of its cluster, merges
//! it, and only then signs.
//!
//! Protocol: `GET /api/v1/cluster/history?validator_offset=&limit=` on every node (mutual TLS;
//! see [`ClusterSync::authorize`]) answers a [`HistoryPage`]: the node's EIP-3076 history
//! (<https://eips.ethereum.org/EIPS/eip-3076>) for a page of `cluster.json`'s validators, keyed
//! by GROUP public key. The puller checks every page (same cluster hash, the operator it asked,
//! the page it asked, every key a validator of the page that the peer holds a share of, one entry
//! per key, one genesis validators root) and maps each group key to its own share key. Only when
//! every page of a peer passed is the peer's history imported, in one transaction
//! ([`SlashingDb::import_interchange`]: union of records, low watermarks lowered only to what the
//! union justifies). A peer whose answer fails any check contributes nothing and is reported.
//!
//! Readiness: the node's sign gate (`NodeState::not_ready`) stays closed until history from
//! [`ClusterSync::min_peers`] distinct peers has been merged, and, unless disabled, validators
//! that still have no history got low watermarks at the current slot / epoch (from the
//! network's genesis time), so a share on a fresh disk cannot sign anything in the past.
//! Afterwards the pull repeats every [`SyncOptions::interval`] (a node that was partitioned
//! catches up), with the gate left open.
//!
//! Notices: after this node stores new block or attestation records it tells its peers
//! (`POST /api/v1/cluster/notify`, debounced by [`NOTICE_DEBOUNCE`]) the lowest slot and target
//! epoch it stored since its last notice; a peer receiving a notice pulls at once from the
//! sender only the records at or above those, through the same checks, so the cluster's nodes
//! converge within about a second without waiting for the periodic pull. A lost notice costs
//! nothing but time: the periodic full pull still runs.
//!
//! Safety argument (README "Cluster history sync"): t > n/2, so two conflicting messages would
//! each need t signers and share at least one node, whose own database refuses the second. A
//! node that lost its database breaks that only if it signs before it knows what the cluster
//! signed; a message the cluster signed while it was away has at least t-1 signers among the
//! n-1 other nodes, so pulling from n-t+1 of them reaches at least one of those signers.
//!
//! Invariants: nothing from a peer is merged unless its whole answer passed the checks; the gate
//! opens once and only after the minimum was reached; merges never lower a prune floor (the
//! slashing module's import rules).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::link::{Action, ContactGate, Delivery, PeerLink, Transition, Window};
use super::protocol::{HistoryPage, HistoryQuery, Notice, HISTORY_PATH, MAX_PAGE, NOTIFY_PATH};
use super::{ClusterDefinition, Operator};
use crate::bls::PublicKeyBytes;
use crate::signing::Network;
use crate::slashing::interchange::{Interchange, Metadata, ValidatorData, FORMAT_VERSION};
use crate::slashing::{self, SlashableMessage, SlashingDb};
use crate::tls::Fingerprint;

/// Largest history page body accepted from a peer (a page of [`MAX_PAGE`] validators with a few
/// hundred records each stays far below this).
const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;

pub use super::link::NOTICE_DEBOUNCE;

/// Timeout of one notice or heartbeat delivery.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(2);

/// Timeout of one notice or heartbeat: [`NOTICE_TIMEOUT`], or a second less than the contact
/// grace when that is longer. A peer whose round trip is longer than the fixed timeout (its
/// operator raised the grace for it) still gets its notices, on one kept-alive connection,
/// instead of each attempt abandoning a new connection that never completes.
fn notice_timeout(contact_grace: Duration) -> Duration {
    contact_grace
        .saturating_sub(Duration::from_secs(1))
        .max(NOTICE_TIMEOUT)
}

/// How often the contact gate is re-evaluated.
const CONTACT_CHECK: Duration = Duration::from_millis(250);

/// While catching up after contact returned, failed full pulls are retried this often.
const CATCH_UP_RETRY: Duration = Duration::from_secs(1);

/// Default of [`SyncOptions::contact_grace`].
pub const DEFAULT_CONTACT_GRACE: Duration = Duration::from_secs(3);

/// Sync settings (see the `--sync-*` flags).
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Distinct peers whose history must be merged before signing; `None` = the default
    /// [`default_min_peers`].
    pub min_peers: Option<usize>,
    /// Time between background pulls once ready (before that, pulls repeat every second or
    /// every `interval`, whichever is shorter).
    pub interval: Duration,
    /// Set low watermarks at the current slot / epoch for validators without history.
    pub watermark_from_genesis: bool,
    /// Validators per requested page (at most [`MAX_PAGE`]).
    pub page_size: usize,
    /// Timeout of one page request.
    pub request_timeout: Duration,
    /// A ready node that got no answer from enough peers (t-1, at most `min_peers`) for longer
    /// than this refuses slashable duties until it caught up again; zero turns that off.
    pub contact_grace: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            min_peers: None,
            interval: Duration::from_secs(60),
            watermark_from_genesis: true,
            page_size: MAX_PAGE,
            request_timeout: Duration::from_secs(30),
            contact_grace: DEFAULT_CONTACT_GRACE,
        }
    }
}

/// Sync failures: configuration errors at start, and per-peer failures (reported, never fatal).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--operator` names no operator of `cluster.json`.
    #[error("operator {0:?} is not in the cluster definition")]
    UnknownOperator(String),
    /// An allowed peer client is named after no operator of `cluster.json`.
    #[error("allowed peer client {0:?} is not an operator of the cluster definition")]
    UnknownPeerClient(String),
    /// More peers are required than the cluster has.
    #[error("--sync-min-peers {required} but the cluster has only {available} other operators")]
    TooManyPeersRequired {
        /// Required peers.
        required: usize,
        /// Other operators in the cluster.
        available: usize,
    },
    /// The request failed (connection, TLS, timeout).
    #[error("request failed: {0}")]
    Transport(String),
    /// The peer answered with an error status.
    #[error("peer answered HTTP {0}")]
    Status(u16),
    /// The body is not a valid history page.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The peer runs another cluster definition.
    #[error("peer has cluster hash {found}, expected {expected}")]
    WrongCluster {
        /// Ours.
        expected: String,
        /// Theirs.
        found: String,
    },
    /// The peer answered as another operator.
    #[error("peer answered as operator {0:?}")]
    WrongOperator(String),
    /// The page is not the one asked for, or paging does not progress.
    #[error("bad paging: {0}")]
    BadPaging(String),
    /// History for a key that is not a validator of the cluster.
    #[error("history for key {0} outside the cluster")]
    ForeignKey(PublicKeyBytes),
    /// History for a validator outside the requested page.
    #[error("history for validator {0} outside the requested page")]
    OutsidePage(PublicKeyBytes),
    /// History for a validator the peer holds no share of.
    #[error("history for validator {0} of which the peer holds no share")]
    NotAHolder(PublicKeyBytes),
    /// Two entries for one validator.
    #[error("two entries for validator {0}")]
    Duplicate(PublicKeyBytes),
    /// Pages with different genesis validators roots.
    #[error("pages disagree on the genesis validators root")]
    MixedGenesisValidatorsRoot,
    /// The merge (import) failed, e.g. another chain's genesis validators root.
    #[error("merge failed: {0}")]
    Merge(#[from] slashing::Error),
}

/// The default minimum of peers: for every validator `max(t-1, n-t+1)` (capped at n-1), the
/// largest over the cluster. n-t+1 peers always include a signer of any message the cluster
/// signed; t-1 is what signing needs anyway.
pub fn default_min_peers(definition: &ClusterDefinition) -> usize {
    definition
        .validators()
        .iter()
        .map(|v| {
            let (t, n) = (v.threshold as usize, v.share_count as usize);
            (t.saturating_sub(1))
                .max(n.saturating_sub(t) + 1)
                .min(n.saturating_sub(1))
        })
        .max()
        .unwrap_or(0)
}

/// Peers a node must reach to count as in contact: the largest t-1 over the cluster's validators
/// (what signing needs anyway; a node that reaches fewer cannot be part of a threshold with
/// them).
pub fn contact_required(definition: &ClusterDefinition) -> usize {
    definition
        .validators()
        .iter()
        .map(|v| (v.threshold as usize).saturating_sub(1))
        .max()
        .unwrap_or(0)
}

/// Sync state of one peer (for `/healthcheck` and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerSyncStatus {
    /// Unix time of the last pull attempt.
    pub last_attempt_unix: Option<u64>,
    /// Unix time of the last successful pull and merge.
    pub last_success_unix: Option<u64>,
    /// Seconds since the last successful merge (lag), at snapshot time.
    pub lag_secs: Option<u64>,
    /// Error of the last attempt, if it failed.
    pub last_error: Option<String>,
    /// Successful merges.
    pub successes: u64,
    /// Failed pulls or merges.
    pub failures: u64,
    /// Records (blocks + attestations) newly stored from this peer, in total.
    pub records_merged: u64,
    /// Notices of new history received from this peer.
    pub notices_received: u64,
    /// Pulls made because of a notice (a subset of the attempts).
    pub notified_pulls: u64,
    /// Whether the peer answered (a pull, notice or heartbeat) within the contact grace.
    pub reachable: bool,
    /// Notices of this node's new history delivered to the peer.
    pub notices_sent: u64,
    /// Of those, notices delivered only after earlier attempts failed (re-sent from the outbox).
    pub notices_resent: u64,
    /// Notice or heartbeat attempts the peer did not answer.
    pub send_failures: u64,
    /// Whether records stored here still wait to be announced to the peer.
    pub notice_pending: bool,
}

/// A snapshot of the sync state (for `/healthcheck` and metrics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncSnapshot {
    /// Whether the initial sync completed (the gate is open).
    pub ready: bool,
    /// This node's operator name.
    pub operator: String,
    /// Distinct peers whose history must be merged before signing.
    pub min_peers: usize,
    /// Distinct peers merged from since start.
    pub peers_merged: usize,
    /// Unix time of the end of the last round.
    pub last_round_unix: Option<u64>,
    /// Contact with the peers (the gate for slashable duties).
    pub contact: ContactSnapshot,
    /// Per peer, by operator name.
    pub peers: BTreeMap<String, PeerSyncStatus>,
}

/// The contact gate's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactSnapshot {
    /// Whether slashable duties are refused because contact was lost (or is being recovered).
    pub lost: bool,
    /// Whether contact returned and the node is catching up (pulling) before it reopens.
    pub catching_up: bool,
    /// Peers that must answer within the grace.
    pub required_peers: usize,
    /// Peers that answered within the grace at the last check.
    pub reachable_peers: usize,
    /// The grace, in milliseconds (0: the gate is off).
    pub grace_ms: u64,
    /// Times contact was lost since start.
    pub losses: u64,
    /// Milliseconds from contact return to reopening, of the last recovery.
    pub last_recovery_ms: Option<u64>,
}

#[derive(Debug)]
struct State {
    ready: bool,
    merged: BTreeSet<String>,
    last_round: Option<u64>,
    peers: BTreeMap<String, PeerSyncStatus>,
    /// Peers that announced new history, with the records to pull from each.
    pending: BTreeMap<String, Window>,
    /// Per peer: outbox of notices and contact.
    links: BTreeMap<String, PeerLink>,
    /// Contact gate for slashable duties (closes only once `ready`).
    gate: ContactGate,
}

/// Genesis timing for the watermark of validators without history.
#[derive(Debug, Clone, Copy)]
struct Clock {
    genesis_time: Option<u64>,
    seconds_per_slot: u64,
    slots_per_epoch: u64,
}

impl Clock {
    /// `(slot, epoch)` now, or `None` before genesis or without a genesis time.
    fn now(&self) -> Option<(u64, u64)> {
        let genesis = self.genesis_time?;
        let elapsed = unix_now().checked_sub(genesis)?;
        let slot = elapsed / self.seconds_per_slot.max(1);
        Some((slot, slot / self.slots_per_epoch.max(1)))
    }
}

/// One node's sync engine: serves its history pages and pulls its peers'.
pub struct ClusterSync {
    definition: Arc<ClusterDefinition>,
    hash: String,
    operator: String,
    index: BTreeMap<PublicKeyBytes, usize>,
    peers: Vec<Operator>,
    allowed: BTreeMap<Fingerprint, String>,
    db: SlashingDb,
    client: reqwest::Client,
    min_peers: usize,
    options: SyncOptions,
    clock: Clock,
    state: Mutex<State>,
    /// Wakes the pull loop when a peer's notice arrived.
    notice_arrived: tokio::sync::Notify,
    /// Wakes the pull loop when contact with enough peers returned.
    contact_returned: tokio::sync::Notify,
    /// Per peer (same order as `peers`): wakes its link loop when records were stored here.
    link_wake: Vec<tokio::sync::Notify>,
}

impl std::fmt::Debug for ClusterSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSync")
            .field("operator", &self.operator)
            .field("cluster", &self.hash)
            .field("min_peers", &self.min_peers)
            .finish_non_exhaustive()
    }
}

impl ClusterSync {
    /// Builds the engine of `operator`'s node. `client` must present the node's peer client
    /// certificate and verify peers' server certificates. Peer clients are authorised by
    /// `allowed_clients` (`operator name → client certificate fingerprint`) and by the
    /// operators' `tls_fingerprint` in `cluster.json`.
    ///
    /// # Errors
    /// [`Error::UnknownOperator`], [`Error::UnknownPeerClient`],
    /// [`Error::TooManyPeersRequired`].
    pub fn new(
        definition: Arc<ClusterDefinition>,
        operator: &str,
        db: SlashingDb,
        client: reqwest::Client,
        allowed_clients: &BTreeMap<String, Fingerprint>,
        network: &Network,
        options: SyncOptions,
    ) -> Result<Self, Error> {
        if definition.operator(operator).is_none() {
            return Err(Error::UnknownOperator(operator.to_owned()));
        }
        let allowed = definition
            .peer_fingerprints(allowed_clients)
            .map_err(Error::UnknownPeerClient)?
            .into_iter()
            .map(|(fp, i)| (fp, definition.operators()[i].name.clone()))
            .collect();
        let peers: Vec<Operator> = definition
            .operators()
            .iter()
            .filter(|o| o.name != operator)
            .cloned()
            .collect();
        let min_peers = options
            .min_peers
            .unwrap_or_else(|| default_min_peers(&definition));
        if min_peers > peers.len() {
            return Err(Error::TooManyPeersRequired {
                required: min_peers,
                available: peers.len(),
            });
        }
        let index = definition
            .validators()
            .iter()
            .enumerate()
            .map(|(i, v)| (v.group_pubkey.bytes(), i))
            .collect();
        let peer_count = peers.len();
        let gate = ContactGate::new(
            contact_required(&definition).min(min_peers),
            options.contact_grace,
        );
        Ok(Self {
            hash: definition.hash().to_string(),
            operator: operator.to_owned(),
            index,
            peers,
            allowed,
            db,
            client,
            min_peers,
            options,
            clock: Clock {
                genesis_time: network.genesis_time,
                seconds_per_slot: network.seconds_per_slot,
                slots_per_epoch: network.slots_per_epoch,
            },
            state: Mutex::new(State {
                ready: false,
                merged: BTreeSet::new(),
                last_round: None,
                peers: BTreeMap::new(),
                pending: BTreeMap::new(),
                links: BTreeMap::new(),
                gate,
            }),
            notice_arrived: tokio::sync::Notify::new(),
            contact_returned: tokio::sync::Notify::new(),
            link_wake: (0..peer_count)
                .map(|_| tokio::sync::Notify::new())
                .collect(),
            definition,
        })
    }

    /// Distinct peers whose history must be merged before the node signs.
    pub fn min_peers(&self) -> usize {
        self.min_peers
    }

    /// This node's operator name.
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// The operator a peer client is, by the fingerprint of the certificate it presented: only
    /// another operator of the cluster is allowed (listed in the allowed peer clients, or whose
    /// `tls_fingerprint` in `cluster.json` matches).
    pub fn authorize(&self, client: Option<Fingerprint>) -> Option<&str> {
        let name = self.allowed.get(&client?)?;
        (name != &self.operator).then_some(name.as_str())
    }

    /// One page of this node's history, keyed by group public key.
    ///
    /// # Errors
    /// Database errors.
    pub async fn export_page(&self, query: HistoryQuery) -> Result<HistoryPage, slashing::Error> {
        let validators = self.definition.validators();
        let total = validators.len();
        let limit = query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        let start = query.validator_offset.min(total);
        let end = start.saturating_add(limit).min(total);
        let mut to_group = BTreeMap::new();
        for v in &validators[start..end] {
            if let Some(s) = v.shares.iter().find(|s| s.operator == self.operator) {
                to_group.insert(s.pubkey.bytes(), v.group_pubkey.bytes());
            }
        }
        let interchange = if to_group.is_empty() {
            None
        } else {
            let keys: Vec<PublicKeyBytes> = to_group.keys().copied().collect();
            match self.db.export(Some(&keys)).await {
                Ok(mut doc) => {
                    if let Some(min) = query.min_slot {
                        for d in &mut doc.data {
                            d.signed_blocks.retain(|b| b.slot >= min);
                        }
                    }
                    if let Some(min) = query.min_target_epoch {
                        for d in &mut doc.data {
                            d.signed_attestations.retain(|a| a.target_epoch >= min);
                        }
                    }
                    doc.data.retain(|d| {
                        !(d.signed_blocks.is_empty() && d.signed_attestations.is_empty())
                    });
                    for d in &mut doc.data {
                        if let Some(group) = to_group.get(&d.pubkey) {
                            d.pubkey = *group;
                        }
                    }
                    Some(doc)
                }
                Err(slashing::Error::NoGenesisValidatorsRoot) => None,
                Err(e) => return Err(e),
            }
        };
        Ok(HistoryPage {
            cluster_hash: self.hash.clone(),
            operator: self.operator.clone(),
            validator_offset: start,
            limit: end - start,
            total_validators: total,
            next_offset: (end < total).then_some(end),
            interchange,
        })
    }

    /// Pulls every page of `peer`'s history and checks it; returns it keyed by this node's share
    /// keys (`None` when the peer has no history at all).
    ///
    /// # Errors
    /// Any transport failure or failed check: then nothing of this peer may be merged.
    pub async fn pull(&self, peer: &Operator) -> Result<Option<Interchange>, Error> {
        self.pull_window(peer, None).await
    }

    /// As [`ClusterSync::pull`], limited to the records of `window` (`None`: everything).
    async fn pull_window(
        &self,
        peer: &Operator,
        window: Option<Window>,
    ) -> Result<Option<Interchange>, Error> {
        let total = self.definition.validators().len();
        let page_size = self.options.page_size.clamp(1, MAX_PAGE);
        let mut offset = 0usize;
        let mut gvr = None;
        let mut data = Vec::new();
        let mut seen = BTreeSet::new();
        // Bounded: every page must advance by at least one validator.
        for _ in 0..=total {
            let page = self.fetch_page(peer, offset, page_size, window).await?;
            if page.cluster_hash != self.hash {
                return Err(Error::WrongCluster {
                    expected: self.hash.clone(),
                    found: page.cluster_hash,
                });
            }
            if page.operator != peer.name {
                return Err(Error::WrongOperator(page.operator));
            }
            if page.validator_offset != offset || page.total_validators != total {
                return Err(Error::BadPaging(format!(
                    "asked offset {offset} of {total}, got offset {} of {}",
                    page.validator_offset, page.total_validators
                )));
            }
            let end = offset.saturating_add(page.limit).min(total);
            if let Some(doc) = page.interchange {
                if doc.metadata.interchange_format_version != FORMAT_VERSION {
                    return Err(Error::Malformed(format!(
                        "interchange format version {:?}",
                        doc.metadata.interchange_format_version
                    )));
                }
                match gvr {
                    Some(g) if g != doc.metadata.genesis_validators_root => {
                        return Err(Error::MixedGenesisValidatorsRoot)
                    }
                    _ => gvr = Some(doc.metadata.genesis_validators_root),
                }
                for d in doc.data {
                    if let Some(mine) = self.check_entry(peer, &d, offset, end, &mut seen)? {
                        data.push(ValidatorData { pubkey: mine, ..d });
                    }
                }
            }
            match page.next_offset {
                None if end >= total || total == 0 => {
                    return Ok(gvr.map(|g| Interchange {
                        metadata: Metadata {
                            interchange_format_version: FORMAT_VERSION.to_owned(),
                            genesis_validators_root: g,
                        },
                        data,
                    }))
                }
                Some(next) if next == end && next > offset => offset = next,
                other => {
                    return Err(Error::BadPaging(format!(
                        "page {offset}..{end} of {total} says next {other:?}"
                    )))
                }
            }
        }
        Err(Error::BadPaging("too many pages".into()))
    }

    /// Checks one entry of a peer's page; returns this node's share key for it (`None` when
    /// this node holds no share of the validator).
    fn check_entry(
        &self,
        peer: &Operator,
        d: &ValidatorData,
        start: usize,
        end: usize,
        seen: &mut BTreeSet<PublicKeyBytes>,
    ) -> Result<Option<PublicKeyBytes>, Error> {
        let group = d.pubkey;
        let &i = self.index.get(&group).ok_or(Error::ForeignKey(group))?;
        if !(start..end).contains(&i) {
            return Err(Error::OutsidePage(group));
        }
        let v = &self.definition.validators()[i];
        if !v.shares.iter().any(|s| s.operator == peer.name) {
            return Err(Error::NotAHolder(group));
        }
        if !seen.insert(group) {
            return Err(Error::Duplicate(group));
        }
        Ok(v.shares
            .iter()
            .find(|s| s.operator == self.operator)
            .map(|s| s.pubkey.bytes()))
    }

    async fn fetch_page(
        &self,
        peer: &Operator,
        offset: usize,
        limit: usize,
        window: Option<Window>,
    ) -> Result<HistoryPage, Error> {
        let mut url = format!(
            "{}{HISTORY_PATH}?validator_offset={offset}&limit={limit}",
            peer.url.trim_end_matches('/')
        );
        if let Some(w) = window {
            // A kind absent from the window is not needed at all: ask for nothing of it.
            let slot = w.min_slot.unwrap_or(u64::MAX);
            let epoch = w.min_target_epoch.unwrap_or(u64::MAX);
            url.push_str(&format!("&min_slot={slot}&min_target_epoch={epoch}"));
        }
        let mut resp = self
            .client
            .get(url)
            .timeout(self.options.request_timeout)
            .send()
            .await
            .map_err(|e| Error::Transport(error_chain(&e)))?;
        self.note_contact(&peer.name);
        if !resp.status().is_success() {
            return Err(Error::Status(resp.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Error::Transport(error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(Error::Malformed("page too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| Error::Malformed(e.to_string()))
    }

    /// Imports a checked history; returns the number of records newly stored.
    async fn merge(&self, doc: Option<Interchange>) -> Result<u64, Error> {
        let Some(doc) = doc.filter(|d| !d.data.is_empty()) else {
            return Ok(0);
        };
        let json = serde_json::to_string(&doc)
            .map_err(|e| Error::Merge(slashing::Error::InvalidInterchange(e.to_string())))?;
        let report = self.db.import_interchange(&json).await?;
        Ok((report.blocks + report.attestations) as u64)
    }

    /// Pulls from every peer concurrently and merges each peer's history that passed the
    /// checks. Returns the number of peers merged in this round.
    pub async fn sync_once(&self) -> usize {
        let all = self.peers.iter().map(|p| (p, None)).collect();
        let merged = self.sync_peers(all).await;
        if let Ok(mut state) = self.state.lock() {
            state.last_round = Some(unix_now());
        }
        merged
    }

    /// Pulls (each limited to its window) from the given peers concurrently and merges what
    /// passed the checks; returns the number of peers merged.
    async fn sync_peers(&self, peers: Vec<(&Operator, Option<Window>)>) -> usize {
        let started = Instant::now();
        let pulls = peers
            .into_iter()
            .map(|(p, w)| async move {
                let outcome = match self.pull_window(p, w).await {
                    Ok(doc) => self.merge(doc).await,
                    Err(e) => Err(e),
                };
                (p, w.is_some(), outcome)
            })
            .collect::<futures::stream::FuturesUnordered<_>>();
        // Each peer's outcome is recorded as soon as it is known: a peer that does not answer
        // (timeouts) does not delay what the others' merges mean for readiness.
        let mut pulls = std::pin::pin!(pulls);
        let mut merged = 0;
        while let Some((peer, notified, outcome)) = futures::StreamExt::next(&mut pulls).await {
            let now = unix_now();
            let Ok(mut state) = self.state.lock() else {
                return merged;
            };
            let status = state.peers.entry(peer.name.clone()).or_default();
            status.last_attempt_unix = Some(now);
            if notified {
                status.notified_pulls += 1;
            }
            match outcome {
                Ok(records) => {
                    merged += 1;
                    status.last_success_unix = Some(now);
                    status.last_error = None;
                    status.successes += 1;
                    status.records_merged += records;
                    if records > 0 {
                        tracing::info!(peer = %peer.name, records, notified, "merged peer history");
                    }
                    state.merged.insert(peer.name.clone());
                    if !notified {
                        let min_peers = self.min_peers;
                        if let Some(took) =
                            state
                                .gate
                                .merged(&peer.name, started, min_peers, Instant::now())
                        {
                            tracing::info!(
                                recovery_ms = took.as_millis() as u64,
                                "contact with peers restored and history caught up; slashable duties signed again"
                            );
                        }
                    }
                }
                Err(e) => {
                    status.failures += 1;
                    status.last_error = Some(e.to_string());
                    tracing::warn!(peer = %peer.name, error = %e, "peer history sync failed; nothing merged from this peer");
                }
            }
        }
        merged
    }

    /// Notes that this node stored a new record for `msg` (called by the sign path after the
    /// slashing database committed it): the peers get a notice within [`NOTICE_DEBOUNCE`].
    pub fn recorded(&self, msg: SlashableMessage) {
        let now = Instant::now();
        if let Ok(mut state) = self.state.lock() {
            for peer in &self.peers {
                state
                    .links
                    .entry(peer.name.clone())
                    .or_default()
                    .record(now, Window::of(msg));
            }
        }
        for wake in &self.link_wake {
            wake.notify_one();
        }
    }

    /// Notes that `peer` answered a request of this node.
    fn note_contact(&self, peer: &str) {
        if let Ok(mut state) = self.state.lock() {
            state
                .links
                .entry(peer.to_owned())
                .or_default()
                .contact(Instant::now());
        }
    }

    /// Why slashable duties (blocks, attestations) are refused while the node lost contact with
    /// its peers or is catching up after contact returned; `None` when they may be signed (the
    /// initial readiness gate is separate: `NodeState::not_ready`).
    pub fn slashable_gate(&self) -> Option<String> {
        // A poisoned lock (a panic inside sync) closes the gate: no slashable duty is signed on
        // contact state that cannot be read.
        let Ok(state) = self.state.lock() else {
            return Some("cluster sync state unavailable".to_owned());
        };
        state.gate.reason(Instant::now(), self.min_peers)
    }

    /// Accepts a notice from `peer` (already authorised by its client certificate): the pull
    /// loop pulls the announced records from it at once.
    ///
    /// # Errors
    /// [`Error::WrongCluster`] or [`Error::WrongOperator`]: the notice is ignored.
    pub fn accept_notice(&self, peer: &str, notice: &Notice) -> Result<(), Error> {
        if notice.cluster_hash != self.hash {
            return Err(Error::WrongCluster {
                expected: self.hash.clone(),
                found: notice.cluster_hash.clone(),
            });
        }
        if notice.operator != peer {
            return Err(Error::WrongOperator(notice.operator.clone()));
        }
        let window = Window {
            min_slot: notice.min_slot,
            min_target_epoch: notice.min_target_epoch,
        };
        // An empty notice is a heartbeat: answering it is all the sender needs.
        if window == Window::default() {
            return Ok(());
        }
        if let Ok(mut state) = self.state.lock() {
            state
                .peers
                .entry(peer.to_owned())
                .or_default()
                .notices_received += 1;
            state
                .pending
                .entry(peer.to_owned())
                .or_default()
                .widen(window);
        }
        self.notice_arrived.notify_one();
        Ok(())
    }

    /// Pulls from the peers whose notices are pending.
    async fn sync_pending(&self) {
        let pending = match self.state.lock() {
            Ok(mut s) => std::mem::take(&mut s.pending),
            Err(_) => return,
        };
        let peers = self
            .peers
            .iter()
            .filter_map(|p| pending.get(&p.name).map(|w| (p, Some(*w))))
            .collect::<Vec<_>>();
        if !peers.is_empty() {
            self.sync_peers(peers).await;
        }
    }

    /// One peer's link: delivers this node's notices (re-sending undelivered ones with back-off
    /// and jitter until the peer answers) and sends heartbeats when the peer has been quiet; one
    /// request in flight at a time. Runs until dropped.
    async fn link_loop(&self, index: usize) {
        let peer = &self.peers[index];
        let url = format!("{}{NOTIFY_PATH}", peer.url.trim_end_matches('/'));
        loop {
            let now = Instant::now();
            let (action, wake_at) = match self.state.lock() {
                Ok(mut s) => {
                    let link = s.links.entry(peer.name.clone()).or_default();
                    (link.due(now), link.next_wake(now))
                }
                Err(_) => return,
            };
            let Some(action) = action else {
                tokio::select! {
                    () = tokio::time::sleep_until(wake_at.into()) => {}
                    () = self.link_wake[index].notified() => {}
                }
                continue;
            };
            let window = match action {
                Action::Notice(w) => Some(w),
                Action::Probe => None,
            };
            let notice = Notice {
                cluster_hash: self.hash.clone(),
                operator: self.operator.clone(),
                min_slot: window.and_then(|w| w.min_slot),
                min_target_epoch: window.and_then(|w| w.min_target_epoch),
            };
            let answer = self
                .client
                .post(&url)
                .timeout(notice_timeout(self.options.contact_grace))
                .json(&notice)
                .send()
                .await;
            let now = Instant::now();
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let link = state.links.entry(peer.name.clone()).or_default();
            match answer {
                Ok(r) => {
                    let delivery = link.answered(now, window.is_some());
                    let status = state.peers.entry(peer.name.clone()).or_default();
                    if !r.status().is_success() {
                        tracing::debug!(peer = %peer.name, status = r.status().as_u16(), "notice refused");
                        continue;
                    }
                    match delivery {
                        Delivery::Probe => {}
                        Delivery::First => status.notices_sent += 1,
                        Delivery::Resent => {
                            status.notices_sent += 1;
                            status.notices_resent += 1;
                            tracing::info!(peer = %peer.name, "undelivered notices re-sent to the peer");
                        }
                    }
                }
                Err(e) => {
                    link.failed(now, window, rand::random::<f64>() * 0.5 + 0.5);
                    state
                        .peers
                        .entry(peer.name.clone())
                        .or_default()
                        .send_failures += 1;
                    tracing::debug!(peer = %peer.name, error = %error_chain(&e), notice = window.is_some(), "peer did not answer; retrying with back-off");
                }
            }
        }
    }

    /// Re-evaluates the contact gate every [`CONTACT_CHECK`] once the node is ready.
    async fn contact_loop(&self) {
        loop {
            tokio::time::sleep(CONTACT_CHECK).await;
            let now = Instant::now();
            let transition = match self.state.lock() {
                Ok(mut s) if s.ready => {
                    let grace = s.gate.grace();
                    let reachable = self
                        .peers
                        .iter()
                        .filter(|p| {
                            s.links
                                .get(&p.name)
                                .is_some_and(|l| l.reachable(now, grace))
                        })
                        .count();
                    let t = s.gate.evaluate(now, reachable);
                    (t, reachable, s.gate.required())
                }
                Ok(_) => continue,
                Err(_) => return,
            };
            match transition {
                (Transition::Lost, reachable, required) => tracing::warn!(
                    reachable,
                    required,
                    "lost contact with cluster peers: refusing slashable duties until history is caught up"
                ),
                (Transition::Returned, reachable, _) => {
                    tracing::info!(reachable, "contact with cluster peers returned: pulling now");
                    self.contact_returned.notify_one();
                }
                (Transition::None, _, _) => {}
            }
        }
    }

    /// Why the node may not sign yet (`None` once the initial sync completed).
    pub fn not_ready_reason(&self) -> Option<String> {
        let state = self.state.lock().ok()?;
        if state.ready {
            return None;
        }
        let failing: Vec<String> = state
            .peers
            .iter()
            .filter_map(|(name, s)| s.last_error.as_ref().map(|e| format!("{name}: {e}")))
            .collect();
        let mut reason = format!(
            "cluster history sync: merged from {} of the {} peers required",
            state.merged.len(),
            self.min_peers
        );
        if !failing.is_empty() {
            reason.push_str(&format!(" ({})", failing.join("; ")));
        }
        Some(reason)
    }

    /// Opens the gate when enough peers were merged: first sets the genesis-time watermarks of
    /// validators without history. Returns whether the node is ready.
    async fn try_become_ready(&self) -> bool {
        let merged = match self.state.lock() {
            Ok(s) if s.ready => return true,
            Ok(s) => s.merged.len(),
            Err(_) => return false,
        };
        if merged < self.min_peers {
            return false;
        }
        if self.options.watermark_from_genesis {
            match self.clock.now() {
                Some((slot, epoch)) => {
                    let mine: Vec<PublicKeyBytes> = self
                        .definition
                        .shares_of(&self.operator)
                        .map(|(_, _, share)| share.bytes())
                        .collect();
                    match self.db.set_initial_watermarks(&mine, slot, epoch).await {
                        Ok(n) if n > 0 => tracing::info!(
                            validators = n,
                            slot,
                            epoch,
                            "no history for these validators: low watermarks set to the current slot and epoch"
                        ),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "setting initial watermarks failed");
                            return false;
                        }
                    }
                }
                None => tracing::warn!(
                    "network has no genesis time (or it is in the future): no initial watermarks set"
                ),
            }
        }
        match self.state.lock() {
            Ok(mut s) => {
                s.ready = true;
                true
            }
            Err(_) => false,
        }
    }

    /// A snapshot of the sync state, with lags computed now.
    pub fn snapshot(&self) -> SyncSnapshot {
        let now = unix_now();
        let instant = Instant::now();
        let state = self.state.lock().map(|s| {
            let mut peers = s.peers.clone();
            let grace = s.gate.grace();
            for p in &self.peers {
                let status = peers.entry(p.name.clone()).or_default();
                let link = s.links.get(&p.name);
                status.reachable =
                    link.is_some_and(|l| l.reachable(instant, grace.max(NOTICE_TIMEOUT)));
                status.notice_pending = link.is_some_and(PeerLink::has_pending);
            }
            for p in peers.values_mut() {
                p.lag_secs = p.last_success_unix.map(|t| now.saturating_sub(t));
            }
            let contact = ContactSnapshot {
                lost: s.gate.closed(),
                catching_up: s.gate.catching_up(),
                required_peers: s.gate.required(),
                reachable_peers: s.gate.reachable(),
                grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
                losses: s.gate.losses(),
                last_recovery_ms: s
                    .gate
                    .last_recovery()
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            (s.ready, s.merged.len(), s.last_round, peers, contact)
        });
        let (ready, peers_merged, last_round_unix, peers, contact) = match state {
            Ok(v) => v,
            Err(_) => (
                false,
                0,
                None,
                BTreeMap::new(),
                ContactSnapshot {
                    lost: true,
                    catching_up: false,
                    required_peers: 0,
                    reachable_peers: 0,
                    grace_ms: 0,
                    losses: 0,
                    last_recovery_ms: None,
                },
            ),
        };
        SyncSnapshot {
            ready,
            operator: self.operator.clone(),
            min_peers: self.min_peers,
            peers_merged,
            last_round_unix,
            contact,
            peers,
        }
    }

    /// The sync loop: pulls until the node is ready (calling `gate(None)` once it is, and
    /// `gate(Some(reason))` before), then every [`SyncOptions::interval`], whenever a peer's
    /// notice arrived and at once when contact with the peers returned; beside it, one link
    /// per peer (notices and heartbeats) and the contact gate. Runs until dropped.
    pub async fn run(self: Arc<Self>, gate: impl Fn(Option<String>) + Send + 'static) {
        let links = futures::future::join_all((0..self.peers.len()).map(|i| self.link_loop(i)));
        futures::future::join3(self.pull_loop(gate), links, self.contact_loop()).await;
    }

    async fn pull_loop(&self, gate: impl Fn(Option<String>)) {
        let retry = self.options.interval.min(Duration::from_secs(1));
        loop {
            self.sync_once().await;
            if self.try_become_ready().await {
                break;
            }
            gate(self.not_ready_reason());
            tokio::time::sleep(retry).await;
        }
        tracing::info!(
            peers = self.snapshot().peers_merged,
            "cluster history synced; signing enabled"
        );
        gate(None);
        let mut next_full = tokio::time::Instant::now() + self.options.interval;
        loop {
            let catching_up = self
                .state
                .lock()
                .map(|s| s.gate.catching_up())
                .unwrap_or(false);
            let wake = if catching_up {
                next_full.min(tokio::time::Instant::now() + CATCH_UP_RETRY)
            } else {
                next_full
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {
                    self.sync_once().await;
                    next_full = tokio::time::Instant::now() + self.options.interval;
                }
                () = self.contact_returned.notified() => {
                    self.sync_once().await;
                    next_full = tokio::time::Instant::now() + self.options.interval;
                }
                () = self.notice_arrived.notified() => self.sync_pending().await,
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_wait_longer_only_for_a_raised_contact_grace() {
        // The default grace (3 s) keeps the 2 s notice timeout.
        assert_eq!(notice_timeout(Duration::from_secs(3)), NOTICE_TIMEOUT);
        assert_eq!(notice_timeout(Duration::ZERO), NOTICE_TIMEOUT);
        // A grace raised for 3 s round trips leaves room for a handshake and a request.
        assert_eq!(
            notice_timeout(Duration::from_secs(20)),
            Duration::from_secs(19)
        );
    }

    #[test]
    fn errors_are_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }

    #[test]
    fn clock_counts_slots_and_epochs_from_genesis() {
        let now = unix_now();
        let c = Clock {
            genesis_time: Some(now - 12 * 65),
            seconds_per_slot: 12,
            slots_per_epoch: 32,
        };
        let (slot, epoch) = c.now().expect("after genesis");
        assert!((65..=66).contains(&slot), "{slot}");
        assert_eq!(epoch, 2);
        let future = Clock {
            genesis_time: Some(now + 100),
            ..c
        };
        assert_eq!(future.now(), None);
    }
}
