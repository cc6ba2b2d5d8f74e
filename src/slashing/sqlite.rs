//! SQLite backend: one connection, owned by the writer thread, in WAL mode with
//! `synchronous=FULL` so a committed transaction is on disk before it is acknowledged.
//!
//! Invariants: the database file is created with mode 0600 before SQLite writes to it (SQLite
//! gives its `-wal`/`-shm` files the same mode); every transaction is `BEGIN IMMEDIATE`, which
//! takes SQLite's single write lock up front, so check-and-record is atomic even against other
//! processes opening the same file.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::agreement::AgreementKey;
use super::rules::{
    from_db, high_watermark_from_db, root_from_db, to_db, Record, Root, Store, ValidatorId,
    Watermark,
};
use super::{Error, HighWatermark};
use crate::bls::PublicKeyBytes;

/// Schema migrations, applied in order; `schema_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE validators (
    id INTEGER PRIMARY KEY,
    public_key BLOB NOT NULL UNIQUE,
    enabled INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE metadata (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    genesis_validators_root BLOB NOT NULL
);
CREATE TABLE low_watermarks (
    validator_id INTEGER PRIMARY KEY REFERENCES validators(id),
    slot INTEGER,
    source_epoch INTEGER,
    target_epoch INTEGER,
    pruned_slot INTEGER,
    pruned_source_epoch INTEGER,
    pruned_target_epoch INTEGER
);
CREATE TABLE signed_blocks (
    validator_id INTEGER NOT NULL REFERENCES validators(id),
    slot INTEGER NOT NULL,
    signing_root BLOB
);
CREATE INDEX signed_blocks_slot ON signed_blocks (validator_id, slot);
CREATE TABLE signed_attestations (
    validator_id INTEGER NOT NULL REFERENCES validators(id),
    source_epoch INTEGER NOT NULL,
    target_epoch INTEGER NOT NULL,
    signing_root BLOB
);
CREATE INDEX signed_attestations_target ON signed_attestations (validator_id, target_epoch);
CREATE INDEX signed_attestations_source ON signed_attestations (validator_id, source_epoch);
"#,
    r#"
CREATE TABLE high_watermark (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL,
    slot INTEGER NOT NULL
);
"#,
    // Record origin (0: signed by this node; 1: merged from a peer or an interchange import;
    // rows from before this migration are this node's) and agreement instances.
    r#"
ALTER TABLE signed_blocks ADD COLUMN merged INTEGER NOT NULL DEFAULT 0;
ALTER TABLE signed_attestations ADD COLUMN merged INTEGER NOT NULL DEFAULT 0;
CREATE TABLE agreement_state (
    public_key BLOB NOT NULL,
    duty INTEGER NOT NULL,
    position INTEGER NOT NULL,
    decided_root BLOB,
    state TEXT NOT NULL,
    PRIMARY KEY (public_key, duty, position)
) WITHOUT ROWID;
"#,
];

/// The SQLite store.
pub(crate) struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Runs a query over (validator ?1, source ?2, target ?3) returning at most one
    /// `(source_epoch, target_epoch)` row: the surround lookups.
    fn epoch_pair(
        &self,
        sql: &str,
        id: ValidatorId,
        source: u64,
        target: u64,
    ) -> Result<Option<(u64, u64)>, Error> {
        let row = self
            .conn
            .prepare_cached(sql)?
            .query_row(params![id, to_db(source)?, to_db(target)?], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?;
        row.map(|(s, t)| Ok((from_db(s)?, from_db(t)?))).transpose()
    }

    /// Opens (creating with mode 0600) and migrates the database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, Error> {
        create_private(path)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Corrupt(format!(
                "sqlite refused WAL mode (got {mode})"
            )));
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = Self { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), Error> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
        let current: Option<i64> =
            tx.query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))?;
        let current = usize::try_from(current.unwrap_or(0))
            .map_err(|_| Error::Corrupt("negative schema version".into()))?;
        if current > MIGRATIONS.len() {
            return Err(Error::SchemaTooNew {
                found: current as u64,
                supported: MIGRATIONS.len() as u64,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [i as i64 + 1],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Creates `path` with mode 0600 if it does not exist yet, and tightens an existing file.
fn create_private(path: &Path) -> Result<(), Error> {
    let io = |error| Error::Io {
        path: path.display().to_string(),
        error,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    #[cfg(not(unix))]
    {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
    }
    Ok(())
}

fn pk_from_db(b: Vec<u8>) -> Result<PublicKeyBytes, Error> {
    <[u8; 48]>::try_from(b.as_slice())
        .map(PublicKeyBytes)
        .map_err(|_| Error::Corrupt(format!("public key of {} bytes", b.len())))
}

impl Store for SqliteStore {
    async fn begin(&mut self) -> Result<(), Error> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), Error> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), Error> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    async fn ping(&mut self) -> Result<(), Error> {
        self.conn
            .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }

    async fn register(&mut self, pubkeys: &[PublicKeyBytes]) -> Result<(), Error> {
        let mut st = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO validators (public_key) VALUES (?1)")?;
        for pk in pubkeys {
            st.execute([&pk.0[..]])?;
        }
        Ok(())
    }

    async fn lock_validators(
        &mut self,
        pubkeys: &[PublicKeyBytes],
    ) -> Result<HashMap<PublicKeyBytes, (ValidatorId, bool)>, Error> {
        // BEGIN IMMEDIATE already holds the database-wide write lock.
        let mut st = self
            .conn
            .prepare_cached("SELECT id, enabled FROM validators WHERE public_key = ?1")?;
        let mut out = HashMap::with_capacity(pubkeys.len());
        for pk in pubkeys {
            if let Some(row) = st
                .query_row([&pk.0[..]], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?))
                })
                .optional()?
            {
                out.insert(*pk, row);
            }
        }
        Ok(out)
    }

    async fn all_validators(&mut self) -> Result<Vec<(PublicKeyBytes, ValidatorId)>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT public_key, id FROM validators ORDER BY id")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| {
            let (pk, id) = r?;
            Ok((pk_from_db(pk)?, id))
        })
        .collect()
    }

    async fn set_enabled(&mut self, id: ValidatorId, enabled: bool) -> Result<(), Error> {
        self.conn
            .prepare_cached("UPDATE validators SET enabled = ?2 WHERE id = ?1")?
            .execute(params![id, enabled])?;
        Ok(())
    }

    async fn gvr(&mut self) -> Result<Option<[u8; 32]>, Error> {
        let v: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT genesis_validators_root FROM metadata WHERE id = 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        root_from_db(v)
    }

    async fn insert_gvr(&mut self, gvr: [u8; 32]) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO metadata (id, genesis_validators_root) VALUES (1, ?1)",
            )?
            .execute([&gvr[..]])?;
        Ok(())
    }

    async fn high_watermark(&mut self) -> Result<Option<HighWatermark>, Error> {
        let row = self
            .conn
            .prepare_cached("SELECT epoch, slot FROM high_watermark WHERE id = 1")?
            .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .optional()?;
        row.map(|(epoch, slot)| high_watermark_from_db(epoch, slot))
            .transpose()
    }

    async fn set_high_watermark(&mut self, hw: Option<HighWatermark>) -> Result<(), Error> {
        match hw {
            Some(hw) => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO high_watermark (id, epoch, slot) VALUES (1, ?1, ?2)
                         ON CONFLICT (id) DO UPDATE SET epoch = ?1, slot = ?2",
                    )?
                    .execute(params![to_db(hw.epoch)?, to_db(hw.slot)?])?;
            }
            None => {
                self.conn
                    .prepare_cached("DELETE FROM high_watermark")?
                    .execute([])?;
            }
        }
        Ok(())
    }

    async fn watermark(&mut self, id: ValidatorId) -> Result<Watermark, Error> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT slot, source_epoch, target_epoch, pruned_slot, pruned_source_epoch, pruned_target_epoch
                 FROM low_watermarks WHERE validator_id = ?1",
            )?
            .query_row([id], |r| {
                let mut v = [None; 6];
                for (i, slot) in v.iter_mut().enumerate() {
                    *slot = r.get::<_, Option<i64>>(i)?;
                }
                Ok(v)
            })
            .optional()?;
        match row {
            None => Ok(Watermark::default()),
            Some(v) => Watermark::from_db(v),
        }
    }

    async fn set_watermark(&mut self, id: ValidatorId, wm: Watermark) -> Result<(), Error> {
        let v = wm.to_db()?;
        self.conn
            .prepare_cached(
                "INSERT INTO low_watermarks (validator_id, slot, source_epoch, target_epoch,
                    pruned_slot, pruned_source_epoch, pruned_target_epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (validator_id) DO UPDATE SET slot = ?2, source_epoch = ?3, target_epoch = ?4,
                    pruned_slot = ?5, pruned_source_epoch = ?6, pruned_target_epoch = ?7",
            )?
            .execute(params![id, v[0], v[1], v[2], v[3], v[4], v[5]])?;
        Ok(())
    }

    async fn block_roots(&mut self, id: ValidatorId, slot: u64) -> Result<Vec<Record>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT signing_root, merged FROM signed_blocks WHERE validator_id = ?1 AND slot = ?2",
        )?;
        let rows = st.query_map(params![id, to_db(slot)?], |r| {
            Ok((r.get::<_, Option<Vec<u8>>>(0)?, r.get::<_, bool>(1)?))
        })?;
        rows.map(|r| {
            let (root, merged) = r?;
            Ok((root_from_db(root)?, !merged))
        })
        .collect()
    }

    async fn insert_block(
        &mut self,
        id: ValidatorId,
        slot: u64,
        root: Root,
        own: bool,
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO signed_blocks (validator_id, slot, signing_root, merged) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, to_db(slot)?, root.as_ref().map(|r| &r[..]), !own])?;
        Ok(())
    }

    async fn mark_own_block(
        &mut self,
        id: ValidatorId,
        slot: u64,
        root: [u8; 32],
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "UPDATE signed_blocks SET merged = 0
                 WHERE validator_id = ?1 AND slot = ?2 AND signing_root = ?3 AND merged <> 0",
            )?
            .execute(params![id, to_db(slot)?, &root[..]])?;
        Ok(())
    }

    async fn attestations_at(
        &mut self,
        id: ValidatorId,
        target: u64,
    ) -> Result<Vec<(u64, Root, bool)>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT source_epoch, signing_root, merged FROM signed_attestations WHERE validator_id = ?1 AND target_epoch = ?2",
        )?;
        let rows = st.query_map(params![id, to_db(target)?], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<Vec<u8>>>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })?;
        rows.map(|r| {
            let (s, root, merged) = r?;
            Ok((from_db(s)?, root_from_db(root)?, !merged))
        })
        .collect()
    }

    async fn surrounding(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
    ) -> Result<Option<(u64, u64)>, Error> {
        self.epoch_pair(
            "SELECT source_epoch, target_epoch FROM signed_attestations
                 WHERE validator_id = ?1 AND target_epoch > ?3 AND source_epoch < ?2
                 ORDER BY target_epoch LIMIT 1",
            id,
            source,
            target,
        )
    }

    async fn surrounded(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
    ) -> Result<Option<(u64, u64)>, Error> {
        self.epoch_pair(
            "SELECT source_epoch, target_epoch FROM signed_attestations
                 WHERE validator_id = ?1 AND source_epoch > ?2 AND target_epoch < ?3
                 ORDER BY source_epoch LIMIT 1",
            id,
            source,
            target,
        )
    }

    async fn insert_attestation(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
        root: Root,
        own: bool,
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO signed_attestations (validator_id, source_epoch, target_epoch, signing_root, merged) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, to_db(source)?, to_db(target)?, root.as_ref().map(|r| &r[..]), !own])?;
        Ok(())
    }

    async fn mark_own_attestation(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
        root: [u8; 32],
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "UPDATE signed_attestations SET merged = 0
                 WHERE validator_id = ?1 AND source_epoch = ?2 AND target_epoch = ?3
                   AND signing_root = ?4 AND merged <> 0",
            )?
            .execute(params![id, to_db(source)?, to_db(target)?, &root[..]])?;
        Ok(())
    }

    async fn blocks(&mut self, id: ValidatorId) -> Result<Vec<(u64, Root)>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT slot, signing_root FROM signed_blocks WHERE validator_id = ?1 ORDER BY slot, signing_root")?;
        let rows = st.query_map([id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
        })?;
        rows.map(|r| {
            let (s, root) = r?;
            Ok((from_db(s)?, root_from_db(root)?))
        })
        .collect()
    }

    async fn attestations(&mut self, id: ValidatorId) -> Result<Vec<(u64, u64, Root)>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT source_epoch, target_epoch, signing_root FROM signed_attestations
             WHERE validator_id = ?1 ORDER BY target_epoch, source_epoch, signing_root",
        )?;
        let rows = st.query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
            ))
        })?;
        rows.map(|r| {
            let (s, t, root) = r?;
            Ok((from_db(s)?, from_db(t)?, root_from_db(root)?))
        })
        .collect()
    }

    async fn delete_blocks_below(&mut self, id: ValidatorId, slot: u64) -> Result<(), Error> {
        self.conn
            .prepare_cached("DELETE FROM signed_blocks WHERE validator_id = ?1 AND slot < ?2")?
            .execute(params![id, to_db(slot)?])?;
        Ok(())
    }

    async fn delete_attestations_below(
        &mut self,
        id: ValidatorId,
        target: u64,
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "DELETE FROM signed_attestations WHERE validator_id = ?1 AND target_epoch < ?2",
            )?
            .execute(params![id, to_db(target)?])?;
        Ok(())
    }

    async fn agreement_row(
        &mut self,
        key: &AgreementKey,
    ) -> Result<Option<(Option<[u8; 32]>, String)>, Error> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT decided_root, state FROM agreement_state
                 WHERE public_key = ?1 AND duty = ?2 AND position = ?3",
            )?
            .query_row(params![&key.pubkey.0[..], key.duty, key.position], |r| {
                Ok((r.get::<_, Option<Vec<u8>>>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?;
        row.map(|(root, state)| Ok((root_from_db(root)?, state)))
            .transpose()
    }

    async fn put_agreement_row(
        &mut self,
        key: &AgreementKey,
        decided: Option<[u8; 32]>,
        state: &str,
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO agreement_state (public_key, duty, position, decided_root, state)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (public_key, duty, position)
                 DO UPDATE SET decided_root = ?4, state = ?5",
            )?
            .execute(params![
                &key.pubkey.0[..],
                key.duty,
                key.position,
                decided.as_ref().map(|r| &r[..]),
                state
            ])?;
        Ok(())
    }

    async fn agreement_decided_root(
        &mut self,
        key: &AgreementKey,
    ) -> Result<Option<[u8; 32]>, Error> {
        let root: Option<Option<Vec<u8>>> = self
            .conn
            .prepare_cached(
                "SELECT decided_root FROM agreement_state
                 WHERE public_key = ?1 AND duty = ?2 AND position = ?3",
            )?
            .query_row(params![&key.pubkey.0[..], key.duty, key.position], |r| {
                r.get(0)
            })
            .optional()?;
        root_from_db(root.flatten())
    }

    async fn agreement_newest(&mut self) -> Result<Vec<(PublicKeyBytes, i64, u64)>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT public_key, duty, max(position) FROM agreement_state GROUP BY public_key, duty",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        rows.map(|r| {
            let (pk, duty, newest) = r?;
            Ok((pk_from_db(pk)?, duty, from_db(newest)?))
        })
        .collect()
    }

    async fn delete_agreement_below(
        &mut self,
        pubkey: &PublicKeyBytes,
        duty: i64,
        floor: u64,
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "DELETE FROM agreement_state WHERE public_key = ?1 AND duty = ?2 AND position < ?3",
            )?
            .execute(params![&pubkey.0[..], duty, to_db(floor)?])?;
        Ok(())
    }
}
