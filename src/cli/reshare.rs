//! `dvsigner reshare`: one participant's side of a reshare ([`crate::dkg::reshare`]): an old
//! operator dealing its shares, a new operator receiving new ones, or both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::dkg::{kdf_params, listen_addr, parse_fault, peer_tls, share_password};
use super::threshold::KdfChoice;
use crate::cluster::ClusterDefinition;
use crate::dkg::{self, output, ReshareDefinition, ReshareParticipant, Timeouts};
use crate::keys::store::load_keystores_dir;

/// `dvsigner reshare` options.
#[derive(Debug, Clone, Args)]
pub struct ReshareArgs {
    /// The reshare definition (JSON), identical for every participant.
    #[arg(long)]
    pub definition: PathBuf,
    /// The existing `cluster.json` (its hash must be the definition's `old_cluster_hash`; new
    /// operators get it from any old operator, it holds no secret).
    #[arg(long)]
    pub cluster: PathBuf,
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
    /// Dealers: directory of our old share keystores (`NAME.json`).
    #[arg(long, requires = "keystores_passwords")]
    pub keystores: Option<PathBuf>,
    /// Dealers: directory of their passwords (`NAME.txt`, first line).
    #[arg(long, requires = "keystores")]
    pub keystores_passwords: Option<PathBuf>,
    /// New operators: output directory (must not exist): keystores/, passwords/, cluster.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
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
    /// Test only: `corrupt-share:NAME`, `wrong-secret` or `stop-after-dealing`.
    #[arg(long, hide = true)]
    pub test_fault: Option<String>,
}

/// `dvsigner reshare`.
///
/// # Errors
/// Bad arguments, definition or old cluster, missing old shares, TLS files, any ceremony
/// failure (naming the operator at fault), unwritable output. Nothing is left at `--out` on
/// failure.
pub async fn run(args: ReshareArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.definition)
        .with_context(|| format!("reading {}", args.definition.display()))?;
    let definition = ReshareDefinition::from_json(&text)?;
    let old_cluster = ClusterDefinition::load(&args.cluster)
        .with_context(|| format!("old cluster {}", args.cluster.display()))?;
    definition.check_against(&old_cluster)?;
    let endpoints = definition.endpoints();
    let me = endpoints
        .iter()
        .find(|o| o.name == args.operator)
        .cloned()
        .ok_or_else(|| dkg::Error::UnknownOperator(args.operator.clone()))?;
    let dealer = definition.is_dealer(&me.name);
    let receiver = definition.is_new_operator(&me.name);
    let out = match (&args.out, receiver) {
        (Some(out), true) => Some(out.clone()),
        (None, true) => bail!(
            "operator {} is in the new operator set: --out is required",
            me.name
        ),
        (Some(_), false) => bail!(
            "operator {} leaves the cluster and receives nothing: omit --out",
            me.name
        ),
        (None, false) => None,
    };
    let old_shares: Vec<crate::keys::SecretKey> = match (&args.keystores, &args.keystores_passwords, dealer) {
        (Some(ks), Some(pw), true) => {
            let report = load_keystores_dir(ks, pw)
                .with_context(|| format!("reading {}", ks.display()))?;
            if let Some((path, reason)) = report.errors.first() {
                bail!("old share keystore {}: {reason}", path.display());
            }
            report.keys.into_iter().map(|k| k.secret).collect()
        }
        (_, _, true) => bail!(
            "operator {} deals: --keystores and --keystores-passwords with its old shares are required",
            me.name
        ),
        (None, None, false) => Vec::new(),
        (_, _, false) => bail!(
            "operator {} is not a dealer: omit --keystores",
            me.name
        ),
    };
    let fault = parse_fault(args.test_fault.as_deref())?;
    let password = share_password(args.password_file.as_deref())?;
    let peers = peer_tls(
        &me.name,
        &endpoints,
        &args.tls_cert,
        &args.tls_key,
        args.ca.as_ref(),
        args.request_timeout_secs,
    )?;
    let listen = listen_addr(args.listen, &me.url)?;

    let staging = match &out {
        Some(out) => Some(output::prepare(out)?),
        None => None,
    };
    let remove_staging = |staging: &Option<PathBuf>| {
        if let Some(s) = staging {
            let _ = std::fs::remove_dir_all(s);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            remove_staging(&staging);
            bail!("binding {listen}: {e}");
        }
    };
    let role = match (dealer, receiver) {
        (true, true) => "dealer and new operator",
        (true, false) => "dealer leaving the cluster",
        _ => "new operator",
    };
    eprintln!(
        "reshare: ceremony {} as operator {} ({role}); {} validator(s) to {} of {}; listening on {listen}",
        definition.id(),
        me.name,
        old_cluster.validators().len(),
        definition.threshold,
        definition.operators.len(),
    );
    let result = dkg::reshare::run(ReshareParticipant {
        definition,
        old_cluster,
        old_shares,
        me: me.name.clone(),
        listener,
        server_tls: peers.server_tls,
        clients: peers.clients,
        timeouts: Timeouts {
            round: Duration::from_secs(args.round_timeout_secs),
            request: Duration::from_secs(args.request_timeout_secs),
            abort_linger: Duration::from_secs(3),
        },
        fault,
    })
    .await;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            remove_staging(&staging);
            return Err(e).context("reshare failed; nothing was written");
        }
    };
    if let (Some(out), Some(staging)) = (&out, &staging) {
        output::commit_shares(
            &result.shares,
            &result.cluster,
            staging,
            out,
            (&password, kdf_params(args.kdf)),
            "dvsigner reshare",
            &me.name,
        )?;
    }
    println!("cluster.json hash: {}", result.cluster.hash());
    for (v, dealers) in result.cluster.validators().iter().zip(&result.dealers) {
        println!(
            "validator {} reshared by {}",
            v.group_pubkey.bytes(),
            dealers.join(",")
        );
    }
    match &out {
        Some(out) => println!(
            "wrote {} new share keystore(s) and the new cluster.json to {}",
            result.shares.len(),
            out.display()
        ),
        None => println!("operator {} left the cluster: nothing written", me.name),
    }
    println!("old shares still sign under the same keys: destroy them once the new cluster runs");
    result.linger.finish().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};

    #[test]
    fn reshare_defaults_and_requirements() {
        let base = [
            "dvsigner",
            "reshare",
            "--definition",
            "r.json",
            "--cluster",
            "cluster.json",
            "--operator",
            "a",
            "--tls-cert",
            "a.pem",
            "--tls-key",
            "a-key.pem",
        ];
        let cli = Cli::try_parse_from(base).expect("parse");
        let Command::Reshare(a) = cli.command else {
            panic!("not reshare")
        };
        assert_eq!((a.round_timeout_secs, a.request_timeout_secs), (300, 5));
        assert!(a.out.is_none() && a.keystores.is_none() && a.test_fault.is_none());
        assert!(matches!(a.kdf, super::KdfChoice::Scrypt));
        let with = |extra: &[&str]| {
            Cli::try_parse_from(base.iter().chain(extra).copied().collect::<Vec<_>>())
        };
        assert!(with(&["--keystores", "ks"]).is_err());
        assert!(with(&["--keystores", "ks", "--keystores-passwords", "pw"]).is_ok());
        assert!(Cli::try_parse_from(base[..6].iter().copied()).is_err());
    }
}
