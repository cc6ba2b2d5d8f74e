//! The document of `GET /api/v1/dvsigner/info` (ours, on the node and the combiner, each with its
//! own handler; public, nothing secret):
//! what the process is and which network it signs for, so that `dvsigner cluster status` and
//! `dvsigner cluster verify --online` can check that every process of a cluster agrees.
//!
//! ```json
//! {"role": "signer", "version": "0.1.0",
//!  "network": {"name": "mainnet", "genesis_fork_version": "0x00000000", "preset": "mainnet",
//!              "genesis_validators_root": null},
//!  "operator": "a"}
//! ```
//!
//! `genesis_validators_root` is the root a node's slashing-protection database is pinned to (by
//! its first signed request or interchange import), `null` before that, without slashing
//! protection, and always on the combiner (it keeps no state). `operator` is the node's
//! `--operator` (`null` without `--cluster`, and on the combiner).

use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::request::json_response;
use crate::signing::{Network, PresetBase};

/// Path of the info route.
pub const INFO_PATH: &str = "/api/v1/dvsigner/info";

/// The network part of [`Info`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Network name (`mainnet`, …, or the `CONFIG_NAME` of a config file).
    pub name: String,
    /// `GENESIS_FORK_VERSION`, `0x`-prefixed hex.
    pub genesis_fork_version: String,
    /// `PRESET_BASE`: `mainnet` or `minimal`.
    pub preset: String,
    /// The pinned genesis validators root, `0x`-prefixed hex, when known.
    pub genesis_validators_root: Option<String>,
}

impl NetworkInfo {
    /// The network part for `network`, with the pinned root if known.
    pub fn of(network: &Network, genesis_validators_root: Option<[u8; 32]>) -> Self {
        Self {
            name: network.name.clone(),
            genesis_fork_version: format!("0x{}", hex::encode(network.genesis_fork_version)),
            preset: match network.preset {
                PresetBase::Mainnet => "mainnet",
                PresetBase::Minimal => "minimal",
            }
            .to_owned(),
            genesis_validators_root: genesis_validators_root
                .map(|r| format!("0x{}", hex::encode(r))),
        }
    }

    /// Whether two processes sign for the same chain: same name, genesis fork version and
    /// preset, and the same genesis validators root when both know one.
    pub fn agrees_with(&self, other: &Self) -> bool {
        self.name == other.name
            && self.genesis_fork_version == other.genesis_fork_version
            && self.preset == other.preset
            && match (
                &self.genesis_validators_root,
                &other.genesis_validators_root,
            ) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl std::fmt::Display for NetworkInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (genesis fork {}, preset {})",
            self.name, self.genesis_fork_version, self.preset
        )?;
        if let Some(root) = &self.genesis_validators_root {
            write!(f, " root {root}")?;
        }
        Ok(())
    }
}

/// The info document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// `signer` or `combiner`.
    pub role: String,
    /// The crate version of the running binary.
    pub version: String,
    /// The network the process signs for.
    pub network: NetworkInfo,
    /// The node's operator name in the cluster, when it runs with `--cluster`.
    pub operator: Option<String>,
}

impl Info {
    /// The document of a process with `role`.
    pub fn new(role: &str, network: NetworkInfo, operator: Option<String>) -> Self {
        Self {
            role: role.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            network,
            operator,
        }
    }

    /// The JSON response.
    pub fn response(&self) -> Response {
        json_response(
            StatusCode::OK,
            &serde_json::to_value(self).unwrap_or_default(),
        )
    }
}
