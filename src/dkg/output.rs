//! Writing a ceremony's results: `<out>/keystores/<share pubkey>.json` (EIP-2335),
//! `<out>/passwords/<share pubkey>.txt` (0600), `<out>/cluster.json` and
//! `<out>/deposit_data-<unix time>.json`. A reshare writes the same without the deposit file
//! ([`commit_shares`]).
//!
//! Invariants: nothing appears at `<out>` until everything is written: files go to a staging
//! directory `<out>.dkg-staging` (0700, removed first if a crashed run left one) that is renamed
//! to `<out>` at the end; an existing `<out>` is never touched.

use std::path::{Path, PathBuf};

use super::{CeremonyOutput, Error};
use crate::cluster::ClusterDefinition;
use crate::keys::keystore::write_keystore_dir;
use crate::keys::{KdfParams, Password};
use crate::threshold::KeyShare;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// The staging directory for `out`.
pub fn staging_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".dkg-staging");
    out.with_file_name(name)
}

/// Refuses an existing `out`, removes a stale staging directory and creates a fresh one
/// (mode 0700). Call before the ceremony so a bad `--out` fails early.
///
/// # Errors
/// [`Error::OutputExists`], or I/O errors.
pub fn prepare(out: &Path) -> Result<PathBuf, Error> {
    if out.exists() {
        return Err(Error::OutputExists(out.to_owned()));
    }
    let staging = staging_dir(out);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(&staging).map_err(io(&staging))?;
    Ok(staging)
}

/// Writes everything into `staging` (from [`prepare`]) and renames it to `out`. Returns the
/// deposit file's path under `out`.
///
/// # Errors
/// Keystore or I/O errors (the staging directory is removed on failure).
pub fn commit(
    output: &CeremonyOutput,
    staging: &Path,
    out: &Path,
    password: &Password,
    kdf: KdfParams,
    operator: &str,
) -> Result<PathBuf, Error> {
    let result = write_all(output, staging, password, kdf, operator);
    let result = result.and_then(|deposit_name| {
        std::fs::rename(staging, out).map_err(io(out))?;
        Ok(out.join(deposit_name))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(staging);
    }
    result
}

/// Writes share keystores and `cluster.json` into `staging` (from [`prepare`]) and renames it
/// to `out`: a reshare's results. `what` starts each keystore's description (`dvsigner
/// reshare`).
///
/// # Errors
/// Keystore or I/O errors (the staging directory is removed on failure).
pub fn commit_shares(
    shares: &[KeyShare],
    cluster: &ClusterDefinition,
    staging: &Path,
    out: &Path,
    secrets: (&Password, KdfParams),
    what: &str,
    operator: &str,
) -> Result<(), Error> {
    let result = write_shares(shares, cluster, staging, secrets, what, operator)
        .and_then(|()| std::fs::rename(staging, out).map_err(io(out)));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(staging);
    }
    result
}

fn write_shares(
    shares: &[KeyShare],
    cluster: &ClusterDefinition,
    staging: &Path,
    (password, kdf): (&Password, KdfParams),
    what: &str,
    operator: &str,
) -> Result<(), Error> {
    let described: Vec<(&crate::keys::SecretKey, String)> = shares
        .iter()
        .map(|share| {
            let what = format!("{what} share {} of operator {operator}", share.index.get());
            (&share.secret, what)
        })
        .collect();
    write_keystore_dir(
        &staging.join("keystores"),
        &staging.join("passwords"),
        &described,
        password,
        kdf,
    )?;
    cluster.save(&staging.join("cluster.json"))?;
    Ok(())
}

fn write_all(
    output: &CeremonyOutput,
    staging: &Path,
    password: &Password,
    kdf: KdfParams,
    operator: &str,
) -> Result<String, Error> {
    write_shares(
        &output.shares,
        &output.cluster,
        staging,
        (password, kdf),
        "dvsigner dkg",
        operator,
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let deposit_name = format!("deposit_data-{now}.json");
    let deposit = staging.join(&deposit_name);
    std::fs::write(&deposit, &output.deposit_json).map_err(io(&deposit))?;
    Ok(deposit_name)
}
