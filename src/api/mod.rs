//! The signer node's HTTP surface: the Web3Signer eth2 API.
//!
//! Spec: Web3Signer eth2 OpenAPI (`openapi/` in this repository) and
//! `docs/web3signer-compatibility.md`. The shared Web3Signer face ([`crate::http::web3signer`]:
//! `GET /upcheck`, `GET /api/v1/eth2/publicKeys`, `POST /api/v1/eth2/sign/{identifier}`) serves
//! [`NodeState`] as its [`Signer`] (`sign.rs`); the node adds
//! `GET /healthcheck`, `GET /api/v1/eth2/highWatermark`, `POST|GET /reload`,
//! `GET /api/v1/dvsigner/info` (`info.rs`: role, version, network), for cluster peers
//! `GET /api/v1/cluster/history` and `POST /api/v1/cluster/notify` (`peer.rs`, mutual TLS, see
//! `cluster::sync`), `POST /api/v1/cluster/agreement` (`peer.rs`, see `agreement::wire`), and the
//! Keymanager API `GET|POST|DELETE /eth/v1/keystores` (`keymanager.rs`, bearer token; 404 unless
//! enabled).
//!
//! Invariants: a signature leaves the node only after the root was computed by the node from the
//! typed payload and, for blocks and attestations, after the slashing-protection record is
//! durable. BLS work never runs on the async reactor.

use std::sync::{Arc, Mutex, OnceLock, RwLock};

use axum::routing::{get, post};
use axum::Router;

use crate::http::{web3signer, BlockingPool};
use crate::keys::sources::{KeySources, LoadStatus};
use crate::keys::KeyStore;
use crate::signing::Network;
use crate::slashing::SlashingDb;

/// Signatures a busy signing thread makes before it hands them back (see
/// [`BlockingPool::holding_results`]): one async wake-up per this many under saturation.
const SIGN_HOLD: usize = 4;

mod health;
pub mod info;
pub mod keymanager;
pub mod metrics;
mod peer;
mod reload;
mod sign;

/// Shared state of a signer node.
pub struct NodeState {
    /// The keys this node signs with.
    pub keys: Arc<KeyStore>,
    /// Slashing protection (None only when explicitly disabled).
    pub slashing: Option<SlashingDb>,
    /// Network settings for signing roots.
    pub network: Network,
    /// Key sources for `/reload`.
    pub sources: KeySources,
    /// Result of the last load.
    pub load_status: RwLock<LoadStatus>,
    /// Readiness gate: `Some(reason)` while the node must not sign (e.g. peer sync pending).
    pub not_ready: RwLock<Option<String>>,
    /// Peer history sync, when the node runs with `--cluster` (serves the peer route, reports
    /// in `/healthcheck`).
    pub cluster_sync: OnceLock<Arc<crate::cluster::sync::ClusterSync>>,
    /// Cluster agreement on one root per block / attestation duty, when on (`--agreement`):
    /// serves the peer route and gates the sign path.
    pub agreement: OnceLock<crate::agreement::wire::Inbound>,
    /// The Keymanager API, when enabled (`--keymanager-api`).
    pub keymanager: OnceLock<keymanager::Keymanager>,
    /// Keys imported through the Keymanager API (loaded at start and by `/reload`).
    pub managed_keys: OnceLock<crate::keys::managed::ManagedKeys>,
    /// The key cache, when enabled (`--key-cache`); `/reload` uses it too.
    pub key_cache: OnceLock<Arc<crate::keys::cache::KeyCache>>,
    /// Serialises key-set changes: Keymanager import and delete, and `/reload`.
    pub(crate) key_ops: tokio::sync::Mutex<()>,
    reload: Mutex<reload::ReloadState>,
    signer_pool: BlockingPool,
}

impl NodeState {
    /// Builds the state; BLS signing runs on a pool with one thread per core.
    ///
    /// # Errors
    /// When the signing thread pool cannot be created.
    pub fn new(
        keys: Arc<KeyStore>,
        slashing: Option<SlashingDb>,
        network: Network,
        sources: KeySources,
    ) -> std::io::Result<Self> {
        let signer_pool = BlockingPool::holding_results("bls-sign", "signing", SIGN_HOLD)?;
        if let Some(db) = &slashing {
            db.pace_commits_by(signer_pool.load(), crate::slashing::PACE_WAIT);
        }
        Ok(Self {
            keys,
            slashing,
            network,
            sources,
            load_status: RwLock::default(),
            not_ready: RwLock::new(None),
            cluster_sync: OnceLock::new(),
            agreement: OnceLock::new(),
            keymanager: OnceLock::new(),
            managed_keys: OnceLock::new(),
            key_cache: OnceLock::new(),
            key_ops: tokio::sync::Mutex::new(()),
            reload: Mutex::default(),
            signer_pool,
        })
    }
}

/// The Web3Signer-compatible router of a signer node.
pub fn router(state: Arc<NodeState>) -> Router {
    let routes = Router::new()
        .route("/healthcheck", get(health::healthcheck))
        .route(crate::http::info::INFO_PATH, get(info::info))
        .route("/api/v1/eth2/highWatermark", get(health::high_watermark))
        .route("/reload", post(reload::start).get(reload::status))
        .route(crate::cluster::protocol::HISTORY_PATH, get(peer::history))
        .route(crate::cluster::protocol::NOTIFY_PATH, post(peer::notify))
        .route(
            crate::agreement::wire::AGREEMENT_PATH,
            post(peer::agreement).layer(axum::extract::DefaultBodyLimit::max(
                crate::agreement::wire::MAX_BODY_BYTES,
            )),
        )
        .route(
            "/eth/v1/keystores",
            get(keymanager::list)
                .post(keymanager::import)
                .delete(keymanager::delete),
        );
    web3signer::router(state, routes)
}
