//! Network settings the signing roots depend on: the fork schedule, the preset and the clock.
//!
//! Spec: consensus-specs `configs/*.yaml` and `presets/*`; built-in values from
//! ethereum/consensus-specs `configs/mainnet.yaml` and eth-clients/{holesky,sepolia,hoodi}
//! `metadata/config.yaml`.
//!
//! Invariants: `forks` is sorted by epoch and starts with the genesis fork at epoch 0;
//! unscheduled forks (epoch 2^64-1) are kept with epoch `u64::MAX`.

use std::collections::BTreeMap;
use std::path::Path;

use super::fork::Fork;

/// Errors loading a network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unknown name and not a readable config file.
    #[error("unknown network {0}")]
    Unknown(String),
    /// The config file exists but cannot be read.
    #[error("cannot read network config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The config file is not a usable consensus config.
    #[error("invalid network config {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The preset a network builds on (`PRESET_BASE`); it fixes SSZ sizes of sync-committee and
/// Electra aggregate bitfields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetBase {
    /// `mainnet` (also used by `gnosis` for every size that signing needs).
    Mainnet,
    /// `minimal`.
    Minimal,
}

impl PresetBase {
    /// SYNC_COMMITTEE_SIZE / SYNC_COMMITTEE_SUBNET_COUNT: bits in a contribution's bitvector.
    pub fn sync_subcommittee_size(self) -> usize {
        match self {
            Self::Mainnet => 128,
            Self::Minimal => 8,
        }
    }

    /// SLOTS_PER_EPOCH of the preset.
    pub fn slots_per_epoch(self) -> u64 {
        match self {
            Self::Mainnet => 32,
            Self::Minimal => 8,
        }
    }
}

/// Which fork a schedule entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForkId {
    /// A fork this build knows.
    Known(Fork),
    /// The `<NAME>` of a config file's `<NAME>_FORK_VERSION` that is no fork this build knows;
    /// it is kept so that its version counts as one of the network's.
    Other(String),
}

impl ForkId {
    /// The upper-case name as in the config keys: `GENESIS`, `ALTAIR`, ..., `FULU`, `GLOAS`, or
    /// the other name.
    pub fn name(&self) -> &str {
        match self {
            Self::Known(f) => f.config_name(),
            Self::Other(name) => name,
        }
    }
}

/// One entry of the fork schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledFork {
    /// Which fork.
    pub id: ForkId,
    /// `<NAME>_FORK_VERSION`.
    pub version: [u8; 4],
    /// `<NAME>_FORK_EPOCH` (`u64::MAX` when not scheduled).
    pub epoch: u64,
}

impl ScheduledFork {
    /// The upper-case name as in the config keys (see [`ForkId::name`]).
    pub fn name(&self) -> &str {
        self.id.name()
    }

    /// The fork, when this build knows it.
    pub fn fork(&self) -> Option<Fork> {
        match self.id {
            ForkId::Known(f) => Some(f),
            ForkId::Other(_) => None,
        }
    }
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
    /// PRESET_BASE.
    pub preset: PresetBase,
    /// Every fork of the config, genesis first, sorted by epoch.
    pub forks: Vec<ScheduledFork>,
    /// The network's genesis_validators_root when known: always for a built-in network, and for
    /// a config file whose CONFIG_NAME and GENESIS_FORK_VERSION are those of a built-in one.
    pub genesis_validators_root: Option<[u8; 32]>,
}

/// A fork table: (fork, version as a big-endian u32, activation epoch).
pub(crate) type ForkTable = &'static [(Fork, u32, u64)];

/// The version a table gives `fork`.
fn table_version(table: ForkTable, fork: Fork) -> Option<[u8; 4]> {
    table
        .iter()
        .find(|(f, _, _)| *f == fork)
        .map(|(_, v, _)| v.to_be_bytes())
}

const MAINNET: ForkTable = &[
    (Fork::Phase0, 0x0000_0000, 0),
    (Fork::Altair, 0x0100_0000, 74_240),
    (Fork::Bellatrix, 0x0200_0000, 144_896),
    (Fork::Capella, 0x0300_0000, 194_048),
    (Fork::Deneb, 0x0400_0000, 269_568),
    (Fork::Electra, 0x0500_0000, 364_032),
    (Fork::Fulu, 0x0600_0000, 411_392),
];
const HOLESKY: ForkTable = &[
    (Fork::Phase0, 0x0101_7000, 0),
    (Fork::Altair, 0x0201_7000, 0),
    (Fork::Bellatrix, 0x0301_7000, 0),
    (Fork::Capella, 0x0401_7000, 256),
    (Fork::Deneb, 0x0501_7000, 29_696),
    (Fork::Electra, 0x0601_7000, 115_968),
    (Fork::Fulu, 0x0701_7000, 165_120),
];
const SEPOLIA: ForkTable = &[
    (Fork::Phase0, 0x9000_0069, 0),
    (Fork::Altair, 0x9000_0070, 50),
    (Fork::Bellatrix, 0x9000_0071, 100),
    (Fork::Capella, 0x9000_0072, 56_832),
    (Fork::Deneb, 0x9000_0073, 132_608),
    (Fork::Electra, 0x9000_0074, 222_464),
    (Fork::Fulu, 0x9000_0075, 272_640),
];
const HOODI: ForkTable = &[
    (Fork::Phase0, 0x1000_0910, 0),
    (Fork::Altair, 0x2000_0910, 0),
    (Fork::Bellatrix, 0x3000_0910, 0),
    (Fork::Capella, 0x4000_0910, 0),
    (Fork::Deneb, 0x5000_0910, 0),
    (Fork::Electra, 0x6000_0910, 2_048),
    (Fork::Fulu, 0x7000_0910, 50_688),
];
/// consensus-specs `configs/minimal.yaml`: every fork after genesis unscheduled.
const MINIMAL: ForkTable = &[
    (Fork::Phase0, 0x0000_0001, 0),
    (Fork::Altair, 0x0100_0001, u64::MAX),
    (Fork::Bellatrix, 0x0200_0001, u64::MAX),
    (Fork::Capella, 0x0300_0001, u64::MAX),
    (Fork::Deneb, 0x0400_0001, u64::MAX),
    (Fork::Electra, 0x0500_0001, u64::MAX),
    (Fork::Fulu, 0x0600_0001, u64::MAX),
];

/// Names accepted by [`Network::from_name_or_path`], with genesis times and
/// genesis_validators_root (the hash tree root of the genesis validators, published with each
/// network's metadata).
const BUILT_IN: &[(&str, ForkTable, u64, &str)] = &[
    (
        "mainnet",
        MAINNET,
        1_606_824_023,
        "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95",
    ),
    (
        "holesky",
        HOLESKY,
        1_695_902_400,
        "0x9143aa7c615a7f7115e2b6aac319c03529df8242ae705fba9df39b79c59fa8b1",
    ),
    (
        "sepolia",
        SEPOLIA,
        1_655_733_600,
        "0xd8ea171f3c94aea21ebc42a1ed61052acf3f9209c00e4efbaaddac09ed9b8078",
    ),
    (
        "hoodi",
        HOODI,
        1_742_213_400,
        "0x212f13fc4df078b6cb7db228f1c8307566dcecf900867401a92023d7ba99cb5f",
    ),
];

/// Name under which the minimal preset's fork versions are reported.
pub(crate) const MINIMAL_NAME: &str = "minimal";

/// Every fork table this build knows, by network name: the built-in networks, then the
/// minimal preset's.
pub(crate) fn known_fork_tables() -> impl Iterator<Item = (&'static str, ForkTable)> {
    BUILT_IN
        .iter()
        .map(|(n, t, _, _)| (*n, *t))
        .chain([(MINIMAL_NAME, MINIMAL)])
}

/// The genesis_validators_root of every built-in network.
pub(crate) fn known_roots() -> impl Iterator<Item = (&'static str, [u8; 32])> {
    BUILT_IN
        .iter()
        .filter_map(|(n, _, _, r)| parse_root(r).map(|r| (*n, r)))
}

fn parse_root(hex: &str) -> Option<[u8; 32]> {
    crate::bls::parse_hex::<32>(hex).ok()
}

impl Network {
    /// A built-in network by name (mainnet, holesky, hoodi, sepolia) or a consensus config YAML.
    ///
    /// # Errors
    /// [`Error::Unknown`] for a name that is neither built in nor an existing file;
    /// [`Error::Read`] / [`Error::Config`] for an unreadable or unusable file.
    pub fn from_name_or_path(s: &str) -> Result<Self, Error> {
        if let Some(n) = Self::built_in(s) {
            return Ok(n);
        }
        let path = Path::new(s);
        if !path.is_file() {
            return Err(Error::Unknown(s.to_owned()));
        }
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: s.to_owned(),
            source,
        })?;
        Self::from_config_yaml(&text).map_err(|reason| Error::Config {
            path: s.to_owned(),
            reason,
        })
    }

    /// A built-in network by (case-insensitive) name.
    pub fn built_in(name: &str) -> Option<Self> {
        let (n, forks, genesis, gvr) = BUILT_IN
            .iter()
            .find(|(n, _, _, _)| n.eq_ignore_ascii_case(name))?;
        let mut network = Self::from_table(n, PresetBase::Mainnet, forks, Some(*genesis), 12);
        network.genesis_validators_root = parse_root(gvr);
        Some(network)
    }

    /// The minimal-preset network of the consensus spec tests (GENESIS_FORK_VERSION 0x00000001,
    /// SLOTS_PER_EPOCH 8, later forks unscheduled), which the signing-root vectors use.
    pub fn minimal_test() -> Self {
        Self::from_table("minimal", PresetBase::Minimal, MINIMAL, None, 6)
    }

    fn from_table(
        name: &str,
        preset: PresetBase,
        table: ForkTable,
        genesis_time: Option<u64>,
        seconds_per_slot: u64,
    ) -> Self {
        let forks = table
            .iter()
            .map(|(f, v, e)| ScheduledFork {
                id: ForkId::Known(*f),
                version: v.to_be_bytes(),
                epoch: *e,
            })
            .collect();
        Self::assemble(
            name.to_owned(),
            preset,
            preset.slots_per_epoch(),
            genesis_time,
            seconds_per_slot,
            forks,
        )
    }

    fn assemble(
        name: String,
        preset: PresetBase,
        slots_per_epoch: u64,
        genesis_time: Option<u64>,
        seconds_per_slot: u64,
        mut forks: Vec<ScheduledFork>,
    ) -> Self {
        // Same-epoch forks in fork order, then those this build does not know (stable).
        forks.sort_by_key(|f| (f.epoch, f.fork().is_none(), f.fork()));
        let find = |fork: Fork| forks.iter().find(|f| f.fork() == Some(fork));
        let genesis_fork_version = find(Fork::Phase0).map_or([0; 4], |f| f.version);
        // Without a Capella entry EIP-7044 cannot apply: Deneb is then treated as unscheduled.
        let (capella_fork_version, deneb_fork_epoch) =
            match (find(Fork::Capella), find(Fork::Deneb)) {
                (Some(c), Some(d)) => (c.version, d.epoch),
                _ => (genesis_fork_version, u64::MAX),
            };
        Self {
            name,
            genesis_fork_version,
            capella_fork_version,
            deneb_fork_epoch,
            slots_per_epoch,
            genesis_time,
            seconds_per_slot,
            preset,
            forks,
            genesis_validators_root: None,
        }
    }

    /// Parses a consensus config YAML (`CONFIG_NAME`, `PRESET_BASE`, `GENESIS_FORK_VERSION`,
    /// `<FORK>_FORK_VERSION`/`<FORK>_FORK_EPOCH`, `SECONDS_PER_SLOT` or `SLOT_DURATION_MS`,
    /// `MIN_GENESIS_TIME` + `GENESIS_DELAY`, optional `SLOTS_PER_EPOCH`).
    ///
    /// # Errors
    /// A readable reason when a required key is missing or malformed.
    pub fn from_config_yaml(text: &str) -> Result<Self, String> {
        let map: BTreeMap<String, yaml_serde::Value> =
            yaml_serde::from_str(text).map_err(|e| format!("not a YAML mapping: {e}"))?;
        let int = |k: &str| -> Result<Option<u64>, String> {
            match map.get(k) {
                None => Ok(None),
                Some(v) => yaml_u64(v)
                    .map(Some)
                    .ok_or_else(|| format!("{k} is not a uint64")),
            }
        };
        let preset_name = map
            .get("PRESET_BASE")
            .and_then(|v| v.as_str())
            .unwrap_or("mainnet");
        let (preset, default_spe) = match preset_name {
            "mainnet" => (PresetBase::Mainnet, 32),
            "minimal" => (PresetBase::Minimal, 8),
            "gnosis" => (PresetBase::Mainnet, 16),
            other => return Err(format!("unsupported PRESET_BASE {other:?}")),
        };
        let name = map
            .get("CONFIG_NAME")
            .and_then(|v| v.as_str())
            .unwrap_or(preset_name)
            .to_owned();
        let mut forks = Vec::new();
        for (k, v) in &map {
            let Some(name) = k.strip_suffix("_FORK_VERSION") else {
                continue;
            };
            let version = yaml_version(v).ok_or_else(|| format!("{k} is not a 4-byte version"))?;
            let (id, epoch_key) = match Fork::from_config_name(name) {
                Some(fork) => (ForkId::Known(fork), fork.epoch_key().map(str::to_owned)),
                None => (
                    ForkId::Other(name.to_owned()),
                    Some(format!("{name}_FORK_EPOCH")),
                ),
            };
            let epoch = match epoch_key {
                None => 0,
                Some(key) => int(&key)?.ok_or_else(|| format!("{key} missing"))?,
            };
            forks.push(ScheduledFork { id, version, epoch });
        }
        if !forks.iter().any(|f| f.fork() == Some(Fork::Phase0)) {
            return Err(format!("{} missing", Fork::Phase0.version_key()));
        }
        let seconds_per_slot = match (int("SECONDS_PER_SLOT")?, int("SLOT_DURATION_MS")?) {
            (Some(s), _) => s,
            (None, Some(ms)) => ms / 1000,
            (None, None) => return Err("SECONDS_PER_SLOT / SLOT_DURATION_MS missing".into()),
        };
        if seconds_per_slot == 0 {
            return Err("slot duration is zero".into());
        }
        let slots_per_epoch = int("SLOTS_PER_EPOCH")?.unwrap_or(default_spe);
        if slots_per_epoch == 0 {
            return Err("SLOTS_PER_EPOCH is zero".into());
        }
        // Exact for a built-in name; otherwise MIN_GENESIS_TIME + GENESIS_DELAY, which is the real
        // genesis of every network that launched at its MIN_GENESIS_TIME.
        let built_in = BUILT_IN
            .iter()
            .find(|(n, _, _, _)| n.eq_ignore_ascii_case(&name));
        let genesis_time = match built_in {
            Some((_, _, g, _)) => Some(*g),
            None => match (int("MIN_GENESIS_TIME")?, int("GENESIS_DELAY")?) {
                (Some(t), d) => t.checked_add(d.unwrap_or(0)),
                (None, _) => None,
            },
        };
        let mut network = Self::assemble(
            name,
            preset,
            slots_per_epoch,
            genesis_time,
            seconds_per_slot,
            forks,
        );
        // A copy of a built-in network's config (same name and genesis fork version) is that
        // network: its genesis_validators_root is known.
        if let Some((_, table, _, gvr)) = built_in {
            if table_version(table, Fork::Phase0) == Some(network.genesis_fork_version) {
                network.genesis_validators_root = parse_root(gvr);
            }
        }
        Ok(network)
    }

    /// `compute_epoch_at_slot`.
    pub fn epoch_at_slot(&self, slot: u64) -> u64 {
        // invariant: slots_per_epoch is never zero (checked when loading).
        slot / self.slots_per_epoch.max(1)
    }

    /// The version of the newest fork scheduled at or before `epoch`.
    pub fn fork_version_at(&self, epoch: u64) -> [u8; 4] {
        self.forks
            .iter()
            .rev()
            .find(|f| f.epoch <= epoch)
            .map_or(self.genesis_fork_version, |f| f.version)
    }
}

/// A YAML integer, or a decimal string.
fn yaml_u64(v: &yaml_serde::Value) -> Option<u64> {
    match v {
        yaml_serde::Value::Number(n) => n.as_u64(),
        yaml_serde::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A fork version: YAML may read `0x01017000` as a (hex) integer or keep it a string.
fn yaml_version(v: &yaml_serde::Value) -> Option<[u8; 4]> {
    match v {
        yaml_serde::Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(u32::to_be_bytes),
        yaml_serde::Value::String(s) => crate::bls::parse_hex::<4>(s).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_know_their_fork_schedule() {
        let m = Network::from_name_or_path("Mainnet").unwrap();
        assert_eq!(m.capella_fork_version, [3, 0, 0, 0]);
        assert_eq!(m.deneb_fork_epoch, 269_568);
        assert_eq!(m.fork_version_at(364_031), [4, 0, 0, 0]);
        assert_eq!(m.fork_version_at(364_032), [5, 0, 0, 0]);
        let h = Network::from_name_or_path("hoodi").unwrap();
        assert_eq!(h.genesis_fork_version, [0x10, 0, 0x09, 0x10]);
        assert_eq!(h.deneb_fork_epoch, 0);
        assert!(matches!(
            Network::from_name_or_path("nonesuch"),
            Err(Error::Unknown(_))
        ));
    }

    #[test]
    fn config_yaml_is_read() {
        let yaml = "PRESET_BASE: 'minimal'\nCONFIG_NAME: 'devnet'\nMIN_GENESIS_TIME: 100\nGENESIS_DELAY: 5\n\
                    GENESIS_FORK_VERSION: 0x00000064\nALTAIR_FORK_VERSION: 0x01000064\nALTAIR_FORK_EPOCH: 0\n\
                    CAPELLA_FORK_VERSION: 0x03000064\nCAPELLA_FORK_EPOCH: 1\n\
                    DENEB_FORK_VERSION: '0x04000064'\nDENEB_FORK_EPOCH: 18446744073709551615\n\
                    SLOT_DURATION_MS: 6000\n";
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yaml");
        std::fs::write(&p, yaml).unwrap();
        let n = Network::from_name_or_path(p.to_str().unwrap()).unwrap();
        assert_eq!(n.name, "devnet");
        assert_eq!(n.preset, PresetBase::Minimal);
        assert_eq!(n.slots_per_epoch, 8);
        assert_eq!(n.seconds_per_slot, 6);
        assert_eq!(n.genesis_time, Some(105));
        assert_eq!(n.genesis_fork_version, [0, 0, 0, 0x64]);
        assert_eq!(n.capella_fork_version, [3, 0, 0, 0x64]);
        assert_eq!(n.deneb_fork_epoch, u64::MAX);
        assert_eq!(n.forks[0].name(), "GENESIS");
        assert_eq!(n.fork_version_at(0), [1, 0, 0, 0x64]);
        std::fs::write(&p, "PRESET_BASE: mainnet\nSECONDS_PER_SLOT: 12\n").unwrap();
        assert!(matches!(
            Network::from_name_or_path(p.to_str().unwrap()),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn config_forks_this_build_does_not_know_are_kept_after_known_ones() {
        // Epochs as numbers or decimal strings; versions as hex or decimal integers or strings.
        let yaml = "SECONDS_PER_SLOT: '12'\nGENESIS_FORK_VERSION: 0x00000070\n\
                    EIP9999_FORK_VERSION: '0x09000070'\nEIP9999_FORK_EPOCH: '10'\n\
                    FULU_FORK_VERSION: 100663408\nFULU_FORK_EPOCH: 10\n\
                    ALTAIR_FORK_VERSION: 0x01000070\nALTAIR_FORK_EPOCH: \"5\"\n";
        let n = Network::from_config_yaml(yaml).unwrap();
        let schedule: Vec<(&str, [u8; 4], u64)> = n
            .forks
            .iter()
            .map(|f| (f.name(), f.version, f.epoch))
            .collect();
        assert_eq!(
            schedule,
            [
                ("GENESIS", [0, 0, 0, 0x70], 0),
                ("ALTAIR", [1, 0, 0, 0x70], 5),
                ("FULU", [6, 0, 0, 0x70], 10),
                ("EIP9999", [9, 0, 0, 0x70], 10),
            ]
        );
        assert_eq!(n.forks[1].fork(), Some(Fork::Altair));
        assert_eq!(n.forks[3].id, ForkId::Other("EIP9999".into()));
        assert_eq!(n.fork_version_at(4), [0, 0, 0, 0x70]);
        assert_eq!(n.fork_version_at(10), [9, 0, 0, 0x70]);
        // Its epoch key is required like any other fork's.
        let e = Network::from_config_yaml(
            "SECONDS_PER_SLOT: 12\nGENESIS_FORK_VERSION: 0x00000070\nEIP9999_FORK_VERSION: 0x09000070\n",
        )
        .unwrap_err();
        assert_eq!(e, "EIP9999_FORK_EPOCH missing");
        let e = Network::from_config_yaml(
            "SECONDS_PER_SLOT: 12\nALTAIR_FORK_VERSION: 0x01000070\nALTAIR_FORK_EPOCH: x\n",
        )
        .unwrap_err();
        assert_eq!(e, "ALTAIR_FORK_EPOCH is not a uint64");
    }
}
