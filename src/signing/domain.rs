//! Signature domains and signing roots.
//!
//! Spec: consensus-specs `specs/phase0/beacon-chain.md` (`compute_fork_data_root`,
//! `compute_domain`, `compute_signing_root`), `specs/deneb/beacon-chain.md` (EIP-7044),
//! builder-specs (`DOMAIN_APPLICATION_BUILDER`).
//!
//! Invariant: `compute_domain(t, v, gvr) = t ++ hash_tree_root(ForkData(v, gvr))[0..28]` and
//! `compute_signing_root(o, d) = hash_tree_root(SigningData(o, d))`; nothing else is hashed here.

use tree_hash::TreeHash;

use super::ssz::{ForkData, SigningData};

/// A 4-byte `DomainType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DomainType(pub [u8; 4]);

impl DomainType {
    /// DOMAIN_BEACON_PROPOSER.
    pub const BEACON_PROPOSER: Self = Self([0, 0, 0, 0]);
    /// DOMAIN_BEACON_ATTESTER.
    pub const BEACON_ATTESTER: Self = Self([1, 0, 0, 0]);
    /// DOMAIN_RANDAO.
    pub const RANDAO: Self = Self([2, 0, 0, 0]);
    /// DOMAIN_DEPOSIT.
    pub const DEPOSIT: Self = Self([3, 0, 0, 0]);
    /// DOMAIN_VOLUNTARY_EXIT.
    pub const VOLUNTARY_EXIT: Self = Self([4, 0, 0, 0]);
    /// DOMAIN_SELECTION_PROOF.
    pub const SELECTION_PROOF: Self = Self([5, 0, 0, 0]);
    /// DOMAIN_AGGREGATE_AND_PROOF.
    pub const AGGREGATE_AND_PROOF: Self = Self([6, 0, 0, 0]);
    /// DOMAIN_SYNC_COMMITTEE.
    pub const SYNC_COMMITTEE: Self = Self([7, 0, 0, 0]);
    /// DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF.
    pub const SYNC_COMMITTEE_SELECTION_PROOF: Self = Self([8, 0, 0, 0]);
    /// DOMAIN_CONTRIBUTION_AND_PROOF.
    pub const CONTRIBUTION_AND_PROOF: Self = Self([9, 0, 0, 0]);
    /// DOMAIN_APPLICATION_BUILDER (builder-specs).
    pub const APPLICATION_BUILDER: Self = Self([0, 0, 0, 1]);
}

/// `compute_fork_data_root(current_version, genesis_validators_root)`.
pub fn compute_fork_data_root(
    current_version: [u8; 4],
    genesis_validators_root: [u8; 32],
) -> [u8; 32] {
    ForkData {
        current_version,
        genesis_validators_root,
    }
    .tree_hash_root()
    .0
}

/// `compute_domain(domain_type, fork_version, genesis_validators_root)`.
pub fn compute_domain(
    domain_type: DomainType,
    fork_version: [u8; 4],
    genesis_validators_root: [u8; 32],
) -> [u8; 32] {
    let fork_data_root = compute_fork_data_root(fork_version, genesis_validators_root);
    let mut domain = [0u8; 32];
    domain[..4].copy_from_slice(&domain_type.0);
    domain[4..].copy_from_slice(&fork_data_root[..28]);
    domain
}

/// `compute_signing_root`, given the object's `hash_tree_root`.
pub fn compute_signing_root(object_root: [u8; 32], domain: [u8; 32]) -> [u8; 32] {
    SigningData {
        object_root,
        domain,
    }
    .tree_hash_root()
    .0
}

/// The fork version a message at `epoch` is signed under, from the request's `fork_info.fork`:
/// `previous_version` if `epoch < fork_epoch`, else `current_version` (consensus-specs
/// `get_domain`; Lodestar sends the message's own epoch as `fork_epoch`, which gives the same
/// answer).
pub fn fork_version_for(
    epoch: u64,
    previous: [u8; 4],
    current: [u8; 4],
    fork_epoch: u64,
) -> [u8; 4] {
    if epoch < fork_epoch {
        previous
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_selection_boundary() {
        let (p, c) = ([1; 4], [2; 4]);
        assert_eq!(fork_version_for(9, p, c, 10), p);
        assert_eq!(fork_version_for(10, p, c, 10), c);
        assert_eq!(fork_version_for(u64::MAX, p, c, 10), c);
    }

    #[test]
    fn domain_keeps_type_prefix() {
        let d = compute_domain(DomainType::APPLICATION_BUILDER, [0; 4], [0; 32]);
        assert_eq!(&d[..4], &[0, 0, 0, 1]);
        // mainnet deposit domain, a well-known constant
        assert_eq!(
            hex::encode(&d[4..]),
            "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a9"
        );
    }
}
