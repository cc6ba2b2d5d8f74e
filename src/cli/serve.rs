//! `dvsigner signer`: the command line to [`NodeConfig`], then [`crate::app::node::run`].

use std::future::Future;
use std::time::Duration;

use super::{ServeArgs, SignerArgs};
use crate::app::node::{self, ClusterSyncConfig, KeymanagerConfig, NodeConfig, SlashingConfig};
use crate::app::{bind, ListenerConfig};
use crate::keys::sources::{KeyConfigDir, KeySources, KeystoresDir};
use crate::tls;

impl ServeArgs {
    /// The listener configuration these options describe.
    ///
    /// # Errors
    /// Neither TLS files nor `--insecure-http` (clap refuses that first).
    pub fn to_config(&self) -> anyhow::Result<ListenerConfig> {
        let tls = if self.insecure_http {
            None
        } else {
            let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
                anyhow::bail!(
                    "--tls-cert and --tls-key are required unless --insecure-http is given"
                );
            };
            Some(tls::ServerTlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
                allowed_clients: self.tls_allowed_clients.clone(),
            })
        };
        Ok(ListenerConfig {
            listen: self.listen,
            tls,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            host_allowlist: self.http_host_allowlist.clone(),
            http2: self.http2 == super::OnOff::On,
        })
    }
}

impl SignerArgs {
    /// The node configuration these options describe. Reads the Vault credential files and
    /// the PKCS#11 PIN file (the sources hold them).
    ///
    /// # Errors
    /// Unknown network, unreadable credential or PIN file, incomplete TLS options.
    pub fn to_config(&self) -> anyhow::Result<NodeConfig> {
        let mut config = NodeConfig::new(self.serve.to_config()?, self.data_dir.clone())?;
        config.network = node::network(&self.network)?;
        config.key_sources = self.key_sources()?;
        config.slashing = match (&self.slashing_db, self.no_slashing_protection) {
            (_, true) => SlashingConfig::Off,
            (Some(url), false) => SlashingConfig::Url(url.clone()),
            (None, false) => SlashingConfig::DataDir,
        };
        config.pruning = node::PruningConfig {
            epochs_to_keep: self.pruning.epochs_to_keep,
            interval_hours: self.pruning.interval_hours,
        };
        let sync = &self.sync;
        config.cluster =
            sync.cluster
                .clone()
                .zip(sync.operator.clone())
                .map(|(definition, operator)| ClusterSyncConfig {
                    peer_ca: sync.peer_ca.clone(),
                    peer_identity: sync
                        .peer_client_cert
                        .clone()
                        .zip(sync.peer_client_key.clone()),
                    peer_allowed_clients: sync.peer_allowed_clients.clone(),
                    min_peers: sync.sync_min_peers,
                    interval: Duration::from_secs(sync.sync_interval_secs.max(1)),
                    contact_grace: Duration::from_millis(sync.sync_contact_grace_ms),
                    watermark_from_genesis: !sync.no_sync_watermark_from_genesis,
                    ..ClusterSyncConfig::new(definition, operator)
                });
        config.agreement = node::AgreementConfig {
            enabled: self.agreement.agreement.map(|a| a == super::OnOff::On),
            round_ms: self.agreement.agreement_round_ms.max(1),
            timeout_ms: self.agreement.agreement_timeout_ms.max(1),
        };
        let km = &self.key_management;
        config.keymanager = km.keymanager_api.then(|| KeymanagerConfig {
            token_file: km.keymanager_token_file.clone(),
        });
        if km.key_cache {
            let Some(file) = km.key_cache_password_file.clone() else {
                anyhow::bail!("--key-cache needs --key-cache-password-file");
            };
            config.key_cache_password_file = Some(file);
        }
        Ok(config)
    }

    /// The operator's key sources, in load order.
    fn key_sources(&self) -> anyhow::Result<KeySources> {
        let mut sources = KeySources::new();
        if let (Some(keystores), Some(passwords)) = (&self.keystores, &self.keystores_passwords) {
            sources = sources.with(KeystoresDir {
                keystores: keystores.clone(),
                passwords: passwords.clone(),
            });
        }
        if let Some(dir) = &self.key_config {
            sources = sources.with(KeyConfigDir { dir: dir.clone() });
        }
        if let Some(vault) = self.backends.vault.bulk_source()? {
            sources = sources.with(vault);
        }
        if let Some(hsm) = self.backends.hsm.config()? {
            sources = sources.with(hsm);
        }
        Ok(sources)
    }
}

/// `dvsigner signer`.
///
/// # Errors
/// Invalid options, start-up failures.
pub async fn run_signer(
    args: SignerArgs,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let listener = bind(config.listener.listen).await?;
    node::run(config, listener, shutdown).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use crate::app::node::{AgreementConfig, PruningConfig, SlashingConfig};
    use crate::cli::{Cli, Command};

    fn signer(extra: &[&str]) -> super::SignerArgs {
        let base = ["dvsigner", "signer", "--data-dir", "/d", "--insecure-http"];
        let cli = Cli::try_parse_from(base.iter().chain(extra).copied().collect::<Vec<_>>())
            .expect("parse");
        let Command::Signer(args) = cli.command else {
            panic!("not signer")
        };
        args
    }

    fn combiner(extra: &[&str]) -> crate::cli::threshold::CombinerArgs {
        let base = [
            "dvsigner",
            "combiner",
            "--cluster",
            "c.json",
            "--insecure-http",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(extra).copied().collect::<Vec<_>>())
            .expect("parse");
        let Command::Combiner(args) = cli.command else {
            panic!("not combiner")
        };
        args
    }

    #[test]
    fn signer_defaults_are_the_config_defaults() {
        let config = signer(&[]).to_config().expect("config");
        assert_eq!(
            config.listener.listen.to_string(),
            crate::app::DEFAULT_LISTEN
        );
        assert!(config.listener.tls.is_none());
        assert_eq!(
            config.listener.header_read_timeout,
            Duration::from_secs(crate::app::DEFAULT_HEADER_READ_TIMEOUT_SECS)
        );
        assert_eq!(
            config.listener.host_allowlist,
            crate::http::server::default_host_allowlist()
        );
        assert_eq!(config.network.name, "mainnet");
        assert_eq!(config.slashing, SlashingConfig::DataDir);
        assert_eq!(config.pruning, PruningConfig::default());
        assert!(config.cluster.is_none() && config.keymanager.is_none());
        assert!(config.key_cache_password_file.is_none());
        assert!(config.key_sources.is_empty());
        assert_eq!(config.agreement, AgreementConfig::default());
        assert_eq!(config.agreement.enabled, None);
        assert_eq!(config.agreement.round_ms, 200);
        assert_eq!(config.agreement.timeout_ms, 1500);
    }

    #[test]
    fn agreement_options_become_typed_settings() {
        let config = signer(&[
            "--agreement",
            "off",
            "--agreement-round-ms",
            "50",
            "--agreement-timeout-ms",
            "900",
        ])
        .to_config()
        .expect("config");
        assert_eq!(
            config.agreement,
            AgreementConfig {
                enabled: Some(false),
                round_ms: 50,
                timeout_ms: 900
            }
        );
        let on = signer(&["--agreement", "on", "--agreement-round-ms", "0"])
            .to_config()
            .expect("config");
        assert_eq!(on.agreement.enabled, Some(true));
        assert_eq!(on.agreement.round_ms, 1);
        let bad = Cli::try_parse_from([
            "dvsigner",
            "signer",
            "--data-dir",
            "/d",
            "--insecure-http",
            "--agreement",
            "maybe",
        ]);
        assert!(bad.is_err());
    }

    #[test]
    fn signer_options_become_typed_settings() {
        let config = signer(&[
            "--keystores",
            "ks",
            "--keystores-passwords",
            "pw",
            "--key-config",
            "cfg",
            "--cluster",
            "c.json",
            "--operator",
            "a",
            "--sync-interval-secs",
            "0",
            "--no-sync-watermark-from-genesis",
            "--keymanager-api",
            "--header-read-timeout-secs",
            "0",
            "--slashing-db",
            "postgres://db/x",
        ])
        .to_config()
        .expect("config");
        assert_eq!(config.key_sources.names(), ["keystores", "key-config"]);
        assert_eq!(
            config.slashing,
            SlashingConfig::Url("postgres://db/x".into())
        );
        let cluster = config.cluster.expect("cluster");
        assert_eq!(cluster.operator, "a");
        assert_eq!(cluster.interval, Duration::from_secs(1));
        assert!(!cluster.watermark_from_genesis);
        assert_eq!(config.keymanager, Some(Default::default()));
        assert_eq!(config.listener.header_read_timeout, Duration::from_secs(1));
        assert!(config.listener.http2, "HTTP/2 is offered unless turned off");
        let off = signer(&[
            "--no-slashing-protection",
            "--slashing-db",
            "sqlite:x",
            "--http2",
            "off",
        ])
        .to_config()
        .expect("config");
        assert_eq!(off.slashing, SlashingConfig::Off);
        assert!(!off.listener.http2);
    }

    #[test]
    fn bad_values_give_the_same_errors_as_before() {
        let err = signer(&["--network", "no-such-network"])
            .to_config()
            .expect_err("bad network");
        let cause = crate::signing::Network::from_name_or_path("no-such-network")
            .expect_err("unknown network");
        assert_eq!(format!("{err:#}"), format!("--network: {cause}"));

        let dir = tempfile::tempdir().expect("tmp");
        let token = dir.path().join("token");
        std::fs::write(&token, "s.token\n").expect("write");
        let token = token.to_str().expect("utf8");
        let err = signer(&[
            "--vault-url",
            "https://vault:8200",
            "--vault-bulk-path",
            "keys",
            "--vault-token-file",
            token,
        ])
        .to_config()
        .expect_err("https without CA");
        assert_eq!(
            format!("{err:#}"),
            "--vault-ca (or VAULT_CACERT) is required for an https vault url"
        );
        let config = signer(&[
            "--vault-url",
            "http://127.0.0.1:8200",
            "--vault-bulk-path",
            "keys",
            "--vault-token-file",
            token,
        ])
        .to_config()
        .expect("vault over http");
        assert_eq!(config.key_sources.names(), ["vault-bulk"]);

        let err = combiner(&["--network", "no-such-network"])
            .to_config()
            .expect_err("bad network");
        assert_eq!(format!("{err:#}"), format!("--network: {cause}"));
    }

    #[test]
    fn combiner_defaults_are_the_config_defaults() {
        let config = combiner(&[]).to_config().expect("config");
        let defaults = crate::app::combiner::CombinerConfig::new(
            crate::app::ListenerConfig::new(
                crate::app::DEFAULT_LISTEN.parse().expect("addr"),
                None,
            ),
            "c.json".into(),
        )
        .expect("defaults");
        assert_eq!(config.deadline, defaults.deadline);
        assert_eq!(config.connect_timeout(), defaults.deadline);
        let (h, d) = (config.health, defaults.health);
        assert_eq!(
            (
                h.failures_to_back_off,
                h.probe_initial,
                h.probe_max,
                h.summary_every
            ),
            (
                d.failures_to_back_off,
                d.probe_initial,
                d.probe_max,
                d.summary_every
            )
        );
        assert_eq!(config.network.name, defaults.network.name);
        let fast = combiner(&["--node-connect-timeout-ms", "0", "--deadline-ms", "500"])
            .to_config()
            .expect("config");
        assert_eq!(fast.deadline, Duration::from_millis(500));
        assert_eq!(fast.connect_timeout(), Duration::from_millis(1));
    }
}
