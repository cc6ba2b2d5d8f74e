//! The Grafana dashboards and Prometheus alert rules of the Helm chart
//! (`helm/dvsigner/dashboards/`) against what dvsigner really exports:
//! - every metric name in every dashboard panel expression, template-variable query and alert
//!   rule is exported by a live 3-of-4 cluster (signer nodes with cluster sync) or its combiner
//!   after signing every sign type, and `rate`/`increase` are only applied to counters and
//!   histogram series (so a metric exported with the wrong type fails here);
//! - the dashboards are Grafana JSON models with unique panel ids, the `${datasource}`
//!   Prometheus variable on every panel and query, and `job`/`instance` variables;
//! - the combiner's `dvsigner_combiner_node_failing` and
//!   `dvsigner_combiner_validators_below_threshold` follow nodes going down and coming back.
//!
//! `promtool check rules` / `promtool test rules` run on the same files in tests/helm/check.sh.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::{
    att, cluster_pki, combiner_args, group_pk, https_operators, peer_sync_args, split_interop,
    tls_client, tls_signer_args, write_peer_allowlist, NODES,
};
use common::process::{free_port, Proc};
use dvsigner::tls::DevPki;
use serde_json::Value;

/// Series Prometheus writes itself for every scrape target (not in any `/metrics`).
const SYNTHETIC: [&str; 1] = ["up"];

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/dvsigner/dashboards")
}

/// Every `*.json` dashboard of the chart, parsed, with its file name.
fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dashboards_dir()).expect("dashboards dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            let text = std::fs::read_to_string(&path).expect("read dashboard");
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            out.push((name, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 2, "expected the overview and node dashboards");
    out
}

/// Every panel of a dashboard, including those nested in rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// `(where, PromQL)` of every panel target and every query variable of a dashboard. A
/// `label_values(EXPR, LABEL)` variable query contributes its EXPR.
fn dashboard_exprs(file: &str, dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            out.push((format!("{file}: panel {:?}", p["title"]), expr.to_owned()));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        let q = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .unwrap_or_default();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map_or(q, |(expr, _label)| expr);
        out.push((
            format!("{file}: variable {}", var["name"]),
            inner.to_owned(),
        ));
    }
    out
}

/// `(alert name, PromQL)` of every rule of the chart's rules file.
fn alert_exprs() -> Vec<(String, String)> {
    let path = dashboards_dir().join("alerts.rules.yaml");
    let doc: yaml_serde::Value =
        yaml_serde::from_str(&std::fs::read_to_string(&path).expect("rules")).expect("yaml");
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or_else(|| rule["record"].as_str())
                .expect("alert or record name");
            let expr = rule["expr"].as_str().expect("expr");
            out.push((format!("alert {name}"), expr.to_owned()));
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
    Other,
}

/// Tokens of a PromQL expression with string literals, label matchers (`{...}`), ranges and
/// subqueries (`[...]`) and Grafana variables (`$x`, `${x}`) left out.
fn tokens(expr: &str) -> Vec<Tok> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_cont = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' && c != '`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Other);
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                let mut quote = None;
                i += 1;
                while i < chars.len() {
                    match (quote, chars[i]) {
                        (Some(q), ch) if ch == q => quote = None,
                        (Some(_), '\\') => i += 1,
                        (None, '"' | '\'' | '`') => quote = Some(chars[i]),
                        (None, ch) if ch == close => break,
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Other);
            }
            '$' => {
                i += 1;
                if i < chars.len() && chars[i] == '{' {
                    while i < chars.len() && chars[i] != '}' {
                        i += 1;
                    }
                    i += 1;
                } else {
                    while i < chars.len() && is_cont(chars[i]) {
                        i += 1;
                    }
                }
                out.push(Tok::Other);
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (is_cont(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Other);
            }
            c if is_start(c) => {
                let start = i;
                while i < chars.len() && is_cont(chars[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            c if c.is_whitespace() => i += 1,
            c => {
                out.push(Tok::Punct(c));
                i += 1;
            }
        }
    }
    out
}

/// Keywords whose parenthesised argument is a list of label names.
const LABEL_LIST: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Other PromQL words that are not metric names.
const KEYWORDS: [&str; 9] = [
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start",
];

/// Metric names a PromQL expression selects: identifiers that are not keywords, not
/// function or aggregation names (followed by `(`, or by `by`/`without` then `(`), and not
/// label names in a `by (...)`-style list.
fn metric_names(expr: &str) -> Vec<String> {
    let toks = tokens(expr);
    let mut names = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if let Tok::Ident(word) = &toks[i] {
            let lower = word.to_ascii_lowercase();
            let next = toks.get(i + 1);
            if LABEL_LIST.contains(&lower.as_str()) {
                if next == Some(&Tok::Punct('(')) {
                    let mut depth = 0;
                    i += 1;
                    while i < toks.len() {
                        match toks[i] {
                            Tok::Punct('(') => depth += 1,
                            Tok::Punct(')') => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                }
            } else if KEYWORDS.contains(&lower.as_str()) || next == Some(&Tok::Punct('(')) {
                // A keyword, or a function/aggregation name.
            } else if matches!(next, Some(Tok::Ident(w)) if w == "by" || w == "without") {
                // `sum by (...) (...)`: an aggregation name.
            } else {
                names.push(word.clone());
            }
        }
        i += 1;
    }
    names
}

/// The metric selected directly inside each `rate(`, `irate(` and `increase(` of `expr`.
fn rate_arguments(expr: &str) -> Vec<String> {
    let toks = tokens(expr);
    toks.windows(3)
        .filter_map(|w| match w {
            [Tok::Ident(f), Tok::Punct('('), Tok::Ident(m)]
                if ["rate", "irate", "increase"].contains(&f.as_str()) =>
            {
                Some(m.clone())
            }
            _ => None,
        })
        .collect()
}

/// Sample names of an OpenMetrics exposition, each with its family's `# TYPE`: a counter
/// family `x` has samples `x_total`, a histogram `x_bucket`, `x_sum` and `x_count`. Panics when
/// a sample line does not belong to a declared family (so the expansion is checked too).
fn exposed(text: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
                panic!("bad TYPE line {line:?}");
            };
            let samples: Vec<String> = match kind {
                "counter" => vec![format!("{family}_total")],
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{family}{s}"))
                    .collect(),
                "info" => vec![format!("{family}_info")],
                _ => vec![family.to_owned()],
            };
            for s in samples {
                names.insert(s, kind.to_owned());
            }
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        assert!(
            names.contains_key(&name),
            "sample {line:?} has no # TYPE family"
        );
    }
    names
}

/// The value of the sample `series` (name with labels, as printed) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[test]
fn promql_metric_name_extraction() {
    // The extraction the live check below relies on, on the constructs the files use.
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (node, le) (rate(a_bucket{job=~"$job",x="y{z}"}[$__rate_interval])))"#
        ),
        ["a_bucket"]
    );
    assert_eq!(
        metric_names("up == 0 and on (job, instance) last_over_time(b_ready[1d])"),
        ["up", "b_ready"]
    );
    assert_eq!(
        metric_names(r#"sum(max by (node) (c{a="1"})) / ignoring(x) group_left(y) d offset 5m"#),
        ["c", "d"]
    );
    assert_eq!(
        metric_names(r#"sum without (reason) (increase(e_total[15m])) > 0"#),
        ["e_total"]
    );
    assert_eq!(
        rate_arguments(r#"sum(rate(f_total{a="b"}[5m])) + increase(g_total[1h])"#),
        ["f_total", "g_total"]
    );
    assert_eq!(
        metric_names(r#"label_values(dvsigner_ready{job=~"$job"}, instance)"#),
        ["dvsigner_ready", "instance"],
        "a label_values() query must be unwrapped before extraction"
    );
}

#[test]
fn dashboards_are_grafana_json_with_unique_panel_ids() {
    for (file, d) in dashboards() {
        assert!(
            d["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{file}: uid"
        );
        assert!(
            d["title"].as_str().is_some_and(|u| !u.is_empty()),
            "{file}: title"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some(),
            "{file}: schemaVersion"
        );
        let vars = d["templating"]["list"].as_array().expect("templating.list");
        let var = |name: &str| {
            vars.iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{file}: no variable {name}"))
        };
        let ds = var("datasource");
        assert_eq!(ds["type"], "datasource", "{file}");
        assert_eq!(ds["query"], "prometheus", "{file}");
        for name in ["job", "instance"] {
            let v = var(name);
            assert_eq!(v["type"], "query", "{file}: {name}");
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{file}: {name}");
        }
        let mut ids = BTreeSet::new();
        let mut with_targets = 0;
        for p in panels(&d) {
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{file}: panel without id: {p}"));
            assert!(ids.insert(id), "{file}: panel id {id} used twice");
            let grid = &p["gridPos"];
            for k in ["h", "w", "x", "y"] {
                assert!(grid[k].as_u64().is_some(), "{file}: panel {id} gridPos.{k}");
            }
            if p["type"] == "row" {
                continue;
            }
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file}: panel {id} has no query");
            with_targets += 1;
            assert_eq!(p["datasource"]["type"], "prometheus", "{file}: panel {id}");
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{file}: panel {id}"
            );
            for t in targets {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{file}: panel {id}"
                );
                let expr = t["expr"].as_str().unwrap_or_default();
                assert!(
                    expr.contains(r#"job=~"$job",instance=~"$instance""#)
                        || expr.contains("dvsigner_slashing_refusals_total"),
                    "{file}: panel {id} does not filter by $job and $instance: {expr}"
                );
            }
        }
        assert!(
            with_targets >= 8,
            "{file}: only {with_targets} panels with queries"
        );
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    pki: DevPki,
    ports: Vec<u16>,
    metrics_ports: Vec<u16>,
    cluster_json: PathBuf,
    client: reqwest::Client,
}

impl Cluster {
    /// PKI, two validators (interop keys 0 and 1) split 3-of-4, the peer allow-list.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = cluster_pki(&dir.path().join("tls"), &NODES, true);
        write_peer_allowlist(&pki, &NODES, &dir.path().join("peers.txt"));
        let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
        let metrics_ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
        let out = dir.path().join("cluster");
        split_interop(dir.path(), 0..2, 3, &https_operators(&NODES, &ports), &out);
        let client = tls_client(&pki);
        Self {
            dir,
            pki,
            ports,
            metrics_ports,
            cluster_json: out.join("cluster.json"),
            client,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Node `i` with cluster history sync (2 peers, every 2 s) and `--metrics-listen`.
    fn start_node(&self, i: usize, tag: &str) -> Proc {
        let mut args = tls_signer_args(
            &self.pki,
            NODES[i],
            self.ports[i],
            &self.path(&format!("data/{}", NODES[i])),
            &self.path("cluster").join(NODES[i]),
        );
        args.extend(peer_sync_args(
            &self.pki,
            NODES[i],
            &self.cluster_json,
            &self.path("peers.txt"),
        ));
        args.extend([
            "--sync-min-peers".into(),
            "2".into(),
            "--sync-interval-secs".into(),
            "2".into(),
            "--no-sync-watermark-from-genesis".into(),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", self.metrics_ports[i]),
            // One combiner: run as a single-client cluster does (the refused double vote
            // below is then the slashing rule's, reason double_vote, not agreement's).
            "--agreement".into(),
            "off".into(),
        ]);
        Proc::start(
            NODES[i],
            &args,
            &self.path(&format!("{}-{tag}.log", NODES[i])),
        )
    }

    async fn scrape(&self, port: u16) -> Option<String> {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        r.text().await.ok()
    }

    /// Waits until node `i`'s metrics report it ready (it merged history from 2 peers).
    async fn wait_ready(&self, i: usize, node: &mut Proc) -> String {
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = node.child.try_wait() {
                panic!("{} exited ({s}):\n{}", NODES[i], node.log_text());
            }
            if let Some(text) = self.scrape(self.metrics_ports[i]).await {
                if sample(&text, "dvsigner_ready") == Some(1.0) {
                    return text;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} never ready:\n{}",
                NODES[i],
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Scrapes `port` until `pred` holds (bounded), returning that scrape.
    async fn wait_metrics(&self, port: u16, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.scrape(port).await.unwrap_or_default();
            if pred(&text) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "never {what}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the combiner's /healthcheck reports at least `up` nodes UP.
    async fn wait_combiner_sees(&self, cport: u16, up: usize, combiner: &mut Proc) {
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = combiner.child.try_wait() {
                panic!("combiner exited ({s}):\n{}", combiner.log_text());
            }
            if let Ok(r) = self
                .client
                .get(format!("https://127.0.0.1:{cport}/healthcheck"))
                .send()
                .await
            {
                if let Ok(v) = r.json::<Value>().await {
                    let n = v["checks"][1]["checks"]
                        .as_array()
                        .map_or(0, |a| a.iter().filter(|c| c["status"] == "UP").count());
                    if n >= up {
                        return;
                    }
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "combiner never saw {up} nodes up:\n{}",
                combiner.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn sign(&self, cport: u16, pubkey: &str, body: &str) -> (u16, String) {
        let r = self
            .client
            .post(format!(
                "https://127.0.0.1:{cport}/api/v1/eth2/sign/{pubkey}"
            ))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("combiner reachable");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_use_only_metrics_a_live_cluster_exports() {
    let c = Cluster::new();
    let mut nodes: Vec<Proc> = (0..4).map(|i| c.start_node(i, "1")).collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        c.wait_ready(i, n).await;
    }
    let cport = free_port();
    let cmport = free_port();
    let mut args = combiner_args(&c.pki, cport, &c.cluster_json);
    args.extend([
        "--deadline-ms".into(),
        "1500".into(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{cmport}"),
    ]);
    let mut combiner = Proc::start("combiner", &args, &c.path("combiner.log"));
    common::process::wait_ready(
        &c.client,
        &format!("https://127.0.0.1:{cport}/upcheck"),
        &mut combiner,
        Duration::from_secs(30),
    )
    .await;

    // Every sign type through the combiner, a second validator, and a refused double vote.
    let cases = common::oracle::cases_in_signable_order();
    let mut types = BTreeSet::new();
    for case in &cases {
        let body = serde_json::to_string(&case["request"]).expect("body");
        let (status, text) = c.sign(cport, &group_pk(0), &body).await;
        assert_eq!(
            status,
            200,
            "{}: {text}\n{}",
            case["name"],
            combiner.log_text()
        );
        types.insert(case["request"]["type"].as_str().expect("type").to_owned());
    }
    assert!(types.len() >= 10, "{types:?}");
    let first = att(408_000);
    let (s, text) = c.sign(cport, &group_pk(1), &first).await;
    assert_eq!(s, 200, "{text}");
    let double = first.replace(&"ab".repeat(32), &"cd".repeat(32));
    let (s, text) = c.sign(cport, &group_pk(1), &double).await;
    assert_eq!(s, 412, "{text}");

    let node_text = c.scrape(c.metrics_ports[0]).await.expect("node-a metrics");
    let combiner_text = c.scrape(cmport).await.expect("combiner metrics");
    // The labelled series the dashboards break down by exist after that traffic.
    assert_eq!(
        sample(
            &node_text,
            r#"dvsigner_slashing_refusals_total{reason="double_vote"}"#
        ),
        Some(1.0),
        "{node_text}"
    );
    assert!(
        node_text.contains(r#"dvsigner_sync_peer_lag_seconds{peer="node-b"}"#),
        "{node_text}"
    );
    // The combiner answers 412 once two nodes refused; a third refusal may still be in flight.
    let refused: f64 = NODES
        .iter()
        .filter_map(|n| {
            sample(
                &combiner_text,
                &format!("dvsigner_combiner_partials_total{{node=\"{n}\",result=\"refused\"}}"),
            )
        })
        .sum();
    assert!(refused >= 2.0, "{combiner_text}");

    let mut known = exposed(&node_text);
    for (name, kind) in exposed(&combiner_text) {
        if let Some(other) = known.insert(name.clone(), kind.clone()) {
            assert_eq!(
                other, kind,
                "{name} has different types on node and combiner"
            );
        }
    }
    for s in SYNTHETIC {
        known.insert(s.to_owned(), "gauge".to_owned());
    }
    // The per-peer sync totals only go up: counters, exported with `_total`.
    for name in [
        "dvsigner_sync_peer_failures_total",
        "dvsigner_sync_peer_notices_received_total",
        "dvsigner_sync_peer_records_merged_total",
        "dvsigner_sign_requests_total",
        "dvsigner_slashing_refusals_total",
        "dvsigner_combiner_partials_total",
    ] {
        assert_eq!(
            known.get(name).map(String::as_str),
            Some("counter"),
            "{name}"
        );
    }

    let mut exprs = alert_exprs();
    for (file, d) in dashboards() {
        exprs.extend(dashboard_exprs(&file, &d));
    }
    assert!(exprs.len() > 30, "only {} expressions found", exprs.len());
    let mut missing = Vec::new();
    let mut not_counters = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no metric in {expr:?}");
        for name in names {
            if !known.contains_key(&name) {
                missing.push(format!("{place}: {name}"));
            }
            used.insert(name);
        }
        for name in rate_arguments(expr) {
            let kind = known.get(&name).map(String::as_str);
            if !matches!(kind, Some("counter" | "histogram")) {
                not_counters.push(format!("{place}: rate/increase of {name} ({kind:?})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics used but not exported by a node or the combiner:\n{}",
        missing.join("\n")
    );
    assert!(
        not_counters.is_empty(),
        "rate/increase over series that are not counters:\n{}",
        not_counters.join("\n")
    );
    // The dashboards and alerts must cover these series (and the test saw them all).
    for name in [
        "up",
        "dvsigner_ready",
        "dvsigner_keys_loaded",
        "dvsigner_slashing_check_duration_seconds_bucket",
        "dvsigner_sign_duration_seconds_bucket",
        "dvsigner_combiner_partial_duration_seconds_bucket",
        "dvsigner_combiner_partials_total",
        "dvsigner_combiner_node_failing",
        "dvsigner_combiner_validators_below_threshold",
        "dvsigner_sync_peer_lag_seconds",
        "dvsigner_sync_peer_failures_total",
        "dvsigner_slashing_refusals_total",
    ] {
        assert!(used.contains(name), "{name} is on no dashboard or alert");
    }

    // The combiner's view of failing nodes: nobody failing yet.
    let failing = |text: &str, node: &str| {
        sample(
            text,
            &format!("dvsigner_combiner_node_failing{{node=\"{node}\"}}"),
        )
    };
    let below = |text: &str| sample(text, "dvsigner_combiner_validators_below_threshold");
    for n in NODES {
        assert_eq!(failing(&combiner_text, n), Some(0.0), "{combiner_text}");
    }
    assert_eq!(below(&combiner_text), Some(0.0));

    // node-d down: it fails, three nodes still reach the threshold of both validators. (A
    // node's answer can land just after the combiner answered: poll, bounded.)
    nodes[3].kill9();
    let (s, text) = c.sign(cport, &group_pk(0), &att(408_001)).await;
    assert_eq!(s, 200, "{text}");
    let m = c
        .wait_metrics(cmport, "node-d failing", |m| {
            failing(m, "node-d") == Some(1.0)
        })
        .await;
    assert_eq!(failing(&m, "node-a"), Some(0.0), "{m}");
    assert_eq!(below(&m), Some(0.0), "{m}");

    // node-c down too: both validators (shares on all four nodes) are below 3 usable nodes.
    nodes[2].kill9();
    let (s, text) = c.sign(cport, &group_pk(0), &att(408_002)).await;
    assert_eq!(s, 503, "{text}");
    let m = c
        .wait_metrics(cmport, "node-c failing", |m| {
            failing(m, "node-c") == Some(1.0)
        })
        .await;
    assert_eq!(failing(&m, "node-d"), Some(1.0), "{m}");
    assert_eq!(below(&m), Some(2.0), "{m}");

    // node-c back: its next answer clears it, and the validators are above threshold again.
    nodes[2] = c.start_node(2, "2");
    c.wait_ready(2, &mut nodes[2]).await;
    // node-a and node-b reached one peer only while node-c and node-d were down, so they
    // refused blocks and attestations until they pulled again (dvsigner_ready 0 meanwhile).
    for i in [0, 1] {
        c.wait_ready(i, &mut nodes[i]).await;
    }
    c.wait_combiner_sees(cport, 3, &mut combiner).await;
    let (s, text) = c.sign(cport, &group_pk(0), &att(408_003)).await;
    assert_eq!(s, 200, "{text}\n{}", combiner.log_text());
    let m = c
        .wait_metrics(cmport, "node-c recovered", |m| {
            failing(m, "node-c") == Some(0.0)
        })
        .await;
    assert_eq!(failing(&m, "node-d"), Some(1.0), "{m}");
    assert_eq!(below(&m), Some(0.0), "{m}");
}
