//! Scrape-time metrics of a signer node: loaded key count and readiness (the readiness gauge is
//! 0 while [`NodeState::not_ready`] holds a reason, e.g. peer sync pending, or while cluster sync
//! refuses slashable duties after losing contact with its peers), and with cluster
//! sync on, per peer: last successful merge time and lag (gauges), records merged, failures and
//! notices received since start (counters, exported with the `_total` suffix).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::NodeState;

/// A collector that reads `state` at every scrape.
pub fn node_collector(state: Arc<NodeState>) -> Box<dyn Collector> {
    Box::new(NodeCollector(state))
}

struct NodeCollector(Arc<NodeState>);

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeCollector")
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let keys = i64::try_from(self.0.keys.public_keys().len()).unwrap_or(i64::MAX);
        let gate_open = self
            .0
            .cluster_sync
            .get()
            .is_none_or(|s| s.slashable_gate().is_none());
        let ready = self
            .0
            .not_ready
            .read()
            .map(|r| i64::from(r.is_none() && gate_open))
            .unwrap_or(0);
        let slashing = i64::from(self.0.slashing.is_some());
        for (name, help, value) in [
            ("dvsigner_keys_loaded", "Keys this node signs with", keys),
            (
                "dvsigner_ready",
                "1 when the node signs, 0 while it waits (e.g. for peer sync)",
                ready,
            ),
            (
                "dvsigner_slashing_protection_enabled",
                "1 when slashing protection is on",
                slashing,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            let m = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(m)?;
        }
        let Some(sync) = self.0.cluster_sync.get() else {
            return Ok(());
        };
        let snapshot = sync.snapshot();
        type Field = fn(&crate::cluster::sync::PeerSyncStatus) -> Option<u64>;
        // Gauges: values that go up and down. Counters (exported with the `_total` suffix):
        // totals since the node started, which only go up.
        let per_peer: [(&str, &str, MetricType, Field); 6] = [
            (
                "dvsigner_sync_peer_last_success_timestamp_seconds",
                "Unix time of the last successful history merge from the peer",
                MetricType::Gauge,
                |p| p.last_success_unix,
            ),
            (
                "dvsigner_sync_peer_lag_seconds",
                "Seconds since the last successful history merge from the peer",
                MetricType::Gauge,
                |p| p.lag_secs,
            ),
            (
                "dvsigner_sync_peer_records_merged",
                "Records newly stored from the peer's history since start",
                MetricType::Counter,
                |p| Some(p.records_merged),
            ),
            (
                "dvsigner_sync_peer_failures",
                "Failed pulls or merges from the peer since start",
                MetricType::Counter,
                |p| Some(p.failures),
            ),
            (
                "dvsigner_sync_peer_notices_received",
                "Notices of new history received from the peer since start",
                MetricType::Counter,
                |p| Some(p.notices_received),
            ),
            (
                "dvsigner_sync_peer_notices_resent",
                "Notices to the peer delivered only after earlier attempts failed, since start",
                MetricType::Counter,
                |p| Some(p.notices_resent),
            ),
        ];
        for (name, help, metric_type, field) in per_peer {
            let mut m = encoder.encode_descriptor(name, help, None, metric_type)?;
            for (peer, status) in &snapshot.peers {
                let Some(v) = field(status) else { continue };
                let labels = [("peer", peer.as_str())];
                if matches!(metric_type, MetricType::Counter) {
                    ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
                } else {
                    let gauge = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
                    gauge.encode(m.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
