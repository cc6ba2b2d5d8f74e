//! `dvsigner hsm`: store key shares on a PKCS#11 token (see [`crate::keys::hsm`]) and inspect
//! what is stored.
//!
//! `import` decrypts an EIP-2335 keystore in memory and has the token encrypt the share under
//! its non-extractable AES key; the encrypted blob is a private data object on the token. The
//! keystore file is left as it is (delete it once the import is verified, if the token is to
//! be the only copy). `list` prints the wrapping key's security attributes and the stored shares
//! as one JSON object.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::keys::hsm::{self, HsmConfig, HsmToken};
use crate::keys::{Keystore, Password};

/// `dvsigner hsm` subcommands.
#[derive(Debug, Subcommand)]
pub enum HsmCommand {
    /// Store a keystore's key (share) on the token, encrypted under the token's wrapping key.
    Import(HsmImportArgs),
    /// Print the wrapping key's attributes and the shares stored on the token (JSON).
    List(HsmTokenArgs),
}

/// Which token, and how to log in.
#[derive(Debug, Clone, Args)]
pub struct HsmTokenArgs {
    /// PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    #[arg(long, env = "DVSIGNER_HSM_MODULE")]
    pub module: PathBuf,
    /// Label of the token.
    #[arg(long)]
    pub token_label: String,
    /// File holding the user PIN (first line).
    #[arg(long)]
    pub pin_file: PathBuf,
    /// Label of the AES wrapping key (created on first import).
    #[arg(long, default_value = hsm::DEFAULT_WRAP_KEY_LABEL)]
    pub wrap_key_label: String,
}

/// `dvsigner hsm import` options.
#[derive(Debug, Clone, Args)]
pub struct HsmImportArgs {
    /// The token.
    #[command(flatten)]
    pub token: HsmTokenArgs,
    /// EIP-2335 keystore of the share (or whole key).
    #[arg(long)]
    pub keystore: PathBuf,
    /// File holding the keystore password (first line).
    #[arg(long)]
    pub password_file: PathBuf,
}

impl HsmTokenArgs {
    fn config(&self) -> anyhow::Result<HsmConfig> {
        Ok(HsmConfig::new(
            self.module.clone(),
            self.token_label.clone(),
            &self.pin_file,
            Some(self.wrap_key_label.clone()),
        )?)
    }
}

/// Runs a `dvsigner hsm` command (blocking PKCS#11 and KDF work).
///
/// # Errors
/// Unreadable files, a keystore that does not decrypt, and token errors.
pub fn run(cmd: HsmCommand) -> anyhow::Result<()> {
    match cmd {
        HsmCommand::Import(args) => {
            let text = std::fs::read_to_string(&args.keystore)
                .with_context(|| format!("reading keystore {}", args.keystore.display()))?;
            let keystore = Keystore::from_json(&text)
                .with_context(|| format!("keystore {}", args.keystore.display()))?;
            let password = Password::from_file(&args.password_file)?;
            let secret = keystore
                .decrypt(&password)
                .with_context(|| format!("decrypting {}", args.keystore.display()))?;
            let token = HsmToken::open(&args.token.config()?)?;
            let (_, created) = token.ensure_wrap_key()?;
            let object = token.import_share(&secret)?;
            println!(
                "{}",
                serde_json::json!({
                    "token": token.label(),
                    "wrap_key_created": created,
                    "object": object,
                    "pubkey": secret.public_key().bytes().to_hex(),
                })
            );
            Ok(())
        }
        HsmCommand::List(args) => {
            let token = HsmToken::open(&args.config()?)?;
            let attrs = token.wrap_key_attributes()?;
            let shares = token.share_labels()?;
            println!(
                "{}",
                serde_json::json!({
                    "token": token.label(),
                    "wrap_key": {
                        "label": args.wrap_key_label,
                        "extractable": attrs.extractable,
                        "sensitive": attrs.sensitive,
                        "never_extractable": attrs.never_extractable,
                        "always_sensitive": attrs.always_sensitive,
                        "token": attrs.token,
                        "value_readable": attrs.value_readable,
                    },
                    "shares": shares,
                })
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn import_args_parse_with_defaults() {
        let cli = Cli::try_parse_from([
            "dvsigner",
            "hsm",
            "import",
            "--module",
            "/m.so",
            "--token-label",
            "t",
            "--pin-file",
            "p",
            "--keystore",
            "k.json",
            "--password-file",
            "pw",
        ])
        .expect("parse");
        let Command::Hsm(HsmCommand::Import(a)) = cli.command else {
            panic!("not hsm import")
        };
        assert_eq!(a.token.wrap_key_label, "dvsigner-wrap");
        assert_eq!(a.keystore, PathBuf::from("k.json"));
        assert!(Cli::try_parse_from(["dvsigner", "hsm", "list", "--module", "/m.so"]).is_err());
    }
}
