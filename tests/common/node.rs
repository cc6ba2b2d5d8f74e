//! In-process signer node for API tests: real router, real SQLite slashing DB in a temp dir.

use std::net::SocketAddr;
use std::sync::Arc;

use dvsigner::api::{self, NodeState};
use dvsigner::keys::sources::KeySources;
use dvsigner::keys::{KeyOrigin, KeyStore, LoadedKey, SecretKey};
use dvsigner::signing::Network;
use dvsigner::slashing::SlashingDb;

/// A node under test.
pub struct TestNode {
    pub state: Arc<NodeState>,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    /// A node holding `keys`, with slashing protection on a fresh SQLite file.
    pub async fn new(keys: Vec<SecretKey>, network: Network) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::default();
        store.insert_all(
            keys.into_iter()
                .map(|secret| LoadedKey {
                    secret,
                    origin: KeyOrigin::KeyConfig {
                        path: "test".into(),
                    },
                })
                .collect(),
        );
        let db = SlashingDb::open(&format!(
            "sqlite:{}",
            dir.path().join("sp.sqlite").display()
        ))
        .await
        .expect("open sqlite");
        let state = NodeState::new(Arc::new(store), Some(db), network, KeySources::default())
            .expect("state");
        Self {
            state: Arc::new(state),
            dir,
        }
    }

    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// Serves over plain HTTP on 127.0.0.1:0; returns the address and a stop sender.
    pub async fn serve(
        &self,
        tls: Option<Arc<rustls::ServerConfig>>,
        options: dvsigner::http::server::ServerOptions,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = self.router();
        let handle = tokio::spawn(async move {
            dvsigner::http::server::run(listener, tls, app, options, async {
                let _ = rx.await;
            })
            .await
            .expect("server");
        });
        (addr, tx, handle)
    }
}
