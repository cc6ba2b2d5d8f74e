//! `dvsigner slashing-protection import|export`: EIP-3076 interchange (format version 5);
//! `dvsigner slashing-protection high-watermark set|remove|show`: the global high watermark.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::bls::PublicKeyBytes;
use crate::progress::TermProgress;
use crate::slashing::{HighWatermark, InterchangeProgress, SlashingDb};

/// Interchange subcommands.
#[derive(Debug, Subcommand)]
pub enum SlashingCommand {
    /// Import an interchange file (all or nothing).
    Import(InterchangeArgs),
    /// Export history to an interchange file.
    Export(InterchangeArgs),
    /// Set, remove or show the high watermark: a ceiling for every validator of the database
    /// (blocks at or above its slot, attestations with source or target at or above its epoch
    /// are refused), as Web3Signer's `watermark-repair --set-high-watermark`.
    #[command(subcommand)]
    HighWatermark(HighWatermarkCommand),
}

/// High-watermark subcommands.
#[derive(Debug, Subcommand)]
pub enum HighWatermarkCommand {
    /// Set (or replace) the high watermark.
    Set(SetHighWatermarkArgs),
    /// Remove the high watermark.
    Remove(DbArgs),
    /// Print the high watermark as JSON (`{"epoch":"E","slot":"S"}`, or `{}` when none is set).
    Show(DbArgs),
}

/// The database option alone.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// Database: `sqlite:PATH` or `postgres://…`.
    #[arg(long, env = "DVSIGNER_SLASHING_DB")]
    pub slashing_db: String,
}

/// Options of `high-watermark set`.
#[derive(Debug, Args)]
pub struct SetHighWatermarkArgs {
    /// Database: `sqlite:PATH` or `postgres://…`.
    #[arg(long, env = "DVSIGNER_SLASHING_DB")]
    pub slashing_db: String,
    /// No attestation with a source or target epoch at or above this is signed.
    #[arg(long)]
    pub epoch: u64,
    /// No block at or above this slot is signed (usually the first slot of `--epoch`).
    #[arg(long)]
    pub slot: u64,
}

/// What running nodes do about a high-watermark change, printed after each change.
const APPLIES_NOTE: &str =
    "nodes using this database apply it from their next request (no restart needed)";

/// Options of import and export.
#[derive(Debug, Args)]
pub struct InterchangeArgs {
    /// Database: `sqlite:PATH` or `postgres://…`.
    #[arg(long, env = "DVSIGNER_SLASHING_DB")]
    pub slashing_db: String,
    /// Interchange JSON file to read or write.
    #[arg(long)]
    pub file: PathBuf,
    /// Export only these public keys (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub pubkeys: Vec<String>,
}

/// Runs an interchange subcommand.
///
/// # Errors
/// Any database or file failure; an import that fails imports nothing.
pub async fn run(cmd: SlashingCommand) -> anyhow::Result<()> {
    match cmd {
        SlashingCommand::Import(a) => {
            let size = std::fs::metadata(&a.file)
                .with_context(|| format!("reading {}", a.file.display()))?
                .len();
            eprintln!("reading {} ({})", a.file.display(), megabytes(size));
            let json = std::fs::read_to_string(&a.file)
                .with_context(|| format!("reading {}", a.file.display()))?;
            let doc = crate::slashing::parse_interchange(&json)
                .context("import refused; nothing was imported")?;
            drop(json);
            let db = SlashingDb::open(&a.slashing_db).await?;
            // One all-or-nothing transaction; the writer advances the counters per validator.
            let working = TermProgress::start_counting_also(
                "slashing-protection import",
                "validators",
                0,
                "records",
            );
            let progress = interchange_progress(&working);
            let report = db
                .import_document(doc, progress)
                .await
                .context("import refused; nothing was imported")?;
            working.finish();
            println!(
                "imported {} validator(s): {} block(s), {} attestation(s), {} already present",
                report.validators, report.blocks, report.attestations, report.skipped
            );
        }
        SlashingCommand::Export(a) => {
            let filter = a
                .pubkeys
                .iter()
                .map(|s| PublicKeyBytes::parse(s).with_context(|| format!("bad public key {s}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let db = SlashingDb::open(&a.slashing_db).await?;
            let working = TermProgress::start_counting_also(
                "slashing-protection export",
                "validators",
                0,
                "records",
            );
            let progress = interchange_progress(&working);
            let json = db
                .export_interchange_with_progress(
                    if filter.is_empty() {
                        None
                    } else {
                        Some(&filter)
                    },
                    progress,
                )
                .await?;
            working.finish();
            eprintln!(
                "writing {} ({})",
                a.file.display(),
                megabytes(json.len() as u64)
            );
            std::fs::write(&a.file, json)
                .with_context(|| format!("writing {}", a.file.display()))?;
            println!("exported to {}", a.file.display());
        }
        SlashingCommand::HighWatermark(cmd) => high_watermark(cmd).await?,
    }
    Ok(())
}

/// The counters of `working` as the database's interchange progress.
fn interchange_progress(working: &TermProgress) -> Option<InterchangeProgress> {
    working.also_counter().map(|records| InterchangeProgress {
        validators: working.counter(),
        records,
    })
}

/// `12.3 MB` (decimal megabytes, one decimal).
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn describe(hw: Option<HighWatermark>) -> String {
    match hw {
        Some(hw) => format!("epoch {}, slot {}", hw.epoch, hw.slot),
        None => "none".to_owned(),
    }
}

async fn high_watermark(cmd: HighWatermarkCommand) -> anyhow::Result<()> {
    match cmd {
        HighWatermarkCommand::Set(a) => {
            let db = SlashingDb::open(&a.slashing_db).await?;
            let hw = HighWatermark {
                epoch: a.epoch,
                slot: a.slot,
            };
            let previous = db.set_high_watermark(Some(hw)).await?;
            println!(
                "high watermark set to {} (was {}): blocks at slot {} or later and attestations \
                 with source or target epoch {} or later are refused for every validator; {}",
                describe(Some(hw)),
                describe(previous),
                hw.slot,
                hw.epoch,
                APPLIES_NOTE
            );
        }
        HighWatermarkCommand::Remove(a) => {
            let db = SlashingDb::open(&a.slashing_db).await?;
            let previous = db.set_high_watermark(None).await?;
            println!(
                "high watermark removed (was {}); {}",
                describe(previous),
                APPLIES_NOTE
            );
        }
        HighWatermarkCommand::Show(a) => {
            let db = SlashingDb::open(&a.slashing_db).await?;
            println!(
                "{}",
                crate::slashing::high_watermark_json(db.high_watermark().await?)
            );
        }
    }
    Ok(())
}
