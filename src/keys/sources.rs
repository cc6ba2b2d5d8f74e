//! Where a signer node's keys come from: every key source behind one interface, [`KeySource`],
//! read in order by [`load_key_sources`] at start-up ([`load_at_start`]) and by `POST /reload`
//! ([`reload`]).
//!
//! The sources: the keystores directory ([`KeystoresDir`]), the key-config directory
//! ([`KeyConfigDir`]), the Keymanager API's imported keystores ([`ManagedKeys`]), the Vault bulk
//! folder ([`VaultBulkSource`]) and the PKCS#11 token ([`HsmConfig`]). The first source of a key
//! wins. A file source reports its failed files and loads the others; an all-or-nothing source
//! (Vault, PKCS#11) gives every key or one error: at start such an error stops the node, during
//! a reload the keys it gave before are kept (an outage must not take keys away).
//!
//! A new backend is one more [`KeySource`] implementation here plus the line that adds it to the
//! node's [`KeySources`].

use std::sync::Arc;

use super::cache::{CacheSession, CacheStats, KeyCache};
use super::hsm::{self, HsmConfig};
use super::managed::ManagedKeys;
use super::store::{self, LoadOptions, LoadReport};
use super::vault::{self, VaultBulkSource};
use super::{KeyOrigin, KeyStore, LoadedKey};
use crate::bls::PublicKeyBytes;
use crate::progress::{Progress, Reporter};

/// One place keys are read from.
pub trait KeySource: Send + Sync {
    /// Its name in logs and load reports (`keystores`, `key-config`, `imported`, ...).
    fn name(&self) -> &'static str;

    /// The id of its check under `keys-check` in `/healthcheck`.
    fn health_id(&self) -> &'static str;

    /// Reads every key. Per-key failures go into the report; `Err` when the source cannot be
    /// read at all, which fails the whole load.
    ///
    /// # Errors
    /// A message naming the source.
    fn load(&self, options: LoadOptions<'_>) -> Result<LoadReport, String>;

    /// Whether the source is read all or nothing (its report holds every key or one error).
    fn all_or_nothing(&self) -> bool {
        false
    }

    /// Whether a key of `origin` came from this source (kept by a reload that cannot read an
    /// all-or-nothing source).
    fn gave(&self, _origin: &KeyOrigin) -> bool {
        false
    }

    /// Whether `/healthcheck` shows the source when it has neither keys nor errors.
    fn shown_when_empty(&self) -> bool {
        true
    }
}

/// The node's key sources, in load order (re-read by `/reload`).
#[derive(Clone, Default)]
pub struct KeySources {
    sources: Vec<Arc<dyn KeySource>>,
}

impl std::fmt::Debug for KeySources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.sources.iter().map(|s| s.name()))
            .finish()
    }
}

impl KeySources {
    /// No source.
    pub fn new() -> Self {
        Self::default()
    }

    /// `self` with `source` read after the ones before it.
    #[must_use]
    pub fn with(mut self, source: impl KeySource + 'static) -> Self {
        self.push(Arc::new(source));
        self
    }

    /// Adds `source`, read after the ones before it.
    pub fn push(&mut self, source: Arc<dyn KeySource>) {
        self.sources.push(source);
    }

    /// `self` with the Keymanager API's imported keystores read after the file sources and
    /// before the all-or-nothing backends.
    #[must_use]
    pub fn with_imported(mut self, managed: ManagedKeys) -> Self {
        let at = self
            .sources
            .iter()
            .position(|s| s.all_or_nothing())
            .unwrap_or(self.sources.len());
        self.sources.insert(at, Arc::new(managed));
        self
    }

    /// The sources, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn KeySource>> {
        self.sources.iter()
    }

    /// The sources' names, in load order.
    pub fn names(&self) -> Vec<&'static str> {
        self.sources.iter().map(|s| s.name()).collect()
    }

    /// Whether there is no source.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// One `/healthcheck` entry: a source's keys and failures in the last load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStatus {
    /// The check id ([`KeySource::health_id`]).
    pub health_id: &'static str,
    /// Keys loaded.
    pub loaded: usize,
    /// Files that failed (1 when an all-or-nothing source could not be read).
    pub errors: usize,
}

/// Outcome of the last key load, for `/healthcheck`.
#[derive(Debug, Clone, Default)]
pub struct LoadStatus {
    checks: Vec<SourceStatus>,
}

impl LoadStatus {
    /// The sources' entries, in load order.
    pub fn checks(&self) -> &[SourceStatus] {
        &self.checks
    }

    /// The entry of the check `health_id`, if it is shown.
    pub fn get(&self, health_id: &str) -> Option<&SourceStatus> {
        self.checks.iter().find(|c| c.health_id == health_id)
    }
}

/// What one load of every key source produced (start-up and `/reload`).
#[derive(Default)]
pub struct KeysLoad {
    /// Per source, in load order, its report.
    pub reports: Vec<(Arc<dyn KeySource>, LoadReport)>,
    /// Key-cache outcome, when the cache is on.
    pub cache: Option<Result<CacheStats, super::cache::Error>>,
}

impl KeysLoad {
    /// The `/healthcheck` counts of the sources.
    pub fn status(&self) -> LoadStatus {
        let checks = self
            .reports
            .iter()
            .filter(|(source, report)| {
                source.shown_when_empty() || !report.keys.is_empty() || !report.errors.is_empty()
            })
            .map(|(source, report)| SourceStatus {
                health_id: source.health_id(),
                loaded: report.keys.len(),
                errors: report.errors.len(),
            })
            .collect();
        LoadStatus { checks }
    }

    /// The first failure of an all-or-nothing source (Vault bulk folder, PKCS#11 token), as a
    /// message naming the source: at start such a failure stops the node.
    pub fn backend_failure(&self) -> Option<String> {
        self.failed_backends()
            .find_map(|(_, report)| report.errors.first())
            .map(|(what, error)| format!("loading keys from {}: {error}", what.display()))
    }

    fn failed_backends(&self) -> impl Iterator<Item = &(Arc<dyn KeySource>, LoadReport)> {
        self.reports
            .iter()
            .filter(|(source, report)| source.all_or_nothing() && !report.errors.is_empty())
    }

    /// The first failure of any source, as `what: error` (named once when the message already
    /// starts with it).
    pub fn first_error(&self) -> Option<String> {
        self.reports.iter().find_map(|(_, report)| {
            report.errors.first().map(|(p, e)| {
                let p = p.display().to_string();
                if e.starts_with(&p) {
                    e.clone()
                } else {
                    format!("{p}: {e}")
                }
            })
        })
    }

    /// All loaded keys, in source order.
    pub fn into_keys(self) -> Vec<LoadedKey> {
        self.reports
            .into_iter()
            .flat_map(|(_, report)| report.keys)
            .collect()
    }
}

/// Loads every key source in order, keystores through the key cache when one is given (its
/// file is rewritten when the keystores changed). CPU-heavy and blocking: call from a blocking
/// thread. While keystores are decrypted it logs `loading keys` with `done`, `total`,
/// `keys_per_second` and `eta_seconds` every [`crate::progress::interval`], and keeps the
/// `dvsigner_keys_loading_total` / `_done` gauges current.
///
/// # Errors
/// When a configured directory cannot be read at all (per-file failures, and a Vault folder or
/// token that cannot be read, are in the reports; see [`KeysLoad::backend_failure`]).
pub fn load_key_sources(
    sources: &KeySources,
    cache: Option<&KeyCache>,
) -> Result<KeysLoad, String> {
    let session = cache.map(|c| c.session(c.len() + 4096));
    let (total_gauge, done_gauge) = crate::metrics::global().key_loading_gauges();
    let progress = Arc::new(Progress::with_gauges(0, total_gauge, done_gauge));
    let _reporter = Reporter::spawn(Arc::clone(&progress), crate::progress::interval(), |s| {
        // Nothing to count yet (no keystores, or a Vault folder or token being read).
        if s.total == 0 {
            return;
        }
        tracing::info!(
            done = s.done,
            total = s.total,
            keys_per_second = (s.per_second * 10.0).round() / 10.0,
            eta_seconds = s.eta_seconds,
            "loading keys: {}",
            s.describe("keys")
        );
    });
    let options = LoadOptions {
        cache: session.as_ref(),
        imported: false,
        progress: Some(&progress),
    };
    let mut load = KeysLoad::default();
    for source in sources.iter() {
        let report = source.load(options)?;
        load.reports.push((Arc::clone(source), report));
    }
    load.cache = session.map(CacheSession::finish);
    Ok(load)
}

/// The start-up load: every source (logging each one's count and rate, and its failed files),
/// the keys in `disabled` refused. Blocking: call from a blocking thread.
///
/// # Errors
/// A source that cannot be read at all, or an all-or-nothing source that failed (a configured
/// Vault folder or PKCS#11 token: the node does not start with part of its keys).
pub fn load_at_start(
    sources: &KeySources,
    disabled: Vec<PublicKeyBytes>,
    cache: Option<&KeyCache>,
) -> Result<(KeyStore, LoadStatus), String> {
    let load = load_key_sources(sources, cache)?;
    for (source, report) in &load.reports {
        log_report(source.name(), report);
    }
    if let Some(failure) = load.backend_failure() {
        return Err(failure);
    }
    match &load.cache {
        Some(Ok(stats)) => tracing::info!(
            hits = stats.hits,
            misses = stats.misses,
            dropped = stats.dropped,
            written = stats.written,
            "key cache used"
        ),
        Some(Err(e)) => tracing::warn!(error = %e, "key cache not written"),
        None => {}
    }
    let status = load.status();
    let keys = KeyStore::with_disabled(disabled);
    keys.insert_all(load.into_keys());
    Ok((keys, status))
}

/// What a reload did.
#[derive(Debug)]
pub struct ReloadOutcome {
    /// The new `/healthcheck` counts.
    pub status: LoadStatus,
    /// The first failure of any source.
    pub first_error: Option<String>,
    /// Keys added and removed.
    pub added: usize,
    /// Keys removed.
    pub removed: usize,
}

/// Re-reads every source and swaps the new key set into `keys`, applying only the delta (keys
/// in use keep their `Arc`). An all-or-nothing source that cannot be read keeps the keys it
/// gave before. Blocking: call from a blocking thread, holding whatever serialises key-set
/// changes.
///
/// # Errors
/// A source that cannot be read at all (nothing is changed then).
pub fn reload(
    keys: &KeyStore,
    sources: &KeySources,
    cache: Option<&KeyCache>,
) -> Result<ReloadOutcome, String> {
    let load = load_key_sources(sources, cache)?;
    let first_error = load.first_error();
    if let Some(Err(e)) = &load.cache {
        tracing::warn!(error = %e, "key cache not written");
    }
    let status = load.status();
    let failed: Vec<Arc<dyn KeySource>> = load
        .failed_backends()
        .map(|(source, _)| Arc::clone(source))
        .collect();
    if let Some(failure) = load.backend_failure() {
        tracing::warn!(error = %failure, "reload: keeping the keys this backend gave before");
    }
    let diff = keys.replace_all(load.into_keys(), |origin| {
        failed.iter().any(|source| source.gave(origin))
    });
    tracing::info!(
        added = diff.added.len(),
        removed = diff.removed.len(),
        "keys reloaded"
    );
    Ok(ReloadOutcome {
        status,
        first_error,
        added: diff.added.len(),
        removed: diff.removed.len(),
    })
}

fn log_report(source: &str, report: &LoadReport) {
    for (path, error) in &report.errors {
        tracing::error!(source, file = %path.display(), %error, "key failed to load");
    }
    let secs = report.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        report.keys.len() as f64 / secs
    } else {
        0.0
    };
    tracing::info!(
        source,
        loaded = report.keys.len(),
        errors = report.errors.len(),
        seconds = format!("{secs:.2}"),
        keys_per_second = format!("{rate:.1}"),
        "keys loaded"
    );
}

/// `--keystores` / `--keystores-passwords`: EIP-2335 keystores `NAME.json` with `NAME.txt`
/// passwords.
#[derive(Debug, Clone)]
pub struct KeystoresDir {
    /// The keystores directory.
    pub keystores: std::path::PathBuf,
    /// The passwords directory.
    pub passwords: std::path::PathBuf,
}

impl KeySource for KeystoresDir {
    fn name(&self) -> &'static str {
        "keystores"
    }
    fn health_id(&self) -> &'static str {
        "keystores-bulk-loading"
    }
    fn load(&self, options: LoadOptions<'_>) -> Result<LoadReport, String> {
        store::load_keystores_dir_with(&self.keystores, &self.passwords, options)
            .map_err(|e| format!("reading keystores from {}: {e}", self.keystores.display()))
    }
}

/// `--key-config`: Web3Signer key-config YAML files (`file-keystore`, `file-raw`).
#[derive(Debug, Clone)]
pub struct KeyConfigDir {
    /// The directory.
    pub dir: std::path::PathBuf,
}

impl KeySource for KeyConfigDir {
    fn name(&self) -> &'static str {
        "key-config"
    }
    fn health_id(&self) -> &'static str {
        "config-files-loading"
    }
    fn load(&self, options: LoadOptions<'_>) -> Result<LoadReport, String> {
        store::load_key_config_dir_with(&self.dir, options)
            .map_err(|e| format!("reading key configs from {}: {e}", self.dir.display()))
    }
}

/// Keystores imported through the Keymanager API, kept in the data directory. Shown in
/// `/healthcheck` once there is something imported (or failing) to report.
impl KeySource for ManagedKeys {
    fn name(&self) -> &'static str {
        "imported"
    }
    fn health_id(&self) -> &'static str {
        "keymanager-imported-loading"
    }
    fn load(&self, options: LoadOptions<'_>) -> Result<LoadReport, String> {
        ManagedKeys::load(self, options).map_err(|e| e.to_string())
    }
    fn shown_when_empty(&self) -> bool {
        false
    }
}

/// HashiCorp Vault bulk mode: every key under the folder, or one error naming the server and
/// folder (a folder is not used in part).
impl KeySource for VaultBulkSource {
    fn name(&self) -> &'static str {
        "vault-bulk"
    }
    fn health_id(&self) -> &'static str {
        "hashicorp-bulk-loading"
    }
    fn load(&self, _options: LoadOptions<'_>) -> Result<LoadReport, String> {
        let what = format!("vault {} ({}/{})", self.server.url, self.mount, self.folder);
        Ok(whole_source_report(what, || {
            vault::load_bulk_blocking(self).map(|keys| {
                keys.into_iter()
                    .map(|k| LoadedKey {
                        secret: k.secret,
                        origin: KeyOrigin::Vault { path: k.path },
                    })
                    .collect()
            })
        }))
    }
    fn all_or_nothing(&self) -> bool {
        true
    }
    fn gave(&self, origin: &KeyOrigin) -> bool {
        matches!(origin, KeyOrigin::Vault { .. })
    }
}

/// Every share wrapped in the PKCS#11 token, or one error naming the token.
impl KeySource for HsmConfig {
    fn name(&self) -> &'static str {
        "hsm"
    }
    fn health_id(&self) -> &'static str {
        "pkcs11-loading"
    }
    fn load(&self, _options: LoadOptions<'_>) -> Result<LoadReport, String> {
        let what = format!("pkcs#11 token \"{}\"", self.token_label);
        Ok(whole_source_report(what, || {
            hsm::load(self).map(|shares| {
                shares
                    .into_iter()
                    .map(|s| LoadedKey {
                        secret: s.secret,
                        origin: KeyOrigin::Hsm {
                            token: self.token_label.clone(),
                            object: s.object,
                        },
                    })
                    .collect()
            })
        }))
    }
    fn all_or_nothing(&self) -> bool {
        true
    }
    fn gave(&self, origin: &KeyOrigin) -> bool {
        matches!(origin, KeyOrigin::Hsm { .. })
    }
}

/// The report of an all-or-nothing source: its keys, or its one error under the name `what`.
fn whole_source_report<E: std::fmt::Display>(
    what: String,
    read: impl FnOnce() -> Result<Vec<LoadedKey>, E>,
) -> LoadReport {
    let started = std::time::Instant::now();
    let mut report = LoadReport::default();
    match read() {
        Ok(keys) => report.keys = keys,
        Err(e) => report.errors.push((what.into(), e.to_string())),
    }
    report.elapsed = started.elapsed();
    report
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::keys::interop::interop_secret_key;

    /// A source giving interop keys `keys` (or failing with `error`).
    struct Fake {
        name: &'static str,
        whole: bool,
        keys: Mutex<Result<Vec<u64>, String>>,
    }

    impl Fake {
        fn new(name: &'static str, whole: bool, keys: &[u64]) -> Arc<Self> {
            Arc::new(Self {
                name,
                whole,
                keys: Mutex::new(Ok(keys.to_vec())),
            })
        }
        fn set(&self, keys: Result<Vec<u64>, String>) {
            *self.keys.lock().expect("lock") = keys;
        }
    }

    impl KeySource for Arc<Fake> {
        fn name(&self) -> &'static str {
            self.name
        }
        fn health_id(&self) -> &'static str {
            self.name
        }
        fn load(&self, _options: LoadOptions<'_>) -> Result<LoadReport, String> {
            let origin = |i: u64| {
                if self.whole {
                    KeyOrigin::Vault {
                        path: format!("/v1/secret/data/{i}"),
                    }
                } else {
                    KeyOrigin::Keystore {
                        path: format!("{i}.json").into(),
                    }
                }
            };
            let read = self.keys.lock().expect("lock").clone();
            if self.whole {
                return Ok(whole_source_report(self.name.into(), || {
                    read.map(|ids| {
                        ids.into_iter()
                            .map(|i| LoadedKey {
                                secret: interop_secret_key(i),
                                origin: origin(i),
                            })
                            .collect::<Vec<_>>()
                    })
                }));
            }
            let ids = read?;
            Ok(LoadReport {
                keys: ids
                    .into_iter()
                    .map(|i| LoadedKey {
                        secret: interop_secret_key(i),
                        origin: origin(i),
                    })
                    .collect(),
                ..LoadReport::default()
            })
        }
        fn all_or_nothing(&self) -> bool {
            self.whole
        }
        fn gave(&self, origin: &KeyOrigin) -> bool {
            self.whole && matches!(origin, KeyOrigin::Vault { .. })
        }
    }

    fn pk(i: u64) -> PublicKeyBytes {
        interop_secret_key(i).public_key().bytes()
    }

    #[test]
    fn reload_keeps_the_keys_of_an_unreadable_all_or_nothing_source() {
        let files = Fake::new("files", false, &[0]);
        let backend = Fake::new("backend", true, &[1, 2]);
        let sources = KeySources::new()
            .with(Arc::clone(&files))
            .with(Arc::clone(&backend));
        let (keys, status) = load_at_start(&sources, Vec::new(), None).expect("start");
        assert_eq!(keys.len(), 3);
        assert_eq!(
            status.get("backend"),
            Some(&SourceStatus {
                health_id: "backend",
                loaded: 2,
                errors: 0
            })
        );

        // The backend fails and a file key goes away: the backend's keys stay, the file's go.
        files.set(Ok(Vec::new()));
        backend.set(Err("sealed".into()));
        let outcome = reload(&keys, &sources, None).expect("reload");
        assert_eq!((outcome.added, outcome.removed), (0, 1));
        assert!(keys.get(&pk(0)).is_none());
        assert!(keys.get(&pk(1)).is_some() && keys.get(&pk(2)).is_some());
        assert_eq!(outcome.first_error.as_deref(), Some("backend: sealed"));
        assert_eq!(outcome.status.get("backend").map(|s| s.errors), Some(1));

        // Readable again: its new key set replaces the kept one.
        backend.set(Ok(vec![2]));
        let outcome = reload(&keys, &sources, None).expect("reload");
        assert_eq!((outcome.added, outcome.removed), (0, 1));
        assert!(keys.get(&pk(1)).is_none() && keys.get(&pk(2)).is_some());
        assert_eq!(outcome.first_error, None);

        // At start the same failure stops the load, naming the source.
        backend.set(Err("sealed".into()));
        let err = load_at_start(&sources, Vec::new(), None).err();
        assert_eq!(err.as_deref(), Some("loading keys from backend: sealed"));
    }

    #[test]
    fn a_file_source_that_cannot_be_read_fails_the_load() {
        let files = Fake::new("files", false, &[0]);
        files.set(Err("reading keystores from /nowhere: gone".into()));
        let sources = KeySources::new().with(Arc::clone(&files));
        assert_eq!(
            load_key_sources(&sources, None).err().as_deref(),
            Some("reading keystores from /nowhere: gone")
        );
        let dir = tempfile::tempdir().expect("tmp");
        let missing = KeySources::new().with(KeystoresDir {
            keystores: dir.path().join("absent"),
            passwords: dir.path().join("absent-pw"),
        });
        let err = load_key_sources(&missing, None).err().expect("unreadable");
        assert!(
            err.starts_with(&format!(
                "reading keystores from {}",
                dir.path().join("absent").display()
            )),
            "{err}"
        );
    }

    #[test]
    fn imported_keys_come_after_the_files_and_before_the_backends() {
        let dir = tempfile::tempdir().expect("tmp");
        let sources = KeySources::new()
            .with(KeystoresDir {
                keystores: dir.path().join("ks"),
                passwords: dir.path().join("pw"),
            })
            .with(Fake::new("backend", true, &[1]))
            .with_imported(ManagedKeys::new(dir.path()));
        assert_eq!(sources.names(), ["keystores", "imported", "backend"]);
        // First source wins: a key both in the keystores directory and the backend is the file's.
        std::fs::create_dir_all(dir.path().join("ks")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("pw")).expect("mkdir");
        let password = crate::keys::Password::new("pw".into());
        let ks = crate::keys::Keystore::encrypt(
            &interop_secret_key(1),
            &password,
            crate::keys::KdfParams::insecure_fast(),
            "",
            "",
        )
        .expect("encrypt");
        std::fs::write(dir.path().join("ks/k1.json"), ks.to_json()).expect("write");
        std::fs::write(dir.path().join("pw/k1.txt"), "pw").expect("write");
        let load = load_key_sources(&sources, None).expect("load");
        let status = load.status();
        // Nothing imported: no imported entry; the keystores directory is shown.
        let ids: Vec<_> = status.checks().iter().map(|c| c.health_id).collect();
        assert_eq!(ids, ["keystores-bulk-loading", "backend"]);
        let keys = KeyStore::default();
        keys.insert_all(load.into_keys());
        assert_eq!(keys.len(), 1);
        let origin = keys.origin(&pk(1)).expect("loaded");
        assert!(matches!(origin, KeyOrigin::Keystore { .. }), "{origin:?}");
    }
}
