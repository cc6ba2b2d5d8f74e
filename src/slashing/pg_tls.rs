//! How the PostgreSQL store reaches its server: the libpq TLS parameters of a `postgres://`
//! URL (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) over rustls (ring, no OpenSSL); every
//! other parameter goes to tokio-postgres as it is.
//!
//! Modes, with libpq's meanings:
//! - `disable`: plain TCP;
//! - `prefer`: TLS when the server offers it, its certificate not verified; plain TCP when the
//!   server does not offer TLS;
//! - `require`: TLS or no connection, the certificate not verified; with `sslrootcert` given it
//!   is `verify-ca` (libpq's rule);
//! - `verify-ca`: TLS, and the server certificate must chain to `sslrootcert` (to the Mozilla
//!   root programme's CAs when it is not given); the host name is not checked;
//! - `verify-full`: `verify-ca`, and the certificate must also be valid for the host name of
//!   the URL.
//!
//! Without `sslmode` the mode is `verify-full` when `sslrootcert` is given or when a host is
//! not on this machine, and `prefer` when every host is a loopback address, `localhost` or a
//! Unix-socket directory (traffic that never leaves the machine). libpq's own default,
//! `prefer`, would let anyone on the network path answer "no TLS" and then read the password
//! (with the `password` method) and every record, or forge the database's answers.
//!
//! Invariants: under `require`, `verify-ca` and `verify-full` nothing but the 8-byte TLS request
//! is sent before the TLS handshake has succeeded (a server without TLS ends the attempt there,
//! so no password or startup message goes out in clear); the certificate files are read at every
//! connection attempt, so a renewed certificate is used from the next reconnection on; the
//! handshake signature is always verified, also in the modes that do not verify the certificate.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS stream type of a connection.
type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

use super::Error;

/// The libpq `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when offered, unverified; else plain TCP.
    Prefer,
    /// TLS, unverified.
    Require,
    /// TLS, certificate chained to a trusted CA.
    VerifyCa,
    /// TLS, certificate chained to a trusted CA and valid for the host name.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    /// The libpq name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `postgres://` URL: the tokio-postgres settings plus the TLS ones.
pub(crate) struct PgTarget {
    config: tokio_postgres::Config,
    mode: SslMode,
    root_cert: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    /// `host:port, …` for messages.
    hosts: String,
}

/// Checks a `postgres://` URL's parameters (TLS ones included) without connecting or reading
/// files; returns the effective `sslmode`.
///
/// # Errors
/// A message naming the parameter at fault (never containing the password).
pub fn check_url(url: &str) -> Result<SslMode, String> {
    PgTarget::parse(url).map(|t| t.mode).map_err(|e| match e {
        Error::PostgresSettings(m) => m,
        other => other.to_string(),
    })
}

impl PgTarget {
    /// Parses `url`, taking out the TLS parameters.
    ///
    /// # Errors
    /// [`Error::PostgresSettings`] for an unknown `sslmode`, half a client identity, or what
    /// tokio-postgres refuses in the rest of the URL.
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let bad = |m: String| Error::PostgresSettings(m);
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (url, ""),
        };
        let mut mode = None;
        let mut root_cert = None;
        let (mut cert, mut key) = (None, None);
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(k).map_err(|m| bad(format!("parameter {m}")))?;
            let value = || percent_decode(v).map_err(|m| bad(format!("{name}: {m}")));
            match name.as_str() {
                "sslmode" => {
                    let v = value()?;
                    mode = Some(SslMode::parse(&v).ok_or_else(|| {
                        bad(format!(
                            "sslmode {v:?} is not one of disable, prefer, require, verify-ca, \
                             verify-full"
                        ))
                    })?);
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(value()?)),
                "sslcert" => cert = Some(PathBuf::from(value()?)),
                "sslkey" => key = Some(PathBuf::from(value()?)),
                _ => rest.push(pair),
            }
        }
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return Err(bad("sslcert is given without sslkey".into())),
            (None, Some(_)) => return Err(bad("sslkey is given without sslcert".into())),
        };
        let rebuilt = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: tokio_postgres::Config = rebuilt
            .parse()
            .map_err(|e: tokio_postgres::Error| bad(describe(&e)))?;
        let mode = match mode {
            Some(SslMode::Require) if root_cert.is_some() => SslMode::VerifyCa,
            Some(m) => m,
            None if root_cert.is_some() || !all_local(&config) => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let hosts = host_list(&config);
        Ok(Self {
            config,
            mode,
            root_cert,
            client_cert,
            hosts,
        })
    }

    /// The effective `sslmode`.
    pub(crate) fn mode(&self) -> SslMode {
        self.mode
    }

    /// Connects (TLS as the mode says).
    ///
    /// # Errors
    /// [`Error::PostgresSettings`] when a certificate or key file is unusable;
    /// [`Error::PostgresConnect`] naming the hosts, the mode and the cause (certificate
    /// verification, no TLS offered, the server's authentication message, …).
    pub(crate) async fn connect(&self) -> Result<(Client, Connection<Socket, TlsStream>), Error> {
        let tls = self.tls_config()?;
        self.config
            .connect(MakeRustlsConnect::new(tls))
            .await
            .map_err(|e| Error::PostgresConnect {
                target: format!("{} (sslmode={})", self.hosts, self.mode),
                reason: describe(&e),
            })
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, Error> {
        let provider = crate::tls::provider();
        let file_error = |e: crate::tls::Error| Error::PostgresSettings(e.to_string());
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(Unverified {
                provider: provider.clone(),
            }),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = match &self.root_cert {
                    Some(path) => crate::tls::load_roots(path).map_err(file_error)?,
                    None => RootCertStore {
                        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                    },
                };
                let chain =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| {
                            Error::PostgresSettings(format!(
                                "sslrootcert {}: {e}",
                                self.root_cert
                                    .as_deref()
                                    .map(Path::display)
                                    .map(|d| d.to_string())
                                    .unwrap_or_default()
                            ))
                        })?;
                if self.mode == SslMode::VerifyCa {
                    Arc::new(ChainOnly(chain))
                } else {
                    chain
                }
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::PostgresSettings(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        match &self.client_cert {
            Some((cert, key)) => {
                let certs = crate::tls::load_certs(cert).map_err(file_error)?;
                let key = crate::tls::load_private_key(key).map_err(file_error)?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    Error::PostgresSettings(format!("sslcert {}: {e}", cert.display()))
                })
            }
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

/// Whether every host is on this machine (loopback address, `localhost`, Unix socket).
fn all_local(config: &tokio_postgres::Config) -> bool {
    let addrs = config.get_hostaddrs();
    if !addrs.is_empty() {
        return addrs.iter().all(IpAddr::is_loopback);
    }
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|h| match h {
            Host::Tcp(name) => {
                name.eq_ignore_ascii_case("localhost")
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Host::Unix(_) => true,
        })
}

fn host_list(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let names: Vec<String> = match config.get_hosts() {
        [] => config
            .get_hostaddrs()
            .iter()
            .map(IpAddr::to_string)
            .collect(),
        hosts => hosts
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(dir) => dir.display().to_string(),
            })
            .collect(),
    };
    names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n}:{}", port(i)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes `%XX` escapes of a URL component.
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let byte = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{s:?}: bad %-escape"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?}: not UTF-8 after %-decoding"))
}

/// One line for a tokio-postgres error, each part said once: the server's own message (with
/// its SQLSTATE, detail and hint) for a server error, otherwise the error's kind followed by its
/// causes, certificate-verification failures named as such.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            s.push_str("; detail: ");
            s.push_str(detail);
        }
        if let Some(hint) = db.hint() {
            s.push_str("; hint: ");
            s.push_str(hint);
        }
        return s.replace('\n', " ");
    }
    let mut parts = vec![e.to_string()];
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = describe_cause(c);
        let said = parts.last().is_some_and(|p| p.ends_with(&text));
        if !text.is_empty() && !said {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ").replace('\n', " ")
}

fn describe_cause(c: &(dyn std::error::Error + 'static)) -> String {
    let tls = c.downcast_ref::<rustls::Error>().or_else(|| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    });
    match tls {
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "server certificate verification failed: it is not issued by a trusted CA \
             (sslrootcert, or the Mozilla roots when none is given)"
                .into()
        }
        #[allow(deprecated)] // webpki reports a signature by a same-named CA this way
        Some(rustls::Error::InvalidCertificate(CertificateError::BadSignature)) => {
            "server certificate verification failed: its signature does not verify with the \
             trusted CA of that name (sslrootcert): it was issued by another CA or altered"
                .into()
        }
        Some(rustls::Error::InvalidCertificate(ce)) => {
            format!("server certificate verification failed: {ce}")
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("the server ended the TLS handshake with alert {alert:?}")
        }
        Some(other) => other.to_string(),
        None => c.to_string(),
    }
}

/// Verifies the handshake signature only (`prefer`, `require`): the certificate itself is
/// accepted as it is.
#[derive(Debug)]
struct Unverified {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca`: the chain (validity, issuer, usage) as the CA verifier checks it, the host name
/// not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // The name is checked last, after the chain, its validity and its key usage.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> SslMode {
        match PgTarget::parse(url) {
            Ok(t) => t.mode(),
            Err(e) => panic!("{url}: {e}"),
        }
    }

    #[test]
    fn default_mode_depends_on_where_the_server_is() {
        assert_eq!(mode("postgres://u:p@127.0.0.1:5432/db"), SslMode::Prefer);
        assert_eq!(mode("postgres://u:p@localhost/db"), SslMode::Prefer);
        assert_eq!(mode("postgres://u:p@[::1]:5432/db"), SslMode::Prefer);
        assert_eq!(mode("postgres://u:p@db.example/db"), SslMode::VerifyFull);
        assert_eq!(mode("postgres://u:p@10.0.0.5/db"), SslMode::VerifyFull);
        assert_eq!(
            mode("postgres://u:p@localhost,db.example/db"),
            SslMode::VerifyFull
        );
        assert_eq!(
            mode("postgres://u:p@db.example/db?hostaddr=127.0.0.1"),
            SslMode::Prefer
        );
        assert_eq!(
            mode("postgres://u:p@127.0.0.1/db?sslrootcert=/ca.pem"),
            SslMode::VerifyFull
        );
        assert_eq!(
            mode("postgres://u:p@db.example/db?sslmode=disable"),
            SslMode::Disable
        );
        // libpq: require with a root certificate verifies the chain.
        assert_eq!(
            mode("postgres://u:p@db.example/db?sslmode=require&sslrootcert=/ca.pem"),
            SslMode::VerifyCa
        );
        assert_eq!(
            mode("postgres://u:p@db.example/db?sslmode=require"),
            SslMode::Require
        );
        assert_eq!(
            mode("postgres://u@h/db?application_name=x&sslmode=verify-ca&connect_timeout=3"),
            SslMode::VerifyCa
        );
    }

    #[test]
    fn tls_parameters_are_taken_out_and_checked() {
        let t = match PgTarget::parse(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem\
             &sslcert=/c.pem&sslkey=/k.pem&application_name=dv",
        ) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(t.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(
            t.client_cert,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
        assert_eq!(t.config.get_application_name(), Some("dv"));
        assert_eq!(t.hosts, "h:5432");
        for (url, expect) in [
            ("postgres://h/db?sslmode=on", "sslmode \"on\" is not one of"),
            (
                "postgres://h/db?sslcert=/c.pem",
                "sslcert is given without sslkey",
            ),
            (
                "postgres://h/db?sslkey=/k.pem",
                "sslkey is given without sslcert",
            ),
            ("postgres://h/db?sslrootcert=%zz", "bad %-escape"),
            ("postgres://h/db?bogus=1", "unknown option `bogus`"),
        ] {
            let e = PgTarget::parse(url).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|m| m.contains(expect)),
                "{url}: {e:?}"
            );
        }
    }
}
