//! The `--config` file of `dvsigner signer` / `dvsigner combiner`, end to end with the real
//! binary: a node configured only by a file serves and signs; the command line beats the file
//! and an environment variable beats the file; unknown keys and bad values are errors naming the
//! file and the key; `--check-config` accepts the README's full examples (without binding their
//! ports or reading keys), rejects broken ones and never prints a URL's password.

use crate::common::process;
use crate::common::requests::attestation_body;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use dvsigner::keys::interop::interop_secret_key;
use dvsigner::signing::Network;
use process::{command, dev_keystores, free_port, http_client as client, wait_ready, Proc};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run dvsigner")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`Proc::start_with_env`] with owned values.
fn start(name: &str, args: &[String], env: &[(&str, String)], log: &Path) -> Proc {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Proc::start_with_env(name, args, &env, log)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn pk(i: u64) -> String {
    interop_secret_key(i).public_key().bytes().to_hex()
}

/// A plain-HTTP signer config on `port` with the dev keystores and `passwords`.
fn node_config(port: u16, data: &Path, passwords: &Path) -> String {
    let (ks, _) = dev_keystores();
    format!(
        "# a node configured by this file alone\n\
         listen: 127.0.0.1:{port}\n\
         insecure-http: true\n\
         data-dir: {}\n\
         keystores: {}\n\
         keystores-passwords: {}\n\
         network: mainnet\n\
         header-read-timeout-secs: 10\n\
         no-slashing-protection: false\n",
        data.display(),
        ks.display(),
        passwords.display()
    )
}

async fn public_keys(client: &reqwest::Client, port: u16) -> Vec<String> {
    client
        .get(format!("http://127.0.0.1:{port}/api/v1/eth2/publicKeys"))
        .send()
        .await
        .expect("publicKeys")
        .json()
        .await
        .expect("JSON list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_started_from_a_config_file_alone_serves_and_signs() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let (_, passwords) = dev_keystores();
    let cfg = write(
        dir.path(),
        "signer.yaml",
        &node_config(port, &dir.path().join("data"), &passwords),
    );
    let cfg = cfg.display().to_string();
    let mut node = start(
        "node",
        &["signer".into(), "--config".into(), cfg],
        &[],
        &dir.path().join("node.log"),
    );
    let client = client();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(
        &client,
        &format!("{base}/upcheck"),
        &mut node,
        Duration::from_secs(30),
    )
    .await;
    assert!(public_keys(&client, port).await.contains(&pk(0)));

    let body = attestation_body(7);
    let r = client
        .post(format!("{base}/api/v1/eth2/sign/{}", pk(0)))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("sign");
    assert_eq!(r.status(), 200, "{}", node.log_text());
    let v: serde_json::Value = r.json().await.expect("json");
    let network = Network::from_name_or_path("mainnet").expect("mainnet");
    let prepared = dvsigner::signing::prepare(body.as_bytes(), &network).expect("prepare");
    assert_eq!(
        v["signature"].as_str(),
        Some(interop_secret_key(0).sign(&prepared.root).to_hex().as_str()),
        "the node signed with the key the file pointed it to"
    );
    // The slashing database went where the file's data-dir says.
    assert!(dir.path().join("data/slashing-protection.sqlite").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_beats_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let (file_port, cli_port) = (free_port(), free_port());
    let (ks, passwords) = dev_keystores();
    // TOML this time: the same keys.
    let cfg = write(
        dir.path(),
        "signer.toml",
        &format!(
            "listen = \"127.0.0.1:{file_port}\"\ninsecure-http = true\ndata-dir = \"{}\"\n\
             keystores = \"{}\"\nkeystores-passwords = \"{}\"\n",
            dir.path().join("data").display(),
            ks.display(),
            passwords.display()
        ),
    );
    let mut node = start(
        "node",
        &[
            "signer".into(),
            "--config".into(),
            cfg.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{cli_port}"),
        ],
        &[],
        &dir.path().join("node.log"),
    );
    let client = client();
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{cli_port}/upcheck"),
        &mut node,
        Duration::from_secs(30),
    )
    .await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", file_port)).is_err(),
        "the file's port must not be bound when --listen is given"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_beats_the_file_for_a_secret_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let (ks, passwords) = dev_keystores();
    // The file names a passwords directory whose passwords are wrong.
    let wrong = dir.path().join("wrong-passwords");
    std::fs::create_dir(&wrong).expect("mkdir");
    for entry in std::fs::read_dir(&ks).expect("keystores") {
        let name = entry.expect("entry").file_name();
        if let Some(stem) = name.to_string_lossy().strip_suffix(".json") {
            write(&wrong, &format!("{stem}.txt"), "not the password\n");
        }
    }
    let client = client();
    for (label, env) in [
        ("file only", vec![]),
        (
            "env override",
            vec![(
                "DVSIGNER_KEYSTORES_PASSWORDS",
                passwords.display().to_string(),
            )],
        ),
    ] {
        let port = free_port();
        let cfg = write(
            dir.path(),
            &format!("{}.yaml", label.replace(' ', "-")),
            &node_config(port, &dir.path().join(label.replace(' ', "-")), &wrong),
        );
        let mut node = start(
            label,
            &[
                "signer".into(),
                "--config".into(),
                cfg.display().to_string(),
            ],
            &env,
            &dir.path().join(format!("{}.log", label.replace(' ', "-"))),
        );
        wait_ready(
            &client,
            &format!("http://127.0.0.1:{port}/upcheck"),
            &mut node,
            Duration::from_secs(30),
        )
        .await;
        let keys = public_keys(&client, port).await;
        if env.is_empty() {
            assert!(
                keys.is_empty(),
                "wrong passwords from the file must load no key: {keys:?}"
            );
        } else {
            assert!(
                keys.contains(&pk(0)),
                "DVSIGNER_KEYSTORES_PASSWORDS must beat the file: {keys:?}\n{}",
                node.log_text()
            );
        }
    }
}

#[test]
fn unknown_keys_wrong_types_and_bad_values_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let base = |sub: &str| {
        if sub == "signer" {
            "data-dir: /tmp/x\ninsecure-http: true\n"
        } else {
            "insecure-http: true\n"
        }
    };
    let cases: [(&str, &str, &str, &[&str]); 6] = [
        (
            "signer",
            "typo.yaml",
            "lisen: 127.0.0.1:1\n",
            &["`lisen`", "unknown key"],
        ),
        (
            "signer",
            "addr.yaml",
            "listen: not-an-address\n",
            &["`listen`", "not-an-address"],
        ),
        (
            "signer",
            "neg.yaml",
            "header-read-timeout-secs: -3\n",
            &["`header-read-timeout-secs`", "-3"],
        ),
        (
            "signer",
            "type.yaml",
            "no-slashing-protection: 3\n",
            &["`no-slashing-protection`", "true or false"],
        ),
        (
            "signer",
            "enum.yaml",
            "log-format: xml\n",
            &["`log-format`", "xml"],
        ),
        (
            "combiner",
            "comb.yaml",
            "cluster: /c.json\ndeadline-ms: soon\n",
            &["`deadline-ms`", "soon"],
        ),
    ];
    for (sub, name, extra, wants) in cases {
        let cfg = write(dir.path(), name, &format!("{}{extra}", base(sub)));
        let cfg = cfg.display().to_string();
        let out = run(&[sub, "--config", &cfg, "--check-config"], &[]);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{name} accepted:\n{stdout}");
        assert!(stderr.contains(&cfg), "{name}: file not named: {stderr}");
        for want in wants {
            assert!(stderr.contains(want), "{name}: {want} not in: {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    // A value that parses but cannot work: named by --check-config.
    let cfg = write(
        dir.path(),
        "net.yaml",
        &format!("{}network: nosuchnet\n", base("signer")),
    );
    let out = run(
        &[
            "signer",
            "--config",
            &cfg.display().to_string(),
            "--check-config",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(text(&out).1.contains("network"), "{}", text(&out).1);
    // A missing file.
    let out = run(&["signer", "--config", "/no/such/dvsigner.yaml"], &[]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("/no/such/dvsigner.yaml"));
}

/// The ```yaml blocks of README.md's "Configuration file" section, by their first-line comment.
fn readme_examples() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let section = readme
        .split("\n## Configuration file\n")
        .nth(1)
        .expect("README has a Configuration file section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .map(|b| {
            let first = b.lines().next().unwrap_or_default();
            (first.trim_start_matches("# ").to_owned(), b.to_owned())
        })
        .collect()
}

#[test]
fn check_config_accepts_the_readme_examples_and_rejects_broken_ones() {
    let dir = tempfile::tempdir().expect("tmp");
    let examples = readme_examples();
    assert_eq!(examples.len(), 2, "README: a signer and a combiner example");
    // A port that is taken: --check-config must not try to bind it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = taken.local_addr().expect("addr").to_string();
    for (title, text_) in &examples {
        let sub = if title.ends_with("signer.yaml") {
            "signer"
        } else if title.ends_with("combiner.yaml") {
            "combiner"
        } else {
            panic!("unexpected README example {title}")
        };
        let keys: Vec<&str> = text_
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(": "))
            .filter_map(|l| l.split(": ").next())
            .collect();
        assert!(keys.len() >= 10, "{title}: not a full example");
        let cfg = write(dir.path(), &format!("{sub}.yaml"), text_);
        let cfg = cfg.display().to_string();
        let env: &[(&str, &str)] = if sub == "signer" {
            &[
                ("DVSIGNER_TLS_KEY", "/from/env/tls.key"),
                ("DVSIGNER_SLASHING_DB", "postgres://dv:hunter2@db:5432/dv"),
            ]
        } else {
            &[("DVSIGNER_CLIENT_KEY", "/from/env/client.key")]
        };
        let out = run(
            &[sub, "--config", &cfg, "--check-config", "--listen", &taken],
            env,
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{title} refused:\n{stderr}");
        assert!(stdout.contains(&cfg), "{stdout}");
        assert!(
            stdout.contains(&format!("listen: {taken}  # command line")),
            "{stdout}"
        );
        let overridden = ["listen", "tls-key", "slashing-db", "client-key"];
        for key in keys.iter().filter(|k| !overridden.contains(k)) {
            let line = stdout.lines().find(|l| l.starts_with(&format!("{key}: ")));
            if text_.contains(&format!("{key}: false")) {
                assert!(
                    stdout.contains(&format!("# {key}: (not set)")),
                    "{title}: {key}: {stdout}"
                );
            } else {
                assert!(
                    line.is_some_and(|l| l.ends_with("# config file")),
                    "{title}: {key} not taken from the file:\n{stdout}"
                );
            }
        }
        if sub == "signer" {
            assert!(stdout.contains("tls-key: /from/env/tls.key  # environment DVSIGNER_TLS_KEY"));
            assert!(
                stdout.contains("slashing-db: postgres://…@db:5432/dv"),
                "{stdout}"
            );
            assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));
            assert!(
                stdout.contains("network: mainnet  # config file"),
                "{stdout}"
            );
        } else {
            assert!(
                stdout.contains(
                    "client-key: /from/env/client.key  # environment DVSIGNER_CLIENT_KEY"
                ),
                "{stdout}"
            );
        }
        // The printout is itself a valid config file.
        let again = write(dir.path(), &format!("{sub}-effective.yaml"), &stdout);
        let out = run(
            &[
                sub,
                "--config",
                &again.display().to_string(),
                "--check-config",
            ],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out).1);

        // Broken copies are refused, naming the problem.
        for (broken, want) in [
            (
                text_.replace("network: mainnet", "network: mainnett"),
                "network",
            ),
            (text_.replace("cluster:", "clustr:"), "clustr"),
            (
                format!("{text_}deadline-ms: [1, 2]\nlisten: {{}}\n"),
                "config file",
            ),
        ] {
            let bad = write(dir.path(), &format!("{sub}-broken.yaml"), &broken);
            let out = run(
                &[
                    sub,
                    "--config",
                    &bad.display().to_string(),
                    "--check-config",
                ],
                &[],
            );
            let (stdout, stderr) = text(&out);
            assert!(!out.status.success(), "broken {title} accepted:\n{stdout}");
            assert!(stderr.contains(want), "{want} not in: {stderr}");
        }
    }
}
