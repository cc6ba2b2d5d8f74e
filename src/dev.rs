//! `dvsigner dev`: a local 3-of-4 threshold cluster on loopback, with TLS everywhere.
//!
//! One command makes a CA and certificates, splits interop validator keys (public, dev-only:
//! `keystores/dev/`) 3-of-4 into share keystores and a `cluster.json`, starts four signer nodes
//! (mutual TLS, each with its own SQLite slashing database) and a combiner, and prints the
//! combiner URL, the CA path and ready-to-paste validator-client settings. Ctrl-C stops
//! everything cleanly.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::cli::serve::{bind, serve_signer};
use crate::cli::threshold::{serve_combiner, CombinerArgs, KdfChoice, SplitArgs};
use crate::cli::{DevArgs, ServeArgs, SignerArgs};
use crate::keys::interop::interop_secret_key;
use crate::keys::{KdfParams, Keystore, Password};
use crate::tls::DevPki;

const OPERATORS: [&str; 4] = ["node-a", "node-b", "node-c", "node-d"];
const DEV_PASSWORD: &str = "dvsigner-dev-password";

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}

/// Runs the local development cluster until Ctrl-C.
///
/// # Errors
/// Start-up failures (ports in use, unwritable directory).
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let (dir, _keep) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new().prefix("dvsigner-dev-").tempdir()?;
            (t.path().to_owned(), Some(t))
        }
    };
    std::fs::create_dir_all(&dir)?;
    let pki = DevPki::generate(
        &dir.join("tls"),
        &[&OPERATORS[..], &["combiner"]].concat(),
        &["combiner-client"],
    )
    .context("generating dev certificates")?;

    // Whole keys: interop keys (public!) written as keystores, then split 3-of-4.
    let whole = dir.join("validator-keys");
    write_interop_keystores(&whole, args.validators)?;
    let ports: Vec<u16> = (1..=4).map(|i| args.base_port + i).collect();
    let split_out = dir.join("cluster");
    let split = SplitArgs {
        keystore: whole.clone(),
        password_file: Some(whole.join("password.txt")),
        passwords: None,
        threshold: 3,
        shares: 4,
        operators: OPERATORS
            .iter()
            .zip(&ports)
            .map(|(name, port)| format!("{name}=https://127.0.0.1:{port}"))
            .collect(),
        operator_passwords: None,
        out: split_out.clone(),
        kdf: KdfChoice::Pbkdf2,
    };
    tokio::task::spawn_blocking(move || crate::cli::threshold::run_split(split)).await??;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, name) in OPERATORS.iter().enumerate() {
        let id = pki.identity(name).context("node certificate")?;
        let signer = SignerArgs {
            serve: ServeArgs {
                listen: format!("127.0.0.1:{}", ports[i]).parse()?,
                tls_cert: Some(id.cert.clone()),
                tls_key: Some(id.key.clone()),
                tls_client_ca: Some(pki.ca_cert.clone()),
                tls_allowed_clients: None,
                insecure_http: false,
                header_read_timeout_secs: 30,
            },
            data_dir: dir.join("data").join(name),
            keystores: Some(split_out.join(name).join("keystores")),
            keystores_passwords: Some(split_out.join(name).join("passwords")),
            key_config: None,
            slashing_db: None,
            no_slashing_protection: false,
            network: "mainnet".into(),
        };
        let listener = bind(signer.serve.listen).await?;
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move { serve_signer(signer, listener, stop).await });
    }
    let combiner_id = pki.identity("combiner").context("combiner certificate")?;
    let client_id = pki
        .identity("combiner-client")
        .context("combiner client certificate")?;
    let combiner = CombinerArgs {
        serve: ServeArgs {
            listen: format!("127.0.0.1:{}", args.base_port).parse()?,
            tls_cert: Some(combiner_id.cert.clone()),
            tls_key: Some(combiner_id.key.clone()),
            tls_client_ca: None,
            tls_allowed_clients: None,
            insecure_http: false,
            header_read_timeout_secs: 30,
        },
        cluster: split_out.join("cluster.json"),
        node_ca: Some(pki.ca_cert.clone()),
        client_cert: Some(client_id.cert.clone()),
        client_key: Some(client_id.key.clone()),
        deadline_ms: 2000,
        network: "mainnet".into(),
    };
    let listener = bind(combiner.serve.listen).await?;
    let stop = stopped(stop_rx.clone());
    tasks.spawn(async move { serve_combiner(combiner, listener, stop).await });

    // Give the servers a moment to load their keys before printing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pubkeys: Vec<String> = (0..args.validators)
        .map(|i| interop_secret_key(i).public_key().bytes().to_hex())
        .collect();
    print_instructions(&dir, &pki.ca_cert, args.base_port, &pubkeys);

    tokio::select! {
        () = shutdown_signal() => {}
        Some(res) = tasks.join_next() => {
            // A server ended on its own: report why and stop the rest.
            let _ = stop_tx.send(true);
            res??;
            anyhow::bail!("a dev server stopped unexpectedly");
        }
    }
    let _ = stop_tx.send(true);
    while let Some(res) = tasks.join_next().await {
        res??;
    }
    println!("dev cluster stopped");
    Ok(())
}

fn write_interop_keystores(dir: &Path, count: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("password.txt"), DEV_PASSWORD)?;
    let password = Password::new(DEV_PASSWORD.into());
    for i in 0..count {
        let sk = interop_secret_key(i);
        let ks = Keystore::encrypt(
            &sk,
            &password,
            KdfParams::insecure_fast(),
            &format!("m/12381/3600/{i}/0/0"),
            "dvsigner dev interop key (PUBLIC)",
        )?;
        std::fs::write(dir.join(format!("interop-{i}.json")), ks.to_json())?;
    }
    Ok(())
}

fn print_instructions(dir: &Path, ca: &Path, port: u16, pubkeys: &[String]) {
    let url = format!("https://127.0.0.1:{port}");
    let ca = ca.display();
    let first = pubkeys.first().cloned().unwrap_or_default();
    println!(
        r#"
dvsigner dev: 3-of-4 threshold cluster running (working directory {dir})
  combiner        {url}    (Web3Signer API; no client certificate needed)
  signer nodes    https://127.0.0.1:{p1} .. https://127.0.0.1:{p4}  (mutual TLS, CA below)
  CA certificate  {ca}
  validators      {n} interop keys (PUBLIC test keys: never use them on a real network)
{keys}
Lodestar:
  NODE_EXTRA_CA_CERTS={ca} lodestar validator --externalSigner.url {url} --externalSigner.fetch

Lighthouse (validator_definitions.yml, one entry per key):
  - enabled: true
    voting_public_key: "{first}"
    type: web3signer
    url: "{url}"
    root_certificate_path: "{ca}"
    request_timeout_ms: 12000

Teku (make a truststore from the CA first, e.g.
  keytool -importcert -noprompt -alias dvsigner-dev -file {ca} -keystore {dir}/truststore.p12 -storetype PKCS12 -storepass changeit):
  teku validator-client --validators-external-signer-url={url} \
    --validators-external-signer-public-keys=external-signer \
    --validators-external-signer-truststore={dir}/truststore.p12 \
    --validators-external-signer-truststore-password-file=<file containing changeit>

Try it:  curl --cacert {ca} {url}/api/v1/eth2/publicKeys
Press Ctrl-C to stop."#,
        dir = dir.display(),
        p1 = port + 1,
        p4 = port + 4,
        n = pubkeys.len(),
        keys = pubkeys
            .iter()
            .map(|k| format!("                  {k}\n"))
            .collect::<String>(),
    );
}
