//! The Keymanager API's persistent storage in the data directory.
//!
//! Layout (directories 0700, files 0600, every write synced):
//! ```text
//! <data-dir>/keymanager/keystores/<pubkey>.json   imported EIP-2335 keystores, as received
//! <data-dir>/keymanager/passwords/<pubkey>.txt    their passwords
//! <data-dir>/keymanager/disabled.json             {"disabled": ["0x…", …]}: deleted keys
//! ```
//! Imported keystores are loaded at start and on `/reload` like a `--keystores` directory (with
//! origin [`KeyOrigin::Imported`](crate::keys::KeyOrigin::Imported)). The disabled list is read
//! at every start (with or without the Keymanager API enabled) before any key source, so a
//! deleted key stays refused while a keystore directory or key-config file still holds it, until
//! a Keymanager import enables it again.
//!
//! Invariant: the disabled list is replaced atomically (temporary file, sync, rename), so a
//! crash leaves either the old or the new list, never a torn one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bls::PublicKeyBytes;
use crate::keys::keystore::{self, write_private};
use crate::keys::secret::Password;
use crate::keys::store::{self, LoadOptions, LoadReport};

/// Directory under the data directory.
pub const DIR_NAME: &str = "keymanager";

/// Errors of the Keymanager storage. Messages name files, never secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The disabled list is not the JSON this module writes.
    #[error("{path}: invalid disabled-keys list: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The `disabled.json` document (strict: only this module writes it).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisabledFile {
    disabled: Vec<PublicKeyBytes>,
}

/// The Keymanager's directory in the data directory.
#[derive(Debug, Clone)]
pub struct ManagedKeys {
    root: PathBuf,
}

impl ManagedKeys {
    /// The storage under `data_dir` (nothing is created until [`ManagedKeys::create_dirs`] or a
    /// write).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join(DIR_NAME),
        }
    }

    /// Creates the directories (mode 0700).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn create_dirs(&self) -> Result<(), Error> {
        for dir in [
            self.root.clone(),
            self.keystores_dir(),
            self.passwords_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|source| Error::Io { path: dir, source })?;
            }
        }
        Ok(())
    }

    /// Directory of imported keystores.
    pub fn keystores_dir(&self) -> PathBuf {
        self.root.join("keystores")
    }

    /// Directory of imported keystores' passwords.
    pub fn passwords_dir(&self) -> PathBuf {
        self.root.join("passwords")
    }

    fn disabled_file(&self) -> PathBuf {
        self.root.join("disabled.json")
    }

    fn keystore_file(&self, pk: &PublicKeyBytes) -> PathBuf {
        self.keystores_dir().join(format!("{}.json", pk.to_hex()))
    }

    fn password_file(&self, pk: &PublicKeyBytes) -> PathBuf {
        self.passwords_dir().join(format!("{}.txt", pk.to_hex()))
    }

    /// The disabled keys (empty when the list was never written).
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be read; [`Error::Corrupt`].
    pub fn load_disabled(&self) -> Result<BTreeSet<PublicKeyBytes>, Error> {
        let path = self.disabled_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let file: DisabledFile = serde_json::from_str(&text).map_err(|e| Error::Corrupt {
            path,
            reason: e.to_string(),
        })?;
        Ok(file.disabled.into_iter().collect())
    }

    /// Replaces the disabled list atomically.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn save_disabled(&self, disabled: &[PublicKeyBytes]) -> Result<(), Error> {
        self.create_dirs()?;
        let path = self.disabled_file();
        let file = DisabledFile {
            disabled: disabled.to_vec(),
        };
        // invariant: a list of hex strings always serializes.
        let text = serde_json::to_string_pretty(&file).expect("disabled list serializes");
        let tmp = path.with_extension("json.tmp");
        write_private(&tmp, text.as_bytes()).map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|source| Error::Io { path, source })
    }

    /// Persists an imported keystore (as received) and its password; returns the keystore path.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn persist(
        &self,
        pk: &PublicKeyBytes,
        keystore_json: &str,
        password: &Password,
    ) -> Result<PathBuf, Error> {
        self.create_dirs()?;
        let ks = self.keystore_file(pk);
        let pw = self.password_file(pk);
        write_private(&pw, password.expose_secret().as_bytes()).map_err(|e| io_error(&pw, e))?;
        write_private(&ks, keystore_json.as_bytes()).map_err(|e| io_error(&ks, e))?;
        Ok(ks)
    }

    /// Deletes a persisted keystore and its password; returns whether the keystore existed.
    ///
    /// # Errors
    /// [`Error::Io`] for failures other than "not found".
    pub fn remove(&self, pk: &PublicKeyBytes) -> Result<bool, Error> {
        let mut existed = false;
        for path in [self.keystore_file(pk), self.password_file(pk)] {
            match std::fs::remove_file(&path) {
                Ok(()) => existed |= path.extension().is_some_and(|e| e == "json"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Io { path, source }),
            }
        }
        Ok(existed)
    }

    /// Loads (decrypts) the imported keystores; an absent directory loads nothing.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory exists but cannot be read.
    pub fn load(&self, options: LoadOptions<'_>) -> Result<LoadReport, Error> {
        let dir = self.keystores_dir();
        if !dir.is_dir() {
            return Ok(LoadReport::default());
        }
        store::load_keystores_dir_with(
            &dir,
            &self.passwords_dir(),
            LoadOptions {
                imported: true,
                ..options
            },
        )
        .map_err(|source| Error::Io { path: dir, source })
    }
}

fn io_error(path: &Path, e: keystore::Error) -> Error {
    match e {
        keystore::Error::Write { source, .. } => Error::Io {
            path: path.to_owned(),
            source,
        },
        other => Error::Io {
            path: path.to_owned(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KdfParams, Keystore, SecretKey};

    #[test]
    fn persist_load_remove_and_disabled_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = ManagedKeys::new(dir.path());
        assert!(m.load_disabled().expect("empty").is_empty());
        assert!(m
            .load(LoadOptions::default())
            .expect("none")
            .keys
            .is_empty());

        let sk = SecretKey::from_bytes(&[5; 32]).expect("scalar");
        let pk = sk.public_key().bytes();
        let pw = Password::new("pw".into());
        let ks =
            Keystore::encrypt(&sk, &pw, KdfParams::insecure_fast(), "m/1", "").expect("encrypt");
        let path = m.persist(&pk, &ks.to_json(), &pw).expect("persist");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&m.password_file(&pk)), 0o600);
            assert_eq!(mode(&m.keystores_dir()), 0o700);
        }
        let report = m.load(LoadOptions::default()).expect("load");
        assert_eq!(report.keys.len(), 1);
        assert_eq!(
            report.keys[0].origin,
            crate::keys::KeyOrigin::Imported { path: path.clone() }
        );
        assert!(m.remove(&pk).expect("remove"));
        assert!(!m.remove(&pk).expect("again"));
        assert!(!path.exists());

        m.save_disabled(&[pk]).expect("save");
        assert_eq!(m.load_disabled().expect("load"), BTreeSet::from([pk]));
        std::fs::write(m.disabled_file(), "{\"disabled\":[],\"x\":1}").expect("write");
        assert!(matches!(m.load_disabled(), Err(Error::Corrupt { .. })));
    }
}
