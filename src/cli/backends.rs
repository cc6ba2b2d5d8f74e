//! `dvsigner signer` key backends beyond files: HashiCorp Vault bulk mode (`--vault-*`) and
//! PKCS#11 tokens (`--hsm-*`). Credentials are always files or environment variables.
//!
//! These flags only describe the sources; `keys::sources` reads them, at start and on
//! every `/reload`. Both are all-or-nothing: at start a node told to take keys from Vault or a
//! token refuses to start when it cannot read every one of them, with an error naming the path
//! or token label; a reload that cannot read them keeps the keys they gave before.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::keys::{hsm, key_config, vault};

/// Key backends of a signer node (flattened into `SignerArgs`).
#[derive(Debug, Clone, Default, Args)]
pub struct KeyBackendArgs {
    /// HashiCorp Vault bulk loading.
    #[command(flatten)]
    pub vault: VaultArgs,
    /// PKCS#11 token.
    #[command(flatten)]
    pub hsm: HsmArgs,
}

/// HashiCorp Vault bulk mode: every secret directly under `--vault-bulk-path` of the KV v2
/// engine at `--vault-kv-mount`, each holding a hex key in field `--vault-key-name`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "HashiCorp Vault (bulk mode)")]
pub struct VaultArgs {
    /// Vault server URL, `https://host:8200` (enables bulk mode, with `--vault-bulk-path`).
    #[arg(long, env = "DVSIGNER_VAULT_URL", requires = "vault_bulk_path")]
    pub vault_url: Option<String>,
    /// CA certificate (PEM) of the Vault server (Vault's own `VAULT_CACERT` is read too).
    #[arg(long, env = "VAULT_CACERT")]
    pub vault_ca: Option<PathBuf>,
    /// KV version 2 mount.
    #[arg(long, default_value = "secret")]
    pub vault_kv_mount: String,
    /// Folder inside the mount whose secrets are the keys (one level, sub-folders ignored).
    #[arg(long, requires = "vault_url")]
    pub vault_bulk_path: Option<String>,
    /// Field of each secret holding the hex key (Web3Signer's default).
    #[arg(long, default_value = "value")]
    pub vault_key_name: String,
    /// File holding the Vault token (else the `DVSIGNER_VAULT_TOKEN` environment variable).
    #[arg(long, conflicts_with_all = ["vault_role_id_file", "vault_kubernetes_role"])]
    pub vault_token_file: Option<PathBuf>,
    /// AppRole login: file holding the role id.
    #[arg(
        long,
        requires = "vault_secret_id_file",
        conflicts_with = "vault_kubernetes_role"
    )]
    pub vault_role_id_file: Option<PathBuf>,
    /// AppRole login: file holding the secret id.
    #[arg(long, requires = "vault_role_id_file")]
    pub vault_secret_id_file: Option<PathBuf>,
    /// AppRole auth mount.
    #[arg(long, default_value = "approle")]
    pub vault_approle_mount: String,
    /// Kubernetes login: the Vault role (the pod's service-account token is the credential).
    #[arg(long)]
    pub vault_kubernetes_role: Option<String>,
    /// Kubernetes login: the service-account token file, read at each login
    /// [default: /var/run/secrets/kubernetes.io/serviceaccount/token].
    #[arg(long, requires = "vault_kubernetes_role")]
    pub vault_kubernetes_token_file: Option<PathBuf>,
    /// Kubernetes auth mount.
    #[arg(long, default_value = key_config::DEFAULT_KUBERNETES_AUTH_PATH)]
    pub vault_kubernetes_mount: String,
    /// Timeout of each Vault request, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub vault_timeout_ms: u64,
}

/// PKCS#11 token holding wrapped shares (see `dvsigner hsm import`).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "PKCS#11 HSM")]
pub struct HsmArgs {
    /// PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    #[arg(long, env = "DVSIGNER_HSM_MODULE", requires_all = ["hsm_token_label", "hsm_pin_file"])]
    pub hsm_module: Option<PathBuf>,
    /// Label of the token.
    #[arg(long, requires = "hsm_module")]
    pub hsm_token_label: Option<String>,
    /// File holding the user PIN (first line).
    #[arg(long, requires = "hsm_module")]
    pub hsm_pin_file: Option<PathBuf>,
    /// Label of the AES wrapping key on the token.
    #[arg(long, default_value = hsm::DEFAULT_WRAP_KEY_LABEL)]
    pub hsm_wrap_key_label: String,
}

impl VaultArgs {
    /// The bulk source these flags describe (None without `--vault-url`).
    ///
    /// # Errors
    /// Unreadable credential files, no token at all, or an `https` URL without a CA.
    pub fn bulk_source(&self) -> anyhow::Result<Option<vault::VaultBulkSource>> {
        let (Some(url), Some(folder)) = (&self.vault_url, &self.vault_bulk_path) else {
            return Ok(None);
        };
        let auth = match (
            &self.vault_token_file,
            &self.vault_role_id_file,
            &self.vault_secret_id_file,
            &self.vault_kubernetes_role,
        ) {
            (Some(file), _, _, _) => vault::VaultAuth::Token(vault::VaultToken::from_file(file)?),
            (None, Some(role), Some(secret), _) => vault::VaultAuth::AppRole {
                mount: self.vault_approle_mount.clone(),
                role_id: vault::VaultToken::from_file(role)?,
                secret_id: vault::VaultToken::from_file(secret)?,
            },
            (None, None, _, Some(role)) => {
                let mount = self.vault_kubernetes_mount.trim_matches('/');
                anyhow::ensure!(!mount.is_empty(), "--vault-kubernetes-mount is empty");
                vault::VaultAuth::Kubernetes(vault::KubernetesAuth {
                    mount: mount.to_owned(),
                    role: role.clone(),
                    jwt_file: self.vault_kubernetes_token_file.clone().unwrap_or_else(|| {
                        PathBuf::from(key_config::DEFAULT_SERVICE_ACCOUNT_TOKEN)
                    }),
                })
            }
            _ => vault::VaultAuth::Token(vault::VaultToken::from_env().with_context(|| {
                format!(
                    "vault bulk mode needs --vault-token-file, AppRole id files, \
                     --vault-kubernetes-role, or {}",
                    vault::TOKEN_ENV
                )
            })?),
        };
        let tls = if url.starts_with("http://") {
            vault::VaultTls::Disabled
        } else {
            vault::VaultTls::Ca(
                self.vault_ca
                    .clone()
                    .context("--vault-ca (or VAULT_CACERT) is required for an https vault url")?,
            )
        };
        Ok(Some(vault::VaultBulkSource {
            server: vault::VaultServer {
                url: url.clone(),
                tls,
                timeout: Duration::from_millis(self.vault_timeout_ms.max(1)),
            },
            auth,
            mount: self.vault_kv_mount.trim_matches('/').to_owned(),
            folder: folder.clone(),
            key_name: self.vault_key_name.clone(),
        }))
    }
}

impl HsmArgs {
    /// The token configuration these flags describe (None without `--hsm-module`).
    ///
    /// # Errors
    /// An unreadable or empty PIN file.
    pub fn config(&self) -> anyhow::Result<Option<hsm::HsmConfig>> {
        let (Some(module), Some(label), Some(pin)) =
            (&self.hsm_module, &self.hsm_token_label, &self.hsm_pin_file)
        else {
            return Ok(None);
        };
        Ok(Some(hsm::HsmConfig::new(
            module.clone(),
            label.clone(),
            pin,
            Some(self.hsm_wrap_key_label.clone()),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn signer(extra: &[&str]) -> Result<Cli, clap::Error> {
        let base = ["dvsigner", "signer", "--data-dir", "/d", "--insecure-http"];
        Cli::try_parse_from(base.iter().chain(extra).copied().collect::<Vec<_>>())
    }

    #[test]
    fn defaults() {
        let Ok(Cli {
            command: Command::Signer(a),
            ..
        }) = signer(&[])
        else {
            panic!("parse")
        };
        let b = &a.backends;
        assert!(b.vault.vault_url.is_none() && b.vault.vault_bulk_path.is_none());
        assert_eq!(b.vault.vault_kv_mount, "secret");
        assert_eq!(b.vault.vault_key_name, "value");
        assert_eq!(b.vault.vault_approle_mount, "approle");
        assert_eq!(b.vault.vault_kubernetes_mount, "kubernetes");
        assert!(b.vault.vault_kubernetes_role.is_none());
        assert_eq!(b.vault.vault_timeout_ms, 10_000);
        assert!(b.hsm.hsm_module.is_none());
        assert_eq!(b.hsm.hsm_wrap_key_label, "dvsigner-wrap");
        assert!(b.vault.bulk_source().expect("none").is_none());
        assert!(b.hsm.config().expect("none").is_none());
    }

    #[test]
    fn flag_dependencies() {
        assert!(signer(&["--vault-url", "https://v:8200"]).is_err());
        assert!(signer(&["--vault-url", "https://v", "--vault-bulk-path", "k"]).is_ok());
        assert!(signer(&["--vault-role-id-file", "r"]).is_err());
        assert!(signer(&[
            "--vault-token-file",
            "t",
            "--vault-role-id-file",
            "r",
            "--vault-secret-id-file",
            "s"
        ])
        .is_err());
        // Kubernetes login excludes the token file and AppRole; its token file needs the role.
        assert!(signer(&["--vault-kubernetes-token-file", "j"]).is_err());
        assert!(signer(&["--vault-kubernetes-role", "r", "--vault-token-file", "t"]).is_err());
        assert!(signer(&[
            "--vault-kubernetes-role",
            "r",
            "--vault-role-id-file",
            "r",
            "--vault-secret-id-file",
            "s"
        ])
        .is_err());
        let Ok(Cli {
            command: Command::Signer(a),
            ..
        }) = signer(&[
            "--vault-url",
            "http://127.0.0.1:8200",
            "--vault-bulk-path",
            "k",
            "--vault-kubernetes-role",
            "signer",
            "--vault-kubernetes-mount",
            "/k8s/",
        ])
        else {
            panic!("parse")
        };
        let source = a
            .backends
            .vault
            .bulk_source()
            .expect("source")
            .expect("some");
        let crate::keys::vault::VaultAuth::Kubernetes(k) = source.auth else {
            panic!("kubernetes auth expected")
        };
        assert_eq!(k.role, "signer");
        assert_eq!(k.mount, "k8s");
        assert_eq!(
            k.jwt_file,
            std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token")
        );
        assert!(signer(&["--hsm-module", "m.so", "--hsm-token-label", "t"]).is_err());
        assert!(signer(&["--hsm-token-label", "t"]).is_err());
        assert!(signer(&[
            "--hsm-module",
            "m.so",
            "--hsm-token-label",
            "t",
            "--hsm-pin-file",
            "p"
        ])
        .is_ok());
    }
}
