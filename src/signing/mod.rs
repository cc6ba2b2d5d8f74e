//! Web3Signer sign requests → signing roots.
//!
//! Spec: Web3Signer eth2 signing API (`POST /api/v1/eth2/sign/{identifier}`, its
//! `openapi-specs/eth2/signing/schemas.yaml`); consensus-specs `compute_domain`,
//! `compute_signing_root`, `get_domain`; EIP-7044 (exits pinned to Capella from Deneb on);
//! builder-specs (`DOMAIN_APPLICATION_BUILDER`).
//!
//! # Layout
//! - `request`: wire types (serde only); `json`: primitives (quoted u64, hex bytes, type name),
//! - `ssz`: the SSZ containers (`tree_hash` derived) and their conversion from the wire types,
//! - [`domain`]: domain types, `compute_domain`, `compute_signing_root`,
//! - [`fork`]: the forks this build knows, their names and the SSZ shapes they select,
//! - [`network`]: fork schedule, preset, clock.
//!
//! Invariants:
//! - the root is always computed by the node from the typed payload; a supplied
//!   `signingRoot`/`signing_root` is only compared, never signed;
//! - status classes follow Web3Signer: a body that does not parse (bad JSON, unknown type,
//!   bad hex/uint, missing nested field, over-long list, wrong bitfield size) is
//!   [`Error::Malformed`] (400); a missing payload or `fork_info` is [`Error::Root`] (500); a
//!   differing supplied root is [`Error::RootMismatch`] (500); fork info of another network
//!   (or of a fork the configured schedule lacks) is [`Error::WrongNetwork`] (400, a dvsigner
//!   choice: Web3Signer has no such check), decided before any payload is SSZ-decoded;
//! - the fork version comes from `fork_info` by the message epoch (previous if the epoch is
//!   below `fork.epoch`), except EIP-7044 exits, DEPOSIT (request's genesis_fork_version, zero
//!   GVR) and VALIDATOR_REGISTRATION (network GENESIS_FORK_VERSION, zero GVR).

use tree_hash::TreeHash;

use crate::bls::SigningRoot;
use crate::slashing::SlashableMessage;

pub mod domain;
pub mod fork;
pub mod fork_check;
mod json;
pub mod network;
mod request;
mod ssz;

pub use domain::{compute_domain, compute_signing_root, DomainType};
pub use fork::{AggregateShape, BlockShape, Fork};
pub use fork_check::{MismatchKind, NetworkMismatch};
pub use network::{Network, PresetBase};

use request::{ForkInfo, SignRequest};
use ssz::Preset;

/// Errors turning a request body into a signing root.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed JSON, unknown `type`, bad hex or integer, missing required nested field (400).
    #[error("malformed sign request: {0}")]
    Malformed(String),
    /// Parsed, but the root cannot be computed: payload or fork_info missing, payload not valid
    /// for its fork (Web3Signer answers 500).
    #[error("cannot compute signing root: {0}")]
    Root(String),
    /// The request's fork info (or a deposit's genesis fork version) is not of the configured
    /// network: another network, or a fork the configured schedule does not know (400; checked
    /// before the payload is SSZ-decoded).
    #[error("{0}")]
    WrongNetwork(NetworkMismatch),
    /// The request carried a signing root that differs from the computed one (Web3Signer: 500).
    #[error("supplied signing root {supplied:?} differs from computed {computed:?}")]
    RootMismatch {
        /// Root in the request.
        supplied: SigningRoot,
        /// Root the node computed.
        computed: SigningRoot,
    },
}

/// The sign types of the Web3Signer API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignKind {
    /// Legacy phase0 `BLOCK`.
    Block,
    /// `BLOCK_V2`.
    BlockV2,
    /// `ATTESTATION`.
    Attestation,
    /// `AGGREGATION_SLOT`.
    AggregationSlot,
    /// `AGGREGATE_AND_PROOF`.
    AggregateAndProof,
    /// `AGGREGATE_AND_PROOF_V2`.
    AggregateAndProofV2,
    /// `DEPOSIT`.
    Deposit,
    /// `RANDAO_REVEAL`.
    RandaoReveal,
    /// `VOLUNTARY_EXIT`.
    VoluntaryExit,
    /// `SYNC_COMMITTEE_MESSAGE`.
    SyncCommitteeMessage,
    /// `SYNC_COMMITTEE_SELECTION_PROOF`.
    SyncCommitteeSelectionProof,
    /// `SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF`.
    SyncCommitteeContributionAndProof,
    /// `VALIDATOR_REGISTRATION`.
    ValidatorRegistration,
}

impl SignKind {
    /// Every sign type, in the order of the enum.
    pub const ALL: [SignKind; 13] = [
        Self::Block,
        Self::BlockV2,
        Self::Attestation,
        Self::AggregationSlot,
        Self::AggregateAndProof,
        Self::AggregateAndProofV2,
        Self::Deposit,
        Self::RandaoReveal,
        Self::VoluntaryExit,
        Self::SyncCommitteeMessage,
        Self::SyncCommitteeSelectionProof,
        Self::SyncCommitteeContributionAndProof,
        Self::ValidatorRegistration,
    ];

    /// The wire name, e.g. `"ATTESTATION"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "BLOCK",
            Self::BlockV2 => "BLOCK_V2",
            Self::Attestation => "ATTESTATION",
            Self::AggregationSlot => "AGGREGATION_SLOT",
            Self::AggregateAndProof => "AGGREGATE_AND_PROOF",
            Self::AggregateAndProofV2 => "AGGREGATE_AND_PROOF_V2",
            Self::Deposit => "DEPOSIT",
            Self::RandaoReveal => "RANDAO_REVEAL",
            Self::VoluntaryExit => "VOLUNTARY_EXIT",
            Self::SyncCommitteeMessage => "SYNC_COMMITTEE_MESSAGE",
            Self::SyncCommitteeSelectionProof => "SYNC_COMMITTEE_SELECTION_PROOF",
            Self::SyncCommitteeContributionAndProof => "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF",
            Self::ValidatorRegistration => "VALIDATOR_REGISTRATION",
        }
    }

    /// Whether the slashing database must check this type (blocks and attestations).
    pub fn is_slashable(self) -> bool {
        matches!(self, Self::Block | Self::BlockV2 | Self::Attestation)
    }
}

/// A parsed, checked request ready for the slashing check and signing.
#[derive(Debug, Clone)]
pub struct PreparedSign {
    /// Which type was requested.
    pub kind: SignKind,
    /// The root the node computed (never the supplied one).
    pub root: SigningRoot,
    /// For blocks and attestations: what the slashing DB must check, and the request's
    /// genesis_validators_root.
    pub slashable: Option<(SlashableMessage, [u8; 32])>,
}

/// Parses a sign request body, computes its signing root, and checks a supplied root.
///
/// # Errors
/// See [`Error`] for the mapping to Web3Signer's status codes.
pub fn prepare(body: &[u8], network: &Network) -> Result<PreparedSign, Error> {
    let req: SignRequest =
        serde_json::from_slice(body).map_err(|e| Error::Malformed(e.to_string()))?;
    check_network(&req, network).map_err(Error::WrongNetwork)?;
    let (root, slashable) = compute(&req, network)?;
    let computed = SigningRoot(root);
    if let Some(supplied) = req.signing_root {
        if supplied.0 != root {
            return Err(Error::RootMismatch {
                supplied: SigningRoot(supplied.0),
                computed,
            });
        }
    }
    Ok(PreparedSign {
        kind: req.kind,
        root: computed,
        slashable,
    })
}

/// Refuses fork info that is not of `network`: for the types whose root depends on
/// `fork_info`, its versions and genesis_validators_root; for DEPOSIT, its genesis fork version.
/// VALIDATOR_REGISTRATION carries no network signal (it is signed under the configured genesis
/// fork version).
fn check_network(req: &SignRequest, network: &Network) -> Result<(), NetworkMismatch> {
    match req.kind {
        SignKind::Deposit => match &req.deposit {
            Some(d) => network.check_deposit_version(d.genesis_fork_version.0),
            None => Ok(()),
        },
        SignKind::ValidatorRegistration => Ok(()),
        _ => match &req.fork_info {
            Some(fi) => network.check_fork_info(
                fi.fork.previous_version.0,
                fi.fork.current_version.0,
                fi.fork.epoch.0,
                fi.genesis_validators_root.0,
            ),
            None => Ok(()),
        },
    }
}

/// The signing root of a deposit (`DepositMessage` under `compute_domain(DOMAIN_DEPOSIT,
/// genesis_fork_version, zero)`), for tools that build deposit data.
pub fn deposit_signing_root(
    pubkey: [u8; 48],
    withdrawal_credentials: [u8; 32],
    amount_gwei: u64,
    genesis_fork_version: [u8; 4],
) -> SigningRoot {
    let msg = request::DepositMessage {
        pubkey: json::Bytes(pubkey),
        withdrawal_credentials: json::Bytes(withdrawal_credentials),
        amount: json::U64(amount_gwei),
        genesis_fork_version: json::Bytes(genesis_fork_version),
    };
    let object_root = ssz::DepositMessage::from(&msg).tree_hash_root().0;
    let domain = compute_domain(DomainType::DEPOSIT, genesis_fork_version, [0; 32]);
    SigningRoot(compute_signing_root(object_root, domain))
}

/// `hash_tree_root(DepositData)`: the `deposit_data_root` of a `deposit_data-*.json` entry.
pub fn deposit_data_root(
    pubkey: [u8; 48],
    withdrawal_credentials: [u8; 32],
    amount_gwei: u64,
    signature: [u8; 96],
) -> [u8; 32] {
    ssz::deposit_data_root(pubkey, withdrawal_credentials, amount_gwei, signature)
}

/// What a request needs besides its object root.
type Computed = ([u8; 32], Option<(SlashableMessage, [u8; 32])>);

fn missing(what: &str, kind: SignKind) -> Error {
    Error::Root(format!("{} request without {what}", kind.as_str()))
}

fn fork_info(req: &SignRequest) -> Result<&ForkInfo, Error> {
    req.fork_info
        .as_ref()
        .ok_or_else(|| missing("fork_info", req.kind))
}

/// `compute_signing_root(object_root, get_domain(fork_info, domain_type, epoch))`.
/// The signing root of a block (legacy or V2, full or header) and its slashing subject.
fn block_computed(fi: &ForkInfo, network: &Network, slot: u64, object_root: [u8; 32]) -> Computed {
    let root = root_at(
        fi,
        DomainType::BEACON_PROPOSER,
        network.epoch_at_slot(slot),
        object_root,
    );
    let slashable = (
        SlashableMessage::Block { slot },
        fi.genesis_validators_root.0,
    );
    (root, Some(slashable))
}

fn root_at(fi: &ForkInfo, domain_type: DomainType, epoch: u64, object_root: [u8; 32]) -> [u8; 32] {
    let version = domain::fork_version_for(
        epoch,
        fi.fork.previous_version.0,
        fi.fork.current_version.0,
        fi.fork.epoch.0,
    );
    compute_signing_root(
        object_root,
        compute_domain(domain_type, version, fi.genesis_validators_root.0),
    )
}

/// Runs `f` with the SSZ sizes of the network's preset.
macro_rules! with_preset {
    ($network:expr, $f:ident ( $($arg:expr),* )) => {
        match $network.preset {
            PresetBase::Mainnet => $f::<ssz::Mainnet>($($arg),*),
            PresetBase::Minimal => $f::<ssz::Minimal>($($arg),*),
        }
    };
}

fn altair_block_root<P: Preset>(b: &request::BeaconBlock) -> Result<[u8; 32], String> {
    Ok(ssz::BeaconBlockAltair::<P>::from_wire(b)?
        .tree_hash_root()
        .0)
}

fn electra_aggregate_root<P: Preset>(
    aggregator_index: u64,
    aggregate: &request::Attestation,
    selection_proof: [u8; 96],
) -> Result<[u8; 32], String> {
    Ok(
        ssz::AggregateAndProofElectra::<P>::from_wire(
            aggregator_index,
            aggregate,
            selection_proof,
        )?
        .tree_hash_root()
        .0,
    )
}

fn aggregate_root(
    network: &Network,
    shape: AggregateShape,
    aggregator_index: u64,
    aggregate: &request::Attestation,
    selection_proof: [u8; 96],
) -> Result<[u8; 32], String> {
    match shape {
        AggregateShape::Electra => with_preset!(
            network,
            electra_aggregate_root(aggregator_index, aggregate, selection_proof)
        ),
        AggregateShape::Phase0 => {
            Ok(
                ssz::AggregateAndProof::from_wire(aggregator_index, aggregate, selection_proof)?
                    .tree_hash_root()
                    .0,
            )
        }
    }
}

fn contribution_root<P: Preset>(c: &request::ContributionAndProof) -> Result<[u8; 32], String> {
    Ok(ssz::ContributionAndProof::<P>::from_wire(c)?
        .tree_hash_root()
        .0)
}

fn compute(req: &SignRequest, network: &Network) -> Result<Computed, Error> {
    let kind = req.kind;
    let malformed = |e: String| Error::Malformed(format!("{}: {e}", kind.as_str()));
    match kind {
        SignKind::Block => {
            let b = req.block.as_ref().ok_or_else(|| missing("block", kind))?;
            let fi = fork_info(req)?;
            let object_root = ssz::BeaconBlock::from_wire(b)
                .map_err(malformed)?
                .tree_hash_root()
                .0;
            let slot = b.slot.0;
            Ok(block_computed(fi, network, slot, object_root))
        }
        SignKind::BlockV2 => {
            let bb = req
                .beacon_block
                .as_ref()
                .ok_or_else(|| missing("beacon_block", kind))?;
            let fi = fork_info(req)?;
            let version = bb.version.as_str();
            let fork = Fork::from_name(version)
                .ok_or_else(|| malformed(format!("unknown block version {version:?}")))?;
            let shape = fork.block_shape();
            let (slot, object_root) = if shape == BlockShape::Header {
                let h = bb
                    .block_header
                    .as_ref()
                    .ok_or_else(|| malformed(format!("{fork} request without block_header")))?;
                (h.slot.0, ssz::BeaconBlockHeader::from(h).tree_hash_root().0)
            } else {
                let b = bb
                    .block
                    .as_ref()
                    .ok_or_else(|| malformed(format!("{fork} request without block")))?;
                let r = if shape == BlockShape::Phase0Block {
                    ssz::BeaconBlock::from_wire(b).map(|b| b.tree_hash_root().0)
                } else {
                    with_preset!(network, altair_block_root(b))
                };
                (b.slot.0, r.map_err(malformed)?)
            };
            Ok(block_computed(fi, network, slot, object_root))
        }
        SignKind::Attestation => {
            let a = req
                .attestation
                .as_ref()
                .ok_or_else(|| missing("attestation", kind))?;
            let fi = fork_info(req)?;
            let object_root = ssz::AttestationData::from(a).tree_hash_root().0;
            let root = root_at(
                fi,
                DomainType::BEACON_ATTESTER,
                a.target.epoch.0,
                object_root,
            );
            let msg = SlashableMessage::Attestation {
                source_epoch: a.source.epoch.0,
                target_epoch: a.target.epoch.0,
            };
            Ok((root, Some((msg, fi.genesis_validators_root.0))))
        }
        SignKind::AggregationSlot => {
            let s = req
                .aggregation_slot
                .as_ref()
                .ok_or_else(|| missing("aggregation_slot", kind))?;
            let fi = fork_info(req)?;
            let object_root = s.slot.0.tree_hash_root().0;
            Ok((
                root_at(
                    fi,
                    DomainType::SELECTION_PROOF,
                    network.epoch_at_slot(s.slot.0),
                    object_root,
                ),
                None,
            ))
        }
        SignKind::AggregateAndProof | SignKind::AggregateAndProofV2 => {
            let f = req
                .aggregate_and_proof
                .as_ref()
                .ok_or_else(|| missing("aggregate_and_proof", kind))?;
            let fi = fork_info(req)?;
            let (slot, object_root) = if kind == SignKind::AggregateAndProofV2 {
                let version = f
                    .version
                    .as_deref()
                    .ok_or_else(|| malformed("missing version".into()))?;
                let data = f
                    .data
                    .as_ref()
                    .ok_or_else(|| malformed("missing data".into()))?;
                let fork = Fork::from_name(version)
                    .ok_or_else(|| malformed(format!("unknown aggregate version {version:?}")))?;
                let r = aggregate_root(
                    network,
                    fork.aggregate_shape(),
                    data.aggregator_index.0,
                    &data.aggregate,
                    data.selection_proof.0,
                );
                (data.aggregate.data.slot.0, r.map_err(malformed)?)
            } else {
                let (Some(index), Some(aggregate), Some(proof)) =
                    (f.aggregator_index, f.aggregate.as_ref(), f.selection_proof)
                else {
                    return Err(malformed(
                        "aggregate_and_proof needs aggregator_index, aggregate, selection_proof"
                            .into(),
                    ));
                };
                // Lighthouse and Teku send Electra aggregates as v1: the shape decides.
                let shape = if aggregate.committee_bits.is_some() {
                    AggregateShape::Electra
                } else {
                    AggregateShape::Phase0
                };
                let r = aggregate_root(network, shape, index.0, aggregate, proof.0);
                (aggregate.data.slot.0, r.map_err(malformed)?)
            };
            Ok((
                root_at(
                    fi,
                    DomainType::AGGREGATE_AND_PROOF,
                    network.epoch_at_slot(slot),
                    object_root,
                ),
                None,
            ))
        }
        SignKind::Deposit => {
            let d = req
                .deposit
                .as_ref()
                .ok_or_else(|| missing("deposit", kind))?;
            let object_root = ssz::DepositMessage::from(d).tree_hash_root().0;
            let domain = compute_domain(DomainType::DEPOSIT, d.genesis_fork_version.0, [0; 32]);
            Ok((compute_signing_root(object_root, domain), None))
        }
        SignKind::RandaoReveal => {
            let r = req
                .randao_reveal
                .as_ref()
                .ok_or_else(|| missing("randao_reveal", kind))?;
            let fi = fork_info(req)?;
            Ok((
                root_at(
                    fi,
                    DomainType::RANDAO,
                    r.epoch.0,
                    r.epoch.0.tree_hash_root().0,
                ),
                None,
            ))
        }
        SignKind::VoluntaryExit => {
            let e = req
                .voluntary_exit
                .as_ref()
                .ok_or_else(|| missing("voluntary_exit", kind))?;
            let fi = fork_info(req)?;
            let object_root = ssz::VoluntaryExit::from(e).tree_hash_root().0;
            let epoch = e.epoch.0;
            let root = if epoch >= network.deneb_fork_epoch {
                // EIP-7044: exits from Deneb on are signed under the Capella fork version.
                let domain = compute_domain(
                    DomainType::VOLUNTARY_EXIT,
                    network.capella_fork_version,
                    fi.genesis_validators_root.0,
                );
                compute_signing_root(object_root, domain)
            } else {
                root_at(fi, DomainType::VOLUNTARY_EXIT, epoch, object_root)
            };
            Ok((root, None))
        }
        SignKind::SyncCommitteeMessage => {
            let m = req
                .sync_committee_message
                .as_ref()
                .ok_or_else(|| missing("sync_committee_message", kind))?;
            let fi = fork_info(req)?;
            let epoch = network.epoch_at_slot(m.slot.0);
            Ok((
                root_at(fi, DomainType::SYNC_COMMITTEE, epoch, m.beacon_block_root.0),
                None,
            ))
        }
        SignKind::SyncCommitteeSelectionProof => {
            let s = req
                .sync_aggregator_selection_data
                .as_ref()
                .ok_or_else(|| missing("sync_aggregator_selection_data", kind))?;
            let fi = fork_info(req)?;
            let object_root = ssz::SyncAggregatorSelectionData::from(s).tree_hash_root().0;
            let epoch = network.epoch_at_slot(s.slot.0);
            Ok((
                root_at(
                    fi,
                    DomainType::SYNC_COMMITTEE_SELECTION_PROOF,
                    epoch,
                    object_root,
                ),
                None,
            ))
        }
        SignKind::SyncCommitteeContributionAndProof => {
            let c = req
                .contribution_and_proof
                .as_ref()
                .ok_or_else(|| missing("contribution_and_proof", kind))?;
            let fi = fork_info(req)?;
            let object_root = with_preset!(network, contribution_root(c)).map_err(malformed)?;
            let epoch = network.epoch_at_slot(c.contribution.slot.0);
            Ok((
                root_at(fi, DomainType::CONTRIBUTION_AND_PROOF, epoch, object_root),
                None,
            ))
        }
        SignKind::ValidatorRegistration => {
            let r = req
                .validator_registration
                .as_ref()
                .ok_or_else(|| missing("validator_registration", kind))?;
            let object_root = ssz::ValidatorRegistration::from(r).tree_hash_root().0;
            let domain = compute_domain(
                DomainType::APPLICATION_BUILDER,
                network.genesis_fork_version,
                [0; 32],
            );
            Ok((compute_signing_root(object_root, domain), None))
        }
    }
}
