//! The cluster: which operators run signer nodes, and for every validator its group key,
//! threshold, Feldman commitments and which operator holds which share (`cluster.json`, identical
//! on every node and combiner), plus the `split` step that creates it.
//!
//! Invariants: a [`ClusterDefinition`] value has always passed [`ClusterDefinition::verify`]
//! (share keys match the commitments, t is a strict majority of n, every share's operator
//! exists); its [`ClusterDefinition::hash`] identifies the cluster.
//!
//! `sync.rs` and `protocol.rs`: nodes pull each other's signed-duty history before signing
//! (`docs/architecture.md`, "Cluster history sync").

pub mod definition;
mod error;
pub mod link;
pub mod protocol;
pub mod split;
pub mod sync;

pub use definition::{
    CaSource, ClusterDefinition, ClusterHash, Operator, ShareDefinition, ValidatorDefinition,
    CLUSTER_VERSION,
};
pub use error::Error;
pub use split::{split_keys, OperatorShares};
