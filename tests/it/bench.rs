//! `dvsigner bench` against a real signer process: it finds the server's PID through its
//! loopback listening socket and prints the server's CPU time per signature, a second run
//! signs without a failure (it starts above every target the first run signed), and refused
//! requests are counted by status code.

use crate::common;

use std::time::Duration;

use common::process::{free_port, run_ok, signer_args, wait_ready, Proc};

/// Runs `dvsigner bench` against `url` for a short level; returns its stdout and stderr.
fn bench(url: &str) -> String {
    run_ok(&[
        "bench".into(),
        "--url".into(),
        url.into(),
        "--concurrency".into(),
        "4".into(),
        "--seconds".into(),
        "0.5".into(),
        "--baseline-seconds".into(),
        "0.2".into(),
    ])
}

/// The `ok N failed M (FAILURES)` figures of the concurrency-4 line.
fn level(out: &str) -> (usize, usize, String) {
    let line = out
        .lines()
        .find(|l| l.starts_with("concurrency   4:"))
        .unwrap_or_else(|| panic!("no level line in:\n{out}"));
    let after_ok = line.split(" ok ").nth(1).expect("ok figure");
    let mut words = after_ok.split_whitespace();
    let ok = words.next().expect("ok").parse().expect("ok count");
    assert_eq!(words.next(), Some("failed"), "{line}");
    let failed = words.next().expect("failed").parse().expect("failed count");
    let failures = after_ok
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(f, _)| f.to_owned())
        .expect("failures by status");
    (ok, failed, failures)
}

#[tokio::test]
async fn bench_reports_server_cpu_and_failures_by_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite:{}", dir.path().join("sp.sqlite").display());
    let port = free_port();
    let mut node = Proc::start(
        "signer",
        &signer_args(port, &dir.path().join("data"), Some(&db)),
        &dir.path().join("signer.log"),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(
        &common::process::http_client(),
        &format!("{url}/upcheck"),
        &mut node,
        Duration::from_secs(60),
    )
    .await;

    for run in 1..=2 {
        let out = bench(&url);
        assert!(
            out.contains(&format!("server process: PID {} ", node.pid())),
            "run {run}:\n{out}"
        );
        let (ok, failed, failures) = level(&out);
        assert!(ok > 0, "run {run}:\n{out}");
        assert_eq!(
            (failed, failures.as_str()),
            (0, "none"),
            "run {run}:\n{out}"
        );
        let cpu_line = out
            .lines()
            .find(|l| l.starts_with("concurrency   4:"))
            .expect("level line");
        assert!(
            cpu_line.contains("server CPU ") && cpu_line.contains(" x raw blst"),
            "{cpu_line}"
        );
    }

    // A high watermark refuses every attestation: the run counts its 412s.
    run_ok(&[
        "slashing-protection".into(),
        "high-watermark".into(),
        "set".into(),
        "--slashing-db".into(),
        db.clone(),
        "--epoch".into(),
        "10".into(),
        "--slot".into(),
        "320".into(),
    ]);
    let out = bench(&url);
    let (ok, failed, failures) = level(&out);
    assert_eq!(ok, 0, "{out}");
    assert!(failed > 0, "{out}");
    assert_eq!(failures, format!("412: {failed}"), "{out}");

    // An explicit PID is used as given, and a URL that is not on this machine has no PID.
    let out = run_ok(&[
        "bench".into(),
        "--url".into(),
        url.clone(),
        "--server-pid".into(),
        node.pid().to_string(),
        "--burst".into(),
        "--bursts".into(),
        "2".into(),
        "--baseline-seconds".into(),
        "0.2".into(),
    ]);
    assert!(
        out.contains(&format!("server process: PID {} ", node.pid())),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("burst ")).count(),
        2,
        "{out}"
    );
    assert!(out.contains("failures: 412: "), "{out}");
    assert!(out.contains("bursts: p50 "), "{out}");

    node.terminate(Duration::from_secs(10));
}
