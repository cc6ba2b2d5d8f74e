//! The `dvsigner` binary: parse the command line, set up logging, run, map errors to exit codes.

use dvsigner::cli::LogFormat;

/// Gives scrypt's 256 MiB table huge pages: keystore decryption is about a fifth faster.
#[global_allocator]
static ALLOCATOR: dvsigner::alloc::Allocator = dvsigner::alloc::Allocator;

fn main() -> std::process::ExitCode {
    let cli = dvsigner::cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        if let Some(workers) = dvsigner::cli::runtime_workers(&cli) {
            runtime.worker_threads(workers);
        }
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: dvsigner::cli::Cli) -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DVSIGNER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The Vault client's own tracing can echo response fragments (a secret, in a malformed
    // answer): dvsigner::keys::vault logs what is safe instead.
    let filter = ["vaultrs=off", "rustify=off"]
        .iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, |f, d| f.add_directive(d));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => {
            builder.json().init();
            dvsigner::progress::lines_as_log(true);
        }
    }
    match dvsigner::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<dvsigner::cli::ExitStatus>() {
                Some(status) => std::process::ExitCode::from(status.code),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}
