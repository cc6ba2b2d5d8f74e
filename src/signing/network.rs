//! Network settings the signing roots depend on (INTERFACE STUB).

/// Errors loading a network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unknown name and not a readable config file.
    #[error("unknown network {0}")]
    Unknown(String),
}

/// The parts of a consensus network config that signing needs.
#[derive(Debug, Clone)]
pub struct Network {
    /// e.g. "mainnet".
    pub name: String,
    /// GENESIS_FORK_VERSION.
    pub genesis_fork_version: [u8; 4],
    /// CAPELLA_FORK_VERSION (EIP-7044 exits).
    pub capella_fork_version: [u8; 4],
    /// DENEB_FORK_EPOCH (u64::MAX when not scheduled).
    pub deneb_fork_epoch: u64,
    /// SLOTS_PER_EPOCH of the preset.
    pub slots_per_epoch: u64,
    /// MIN_GENESIS_TIME / genesis time when known.
    pub genesis_time: Option<u64>,
    /// SECONDS_PER_SLOT.
    pub seconds_per_slot: u64,
}

impl Network {
    /// A built-in network by name (mainnet, holesky, hoodi, sepolia) or a consensus config YAML.
    ///
    /// # Errors
    /// [`Error::Unknown`].
    pub fn from_name_or_path(s: &str) -> Result<Self, Error> {
        let _ = s;
        todo!()
    }
}
