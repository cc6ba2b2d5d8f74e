//! The integration tests, one binary: each module is what used to be its own test binary
//! (`tests/<name>.rs`), so the dependencies are linked once instead of once per file. Run one
//! module with `cargo test --test it <module>::`.
//!
//! The modules share this process: they must not change its environment variables or current
//! directory, and whatever they start (processes, ports, PostgreSQL servers, temp dirs) is
//! their own, named or numbered so that modules running at the same time do not collide.
//!
//! The vector runners (`keystore`, `bls_vectors`, `slashing_interchange`) stay separate test
//! targets (`harness = false` in Cargo.toml).

#[path = "../common/mod.rs"]
mod common;

mod agreement;
mod api;
mod bench;
mod cluster;
mod cluster_e2e;
mod cluster_status;
mod cluster_sync;
mod combiner_load;
mod combiner_nodes;
mod config;
mod container;
mod dashboards;
mod dev;
mod dkg;
mod high_watermark;
mod host_allowlist;
mod hsm;
mod http2;
mod key_cache;
mod keymanager;
mod lodestar;
mod openapi;
mod ops;
mod partition_heal;
mod postgres_tls;
mod progress;
mod race;
mod reload;
mod request_fuzz;
mod reshare;
mod signing_roots;
mod slashing;
mod slashing_process;
mod threshold;
mod tls;
mod vault;
mod wan;
mod wrong_network;
