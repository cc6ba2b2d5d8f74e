//! Wire types of the peer history endpoint (`GET /api/v1/cluster/history`): no logic.
//!
//! A node answers with one page of its signed-duty history for the cluster's validators, as an
//! EIP-3076 (<https://eips.ethereum.org/EIPS/eip-3076>) interchange document whose `pubkey`s are
//! the validators' GROUP public keys (each node records under its own share key; the receiver
//! maps the group key back to its own share key through `cluster.json`). Pages cover
//! `validator_offset .. validator_offset + limit` of the validators in `cluster.json` file order.
//!
//! Strict serde (`deny_unknown_fields`): both ends are dvsigner nodes of the same cluster.

use serde::{Deserialize, Serialize};

use crate::slashing::interchange::Interchange;

/// Path of the peer history endpoint.
pub const HISTORY_PATH: &str = "/api/v1/cluster/history";

/// Largest page a node serves (and the default a puller asks for).
pub const MAX_PAGE: usize = 1_000;

/// Query string of a history request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Index (in `cluster.json` order) of the first validator of the page (default 0).
    #[serde(default)]
    pub validator_offset: usize,
    /// Number of validators in the page (default and maximum [`MAX_PAGE`]).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// One page of a node's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryPage {
    /// `ClusterDefinition::hash` of the answering node's `cluster.json` (`0x` hex).
    pub cluster_hash: String,
    /// The answering node's operator name.
    pub operator: String,
    /// The first validator index this page covers (echo of the request).
    pub validator_offset: usize,
    /// Number of validators covered (after clamping `limit`).
    pub limit: usize,
    /// Number of validators in the cluster.
    pub total_validators: usize,
    /// Offset of the next page, absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
    /// The history, keyed by group public key; absent when the node has never signed or
    /// imported anything (its database has no genesis validators root yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interchange: Option<Interchange>,
}
