//! The long-running processes as typed, validated configurations plus `start`: a signer node
//! ([`node::NodeConfig`]) and a combiner ([`combiner::CombinerConfig`]), and the local
//! development cluster built from them ([`dev`]). `cli` turns the command line and the config
//! file into these configurations; nothing here knows about clap structs, so `app` never imports
//! `cli`. The defaults live here, and clap's `default_value`s name the same constants.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::keys::KdfParams;
use crate::tls;

pub mod combiner;
pub mod dev;
pub mod node;
pub mod split;

/// Default listen address of a node or combiner (loopback).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";
/// Default seconds a client may take to send a request head.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 30;
/// Default network.
pub const DEFAULT_NETWORK: &str = "mainnet";

/// How often a node or combiner repeats the warnings about its fork schedule.
pub const SCHEDULE_WATCH_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// The HTTP(S) listener of a node or combiner.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Certificate, key and client-certificate requirements; `None` serves plain HTTP.
    pub tls: Option<tls::ServerTlsFiles>,
    /// Time a client may take to send a request head (at least 1 s).
    pub header_read_timeout: Duration,
    /// Hosts requests may address in their Host header (`*` allows any).
    pub host_allowlist: Vec<String>,
    /// Offer HTTP/2 (ALPN `h2`) to TLS clients besides HTTP/1.1.
    pub http2: bool,
}

impl ListenerConfig {
    /// A listener on `listen` with the default head timeout and Host allow-list.
    pub fn new(listen: SocketAddr, tls: Option<tls::ServerTlsFiles>) -> Self {
        Self {
            listen,
            tls,
            header_read_timeout: Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_SECS),
            host_allowlist: crate::http::server::default_host_allowlist(),
            http2: true,
        }
    }

    /// The rustls server config (None for plain HTTP, with a warning off loopback).
    ///
    /// # Errors
    /// When a certificate or key file is missing or invalid.
    pub fn server_tls(&self) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
        let Some(files) = &self.tls else {
            if !self.listen.ip().is_loopback() {
                tracing::warn!(listen = %self.listen, "plain HTTP on a non-loopback address");
            }
            return Ok(None);
        };
        let config = tls::server_config(files).context("TLS configuration")?;
        Ok(Some(if self.http2 {
            tls::with_http2(config)
        } else {
            config
        }))
    }

    /// The accept loop's options.
    fn server_options(&self, allowlist: crate::http::server::HostAllowlist) -> ServerOptions {
        ServerOptions {
            header_read_timeout: self.header_read_timeout.max(Duration::from_secs(1)),
            host_allowlist: allowlist,
            ..Default::default()
        }
    }

    /// The Host allow-list as the server applies it.
    pub fn host_allowlist(&self) -> crate::http::server::HostAllowlist {
        crate::http::server::HostAllowlist::new(&self.host_allowlist)
    }
}

use crate::http::server::ServerOptions;

/// Keystore encryption cost for written share keystores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KdfChoice {
    /// scrypt n=2^18, r=8, p=1 (EIP-2335 default).
    Scrypt,
    /// PBKDF2-HMAC-SHA256 c=2^18.
    Pbkdf2,
    /// Very cheap PBKDF2: for throwaway test and dev clusters only.
    InsecureFast,
}

impl KdfChoice {
    /// The keystore KDF parameters.
    pub fn params(self) -> KdfParams {
        match self {
            Self::Scrypt => KdfParams::scrypt_default(),
            Self::Pbkdf2 => KdfParams::pbkdf2_default(),
            Self::InsecureFast => KdfParams::insecure_fast(),
        }
    }
}

/// A started node or combiner: serving until [`Running::stop`].
pub struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Spawns `serve`, which must return once the future it is given resolves.
    fn spawn<F, S>(addr: SocketAddr, serve: S) -> Self
    where
        S: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(Box::pin(async {
            let _ = stopped.await;
        })));
        Self { addr, stop, task }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open requests finish, and returns the server's result.
    ///
    /// # Errors
    /// The server's error.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("server task")?
    }

    /// Serves until `shutdown` resolves (then stops as [`Running::stop`]) or the server ends
    /// on its own (an error).
    ///
    /// # Errors
    /// The server's error.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let ended = tokio::select! {
            () = shutdown => None,
            res = &mut self.task => Some(res),
        };
        match ended {
            Some(res) => res.context("server task")?,
            None => self.stop().await,
        }
    }
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

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}

/// The two files of a TLS identity (certificate chain, private key).
pub type Identity = (PathBuf, PathBuf);
