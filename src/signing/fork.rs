//! The consensus forks this build knows, in activation order, with their spellings and the SSZ
//! shapes they select.
//!
//! Spec: consensus-specs `configs/*.yaml` (`GENESIS_FORK_VERSION`, `<FORK>_FORK_VERSION`,
//! `<FORK>_FORK_EPOCH`; phase0 is the genesis fork and has no epoch key); Web3Signer eth2 signing
//! API (`BLOCK_V2` `beacon_block.version`, `AGGREGATE_AND_PROOF_V2`
//! `aggregate_and_proof.version`: upper-case fork names such as `PHASE0`, `ELECTRA`).
//!
//! Invariants: the variants are declared in activation order, so the derived `Ord` is the fork
//! order and [`Fork::ALL`] is sorted; every spelling is matched exactly (upper case), as the
//! request and config parsers have always done.

use std::fmt;

/// A consensus fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fork {
    /// The genesis fork (`GENESIS_FORK_VERSION` in configs, `PHASE0` in requests).
    Phase0,
    /// Altair.
    Altair,
    /// Bellatrix (the Merge).
    Bellatrix,
    /// Capella.
    Capella,
    /// Deneb.
    Deneb,
    /// Electra.
    Electra,
    /// Fulu.
    Fulu,
    /// Gloas.
    Gloas,
    /// Heze.
    Heze,
}

/// What a `BLOCK_V2` request of a fork carries and how its object root is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockShape {
    /// A full phase0 `BeaconBlock` in `block`.
    Phase0Block,
    /// A full Altair `BeaconBlock` (with the sync aggregate) in `block`.
    AltairBlock,
    /// Only the `BeaconBlockHeader` in `block_header` (Bellatrix on).
    Header,
}

/// Which `Attestation` container an `AGGREGATE_AND_PROOF_V2` request of a fork carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateShape {
    /// The phase0 `Attestation`.
    Phase0,
    /// The Electra `Attestation` (with `committee_bits`).
    Electra,
}

impl Fork {
    /// Every fork, in activation order.
    pub const ALL: [Fork; 9] = [
        Self::Phase0,
        Self::Altair,
        Self::Bellatrix,
        Self::Capella,
        Self::Deneb,
        Self::Electra,
        Self::Fulu,
        Self::Gloas,
        Self::Heze,
    ];

    /// The name in requests (`beacon_block.version`), e.g. `"PHASE0"`, `"ELECTRA"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Phase0 => "PHASE0",
            Self::Altair => "ALTAIR",
            Self::Bellatrix => "BELLATRIX",
            Self::Capella => "CAPELLA",
            Self::Deneb => "DENEB",
            Self::Electra => "ELECTRA",
            Self::Fulu => "FULU",
            Self::Gloas => "GLOAS",
            Self::Heze => "HEZE",
        }
    }

    /// The fork named `name` as in requests (exact, upper case).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The prefix of the fork's config keys, which is also its name in the fork schedule and in
    /// logs: `"GENESIS"` for phase0, else [`Fork::name`].
    pub fn config_name(self) -> &'static str {
        match self {
            Self::Phase0 => "GENESIS",
            other => other.name(),
        }
    }

    /// The fork whose config keys start with `prefix` (exact, upper case).
    pub fn from_config_name(prefix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.config_name() == prefix)
    }

    /// The config key of the fork's version, e.g. `"GENESIS_FORK_VERSION"`.
    pub fn version_key(self) -> &'static str {
        match self {
            Self::Phase0 => "GENESIS_FORK_VERSION",
            Self::Altair => "ALTAIR_FORK_VERSION",
            Self::Bellatrix => "BELLATRIX_FORK_VERSION",
            Self::Capella => "CAPELLA_FORK_VERSION",
            Self::Deneb => "DENEB_FORK_VERSION",
            Self::Electra => "ELECTRA_FORK_VERSION",
            Self::Fulu => "FULU_FORK_VERSION",
            Self::Gloas => "GLOAS_FORK_VERSION",
            Self::Heze => "HEZE_FORK_VERSION",
        }
    }

    /// The config key of the fork's activation epoch, e.g. `"ALTAIR_FORK_EPOCH"`; None for the
    /// genesis fork, which activates at epoch 0.
    pub fn epoch_key(self) -> Option<&'static str> {
        Some(match self {
            Self::Phase0 => return None,
            Self::Altair => "ALTAIR_FORK_EPOCH",
            Self::Bellatrix => "BELLATRIX_FORK_EPOCH",
            Self::Capella => "CAPELLA_FORK_EPOCH",
            Self::Deneb => "DENEB_FORK_EPOCH",
            Self::Electra => "ELECTRA_FORK_EPOCH",
            Self::Fulu => "FULU_FORK_EPOCH",
            Self::Gloas => "GLOAS_FORK_EPOCH",
            Self::Heze => "HEZE_FORK_EPOCH",
        })
    }

    /// What a `BLOCK_V2` request of this fork carries.
    pub fn block_shape(self) -> BlockShape {
        match self {
            Self::Phase0 => BlockShape::Phase0Block,
            Self::Altair => BlockShape::AltairBlock,
            _ => BlockShape::Header,
        }
    }

    /// Which `Attestation` an `AGGREGATE_AND_PROOF_V2` request of this fork carries (EIP-7549
    /// changed it in Electra).
    pub fn aggregate_shape(self) -> AggregateShape {
        if self >= Self::Electra {
            AggregateShape::Electra
        } else {
            AggregateShape::Phase0
        }
    }
}

impl fmt::Display for Fork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_declaration_order_and_sorted() {
        let mut sorted = Fork::ALL;
        sorted.sort();
        assert_eq!(sorted, Fork::ALL);
        for pair in Fork::ALL.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        assert_eq!(Fork::ALL[0], Fork::Phase0);
        assert!(Fork::Deneb < Fork::Electra && Fork::Electra < Fork::Fulu);
    }

    #[test]
    fn names_round_trip_exactly() {
        let names: Vec<&str> = Fork::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "PHASE0",
                "ALTAIR",
                "BELLATRIX",
                "CAPELLA",
                "DENEB",
                "ELECTRA",
                "FULU",
                "GLOAS",
                "HEZE"
            ]
        );
        for f in Fork::ALL {
            assert_eq!(Fork::from_name(f.name()), Some(f));
            assert_eq!(Fork::from_config_name(f.config_name()), Some(f));
            assert_eq!(f.to_string(), f.name());
        }
        // Requests spell phase0 PHASE0, configs GENESIS; neither parser accepts the other's
        // spelling or another case.
        assert_eq!(Fork::from_name("GENESIS"), None);
        assert_eq!(Fork::from_config_name("PHASE0"), None);
        assert_eq!(Fork::from_name("electra"), None);
        assert_eq!(Fork::from_config_name("Altair"), None);
        assert_eq!(Fork::from_name("EIP7594"), None);
    }

    #[test]
    fn config_keys_follow_the_config_name() {
        assert_eq!(Fork::Phase0.version_key(), "GENESIS_FORK_VERSION");
        assert_eq!(Fork::Phase0.epoch_key(), None);
        for f in Fork::ALL {
            assert_eq!(f.version_key(), format!("{}_FORK_VERSION", f.config_name()));
            if f != Fork::Phase0 {
                assert_eq!(
                    f.epoch_key().map(str::to_owned),
                    Some(format!("{}_FORK_EPOCH", f.config_name()))
                );
            }
        }
    }

    #[test]
    fn shapes_change_at_bellatrix_and_electra() {
        let blocks: Vec<BlockShape> = Fork::ALL.iter().map(|f| f.block_shape()).collect();
        assert_eq!(blocks[0], BlockShape::Phase0Block);
        assert_eq!(blocks[1], BlockShape::AltairBlock);
        assert!(blocks[2..].iter().all(|b| *b == BlockShape::Header));
        for f in Fork::ALL {
            let want = if matches!(
                f,
                Fork::Phase0 | Fork::Altair | Fork::Bellatrix | Fork::Capella | Fork::Deneb
            ) {
                AggregateShape::Phase0
            } else {
                AggregateShape::Electra
            };
            assert_eq!(f.aggregate_shape(), want, "{f}");
        }
    }
}
