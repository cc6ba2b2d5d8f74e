//! SSZ containers of the signed objects and their conversion from the wire types.
//!
//! Spec: consensus-specs `specs/phase0/beacon-chain.md`, `specs/altair/beacon-chain.md`,
//! `specs/altair/validator.md`, `specs/electra/beacon-chain.md`, builder-specs
//! `ValidatorRegistrationV1`. Hashing is `tree_hash` (derived), lists/bitfields are `ssz_types`.
//!
//! Invariants: list limits and bitfield sizes are the spec's, so a too-long list or a bitfield
//! of the wrong size is refused while converting (a 400), never hashed; sizes that differ by
//! preset come from a [`Preset`] type parameter.

use ssz_types::typenum::{
    Prod, Unsigned, U128, U131072, U16, U2, U2048, U32, U33, U4, U512, U64, U8, U8192,
};
use ssz_types::{BitList, BitVector, FixedVector, VariableList};
use tree_hash_derive::TreeHash;

use super::request as wire;

/// Why a payload cannot become an SSZ object (a 400).
pub(crate) type ConvertError = String;

/// Sizes that differ between the mainnet and minimal presets.
pub(crate) trait Preset {
    /// SYNC_COMMITTEE_SIZE.
    type SyncCommitteeSize: Unsigned + Clone;
    /// SYNC_COMMITTEE_SIZE / SYNC_COMMITTEE_SUBNET_COUNT.
    type SyncSubcommitteeSize: Unsigned + Clone;
    /// MAX_COMMITTEES_PER_SLOT.
    type MaxCommitteesPerSlot: Unsigned + Clone;
    /// MAX_VALIDATORS_PER_COMMITTEE * MAX_COMMITTEES_PER_SLOT (Electra attestation bits).
    type MaxValidatorsPerSlot: Unsigned + Clone;
}

/// The mainnet preset (also gnosis's for these sizes).
pub(crate) struct Mainnet;
impl Preset for Mainnet {
    type SyncCommitteeSize = U512;
    type SyncSubcommitteeSize = U128;
    type MaxCommitteesPerSlot = U64;
    type MaxValidatorsPerSlot = U131072;
}

/// The minimal preset.
pub(crate) struct Minimal;
impl Preset for Minimal {
    type SyncCommitteeSize = U32;
    type SyncSubcommitteeSize = U8;
    type MaxCommitteesPerSlot = U4;
    type MaxValidatorsPerSlot = U8192;
}

/// MAX_VALIDATORS_PER_COMMITTEE (same in both presets).
type MaxValidatorsPerCommittee = U2048;
/// MAX_ATTESTATIONS.
type MaxAttestations = U128;
/// DEPOSIT_CONTRACT_TREE_DEPTH + 1.
type DepositProofLength = U33;
/// MAX_PROPOSER_SLASHINGS, MAX_DEPOSITS, MAX_VOLUNTARY_EXITS.
type Max16 = U16;
/// MAX_ATTESTER_SLASHINGS.
type MaxAttesterSlashings = U2;

// Compile-time check of the Electra bit limit against its definition.
const _: () = assert!(
    <Prod<U2048, U64> as Unsigned>::USIZE == U131072::USIZE
        && <Prod<U2048, U4> as Unsigned>::USIZE == U8192::USIZE
);

/// `ForkData`.
#[derive(TreeHash)]
pub(crate) struct ForkData {
    pub(crate) current_version: [u8; 4],
    pub(crate) genesis_validators_root: [u8; 32],
}

/// `SigningData`.
#[derive(TreeHash)]
pub(crate) struct SigningData {
    pub(crate) object_root: [u8; 32],
    pub(crate) domain: [u8; 32],
}

/// `Checkpoint`.
#[derive(TreeHash)]
pub(crate) struct Checkpoint {
    epoch: u64,
    root: [u8; 32],
}

/// `AttestationData`.
#[derive(TreeHash)]
pub(crate) struct AttestationData {
    slot: u64,
    index: u64,
    beacon_block_root: [u8; 32],
    source: Checkpoint,
    target: Checkpoint,
}

impl From<&wire::AttestationData> for AttestationData {
    fn from(w: &wire::AttestationData) -> Self {
        Self {
            slot: w.slot.0,
            index: w.index.0,
            beacon_block_root: w.beacon_block_root.0,
            source: Checkpoint {
                epoch: w.source.epoch.0,
                root: w.source.root.0,
            },
            target: Checkpoint {
                epoch: w.target.epoch.0,
                root: w.target.root.0,
            },
        }
    }
}

/// `BeaconBlockHeader`.
#[derive(TreeHash)]
pub(crate) struct BeaconBlockHeader {
    slot: u64,
    proposer_index: u64,
    parent_root: [u8; 32],
    state_root: [u8; 32],
    body_root: [u8; 32],
}

impl From<&wire::BeaconBlockHeader> for BeaconBlockHeader {
    fn from(w: &wire::BeaconBlockHeader) -> Self {
        Self {
            slot: w.slot.0,
            proposer_index: w.proposer_index.0,
            parent_root: w.parent_root.0,
            state_root: w.state_root.0,
            body_root: w.body_root.0,
        }
    }
}

/// `SignedBeaconBlockHeader`.
#[derive(TreeHash)]
struct SignedBeaconBlockHeader {
    message: BeaconBlockHeader,
    signature: [u8; 96],
}

/// `ProposerSlashing`.
#[derive(TreeHash)]
struct ProposerSlashing {
    signed_header_1: SignedBeaconBlockHeader,
    signed_header_2: SignedBeaconBlockHeader,
}

/// `IndexedAttestation` (phase0 limits).
#[derive(TreeHash)]
struct IndexedAttestation {
    attesting_indices: VariableList<u64, MaxValidatorsPerCommittee>,
    data: AttestationData,
    signature: [u8; 96],
}

/// `AttesterSlashing`.
#[derive(TreeHash)]
struct AttesterSlashing {
    attestation_1: IndexedAttestation,
    attestation_2: IndexedAttestation,
}

/// `Attestation` (phase0).
#[derive(TreeHash)]
pub(crate) struct Attestation {
    aggregation_bits: BitList<MaxValidatorsPerCommittee>,
    data: AttestationData,
    signature: [u8; 96],
}

/// `Attestation` (Electra).
#[derive(TreeHash)]
pub(crate) struct AttestationElectra<P: Preset> {
    aggregation_bits: BitList<P::MaxValidatorsPerSlot>,
    data: AttestationData,
    signature: [u8; 96],
    committee_bits: BitVector<P::MaxCommitteesPerSlot>,
}

/// `DepositData`.
#[derive(TreeHash)]
struct DepositData {
    pubkey: [u8; 48],
    withdrawal_credentials: [u8; 32],
    amount: u64,
    signature: [u8; 96],
}

/// `Deposit`.
#[derive(TreeHash)]
struct Deposit {
    proof: FixedVector<[u8; 32], DepositProofLength>,
    data: DepositData,
}

/// `VoluntaryExit`.
#[derive(TreeHash)]
pub(crate) struct VoluntaryExit {
    epoch: u64,
    validator_index: u64,
}

impl From<&wire::VoluntaryExit> for VoluntaryExit {
    fn from(w: &wire::VoluntaryExit) -> Self {
        Self {
            epoch: w.epoch.0,
            validator_index: w.validator_index.0,
        }
    }
}

/// `SignedVoluntaryExit`.
#[derive(TreeHash)]
struct SignedVoluntaryExit {
    message: VoluntaryExit,
    signature: [u8; 96],
}

/// `Eth1Data`.
#[derive(TreeHash)]
struct Eth1Data {
    deposit_root: [u8; 32],
    deposit_count: u64,
    block_hash: [u8; 32],
}

/// `SyncAggregate` (Altair).
#[derive(TreeHash)]
struct SyncAggregate<P: Preset> {
    sync_committee_bits: BitVector<P::SyncCommitteeSize>,
    sync_committee_signature: [u8; 96],
}

/// `BeaconBlockBody` (phase0).
#[derive(TreeHash)]
struct BeaconBlockBody {
    randao_reveal: [u8; 96],
    eth1_data: Eth1Data,
    graffiti: [u8; 32],
    proposer_slashings: VariableList<ProposerSlashing, Max16>,
    attester_slashings: VariableList<AttesterSlashing, MaxAttesterSlashings>,
    attestations: VariableList<Attestation, MaxAttestations>,
    deposits: VariableList<Deposit, Max16>,
    voluntary_exits: VariableList<SignedVoluntaryExit, Max16>,
}

/// `BeaconBlockBody` (Altair).
#[derive(TreeHash)]
struct BeaconBlockBodyAltair<P: Preset> {
    randao_reveal: [u8; 96],
    eth1_data: Eth1Data,
    graffiti: [u8; 32],
    proposer_slashings: VariableList<ProposerSlashing, Max16>,
    attester_slashings: VariableList<AttesterSlashing, MaxAttesterSlashings>,
    attestations: VariableList<Attestation, MaxAttestations>,
    deposits: VariableList<Deposit, Max16>,
    voluntary_exits: VariableList<SignedVoluntaryExit, Max16>,
    sync_aggregate: SyncAggregate<P>,
}

/// `BeaconBlock` (phase0).
#[derive(TreeHash)]
pub(crate) struct BeaconBlock {
    slot: u64,
    proposer_index: u64,
    parent_root: [u8; 32],
    state_root: [u8; 32],
    body: BeaconBlockBody,
}

/// `BeaconBlock` (Altair).
#[derive(TreeHash)]
pub(crate) struct BeaconBlockAltair<P: Preset> {
    slot: u64,
    proposer_index: u64,
    parent_root: [u8; 32],
    state_root: [u8; 32],
    body: BeaconBlockBodyAltair<P>,
}

/// `AggregateAndProof` (phase0).
#[derive(TreeHash)]
pub(crate) struct AggregateAndProof {
    aggregator_index: u64,
    aggregate: Attestation,
    selection_proof: [u8; 96],
}

/// `AggregateAndProof` (Electra).
#[derive(TreeHash)]
pub(crate) struct AggregateAndProofElectra<P: Preset> {
    aggregator_index: u64,
    aggregate: AttestationElectra<P>,
    selection_proof: [u8; 96],
}

/// `DepositMessage`.
#[derive(TreeHash)]
pub(crate) struct DepositMessage {
    pubkey: [u8; 48],
    withdrawal_credentials: [u8; 32],
    amount: u64,
}

impl From<&wire::DepositMessage> for DepositMessage {
    fn from(w: &wire::DepositMessage) -> Self {
        Self {
            pubkey: w.pubkey.0,
            withdrawal_credentials: w.withdrawal_credentials.0,
            amount: w.amount.0,
        }
    }
}

/// `SyncAggregatorSelectionData`.
#[derive(TreeHash)]
pub(crate) struct SyncAggregatorSelectionData {
    slot: u64,
    subcommittee_index: u64,
}

impl From<&wire::SyncAggregatorSelectionData> for SyncAggregatorSelectionData {
    fn from(w: &wire::SyncAggregatorSelectionData) -> Self {
        Self {
            slot: w.slot.0,
            subcommittee_index: w.subcommittee_index.0,
        }
    }
}

/// `SyncCommitteeContribution`.
#[derive(TreeHash)]
struct SyncCommitteeContribution<P: Preset> {
    slot: u64,
    beacon_block_root: [u8; 32],
    subcommittee_index: u64,
    aggregation_bits: BitVector<P::SyncSubcommitteeSize>,
    signature: [u8; 96],
}

/// `ContributionAndProof`.
#[derive(TreeHash)]
pub(crate) struct ContributionAndProof<P: Preset> {
    aggregator_index: u64,
    contribution: SyncCommitteeContribution<P>,
    selection_proof: [u8; 96],
}

/// `ValidatorRegistrationV1` (builder-specs).
#[derive(TreeHash)]
pub(crate) struct ValidatorRegistration {
    fee_recipient: [u8; 20],
    gas_limit: u64,
    timestamp: u64,
    pubkey: [u8; 48],
}

impl From<&wire::ValidatorRegistration> for ValidatorRegistration {
    fn from(w: &wire::ValidatorRegistration) -> Self {
        Self {
            fee_recipient: w.fee_recipient.0,
            gas_limit: w.gas_limit.0,
            timestamp: w.timestamp.0,
            pubkey: w.pubkey.0,
        }
    }
}

fn list<T, N: Unsigned>(what: &str, items: Vec<T>) -> Result<VariableList<T, N>, ConvertError> {
    let len = items.len();
    VariableList::new(items)
        .map_err(|_| format!("{what}: {len} items exceed the limit {}", N::USIZE))
}

fn bitlist<N: Unsigned + Clone>(what: &str, b: &[u8]) -> Result<BitList<N>, ConvertError> {
    BitList::from_bytes(b.iter().copied().collect())
        .map_err(|e| format!("{what}: not an SSZ Bitlist[{}]: {e:?}", N::USIZE))
}

fn bitvector<N: Unsigned + Clone>(what: &str, b: &[u8]) -> Result<BitVector<N>, ConvertError> {
    BitVector::from_bytes(b.iter().copied().collect())
        .map_err(|e| format!("{what}: not an SSZ Bitvector[{}]: {e:?}", N::USIZE))
}

impl Attestation {
    fn from_wire(w: &wire::Attestation) -> Result<Self, ConvertError> {
        Ok(Self {
            aggregation_bits: bitlist("aggregation_bits", &w.aggregation_bits.0)?,
            data: (&w.data).into(),
            signature: w.signature.0,
        })
    }
}

impl<P: Preset> AttestationElectra<P> {
    fn from_wire(w: &wire::Attestation) -> Result<Self, ConvertError> {
        let committee_bits = w
            .committee_bits
            .as_ref()
            .ok_or_else(|| "electra aggregate without committee_bits".to_owned())?;
        Ok(Self {
            aggregation_bits: bitlist("aggregation_bits", &w.aggregation_bits.0)?,
            data: (&w.data).into(),
            signature: w.signature.0,
            committee_bits: bitvector("committee_bits", &committee_bits.0)?,
        })
    }
}

impl AggregateAndProof {
    /// Converts a phase0-shaped aggregate.
    pub(crate) fn from_wire(
        aggregator_index: u64,
        aggregate: &wire::Attestation,
        selection_proof: [u8; 96],
    ) -> Result<Self, ConvertError> {
        Ok(Self {
            aggregator_index,
            aggregate: Attestation::from_wire(aggregate)?,
            selection_proof,
        })
    }
}

impl<P: Preset> AggregateAndProofElectra<P> {
    /// Converts an Electra-shaped aggregate (`committee_bits` required).
    pub(crate) fn from_wire(
        aggregator_index: u64,
        aggregate: &wire::Attestation,
        selection_proof: [u8; 96],
    ) -> Result<Self, ConvertError> {
        Ok(Self {
            aggregator_index,
            aggregate: AttestationElectra::from_wire(aggregate)?,
            selection_proof,
        })
    }
}

/// `hash_tree_root(DepositData)`.
pub(crate) fn deposit_data_root(
    pubkey: [u8; 48],
    withdrawal_credentials: [u8; 32],
    amount: u64,
    signature: [u8; 96],
) -> [u8; 32] {
    tree_hash::TreeHash::tree_hash_root(&DepositData {
        pubkey,
        withdrawal_credentials,
        amount,
        signature,
    })
    .0
}

impl<P: Preset> ContributionAndProof<P> {
    /// Converts a contribution; its bitvector must have the preset's subcommittee size.
    pub(crate) fn from_wire(w: &wire::ContributionAndProof) -> Result<Self, ConvertError> {
        let c = &w.contribution;
        Ok(Self {
            aggregator_index: w.aggregator_index.0,
            contribution: SyncCommitteeContribution {
                slot: c.slot.0,
                beacon_block_root: c.beacon_block_root.0,
                subcommittee_index: c.subcommittee_index.0,
                aggregation_bits: bitvector("aggregation_bits", &c.aggregation_bits.0)?,
                signature: c.signature.0,
            },
            selection_proof: w.selection_proof.0,
        })
    }
}

fn header(w: &wire::SignedBeaconBlockHeader) -> SignedBeaconBlockHeader {
    SignedBeaconBlockHeader {
        message: (&w.message).into(),
        signature: w.signature.0,
    }
}

fn indexed(w: &wire::IndexedAttestation) -> Result<IndexedAttestation, ConvertError> {
    Ok(IndexedAttestation {
        attesting_indices: list(
            "attesting_indices",
            w.attesting_indices.iter().map(|i| i.0).collect(),
        )?,
        data: (&w.data).into(),
        signature: w.signature.0,
    })
}

/// The fields phase0 and Altair bodies share.
struct Phase0Fields {
    proposer_slashings: VariableList<ProposerSlashing, Max16>,
    attester_slashings: VariableList<AttesterSlashing, MaxAttesterSlashings>,
    attestations: VariableList<Attestation, MaxAttestations>,
    deposits: VariableList<Deposit, Max16>,
    voluntary_exits: VariableList<SignedVoluntaryExit, Max16>,
}

fn phase0_fields(b: &wire::BeaconBlockBody) -> Result<Phase0Fields, ConvertError> {
    let proposer_slashings = b
        .proposer_slashings
        .iter()
        .map(|p| ProposerSlashing {
            signed_header_1: header(&p.signed_header_1),
            signed_header_2: header(&p.signed_header_2),
        })
        .collect();
    let attester_slashings = b
        .attester_slashings
        .iter()
        .map(|a| {
            Ok(AttesterSlashing {
                attestation_1: indexed(&a.attestation_1)?,
                attestation_2: indexed(&a.attestation_2)?,
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let attestations = b
        .attestations
        .iter()
        .map(Attestation::from_wire)
        .collect::<Result<Vec<_>, _>>()?;
    let deposits = b
        .deposits
        .iter()
        .map(|d| {
            let proof = FixedVector::new(d.proof.iter().map(|r| r.0).collect()).map_err(|_| {
                format!(
                    "deposit proof: {} items, expected {}",
                    d.proof.len(),
                    DepositProofLength::USIZE
                )
            })?;
            Ok(Deposit {
                proof,
                data: DepositData {
                    pubkey: d.data.pubkey.0,
                    withdrawal_credentials: d.data.withdrawal_credentials.0,
                    amount: d.data.amount.0,
                    signature: d.data.signature.0,
                },
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let voluntary_exits = b
        .voluntary_exits
        .iter()
        .map(|e| SignedVoluntaryExit {
            message: (&e.message).into(),
            signature: e.signature.0,
        })
        .collect();
    Ok(Phase0Fields {
        proposer_slashings: list("proposer_slashings", proposer_slashings)?,
        attester_slashings: list("attester_slashings", attester_slashings)?,
        attestations: list("attestations", attestations)?,
        deposits: list("deposits", deposits)?,
        voluntary_exits: list("voluntary_exits", voluntary_exits)?,
    })
}

fn eth1(w: &wire::Eth1Data) -> Eth1Data {
    Eth1Data {
        deposit_root: w.deposit_root.0,
        deposit_count: w.deposit_count.0,
        block_hash: w.block_hash.0,
    }
}

impl BeaconBlock {
    /// Converts a full phase0 block (a `sync_aggregate`, if sent, is ignored).
    pub(crate) fn from_wire(w: &wire::BeaconBlock) -> Result<Self, ConvertError> {
        let f = phase0_fields(&w.body)?;
        Ok(Self {
            slot: w.slot.0,
            proposer_index: w.proposer_index.0,
            parent_root: w.parent_root.0,
            state_root: w.state_root.0,
            body: BeaconBlockBody {
                randao_reveal: w.body.randao_reveal.0,
                eth1_data: eth1(&w.body.eth1_data),
                graffiti: w.body.graffiti.0,
                proposer_slashings: f.proposer_slashings,
                attester_slashings: f.attester_slashings,
                attestations: f.attestations,
                deposits: f.deposits,
                voluntary_exits: f.voluntary_exits,
            },
        })
    }
}

impl<P: Preset> BeaconBlockAltair<P> {
    /// Converts a full Altair block (`sync_aggregate` required).
    pub(crate) fn from_wire(w: &wire::BeaconBlock) -> Result<Self, ConvertError> {
        let sa = w
            .body
            .sync_aggregate
            .as_ref()
            .ok_or_else(|| "altair block without sync_aggregate".to_owned())?;
        let f = phase0_fields(&w.body)?;
        Ok(Self {
            slot: w.slot.0,
            proposer_index: w.proposer_index.0,
            parent_root: w.parent_root.0,
            state_root: w.state_root.0,
            body: BeaconBlockBodyAltair {
                randao_reveal: w.body.randao_reveal.0,
                eth1_data: eth1(&w.body.eth1_data),
                graffiti: w.body.graffiti.0,
                proposer_slashings: f.proposer_slashings,
                attester_slashings: f.attester_slashings,
                attestations: f.attestations,
                deposits: f.deposits,
                voluntary_exits: f.voluntary_exits,
                sync_aggregate: SyncAggregate {
                    sync_committee_bits: bitvector(
                        "sync_committee_bits",
                        &sa.sync_committee_bits.0,
                    )?,
                    sync_committee_signature: sa.sync_committee_signature.0,
                },
            },
        })
    }
}
