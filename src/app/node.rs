//! A signer node: [`NodeConfig`] (typed, validated) and [`start`]: load the keys, open the
//! slashing DB, serve the Web3Signer API.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use super::{Identity, ListenerConfig, Running, SCHEDULE_WATCH_INTERVAL};
use crate::api::keymanager::{self, AuthToken};
use crate::api::{self, NodeState};
use crate::cluster::sync::{ClusterSync, SyncOptions};
use crate::cluster::ClusterDefinition;
use crate::keys::cache::{self, KeyCache};
use crate::keys::managed::ManagedKeys;
use crate::keys::sources::{self, KeySources};
use crate::keys::KdfParams;
use crate::signing::fork_check::spawn_schedule_watch;
use crate::signing::Network;
use crate::slashing::SlashingDb;
use crate::tls;

/// Default epochs of slashing-protection history kept per validator (Web3Signer's).
pub const DEFAULT_PRUNING_EPOCHS_TO_KEEP: u64 = 250;
/// Default hours between slashing-protection prunes (Web3Signer's).
pub const DEFAULT_PRUNING_INTERVAL_HOURS: u64 = 12;
/// Default seconds between background history pulls once synced.
pub const DEFAULT_SYNC_INTERVAL_SECS: u64 = 60;
/// Default milliseconds without contact to t-1 peers before a synced node stops signing blocks and
/// attestations (0 turns the contact gate off).
pub const DEFAULT_SYNC_CONTACT_GRACE_MS: u64 =
    crate::cluster::sync::DEFAULT_CONTACT_GRACE.as_millis() as u64;

/// Where slashing protection is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlashingConfig {
    /// SQLite `slashing-protection.sqlite` in the data directory.
    DataDir,
    /// `sqlite:PATH` or `postgres://…`.
    Url(String),
    /// Off (only for nodes behind another protected signer).
    Off,
}

/// Slashing-protection history pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruningConfig {
    /// Epochs of history to keep per validator.
    pub epochs_to_keep: u64,
    /// Hours between prunes (0: never).
    pub interval_hours: u64,
}

impl Default for PruningConfig {
    fn default() -> Self {
        Self {
            epochs_to_keep: DEFAULT_PRUNING_EPOCHS_TO_KEEP,
            interval_hours: DEFAULT_PRUNING_INTERVAL_HOURS,
        }
    }
}

/// Cluster membership and peer history sync.
#[derive(Debug, Clone)]
pub struct ClusterSyncConfig {
    /// The cluster definition (`cluster.json`).
    pub definition: PathBuf,
    /// This node's operator name in it.
    pub operator: String,
    /// CA of the peers' server certificates.
    pub peer_ca: Option<PathBuf>,
    /// Client certificate and key presented to peers.
    pub peer_identity: Option<Identity>,
    /// Peers' client certificates allowed on the history route.
    pub peer_allowed_clients: Option<PathBuf>,
    /// Distinct peers whose history must be merged before signing (None: derived).
    pub min_peers: Option<usize>,
    /// Time between background pulls once synced (at least 1 s).
    pub interval: Duration,
    /// Time without contact to t-1 peers before the node refuses blocks and attestations
    /// (zero: never).
    pub contact_grace: Duration,
    /// Raise the low watermarks of validators without history to the current slot and epoch.
    pub watermark_from_genesis: bool,
}

impl ClusterSyncConfig {
    /// Sync of `operator` in the cluster `definition`, other settings their defaults.
    pub fn new(definition: PathBuf, operator: String) -> Self {
        Self {
            definition,
            operator,
            peer_ca: None,
            peer_identity: None,
            peer_allowed_clients: None,
            min_peers: None,
            interval: Duration::from_secs(DEFAULT_SYNC_INTERVAL_SECS),
            contact_grace: Duration::from_millis(DEFAULT_SYNC_CONTACT_GRACE_MS),
            watermark_from_genesis: true,
        }
    }
}

/// Cluster agreement on one root per block / attestation duty (`--agreement*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgreementConfig {
    /// `Some(on)` when given; `None`: on when the node has a cluster and a peer client
    /// identity to sign with.
    pub enabled: Option<bool>,
    /// Length of round 1 in milliseconds.
    pub round_ms: u64,
    /// How long a sign request waits for a decision, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for AgreementConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            round_ms: crate::agreement::driver::DEFAULT_ROUND_MS,
            timeout_ms: crate::agreement::driver::DEFAULT_TIMEOUT_MS,
        }
    }
}

/// The Keymanager API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeymanagerConfig {
    /// The bearer token file (default: `<data-dir>/keymanager-token`, generated when missing).
    pub token_file: Option<PathBuf>,
}

/// Everything a signer node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The Web3Signer API listener.
    pub listener: ListenerConfig,
    /// Data directory (slashing DB by default, Keymanager imports, key cache).
    pub data_dir: PathBuf,
    /// The operator's key sources, in load order (the Keymanager's imported keystores are
    /// added after the file sources at start).
    pub key_sources: KeySources,
    /// Slashing protection.
    pub slashing: SlashingConfig,
    /// Network settings for signing roots.
    pub network: Network,
    /// Slashing-protection pruning.
    pub pruning: PruningConfig,
    /// Peer history sync, when the node is part of a cluster.
    pub cluster: Option<ClusterSyncConfig>,
    /// Agreement between the cluster's nodes (only with a cluster).
    pub agreement: AgreementConfig,
    /// The Keymanager API, when enabled.
    pub keymanager: Option<KeymanagerConfig>,
    /// The key cache's password file, when the key cache is on.
    pub key_cache_password_file: Option<PathBuf>,
}

impl NodeConfig {
    /// A node on `listener` keeping its data in `data_dir`, with no key source, SQLite
    /// slashing protection in the data directory, the default network and pruning, no cluster,
    /// no Keymanager API and no key cache.
    ///
    /// # Errors
    /// When the default network cannot be built.
    pub fn new(listener: ListenerConfig, data_dir: PathBuf) -> anyhow::Result<Self> {
        Ok(Self {
            listener,
            data_dir,
            key_sources: KeySources::new(),
            slashing: SlashingConfig::DataDir,
            network: network(super::DEFAULT_NETWORK)?,
            pruning: PruningConfig::default(),
            cluster: None,
            agreement: AgreementConfig::default(),
            keymanager: None,
            key_cache_password_file: None,
        })
    }
}

/// The network named by `--network` (a built-in name or a consensus config YAML).
///
/// # Errors
/// An unknown name or unreadable file, under `--network`.
pub fn network(name_or_path: &str) -> anyhow::Result<Network> {
    Network::from_name_or_path(name_or_path).context("--network")
}

/// Starts a signer node on an already-bound listener: loads the keys, opens the slashing DB,
/// starts pruning and cluster sync, and serves until [`Running::stop`].
///
/// # Errors
/// Start-up failures (keys, database, TLS).
pub async fn start(config: NodeConfig, listener: TcpListener) -> anyhow::Result<Running> {
    let tls = config.listener.server_tls()?;
    let network = config.network.clone();
    network.log_startup("signer");
    let managed = ManagedKeys::new(&config.data_dir);
    let sources = config.key_sources.clone().with_imported(managed.clone());
    let disabled = managed
        .load_disabled()
        .context("keys deleted through the keymanager API")?;
    let key_cache =
        open_key_cache(config.key_cache_password_file.clone(), &config.data_dir).await?;
    let (keys, status) = {
        let sources = sources.clone();
        let cache = key_cache.clone();
        tokio::task::spawn_blocking(move || {
            sources::load_at_start(&sources, disabled.into_iter().collect(), cache.as_deref())
                .map_err(anyhow::Error::msg)
        })
        .await
        .context("key loading task")??
    };
    let slashing = open_slashing_db(&config).await?;
    let state = NodeState::new(Arc::new(keys), slashing, network, sources)?;
    if let Ok(mut s) = state.load_status.write() {
        *s = status;
    }
    enable_keymanager(&config, &state, &managed)?;
    let _ = state.managed_keys.set(managed);
    if let Some(cache) = key_cache {
        let _ = state.key_cache.set(cache);
    }
    let state = Arc::new(state);
    if let Some(db) = state.slashing.clone() {
        spawn_pruning(db, config.pruning, state.network.slots_per_epoch);
    }
    let sync_tasks = start_cluster_sync(&config, &state)?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        tls = tls.is_some(),
        keys = state.keys.public_keys().len(),
        network = %state.network.name,
        "signer listening"
    );
    let options = config
        .listener
        .server_options(host_allowlist(&config.listener, config.cluster.as_ref()));
    crate::metrics::global().set_server_collector(api::metrics::node_collector(state.clone()));
    let watch = spawn_schedule_watch(state.network.clone(), SCHEDULE_WATCH_INTERVAL);
    let router = api::router(state);
    Ok(Running::spawn(addr, move |shutdown| async move {
        let served = crate::http::server::run(listener, tls, router, options, shutdown).await;
        watch.abort();
        for task in sync_tasks {
            task.abort();
        }
        served?;
        tracing::info!("signer stopped");
        Ok(())
    }))
}

/// [`start`], then serve until `shutdown` resolves and the server has drained.
///
/// # Errors
/// Start-up failures, or the server's error.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    start(config, listener).await?.run_until(shutdown).await
}

/// Opens the key cache when it is on (one KDF run, on a blocking thread).
///
/// # Errors
/// Unreadable password file or cache file.
async fn open_key_cache(
    password_file: Option<PathBuf>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<Arc<KeyCache>>> {
    let Some(pw_file) = password_file else {
        return Ok(None);
    };
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join(cache::FILE_NAME);
    let cache = tokio::task::spawn_blocking(move || {
        let password = cache::read_password(&pw_file)?;
        KeyCache::open(&path, &password, KdfParams::scrypt_default())
    })
    .await
    .context("key cache task")?
    .context("--key-cache")?;
    match cache.state() {
        cache::OpenState::Missing => {
            tracing::info!(file = %cache.path().display(), "key cache: no cache file yet")
        }
        cache::OpenState::Loaded(n) => {
            tracing::info!(file = %cache.path().display(), entries = n, "key cache: opened")
        }
        cache::OpenState::Unusable(why) => {
            tracing::warn!(file = %cache.path().display(), reason = %why, "key cache: unusable, it will be rebuilt")
        }
    }
    Ok(Some(Arc::new(cache)))
}

/// Opens the configured slashing DB (default: SQLite in the data directory).
///
/// # Errors
/// When the directory or database cannot be created or opened.
async fn open_slashing_db(config: &NodeConfig) -> anyhow::Result<Option<SlashingDb>> {
    let url = match &config.slashing {
        SlashingConfig::Off => {
            tracing::warn!("slashing protection is OFF");
            return Ok(None);
        }
        SlashingConfig::Url(u) => u.clone(),
        SlashingConfig::DataDir => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            format!(
                "sqlite:{}",
                config.data_dir.join("slashing-protection.sqlite").display()
            )
        }
    };
    let db = SlashingDb::open(&url)
        .await
        .context("opening slashing-protection database")?;
    Ok(Some(db))
}

/// With the Keymanager API on: reads or generates the token (never logged) and enables the
/// routes.
///
/// # Errors
/// Slashing protection off (imports need the database), unreadable or empty token file.
fn enable_keymanager(
    config: &NodeConfig,
    state: &NodeState,
    managed: &ManagedKeys,
) -> anyhow::Result<()> {
    let Some(km) = &config.keymanager else {
        return Ok(());
    };
    if state.slashing.is_none() {
        anyhow::bail!(
            "--keymanager-api needs slashing protection (remove --no-slashing-protection)"
        );
    }
    let (token, file) = match &km.token_file {
        Some(path) => (AuthToken::from_file(path)?, path.clone()),
        None => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            let path = config.data_dir.join(keymanager::TOKEN_FILE_NAME);
            (AuthToken::load_or_generate(&path)?, path)
        }
    };
    let _ = state
        .keymanager
        .set(keymanager::Keymanager::new(token, managed.clone()));
    tracing::info!(token_file = %file.display(), "keymanager API enabled");
    Ok(())
}

/// The listener's Host allow-list, plus, on a node of a cluster, the host of its own URL in the
/// cluster definition: the name its combiners and peers use for it.
fn host_allowlist(
    listener: &ListenerConfig,
    cluster: Option<&ClusterSyncConfig>,
) -> crate::http::server::HostAllowlist {
    let list = listener.host_allowlist();
    let Some(cluster) = cluster else {
        return list;
    };
    // A definition that cannot be read stops the node in start_cluster_sync.
    let Ok(definition) = ClusterDefinition::load(&cluster.definition) else {
        return list;
    };
    let own = definition
        .operators()
        .iter()
        .find(|o| o.name == cluster.operator)
        .and_then(|o| reqwest::Url::parse(&o.url).ok())
        .and_then(|u| u.host_str().map(str::to_owned));
    match own {
        Some(host) => {
            tracing::info!(%host, "--http-host-allowlist: also answering for this node's host in the cluster definition");
            list.with_host(&host)
        }
        None => list,
    }
}

/// With a cluster: closes the sign gate, builds the peer sync engine, registers it for the
/// history route and `/healthcheck`, and spawns the sync loop (which opens the gate); with
/// agreement on, starts it too. Returns the tasks to abort at shutdown.
///
/// # Errors
/// Unreadable cluster definition or TLS files, unknown operator, impossible minimum, or
/// slashing protection turned off (sync needs the database); `--agreement on` without a peer
/// client identity.
/// Connect timeout (TCP and TLS handshake) of requests to peers: 5 s, or the contact grace
/// when that is longer. A handshake takes two round trips: an operator who raised
/// `--sync-contact-grace-ms` for peers with long round trips gets connections that complete
/// (and are then kept alive and reused) instead of a new attempt, abandoned, at every pull.
pub fn peer_connect_timeout(contact_grace: Duration) -> Duration {
    contact_grace.max(Duration::from_secs(5))
}

fn start_cluster_sync(
    config: &NodeConfig,
    state: &Arc<NodeState>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let Some(cluster) = &config.cluster else {
        if config.agreement.enabled == Some(true) {
            tracing::warn!("--agreement on has no effect without --cluster");
        }
        return Ok(Vec::new());
    };
    let operator = cluster.operator.as_str();
    let path = &cluster.definition;
    let Some(db) = state.slashing.clone() else {
        anyhow::bail!("--cluster needs slashing protection (remove --no-slashing-protection)");
    };
    let definition = Arc::new(
        ClusterDefinition::load(path)
            .with_context(|| format!("cluster definition {}", path.display()))?,
    );
    let missing: Vec<String> = definition
        .shares_of(operator)
        .filter(|(_, _, share)| state.keys.get(&share.bytes()).is_none())
        .map(|(group, _, _)| group.bytes().to_hex())
        .collect();
    if !missing.is_empty() {
        tracing::warn!(operator, missing = ?missing, "shares of these validators are not loaded");
    }
    let pinned = definition
        .operators()
        .iter()
        .filter_map(|o| o.tls_fingerprint)
        .collect();
    let client_tls = tls::client_config(tls::ClientTlsOptions {
        ca: cluster.peer_ca.clone(),
        pinned,
        identity: cluster.peer_identity.clone(),
    })
    .context("peer TLS configuration")?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(client_tls)
        .connect_timeout(peer_connect_timeout(cluster.contact_grace))
        .build()
        .context("peer HTTP client")?;
    let allowed = match &cluster.peer_allowed_clients {
        Some(p) => tls::load_allowed_clients(p).context("--peer-allowed-clients")?,
        None => Default::default(),
    };
    let options = SyncOptions {
        min_peers: cluster.min_peers,
        interval: cluster.interval.max(Duration::from_secs(1)),
        contact_grace: cluster.contact_grace,
        watermark_from_genesis: cluster.watermark_from_genesis,
        ..SyncOptions::default()
    };
    let mut tasks = start_agreement(
        &config.agreement,
        cluster,
        &definition,
        &allowed,
        &db,
        &client,
        state,
    )?;
    let sync = Arc::new(ClusterSync::new(
        definition,
        operator,
        db,
        client,
        &allowed,
        &state.network,
        options,
    )?);
    if let Ok(mut gate) = state.not_ready.write() {
        *gate = Some(format!(
            "cluster history sync pending ({} peers required)",
            sync.min_peers()
        ));
    }
    let _ = state.cluster_sync.set(sync.clone());
    tracing::info!(
        operator,
        cluster = %sync.snapshot().operator,
        min_peers = sync.min_peers(),
        "cluster history sync enabled"
    );
    let gate_state = Arc::clone(state);
    tasks.push(tokio::spawn(sync.run(move |reason| {
        if let Ok(mut gate) = gate_state.not_ready.write() {
            *gate = reason;
        }
    })));
    Ok(tasks)
}

/// With agreement on: loads the signing identity (the peer client certificate and key), builds
/// the roster, the per-peer senders over the peer client and the driver, and registers it for
/// the agreement route and the sign path. Returns the tasks to abort at shutdown.
///
/// # Errors
/// `--agreement on` without `--peer-client-cert`/`--peer-client-key`; unreadable identity.
fn start_agreement(
    agreement: &AgreementConfig,
    cluster: &ClusterSyncConfig,
    definition: &ClusterDefinition,
    allowed: &std::collections::BTreeMap<String, tls::Fingerprint>,
    db: &SlashingDb,
    client: &reqwest::Client,
    state: &Arc<NodeState>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    use crate::agreement::{auth, driver, wire};
    let identity = match (agreement.enabled, &cluster.peer_identity) {
        (Some(false), _) => {
            tracing::info!("cluster agreement off (--agreement off)");
            return Ok(Vec::new());
        }
        (Some(true), None) => anyhow::bail!(
            "--agreement on needs --peer-client-cert and --peer-client-key (agreement messages are signed with the peer client identity)"
        ),
        (None, None) => {
            tracing::info!(
                "cluster agreement off: no peer client identity (--peer-client-cert, --peer-client-key) to sign its messages with"
            );
            return Ok(Vec::new());
        }
        (_, Some((cert, key))) => auth::NodeIdentity::load(cert, key)
            .context("agreement identity (--peer-client-cert, --peer-client-key)")?,
    };
    let ring = Arc::new(
        auth::KeyRing::new(definition, &cluster.operator, allowed, identity)
            .context("agreement key ring")?,
    );
    let roster = Arc::new(auth::Roster::new(definition, ring));
    let hash = definition.hash().to_string();
    let urls: Vec<String> = definition
        .operators()
        .iter()
        .map(|o| o.url.clone())
        .collect();
    let settings = driver::DriverConfig::new(agreement.round_ms, agreement.timeout_ms);
    let outbound = Arc::new(wire::Outbound::new(
        &roster,
        hash.clone(),
        &urls,
        settings.timeout,
    ));
    let mut tasks = outbound.spawn(client.clone());
    let driver = driver::Driver::new(roster, Arc::new(db.clone()), outbound, settings);
    tasks.push(driver.spawn_timers());
    let _ = state.agreement.set(wire::Inbound::new(driver, hash));
    tracing::info!(
        round_ms = settings.timing.round_ms,
        timeout_ms = settings.timeout.as_millis() as u64,
        "cluster agreement on: blocks and attestations are signed only for the root the nodes agree on"
    );
    Ok(tasks)
}

/// Prunes slashing-protection history every `interval_hours` (first run one interval after start).
fn spawn_pruning(db: SlashingDb, pruning: PruningConfig, slots_per_epoch: u64) {
    if pruning.interval_hours == 0 {
        return;
    }
    let every = Duration::from_secs(pruning.interval_hours.saturating_mul(3600));
    let keep = pruning.epochs_to_keep;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            match db.prune(keep, slots_per_epoch).await {
                Ok(deleted) => tracing::info!(
                    deleted,
                    epochs_to_keep = keep,
                    "slashing-protection history pruned"
                ),
                Err(e) => tracing::warn!(error = %e, "slashing-protection pruning failed"),
            }
        }
    });
}
