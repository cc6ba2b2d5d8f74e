//! Web3Signer key-config YAML files (`--key-config-path`): parsing only, no I/O.
//!
//! Format (Web3Signer docs, "Key configuration files"): a `.yaml`/`.yml` file holds one or more
//! YAML documents; each is a mapping whose `type` selects the signer. Supported here:
//! - `type: file-raw` with `privateKey` (`0x`-prefixed or bare hex, 32 bytes);
//! - `type: file-keystore` with `keystoreFile` (EIP-2335 JSON) and `keystorePasswordFile`
//!   (first line is the password), both resolved against the key-config directory when relative;
//! - `type: hashicorp` (HashiCorp Vault KV v2, read by [`crate::keys::vault`]) with Web3Signer's
//!   fields: `serverHost` (required), `keyPath` (required, `/v1/<mount>/data/<path>`), `keyName`
//!   (default `value`), `serverPort` (default 8200), `token`, `timeout` (milliseconds, default
//!   10000), `tlsEnabled` (default false), `tlsKnownServersPath` (resolved like the paths above),
//!   `httpProtocolVersion` (`HTTP_1_1`/`HTTP_2`; accepted, requests use HTTP/1.1), and
//!   `authMethod`: `TOKEN` (default; without `token`, the `DVSIGNER_VAULT_TOKEN` environment
//!   variable is used) or `KUBERNETES` (Vault's Kubernetes auth method: `kubernetesRole`
//!   required, `kubernetesServiceAccountTokenPath` default
//!   `/var/run/secrets/kubernetes.io/serviceaccount/token` resolved like the paths above,
//!   `kubernetesAuthPath` the auth mount, default `kubernetes`). The fields of one method are
//!   refused with the other (`token` with `KUBERNETES`, `kubernetes*` with `TOKEN`).
//!
//! All accept the optional `keyType: BLS`. Unknown fields are refused (as Web3Signer's Jackson
//! mapper does), and other `type`s (`azure-secret`, `aws-secret`, ...) are reported as not
//! supported yet.
//!
//! Invariants: a raw private key is moved straight into a [`Zeroizing`] buffer, and no error
//! message ever quotes a field value, so a malformed key cannot leak through logs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use yaml_serde::{Mapping, Value};
use zeroize::Zeroizing;

/// Errors in one YAML document of a key-config file. Messages never contain field values.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The file is not valid YAML.
    #[error("invalid yaml: {0}")]
    Yaml(String),
    /// The document is not a mapping.
    #[error("document is not a mapping")]
    NotMapping,
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field that must be a string is not one (an unquoted hex key, for instance).
    #[error("field `{0}` must be a string")]
    NotString(String),
    /// A field this `type` does not know.
    #[error("unknown field `{field}` for type {kind}")]
    UnknownField {
        /// The field name.
        field: String,
        /// The document's `type`.
        kind: &'static str,
    },
    /// A `type` this signer cannot load (yet).
    #[error("key type {0:?} not supported yet")]
    UnsupportedType(String),
    /// `keyType` is not `BLS`.
    #[error("keyType {0:?} not supported (only BLS)")]
    UnsupportedKeyType(String),
    /// `privateKey` is not 32 bytes of hex.
    #[error("privateKey is not 32 bytes of hex")]
    PrivateKey,
    /// A field holds a value of the wrong kind (a port that is not a number, for instance).
    #[error("field `{0}` has an invalid value")]
    InvalidValue(&'static str),
    /// `authMethod` names a method this signer does not implement.
    #[error("authMethod {0:?} not supported (TOKEN, KUBERNETES)")]
    UnsupportedAuthMethod(String),
    /// A field that belongs to another `authMethod`.
    #[error("field `{field}` does not apply to authMethod {method}")]
    WrongAuthField {
        /// The field name.
        field: &'static str,
        /// The document's `authMethod`.
        method: &'static str,
    },
}

/// Where a Kubernetes pod's service-account token is mounted by default.
pub const DEFAULT_SERVICE_ACCOUNT_TOKEN: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The default mount of Vault's Kubernetes auth method.
pub const DEFAULT_KUBERNETES_AUTH_PATH: &str = "kubernetes";

/// `authMethod: KUBERNETES`: log in to Vault with the pod's service-account token
/// (`POST /v1/auth/<auth_path>/login` with `{"role", "jwt"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesAuthConfig {
    /// `kubernetesRole`: the Vault role to log in as.
    pub role: String,
    /// `kubernetesServiceAccountTokenPath`, resolved against the key-config directory. Read at
    /// each login (Kubernetes rotates the token).
    pub service_account_token_path: PathBuf,
    /// `kubernetesAuthPath`: the auth method's mount, without slashes (default `kubernetes`).
    pub auth_path: String,
}

/// A `type: hashicorp` document: where one key lives in Vault (Web3Signer field names in the
/// docs). Parsed only; [`crate::keys::vault::read_key_config_blocking`] reads the key.
pub struct HashicorpKeyConfig {
    /// `serverHost`.
    pub server_host: String,
    /// `serverPort` (default 8200).
    pub server_port: u16,
    /// `keyPath`: the KV v2 HTTP path, `/v1/<mount>/data/<path>`.
    pub key_path: String,
    /// `keyName`: the field of the secret holding the hex key (default `value`).
    pub key_name: String,
    /// `token` (None: use the `DVSIGNER_VAULT_TOKEN` environment variable, unless `kubernetes`).
    pub token: Option<Zeroizing<String>>,
    /// `authMethod: KUBERNETES` and its fields (None: `TOKEN`).
    pub kubernetes: Option<KubernetesAuthConfig>,
    /// `timeout` (default 10 s).
    pub timeout: Duration,
    /// `tlsEnabled` (default false).
    pub tls_enabled: bool,
    /// `tlsKnownServersPath`, resolved against the key-config directory.
    pub tls_known_servers_path: Option<PathBuf>,
}

impl std::fmt::Debug for HashicorpKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashicorpKeyConfig")
            .field("server_host", &self.server_host)
            .field("server_port", &self.server_port)
            .field("key_path", &self.key_path)
            .field("key_name", &self.key_name)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("kubernetes", &self.kubernetes)
            .field("timeout", &self.timeout)
            .field("tls_enabled", &self.tls_enabled)
            .field("tls_known_servers_path", &self.tls_known_servers_path)
            .finish()
    }
}

const HASHICORP_FIELDS: &[&str] = &[
    "serverHost",
    "serverPort",
    "keyPath",
    "keyName",
    "token",
    "timeout",
    "tlsEnabled",
    "tlsKnownServersPath",
    "httpProtocolVersion",
    "authMethod",
    "kubernetesRole",
    "kubernetesServiceAccountTokenPath",
    "kubernetesAuthPath",
];

/// One usable key definition from a key-config document.
pub enum KeyConfigEntry {
    /// `file-raw`: the key itself.
    FileRaw {
        /// The 32-byte big-endian scalar.
        private_key: Zeroizing<[u8; 32]>,
    },
    /// `file-keystore`: paths already resolved against the key-config directory.
    FileKeystore {
        /// The EIP-2335 keystore.
        keystore_file: PathBuf,
        /// The password file.
        password_file: PathBuf,
    },
    /// `hashicorp`: a key in HashiCorp Vault.
    Hashicorp(HashicorpKeyConfig),
}

/// Parses every document of a key-config file. Returns one result per non-empty document, with
/// its 1-based position in the file. A YAML syntax error ends the list with an error entry.
pub fn parse_key_config(
    text: &str,
    base_dir: &Path,
) -> Vec<(usize, Result<KeyConfigEntry, Error>)> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        match Value::deserialize(doc) {
            Ok(Value::Null) => {}
            Ok(Value::Mapping(m)) => out.push((n, parse_document(m, base_dir))),
            Ok(_) => out.push((n, Err(Error::NotMapping))),
            Err(e) => {
                out.push((n, Err(Error::Yaml(yaml_error_location(&e)))));
                break;
            }
        }
    }
    out
}

/// The YAML parser's message can quote the offending scalar, so keep only the location.
fn yaml_error_location(e: &yaml_serde::Error) -> String {
    match e.location() {
        Some(l) => format!("syntax error at line {} column {}", l.line(), l.column()),
        None => "syntax error".to_owned(),
    }
}

fn parse_document(mut m: Mapping, base_dir: &Path) -> Result<KeyConfigEntry, Error> {
    let kind = take_string(&mut m, "type")?.ok_or(Error::MissingField("type"))?;
    let (kind, allowed): (&'static str, &[&str]) = match kind.as_str() {
        "file-raw" => ("file-raw", &["privateKey"]),
        "file-keystore" => ("file-keystore", &["keystoreFile", "keystorePasswordFile"]),
        "hashicorp" => ("hashicorp", HASHICORP_FIELDS),
        _ => return Err(Error::UnsupportedType(kind)),
    };
    if let Some(key_type) = take_string(&mut m, "keyType")? {
        if key_type != "BLS" {
            return Err(Error::UnsupportedKeyType(key_type));
        }
    }
    for key in m.keys() {
        let name = key.as_str().unwrap_or("<non-string key>");
        if !allowed.contains(&name) {
            return Err(Error::UnknownField {
                field: name.to_owned(),
                kind,
            });
        }
    }
    if kind == "file-raw" {
        let hex_key = match m.remove("privateKey") {
            Some(Value::String(s)) => Zeroizing::new(s),
            Some(_) => return Err(Error::NotString("privateKey".to_owned())),
            None => return Err(Error::MissingField("privateKey")),
        };
        let digits = hex_key.strip_prefix("0x").unwrap_or(&hex_key);
        let mut private_key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(digits, private_key.as_mut()).map_err(|_| Error::PrivateKey)?;
        return Ok(KeyConfigEntry::FileRaw { private_key });
    }
    if kind == "hashicorp" {
        return parse_hashicorp(m, base_dir).map(KeyConfigEntry::Hashicorp);
    }
    let keystore_file =
        take_string(&mut m, "keystoreFile")?.ok_or(Error::MissingField("keystoreFile"))?;
    let password_file = take_string(&mut m, "keystorePasswordFile")?
        .ok_or(Error::MissingField("keystorePasswordFile"))?;
    Ok(KeyConfigEntry::FileKeystore {
        keystore_file: base_dir.join(keystore_file),
        password_file: base_dir.join(password_file),
    })
}

const KUBERNETES_FIELDS: [&str; 3] = [
    "kubernetesRole",
    "kubernetesServiceAccountTokenPath",
    "kubernetesAuthPath",
];

fn parse_hashicorp(mut m: Mapping, base_dir: &Path) -> Result<HashicorpKeyConfig, Error> {
    let kubernetes = match take_string(&mut m, "authMethod")?.as_deref() {
        None | Some("TOKEN") => {
            if let Some(field) = KUBERNETES_FIELDS.into_iter().find(|f| m.contains_key(*f)) {
                return Err(Error::WrongAuthField {
                    field,
                    method: "TOKEN",
                });
            }
            None
        }
        Some("KUBERNETES") => {
            if m.contains_key("token") {
                return Err(Error::WrongAuthField {
                    field: "token",
                    method: "KUBERNETES",
                });
            }
            let role = take_string(&mut m, "kubernetesRole")?
                .filter(|r| !r.is_empty())
                .ok_or(Error::MissingField("kubernetesRole"))?;
            let service_account_token_path =
                take_string(&mut m, "kubernetesServiceAccountTokenPath")?
                    .filter(|p| !p.is_empty())
                    .map_or_else(
                        || PathBuf::from(DEFAULT_SERVICE_ACCOUNT_TOKEN),
                        |p| base_dir.join(p),
                    );
            let auth_path = match take_string(&mut m, "kubernetesAuthPath")? {
                None => DEFAULT_KUBERNETES_AUTH_PATH.to_owned(),
                Some(p) => {
                    let p = p.trim_matches('/');
                    if p.is_empty() {
                        return Err(Error::InvalidValue("kubernetesAuthPath"));
                    }
                    p.to_owned()
                }
            };
            Some(KubernetesAuthConfig {
                role,
                service_account_token_path,
                auth_path,
            })
        }
        Some(other) => return Err(Error::UnsupportedAuthMethod(other.to_owned())),
    };
    if let Some(version) = take_string(&mut m, "httpProtocolVersion")? {
        if version != "HTTP_1_1" && version != "HTTP_2" {
            return Err(Error::InvalidValue("httpProtocolVersion"));
        }
    }
    let token = match m.remove("token") {
        None => None,
        Some(Value::String(s)) => Some(Zeroizing::new(s)),
        Some(_) => return Err(Error::NotString("token".to_owned())),
    };
    let server_port = match take_u64(&mut m, "serverPort")? {
        None => 8200,
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(Error::InvalidValue("serverPort"))?,
    };
    let timeout = match take_u64(&mut m, "timeout")? {
        None => Duration::from_millis(10_000),
        Some(0) => return Err(Error::InvalidValue("timeout")),
        Some(ms) => Duration::from_millis(ms),
    };
    let tls_enabled = match m.remove("tlsEnabled") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(Error::InvalidValue("tlsEnabled")),
    };
    let server_host = take_string(&mut m, "serverHost")?
        .filter(|h| !h.is_empty())
        .ok_or(Error::MissingField("serverHost"))?;
    let key_path = take_string(&mut m, "keyPath")?
        .filter(|p| !p.is_empty())
        .ok_or(Error::MissingField("keyPath"))?;
    let key_name = take_string(&mut m, "keyName")?.unwrap_or_else(|| "value".to_owned());
    let tls_known_servers_path =
        take_string(&mut m, "tlsKnownServersPath")?.map(|p| base_dir.join(p));
    Ok(HashicorpKeyConfig {
        server_host,
        server_port,
        key_path,
        key_name,
        token,
        kubernetes,
        timeout,
        tls_enabled,
        tls_known_servers_path,
    })
}

/// A non-negative integer field, given as a YAML number or a string of digits.
fn take_u64(m: &mut Mapping, field: &'static str) -> Result<Option<u64>, Error> {
    match m.remove(field) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or(Error::InvalidValue(field)),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::InvalidValue(field)),
        Some(_) => Err(Error::InvalidValue(field)),
    }
}

fn take_string(m: &mut Mapping, field: &str) -> Result<Option<String>, Error> {
    match m.remove(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::NotString(field.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_HEX: &str = "25295f0d1d592a90b333e26e85149708208e9f8e8bc18f6c77bd62f8ad7a6866";

    fn one(text: &str) -> Result<KeyConfigEntry, Error> {
        let mut v = parse_key_config(text, Path::new("/cfg"));
        assert_eq!(v.len(), 1, "one document expected");
        v.remove(0).1
    }

    #[test]
    fn file_raw_quoted_and_unquoted() {
        for text in [
            format!("type: \"file-raw\"\nkeyType: \"BLS\"\nprivateKey: \"0x{KEY_HEX}\"\n"),
            format!("type: file-raw\nprivateKey: 0x{KEY_HEX}\n"),
            format!("type: file-raw\nprivateKey: {KEY_HEX}\n"),
        ] {
            match one(&text) {
                Ok(KeyConfigEntry::FileRaw { private_key }) => {
                    assert_eq!(hex::encode(private_key.as_ref()), KEY_HEX)
                }
                Ok(_) => panic!("wrong kind"),
                Err(e) => panic!("{text}: {e}"),
            }
        }
    }

    #[test]
    fn keystore_paths_resolve_against_config_dir() {
        let text =
            "type: file-keystore\nkeystoreFile: ks/a.json\nkeystorePasswordFile: /abs/a.txt\n";
        match one(text) {
            Ok(KeyConfigEntry::FileKeystore {
                keystore_file,
                password_file,
            }) => {
                assert_eq!(keystore_file, Path::new("/cfg/ks/a.json"));
                assert_eq!(password_file, Path::new("/abs/a.txt"));
            }
            _ => panic!("expected file-keystore"),
        }
    }

    #[test]
    fn refusals_name_the_problem_without_values() {
        let cases: [(&str, Error); 6] = [
            (
                "type: azure-secret\nvaultName: x\n",
                Error::UnsupportedType("azure-secret".into()),
            ),
            ("privateKey: \"0x00\"\n", Error::MissingField("type")),
            ("type: file-raw\n", Error::MissingField("privateKey")),
            (
                "type: file-raw\nprivateKey: \"0x1234\"\nextra: 1\n",
                Error::UnknownField {
                    field: "extra".into(),
                    kind: "file-raw",
                },
            ),
            (
                "type: file-raw\nkeyType: SECP256K1\nprivateKey: \"0x00\"\n",
                Error::UnsupportedKeyType("SECP256K1".into()),
            ),
            (
                "type: file-raw\nprivateKey: \"0xsecretsecret\"\n",
                Error::PrivateKey,
            ),
        ];
        for (text, expected) in cases {
            match one(text) {
                Err(e) => {
                    assert_eq!(e, expected, "{text}");
                    assert!(!e.to_string().contains("secretsecret"));
                }
                Ok(_) => panic!("accepted {text}"),
            }
        }
    }

    #[test]
    fn several_documents_and_empty_ones() {
        let text = format!(
            "---\ntype: file-raw\nprivateKey: \"0x{KEY_HEX}\"\n---\n---\ntype: aws-secret\n"
        );
        let v = parse_key_config(&text, Path::new("/cfg"));
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].0, 1);
        assert!(v[0].1.is_ok());
        assert_eq!(v[1].0, 3);
        assert!(matches!(&v[1].1, Err(Error::UnsupportedType(t)) if t == "aws-secret"));
    }

    #[test]
    fn hashicorp_fields_and_defaults() {
        let text = "type: hashicorp\nkeyType: BLS\nserverHost: vault.local\n\
                    keyPath: /v1/secret/data/v1\ntoken: s.secrettoken\n";
        let Ok(KeyConfigEntry::Hashicorp(c)) = one(text) else {
            panic!("expected hashicorp");
        };
        assert_eq!(c.server_host, "vault.local");
        assert_eq!(c.server_port, 8200);
        assert_eq!(c.key_path, "/v1/secret/data/v1");
        assert_eq!(c.key_name, "value");
        assert_eq!(
            c.token.as_deref().map(String::as_str),
            Some("s.secrettoken")
        );
        assert_eq!(c.timeout, Duration::from_millis(10_000));
        assert!(!c.tls_enabled);
        assert_eq!(c.tls_known_servers_path, None);
        assert!(!format!("{c:?}").contains("secrettoken"));

        let text = "type: \"hashicorp\"\nserverHost: \"127.0.0.1\"\nserverPort: 8300\n\
                    keyPath: \"/v1/kv/data/a\"\nkeyName: \"share\"\ntimeout: 2500\n\
                    tlsEnabled: \"true\"\ntlsKnownServersPath: known\n\
                    httpProtocolVersion: HTTP_2\nauthMethod: TOKEN\n";
        let Ok(KeyConfigEntry::Hashicorp(c)) = one(text) else {
            panic!("expected hashicorp");
        };
        assert_eq!(c.server_port, 8300);
        assert_eq!(c.key_name, "share");
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert!(c.tls_enabled);
        assert_eq!(
            c.tls_known_servers_path.as_deref(),
            Some(Path::new("/cfg/known"))
        );
        assert!(c.token.is_none());
    }

    #[test]
    fn hashicorp_kubernetes_auth() {
        let base =
            "type: hashicorp\nserverHost: h\nkeyPath: /v1/s/data/k\nauthMethod: KUBERNETES\n";
        let Ok(KeyConfigEntry::Hashicorp(c)) = one(&format!("{base}kubernetesRole: signer\n"))
        else {
            panic!("expected hashicorp");
        };
        assert!(c.token.is_none());
        assert_eq!(
            c.kubernetes,
            Some(KubernetesAuthConfig {
                role: "signer".into(),
                service_account_token_path: PathBuf::from(DEFAULT_SERVICE_ACCOUNT_TOKEN),
                auth_path: "kubernetes".into(),
            })
        );
        let text = format!(
            "{base}kubernetesRole: signer\nkubernetesServiceAccountTokenPath: sa/token\n\
             kubernetesAuthPath: /k8s/prod/\n"
        );
        let Ok(KeyConfigEntry::Hashicorp(c)) = one(&text) else {
            panic!("expected hashicorp");
        };
        let k = c.kubernetes.expect("kubernetes");
        assert_eq!(k.service_account_token_path, Path::new("/cfg/sa/token"));
        assert_eq!(k.auth_path, "k8s/prod");
    }

    #[test]
    fn hashicorp_refusals() {
        let base = "type: hashicorp\nserverHost: h\nkeyPath: /v1/s/data/k\n";
        let cases: [(String, Error); 10] = [
            (
                "type: hashicorp\nkeyPath: /v1/s/data/k\n".into(),
                Error::MissingField("serverHost"),
            ),
            (
                "type: hashicorp\nserverHost: h\n".into(),
                Error::MissingField("keyPath"),
            ),
            (
                format!("{base}serverPort: 70000\n"),
                Error::InvalidValue("serverPort"),
            ),
            (
                format!("{base}tlsEnabled: maybe\n"),
                Error::InvalidValue("tlsEnabled"),
            ),
            (
                format!("{base}authMethod: APPROLE\n"),
                Error::UnsupportedAuthMethod("APPROLE".into()),
            ),
            (
                format!("{base}authMethod: KUBERNETES\n"),
                Error::MissingField("kubernetesRole"),
            ),
            (
                format!("{base}authMethod: KUBERNETES\nkubernetesRole: r\ntoken: s.x\n"),
                Error::WrongAuthField {
                    field: "token",
                    method: "KUBERNETES",
                },
            ),
            (
                format!("{base}kubernetesRole: r\n"),
                Error::WrongAuthField {
                    field: "kubernetesRole",
                    method: "TOKEN",
                },
            ),
            (
                format!("{base}authMethod: KUBERNETES\nkubernetesRole: r\nkubernetesAuthPath: /\n"),
                Error::InvalidValue("kubernetesAuthPath"),
            ),
            (
                format!("{base}vaultName: x\n"),
                Error::UnknownField {
                    field: "vaultName".into(),
                    kind: "hashicorp",
                },
            ),
        ];
        for (text, expected) in cases {
            match one(&text) {
                Err(e) => assert_eq!(e, expected, "{text}"),
                Ok(_) => panic!("accepted {text}"),
            }
        }
    }

    #[test]
    fn error_is_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
