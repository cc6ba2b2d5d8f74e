//! Partition and heal, with real `dvsigner signer` processes (3-of-4 over mutual TLS, cluster
//! sync on) and a combiner, all inside a private network namespace: node-d is cut off from its
//! peers and the combiner by nftables rules (the test itself still reaches it) while the
//! combiner signs attestations and blocks for three validators with the other three nodes.
//!
//! Asserts: d's `/healthcheck` goes DOWN (check `cluster-sync`) within the README's bound after
//! the cut, and d refuses blocks and attestations sent to it directly (503, lost contact) while
//! it still signs a RANDAO reveal; after the heal, conflicting probes for everything the cluster
//! signed meanwhile, sent to d directly and repeatedly from the first instant, are all refused
//! (412, or 503 while catching up), never signed; d is ready again within the README's bound
//! (printed, with the node's own figure); the other nodes re-sent their undelivered notices
//! (`notices_resent`) and their failed attempts stayed bounded by the back-off.
//!
//! The partition lasts `DVSIGNER_TEST_PARTITION_SECS` seconds (default 120). Needs root,
//! iproute2 (`ip netns`) and nftables; fails with a clear message without them.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::cluster::{combiner_args, peer_sync_args, tls_signer_args};
use crate::common::netns::Netns;
use crate::common::process::{free_port, run_ok, Proc};
use dvsigner::cluster::ClusterDefinition;
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::{KdfParams, Keystore, Password};
use dvsigner::tls::DevPki;
use serde_json::{json, Value};

const NODES: [&str; 4] = ["node-a", "node-b", "node-c", "node-d"];
const VALIDATORS: u64 = 3;
/// Primary group of node-d's process (nft matches its sockets by it).
const GID_D: u32 = 47_104;
/// Primary group of the other nodes and the combiner.
const GID_CLUSTER: u32 = 47_105;
/// `--sync-contact-grace-ms` of the nodes.
const GRACE: Duration = Duration::from_millis(3000);
/// README: `/healthcheck` is DOWN at most the grace plus 1 s after contact is lost. The test
/// polls every 100 ms on a shared machine: 1 s of slack on top.
const DOWN_BOUND: Duration = Duration::from_millis(3000 + 1000 + 1000);
/// README: ready again within about 5 s after the network heals. Slack for a shared machine.
const READY_BOUND: Duration = Duration::from_secs(15);

struct Setup {
    dir: tempfile::TempDir,
    pki: DevPki,
    ports: Vec<u16>,
    cluster_json: PathBuf,
    definition: ClusterDefinition,
    client: reqwest::Client,
    ns: Netns,
}

fn client_with(pki: &DevPki, identity: &str) -> reqwest::Client {
    let id = pki.identity(identity).expect("identity");
    let mut pem = std::fs::read(&id.cert).expect("cert");
    pem.extend(std::fs::read(&id.key).expect("key"));
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&pki.ca_cert).expect("ca")).expect("pem"),
        )
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn setup(ns: Netns) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let clients: Vec<String> = NODES
        .iter()
        .map(|n| format!("{n}-client"))
        .chain(["combiner-client".to_owned()])
        .collect();
    let client_refs: Vec<&str> = clients.iter().map(String::as_str).collect();
    let mut servers = NODES.to_vec();
    servers.push("combiner");
    let pki = DevPki::generate(&dir.path().join("tls"), &servers, &client_refs).expect("pki");
    let allowed: String = NODES
        .iter()
        .map(|n| {
            let fp = pki
                .identity(&format!("{n}-client"))
                .expect("id")
                .fingerprint;
            format!("{n} {fp}\n")
        })
        .collect();
    std::fs::write(dir.path().join("peers.txt"), allowed).expect("write");

    let whole = dir.path().join("whole");
    std::fs::create_dir_all(&whole).expect("mkdir");
    std::fs::write(whole.join("pw.txt"), "whole-key-password").expect("pw");
    for v in 0..VALIDATORS {
        let ks = Keystore::encrypt(
            &interop_secret_key(v),
            &Password::new("whole-key-password".into()),
            KdfParams::insecure_fast(),
            "",
            "",
        )
        .expect("encrypt");
        std::fs::write(whole.join(format!("v{v}.json")), ks.to_json()).expect("write");
    }
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let operators = NODES
        .iter()
        .zip(&ports)
        .map(|(n, p)| format!("{n}=https://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let out = dir.path().join("cluster");
    run_ok(&[
        "split".into(),
        "--keystore".into(),
        whole.display().to_string(),
        "--password-file".into(),
        whole.join("pw.txt").display().to_string(),
        "--threshold".into(),
        "3".into(),
        "--shares".into(),
        "4".into(),
        "--operators".into(),
        operators,
        "--out".into(),
        out.display().to_string(),
        "--kdf".into(),
        "insecure-fast".into(),
    ]);
    let cluster_json = out.join("cluster.json");
    let definition = ClusterDefinition::load(&cluster_json).expect("cluster.json");
    let client = client_with(&pki, "combiner-client");
    Setup {
        dir,
        pki,
        ports,
        cluster_json,
        definition,
        client,
        ns,
    }
}

impl Setup {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `dvsigner ARGS` inside the namespace with primary group `gid`, logging to `log`.
    fn spawn(&self, name: &str, args: &[String], gid: u32, log: &Path) -> Proc {
        self.ns.spawn_dvsigner(name, args, log, |cmd| {
            cmd.gid(gid);
        })
    }

    fn share_pk(&self, node: usize, validator: u64) -> String {
        let group = interop_secret_key(validator).public_key().bytes();
        let (_, _, pk) = self
            .definition
            .shares_of(NODES[node])
            .find(|(g, _, _)| g.bytes() == group)
            .expect("share");
        pk.bytes().to_hex()
    }

    fn url(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.ports[i])
    }

    fn start_node(&self, i: usize) -> Proc {
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
            "3600".into(),
            "--sync-contact-grace-ms".into(),
            GRACE.as_millis().to_string(),
            "--no-sync-watermark-from-genesis".into(),
            // One client, probes signed at single nodes: what is tested is history sync and
            // the readiness gate; agreement (tests/it/agreement.rs, wan.rs) is off as a
            // single-client cluster runs it.
            "--agreement".into(),
            "off".into(),
        ]);
        let gid = if i == 3 { GID_D } else { GID_CLUSTER };
        self.spawn(
            NODES[i],
            &args,
            gid,
            &self.path(&format!("{}.log", NODES[i])),
        )
    }

    async fn post(&self, base: &str, pubkey: &str, body: &str) -> (u16, String) {
        crate::common::http::sign_json(&self.client, base, pubkey, body).await
    }

    async fn health(&self, i: usize) -> Option<(u16, Value)> {
        let r = self
            .client
            .get(format!("{}/healthcheck", self.url(i)))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.ok()?))
    }

    async fn wait_health(
        &self,
        i: usize,
        node: &mut Proc,
        what: &str,
        bound: Duration,
        pred: impl Fn(u16, &Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = node.child.try_wait() {
                panic!("{} exited ({s}):\n{}", NODES[i], node.log_text());
            }
            if let Some((status, v)) = self.health(i).await {
                if pred(status, &v) {
                    return v;
                }
            }
            assert!(
                start.elapsed() < bound,
                "{} never {what}:\n{}",
                NODES[i],
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn att(target: u64) -> String {
    crate::common::requests::attestation_body(target)
}

/// Same target, another beacon block root: a double vote against `att(target)`.
fn conflicting_att(target: u64) -> String {
    att(target).replace(&"ab".repeat(32), &"cd".repeat(32))
}

/// A BLOCK_V2 (Electra header) request at `slot` with body root `byte` repeated.
fn block(slot: u64, byte: &str) -> String {
    format!(
        concat!(
            r#"{{"type":"BLOCK_V2","fork_info":{{"fork":{{"previous_version":"0x04000000","#,
            r#""current_version":"0x05000000","epoch":"364032"}},"genesis_validators_root":"#,
            r#""0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"}},"#,
            r#""beacon_block":{{"version":"ELECTRA","block_header":{{"slot":"{slot}","#,
            r#""proposer_index":"7","parent_root":"0x{z}","state_root":"0x{z}","body_root":"0x{b}"}}}}}}"#
        ),
        slot = slot,
        z = "00".repeat(32),
        b = byte.repeat(32)
    )
}

fn randao(epoch: u64) -> String {
    json!({
        "type": "RANDAO_REVEAL",
        "fork_info": {
            "fork": {"previous_version": "0x04000000", "current_version": "0x05000000", "epoch": "364032"},
            "genesis_validators_root": "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95",
        },
        "randao_reveal": {"epoch": epoch.to_string()},
    })
    .to_string()
}

fn sync_check(v: &Value) -> Value {
    v["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == "cluster-sync"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn partition_secs() -> u64 {
    std::env::var("DVSIGNER_TEST_PARTITION_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120)
}

#[test]
fn partitioned_node_catches_up_before_it_signs_again() {
    let ns = Netns::create();
    let name = ns.name.clone();
    // The whole scenario runs on one thread inside the namespace (its sockets live there).
    let scenario = std::thread::spawn(move || {
        ns.enter_current_thread();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let s = setup(ns);
        rt.block_on(scenario(&s));
        // Processes were dropped (killed) inside `scenario`; the namespace goes with `s`.
    });
    let res = scenario.join();
    if let Err(e) = res {
        std::panic::resume_unwind(e);
    }
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&name),
        "namespace {name} left behind"
    );
}

async fn scenario(s: &Setup) {
    let secs = partition_secs();
    let mut nodes: Vec<Proc> = (0..4).map(|i| s.start_node(i)).collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        s.wait_health(i, n, "synced", Duration::from_secs(60), |st, _| st == 200)
            .await;
    }
    let cport = free_port();
    let mut cargs = combiner_args(&s.pki, cport, &s.cluster_json);
    cargs.extend(["--deadline-ms".into(), "1500".into()]);
    let mut combiner = s.spawn("combiner", &cargs, GID_CLUSTER, &s.path("combiner.log"));
    let curl = format!("https://127.0.0.1:{cport}");
    crate::common::process::wait_ready(
        &s.client,
        &format!("{curl}/upcheck"),
        &mut combiner,
        Duration::from_secs(30),
    )
    .await;
    let groups: Vec<String> = (0..VALIDATORS)
        .map(|v| interop_secret_key(v).public_key().bytes().to_hex())
        .collect();
    for g in &groups {
        let (st, text) = s.post(&curl, g, &att(100)).await;
        assert_eq!(st, 200, "{text}\n{}", combiner.log_text());
    }

    // Cut node-d off: its sockets (group GID_D) cannot reach the others' ports, theirs
    // (GID_CLUSTER) cannot reach its port. The test (group 0) still reaches everyone.
    let others = format!(
        "{{ {}, {}, {}, {cport} }}",
        s.ports[0], s.ports[1], s.ports[2]
    );
    let rules = format!(
        "add table inet dvph\n\
         add chain inet dvph out {{ type filter hook output priority 0; }}\n\
         add rule inet dvph out meta skgid {GID_CLUSTER} tcp dport {} drop\n\
         add rule inet dvph out meta skgid {GID_D} tcp dport {others} drop\n",
        s.ports[3]
    );
    s.ns.nft(&rules).expect("partition rules");
    let cut = Instant::now();
    println!("partition: node-d cut off for {secs} s");

    let mut target = 100;
    let mut slot = 5_000;
    let mut signed_targets = Vec::new();
    let mut signed_slots = Vec::new();
    let mut down_after = None;
    while cut.elapsed() < Duration::from_secs(secs) {
        target += 1;
        for g in &groups {
            let (st, text) = s.post(&curl, g, &att(target)).await;
            assert_eq!(st, 200, "target {target}: {text}\n{}", combiner.log_text());
        }
        signed_targets.push(target);
        slot += 1;
        let (st, text) = s.post(&curl, &groups[0], &block(slot, "11")).await;
        assert_eq!(st, 200, "slot {slot}: {text}");
        signed_slots.push(slot);
        if down_after.is_none() {
            if let Some((st, v)) = s.health(3).await {
                let check = sync_check(&v);
                if st == 503 && check["status"] == "DOWN" {
                    let after = cut.elapsed();
                    println!(
                        "node-d /healthcheck DOWN {} ms after the cut",
                        after.as_millis()
                    );
                    assert!(after <= DOWN_BOUND, "DOWN only after {after:?}: {v}");
                    let reason = check["data"]["reason"].as_str().unwrap_or("");
                    assert!(reason.contains("lost contact"), "{v}");
                    assert_eq!(check["data"]["contact"]["lost"], true, "{v}");
                    down_after = Some(after);
                    // Slashable duties refused directly on node-d, others still signed.
                    let pk = s.share_pk(3, 0);
                    let (st, text) = s.post(&s.url(3), &pk, &att(target + 1000)).await;
                    assert_eq!(st, 503, "{text}");
                    assert!(text.contains("lost contact"), "{text}");
                    let (st, text) = s.post(&s.url(3), &pk, &block(slot + 1000, "22")).await;
                    assert_eq!(st, 503, "{text}");
                    let (st, text) = s.post(&s.url(3), &pk, &randao(target)).await;
                    assert_eq!(st, 200, "{text}");
                } else {
                    assert!(
                        cut.elapsed() <= DOWN_BOUND,
                        "node-d still not DOWN {:?} after the cut: {st} {v}",
                        cut.elapsed()
                    );
                }
            }
        }
        // Node-a reaches node-b and node-c: it stays UP throughout.
        let (st, v) = s.health(0).await.expect("node-a health");
        assert_eq!(st, 200, "node-a went DOWN: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(down_after.is_some(), "node-d never reported DOWN");
    println!(
        "partition over: the cluster signed {} attestation targets x {VALIDATORS} validators and {} blocks without node-d",
        signed_targets.len(),
        signed_slots.len()
    );

    // Heal; from the first instant, conflicting probes for everything signed meanwhile.
    s.ns.nft("delete table inet dvph").expect("heal");
    let healed = Instant::now();
    let probes: Vec<(u64, String)> = (0..VALIDATORS)
        .flat_map(|v| signed_targets.iter().map(move |&t| (v, conflicting_att(t))))
        .chain(signed_slots.iter().map(|&sl| (0, block(sl, "33"))))
        .collect();
    let pks: Vec<String> = (0..VALIDATORS).map(|v| s.share_pk(3, v)).collect();
    let mut rounds = 0;
    let mut refused_412 = 0;
    let mut refused_503 = 0;
    let ready_after = loop {
        let ready = matches!(s.health(3).await, Some((200, _)));
        let ready_at = healed.elapsed();
        rounds += 1;
        for (v, body) in &probes {
            let (st, text) = s.post(&s.url(3), &pks[*v as usize], body).await;
            match st {
                412 => refused_412 += 1,
                503 if !ready => {
                    assert!(
                        text.contains("cluster history sync"),
                        "503 for another reason: {text}"
                    );
                    refused_503 += 1;
                }
                _ => panic!(
                    "node-d answered {st} to a conflicting probe {:?} after the heal (ready: {ready}): {text}\n{}",
                    healed.elapsed(),
                    nodes[3].log_text()
                ),
            }
        }
        if ready {
            break ready_at;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(60),
            "node-d not ready 60 s after the heal:\n{}",
            nodes[3].log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_, vd) = s.health(3).await.expect("node-d health");
    let contact = &sync_check(&vd)["data"]["contact"];
    println!(
        "heal -> ready: {} ms seen by the test, {} ms reported by node-d (contact return -> caught up); {rounds} probe rounds after the heal: {refused_503} refused 503 (catching up), {refused_412} refused 412",
        ready_after.as_millis(),
        contact["last_recovery_ms"]
    );
    assert!(
        ready_after <= READY_BOUND,
        "ready only after {ready_after:?}"
    );
    assert_eq!(contact["lost"], false, "{vd}");
    assert_eq!(contact["losses"], 1, "{vd}");
    assert!(contact["last_recovery_ms"].is_u64(), "{vd}");
    // The last round ran with node-d ready: every probe refused by its slashing database.
    assert!(refused_412 >= probes.len(), "{refused_412}");

    // The others re-sent what they could not deliver, with back-off (no retry storm).
    for i in 0..3 {
        let v = s
            .wait_health(
                i,
                &mut nodes[i],
                "delivered its notices to node-d",
                Duration::from_secs(20),
                |_, v| sync_check(v)["data"]["peers"]["node-d"]["notice_pending"] == false,
            )
            .await;
        let d = &sync_check(&v)["data"]["peers"]["node-d"];
        let resent = d["notices_resent"].as_u64().unwrap_or(0);
        let failures = d["send_failures"].as_u64().unwrap_or(0);
        println!(
            "{} -> node-d: {resent} notices re-sent after the heal, {failures} unanswered attempts during the partition",
            NODES[i]
        );
        assert!(resent >= 1, "{v}");
        assert!(failures >= 1, "{v}");
        assert!(
            failures <= secs,
            "{failures} attempts in {secs} s: back-off not applied: {v}"
        );
    }
    // node-d merged the partition's records from its peers.
    let merged: u64 = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|p| {
            sync_check(&vd)["data"]["peers"][p]["records_merged"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert!(merged >= signed_targets.len() as u64, "{vd}");

    // Back in the cluster: node-d signs new duties again, through the combiner too.
    let (st, text) = s.post(&s.url(3), &pks[1], &att(target + 1)).await;
    assert_eq!(st, 200, "{text}");
    let (st, text) = s.post(&curl, &groups[1], &att(target + 1)).await;
    assert_eq!(st, 200, "{text}");
    drop(combiner);
    drop(nodes);
}

/// The contact gate of a 2-of-3 cluster, with the parameters a node derives from its
/// cluster.json (`contact_required`: t-1 = 1 peer; `default_min_peers`: max(t-1, n-t+1) = 2):
/// a node that still hears one of its two peers stays open; one that hears neither closes; when
/// one peer answers again it catches up from it, but reopens only once a full pull from the
/// second peer, started after contact returned, was merged too (with the second peer still
/// away it keeps refusing slashable duties, 503 "catching up").
#[test]
fn two_of_three_gate_reopens_only_after_both_peers_were_pulled() {
    use dvsigner::cluster::link::{ContactGate, Transition};
    use dvsigner::cluster::sync::{contact_required, default_min_peers};

    let dir = tempfile::tempdir().expect("tempdir");
    let whole = dir.path().join("whole");
    std::fs::create_dir_all(&whole).expect("mkdir");
    std::fs::write(whole.join("pw.txt"), "whole-key-password").expect("pw");
    let ks = Keystore::encrypt(
        &interop_secret_key(0),
        &Password::new("whole-key-password".into()),
        KdfParams::insecure_fast(),
        "",
        "",
    )
    .expect("encrypt");
    std::fs::write(whole.join("v0.json"), ks.to_json()).expect("write");
    let out = dir.path().join("cluster");
    run_ok(&[
        "split".into(),
        "--keystore".into(),
        whole.display().to_string(),
        "--password-file".into(),
        whole.join("pw.txt").display().to_string(),
        "--threshold".into(),
        "2".into(),
        "--shares".into(),
        "3".into(),
        "--operators".into(),
        "node-a=https://127.0.0.1:1,node-b=https://127.0.0.1:2,node-c=https://127.0.0.1:3".into(),
        "--out".into(),
        out.display().to_string(),
        "--kdf".into(),
        "insecure-fast".into(),
    ]);
    let definition = ClusterDefinition::load(&out.join("cluster.json")).expect("cluster.json");
    let required = contact_required(&definition);
    let min_peers = default_min_peers(&definition);
    assert_eq!((required, min_peers), (1, 2));

    // As ClusterSync builds it: required peers capped at the minimum of peers.
    let grace = Duration::from_secs(3);
    let mut gate = ContactGate::new(required.min(min_peers), grace);
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    assert_eq!(gate.evaluate(at(0), 2), Transition::None);
    // One peer away: the other one suffices.
    assert_eq!(gate.evaluate(at(100), 1), Transition::None);
    assert!(!gate.closed());
    // Both away: closed.
    assert_eq!(gate.evaluate(at(200), 0), Transition::Lost);
    assert!(gate.closed());
    // node-b answers again, node-c is still away: catching up, still closed after node-b's
    // full pull.
    assert_eq!(gate.evaluate(at(5000), 1), Transition::Returned);
    assert!(gate.catching_up());
    assert_eq!(gate.merged("node-b", at(5000), min_peers, at(5100)), None);
    assert!(gate.closed());
    assert!(gate
        .reason(at(5100), min_peers)
        .expect("closed")
        .contains("catching up"));
    // Long after, node-c is still away: the gate stays closed.
    assert_eq!(gate.evaluate(at(60_000), 1), Transition::None);
    assert!(gate.closed());
    // node-c answers and its full pull is merged: open again.
    assert_eq!(gate.evaluate(at(61_000), 2), Transition::None);
    assert_eq!(
        gate.merged("node-c", at(61_000), min_peers, at(61_200)),
        Some(Duration::from_millis(56_200))
    );
    assert!(!gate.closed());
}
