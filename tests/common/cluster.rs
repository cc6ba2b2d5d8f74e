//! Argument vectors for a cluster of real processes over TLS: signer nodes and a combiner,
//! with identities from a `DevPki` (server `node-x` per node, server `combiner` and client
//! `combiner-client` for the combiner).

use std::path::Path;

use dvsigner::tls::DevPki;

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `dvsigner signer` on 127.0.0.1:`port` over TLS as `name` (clients must chain to the PKI's
/// CA), data in `data_dir`, keys from `share_dir` (`keystores/` and `passwords/`, as `dvsigner
/// split` writes them per operator).
pub fn tls_signer_args(
    pki: &DevPki,
    name: &str,
    port: u16,
    data_dir: &Path,
    share_dir: &Path,
) -> Vec<String> {
    let id = pki.identity(name).expect("node identity");
    vec![
        "signer".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        s(data_dir),
        "--keystores".into(),
        s(&share_dir.join("keystores")),
        "--keystores-passwords".into(),
        s(&share_dir.join("passwords")),
        "--tls-cert".into(),
        s(&id.cert),
        "--tls-key".into(),
        s(&id.key),
        "--tls-client-ca".into(),
        s(&pki.ca_cert),
    ]
}

/// `dvsigner combiner` on 127.0.0.1:`port` over TLS for `cluster_json`, trusting nodes that
/// chain to the PKI's CA and presenting `combiner-client` to them.
pub fn combiner_args(pki: &DevPki, port: u16, cluster_json: &Path) -> Vec<String> {
    let id = pki.identity("combiner").expect("combiner identity");
    let client = pki.identity("combiner-client").expect("client identity");
    vec![
        "combiner".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--cluster".into(),
        s(cluster_json),
        "--tls-cert".into(),
        s(&id.cert),
        "--tls-key".into(),
        s(&id.key),
        "--node-ca".into(),
        s(&pki.ca_cert),
        "--client-cert".into(),
        s(&client.cert),
        "--client-key".into(),
        s(&client.key),
    ]
}
