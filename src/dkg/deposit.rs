//! Deposit data in the staking deposit CLI's `deposit_data-<timestamp>.json` format (a JSON
//! list, hex without `0x`, `amount` a number), as the launchpad accepts it.
//!
//! Spec: consensus-specs phase0 `DepositMessage`, `DepositData`, `compute_domain(DOMAIN_DEPOSIT,
//! GENESIS_FORK_VERSION, zero root)`; ethereum/staking-deposit-cli `credentials.py`
//! (`deposit_datum_dict`). `deposit_message_root` is SSZ-merkleized by hand here (three fields:
//! the pubkey's two chunks, the credentials, the little-endian amount); the signing root and
//! `deposit_data_root` come from [`crate::signing`], and a unit test ties the two together.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bls::{PublicKey, Signature};

/// The `deposit_cli_version` written, the last staking-deposit-cli release's format.
pub const DEPOSIT_CLI_VERSION: &str = "2.7.0";

/// One entry of a deposit data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositDataEntry {
    /// Validator public key (hex, no `0x`).
    pub pubkey: String,
    /// Withdrawal credentials (hex).
    pub withdrawal_credentials: String,
    /// Amount in Gwei.
    pub amount: u64,
    /// The deposit signature (hex).
    pub signature: String,
    /// `hash_tree_root(DepositMessage)` (hex).
    pub deposit_message_root: String,
    /// `hash_tree_root(DepositData)` (hex).
    pub deposit_data_root: String,
    /// Genesis fork version (hex).
    pub fork_version: String,
    /// Network name.
    pub network_name: String,
    /// Format version of the staking deposit CLI.
    pub deposit_cli_version: String,
}

impl DepositDataEntry {
    /// Builds the entry for a verified signature.
    pub fn new(
        pubkey: &PublicKey,
        withdrawal_credentials: [u8; 32],
        amount_gwei: u64,
        fork_version: [u8; 4],
        network_name: &str,
        signature: &Signature,
    ) -> Self {
        let pk = pubkey.bytes().0;
        let sig = signature.to_bytes();
        Self {
            pubkey: hex::encode(pk),
            withdrawal_credentials: hex::encode(withdrawal_credentials),
            amount: amount_gwei,
            signature: hex::encode(sig),
            deposit_message_root: hex::encode(deposit_message_root(
                pk,
                withdrawal_credentials,
                amount_gwei,
            )),
            deposit_data_root: hex::encode(crate::signing::deposit_data_root(
                pk,
                withdrawal_credentials,
                amount_gwei,
                sig,
            )),
            fork_version: hex::encode(fork_version),
            network_name: network_name.to_owned(),
            deposit_cli_version: DEPOSIT_CLI_VERSION.to_owned(),
        }
    }
}

fn h(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut d = Sha256::new();
    d.update(a);
    d.update(b);
    d.finalize().into()
}

/// `hash_tree_root(DepositMessage(pubkey, withdrawal_credentials, amount))`.
pub fn deposit_message_root(
    pubkey: [u8; 48],
    withdrawal_credentials: [u8; 32],
    amount_gwei: u64,
) -> [u8; 32] {
    let mut second = [0u8; 32];
    second[..16].copy_from_slice(&pubkey[32..]);
    let pubkey_root = h(&pubkey[..32], &second);
    let mut amount = [0u8; 32];
    amount[..8].copy_from_slice(&amount_gwei.to_le_bytes());
    h(
        &h(&pubkey_root, &withdrawal_credentials),
        &h(&amount, &[0u8; 32]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use crate::signing::{compute_domain, compute_signing_root, deposit_signing_root, DomainType};

    #[test]
    fn message_root_agrees_with_signing_module() {
        let sk = SecretKey::random();
        let pk = sk.public_key().bytes().0;
        let wc = [1u8; 32];
        let fv = [0x01, 0x01, 0x70, 0x00];
        let domain = compute_domain(DomainType::DEPOSIT, fv, [0; 32]);
        assert_eq!(
            compute_signing_root(deposit_message_root(pk, wc, 32_000_000_000), domain),
            deposit_signing_root(pk, wc, 32_000_000_000, fv).0
        );
        let sig = sk.sign(&deposit_signing_root(pk, wc, 32_000_000_000, fv));
        let e = DepositDataEntry::new(sk.public_key(), wc, 32_000_000_000, fv, "holesky", &sig);
        let json = serde_json::to_value(&e).expect("ser");
        assert_eq!(json["amount"], 32_000_000_000u64);
        assert_eq!(json["fork_version"], "01017000");
        assert!(!e.pubkey.starts_with("0x"));
    }
}
