//! A combiner: [`CombinerConfig`] (typed, validated) and [`start`]: fan requests out to the
//! nodes of a cluster, combine t partial signatures, serve the Web3Signer API.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use super::{Identity, ListenerConfig, Running, SCHEDULE_WATCH_INTERVAL};
use crate::cluster::ClusterDefinition;
use crate::combiner::gate::GateLimits;
use crate::combiner::node_health::HealthSettings;
use crate::combiner::{self, Combiner, NodeTarget, ShareTarget, ValidatorTarget};
use crate::signing::Network;
use crate::tls;

/// Default wait for partial signatures, in milliseconds.
pub const DEFAULT_DEADLINE_MS: u64 = 2000;
pub use crate::combiner::node_health::{
    DEFAULT_NODE_BACKOFF_FAILURES, DEFAULT_NODE_DOWN_SUMMARY_SECS, DEFAULT_NODE_PROBE_INITIAL_MS,
    DEFAULT_NODE_PROBE_MAX_MS,
};

/// Everything a combiner needs to start.
#[derive(Debug, Clone)]
pub struct CombinerConfig {
    /// The validator clients' listener.
    pub listener: ListenerConfig,
    /// The cluster definition (`cluster.json`).
    pub cluster: PathBuf,
    /// CA of the nodes' server certificates (nodes may also be pinned in the definition).
    pub node_ca: Option<PathBuf>,
    /// Client certificate and key presented to nodes.
    pub client_identity: Option<Identity>,
    /// How long to wait for partial signatures.
    pub deadline: Duration,
    /// Network settings for signing roots.
    pub network: Network,
    /// Timeout of a new connection to a node (None: the deadline).
    pub node_connect_timeout: Option<Duration>,
    /// Node back-off and probing.
    pub health: HealthSettings,
    /// Per-node request limits.
    pub gate: GateLimits,
    /// Connections opened to each node at start (at most its in-flight limit).
    pub warm_connections: usize,
}

impl CombinerConfig {
    /// A combiner on `listener` for the cluster definition `cluster`, other settings their
    /// defaults (no node CA, no client certificate).
    ///
    /// # Errors
    /// When the default network cannot be built.
    pub fn new(listener: ListenerConfig, cluster: PathBuf) -> anyhow::Result<Self> {
        Ok(Self {
            listener,
            cluster,
            node_ca: None,
            client_identity: None,
            deadline: Duration::from_millis(DEFAULT_DEADLINE_MS),
            network: super::node::network(super::DEFAULT_NETWORK)?,
            node_connect_timeout: None,
            health: HealthSettings::default(),
            gate: GateLimits::default(),
            warm_connections: combiner::WARM_CONNECTIONS,
        })
    }

    /// The connect timeout towards nodes: the configured one, else the deadline.
    pub fn connect_timeout(&self) -> Duration {
        match self.node_connect_timeout {
            Some(t) => t.max(Duration::from_millis(1)),
            None => default_connect_timeout(self.deadline),
        }
    }
}

/// The deadline itself. A shorter default (half the deadline, at most 1 s) was measured with
/// `cargo bench --bench signing`: with 4 nodes and the combiner on 2 cores, handshakes of new
/// connections under load then timed out and threshold throughput fell from 0.52-0.57 to 0.49
/// of the CPU bound; over long links it would also fail connections that need about 3 round
/// trips of more than 300 ms. The connection is kept alive and reused once made.
pub fn default_connect_timeout(deadline: Duration) -> Duration {
    deadline
}

/// Builds the combiner state from a cluster definition and TLS options.
///
/// # Errors
/// TLS configuration errors.
pub fn build_combiner(
    def: &ClusterDefinition,
    network: Network,
    deadline: Duration,
    connect_timeout: Duration,
    client_tls: rustls::ClientConfig,
) -> anyhow::Result<Combiner> {
    build_combiner_with(
        def,
        network,
        deadline,
        connect_timeout,
        client_tls,
        GateLimits::default(),
    )
}

/// [`build_combiner`] with per-node request limits.
///
/// # Errors
/// TLS configuration errors, or the worker threads cannot be started.
pub fn build_combiner_with(
    def: &ClusterDefinition,
    network: Network,
    deadline: Duration,
    connect_timeout: Duration,
    client_tls: rustls::ClientConfig,
    gate: GateLimits,
) -> anyhow::Result<Combiner> {
    let nodes: Vec<NodeTarget> = def
        .operators()
        .iter()
        .map(|o| NodeTarget {
            name: o.name.clone(),
            url: o.url.clone(),
        })
        .collect();
    let validators = def
        .validators()
        .iter()
        .map(|v| ValidatorTarget {
            group_pubkey: v.group_pubkey.clone(),
            threshold: v.threshold as usize,
            shares: v
                .shares
                .iter()
                .filter_map(|s| {
                    def.operators()
                        .iter()
                        .position(|o| o.name == s.operator)
                        .map(|node| ShareTarget {
                            index: s.index,
                            pubkey: s.pubkey.clone(),
                            node,
                        })
                })
                .collect(),
        })
        .collect();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(client_tls)
        .http1_only()
        // Every connection a node's in-flight limit allows stays pooled, plus the probes'.
        .pool_max_idle_per_host(gate.max_in_flight.saturating_add(16))
        .pool_idle_timeout(Duration::from_secs(20))
        .connect_timeout(connect_timeout)
        .timeout(deadline)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(15))
        .build()?;
    let mut combiner = Combiner::new(nodes, validators, network, deadline, client)?;
    combiner.connect_timeout = connect_timeout;
    combiner.set_gate_limits(gate);
    Ok(combiner)
}

/// The client TLS settings a combiner uses towards the nodes of `def`.
///
/// # Errors
/// Unreadable certificate files.
pub fn node_client_tls(
    def: &ClusterDefinition,
    node_ca: Option<&Path>,
    identity: Option<Identity>,
) -> anyhow::Result<rustls::ClientConfig> {
    let pinned = def
        .operators()
        .iter()
        .filter_map(|o| o.tls_fingerprint)
        .collect();
    Ok(tls::client_config(tls::ClientTlsOptions {
        ca: node_ca.map(Path::to_owned),
        pinned,
        identity,
    })?)
}

/// Starts a combiner on an already-bound listener, serving until [`Running::stop`].
///
/// # Errors
/// Start-up failures (cluster definition, TLS).
pub async fn start(config: CombinerConfig, listener: TcpListener) -> anyhow::Result<Running> {
    let text = std::fs::read_to_string(&config.cluster)
        .with_context(|| format!("reading {}", config.cluster.display()))?;
    let def = ClusterDefinition::from_json(&text).context("cluster definition is invalid")?;
    config.network.log_startup("combiner");
    let identity = config.client_identity.clone();
    if identity.is_none() {
        tracing::warn!("no --client-cert/--client-key: nodes that require client certificates will refuse the combiner");
    }
    let client_tls = node_client_tls(&def, config.node_ca.as_deref(), identity)?;
    let mut combiner = build_combiner_with(
        &def,
        config.network.clone(),
        config.deadline,
        config.connect_timeout(),
        client_tls,
        config.gate,
    )?;
    combiner.warm_connections = config.warm_connections;
    combiner.health_settings = HealthSettings {
        failures_to_back_off: config.health.failures_to_back_off.max(1),
        ..config.health
    };
    let tls = config.listener.server_tls()?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, cluster = %def.hash(), validators = def.validators().len(), nodes = def.operators().len(), "combiner listening");
    let options = config
        .listener
        .server_options(config.listener.host_allowlist());
    let combiner = Arc::new(combiner);
    combiner.spawn_down_summary();
    combiner.spawn_warmup();
    crate::metrics::global()
        .set_server_collector(combiner::metrics::combiner_collector(combiner.clone()));
    let watch = crate::signing::fork_check::spawn_schedule_watch(
        combiner.network.clone(),
        SCHEDULE_WATCH_INTERVAL,
    );
    let router = combiner::router(combiner);
    Ok(Running::spawn(addr, move |shutdown| async move {
        let served = crate::http::server::run(listener, tls, router, options, shutdown).await;
        watch.abort();
        served?;
        tracing::info!("combiner stopped");
        Ok(())
    }))
}

/// [`start`], then serve until `shutdown` resolves and the server has drained.
///
/// # Errors
/// Start-up failures, or the server's error.
pub async fn run(
    config: CombinerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    start(config, listener).await?.run_until(shutdown).await
}
