//! Web3Signer sign request wire types (serde only, no logic).
//!
//! Spec: Web3Signer eth2 signing API, `openapi-specs/eth2/signing/schemas.yaml`.
//!
//! Tolerant like Web3Signer (Jackson): unknown fields are ignored, every payload key is optional
//! here (a missing payload is a 500 in Web3Signer, decided in [`super::prepare`]), nested fields
//! are required (a missing one is a 400). One flat body type holds every payload key, as
//! Web3Signer's own request body does, so a malformed value under any known key is a 400.

use serde::Deserialize;

use super::json::{Bytes, HexBytes, U64};
use super::SignKind;

/// 32 bytes (roots, graffiti, credentials).
pub(crate) type Root = Bytes<32>;
/// A compressed BLS signature.
pub(crate) type Sig = Bytes<96>;
/// A compressed BLS public key.
pub(crate) type Pubkey = Bytes<48>;
/// A fork version.
pub(crate) type Version = Bytes<4>;

/// The body of `POST /api/v1/eth2/sign/{identifier}`.
#[derive(Debug, Deserialize)]
pub(crate) struct SignRequest {
    #[serde(rename = "type")]
    pub(crate) kind: SignKind,
    #[serde(default, alias = "signingRoot")]
    pub(crate) signing_root: Option<Root>,
    #[serde(default)]
    pub(crate) fork_info: Option<ForkInfo>,
    #[serde(default)]
    pub(crate) block: Option<BeaconBlock>,
    #[serde(default)]
    pub(crate) beacon_block: Option<BlockRequest>,
    #[serde(default)]
    pub(crate) attestation: Option<AttestationData>,
    #[serde(default)]
    pub(crate) aggregation_slot: Option<AggregationSlot>,
    #[serde(default)]
    pub(crate) aggregate_and_proof: Option<AggregateAndProofField>,
    #[serde(default)]
    pub(crate) deposit: Option<DepositMessage>,
    #[serde(default)]
    pub(crate) randao_reveal: Option<RandaoReveal>,
    #[serde(default)]
    pub(crate) voluntary_exit: Option<VoluntaryExit>,
    #[serde(default)]
    pub(crate) sync_committee_message: Option<SyncCommitteeMessage>,
    #[serde(default)]
    pub(crate) sync_aggregator_selection_data: Option<SyncAggregatorSelectionData>,
    #[serde(default)]
    pub(crate) contribution_and_proof: Option<ContributionAndProof>,
    #[serde(default)]
    pub(crate) validator_registration: Option<ValidatorRegistration>,
}

/// `fork_info`.
#[derive(Debug, Deserialize)]
pub(crate) struct ForkInfo {
    pub(crate) fork: Fork,
    pub(crate) genesis_validators_root: Root,
}

/// `fork_info.fork`.
#[derive(Debug, Deserialize)]
pub(crate) struct Fork {
    pub(crate) previous_version: Version,
    pub(crate) current_version: Version,
    pub(crate) epoch: U64,
}

/// `beacon_block` of BLOCK_V2: `block` up to Altair, `block_header` from Bellatrix on.
#[derive(Debug, Deserialize)]
pub(crate) struct BlockRequest {
    pub(crate) version: String,
    #[serde(default)]
    pub(crate) block: Option<BeaconBlock>,
    #[serde(default)]
    pub(crate) block_header: Option<BeaconBlockHeader>,
}

/// A full phase0 or Altair beacon block.
#[derive(Debug, Deserialize)]
pub(crate) struct BeaconBlock {
    pub(crate) slot: U64,
    pub(crate) proposer_index: U64,
    pub(crate) parent_root: Root,
    pub(crate) state_root: Root,
    pub(crate) body: BeaconBlockBody,
}

/// A phase0 body, plus Altair's `sync_aggregate` when present.
#[derive(Debug, Deserialize)]
pub(crate) struct BeaconBlockBody {
    pub(crate) randao_reveal: Sig,
    pub(crate) eth1_data: Eth1Data,
    pub(crate) graffiti: Root,
    pub(crate) proposer_slashings: Vec<ProposerSlashing>,
    pub(crate) attester_slashings: Vec<AttesterSlashing>,
    pub(crate) attestations: Vec<Attestation>,
    pub(crate) deposits: Vec<Deposit>,
    pub(crate) voluntary_exits: Vec<SignedVoluntaryExit>,
    #[serde(default)]
    pub(crate) sync_aggregate: Option<SyncAggregate>,
}

/// `Eth1Data`.
#[derive(Debug, Deserialize)]
pub(crate) struct Eth1Data {
    pub(crate) deposit_root: Root,
    pub(crate) deposit_count: U64,
    pub(crate) block_hash: Root,
}

/// `BeaconBlockHeader`.
#[derive(Debug, Deserialize)]
pub(crate) struct BeaconBlockHeader {
    pub(crate) slot: U64,
    pub(crate) proposer_index: U64,
    pub(crate) parent_root: Root,
    pub(crate) state_root: Root,
    pub(crate) body_root: Root,
}

/// `SignedBeaconBlockHeader`.
#[derive(Debug, Deserialize)]
pub(crate) struct SignedBeaconBlockHeader {
    pub(crate) message: BeaconBlockHeader,
    pub(crate) signature: Sig,
}

/// `ProposerSlashing`.
#[derive(Debug, Deserialize)]
pub(crate) struct ProposerSlashing {
    pub(crate) signed_header_1: SignedBeaconBlockHeader,
    pub(crate) signed_header_2: SignedBeaconBlockHeader,
}

/// `IndexedAttestation` (phase0).
#[derive(Debug, Deserialize)]
pub(crate) struct IndexedAttestation {
    pub(crate) attesting_indices: Vec<U64>,
    pub(crate) data: AttestationData,
    pub(crate) signature: Sig,
}

/// `AttesterSlashing`.
#[derive(Debug, Deserialize)]
pub(crate) struct AttesterSlashing {
    pub(crate) attestation_1: IndexedAttestation,
    pub(crate) attestation_2: IndexedAttestation,
}

/// `Attestation`; `committee_bits` present from Electra on.
#[derive(Debug, Deserialize)]
pub(crate) struct Attestation {
    pub(crate) aggregation_bits: HexBytes,
    pub(crate) data: AttestationData,
    pub(crate) signature: Sig,
    #[serde(default)]
    pub(crate) committee_bits: Option<HexBytes>,
}

/// `Deposit` (with its Merkle proof).
#[derive(Debug, Deserialize)]
pub(crate) struct Deposit {
    pub(crate) proof: Vec<Root>,
    pub(crate) data: DepositData,
}

/// `DepositData`.
#[derive(Debug, Deserialize)]
pub(crate) struct DepositData {
    pub(crate) pubkey: Pubkey,
    pub(crate) withdrawal_credentials: Root,
    pub(crate) amount: U64,
    pub(crate) signature: Sig,
}

/// `SignedVoluntaryExit`.
#[derive(Debug, Deserialize)]
pub(crate) struct SignedVoluntaryExit {
    pub(crate) message: VoluntaryExit,
    pub(crate) signature: Sig,
}

/// `SyncAggregate` (Altair).
#[derive(Debug, Deserialize)]
pub(crate) struct SyncAggregate {
    pub(crate) sync_committee_bits: HexBytes,
    pub(crate) sync_committee_signature: Sig,
}

/// `AttestationData`.
#[derive(Debug, Deserialize)]
pub(crate) struct AttestationData {
    pub(crate) slot: U64,
    pub(crate) index: U64,
    pub(crate) beacon_block_root: Root,
    pub(crate) source: Checkpoint,
    pub(crate) target: Checkpoint,
}

/// `Checkpoint`.
#[derive(Debug, Deserialize)]
pub(crate) struct Checkpoint {
    pub(crate) epoch: U64,
    pub(crate) root: Root,
}

/// `aggregation_slot`.
#[derive(Debug, Deserialize)]
pub(crate) struct AggregationSlot {
    pub(crate) slot: U64,
}

/// `aggregate_and_proof`: the v1 shape (`aggregator_index`, `aggregate`, `selection_proof`) or
/// the V2 shape (`version`, `data`), under the same key.
#[derive(Debug, Deserialize)]
pub(crate) struct AggregateAndProofField {
    #[serde(default)]
    pub(crate) version: Option<String>,
    #[serde(default)]
    pub(crate) data: Option<AggregateAndProof>,
    #[serde(default)]
    pub(crate) aggregator_index: Option<U64>,
    #[serde(default)]
    pub(crate) aggregate: Option<Attestation>,
    #[serde(default)]
    pub(crate) selection_proof: Option<Sig>,
}

/// `AggregateAndProof`.
#[derive(Debug, Deserialize)]
pub(crate) struct AggregateAndProof {
    pub(crate) aggregator_index: U64,
    pub(crate) aggregate: Attestation,
    pub(crate) selection_proof: Sig,
}

/// `deposit`: a `DepositMessage` plus the fork version to sign under.
#[derive(Debug, Deserialize)]
pub(crate) struct DepositMessage {
    pub(crate) pubkey: Pubkey,
    pub(crate) withdrawal_credentials: Root,
    pub(crate) amount: U64,
    pub(crate) genesis_fork_version: Version,
}

/// `randao_reveal`.
#[derive(Debug, Deserialize)]
pub(crate) struct RandaoReveal {
    pub(crate) epoch: U64,
}

/// `VoluntaryExit`.
#[derive(Debug, Deserialize)]
pub(crate) struct VoluntaryExit {
    pub(crate) epoch: U64,
    pub(crate) validator_index: U64,
}

/// `sync_committee_message`.
#[derive(Debug, Deserialize)]
pub(crate) struct SyncCommitteeMessage {
    pub(crate) beacon_block_root: Root,
    pub(crate) slot: U64,
}

/// `SyncAggregatorSelectionData`.
#[derive(Debug, Deserialize)]
pub(crate) struct SyncAggregatorSelectionData {
    pub(crate) slot: U64,
    pub(crate) subcommittee_index: U64,
}

/// `ContributionAndProof`.
#[derive(Debug, Deserialize)]
pub(crate) struct ContributionAndProof {
    pub(crate) aggregator_index: U64,
    pub(crate) selection_proof: Sig,
    pub(crate) contribution: SyncCommitteeContribution,
}

/// `SyncCommitteeContribution`.
#[derive(Debug, Deserialize)]
pub(crate) struct SyncCommitteeContribution {
    pub(crate) slot: U64,
    pub(crate) beacon_block_root: Root,
    pub(crate) subcommittee_index: U64,
    pub(crate) aggregation_bits: HexBytes,
    pub(crate) signature: Sig,
}

/// `ValidatorRegistrationV1`.
#[derive(Debug, Deserialize)]
pub(crate) struct ValidatorRegistration {
    pub(crate) fee_recipient: Bytes<20>,
    pub(crate) gas_limit: U64,
    pub(crate) timestamp: U64,
    pub(crate) pubkey: Pubkey,
}
