//! Web3Signer sign requests → signing roots (INTERFACE STUB: the signing helper replaces this).
//!
//! Spec: Web3Signer eth2 signing API; consensus-specs `compute_domain`, `compute_signing_root`.

use crate::bls::SigningRoot;
use crate::slashing::SlashableMessage;

pub mod network;
pub use network::Network;

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
    /// The wire name, e.g. `"ATTESTATION"`.
    pub fn as_str(self) -> &'static str {
        todo!()
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
    let _ = (body, network);
    todo!()
}
