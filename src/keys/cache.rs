//! Opt-in local key cache (`--key-cache`): fast restarts with thousands of scrypt keystores.
//!
//! EIP-2335 keystores are slow to open on purpose (scrypt n = 2^18 costs about a second and
//! 256 MiB each), so 10,000 keystores take minutes even on many cores. Like Lighthouse's
//! validator-client key cache, this module keeps the decrypted keys in **one** file in the data
//! directory, encrypted under a key derived **once** per start from a cache password
//! (`--key-cache-password-file`): one KDF run instead of one per keystore.
//!
//! File format (`<data-dir>/key-cache`, mode 0600, written to a temporary file and renamed):
//! ```text
//! magic "DVSKC001" | log2(n) u8 | r u32 BE | p u32 BE | salt [32] | nonce [12] | AES-256-GCM(entries) + tag
//! entries = (id [32] | secret [32])*
//! ```
//! The header (everything before the ciphertext) is the AEAD's associated data, so a changed
//! header fails authentication. `scrypt(password, salt, n, r, p, dklen 64)` gives the AES-256-GCM
//! key (first half) and an HMAC-SHA256 key (second half).
//!
//! Invalidation is per keystore: an entry's id is `HMAC(mac_key, path | keystore bytes |
//! password)` (each length-prefixed), so any change to a keystore file, its password or its
//! location misses the cache and that keystore is decrypted normally; entries whose keystores
//! are gone are dropped when the file is rewritten. A cached secret is used only if its public
//! key equals the keystore's `pubkey` field when the keystore has one.
//!
//! Invariants: secrets only in [`Zeroizing`] buffers (maps are sized before they are filled, so
//! they do not reallocate and leave copies behind); the cache password and derived keys are
//! zeroized; nothing secret is logged. A cache that cannot be read (wrong password, corrupt,
//! other version) is not an error: the load decrypts every keystore and rewrites the cache
//! under the current password, still with a single KDF run.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use zeroize::Zeroizing;

use crate::keys::keystore::{self, normalise_password, KdfParams};
use crate::keys::secret::{Password, SecretKey};

/// File name of the cache inside the data directory.
pub const FILE_NAME: &str = "key-cache";

const MAGIC: &[u8; 8] = b"DVSKC001";
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = MAGIC.len() + 1 + 4 + 4 + SALT_LEN + NONCE_LEN;
const ENTRY_LEN: usize = 64;

/// An entry id: HMAC-SHA256 of a keystore's path, bytes and password.
pub type EntryId = [u8; 32];

/// Key-cache errors. Messages name the file, never a key or password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cache file exists but could not be read.
    #[error("cannot read key cache {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The cache file could not be written.
    #[error("cannot write key cache {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The KDF parameters are invalid or the KDF failed.
    #[error("key cache kdf: {0}")]
    Kdf(String),
    /// The cache password file could not be read.
    #[error("key cache password: {0}")]
    Password(String),
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Random,
}

/// Why an existing cache file was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Not a cache file of this version.
    Format(String),
    /// Authentication failed: another password, or the file was altered.
    Authentication,
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Format(m) => write!(f, "not a key cache file: {m}"),
            Self::Authentication => {
                f.write_str("authentication failed (another password, or the file was altered)")
            }
        }
    }
}

/// How the cache file was found when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenState {
    /// No cache file yet.
    Missing,
    /// Read and authenticated, with this many entries.
    Loaded(usize),
    /// Present but unusable; it will be replaced.
    Unusable(Unusable),
}

/// Hit and miss counts of one load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Keystores whose key came from the cache.
    pub hits: usize,
    /// Keystores decrypted with their own KDF.
    pub misses: usize,
    /// Entries dropped because their keystore is gone or changed.
    pub dropped: usize,
    /// Whether the file was rewritten.
    pub written: bool,
}

/// An open key cache: derived keys and the known entries.
pub struct KeyCache {
    path: PathBuf,
    kdf: (u8, u32, u32),
    salt: [u8; SALT_LEN],
    aead: LessSafeKey,
    mac: hmac::Key,
    entries: Mutex<HashMap<EntryId, Zeroizing<[u8; 32]>>>,
    state: OpenState,
    /// Whether the file holds exactly `entries`.
    current: AtomicBool,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("path", &self.path)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    /// Opens (or prepares to create) the cache at `path`, deriving the keys with one KDF run:
    /// with the file's salt and parameters when the file exists, else with a fresh salt and
    /// `kdf` (scrypt only). See [`KeyCache::state`] for what was found.
    ///
    /// # Errors
    /// [`Error::Read`] when the file exists but cannot be read, [`Error::Kdf`] for parameters
    /// other than scrypt or rejected by it, [`Error::Random`].
    pub fn open(path: &Path, password: &Password, kdf: KdfParams) -> Result<Self, Error> {
        let file = match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(Error::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let header = file.as_deref().map(parse_header);
        let (params, salt) = match &header {
            Some(Ok(h)) => (h.kdf, h.salt),
            _ => {
                let KdfParams::Scrypt { n, r, p } = kdf else {
                    return Err(Error::Kdf("the key cache uses scrypt".into()));
                };
                kdf.validate().map_err(|e| Error::Kdf(e.to_string()))?;
                let mut salt = [0u8; SALT_LEN];
                fill_random(&mut salt)?;
                ((n.trailing_zeros() as u8, r, p), salt)
            }
        };
        let (aead, mac) = derive_keys(password, params, &salt)?;
        let mut cache = Self {
            path: path.to_owned(),
            kdf: params,
            salt,
            aead,
            mac,
            entries: Mutex::default(),
            state: OpenState::Missing,
            current: AtomicBool::new(false),
        };
        cache.state = match (file, header) {
            (None, _) | (_, None) => OpenState::Missing,
            (Some(_), Some(Err(e))) => OpenState::Unusable(e),
            (Some(bytes), Some(Ok(_))) => match cache.decrypt_entries(bytes) {
                Ok(entries) => {
                    let n = entries.len();
                    *cache
                        .entries
                        .get_mut()
                        .unwrap_or_else(PoisonError::into_inner) = entries;
                    cache.current = AtomicBool::new(true);
                    OpenState::Loaded(n)
                }
                Err(e) => OpenState::Unusable(e),
            },
        };
        Ok(cache)
    }

    /// What [`KeyCache::open`] found.
    pub fn state(&self) -> &OpenState {
        &self.state
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of entries currently known.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no entry is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EntryId, Zeroizing<[u8; 32]>>> {
        // Every write is one map operation or a swap: a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The id of a keystore as read now: HMAC over its path, file bytes and password.
    pub fn entry_id(&self, path: &Path, keystore: &[u8], password: &Password) -> EntryId {
        let mut ctx = hmac::Context::with_key(&self.mac);
        let path = path.as_os_str().as_encoded_bytes();
        let password = password.expose_secret().as_bytes();
        for part in [path, keystore, password] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(ctx.sign().as_ref());
        id
    }

    /// Starts one load (start-up or `/reload`): lookups hit the known entries, and
    /// [`CacheSession::finish`] makes the keystores seen in this load the new entry set.
    pub fn session(&self, expected: usize) -> CacheSession<'_> {
        CacheSession {
            cache: self,
            fresh: Mutex::new(HashMap::with_capacity(expected)),
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
        }
    }

    fn decrypt_entries(
        &self,
        mut bytes: Vec<u8>,
    ) -> Result<HashMap<EntryId, Zeroizing<[u8; 32]>>, Unusable> {
        let header: [u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| Unusable::Format("too short".into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&header[HEADER_LEN - NONCE_LEN..]);
        let mut body = Zeroizing::new(bytes.split_off(HEADER_LEN));
        let plain = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header),
                body.as_mut_slice(),
            )
            .map_err(|_| Unusable::Authentication)?;
        if plain.len() % ENTRY_LEN != 0 {
            return Err(Unusable::Format("entries are not 64-byte records".into()));
        }
        let mut map = HashMap::with_capacity(plain.len() / ENTRY_LEN);
        for record in plain.chunks_exact(ENTRY_LEN) {
            let mut id = [0u8; 32];
            id.copy_from_slice(&record[..32]);
            let mut secret = Zeroizing::new([0u8; 32]);
            secret.copy_from_slice(&record[32..]);
            map.insert(id, secret);
        }
        Ok(map)
    }

    /// Encrypts `entries` (sorted by id) and replaces the file atomically (0600).
    fn write(&self, entries: &HashMap<EntryId, Zeroizing<[u8; 32]>>) -> Result<(), Error> {
        let mut ids: Vec<&EntryId> = entries.keys().collect();
        ids.sort_unstable();
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.push(self.kdf.0);
        header.extend_from_slice(&self.kdf.1.to_be_bytes());
        header.extend_from_slice(&self.kdf.2.to_be_bytes());
        header.extend_from_slice(&self.salt);
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        header.extend_from_slice(&nonce);
        let mut body = Zeroizing::new(Vec::with_capacity(
            ids.len() * ENTRY_LEN + self.aead.algorithm().tag_len(),
        ));
        for id in ids {
            body.extend_from_slice(id);
            if let Some(secret) = entries.get(id) {
                body.extend_from_slice(secret.as_ref());
            }
        }
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header),
                &mut *body,
            )
            .map_err(|_| Error::Kdf("aes-256-gcm seal failed".into()))?;
        let mut out = header;
        out.extend_from_slice(&body);
        let tmp = self.path.with_extension("tmp");
        let fail = |source| Error::Write {
            path: self.path.clone(),
            source,
        };
        keystore::write_private(&tmp, &out).map_err(|e| match e {
            keystore::Error::Write { source, .. } => fail(source),
            other => fail(std::io::Error::other(other.to_string())),
        })?;
        std::fs::rename(&tmp, &self.path).map_err(fail)
    }
}

/// One load's view of the cache: hits come from the known entries; every keystore loaded is
/// recorded so the entry set can be replaced by exactly the keystores that exist now.
pub struct CacheSession<'a> {
    cache: &'a KeyCache,
    fresh: Mutex<HashMap<EntryId, Zeroizing<[u8; 32]>>>,
    hits: AtomicUsize,
    misses: AtomicUsize,
}

impl fmt::Debug for CacheSession<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheSession")
            .field("hits", &self.hits.load(Ordering::Relaxed))
            .field("misses", &self.misses.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl CacheSession<'_> {
    /// The id of a keystore (see [`KeyCache::entry_id`]).
    pub fn entry_id(&self, path: &Path, keystore: &[u8], password: &Password) -> EntryId {
        self.cache.entry_id(path, keystore, password)
    }

    /// The cached key for `id`, if known and valid; counts a hit (and records it for the next
    /// file) or nothing (the caller decrypts and calls [`CacheSession::record`]).
    pub fn lookup(&self, id: &EntryId) -> Option<SecretKey> {
        let secret = {
            let entries = self.cache.lock();
            SecretKey::from_bytes(entries.get(id)?).ok()?
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.keep(*id, &secret);
        Some(secret)
    }

    /// Records a key decrypted the slow way (a miss).
    pub fn record(&self, id: EntryId, secret: &SecretKey) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.keep(id, secret);
    }

    fn keep(&self, id: EntryId, secret: &SecretKey) {
        self.fresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, secret.expose_secret());
    }

    /// Ends the load: the keystores seen become the cache's entries, and the file is rewritten
    /// when they differ from what it held (or it was missing or unusable).
    ///
    /// # Errors
    /// [`Error::Write`] or [`Error::Random`]; the in-memory entries are updated anyway.
    pub fn finish(self) -> Result<CacheStats, Error> {
        let fresh = self
            .fresh
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let mut entries = self.cache.lock();
        let dropped = entries.keys().filter(|id| !fresh.contains_key(*id)).count();
        let misses = self.misses.into_inner();
        let stale_file = !self.cache.current.load(Ordering::Acquire)
            && (!fresh.is_empty() || self.cache.path.exists());
        let must_write = misses > 0 || dropped > 0 || stale_file;
        *entries = fresh;
        let mut stats = CacheStats {
            hits: self.hits.into_inner(),
            misses,
            dropped,
            written: false,
        };
        if must_write {
            self.cache.current.store(false, Ordering::Release);
            self.cache.write(&entries)?;
            self.cache.current.store(true, Ordering::Release);
            stats.written = true;
        }
        Ok(stats)
    }
}

struct Header {
    kdf: (u8, u32, u32),
    salt: [u8; SALT_LEN],
}

fn parse_header(bytes: &[u8]) -> Result<Header, Unusable> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Unusable::Format("unknown magic or too short".into()));
    }
    let at = MAGIC.len();
    let log_n = bytes[at];
    let word = |i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&bytes[i..i + 4]);
        u32::from_be_bytes(w)
    };
    let (r, p) = (word(at + 1), word(at + 5));
    let n = 1u32
        .checked_shl(u32::from(log_n))
        .ok_or_else(|| Unusable::Format(format!("scrypt log2(n) {log_n}")))?;
    KdfParams::Scrypt { n, r, p }
        .validate()
        .map_err(|e| Unusable::Format(e.to_string()))?;
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&bytes[at + 9..at + 9 + SALT_LEN]);
    Ok(Header {
        kdf: (log_n, r, p),
        salt,
    })
}

/// The one KDF run: scrypt to 64 bytes, split into the AEAD key and the HMAC key.
fn derive_keys(
    password: &Password,
    (log_n, r, p): (u8, u32, u32),
    salt: &[u8],
) -> Result<(LessSafeKey, hmac::Key), Error> {
    let params = scrypt::Params::new(log_n, r, p, 64).map_err(|e| Error::Kdf(e.to_string()))?;
    let mut dk = Zeroizing::new([0u8; 64]);
    scrypt::scrypt(&normalise_password(password), salt, &params, dk.as_mut())
        .map_err(|e| Error::Kdf(e.to_string()))?;
    let unbound = UnboundKey::new(&aead::AES_256_GCM, &dk[..32])
        .map_err(|_| Error::Kdf("aes-256-gcm key".into()))?;
    let mac = hmac::Key::new(hmac::HMAC_SHA256, &dk[32..]);
    Ok((LessSafeKey::new(unbound), mac))
}

fn fill_random(buf: &mut [u8]) -> Result<(), Error> {
    use rand::RngCore;
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|_| Error::Random)
}

/// Reads the cache password (first line of the file, as keystore passwords) and refuses an
/// empty one.
///
/// # Errors
/// [`Error::Password`] when the file cannot be read or the password is empty.
pub fn read_password(path: &Path) -> Result<Password, Error> {
    let password = Password::from_file(path).map_err(|e| Error::Password(e.to_string()))?;
    if password.expose_secret().is_empty() {
        return Err(Error::Password(format!("{} is empty", path.display())));
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap scrypt parameters for unit tests (the format stores them).
    fn cheap() -> KdfParams {
        KdfParams::Scrypt { n: 16, r: 8, p: 1 }
    }

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_bytes(&[seed; 32]).expect("valid scalar")
    }

    fn pw(s: &str) -> Password {
        Password::new(s.into())
    }

    #[test]
    fn round_trip_hits_after_reopen_and_file_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let cache = KeyCache::open(&path, &pw("cache pw"), cheap()).expect("open");
        assert_eq!(cache.state(), &OpenState::Missing);
        let id = cache.entry_id(Path::new("/k/a.json"), b"{ks a}", &pw("a"));
        let session = cache.session(1);
        assert!(session.lookup(&id).is_none());
        session.record(id, &key(1));
        let stats = session.finish().expect("finish");
        assert_eq!((stats.hits, stats.misses, stats.written), (0, 1, true));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let bytes = std::fs::read(&path).expect("read");
        let secret = key(1).expose_secret();
        assert!(!bytes.windows(32).any(|w| w == secret.as_ref()));

        let again = KeyCache::open(&path, &pw("cache pw"), cheap()).expect("reopen");
        assert_eq!(again.state(), &OpenState::Loaded(1));
        let id2 = again.entry_id(Path::new("/k/a.json"), b"{ks a}", &pw("a"));
        assert_eq!(id, id2);
        let session = again.session(1);
        let got = session.lookup(&id2).expect("hit");
        assert_eq!(got.public_key().bytes(), key(1).public_key().bytes());
        let stats = session.finish().expect("finish");
        assert_eq!((stats.hits, stats.misses, stats.written), (1, 0, false));
    }

    #[test]
    fn any_change_misses_and_stale_entries_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let cache = KeyCache::open(&path, &pw("p"), cheap()).expect("open");
        let base = cache.entry_id(Path::new("/k/a.json"), b"ks", &pw("a"));
        for other in [
            cache.entry_id(Path::new("/k/b.json"), b"ks", &pw("a")),
            cache.entry_id(Path::new("/k/a.json"), b"ks2", &pw("a")),
            cache.entry_id(Path::new("/k/a.json"), b"ks", &pw("b")),
        ] {
            assert_ne!(base, other);
        }
        let s = cache.session(2);
        s.record(base, &key(1));
        s.record([9; 32], &key(2));
        s.finish().expect("finish");
        let s = cache.session(1);
        assert!(s.lookup(&base).is_some());
        let stats = s.finish().expect("finish");
        assert_eq!((stats.hits, stats.dropped, stats.written), (1, 1, true));
        let reopened = KeyCache::open(&path, &pw("p"), cheap()).expect("reopen");
        assert_eq!(reopened.state(), &OpenState::Loaded(1));
    }

    #[test]
    fn wrong_password_or_tampering_is_unusable_not_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let cache = KeyCache::open(&path, &pw("right"), cheap()).expect("open");
        let s = cache.session(1);
        s.record([1; 32], &key(3));
        s.finish().expect("finish");
        let wrong = KeyCache::open(&path, &pw("wrong"), cheap()).expect("open");
        assert_eq!(
            wrong.state(),
            &OpenState::Unusable(Unusable::Authentication)
        );
        assert!(wrong.is_empty());
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let tampered = KeyCache::open(&path, &pw("right"), cheap()).expect("open");
        assert_eq!(
            tampered.state(),
            &OpenState::Unusable(Unusable::Authentication)
        );
        std::fs::write(&path, b"garbage").expect("write");
        let garbage = KeyCache::open(&path, &pw("right"), cheap()).expect("open");
        assert!(matches!(
            garbage.state(),
            OpenState::Unusable(Unusable::Format(_))
        ));
        // The unusable file is replaced on the next finish.
        let s = garbage.session(1);
        s.record([2; 32], &key(4));
        assert!(s.finish().expect("finish").written);
        let fixed = KeyCache::open(&path, &pw("right"), cheap()).expect("open");
        assert_eq!(fixed.state(), &OpenState::Loaded(1));
    }

    #[test]
    fn only_scrypt_and_empty_password_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        assert!(matches!(
            KeyCache::open(&path, &pw("p"), KdfParams::insecure_fast()),
            Err(Error::Kdf(_))
        ));
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, "\n").expect("write");
        assert!(matches!(read_password(&pwfile), Err(Error::Password(_))));
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
