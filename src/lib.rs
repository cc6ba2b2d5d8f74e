//! dvsigner: a Web3Signer-compatible remote signer for Ethereum validators that splits every
//! validator key into threshold shares.
//!
//! # Layout
//!
//! ```text
//! cli ──► app (NodeConfig / CombinerConfig + start, dev cluster)
//!          ├─► api (signer node: keys, slashing, Keymanager, /reload) ─┐
//!          ├─► combiner (fan-out to nodes, Lagrange combine)           ├─► http (accept loop,
//!          ├─► dkg (ceremony, reshare)                                  ┘   Web3Signer face over
//!          └─► cluster (cluster.json, peer protocol)                        a `Signer`, ApiError,
//!                                                                           blocking pool)
//!
//! below all of them: signing (wire types → signing root), slashing (EIP-3076 DB: SQLite /
//! PostgreSQL), keys (keystores, key sources, secret types), threshold (Shamir, Feldman,
//! Lagrange), tls (rustls configs, mTLS, dev PKI), bls (public BLS types)
//! ```
//!
//! Dependencies point one way: `cli` (parsing, `--config` file, dispatch) → `app` (typed
//! configurations, start-up; never imports `cli`) → (`api`, `combiner`, `cluster`, `dkg`) →
//! `http` → (`signing`, `slashing`, `keys`, `threshold`, `tls`) → `bls` / `keys::secret`. `http`
//! knows nothing of the node or the combiner: both implement its `Signer` trait. `alloc` is the
//! binary's global allocator (huge pages for scrypt's table) and depends on nothing. `progress`
//! counts and reports long work (key loading, `split`, interchange import/export).

pub mod agreement;
pub mod alloc;
pub mod api;
pub mod app;
pub mod bls;
pub mod cli;
pub mod cluster;
pub mod combiner;
pub mod dkg;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod progress;
pub mod signing;
pub mod slashing;
pub mod threshold;
pub mod tls;
