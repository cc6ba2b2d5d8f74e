//! Threshold commands: `dvsigner split`, `dvsigner cluster verify`, `dvsigner combiner`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::ServeArgs;
use crate::app::combiner::{self, CombinerConfig};
use crate::app::combiner::{
    DEFAULT_DEADLINE_MS, DEFAULT_NODE_BACKOFF_FAILURES, DEFAULT_NODE_DOWN_SUMMARY_SECS,
    DEFAULT_NODE_PROBE_INITIAL_MS, DEFAULT_NODE_PROBE_MAX_MS,
};
use crate::app::split::{random_password, split_to_dir};
use crate::app::{bind, DEFAULT_NETWORK};
use crate::cluster::{ClusterDefinition, Operator};
use crate::keys::{Keystore, Password, SecretKey};
use crate::progress::TermProgress;

pub use crate::app::KdfChoice;

/// `dvsigner split` options.
#[derive(Debug, Clone, Args)]
pub struct SplitArgs {
    /// A keystore file, or a directory of `NAME.json` keystores.
    #[arg(long)]
    pub keystore: PathBuf,
    /// Password file for the keystore(s).
    #[arg(long, conflicts_with = "passwords")]
    pub password_file: Option<PathBuf>,
    /// Directory of `NAME.txt` passwords matching `NAME.json` keystores.
    #[arg(long)]
    pub passwords: Option<PathBuf>,
    /// Signatures needed (t); must be a strict majority of the shares.
    #[arg(long)]
    pub threshold: u32,
    /// Number of shares (n); must equal the number of operators.
    #[arg(long)]
    pub shares: u32,
    /// Operators and their node URLs: `a=https://node-a:9000,b=https://node-b:9000,...`.
    #[arg(long, value_delimiter = ',')]
    pub operators: Vec<String>,
    /// Directory of `<operator>.txt` passwords for the share keystores (generated when absent).
    #[arg(long)]
    pub operator_passwords: Option<PathBuf>,
    /// Output directory (`cluster.json`, `<operator>/keystores`, `<operator>/passwords`).
    #[arg(long)]
    pub out: PathBuf,
    /// Encryption cost of the share keystores.
    #[arg(long, value_enum, default_value_t = KdfChoice::Scrypt)]
    pub kdf: KdfChoice,
}

/// `dvsigner cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Check a cluster definition (commitments against share public keys) and optionally one
    /// share keystore against it; with `--online`, that the running nodes agree on the network.
    Verify(VerifyArgs),
    /// Ask every node of the cluster whether it is reachable, ready, on which network and
    /// holding which shares, and say per validator whether at least t nodes can sign.
    /// Exit code 0 when all can, 3 when some validator is below threshold, 4 when the
    /// processes disagree on the network (and no validator is below threshold).
    Status(super::status::StatusArgs),
}

/// `dvsigner cluster verify` options.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The cluster definition.
    pub cluster: PathBuf,
    /// A share keystore to check against the definition.
    #[arg(long, requires = "password_file")]
    pub share_keystore: Option<PathBuf>,
    /// Its password file.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Also ask every node (and `--combiner`) for its network (`/api/v1/dvsigner/info`) and
    /// fail (exit code 4) when the processes that answer disagree.
    #[arg(long)]
    pub online: bool,
    /// How to reach the nodes with `--online`.
    #[command(flatten)]
    pub access: super::status::NodeAccessArgs,
}

/// `dvsigner combiner` options.
#[derive(Debug, Clone, Args)]
pub struct CombinerArgs {
    /// Listener and TLS (the validator client's side).
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The cluster definition.
    #[arg(long)]
    pub cluster: PathBuf,
    /// CA that signed the nodes' server certificates (nodes may also be pinned by fingerprint
    /// in cluster.json).
    #[arg(long)]
    pub node_ca: Option<PathBuf>,
    /// Client certificate the combiner presents to nodes (PEM).
    #[arg(long, env = "DVSIGNER_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "DVSIGNER_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
    /// How long to wait for partial signatures, in milliseconds.
    #[arg(long, default_value_t = DEFAULT_DEADLINE_MS)]
    pub deadline_ms: u64,
    /// Network: mainnet, holesky, hoodi, sepolia, or a consensus config YAML.
    #[arg(long, default_value = DEFAULT_NETWORK)]
    pub network: String,
    /// Timeout for a new connection to a node (TCP connect and TLS
    /// handshake), in milliseconds. Default: the deadline (--deadline-ms). A shorter value
    /// reports a node that cannot connect as such before the deadline, but under CPU load or
    /// over long links (a connection needs about 3 round trips) it fails connections that
    /// would have succeeded; established connections are kept alive and reused.
    #[arg(long, help_heading = "Node health (advanced)")]
    pub node_connect_timeout_ms: Option<u64>,
    /// Consecutive transport failures (refused, reset, TLS failure, timeout) after which a
    /// node is backed off: not sent sign requests while at least the threshold of other nodes
    /// is healthy, and probed with GET /upcheck until it answers.
    #[arg(long, default_value_t = DEFAULT_NODE_BACKOFF_FAILURES, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Node health (advanced)")]
    pub node_backoff_failures: u32,
    /// Wait before the first probe of a backed-off node, in milliseconds; it doubles after
    /// each failed probe up to --node-probe-max-ms.
    #[arg(long, default_value_t = DEFAULT_NODE_PROBE_INITIAL_MS, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Node health (advanced)")]
    pub node_probe_initial_ms: u64,
    /// Longest wait between probes of a backed-off node, in milliseconds.
    #[arg(long, default_value_t = DEFAULT_NODE_PROBE_MAX_MS, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Node health (advanced)")]
    pub node_probe_max_ms: u64,
    /// How often a summary line is logged per backed-off node while it is down, in seconds.
    #[arg(long, default_value_t = DEFAULT_NODE_DOWN_SUMMARY_SECS, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Node health (advanced)")]
    pub node_down_summary_secs: u64,
    /// Most partial-signature requests on the wire to one node at once (so at most that many
    /// connections to it); further requests wait in arrival order. Connections up to this many
    /// are opened to every node at start.
    #[arg(long, default_value_t = crate::combiner::gate::DEFAULT_MAX_IN_FLIGHT as u64, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Node load (advanced)")]
    pub node_max_in_flight: u64,
    /// Most in-flight requests to one node whose sign request was already answered (a slow or
    /// far node): beyond this, requests to that node wait, and are not sent once their sign
    /// request is answered.
    #[arg(long, default_value_t = crate::combiner::gate::DEFAULT_MAX_UNNEEDED as u64, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Node load (advanced)")]
    pub node_max_unneeded: u64,
    /// Connections opened to every node at start, so that the first burst does not begin
    /// with a TLS handshake per request (at most --node-max-in-flight; 0: none).
    #[arg(long, default_value_t = crate::combiner::WARM_CONNECTIONS as u64, help_heading = "Node load (advanced)")]
    pub node_warm_connections: u64,
}

impl CombinerArgs {
    /// Back-off and probe settings from the advanced flags.
    pub fn health_settings(&self) -> crate::combiner::node_health::HealthSettings {
        crate::combiner::node_health::HealthSettings {
            failures_to_back_off: self.node_backoff_failures.max(1),
            probe_initial: Duration::from_millis(self.node_probe_initial_ms),
            probe_max: Duration::from_millis(self.node_probe_max_ms),
            summary_every: Duration::from_secs(self.node_down_summary_secs),
        }
    }
}

/// `dvsigner split`.
///
/// # Errors
/// Bad arguments, unreadable or undecryptable keystores, unwritable output.
pub fn run_split(args: SplitArgs) -> anyhow::Result<()> {
    let operators = parse_operators(&args.operators)?;
    if operators.len() != args.shares as usize {
        bail!(
            "--shares {} but {} operators were named",
            args.shares,
            operators.len()
        );
    }
    let inputs = read_input_keystores(
        &args.keystore,
        args.password_file.as_deref(),
        args.passwords.as_deref(),
    )?;
    let keys: Vec<SecretKey> = inputs.into_iter().map(|(_, k)| k).collect();
    let (definition, names) = split_to_dir(
        &keys,
        args.threshold,
        &operators,
        &args.out,
        |operator| operator_password(&args, operator),
        args.kdf.params(),
    )?;
    let cluster_path = args.out.join("cluster.json");
    println!(
        "split {} validator(s) {}-of-{} across {}; cluster {} written to {}",
        keys.len(),
        args.threshold,
        args.shares,
        names.join(", "),
        definition.hash(),
        cluster_path.display()
    );
    Ok(())
}

fn operator_password(args: &SplitArgs, operator: &str) -> anyhow::Result<Password> {
    if let Some(dir) = &args.operator_passwords {
        let p = dir.join(format!("{operator}.txt"));
        if p.exists() {
            return Ok(Password::from_file(&p)?);
        }
    }
    Ok(random_password())
}

fn parse_operators(list: &[String]) -> anyhow::Result<Vec<Operator>> {
    list.iter()
        .map(|item| {
            let (name, url) = item
                .split_once('=')
                .with_context(|| format!("operator {item:?} is not NAME=URL"))?;
            Ok(Operator::new(name.trim(), url.trim()))
        })
        .collect()
}

/// Reads one keystore or a directory of them, returning (file name, key) pairs.
fn read_input_keystores(
    path: &Path,
    password_file: Option<&Path>,
    passwords: Option<&Path>,
) -> anyhow::Result<Vec<(String, SecretKey)>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_owned()]
    };
    if files.is_empty() {
        bail!("no keystores in {}", path.display());
    }
    let reading = TermProgress::start(
        "split: decrypting keystores",
        "keystores",
        files.len() as u64,
    );
    let mut out = Vec::new();
    for file in files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let password = match (password_file, passwords) {
            (Some(f), _) => Password::from_file(f)?,
            (None, Some(dir)) => Password::from_file(&dir.join(format!("{stem}.txt")))?,
            (None, None) => bail!("give --password-file or --passwords"),
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let ks = Keystore::from_json(&text).with_context(|| format!("{}", file.display()))?;
        let sk = ks
            .decrypt(&password)
            .with_context(|| format!("decrypting {}", file.display()))?;
        out.push((stem, sk));
        reading.inc(1);
    }
    reading.finish();
    Ok(out)
}

/// `dvsigner cluster verify` and `dvsigner cluster status`.
///
/// # Errors
/// Any verification failure, named; [`super::ExitStatus`] for the documented exit codes.
pub async fn run_cluster(cmd: ClusterCommand) -> anyhow::Result<()> {
    let args = match cmd {
        ClusterCommand::Verify(args) => args,
        ClusterCommand::Status(args) => return super::status::run_status(args).await,
    };
    let text = std::fs::read_to_string(&args.cluster)
        .with_context(|| format!("reading {}", args.cluster.display()))?;
    let def = ClusterDefinition::from_json(&text).context("cluster definition is invalid")?;
    println!(
        "cluster {}: {} operator(s), {} validator(s): commitments match every share public key",
        def.hash(),
        def.operators().len(),
        def.validators().len()
    );
    if let (Some(ks), Some(pw)) = (&args.share_keystore, &args.password_file) {
        let text =
            std::fs::read_to_string(ks).with_context(|| format!("reading {}", ks.display()))?;
        let sk = Keystore::from_json(&text)?.decrypt(&Password::from_file(pw)?)?;
        let pk = sk.public_key();
        let Some((v, share)) = def.share(&pk.bytes()) else {
            bail!(
                "share keystore {} (public key {}) is not in this cluster",
                ks.display(),
                pk.bytes()
            );
        };
        if !v.commitments.verify_share(share.index, pk) {
            bail!(
                "share {} does not match the commitments of validator {}",
                pk.bytes(),
                v.group_pubkey.bytes()
            );
        }
        println!(
            "share keystore OK: validator {}, share index {}, operator {}",
            v.group_pubkey.bytes(),
            share.index.get(),
            share.operator
        );
    }
    if args.online {
        super::status::verify_online(&args.cluster, &args.access).await?;
    }
    Ok(())
}

impl CombinerArgs {
    /// The combiner configuration these options describe.
    ///
    /// # Errors
    /// An unknown network, or TLS options clap could not check.
    pub fn to_config(&self) -> anyhow::Result<CombinerConfig> {
        let mut config = CombinerConfig::new(self.serve.to_config()?, self.cluster.clone())?;
        config.node_ca = self.node_ca.clone();
        config.client_identity = self.client_cert.clone().zip(self.client_key.clone());
        config.deadline = Duration::from_millis(self.deadline_ms);
        config.network = crate::app::node::network(&self.network)?;
        config.node_connect_timeout = self.node_connect_timeout_ms.map(Duration::from_millis);
        config.health = self.health_settings();
        config.gate = crate::combiner::gate::GateLimits {
            max_in_flight: usize::try_from(self.node_max_in_flight).unwrap_or(usize::MAX),
            max_unneeded: usize::try_from(self.node_max_unneeded).unwrap_or(usize::MAX),
        };
        config.warm_connections = usize::try_from(self.node_warm_connections).unwrap_or(usize::MAX);
        Ok(config)
    }
}

/// `dvsigner combiner`.
///
/// # Errors
/// Start-up failures.
pub async fn run_combiner(
    args: CombinerArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let listener = bind(config.listener.listen).await?;
    combiner::run(config, listener, shutdown).await
}
