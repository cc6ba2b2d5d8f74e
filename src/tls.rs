//! rustls configurations for the signer node, the combiner and peers, plus a development PKI.
//!
//! - [`server_config`]: certificate chain and key from PEM files (cert-manager friendly), ALPN
//!   `http/1.1`, and client authentication by CA, by an allow-list of SHA-256 certificate
//!   fingerprints (Web3Signer's "known clients" file: `NAME FINGERPRINT` per line), by either,
//!   or not at all.
//! - [`client_config`]: a server certificate is accepted when it chains to the configured CA
//!   (with the host name checked) or when its fingerprint is pinned; optionally presents a client
//!   certificate.
//! - [`DevPki`]: a throw-away CA with server and client certificates for tests and `dvsigner dev`.
//!
//! Invariants: the `ring` provider is used explicitly (the crate is built without aws-lc-rs);
//! whichever way a peer certificate is accepted, the handshake signature is always verified
//! against that certificate's key, so a fingerprint allow-list cannot be passed by replaying a
//! certificate without its private key. Private keys written here are created with mode 0600.
//!
//! Specs: RFC 8446 (TLS 1.3), RFC 5280 (X.509), Web3Signer's TLS options
//! (<https://docs.web3signer.consensys.io/how-to/configure-tls>).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// Errors building TLS configurations or the development PKI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM file holds no certificate.
    #[error("{path}: no certificate found")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A PEM file holds no PKCS#8, PKCS#1 or SEC1 private key.
    #[error("{path}: no private key found")]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A CA file could not be turned into trust anchors.
    #[error("{path}: unusable CA certificate: {reason}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A line of the allowed-clients file is malformed.
    #[error("{path}:{line}: {reason}")]
    AllowedClients {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A fingerprint is not 32 bytes of hex (with or without colons).
    #[error("invalid sha-256 fingerprint {0:?}")]
    Fingerprint(String),
    /// A client configuration would accept no server at all.
    #[error("no way to authenticate the server: give a CA or at least one pinned fingerprint")]
    NoServerTrust,
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A development PKI name is not a simple DNS-like label.
    #[error("invalid certificate name {0:?}: use letters, digits, '-' and '.'")]
    InvalidName(String),
}

/// SHA-256 of a certificate's DER encoding. Prints as upper-case colon-separated hex (the
/// `openssl x509 -fingerprint -sha256` form); parses with or without colons, in any case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Parses 64 hex digits, optionally separated by `:`, optionally prefixed by `sha256:` or
    /// `0x`.
    ///
    /// # Errors
    /// [`Error::Fingerprint`] for anything else.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        let t = t
            .strip_prefix("sha256:")
            .or_else(|| t.strip_prefix("SHA256:"))
            .unwrap_or(t);
        let t = t.strip_prefix("0x").unwrap_or(t);
        let hex_digits: String = t.chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        if hex_digits.len() != 64 || hex::decode_to_slice(&hex_digits, &mut out).is_err() {
            return Err(Error::Fingerprint(s.to_owned()));
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The PEM files of a TLS server (all paths, never contents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Require client certificates chaining to this CA.
    pub client_ca: Option<PathBuf>,
    /// Require client certificates whose SHA-256 fingerprint is listed in this file.
    pub allowed_clients: Option<PathBuf>,
}

/// The rustls crypto provider used everywhere: `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server configuration.
///
/// Client authentication: with `client_ca` only, a client certificate chaining to that CA is
/// required; with `allowed_clients` only, a client certificate whose fingerprint is listed is
/// required (self-signed is fine); with both, a certificate satisfying *either* is accepted;
/// with neither, no client certificate is requested. ALPN offers `http/1.1`.
///
/// # Errors
/// Unreadable or empty PEM files, a malformed allowed-clients file, or a key that does not
/// match the certificate.
pub fn server_config(files: &ServerTlsFiles) -> Result<Arc<rustls::ServerConfig>, Error> {
    let provider = provider();
    let certs = load_certs(&files.cert)?;
    let key = load_private_key(&files.key)?;
    let ca_verifier = match &files.client_ca {
        Some(path) => {
            let roots = Arc::new(load_roots(path)?);
            let v = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| Error::BadCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            Some(v)
        }
        None => None,
    };
    let allowed = match &files.allowed_clients {
        Some(path) => Some(load_allowed_clients(path)?),
        None => None,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match (ca_verifier, allowed) {
        (None, None) => builder.with_no_client_auth(),
        (Some(ca), None) => builder.with_client_cert_verifier(ca),
        (ca, Some(allowed)) => {
            let verifier = AllowListClientVerifier {
                allowed: allowed.into_values().collect(),
                ca,
                provider: provider.clone(),
            };
            builder.with_client_cert_verifier(Arc::new(verifier))
        }
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `config` offering HTTP/2 as well: ALPN `h2` first, then `http/1.1` (clients without ALPN or
/// without `h2` keep HTTP/1.1). [`crate::http::server::run`] serves whichever was chosen.
pub fn with_http2(config: Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// How a client authenticates servers, and which identity it presents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsOptions {
    /// Accept servers whose certificate chains to this CA (host name checked).
    pub ca: Option<PathBuf>,
    /// Accept servers whose certificate has one of these fingerprints (host name not checked:
    /// the pin identifies the server).
    pub pinned: Vec<Fingerprint>,
    /// Client certificate chain and key PEM files to present, for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Builds a client configuration (ALPN `http/1.1`), e.g. for `reqwest`'s
/// `use_preconfigured_tls` or `tokio_rustls::TlsConnector`.
///
/// # Errors
/// [`Error::NoServerTrust`] when neither a CA nor a pin is given; file and key errors as in
/// [`server_config`].
pub fn client_config(options: ClientTlsOptions) -> Result<rustls::ClientConfig, Error> {
    let provider = provider();
    let ca = match &options.ca {
        Some(path) => {
            let roots = Arc::new(load_roots(path)?);
            let v = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| Error::BadCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            Some(v)
        }
        None => None,
    };
    if ca.is_none() && options.pinned.is_empty() {
        return Err(Error::NoServerTrust);
    }
    let verifier = PinnedOrCaServerVerifier {
        pinned: options.pinned.clone(),
        ca,
        provider: provider.clone(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match &options.identity {
        Some((cert, key)) => {
            builder.with_client_auth_cert(load_certs(cert)?, load_private_key(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Reads every certificate of a PEM file, in order.
///
/// # Errors
/// [`Error::Io`] when unreadable, [`Error::NoCertificate`] when it holds none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
///
/// # Errors
/// [`Error::Io`] when unreadable, [`Error::NoPrivateKey`] when it holds none.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = zeroize::Zeroizing::new(read(path)?);
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| Error::NoPrivateKey {
            path: path.to_owned(),
        })
}

/// Parses an allowed-clients file: one `NAME FINGERPRINT` per line, `#` starts a comment,
/// blank lines ignored. Returns name -> fingerprint.
///
/// # Errors
/// [`Error::AllowedClients`] naming the first bad line (missing field, bad fingerprint,
/// repeated name), [`Error::Io`] when unreadable.
pub fn load_allowed_clients(path: &Path) -> Result<BTreeMap<String, Fingerprint>, Error> {
    let text = String::from_utf8(read(path)?).map_err(|_| Error::AllowedClients {
        path: path.to_owned(),
        line: 0,
        reason: "not utf-8".into(),
    })?;
    parse_allowed_clients(&text).map_err(|(line, reason)| Error::AllowedClients {
        path: path.to_owned(),
        line,
        reason,
    })
}

fn parse_allowed_clients(text: &str) -> Result<BTreeMap<String, Fingerprint>, (usize, String)> {
    let mut out = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(fp), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err((n + 1, "expected `NAME SHA256-FINGERPRINT`".into()));
        };
        let fp = Fingerprint::parse(fp).map_err(|e| (n + 1, e.to_string()))?;
        if out.insert(name.to_owned(), fp).is_some() {
            return Err((n + 1, format!("client name {name:?} listed twice")));
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn load_roots(path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| Error::BadCa {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Client-certificate verifier: accepts a listed fingerprint, or (when configured) anything the
/// CA verifier accepts. Client authentication is mandatory.
#[derive(Debug)]
struct AllowListClientVerifier {
    allowed: Vec<Fingerprint>,
    ca: Option<Arc<dyn ClientCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AllowListClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would steer clients towards CA-issued certificates; a listed self-signed
        // certificate has no CA to hint at, so send none and let clients present theirs.
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.allowed.contains(&Fingerprint::of_der(end_entity)) {
            return Ok(ClientCertVerified::assertion());
        }
        match &self.ca {
            Some(ca) => ca.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
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

/// Server-certificate verifier: accepts a pinned fingerprint, or whatever the CA verifier
/// (chain + host name) accepts.
#[derive(Debug)]
struct PinnedOrCaServerVerifier {
    pinned: Vec<Fingerprint>,
    ca: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedOrCaServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pinned.contains(&Fingerprint::of_der(end_entity)) {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.ca {
            Some(ca) => {
                ca.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
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

/// One certificate + key pair written by [`DevPki`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevIdentity {
    /// The name it was generated for (common name, file stem, extra DNS SAN).
    pub name: String,
    /// `<dir>/<name>.pem`.
    pub cert: PathBuf,
    /// `<dir>/<name>-key.pem` (mode 0600).
    pub key: PathBuf,
    /// SHA-256 of the certificate DER.
    pub fingerprint: Fingerprint,
}

/// A development PKI: one CA and server/client certificates it signed, as PEM files.
/// For tests and `dvsigner dev` only: the CA key sits next to the certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPki {
    /// `<dir>/ca.pem`.
    pub ca_cert: PathBuf,
    /// `<dir>/ca-key.pem` (mode 0600).
    pub ca_key: PathBuf,
    /// Fingerprint of the CA certificate.
    pub ca_fingerprint: Fingerprint,
    /// Server certificates (extended key usage serverAuth), in the order asked for.
    pub servers: Vec<DevIdentity>,
    /// Client certificates (extended key usage clientAuth), in the order asked for.
    pub clients: Vec<DevIdentity>,
}

impl DevPki {
    /// Generates a CA and one certificate per name into `dir` (created if missing), each with
    /// subject alternative names `<name>` (when it differs), `localhost` and `127.0.0.1`, and
    /// ECDSA P-256 keys.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for names other than DNS-like labels, I/O and generation errors.
    pub fn generate(
        dir: &Path,
        server_names: &[&str],
        client_names: &[&str],
    ) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dvsigner dev CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key)?;
        let ca_cert = dir.join("ca.pem");
        let ca_key_path = dir.join("ca-key.pem");
        write_public(&ca_cert, &ca.pem())?;
        write_secret(&ca_key_path, &ca_key.serialize_pem())?;
        let issue =
            |name: &str, eku: rcgen::ExtendedKeyUsagePurpose| -> Result<DevIdentity, Error> {
                let (params, key) = leaf_params(name, eku)?;
                let cert = params.signed_by(&key, &ca, &ca_key)?;
                write_identity(dir, name, &cert, &key)
            };
        let servers = server_names
            .iter()
            .map(|n| issue(n, rcgen::ExtendedKeyUsagePurpose::ServerAuth))
            .collect::<Result<Vec<_>, _>>()?;
        let clients = client_names
            .iter()
            .map(|n| issue(n, rcgen::ExtendedKeyUsagePurpose::ClientAuth))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            ca_cert,
            ca_key: ca_key_path,
            ca_fingerprint: Fingerprint::of_der(ca.der()),
            servers,
            clients,
        })
    }

    /// The server or client identity called `name`.
    pub fn identity(&self, name: &str) -> Option<&DevIdentity> {
        self.servers
            .iter()
            .chain(&self.clients)
            .find(|i| i.name == name)
    }
}

/// Generates a self-signed certificate (usable both as server and client, SANs as in
/// [`DevPki::generate`]) into `dir`, for fingerprint-pinning setups.
///
/// # Errors
/// As [`DevPki::generate`].
pub fn generate_self_signed(dir: &Path, name: &str) -> Result<DevIdentity, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let (mut params, key) = leaf_params(name, rcgen::ExtendedKeyUsagePurpose::ServerAuth)?;
    params
        .extended_key_usages
        .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    let cert = params.self_signed(&key)?;
    write_identity(dir, name, &cert, &key)
}

fn leaf_params(
    name: &str,
    eku: rcgen::ExtendedKeyUsagePurpose,
) -> Result<(rcgen::CertificateParams, rcgen::KeyPair), Error> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !name.starts_with(['-', '.']);
    if !valid {
        return Err(Error::InvalidName(name.to_owned()));
    }
    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if !sans.iter().any(|s| s == name) {
        sans.insert(0, name.to_owned());
    }
    let mut params = rcgen::CertificateParams::new(sans)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    Ok((params, rcgen::KeyPair::generate()?))
}

fn write_identity(
    dir: &Path,
    name: &str,
    cert: &rcgen::Certificate,
    key: &rcgen::KeyPair,
) -> Result<DevIdentity, Error> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    write_public(&cert_path, &cert.pem())?;
    write_secret(&key_path, &key.serialize_pem())?;
    Ok(DevIdentity {
        name: name.to_owned(),
        cert: cert_path,
        key: key_path,
        fingerprint: Fingerprint::of_der(cert.der()),
    })
}

fn write_public(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes a private key readable by the owner only (0600 on Unix, also when it existed).
fn write_secret(path: &Path, contents: &str) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let contents = zeroize::Zeroizing::new(contents.to_owned());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let mut f = opts.open(path).map_err(io)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        f.write_all(contents.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }
    #[cfg(not(unix))]
    {
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(contents.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_parses_both_forms_and_prints_colon_hex() {
        let bytes: [u8; 32] = core::array::from_fn(|i| i as u8 * 7);
        let fp = Fingerprint(bytes);
        let colon = fp.to_string();
        assert_eq!(colon.len(), 32 * 3 - 1);
        assert!(colon.starts_with("00:07:0E:15"), "{colon}");
        assert_eq!(Fingerprint::parse(&colon).expect("colon"), fp);
        assert_eq!(Fingerprint::parse(&hex::encode(bytes)).expect("plain"), fp);
        assert_eq!(
            Fingerprint::parse(&colon.to_lowercase()).expect("lower"),
            fp
        );
        assert!(Fingerprint::parse("00:11").is_err());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn fingerprint_of_der_is_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let fp = Fingerprint::of_der(b"abc");
        assert_eq!(
            hex::encode(fp.0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn allowed_clients_file_format() {
        let a = "AA".repeat(32);
        let b = Fingerprint([0xbb; 32]).to_string();
        let text = format!("# known clients\n\ncombiner {a}  # trailing comment\nbackup {b}\n");
        let m = parse_allowed_clients(&text).expect("valid");
        assert_eq!(m.len(), 2);
        assert_eq!(m["combiner"], Fingerprint([0xaa; 32]));
        assert_eq!(m["backup"], Fingerprint([0xbb; 32]));
        assert_eq!(
            parse_allowed_clients("lonely\n").err().map(|e| e.0),
            Some(1)
        );
        assert_eq!(
            parse_allowed_clients(&format!("a {a}\na {b}\n"))
                .err()
                .map(|e| e.0),
            Some(2)
        );
        assert_eq!(
            parse_allowed_clients("x 1234\n").err().map(|e| e.0),
            Some(1)
        );
    }

    #[test]
    fn client_config_needs_some_trust() {
        assert!(matches!(
            client_config(ClientTlsOptions::default()),
            Err(Error::NoServerTrust)
        ));
    }

    #[test]
    fn dev_pki_writes_files_with_private_keys_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::generate(dir.path(), &["node-a"], &["combiner"]).expect("pki");
        for path in [&pki.ca_cert, &pki.servers[0].cert, &pki.clients[0].cert] {
            assert_eq!(load_certs(path).expect("cert").len(), 1);
        }
        let leaf = load_certs(&pki.servers[0].cert).expect("cert");
        assert_eq!(Fingerprint::of_der(&leaf[0]), pki.servers[0].fingerprint);
        for path in [&pki.ca_key, &pki.servers[0].key, &pki.clients[0].key] {
            assert!(load_private_key(path).is_ok());
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path).expect("meta").permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", path.display());
            }
        }
        assert!(DevPki::generate(dir.path(), &["../evil"], &[]).is_err());
        assert!(pki.identity("combiner").is_some());
    }

    #[test]
    fn error_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
