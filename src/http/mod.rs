//! HTTP plumbing shared by the signer node (`api`), the combiner, the DKG ceremony listener and
//! the metrics listener; it depends on no node or combiner code.
//!
//! - [`server`]: the accept loop (TLS, client certificates, host allow-list, timeouts, drain);
//! - [`web3signer`]: the Web3Signer eth2 face (`/upcheck`, `/api/v1/eth2/publicKeys`,
//!   `/api/v1/eth2/sign/{identifier}`) over a [`Signer`], which the node and the combiner
//!   implement; each merges its own routes onto it;
//! - [`error`]: [`ApiError`], the failures that become Web3Signer's status codes;
//! - [`request`]: request ids, `Accept` negotiation, the body limit, response helpers;
//! - [`blocking`]: the pool that keeps BLS work off the async reactor;
//! - [`info`]: the `GET /api/v1/dvsigner/info` document;
//! - [`warm_connections`]: opening pooled client connections ahead of a burst.

pub mod blocking;
pub mod error;
pub mod info;
pub mod request;
pub mod server;
pub mod web3signer;

pub use blocking::{BlockingPool, PoolLoad};
pub use error::ApiError;
pub use web3signer::{SignRequest, Signer};

/// Opens up to `n` pooled keep-alive connections of `client` to the server of `url` (a cheap
/// `GET`, such as `/upcheck`): `n` concurrent requests, each of which takes an idle connection
/// or opens a new one. Returns how many were answered.
pub async fn warm_connections(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    timeout: std::time::Duration,
) -> usize {
    futures::future::join_all((0..n).map(|_| client.get(url).timeout(timeout).send()))
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count()
}
