//! Sign request bodies and HTTPS clients the tests use (their own, not the product's `bench`).

use std::path::Path;
use std::time::Duration;

use dvsigner::tls::DevIdentity;

/// A mainnet-shaped ATTESTATION sign request: fork info of mainnet at epoch 364032 (previous
/// version 0x04000000, current 0x05000000), slot `32 * target`, committee index 0, source epoch
/// 0, target epoch `target`, and every root `0xabab…ab`. Tests edit it with string
/// replacements (`"source":{"epoch":"0"`, `"beacon_block_root":"0xabab…`), so its text is
/// fixed: compact JSON in this key order.
pub fn attestation_body(target: u64) -> String {
    format!(
        concat!(
            r#"{{"type":"ATTESTATION","fork_info":{{"fork":{{"previous_version":"0x04000000","#,
            r#""current_version":"0x05000000","epoch":"364032"}},"genesis_validators_root":"#,
            r#""0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"}},"#,
            r#""attestation":{{"slot":"{slot}","index":"0","beacon_block_root":"#,
            r#""0x{root}","source":{{"epoch":"0","root":"0x{root}"}},"#,
            r#""target":{{"epoch":"{target}","root":"0x{root}"}}}}}}"#
        ),
        slot = target.saturating_mul(32),
        target = target,
        root = "ab".repeat(32)
    )
}

/// A mainnet-shaped BLOCK_V2 sign request (Electra block header, fork info as
/// [`attestation_body`]) at `slot` for proposer `proposer`, parent and state roots zero and the
/// body root `body_byte` (two hex digits) repeated 32 times.
pub fn block_v2_body(slot: u64, proposer: u64, body_byte: &str) -> String {
    format!(
        concat!(
            r#"{{"type":"BLOCK_V2","fork_info":{{"fork":{{"previous_version":"0x04000000","#,
            r#""current_version":"0x05000000","epoch":"364032"}},"genesis_validators_root":"#,
            r#""0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"}},"#,
            r#""beacon_block":{{"version":"ELECTRA","block_header":{{"slot":"{slot}","#,
            r#""proposer_index":"{proposer}","parent_root":"0x{z}","state_root":"0x{z}","#,
            r#""body_root":"0x{b}"}}}}}}"#
        ),
        slot = slot,
        proposer = proposer,
        z = "00".repeat(32),
        b = body_byte.repeat(32)
    )
}

/// An HTTPS client (rustls) trusting only the CA certificate `ca` (PEM), presenting `identity`
/// as its client certificate when given, with a `timeout` per request.
pub fn https_client(
    ca: &Path,
    identity: Option<&DevIdentity>,
    timeout: Duration,
) -> reqwest::Client {
    let ca_pem = std::fs::read(ca).unwrap_or_else(|e| panic!("reading {}: {e}", ca.display()));
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).expect("CA PEM"))
        .timeout(timeout);
    if let Some(id) = identity {
        let mut pem = std::fs::read(&id.cert).expect("client certificate");
        pem.extend(std::fs::read(&id.key).expect("client key"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("client identity"));
    }
    b.build().expect("client")
}
