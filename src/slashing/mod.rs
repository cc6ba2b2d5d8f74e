//! EIP-3076 slashing protection: an embedded SQLite database (default) or a shared PostgreSQL
//! one, with interchange import/export, pruning, and group commit.
//!
//! Spec: <https://eips.ethereum.org/EIPS/eip-3076>; rules as Web3Signer applies them
//! (`docs/web3signer-compatibility.md`, "Slashing protection rules"). The database keeps every
//! signed message with its signing root (EIP-3076's *complete* strategy), so an identical
//! re-sign is a [`Verdict::Repeat`] and only slashable messages, or messages at or below the low
//! watermarks, are refused:
//! - block: refused when a different root, or an unknown (imported `null`) root, is stored at
//!   the slot, or when the slot is at or below the low watermark;
//! - attestation: refused when `source > target`; when another vote (or an unknown root) is
//!   stored at the target; when `source` is below, or `target` at or below, the watermarks;
//!   when it surrounds, or is surrounded by, a stored vote;
//! - high watermark (global, Web3Signer's): when one is set, every validator's blocks at or
//!   above its slot and attestations whose source or target is at or above its epoch are
//!   refused, repeats included. It is read inside every check's transaction, so a change made
//!   by `dvsigner slashing-protection high-watermark` applies to running nodes from their next
//!   request.
//!
//! Invariants:
//! - **atomic**: all access goes through one writer (a dedicated thread per [`SlashingDb`])
//!   that runs each batch in one transaction; PostgreSQL additionally locks each validator's
//!   row (`FOR UPDATE`) and SQLite holds its write lock (`BEGIN IMMEDIATE`), so two processes
//!   sharing a database cannot both pass a check for one validator;
//! - **durable**: [`SlashingDb::check_and_record`] returns only after `COMMIT` (SQLite WAL with
//!   `synchronous=FULL`; PostgreSQL commit);
//! - **group commit**: concurrent requests are coalesced into one transaction (one fsync);
//!   a refusal inside a batch records nothing and does not affect the others, and a database
//!   error makes the batch fall back to one transaction per request;
//! - the genesis validators root is stored on first use (or import); requests for another
//!   chain are refused and imports for another chain fail.
//!
//! Layout: `rules.rs` (the rules, import/export/prune, over a `Store` trait), `sqlite.rs`,
//! `postgres.rs` (the two stores and their migrations), `interchange.rs` (wire types).

mod agreement;
pub mod interchange;
mod pg_tls;
mod postgres;
mod rules;
mod sqlite;

pub use pg_tls::{check_url as check_postgres_url, SslMode};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::agreement::{InstanceId, Persisted, Root as AgreementRoot};
use crate::bls::{PublicKeyBytes, SigningRoot};
use crate::http::PoolLoad;
use crate::progress::Progress;
use interchange::Hash256;
use rules::Store;

/// Largest number of check-and-record requests committed in one transaction. Batches are
/// taken from what queued up during the previous one, so this only bounds bursts: there, a
/// smaller batch answers its first requests sooner (their signing starts while the next batch
/// runs), at the price of one more commit per this many requests.
const MAX_BATCH: usize = 1024;

/// Longest a check waits for the signing pool to run short before its batch commits anyway
/// (see [`SlashingDb::pace_commits_by`]); under ordinary load the pool runs short long before.
pub const PACE_WAIT: Duration = Duration::from_millis(10);

/// Depth of the writer's request queue (senders wait when it is full).
const QUEUE_DEPTH: usize = 65_536;

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

/// A global ceiling (Web3Signer's high watermark): blocks at or above `slot` and attestations
/// whose source or target epoch is at or above `epoch` are refused for every validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HighWatermark {
    /// First epoch no attestation may have as source or target.
    pub epoch: u64,
    /// First slot no block may be proposed at.
    pub slot: u64,
}

/// The JSON form of a high watermark that `GET /api/v1/eth2/highWatermark` answers:
/// `{"epoch":"E","slot":"S"}` (decimal strings), or `{}` when none is set.
pub fn high_watermark_json(hw: Option<HighWatermark>) -> serde_json::Value {
    match hw {
        Some(hw) => serde_json::json!({"epoch": hw.epoch.to_string(), "slot": hw.slot.to_string()}),
        None => serde_json::json!({}),
    }
}

/// Why a request was refused (HTTP 412). Nothing is recorded for a refused request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Another block with a different signing root was signed at this slot.
    #[error("double block proposal at slot {slot}: already signed root {}", existing_root.to_hex())]
    DoubleBlockProposal {
        /// The requested slot.
        slot: u64,
        /// The root already signed there.
        existing_root: SigningRoot,
    },
    /// A block was imported at this slot without a signing root, so no block may be signed
    /// there.
    #[error("a block with unknown signing root is recorded at slot {slot}")]
    NullRootAtSlot {
        /// The requested slot.
        slot: u64,
    },
    /// The slot is at or below the validator's low watermark (and not a repeat).
    #[error("block slot {slot} is at or below the low watermark {watermark}")]
    BlockSlotBelowWatermark {
        /// The requested slot.
        slot: u64,
        /// The lowest slot that may still be signed, as a repeat only.
        watermark: u64,
    },
    /// The attestation's source epoch is greater than its target epoch.
    #[error("attestation source epoch {source_epoch} is greater than target epoch {target_epoch}")]
    SourceGreaterThanTarget {
        /// Source epoch.
        source_epoch: u64,
        /// Target epoch.
        target_epoch: u64,
    },
    /// Another attestation with this target epoch was signed.
    #[error("double vote at target epoch {target_epoch}: already signed source {existing_source} with root {}", existing_root.to_hex())]
    DoubleVote {
        /// The requested target epoch.
        target_epoch: u64,
        /// The stored vote's source epoch.
        existing_source: u64,
        /// The stored vote's signing root.
        existing_root: SigningRoot,
    },
    /// An attestation was imported at this target without a signing root, so no attestation
    /// may be signed with this target.
    #[error("an attestation with unknown signing root is recorded at target epoch {target_epoch}")]
    NullRootAtTarget {
        /// The requested target epoch.
        target_epoch: u64,
    },
    /// The request surrounds a stored vote (`new.source < old.source`, `old.target < new.target`).
    #[error("attestation {source_epoch}→{target_epoch} surrounds signed attestation {existing_source}→{existing_target}")]
    SurroundingVote {
        /// Requested source epoch.
        source_epoch: u64,
        /// Requested target epoch.
        target_epoch: u64,
        /// The surrounded vote's source.
        existing_source: u64,
        /// The surrounded vote's target.
        existing_target: u64,
    },
    /// The request is surrounded by a stored vote (`old.source < new.source`,
    /// `new.target < old.target`).
    #[error("attestation {source_epoch}→{target_epoch} is surrounded by signed attestation {existing_source}→{existing_target}")]
    SurroundedVote {
        /// Requested source epoch.
        source_epoch: u64,
        /// Requested target epoch.
        target_epoch: u64,
        /// The surrounding vote's source.
        existing_source: u64,
        /// The surrounding vote's target.
        existing_target: u64,
    },
    /// The source epoch is below the validator's low source watermark.
    #[error("attestation source epoch {source_epoch} is below the low watermark {watermark}")]
    SourceBelowWatermark {
        /// Requested source epoch.
        source_epoch: u64,
        /// Lowest source epoch that may be signed.
        watermark: u64,
    },
    /// The target epoch is at or below the validator's low target watermark (and not a repeat).
    #[error(
        "attestation target epoch {target_epoch} is at or below the low watermark {watermark}"
    )]
    TargetBelowWatermark {
        /// Requested target epoch.
        target_epoch: u64,
        /// The lowest target epoch that may still be signed, as a repeat only.
        watermark: u64,
    },
    /// The request is for another chain than the one the database belongs to.
    #[error("genesis validators root {} differs from the database's {}", requested.to_hex(), stored.to_hex())]
    WrongGenesisValidatorsRoot {
        /// The root the database stores.
        stored: SigningRoot,
        /// The root of the request.
        requested: SigningRoot,
    },
    /// A high watermark is set and the block's slot is at or above it.
    #[error("block slot {slot} is at or above the high watermark (epoch {}, slot {})", high_watermark.epoch, high_watermark.slot)]
    BlockAtHighWatermark {
        /// The requested slot.
        slot: u64,
        /// The high watermark.
        high_watermark: HighWatermark,
    },
    /// A high watermark is set and the attestation's source or target epoch is at or above it.
    #[error("attestation {source_epoch}→{target_epoch} reaches the high watermark (epoch {}, slot {})", high_watermark.epoch, high_watermark.slot)]
    AttestationAtHighWatermark {
        /// Requested source epoch.
        source_epoch: u64,
        /// Requested target epoch.
        target_epoch: u64,
        /// The high watermark.
        high_watermark: HighWatermark,
    },
    /// The validator was disabled (keymanager delete); only an import enables it again.
    #[error("validator {pubkey} is disabled")]
    ValidatorDisabled {
        /// The validator.
        pubkey: PublicKeyBytes,
    },
}

/// Outcome of a check-and-record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// New message, recorded durably.
    Allowed,
    /// Identical to a recorded message (same slot or epochs, same signing root): safe to sign.
    Repeat,
    /// Slashable or otherwise refused; nothing recorded.
    Refused(Refusal),
}

impl Verdict {
    /// Whether the message may be signed (`Allowed` or `Repeat`).
    pub fn is_safe(&self) -> bool {
        matches!(self, Self::Allowed | Self::Repeat)
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Distinct validators in the document.
    pub validators: usize,
    /// Block entries stored.
    pub blocks: usize,
    /// Attestation entries stored.
    pub attestations: usize,
    /// Entries already stored identically (not stored twice).
    pub skipped: usize,
}

/// Counters an interchange import or export advances while it runs (in the writer's
/// transaction), for a caller to show: validators (an import knows their total up front, an
/// export sets it once it has listed them) and records (blocks and attestations; an import
/// sets the total up front, an export only counts).
#[derive(Debug, Clone)]
pub struct InterchangeProgress {
    /// Validator entries done / total.
    pub validators: Arc<Progress>,
    /// Block and attestation records done (/ total for an import).
    pub records: Arc<Progress>,
}

impl Default for InterchangeProgress {
    fn default() -> Self {
        Self {
            validators: Arc::new(Progress::new(0)),
            records: Arc::new(Progress::new(0)),
        }
    }
}

/// Database, corruption and interchange errors (HTTP 500; never used for a refusal).
///
/// Each message carries its cause in its own text and exposes no `source()`, so a chain printer
/// (`{:#}`) says every part once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL is neither `sqlite:PATH`, a path, nor `postgres://…`.
    #[error("unsupported slashing database url {0:?}")]
    InvalidUrl(String),
    /// A file-system operation on the SQLite file failed.
    #[error("slashing database file {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        error: std::io::Error,
    },
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    /// PostgreSQL failed on an open connection (the server's message, or the kind and cause).
    #[error("postgres: {}", pg_tls::describe(.0))]
    Postgres(tokio_postgres::Error),
    /// A PostgreSQL URL parameter or TLS file is unusable.
    #[error("postgres settings: {0}")]
    PostgresSettings(String),
    /// A connection to PostgreSQL could not be made (TLS, authentication, network).
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    PostgresConnect {
        /// The hosts and the effective `sslmode`.
        target: String,
        /// Why, said once (the server's message for a refusal).
        reason: String,
    },
    /// The database holds something this code never writes.
    #[error("corrupt slashing database: {0}")]
    Corrupt(String),
    /// The database was migrated by a newer dvsigner.
    #[error("database schema version {found} is newer than the supported {supported}")]
    SchemaTooNew {
        /// Version found.
        found: u64,
        /// Highest version this build knows.
        supported: u64,
    },
    /// A slot or epoch does not fit the database's signed 64-bit integers.
    #[error("slot or epoch {value} is out of range (max 2^63-1)")]
    OutOfRange {
        /// The value.
        value: u64,
    },
    /// The interchange document is not valid JSON of the EIP-3076 schema.
    #[error("invalid interchange document: {0}")]
    InvalidInterchange(String),
    /// The interchange format version is not "5".
    #[error("unsupported interchange format version {0:?} (only \"5\")")]
    UnsupportedInterchangeVersion(String),
    /// The interchange belongs to another chain than the database.
    #[error("interchange genesis validators root {interchange:?} differs from the database's {database:?}")]
    GenesisValidatorsRootMismatch {
        /// The database's root.
        database: Hash256,
        /// The document's root.
        interchange: Hash256,
    },
    /// Export was asked before any request or import stored a genesis validators root.
    #[error("the database has no genesis validators root yet")]
    NoGenesisValidatorsRoot,
    /// The database server could not be reached again after its connection was lost.
    #[error("slashing database unavailable: {0}")]
    Unavailable(String),
    /// The writer thread stopped (it panicked or could not start).
    #[error("slashing database writer stopped")]
    WriterStopped,
    /// An agreement instance already has a stored decision with another root; a decision
    /// never changes, so nothing was stored.
    #[error("agreement decision conflict for {instance}: decided root 0x{} is stored, refusing to store root 0x{}", hex::encode(stored), hex::encode(requested))]
    DecisionConflict {
        /// The instance (validator and duty).
        instance: String,
        /// The stored decided root.
        stored: crate::agreement::Root,
        /// The root of the decision that was to be stored.
        requested: crate::agreement::Root,
    },
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

/// Parses an EIP-3076 document and checks its version and ranges, before any database work
/// (what [`SlashingDb::import_interchange`] does first).
///
/// # Errors
/// [`Error::InvalidInterchange`], [`Error::UnsupportedInterchangeVersion`],
/// [`Error::OutOfRange`].
pub fn parse_interchange(json: &str) -> Result<interchange::Interchange, Error> {
    rules::parse_interchange(json)
}

/// A slashing-protection database handle (cheap to clone; all clones share one writer).
#[derive(Clone)]
pub struct SlashingDb {
    queue: Arc<mpsc::Sender<Job>>,
    backend: Backend,
    pace: Arc<Pace>,
}

/// What the writer follows to decide when a batch of checks is complete, and what it counts.
#[derive(Default)]
struct Pace {
    /// The pool that signs what the checks allow (once the node has one), and the longest a
    /// check waits for it.
    signers: OnceLock<(PoolLoad, Duration)>,
    /// Transactions that committed checks.
    commits: AtomicU64,
}

impl Pace {
    /// Called with the first job of a batch. Where the checks' signatures are made on a pool
    /// that is busy, the batch stays open until that pool is about to run out of work (or the
    /// longest wait passed): its checks could not be signed sooner anyway, and one transaction
    /// and one fsync then serve every check that queued up meanwhile, instead of one per
    /// check or two. An idle pool, or an operation that is not a check, waits for nothing.
    fn wait(&self, first: &Job) {
        if matches!(first, Job::Op(_)) {
            return;
        }
        if let Some((signers, longest)) = self.signers.get() {
            signers.wait_until_short(Instant::now() + *longest);
        }
    }

    fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global().count_slashing_commit();
    }
}

/// Which backend a [`SlashingDb`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

fn parse_url(url: &str) -> Result<Location, Error> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Location::Postgres(url.to_owned()));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(Error::InvalidUrl(redact(url)));
    }
    Ok(Location::Sqlite(PathBuf::from(path)))
}

struct CheckJob {
    pubkey: PublicKeyBytes,
    gvr: [u8; 32],
    msg: SlashableMessage,
    root: SigningRoot,
    reply: oneshot::Sender<Result<Verdict, Error>>,
}

/// Validators per pruning transaction ([`SlashingDb::prune`]).
pub const PRUNE_CHUNK: usize = 32;

enum Op {
    Ping(oneshot::Sender<Result<(), Error>>),
    EnsureGvr([u8; 32], oneshot::Sender<Result<(), Error>>),
    GetGvr(oneshot::Sender<Result<Option<[u8; 32]>, Error>>),
    Register(Vec<PublicKeyBytes>, oneshot::Sender<Result<(), Error>>),
    SetEnabled(PublicKeyBytes, bool, oneshot::Sender<Result<(), Error>>),
    Import(
        Box<interchange::Interchange>,
        Option<InterchangeProgress>,
        oneshot::Sender<Result<ImportReport, Error>>,
    ),
    Export(
        Option<Vec<PublicKeyBytes>>,
        Option<InterchangeProgress>,
        oneshot::Sender<Result<interchange::Interchange, Error>>,
    ),
    /// The registered validator keys (the list pruning walks in chunks).
    ValidatorKeys(oneshot::Sender<Result<Vec<PublicKeyBytes>, Error>>),
    /// Prunes the history of these validators, in one transaction.
    PruneValidators {
        keys: Vec<PublicKeyBytes>,
        epochs_to_keep: u64,
        slots_per_epoch: u64,
        reply: oneshot::Sender<Result<u64, Error>>,
    },
    /// Prunes the agreement instances of every key, in one transaction.
    PruneAgreement {
        epochs_to_keep: u64,
        slots_per_epoch: u64,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    InitialWatermarks {
        pubkeys: Vec<PublicKeyBytes>,
        slot: u64,
        epoch: u64,
        reply: oneshot::Sender<Result<usize, Error>>,
    },
    HighWatermark(oneshot::Sender<Result<Option<HighWatermark>, Error>>),
    AgreementState(
        InstanceId,
        oneshot::Sender<Result<Option<Persisted>, Error>>,
    ),
    StoreAgreementState(
        InstanceId,
        Box<Persisted>,
        oneshot::Sender<Result<(), Error>>,
    ),
    AgreementDecision(
        InstanceId,
        oneshot::Sender<Result<Option<AgreementRoot>, Error>>,
    ),
    SetHighWatermark(
        Option<HighWatermark>,
        oneshot::Sender<Result<Option<HighWatermark>, Error>>,
    ),
}

enum Job {
    Check(CheckJob),
    /// Checks that must run in one batch, in this order.
    Batch(Vec<CheckJob>),
    Op(Op),
}

impl SlashingDb {
    /// Opens `sqlite:PATH` (or a bare path) or `postgres://…` / `postgresql://…`, creating the
    /// SQLite file with mode 0600 and applying migrations, and starts the writer thread.
    ///
    /// # Errors
    /// [`Error`] when the URL is not understood or the database cannot be opened or migrated.
    pub async fn open(url: &str) -> Result<Self, Error> {
        let location = parse_url(url)?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (ready_tx, ready_rx) = oneshot::channel();
        let pace = Arc::new(Pace::default());
        let writer_pace = pace.clone();
        let backend = match location {
            Location::Sqlite(path) => {
                std::thread::Builder::new()
                    .name("slashing-sqlite".into())
                    .spawn(move || sqlite_writer(path, rx, ready_tx, writer_pace))
                    .map_err(|e| Error::Io {
                        path: "writer thread".into(),
                        error: e,
                    })?;
                Backend::Sqlite
            }
            Location::Postgres(url) => {
                std::thread::Builder::new()
                    .name("slashing-postgres".into())
                    .spawn(move || postgres_writer(url, rx, ready_tx, writer_pace))
                    .map_err(|e| Error::Io {
                        path: "writer thread".into(),
                        error: e,
                    })?;
                Backend::Postgres
            }
        };
        ready_rx.await.map_err(|_| Error::WriterStopped)??;
        Ok(Self {
            queue: Arc::new(tx),
            backend,
            pace,
        })
    }

    /// Group commit paced by the pool that signs what the checks allow: while that pool has
    /// work queued, the writer keeps collecting checks into one transaction and commits when
    /// the pool is about to run out (every record is still durable before its verdict is
    /// sent). Without this, each commit takes whatever queued during the previous one, which
    /// at the signing rate of a node is one check or two. No check waits longer than
    /// `longest_wait` for the pool ([`PACE_WAIT`] in a node). Set once; later calls are ignored.
    pub fn pace_commits_by(&self, signers: PoolLoad, longest_wait: Duration) {
        let _ = self.pace.signers.set((signers, longest_wait));
    }

    /// Transactions that committed checks since the database was opened (each one fsync).
    pub fn commits(&self) -> u64 {
        self.pace.commits.load(Ordering::Relaxed)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Atomically checks `msg` against the history of `pubkey` and records it when allowed;
    /// the record is durable before this returns. Unknown validators are registered on first
    /// use; the first request (or import) stores the genesis validators root.
    ///
    /// # Errors
    /// [`Error`] on database failure (never for a refusal, which is `Ok(Verdict::Refused)`).
    pub async fn check_and_record(
        &self,
        pubkey: PublicKeyBytes,
        genesis_validators_root: [u8; 32],
        msg: SlashableMessage,
        root: SigningRoot,
    ) -> Result<Verdict, Error> {
        let (reply, rx) = oneshot::channel();
        let job = Job::Check(CheckJob {
            pubkey,
            gvr: genesis_validators_root,
            msg,
            root,
            reply,
        });
        self.queue
            .send(job)
            .await
            .map_err(|_| Error::WriterStopped)?;
        rx.await.map_err(|_| Error::WriterStopped)?
    }

    /// Checks and records several requests in one transaction, in order, exactly as if they
    /// were made one after another: a later request sees what an earlier one recorded (two
    /// different blocks at one slot: the first is allowed, the second refused). Other
    /// concurrent requests may join the same transaction.
    ///
    /// # Errors
    /// The outer [`Error`] when the writer stopped; an inner one when the database failed for
    /// that request (the batch then falls back to one transaction per request).
    pub async fn check_and_record_many(
        &self,
        requests: &[(PublicKeyBytes, [u8; 32], SlashableMessage, SigningRoot)],
    ) -> Result<Vec<Result<Verdict, Error>>, Error> {
        let mut jobs = Vec::with_capacity(requests.len());
        let mut replies = Vec::with_capacity(requests.len());
        for &(pubkey, gvr, msg, root) in requests {
            let (reply, rx) = oneshot::channel();
            jobs.push(CheckJob {
                pubkey,
                gvr,
                msg,
                root,
                reply,
            });
            replies.push(rx);
        }
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.queue
            .send(Job::Batch(jobs))
            .await
            .map_err(|_| Error::WriterStopped)?;
        let mut out = Vec::with_capacity(replies.len());
        for rx in replies {
            out.push(rx.await.map_err(|_| Error::WriterStopped)?);
        }
        Ok(out)
    }

    async fn op<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Op,
    ) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Job::Op(make(reply)))
            .await
            .map_err(|_| Error::WriterStopped)?;
        rx.await.map_err(|_| Error::WriterStopped)?
    }

    /// Health probe (`SELECT 1` through the writer).
    ///
    /// # Errors
    /// [`Error`] when the database does not answer.
    pub async fn ping(&self) -> Result<(), Error> {
        self.op(Op::Ping).await
    }

    /// Pins the database to a chain: stores `genesis_validators_root` when none is stored yet.
    ///
    /// # Errors
    /// [`Error::GenesisValidatorsRootMismatch`] when another root is stored; database errors.
    pub async fn ensure_genesis_validators_root(
        &self,
        genesis_validators_root: [u8; 32],
    ) -> Result<(), Error> {
        self.op(|r| Op::EnsureGvr(genesis_validators_root, r)).await
    }

    /// The genesis validators root the database is pinned to (by the first signed request or
    /// interchange import), if any.
    ///
    /// # Errors
    /// [`Error`] when the database does not answer.
    pub async fn genesis_validators_root(&self) -> Result<Option<[u8; 32]>, Error> {
        self.op(Op::GetGvr).await
    }

    /// Registers validators (idempotent), enabled unless they were disabled before.
    ///
    /// # Errors
    /// [`Error`] on database failure.
    pub async fn register_validators(&self, pubkeys: &[PublicKeyBytes]) -> Result<(), Error> {
        let mut keys = pubkeys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        self.op(|r| Op::Register(keys, r)).await
    }

    /// Enables or disables a validator (registering it if needed). A disabled validator's
    /// requests are refused with [`Refusal::ValidatorDisabled`].
    ///
    /// # Errors
    /// [`Error`] on database failure.
    pub async fn set_enabled(&self, pubkey: PublicKeyBytes, enabled: bool) -> Result<(), Error> {
        self.op(|r| Op::SetEnabled(pubkey, enabled, r)).await
    }

    /// Imports an EIP-3076 (version "5") document in one transaction: all of it or nothing.
    /// Entries without `signing_root` are stored as unknown roots (they block the slot or
    /// target); low watermarks rise to the minimum imported slot / source / target; imported
    /// validators are enabled.
    ///
    /// # Errors
    /// [`Error::InvalidInterchange`], [`Error::UnsupportedInterchangeVersion`],
    /// [`Error::GenesisValidatorsRootMismatch`], [`Error::OutOfRange`], or a database error; in
    /// every case nothing was imported.
    pub async fn import_interchange(&self, json: &str) -> Result<ImportReport, Error> {
        self.import_document(parse_interchange(json)?, None).await
    }

    /// As [`SlashingDb::import_interchange`], for a document already read with
    /// [`parse_interchange`], advancing `progress` (when given) after each validator entry:
    /// its validator total is set to the number of entries and its record total to the number
    /// of blocks and attestations before the transaction starts. Still one transaction.
    ///
    /// # Errors
    /// As [`SlashingDb::import_interchange`]; nothing was imported then.
    pub async fn import_document(
        &self,
        doc: interchange::Interchange,
        progress: Option<InterchangeProgress>,
    ) -> Result<ImportReport, Error> {
        if let Some(p) = &progress {
            p.validators.add_total(doc.data.len() as u64);
            p.records.add_total(
                doc.data
                    .iter()
                    .map(|v| (v.signed_blocks.len() + v.signed_attestations.len()) as u64)
                    .sum(),
            );
        }
        let doc = Box::new(doc);
        self.op(|r| Op::Import(doc, progress, r)).await
    }

    /// Exports the history (format version "5") of every registered validator, or only of
    /// those in `filter`, as pretty JSON.
    ///
    /// # Errors
    /// [`Error::NoGenesisValidatorsRoot`] for a database that never stored one; database errors.
    pub async fn export_interchange(
        &self,
        filter: Option<&[PublicKeyBytes]>,
    ) -> Result<String, Error> {
        self.export_interchange_with_progress(filter, None).await
    }

    /// As [`SlashingDb::export_interchange`], advancing `progress` (when given): its validator
    /// total is set once the validators to export are listed, then validators and records are
    /// counted as each validator's history is read.
    ///
    /// # Errors
    /// As [`SlashingDb::export_interchange`].
    pub async fn export_interchange_with_progress(
        &self,
        filter: Option<&[PublicKeyBytes]>,
        progress: Option<InterchangeProgress>,
    ) -> Result<String, Error> {
        let filter = filter.map(<[PublicKeyBytes]>::to_vec);
        let doc = self.op(|r| Op::Export(filter, progress, r)).await?;
        serde_json::to_string_pretty(&doc).map_err(|e| Error::InvalidInterchange(e.to_string()))
    }

    /// As [`SlashingDb::export_interchange`], as a typed document (e.g. for peer sync).
    ///
    /// # Errors
    /// As [`SlashingDb::export_interchange`].
    pub async fn export(
        &self,
        filter: Option<&[PublicKeyBytes]>,
    ) -> Result<interchange::Interchange, Error> {
        let filter = filter.map(<[PublicKeyBytes]>::to_vec);
        self.op(|r| Op::Export(filter, None, r)).await
    }

    /// Web3Signer-style pruning: per validator, raises the low watermarks to the nearest stored
    /// entry within the last `epochs_to_keep` epochs of its history (blocks:
    /// `epochs_to_keep * slots_per_epoch` slots) and deletes the rows below them. The rules
    /// hold unchanged afterwards. Then the agreement instances: per validator key, those before
    /// the last `epochs_to_keep` epochs of its instances, and those below the low watermarks
    /// when the key also has a history. Returns the number of history rows deleted.
    ///
    /// The validators go in chunks of [`PRUNE_CHUNK`], each chunk in its own transaction, so
    /// sign requests queued meanwhile are served between chunks instead of waiting for the
    /// whole prune (about 1.8 ms per validator with a year's default history). Each validator
    /// is pruned atomically: the rules hold after every chunk.
    ///
    /// # Errors
    /// [`Error`] on database failure: the chunk that failed is left as it was; chunks before it
    /// stay pruned.
    pub async fn prune(&self, epochs_to_keep: u64, slots_per_epoch: u64) -> Result<u64, Error> {
        self.prune_in_chunks(epochs_to_keep, slots_per_epoch, PRUNE_CHUNK)
            .await
    }

    /// [`SlashingDb::prune`] with `chunk` validators per transaction (`usize::MAX`: all in
    /// one, which holds the writer for the whole prune; benchmarks compare the two).
    ///
    /// # Errors
    /// As [`SlashingDb::prune`].
    pub async fn prune_in_chunks(
        &self,
        epochs_to_keep: u64,
        slots_per_epoch: u64,
        chunk: usize,
    ) -> Result<u64, Error> {
        let keys = self.op(Op::ValidatorKeys).await?;
        let mut deleted = 0;
        for chunk in keys.chunks(chunk.max(1)) {
            deleted += self
                .op(|reply| Op::PruneValidators {
                    keys: chunk.to_vec(),
                    epochs_to_keep,
                    slots_per_epoch,
                    reply,
                })
                .await?;
        }
        self.op(|reply| Op::PruneAgreement {
            epochs_to_keep,
            slots_per_epoch,
            reply,
        })
        .await?;
        Ok(deleted)
    }
}

impl SlashingDb {
    /// Sets the low watermarks of validators that have none yet (never signed, never imported:
    /// a new share or an emptied database) to `slot` (blocks) and `epoch` (attestation source
    /// and target), registering them if needed, in one transaction. Validators that already
    /// have a watermark of a kind keep it. Afterwards blocks at or below `slot`, and attestations
    /// with source below `epoch` or target at or below `epoch`, are refused for them unless a
    /// later import brings the history that justifies lower floors. Returns the number of
    /// validators whose watermarks were set.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for values above 2^63-1; database errors (nothing changed then).
    pub async fn set_initial_watermarks(
        &self,
        pubkeys: &[PublicKeyBytes],
        slot: u64,
        epoch: u64,
    ) -> Result<usize, Error> {
        for v in [slot, epoch] {
            if i64::try_from(v).is_err() {
                return Err(Error::OutOfRange { value: v });
            }
        }
        let mut pubkeys = pubkeys.to_vec();
        pubkeys.sort_unstable();
        pubkeys.dedup();
        self.op(|reply| Op::InitialWatermarks {
            pubkeys,
            slot,
            epoch,
            reply,
        })
        .await
    }
}

impl SlashingDb {
    /// The high watermark, if one is set.
    ///
    /// # Errors
    /// Database errors.
    pub async fn high_watermark(&self) -> Result<Option<HighWatermark>, Error> {
        self.op(Op::HighWatermark).await
    }

    /// Sets (`Some`) or removes (`None`) the high watermark and returns the previous one. It
    /// applies to every validator of the database, and to every process using it from its next
    /// check on (each check reads it in its own transaction).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for values above 2^63-1; database errors (nothing changed then).
    pub async fn set_high_watermark(
        &self,
        high_watermark: Option<HighWatermark>,
    ) -> Result<Option<HighWatermark>, Error> {
        if let Some(hw) = high_watermark {
            for v in [hw.epoch, hw.slot] {
                rules::to_db(v)?;
            }
        }
        self.op(|reply| Op::SetHighWatermark(high_watermark, reply))
            .await
    }
}

impl SlashingDb {
    /// The stored agreement state of an instance (None: never stored).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a slot or epoch above 2^63-1; [`Error::Corrupt`] when the
    /// stored state cannot be read back; database errors.
    pub async fn agreement_state(&self, id: &InstanceId) -> Result<Option<Persisted>, Error> {
        let id = *id;
        self.op(|reply| Op::AgreementState(id, reply)).await
    }

    /// Stores (replaces) an instance's state durably: committed (SQLite synchronous=FULL /
    /// PostgreSQL commit) before it returns. A decision, once stored, never changes: storing a
    /// state whose decision root differs from the stored one fails with
    /// [`Error::DecisionConflict`] (nothing stored), and storing a state without a decision (or
    /// with the same root) over one with a decision keeps the stored decision as it was.
    ///
    /// # Errors
    /// [`Error::DecisionConflict`], [`Error::OutOfRange`], database errors (nothing stored).
    pub async fn store_agreement_state(
        &self,
        id: &InstanceId,
        state: &Persisted,
    ) -> Result<(), Error> {
        let id = *id;
        let state = Box::new(state.clone());
        self.op(|reply| Op::StoreAgreementState(id, state, reply))
            .await
    }

    /// The decided root of an instance, if any (one primary-key lookup).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a slot or epoch above 2^63-1; database errors.
    pub async fn agreement_decision(
        &self,
        id: &InstanceId,
    ) -> Result<Option<AgreementRoot>, Error> {
        let id = *id;
        self.op(|reply| Op::AgreementDecision(id, reply)).await
    }
}

/// Writer state that survives between batches; only updated after a commit.
struct WriterState {
    gvr: Option<[u8; 32]>,
    known: std::collections::HashSet<PublicKeyBytes>,
    pace: Arc<Pace>,
}

impl WriterState {
    fn new(pace: Arc<Pace>) -> Self {
        Self {
            gvr: None,
            known: std::collections::HashSet::new(),
            pace,
        }
    }
}

fn sqlite_writer(
    path: PathBuf,
    mut rx: mpsc::Receiver<Job>,
    ready: oneshot::Sender<Result<(), Error>>,
    pace: Arc<Pace>,
) {
    let mut store = match sqlite::SqliteStore::open(&path) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    let mut state = WriterState::new(pace);
    while let Some(first) = rx.blocking_recv() {
        state.pace.wait(&first);
        let (checks, op) = drain(first, &mut rx);
        futures::executor::block_on(serve(&mut store, &mut state, checks, op));
    }
}

fn postgres_writer(
    url: String,
    mut rx: mpsc::Receiver<Job>,
    ready: oneshot::Sender<Result<(), Error>>,
    pace: Arc<Pace>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(Error::Io {
                path: "postgres runtime".into(),
                error: e,
            }));
            return;
        }
    };
    runtime.block_on(async move {
        let mut store = match postgres::PgStore::open(&url).await {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        if ready.send(Ok(())).is_err() {
            return;
        }
        let mut state = WriterState::new(pace);
        while let Some(first) = rx.recv().await {
            // Blocks this writer's own runtime thread, which has nothing else to run between
            // transactions.
            state.pace.wait(&first);
            let (checks, op) = drain(first, &mut rx);
            if let Err(e) = store.ensure_connected().await {
                // The operations below fail on the closed connection, and are refused.
                tracing::error!(error = %e, "slashing database unreachable");
            }
            serve(&mut store, &mut state, checks, op).await;
        }
    });
}

/// Takes every queued check after `first` while fewer than [`MAX_BATCH`] are taken (a
/// [`Job::Batch`] is never split), stopping at the first other operation, which runs after
/// the batch.
fn drain(first: Job, rx: &mut mpsc::Receiver<Job>) -> (Vec<CheckJob>, Option<Op>) {
    let mut checks = Vec::new();
    match first {
        Job::Op(op) => return (checks, Some(op)),
        Job::Check(c) => checks.push(c),
        Job::Batch(b) => checks.extend(b),
    }
    while checks.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Job::Check(c)) => checks.push(c),
            Ok(Job::Batch(b)) => checks.extend(b),
            Ok(Job::Op(op)) => return (checks, Some(op)),
            Err(_) => break,
        }
    }
    (checks, None)
}

async fn serve<S: Store>(
    store: &mut S,
    state: &mut WriterState,
    checks: Vec<CheckJob>,
    op: Option<Op>,
) {
    if !checks.is_empty() {
        serve_checks(store, state, checks).await;
    }
    if let Some(op) = op {
        serve_op(store, state, op).await;
    }
}

async fn serve_checks<S: Store>(store: &mut S, state: &mut WriterState, checks: Vec<CheckJob>) {
    match check_batch(store, state, &checks).await {
        Ok(verdicts) => {
            state.pace.committed();
            for (job, verdict) in checks.into_iter().zip(verdicts) {
                let _ = job.reply.send(Ok(verdict));
            }
        }
        Err(e) => {
            let _ = store.rollback().await;
            if checks.len() == 1 {
                if let Some(job) = checks.into_iter().next() {
                    let _ = job.reply.send(Err(e));
                }
                return;
            }
            tracing::warn!(error = %e, size = checks.len(), "slashing batch failed, retrying one by one");
            for job in checks {
                let result = check_batch(store, state, std::slice::from_ref(&job)).await;
                match result {
                    Ok(_) => state.pace.committed(),
                    Err(_) => {
                        let _ = store.rollback().await;
                    }
                }
                let _ = job
                    .reply
                    .send(result.and_then(|mut v| v.pop().ok_or(Error::WriterStopped)));
            }
        }
    }
}

/// Checks and records a batch in one transaction; refusals record nothing.
async fn check_batch<S: Store>(
    store: &mut S,
    state: &mut WriterState,
    jobs: &[CheckJob],
) -> Result<Vec<Verdict>, Error> {
    let stored_gvr = match state.gvr {
        Some(g) => g,
        None => {
            // invariant: callers never pass an empty batch
            let first = jobs.first().map(|j| j.gvr).ok_or(Error::WriterStopped)?;
            store.insert_gvr(first).await?;
            let g = store
                .gvr()
                .await?
                .ok_or_else(|| Error::Corrupt("genesis validators root not stored".into()))?;
            state.gvr = Some(g);
            g
        }
    };
    let mut pubkeys: Vec<PublicKeyBytes> = jobs.iter().map(|j| j.pubkey).collect();
    pubkeys.sort_unstable();
    pubkeys.dedup();
    let unknown: Vec<PublicKeyBytes> = pubkeys
        .iter()
        .filter(|p| !state.known.contains(p))
        .copied()
        .collect();
    if !unknown.is_empty() {
        store.register(&unknown).await?;
        state.known.extend(unknown);
    }
    store.begin().await?;
    let ids = store.lock_validators(&pubkeys).await?;
    let high_watermark = store.high_watermark().await?;
    // Refusals that need no history are decided here; the rest go to the store as one batch.
    let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(jobs.len());
    let mut candidates = Vec::with_capacity(jobs.len());
    for job in jobs {
        if job.gvr != stored_gvr {
            verdicts.push(Some(Verdict::Refused(
                Refusal::WrongGenesisValidatorsRoot {
                    stored: SigningRoot(stored_gvr),
                    requested: SigningRoot(job.gvr),
                },
            )));
            continue;
        }
        let &(id, enabled) = ids
            .get(&job.pubkey)
            .ok_or_else(|| Error::Corrupt(format!("validator {} is not registered", job.pubkey)))?;
        if !enabled {
            verdicts.push(Some(Verdict::Refused(Refusal::ValidatorDisabled {
                pubkey: job.pubkey,
            })));
            continue;
        }
        if let Some(refusal) = rules::high_watermark_refusal(job.msg, high_watermark) {
            verdicts.push(Some(Verdict::Refused(refusal)));
            continue;
        }
        verdicts.push(None);
        candidates.push(rules::Candidate {
            id,
            msg: job.msg,
            root: job.root,
        });
    }
    let mut decided = store.check_many(&candidates).await?.into_iter();
    let verdicts = verdicts
        .into_iter()
        .map(|v| {
            v.or_else(|| decided.next())
                .ok_or_else(|| Error::Corrupt("batch verdict missing".into()))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    store.commit().await?;
    Ok(verdicts)
}

async fn serve_op<S: Store>(store: &mut S, state: &mut WriterState, op: Op) {
    match op {
        Op::Ping(reply) => {
            let _ = reply.send(store.ping().await);
        }
        Op::GetGvr(reply) => {
            let _ = reply.send(store.gvr().await);
        }
        Op::EnsureGvr(gvr, reply) => {
            let r = in_txn(store, async |s: &mut S| {
                s.insert_gvr(gvr).await?;
                match s.gvr().await? {
                    Some(stored) if stored == gvr => Ok(()),
                    Some(stored) => Err(Error::GenesisValidatorsRootMismatch {
                        database: Hash256(stored),
                        interchange: Hash256(gvr),
                    }),
                    None => Err(Error::Corrupt("genesis validators root not stored".into())),
                }
            })
            .await;
            let _ = reply.send(r);
        }
        Op::Register(keys, reply) => {
            let r = store.register(&keys).await;
            if r.is_ok() {
                state.known.extend(keys);
            }
            let _ = reply.send(r);
        }
        Op::SetEnabled(pubkey, enabled, reply) => {
            let r = in_txn(store, async |s: &mut S| {
                s.register(&[pubkey]).await?;
                let ids = s.lock_validators(&[pubkey]).await?;
                let &(id, _) = ids
                    .get(&pubkey)
                    .ok_or_else(|| Error::Corrupt(format!("validator {pubkey} not registered")))?;
                s.set_enabled(id, enabled).await
            })
            .await;
            let _ = reply.send(r);
        }
        Op::Import(doc, progress, reply) => {
            let r = in_txn(store, async |s: &mut S| {
                rules::import(s, &doc, progress.as_ref()).await
            })
            .await;
            if r.is_ok() {
                // The import may have stored the root; re-read it on the next batch.
                state.gvr = None;
            }
            let _ = reply.send(r);
        }
        Op::Export(filter, progress, reply) => {
            let r = in_txn(store, async |s: &mut S| {
                rules::export(s, filter.as_deref(), progress.as_ref()).await
            })
            .await;
            let _ = reply.send(r);
        }
        Op::ValidatorKeys(reply) => {
            let r = in_txn(store, async |s: &mut S| {
                Ok(s.all_validators()
                    .await?
                    .into_iter()
                    .map(|(pk, _)| pk)
                    .collect())
            })
            .await;
            let _ = reply.send(r);
        }
        Op::PruneValidators {
            keys,
            epochs_to_keep,
            slots_per_epoch,
            reply,
        } => {
            let r = in_txn(store, async |s: &mut S| {
                let ids = s.lock_validators(&keys).await?;
                let mut deleted = 0;
                for pk in &keys {
                    // A key removed since the list was taken has nothing left to prune.
                    if let Some(&(id, _)) = ids.get(pk) {
                        deleted +=
                            rules::prune_validator(s, id, epochs_to_keep, slots_per_epoch).await?;
                    }
                }
                Ok(deleted)
            })
            .await;
            let _ = reply.send(r);
        }
        Op::PruneAgreement {
            epochs_to_keep,
            slots_per_epoch,
            reply,
        } => {
            let r = in_txn(store, async |s: &mut S| {
                let validators = s.all_validators().await?;
                agreement::prune(s, &validators, epochs_to_keep, slots_per_epoch).await
            })
            .await;
            let _ = reply.send(r);
        }
        Op::InitialWatermarks {
            pubkeys,
            slot,
            epoch,
            reply,
        } => {
            let r = in_txn(store, async |s: &mut S| {
                s.register(&pubkeys).await?;
                let ids = s.lock_validators(&pubkeys).await?;
                let mut changed = 0;
                for pk in &pubkeys {
                    let &(id, _) = ids
                        .get(pk)
                        .ok_or_else(|| Error::Corrupt(format!("validator {pk} not registered")))?;
                    let mut wm = s.watermark(id).await?;
                    let before = wm;
                    if wm.slot.is_none() {
                        wm.slot = Some(slot);
                    }
                    if wm.source.is_none() && wm.target.is_none() {
                        wm.source = Some(epoch);
                        wm.target = Some(epoch);
                    }
                    if wm != before {
                        s.set_watermark(id, wm).await?;
                        changed += 1;
                    }
                }
                Ok(changed)
            })
            .await;
            let _ = reply.send(r);
        }
        Op::HighWatermark(reply) => {
            let _ = reply.send(store.high_watermark().await);
        }
        Op::AgreementState(id, reply) => {
            let _ = reply.send(agreement::load(store, &id).await);
        }
        Op::StoreAgreementState(id, state, reply) => {
            let r = in_txn(store, async |s: &mut S| {
                agreement::store(s, &id, &state).await
            })
            .await;
            let _ = reply.send(r);
        }
        Op::AgreementDecision(id, reply) => {
            let r = match agreement::AgreementKey::of(&id) {
                Ok(key) => store.agreement_decided_root(&key).await,
                Err(e) => Err(e),
            };
            let _ = reply.send(r);
        }
        Op::SetHighWatermark(high_watermark, reply) => {
            let r = in_txn(store, async |s: &mut S| {
                let previous = s.high_watermark().await?;
                s.set_high_watermark(high_watermark).await?;
                Ok(previous)
            })
            .await;
            let _ = reply.send(r);
        }
    }
}

/// Runs `f` in one transaction, committing on success and rolling back on error.
async fn in_txn<S: Store, T>(
    store: &mut S,
    f: impl AsyncFnOnce(&mut S) -> Result<T, Error>,
) -> Result<T, Error> {
    store.begin().await?;
    match f(store).await {
        Ok(v) => {
            store.commit().await?;
            Ok(v)
        }
        Err(e) => {
            let _ = store.rollback().await;
            Err(e)
        }
    }
}

/// Hides the user-info part of a URL (`postgres://user:password@host/db` →
/// `postgres://…@host/db`) and the value of a `password` query parameter
/// (`?password=x` → `?password=…`); other values are returned as they are. The other query
/// parameters (`sslmode`, certificate and key file paths) stay visible.
pub fn redact(value: &str) -> String {
    let Some(scheme_end) = value.find("://") else {
        return value.to_owned();
    };
    let (base, query) = match value.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (value, None),
    };
    let base = match base.rfind('@') {
        Some(a) if a > scheme_end => format!("{}://…@{}", &value[..scheme_end], &base[a + 1..]),
        _ => base.to_owned(),
    };
    match query {
        None => base,
        Some(q) => {
            let params: Vec<String> = q
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=…"),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
        check::<Refusal>();
    }

    #[test]
    fn urls_select_the_backend() {
        assert!(
            matches!(parse_url("sqlite:/tmp/x.db"), Ok(Location::Sqlite(p)) if p == Path::new("/tmp/x.db"))
        );
        assert!(
            matches!(parse_url("/tmp/y.db"), Ok(Location::Sqlite(p)) if p == Path::new("/tmp/y.db"))
        );
        assert!(matches!(
            parse_url("postgres://u:p@h/db"),
            Ok(Location::Postgres(_))
        ));
        assert!(matches!(
            parse_url("postgresql://h/db"),
            Ok(Location::Postgres(_))
        ));
        assert!(
            matches!(parse_url("mysql://u:secret@h/db"), Err(Error::InvalidUrl(u)) if !u.contains("secret"))
        );
        assert!(parse_url("").is_err());
    }

    impl SlashingDb {
        /// Jobs sent to the writer and not yet taken by it.
        fn queued(&self) -> usize {
            QUEUE_DEPTH - self.queue.capacity()
        }
    }

    /// A signing pool kept busy: every thread holds a job, and as many again wait behind them,
    /// until `release`. Returned once its queue is long.
    struct BusyPool {
        pool: Arc<crate::http::BlockingPool>,
        gate: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
        jobs: Vec<tokio::task::JoinHandle<()>>,
    }

    impl BusyPool {
        async fn start() -> Self {
            let pool = Arc::new(crate::http::BlockingPool::new("test-pace", "test").expect("pool"));
            let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
            let jobs = (0..3 * num_cpus::get().max(1))
                .map(|_| {
                    let (pool, gate) = (pool.clone(), gate.clone());
                    tokio::spawn(async move {
                        let _ = pool
                            .run(move || {
                                let (open, cv) = &*gate;
                                let mut open = open.lock().expect("gate");
                                while !*open {
                                    open = cv.wait(open).expect("gate");
                                }
                            })
                            .await;
                    })
                })
                .collect();
            let busy = Self { pool, gate, jobs };
            let load = busy.pool.load();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !load.is_long() {
                assert!(Instant::now() < deadline, "the pool never got busy");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            busy
        }

        async fn release(self) {
            *self.gate.0.lock().expect("gate") = true;
            self.gate.1.notify_all();
            for job in self.jobs {
                job.await.expect("job");
            }
        }
    }

    fn vote(i: u8, target: u64) -> (PublicKeyBytes, SlashableMessage, SigningRoot) {
        (
            PublicKeyBytes([i; 48]),
            SlashableMessage::Attestation {
                source_epoch: target - 1,
                target_epoch: target,
            },
            SigningRoot([i; 32]),
        )
    }

    async fn check(db: &SlashingDb, i: u8, target: u64) -> Result<Verdict, Error> {
        let (pubkey, msg, root) = vote(i, target);
        db.check_and_record(pubkey, [7; 32], msg, root).await
    }

    async fn open_db(dir: &tempfile::TempDir) -> SlashingDb {
        let path = dir.path().join("pace.sqlite");
        SlashingDb::open(path.to_str().expect("utf-8 path"))
            .await
            .expect("open")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn while_the_signing_pool_is_busy_checks_gather_into_one_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(&dir).await;
        let busy = BusyPool::start().await;
        db.pace_commits_by(busy.pool.load(), Duration::from_secs(120));
        let deadline = Instant::now() + Duration::from_secs(30);
        let checks: Vec<_> = (0..20u8)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move { check(&db, i, 10).await })
            })
            .collect();
        // The writer holds the first check and waits for the pool; the others queue behind it.
        while db.queued() < 19 {
            assert!(
                Instant::now() < deadline,
                "checks not queued: {}",
                db.queued()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(db.commits(), 0, "a check committed while the pool was busy");
        assert!(checks.iter().all(|c| !c.is_finished()));
        busy.release().await;
        for c in checks {
            let verdict = tokio::time::timeout(Duration::from_secs(30), c)
                .await
                .expect("answered once the pool drained")
                .expect("join");
            assert!(matches!(verdict, Ok(Verdict::Allowed)), "{verdict:?}");
        }
        assert_eq!(db.commits(), 1, "twenty checks, one transaction");
        // Each was recorded: the same votes again are repeats, a conflicting one is refused.
        assert!(matches!(check(&db, 3, 10).await, Ok(Verdict::Repeat)));
        let (pubkey, msg, _) = vote(3, 10);
        let other = db
            .check_and_record(pubkey, [7; 32], msg, SigningRoot([0xee; 32]))
            .await;
        assert!(matches!(other, Ok(Verdict::Refused(_))), "{other:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_pool_holds_no_check_and_a_busy_one_only_up_to_the_longest_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(&dir).await;
        let idle = crate::http::BlockingPool::new("test-pace", "test").expect("pool");
        db.pace_commits_by(idle.load(), Duration::from_secs(120));
        let verdict = tokio::time::timeout(Duration::from_secs(30), check(&db, 1, 10))
            .await
            .expect("an idle pool does not hold the check");
        assert!(matches!(verdict, Ok(Verdict::Allowed)), "{verdict:?}");
        assert_eq!(db.commits(), 1);

        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(&dir).await;
        let busy = BusyPool::start().await;
        db.pace_commits_by(busy.pool.load(), Duration::from_millis(300));
        let started = Instant::now();
        let verdict = tokio::time::timeout(Duration::from_secs(30), check(&db, 2, 10))
            .await
            .expect("answered after the longest wait although the pool is still busy");
        assert!(matches!(verdict, Ok(Verdict::Allowed)), "{verdict:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        assert!(busy.jobs.iter().all(|j| !j.is_finished()));
        busy.release().await;
    }
}
