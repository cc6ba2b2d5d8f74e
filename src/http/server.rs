//! The HTTP(S) accept loop shared by the signer node and the combiner.
//!
//! `run(listener, tls, app, options, shutdown)` serves HTTP/1.1 (optionally over rustls; HTTP/2
//! on a TLS connection whose client chose `h2` in ALPN, which the server's TLS configuration
//! offers only when built with [`crate::tls::with_http2`]) until `shutdown` resolves, then
//! stops accepting, lets in-flight requests finish (bounded by
//! [`ServerOptions::drain_timeout`]; an HTTP/2 connection whose client does not end it is
//! closed [`H2_SHUTDOWN_LINGER`] after its last stream) and returns. Tests bind `127.0.0.1:0`
//! and call it directly.
//!
//! Invariants: a slow or broken client only ever costs its own connection task (handshake and
//! header-read timeouts); handshake failures are logged at debug level and dropped. The
//! request's host is checked against [`ServerOptions::host_allowlist`] before the router sees
//! the request, so no route (404s included) answers a host that is not listed.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// The SHA-256 fingerprint of the certificate a TLS client presented, inserted into the
/// extensions of every request of that connection (absent for plain HTTP or no certificate).
/// The handshake already verified that the client holds the certificate's private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCertificate(pub crate::tls::Fingerprint);

/// Streams one HTTP/2 client may have open at once: a whole slot's burst of sign requests for
/// a thousand validators fits on one connection; further streams wait at the client.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Interval of HTTP/2 keep-alive pings on an idle connection, and how long the answer may take
/// before the connection is closed (a peer that vanished without a FIN).
pub const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// At shutdown, how long an HTTP/2 connection may stay open after its last stream finished:
/// time for the last answers' bytes to leave. A client that cannot be reached (or does not
/// answer) never acknowledges the GOAWAY, and waiting for it would hold shutdown for the whole
/// drain timeout.
pub const H2_SHUTDOWN_LINGER: Duration = Duration::from_millis(500);

/// Connection-level limits.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for a client to send a complete request head.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Hosts the server answers for (`--http-host-allowlist`; default: no check).
    pub host_allowlist: HostAllowlist,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            host_allowlist: HostAllowlist::Off,
        }
    }
}

/// Web3Signer's `--http-host-allowlist`: the hosts (names or IP addresses, without port) a
/// request may address, taken from its URI authority (HTTP/2 `:authority`, or an absolute-form
/// HTTP/1.1 target) or else its `Host` header. A host not listed gets 403
/// `{"message":"Host not authorized."}`; a request naming no host, several `Host` headers or
/// an unparsable one gets 400. Names compare case-insensitively; IPv6 addresses are written
/// without brackets or with (`::1`, `[::1]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HostAllowlist {
    /// No check at all (listeners other than the signer's and the combiner's, and tests).
    #[default]
    Off,
    /// `*`: every host, but the request must name one.
    Any,
    /// Only these hosts (lower case, IPv6 without brackets).
    Only(Arc<[String]>),
}

/// Web3Signer's default allow-list, `localhost,127.0.0.1`.
pub const DEFAULT_HOST_ALLOWLIST: &str = "localhost,127.0.0.1";

/// [`DEFAULT_HOST_ALLOWLIST`] as the entries of `--http-host-allowlist`.
pub fn default_host_allowlist() -> Vec<String> {
    DEFAULT_HOST_ALLOWLIST
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// A host as compared: lower case, IPv6 brackets and a trailing dot removed.
fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Parses one `--http-host-allowlist` entry (clap value parser): `*`, a host name or an IP
/// address, without port.
///
/// # Errors
/// An empty entry, or one with characters no host has (`/`, `@`, spaces, a port after a name).
pub fn parse_host_entry(entry: &str) -> Result<String, String> {
    let entry = entry.trim();
    if entry == "*" {
        return Ok(entry.to_owned());
    }
    let host = normalize_host(entry);
    if host.is_empty() {
        return Err("empty host".into());
    }
    let valid = if host.contains(':') {
        host.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        host.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    };
    if !valid {
        return Err(format!(
            "{entry:?} is not a host name or IP address (no scheme, port or path; `*` allows any host)"
        ));
    }
    Ok(host)
}

impl HostAllowlist {
    /// From parsed entries ([`parse_host_entry`]): `*` anywhere allows every host.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Self {
        if entries.iter().any(|e| e.as_ref().trim() == "*") {
            return Self::Any;
        }
        let mut hosts: Vec<String> = entries.iter().map(|e| normalize_host(e.as_ref())).collect();
        hosts.sort_unstable();
        hosts.dedup();
        Self::Only(hosts.into())
    }

    /// This list plus `host` (no change for [`HostAllowlist::Off`] and [`HostAllowlist::Any`]).
    #[must_use]
    pub fn with_host(self, host: &str) -> Self {
        match self {
            Self::Only(hosts) => {
                let mut all = hosts.to_vec();
                all.push(host.to_owned());
                Self::new(&all)
            }
            other => other,
        }
    }

    /// Whether `host` (as it appears in a URI authority, brackets allowed) may be served.
    pub fn allows(&self, host: &str) -> bool {
        match self {
            Self::Off | Self::Any => true,
            Self::Only(hosts) => {
                let host = normalize_host(host);
                hosts.contains(&host)
            }
        }
    }

    /// `None` when the request may proceed, else the 400 or 403 response.
    pub fn check<B>(&self, req: &axum::http::Request<B>) -> Option<axum::response::Response> {
        use axum::http::{header, StatusCode};
        use axum::response::IntoResponse;
        let refuse = |status: StatusCode, message: &str| {
            Some(
                (
                    status,
                    [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                    serde_json::json!({ "message": message }).to_string(),
                )
                    .into_response(),
            )
        };
        if *self == Self::Off {
            return None;
        }
        let host = match req.uri().authority() {
            Some(authority) => authority.host().to_owned(),
            None => {
                let mut values = req.headers().get_all(header::HOST).iter();
                let (Some(value), None) = (values.next(), values.next()) else {
                    return refuse(StatusCode::BAD_REQUEST, "Missing or repeated Host header.");
                };
                match value
                    .to_str()
                    .ok()
                    .and_then(|v| v.parse::<axum::http::uri::Authority>().ok())
                {
                    Some(authority) => authority.host().to_owned(),
                    None => return refuse(StatusCode::BAD_REQUEST, "Invalid Host header."),
                }
            }
        };
        if self.allows(&host) {
            None
        } else {
            tracing::debug!(host = %host, "request for a host not in --http-host-allowlist");
            refuse(StatusCode::FORBIDDEN, "Host not authorized.")
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes.
///
/// # Errors
/// Never for per-connection problems (those are logged); only if the listener itself fails
/// irrecoverably.
pub async fn run(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let options = options.clone();
        let stop = stop_rx.clone();
        connections.spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(options.handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => {
                            let session = tls_stream.get_ref().1;
                            let h2 = session.alpn_protocol() == Some(b"h2".as_slice());
                            let client = session
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|leaf| {
                                    ClientCertificate(crate::tls::Fingerprint::of_der(leaf))
                                });
                            serve(tls_stream, h2, app, client, &options, stop).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve(stream, false, app, None, &options, stop).await,
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(options.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = connections.len(),
            "shutdown: dropping connections still busy"
        );
        connections.abort_all();
    }
    Ok(())
}

/// Serves one connection: HTTP/2 when `h2` (negotiated in ALPN), else HTTP/1.1 keep-alive.
async fn serve<S>(
    stream: S,
    h2: bool,
    app: Router,
    client: Option<ClientCertificate>,
    options: &ServerOptions,
    stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let hosts = options.host_allowlist.clone();
    // HTTP/2: the streams in flight, so that shutdown knows when only the goodbye is left.
    let streams = h2.then(|| Arc::new(AtomicUsize::new(0)));
    let counted = streams.clone();
    let service = tower::service_fn(move |mut req: axum::extract::Request<Incoming>| {
        if let Some(c) = client {
            req.extensions_mut().insert(c);
        }
        let refused = hosts.check(&req);
        let app = app.clone();
        let stream = counted.as_ref().map(|n| InFlight::new(n.clone()));
        async move {
            let _stream = stream;
            match refused {
                Some(response) => Ok(response),
                None => app.oneshot(req).await,
            }
        }
    });
    let service = TowerToHyperService::new(service);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(Some(H2_KEEP_ALIVE))
        .keep_alive_timeout(H2_KEEP_ALIVE);
    // The protocol is known before the first byte (ALPN), so no preface is read to guess it.
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut stop = stop;
    let stopped = async move {
        // Drop the watch guard before completing so the future stays Send.
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with error");
            }
        }
        () = stopped => {
            // Finish the requests in flight (HTTP/2: GOAWAY, open streams finish), then close.
            conn.as_mut().graceful_shutdown();
            let Some(streams) = streams else {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection ended with error during shutdown");
                }
                return;
            };
            // HTTP/2 ends when the client acknowledges the GOAWAY; one that cannot be reached
            // never does. Close anyway once no stream was in flight for H2_SHUTDOWN_LINGER.
            let mut idle_since: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    res = conn.as_mut() => {
                        if let Err(e) = res {
                            tracing::debug!(error = %e, "connection ended with error during shutdown");
                        }
                        return;
                    }
                    () = tokio::time::sleep(Duration::from_millis(50)) => {
                        if streams.load(Ordering::Acquire) > 0 {
                            idle_since = None;
                        } else if idle_since
                            .get_or_insert_with(tokio::time::Instant::now)
                            .elapsed()
                            >= H2_SHUTDOWN_LINGER
                        {
                            tracing::debug!("shutdown: closing an HTTP/2 connection its client did not end");
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// One HTTP/2 stream being served: counted from the call until its answer is produced (or the
/// stream is cancelled).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, Request, StatusCode};

    fn req(host: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("/upcheck");
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(()).expect("request")
    }

    fn status(list: &HostAllowlist, r: &Request<()>) -> Option<StatusCode> {
        list.check(r).map(|resp| resp.status())
    }

    #[test]
    fn entries_are_hosts_without_port() {
        assert_eq!(
            parse_host_entry(" Node-A.example "),
            Ok("node-a.example".into())
        );
        assert_eq!(parse_host_entry("[::1]"), Ok("::1".into()));
        assert_eq!(parse_host_entry("::1"), Ok("::1".into()));
        assert_eq!(parse_host_entry("*"), Ok("*".into()));
        for bad in ["", "https://a", "a:9000", "a b", "user@a", "a/b"] {
            assert!(parse_host_entry(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hosts_are_checked_without_port_and_case() {
        let list = HostAllowlist::new(&["localhost", "127.0.0.1", "::1", "node-a"]);
        for ok in [
            "localhost",
            "LOCALHOST:9000",
            "127.0.0.1:9000",
            "[::1]:9000",
            "node-a",
        ] {
            assert_eq!(status(&list, &req(Some(ok))), None, "{ok}");
        }
        for refused in ["node-b:9000", "127.0.0.2", "[::2]:1", "localhost.evil"] {
            assert_eq!(
                status(&list, &req(Some(refused))),
                Some(StatusCode::FORBIDDEN),
                "{refused}"
            );
        }
        assert_eq!(status(&list, &req(None)), Some(StatusCode::BAD_REQUEST));
        assert_eq!(
            status(&list, &req(Some("a b"))),
            Some(StatusCode::BAD_REQUEST)
        );
        let two = Request::builder()
            .uri("/")
            .header(header::HOST, "localhost")
            .header(header::HOST, "node-a")
            .body(())
            .expect("request");
        assert_eq!(status(&list, &two), Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn uri_authority_is_the_host_for_http2_and_absolute_targets() {
        let list = HostAllowlist::new(&["node-a"]);
        // HTTP/2 requests carry `:authority` as the URI's authority (and usually no Host).
        let h2 = Request::builder()
            .uri("https://node-a:9000/upcheck")
            .body(())
            .expect("request");
        assert_eq!(status(&list, &h2), None);
        let other = Request::builder()
            .uri("https://node-b:9000/upcheck")
            .header(header::HOST, "node-a")
            .body(())
            .expect("request");
        assert_eq!(status(&list, &other), Some(StatusCode::FORBIDDEN));
    }

    #[test]
    fn star_allows_any_named_host_and_off_checks_nothing() {
        let any = HostAllowlist::new(&["localhost", "*"]);
        assert_eq!(any, HostAllowlist::Any);
        assert_eq!(status(&any, &req(Some("anything.example:1"))), None);
        assert_eq!(status(&any, &req(None)), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status(&HostAllowlist::Off, &req(None)), None);
    }

    #[test]
    fn with_host_extends_only_a_list() {
        let list = HostAllowlist::new(&["localhost"])
            .with_host("[::1]")
            .with_host("Node-A");
        assert_eq!(list, HostAllowlist::new(&["::1", "localhost", "node-a"]));
        assert_eq!(HostAllowlist::Any.with_host("x"), HostAllowlist::Any);
        assert_eq!(HostAllowlist::Off.with_host("x"), HostAllowlist::Off);
    }
}
