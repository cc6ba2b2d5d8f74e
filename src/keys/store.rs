//! The in-memory key store a node signs with, and the directory loaders that fill it.
//!
//! Sources (Web3Signer conventions, see `docs/web3signer-compatibility.md`):
//! - [`load_keystores_dir`]: `--keystores` / `--keystores-passwords`: every `<name>.json` EIP-2335
//!   keystore with its password in `<passwords>/<name>.txt` (first line).
//! - [`load_key_config_dir`]: `--key-config`: every `.yaml`/`.yml` file, see
//!   [`crate::keys::key_config`].
//!
//! Loading decrypts in parallel on all cores (rayon's global pool). A file that fails never stops
//! the others: it becomes a per-file entry in [`LoadReport::errors`], whose messages name the file
//! and the reason but never a key or a password. Decryption is CPU-heavy (and scrypt's default
//! needs 256 MiB per keystore in flight): call the loaders from a blocking thread.
//!
//! [`KeyStore`] is read on the signing hot path: lookups take a shared `RwLock` read guard for the
//! duration of a map lookup and return an `Arc<SecretKey>`, so signing never holds the lock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::bls::PublicKeyBytes;
use crate::keys::cache::CacheSession;
use crate::keys::key_config::{self, KeyConfigEntry};
use crate::keys::keystore::Keystore;
use crate::keys::secret::{Password, SecretKey};

/// Where a loaded key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// An EIP-2335 keystore in the keystores directory.
    Keystore {
        /// The keystore file.
        path: PathBuf,
    },
    /// A Web3Signer key-config YAML file.
    KeyConfig {
        /// The YAML file.
        path: PathBuf,
    },
    /// HashiCorp Vault bulk mode (`--vault-bulk-path`).
    Vault {
        /// The secret's KV v2 path, `/v1/<mount>/data/<path>`.
        path: String,
    },
    /// A share wrapped under a PKCS#11 token's key (`--hsm-*`).
    Hsm {
        /// The token label.
        token: String,
        /// The data object's label.
        object: String,
    },
    /// A keystore imported through the Keymanager API, persisted in the data directory
    /// (see [`crate::keys::managed`]).
    Imported {
        /// The persisted keystore file.
        path: PathBuf,
    },
}

/// One decrypted key and its origin.
#[derive(Debug)]
pub struct LoadedKey {
    /// The key.
    pub secret: SecretKey,
    /// Its source.
    pub origin: KeyOrigin,
}

/// Result of loading a directory: keys, per-file errors (never secrets), and timing.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Keys loaded.
    pub keys: Vec<LoadedKey>,
    /// Files that failed, with a message naming the file.
    pub errors: Vec<(PathBuf, String)>,
    /// Wall time of the load.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Keys loaded per second of wall time (0 when nothing was loaded).
    pub fn keys_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if self.keys.is_empty() || secs == 0.0 {
            return 0.0;
        }
        self.keys.len() as f64 / secs
    }

    /// Appends another report (keys, errors, and elapsed time).
    pub fn merge(&mut self, other: LoadReport) {
        self.keys.extend(other.keys);
        self.errors.extend(other.errors);
        self.elapsed += other.elapsed;
    }
}

/// A keystore waiting to be decrypted.
struct KeystoreJob {
    /// The file errors are reported against.
    report_path: PathBuf,
    /// Prefix for error messages (names the file, and the document for key configs).
    label: String,
    keystore_file: PathBuf,
    password_file: PathBuf,
    /// Web3Signer refuses an empty `keystorePasswordFile` in key configs.
    refuse_empty_password: bool,
    origin: KeyOrigin,
}

impl KeystoreJob {
    fn run(&self, cache: Option<&CacheSession<'_>>) -> Result<LoadedKey, String> {
        // Name the keystore only when the report is about another file (a key config).
        let keystore = if self.keystore_file == self.report_path {
            String::new()
        } else {
            format!("keystore {}: ", self.keystore_file.display())
        };
        let fail = |reason: String| format!("{}: {keystore}{reason}", self.label);
        let text = std::fs::read_to_string(&self.keystore_file)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        let parsed = Keystore::from_json(&text).map_err(|e| fail(e.to_string()))?;
        let password = Password::from_file(&self.password_file)
            .map_err(|e| fail(format!("password file: {e}")))?;
        if self.refuse_empty_password && password.expose_secret().is_empty() {
            return Err(fail(format!(
                "password file {} is empty",
                self.password_file.display()
            )));
        }
        let id = cache.map(|c| c.entry_id(&self.keystore_file, text.as_bytes(), &password));
        if let (Some(cache), Some(id)) = (cache, &id) {
            if let Some(secret) = cache.lookup(id) {
                if parsed
                    .pubkey()
                    .is_none_or(|pk| pk == secret.public_key().bytes())
                {
                    return Ok(LoadedKey {
                        secret,
                        origin: self.origin.clone(),
                    });
                }
            }
        }
        let secret = parsed.decrypt(&password).map_err(|e| fail(e.to_string()))?;
        if let (Some(cache), Some(id)) = (cache, id) {
            cache.record(id, &secret);
        }
        Ok(LoadedKey {
            secret,
            origin: self.origin.clone(),
        })
    }
}

/// Options of [`load_keystores_dir_with`] and [`load_key_config_dir_with`].
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Take keys from this key-cache load where possible, and record the others in it.
    pub cache: Option<&'a CacheSession<'a>>,
    /// Mark the keys [`KeyOrigin::Imported`] (the Keymanager API's own directory).
    pub imported: bool,
    /// Count the keystores to decrypt and those done here.
    pub progress: Option<&'a crate::progress::Progress>,
}

/// Decrypts all jobs in parallel and adds the outcomes to `report`, in job order.
fn run_jobs(jobs: Vec<KeystoreJob>, report: &mut LoadReport, options: LoadOptions<'_>) {
    if let Some(progress) = options.progress {
        progress.add_total(jobs.len() as u64);
    }
    let outcomes: Vec<_> = jobs
        .into_par_iter()
        .map(|job| {
            let outcome = job.run(options.cache);
            if let Some(progress) = options.progress {
                progress.inc(1);
            }
            (outcome, job.report_path)
        })
        .collect();
    for (outcome, path) in outcomes {
        match outcome {
            Ok(key) => report.keys.push(key),
            Err(msg) => report.errors.push((path, msg)),
        }
    }
}

/// Regular files (symlinks followed, as in Kubernetes secret mounts) in `dir` whose name ends with
/// one of `suffixes`, sorted by name.
fn files_with_suffix(dir: &Path, suffixes: &[&str]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if suffixes
            .iter()
            .any(|s| name.len() > s.len() && name.ends_with(s))
            && path.is_file()
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads `*.json` keystores from `keystores` with passwords `<name>.txt` from `passwords`.
///
/// # Errors
/// When the keystores directory cannot be read. Problems with single files (unreadable, invalid,
/// missing password, wrong password) are reported in [`LoadReport::errors`] instead.
pub fn load_keystores_dir(keystores: &Path, passwords: &Path) -> std::io::Result<LoadReport> {
    load_keystores_dir_with(keystores, passwords, LoadOptions::default())
}

/// [`load_keystores_dir`] with a key cache and/or the imported origin.
///
/// # Errors
/// As [`load_keystores_dir`].
pub fn load_keystores_dir_with(
    keystores: &Path,
    passwords: &Path,
    options: LoadOptions<'_>,
) -> std::io::Result<LoadReport> {
    let start = Instant::now();
    let mut report = LoadReport::default();
    let mut jobs = Vec::new();
    for path in files_with_suffix(keystores, &[".json"])? {
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        jobs.push(KeystoreJob {
            label: path.display().to_string(),
            keystore_file: path.clone(),
            password_file: passwords.join(format!("{stem}.txt")),
            refuse_empty_password: false,
            origin: if options.imported {
                KeyOrigin::Imported { path: path.clone() }
            } else {
                KeyOrigin::Keystore { path: path.clone() }
            },
            report_path: path,
        });
    }
    run_jobs(jobs, &mut report, options);
    report.elapsed = start.elapsed();
    Ok(report)
}

/// Loads Web3Signer key-config YAML files (`file-keystore`, `file-raw`) from `dir`.
/// Relative paths inside them resolve against `dir`.
///
/// # Errors
/// When the directory cannot be read. Problems with single files or documents (YAML errors,
/// unsupported `type`s, unreadable or undecryptable keystores) are reported in
/// [`LoadReport::errors`] against the YAML file.
pub fn load_key_config_dir(dir: &Path) -> std::io::Result<LoadReport> {
    load_key_config_dir_with(dir, LoadOptions::default())
}

/// [`load_key_config_dir`] with a key cache (`imported` is ignored).
///
/// # Errors
/// As [`load_key_config_dir`].
pub fn load_key_config_dir_with(
    dir: &Path,
    options: LoadOptions<'_>,
) -> std::io::Result<LoadReport> {
    let start = Instant::now();
    let mut report = LoadReport::default();
    let mut jobs = Vec::new();
    for path in files_with_suffix(dir, &[".yaml", ".yml"])? {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => zeroize::Zeroizing::new(t),
            Err(e) => {
                let msg = format!("{}: cannot read: {e}", path.display());
                report.errors.push((path, msg));
                continue;
            }
        };
        for (doc, entry) in key_config::parse_key_config(&text, dir) {
            let label = format!("{}: document {doc}", path.display());
            let origin = KeyOrigin::KeyConfig { path: path.clone() };
            match entry {
                Err(e) => report.errors.push((path.clone(), format!("{label}: {e}"))),
                Ok(KeyConfigEntry::FileRaw { private_key }) => {
                    match SecretKey::from_bytes(&private_key) {
                        Ok(secret) => report.keys.push(LoadedKey { secret, origin }),
                        Err(e) => report.errors.push((path.clone(), format!("{label}: {e}"))),
                    }
                }
                Ok(KeyConfigEntry::Hashicorp(cfg)) => {
                    match crate::keys::vault::read_key_config_blocking(&cfg) {
                        Ok(secret) => report.keys.push(LoadedKey { secret, origin }),
                        Err(e) => report.errors.push((path.clone(), format!("{label}: {e}"))),
                    }
                }
                Ok(KeyConfigEntry::FileKeystore {
                    keystore_file,
                    password_file,
                }) => jobs.push(KeystoreJob {
                    report_path: path.clone(),
                    label,
                    keystore_file,
                    password_file,
                    refuse_empty_password: true,
                    origin,
                }),
            }
        }
    }
    run_jobs(jobs, &mut report, options);
    report.elapsed = start.elapsed();
    Ok(report)
}

/// Public keys added and removed by [`KeyStore::replace_all`], each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyDiff {
    /// Keys that were not there before.
    pub added: Vec<PublicKeyBytes>,
    /// Keys that are gone.
    pub removed: Vec<PublicKeyBytes>,
}

type KeyMap = BTreeMap<PublicKeyBytes, (Arc<SecretKey>, KeyOrigin)>;

/// The map and the disabled set, changed together under one lock.
#[derive(Default)]
struct Keys {
    map: KeyMap,
    /// Keys deleted through the Keymanager API: never in `map`, whatever a source holds, until
    /// [`KeyStore::enable_insert`] (a Keymanager import) takes them out of this set.
    disabled: BTreeSet<PublicKeyBytes>,
}

/// The keys a node can sign with, by public key. Safe to share between threads; reads never wait
/// for a decryption (keys are decrypted before they are inserted).
///
/// Invariant: a key in the disabled set is never in the map. Every insertion path
/// ([`KeyStore::insert`], [`KeyStore::insert_all`], [`KeyStore::replace_all`]) skips disabled
/// keys, so a deleted key stays unusable even when a keystore directory or key-config file still
/// holds it and `/reload` runs.
#[derive(Default)]
pub struct KeyStore {
    keys: RwLock<Keys>,
}

impl KeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock cannot leave the map half-updated (every write is a single
    // map operation or a whole-map swap), so a poisoned lock is still consistent.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// An empty store in which `disabled` keys are refused (the set persisted by the Keymanager
    /// API, loaded before any key source).
    pub fn with_disabled(disabled: impl IntoIterator<Item = PublicKeyBytes>) -> Self {
        let store = Self::default();
        store.write().disabled.extend(disabled);
        store
    }

    /// Whether the key was deleted through the Keymanager API (and not imported again).
    pub fn is_disabled(&self, pk: &PublicKeyBytes) -> bool {
        self.read().disabled.contains(pk)
    }

    /// The disabled keys, sorted.
    pub fn disabled(&self) -> Vec<PublicKeyBytes> {
        self.read().disabled.iter().copied().collect()
    }

    /// Disables a key: removes it (signers already holding its `Arc` may finish their current
    /// signature) and refuses it from now on, in one step. Returns the removed key and its
    /// origin if it was loaded (the caller may wait for other holders of the `Arc`).
    pub fn disable(&self, pk: &PublicKeyBytes) -> Option<(Arc<SecretKey>, KeyOrigin)> {
        let mut keys = self.write();
        keys.disabled.insert(*pk);
        keys.map.remove(pk)
    }

    /// Takes a key out of the disabled set without loading it (a delete that found nothing to
    /// delete). Returns whether it was disabled.
    pub fn clear_disabled(&self, pk: &PublicKeyBytes) -> bool {
        self.write().disabled.remove(pk)
    }

    /// Re-enables a key and adds it (a Keymanager import). Returns false, and keeps the existing
    /// entry, when the key is already loaded (then it was not disabled).
    pub fn enable_insert(&self, key: LoadedKey) -> bool {
        let pk = key.secret.public_key().bytes();
        let mut keys = self.write();
        keys.disabled.remove(&pk);
        match keys.map.entry(pk) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert((Arc::new(key.secret), key.origin));
                true
            }
            // A disabled key is never in the map (type invariant), so this is a duplicate.
            std::collections::btree_map::Entry::Occupied(_) => false,
        }
    }

    /// Looks a key up.
    pub fn get(&self, pk: &PublicKeyBytes) -> Option<Arc<SecretKey>> {
        self.read().map.get(pk).map(|(sk, _)| Arc::clone(sk))
    }

    /// Where a key came from.
    pub fn origin(&self, pk: &PublicKeyBytes) -> Option<KeyOrigin> {
        self.read().map.get(pk).map(|(_, origin)| origin.clone())
    }

    /// Whether the key is loaded.
    pub fn contains(&self, pk: &PublicKeyBytes) -> bool {
        self.read().map.contains_key(pk)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.read().map.is_empty()
    }

    /// All public keys, sorted.
    pub fn public_keys(&self) -> Vec<PublicKeyBytes> {
        self.read().map.keys().copied().collect()
    }

    /// All public keys with their origins, sorted by public key (for the keymanager listing).
    pub fn entries(&self) -> Vec<(PublicKeyBytes, KeyOrigin)> {
        self.read()
            .map
            .iter()
            .map(|(pk, (_, origin))| (*pk, origin.clone()))
            .collect()
    }

    /// Adds one key. Returns false (and keeps the existing entry) when it is already loaded or
    /// disabled.
    pub fn insert(&self, key: LoadedKey) -> bool {
        let pk = key.secret.public_key().bytes();
        let mut keys = self.write();
        if keys.map.contains_key(&pk) || keys.disabled.contains(&pk) {
            return false;
        }
        keys.map.insert(pk, (Arc::new(key.secret), key.origin));
        true
    }

    /// Adds keys; returns how many were new. A key already loaded keeps its existing entry; a
    /// disabled key is skipped.
    pub fn insert_all(&self, keys: Vec<LoadedKey>) -> usize {
        let mut guard = self.write();
        let Keys { map, disabled } = &mut *guard;
        let mut added = 0;
        for key in keys {
            let pk = key.secret.public_key().bytes();
            if disabled.contains(&pk) {
                continue;
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = map.entry(pk) {
                slot.insert((Arc::new(key.secret), key.origin));
                added += 1;
            }
        }
        added
    }

    /// Removes a key; returns its origin if it was loaded. Signers already holding its `Arc` may
    /// finish their current signature.
    pub fn remove(&self, pk: &PublicKeyBytes) -> Option<KeyOrigin> {
        self.write().map.remove(pk).map(|(_, origin)| origin)
    }

    /// Replaces the whole set with `keys` (for `/reload`) and reports the difference. Keys present
    /// before and after keep their existing `Arc`; the first of several copies of a key wins.
    /// The caller decides whether a load with errors should be applied at all (a key whose file
    /// failed to load would be reported as removed). Disabled keys are skipped. Existing keys
    /// for which `keep` is true stay even when `keys` lacks them (a backend that could not be
    /// read this time).
    pub fn replace_all(&self, keys: Vec<LoadedKey>, keep: impl Fn(&KeyOrigin) -> bool) -> KeyDiff {
        let mut guard = self.write();
        let Keys { map, disabled } = &mut *guard;
        let mut next = KeyMap::new();
        let mut diff = KeyDiff::default();
        for key in keys {
            let pk = key.secret.public_key().bytes();
            if next.contains_key(&pk) || disabled.contains(&pk) {
                continue;
            }
            let secret = match map.get(&pk) {
                Some((existing, _)) => Arc::clone(existing),
                None => {
                    diff.added.push(pk);
                    Arc::new(key.secret)
                }
            };
            next.insert(pk, (secret, key.origin));
        }
        for (pk, (secret, origin)) in map.iter() {
            if keep(origin) && !next.contains_key(pk) {
                next.insert(*pk, (Arc::clone(secret), origin.clone()));
            }
        }
        diff.removed = map
            .keys()
            .filter(|pk| !next.contains_key(pk))
            .copied()
            .collect();
        diff.added.sort();
        *map = next;
        diff
    }
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.public_keys())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(sk: SecretKey, name: &str) -> LoadedKey {
        LoadedKey {
            secret: sk,
            origin: KeyOrigin::Keystore {
                path: PathBuf::from(name),
            },
        }
    }

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_bytes(&[seed; 32]).expect("valid scalar")
    }

    #[test]
    fn insert_get_remove() {
        let store = KeyStore::new();
        let pk1 = key(1).public_key().bytes();
        assert_eq!(
            store.insert_all(vec![loaded(key(1), "a"), loaded(key(2), "b")]),
            2
        );
        assert_eq!(store.insert_all(vec![loaded(key(1), "c")]), 0);
        assert!(!store.insert(loaded(key(2), "d")));
        assert_eq!(store.len(), 2);
        let got = store.get(&pk1).expect("present");
        assert_eq!(got.public_key().bytes(), pk1);
        assert_eq!(
            store.origin(&pk1),
            Some(KeyOrigin::Keystore { path: "a".into() })
        );
        let mut sorted = store.public_keys();
        sorted.sort();
        assert_eq!(store.public_keys(), sorted);
        assert_eq!(
            store.remove(&pk1),
            Some(KeyOrigin::Keystore { path: "a".into() })
        );
        assert!(!store.contains(&pk1));
        assert!(store.get(&pk1).is_none());
        assert_eq!(store.remove(&pk1), None);
    }

    #[test]
    fn replace_all_reports_diff_and_keeps_arcs() {
        let store = KeyStore::new();
        store.insert_all(vec![loaded(key(1), "a"), loaded(key(2), "b")]);
        let pk = |s: u8| key(s).public_key().bytes();
        let before = store.get(&pk(2)).expect("present");
        let diff = store.replace_all(vec![loaded(key(2), "b"), loaded(key(3), "c")], |_| false);
        assert_eq!(diff.added, vec![pk(3)]);
        assert_eq!(diff.removed, vec![pk(1)]);
        assert!(Arc::ptr_eq(&before, &store.get(&pk(2)).expect("kept")));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn replace_all_keeps_only_what_keep_selects() {
        let store = KeyStore::new();
        let pk = |s: u8| key(s).public_key().bytes();
        store.insert_all(vec![
            loaded(key(1), "a"),
            LoadedKey {
                secret: key(2),
                origin: KeyOrigin::Vault {
                    path: "/v1/secret/data/k".into(),
                },
            },
            LoadedKey {
                secret: key(3),
                origin: KeyOrigin::Hsm {
                    token: "t".into(),
                    object: "o".into(),
                },
            },
        ]);
        // The Vault read failed: its key stays; the token was read and no longer has key 3.
        let diff = store.replace_all(vec![loaded(key(4), "d")], |o| {
            matches!(o, KeyOrigin::Vault { .. })
        });
        let mut removed = vec![pk(1), pk(3)];
        removed.sort();
        assert_eq!(diff.removed, removed);
        assert_eq!(diff.added, vec![pk(4)]);
        assert!(store.contains(&pk(2)) && !store.contains(&pk(3)));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn concurrent_reads_and_writes() {
        let store = Arc::new(KeyStore::new());
        let pk = key(9).public_key().bytes();
        store.insert(loaded(key(9), "x"));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let store = Arc::clone(&store);
                s.spawn(move || {
                    for _ in 0..1000 {
                        assert!(store.get(&pk).is_some());
                    }
                });
            }
            s.spawn(|| {
                for i in 10..60u8 {
                    store.insert(loaded(key(i), "y"));
                }
            });
        });
        assert_eq!(store.len(), 51);
    }

    #[test]
    fn disabled_keys_are_never_inserted_until_enabled() {
        let pk = |s: u8| key(s).public_key().bytes();
        let store = KeyStore::with_disabled([pk(2)]);
        assert_eq!(
            store.insert_all(vec![loaded(key(1), "a"), loaded(key(2), "b")]),
            1
        );
        assert!(!store.insert(loaded(key(2), "b")));
        assert!(store.get(&pk(2)).is_none() && store.is_disabled(&pk(2)));
        let diff = store.replace_all(vec![loaded(key(1), "a"), loaded(key(2), "b")], |_| false);
        assert!(diff.added.is_empty() && diff.removed.is_empty());

        let (arc, origin) = store.disable(&pk(1)).expect("was loaded");
        assert_eq!(arc.public_key().bytes(), pk(1));
        assert_eq!(origin, KeyOrigin::Keystore { path: "a".into() });
        assert!(store.is_empty());
        assert_eq!(store.disabled(), {
            let mut v = vec![pk(1), pk(2)];
            v.sort();
            v
        });
        assert!(store.disable(&pk(1)).is_none());

        assert!(store.enable_insert(loaded(key(2), "imported")));
        assert!(!store.is_disabled(&pk(2)) && store.contains(&pk(2)));
        assert!(!store.enable_insert(loaded(key(2), "again")));
        assert!(store.clear_disabled(&pk(1)));
        assert!(store.insert(loaded(key(1), "a")));
    }

    #[test]
    fn keys_per_second() {
        let mut r = LoadReport::default();
        assert_eq!(r.keys_per_second(), 0.0);
        r.keys.push(loaded(key(1), "a"));
        r.keys.push(loaded(key(2), "b"));
        r.elapsed = Duration::from_millis(500);
        assert!((r.keys_per_second() - 4.0).abs() < 1e-9);
    }
}
