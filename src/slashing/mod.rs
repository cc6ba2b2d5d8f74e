//! EIP-3076 slashing protection (INTERFACE STUB: the slashing helper replaces this).

use crate::bls::{PublicKeyBytes, SigningRoot};

/// What the database checks for a block or attestation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlashableMessage {
    /// A block proposal at `slot`.
    Block {
        /// The block's slot.
        slot: u64,
    },
    /// An attestation vote.
    Attestation {
        /// Source checkpoint epoch.
        source_epoch: u64,
        /// Target checkpoint epoch.
        target_epoch: u64,
    },
}

/// Why a request was refused (412).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Placeholder.
    #[error("refused")]
    Refused,
}

/// Outcome of a check-and-record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// New message, recorded durably.
    Allowed,
    /// Identical to a recorded message.
    Repeat,
    /// Slashable or otherwise refused; nothing recorded.
    Refused(Refusal),
}

/// Database errors (500).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Placeholder.
    #[error("db: {0}")]
    Db(String),
}

/// A slashing-protection database handle (cheap to clone).
#[derive(Clone)]
pub struct SlashingDb;

impl SlashingDb {
    /// Opens `sqlite:PATH` or `postgres://…`, applying migrations.
    ///
    /// # Errors
    /// [`Error`] when the database cannot be opened or migrated.
    pub async fn open(url: &str) -> Result<Self, Error> {
        let _ = url;
        todo!()
    }

    /// Atomically checks `msg` against the history of `pubkey` and records it when allowed;
    /// the record is durable before this returns.
    ///
    /// # Errors
    /// [`Error`] on database failure (never for a refusal).
    pub async fn check_and_record(
        &self,
        pubkey: PublicKeyBytes,
        genesis_validators_root: [u8; 32],
        msg: SlashableMessage,
        root: SigningRoot,
    ) -> Result<Verdict, Error> {
        let _ = (pubkey, genesis_validators_root, msg, root);
        todo!()
    }

    /// Health probe (`SELECT 1`).
    ///
    /// # Errors
    /// [`Error`] when the database does not answer.
    pub async fn ping(&self) -> Result<(), Error> {
        todo!()
    }
}

/// Summary of an import (stub).
#[derive(Debug)]
pub struct ImportReport;

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stub")
    }
}

impl SlashingDb {
    /// Imports an interchange (stub).
    ///
    /// # Errors
    /// Always in the stub.
    pub async fn import_interchange(&self, json: &str) -> Result<ImportReport, Error> {
        let _ = json;
        todo!()
    }

    /// Exports an interchange (stub).
    ///
    /// # Errors
    /// Always in the stub.
    pub async fn export_interchange(&self, filter: Option<&[PublicKeyBytes]>) -> Result<String, Error> {
        let _ = filter;
        todo!()
    }
}
