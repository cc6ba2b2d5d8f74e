//! Scrape-time metrics of a signer node: loaded key count and readiness (the readiness gauge is
//! 0 while [`NodeState::not_ready`] holds a reason, e.g. peer sync pending).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

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
        let ready = self
            .0
            .not_ready
            .read()
            .map(|r| i64::from(r.is_none()))
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
        Ok(())
    }
}
