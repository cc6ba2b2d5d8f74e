//! `dvsigner reshare` end to end: a 3-of-4 cluster of two interop validators made by `dvsigner
//! split`, then real reshare processes on loopback over mutual TLS. The new shares verify
//! against the new cluster.json, combine to exactly the whole key's signature (interop keys are
//! public, BLS is deterministic), and do not combine with old shares; thresholds change both
//! ways; a dealer sending a wrong value or re-sharing something other than its old share is
//! named; a participant vanishing mid-ceremony makes everyone fail with nothing written.

use crate::common::cluster::{https_operators, split_interop};
use crate::common::process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dvsigner::bls::{PublicKeyBytes, SigningRoot};
use dvsigner::cluster::ClusterDefinition;
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::SecretKey;
use dvsigner::threshold::{combine, ShareIndex};
use process::{free_port, wait_all, Proc};

const OLD: [&str; 4] = ["a", "b", "c", "d"];
const ALL: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const NEW_PASSWORD: &str = "new share password";

struct Setup {
    dir: tempfile::TempDir,
    old_cluster: PathBuf,
    old: ClusterDefinition,
    ports: BTreeMap<&'static str, u16>,
    fingerprints: BTreeMap<&'static str, String>,
}

fn idx(i: u64) -> ShareIndex {
    ShareIndex::new(i).expect("non-zero")
}

/// Decrypts every keystore in `dir/keystores` with the passwords in `dir/passwords`.
fn load_shares(dir: &Path) -> Vec<SecretKey> {
    let report =
        dvsigner::keys::store::load_keystores_dir(&dir.join("keystores"), &dir.join("passwords"))
            .expect("keystores");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report.keys.into_iter().map(|k| k.secret).collect()
}

impl Setup {
    /// Two interop validators split 3-of-4 among a, b, c, d; TLS identities and ceremony
    /// ports for a..f.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = OLD.iter().map(|_| free_port()).collect();
        let out = dir.path().join("old");
        split_interop(dir.path(), 0..2, 3, &https_operators(&OLD, &ports), &out);
        let old_cluster = out.join("cluster.json");
        let old = ClusterDefinition::load(&old_cluster).expect("old cluster.json");
        std::fs::write(dir.path().join("new-pw.txt"), format!("{NEW_PASSWORD}\n")).expect("pw");
        let mut ports = BTreeMap::new();
        let mut fingerprints = BTreeMap::new();
        for name in ALL {
            let id =
                dvsigner::tls::generate_self_signed(&dir.path().join("tls"), name).expect("cert");
            ports.insert(name, free_port());
            fingerprints.insert(name, id.fingerprint.to_string());
        }
        Self {
            dir,
            old_cluster,
            old,
            ports,
            fingerprints,
        }
    }

    fn endpoint(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}", self.ports[name])
    }

    /// Writes a reshare definition; returns its path.
    fn definition(&self, tag: &str, dealers: &[&str], new: &[&str], threshold: u32) -> PathBuf {
        let operators: Vec<serde_json::Value> = new
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n,
                    "url": self.endpoint(n),
                    "node_url": format!("https://127.0.0.1:{}", 9000 + self.ports[n] % 1000),
                    "tls_fingerprint": self.fingerprints[n],
                })
            })
            .collect();
        let dealers: Vec<serde_json::Value> = dealers
            .iter()
            .map(|d| {
                if new.contains(d) {
                    serde_json::json!({ "name": d })
                } else {
                    serde_json::json!({
                        "name": d,
                        "url": self.endpoint(d),
                        "tls_fingerprint": self.fingerprints[d],
                    })
                }
            })
            .collect();
        let def = serde_json::json!({
            "version": 1,
            "name": format!("test-reshare-{tag}"),
            "old_cluster_hash": self.old.hash().to_string(),
            "dealers": dealers,
            "operators": operators,
            "threshold": threshold,
        });
        let path = self.dir.path().join(format!("reshare-{tag}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&def).expect("json")).expect("write");
        path
    }

    fn out(&self, tag: &str, name: &str) -> PathBuf {
        self.dir.path().join(format!("out-{tag}-{name}"))
    }

    fn old_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("old").join(name)
    }

    fn start(&self, tag: &str, definition: &Path, name: &str, fault: Option<&str>) -> Proc {
        let def: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(definition).expect("read"))
                .expect("json");
        let is = |list: &str| {
            def[list]
                .as_array()
                .expect("list")
                .iter()
                .any(|o| o["name"] == name)
        };
        let tls = self.dir.path().join("tls");
        let mut args: Vec<String> = vec![
            "reshare".into(),
            "--definition".into(),
            definition.display().to_string(),
            "--cluster".into(),
            self.old_cluster.display().to_string(),
            "--operator".into(),
            name.into(),
            "--tls-cert".into(),
            tls.join(format!("{name}.pem")).display().to_string(),
            "--tls-key".into(),
            tls.join(format!("{name}-key.pem")).display().to_string(),
            "--password-file".into(),
            self.dir.path().join("new-pw.txt").display().to_string(),
            "--kdf".into(),
            "insecure-fast".into(),
            "--round-timeout-secs".into(),
            "8".into(),
            "--request-timeout-secs".into(),
            "2".into(),
        ];
        if is("dealers") {
            let old = self.old_dir(name);
            args.extend([
                "--keystores".into(),
                old.join("keystores").display().to_string(),
                "--keystores-passwords".into(),
                old.join("passwords").display().to_string(),
            ]);
        }
        if is("operators") {
            args.extend(["--out".into(), self.out(tag, name).display().to_string()]);
        }
        if let Some(f) = fault {
            args.extend(["--test-fault".into(), f.into()]);
        }
        let log = self.dir.path().join(format!("{tag}-{name}.log"));
        Proc::start(name, &args, &log)
    }

    /// Starts every participant (`faults` by name) and waits, bounded, for every exit.
    fn run_all(
        &self,
        tag: &str,
        definition: &Path,
        names: &[&str],
        faults: &[(&str, &str)],
    ) -> BTreeMap<String, (Proc, bool)> {
        let procs: Vec<Proc> = names
            .iter()
            .map(|n| {
                let fault = faults.iter().find(|(f, _)| f == n).map(|(_, f)| *f);
                self.start(tag, definition, n, fault)
            })
            .collect();
        wait_all(procs, Duration::from_secs(90), "reshare")
            .into_iter()
            .map(|(p, ok)| (p.name.clone(), (p, ok)))
            .collect()
    }

    fn assert_all_ok(results: &BTreeMap<String, (Proc, bool)>) {
        for (name, (p, ok)) in results {
            assert!(ok, "{name} failed:\n{}", p.log_text());
        }
    }

    fn assert_all_failed(results: &BTreeMap<String, (Proc, bool)>) {
        for (name, (p, ok)) in results {
            assert!(!ok, "{name} succeeded:\n{}", p.log_text());
        }
    }

    fn assert_nothing_written(&self, tag: &str) {
        for name in ALL {
            let out = self.out(tag, name);
            assert!(!out.exists(), "{} exists", out.display());
            let staging = dvsigner::dkg::output::staging_dir(&out);
            assert!(!staging.exists(), "{} exists", staging.display());
        }
    }

    /// The new cluster.json, identical on every new operator, and each one's new shares
    /// (checked against it) by (validator, new index).
    fn new_results(
        &self,
        tag: &str,
        new: &[&str],
    ) -> (
        ClusterDefinition,
        BTreeMap<(PublicKeyBytes, u64), SecretKey>,
    ) {
        let texts: Vec<String> = new
            .iter()
            .map(|n| {
                std::fs::read_to_string(self.out(tag, n).join("cluster.json")).expect("cluster")
            })
            .collect();
        assert!(texts.iter().all(|t| *t == texts[0]), "cluster.json differs");
        let cluster = ClusterDefinition::from_json(&texts[0]).expect("valid cluster.json");
        let names: Vec<&str> = cluster
            .operators()
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(names, new);
        // Same validators, same group keys (the interop keys), in the same order.
        assert_eq!(cluster.validators().len(), 2);
        for (v, (new_v, old_v)) in cluster
            .validators()
            .iter()
            .zip(self.old.validators())
            .enumerate()
        {
            assert_eq!(new_v.group_pubkey, old_v.group_pubkey);
            assert_eq!(
                new_v.group_pubkey.bytes(),
                interop_secret_key(v as u64).public_key().bytes()
            );
        }
        let mut shares = BTreeMap::new();
        for (pos, name) in new.iter().enumerate() {
            let keys = load_shares(&self.out(tag, name));
            assert_eq!(keys.len(), 2, "{name}");
            for sk in keys {
                let (validator, share) = cluster
                    .share(&sk.public_key().bytes())
                    .expect("share listed in the new cluster.json");
                assert_eq!(share.operator, *name);
                assert_eq!(share.index, idx(pos as u64 + 1));
                assert!(validator
                    .commitments
                    .verify_share(share.index, sk.public_key()));
                shares.insert((validator.group_pubkey.bytes(), pos as u64 + 1), sk);
            }
        }
        (cluster, shares)
    }

    /// The old shares by (validator, old index).
    fn old_shares(&self) -> BTreeMap<(PublicKeyBytes, u64), SecretKey> {
        let mut out = BTreeMap::new();
        for name in OLD {
            for sk in load_shares(&self.old_dir(name)) {
                let (v, s) = self.old.share(&sk.public_key().bytes()).expect("old share");
                out.insert((v.group_pubkey.bytes(), s.index.get()), sk);
            }
        }
        out
    }
}

fn subsets(n: u64, k: usize) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    for mask in 0u32..(1 << n) {
        if mask.count_ones() as usize == k {
            out.push((1..=n).filter(|i| mask & (1 << (i - 1)) != 0).collect());
        }
    }
    out
}

/// Every `t`-subset of the new shares signs exactly like the whole interop key.
fn assert_every_subset_signs(
    cluster: &ClusterDefinition,
    shares: &BTreeMap<(PublicKeyBytes, u64), SecretKey>,
    n: u64,
    t: usize,
) {
    let root = SigningRoot([0x5a; 32]);
    for (v, validator) in cluster.validators().iter().enumerate() {
        assert_eq!(validator.threshold as usize, t);
        assert_eq!(u64::from(validator.share_count), n);
        let expected = interop_secret_key(v as u64).sign(&root);
        let gk = validator.group_pubkey.bytes();
        for subset in subsets(n, t) {
            let partials: Vec<_> = subset
                .iter()
                .map(|i| (idx(*i), shares[&(gk, *i)].sign(&root)))
                .collect();
            assert_eq!(
                combine(&partials, t).expect("combine"),
                expected,
                "validator {v}, shares {subset:?}"
            );
        }
        // t - 1 new shares are not enough.
        let few: Vec<_> = (1..t as u64)
            .map(|i| (idx(i), shares[&(gk, i)].sign(&root)))
            .collect();
        assert_ne!(combine(&few, t - 1).expect("combine"), expected);
    }
}

fn printed_hash(log: &str) -> String {
    log.lines()
        .find_map(|l| l.strip_prefix("cluster.json hash: "))
        .unwrap_or_else(|| panic!("no hash printed:\n{log}"))
        .trim()
        .to_owned()
}

#[test]
fn three_of_four_to_three_of_five_keeps_the_keys() {
    let setup = Setup::new();
    let new = ["a", "b", "c", "d", "e"];
    let def = setup.definition("add-e", &["a", "b", "c"], &new, 3);
    let results = setup.run_all("add-e", &def, &new, &[]);
    Setup::assert_all_ok(&results);
    let log_e = results["e"].0.log_text();
    for progress in [
        "1/5 (encryption keys)",
        "2/5 (dealings)",
        "4/5 (new share check)",
    ] {
        assert!(log_e.contains(progress), "{log_e}");
    }
    let (cluster, shares) = setup.new_results("add-e", &new);
    for (name, (p, _)) in &results {
        assert_eq!(
            printed_hash(&p.log_text()),
            cluster.hash().to_string(),
            "{name}"
        );
    }
    assert_ne!(cluster.hash(), setup.old.hash());
    assert_every_subset_signs(&cluster, &shares, 5, 3);

    // Old shares are not part of the new sharing: mixing them gives a wrong signature, while
    // three old shares still sign (which is why the README says to destroy them).
    let old = setup.old_shares();
    let root = SigningRoot([0x77; 32]);
    for (v, validator) in cluster.validators().iter().enumerate() {
        let gk = validator.group_pubkey.bytes();
        let expected = interop_secret_key(v as u64).sign(&root);
        let mixed = vec![
            (idx(1), shares[&(gk, 1)].sign(&root)),
            (idx(2), shares[&(gk, 2)].sign(&root)),
            (idx(3), old[&(gk, 3)].sign(&root)),
        ];
        assert_ne!(combine(&mixed, 3).expect("combine"), expected);
        let mixed = vec![
            (idx(4), old[&(gk, 4)].sign(&root)),
            (idx(5), shares[&(gk, 5)].sign(&root)),
            (idx(1), old[&(gk, 1)].sign(&root)),
        ];
        assert_ne!(combine(&mixed, 3).expect("combine"), expected);
        let old_only: Vec<_> = [1u64, 2, 3]
            .iter()
            .map(|i| (idx(*i), old[&(gk, *i)].sign(&root)))
            .collect();
        assert_eq!(combine(&old_only, 3).expect("combine"), expected);
        // Every new share differs from the old share at the same index.
        for i in 1..=4u64 {
            assert_ne!(
                shares[&(gk, i)].public_key().bytes(),
                old[&(gk, i)].public_key().bytes()
            );
        }
    }
}

#[test]
fn threshold_down_to_two_of_three_with_a_dealer_leaving() {
    let setup = Setup::new();
    // d deals and leaves; a takes no part; e joins; new indices c=1, e=2, b=3.
    let new = ["c", "e", "b"];
    let def = setup.definition("shrink", &["d", "b", "c"], &new, 2);
    let results = setup.run_all("shrink", &def, &["b", "c", "d", "e"], &[]);
    Setup::assert_all_ok(&results);
    let log_d = results["d"].0.log_text();
    assert!(
        log_d.contains("operator d left the cluster: nothing written"),
        "{log_d}"
    );
    assert!(!setup.out("shrink", "d").exists());
    let (cluster, shares) = setup.new_results("shrink", &new);
    assert_eq!(printed_hash(&log_d), cluster.hash().to_string());
    assert!(cluster.operator("d").is_none() && cluster.operator("a").is_none());
    assert_every_subset_signs(&cluster, &shares, 3, 2);
}

#[test]
fn threshold_up_to_four_of_six_with_a_spare_dealer() {
    let setup = Setup::new();
    // Four dealers for an old threshold of 3: the first three in definition order deal.
    let new = ALL;
    let def = setup.definition("grow", &["b", "d", "a", "c"], &new, 4);
    let results = setup.run_all("grow", &def, &new, &[]);
    Setup::assert_all_ok(&results);
    let log_f = results["f"].0.log_text();
    assert!(log_f.contains("reshared by b,d,a"), "{log_f}");
    let (cluster, shares) = setup.new_results("grow", &new);
    assert_every_subset_signs(&cluster, &shares, 6, 4);
}

#[test]
fn dealer_sending_a_wrong_value_is_named() {
    let setup = Setup::new();
    let new = ["a", "b", "c", "d", "e"];
    let def = setup.definition("corrupt", &["a", "b", "c"], &new, 3);
    let results = setup.run_all("corrupt", &def, &new, &[("b", "corrupt-share:e")]);
    Setup::assert_all_failed(&results);
    let log_e = results["e"].0.log_text();
    assert!(
        log_e.contains("operator b dealt invalid shares (reported by e)")
            && log_e.contains("does not match the dealer's commitments"),
        "{log_e}"
    );
    for (name, (p, _)) in &results {
        let log = p.log_text();
        assert!(
            log.contains("operator b dealt invalid shares"),
            "{name}: {log}"
        );
    }
    setup.assert_nothing_written("corrupt");
}

#[test]
fn dealer_resharing_another_secret_is_named() {
    let setup = Setup::new();
    let new = ["a", "b", "c", "d", "e"];
    let def = setup.definition("wrong", &["a", "b", "c"], &new, 3);
    let results = setup.run_all("wrong", &def, &new, &[("c", "wrong-secret")]);
    Setup::assert_all_failed(&results);
    for (name, (p, _)) in &results {
        let log = p.log_text();
        assert!(
            log.contains("operator c dealt invalid shares")
                && log.contains("is not c's old share public key"),
            "{name}: {log}"
        );
    }
    setup.assert_nothing_written("wrong");
}

#[test]
fn participant_vanishing_mid_reshare_fails_cleanly() {
    let setup = Setup::new();
    let new = ["a", "b", "c", "d", "e"];
    let def = setup.definition("vanish", &["a", "b", "c"], &new, 3);
    let results = setup.run_all("vanish", &def, &new, &[("c", "stop-after-dealing")]);
    Setup::assert_all_failed(&results);
    for (name, (p, _)) in results.iter().filter(|(n, _)| *n != "c") {
        let log = p.log_text();
        assert!(
            log.contains("did not answer round 3/5 (complaints)") && log.contains("operator(s) c"),
            "{name}: {log}"
        );
        assert!(log.contains("nothing was written"), "{name}: {log}");
    }
    setup.assert_nothing_written("vanish");
    // The old cluster is untouched and still complete.
    assert_eq!(
        ClusterDefinition::load(&setup.old_cluster)
            .expect("old")
            .hash(),
        setup.old.hash()
    );
}
