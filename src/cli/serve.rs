//! `dvsigner signer`: load keys, open the slashing DB, serve the Web3Signer API.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use super::{ServeArgs, SignerArgs};
use crate::api::{self, KeySources, LoadStatus, NodeState};
use crate::keys::{store, KeyStore};
use crate::signing::Network;
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
    let sources = sources.clone();
    tokio::task::spawn_blocking(move || {
        let keys = KeyStore::default();
        let mut status = LoadStatus::default();
        if let Some((dir, pw)) = &sources.keystores {
            let report = store::load_keystores_dir(dir, pw)
                .with_context(|| format!("reading keystores from {}", dir.display()))?;
            log_report("keystores", &report);
            status.keystores = Some((report.keys.len(), report.errors.len()));
            keys.insert_all(report.keys);
        }
        if let Some(dir) = &sources.key_config {
            let report = store::load_key_config_dir(dir)
                .with_context(|| format!("reading key configs from {}", dir.display()))?;
            log_report("key-config", &report);
            status.key_config = Some((report.keys.len(), report.errors.len()));
            keys.insert_all(report.keys);
        }
        Ok((keys, status))
    })
    .await
    .context("key loading task")?
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
    let sources = KeySources {
        keystores: args.keystores.clone().zip(args.keystores_passwords.clone()),
        key_config: args.key_config.clone(),
    };
    let (keys, status) = load_keys(&sources).await?;
    let slashing = open_slashing_db(&args).await?;
    let state = NodeState::new(Arc::new(keys), slashing, network, sources)?;
    if let Ok(mut s) = state.load_status.write() {
        *s = status;
    }
    let state = Arc::new(state);
    if let Some(db) = state.slashing.clone() {
        spawn_pruning(db, &args.pruning, state.network.slots_per_epoch);
    }
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
        ..Default::default()
    };
    crate::metrics::global().set_server_collector(api::metrics::node_collector(state.clone()));
    api::server::run(listener, tls, api::router(state), options, shutdown).await?;
    tracing::info!("signer stopped");
    Ok(())
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
