//! `dvsigner cluster status` and `dvsigner cluster verify --online` against a real 3-of-4
//! cluster of `dvsigner signer` processes over mutual TLS (and a combiner): all up is exit 0 with
//! four ready nodes; a node on another `--network` is flagged (exit 4, and `verify --online`
//! fails); a node missing a share is reported; two nodes killed puts every validator below
//! threshold (exit 3) naming why.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::cluster::{
    cluster_pki, combiner_args, group_pk, https_operators, split_interop, tls_signer_args, NODES,
};
use common::process::{command, free_port, Proc};
use dvsigner::tls::DevPki;
use serde_json::Value;

struct Cluster {
    dir: tempfile::TempDir,
    pki: DevPki,
    ports: Vec<u16>,
    nodes: Vec<Option<Proc>>,
    starts: usize,
}

impl Cluster {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cluster_json(&self) -> PathBuf {
        self.path("split/cluster.json")
    }

    /// (Re)starts node `i` with its share directory `share_dir` and extra arguments.
    fn start(&mut self, i: usize, share_dir: &Path, extra: &[&str]) {
        if let Some(mut old) = self.nodes[i].take() {
            old.kill9();
        }
        let mut args = tls_signer_args(
            &self.pki,
            NODES[i],
            self.ports[i],
            &self.path(&format!("data/{}", NODES[i])),
            share_dir,
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        self.starts += 1;
        let log = self.path(&format!("{}-{}.log", NODES[i], self.starts));
        self.nodes[i] = Some(Proc::start(NODES[i], &args, &log));
    }

    fn access_args(&self) -> Vec<String> {
        let client = self
            .pki
            .identity("combiner-client")
            .expect("client identity");
        vec![
            "--node-ca".into(),
            self.pki.ca_cert.display().to_string(),
            "--client-cert".into(),
            client.cert.display().to_string(),
            "--client-key".into(),
            client.key.display().to_string(),
            "--timeout-ms".into(),
            "3000".into(),
        ]
    }

    fn run(&self, args: Vec<String>) -> Output {
        command().args(&args).output().expect("run dvsigner")
    }

    /// `dvsigner cluster status [--json]`: exit code, stdout, stderr.
    fn status(&self, json: bool) -> (i32, String, String) {
        let mut args = vec![
            "cluster".to_owned(),
            "status".into(),
            "--cluster".into(),
            self.cluster_json().display().to_string(),
        ];
        args.extend(self.access_args());
        if json {
            args.push("--json".into());
        }
        let out = self.run(args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn status_json(&self) -> (i32, Value) {
        let (code, out, err) = self.status(true);
        let v = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{out}\n{err}"));
        (code, v)
    }

    /// Polls `status --json` (bounded) until `want` holds; returns the last answer.
    fn wait_status(&self, what: &str, want: impl Fn(&Value) -> bool) -> (i32, Value) {
        let start = Instant::now();
        loop {
            let (code, v) = self.status_json();
            if want(&v) {
                return (code, v);
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{what} not reached; last status:\n{v:#}\nlogs:\n{}",
                self.nodes
                    .iter()
                    .flatten()
                    .map(Proc::log_text)
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn ready_count(v: &Value) -> usize {
    v["nodes"]
        .as_array()
        .map(|a| a.iter().filter(|n| n["ready"] == true).count())
        .unwrap_or(0)
}

fn node<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["operator"] == name))
        .unwrap_or_else(|| panic!("no node {name} in {v:#}"))
}

#[test]
fn cluster_status_reports_readiness_keys_networks_and_threshold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = cluster_pki(&dir.path().join("tls"), &NODES, false);
    // Two whole validator keys (interop 0 and 1), split 3-of-4.
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let split = dir.path().join("split");
    split_interop(
        dir.path(),
        0..2,
        3,
        &https_operators(&NODES, &ports),
        &split,
    );
    let mut c = Cluster {
        dir,
        pki,
        ports,
        nodes: vec![None, None, None, None],
        starts: 0,
    };
    for (i, name) in NODES.iter().enumerate() {
        c.start(i, &split.join(name), &[]);
    }

    // All up: exit 0, four ready nodes holding exactly their shares, both validators signable.
    let (code, v) = c.wait_status("four ready nodes", |v| ready_count(v) == 4);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["below_threshold"], 0);
    assert_eq!(v["network_agreement"], true);
    assert_eq!(v["network"]["name"], "mainnet");
    assert_eq!(v["network"]["genesis_fork_version"], "0x00000000");
    for name in NODES {
        let n = node(&v, name);
        assert_eq!(n["reachable"], true, "{n:#}");
        assert_eq!(n["health"], "UP", "{n:#}");
        assert_eq!(n["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(n["role"], "signer");
        assert_eq!(n["keys_held"], 2, "{n:#}");
        assert_eq!(n["shares_assigned"], 2);
        assert_eq!(n["missing_shares"], serde_json::json!([]));
        assert_eq!(n["extra_keys"], serde_json::json!([]));
        assert_eq!(n["network_differs"], false);
        assert!(n["error"].is_null(), "{n:#}");
    }
    let validators = v["validators"].as_array().expect("validators");
    assert_eq!(validators.len(), 2);
    for val in validators {
        assert_eq!(val["can_sign"], true);
        assert_eq!(val["threshold"], 3);
        assert_eq!(val["signing_nodes"].as_array().map(Vec::len), Some(4));
    }
    let (code, table, _) = c.status(false);
    assert_eq!(code, 0, "{table}");
    println!("--- all up ---\n{table}");
    for (name, port) in NODES.iter().zip(&c.ports) {
        let row = table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"));
        assert!(row.contains(&format!("https://127.0.0.1:{port}")), "{row}");
        assert!(row.contains(" ready "), "{row}");
    }
    assert!(table.contains("2 of 2 validator(s) have at least t nodes that can sign"));

    // `cluster verify --online` with the combiner: everyone on mainnet.
    let cport = free_port();
    let mut combiner = Proc::start(
        "combiner",
        &combiner_args(&c.pki, cport, &c.cluster_json()),
        &c.path("combiner.log"),
    );
    let verify_args = |c: &Cluster| {
        let mut a = vec![
            "cluster".to_owned(),
            "verify".into(),
            c.cluster_json().display().to_string(),
            "--online".into(),
            "--combiner".into(),
            format!("https://127.0.0.1:{cport}"),
        ];
        a.extend(c.access_args());
        a
    };
    let start = Instant::now();
    let verify = loop {
        let out = c.run(verify_args(&c));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains("combiner https") && !text.contains("no answer") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "verify --online failed: {text}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            combiner.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(verify.contains("network agreement OK"), "{verify}");
    assert!(
        verify.contains(&format!(
            "combiner https://127.0.0.1:{cport}: network mainnet"
        )),
        "{verify}"
    );

    // node-d on another network: flagged by status (exit 4, validators still fine) and by
    // verify --online (exit 4).
    c.start(3, &split.join("node-d"), &["--network", "holesky"]);
    let (code, v) = c.wait_status("node-d on holesky", |v| {
        node(v, "node-d")["network"]["name"] == "holesky" && ready_count(v) == 4
    });
    assert_eq!(code, 4, "{v:#}");
    assert_eq!(v["network_agreement"], false);
    assert_eq!(v["below_threshold"], 0);
    assert_eq!(node(&v, "node-d")["network_differs"], true);
    assert_eq!(
        node(&v, "node-d")["network"]["genesis_fork_version"],
        "0x01017000"
    );
    for name in &NODES[..3] {
        assert_eq!(node(&v, name)["network_differs"], false);
    }
    let (code, table, _) = c.status(false);
    assert_eq!(code, 4);
    println!("--- node-d on holesky ---\n{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("node-d"))
        .expect("row");
    assert!(row.contains("holesky 0x01017000 DIFFERS"), "{row}");
    assert!(
        table.contains("NETWORK DISAGREEMENT")
            && table.contains("differing: node-d: holesky (genesis fork 0x01017000")
    );
    let out = c.run(verify_args(&c));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains("node node-d") && text.contains("<- DIFFERS"),
        "{text}"
    );
    combiner.kill9();

    // node-d back on mainnet but without its share of validator 1: reported missing; the
    // validator still has three nodes.
    let partial = c.path("node-d-partial");
    for sub in ["keystores", "passwords"] {
        std::fs::create_dir_all(partial.join(sub)).expect("mkdir");
    }
    let cluster: Value =
        serde_json::from_str(&std::fs::read_to_string(c.cluster_json()).expect("read"))
            .expect("json");
    let share_of = |group: &str| -> String {
        let v = cluster["validators"]
            .as_array()
            .and_then(|a| a.iter().find(|v| v["group_pubkey"] == group))
            .expect("validator");
        v["shares"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["operator"] == "node-d"))
            .and_then(|s| s["pubkey"].as_str())
            .expect("share")
            .to_owned()
    };
    let kept = share_of(&group_pk(0));
    for (sub, ext) in [("keystores", "json"), ("passwords", "txt")] {
        std::fs::copy(
            split.join("node-d").join(sub).join(format!("{kept}.{ext}")),
            partial.join(sub).join(format!("{kept}.{ext}")),
        )
        .expect("copy share");
    }
    c.start(3, &partial, &[]);
    let (code, v) = c.wait_status("node-d with one share", |v| {
        node(v, "node-d")["keys_held"] == 1 && ready_count(v) == 4
    });
    assert_eq!(code, 0, "{v:#}");
    let d = node(&v, "node-d");
    assert_eq!(
        d["missing_shares"],
        serde_json::json!([group_pk(1)]),
        "{d:#}"
    );
    assert_eq!(d["network_differs"], false);
    let v1 = v["validators"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["group_pubkey"] == group_pk(1)))
        .expect("validator 1");
    assert_eq!(v1["signing_nodes"].as_array().map(Vec::len), Some(3));
    assert_eq!(v1["unavailable"]["node-d"], "does not hold share 4");
    let (_, table, _) = c.status(false);
    println!("--- node-d missing a share ---\n{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("node-d"))
        .expect("row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    // OPERATOR URL STATE VERSION NETWORK(2 words) KEYS SHARES MISSING EXTRA SYNC
    assert_eq!(&cells[6..9], ["1", "2", "1"], "{row}");

    // node-c and node-d killed: every validator below threshold (exit 3), naming why.
    for i in [2, 3] {
        c.nodes[i].as_mut().expect("node").kill9();
    }
    let (code, v) = c.status_json();
    assert_eq!(code, 3, "{v:#}");
    assert_eq!(v["below_threshold"], 2);
    for name in ["node-c", "node-d"] {
        let n = node(&v, name);
        assert_eq!(n["reachable"], false);
        let error = n["error"].as_str().expect("error in words");
        assert!(error.contains("connect"), "{error}");
    }
    for val in v["validators"].as_array().expect("validators") {
        assert_eq!(val["can_sign"], false, "{val:#}");
        assert_eq!(
            val["signing_nodes"],
            serde_json::json!(["node-a", "node-b"])
        );
        assert_eq!(val["unavailable"]["node-c"], "unreachable");
    }
    let (code, table, stderr) = c.status(false);
    assert_eq!(code, 3);
    println!("--- node-c and node-d killed ---\n{table}");
    assert!(
        table.contains("BELOW THRESHOLD (node-c: unreachable, node-d: unreachable)"),
        "{table}"
    );
    assert!(table.contains("0 of 2 validator(s)"), "{table}");
    assert!(
        stderr.contains("2 validator(s) below threshold"),
        "{stderr}"
    );
}
