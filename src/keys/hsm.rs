//! PKCS#11 token (HSM) storage for key shares, through `cryptoki`.
//!
//! What is stored where (PKCS#11 v2.40, OASIS): the token holds one AES-256 *wrapping key*
//! (`CKO_SECRET_KEY`, label [`DEFAULT_WRAP_KEY_LABEL`] unless configured) created on first
//! import with `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE` = true and `CKA_EXTRACTABLE` = false,
//! so its value can never be read out of the token. Each imported share is encrypted inside the
//! token with that key (`CKM_AES_GCM`, random 96-bit IV, 128-bit tag, the share's public key as
//! additional authenticated data) and the result is stored *on the token* as a private data
//! object (`CKO_DATA`, `CKA_APPLICATION` = [`SHARE_APPLICATION`], label
//! `dvsigner-share-0x<pubkey>`), so nothing share-related is written to the node's disk.
//!
//! At start the node logs in, finds every share object, and asks the token to decrypt each blob
//! into zeroizing memory, from which the [`SecretKey`] is built. BLS signing then happens in the
//! process: PKCS#11 tokens do not implement BLS12-381.
//!
//! Blob layout (version 1): `0x01 || iv (12 bytes) || ciphertext (32 bytes) || tag (16 bytes)`.
//!
//! Invariants: the PIN is read into a zeroizing buffer and handed to the token only; decrypted
//! bytes live in [`Zeroizing`] buffers; errors name the module, the token label and object
//! labels, never the PIN or key material.

use std::fmt;
use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::RawAuthPin;
use zeroize::Zeroizing;

use crate::bls::PublicKeyBytes;
use crate::keys::secret::{Password, SecretKey};

/// Default label of the token's AES wrapping key.
pub const DEFAULT_WRAP_KEY_LABEL: &str = "dvsigner-wrap";
/// `CKA_APPLICATION` of share data objects.
pub const SHARE_APPLICATION: &str = "dvsigner-share";
const OBJECT_PREFIX: &str = "dvsigner-share-";
const BLOB_VERSION: u8 = 1;
const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;
const BLOB_LEN: usize = 1 + IV_LEN + 32 + 16;

/// Errors using a PKCS#11 token. Messages name the module and labels, never the PIN or keys.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The module (shared library) could not be loaded or initialised.
    #[error("cannot load pkcs#11 module {module}: {reason}")]
    Module {
        /// The module path.
        module: PathBuf,
        /// The cause.
        reason: String,
    },
    /// No initialised token has this label.
    #[error(
        "no token labelled {label:?} in pkcs#11 module {module} (tokens present: {present:?})"
    )]
    TokenAbsent {
        /// The label asked for.
        label: String,
        /// The module path.
        module: PathBuf,
        /// Labels of the tokens that are there.
        present: Vec<String>,
    },
    /// The user PIN was refused.
    #[error("wrong pin for token {label:?}")]
    WrongPin {
        /// The token label.
        label: String,
    },
    /// The user PIN is locked after too many failures.
    #[error("pin of token {label:?} is locked")]
    PinLocked {
        /// The token label.
        label: String,
    },
    /// The PIN file could not be read or is empty.
    #[error("cannot read pin file {path}: {reason}")]
    PinFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// The wrapping key is not on the token (nothing was imported yet, or another label).
    #[error("wrapping key {key:?} not found on token {label:?} (import a share first)")]
    WrapKeyMissing {
        /// The token label.
        label: String,
        /// The wrapping key label.
        key: String,
    },
    /// Several objects carry the wrapping key's label.
    #[error("{count} keys labelled {key:?} on token {label:?}; expected one")]
    WrapKeyAmbiguous {
        /// The token label.
        label: String,
        /// The wrapping key label.
        key: String,
        /// How many were found.
        count: usize,
    },
    /// The token holds no share objects.
    #[error("no dvsigner share objects on token {label:?}")]
    NoShares {
        /// The token label.
        label: String,
    },
    /// A share with this public key is already stored.
    #[error("share {object} is already stored on token {label:?}")]
    Duplicate {
        /// The token label.
        label: String,
        /// The object label.
        object: String,
    },
    /// A share object is damaged, or was encrypted under another key.
    #[error("share object {object} on token {label:?} cannot be decrypted: {reason}")]
    Corrupt {
        /// The token label.
        label: String,
        /// The object label.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other PKCS#11 failure.
    #[error("pkcs#11 {operation} on token {label:?} failed: {reason}")]
    Pkcs11 {
        /// The token label.
        label: String,
        /// What was being done.
        operation: &'static str,
        /// The return value name.
        reason: String,
    },
}

/// Where the token is and how to log in.
pub struct HsmConfig {
    /// The PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token label.
    pub token_label: String,
    /// The user PIN.
    pub pin: Password,
    /// The wrapping key's label.
    pub wrap_key_label: String,
}

impl fmt::Debug for HsmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmConfig")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("wrap_key_label", &self.wrap_key_label)
            .finish_non_exhaustive()
    }
}

impl HsmConfig {
    /// A configuration with the PIN read from `pin_file` (first line, newline stripped).
    ///
    /// # Errors
    /// [`Error::PinFile`] when unreadable or empty.
    pub fn new(
        module: PathBuf,
        token_label: String,
        pin_file: &Path,
        wrap_key_label: Option<String>,
    ) -> Result<Self, Error> {
        let fail = |reason: String| Error::PinFile {
            path: pin_file.to_owned(),
            reason,
        };
        let pin = Password::from_file(pin_file).map_err(|e| fail(e.to_string()))?;
        if pin.expose_secret().is_empty() {
            return Err(fail("empty".into()));
        }
        Ok(Self {
            module,
            token_label,
            pin,
            wrap_key_label: wrap_key_label.unwrap_or_else(|| DEFAULT_WRAP_KEY_LABEL.to_owned()),
        })
    }
}

/// Security attributes of the wrapping key, as the token reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrapKeyAttributes {
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: bool,
    /// `CKA_TOKEN` (persistent on the token).
    pub token: bool,
    /// Whether the token handed out `CKA_VALUE` when asked (it must not).
    pub value_readable: bool,
}

/// A share decrypted from the token.
#[derive(Debug)]
pub struct HsmShare {
    /// The data object's label.
    pub object: String,
    /// The share.
    pub secret: SecretKey,
}

/// A logged-in session on one token.
pub struct HsmToken {
    // Field order matters: the session closes before the library is finalised.
    session: Session,
    _pkcs11: Pkcs11,
    label: String,
    wrap_key_label: String,
}

impl fmt::Debug for HsmToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmToken")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

fn rv(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

fn reason(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("{rv:?} in {function:?}"),
        other => other.to_string(),
    }
}

impl HsmToken {
    /// Loads the module, finds the token by label, opens a read-write session and logs in as
    /// the user.
    ///
    /// # Errors
    /// [`Error::Module`], [`Error::TokenAbsent`], [`Error::WrongPin`], [`Error::PinLocked`],
    /// [`Error::Pkcs11`].
    pub fn open(config: &HsmConfig) -> Result<Self, Error> {
        let label = config.token_label.clone();
        let module_err = |e: CkError| Error::Module {
            module: config.module.clone(),
            reason: reason(&e),
        };
        let pkcs11 = Pkcs11::new(&config.module).map_err(module_err)?;
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(e) if rv(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
            Err(e) => return Err(module_err(e)),
        }
        let op = |operation: &'static str| {
            let label = label.clone();
            move |e: CkError| Error::Pkcs11 {
                label,
                operation,
                reason: reason(&e),
            }
        };
        let slots = pkcs11
            .get_slots_with_initialized_token()
            .map_err(op("list slots"))?;
        let mut present = Vec::new();
        let mut found = None;
        for slot in slots {
            let info = pkcs11.get_token_info(slot).map_err(op("token info"))?;
            let name = info.label().trim_end().to_owned();
            if name == label && found.is_none() {
                found = Some(slot);
            }
            present.push(name);
        }
        let Some(slot) = found else {
            return Err(Error::TokenAbsent {
                label,
                module: config.module.clone(),
                present,
            });
        };
        let session = pkcs11.open_rw_session(slot).map_err(op("open session"))?;
        let pin = RawAuthPin::new(Box::new(config.pin.expose_secret().as_bytes().to_vec()));
        match session.login_with_raw(UserType::User, &pin) {
            Ok(()) => {}
            Err(e) if rv(&e) == Some(RvError::UserAlreadyLoggedIn) => {}
            Err(e) if rv(&e) == Some(RvError::PinIncorrect) => {
                return Err(Error::WrongPin { label })
            }
            Err(e) if rv(&e) == Some(RvError::PinLocked) => return Err(Error::PinLocked { label }),
            Err(e) => return Err(op("login")(e)),
        }
        Ok(Self {
            session,
            _pkcs11: pkcs11,
            label,
            wrap_key_label: config.wrap_key_label.clone(),
        })
    }

    /// The token label.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn op(&self, operation: &'static str) -> impl Fn(CkError) -> Error + '_ {
        move |e| Error::Pkcs11 {
            label: self.label.clone(),
            operation,
            reason: reason(&e),
        }
    }

    fn find_wrap_key(&self) -> Result<Option<ObjectHandle>, Error> {
        let found = self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Label(self.wrap_key_label.as_bytes().to_vec()),
            ])
            .map_err(self.op("find wrapping key"))?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            more => Err(Error::WrapKeyAmbiguous {
                label: self.label.clone(),
                key: self.wrap_key_label.clone(),
                count: more.len(),
            }),
        }
    }

    fn wrap_key(&self) -> Result<ObjectHandle, Error> {
        self.find_wrap_key()?.ok_or_else(|| Error::WrapKeyMissing {
            label: self.label.clone(),
            key: self.wrap_key_label.clone(),
        })
    }

    /// The wrapping key, created (AES-256, sensitive, non-extractable, on the token) when absent.
    /// Returns whether it was created.
    ///
    /// # Errors
    /// [`Error::Pkcs11`], [`Error::WrapKeyAmbiguous`].
    pub fn ensure_wrap_key(&self) -> Result<(ObjectHandle, bool), Error> {
        if let Some(key) = self.find_wrap_key()? {
            return Ok((key, false));
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Label(self.wrap_key_label.as_bytes().to_vec()),
        ];
        let key = self
            .session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(self.op("generate wrapping key"))?;
        Ok((key, true))
    }

    /// The wrapping key's security attributes.
    ///
    /// # Errors
    /// [`Error::WrapKeyMissing`], [`Error::Pkcs11`].
    pub fn wrap_key_attributes(&self) -> Result<WrapKeyAttributes, Error> {
        let key = self.wrap_key()?;
        let attrs = self
            .session
            .get_attributes(
                key,
                &[
                    AttributeType::Extractable,
                    AttributeType::Sensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::Token,
                ],
            )
            .map_err(self.op("read wrapping key attributes"))?;
        let mut out = WrapKeyAttributes {
            extractable: true,
            sensitive: false,
            never_extractable: false,
            always_sensitive: false,
            token: false,
            value_readable: false,
        };
        for a in attrs {
            match a {
                Attribute::Extractable(v) => out.extractable = v,
                Attribute::Sensitive(v) => out.sensitive = v,
                Attribute::NeverExtractable(v) => out.never_extractable = v,
                Attribute::AlwaysSensitive(v) => out.always_sensitive = v,
                Attribute::Token(v) => out.token = v,
                _ => {}
            }
        }
        // A sensitive key answers CKR_ATTRIBUTE_SENSITIVE (an error, or the attribute left out).
        out.value_readable = self
            .session
            .get_attributes(key, &[AttributeType::Value])
            .map(|attrs| {
                attrs
                    .iter()
                    .any(|a| matches!(a, Attribute::Value(v) if !v.is_empty()))
            })
            .unwrap_or(false);
        Ok(out)
    }

    fn share_objects(&self) -> Result<Vec<(ObjectHandle, String)>, Error> {
        let handles = self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Application(SHARE_APPLICATION.as_bytes().to_vec()),
            ])
            .map_err(self.op("find share objects"))?;
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            let attrs = self
                .session
                .get_attributes(handle, &[AttributeType::Label])
                .map_err(self.op("read share label"))?;
            let label = attrs
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Label(l) => Some(String::from_utf8_lossy(&l).into_owned()),
                    _ => None,
                })
                .unwrap_or_default();
            out.push((handle, label));
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    /// Labels of the share objects on the token, sorted.
    ///
    /// # Errors
    /// [`Error::Pkcs11`].
    pub fn share_labels(&self) -> Result<Vec<String>, Error> {
        Ok(self.share_objects()?.into_iter().map(|(_, l)| l).collect())
    }

    /// Encrypts a share under the wrapping key (created if absent) and stores the blob as a
    /// private data object on the token. Returns the object's label.
    ///
    /// # Errors
    /// [`Error::Duplicate`] when this public key is already stored, [`Error::Pkcs11`].
    pub fn import_share(&self, share: &SecretKey) -> Result<String, Error> {
        let pubkey = share.public_key().bytes();
        let object = object_label(&pubkey);
        if self.share_labels()?.contains(&object) {
            return Err(Error::Duplicate {
                label: self.label.clone(),
                object,
            });
        }
        let (key, _) = self.ensure_wrap_key()?;
        let mut iv = [0u8; IV_LEN];
        {
            use rand::RngCore;
            rand::rngs::OsRng.fill_bytes(&mut iv);
        }
        let aad = aad(&pubkey);
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, &aad, TAG_BITS.into())
            .map_err(self.op("gcm parameters"))?;
        let secret = share.expose_secret();
        let sealed = self
            .session
            .encrypt(&Mechanism::AesGcm(params), key, secret.as_ref())
            .map_err(self.op("encrypt share"))?;
        let mut blob = Vec::with_capacity(BLOB_LEN);
        blob.push(BLOB_VERSION);
        blob.extend_from_slice(&iv);
        blob.extend_from_slice(&sealed);
        if blob.len() != BLOB_LEN {
            return Err(Error::Pkcs11 {
                label: self.label.clone(),
                operation: "encrypt share",
                reason: format!("unexpected ciphertext length {}", sealed.len()),
            });
        }
        let template = [
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Modifiable(false),
            Attribute::Label(object.as_bytes().to_vec()),
            Attribute::Application(SHARE_APPLICATION.as_bytes().to_vec()),
            Attribute::Value(blob),
        ];
        self.session
            .create_object(&template)
            .map_err(self.op("store share object"))?;
        Ok(object)
    }

    /// Decrypts every share stored on the token.
    ///
    /// # Errors
    /// [`Error::WrapKeyMissing`], [`Error::NoShares`], [`Error::Corrupt`] naming the object,
    /// [`Error::Pkcs11`].
    pub fn load_shares(&self) -> Result<Vec<HsmShare>, Error> {
        let key = self.wrap_key()?;
        let objects = self.share_objects()?;
        if objects.is_empty() {
            return Err(Error::NoShares {
                label: self.label.clone(),
            });
        }
        let mut out = Vec::with_capacity(objects.len());
        for (handle, object) in objects {
            let secret = self.decrypt_object(key, handle, &object)?;
            out.push(HsmShare { object, secret });
        }
        Ok(out)
    }

    fn decrypt_object(
        &self,
        key: ObjectHandle,
        handle: ObjectHandle,
        object: &str,
    ) -> Result<SecretKey, Error> {
        let corrupt = |reason: &str| Error::Corrupt {
            label: self.label.clone(),
            object: object.to_owned(),
            reason: reason.to_owned(),
        };
        let pubkey = object
            .strip_prefix(OBJECT_PREFIX)
            .and_then(|hex_pk| PublicKeyBytes::parse(hex_pk).ok())
            .ok_or_else(|| corrupt("label is not dvsigner-share-0x<pubkey>"))?;
        let blob = self
            .session
            .get_attributes(handle, &[AttributeType::Value])
            .map_err(self.op("read share object"))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            })
            .ok_or_else(|| corrupt("no value"))?;
        if blob.len() != BLOB_LEN || blob[0] != BLOB_VERSION {
            return Err(corrupt("unknown blob format"));
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&blob[1..1 + IV_LEN]);
        let aad = aad(&pubkey);
        let params =
            GcmParams::new(&mut iv, &aad, TAG_BITS.into()).map_err(self.op("gcm parameters"))?;
        let plain = Zeroizing::new(
            self.session
                .decrypt(&Mechanism::AesGcm(params), key, &blob[1 + IV_LEN..])
                .map_err(|e| match rv(&e) {
                    Some(RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange) => {
                        corrupt("authentication failed (wrong wrapping key or altered blob)")
                    }
                    _ => self.op("decrypt share")(e),
                })?,
        );
        let mut bytes = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(corrupt("plaintext is not 32 bytes"));
        }
        bytes.copy_from_slice(&plain);
        let secret = SecretKey::from_bytes(&bytes).map_err(|_| corrupt("not a bls scalar"))?;
        if secret.public_key().bytes() != pubkey {
            return Err(corrupt("public key does not match the label"));
        }
        Ok(secret)
    }
}

/// The data object label for a share.
pub fn object_label(pubkey: &PublicKeyBytes) -> String {
    format!("{OBJECT_PREFIX}{}", pubkey.to_hex())
}

fn aad(pubkey: &PublicKeyBytes) -> Vec<u8> {
    let mut aad = b"dvsigner-share-v1:".to_vec();
    aad.extend_from_slice(&pubkey.0);
    aad
}

/// Opens the token and decrypts every share on it (node start).
///
/// # Errors
/// As [`HsmToken::open`] and [`HsmToken::load_shares`].
pub fn load(config: &HsmConfig) -> Result<Vec<HsmShare>, Error> {
    HsmToken::open(config)?.load_shares()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_aad_bind_the_pubkey() {
        let sk = SecretKey::from_bytes(&[3u8; 32]).expect("valid scalar");
        let pk = sk.public_key().bytes();
        let label = object_label(&pk);
        assert!(label.starts_with("dvsigner-share-0x"));
        assert_eq!(label.len(), OBJECT_PREFIX.len() + 2 + 96);
        let parsed = PublicKeyBytes::parse(label.trim_start_matches(OBJECT_PREFIX));
        assert_eq!(parsed.ok(), Some(pk));
        let other = SecretKey::from_bytes(&[4u8; 32]).expect("valid scalar");
        assert_ne!(aad(&pk), aad(&other.public_key().bytes()));
    }

    #[test]
    fn pin_file_must_not_be_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pin");
        std::fs::write(&p, "\n").expect("write");
        let e = HsmConfig::new("/m.so".into(), "t".into(), &p, None).expect_err("empty");
        assert!(matches!(e, Error::PinFile { .. }), "{e}");
        std::fs::write(&p, "1234\n").expect("write");
        let c = HsmConfig::new("/m.so".into(), "t".into(), &p, None).expect("pin");
        assert_eq!(c.pin.expose_secret(), "1234");
        assert_eq!(c.wrap_key_label, DEFAULT_WRAP_KEY_LABEL);
        assert!(!format!("{c:?}").contains("1234"));
    }

    #[test]
    fn missing_module_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pin");
        std::fs::write(&p, "1234").expect("write");
        let c = HsmConfig::new(dir.path().join("nope.so"), "t".into(), &p, None).expect("pin");
        let e = HsmToken::open(&c).expect_err("no module");
        assert!(matches!(e, Error::Module { .. }), "{e}");
        assert!(e.to_string().contains("nope.so"));
    }

    #[test]
    fn error_is_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
