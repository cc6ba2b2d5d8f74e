//! Scrape-time metrics of a combiner: per signer node, the partial signatures received (valid,
//! wrong), refusals, failures (transport errors, timeouts, other statuses), answer latency and
//! whether the node is failing now (its latest counted answer was a failure or a wrong partial),
//! read from [`Combiner::counters`]; whether it is up (not backed off) and the sign requests not
//! sent to it while backed off, read from [`Combiner::health`]; and the validators for which fewer than `t` nodes are not
//! failing, so the combiner cannot sign for them until nodes recover.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::Combiner;

/// A collector that reads the combiner's per-node counters at every scrape.
pub fn combiner_collector(combiner: Arc<Combiner>) -> Box<dyn Collector> {
    Box::new(CombinerCollector(combiner))
}

struct CombinerCollector(Arc<Combiner>);

impl std::fmt::Debug for CombinerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CombinerCollector")
    }
}

impl Collector for CombinerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0;
        {
            let mut m = encoder.encode_descriptor(
                "dvsigner_combiner_partials",
                "Answers of signer nodes to partial-signature requests, by node and result",
                None,
                MetricType::Counter,
            )?;
            for (node, counters) in c.nodes.iter().zip(&c.counters) {
                for (result, counter) in [
                    ("ok", &counters.partials_ok),
                    ("wrong", &counters.partials_wrong),
                    ("late", &counters.partials_late),
                    ("refused", &counters.refusals),
                    ("failed", &counters.failures),
                ] {
                    let labels = [("node", node.name.as_str()), ("result", result)];
                    ConstCounter::new(counter.load(Ordering::Relaxed))
                        .encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "dvsigner_combiner_partial_duration_seconds",
                "Time until a signer node answered a partial-signature request, by node",
                None,
                MetricType::Histogram,
            )?;
            for (node, counters) in c.nodes.iter().zip(&c.counters) {
                let labels = [("node", node.name.as_str())];
                counters.latency.encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "dvsigner_combiner_node_failing",
                "1 while the signer node's latest answer to a partial-signature request was a failure or a wrong partial, by node",
                None,
                MetricType::Gauge,
            )?;
            for (node, counters) in c.nodes.iter().zip(&c.counters) {
                let failing = i64::from(counters.failing.load(Ordering::Relaxed));
                ConstGauge::new(failing)
                    .encode(m.encode_family(&[("node", node.name.as_str())])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "dvsigner_combiner_node_up",
                "0 while the signer node is backed off after consecutive transport failures (sign requests are not sent to it while enough other nodes are healthy; it is probed), else 1, by node",
                None,
                MetricType::Gauge,
            )?;
            for (node, health) in c.nodes.iter().zip(&c.health) {
                ConstGauge::new(i64::from(!health.is_backed_off()))
                    .encode(m.encode_family(&[("node", node.name.as_str())])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "dvsigner_combiner_node_skipped",
                "Sign requests not sent to the signer node because it was backed off, by node",
                None,
                MetricType::Counter,
            )?;
            for (node, health) in c.nodes.iter().zip(&c.health) {
                ConstCounter::new(health.skipped())
                    .encode(m.encode_family(&[("node", node.name.as_str())])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "dvsigner_combiner_node_not_sent",
                "Partial-signature requests that waited for the node (at its in-flight limit) and were not sent, by node and reason: answered (the sign request was answered meanwhile) or overloaded (it could no longer make the deadline)",
                None,
                MetricType::Counter,
            )?;
            for (node, gate) in c.nodes.iter().zip(&c.gates) {
                for (reason, counter) in [
                    ("answered", &gate.dropped_answered),
                    ("overloaded", &gate.dropped_overloaded),
                ] {
                    let labels = [("node", node.name.as_str()), ("reason", reason)];
                    ConstCounter::new(counter.load(Ordering::Relaxed))
                        .encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "dvsigner_combiner_node_in_flight",
                "Partial-signature requests on the wire to the node now, by node",
                None,
                MetricType::Gauge,
            )?;
            for (node, gate) in c.nodes.iter().zip(&c.gates) {
                let (in_flight, _) = gate.load();
                ConstGauge::new(i64::try_from(in_flight).unwrap_or(i64::MAX))
                    .encode(m.encode_family(&[("node", node.name.as_str())])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "dvsigner_combiner_node_queued",
                "Partial-signature requests waiting for a place towards the node now, by node",
                None,
                MetricType::Gauge,
            )?;
            for (node, gate) in c.nodes.iter().zip(&c.gates) {
                let (_, queued) = gate.load();
                ConstGauge::new(i64::try_from(queued).unwrap_or(i64::MAX))
                    .encode(m.encode_family(&[("node", node.name.as_str())])?)?;
            }
        }
        for (name, help, value) in [
            (
                "dvsigner_combiner_shed",
                "Sign requests answered 503 with Retry-After because they could not be answered within the deadline (node queues too long)",
                c.shed.load(Ordering::Relaxed),
            ),
            (
                "dvsigner_combiner_verify_batches",
                "Batches of combined signatures verified together (a batch of one included)",
                c.verifier.stats.batches.load(Ordering::Relaxed),
            ),
            (
                "dvsigner_combiner_verify_signatures",
                "Combined signatures verified in those batches",
                c.verifier.stats.signatures.load(Ordering::Relaxed),
            ),
            (
                "dvsigner_combiner_verify_batch_failures",
                "Batches whose joint check failed (each signature was then checked alone)",
                c.verifier.stats.batch_failures.load(Ordering::Relaxed),
            ),
        ] {
            let counter = ConstCounter::new(value);
            let m = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(m)?;
        }
        let below = c
            .validators
            .values()
            .filter(|v| {
                let usable = v
                    .shares
                    .iter()
                    .filter(|s| !c.counters[s.node].failing.load(Ordering::Relaxed))
                    .count();
                usable < v.threshold
            })
            .count();
        let below = ConstGauge::new(i64::try_from(below).unwrap_or(i64::MAX));
        let m = encoder.encode_descriptor(
            "dvsigner_combiner_validators_below_threshold",
            "Validators with fewer than threshold signer nodes not failing (see dvsigner_combiner_node_failing)",
            None,
            below.metric_type(),
        )?;
        below.encode(m)?;
        let validators = ConstGauge::new(i64::try_from(c.validators.len()).unwrap_or(i64::MAX));
        let m = encoder.encode_descriptor(
            "dvsigner_keys_loaded",
            "Validators (group public keys) this combiner serves",
            None,
            validators.metric_type(),
        )?;
        validators.encode(m)
    }
}
