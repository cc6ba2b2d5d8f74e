//! The EIP-3076 rules (complete strategy), written once against the [`Store`] trait that both
//! backends implement, plus the import / export / prune procedures.
//!
//! Every function here runs inside a transaction that the caller opened on the store, so the
//! read-check-insert sequence is atomic per validator (the caller has locked its row).
//!
//! Invariants kept in the tables:
//! - a stored root of `None` means "signed, root unknown" and conflicts with every request;
//! - every record has an origin: *own* (this node signed it: recorded by a check) or *merged*
//!   (stored by an interchange import, which is also how cluster history sync merges peers'
//!   records). Only the repeat rule looks at it: a request whose root equals an own record at
//!   its slot / (source, target) is a repeat even when merged records there carry other roots;
//!   otherwise a request is a repeat only when every record there carries its root, as before.
//!   A repeat that matched merged records only marks them own (this node has now signed it);
//! - the low watermark of a validator only rises (import, prune), and is first set by its first
//!   signature;
//! - rows below the low watermark may be deleted (prune) without weakening any rule, because
//!   the watermark then refuses everything they could have refused.

use std::collections::{HashMap, HashSet};

use super::agreement::AgreementKey;
use super::interchange::{self, Hash256, Interchange, SignedAttestation, SignedBlock};
use super::{
    Error, HighWatermark, ImportReport, InterchangeProgress, Refusal, SlashableMessage, Verdict,
};
use crate::bls::{PublicKeyBytes, SigningRoot};

/// A stored signing root: `None` when the message was imported without one.
pub(crate) type Root = Option<[u8; 32]>;

/// A stored block or attestation's root and whether this node signed it (`true`: own) or it
/// was merged (`false`: interchange import or cluster history sync).
pub(crate) type Record = (Root, bool);

/// Row id of a validator.
pub(crate) type ValidatorId = i64;

/// A validator's low watermarks (floors); `None` until first set.
///
/// `slot`/`source`/`target` are the floors the rules apply. An import may lower them to the
/// minimum of everything now stored (EIP-3076 complete strategy: the union of the histories is
/// known), but never below the `pruned_*` floors, under which rows were deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watermark {
    /// Block slots at or below this are refused unless they repeat a stored block.
    pub(crate) slot: Option<u64>,
    /// Attestation source epochs below this are refused.
    pub(crate) source: Option<u64>,
    /// Attestation target epochs at or below this are refused unless they repeat.
    pub(crate) target: Option<u64>,
    /// Highest slot floor a prune set (rows below it are gone).
    pub(crate) pruned_slot: Option<u64>,
    /// Highest source floor a prune set.
    pub(crate) pruned_source: Option<u64>,
    /// Highest target floor a prune set.
    pub(crate) pruned_target: Option<u64>,
}

impl Watermark {
    /// From the six nullable columns, in declaration order.
    pub(crate) fn from_db(v: [Option<i64>; 6]) -> Result<Self, Error> {
        let f = |x: Option<i64>| x.map(from_db).transpose();
        Ok(Self {
            slot: f(v[0])?,
            source: f(v[1])?,
            target: f(v[2])?,
            pruned_slot: f(v[3])?,
            pruned_source: f(v[4])?,
            pruned_target: f(v[5])?,
        })
    }

    /// To the six nullable columns, in declaration order.
    pub(crate) fn to_db(self) -> Result<[Option<i64>; 6], Error> {
        let f = |x: Option<u64>| x.map(to_db).transpose();
        Ok([
            f(self.slot)?,
            f(self.source)?,
            f(self.target)?,
            f(self.pruned_slot)?,
            f(self.pruned_source)?,
            f(self.pruned_target)?,
        ])
    }
}

/// The floor after importing entries whose minimum is `imported`: the lower of the two (both
/// histories are now stored), but never below what pruning deleted.
fn merged_floor(current: Option<u64>, imported: u64, pruned: Option<u64>) -> u64 {
    let merged = current.map_or(imported, |c| c.min(imported));
    pruned.map_or(merged, |p| merged.max(p))
}

/// The stored facts an attestation check needs.
pub(crate) struct AttestationContext {
    /// `(source, root, own)` of the votes at the requested target.
    pub(crate) at_target: Vec<(u64, Root, bool)>,
    /// The validator's watermarks.
    pub(crate) watermark: Watermark,
    /// A stored vote surrounding the request.
    pub(crate) surrounding: Option<(u64, u64)>,
    /// A stored vote the request surrounds.
    pub(crate) surrounded: Option<(u64, u64)>,
}

/// Primitive operations a backend offers. `begin`/`commit`/`rollback` bracket a transaction;
/// `register` and `insert_gvr` are idempotent and may also run outside one.
pub(crate) trait Store {
    async fn begin(&mut self) -> Result<(), Error>;
    async fn commit(&mut self) -> Result<(), Error>;
    async fn rollback(&mut self) -> Result<(), Error>;
    async fn ping(&mut self) -> Result<(), Error>;
    /// Inserts the validators that are missing (in the given order).
    async fn register(&mut self, pubkeys: &[PublicKeyBytes]) -> Result<(), Error>;
    /// Locks the rows of these (registered) validators until the end of the transaction, in
    /// ascending id order, and returns `(id, enabled)` for each.
    async fn lock_validators(
        &mut self,
        pubkeys: &[PublicKeyBytes],
    ) -> Result<HashMap<PublicKeyBytes, (ValidatorId, bool)>, Error>;
    async fn all_validators(&mut self) -> Result<Vec<(PublicKeyBytes, ValidatorId)>, Error>;
    async fn set_enabled(&mut self, id: ValidatorId, enabled: bool) -> Result<(), Error>;
    async fn gvr(&mut self) -> Result<Option<[u8; 32]>, Error>;
    /// Stores the genesis validators root unless one is already stored.
    async fn insert_gvr(&mut self, gvr: [u8; 32]) -> Result<(), Error>;
    /// The global high watermark, if set.
    async fn high_watermark(&mut self) -> Result<Option<HighWatermark>, Error>;
    /// Sets (`Some`) or removes (`None`) the global high watermark.
    async fn set_high_watermark(&mut self, hw: Option<HighWatermark>) -> Result<(), Error>;
    async fn watermark(&mut self, id: ValidatorId) -> Result<Watermark, Error>;
    async fn set_watermark(&mut self, id: ValidatorId, wm: Watermark) -> Result<(), Error>;
    /// `(root, own)` of every block at `slot`.
    async fn block_roots(&mut self, id: ValidatorId, slot: u64) -> Result<Vec<Record>, Error>;
    /// Records a block, as this node's own (`own`) or merged.
    async fn insert_block(
        &mut self,
        id: ValidatorId,
        slot: u64,
        root: Root,
        own: bool,
    ) -> Result<(), Error>;
    /// Marks the merged blocks at `slot` with `root` as this node's own.
    async fn mark_own_block(
        &mut self,
        id: ValidatorId,
        slot: u64,
        root: [u8; 32],
    ) -> Result<(), Error>;
    /// `(source, root, own)` of every attestation at `target`.
    async fn attestations_at(
        &mut self,
        id: ValidatorId,
        target: u64,
    ) -> Result<Vec<(u64, Root, bool)>, Error>;
    /// An attestation `(s, t)` with `s < source && t > target`, if any.
    async fn surrounding(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
    ) -> Result<Option<(u64, u64)>, Error>;
    /// An attestation `(s, t)` with `s > source && t < target`, if any.
    async fn surrounded(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
    ) -> Result<Option<(u64, u64)>, Error>;
    /// Records an attestation, as this node's own (`own`) or merged.
    async fn insert_attestation(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
        root: Root,
        own: bool,
    ) -> Result<(), Error>;
    /// Marks the merged attestations `source → target` with `root` as this node's own.
    async fn mark_own_attestation(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
        root: [u8; 32],
    ) -> Result<(), Error>;
    /// Everything a block check reads: the records at `slot` and the watermark.
    async fn block_context(
        &mut self,
        id: ValidatorId,
        slot: u64,
    ) -> Result<(Vec<Record>, Watermark), Error> {
        Ok((self.block_roots(id, slot).await?, self.watermark(id).await?))
    }
    /// Everything an attestation check reads (see [`AttestationContext`]).
    async fn attestation_context(
        &mut self,
        id: ValidatorId,
        source: u64,
        target: u64,
    ) -> Result<AttestationContext, Error> {
        Ok(AttestationContext {
            at_target: self.attestations_at(id, target).await?,
            watermark: self.watermark(id).await?,
            surrounding: self.surrounding(id, source, target).await?,
            surrounded: self.surrounded(id, source, target).await?,
        })
    }
    /// Checks and records `candidates` (enabled, locked validators) in order, exactly as if
    /// one by one: later candidates see what earlier ones recorded. The default runs the rules
    /// once per candidate; backends with network round trips override it to read and write
    /// the whole batch in a fixed number of statements (see [`decide_batch`]).
    async fn check_many(&mut self, candidates: &[Candidate]) -> Result<Vec<Verdict>, Error>
    where
        Self: Sized,
    {
        let mut verdicts = Vec::with_capacity(candidates.len());
        for c in candidates {
            verdicts.push(check(self, c.id, c.msg, c.root).await?);
        }
        Ok(verdicts)
    }
    /// Every block, by slot.
    async fn blocks(&mut self, id: ValidatorId) -> Result<Vec<(u64, Root)>, Error>;
    /// Every attestation `(source, target, root)`, by target.
    async fn attestations(&mut self, id: ValidatorId) -> Result<Vec<(u64, u64, Root)>, Error>;
    async fn delete_blocks_below(&mut self, id: ValidatorId, slot: u64) -> Result<(), Error>;
    async fn delete_attestations_below(
        &mut self,
        id: ValidatorId,
        target: u64,
    ) -> Result<(), Error>;
    /// The decided root and serialized state of an agreement instance, if stored.
    async fn agreement_row(
        &mut self,
        key: &AgreementKey,
    ) -> Result<Option<(Option<[u8; 32]>, String)>, Error>;
    /// Inserts or replaces an agreement instance's row.
    async fn put_agreement_row(
        &mut self,
        key: &AgreementKey,
        decided: Option<[u8; 32]>,
        state: &str,
    ) -> Result<(), Error>;
    /// The decided root of an agreement instance (`None`: not stored, or not decided).
    async fn agreement_decided_root(
        &mut self,
        key: &AgreementKey,
    ) -> Result<Option<[u8; 32]>, Error>;
    /// `(validator key, duty kind, highest position)` of every key and duty kind with
    /// agreement rows.
    async fn agreement_newest(&mut self) -> Result<Vec<(PublicKeyBytes, i64, u64)>, Error>;
    /// Deletes a validator's agreement rows of duty kind `duty` whose position is below
    /// `floor`.
    async fn delete_agreement_below(
        &mut self,
        pubkey: &PublicKeyBytes,
        duty: i64,
        floor: u64,
    ) -> Result<(), Error>;
}

/// Converts a `u64` to the signed 64-bit integer both databases store.
pub(crate) fn to_db(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::OutOfRange { value: v })
}

/// Converts a stored integer back.
pub(crate) fn from_db(v: i64) -> Result<u64, Error> {
    u64::try_from(v).map_err(|_| Error::Corrupt(format!("negative slot or epoch {v}")))
}

/// Converts a stored root blob back.
pub(crate) fn root_from_db(v: Option<Vec<u8>>) -> Result<Root, Error> {
    v.map(|b| {
        <[u8; 32]>::try_from(b.as_slice())
            .map_err(|_| Error::Corrupt(format!("signing root of {} bytes", b.len())))
    })
    .transpose()
}

/// The refusal of `msg` under the high watermark `hw` (Web3Signer's rule): a block at a slot
/// at or above `hw.slot`, an attestation whose source or target epoch is at or above
/// `hw.epoch`. Applies before any other rule, so even an identical re-sign is refused.
pub(crate) fn high_watermark_refusal(
    msg: SlashableMessage,
    hw: Option<HighWatermark>,
) -> Option<Refusal> {
    let hw = hw?;
    match msg {
        SlashableMessage::Block { slot } => {
            (slot >= hw.slot).then_some(Refusal::BlockAtHighWatermark {
                slot,
                high_watermark: hw,
            })
        }
        SlashableMessage::Attestation {
            source_epoch,
            target_epoch,
        } => (source_epoch >= hw.epoch || target_epoch >= hw.epoch).then_some(
            Refusal::AttestationAtHighWatermark {
                source_epoch,
                target_epoch,
                high_watermark: hw,
            },
        ),
    }
}

/// Converts a stored `(epoch, slot)` high watermark back.
pub(crate) fn high_watermark_from_db(epoch: i64, slot: i64) -> Result<HighWatermark, Error> {
    Ok(HighWatermark {
        epoch: from_db(epoch)?,
        slot: from_db(slot)?,
    })
}

/// Checks one message of an enabled validator and records it when allowed.
pub(crate) async fn check<S: Store>(
    store: &mut S,
    id: ValidatorId,
    msg: SlashableMessage,
    root: SigningRoot,
) -> Result<Verdict, Error> {
    match msg {
        SlashableMessage::Block { slot } => check_block(store, id, slot, root).await,
        SlashableMessage::Attestation {
            source_epoch,
            target_epoch,
        } => check_attestation(store, id, source_epoch, target_epoch, root).await,
    }
}

async fn check_block<S: Store>(
    store: &mut S,
    id: ValidatorId,
    slot: u64,
    root: SigningRoot,
) -> Result<Verdict, Error> {
    to_db(slot)?;
    let (existing, mut wm) = store.block_context(id, slot).await?;
    let verdict = block_verdict(slot, root, &existing, &wm);
    if verdict == Verdict::Allowed {
        store.insert_block(id, slot, Some(root.0), true).await?;
        if wm.slot.is_none() {
            wm.slot = Some(slot);
            store.set_watermark(id, wm).await?;
        }
    } else if verdict == Verdict::Repeat && !signed_here(&existing, |r| *r == Some(root.0)) {
        store.mark_own_block(id, slot, root.0).await?;
    }
    Ok(verdict)
}

/// Whether one of `records` is this node's own and matches.
fn signed_here<R>(records: &[(R, bool)], matches: impl Fn(&R) -> bool) -> bool {
    records.iter().any(|(r, own)| *own && matches(r))
}

/// The repeat rule over the records at one slot / target: a repeat when some own record
/// matches and every own record matches (merged records with other roots aside), or when
/// every record, own or merged, matches.
fn is_repeat<R>(records: &[(R, bool)], matches: impl Fn(&R) -> bool) -> bool {
    let own_repeat = signed_here(records, &matches)
        && records
            .iter()
            .filter(|(_, own)| *own)
            .all(|(r, _)| matches(r));
    own_repeat || records.iter().all(|(r, _)| matches(r))
}

/// The verdict on a block at `slot` given the records stored at that slot and the watermarks;
/// `Allowed` means it is to be recorded.
fn block_verdict(slot: u64, root: SigningRoot, existing: &[Record], wm: &Watermark) -> Verdict {
    if !existing.is_empty() {
        if is_repeat(existing, |r| *r == Some(root.0)) {
            return Verdict::Repeat;
        }
        let refusal = match existing
            .iter()
            .map(|(r, _)| r)
            .find(|r| **r != Some(root.0))
        {
            Some(Some(other)) => Refusal::DoubleBlockProposal {
                slot,
                existing_root: SigningRoot(*other),
            },
            _ => Refusal::NullRootAtSlot { slot },
        };
        return Verdict::Refused(refusal);
    }
    if let Some(low) = wm.slot {
        if slot <= low {
            return Verdict::Refused(Refusal::BlockSlotBelowWatermark {
                slot,
                watermark: low,
            });
        }
    }
    Verdict::Allowed
}

/// The refusal of an attestation whose source is after its target (checked before any read).
fn source_after_target(source: u64, target: u64) -> Option<Verdict> {
    (source > target).then_some(Verdict::Refused(Refusal::SourceGreaterThanTarget {
        source_epoch: source,
        target_epoch: target,
    }))
}

async fn check_attestation<S: Store>(
    store: &mut S,
    id: ValidatorId,
    source: u64,
    target: u64,
    root: SigningRoot,
) -> Result<Verdict, Error> {
    if let Some(refused) = source_after_target(source, target) {
        return Ok(refused);
    }
    to_db(target)?;
    let ctx = store.attestation_context(id, source, target).await?;
    let verdict = attestation_verdict(source, target, root, &ctx);
    if verdict == Verdict::Allowed {
        store
            .insert_attestation(id, source, target, Some(root.0), true)
            .await?;
        let mut wm = ctx.watermark;
        if wm.source.is_none() || wm.target.is_none() {
            wm.source = wm.source.or(Some(source));
            wm.target = wm.target.or(Some(target));
            store.set_watermark(id, wm).await?;
        }
    } else if verdict == Verdict::Repeat
        && !signed_here(&vote_records(&ctx.at_target), |v| {
            *v == (source, Some(root.0))
        })
    {
        store
            .mark_own_attestation(id, source, target, root.0)
            .await?;
    }
    Ok(verdict)
}

/// The votes at a target as `((source, root), own)` records.
fn vote_records(at_target: &[(u64, Root, bool)]) -> Vec<((u64, Root), bool)> {
    at_target.iter().map(|&(s, r, own)| ((s, r), own)).collect()
}

/// The verdict on an attestation `source → target` (with `source <= target`) given the stored
/// facts; `Allowed` means it is to be recorded.
fn attestation_verdict(
    source: u64,
    target: u64,
    root: SigningRoot,
    ctx: &AttestationContext,
) -> Verdict {
    let existing = vote_records(&ctx.at_target);
    if !existing.is_empty() {
        if is_repeat(&existing, |v| *v == (source, Some(root.0))) {
            return Verdict::Repeat;
        }
        let refusal = match existing
            .iter()
            .map(|(v, _)| v)
            .find(|(s, r)| *s != source || *r != Some(root.0))
        {
            Some((_, None)) | None => Refusal::NullRootAtTarget {
                target_epoch: target,
            },
            Some((existing_source, Some(other))) => Refusal::DoubleVote {
                target_epoch: target,
                existing_source: *existing_source,
                existing_root: SigningRoot(*other),
            },
        };
        return Verdict::Refused(refusal);
    }
    let wm = &ctx.watermark;
    if let Some(low) = wm.source {
        if source < low {
            return Verdict::Refused(Refusal::SourceBelowWatermark {
                source_epoch: source,
                watermark: low,
            });
        }
    }
    if let Some(low) = wm.target {
        if target <= low {
            return Verdict::Refused(Refusal::TargetBelowWatermark {
                target_epoch: target,
                watermark: low,
            });
        }
    }
    if let Some((existing_source, existing_target)) = ctx.surrounding {
        return Verdict::Refused(Refusal::SurroundedVote {
            source_epoch: source,
            target_epoch: target,
            existing_source,
            existing_target,
        });
    }
    if let Some((existing_source, existing_target)) = ctx.surrounded {
        return Verdict::Refused(Refusal::SurroundingVote {
            source_epoch: source,
            target_epoch: target,
            existing_source,
            existing_target,
        });
    }
    Verdict::Allowed
}

/// One check of a batch: an enabled validator's message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    /// The (locked) validator.
    pub(crate) id: ValidatorId,
    /// What it asks to sign.
    pub(crate) msg: SlashableMessage,
    /// The signing root.
    pub(crate) root: SigningRoot,
}

/// What a batch read from the database for its candidates (indexed by position in the batch),
/// before any of them was recorded.
#[derive(Debug, Default)]
pub(crate) struct BatchFacts {
    /// Watermarks of the batch's validators (absent: none set).
    pub(crate) watermarks: HashMap<ValidatorId, Watermark>,
    /// Block candidates: the records stored at their slot.
    pub(crate) block_roots: HashMap<usize, Vec<Record>>,
    /// Attestation candidates: `(source, root, own)` of the votes stored at their target.
    pub(crate) at_target: HashMap<usize, Vec<(u64, Root, bool)>>,
    /// Attestation candidates: a stored vote surrounding them.
    pub(crate) surrounding: HashMap<usize, (u64, u64)>,
    /// Attestation candidates: a stored vote they surround.
    pub(crate) surrounded: HashMap<usize, (u64, u64)>,
}

/// The rows a batch records.
#[derive(Debug, Default)]
pub(crate) struct BatchWrites {
    /// New blocks.
    pub(crate) blocks: Vec<(ValidatorId, u64, SigningRoot)>,
    /// New attestations `(id, source, target, root)`.
    pub(crate) attestations: Vec<(ValidatorId, u64, u64, SigningRoot)>,
    /// Watermarks first set by this batch (final values, one per validator).
    pub(crate) watermarks: Vec<(ValidatorId, Watermark)>,
    /// Merged blocks that a repeat marks own `(id, slot, root)`, each once.
    pub(crate) own_blocks: Vec<(ValidatorId, u64, SigningRoot)>,
    /// Merged attestations that a repeat marks own `(id, source, target, root)`, each once.
    pub(crate) own_attestations: Vec<(ValidatorId, u64, u64, SigningRoot)>,
}

/// Converts the candidates' epochs and slots for the database, as the sequential path does
/// before its reads: blocks `slot`; attestations with `source <= target`, both epochs.
///
/// # Errors
/// [`Error::OutOfRange`] as the sequential path would return it.
pub(crate) fn check_ranges(candidates: &[Candidate]) -> Result<(), Error> {
    for c in candidates {
        match c.msg {
            SlashableMessage::Block { slot } => {
                to_db(slot)?;
            }
            SlashableMessage::Attestation {
                source_epoch,
                target_epoch,
            } => {
                if source_epoch <= target_epoch {
                    to_db(target_epoch)?;
                    to_db(source_epoch)?;
                }
            }
        }
    }
    Ok(())
}

/// Whether candidate `c` needs attestation facts (it is an attestation that passes the
/// source/target order check, which needs no read).
pub(crate) fn needs_attestation_facts(c: &Candidate) -> bool {
    matches!(c.msg, SlashableMessage::Attestation { source_epoch, target_epoch } if source_epoch <= target_epoch)
}

/// Decides a whole batch in memory from `facts` (read before the batch recorded anything),
/// exactly as if its candidates were checked and recorded one by one in order: each
/// candidate also sees the rows and watermarks that earlier allowed candidates of the batch
/// recorded. Returns the verdicts (in order) and the rows to record.
pub(crate) fn decide_batch(
    candidates: &[Candidate],
    mut facts: BatchFacts,
) -> (Vec<Verdict>, BatchWrites) {
    let mut writes = BatchWrites::default();
    let mut first_set: Vec<ValidatorId> = Vec::new();
    let mut new_blocks: HashMap<(ValidatorId, u64), Vec<Record>> = HashMap::new();
    let mut new_atts: HashMap<ValidatorId, Vec<(u64, u64, Root)>> = HashMap::new();
    // A mark changes no later verdict of the batch (it happens only where every record
    // already matches), so later candidates need not see it; it is only written once.
    let mut marked_blocks: HashSet<(ValidatorId, u64, [u8; 32])> = HashSet::new();
    let mut marked_atts: HashSet<(ValidatorId, u64, u64, [u8; 32])> = HashSet::new();
    let mut verdicts = Vec::with_capacity(candidates.len());
    for (i, c) in candidates.iter().enumerate() {
        let wm = facts.watermarks.entry(c.id).or_default();
        let verdict = match c.msg {
            SlashableMessage::Block { slot } => {
                let mut existing = facts.block_roots.remove(&i).unwrap_or_default();
                if let Some(recorded) = new_blocks.get(&(c.id, slot)) {
                    existing.extend_from_slice(recorded);
                }
                let v = block_verdict(slot, c.root, &existing, wm);
                if v == Verdict::Allowed {
                    writes.blocks.push((c.id, slot, c.root));
                    new_blocks
                        .entry((c.id, slot))
                        .or_default()
                        .push((Some(c.root.0), true));
                    if wm.slot.is_none() {
                        wm.slot = Some(slot);
                        first_set.push(c.id);
                    }
                } else if v == Verdict::Repeat
                    && !signed_here(&existing, |r| *r == Some(c.root.0))
                    && marked_blocks.insert((c.id, slot, c.root.0))
                {
                    writes.own_blocks.push((c.id, slot, c.root));
                }
                v
            }
            SlashableMessage::Attestation {
                source_epoch: source,
                target_epoch: target,
            } => {
                if let Some(refused) = source_after_target(source, target) {
                    verdicts.push(refused);
                    continue;
                }
                let recorded = new_atts.get(&c.id).map(Vec::as_slice).unwrap_or_default();
                let mut at_target = facts.at_target.remove(&i).unwrap_or_default();
                at_target.extend(
                    recorded
                        .iter()
                        .filter(|(_, t, _)| *t == target)
                        .map(|(s, _, r)| (*s, *r, true)),
                );
                let surrounding = facts.surrounding.get(&i).copied().or_else(|| {
                    recorded
                        .iter()
                        .find(|(s, t, _)| *s < source && *t > target)
                        .map(|(s, t, _)| (*s, *t))
                });
                let surrounded = facts.surrounded.get(&i).copied().or_else(|| {
                    recorded
                        .iter()
                        .find(|(s, t, _)| *s > source && *t < target)
                        .map(|(s, t, _)| (*s, *t))
                });
                let ctx = AttestationContext {
                    at_target,
                    watermark: *wm,
                    surrounding,
                    surrounded,
                };
                let v = attestation_verdict(source, target, c.root, &ctx);
                if v == Verdict::Repeat
                    && !signed_here(&vote_records(&ctx.at_target), |v| {
                        *v == (source, Some(c.root.0))
                    })
                    && marked_atts.insert((c.id, source, target, c.root.0))
                {
                    writes.own_attestations.push((c.id, source, target, c.root));
                }
                if v == Verdict::Allowed {
                    writes.attestations.push((c.id, source, target, c.root));
                    new_atts
                        .entry(c.id)
                        .or_default()
                        .push((source, target, Some(c.root.0)));
                    if wm.source.is_none() || wm.target.is_none() {
                        wm.source = wm.source.or(Some(source));
                        wm.target = wm.target.or(Some(target));
                        first_set.push(c.id);
                    }
                }
                v
            }
        };
        verdicts.push(verdict);
    }
    first_set.sort_unstable();
    first_set.dedup();
    writes.watermarks = first_set
        .into_iter()
        .map(|id| (id, facts.watermarks.get(&id).copied().unwrap_or_default()))
        .collect();
    (verdicts, writes)
}

/// Parses and checks an interchange document before any database work.
pub(crate) fn parse_interchange(json: &str) -> Result<Interchange, Error> {
    let doc: Interchange =
        serde_json::from_str(json).map_err(|e| Error::InvalidInterchange(e.to_string()))?;
    if doc.metadata.interchange_format_version != interchange::FORMAT_VERSION {
        return Err(Error::UnsupportedInterchangeVersion(
            doc.metadata.interchange_format_version,
        ));
    }
    for v in &doc.data {
        for b in &v.signed_blocks {
            to_db(b.slot)?;
        }
        for a in &v.signed_attestations {
            to_db(a.source_epoch)?;
            to_db(a.target_epoch)?;
        }
    }
    Ok(doc)
}

/// Imports a parsed document inside the caller's transaction; what it stores is *merged*
/// (not signed by this node; cluster history sync merges peers' records this way too).
/// Entries already stored identically (own or merged) are skipped; everything else (conflicting roots, absent roots, even slashable
/// or invalid entries) is kept, so the rules refuse anything that could conflict with it.
/// Low watermarks become the minimum of the stored and imported slots / sources / targets
/// (never below a prune floor). Imported validators are (re-)enabled.
/// `progress` (whose totals the caller set) advances after each validator entry.
pub(crate) async fn import<S: Store>(
    store: &mut S,
    doc: &Interchange,
    progress: Option<&InterchangeProgress>,
) -> Result<ImportReport, Error> {
    let file_gvr = doc.metadata.genesis_validators_root.0;
    match store.gvr().await? {
        Some(db) if db != file_gvr => {
            return Err(Error::GenesisValidatorsRootMismatch {
                database: Hash256(db),
                interchange: Hash256(file_gvr),
            })
        }
        Some(_) => {}
        None => store.insert_gvr(file_gvr).await?,
    }
    let mut pubkeys: Vec<PublicKeyBytes> = doc.data.iter().map(|v| v.pubkey).collect();
    pubkeys.sort_unstable();
    pubkeys.dedup();
    store.register(&pubkeys).await?;
    let ids = store.lock_validators(&pubkeys).await?;
    let mut report = ImportReport {
        validators: pubkeys.len(),
        ..ImportReport::default()
    };
    for v in &doc.data {
        let &(id, enabled) = ids.get(&v.pubkey).ok_or_else(|| {
            Error::Corrupt(format!("validator {} vanished during import", v.pubkey))
        })?;
        if !enabled {
            store.set_enabled(id, true).await?;
        }
        let mut wm = store.watermark(id).await?;
        let before = wm;
        for b in &v.signed_blocks {
            let root = b.signing_root.map(|h| h.0);
            let existing = store.block_roots(id, b.slot).await?;
            if existing.iter().any(|(r, _)| *r == root) {
                report.skipped += 1;
            } else {
                store.insert_block(id, b.slot, root, false).await?;
                report.blocks += 1;
            }
        }
        if let Some(min) = v.signed_blocks.iter().map(|b| b.slot).min() {
            wm.slot = Some(merged_floor(wm.slot, min, wm.pruned_slot));
        }
        for a in &v.signed_attestations {
            let root = a.signing_root.map(|h| h.0);
            let existing = store.attestations_at(id, a.target_epoch).await?;
            if existing
                .iter()
                .any(|(s, r, _)| *s == a.source_epoch && *r == root)
            {
                report.skipped += 1;
            } else {
                store
                    .insert_attestation(id, a.source_epoch, a.target_epoch, root, false)
                    .await?;
                report.attestations += 1;
            }
        }
        if let Some(min) = v.signed_attestations.iter().map(|a| a.source_epoch).min() {
            wm.source = Some(merged_floor(wm.source, min, wm.pruned_source));
        }
        if let Some(min) = v.signed_attestations.iter().map(|a| a.target_epoch).min() {
            wm.target = Some(merged_floor(wm.target, min, wm.pruned_target));
        }
        if wm != before {
            store.set_watermark(id, wm).await?;
        }
        if let Some(p) = progress {
            p.records
                .inc((v.signed_blocks.len() + v.signed_attestations.len()) as u64);
            p.validators.inc(1);
        }
    }
    Ok(report)
}

/// Builds the export document inside the caller's transaction; `progress` gets the number of
/// validators to export as its total, then counts validators and records as they are read.
pub(crate) async fn export<S: Store>(
    store: &mut S,
    filter: Option<&[PublicKeyBytes]>,
    progress: Option<&InterchangeProgress>,
) -> Result<Interchange, Error> {
    let gvr = store.gvr().await?.ok_or(Error::NoGenesisValidatorsRoot)?;
    let mut validators = store.all_validators().await?;
    if let Some(filter) = filter {
        validators.retain(|(pk, _)| filter.contains(pk));
    }
    validators.sort_unstable_by_key(|(pk, _)| *pk);
    if let Some(p) = progress {
        p.validators.add_total(validators.len() as u64);
    }
    let mut data = Vec::with_capacity(validators.len());
    for (pubkey, id) in validators {
        let signed_blocks = store
            .blocks(id)
            .await?
            .into_iter()
            .map(|(slot, root)| SignedBlock {
                slot,
                signing_root: root.map(Hash256),
            })
            .collect::<Vec<_>>();
        let signed_attestations = store
            .attestations(id)
            .await?
            .into_iter()
            .map(|(source_epoch, target_epoch, root)| SignedAttestation {
                source_epoch,
                target_epoch,
                signing_root: root.map(Hash256),
            })
            .collect::<Vec<_>>();
        if let Some(p) = progress {
            p.records
                .inc((signed_blocks.len() + signed_attestations.len()) as u64);
            p.validators.inc(1);
        }
        data.push(interchange::ValidatorData {
            pubkey,
            signed_blocks,
            signed_attestations,
        });
    }
    Ok(Interchange {
        metadata: interchange::Metadata {
            interchange_format_version: interchange::FORMAT_VERSION.to_owned(),
            genesis_validators_root: Hash256(gvr),
        },
        data,
    })
}

/// Prunes one (locked) validator: keeps the blocks of the last `epochs_to_keep` epochs and the
/// attestations whose target lies in the last `epochs_to_keep` epochs of its history, raising
/// the low watermarks first so no rule weakens. Returns the number of rows deleted.
pub(crate) async fn prune_validator<S: Store>(
    store: &mut S,
    id: ValidatorId,
    epochs_to_keep: u64,
    slots_per_epoch: u64,
) -> Result<u64, Error> {
    let keep = epochs_to_keep.max(1);
    let mut wm = store.watermark(id).await?;
    let before = wm;
    let mut deleted = 0u64;

    let blocks = store.blocks(id).await?;
    if let Some(&(max, _)) = blocks.last() {
        let threshold = max
            .saturating_sub(keep.saturating_mul(slots_per_epoch.max(1)))
            .saturating_add(1);
        // The lowest kept block: the nearest existing entry at/above the threshold.
        if let Some(&(low, _)) = blocks.iter().find(|(s, _)| *s >= threshold) {
            if wm.slot.is_none_or(|w| w < low) {
                wm.slot = Some(low);
            }
            let floor = wm.slot.unwrap_or(low);
            wm.pruned_slot = Some(floor);
            deleted += blocks.iter().filter(|(s, _)| *s < floor).count() as u64;
        }
    }

    let atts = store.attestations(id).await?;
    if let Some(max) = atts.iter().map(|(_, t, _)| *t).max() {
        let threshold = max.saturating_sub(keep).saturating_add(1);
        if let Some(low) = atts
            .iter()
            .map(|(_, t, _)| *t)
            .filter(|t| *t >= threshold)
            .min()
        {
            if wm.target.is_none_or(|w| w < low) {
                wm.target = Some(low);
            }
            let floor = wm.target.unwrap_or(low);
            // A new vote (s, t) with t >= floor could only surround a deleted one (s', t'),
            // t' < floor, if s < s': so the source floor must cover every deleted source.
            let removed: Vec<_> = atts.iter().filter(|(_, t, _)| *t < floor).collect();
            if let Some(max_source) = removed.iter().map(|(s, _, _)| *s).max() {
                if wm.source.is_none_or(|w| w < max_source) {
                    wm.source = Some(max_source);
                }
            }
            if wm.source.is_none() {
                wm.source = atts.iter().map(|(s, _, _)| *s).min();
            }
            wm.pruned_source = wm.source;
            wm.pruned_target = Some(floor);
            deleted += removed.len() as u64;
        }
    }

    if wm != before {
        store.set_watermark(id, wm).await?;
    }
    if let Some(floor) = wm.slot {
        store.delete_blocks_below(id, floor).await?;
    }
    if let Some(floor) = wm.target {
        store.delete_attestations_below(id, floor).await?;
    }
    Ok(deleted)
}
