//! Command line: the contract operators script against (README "Command line"; option names
//! stay stable). `main.rs` parses [`Cli`] and calls [`run`]. This module only parses (clap
//! definitions, the `--config` file in [`config`]), converts the options of the long-running
//! commands into `app` configurations, and dispatches; `app` never imports `cli`.
//! Every option that names a secret takes a path (or an environment variable), never a value.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

pub mod backends;
pub mod bench;
pub mod config;
pub mod dkg;
pub mod hsm;
pub mod reshare;
pub mod serve;
pub mod slashing;
pub mod status;
pub mod threshold;

/// dvsigner: threshold remote signer for Ethereum validators (Web3Signer API).
#[derive(Debug, Parser)]
#[command(name = "dvsigner", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "DVSIGNER_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Serve Prometheus metrics of `signer` or `combiner` over plain HTTP at
    /// `http://ADDR/metrics` (off unless given; use a loopback address or a network policy:
    /// metrics are not authenticated).
    #[arg(long, global = true, env = "DVSIGNER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// `signer` and `combiner`: read options from this YAML file (TOML if it ends in `.toml`),
    /// keys being the long option names (`listen: 127.0.0.1:9000`). Precedence: command line >
    /// environment variable > config file > default.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// `signer` and `combiner`: check the options (file, environment and command line), print
    /// the effective settings and exit, without binding ports or reading keys.
    #[arg(long, global = true)]
    pub check_config: bool,
    /// The effective settings, filled by [`parse_from`] for `--check-config`.
    #[arg(skip)]
    pub effective: Option<crate::cli::config::Settings>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
// Parsed once at start-up; the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a signer node (Web3Signer eth2 API over HTTPS).
    Signer(SignerArgs),
    /// Slashing-protection database maintenance (EIP-3076 interchange).
    #[command(subcommand)]
    SlashingProtection(slashing::SlashingCommand),
    /// Run a combiner in front of a cluster of signer nodes.
    Combiner(threshold::CombinerArgs),
    /// Split keystores into t-of-n share keystores and a cluster definition.
    Split(threshold::SplitArgs),
    /// Cluster definition tools.
    #[command(subcommand)]
    Cluster(threshold::ClusterCommand),
    /// Run a local 3-of-4 cluster plus combiner over TLS and print how to connect clients.
    Dev(DevArgs),
    /// Load-test a Web3Signer-compatible URL and compare with raw blst signing.
    Bench(bench::BenchArgs),
    /// Create validator keys with the other operators (distributed key generation).
    Dkg(dkg::DkgArgs),
    /// Move validators to a new operator set and/or threshold, keeping their public keys.
    Reshare(reshare::ReshareArgs),
    /// Store key shares on a PKCS#11 token (HSM), wrapped under a key that never leaves it.
    #[command(subcommand)]
    Hsm(hsm::HsmCommand),
}

/// Listener and TLS options shared by the node and the combiner.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Listener and TLS")]
pub struct ServeArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = crate::app::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Server certificate chain (PEM).
    #[arg(
        long,
        env = "DVSIGNER_TLS_CERT",
        required_unless_present = "insecure_http"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(
        long,
        env = "DVSIGNER_TLS_KEY",
        required_unless_present = "insecure_http"
    )]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates issued by this CA (PEM).
    #[arg(long, env = "DVSIGNER_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Require client certificates whose SHA-256 fingerprint is listed (`NAME FINGERPRINT` lines).
    #[arg(long, env = "DVSIGNER_TLS_ALLOWED_CLIENTS")]
    pub tls_allowed_clients: Option<PathBuf>,
    /// Serve plain HTTP (only for loopback, e.g. a sidecar sharing the validator client's pod).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_client_ca", "tls_allowed_clients"])]
    pub insecure_http: bool,
    /// Seconds a client may take to send a request head before the connection is closed.
    #[arg(long, default_value_t = crate::app::DEFAULT_HEADER_READ_TIMEOUT_SECS)]
    pub header_read_timeout_secs: u64,
    /// Hosts (names or IP addresses, without port) that requests may address in their Host
    /// header, comma-separated; `*` allows any. Other hosts get 403 on every route, a request
    /// without a Host header 400. List every name clients and peers use to reach this server.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = crate::http::server::DEFAULT_HOST_ALLOWLIST,
        value_parser = crate::http::server::parse_host_entry
    )]
    pub http_host_allowlist: Vec<String>,
    /// Offer HTTP/2 to TLS clients (ALPN `h2`, then `http/1.1`): a client that takes it sends
    /// all its requests over one connection, with one handshake. `off`: HTTP/1.1 only.
    #[arg(long, value_enum, default_value = "on")]
    pub http2: OnOff,
}

impl ServeArgs {
    /// The `--http-host-allowlist` as the server applies it.
    pub fn host_allowlist(&self) -> crate::http::server::HostAllowlist {
        crate::http::server::HostAllowlist::new(&self.http_host_allowlist)
    }
}

/// `dvsigner signer` options.
#[derive(Debug, Clone, Args)]
pub struct SignerArgs {
    /// Listener and TLS.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Data directory (slashing-protection SQLite database by default).
    #[arg(long, env = "DVSIGNER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Directory of EIP-2335 keystores (`NAME.json`).
    #[arg(long, env = "DVSIGNER_KEYSTORES", requires = "keystores_passwords")]
    pub keystores: Option<PathBuf>,
    /// Directory of keystore passwords (`NAME.txt`, first line).
    #[arg(long, env = "DVSIGNER_KEYSTORES_PASSWORDS", requires = "keystores")]
    pub keystores_passwords: Option<PathBuf>,
    /// Directory of Web3Signer key-config YAML files (`file-keystore`, `file-raw`).
    #[arg(long, env = "DVSIGNER_KEY_CONFIG")]
    pub key_config: Option<PathBuf>,
    /// Slashing-protection database: `sqlite:PATH` or `postgres://…` (default: SQLite in the data dir).
    #[arg(long, env = "DVSIGNER_SLASHING_DB")]
    pub slashing_db: Option<String>,
    /// Turn slashing protection off (only for nodes behind another protected signer; never for
    /// a node a validator client talks to directly).
    #[arg(long)]
    pub no_slashing_protection: bool,
    /// Network: mainnet, holesky, hoodi, sepolia, or a path to a consensus config YAML.
    #[arg(long, default_value = crate::app::DEFAULT_NETWORK)]
    pub network: String,
    /// Slashing-protection history pruning.
    #[command(flatten)]
    pub pruning: PruningArgs,
    /// Cluster membership and peer history sync.
    #[command(flatten)]
    pub sync: SyncArgs,
    /// Agreement between the cluster's nodes.
    #[command(flatten)]
    pub agreement: AgreementArgs,
    /// Key backends: HashiCorp Vault bulk mode and PKCS#11 tokens.
    #[command(flatten)]
    pub backends: backends::KeyBackendArgs,
    /// Keymanager API and key cache.
    #[command(flatten)]
    pub key_management: KeyManagementArgs,
}

/// Keymanager API and local key cache.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Key management")]
pub struct KeyManagementArgs {
    /// Serve the Keymanager API (`GET|POST|DELETE /eth/v1/keystores`), protected by a bearer
    /// token. Imported keystores are kept in the data directory and survive restarts.
    /// Web3Signer's `--key-manager-api-enabled[=true]` is accepted too.
    #[arg(
        long = "keymanager-api",
        aliases = ["key-manager-api-enabled", "enable-key-manager-api"],
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub keymanager_api: bool,
    /// File holding the Keymanager API bearer token (first line). Default:
    /// `<data-dir>/keymanager-token`, generated (mode 0600) when missing.
    #[arg(long, env = "DVSIGNER_KEYMANAGER_TOKEN_FILE")]
    pub keymanager_token_file: Option<PathBuf>,
    /// Keep the decrypted keys in one file in the data directory (`key-cache`, mode 0600),
    /// encrypted under a key derived once from `--key-cache-password-file`: later starts run one
    /// KDF instead of one per keystore. Keystores that change are decrypted again.
    #[arg(long, requires = "key_cache_password_file")]
    pub key_cache: bool,
    /// File holding the key cache password (first line; must not be empty).
    #[arg(long, env = "DVSIGNER_KEY_CACHE_PASSWORD_FILE")]
    pub key_cache_password_file: Option<PathBuf>,
}

/// Cluster membership and peer history sync: with `--cluster` and `--operator` the node pulls
/// its validators' signed-duty history from the other nodes before it signs.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cluster history sync")]
pub struct SyncArgs {
    /// Cluster definition (`cluster.json`); enables the peer history route and sync.
    #[arg(long, requires = "operator")]
    pub cluster: Option<PathBuf>,
    /// This node's operator name in the cluster definition.
    #[arg(long, requires = "cluster")]
    pub operator: Option<String>,
    /// CA that issued the peers' server certificates (PEM); operators' `tls_fingerprint`s in
    /// the cluster definition are accepted too.
    #[arg(long)]
    pub peer_ca: Option<PathBuf>,
    /// Client certificate (PEM) this node presents to its peers.
    #[arg(long, requires = "peer_client_key")]
    pub peer_client_cert: Option<PathBuf>,
    /// Private key (PEM) of `--peer-client-cert`.
    #[arg(long, env = "DVSIGNER_PEER_CLIENT_KEY", requires = "peer_client_cert")]
    pub peer_client_key: Option<PathBuf>,
    /// Peers' client certificates allowed on the history route: `OPERATOR FINGERPRINT` lines,
    /// OPERATOR an operator of the cluster definition (its `tls_fingerprint` is allowed too).
    #[arg(long)]
    pub peer_allowed_clients: Option<PathBuf>,
    /// Distinct peers whose history must be merged before signing (default: the largest
    /// max(t-1, n-t+1) over the cluster's validators).
    #[arg(long)]
    pub sync_min_peers: Option<usize>,
    /// Seconds between background pulls once synced.
    #[arg(long, default_value_t = crate::app::node::DEFAULT_SYNC_INTERVAL_SECS)]
    pub sync_interval_secs: u64,
    /// A synced node that gets no answer from t-1 of its peers (capped at --sync-min-peers) for
    /// longer than this refuses blocks and attestations (503) until contact returns and it
    /// pulled again from --sync-min-peers peers; 0 turns this off.
    #[arg(long, default_value_t = crate::app::node::DEFAULT_SYNC_CONTACT_GRACE_MS)]
    pub sync_contact_grace_ms: u64,
    /// Do not raise the low watermarks of validators without history to the current slot and
    /// epoch (for devnets and tests whose epochs are not wall-clock time).
    #[arg(long)]
    pub no_sync_watermark_from_genesis: bool,
}

/// `on` / `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// Agreement between the nodes of a cluster on one signing root per block / attestation duty.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cluster agreement")]
pub struct AgreementArgs {
    /// Before signing a block or attestation, agree with the other nodes holding shares of the
    /// validator on ONE root per duty (validator + slot, validator + target epoch), and refuse
    /// (412) any other root. Default: on with --cluster and a peer client identity (messages are
    /// signed with --peer-client-key). Off saves one round trip between nodes when a single
    /// validator client uses the cluster.
    #[arg(long, value_enum)]
    pub agreement: Option<OnOff>,
    /// Length of the first agreement round (later rounds double, up to 16x).
    #[arg(long, default_value_t = crate::agreement::driver::DEFAULT_ROUND_MS)]
    pub agreement_round_ms: u64,
    /// How long a sign request waits for the agreement before answering 503 (keep it below the
    /// combiner's --deadline-ms).
    #[arg(long, default_value_t = crate::agreement::driver::DEFAULT_TIMEOUT_MS)]
    pub agreement_timeout_ms: u64,
}

/// Slashing-protection pruning (Web3Signer's defaults: keep 250 epochs, every 12 hours).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Slashing-protection pruning")]
pub struct PruningArgs {
    /// Epochs of history to keep per validator; older records are deleted after the low
    /// watermarks are raised above them, so the rules still hold.
    #[arg(
        long = "slashing-protection-pruning-epochs-to-keep",
        default_value_t = crate::app::node::DEFAULT_PRUNING_EPOCHS_TO_KEEP
    )]
    pub epochs_to_keep: u64,
    /// Hours between prunes (0 turns pruning off).
    #[arg(
        long = "slashing-protection-pruning-interval-hours",
        default_value_t = crate::app::node::DEFAULT_PRUNING_INTERVAL_HOURS
    )]
    pub interval_hours: u64,
}

/// `dvsigner dev` options.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Working directory for certificates, keys and databases (default: a new temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Number of interop validators to serve.
    #[arg(long, default_value_t = 4)]
    pub validators: u64,
    /// Combiner port; the four nodes use the next four ports.
    #[arg(long, default_value_t = 9100)]
    pub base_port: u16,
}

/// Why the command line could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The config file or one of its keys.
    #[error(transparent)]
    Config(#[from] crate::cli::config::Error),
    /// clap's own usage error (or `--help` / `--version` output).
    #[error("{error}")]
    Usage {
        /// The error, rendered by clap.
        error: clap::Error,
        /// The config file whose options took part, for a note under the error.
        file: Option<PathBuf>,
    },
}

/// Worker threads of the async runtime for this command, when it should differ from tokio's
/// default (one per core; `TOKIO_WORKER_THREADS` overrides both). A signer node signs, checks
/// slashing protection and decrypts keys on threads of its own, so its async workers only move
/// bytes (TLS, HTTP, JSON: about a tenth of a request's CPU time): one worker per four cores is
/// plenty, and every extra one parks and is woken again for each request, which on a busy
/// node costs more CPU than the work it takes over (`cargo bench --bench node`: 1.19-1.21x raw
/// blst per signature with one worker on 2 cores, 1.24x with two).
pub fn runtime_workers(cli: &Cli) -> Option<usize> {
    match cli.command {
        Command::Signer(_) => Some((num_cpus::get() / 4).max(1)),
        _ => None,
    }
}

/// Parses the process's command line with its `--config` file merged in (see
/// [`crate::cli::config`]); prints usage errors and exits like `Cli::parse` does (status 2).
pub fn parse() -> Cli {
    match parse_from(std::env::args_os().collect(), |name| {
        std::env::var_os(name).is_some()
    }) {
        Ok(cli) => cli,
        Err(ParseError::Config(e)) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
        Err(ParseError::Usage { error, file }) => {
            if !error.use_stderr() {
                error.exit();
            }
            let _ = error.print();
            if let Some(file) = file {
                eprintln!("note: options were also read from {}", file.display());
            }
            std::process::exit(error.exit_code())
        }
    }
}

/// Parses `argv` (program name first) with its `--config` file merged in; `env_is_set` tells
/// whether an environment variable is set (clap itself reads the values).
///
/// # Errors
/// [`ParseError::Config`] for a config-file problem (naming the file and the key, including a
/// value the option refuses), [`ParseError::Usage`] for anything clap refuses.
pub fn parse_from(
    argv: Vec<std::ffi::OsString>,
    env_is_set: impl Fn(&str) -> bool,
) -> Result<Cli, ParseError> {
    use clap::{CommandFactory, FromArgMatches};
    let mut cmd = Cli::command();
    let expanded = crate::cli::config::expand(&cmd, argv, env_is_set)?;
    let usage = |error: clap::Error| match crate::cli::config::file_error(&expanded, &error) {
        Some(e) => ParseError::Config(e),
        None => ParseError::Usage {
            error,
            file: expanded.file.clone(),
        },
    };
    let matches = cmd
        .try_get_matches_from_mut(expanded.args.clone())
        .map_err(usage)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| usage(e.format(&mut cmd)))?;
    if cli.check_config {
        // A fully built definition, so the subcommand lists the global options too.
        let mut built = Cli::command();
        built.build();
        if let Some((name, sub_matches)) = matches.subcommand() {
            if let Some(sub) = built.find_subcommand(name) {
                cli.effective = Some(crate::cli::config::settings(sub, sub_matches, &expanded));
            }
        }
    }
    Ok(cli)
}

/// `--check-config`: validates what parsing cannot (network, slashing-DB URL form) and prints
/// the effective settings; binds nothing and reads no key.
fn check_config(cli: &Cli) -> anyhow::Result<()> {
    use crate::cli::config::{check_network, check_slashing_db, Error};
    let mut notes = String::new();
    match &cli.command {
        Command::Signer(args) => {
            check_network(&args.network)?;
            if let (Some(url), false) = (&args.slashing_db, args.no_slashing_protection) {
                check_slashing_db(url)?;
                if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                    if let Ok(mode) = crate::slashing::check_postgres_url(url) {
                        notes.push_str(&format!("# slashing-db sslmode in effect: {mode}\n"));
                    }
                }
            }
        }
        Command::Combiner(args) => {
            check_network(&args.network)?;
            if args.deadline_ms == 0 {
                return Err(Error::Setting {
                    key: "deadline-ms".into(),
                    reason: "must be at least 1".into(),
                }
                .into());
            }
        }
        _ => anyhow::bail!(
            "--check-config is only accepted by `dvsigner signer` and `dvsigner combiner`"
        ),
    }
    if let Some(settings) = &cli.effective {
        print!("{settings}");
    }
    print!("{notes}");
    Ok(())
}

/// Runs the parsed command.
///
/// # Errors
/// Any failure, with context, for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.check_config {
        return check_config(&cli);
    }
    if cli.config.is_some() && !matches!(cli.command, Command::Signer(_) | Command::Combiner(_)) {
        anyhow::bail!("--config is only accepted by `dvsigner signer` and `dvsigner combiner`");
    }
    let serves = matches!(cli.command, Command::Signer(_) | Command::Combiner(_));
    let _metrics = match cli.metrics_listen {
        Some(addr) if serves => Some(MetricsGuard(
            crate::metrics::spawn_server(addr)
                .await
                .with_context(|| format!("--metrics-listen {addr}"))?
                .1,
        )),
        _ => None,
    };
    match cli.command {
        Command::Signer(args) => serve::run_signer(args, crate::app::shutdown_signal()).await,
        Command::SlashingProtection(cmd) => slashing::run(cmd).await,
        Command::Combiner(args) => {
            threshold::run_combiner(args, crate::app::shutdown_signal()).await
        }
        Command::Split(args) => threshold::run_split(args),
        Command::Cluster(cmd) => threshold::run_cluster(cmd).await,
        Command::Dev(args) => crate::app::dev::run(args.dir, args.validators, args.base_port).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Dkg(args) => dkg::run(args).await,
        Command::Reshare(args) => reshare::run(args).await,
        Command::Hsm(cmd) => tokio::task::spawn_blocking(move || hsm::run(cmd))
            .await
            .context("hsm task")?,
    }
}

/// A command's outcome that maps to a documented exit code other than 1 (`main` exits with
/// `code` after printing `message`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitStatus {
    /// The process exit code.
    pub code: u8,
    /// What to print on stderr.
    pub message: String,
}

/// Stops the metrics server when the command returns.
struct MetricsGuard(tokio::task::JoinHandle<()>);

impl Drop for MetricsGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_defaults() {
        let cli = Cli::try_parse_from([
            "dvsigner",
            "signer",
            "--data-dir",
            "/tmp/d",
            "--insecure-http",
        ])
        .expect("parse");
        let Command::Signer(a) = cli.command else {
            panic!("not signer")
        };
        assert_eq!(a.serve.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(a.network, "mainnet");
        assert!(a.slashing_db.is_none());
        assert!(!a.no_slashing_protection);
        assert_eq!(
            (a.pruning.epochs_to_keep, a.pruning.interval_hours),
            (250, 12)
        );
        assert!(a.sync.cluster.is_none() && a.sync.operator.is_none());
        assert_eq!(a.sync.sync_interval_secs, 60);
        assert_eq!(a.sync.sync_min_peers, None);
        assert!(!a.sync.no_sync_watermark_from_genesis);
    }

    #[test]
    fn cluster_needs_operator() {
        let base = ["dvsigner", "signer", "--data-dir", "/d", "--insecure-http"];
        let with = |extra: &[&str]| {
            Cli::try_parse_from(base.iter().chain(extra).copied().collect::<Vec<_>>())
        };
        assert!(with(&["--cluster", "c.json"]).is_err());
        assert!(with(&["--operator", "a"]).is_err());
        assert!(with(&["--cluster", "c.json", "--operator", "a"]).is_ok());
    }

    #[test]
    fn tls_required_unless_insecure() {
        assert!(Cli::try_parse_from(["dvsigner", "signer", "--data-dir", "/d"]).is_err());
        assert!(Cli::try_parse_from([
            "dvsigner",
            "signer",
            "--data-dir",
            "/d",
            "--insecure-http",
            "--tls-cert",
            "c.pem"
        ])
        .is_err());
    }

    #[test]
    fn key_management_flags() {
        let base = ["dvsigner", "signer", "--data-dir", "/d", "--insecure-http"];
        let parse = |extra: &[&str]| {
            Cli::try_parse_from(base.iter().chain(extra).copied().collect::<Vec<_>>()).map(|c| {
                let Command::Signer(a) = c.command else {
                    panic!("not signer")
                };
                a.key_management
            })
        };
        let d = parse(&[]).expect("defaults");
        assert!(!d.keymanager_api && !d.key_cache);
        assert!(d.keymanager_token_file.is_none() && d.key_cache_password_file.is_none());
        assert!(parse(&["--keymanager-api"]).expect("flag").keymanager_api);
        assert!(
            parse(&["--key-manager-api-enabled=true"])
                .expect("web3signer alias")
                .keymanager_api
        );
        assert!(
            !parse(&["--key-manager-api-enabled=false"])
                .expect("alias false")
                .keymanager_api
        );
        assert!(parse(&["--key-cache"]).is_err());
        let c = parse(&["--key-cache", "--key-cache-password-file", "p"]).expect("cache");
        assert!(c.key_cache);
    }

    #[test]
    fn config_file_values_refused_by_clap_name_the_file_and_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "data-dir: /d\ninsecure-http: true\nlisten: nope\n").expect("write");
        let argv = [
            "dvsigner",
            "signer",
            "--config",
            file.to_str().expect("utf8"),
        ]
        .map(std::ffi::OsString::from)
        .to_vec();
        let err = parse_from(argv.clone(), |_| false).expect_err("bad listen");
        let ParseError::Config(crate::cli::config::Error::InvalidValue { key, value, .. }) = err
        else {
            panic!("not a config error: {err}")
        };
        assert_eq!((key.as_str(), value.as_str()), ("listen", "nope"));
        // The command line wins, so the file's bad value is never parsed.
        let mut ok = argv;
        ok.extend(["--listen", "127.0.0.1:1", "--check-config"].map(std::ffi::OsString::from));
        let cli = parse_from(ok, |_| false).expect("parse");
        let Command::Signer(a) = &cli.command else {
            panic!("not signer")
        };
        assert_eq!(a.serve.listen.to_string(), "127.0.0.1:1");
        assert!(a.serve.insecure_http);
        let settings = cli
            .effective
            .expect("effective settings for --check-config");
        assert!(settings.set.iter().any(|s| s.key == "data-dir"
            && s.values == ["/d"]
            && s.source == crate::cli::config::Source::File));
    }

    #[test]
    fn keystores_need_passwords() {
        assert!(Cli::try_parse_from([
            "dvsigner",
            "signer",
            "--data-dir",
            "/d",
            "--insecure-http",
            "--keystores",
            "k"
        ])
        .is_err());
    }
}
