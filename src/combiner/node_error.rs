//! Why a node gave no partial signature, in words an operator can act on: connection refused,
//! timed out (and after how long), TLS failure (which one), or the node's HTTP status and the
//! start of its body. Transport errors are classified by walking their `source()` chain (and
//! into the error an `io::Error` wraps); the request URL is never part of the text (the node is
//! named by the caller), so nothing is cut in the middle of a public key.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use axum::http::StatusCode;

/// Longest node body quoted in an error, in characters.
pub const BODY_SNIPPET_CHARS: usize = 200;

/// Errors of a chain, outermost first. An `io::Error`'s `source()` skips the error it wraps
/// (it returns that error's own source), so the walk steps into `get_ref()` instead. Bounded.
fn chain<'a>(e: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        if out.len() >= 16 {
            break;
        }
        out.push(err);
        cur = match err.downcast_ref::<io::Error>() {
            Some(io_err) => io_err
                .get_ref()
                .map(|inner| inner as &(dyn StdError + 'static)),
            None => err.source(),
        };
    }
    out
}

/// "timed out: no answer within N ms".
pub fn timed_out(after: Duration) -> String {
    format!("timed out: no answer within {} ms", after.as_millis())
}

/// "timed out connecting: no TCP/TLS connection within N ms".
pub fn connect_timed_out(after: Duration) -> String {
    format!(
        "timed out connecting: no TCP/TLS connection within {} ms",
        after.as_millis()
    )
}

/// Describes a failed request to a node. `timeout` is the request timeout the client applies
/// (named when the request timed out).
pub fn describe_request_error(e: &reqwest::Error, timeout: Duration) -> String {
    describe_request_error_with(e, timeout, None)
}

/// [`describe_request_error`] for a client that also has a connect timeout (TCP connect and
/// TLS handshake): a timeout while connecting names that one.
pub fn describe_request_error_with(
    e: &reqwest::Error,
    timeout: Duration,
    connect_timeout: Option<Duration>,
) -> String {
    let errors = chain(e);
    // The most specific cause first: TLS, then the socket, then timeouts.
    if let Some(tls) = errors
        .iter()
        .find_map(|x| x.downcast_ref::<rustls::Error>())
    {
        return describe_tls(tls);
    }
    if e.is_timeout()
        || errors.iter().any(|x| {
            x.downcast_ref::<io::Error>()
                .is_some_and(|io_err| io_err.kind() == io::ErrorKind::TimedOut)
        })
    {
        return match connect_timeout {
            Some(connect) if e.is_connect() => connect_timed_out(connect),
            _ => timed_out(timeout),
        };
    }
    if let Some(kind) = errors
        .iter()
        .filter_map(|x| x.downcast_ref::<io::Error>())
        .map(io::Error::kind)
        .find(|k| {
            !matches!(
                k,
                io::ErrorKind::Other | io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
            )
        })
    {
        match kind {
            io::ErrorKind::ConnectionRefused => {
                return "connection refused (nothing listening at the node's address)".into()
            }
            io::ErrorKind::ConnectionReset => return "connection reset by the node".into(),
            io::ErrorKind::UnexpectedEof => {
                return "the node closed the connection before answering".into()
            }
            _ => {}
        }
    }
    if let Some(h) = errors.iter().find_map(|x| x.downcast_ref::<hyper::Error>()) {
        if h.is_incomplete_message() || h.is_canceled() {
            return "the node closed the connection before answering".into();
        }
    }
    joined(&errors, e)
}

/// The distinct messages of the chain joined with ": ", each once: an outer message that
/// already quotes an inner one is not followed by it again, and the outermost loses its URL.
fn joined(errors: &[&(dyn StdError + 'static)], top: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (i, err) in errors.iter().enumerate() {
        let text = if i == 0 {
            top_without_url(top)
        } else {
            err.to_string()
        };
        let text = text.trim().to_owned();
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    if parts.is_empty() {
        "request failed".into()
    } else {
        parts.join(": ")
    }
}

/// reqwest's own message ("error sending request", "error decoding response body", ...) without
/// the "for url (...)" it appends.
fn top_without_url(e: &reqwest::Error) -> String {
    let text = e.to_string();
    match e.url() {
        Some(url) => text
            .replace(&format!(" for url ({url})"), "")
            .replace(url.as_str(), "the node"),
        None => text,
    }
}

/// A TLS failure towards a node, with what to check.
pub fn describe_tls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let what = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "the node's certificate is not trusted: its issuer is not the \
                                 --node-ca certificate (and it is not pinned in cluster.json)"
                .to_owned(),
            C::ApplicationVerificationFailure => "the node's certificate is not trusted: its \
                                                  fingerprint is not pinned in cluster.json"
                .to_owned(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the node's certificate does not name the host of its URL in cluster.json"
                    .to_owned()
            }
            C::Expired | C::ExpiredContext { .. } => {
                "the node's certificate has expired".to_owned()
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the node's certificate is not valid yet".to_owned()
            }
            C::Revoked => "the node's certificate is revoked".to_owned(),
            other => format!("the node's certificate is not trusted ({other:?})"),
        },
        rustls::Error::AlertReceived(alert) => format!(
            "the node rejected the connection (TLS alert {alert:?}; does it trust the \
             combiner's client certificate?)"
        ),
        rustls::Error::InvalidMessage(_) => {
            "the node did not speak TLS (is its URL https and the port right?)".to_owned()
        }
        other => other.to_string(),
    };
    format!("TLS failure: {what}")
}

/// A node's non-success answer: status, reason and the start of its body.
pub fn describe_status(status: StatusCode, body: &str) -> String {
    let code = status.as_u16();
    let reason = status
        .canonical_reason()
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let snippet = snippet(body, BODY_SNIPPET_CHARS);
    if snippet.is_empty() {
        format!("HTTP {code}{reason} (empty body)")
    } else {
        format!("HTTP {code}{reason}: {snippet}")
    }
}

/// `text` on one line (whitespace runs become one space), at most `max` characters: when
/// longer, cut at the last space in the second half of the limit (else at the limit) and marked
/// with "…".
pub fn snippet(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some((cut, _)) = flat.char_indices().nth(max) else {
        return flat;
    };
    let head = &flat[..cut];
    let half = flat.char_indices().nth(max / 2).map_or(0, |(i, _)| i);
    let end = match head.rfind(' ') {
        Some(space) if space >= half => space,
        _ => cut,
    };
    format!("{}…", head[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_flattens_and_cuts_at_a_word() {
        assert_eq!(snippet("  a\n b\t\tc  ", 10), "a b c");
        assert_eq!(snippet("", 10), "");
        let long = format!("{} {}", "x".repeat(150), "y".repeat(100));
        let s = snippet(&long, 200);
        assert_eq!(s, format!("{}…", "x".repeat(150)));
        // No space in the second half: cut at the limit, on a character boundary.
        let s = snippet(&"é".repeat(300), 200);
        assert_eq!(s.chars().count(), 201);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn status_names_code_reason_and_body() {
        assert_eq!(
            describe_status(StatusCode::INTERNAL_SERVER_ERROR, "disk\nfull"),
            "HTTP 500 Internal Server Error: disk full"
        );
        assert_eq!(
            describe_status(StatusCode::BAD_GATEWAY, " "),
            "HTTP 502 Bad Gateway (empty body)"
        );
    }

    #[test]
    fn tls_failures_say_what_to_check() {
        let unknown = describe_tls(&rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert!(unknown.starts_with("TLS failure: "), "{unknown}");
        assert!(unknown.contains("not trusted") && unknown.contains("--node-ca"));
        let alert = describe_tls(&rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA,
        ));
        assert!(alert.contains("UnknownCA") && alert.contains("client certificate"));
    }

    #[test]
    fn chain_steps_into_the_error_an_io_error_wraps() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io_err = io::Error::new(io::ErrorKind::InvalidData, tls);
        let outer: Box<dyn StdError + Send + Sync> = Box::new(io_err);
        let errors = chain(&*outer);
        assert_eq!(errors.len(), 2);
        assert!(errors[1].downcast_ref::<rustls::Error>().is_some());
    }
}
