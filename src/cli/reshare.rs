//! `dvsigner reshare`: one participant's side of a reshare ([`crate::dkg::reshare`]): an old
//! operator dealing its shares, a new operator receiving new ones, or both.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use super::dkg::CeremonyArgs;
use crate::cluster::ClusterDefinition;
use crate::dkg::{self, output, ReshareDefinition, ReshareParticipant};
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
    /// Dealers: directory of our old share keystores (`NAME.json`).
    #[arg(long, requires = "keystores_passwords")]
    pub keystores: Option<PathBuf>,
    /// Dealers: directory of their passwords (`NAME.txt`, first line).
    #[arg(long, requires = "keystores")]
    pub keystores_passwords: Option<PathBuf>,
    /// New operators: output directory (must not exist): keystores/, passwords/, cluster.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Who we are, how we reach the others, and how new shares are stored.
    #[command(flatten)]
    pub ceremony: CeremonyArgs,
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
        .find(|o| o.name == args.ceremony.operator)
        .cloned()
        .ok_or_else(|| dkg::Error::UnknownOperator(args.ceremony.operator.clone()))?;
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
    let fault = args.ceremony.fault()?;
    let encryption = args.ceremony.share_encryption()?;
    let peers = args.ceremony.peer_tls(&endpoints)?;
    let listen = args.ceremony.listen_addr(&me.url)?;

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
        timeouts: args.ceremony.timeouts(),
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
            (&encryption.0, encryption.1),
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
        let c = &a.ceremony;
        assert_eq!((c.round_timeout_secs, c.request_timeout_secs), (300, 5));
        assert!(a.out.is_none() && a.keystores.is_none() && c.test_fault.is_none());
        assert!(matches!(c.kdf, crate::cli::threshold::KdfChoice::Scrypt));
        assert_eq!(c.operator, "a");
        let with = |extra: &[&str]| {
            Cli::try_parse_from(base.iter().chain(extra).copied().collect::<Vec<_>>())
        };
        assert!(with(&["--keystores", "ks"]).is_err());
        assert!(with(&["--keystores", "ks", "--keystores-passwords", "pw"]).is_ok());
        assert!(Cli::try_parse_from(base[..6].iter().copied()).is_err());
    }
}
