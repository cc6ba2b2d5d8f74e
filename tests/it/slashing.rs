//! Slashing-protection rules, import/export, pruning, concurrency and file safety, run
//! against both backends (SQLite in a temp dir, PostgreSQL from `common::pg`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use crate::common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use dvsigner::bls::{PublicKeyBytes, SigningRoot};
use dvsigner::slashing::{Error, HighWatermark, Refusal, SlashableMessage, SlashingDb, Verdict};
use proptest::prelude::*;

const GVR: [u8; 32] = [7; 32];

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// An open database plus whatever keeps it alive (the SQLite temp dir).
struct TestDb {
    db: SlashingDb,
    url: String,
    _dir: tempfile::TempDir,
}

impl TestDb {
    async fn open(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => format!("sqlite:{}", dir.path().join("slashing.db").display()),
            Backend::Postgres => common::pg::fresh_db(),
        };
        let db = SlashingDb::open(&url).await.unwrap();
        Self { db, url, _dir: dir }
    }
}

/// A distinct validator public key per call (the bytes need not be a curve point here).
fn pubkey() -> PublicKeyBytes {
    static N: AtomicU64 = AtomicU64::new(1);
    let mut b = [0u8; 48];
    b[..8].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    b[8..16].copy_from_slice(&std::process::id().to_be_bytes().repeat(2));
    PublicKeyBytes(b)
}

fn root(n: u8) -> SigningRoot {
    SigningRoot([n; 32])
}

fn block(slot: u64) -> SlashableMessage {
    SlashableMessage::Block { slot }
}

fn att(source_epoch: u64, target_epoch: u64) -> SlashableMessage {
    SlashableMessage::Attestation {
        source_epoch,
        target_epoch,
    }
}

async fn sign(
    db: &SlashingDb,
    pk: PublicKeyBytes,
    msg: SlashableMessage,
    r: SigningRoot,
) -> Verdict {
    db.check_and_record(pk, GVR, msg, r).await.unwrap()
}

fn refused(v: Verdict) -> Refusal {
    match v {
        Verdict::Refused(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn interchange(gvr: [u8; 32], version: &str, data: serde_json::Value) -> String {
    serde_json::json!({
        "metadata": {
            "interchange_format_version": version,
            "genesis_validators_root": format!("0x{}", hex::encode(gvr)),
        },
        "data": data,
    })
    .to_string()
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )*
        }
    };
}

both_backends!(
    block_rules,
    attestation_rules,
    null_roots_from_import_block_signing,
    genesis_validators_root_mismatch,
    import_is_all_or_nothing,
    export_filter_round_trips,
    pruning_keeps_the_rules,
    disabled_validator_is_refused_until_import,
    concurrent_signers_of_one_slot_allow_exactly_one,
    second_handle_on_same_database_cannot_double_sign,
    batch_refusals_do_not_roll_back_others,
    random_sequences_never_allow_slashable_pairs,
    batch_for_one_validator_matches_sequential,
    random_batches_match_sequential_processing,
    high_watermark_refuses_every_validator_at_and_above_it,
    high_watermark_changed_through_another_handle_applies_to_the_next_check,
    database_of_schema_1_is_migrated_to_the_high_watermark_table,
    own_signature_repeats_over_a_merged_conflicting_attestation,
    own_signature_repeats_over_a_merged_conflicting_block,
    records_only_merged_keep_the_all_records_repeat_rule,
    batched_repeats_follow_the_own_record_rule,
    records_of_schema_2_migrate_as_own,
);

/// Web3Signer's high watermark: blocks at or above its slot, attestations whose source or
/// target reaches its epoch, are refused for every validator (known or new, repeats included);
/// everything below still follows the ordinary rules; removing it lifts the ceiling.
async fn high_watermark_refuses_every_validator_at_and_above_it(backend: Backend) {
    let t = TestDb::open(backend).await;
    let (pk, newcomer) = (pubkey(), pubkey());
    assert_eq!(t.db.high_watermark().await.unwrap(), None);
    assert_eq!(sign(&t.db, pk, block(10), root(1)).await, Verdict::Allowed);
    assert_eq!(sign(&t.db, pk, block(200), root(2)).await, Verdict::Allowed);
    assert_eq!(sign(&t.db, pk, att(1, 2), root(3)).await, Verdict::Allowed);
    assert_eq!(sign(&t.db, pk, att(2, 3), root(4)).await, Verdict::Allowed);

    let hw = HighWatermark {
        epoch: 5,
        slot: 160,
    };
    assert_eq!(t.db.set_high_watermark(Some(hw)).await.unwrap(), None);
    assert_eq!(t.db.high_watermark().await.unwrap(), Some(hw));

    // Blocks: below the slot as before; at and above refused, even an identical re-sign.
    assert_eq!(sign(&t.db, pk, block(10), root(1)).await, Verdict::Repeat);
    assert_eq!(sign(&t.db, pk, block(159), root(5)).await, Verdict::Allowed);
    for (slot, r) in [(160, root(6)), (161, root(6)), (200, root(2))] {
        assert_eq!(
            refused(sign(&t.db, pk, block(slot), r).await),
            Refusal::BlockAtHighWatermark {
                slot,
                high_watermark: hw
            }
        );
    }
    // Attestations: source or target at or above the epoch is refused.
    assert_eq!(sign(&t.db, pk, att(2, 3), root(4)).await, Verdict::Repeat);
    assert_eq!(sign(&t.db, pk, att(3, 4), root(7)).await, Verdict::Allowed);
    for (s, tg) in [(4, 5), (5, 5), (2, 6), (5, 7)] {
        assert_eq!(
            refused(sign(&t.db, pk, att(s, tg), root(8)).await),
            Refusal::AttestationAtHighWatermark {
                source_epoch: s,
                target_epoch: tg,
                high_watermark: hw
            },
            "{s}->{tg}"
        );
    }
    // A validator the database never saw is held to it too, and the refusal records nothing.
    assert!(matches!(
        refused(sign(&t.db, newcomer, block(500), root(9)).await),
        Refusal::BlockAtHighWatermark { .. }
    ));
    assert!(matches!(
        refused(sign(&t.db, newcomer, att(0, 5), root(9)).await),
        Refusal::AttestationAtHighWatermark { .. }
    ));
    let message = Refusal::BlockAtHighWatermark {
        slot: 160,
        high_watermark: hw,
    }
    .to_string();
    assert!(
        message.contains("high watermark (epoch 5, slot 160)"),
        "{message}"
    );
    let exported: serde_json::Value =
        serde_json::from_str(&t.db.export_interchange(None).await.unwrap()).unwrap();
    let mine = exported["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["pubkey"] == pk.to_hex())
        .unwrap();
    let slots: Vec<&str> = mine["signed_blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["slot"].as_str().unwrap())
        .collect();
    assert_eq!(slots, ["10", "159", "200"]);

    // Raising it returns the previous one; removing it lifts the ceiling.
    let higher = HighWatermark {
        epoch: 6,
        slot: 192,
    };
    assert_eq!(
        t.db.set_high_watermark(Some(higher)).await.unwrap(),
        Some(hw)
    );
    assert_eq!(sign(&t.db, pk, block(160), root(6)).await, Verdict::Allowed);
    assert!(matches!(
        refused(sign(&t.db, pk, block(192), root(6)).await),
        Refusal::BlockAtHighWatermark { .. }
    ));
    assert_eq!(t.db.set_high_watermark(None).await.unwrap(), Some(higher));
    assert_eq!(t.db.high_watermark().await.unwrap(), None);
    assert_eq!(sign(&t.db, pk, block(200), root(2)).await, Verdict::Repeat);
    assert_eq!(sign(&t.db, pk, att(4, 5), root(8)).await, Verdict::Allowed);
    assert_eq!(
        sign(&t.db, newcomer, block(500), root(9)).await,
        Verdict::Allowed
    );
    // Removing when none is set is not an error.
    assert_eq!(t.db.set_high_watermark(None).await.unwrap(), None);
    // Values the database cannot store are refused before any change.
    assert!(matches!(
        t.db.set_high_watermark(Some(HighWatermark {
            epoch: u64::MAX,
            slot: 1
        }))
        .await,
        Err(Error::OutOfRange { .. })
    ));
    assert_eq!(t.db.high_watermark().await.unwrap(), None);
}

/// The watermark lives in the database and each check reads it: a change through another
/// handle (another process, e.g. the offline command) binds a handle that is already running,
/// from its next check, with no restart; batches of concurrent requests honour it too.
async fn high_watermark_changed_through_another_handle_applies_to_the_next_check(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    assert_eq!(sign(&t.db, pk, block(100), root(1)).await, Verdict::Allowed);
    let other = SlashingDb::open(&t.url).await.unwrap();
    other
        .set_high_watermark(Some(HighWatermark {
            epoch: 4,
            slot: 128,
        }))
        .await
        .unwrap();
    assert_eq!(
        t.db.high_watermark().await.unwrap(),
        Some(HighWatermark {
            epoch: 4,
            slot: 128
        })
    );
    // Concurrent requests (batched by the writer): exactly those below the ceiling pass.
    let keys: Vec<PublicKeyBytes> = (0..20).map(|_| pubkey()).collect();
    let tasks: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let db = t.db.clone();
            let slot = 118 + i as u64; // 118..=137: 10 below 128, 10 at or above
            tokio::spawn(async move {
                (
                    slot,
                    db.check_and_record(k, GVR, block(slot), root(2))
                        .await
                        .unwrap(),
                )
            })
        })
        .collect();
    for task in tasks {
        let (slot, verdict) = task.await.unwrap();
        if slot < 128 {
            assert_eq!(verdict, Verdict::Allowed, "slot {slot}");
        } else {
            assert!(
                matches!(verdict, Verdict::Refused(Refusal::BlockAtHighWatermark { slot: s, .. }) if s == slot),
                "slot {slot}: {verdict:?}"
            );
        }
    }
    other.set_high_watermark(None).await.unwrap();
    assert_eq!(sign(&t.db, pk, block(130), root(3)).await, Verdict::Allowed);
}

/// Runs `sql` on the test database with a connection of its own; returns the first column of
/// the first row as an integer when the statement yields one.
async fn sql(t: &TestDb, sql: &str) -> Option<i64> {
    match t.url.strip_prefix("sqlite:") {
        Some(path) => {
            let c = rusqlite::Connection::open(path).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            let mut st = c.prepare(sql).unwrap();
            let mut rows = st.query([]).unwrap();
            rows.next().unwrap().and_then(|r| r.get::<_, i64>(0).ok())
        }
        None => {
            let (client, conn) = tokio_postgres::connect(&t.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let driver = tokio::spawn(conn);
            let rows = client.query(sql, &[]).await.unwrap();
            drop(client);
            let _ = driver.await;
            rows.first()
                .and_then(|r| r.try_get::<_, i32>(0).ok().map(i64::from))
        }
    }
}

/// A database written by a dvsigner without the high watermark (schema version 1) keeps its
/// history and gains the table when the next dvsigner opens it.
async fn database_of_schema_1_is_migrated_to_the_high_watermark_table(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    assert_eq!(sign(&t.db, pk, block(10), root(1)).await, Verdict::Allowed);
    assert_eq!(
        sql(&t, "SELECT max(version) FROM schema_version").await,
        Some(3)
    );
    // Back to what schema version 1 looked like (undoing versions 3 and 2).
    downgrade_schema_3(&t).await;
    sql(&t, "DROP TABLE high_watermark").await;
    sql(&t, "DELETE FROM schema_version WHERE version = 2").await;
    assert_eq!(
        sql(&t, "SELECT max(version) FROM schema_version").await,
        Some(1)
    );

    let reopened = SlashingDb::open(&t.url).await.unwrap();
    assert_eq!(
        sql(&t, "SELECT max(version) FROM schema_version").await,
        Some(3)
    );
    assert_eq!(reopened.high_watermark().await.unwrap(), None);
    assert_eq!(
        sign(&reopened, pk, block(10), root(1)).await,
        Verdict::Repeat
    );
    let hw = HighWatermark { epoch: 1, slot: 32 };
    reopened.set_high_watermark(Some(hw)).await.unwrap();
    assert!(matches!(
        refused(sign(&reopened, pk, block(40), root(2)).await),
        Refusal::BlockAtHighWatermark { .. }
    ));
}

/// Turns a database of schema version 3 back into version 2: no record origins, no agreement
/// state.
async fn downgrade_schema_3(t: &TestDb) {
    sql(t, "ALTER TABLE signed_blocks DROP COLUMN merged").await;
    sql(t, "ALTER TABLE signed_attestations DROP COLUMN merged").await;
    sql(t, "DROP TABLE agreement_state").await;
    sql(t, "DELETE FROM schema_version WHERE version = 3").await;
    assert_eq!(
        sql(t, "SELECT max(version) FROM schema_version").await,
        Some(2)
    );
}

async fn block_rules(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    assert_eq!(sign(&t.db, pk, block(10), root(1)).await, Verdict::Allowed);
    assert_eq!(sign(&t.db, pk, block(10), root(1)).await, Verdict::Repeat);
    assert_eq!(
        refused(sign(&t.db, pk, block(10), root(2)).await),
        Refusal::DoubleBlockProposal {
            slot: 10,
            existing_root: root(1)
        }
    );
    // The first signature sets the low watermark: older slots are refused.
    assert_eq!(
        refused(sign(&t.db, pk, block(9), root(3)).await),
        Refusal::BlockSlotBelowWatermark {
            slot: 9,
            watermark: 10
        }
    );
    assert_eq!(sign(&t.db, pk, block(12), root(4)).await, Verdict::Allowed);
    // Complete strategy: an unsigned slot between signed ones is not slashable.
    assert_eq!(sign(&t.db, pk, block(11), root(5)).await, Verdict::Allowed);
    let msg = Refusal::DoubleBlockProposal {
        slot: 10,
        existing_root: root(1),
    }
    .to_string();
    assert_eq!(
        msg,
        format!(
            "double block proposal at slot 10: already signed root 0x{}",
            "01".repeat(32)
        )
    );
}

async fn attestation_rules(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    assert_eq!(sign(&t.db, pk, att(2, 3), root(1)).await, Verdict::Allowed);
    assert_eq!(sign(&t.db, pk, att(2, 3), root(1)).await, Verdict::Repeat);
    assert_eq!(
        refused(sign(&t.db, pk, att(2, 3), root(2)).await),
        Refusal::DoubleVote {
            target_epoch: 3,
            existing_source: 2,
            existing_root: root(1)
        }
    );
    assert_eq!(
        refused(sign(&t.db, pk, att(5, 4), root(3)).await),
        Refusal::SourceGreaterThanTarget {
            source_epoch: 5,
            target_epoch: 4
        }
    );
    assert_eq!(
        refused(sign(&t.db, pk, att(1, 5), root(3)).await),
        Refusal::SourceBelowWatermark {
            source_epoch: 1,
            watermark: 2
        }
    );
    assert_eq!(
        refused(sign(&t.db, pk, att(2, 2), root(3)).await),
        Refusal::TargetBelowWatermark {
            target_epoch: 2,
            watermark: 3
        }
    );
    assert_eq!(sign(&t.db, pk, att(4, 10), root(4)).await, Verdict::Allowed);
    assert_eq!(
        refused(sign(&t.db, pk, att(5, 9), root(5)).await),
        Refusal::SurroundedVote {
            source_epoch: 5,
            target_epoch: 9,
            existing_source: 4,
            existing_target: 10
        }
    );
    assert_eq!(
        refused(sign(&t.db, pk, att(3, 11), root(6)).await),
        Refusal::SurroundingVote {
            source_epoch: 3,
            target_epoch: 11,
            existing_source: 4,
            existing_target: 10
        }
    );
    // Neither surrounding nor surrounded: same source, later target.
    assert_eq!(sign(&t.db, pk, att(4, 11), root(7)).await, Verdict::Allowed);
    let text = Refusal::SurroundingVote {
        source_epoch: 3,
        target_epoch: 11,
        existing_source: 4,
        existing_target: 10,
    }
    .to_string();
    assert!(text.contains("3→11") && text.contains("4→10"), "{text}");
}

async fn null_roots_from_import_block_signing(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    let doc = interchange(
        GVR,
        "5",
        serde_json::json!([{
            "pubkey": pk.to_hex(),
            "signed_blocks": [{"slot": "20"}],
            "signed_attestations": [{"source_epoch": "5", "target_epoch": "6"}],
        }]),
    );
    let report = t.db.import_interchange(&doc).await.unwrap();
    assert_eq!((report.blocks, report.attestations), (1, 1));
    // The zero root is a real root, distinct from "unknown": still refused.
    assert_eq!(
        refused(sign(&t.db, pk, block(20), SigningRoot([0; 32])).await),
        Refusal::NullRootAtSlot { slot: 20 }
    );
    assert_eq!(
        refused(sign(&t.db, pk, att(5, 6), SigningRoot([0; 32])).await),
        Refusal::NullRootAtTarget { target_epoch: 6 }
    );
    // Export keeps the roots absent (not "0x00…").
    let exported: serde_json::Value =
        serde_json::from_str(&t.db.export_interchange(Some(&[pk])).await.unwrap()).unwrap();
    assert_eq!(
        exported["data"][0]["signed_blocks"],
        serde_json::json!([{"slot": "20"}])
    );
    assert_eq!(
        exported["data"][0]["signed_attestations"],
        serde_json::json!([{"source_epoch": "5", "target_epoch": "6"}])
    );
    // Importing the same null entries again stores nothing new.
    assert_eq!(t.db.import_interchange(&doc).await.unwrap().skipped, 2);
}

async fn genesis_validators_root_mismatch(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    assert_eq!(sign(&t.db, pk, block(1), root(1)).await, Verdict::Allowed);
    let other = [9u8; 32];
    let v =
        t.db.check_and_record(pk, other, block(2), root(2))
            .await
            .unwrap();
    assert_eq!(
        refused(v),
        Refusal::WrongGenesisValidatorsRoot {
            stored: SigningRoot(GVR),
            requested: SigningRoot(other)
        }
    );
    // Nothing was recorded for the refused request.
    assert_eq!(sign(&t.db, pk, block(2), root(3)).await, Verdict::Allowed);
    assert!(matches!(
        t.db.ensure_genesis_validators_root(other).await,
        Err(Error::GenesisValidatorsRootMismatch { .. })
    ));
    t.db.ensure_genesis_validators_root(GVR).await.unwrap();
}

async fn import_is_all_or_nothing(backend: Backend) {
    let t = TestDb::open(backend).await;
    let (a, b) = (pubkey(), pubkey());
    assert_eq!(sign(&t.db, a, block(5), root(1)).await, Verdict::Allowed);
    let before = t.db.export_interchange(None).await.unwrap();
    let data = serde_json::json!([
        {"pubkey": b.to_hex(), "signed_blocks": [{"slot": "100"}], "signed_attestations": []},
        {"pubkey": a.to_hex(), "signed_blocks": [{"slot": "200"}], "signed_attestations": []},
    ]);
    let good = interchange(GVR, "5", data.clone());

    let corrupt = &good[..good.len() - 10];
    assert!(matches!(
        t.db.import_interchange(corrupt).await,
        Err(Error::InvalidInterchange(_))
    ));
    assert!(matches!(
        t.db.import_interchange(&interchange(GVR, "4", data.clone())).await,
        Err(Error::UnsupportedInterchangeVersion(v)) if v == "4"
    ));
    assert!(matches!(
        t.db.import_interchange(&interchange([1; 32], "5", data.clone()))
            .await,
        Err(Error::GenesisValidatorsRootMismatch { .. })
    ));
    // Valid first validator, out-of-range second one: the first must not be imported either.
    let mut bad_second = data.clone();
    bad_second[1]["signed_blocks"][0]["slot"] = serde_json::json!(u64::MAX.to_string());
    assert!(matches!(
        t.db.import_interchange(&interchange(GVR, "5", bad_second))
            .await,
        Err(Error::OutOfRange { .. })
    ));
    let mut unknown_field = data;
    unknown_field[0]["surprise"] = serde_json::json!(1);
    assert!(matches!(
        t.db.import_interchange(&interchange(GVR, "5", unknown_field))
            .await,
        Err(Error::InvalidInterchange(_))
    ));
    assert_eq!(
        t.db.export_interchange(None).await.unwrap(),
        before,
        "a failed import changed the DB"
    );
    // Block 200 of `a` was not imported, so it can still be signed after the failures.
    assert_eq!(sign(&t.db, a, block(200), root(2)).await, Verdict::Allowed);
    // And the good document imports.
    let report = t.db.import_interchange(&good).await.unwrap();
    assert_eq!((report.validators, report.blocks), (2, 2));
}

async fn export_filter_round_trips(backend: Backend) {
    let t = TestDb::open(backend).await;
    let (a, b) = (pubkey(), pubkey());
    assert_eq!(sign(&t.db, a, block(3), root(1)).await, Verdict::Allowed);
    assert_eq!(sign(&t.db, a, att(1, 2), root(2)).await, Verdict::Allowed);
    assert_eq!(sign(&t.db, b, block(4), root(3)).await, Verdict::Allowed);
    let only_a = t.db.export_interchange(Some(&[a])).await.unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&only_a).unwrap();
    assert_eq!(parsed["metadata"]["interchange_format_version"], "5");
    assert_eq!(
        parsed["metadata"]["genesis_validators_root"],
        format!("0x{}", hex::encode(GVR))
    );
    assert_eq!(parsed["data"].as_array().unwrap().len(), 1);
    assert_eq!(parsed["data"][0]["pubkey"], a.to_hex());
    assert_eq!(
        parsed["data"][0]["signed_blocks"],
        serde_json::json!([{"slot": "3", "signing_root": format!("0x{}", "01".repeat(32))}])
    );

    let fresh = TestDb::open(backend).await;
    fresh.db.import_interchange(&only_a).await.unwrap();
    assert_eq!(fresh.db.export_interchange(None).await.unwrap(), only_a);
    assert_eq!(sign(&fresh.db, a, block(3), root(1)).await, Verdict::Repeat);
    assert_eq!(
        sign(&fresh.db, a, att(1, 2), root(2)).await,
        Verdict::Repeat
    );
    assert!(matches!(
        sign(&fresh.db, a, block(3), root(9)).await,
        Verdict::Refused(_)
    ));
    assert!(matches!(
        sign(&fresh.db, a, att(0, 3), root(9)).await,
        Verdict::Refused(_)
    ));
}

async fn pruning_keeps_the_rules(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    // 20 epochs of 4 slots: a block every epoch, an attestation (e, e+1) every epoch.
    for e in 0..20u64 {
        assert_eq!(
            sign(&t.db, pk, block(4 * e), root(e as u8)).await,
            Verdict::Allowed
        );
        assert_eq!(
            sign(&t.db, pk, att(e, e + 1), root(100 + e as u8)).await,
            Verdict::Allowed
        );
    }
    let deleted = t.db.prune(5, 4).await.unwrap();
    // Blocks kept: slots > 76 - 20 = 56, i.e. 60..=76 (5); attestations: targets 16..=20 (5).
    assert_eq!(deleted, 15 + 15);
    let exported: serde_json::Value =
        serde_json::from_str(&t.db.export_interchange(None).await.unwrap()).unwrap();
    assert_eq!(
        exported["data"][0]["signed_blocks"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        exported["data"][0]["signed_attestations"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    // Deleted rows are still protected by the raised watermarks.
    assert_eq!(
        refused(sign(&t.db, pk, block(8), root(50)).await),
        Refusal::BlockSlotBelowWatermark {
            slot: 8,
            watermark: 60
        }
    );
    assert_eq!(
        refused(sign(&t.db, pk, att(15, 15), root(50)).await),
        Refusal::TargetBelowWatermark {
            target_epoch: 15,
            watermark: 16
        }
    );
    // The source floor covers every deleted vote's source (the highest was 14).
    assert_eq!(
        refused(sign(&t.db, pk, att(13, 30), root(50)).await),
        Refusal::SourceBelowWatermark {
            source_epoch: 13,
            watermark: 14
        }
    );
    assert_eq!(sign(&t.db, pk, block(76), root(19)).await, Verdict::Repeat);
    assert_eq!(
        sign(&t.db, pk, att(19, 20), root(119)).await,
        Verdict::Repeat
    );
    assert_eq!(
        sign(&t.db, pk, att(20, 21), root(120)).await,
        Verdict::Allowed
    );
    // An import of old history cannot lower the floors below what was pruned.
    let old = interchange(
        GVR,
        "5",
        serde_json::json!([{
            "pubkey": pk.to_hex(),
            "signed_blocks": [{"slot": "1", "signing_root": format!("0x{}", "aa".repeat(32))}],
            "signed_attestations": [],
        }]),
    );
    t.db.import_interchange(&old).await.unwrap();
    assert!(matches!(
        refused(sign(&t.db, pk, block(2), root(51)).await),
        Refusal::BlockSlotBelowWatermark { .. }
    ));

    // A vote that would surround a deleted one stays refused: (5, 20) and (10, 11) imported
    // (slashable with each other, kept as-is), prune deletes (10, 11); (6, 21) surrounds it.
    let q = pubkey();
    let doc = interchange(
        GVR,
        "5",
        serde_json::json!([{
            "pubkey": q.to_hex(),
            "signed_blocks": [],
            "signed_attestations": [
                {"source_epoch": "10", "target_epoch": "11"},
                {"source_epoch": "5", "target_epoch": "20"},
            ],
        }]),
    );
    t.db.import_interchange(&doc).await.unwrap();
    assert!(matches!(
        refused(sign(&t.db, q, att(6, 21), root(1)).await),
        Refusal::SurroundingVote { .. }
    ));
    t.db.prune(5, 4).await.unwrap();
    assert_eq!(
        refused(sign(&t.db, q, att(6, 21), root(1)).await),
        Refusal::SourceBelowWatermark {
            source_epoch: 6,
            watermark: 10
        }
    );
    assert_eq!(sign(&t.db, q, att(10, 21), root(2)).await, Verdict::Allowed);
}

async fn disabled_validator_is_refused_until_import(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    t.db.register_validators(&[pk, pk]).await.unwrap();
    t.db.set_enabled(pk, false).await.unwrap();
    assert_eq!(
        refused(sign(&t.db, pk, block(1), root(1)).await),
        Refusal::ValidatorDisabled { pubkey: pk }
    );
    let doc = interchange(
        GVR,
        "5",
        serde_json::json!([{"pubkey": pk.to_hex(), "signed_blocks": [], "signed_attestations": []}]),
    );
    t.db.import_interchange(&doc).await.unwrap();
    assert_eq!(sign(&t.db, pk, block(1), root(1)).await, Verdict::Allowed);
    t.db.ping().await.unwrap();
}

/// Lighthouse `parallel_tests.rs`: many signers of one slot, exactly one success.
async fn concurrent_signers_of_one_slot_allow_exactly_one(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    let tasks: Vec<_> = (0..50u8)
        .map(|i| {
            let db = t.db.clone();
            tokio::spawn(async move {
                db.check_and_record(pk, GVR, block(100), root(i))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut allowed = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Verdict::Allowed => allowed.push(i as u8),
            Verdict::Refused(Refusal::DoubleBlockProposal { slot: 100, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(allowed.len(), 1, "exactly one of 50 may pass");
    // Durable: a new handle (new connection) sees the winner.
    let again = SlashingDb::open(&t.url).await.unwrap();
    assert_eq!(
        sign(&again, pk, block(100), root(allowed[0])).await,
        Verdict::Repeat
    );

    // Same for attestations with one target.
    let tasks: Vec<_> = (0..50u8)
        .map(|i| {
            let db = t.db.clone();
            tokio::spawn(async move {
                db.check_and_record(pk, GVR, att(1, 2), root(i))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut safe = 0;
    for task in tasks {
        if task.await.unwrap() == Verdict::Allowed {
            safe += 1;
        }
    }
    assert_eq!(safe, 1);
}

/// Two handles with their own connections (like two processes) racing on one validator.
async fn second_handle_on_same_database_cannot_double_sign(backend: Backend) {
    let t = TestDb::open(backend).await;
    let other = SlashingDb::open(&t.url).await.unwrap();
    for slot in 0..5u64 {
        let pk = pubkey();
        let tasks: Vec<_> = (0..20u8)
            .map(|i| {
                let db = if i % 2 == 0 {
                    t.db.clone()
                } else {
                    other.clone()
                };
                tokio::spawn(async move {
                    db.check_and_record(pk, GVR, block(slot), root(i))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut allowed = 0;
        for task in tasks {
            if task.await.unwrap() == Verdict::Allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 1, "slot {slot}");
    }
}

async fn batch_refusals_do_not_roll_back_others(backend: Backend) {
    let t = TestDb::open(backend).await;
    let keys: Vec<PublicKeyBytes> = (0..40).map(|_| pubkey()).collect();
    for pk in &keys {
        assert_eq!(sign(&t.db, *pk, block(10), root(1)).await, Verdict::Allowed);
    }
    // Interleave refusals (double proposals at slot 10) with new blocks at slot 11.
    let mut tasks = Vec::new();
    for pk in keys.clone() {
        let (d1, d2) = (t.db.clone(), t.db.clone());
        tasks.push(tokio::spawn(async move {
            d1.check_and_record(pk, GVR, block(10), root(2))
                .await
                .unwrap()
        }));
        tasks.push(tokio::spawn(async move {
            d2.check_and_record(pk, GVR, block(11), root(3))
                .await
                .unwrap()
        }));
    }
    let verdicts: Vec<Verdict> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for pair in verdicts.chunks(2) {
        assert!(matches!(
            pair[0],
            Verdict::Refused(Refusal::DoubleBlockProposal { .. })
        ));
        assert_eq!(pair[1], Verdict::Allowed);
    }
    for pk in &keys {
        assert_eq!(sign(&t.db, *pk, block(11), root(3)).await, Verdict::Repeat);
    }
}

/// One batch (one transaction) holding several messages per validator, conflicting and
/// repeated, on top of stored history: the verdicts must be those of sequential processing
/// (written out here by hand from EIP-3076), and the batch's effects must persist.
async fn batch_for_one_validator_matches_sequential(backend: Backend) {
    let (a, b) = (pubkey(), pubkey());
    let other_chain = [9u8; 32];
    let requests: Vec<(PublicKeyBytes, [u8; 32], SlashableMessage, SigningRoot)> = vec![
        (a, GVR, block(6), root(1)),
        (b, GVR, att(7, 8), root(3)),
        (a, GVR, block(6), root(2)),
        (a, GVR, block(6), root(1)),
        (b, GVR, block(20), root(3)),
        (a, GVR, block(5), root(1)),
        (a, GVR, block(5), root(2)),
        (b, GVR, block(19), root(3)),
        (a, GVR, att(3, 4), root(1)),
        (a, GVR, att(3, 4), root(1)),
        (b, GVR, att(6, 9), root(3)),
        (a, GVR, att(3, 4), root(2)),
        (a, GVR, att(2, 4), root(1)),
        (b, GVR, att(7, 8), root(3)),
        (a, GVR, att(4, 10), root(1)),
        (a, GVR, att(5, 9), root(1)),
        (a, GVR, att(3, 11), root(1)),
        (b, GVR, att(8, 8), root(3)),
        (a, GVR, att(1, 12), root(1)),
        (a, GVR, att(3, 3), root(1)),
        (a, GVR, att(5, 4), root(1)),
        (a, other_chain, block(30), root(1)),
    ];
    let double_block = |slot, r: u8| {
        Verdict::Refused(Refusal::DoubleBlockProposal {
            slot,
            existing_root: root(r),
        })
    };
    let double_vote = |target_epoch, existing_source, r: u8| {
        Verdict::Refused(Refusal::DoubleVote {
            target_epoch,
            existing_source,
            existing_root: root(r),
        })
    };
    let expected = vec![
        Verdict::Allowed,
        Verdict::Allowed,
        double_block(6, 1),
        Verdict::Repeat,
        Verdict::Allowed,
        Verdict::Repeat,
        double_block(5, 1),
        Verdict::Refused(Refusal::BlockSlotBelowWatermark {
            slot: 19,
            watermark: 20,
        }),
        Verdict::Allowed,
        Verdict::Repeat,
        Verdict::Refused(Refusal::SourceBelowWatermark {
            source_epoch: 6,
            watermark: 7,
        }),
        double_vote(4, 3, 1),
        double_vote(4, 3, 1),
        Verdict::Repeat,
        Verdict::Allowed,
        Verdict::Refused(Refusal::SurroundedVote {
            source_epoch: 5,
            target_epoch: 9,
            existing_source: 4,
            existing_target: 10,
        }),
        Verdict::Refused(Refusal::SurroundingVote {
            source_epoch: 3,
            target_epoch: 11,
            existing_source: 4,
            existing_target: 10,
        }),
        double_vote(8, 7, 3),
        Verdict::Refused(Refusal::SourceBelowWatermark {
            source_epoch: 1,
            watermark: 2,
        }),
        double_vote(3, 2, 1),
        Verdict::Refused(Refusal::SourceGreaterThanTarget {
            source_epoch: 5,
            target_epoch: 4,
        }),
        Verdict::Refused(Refusal::WrongGenesisValidatorsRoot {
            stored: SigningRoot(GVR),
            requested: SigningRoot(other_chain),
        }),
    ];
    assert_eq!(requests.len(), expected.len());

    let batched = TestDb::open(backend).await;
    let sequential = TestDb::open(backend).await;
    for t in [&batched, &sequential] {
        // Stored history of `a`: watermarks slot 5, source 2, target 3.
        assert_eq!(sign(&t.db, a, block(5), root(1)).await, Verdict::Allowed);
        assert_eq!(sign(&t.db, a, att(2, 3), root(1)).await, Verdict::Allowed);
    }
    let got: Vec<Verdict> = batched
        .db
        .check_and_record_many(&requests)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut one_by_one = Vec::new();
    for &(pk, gvr, msg, r) in &requests {
        one_by_one.push(
            sequential
                .db
                .check_and_record(pk, gvr, msg, r)
                .await
                .unwrap(),
        );
    }
    for (i, ((g, s), e)) in got.iter().zip(&one_by_one).zip(&expected).enumerate() {
        assert_eq!(g, e, "batched request {i}: {:?}", requests[i]);
        assert_eq!(s, e, "sequential request {i}: {:?}", requests[i]);
    }

    // The batch's rows and watermarks were committed (seen through a new connection).
    let again = SlashingDb::open(&batched.url).await.unwrap();
    assert_eq!(sign(&again, a, block(6), root(1)).await, Verdict::Repeat);
    assert_eq!(sign(&again, a, att(3, 4), root(1)).await, Verdict::Repeat);
    assert_eq!(sign(&again, a, att(4, 10), root(1)).await, Verdict::Repeat);
    assert_eq!(sign(&again, b, block(20), root(3)).await, Verdict::Repeat);
    assert_eq!(
        sign(&again, b, block(19), root(4)).await,
        Verdict::Refused(Refusal::BlockSlotBelowWatermark {
            slot: 19,
            watermark: 20
        })
    );
    assert_eq!(
        sign(&again, b, att(8, 9), root(3)).await,
        Verdict::Allowed,
        "b's watermarks are source 7 / target 8"
    );
    assert_eq!(
        sign(&again, b, att(7, 8), root(4)).await,
        double_vote(8, 7, 3)
    );
    assert!(matches!(
        sign(&again, a, block(6), root(2)).await,
        Verdict::Refused(Refusal::DoubleBlockProposal { slot: 6, .. })
    ));
}

/// A surround refusal names one offending stored vote; when several exist, which one is
/// unspecified, so comparisons ignore it.
fn normalized(v: Verdict) -> Verdict {
    match v {
        Verdict::Refused(Refusal::SurroundedVote {
            source_epoch,
            target_epoch,
            ..
        }) => Verdict::Refused(Refusal::SurroundedVote {
            source_epoch,
            target_epoch,
            existing_source: 0,
            existing_target: 0,
        }),
        Verdict::Refused(Refusal::SurroundingVote {
            source_epoch,
            target_epoch,
            ..
        }) => Verdict::Refused(Refusal::SurroundingVote {
            source_epoch,
            target_epoch,
            existing_source: 0,
            existing_target: 0,
        }),
        other => other,
    }
}

/// Differential: random requests of two validators, a prefix recorded one by one, the rest
/// sent as one batch on `backend`; the verdicts must equal those of the same requests made
/// one by one on a separate SQLite database (one transaction each, rules run per request).
async fn random_batches_match_sequential_processing(backend: Backend) {
    let t = TestDb::open(backend).await;
    let reference = TestDb::open(Backend::Sqlite).await;
    let cases = match backend {
        Backend::Sqlite => 24,
        Backend::Postgres => 24,
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    let handle = tokio::runtime::Handle::current();
    let strategy = (
        proptest::collection::vec((any::<bool>(), req()), 0..8),
        proptest::collection::vec((any::<bool>(), req()), 1..30),
    );
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(prefix, batch)| {
            let keys = [pubkey(), pubkey()];
            let request = |(second, r): &(bool, Req)| {
                let (msg, rt) = match *r {
                    Req::Block(s, x) => (block(s), root(x)),
                    Req::Att(s, tg, x) => (att(s, tg), root(x)),
                };
                (keys[usize::from(*second)], GVR, msg, rt)
            };
            for p in &prefix {
                let (pk, gvr, msg, rt) = request(p);
                let x = handle.block_on(t.db.check_and_record(pk, gvr, msg, rt));
                let y = handle.block_on(reference.db.check_and_record(pk, gvr, msg, rt));
                prop_assert_eq!(x.unwrap(), y.unwrap());
            }
            let requests: Vec<_> = batch.iter().map(request).collect();
            let got = handle
                .block_on(t.db.check_and_record_many(&requests))
                .unwrap();
            for (i, (g, &(pk, gvr, msg, rt))) in got.into_iter().zip(&requests).enumerate() {
                let want = handle
                    .block_on(reference.db.check_and_record(pk, gvr, msg, rt))
                    .unwrap();
                prop_assert_eq!(
                    normalized(g.unwrap()),
                    normalized(want),
                    "request {} {:?}",
                    i,
                    batch[i]
                );
            }
            Ok(())
        })
    });
    result.unwrap();
}

#[derive(Clone, Debug)]
enum Req {
    Block(u64, u8),
    Att(u64, u64, u8),
}

fn req() -> impl Strategy<Value = Req> {
    prop_oneof![
        (0..12u64, 0..3u8).prop_map(|(s, r)| Req::Block(s, r)),
        (0..10u64, 0..10u64, 0..3u8).prop_map(|(s, t, r)| Req::Att(s, t, r)),
    ]
}

/// Runs `seqs` on one database (one fresh validator per sequence) and checks that the set of
/// messages it let through (Allowed or Repeat) holds no slashable pair.
async fn random_sequences_never_allow_slashable_pairs(backend: Backend) {
    let t = TestDb::open(backend).await;
    let cases = match backend {
        Backend::Sqlite => 64,
        Backend::Postgres => 24,
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    let db = t.db.clone();
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        runner.run(&proptest::collection::vec(req(), 1..40), |seq| {
            let pk = pubkey();
            let mut blocks: Vec<(u64, u8)> = Vec::new();
            let mut atts: Vec<(u64, u64, u8)> = Vec::new();
            let mut allowed_new: HashSet<String> = HashSet::new();
            for r in &seq {
                let (msg, rt, key) = match *r {
                    Req::Block(s, x) => (block(s), root(x), format!("b{s}:{x}")),
                    Req::Att(s, tg, x) => (att(s, tg), root(x), format!("a{s}:{tg}:{x}")),
                };
                let v = handle
                    .block_on(db.check_and_record(pk, GVR, msg, rt))
                    .unwrap();
                match v {
                    Verdict::Allowed => {
                        prop_assert!(
                            allowed_new.insert(key.clone()),
                            "allowed twice as new: {}",
                            key
                        );
                    }
                    Verdict::Repeat => {
                        prop_assert!(allowed_new.contains(&key), "repeat of unsigned {}", key)
                    }
                    Verdict::Refused(_) => continue,
                }
                match *r {
                    Req::Block(s, x) => {
                        for &(s2, x2) in &blocks {
                            prop_assert!(!(s == s2 && x != x2), "double proposal at {}", s);
                        }
                        blocks.push((s, x));
                    }
                    Req::Att(s, tg, x) => {
                        prop_assert!(s <= tg);
                        for &(s2, t2, x2) in &atts {
                            prop_assert!(
                                !(tg == t2 && (s != s2 || x != x2)),
                                "double vote {}→{} vs {}→{}",
                                s,
                                tg,
                                s2,
                                t2
                            );
                            prop_assert!(
                                !(s < s2 && t2 < tg),
                                "{}→{} surrounds {}→{}",
                                s,
                                tg,
                                s2,
                                t2
                            );
                            prop_assert!(
                                !(s2 < s && tg < t2),
                                "{}→{} surrounded by {}→{}",
                                s,
                                tg,
                                s2,
                                t2
                            );
                        }
                        atts.push((s, tg, x));
                    }
                }
            }
            Ok(())
        })
    });
    result.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn sqlite_file_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slashing.db");
    let db = SlashingDb::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    assert_eq!(
        sign(&db, pubkey(), block(1), root(1)).await,
        Verdict::Allowed
    );
    for p in [path.clone(), dir.path().join("slashing.db-wal")] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    // A bare path works too, and reopening keeps the history.
    let again = SlashingDb::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(
        sign(&again, pubkey(), block(1), root(1)).await,
        Verdict::Allowed
    );
}

/// A PostgreSQL connection closed under the node (what a server restart or fail-over looks like
/// from the client) is replaced: at most the operation in flight fails, nothing recorded
/// before is lost, and signing goes on without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reconnects_after_its_connection_is_closed() {
    let t = TestDb::open(Backend::Postgres).await;
    let pk = pubkey();
    assert_eq!(sign(&t.db, pk, block(10), root(1)).await, Verdict::Allowed);
    assert_eq!(sign(&t.db, pk, att(1, 2), root(1)).await, Verdict::Allowed);
    let closed = common::pg::terminate_connections(&common::pg::database_name(&t.url)).await;
    assert!(closed >= 1, "the writer's connection was closed");

    let mut failures = 0;
    let mut verdict = None;
    for _ in 0..20 {
        match t.db.check_and_record(pk, GVR, block(11), root(2)).await {
            Ok(v) => {
                verdict = Some(v);
                break;
            }
            Err(_) => {
                failures += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(verdict, Some(Verdict::Allowed), "signing resumed");
    assert!(failures <= 1, "{failures} operations failed after the loss");
    // The history from before the loss is enforced on the new connection.
    // (`refused` panics on anything but a refusal.)
    refused(sign(&t.db, pk, block(10), root(3)).await);
    refused(sign(&t.db, pk, att(1, 2), root(9)).await);
    t.db.ping().await.unwrap();
}

#[tokio::test]
async fn unknown_url_scheme_is_refused() {
    assert!(matches!(
        SlashingDb::open("mysql://localhost/db").await,
        Err(Error::InvalidUrl(_))
    ));
}

mod agreement_state {
    //! The agreement state table (schema version 3): round trip, immutable decisions,
    //! durability across handles, pruning with the history.

    use super::*;
    use dvsigner::agreement::{
        Body, Decision, Duty, InstanceId, Message, Persisted, Root, SignedMessage,
    };

    both_backends!(
        agreement_state_round_trips_per_instance,
        agreement_decision_never_changes,
        agreement_state_is_committed_and_survives_reopen,
        agreement_state_is_pruned_with_the_history,
    );

    fn instance(validator: PublicKeyBytes, duty: Duty) -> InstanceId {
        InstanceId { validator, duty }
    }

    fn signed(id: InstanceId, round: u32, body: Body) -> SignedMessage {
        SignedMessage {
            message: Message {
                instance: id,
                round,
                from: 1,
                body,
            },
            signature: vec![0xab; 64],
        }
    }

    /// A state that has sent a prepare (and, with `decided`, a commit and a decision) for `r`.
    fn state(id: InstanceId, round: u32, r: Root, decided: bool) -> Persisted {
        let prepare = signed(id, round, Body::Prepare { root: r });
        let commit = signed(id, round, Body::Commit { root: r });
        Persisted {
            round,
            sent: if decided {
                vec![prepare, commit.clone()]
            } else {
                vec![prepare]
            },
            decision: decided.then(|| Decision {
                root: r,
                round,
                commits: vec![commit],
            }),
        }
    }

    async fn agreement_state_round_trips_per_instance(backend: Backend) {
        let t = TestDb::open(backend).await;
        let (pk, other) = (pubkey(), pubkey());
        let block_10 = instance(pk, Duty::Block { slot: 10 });
        let att_10 = instance(pk, Duty::Attestation { target_epoch: 10 });
        let other_block_10 = instance(other, Duty::Block { slot: 10 });
        assert_eq!(t.db.agreement_state(&block_10).await.unwrap(), None);
        assert_eq!(t.db.agreement_decision(&block_10).await.unwrap(), None);

        let s1 = state(block_10, 1, [1; 32], false);
        t.db.store_agreement_state(&block_10, &s1).await.unwrap();
        assert_eq!(t.db.agreement_state(&block_10).await.unwrap(), Some(s1));
        assert_eq!(t.db.agreement_decision(&block_10).await.unwrap(), None);
        // Same slot number, other duty kind or other validator: other instances.
        assert_eq!(t.db.agreement_state(&att_10).await.unwrap(), None);
        assert_eq!(t.db.agreement_state(&other_block_10).await.unwrap(), None);

        // Replaced by a later state; the decision becomes readable on its own.
        let s2 = state(block_10, 2, [2; 32], true);
        t.db.store_agreement_state(&block_10, &s2).await.unwrap();
        assert_eq!(
            t.db.agreement_state(&block_10).await.unwrap(),
            Some(s2.clone())
        );
        assert_eq!(
            t.db.agreement_decision(&block_10).await.unwrap(),
            Some([2; 32])
        );

        let a = state(att_10, 3, [3; 32], true);
        t.db.store_agreement_state(&att_10, &a).await.unwrap();
        assert_eq!(t.db.agreement_state(&att_10).await.unwrap(), Some(a));
        assert_eq!(
            t.db.agreement_decision(&att_10).await.unwrap(),
            Some([3; 32])
        );
        assert_eq!(
            t.db.agreement_state(&block_10).await.unwrap(),
            Some(s2),
            "another instance's write left this one alone"
        );

        // Slots beyond the database's integers are refused, not truncated.
        let huge = instance(pk, Duty::Block { slot: u64::MAX });
        assert!(matches!(
            t.db.store_agreement_state(&huge, &state(huge, 1, [1; 32], false))
                .await,
            Err(Error::OutOfRange { .. })
        ));
    }

    async fn agreement_decision_never_changes(backend: Backend) {
        let t = TestDb::open(backend).await;
        let id = instance(pubkey(), Duty::Attestation { target_epoch: 7 });
        let decided = state(id, 2, [5; 32], true);
        t.db.store_agreement_state(&id, &decided).await.unwrap();

        // Another root: refused, nothing stored.
        let conflicting = state(id, 3, [6; 32], true);
        let err =
            t.db.store_agreement_state(&id, &conflicting)
                .await
                .unwrap_err();
        match &err {
            Error::DecisionConflict {
                stored, requested, ..
            } => {
                assert_eq!((*stored, *requested), ([5; 32], [6; 32]));
            }
            other => panic!("expected DecisionConflict, got {other:?}"),
        }
        assert!(err.to_string().contains(&hex::encode([5u8; 32])), "{err}");
        assert_eq!(
            t.db.agreement_state(&id).await.unwrap(),
            Some(decided.clone())
        );

        // A state without a decision (a later round's messages) is stored, but the decision
        // stays.
        let mut undecided = state(id, 4, [9; 32], false);
        t.db.store_agreement_state(&id, &undecided).await.unwrap();
        let stored = t.db.agreement_state(&id).await.unwrap().unwrap();
        assert_eq!(stored.round, 4);
        assert_eq!(stored.sent, undecided.sent);
        assert_eq!(stored.decision, decided.decision);
        assert_eq!(t.db.agreement_decision(&id).await.unwrap(), Some([5; 32]));

        // The same root decided again (say in a later round) keeps the first decision.
        undecided.decision = Some(Decision {
            root: [5; 32],
            round: 9,
            commits: Vec::new(),
        });
        t.db.store_agreement_state(&id, &undecided).await.unwrap();
        let stored = t.db.agreement_state(&id).await.unwrap().unwrap();
        assert_eq!(stored.decision, decided.decision);
    }

    async fn agreement_state_is_committed_and_survives_reopen(backend: Backend) {
        let t = TestDb::open(backend).await;
        let pk = pubkey();
        let id = instance(pk, Duty::Block { slot: 99 });
        let s = state(id, 1, [4; 32], true);
        t.db.store_agreement_state(&id, &s).await.unwrap();
        // Visible to an independent connection as soon as the call returned (committed).
        assert_eq!(
            sql(
                &t,
                "SELECT CAST(count(*) AS INTEGER) FROM agreement_state WHERE decided_root IS NOT NULL"
            )
            .await,
            Some(1)
        );
        assert_eq!(
            sql(&t, "SELECT max(version) FROM schema_version").await,
            Some(3)
        );
        drop(t.db);
        let reopened = SlashingDb::open(&t.url).await.unwrap();
        assert_eq!(reopened.agreement_state(&id).await.unwrap(), Some(s));
        assert_eq!(
            reopened.agreement_decision(&id).await.unwrap(),
            Some([4; 32])
        );
        assert!(matches!(
            reopened
                .store_agreement_state(&id, &state(id, 2, [8; 32], true))
                .await,
            Err(Error::DecisionConflict { .. })
        ));
    }

    async fn agreement_state_is_pruned_with_the_history(backend: Backend) {
        let t = TestDb::open(backend).await;
        let pk = pubkey();
        // 20 epochs of 4 slots: a block every epoch, an attestation (e, e+1) every epoch, and
        // an agreement instance for each.
        for e in 0..20u64 {
            assert_eq!(
                sign(&t.db, pk, block(4 * e), root(e as u8)).await,
                Verdict::Allowed
            );
            assert_eq!(
                sign(&t.db, pk, att(e, e + 1), root(100 + e as u8)).await,
                Verdict::Allowed
            );
            let b = instance(pk, Duty::Block { slot: 4 * e });
            let a = instance(
                pk,
                Duty::Attestation {
                    target_epoch: e + 1,
                },
            );
            t.db.store_agreement_state(&b, &state(b, 1, [e as u8; 32], true))
                .await
                .unwrap();
            t.db.store_agreement_state(&a, &state(a, 1, [100 + e as u8; 32], true))
                .await
                .unwrap();
        }
        // A group key without history here (a threshold node keeps its history under its
        // share key): its instances are kept for the same window, counted from its newest.
        let group = pubkey();
        for e in 0..20u64 {
            let b = instance(group, Duty::Block { slot: 4 * e });
            let a = instance(
                group,
                Duty::Attestation {
                    target_epoch: e + 1,
                },
            );
            t.db.store_agreement_state(&b, &state(b, 1, [1; 32], false))
                .await
                .unwrap();
            t.db.store_agreement_state(&a, &state(a, 1, [1; 32], false))
                .await
                .unwrap();
        }
        // A key whose history's watermark is above the window: instances below the
        // watermark (duties it can no longer sign) go too.
        let q = pubkey();
        assert_eq!(sign(&t.db, q, block(100), root(1)).await, Verdict::Allowed);
        let (q90, q100) = (
            instance(q, Duty::Block { slot: 90 }),
            instance(q, Duty::Block { slot: 100 }),
        );
        for id in [q90, q100] {
            t.db.store_agreement_state(&id, &state(id, 1, [1; 32], false))
                .await
                .unwrap();
        }

        t.db.prune(5, 4).await.unwrap();
        // Kept history: blocks at slots 60..=76, attestations with targets 16..=20; the
        // instances likewise, for both keys.
        for key in [pk, group] {
            for e in 0..20u64 {
                let slot = 4 * e;
                let b = instance(key, Duty::Block { slot });
                assert_eq!(
                    t.db.agreement_state(&b).await.unwrap().is_some(),
                    slot >= 60,
                    "block instance at slot {slot}"
                );
                let target = e + 1;
                let a = instance(
                    key,
                    Duty::Attestation {
                        target_epoch: target,
                    },
                );
                assert_eq!(
                    t.db.agreement_state(&a).await.unwrap().is_some(),
                    target >= 16,
                    "attestation instance at target {target}"
                );
            }
        }
        assert_eq!(t.db.agreement_state(&q90).await.unwrap(), None);
        assert!(t.db.agreement_state(&q100).await.unwrap().is_some());
    }
}

/// An interchange document with one validator's entries, as cluster history sync imports a
/// peer's page (`blocks`: `(slot, root)`; `atts`: `(source, target, root)`).
fn peer_history(pk: PublicKeyBytes, blocks: &[(u64, u8)], atts: &[(u64, u64, u8)]) -> String {
    interchange(
        GVR,
        "5",
        serde_json::json!([{
            "pubkey": pk.to_hex(),
            "signed_blocks": blocks.iter().map(|(s, r)| serde_json::json!({
                "slot": s.to_string(),
                "signing_root": root(*r).to_hex(),
            })).collect::<Vec<_>>(),
            "signed_attestations": atts.iter().map(|(s, t, r)| serde_json::json!({
                "source_epoch": s.to_string(),
                "target_epoch": t.to_string(),
                "signing_root": root(*r).to_hex(),
            })).collect::<Vec<_>>(),
        }]),
    )
}

/// The node signs root A at target T; sync merges a peer's record with root B at T; the node
/// is asked for A again → Repeat (it signed A itself); asked for B → refused (412), naming A.
async fn own_signature_repeats_over_a_merged_conflicting_attestation(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    let (a, b) = (1u8, 2u8);
    assert_eq!(sign(&t.db, pk, att(4, 5), root(a)).await, Verdict::Allowed);
    let report =
        t.db.import_interchange(&peer_history(pk, &[], &[(4, 5, b)]))
            .await
            .unwrap();
    assert_eq!(
        report.attestations, 1,
        "the peer's conflicting record is stored"
    );

    assert_eq!(sign(&t.db, pk, att(4, 5), root(a)).await, Verdict::Repeat);
    assert_eq!(
        refused(sign(&t.db, pk, att(4, 5), root(b)).await),
        Refusal::DoubleVote {
            target_epoch: 5,
            existing_source: 4,
            existing_root: root(a),
        }
    );
    // Same root, other source: not this node's vote, refused as before.
    assert!(matches!(
        refused(sign(&t.db, pk, att(3, 5), root(a)).await),
        Refusal::DoubleVote { .. }
    ));
    // A merged record with another source at T does not stop the repeat either.
    t.db.import_interchange(&peer_history(pk, &[], &[(3, 5, a)]))
        .await
        .unwrap();
    assert_eq!(sign(&t.db, pk, att(4, 5), root(a)).await, Verdict::Repeat);
    // Nothing else changed: the history still holds the three votes at T.
    let exported: serde_json::Value =
        serde_json::from_str(&t.db.export_interchange(Some(&[pk])).await.unwrap()).unwrap();
    assert_eq!(
        exported["data"][0]["signed_attestations"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

/// The same for blocks: own A at slot S, merged B at S → A repeats, B is refused.
async fn own_signature_repeats_over_a_merged_conflicting_block(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    assert_eq!(sign(&t.db, pk, block(64), root(1)).await, Verdict::Allowed);
    t.db.import_interchange(&peer_history(pk, &[(64, 2)], &[]))
        .await
        .unwrap();
    assert_eq!(sign(&t.db, pk, block(64), root(1)).await, Verdict::Repeat);
    assert_eq!(
        refused(sign(&t.db, pk, block(64), root(2)).await),
        Refusal::DoubleBlockProposal {
            slot: 64,
            existing_root: root(1),
        }
    );
    // A merged record without a root at S does not stop the own repeat.
    let null_root = interchange(
        GVR,
        "5",
        serde_json::json!([{
            "pubkey": pk.to_hex(),
            "signed_blocks": [{"slot": "64"}],
            "signed_attestations": [],
        }]),
    );
    t.db.import_interchange(&null_root).await.unwrap();
    assert_eq!(sign(&t.db, pk, block(64), root(1)).await, Verdict::Repeat);
}

/// Records this node never signed keep the rule as it was: a repeat only when every record at
/// the slot / target carries the root; once this node signs such a root (a repeat), the record
/// is its own, so a later merged conflict does not stop it repeating.
async fn records_only_merged_keep_the_all_records_repeat_rule(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    // Merged A and B at one target and one slot: neither is a repeat.
    t.db.import_interchange(&peer_history(
        pk,
        &[(10, 1), (10, 2)],
        &[(4, 5, 1), (4, 5, 2)],
    ))
    .await
    .unwrap();
    for r in [1, 2] {
        assert!(matches!(
            refused(sign(&t.db, pk, att(4, 5), root(r)).await),
            Refusal::DoubleVote { .. }
        ));
        assert!(matches!(
            refused(sign(&t.db, pk, block(10), root(r)).await),
            Refusal::DoubleBlockProposal { .. }
        ));
    }

    // Merged A alone: a repeat (every record carries it), which this node then signed...
    t.db.import_interchange(&peer_history(pk, &[(20, 1)], &[(6, 7, 1)]))
        .await
        .unwrap();
    assert_eq!(sign(&t.db, pk, att(6, 7), root(1)).await, Verdict::Repeat);
    assert_eq!(sign(&t.db, pk, block(20), root(1)).await, Verdict::Repeat);
    // ...so a conflicting B merged afterwards does not stop A; B stays refused.
    t.db.import_interchange(&peer_history(pk, &[(20, 2)], &[(6, 7, 2)]))
        .await
        .unwrap();
    assert_eq!(sign(&t.db, pk, att(6, 7), root(1)).await, Verdict::Repeat);
    assert_eq!(sign(&t.db, pk, block(20), root(1)).await, Verdict::Repeat);
    assert!(matches!(
        refused(sign(&t.db, pk, att(6, 7), root(2)).await),
        Refusal::DoubleVote { .. }
    ));
    assert!(matches!(
        refused(sign(&t.db, pk, block(20), root(2)).await),
        Refusal::DoubleBlockProposal { .. }
    ));

    // Merged A never signed here, then merged B: A is refused (this node never signed it).
    t.db.import_interchange(&peer_history(pk, &[(30, 1)], &[(8, 9, 1)]))
        .await
        .unwrap();
    t.db.import_interchange(&peer_history(pk, &[(30, 2)], &[(8, 9, 2)]))
        .await
        .unwrap();
    assert!(matches!(
        refused(sign(&t.db, pk, att(8, 9), root(1)).await),
        Refusal::DoubleVote { .. }
    ));
    assert!(matches!(
        refused(sign(&t.db, pk, block(30), root(1)).await),
        Refusal::DoubleBlockProposal { .. }
    ));
}

/// The batch path (`check_and_record_many`, and PostgreSQL's in-memory batch rules) applies
/// the same own-record rule and marks merged repeats own.
async fn batched_repeats_follow_the_own_record_rule(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    assert_eq!(sign(&t.db, pk, att(1, 2), root(1)).await, Verdict::Allowed);
    assert_eq!(sign(&t.db, pk, block(8), root(1)).await, Verdict::Allowed);
    t.db.import_interchange(&peer_history(
        pk,
        &[(8, 2), (16, 3)],
        &[(1, 2, 2), (2, 3, 3)],
    ))
    .await
    .unwrap();
    let verdicts: Vec<Verdict> =
        t.db.check_and_record_many(&[
            (pk, GVR, att(1, 2), root(1)),
            (pk, GVR, att(1, 2), root(2)),
            (pk, GVR, block(8), root(1)),
            (pk, GVR, block(8), root(2)),
            // Merged-only matches: repeats, twice in one batch (marked own once).
            (pk, GVR, att(2, 3), root(3)),
            (pk, GVR, att(2, 3), root(3)),
            (pk, GVR, block(16), root(3)),
            (pk, GVR, block(16), root(3)),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(verdicts[0], Verdict::Repeat);
    assert!(matches!(
        verdicts[1],
        Verdict::Refused(Refusal::DoubleVote { .. })
    ));
    assert_eq!(verdicts[2], Verdict::Repeat);
    assert!(matches!(
        verdicts[3],
        Verdict::Refused(Refusal::DoubleBlockProposal { .. })
    ));
    assert_eq!(verdicts[4..], vec![Verdict::Repeat; 4]);
    // Those repeats made the records own: a conflicting merge does not stop them.
    t.db.import_interchange(&peer_history(pk, &[(16, 4)], &[(2, 3, 4)]))
        .await
        .unwrap();
    assert_eq!(sign(&t.db, pk, att(2, 3), root(3)).await, Verdict::Repeat);
    assert_eq!(sign(&t.db, pk, block(16), root(3)).await, Verdict::Repeat);
}

/// Rows written before schema version 3 could not tell own from merged; they migrate as own.
async fn records_of_schema_2_migrate_as_own(backend: Backend) {
    let t = TestDb::open(backend).await;
    let pk = pubkey();
    assert_eq!(sign(&t.db, pk, att(4, 5), root(1)).await, Verdict::Allowed);
    assert_eq!(sign(&t.db, pk, block(40), root(1)).await, Verdict::Allowed);
    // A record imported before the upgrade (stored as merged now, as own once migrated).
    t.db.import_interchange(&peer_history(pk, &[(48, 7)], &[]))
        .await
        .unwrap();
    downgrade_schema_3(&t).await;

    let db = SlashingDb::open(&t.url).await.unwrap();
    assert_eq!(
        sql(&t, "SELECT max(version) FROM schema_version").await,
        Some(3)
    );
    assert_eq!(
        sql(
            &t,
            "SELECT CAST(count(*) AS INTEGER) FROM signed_blocks WHERE merged = (1 = 1)"
        )
        .await,
        Some(0)
    );
    db.import_interchange(&peer_history(pk, &[(40, 2), (48, 8)], &[(4, 5, 2)]))
        .await
        .unwrap();
    assert_eq!(sign(&db, pk, att(4, 5), root(1)).await, Verdict::Repeat);
    assert_eq!(sign(&db, pk, block(40), root(1)).await, Verdict::Repeat);
    assert_eq!(sign(&db, pk, block(48), root(7)).await, Verdict::Repeat);
    assert!(matches!(
        refused(sign(&db, pk, att(4, 5), root(2)).await),
        Refusal::DoubleVote { .. }
    ));
}
