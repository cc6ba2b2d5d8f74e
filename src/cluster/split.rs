//! `dvsigner split`: turns whole validator keys into t-of-n shares and the cluster definition.
//!
//! Policy enforced here (not in `threshold`): t must be a strict majority of n (t > n/2) and at
//! most n. With a majority threshold, two disjoint groups of operators can never both produce a
//! signature, so a network partition cannot lead to two conflicting signed messages.
//!
//! Share i (1-based) of every validator goes to `operators[i - 1]`. Writing keystores is the
//! caller's job (the CLI, with the keys module); this module returns the shares in memory.

use super::definition::{
    majority, ClusterDefinition, Operator, ShareDefinition, ValidatorDefinition,
};
use super::Error;
use crate::bls::PublicKeyBytes;
use crate::keys::secret::SecretKey;
use crate::threshold::{self, KeyShare};

/// Shares for one operator, in the order of `keys`.
pub type OperatorShares = (String, Vec<KeyShare>);

/// Splits every key t-of-n over `operators` (n = `operators.len()`).
///
/// Returns the verified definition and, per operator in the given order, its shares (one per
/// key, in key order).
///
/// # Errors
/// [`Error::TooFewOperators`] for fewer than 2 operators; [`Error::ThresholdNotMajority`]
/// unless `n/2 < t <= n`; operator-name/URL errors; [`Error::DuplicateValidator`] when a key
/// repeats.
pub fn split_keys(
    keys: &[SecretKey],
    t: u32,
    operators: &[Operator],
) -> Result<(ClusterDefinition, Vec<OperatorShares>), Error> {
    let n_ops = operators.len();
    if n_ops < 2 {
        return Err(Error::TooFewOperators(n_ops));
    }
    let n = u32::try_from(n_ops).map_err(|_| Error::TooFewOperators(n_ops))?;
    if t < majority(n) || t > n {
        return Err(Error::ThresholdNotMajority {
            validator: PublicKeyBytes([0; 48]),
            threshold: t,
            shares: n,
            minimum: majority(n),
        });
    }
    let mut per_operator: Vec<OperatorShares> = operators
        .iter()
        .map(|o| (o.name.clone(), Vec::with_capacity(keys.len())))
        .collect();
    let mut validators = Vec::with_capacity(keys.len());
    for sk in keys {
        let (shares, commitments) = threshold::split(sk, t, n)?;
        let mut defs = Vec::with_capacity(shares.len());
        for (share, (op, (_, bucket))) in shares
            .into_iter()
            .zip(operators.iter().zip(per_operator.iter_mut()))
        {
            defs.push(ShareDefinition {
                index: share.index,
                pubkey: share.public_key().clone(),
                operator: op.name.clone(),
            });
            bucket.push(share);
        }
        validators.push(ValidatorDefinition {
            group_pubkey: sk.public_key().clone(),
            threshold: t,
            share_count: n,
            commitments,
            shares: defs,
        });
    }
    let definition = ClusterDefinition::new(operators.to_vec(), validators)?;
    Ok((definition, per_operator))
}
