//! rustls configuration (INTERFACE STUB: the TLS helper replaces this).

use std::path::PathBuf;
use std::sync::Arc;

/// TLS errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Placeholder.
    #[error("tls: {0}")]
    Config(String),
}

/// Server-side TLS files.
#[derive(Debug, Clone)]
pub struct ServerTlsFiles {
    /// Certificate chain PEM.
    pub cert: PathBuf,
    /// Private key PEM.
    pub key: PathBuf,
    /// Client CA PEM.
    pub client_ca: Option<PathBuf>,
    /// Allowed client fingerprints file.
    pub allowed_clients: Option<PathBuf>,
}

/// Builds a server config.
///
/// # Errors
/// On unreadable or invalid files.
pub fn server_config(files: &ServerTlsFiles) -> Result<Arc<rustls::ServerConfig>, Error> {
    let _ = files;
    todo!()
}
