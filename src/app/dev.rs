//! `dvsigner dev`: a local 3-of-4 threshold cluster on loopback, with TLS everywhere.
//!
//! One command makes a CA and certificates, splits interop validator keys (public, dev-only:
//! `keystores/dev/`) 3-of-4 into share keystores and a `cluster.json`, starts four signer nodes
//! (mutual TLS, each with its own SQLite slashing database) and a combiner, and prints the
//! combiner URL, the CA path and ready-to-paste validator-client settings. Ctrl-C stops
//! everything cleanly.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::sync::watch;

use super::combiner::CombinerConfig;
use super::node::NodeConfig;
use super::split::{random_password, split_to_dir};
use super::{bind, shutdown_signal, KdfChoice, ListenerConfig};
use crate::cluster::Operator;
use crate::keys::interop::interop_secret_key;
use crate::keys::sources::KeystoresDir;
use crate::keys::{KdfParams, Keystore, Password, SecretKey};
use crate::tls::{DevPki, ServerTlsFiles};

const OPERATORS: [&str; 4] = ["node-a", "node-b", "node-c", "node-d"];
const DEV_PASSWORD: &str = "dvsigner-dev-password";

/// Options of a [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct LocalClusterOptions {
    /// Working directory (certificates, keystores, databases).
    pub dir: std::path::PathBuf,
    /// Number of interop validators.
    pub validators: u64,
    /// Combiner port (0 = any free port); nodes take the next four when non-zero.
    pub combiner_port: u16,
    /// Encryption cost of the share keystores.
    pub kdf: KdfChoice,
}

/// A running 3-of-4 cluster plus combiner, all in this process.
pub struct LocalCluster {
    /// `https://127.0.0.1:PORT` of the combiner.
    pub combiner_url: String,
    /// Node URLs.
    pub node_urls: Vec<String>,
    /// The dev PKI (CA, server and client certificates).
    pub pki: DevPki,
    /// Group public keys served.
    pub pubkeys: Vec<String>,
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
}

impl LocalCluster {
    /// Generates certificates, splits interop keys 3-of-4, starts four nodes and a combiner.
    ///
    /// # Errors
    /// Ports in use, unwritable directory, key or TLS errors.
    pub async fn start(opts: LocalClusterOptions) -> anyhow::Result<Self> {
        let dir = opts.dir;
        std::fs::create_dir_all(&dir)?;
        let pki = DevPki::generate(
            &dir.join("tls"),
            &[&OPERATORS[..], &["combiner"]].concat(),
            &["combiner-client"],
        )
        .context("generating dev certificates")?;
        let port = |offset: u16| match opts.combiner_port {
            0 => 0,
            p => p + offset,
        };
        // Bind first so the cluster definition can name the real ports.
        let mut node_listeners = Vec::new();
        for i in 1..=4u16 {
            node_listeners.push(bind(format!("127.0.0.1:{}", port(i)).parse()?).await?);
        }
        let combiner_listener = bind(format!("127.0.0.1:{}", port(0)).parse()?).await?;
        let node_urls: Vec<String> = node_listeners
            .iter()
            .map(|l| l.local_addr().map(|a| format!("https://{a}")))
            .collect::<Result<_, _>>()?;

        // Whole keys: interop keys (public!), also written as keystores, split 3-of-4.
        let whole = dir.join("validator-keys");
        let secrets = write_interop_keystores(&whole, opts.validators)?;
        let split_out = dir.join("cluster");
        let operators: Vec<Operator> = OPERATORS
            .iter()
            .zip(&node_urls)
            .map(|(n, u)| Operator::new(*n, u.as_str()))
            .collect();
        let (out, kdf) = (split_out.clone(), opts.kdf.params());
        tokio::task::spawn_blocking(move || {
            split_to_dir(
                &secrets,
                3,
                &operators,
                &out,
                |_| Ok(random_password()),
                kdf,
            )
        })
        .await??;

        let (stop, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = tokio::task::JoinSet::new();
        for ((name, listener), url) in OPERATORS.iter().zip(node_listeners).zip(&node_urls) {
            let id = pki.identity(name).context("node certificate")?;
            let tls = ServerTlsFiles {
                cert: id.cert.clone(),
                key: id.key.clone(),
                client_ca: Some(pki.ca_cert.clone()),
                allowed_clients: None,
            };
            // Everything here is reached at 127.0.0.1: the default Host allow-list.
            let listener_config =
                ListenerConfig::new(url.trim_start_matches("https://").parse()?, Some(tls));
            let mut node = NodeConfig::new(listener_config, dir.join("data").join(name))?;
            node.key_sources = node.key_sources.with(KeystoresDir {
                keystores: split_out.join(name).join("keystores"),
                passwords: split_out.join(name).join("passwords"),
            });
            let stop = stopped(stop_rx.clone());
            tasks.spawn(async move { super::node::run(node, listener, stop).await });
        }
        let combiner_id = pki.identity("combiner").context("combiner certificate")?;
        let client_id = pki
            .identity("combiner-client")
            .context("combiner client certificate")?;
        let combiner_addr = combiner_listener.local_addr()?;
        let tls = ServerTlsFiles {
            cert: combiner_id.cert.clone(),
            key: combiner_id.key.clone(),
            client_ca: None,
            allowed_clients: None,
        };
        let mut combiner = CombinerConfig::new(
            ListenerConfig::new(combiner_addr, Some(tls)),
            split_out.join("cluster.json"),
        )?;
        combiner.node_ca = Some(pki.ca_cert.clone());
        combiner.client_identity = Some((client_id.cert.clone(), client_id.key.clone()));
        let stop_c = stopped(stop_rx.clone());
        tasks.spawn(async move { super::combiner::run(combiner, combiner_listener, stop_c).await });
        let pubkeys = (0..opts.validators)
            .map(|i| interop_secret_key(i).public_key().bytes().to_hex())
            .collect();
        Ok(Self {
            combiner_url: format!("https://{combiner_addr}"),
            node_urls,
            pki,
            pubkeys,
            stop,
            tasks,
        })
    }

    /// Waits until a server task ends on its own (an error) and returns its result.
    pub async fn next_exit(&mut self) -> anyhow::Result<()> {
        match self.tasks.join_next().await {
            Some(res) => res?,
            None => std::future::pending().await,
        }
    }

    /// Stops every server and waits for them to drain.
    ///
    /// # Errors
    /// The first server error, if any.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let mut first = Ok(());
        while let Some(res) = self.tasks.join_next().await {
            if let (Ok(()), Err(e)) = (&first, res.map_err(anyhow::Error::from).and_then(|r| r)) {
                first = Err(e);
            }
        }
        first
    }
}

/// Runs the local development cluster until Ctrl-C.
///
/// # Errors
/// Start-up failures (ports in use, unwritable directory).
pub async fn run(dir: Option<PathBuf>, validators: u64, base_port: u16) -> anyhow::Result<()> {
    let (dir, _keep) = match dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::Builder::new().prefix("dvsigner-dev-").tempdir()?;
            (t.path().to_owned(), Some(t))
        }
    };
    let mut cluster = LocalCluster::start(LocalClusterOptions {
        dir: dir.clone(),
        validators,
        combiner_port: base_port,
        kdf: KdfChoice::Pbkdf2,
    })
    .await?;
    print_instructions(
        &dir,
        &cluster.pki.ca_cert,
        &cluster.combiner_url,
        &cluster.node_urls,
        &cluster.pubkeys,
    );
    tokio::select! {
        () = shutdown_signal() => {}
        res = cluster.next_exit() => {
            res?;
            anyhow::bail!("a dev server stopped unexpectedly");
        }
    }
    cluster.stop().await?;
    println!("dev cluster stopped");
    Ok(())
}

/// Writes the interop keys `0..count` as keystores (with `password.txt`) and returns them.
fn write_interop_keystores(dir: &Path, count: u64) -> anyhow::Result<Vec<SecretKey>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("password.txt"), DEV_PASSWORD)?;
    let password = Password::new(DEV_PASSWORD.into());
    let mut keys = Vec::new();
    for i in 0..count {
        let sk = interop_secret_key(i);
        let ks = Keystore::encrypt(
            &sk,
            &password,
            KdfParams::insecure_fast(),
            &format!("m/12381/3600/{i}/0/0"),
            "dvsigner dev interop key (PUBLIC)",
        )?;
        std::fs::write(dir.join(format!("interop-{i}.json")), ks.to_json())?;
        keys.push(sk);
    }
    Ok(keys)
}

fn print_instructions(dir: &Path, ca: &Path, url: &str, nodes: &[String], pubkeys: &[String]) {
    let ca = ca.display();
    let first = pubkeys.first().cloned().unwrap_or_default();
    println!(
        r#"
dvsigner dev: 3-of-4 threshold cluster running (working directory {dir})
  combiner        {url}    (Web3Signer API; no client certificate needed)
  signer nodes    {nodes}  (mutual TLS, CA below)
  CA certificate  {ca}
  validators      {n} interop keys (PUBLIC test keys: never use them on a real network)
{keys}
Lodestar:
  NODE_EXTRA_CA_CERTS={ca} lodestar validator --externalSigner.url {url} --externalSigner.fetch

Lighthouse (validator_definitions.yml, one entry per key):
  - enabled: true
    voting_public_key: "{first}"
    type: web3signer
    url: "{url}"
    root_certificate_path: "{ca}"
    request_timeout_ms: 12000

Teku (make a truststore from the CA first, e.g.
  keytool -importcert -noprompt -alias dvsigner-dev -file {ca} -keystore {dir}/truststore.p12 -storetype PKCS12 -storepass changeit):
  teku validator-client --validators-external-signer-url={url} \
    --validators-external-signer-public-keys=external-signer \
    --validators-external-signer-truststore={dir}/truststore.p12 \
    --validators-external-signer-truststore-password-file=<file containing changeit>

Prysm (Go reads extra CAs from SSL_CERT_FILE):
  SSL_CERT_FILE={ca} validator --validators-external-signer-url={url} \
    --validators-external-signer-public-keys={url}/api/v1/eth2/publicKeys

Nimbus (keys discovered through /api/v1/eth2/publicKeys; Nimbus trusts only its built-in CAs, so
  with this dev CA use a remote keystore per key instead, <data-dir>/validators/{first}/remote_keystore.json:
  {{"version": 1, "type": "web3signer", "pubkey": "{first}", "remote": "{url}", "ignore_ssl_verification": true}}):
  nimbus_validator_client --web3-signer-url={url}

Try it:  curl --cacert {ca} {url}/api/v1/eth2/publicKeys
Press Ctrl-C to stop."#,
        dir = dir.display(),
        nodes = nodes.join(" "),
        n = pubkeys.len(),
        keys = pubkeys
            .iter()
            .map(|k| format!("                  {k}\n"))
            .collect::<String>(),
    );
}
