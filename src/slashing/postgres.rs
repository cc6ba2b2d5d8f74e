//! PostgreSQL backend: one connection per process, owned by the writer thread, so several
//! dvsigner processes (replicas of one node) may share a database.
//!
//! Invariants: migrations run under a transaction-scoped advisory lock, so concurrent starts
//! apply each one exactly once; every check-and-record batch locks the rows of its validators
//! with `SELECT … ORDER BY id FOR UPDATE` (ascending id order, so two processes cannot
//! deadlock) before reading their history, and returns only after `COMMIT` (durable with the
//! server's default `synchronous_commit = on`).

use std::collections::HashMap;

use tokio_postgres::{Client, NoTls, Statement};

use super::rules::{from_db, root_from_db, to_db, Root, Store, ValidatorId, Watermark};
use super::Error;
use crate::bls::PublicKeyBytes;

/// Advisory-lock key that serializes migrations across processes ("dvsigner" in ASCII).
const MIGRATION_LOCK: i64 = 0x6476_7369_676e_6572;

/// Schema migrations, applied in order; `schema_version` records how many ran.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE validators (
    id BIGSERIAL PRIMARY KEY,
    public_key BYTEA NOT NULL UNIQUE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE TABLE metadata (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    genesis_validators_root BYTEA NOT NULL
);
CREATE TABLE low_watermarks (
    validator_id BIGINT PRIMARY KEY REFERENCES validators(id),
    slot BIGINT,
    source_epoch BIGINT,
    target_epoch BIGINT,
    pruned_slot BIGINT,
    pruned_source_epoch BIGINT,
    pruned_target_epoch BIGINT
);
CREATE TABLE signed_blocks (
    validator_id BIGINT NOT NULL REFERENCES validators(id),
    slot BIGINT NOT NULL,
    signing_root BYTEA
);
CREATE INDEX signed_blocks_slot ON signed_blocks (validator_id, slot);
CREATE TABLE signed_attestations (
    validator_id BIGINT NOT NULL REFERENCES validators(id),
    source_epoch BIGINT NOT NULL,
    target_epoch BIGINT NOT NULL,
    signing_root BYTEA
);
CREATE INDEX signed_attestations_target ON signed_attestations (validator_id, target_epoch);
CREATE INDEX signed_attestations_source ON signed_attestations (validator_id, source_epoch);
"#];

/// The PostgreSQL store.
pub(crate) struct PgStore {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl PgStore {
    /// Connects (spawning the connection driver on the current runtime) and migrates.
    pub(crate) async fn open(url: &str) -> Result<Self, Error> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "slashing database connection closed");
            }
        });
        let mut store = Self {
            client,
            statements: HashMap::new(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&mut self) -> Result<(), Error> {
        self.client.batch_execute("BEGIN").await?;
        let result = self.migrate_in_txn().await;
        match result {
            Ok(()) => self.client.batch_execute("COMMIT").await?,
            Err(_) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
            }
        }
        result
    }

    async fn migrate_in_txn(&mut self) -> Result<(), Error> {
        self.client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        self.client
            .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .await?;
        let row = self
            .client
            .query_one("SELECT max(version) FROM schema_version", &[])
            .await?;
        let current: Option<i32> = row.get(0);
        let current = usize::try_from(current.unwrap_or(0))
            .map_err(|_| Error::Corrupt("negative schema version".into()))?;
        if current > MIGRATIONS.len() {
            return Err(Error::SchemaTooNew {
                found: current as u64,
                supported: MIGRATIONS.len() as u64,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            self.client.batch_execute(sql).await?;
            let version = i32::try_from(i + 1)
                .map_err(|_| Error::Corrupt("schema version overflow".into()))?;
            self.client
                .execute(
                    "INSERT INTO schema_version (version) VALUES ($1)",
                    &[&version],
                )
                .await?;
        }
        Ok(())
    }

    /// A prepared statement, prepared once per connection.
    async fn st(&mut self, sql: &'static str) -> Result<Statement, Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

fn pk_from_db(b: Vec<u8>) -> Result<PublicKeyBytes, Error> {
    <[u8; 48]>::try_from(b.as_slice())
        .map(PublicKeyBytes)
        .map_err(|_| Error::Corrupt(format!("public key of {} bytes", b.len())))
}

impl Store for PgStore {
    async fn begin(&mut self) -> Result<(), Error> {
        self.client.batch_execute("BEGIN").await?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), Error> {
        self.client.batch_execute("COMMIT").await?;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), Error> {
        self.client.batch_execute("ROLLBACK").await?;
        Ok(())
    }

    async fn ping(&mut self) -> Result<(), Error> {
        self.client.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn register(&mut self, pubkeys: &[PublicKeyBytes]) -> Result<(), Error> {
        let keys: Vec<&[u8]> = pubkeys.iter().map(|p| &p.0[..]).collect();
        let st = self
            .st("INSERT INTO validators (public_key) SELECT k FROM unnest($1::bytea[]) WITH ORDINALITY AS u(k, n) ORDER BY n ON CONFLICT (public_key) DO NOTHING")
            .await?;
        self.client.execute(&st, &[&keys]).await?;
        Ok(())
    }

    async fn lock_validators(
        &mut self,
        pubkeys: &[PublicKeyBytes],
    ) -> Result<HashMap<PublicKeyBytes, (ValidatorId, bool)>, Error> {
        let keys: Vec<&[u8]> = pubkeys.iter().map(|p| &p.0[..]).collect();
        let st = self
            .st("SELECT public_key, id, enabled FROM validators WHERE public_key = ANY($1) ORDER BY id FOR UPDATE")
            .await?;
        let rows = self.client.query(&st, &[&keys]).await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            out.insert(pk_from_db(r.try_get(0)?)?, (r.try_get(1)?, r.try_get(2)?));
        }
        Ok(out)
    }

    async fn all_validators(&mut self) -> Result<Vec<(PublicKeyBytes, ValidatorId)>, Error> {
        let st = self
            .st("SELECT public_key, id FROM validators ORDER BY id")
            .await?;
        let rows = self.client.query(&st, &[]).await?;
        rows.into_iter()
            .map(|r| Ok((pk_from_db(r.try_get(0)?)?, r.try_get(1)?)))
            .collect()
    }

    async fn set_enabled(&mut self, id: ValidatorId, enabled: bool) -> Result<(), Error> {
        let st = self
            .st("UPDATE validators SET enabled = $2 WHERE id = $1")
            .await?;
        self.client.execute(&st, &[&id, &enabled]).await?;
        Ok(())
    }

    async fn gvr(&mut self) -> Result<Option<[u8; 32]>, Error> {
        let st = self
            .st("SELECT genesis_validators_root FROM metadata WHERE id = 1")
            .await?;
        let row = self.client.query_opt(&st, &[]).await?;
        root_from_db(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn insert_gvr(&mut self, gvr: [u8; 32]) -> Result<(), Error> {
        let st = self
            .st("INSERT INTO metadata (id, genesis_validators_root) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
            .await?;
        self.client.execute(&st, &[&&gvr[..]]).await?;
        Ok(())
    }

    async fn watermark(&mut self, id: ValidatorId) -> Result<Watermark, Error> {
        let st = self
            .st(
                "SELECT slot, source_epoch, target_epoch, pruned_slot, pruned_source_epoch, pruned_target_epoch
                 FROM low_watermarks WHERE validator_id = $1",
            )
            .await?;
        match self.client.query_opt(&st, &[&id]).await? {
            None => Ok(Watermark::default()),
            Some(r) => {
                let mut v = [None; 6];
                for (i, slot) in v.iter_mut().enumerate() {
                    *slot = r.try_get::<_, Option<i64>>(i)?;
                }
                Watermark::from_db(v)
            }
        }
    }

    async fn set_watermark(&mut self, id: ValidatorId, wm: Watermark) -> Result<(), Error> {
        let v = wm.to_db()?;
        let st = self
            .st(
                "INSERT INTO low_watermarks (validator_id, slot, source_epoch, target_epoch,
                    pruned_slot, pruned_source_epoch, pruned_target_epoch) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (validator_id) DO UPDATE SET slot = $2, source_epoch = $3, target_epoch = $4,
                    pruned_slot = $5, pruned_source_epoch = $6, pruned_target_epoch = $7",
            )
            .await?;
        self.client
            .execute(&st, &[&id, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]])
            .await?;
        Ok(())
    }

    async fn block_roots(&mut self, id: ValidatorId, slot: u64) -> Result<Vec<Root>, Error> {
        let st = self
            .st("SELECT signing_root FROM signed_blocks WHERE validator_id = $1 AND slot = $2")
            .await?;
        let rows = self.client.query(&st, &[&id, &to_db(slot)?]).await?;
        rows.into_iter()
            .map(|r| root_from_db(r.try_get(0)?))
            .collect()
    }

    async fn insert_block(&mut self, id: ValidatorId, slot: u64, root: Root) -> Result<(), Error> {
        let st = self
            .st("INSERT INTO signed_blocks (validator_id, slot, signing_root) VALUES ($1, $2, $3)")
            .await?;
        self.client
            .execute(&st, &[&id, &to_db(slot)?, &root.as_ref().map(|r| &r[..])])
            .await?;
        Ok(())
    }

    async fn attestations_at(
        &mut self,
        id: ValidatorId,
        target: u64,
    ) -> Result<Vec<(u64, Root)>, Error> {
        let st = self
            .st("SELECT source_epoch, signing_root FROM signed_attestations WHERE validator_id = $1 AND target_epoch = $2")
            .await?;
        let rows = self.client.query(&st, &[&id, &to_db(target)?]).await?;
        rows.into_iter()
            .map(|r| Ok((from_db(r.try_get(0)?)?, root_from_db(r.try_get(1)?)?)))
            .collect()
    }

    async fn surrounding(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
    ) -> Result<Option<(u64, u64)>, Error> {
        let st = self
            .st("SELECT source_epoch, target_epoch FROM signed_attestations
                 WHERE validator_id = $1 AND source_epoch < $2 AND target_epoch > $3 LIMIT 1")
            .await?;
        let row = self
            .client
            .query_opt(&st, &[&id, &to_db(source)?, &to_db(target)?])
            .await?;
        row.map(|r| Ok((from_db(r.try_get(0)?)?, from_db(r.try_get(1)?)?)))
            .transpose()
    }

    async fn surrounded(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
    ) -> Result<Option<(u64, u64)>, Error> {
        let st = self
            .st("SELECT source_epoch, target_epoch FROM signed_attestations
                 WHERE validator_id = $1 AND source_epoch > $2 AND target_epoch < $3 LIMIT 1")
            .await?;
        let row = self
            .client
            .query_opt(&st, &[&id, &to_db(source)?, &to_db(target)?])
            .await?;
        row.map(|r| Ok((from_db(r.try_get(0)?)?, from_db(r.try_get(1)?)?)))
            .transpose()
    }

    async fn insert_attestation(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
        root: Root,
    ) -> Result<(), Error> {
        let st = self
            .st("INSERT INTO signed_attestations (validator_id, source_epoch, target_epoch, signing_root) VALUES ($1, $2, $3, $4)")
            .await?;
        self.client
            .execute(
                &st,
                &[
                    &id,
                    &to_db(source)?,
                    &to_db(target)?,
                    &root.as_ref().map(|r| &r[..]),
                ],
            )
            .await?;
        Ok(())
    }

    async fn blocks(&mut self, id: ValidatorId) -> Result<Vec<(u64, Root)>, Error> {
        let st = self
            .st("SELECT slot, signing_root FROM signed_blocks WHERE validator_id = $1 ORDER BY slot, signing_root")
            .await?;
        let rows = self.client.query(&st, &[&id]).await?;
        rows.into_iter()
            .map(|r| Ok((from_db(r.try_get(0)?)?, root_from_db(r.try_get(1)?)?)))
            .collect()
    }

    async fn attestations(&mut self, id: ValidatorId) -> Result<Vec<(u64, u64, Root)>, Error> {
        let st = self
            .st(
                "SELECT source_epoch, target_epoch, signing_root FROM signed_attestations
                 WHERE validator_id = $1 ORDER BY target_epoch, source_epoch, signing_root",
            )
            .await?;
        let rows = self.client.query(&st, &[&id]).await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    from_db(r.try_get(0)?)?,
                    from_db(r.try_get(1)?)?,
                    root_from_db(r.try_get(2)?)?,
                ))
            })
            .collect()
    }

    async fn delete_blocks_below(&mut self, id: ValidatorId, slot: u64) -> Result<(), Error> {
        let st = self
            .st("DELETE FROM signed_blocks WHERE validator_id = $1 AND slot < $2")
            .await?;
        self.client.execute(&st, &[&id, &to_db(slot)?]).await?;
        Ok(())
    }

    async fn delete_attestations_below(
        &mut self,
        id: ValidatorId,
        target: u64,
    ) -> Result<(), Error> {
        let st = self
            .st("DELETE FROM signed_attestations WHERE validator_id = $1 AND target_epoch < $2")
            .await?;
        self.client.execute(&st, &[&id, &to_db(target)?]).await?;
        Ok(())
    }
}
