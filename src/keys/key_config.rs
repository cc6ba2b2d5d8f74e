//! Web3Signer key-config YAML files (`--key-config-path`): parsing only, no I/O.
//!
//! Format (Web3Signer docs, "Key configuration files"): a `.yaml`/`.yml` file holds one or more
//! YAML documents; each is a mapping whose `type` selects the signer. Supported here:
//! - `type: file-raw` with `privateKey` (`0x`-prefixed or bare hex, 32 bytes);
//! - `type: file-keystore` with `keystoreFile` (EIP-2335 JSON) and `keystorePasswordFile`
//!   (first line is the password), both resolved against the key-config directory when relative.
//!
//! Both accept the optional `keyType: BLS`. Unknown fields are refused (as Web3Signer's Jackson
//! mapper does), and other `type`s (`hashicorp`, `azure-secret`, `aws-secret`, ...) are reported
//! as not supported yet.
//!
//! Invariants: a raw private key is moved straight into a [`Zeroizing`] buffer, and no error
//! message ever quotes a field value, so a malformed key cannot leak through logs.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};
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
}

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
}

/// Parses every document of a key-config file. Returns one result per non-empty document, with
/// its 1-based position in the file. A YAML syntax error ends the list with an error entry.
pub fn parse_key_config(
    text: &str,
    base_dir: &Path,
) -> Vec<(usize, Result<KeyConfigEntry, Error>)> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
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

/// serde_yaml's message can quote the offending scalar, so keep only the location.
fn yaml_error_location(e: &serde_yaml::Error) -> String {
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
    let keystore_file =
        take_string(&mut m, "keystoreFile")?.ok_or(Error::MissingField("keystoreFile"))?;
    let password_file = take_string(&mut m, "keystorePasswordFile")?
        .ok_or(Error::MissingField("keystorePasswordFile"))?;
    Ok(KeyConfigEntry::FileKeystore {
        keystore_file: base_dir.join(keystore_file),
        password_file: base_dir.join(password_file),
    })
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
                "type: hashicorp\nserverHost: x\n",
                Error::UnsupportedType("hashicorp".into()),
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
    fn error_is_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
