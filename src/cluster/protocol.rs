//! Wire types of the peer history endpoint (`GET /api/v1/cluster/history`): no logic.
//!
//! A node answers with one page of its signed-duty history for the cluster's validators, as an
//! EIP-3076 (<https://eips.ethereum.org/EIPS/eip-3076>) interchange document whose `pubkey`s are
//! the validators' GROUP public keys (each node records under its own share key; the receiver
//! maps the group key back to its own share key through `cluster.json`). Pages cover
//! `validator_offset .. validator_offset + limit` of the validators in `cluster.json` file order.
//!
//! A node that recorded new history tells its peers with a [`Notice`]
//! (`POST /api/v1/cluster/notify`); a peer then pulls only the records at or above the slot and
//! target epoch the notice names (the `min_slot` / `min_target_epoch` filters of
//! [`HistoryQuery`]), so a partitioned-then-healed or lagging node catches up within a second
//! instead of waiting for the next periodic pull. The notice carries no history itself: what is
//! merged always comes from a pull that passed every check.
//!
//! Strict serde (`deny_unknown_fields`): both ends are dvsigner nodes of the same cluster.

use serde::{Deserialize, Serialize};

use crate::slashing::interchange::Interchange;

/// Path of the peer history endpoint.
pub const HISTORY_PATH: &str = "/api/v1/cluster/history";

/// Path of the peer notice endpoint.
pub const NOTIFY_PATH: &str = "/api/v1/cluster/notify";

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
    /// Only block records at or above this slot (absent: all block records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_slot: Option<u64>,
    /// Only attestation records whose target is at or above this epoch (absent: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_target_epoch: Option<u64>,
}

/// "I recorded new history": sent by a node to its peers (debounced) after it stored new
/// block or attestation records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    /// `ClusterDefinition::hash` of the sender's `cluster.json` (`0x` hex).
    pub cluster_hash: String,
    /// The sender's operator name.
    pub operator: String,
    /// Lowest slot among the block records stored since the previous notice (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_slot: Option<u64>,
    /// Lowest target epoch among the attestation records stored since the previous notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_target_epoch: Option<u64>,
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
