//! Prometheus metrics, served in the OpenMetrics text format on a separate plain-HTTP listener
//! (`--metrics-listen`, off unless given; loopback by default, like Web3Signer's
//! `--metrics-host-allowlist` default).
//!
//! Spec: OpenMetrics 1.0 (<https://prometheus.io/docs/specs/om/open_metrics_spec/>), encoded by
//! the `prometheus-client` crate.
//!
//! Two sources make one scrape:
//! - [`global()`]: process-wide request metrics recorded on the hot path (sign requests by type and
//!   status, sign latency by type, slashing refusals by reason, slashing check-and-record
//!   latency, requests refused as of another network or an unknown fork). Every series a
//!   request can touch is created at start-up, so recording is a read lock, a hash lookup and an
//!   atomic add; the wrong-network series are created on first use.
//! - the server collector ([`Metrics::set_server_collector`]), which reads the running server's
//!   own state at scrape time (key count and readiness of a node; per-node partial counters and
//!   latencies of a combiner). One process serves one node or one combiner; the last server
//!   started wins (the in-process `dev` cluster has no metrics listener).
//!
//! Invariants: no label ever carries request data other than the sign type, the status code and
//! the fork version of a wrong-network request, and that one takes at most
//! [`WRONG_NETWORK_VERSIONS_MAX`] values (then `other`), so the series count is bounded; nothing
//! secret is reachable from here.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::signing::fork_check::hex4;
use crate::signing::{MismatchKind, NetworkMismatch, SignKind};
use crate::slashing::Refusal;

/// Content type of an OpenMetrics text exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Status codes a sign request can end with (pre-created series).
const SIGN_STATUSES: [u16; 6] = [200, 400, 404, 412, 500, 503];

/// Sign type label of a request whose body could not be parsed.
const UNKNOWN_TYPE: &str = "unknown";

/// The `reason` label of `dvsigner_slashing_refusals_total`: one per slashing rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// [`Refusal::DoubleBlockProposal`].
    DoubleBlockProposal,
    /// [`Refusal::NullRootAtSlot`].
    NullRootAtSlot,
    /// [`Refusal::BlockSlotBelowWatermark`].
    BlockSlotBelowWatermark,
    /// [`Refusal::SourceGreaterThanTarget`].
    SourceGreaterThanTarget,
    /// [`Refusal::DoubleVote`].
    DoubleVote,
    /// [`Refusal::NullRootAtTarget`].
    NullRootAtTarget,
    /// [`Refusal::SurroundingVote`].
    SurroundingVote,
    /// [`Refusal::SurroundedVote`].
    SurroundedVote,
    /// [`Refusal::SourceBelowWatermark`].
    SourceBelowWatermark,
    /// [`Refusal::TargetBelowWatermark`].
    TargetBelowWatermark,
    /// [`Refusal::WrongGenesisValidatorsRoot`].
    WrongGenesisValidatorsRoot,
    /// [`Refusal::ValidatorDisabled`].
    ValidatorDisabled,
    /// [`Refusal::BlockAtHighWatermark`] and [`Refusal::AttestationAtHighWatermark`].
    HighWatermark,
    /// The nodes agreed on another root for the duty (cluster agreement).
    Agreement,
}

impl RefusalReason {
    /// Every reason (each has a pre-created series).
    pub const ALL: [RefusalReason; 14] = [
        Self::DoubleBlockProposal,
        Self::NullRootAtSlot,
        Self::BlockSlotBelowWatermark,
        Self::SourceGreaterThanTarget,
        Self::DoubleVote,
        Self::NullRootAtTarget,
        Self::SurroundingVote,
        Self::SurroundedVote,
        Self::SourceBelowWatermark,
        Self::TargetBelowWatermark,
        Self::WrongGenesisValidatorsRoot,
        Self::ValidatorDisabled,
        Self::HighWatermark,
        Self::Agreement,
    ];

    /// The label value, e.g. `"double_vote"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DoubleBlockProposal => "double_block_proposal",
            Self::NullRootAtSlot => "null_root_at_slot",
            Self::BlockSlotBelowWatermark => "block_slot_below_watermark",
            Self::SourceGreaterThanTarget => "source_greater_than_target",
            Self::DoubleVote => "double_vote",
            Self::NullRootAtTarget => "null_root_at_target",
            Self::SurroundingVote => "surrounding_vote",
            Self::SurroundedVote => "surrounded_vote",
            Self::SourceBelowWatermark => "source_below_watermark",
            Self::TargetBelowWatermark => "target_below_watermark",
            Self::WrongGenesisValidatorsRoot => "wrong_genesis_validators_root",
            Self::ValidatorDisabled => "validator_disabled",
            Self::HighWatermark => "high_watermark",
            Self::Agreement => "agreement",
        }
    }

    /// The reason of a refusal.
    pub fn of(refusal: &Refusal) -> Self {
        match refusal {
            Refusal::DoubleBlockProposal { .. } => Self::DoubleBlockProposal,
            Refusal::NullRootAtSlot { .. } => Self::NullRootAtSlot,
            Refusal::BlockSlotBelowWatermark { .. } => Self::BlockSlotBelowWatermark,
            Refusal::SourceGreaterThanTarget { .. } => Self::SourceGreaterThanTarget,
            Refusal::DoubleVote { .. } => Self::DoubleVote,
            Refusal::NullRootAtTarget { .. } => Self::NullRootAtTarget,
            Refusal::SurroundingVote { .. } => Self::SurroundingVote,
            Refusal::SurroundedVote { .. } => Self::SurroundedVote,
            Refusal::SourceBelowWatermark { .. } => Self::SourceBelowWatermark,
            Refusal::TargetBelowWatermark { .. } => Self::TargetBelowWatermark,
            Refusal::WrongGenesisValidatorsRoot { .. } => Self::WrongGenesisValidatorsRoot,
            Refusal::ValidatorDisabled { .. } => Self::ValidatorDisabled,
            Refusal::BlockAtHighWatermark { .. } | Refusal::AttestationAtHighWatermark { .. } => {
                Self::HighWatermark
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignLabels {
    r#type: &'static str,
    status: u16,
}

/// Distinct fork versions the wrong-network metric labels and logs; later ones are `other`.
pub const WRONG_NETWORK_VERSIONS_MAX: usize = 32;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WrongNetworkLabels {
    reason: &'static str,
    fork_version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

/// `reason` values of `dvsigner_agreement_messages_refused_total` (pre-created series).
pub const AGREEMENT_REFUSAL_REASONS: [&str; 13] = [
    "not_a_peer",
    "wrong_cluster",
    "wrong_operator",
    "malformed",
    "unknown_certificate",
    "unknown_validator",
    "wrong_sender",
    "bad_signature",
    "not_a_member",
    "wrong_instance",
    "invalid",
    "overloaded",
    "certificates_needed",
];

/// `reason` values of `dvsigner_agreement_messages_dropped_total` (pre-created series).
pub const AGREEMENT_DROP_REASONS: [&str; 4] =
    ["expired", "queue_full", "send_failed", "refused_by_peer"];

/// `result` values of `dvsigner_signing_root_hashes_total` (pre-created series).
pub const ROOT_HASH_RESULTS: [&str; 2] = ["hashed", "reused"];

/// `result` values of `dvsigner_agreement_signature_checks_total` (pre-created series).
pub const AGREEMENT_CHECK_RESULTS: [&str; 3] = ["verified", "remembered", "failed"];

/// `outcome` values of `dvsigner_agreement_requests_total` (pre-created series).
pub const AGREEMENT_OUTCOMES: [&str; 4] = ["same_root", "other_root", "timeout", "error"];

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// Latency buckets from 0.5 ms to about 8 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Process-wide request metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sign_requests: Family<SignLabels, Counter>,
    sign_duration: HistogramFamily<TypeLabel>,
    refusals: Family<ReasonLabel, Counter>,
    slashing_check: Histogram,
    slashing_commits: Counter,
    keys_loading_total: Gauge,
    keys_loading_done: Gauge,
    wrong_network: Family<WrongNetworkLabels, Counter>,
    agreement_refused: Family<ReasonLabel, Counter>,
    agreement_dropped: Family<ReasonLabel, Counter>,
    agreement_requests: Family<OutcomeLabel, Counter>,
    agreement_checks: Family<ResultLabel, Counter>,
    root_hashes: Family<ResultLabel, Counter>,
    agreement_duration: Histogram,
    agreement_peer_rtt: Family<PeerLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// (kind, version) pairs seen, None once [`WRONG_NETWORK_VERSIONS_MAX`] versions were seen.
    wrong_network_seen: Mutex<HashSet<(MismatchKind, Option<[u8; 4]>)>>,
    server: Mutex<Option<Registry>>,
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("dvsigner");
        let sign_requests = Family::<SignLabels, Counter>::default();
        let sign_duration: HistogramFamily<TypeLabel> =
            Family::new_with_constructor(latency_histogram);
        let refusals = Family::<ReasonLabel, Counter>::default();
        let slashing_check = latency_histogram();
        let slashing_commits = Counter::default();
        let keys_loading_total = Gauge::default();
        let keys_loading_done = Gauge::default();
        registry.register(
            "keys_loading_total",
            "Keys to load in the current or last key load (start-up or /reload)",
            keys_loading_total.clone(),
        );
        registry.register(
            "keys_loading_done",
            "Keys of the current or last key load that are done (loaded or failed)",
            keys_loading_done.clone(),
        );
        let wrong_network = Family::<WrongNetworkLabels, Counter>::default();
        registry.register(
            "sign_requests",
            "Sign requests answered, by sign type and HTTP status",
            sign_requests.clone(),
        );
        registry.register(
            "sign_duration_seconds",
            "Time from request to response of sign requests, by sign type",
            sign_duration.clone(),
        );
        registry.register(
            "slashing_refusals",
            "Sign requests refused by slashing protection, by rule",
            refusals.clone(),
        );
        registry.register(
            "slashing_check_duration_seconds",
            "Slashing-protection check-and-record latency, including the durable commit",
            slashing_check.clone(),
        );
        registry.register(
            "slashing_commits",
            "Slashing-protection transactions that recorded sign requests (one durable commit \
             each; several requests share one under load)",
            slashing_commits.clone(),
        );
        registry.register(
            "wrong_network_requests",
            "Sign requests refused (400) because their fork info is of another network \
             (reason other_network) or of a fork the configured schedule lacks (unknown_fork), \
             by the fork version received",
            wrong_network.clone(),
        );
        let agreement_refused = Family::<ReasonLabel, Counter>::default();
        let agreement_dropped = Family::<ReasonLabel, Counter>::default();
        let agreement_requests = Family::<OutcomeLabel, Counter>::default();
        let agreement_checks = Family::<ResultLabel, Counter>::default();
        let root_hashes = Family::<ResultLabel, Counter>::default();
        let agreement_duration = latency_histogram();
        let agreement_peer_rtt =
            Family::<PeerLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "agreement_peer_round_trip_seconds",
            "Smoothed round trip of agreement posts to each peer node (idle peers are probed \
             every few seconds); round 1 of the agreement lasts at least twice the round trip \
             to the quorum's farthest peer",
            agreement_peer_rtt.clone(),
        );
        registry.register(
            "agreement_messages_refused",
            "Agreement messages (or whole batches) from peers that were not taken into account, \
             by reason (not_a_peer: client certificate of no other operator; bad_signature; \
             wrong_cluster; ...)",
            agreement_refused.clone(),
        );
        registry.register(
            "agreement_messages_dropped",
            "Outgoing agreement messages or batches not delivered, by reason (the engine's round \
             timers send again what still matters)",
            agreement_dropped.clone(),
        );
        registry.register(
            "agreement_requests",
            "Blocks and attestations that went through cluster agreement, by outcome (same_root: \
             signed; other_root: refused 412; timeout: 503; error: storage failure)",
            agreement_requests.clone(),
        );
        registry.register(
            "agreement_signature_checks",
            "Signatures of peers' agreement messages checked, by result (verified: checked now; \
             remembered: checked before, nested in a proof or sent again; failed)",
            agreement_checks.clone(),
        );
        registry.register(
            "signing_root_hashes",
            "Signing roots hashed to the curve for a signature or its verification, by result \
             (hashed: now; reused: hashed for another signature of the same root shortly before)",
            root_hashes.clone(),
        );
        registry.register(
            "agreement_duration_seconds",
            "Time a sign request waited for the cluster's agreement on its duty",
            agreement_duration.clone(),
        );
        for reason in AGREEMENT_REFUSAL_REASONS {
            let _ = agreement_refused.get_or_create(&ReasonLabel { reason });
        }
        for reason in AGREEMENT_DROP_REASONS {
            let _ = agreement_dropped.get_or_create(&ReasonLabel { reason });
        }
        for outcome in AGREEMENT_OUTCOMES {
            let _ = agreement_requests.get_or_create(&OutcomeLabel { outcome });
        }
        for result in AGREEMENT_CHECK_RESULTS {
            let _ = agreement_checks.get_or_create(&ResultLabel { result });
        }
        for result in ROOT_HASH_RESULTS {
            let _ = root_hashes.get_or_create(&ResultLabel { result });
        }
        let types = SignKind::ALL
            .iter()
            .map(|k| k.as_str())
            .chain([UNKNOWN_TYPE]);
        for t in types {
            for status in SIGN_STATUSES {
                let _ = sign_requests.get_or_create(&SignLabels { r#type: t, status });
            }
            let _ = sign_duration.get_or_create(&TypeLabel { r#type: t });
        }
        for reason in RefusalReason::ALL {
            let _ = refusals.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        Self {
            registry,
            sign_requests,
            sign_duration,
            refusals,
            slashing_check,
            slashing_commits,
            keys_loading_total,
            keys_loading_done,
            wrong_network,
            agreement_refused,
            agreement_dropped,
            agreement_requests,
            agreement_checks,
            root_hashes,
            agreement_duration,
            agreement_peer_rtt,
            wrong_network_seen: Mutex::new(HashSet::new()),
            server: Mutex::new(None),
        }
    }

    /// The key-loading gauges `(dvsigner_keys_loading_total, dvsigner_keys_loading_done)`.
    pub fn key_loading_gauges(&self) -> (Gauge, Gauge) {
        (
            self.keys_loading_total.clone(),
            self.keys_loading_done.clone(),
        )
    }

    /// Sets the collector of the running server (replacing any earlier one).
    pub fn set_server_collector(&self, collector: Box<dyn Collector>) {
        let mut registry = Registry::default();
        registry.register_collector(collector);
        if let Ok(mut slot) = self.server.lock() {
            *slot = Some(registry);
        }
    }

    /// Records one answered sign request (`kind` is None when the body did not parse).
    pub fn record_sign(&self, kind: Option<SignKind>, status: u16, elapsed: Duration) {
        let t = kind.map_or(UNKNOWN_TYPE, SignKind::as_str);
        self.sign_requests
            .get_or_create(&SignLabels { r#type: t, status })
            .inc();
        self.sign_duration
            .get_or_create(&TypeLabel { r#type: t })
            .observe(elapsed.as_secs_f64());
    }

    /// Records a slashing-protection refusal.
    pub fn record_refusal(&self, refusal: &Refusal) {
        self.refusals
            .get_or_create(&ReasonLabel {
                reason: refusal_reason(refusal),
            })
            .inc();
    }

    /// Records a refusal by its reason (for refusals that are no slashing rule's, e.g.
    /// [`RefusalReason::Agreement`]).
    pub fn record_refusal_reason(&self, reason: RefusalReason) {
        self.refusals
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts an agreement message or batch from a peer that was not taken into account
    /// (`reason` one of [`AGREEMENT_REFUSAL_REASONS`]).
    pub fn record_agreement_refused(&self, reason: &'static str) {
        self.agreement_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Sets the smoothed round trip of agreement posts to `peer`.
    pub fn set_agreement_peer_rtt(&self, peer: &str, rtt: Duration) {
        self.agreement_peer_rtt
            .get_or_create(&PeerLabel {
                peer: peer.to_owned(),
            })
            .set(rtt.as_secs_f64());
    }

    /// Counts an outgoing agreement message or batch that was not delivered (`reason` one of
    /// [`AGREEMENT_DROP_REASONS`]).
    pub fn record_agreement_dropped(&self, reason: &'static str) {
        self.agreement_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a signature check of a peer's agreement message (`result` one of
    /// [`AGREEMENT_CHECK_RESULTS`]).
    pub fn record_agreement_signature_check(&self, result: &'static str) {
        self.agreement_checks
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts a signing root hashed to the curve for a signature (`result` one of
    /// [`ROOT_HASH_RESULTS`]).
    pub fn record_root_hash(&self, result: &'static str) {
        self.root_hashes
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Records a sign request's agreement (`outcome` one of [`AGREEMENT_OUTCOMES`]) and how
    /// long it waited.
    pub fn record_agreement(&self, outcome: &'static str, waited: Duration) {
        self.agreement_requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        self.agreement_duration.observe(waited.as_secs_f64());
    }

    /// Counts a request refused as of another network or an unknown fork, and logs it the first
    /// time its (reason, fork version) is seen: a warning for another network, an error for an
    /// unknown fork. At most [`WRONG_NETWORK_VERSIONS_MAX`] versions are remembered; later ones
    /// are counted and logged (once) as `other`.
    pub fn record_wrong_network(&self, mismatch: &NetworkMismatch) {
        let version = hex4(mismatch.fork_version);
        let key = (mismatch.kind, Some(mismatch.fork_version));
        let (label, first) = match self.wrong_network_seen.lock() {
            Ok(mut seen) => {
                let versions = seen.iter().filter(|(_, v)| v.is_some()).count();
                if seen.contains(&key) {
                    (version, false)
                } else if versions < WRONG_NETWORK_VERSIONS_MAX {
                    (version, seen.insert(key))
                } else {
                    ("other".to_owned(), seen.insert((mismatch.kind, None)))
                }
            }
            Err(_) => (version, false),
        };
        self.wrong_network
            .get_or_create(&WrongNetworkLabels {
                reason: mismatch.kind.as_str(),
                fork_version: label.clone(),
            })
            .inc();
        if first {
            match mismatch.kind {
                MismatchKind::UnknownFork => tracing::error!(
                    fork_version = %label,
                    "refused a sign request (400): {mismatch} (logged once per fork version; \
                     dvsigner_wrong_network_requests_total counts every request)"
                ),
                MismatchKind::OtherNetwork => tracing::warn!(
                    fork_version = %label,
                    "refused a sign request (400): {mismatch} (logged once per fork version; \
                     dvsigner_wrong_network_requests_total counts every request)"
                ),
            }
        }
    }

    /// Records the latency of one slashing-protection check-and-record.
    pub fn observe_slashing_check(&self, elapsed: Duration) {
        self.slashing_check.observe(elapsed.as_secs_f64());
    }

    /// Counts one slashing-protection transaction that recorded sign requests.
    pub fn count_slashing_commit(&self) {
        self.slashing_commits.inc();
    }

    /// The OpenMetrics text of these metrics followed by those of the server collector.
    ///
    /// # Errors
    /// Only if a collector fails to format (never for the built-in ones).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        text::encode_registry(&mut out, &self.registry)?;
        if let Ok(server) = self.server.lock() {
            if let Some(registry) = server.as_ref() {
                text::encode_registry(&mut out, registry)?;
            }
        }
        text::encode_eof(&mut out)?;
        Ok(out)
    }
}

/// The `reason` label of a refusal.
pub fn refusal_reason(refusal: &Refusal) -> &'static str {
    RefusalReason::of(refusal).as_str()
}

/// The metrics router: `GET /metrics`.
pub fn router() -> Router {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape() -> Response {
    match global().encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Binds `addr` and serves [`router`] over plain HTTP in a background task until the returned
/// handle is aborted. Warns when `addr` is not loopback.
///
/// # Errors
/// When the address cannot be bound.
pub async fn spawn_server(
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics served over plain HTTP on a non-loopback address");
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "metrics listening");
    let handle = tokio::spawn(async move {
        let res = crate::http::server::run(
            listener,
            None,
            router(),
            crate::http::server::ServerOptions::default(),
            std::future::pending(),
        )
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "metrics server failed");
        }
    });
    Ok((bound, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_moves_the_right_series() {
        let m = global();
        let before = m.encode().expect("encode");
        assert!(before
            .contains("dvsigner_sign_requests_total{type=\"VOLUNTARY_EXIT\",status=\"404\"} 0"));
        m.record_sign(Some(SignKind::VoluntaryExit), 404, Duration::from_millis(3));
        let after = m.encode().expect("encode");
        assert!(after
            .contains("dvsigner_sign_requests_total{type=\"VOLUNTARY_EXIT\",status=\"404\"} 1"));
        assert!(after.contains("dvsigner_sign_duration_seconds_count{type=\"VOLUNTARY_EXIT\"} 1"));
        assert!(after.ends_with("# EOF\n"));
    }

    /// The label values of `metric`'s pre-created series for `label`, in exposition order.
    fn label_values(text: &str, metric: &str, label: &str) -> HashSet<String> {
        let prefix = format!("{metric}{{");
        let key = format!("{label}=\"");
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .filter_map(|l| {
                let rest = &l[l.find(key.as_str())? + key.len()..];
                Some(rest[..rest.find('"')?].to_owned())
            })
            .collect()
    }

    #[test]
    fn label_sets_are_those_of_the_enums() {
        let text = Metrics::new().encode().expect("encode");
        let reasons = label_values(&text, "dvsigner_slashing_refusals_total", "reason");
        let want: HashSet<String> = RefusalReason::ALL
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect();
        assert_eq!(reasons, want);
        // The values dashboards and alerts use.
        let published: HashSet<String> = [
            "double_block_proposal",
            "null_root_at_slot",
            "block_slot_below_watermark",
            "source_greater_than_target",
            "double_vote",
            "null_root_at_target",
            "surrounding_vote",
            "surrounded_vote",
            "source_below_watermark",
            "target_below_watermark",
            "wrong_genesis_validators_root",
            "validator_disabled",
            "high_watermark",
            "agreement",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        assert_eq!(reasons, published);
        let types = label_values(&text, "dvsigner_sign_requests_total", "type");
        let want: HashSet<String> = SignKind::ALL
            .iter()
            .map(|k| k.as_str().to_owned())
            .chain([UNKNOWN_TYPE.to_owned()])
            .collect();
        assert_eq!(types, want);
        assert_eq!(
            label_values(&text, "dvsigner_sign_duration_seconds_count", "type"),
            want
        );
    }

    #[test]
    fn every_refusal_has_its_reason_label() {
        let root = crate::bls::SigningRoot([7; 32]);
        let cases = [
            (
                Refusal::DoubleBlockProposal {
                    slot: 1,
                    existing_root: root,
                },
                "double_block_proposal",
            ),
            (Refusal::NullRootAtSlot { slot: 1 }, "null_root_at_slot"),
            (
                Refusal::DoubleVote {
                    target_epoch: 2,
                    existing_source: 1,
                    existing_root: root,
                },
                "double_vote",
            ),
            (
                Refusal::SurroundedVote {
                    source_epoch: 2,
                    target_epoch: 3,
                    existing_source: 1,
                    existing_target: 4,
                },
                "surrounded_vote",
            ),
        ];
        for (refusal, label) in cases {
            assert_eq!(refusal_reason(&refusal), label, "{refusal}");
        }
    }

    #[test]
    fn wrong_network_series_are_bounded() {
        let m = Metrics::new();
        let mainnet = crate::signing::Network::built_in("mainnet").expect("mainnet");
        let extra = 8;
        for i in 0..(WRONG_NETWORK_VERSIONS_MAX as u32 + extra) {
            let current = (0x7700_0000 + i).to_be_bytes();
            let e = mainnet
                .check_fork_info(current, current, 0, [9; 32])
                .expect_err("unknown network");
            m.record_wrong_network(&e);
            m.record_wrong_network(&e);
        }
        let text = m.encode().expect("encode");
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("dvsigner_wrong_network_requests_total{"))
            .collect();
        assert_eq!(series.len(), WRONG_NETWORK_VERSIONS_MAX + 1, "{text}");
        assert!(text.contains(
            "dvsigner_wrong_network_requests_total{reason=\"other_network\",fork_version=\"0x77000000\"} 2"
        ));
        assert!(text.contains(&format!(
            "dvsigner_wrong_network_requests_total{{reason=\"other_network\",fork_version=\"other\"}} {}",
            2 * extra
        )));
    }
}
