//! PostgreSQL backend: one connection per process, owned by the writer thread, so several
//! dvsigner processes (replicas of one node) may share a database.
//!
//! A connection that the server or the network closed is replaced before the next operation
//! ([`PgStore::ensure_connected`]): an operation in flight when it broke fails (its signature is
//! refused, nothing is assumed recorded), and the ones after it run on the new connection, so a
//! PostgreSQL restart or fail-over costs the requests of that moment, not the node.
//!
//! Invariants: migrations run under a transaction-scoped advisory lock, so concurrent starts
//! apply each one exactly once; every check-and-record batch locks the rows of its validators
//! with `SELECT … ORDER BY id FOR UPDATE` (ascending id order, so two processes cannot
//! deadlock) before reading their history, and returns only after `COMMIT` (durable with the
//! server's default `synchronous_commit = on`).

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::agreement::AgreementKey;
use super::pg_tls::{self, PgTarget};
use super::rules::{
    self, from_db, high_watermark_from_db, root_from_db, to_db, BatchFacts, BatchWrites, Candidate,
    Record, Root, Store, ValidatorId, Watermark,
};
use super::{Error, HighWatermark, SigningRoot, SlashableMessage, Verdict};
use crate::bls::PublicKeyBytes;

/// Advisory-lock key that serializes migrations across processes ("dvsigner" in ASCII).
const MIGRATION_LOCK: i64 = 0x6476_7369_676e_6572;

/// Schema migrations, applied in order; `schema_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    r#"
CREATE TABLE high_watermark (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL,
    slot BIGINT NOT NULL
);
"#,
    // Record origin (FALSE: signed by this node; TRUE: merged from a peer or an interchange
    // import; rows from before this migration are this node's) and agreement instances.
    r#"
ALTER TABLE signed_blocks ADD COLUMN merged BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE signed_attestations ADD COLUMN merged BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE agreement_state (
    public_key BYTEA NOT NULL,
    duty SMALLINT NOT NULL,
    position BIGINT NOT NULL,
    decided_root BYTEA,
    state TEXT NOT NULL,
    PRIMARY KEY (public_key, duty, position)
);
"#,
];

const WATERMARK: &str =
    "SELECT slot, source_epoch, target_epoch, pruned_slot, pruned_source_epoch, \
     pruned_target_epoch FROM low_watermarks WHERE validator_id = $1";
const BLOCK_ROOTS: &str =
    "SELECT signing_root, merged FROM signed_blocks WHERE validator_id = $1 AND slot = $2";
const ATTESTATIONS_AT: &str = "SELECT source_epoch, signing_root, merged FROM signed_attestations \
     WHERE validator_id = $1 AND target_epoch = $2";
const MARK_OWN_BLOCK: &str = "UPDATE signed_blocks SET merged = FALSE \
     WHERE validator_id = $1 AND slot = $2 AND signing_root = $3 AND merged";
const MARK_OWN_ATTESTATION: &str = "UPDATE signed_attestations SET merged = FALSE \
     WHERE validator_id = $1 AND source_epoch = $2 AND target_epoch = $3 \
     AND signing_root = $4 AND merged";
const SURROUNDING: &str = "SELECT source_epoch, target_epoch FROM signed_attestations \
     WHERE validator_id = $1 AND target_epoch > $3 AND source_epoch < $2 \
     ORDER BY target_epoch LIMIT 1";
const SURROUNDED: &str = "SELECT source_epoch, target_epoch FROM signed_attestations \
     WHERE validator_id = $1 AND source_epoch > $2 AND target_epoch < $3 \
     ORDER BY source_epoch LIMIT 1";

/// Batch reads: one statement each for the whole batch, the candidates given as parallel
/// arrays (`n` is the candidate's position in the batch).
const BATCH_WATERMARKS: &str =
    "SELECT validator_id, slot, source_epoch, target_epoch, pruned_slot, pruned_source_epoch, \
     pruned_target_epoch FROM low_watermarks WHERE validator_id = ANY($1::bigint[])";
const BATCH_BLOCK_ROOTS: &str = "SELECT c.n, b.signing_root, b.merged \
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS c(n, vid, slot) \
     JOIN signed_blocks b ON b.validator_id = c.vid AND b.slot = c.slot";
const BATCH_ATTESTATIONS_AT: &str = "SELECT c.n, a.source_epoch, a.signing_root, a.merged \
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS c(n, vid, t) \
     JOIN signed_attestations a ON a.validator_id = c.vid AND a.target_epoch = c.t";
const BATCH_SURROUNDS: &str =
    "SELECT c.n, x.source_epoch, x.target_epoch, y.source_epoch, y.target_epoch \
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS c(n, vid, s, t) \
     LEFT JOIN LATERAL (SELECT source_epoch, target_epoch FROM signed_attestations \
        WHERE validator_id = c.vid AND target_epoch > c.t AND source_epoch < c.s \
        ORDER BY target_epoch LIMIT 1) x ON TRUE \
     LEFT JOIN LATERAL (SELECT source_epoch, target_epoch FROM signed_attestations \
        WHERE validator_id = c.vid AND source_epoch > c.s AND target_epoch < c.t \
        ORDER BY source_epoch LIMIT 1) y ON TRUE \
     WHERE x.source_epoch IS NOT NULL OR y.source_epoch IS NOT NULL";
/// Batch writes: one multi-row statement per table.
const BATCH_INSERT_BLOCKS: &str = "INSERT INTO signed_blocks (validator_id, slot, signing_root) \
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])";
const BATCH_INSERT_ATTESTATIONS: &str =
    "INSERT INTO signed_attestations (validator_id, source_epoch, target_epoch, signing_root) \
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[])";
/// Merged rows that a batch's repeats mark own.
const BATCH_MARK_OWN_BLOCKS: &str = "UPDATE signed_blocks b SET merged = FALSE \
     FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS c(vid, slot, root) \
     WHERE b.validator_id = c.vid AND b.slot = c.slot AND b.signing_root = c.root AND b.merged";
const BATCH_MARK_OWN_ATTESTATIONS: &str = "UPDATE signed_attestations a SET merged = FALSE \
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[]) AS c(vid, s, t, root) \
     WHERE a.validator_id = c.vid AND a.source_epoch = c.s AND a.target_epoch = c.t \
        AND a.signing_root = c.root AND a.merged";
const BATCH_SET_WATERMARKS: &str = "INSERT INTO low_watermarks (validator_id, slot, source_epoch, \
        target_epoch, pruned_slot, pruned_source_epoch, pruned_target_epoch) \
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], \
        $6::bigint[], $7::bigint[]) \
     ON CONFLICT (validator_id) DO UPDATE SET slot = EXCLUDED.slot, \
        source_epoch = EXCLUDED.source_epoch, target_epoch = EXCLUDED.target_epoch, \
        pruned_slot = EXCLUDED.pruned_slot, pruned_source_epoch = EXCLUDED.pruned_source_epoch, \
        pruned_target_epoch = EXCLUDED.pruned_target_epoch";

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Opens a connection (its driver runs on the current runtime) with our session settings.
async fn connect(target: &PgTarget) -> Result<Client, Error> {
    let (client, connection) = target.connect().await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %pg_tls::describe(&e), "slashing database connection closed");
        }
    });
    // The batch statements are planned per batch; JIT compilation would cost more than it
    // saves on them.
    client.batch_execute("SET jit = off").await?;
    Ok(client)
}

fn watermark_from_row(row: Option<tokio_postgres::Row>) -> Result<Watermark, Error> {
    match row {
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

/// How long a reconnection may take before the operation waiting for it fails.
const RECONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The PostgreSQL store.
pub(crate) struct PgStore {
    target: PgTarget,
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl PgStore {
    /// Connects (spawning the connection driver on the current runtime) and migrates.
    pub(crate) async fn open(url: &str) -> Result<Self, Error> {
        let target = PgTarget::parse(url)?;
        let client = connect(&target).await?;
        tracing::info!(
            sslmode = %target.mode(),
            "connected to the PostgreSQL slashing database"
        );
        let mut store = Self {
            target,
            client,
            statements: HashMap::new(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Replaces a closed connection (server restart, fail-over, network cut, backend
    /// terminated) with a new one; prepared statements are prepared again on it. A no-op while
    /// the connection is open.
    ///
    /// # Errors
    /// The new connection could not be made within [`RECONNECT_TIMEOUT`].
    pub(crate) async fn ensure_connected(&mut self) -> Result<(), Error> {
        if !self.client.is_closed() {
            return Ok(());
        }
        let client = tokio::time::timeout(RECONNECT_TIMEOUT, connect(&self.target))
            .await
            .map_err(|_| Error::Unavailable("reconnecting to PostgreSQL timed out".into()))??;
        self.client = client;
        self.statements.clear();
        tracing::warn!("slashing database connection was lost; reconnected");
        Ok(())
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

impl PgStore {
    /// Reads, in one pipelined round trip of four statements, everything the rules need for
    /// every candidate of a batch.
    async fn batch_facts(&mut self, candidates: &[Candidate]) -> Result<BatchFacts, Error> {
        let wm_st = self.st(BATCH_WATERMARKS).await?;
        let blocks_st = self.st(BATCH_BLOCK_ROOTS).await?;
        let at_st = self.st(BATCH_ATTESTATIONS_AT).await?;
        let sur_st = self.st(BATCH_SURROUNDS).await?;

        let mut ids: Vec<ValidatorId> = candidates.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        let (mut b_n, mut b_id, mut b_slot) = (Vec::new(), Vec::new(), Vec::new());
        let (mut a_n, mut a_id, mut a_s, mut a_t) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (n, c) in candidates.iter().enumerate() {
            let n = i64::try_from(n).map_err(|_| Error::Corrupt("batch too large".into()))?;
            match c.msg {
                SlashableMessage::Block { slot } => {
                    b_n.push(n);
                    b_id.push(c.id);
                    b_slot.push(to_db(slot)?);
                }
                SlashableMessage::Attestation {
                    source_epoch,
                    target_epoch,
                } if rules::needs_attestation_facts(c) => {
                    a_n.push(n);
                    a_id.push(c.id);
                    a_s.push(to_db(source_epoch)?);
                    a_t.push(to_db(target_epoch)?);
                }
                SlashableMessage::Attestation { .. } => {}
            }
        }
        let p_wm: Params<'_> = &[&ids];
        let p_blocks: Params<'_> = &[&b_n, &b_id, &b_slot];
        let p_at: Params<'_> = &[&a_n, &a_id, &a_t];
        let p_sur: Params<'_> = &[&a_n, &a_id, &a_s, &a_t];
        let (wm_rows, block_rows, at_rows, sur_rows) = futures::try_join!(
            self.client.query(&wm_st, p_wm),
            self.client.query(&blocks_st, p_blocks),
            self.client.query(&at_st, p_at),
            self.client.query(&sur_st, p_sur),
        )?;

        let index =
            |n: i64| usize::try_from(n).map_err(|_| Error::Corrupt(format!("batch index {n}")));
        let mut facts = BatchFacts::default();
        for r in wm_rows {
            let mut v = [None; 6];
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = r.try_get::<_, Option<i64>>(i + 1)?;
            }
            facts
                .watermarks
                .insert(r.try_get(0)?, Watermark::from_db(v)?);
        }
        for r in block_rows {
            facts
                .block_roots
                .entry(index(r.try_get(0)?)?)
                .or_default()
                .push((root_from_db(r.try_get(1)?)?, !r.try_get::<_, bool>(2)?));
        }
        for r in at_rows {
            facts
                .at_target
                .entry(index(r.try_get(0)?)?)
                .or_default()
                .push((
                    from_db(r.try_get(1)?)?,
                    root_from_db(r.try_get(2)?)?,
                    !r.try_get::<_, bool>(3)?,
                ));
        }
        for r in sur_rows {
            let n = index(r.try_get(0)?)?;
            let pair = |a: usize| -> Result<Option<(u64, u64)>, Error> {
                let s: Option<i64> = r.try_get(a)?;
                let t: Option<i64> = r.try_get(a + 1)?;
                match (s, t) {
                    (Some(s), Some(t)) => Ok(Some((from_db(s)?, from_db(t)?))),
                    _ => Ok(None),
                }
            };
            if let Some(p) = pair(1)? {
                facts.surrounding.insert(n, p);
            }
            if let Some(p) = pair(3)? {
                facts.surrounded.insert(n, p);
            }
        }
        Ok(facts)
    }

    /// Records a batch's rows with one multi-row statement per table, pipelined.
    async fn batch_write(&mut self, writes: &BatchWrites) -> Result<(), Error> {
        let blocks_st = self.st(BATCH_INSERT_BLOCKS).await?;
        let atts_st = self.st(BATCH_INSERT_ATTESTATIONS).await?;
        let wm_st = self.st(BATCH_SET_WATERMARKS).await?;
        let own_blocks_st = self.st(BATCH_MARK_OWN_BLOCKS).await?;
        let own_atts_st = self.st(BATCH_MARK_OWN_ATTESTATIONS).await?;

        let (b_ints, b_roots) = block_columns(&writes.blocks)?;
        let (a_ints, a_roots) = attestation_columns(&writes.attestations)?;
        let mut w_ids = Vec::with_capacity(writes.watermarks.len());
        let mut w_cols: [Vec<Option<i64>>; 6] = Default::default();
        for (id, wm) in &writes.watermarks {
            w_ids.push(*id);
            for (col, v) in w_cols.iter_mut().zip(wm.to_db()?) {
                col.push(v);
            }
        }
        let (ob_ints, ob_roots) = block_columns(&writes.own_blocks)?;
        let (oa_ints, oa_roots) = attestation_columns(&writes.own_attestations)?;
        let p_own_blocks: Params<'_> = &[&ob_ints[0], &ob_ints[1], &ob_roots];
        let p_own_atts: Params<'_> = &[&oa_ints[0], &oa_ints[1], &oa_ints[2], &oa_roots];
        let p_blocks: Params<'_> = &[&b_ints[0], &b_ints[1], &b_roots];
        let p_atts: Params<'_> = &[&a_ints[0], &a_ints[1], &a_ints[2], &a_roots];
        let p_wm: Params<'_> = &[
            &w_ids, &w_cols[0], &w_cols[1], &w_cols[2], &w_cols[3], &w_cols[4], &w_cols[5],
        ];
        let client = &self.client;
        let run = async |st: &Statement, p: Params<'_>, rows: usize| -> Result<(), Error> {
            if rows > 0 {
                client.execute(st, p).await?;
            }
            Ok(())
        };
        futures::try_join!(
            run(&blocks_st, p_blocks, writes.blocks.len()),
            run(&atts_st, p_atts, writes.attestations.len()),
            run(&wm_st, p_wm, writes.watermarks.len()),
            run(&own_blocks_st, p_own_blocks, writes.own_blocks.len()),
            run(&own_atts_st, p_own_atts, writes.own_attestations.len()),
        )?;
        Ok(())
    }
}

/// Array parameters of a batch's rows: `N` integer columns and the roots.
type Columns<'a, const N: usize> = ([Vec<i64>; N], Vec<&'a [u8]>);

/// Array parameters of block rows `(id, slot, root)`: the id and slot columns, and the roots.
fn block_columns(rows: &[(ValidatorId, u64, SigningRoot)]) -> Result<Columns<'_, 2>, Error> {
    let mut ints: [Vec<i64>; 2] = Default::default();
    let mut roots: Vec<&[u8]> = Vec::with_capacity(rows.len());
    for (id, slot, root) in rows {
        ints[0].push(*id);
        ints[1].push(to_db(*slot)?);
        roots.push(&root.0[..]);
    }
    Ok((ints, roots))
}

/// Array parameters of attestation rows `(id, source, target, root)`.
fn attestation_columns(
    rows: &[(ValidatorId, u64, u64, SigningRoot)],
) -> Result<Columns<'_, 3>, Error> {
    let mut ints: [Vec<i64>; 3] = Default::default();
    let mut roots: Vec<&[u8]> = Vec::with_capacity(rows.len());
    for (id, source, target, root) in rows {
        ints[0].push(*id);
        ints[1].push(to_db(*source)?);
        ints[2].push(to_db(*target)?);
        roots.push(&root.0[..]);
    }
    Ok((ints, roots))
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

    async fn high_watermark(&mut self) -> Result<Option<HighWatermark>, Error> {
        let st = self
            .st("SELECT epoch, slot FROM high_watermark WHERE id = 1")
            .await?;
        let row = self.client.query_opt(&st, &[]).await?;
        row.map(|r| high_watermark_from_db(r.try_get(0)?, r.try_get(1)?))
            .transpose()
    }

    async fn set_high_watermark(&mut self, hw: Option<HighWatermark>) -> Result<(), Error> {
        match hw {
            Some(hw) => {
                let st = self
                    .st(
                        "INSERT INTO high_watermark (id, epoch, slot) VALUES (1, $1, $2) \
                         ON CONFLICT (id) DO UPDATE SET epoch = $1, slot = $2",
                    )
                    .await?;
                self.client
                    .execute(&st, &[&to_db(hw.epoch)?, &to_db(hw.slot)?])
                    .await?;
            }
            None => {
                let st = self.st("DELETE FROM high_watermark").await?;
                self.client.execute(&st, &[]).await?;
            }
        }
        Ok(())
    }

    async fn watermark(&mut self, id: ValidatorId) -> Result<Watermark, Error> {
        let st = self.st(WATERMARK).await?;
        watermark_from_row(self.client.query_opt(&st, &[&id]).await?)
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

    async fn block_roots(&mut self, id: ValidatorId, slot: u64) -> Result<Vec<Record>, Error> {
        let st = self.st(BLOCK_ROOTS).await?;
        let rows = self.client.query(&st, &[&id, &to_db(slot)?]).await?;
        rows.into_iter()
            .map(|r| Ok((root_from_db(r.try_get(0)?)?, !r.try_get::<_, bool>(1)?)))
            .collect()
    }

    async fn insert_block(
        &mut self,
        id: ValidatorId,
        slot: u64,
        root: Root,
        own: bool,
    ) -> Result<(), Error> {
        let st = self
            .st("INSERT INTO signed_blocks (validator_id, slot, signing_root, merged) VALUES ($1, $2, $3, $4)")
            .await?;
        self.client
            .execute(
                &st,
                &[&id, &to_db(slot)?, &root.as_ref().map(|r| &r[..]), &!own],
            )
            .await?;
        Ok(())
    }

    async fn mark_own_block(
        &mut self,
        id: ValidatorId,
        slot: u64,
        root: [u8; 32],
    ) -> Result<(), Error> {
        let st = self.st(MARK_OWN_BLOCK).await?;
        self.client
            .execute(&st, &[&id, &to_db(slot)?, &&root[..]])
            .await?;
        Ok(())
    }

    async fn attestations_at(
        &mut self,
        id: ValidatorId,
        target: u64,
    ) -> Result<Vec<(u64, Root, bool)>, Error> {
        let st = self.st(ATTESTATIONS_AT).await?;
        let rows = self.client.query(&st, &[&id, &to_db(target)?]).await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    from_db(r.try_get(0)?)?,
                    root_from_db(r.try_get(1)?)?,
                    !r.try_get::<_, bool>(2)?,
                ))
            })
            .collect()
    }

    async fn surrounding(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
    ) -> Result<Option<(u64, u64)>, Error> {
        let st = self.st(SURROUNDING).await?;
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
        let st = self.st(SURROUNDED).await?;
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
        own: bool,
    ) -> Result<(), Error> {
        let st = self
            .st("INSERT INTO signed_attestations (validator_id, source_epoch, target_epoch, signing_root, merged) VALUES ($1, $2, $3, $4, $5)")
            .await?;
        self.client
            .execute(
                &st,
                &[
                    &id,
                    &to_db(source)?,
                    &to_db(target)?,
                    &root.as_ref().map(|r| &r[..]),
                    &!own,
                ],
            )
            .await?;
        Ok(())
    }

    async fn mark_own_attestation(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
        root: [u8; 32],
    ) -> Result<(), Error> {
        let st = self.st(MARK_OWN_ATTESTATION).await?;
        self.client
            .execute(&st, &[&id, &to_db(source)?, &to_db(target)?, &&root[..]])
            .await?;
        Ok(())
    }

    /// The whole batch in a fixed number of round trips: one pipelined read of four
    /// statements, the rules in memory ([`rules::decide_batch`]), one pipelined write of at
    /// most three statements.
    async fn check_many(&mut self, candidates: &[Candidate]) -> Result<Vec<Verdict>, Error> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        rules::check_ranges(candidates)?;
        let facts = self.batch_facts(candidates).await?;
        let (verdicts, writes) = rules::decide_batch(candidates, facts);
        self.batch_write(&writes).await?;
        Ok(verdicts)
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

    async fn agreement_row(
        &mut self,
        key: &AgreementKey,
    ) -> Result<Option<(Option<[u8; 32]>, String)>, Error> {
        let st = self
            .st("SELECT decided_root, state FROM agreement_state \
                 WHERE public_key = $1 AND duty = $2 AND position = $3")
            .await?;
        let duty = duty_to_db(key.duty)?;
        let row = self
            .client
            .query_opt(&st, &[&&key.pubkey.0[..], &duty, &key.position])
            .await?;
        row.map(|r| Ok((root_from_db(r.try_get(0)?)?, r.try_get(1)?)))
            .transpose()
    }

    async fn put_agreement_row(
        &mut self,
        key: &AgreementKey,
        decided: Option<[u8; 32]>,
        state: &str,
    ) -> Result<(), Error> {
        let st = self
            .st(
                "INSERT INTO agreement_state (public_key, duty, position, decided_root, state) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (public_key, duty, position) \
                 DO UPDATE SET decided_root = EXCLUDED.decided_root, state = EXCLUDED.state",
            )
            .await?;
        let duty = duty_to_db(key.duty)?;
        self.client
            .execute(
                &st,
                &[
                    &&key.pubkey.0[..],
                    &duty,
                    &key.position,
                    &decided.as_ref().map(|r| &r[..]),
                    &state,
                ],
            )
            .await?;
        Ok(())
    }

    async fn agreement_decided_root(
        &mut self,
        key: &AgreementKey,
    ) -> Result<Option<[u8; 32]>, Error> {
        let st = self
            .st("SELECT decided_root FROM agreement_state \
                 WHERE public_key = $1 AND duty = $2 AND position = $3")
            .await?;
        let duty = duty_to_db(key.duty)?;
        let row = self
            .client
            .query_opt(&st, &[&&key.pubkey.0[..], &duty, &key.position])
            .await?;
        root_from_db(row.map(|r| r.try_get(0)).transpose()?.flatten())
    }

    async fn agreement_newest(&mut self) -> Result<Vec<(PublicKeyBytes, i64, u64)>, Error> {
        let st = self
            .st("SELECT public_key, duty, max(position) FROM agreement_state GROUP BY public_key, duty")
            .await?;
        let rows = self.client.query(&st, &[]).await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    pk_from_db(r.try_get(0)?)?,
                    i64::from(r.try_get::<_, i16>(1)?),
                    from_db(r.try_get(2)?)?,
                ))
            })
            .collect()
    }

    async fn delete_agreement_below(
        &mut self,
        pubkey: &PublicKeyBytes,
        duty: i64,
        floor: u64,
    ) -> Result<(), Error> {
        let st = self
            .st("DELETE FROM agreement_state WHERE public_key = $1 AND duty = $2 AND position < $3")
            .await?;
        let duty = duty_to_db(duty)?;
        self.client
            .execute(&st, &[&&pubkey.0[..], &duty, &to_db(floor)?])
            .await?;
        Ok(())
    }
}

/// The SMALLINT duty kind column value.
fn duty_to_db(duty: i64) -> Result<i16, Error> {
    i16::try_from(duty).map_err(|_| Error::Corrupt(format!("agreement duty kind {duty}")))
}
