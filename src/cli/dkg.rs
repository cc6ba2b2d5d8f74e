//! `dvsigner dkg`: one operator's side of a distributed key generation ceremony
//! ([`crate::dkg`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::threshold::KdfChoice;
use crate::cluster::{CaSource, Operator};
use crate::dkg::{self, output, CeremonyDefinition, Fault, Participant, Timeouts};
use crate::keys::{KdfParams, Password};
use crate::tls;

/// `dvsigner dkg` options.
#[derive(Debug, Clone, Args)]
pub struct DkgArgs {
    /// The ceremony definition (JSON), identical for every operator.
    #[arg(long)]
    pub definition: PathBuf,
    /// Output directory (must not exist): keystores/, passwords/, cluster.json, deposit data.
    #[arg(long)]
    pub out: PathBuf,
    /// Who we are, how we reach the others, and how the shares are stored.
    #[command(flatten)]
    pub ceremony: CeremonyArgs,
}

/// The options every ceremony participant gives, in `dvsigner dkg` and `dvsigner reshare`.
#[derive(Debug, Clone, Args)]
pub struct CeremonyArgs {
    /// Our operator name in the definition.
    #[arg(long)]
    pub operator: String,
    /// Our TLS certificate (PEM): served to peers and presented to them as client certificate.
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub tls_key: PathBuf,
    /// A CA trusted for peers without `tls_ca` in the definition (server and client side).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Address to listen on (default: 0.0.0.0 and the port of our `url`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Password for the new share keystores (first line); generated when absent.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Encryption cost of the new share keystores.
    #[arg(long, value_enum, default_value_t = KdfChoice::Scrypt)]
    pub kdf: KdfChoice,
    /// Seconds to wait for all participants in each round.
    #[arg(long, default_value_t = 300)]
    pub round_timeout_secs: u64,
    /// Seconds per HTTP request to a peer.
    #[arg(long, default_value_t = 5)]
    pub request_timeout_secs: u64,
    /// Test only: `corrupt-share:NAME`, `wrong-secret` (reshare) or `stop-after-dealing`.
    #[arg(long, hide = true)]
    pub test_fault: Option<String>,
}

impl CeremonyArgs {
    /// The round and request timeouts.
    pub(super) fn timeouts(&self) -> Timeouts {
        Timeouts {
            round: Duration::from_secs(self.round_timeout_secs),
            request: Duration::from_secs(self.request_timeout_secs),
            abort_linger: Duration::from_secs(3),
        }
    }

    /// Our mTLS clients to every other participant and our server's TLS ([`peer_tls`]).
    pub(super) fn peer_tls(&self, endpoints: &[Operator]) -> anyhow::Result<PeerTls> {
        peer_tls(
            &self.operator,
            endpoints,
            &self.tls_cert,
            &self.tls_key,
            self.ca.as_ref(),
            self.request_timeout_secs,
        )
    }

    /// `--listen`, or 0.0.0.0 and the port of our ceremony `url`.
    pub(super) fn listen_addr(&self, url: &str) -> anyhow::Result<SocketAddr> {
        Ok(match self.listen {
            Some(a) => a,
            None => {
                let url = reqwest::Url::parse(url).context("our ceremony url")?;
                let port = url.port_or_known_default().unwrap_or(443);
                SocketAddr::from(([0, 0, 0, 0], port))
            }
        })
    }

    /// The hidden `--test-fault` flag.
    pub(super) fn fault(&self) -> anyhow::Result<Option<Fault>> {
        parse_fault(self.test_fault.as_deref())
    }

    /// The new share keystores' password and KDF.
    pub(super) fn share_encryption(&self) -> anyhow::Result<(Password, KdfParams)> {
        Ok((
            share_password(self.password_file.as_deref())?,
            kdf_params(self.kdf),
        ))
    }
}

fn kdf_params(k: KdfChoice) -> KdfParams {
    match k {
        KdfChoice::Scrypt => KdfParams::scrypt_default(),
        KdfChoice::Pbkdf2 => KdfParams::pbkdf2_default(),
        KdfChoice::InsecureFast => KdfParams::insecure_fast(),
    }
}

/// `dvsigner dkg`.
///
/// # Errors
/// Bad arguments or definition, TLS files, any ceremony failure (naming the operator at
/// fault), unwritable output. Nothing is left at `--out` on failure.
pub async fn run(args: DkgArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.definition)
        .with_context(|| format!("reading {}", args.definition.display()))?;
    let definition = CeremonyDefinition::from_json(&text)?;
    let me = definition
        .operators
        .iter()
        .find(|o| o.name == args.ceremony.operator)
        .cloned()
        .ok_or_else(|| dkg::Error::UnknownOperator(args.ceremony.operator.clone()))?;
    let fault = args.ceremony.fault()?;
    let (password, kdf) = args.ceremony.share_encryption()?;
    let endpoints: Vec<Operator> = definition
        .operators
        .iter()
        .map(|o| Operator {
            name: o.name.clone(),
            url: o.url.clone(),
            tls_fingerprint: o.tls_fingerprint,
            tls_ca: o.tls_ca.clone(),
        })
        .collect();
    let peers = args.ceremony.peer_tls(&endpoints)?;
    let (clients, server_tls) = (peers.clients, peers.server_tls);
    let listen = args.ceremony.listen_addr(&me.url)?;

    let staging = output::prepare(&args.out)?;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            bail!("binding {listen}: {e}");
        }
    };
    eprintln!(
        "dkg: ceremony {} as operator {} ({} of {}, {} validator(s)); listening on {listen}",
        definition.id(),
        me.name,
        definition.threshold,
        definition.operators.len(),
        definition.validators
    );
    let result = dkg::run(Participant {
        definition,
        me: me.name.clone(),
        listener,
        server_tls,
        clients,
        timeouts: args.ceremony.timeouts(),
        fault,
    })
    .await;
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e).context("dkg ceremony failed; nothing was written");
        }
    };
    let deposit = output::commit(&out, &staging, &args.out, &password, kdf, &me.name)?;
    println!("cluster.json hash: {}", out.cluster.hash());
    for v in out.cluster.validators() {
        println!("validator {}", v.group_pubkey.bytes());
    }
    println!(
        "wrote {} share keystore(s), cluster.json and {} to {}",
        out.shares.len(),
        deposit.file_name().unwrap_or_default().to_string_lossy(),
        args.out.display()
    );
    out.linger.finish().await;
    Ok(())
}

/// Parses the hidden `--test-fault` flag.
fn parse_fault(s: Option<&str>) -> anyhow::Result<Option<Fault>> {
    Ok(match s {
        None => None,
        Some("stop-after-dealing") => Some(Fault::StopAfterDealing),
        Some("wrong-secret") => Some(Fault::WrongSecret),
        Some(s) => match s.strip_prefix("corrupt-share:") {
            Some(name) => Some(Fault::CorruptShareFor(name.to_owned())),
            None => bail!("unknown --test-fault {s:?}"),
        },
    })
}

/// The share keystores' password: the file's first line, or a fresh random one.
fn share_password(file: Option<&std::path::Path>) -> anyhow::Result<Password> {
    Ok(match file {
        Some(p) => Password::from_file(p)?,
        None => {
            use rand::RngCore;
            let mut bytes = zeroize::Zeroizing::new([0u8; 24]);
            rand::rngs::OsRng.fill_bytes(bytes.as_mut());
            Password::new(hex::encode(bytes.as_ref()))
        }
    })
}

/// The mTLS pieces of a ceremony: a client per peer and our server's TLS config, which admits
/// exactly the peers (by pinned fingerprint, or by `--ca`).
pub(super) struct PeerTls {
    /// One client per peer, trusting that peer's server identity.
    pub(super) clients: BTreeMap<String, reqwest::Client>,
    /// Our server's TLS.
    pub(super) server_tls: std::sync::Arc<rustls::ServerConfig>,
}

/// Builds [`PeerTls`] for `me` from every participant's ceremony endpoint (`url`) and TLS
/// identity.
fn peer_tls(
    me: &str,
    endpoints: &[Operator],
    tls_cert: &std::path::Path,
    tls_key: &std::path::Path,
    ca: Option<&PathBuf>,
    request_timeout_secs: u64,
) -> anyhow::Result<PeerTls> {
    // TLS material for the peers, in a private temporary directory.
    let scratch = tempfile::tempdir().context("temporary directory")?;
    let mut allowed = String::new();
    let mut clients = BTreeMap::new();
    for peer in endpoints.iter().filter(|o| o.name != me) {
        let peer_ca = match &peer.tls_ca {
            Some(CaSource::Path(p)) => Some(p.clone()),
            Some(CaSource::Pem(pem)) => {
                let p = scratch.path().join(format!("{}-ca.pem", peer.name));
                std::fs::write(&p, pem)?;
                Some(p)
            }
            None => ca.cloned(),
        };
        if peer.tls_fingerprint.is_none() && ca.is_none() {
            bail!(
                "operator {} has no tls_fingerprint and no --ca is given: cannot authenticate it as a client",
                peer.name
            );
        }
        if let Some(fp) = peer.tls_fingerprint {
            allowed.push_str(&format!("{} {fp}\n", peer.name));
        }
        let config = tls::client_config(tls::ClientTlsOptions {
            ca: peer_ca,
            pinned: peer.tls_fingerprint.into_iter().collect(),
            identity: Some((tls_cert.to_owned(), tls_key.to_owned())),
        })
        .with_context(|| format!("TLS client for operator {}", peer.name))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .connect_timeout(Duration::from_secs(request_timeout_secs))
            .build()
            .context("http client")?;
        clients.insert(peer.name.clone(), client);
    }
    let allowed_path = scratch.path().join("allowed-clients.txt");
    let mut f = std::fs::File::create(&allowed_path)?;
    f.write_all(allowed.as_bytes())?;
    drop(f);
    let server_tls = tls::server_config(&tls::ServerTlsFiles {
        cert: tls_cert.to_owned(),
        key: tls_key.to_owned(),
        client_ca: ca.cloned(),
        allowed_clients: (!allowed.is_empty()).then_some(allowed_path),
    })?;
    Ok(PeerTls {
        clients,
        server_tls,
    })
}
