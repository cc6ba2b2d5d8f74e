//! `dvsigner cluster status`: asks every node of `cluster.json` (and optionally a combiner) what
//! it is, which keys it holds and whether it is ready, concurrently and with a timeout, then says
//! per validator whether at least t nodes can sign. `dvsigner cluster verify --online` uses the
//! same probe for its network-agreement check.
//!
//! Per node it reads `GET /api/v1/dvsigner/info` (version, network), `GET /api/v1/eth2/publicKeys`
//! (keys held, compared with the shares `cluster.json` assigns the operator) and
//! `GET /healthcheck` (readiness, DOWN checks, and the `cluster-sync` check's peer counts).
//! A node can sign for a validator when it answered, `/healthcheck` is UP and it holds the
//! validator's share.
//!
//! Exit codes: 0 every validator has at least t nodes that can sign and every process that
//! answered signs for the same network; [`EXIT_BELOW_THRESHOLD`] some validator has fewer;
//! [`EXIT_NETWORK_DISAGREEMENT`] (only when every validator is fine) processes disagree on the
//! network; 1 any other error (unreadable cluster.json or TLS files).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::ExitStatus;
use crate::cluster::ClusterDefinition;
use crate::http::info::{Info, NetworkInfo, INFO_PATH};
use crate::tls;

/// Exit code of `cluster status` when some validator has fewer than t nodes that can sign.
pub const EXIT_BELOW_THRESHOLD: u8 = 3;
/// Exit code of `cluster status` (when no validator is below threshold) and of
/// `cluster verify --online` when the processes that answered disagree on the network.
pub const EXIT_NETWORK_DISAGREEMENT: u8 = 4;

/// How to reach the nodes (and optionally a combiner) of a cluster.
#[derive(Debug, Clone, Args)]
pub struct NodeAccessArgs {
    /// CA that issued the nodes' server certificates (PEM); operators' `tls_fingerprint`s in
    /// cluster.json are accepted too.
    #[arg(long)]
    pub node_ca: Option<PathBuf>,
    /// Client certificate (PEM) to present to nodes that require one.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "DVSIGNER_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Also ask this combiner (base URL) which network it signs for.
    #[arg(long)]
    pub combiner: Option<String>,
    /// CA of the combiner's server certificate (PEM; default: --node-ca).
    #[arg(long, requires = "combiner")]
    pub combiner_ca: Option<PathBuf>,
    /// Time allowed for each request, in milliseconds (nodes are asked concurrently).
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

/// `dvsigner cluster status` options.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The cluster definition.
    #[arg(long)]
    pub cluster: PathBuf,
    /// How to reach the nodes.
    #[command(flatten)]
    pub access: NodeAccessArgs,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `/healthcheck`'s `cluster-sync` check, when the node runs with `--cluster`.
#[derive(Debug, Clone, Serialize)]
pub struct SyncState {
    /// Whether the node finished its initial history sync.
    pub ready: bool,
    /// Distinct peers merged from.
    pub peers_merged: Option<u64>,
    /// Distinct peers needed before signing.
    pub min_peers: Option<u64>,
    /// Why the node does not sign yet.
    pub reason: Option<String>,
}

/// What one node answered.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// Operator name in cluster.json.
    pub operator: String,
    /// Its URL in cluster.json.
    pub url: String,
    /// Whether the node answered `/healthcheck` at all.
    pub reachable: bool,
    /// Why a request failed (the first failure), in words.
    pub error: Option<String>,
    /// `/healthcheck` UP.
    pub ready: bool,
    /// `/healthcheck`'s status (`UP`/`DOWN`), when it answered.
    pub health: Option<String>,
    /// Ids of the DOWN checks.
    pub down_checks: Vec<String>,
    /// History sync state, when the node runs with `--cluster`.
    pub sync: Option<SyncState>,
    /// From the info route.
    pub version: Option<String>,
    /// From the info route.
    pub role: Option<String>,
    /// The operator name the node itself reports (`--operator`).
    pub reported_operator: Option<String>,
    /// From the info route.
    pub network: Option<NetworkInfo>,
    /// Whether its network differs from the one most processes sign for.
    pub network_differs: bool,
    /// Keys the node serves (`/api/v1/eth2/publicKeys`).
    pub keys_held: Option<usize>,
    /// Shares cluster.json assigns to the operator.
    pub shares_assigned: usize,
    /// Assigned shares the node does not serve (validator group keys).
    pub missing_shares: Vec<String>,
    /// Keys the node serves that cluster.json does not assign to it.
    pub extra_keys: Vec<String>,
}

/// What the combiner answered.
#[derive(Debug, Clone, Serialize)]
pub struct CombinerReport {
    /// Its URL.
    pub url: String,
    /// Whether it answered.
    pub reachable: bool,
    /// Why not, in words.
    pub error: Option<String>,
    /// From the info route.
    pub version: Option<String>,
    /// From the info route.
    pub network: Option<NetworkInfo>,
    /// Whether its network differs from the one most processes sign for.
    pub network_differs: bool,
}

/// Per validator: can at least t nodes sign?
#[derive(Debug, Clone, Serialize)]
pub struct ValidatorReport {
    /// The validator's public key.
    pub group_pubkey: String,
    /// t.
    pub threshold: u32,
    /// n.
    pub share_count: u32,
    /// Operators whose node answered, is ready and holds the share.
    pub signing_nodes: Vec<String>,
    /// The other operators, with why they cannot sign.
    pub unavailable: BTreeMap<String, String>,
    /// `signing_nodes.len() >= threshold`.
    pub can_sign: bool,
}

/// The whole cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// cluster.json's hash.
    pub cluster: String,
    /// Every node, in cluster.json order.
    pub nodes: Vec<NodeReport>,
    /// The combiner, with `--combiner`.
    pub combiner: Option<CombinerReport>,
    /// Every validator, in cluster.json order.
    pub validators: Vec<ValidatorReport>,
    /// Validators with fewer than t nodes that can sign.
    pub below_threshold: usize,
    /// The network most processes that answered sign for.
    pub network: Option<NetworkInfo>,
    /// Whether every process that answered signs for that network.
    pub network_agreement: bool,
    /// The exit code of `cluster status`.
    pub exit_code: u8,
}

/// Reads cluster.json and asks every node (and the combiner).
///
/// # Errors
/// Unreadable cluster.json or TLS files.
pub async fn probe(cluster: &Path, access: &NodeAccessArgs) -> anyhow::Result<ClusterReport> {
    let def = ClusterDefinition::load(cluster)
        .with_context(|| format!("cluster definition {}", cluster.display()))?;
    let timeout = Duration::from_millis(access.timeout_ms.max(1));
    let identity = access.client_cert.clone().zip(access.client_key.clone());
    let node_tls =
        crate::app::combiner::node_client_tls(&def, access.node_ca.as_deref(), identity.clone())
            .context("node TLS settings")?;
    let node_client = http_client(node_tls, timeout)?;
    let combiner_client = match &access.combiner {
        Some(_) => {
            let ca = access
                .combiner_ca
                .clone()
                .or_else(|| access.node_ca.clone());
            let tls = tls::client_config(tls::ClientTlsOptions {
                ca,
                pinned: Vec::new(),
                identity,
            })
            .context("combiner TLS settings")?;
            Some(http_client(tls, timeout)?)
        }
        None => None,
    };
    let nodes = futures::future::join_all(
        def.operators()
            .iter()
            .map(|o| probe_node(&node_client, &def, &o.name, &o.url)),
    );
    let combiner = async {
        match (&access.combiner, &combiner_client) {
            (Some(url), Some(client)) => Some(probe_combiner(client, url).await),
            _ => None,
        }
    };
    let (mut nodes, mut combiner) = tokio::join!(nodes, combiner);
    let (network, agreement) = flag_networks(&mut nodes, combiner.as_mut());
    let validators: Vec<ValidatorReport> = def
        .validators()
        .iter()
        .map(|v| {
            let mut signing_nodes = Vec::new();
            let mut unavailable = BTreeMap::new();
            for share in &v.shares {
                let node = nodes.iter().find(|n| n.operator == share.operator);
                let why = match node {
                    None => Some("not in cluster.json".to_owned()),
                    Some(n) if !n.reachable => Some("unreachable".to_owned()),
                    Some(n) if !n.ready => Some("not ready".to_owned()),
                    Some(n) if n.keys_held.is_none() => Some("key list unknown".to_owned()),
                    Some(n) if n.missing_shares.contains(&v.group_pubkey.bytes().to_hex()) => {
                        Some(format!("does not hold share {}", share.index.get()))
                    }
                    Some(_) => None,
                };
                match why {
                    None => signing_nodes.push(share.operator.clone()),
                    Some(why) => {
                        unavailable.insert(share.operator.clone(), why);
                    }
                }
            }
            let can_sign = signing_nodes.len() >= v.threshold as usize;
            ValidatorReport {
                group_pubkey: v.group_pubkey.bytes().to_hex(),
                threshold: v.threshold,
                share_count: v.share_count,
                signing_nodes,
                unavailable,
                can_sign,
            }
        })
        .collect();
    let below_threshold = validators.iter().filter(|v| !v.can_sign).count();
    let exit_code = if below_threshold > 0 {
        EXIT_BELOW_THRESHOLD
    } else if !agreement {
        EXIT_NETWORK_DISAGREEMENT
    } else {
        0
    };
    Ok(ClusterReport {
        cluster: def.hash().to_string(),
        nodes,
        combiner,
        validators,
        below_threshold,
        network,
        network_agreement: agreement,
        exit_code,
    })
}

fn http_client(tls: rustls::ClientConfig, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .context("HTTP client")
}

/// A failed request in words: what the transport said, innermost cause last.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    match parts.last() {
        Some(cause) => format!("{what}: {cause}"),
        None => what.to_owned(),
    }
}

/// GETs `base + path`; the status and the JSON body, or the failure in words.
async fn get_json(
    client: &reqwest::Client,
    base: &str,
    path: &str,
) -> Result<(u16, Value), String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let response = client
        .get(&url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let body = response
        .json::<Value>()
        .await
        .map_err(|e| format!("{path}: HTTP {status}, not JSON: {}", describe(&e)))?;
    Ok((status, body))
}

fn parse_info(answer: Result<(u16, Value), String>) -> Result<Info, String> {
    match answer {
        Ok((200, body)) => serde_json::from_value::<Info>(body)
            .map_err(|e| format!("{INFO_PATH}: unexpected answer: {e}")),
        Ok((status, _)) => Err(format!("{INFO_PATH}: HTTP {status}")),
        Err(e) => Err(e),
    }
}

async fn probe_node(
    client: &reqwest::Client,
    def: &ClusterDefinition,
    operator: &str,
    url: &str,
) -> NodeReport {
    let (info, keys, health) = tokio::join!(
        get_json(client, url, INFO_PATH),
        get_json(client, url, "/api/v1/eth2/publicKeys"),
        get_json(client, url, "/healthcheck"),
    );
    let assigned: Vec<(String, String)> = def
        .shares_of(operator)
        .map(|(group, _, share)| (group.bytes().to_hex(), share.bytes().to_hex()))
        .collect();
    let mut report = NodeReport {
        operator: operator.to_owned(),
        url: url.to_owned(),
        reachable: false,
        error: None,
        ready: false,
        health: None,
        down_checks: Vec::new(),
        sync: None,
        version: None,
        role: None,
        reported_operator: None,
        network: None,
        network_differs: false,
        keys_held: None,
        shares_assigned: assigned.len(),
        missing_shares: assigned.iter().map(|(g, _)| g.clone()).collect(),
        extra_keys: Vec::new(),
    };
    let mut errors = Vec::new();
    match health {
        Ok((status, body)) => {
            report.reachable = true;
            let up = body["status"] == "UP";
            report.ready = status == 200 && up;
            report.health = body["status"].as_str().map(str::to_owned);
            collect_down(&body["checks"], &mut report.down_checks);
            if let Some(sync) = body["checks"]
                .as_array()
                .and_then(|checks| checks.iter().find(|c| c["id"] == "cluster-sync"))
            {
                let data = &sync["data"];
                report.sync = Some(SyncState {
                    ready: sync["status"] == "UP",
                    peers_merged: data["peers_merged"].as_u64(),
                    min_peers: data["min_peers"].as_u64(),
                    reason: data["reason"].as_str().map(str::to_owned),
                });
            }
        }
        Err(e) => errors.push(e),
    }
    match parse_info(info) {
        Ok(info) => {
            report.version = Some(info.version);
            report.role = Some(info.role);
            report.reported_operator = info.operator;
            report.network = Some(info.network);
        }
        Err(e) => errors.push(e),
    }
    match keys {
        Ok((200, body)) => match serde_json::from_value::<Vec<String>>(body) {
            Ok(list) => {
                let held: BTreeSet<String> = list.iter().map(|k| k.to_lowercase()).collect();
                report.keys_held = Some(held.len());
                report.missing_shares = assigned
                    .iter()
                    .filter(|(_, share)| !held.contains(share))
                    .map(|(group, _)| group.clone())
                    .collect();
                let assigned_shares: BTreeSet<&String> = assigned.iter().map(|(_, s)| s).collect();
                report.extra_keys = held
                    .iter()
                    .filter(|k| !assigned_shares.contains(k))
                    .cloned()
                    .collect();
            }
            Err(e) => errors.push(format!("/api/v1/eth2/publicKeys: unexpected answer: {e}")),
        },
        Ok((status, _)) => errors.push(format!("/api/v1/eth2/publicKeys: HTTP {status}")),
        Err(e) => errors.push(e),
    }
    errors.dedup();
    report.error = (!errors.is_empty()).then(|| errors.join("; "));
    report
}

/// Ids of DOWN checks, nested ones included (`keys-check` holds one per key source).
fn collect_down(checks: &Value, out: &mut Vec<String>) {
    for check in checks.as_array().into_iter().flatten() {
        let nested = check["checks"].as_array().is_some_and(|a| !a.is_empty());
        if nested {
            collect_down(&check["checks"], out);
        } else if check["status"] == "DOWN" {
            if let Some(id) = check["id"].as_str() {
                out.push(id.to_owned());
            }
        }
    }
}

async fn probe_combiner(client: &reqwest::Client, url: &str) -> CombinerReport {
    let mut report = CombinerReport {
        url: url.to_owned(),
        reachable: false,
        error: None,
        version: None,
        network: None,
        network_differs: false,
    };
    let answer = get_json(client, url, INFO_PATH).await;
    report.reachable = answer.is_ok();
    match parse_info(answer) {
        Ok(info) => {
            report.version = Some(info.version);
            report.network = Some(info.network);
        }
        Err(e) => report.error = Some(e),
    }
    report
}

/// Picks the network most processes agree with (ties: the first in cluster.json order, then the
/// combiner), flags each process that does not agree with it, and says whether all agree.
fn flag_networks(
    nodes: &mut [NodeReport],
    combiner: Option<&mut CombinerReport>,
) -> (Option<NetworkInfo>, bool) {
    let mut seen: Vec<(&mut bool, NetworkInfo)> = Vec::new();
    for n in nodes.iter_mut() {
        if let Some(net) = n.network.clone() {
            seen.push((&mut n.network_differs, net));
        }
    }
    if let Some(c) = combiner {
        if let Some(net) = c.network.clone() {
            seen.push((&mut c.network_differs, net));
        }
    }
    let best = seen
        .iter()
        .enumerate()
        .map(|(i, (_, a))| {
            let agreeing = seen.iter().filter(|(_, b)| a.agrees_with(b)).count();
            (agreeing, std::cmp::Reverse(i))
        })
        .max()
        .map(|(_, std::cmp::Reverse(i))| seen[i].1.clone());
    let Some(reference) = best else {
        return (None, true);
    };
    let mut all = true;
    for (differs, net) in &mut seen {
        **differs = !net.agrees_with(&reference);
        all &= !**differs;
    }
    // Two roots can each agree with a reference that has none and still differ.
    let roots: BTreeSet<&String> = seen
        .iter()
        .filter_map(|(_, n)| n.genesis_validators_root.as_ref())
        .collect();
    all &= roots.len() <= 1;
    (Some(reference), all)
}

/// A public key shortened for tables: `0x` + the first 8 and the last 6 hex digits.
fn short(key: &str) -> String {
    if key.len() > 20 {
        format!("{}…{}", &key[..10], &key[key.len() - 6..])
    } else {
        key.to_owned()
    }
}

/// Rows as left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn network_cell(net: Option<&NetworkInfo>, differs: bool) -> String {
    match net {
        None => "?".to_owned(),
        Some(n) => {
            let text = format!("{} {}", n.name, n.genesis_fork_version);
            if differs {
                format!("{text} DIFFERS")
            } else {
                text
            }
        }
    }
}

/// The human form of a report.
pub fn render(report: &ClusterReport) -> String {
    let mut out = format!(
        "cluster {}: {} node(s), {} validator(s)\n\n",
        report.cluster,
        report.nodes.len(),
        report.validators.len()
    );
    let mut rows = vec![[
        "OPERATOR", "URL", "STATE", "VERSION", "NETWORK", "KEYS", "SHARES", "MISSING", "EXTRA",
        "SYNC",
    ]
    .map(str::to_owned)
    .to_vec()];
    for n in &report.nodes {
        let state = if !n.reachable {
            "unreachable".to_owned()
        } else if n.ready {
            "ready".to_owned()
        } else if n.down_checks.is_empty() {
            "not ready".to_owned()
        } else {
            format!("DOWN ({})", n.down_checks.join(","))
        };
        let sync = match &n.sync {
            None => "-".to_owned(),
            Some(s) => {
                let peers = match (s.peers_merged, s.min_peers) {
                    (Some(m), Some(k)) => format!(" {m}/{k} peers"),
                    _ => String::new(),
                };
                format!("{}{peers}", if s.ready { "synced" } else { "pending" })
            }
        };
        let num = |v: Option<usize>| v.map_or("?".to_owned(), |v| v.to_string());
        let known = n.keys_held.is_some();
        rows.push(vec![
            n.operator.clone(),
            n.url.clone(),
            state,
            n.version.clone().unwrap_or_else(|| "?".into()),
            network_cell(n.network.as_ref(), n.network_differs),
            num(n.keys_held),
            n.shares_assigned.to_string(),
            num(known.then_some(n.missing_shares.len())),
            num(known.then_some(n.extra_keys.len())),
            sync,
        ]);
    }
    out.push_str(&table(&rows));
    let errors: Vec<String> = report
        .nodes
        .iter()
        .filter_map(|n| n.error.as_ref().map(|e| format!("  {}: {e}", n.operator)))
        .collect();
    if !errors.is_empty() {
        out.push_str("errors:\n");
        out.push_str(&errors.join("\n"));
        out.push('\n');
    }
    if let Some(c) = &report.combiner {
        out.push_str(&format!(
            "\ncombiner {}: {}\n",
            c.url,
            match (&c.error, &c.network) {
                (Some(e), _) => format!("unreachable: {e}"),
                (None, net) => format!(
                    "version {}, network {}",
                    c.version.as_deref().unwrap_or("?"),
                    network_cell(net.as_ref(), c.network_differs)
                ),
            }
        ));
    }
    out.push('\n');
    let mut rows = vec![["VALIDATOR", "T/N", "CAN SIGN", "STATUS"]
        .map(str::to_owned)
        .to_vec()];
    for v in &report.validators {
        let status = if v.can_sign {
            "ok".to_owned()
        } else {
            format!(
                "BELOW THRESHOLD ({})",
                v.unavailable
                    .iter()
                    .map(|(op, why)| format!("{op}: {why}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        rows.push(vec![
            short(&v.group_pubkey),
            format!("{}/{}", v.threshold, v.share_count),
            v.signing_nodes.len().to_string(),
            status,
        ]);
    }
    out.push_str(&table(&rows));
    out.push('\n');
    match (&report.network, report.network_agreement) {
        (None, _) => out.push_str("network: no process answered\n"),
        (Some(net), true) => out.push_str(&format!(
            "network: every process that answered signs for {net}\n"
        )),
        (Some(net), false) => {
            let differ: Vec<String> = report
                .nodes
                .iter()
                .filter(|n| n.network_differs)
                .map(|n| {
                    format!(
                        "{}: {}",
                        n.operator,
                        n.network
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    )
                })
                .chain(
                    report
                        .combiner
                        .iter()
                        .filter(|c| c.network_differs)
                        .map(|c| {
                            format!(
                                "combiner: {}",
                                c.network
                                    .as_ref()
                                    .map(ToString::to_string)
                                    .unwrap_or_default()
                            )
                        }),
                )
                .collect();
            out.push_str(&format!(
                "NETWORK DISAGREEMENT: most processes sign for {net}; differing: {}\n",
                if differ.is_empty() {
                    "genesis validators roots differ".to_owned()
                } else {
                    differ.join(", ")
                }
            ));
        }
    }
    let ok = report.validators.len() - report.below_threshold;
    out.push_str(&format!(
        "{ok} of {} validator(s) have at least t nodes that can sign",
        report.validators.len()
    ));
    if report.below_threshold > 0 {
        out.push_str(&format!("; {} BELOW THRESHOLD", report.below_threshold));
    }
    out.push('\n');
    out
}

/// `dvsigner cluster status`.
///
/// # Errors
/// [`ExitStatus`] with [`EXIT_BELOW_THRESHOLD`] or [`EXIT_NETWORK_DISAGREEMENT`]; other errors
/// for unreadable inputs.
pub async fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let report = probe(&args.cluster, &args.access).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    match report.exit_code {
        0 => Ok(()),
        EXIT_BELOW_THRESHOLD => Err(ExitStatus {
            code: EXIT_BELOW_THRESHOLD,
            message: format!("{} validator(s) below threshold", report.below_threshold),
        }
        .into()),
        code => Err(ExitStatus {
            code,
            message: "processes disagree on the network".into(),
        }
        .into()),
    }
}

/// `dvsigner cluster verify --online`: every node (and `--combiner`) that answers must sign for
/// the same network. Prints one line per process.
///
/// # Errors
/// [`ExitStatus`] with [`EXIT_NETWORK_DISAGREEMENT`] when they disagree; an error when no process
/// answered.
pub async fn verify_online(cluster: &Path, access: &NodeAccessArgs) -> anyhow::Result<()> {
    let report = probe(cluster, access).await?;
    let line =
        |who: String, net: Option<&NetworkInfo>, differs: bool, error: Option<&String>| match (
            net, error,
        ) {
            (Some(net), _) => println!(
                "{who}: network {net}{}",
                if differs { "  <- DIFFERS" } else { "" }
            ),
            (None, Some(e)) => println!("{who}: no answer: {e}"),
            (None, None) => println!("{who}: no answer"),
        };
    for n in &report.nodes {
        line(
            format!("node {} {}", n.operator, n.url),
            n.network.as_ref(),
            n.network_differs,
            n.error.as_ref(),
        );
    }
    if let Some(c) = &report.combiner {
        line(
            format!("combiner {}", c.url),
            c.network.as_ref(),
            c.network_differs,
            c.error.as_ref(),
        );
    }
    match (&report.network, report.network_agreement) {
        (None, _) => anyhow::bail!("no node answered {INFO_PATH}"),
        (Some(net), true) => {
            println!("network agreement OK: every process that answered signs for {net}");
            Ok(())
        }
        (Some(_), false) => Err(ExitStatus {
            code: EXIT_NETWORK_DISAGREEMENT,
            message: "the cluster's processes disagree on the network".into(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, root: Option<&str>) -> NetworkInfo {
        NetworkInfo {
            name: name.into(),
            genesis_fork_version: "0x00000000".into(),
            preset: "mainnet".into(),
            genesis_validators_root: root.map(str::to_owned),
        }
    }

    fn node(name: &str, network: Option<NetworkInfo>) -> NodeReport {
        NodeReport {
            operator: name.into(),
            url: String::new(),
            reachable: network.is_some(),
            error: None,
            ready: true,
            health: None,
            down_checks: Vec::new(),
            sync: None,
            version: None,
            role: None,
            reported_operator: None,
            network,
            network_differs: false,
            keys_held: None,
            shares_assigned: 0,
            missing_shares: Vec::new(),
            extra_keys: Vec::new(),
        }
    }

    #[test]
    fn the_odd_network_out_is_flagged() {
        let mut nodes = vec![
            node("a", Some(net("mainnet", None))),
            node("b", Some(net("holesky", None))),
            node("c", Some(net("mainnet", None))),
            node("d", None),
        ];
        let (reference, all) = flag_networks(&mut nodes, None);
        assert_eq!(reference.map(|n| n.name), Some("mainnet".into()));
        assert!(!all);
        let flagged: Vec<bool> = nodes.iter().map(|n| n.network_differs).collect();
        assert_eq!(flagged, [false, true, false, false]);
    }

    #[test]
    fn different_roots_disagree_even_against_an_unpinned_reference() {
        let mut nodes = vec![
            node("a", Some(net("mainnet", None))),
            node("b", Some(net("mainnet", Some("0x01")))),
            node("c", Some(net("mainnet", Some("0x02")))),
        ];
        let (_, all) = flag_networks(&mut nodes, None);
        assert!(!all);
        let mut same = vec![
            node("a", Some(net("mainnet", None))),
            node("b", Some(net("mainnet", Some("0x01")))),
        ];
        assert!(flag_networks(&mut same, None).1);
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["aaa".into(), "b".into(), "c".into()],
        ]);
        assert_eq!(t, "A    BB  C\naaa  b   c\n");
    }
}
