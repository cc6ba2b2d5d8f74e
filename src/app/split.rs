//! Writing a split: share keystores per operator and the cluster definition (`dvsigner split`
//! and `dvsigner dev`).

use std::path::Path;

use anyhow::Context;

use crate::cluster::{split_keys, ClusterDefinition, Operator};
use crate::keys::keystore::write_keystore_dir_with;
use crate::keys::{KdfParams, Password, SecretKey};
use crate::progress::TermProgress;

/// Splits `keys` t-of-n across `operators` and writes `out/<operator>/keystores`,
/// `out/<operator>/passwords` (every share keystore of an operator under `password(operator)`)
/// and `out/cluster.json`. Returns the definition and the operators' names.
///
/// # Errors
/// Bad threshold or operators, an unavailable password, unwritable output.
pub fn split_to_dir(
    keys: &[SecretKey],
    threshold: u32,
    operators: &[Operator],
    out: &Path,
    password: impl Fn(&str) -> anyhow::Result<Password>,
    kdf: KdfParams,
) -> anyhow::Result<(ClusterDefinition, Vec<String>)> {
    let (definition, per_operator) = split_keys(keys, threshold, operators)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let writing = TermProgress::start(
        "split: writing share keystores",
        "keystores",
        per_operator.iter().map(|(_, s)| s.len() as u64).sum(),
    );
    for (operator, shares) in &per_operator {
        let password = password(operator)?;
        let described: Vec<(&SecretKey, String)> = shares
            .iter()
            .map(|share| {
                let what = format!(
                    "dvsigner threshold share {} of operator {operator}",
                    share.index.get()
                );
                (&share.secret, what)
            })
            .collect();
        write_keystore_dir_with(
            &out.join(operator).join("keystores"),
            &out.join(operator).join("passwords"),
            &described,
            &password,
            kdf,
            &|| writing.inc(1),
        )?;
    }
    writing.finish();
    definition.save(&out.join("cluster.json"))?;
    let names = per_operator.into_iter().map(|(o, _)| o).collect();
    Ok((definition, names))
}

/// A random password for an operator's share keystores (24 random bytes, hex).
pub fn random_password() -> Password {
    use rand::RngCore;
    let mut bytes = zeroize::Zeroizing::new([0u8; 24]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    Password::new(hex::encode(bytes.as_ref()))
}
