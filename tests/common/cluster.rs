//! A cluster of real processes over TLS: whole interop keys split into threshold shares by
//! `dvsigner split`, a `DevPki` (server `node-x` per node, server `combiner` and client
//! `combiner-client` for the combiner, client `node-x-client` per node for cluster sync), and
//! the argument vectors of signer nodes and a combiner.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::{KdfParams, Keystore, Password};
use dvsigner::tls::DevPki;

use super::process::run_ok;
use super::requests::https_client;

/// The operators of a 3-of-4 test cluster, in order.
pub const NODES: [&str; 4] = ["node-a", "node-b", "node-c", "node-d"];

/// The password of the whole-key keystores [`split_interop`] writes.
pub const WHOLE_KEY_PASSWORD: &str = "whole-key-password";

/// The dev PKI of a cluster in `dir`: a server identity per name of `nodes` and `combiner`, the
/// client identity `combiner-client`, and with `peers` a client identity `<node>-client` per
/// node (what nodes present to each other for cluster sync).
pub fn cluster_pki(dir: &Path, nodes: &[&str], peers: bool) -> DevPki {
    let mut servers = nodes.to_vec();
    servers.push("combiner");
    let mut clients: Vec<String> = Vec::new();
    if peers {
        clients.extend(nodes.iter().map(|n| format!("{n}-client")));
    }
    clients.push("combiner-client".to_owned());
    let client_refs: Vec<&str> = clients.iter().map(String::as_str).collect();
    DevPki::generate(dir, &servers, &client_refs).expect("pki")
}

/// Writes the `--peer-allowed-clients` file: `<node> <fingerprint of <node>-client>` per node.
pub fn write_peer_allowlist(pki: &DevPki, nodes: &[&str], path: &Path) {
    let allowed: String = nodes
        .iter()
        .map(|n| {
            let id = pki.identity(&format!("{n}-client")).expect("identity");
            format!("{n} {}\n", id.fingerprint)
        })
        .collect();
    std::fs::write(path, allowed).expect("write peer allow-list");
}

/// The `(operator, URL)` pairs of `nodes` listening on `https://127.0.0.1:<port>`, in order.
pub fn https_operators<'a>(nodes: &[&'a str], ports: &[u16]) -> Vec<(&'a str, String)> {
    assert_eq!(nodes.len(), ports.len(), "one port per node");
    nodes
        .iter()
        .zip(ports)
        .map(|(n, p)| (*n, format!("https://127.0.0.1:{p}")))
        .collect()
}

/// Writes interop keys `keys` as whole keystores (`v<i>.json`, EIP-2335 with the fast test KDF,
/// password [`WHOLE_KEY_PASSWORD`] in `pw.txt`) into `dir/whole`, then runs `dvsigner split` of
/// that folder into `t`-of-`operators.len()` shares for `operators` (name, node URL) under
/// `out` (`cluster.json` and one share folder per operator). Returns split's output.
pub fn split_interop<N: AsRef<str>>(
    dir: &Path,
    keys: Range<u64>,
    t: usize,
    operators: &[(N, String)],
    out: &Path,
) -> String {
    let whole = dir.join("whole");
    std::fs::create_dir_all(&whole).expect("mkdir");
    std::fs::write(whole.join("pw.txt"), WHOLE_KEY_PASSWORD).expect("pw");
    for i in keys {
        let ks = Keystore::encrypt(
            &interop_secret_key(i),
            &Password::new(WHOLE_KEY_PASSWORD.into()),
            KdfParams::insecure_fast(),
            "",
            "",
        )
        .expect("encrypt");
        std::fs::write(whole.join(format!("v{i}.json")), ks.to_json()).expect("write");
    }
    let list = operators
        .iter()
        .map(|(n, url)| format!("{}={url}", n.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    run_ok(&[
        "split".into(),
        "--keystore".into(),
        whole.display().to_string(),
        "--password-file".into(),
        whole.join("pw.txt").display().to_string(),
        "--threshold".into(),
        t.to_string(),
        "--shares".into(),
        operators.len().to_string(),
        "--operators".into(),
        list,
        "--out".into(),
        out.display().to_string(),
        "--kdf".into(),
        "insecure-fast".into(),
    ])
}

/// A client of the combiner's TLS (trusting the PKI's CA, no client certificate), 20 s per
/// request.
pub fn tls_client(pki: &DevPki) -> reqwest::Client {
    https_client(&pki.ca_cert, None, Duration::from_secs(20))
}

/// The public key (hex) of interop key `i`: the group key of a validator split from it.
pub fn group_pk(i: u64) -> String {
    interop_secret_key(i).public_key().bytes().to_hex()
}

/// An attestation with source epoch 400000 and target `target` (above every epoch the oracle
/// fixtures use, which set a validator's low watermark).
pub fn att(target: u64) -> String {
    super::requests::attestation_body(target).replace(
        "\"source\":{\"epoch\":\"0\"",
        "\"source\":{\"epoch\":\"400000\"",
    )
}

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

/// The cluster history sync options of node `name`: its `cluster_json` membership, the PKI's CA
/// for peers, its `<name>-client` identity towards them, and `allowlist` (as written by
/// [`write_peer_allowlist`]) for the peers allowed to pull from it.
pub fn peer_sync_args(
    pki: &DevPki,
    name: &str,
    cluster_json: &Path,
    allowlist: &Path,
) -> Vec<String> {
    let client = pki
        .identity(&format!("{name}-client"))
        .expect("client identity");
    vec![
        "--cluster".into(),
        s(cluster_json),
        "--operator".into(),
        name.into(),
        "--peer-ca".into(),
        s(&pki.ca_cert),
        "--peer-client-cert".into(),
        s(&client.cert),
        "--peer-client-key".into(),
        s(&client.key),
        "--peer-allowed-clients".into(),
        s(allowlist),
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
