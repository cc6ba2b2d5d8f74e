//! `dvsigner signer`: load keys, open the slashing DB, serve the Web3Signer API.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use super::{ServeArgs, SignerArgs};
use crate::api::keymanager::{self, AuthToken};
use crate::api::{self, KeySources, LoadStatus, NodeState};
use crate::cluster::sync::{ClusterSync, SyncOptions};
use crate::cluster::ClusterDefinition;
use crate::keys::cache::{self, KeyCache};
use crate::keys::managed::ManagedKeys;
use crate::keys::{store, KdfParams, KeyStore};
use crate::signing::fork_check::spawn_schedule_watch;
use crate::signing::Network;

/// How often a node or combiner repeats the warnings about its fork schedule.
pub const SCHEDULE_WATCH_INTERVAL: Duration = Duration::from_secs(6 * 3600);
use crate::slashing::SlashingDb;
use crate::tls;

/// Builds the rustls server config from the common TLS flags (None with `--insecure-http`).
///
/// # Errors
/// When a certificate or key file is missing or invalid.
pub fn server_tls(args: &ServeArgs) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    if args.insecure_http {
        if !args.listen.ip().is_loopback() {
            tracing::warn!(listen = %args.listen, "plain HTTP on a non-loopback address");
        }
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        anyhow::bail!("--tls-cert and --tls-key are required unless --insecure-http is given");
    };
    let files = tls::ServerTlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: args.tls_client_ca.clone(),
        allowed_clients: args.tls_allowed_clients.clone(),
    };
    Ok(Some(
        tls::server_config(&files).context("TLS configuration")?,
    ))
}

/// Loads every configured key source (decrypting keystores on all cores) and reports the rate.
///
/// # Errors
/// When a key directory cannot be read at all (per-file failures are reported, not fatal).
pub async fn load_keys(sources: &KeySources) -> anyhow::Result<(KeyStore, LoadStatus)> {
    load_keys_with(sources, Vec::new(), None, None).await
}

/// [`load_keys`] with the disabled keys refused, the Keymanager's imported keystores, and the key
/// cache (logs its hits and misses: `key cache used`).
///
/// # Errors
/// As [`load_keys`].
pub async fn load_keys_with(
    sources: &KeySources,
    disabled: Vec<crate::bls::PublicKeyBytes>,
    managed: Option<ManagedKeys>,
    cache: Option<Arc<KeyCache>>,
) -> anyhow::Result<(KeyStore, LoadStatus)> {
    let sources = sources.clone();
    tokio::task::spawn_blocking(move || {
        let load = api::load_key_sources(&sources, managed.as_ref(), cache.as_deref())
            .map_err(anyhow::Error::msg)?;
        for (source, report) in &load.reports {
            log_report(source, report);
        }
        // A configured Vault folder or PKCS#11 token is all or nothing: the node does not start
        // with part of its keys.
        if let Some(failure) = load.backend_failure() {
            anyhow::bail!(failure);
        }
        match &load.cache {
            Some(Ok(stats)) => tracing::info!(
                hits = stats.hits,
                misses = stats.misses,
                dropped = stats.dropped,
                written = stats.written,
                "key cache used"
            ),
            Some(Err(e)) => tracing::warn!(error = %e, "key cache not written"),
            None => {}
        }
        let status = load.status();
        let keys = KeyStore::with_disabled(disabled);
        keys.insert_all(load.into_keys());
        Ok((keys, status))
    })
    .await
    .context("key loading task")?
}

/// Opens the key cache when `--key-cache` is on (one KDF run, on a blocking thread).
///
/// # Errors
/// Unreadable password file or cache file.
pub async fn open_key_cache(
    args: &super::KeyManagementArgs,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<Arc<KeyCache>>> {
    if !args.key_cache {
        return Ok(None);
    }
    let Some(pw_file) = args.key_cache_password_file.clone() else {
        anyhow::bail!("--key-cache needs --key-cache-password-file");
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

fn log_report(source: &str, report: &store::LoadReport) {
    for (path, error) in &report.errors {
        tracing::error!(source, file = %path.display(), %error, "key failed to load");
    }
    let secs = report.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        report.keys.len() as f64 / secs
    } else {
        0.0
    };
    tracing::info!(
        source,
        loaded = report.keys.len(),
        errors = report.errors.len(),
        seconds = format!("{secs:.2}"),
        keys_per_second = format!("{rate:.1}"),
        "keys loaded"
    );
}

/// Opens the slashing DB named by the flags (default: SQLite in the data directory).
///
/// # Errors
/// When the directory or database cannot be created or opened.
pub async fn open_slashing_db(args: &SignerArgs) -> anyhow::Result<Option<SlashingDb>> {
    if args.no_slashing_protection {
        tracing::warn!("slashing protection is OFF");
        return Ok(None);
    }
    let url = match &args.slashing_db {
        Some(u) => u.clone(),
        None => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("creating {}", args.data_dir.display()))?;
            format!(
                "sqlite:{}",
                args.data_dir.join("slashing-protection.sqlite").display()
            )
        }
    };
    let db = SlashingDb::open(&url)
        .await
        .context("opening slashing-protection database")?;
    Ok(Some(db))
}

/// Starts a signer node on an already-bound listener; returns when `shutdown` resolves and the
/// server has drained.
///
/// # Errors
/// Start-up failures (keys, database, TLS).
pub async fn serve_signer(
    args: SignerArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tls = server_tls(&args.serve)?;
    let network = Network::from_name_or_path(&args.network).context("--network")?;
    network.log_startup("signer");
    let sources = KeySources {
        keystores: args.keystores.clone().zip(args.keystores_passwords.clone()),
        key_config: args.key_config.clone(),
        vault_bulk: args.backends.vault.bulk_source()?.map(Arc::new),
        hsm: args.backends.hsm.config()?.map(Arc::new),
    };
    let managed = ManagedKeys::new(&args.data_dir);
    let disabled = managed
        .load_disabled()
        .context("keys deleted through the keymanager API")?;
    let key_cache = open_key_cache(&args.key_management, &args.data_dir).await?;
    let (keys, status) = load_keys_with(
        &sources,
        disabled.into_iter().collect(),
        Some(managed.clone()),
        key_cache.clone(),
    )
    .await?;
    let slashing = open_slashing_db(&args).await?;
    let state = NodeState::new(Arc::new(keys), slashing, network, sources)?;
    if let Ok(mut s) = state.load_status.write() {
        *s = status;
    }
    enable_keymanager(&args, &state, &managed)?;
    let _ = state.managed_keys.set(managed);
    if let Some(cache) = key_cache {
        let _ = state.key_cache.set(cache);
    }
    let state = Arc::new(state);
    if let Some(db) = state.slashing.clone() {
        spawn_pruning(db, &args.pruning, state.network.slots_per_epoch);
    }
    let sync_task = start_cluster_sync(&args, &state)?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        tls = tls.is_some(),
        keys = state.keys.public_keys().len(),
        network = %state.network.name,
        "signer listening"
    );
    let options = api::server::ServerOptions {
        header_read_timeout: Duration::from_secs(args.serve.header_read_timeout_secs.max(1)),
        host_allowlist: signer_host_allowlist(&args),
        ..Default::default()
    };
    crate::metrics::global().set_server_collector(api::metrics::node_collector(state.clone()));
    let watch = spawn_schedule_watch(state.network.clone(), SCHEDULE_WATCH_INTERVAL);
    let served = api::server::run(listener, tls, api::router(state), options, shutdown).await;
    watch.abort();
    if let Some(task) = sync_task {
        task.abort();
    }
    served?;
    tracing::info!("signer stopped");
    Ok(())
}

/// With `--keymanager-api`: reads or generates the token (never logged) and enables the routes.
///
/// # Errors
/// Slashing protection off (imports need the database), unreadable or empty token file.
fn enable_keymanager(
    args: &SignerArgs,
    state: &NodeState,
    managed: &ManagedKeys,
) -> anyhow::Result<()> {
    let km_args = &args.key_management;
    if !km_args.keymanager_api {
        return Ok(());
    }
    if state.slashing.is_none() {
        anyhow::bail!(
            "--keymanager-api needs slashing protection (remove --no-slashing-protection)"
        );
    }
    let (token, file) = match &km_args.keymanager_token_file {
        Some(path) => (AuthToken::from_file(path)?, path.clone()),
        None => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("creating {}", args.data_dir.display()))?;
            let path = args.data_dir.join(keymanager::TOKEN_FILE_NAME);
            (AuthToken::load_or_generate(&path)?, path)
        }
    };
    let _ = state
        .keymanager
        .set(keymanager::Keymanager::new(token, managed.clone()));
    tracing::info!(token_file = %file.display(), "keymanager API enabled");
    Ok(())
}

/// With `--cluster`: closes the sign gate, builds the peer sync engine, registers it for the
/// history route and `/healthcheck`, and spawns the sync loop (which opens the gate).
///
/// # Errors
/// Unreadable cluster definition or TLS files, unknown operator, impossible minimum, or
/// slashing protection turned off (sync needs the database).
/// `--http-host-allowlist`, plus, on a node of a cluster (`--cluster`, `--operator`), the host
/// of its own URL in the cluster definition: the name its combiners and peers use for it.
fn signer_host_allowlist(args: &SignerArgs) -> api::server::HostAllowlist {
    let list = args.serve.host_allowlist();
    let (Some(path), Some(operator)) = (&args.sync.cluster, &args.sync.operator) else {
        return list;
    };
    // A definition that cannot be read stops the node in start_cluster_sync.
    let Ok(definition) = ClusterDefinition::load(path) else {
        return list;
    };
    let own = definition
        .operators()
        .iter()
        .find(|o| &o.name == operator)
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

fn start_cluster_sync(
    args: &SignerArgs,
    state: &Arc<NodeState>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let sync_args = &args.sync;
    let (Some(path), Some(operator)) = (&sync_args.cluster, &sync_args.operator) else {
        return Ok(None);
    };
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
        ca: sync_args.peer_ca.clone(),
        pinned,
        identity: sync_args
            .peer_client_cert
            .clone()
            .zip(sync_args.peer_client_key.clone()),
    })
    .context("peer TLS configuration")?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(client_tls)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("peer HTTP client")?;
    let allowed = match &sync_args.peer_allowed_clients {
        Some(p) => tls::load_allowed_clients(p).context("--peer-allowed-clients")?,
        None => Default::default(),
    };
    let options = SyncOptions {
        min_peers: sync_args.sync_min_peers,
        interval: Duration::from_secs(sync_args.sync_interval_secs.max(1)),
        contact_grace: Duration::from_millis(sync_args.sync_contact_grace_ms),
        watermark_from_genesis: !sync_args.no_sync_watermark_from_genesis,
        ..SyncOptions::default()
    };
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
    Ok(Some(tokio::spawn(sync.run(move |reason| {
        if let Ok(mut gate) = gate_state.not_ready.write() {
            *gate = reason;
        }
    }))))
}

/// Prunes slashing-protection history every `interval_hours` (first run one interval after start).
fn spawn_pruning(db: SlashingDb, args: &super::PruningArgs, slots_per_epoch: u64) {
    if args.interval_hours == 0 {
        return;
    }
    let every = Duration::from_secs(args.interval_hours.saturating_mul(3600));
    let keep = args.epochs_to_keep;
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

/// `dvsigner signer`.
///
/// # Errors
/// Start-up failures.
pub async fn run_signer(
    args: SignerArgs,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = bind(args.serve.listen).await?;
    serve_signer(args, listener, shutdown).await
}

/// Binds a listener with a deep backlog (Lodestar opens a new connection per request).
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding {addr}"))?;
    Ok(socket.listen(4096)?)
}
