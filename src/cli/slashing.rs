//! `dvsigner slashing-protection import|export`: EIP-3076 interchange (format version 5).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::bls::PublicKeyBytes;
use crate::progress::TermProgress;
use crate::slashing::SlashingDb;

/// Interchange subcommands.
#[derive(Debug, Subcommand)]
pub enum SlashingCommand {
    /// Import an interchange file (all or nothing).
    Import(InterchangeArgs),
    /// Export history to an interchange file.
    Export(InterchangeArgs),
}

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
            let json = std::fs::read_to_string(&a.file)
                .with_context(|| format!("reading {}", a.file.display()))?;
            let db = SlashingDb::open(&a.slashing_db).await?;
            // One all-or-nothing transaction: progress is the elapsed time.
            let working = TermProgress::start(
                &format!(
                    "slashing-protection import of {} ({} bytes)",
                    a.file.display(),
                    json.len()
                ),
                "",
                0,
            );
            let report = db
                .import_interchange(&json)
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
            let working = TermProgress::start(
                &format!("slashing-protection export to {}", a.file.display()),
                "",
                0,
            );
            let json = db
                .export_interchange(if filter.is_empty() {
                    None
                } else {
                    Some(&filter)
                })
                .await?;
            std::fs::write(&a.file, json)
                .with_context(|| format!("writing {}", a.file.display()))?;
            working.finish();
            println!("exported to {}", a.file.display());
        }
    }
    Ok(())
}
