//! Durable state of agreement instances (one per validator and slashable duty), stored next to
//! the slashing history so that a restarted node never votes differently in an instance it
//! already voted in, and never forgets a decision.
//!
//! A row is keyed by (validator group public key, duty kind, slot or target epoch) and holds the
//! decided root (NULL until decided) and the serialized [`Persisted`] state (JSON).
//!
//! Pruning: the instances of a validator key before the last `epochs_to_keep` epochs of its
//! instances (blocks: `epochs_to_keep * slots_per_epoch` slots below its newest block instance,
//! as the history's prune counts), and, when the key also has a history in this database,
//! those below its low watermarks (duties it can no longer sign). A node's history is kept
//! under its share key while instances are keyed by the group key, so the first rule is what
//! bounds a threshold node's table.
//!
//! Invariant: a stored decision never changes. Storing a state whose decision has another root
//! fails with [`Error::DecisionConflict`]; storing a state without a decision (or with the same
//! root) over a decided one keeps the stored decision as it was.

use super::rules::{to_db, Store, ValidatorId};
use super::Error;
use crate::agreement::{Duty, InstanceId, Persisted, Root};
use crate::bls::PublicKeyBytes;

/// Duty kind column value of a block instance (position = slot).
pub(crate) const DUTY_BLOCK: i64 = 0;
/// Duty kind column value of an attestation instance (position = target epoch).
pub(crate) const DUTY_ATTESTATION: i64 = 1;

/// The primary key of an instance's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AgreementKey {
    /// The validator's group public key.
    pub(crate) pubkey: PublicKeyBytes,
    /// [`DUTY_BLOCK`] or [`DUTY_ATTESTATION`].
    pub(crate) duty: i64,
    /// Slot (blocks) or target epoch (attestations).
    pub(crate) position: i64,
}

impl AgreementKey {
    /// The key of `id`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a slot or epoch above 2^63-1.
    pub(crate) fn of(id: &InstanceId) -> Result<Self, Error> {
        let (duty, position) = match id.duty {
            Duty::Block { slot } => (DUTY_BLOCK, to_db(slot)?),
            Duty::Attestation { target_epoch } => (DUTY_ATTESTATION, to_db(target_epoch)?),
        };
        Ok(Self {
            pubkey: id.validator,
            duty,
            position,
        })
    }
}

/// Human form of an instance for messages: `validator 0x… block slot S` / `… attestation
/// target epoch E`.
pub(crate) fn describe(id: &InstanceId) -> String {
    match id.duty {
        Duty::Block { slot } => format!("validator {} block slot {slot}", id.validator),
        Duty::Attestation { target_epoch } => {
            format!(
                "validator {} attestation target epoch {target_epoch}",
                id.validator
            )
        }
    }
}

fn parse_state(json: &str) -> Result<Persisted, Error> {
    serde_json::from_str(json)
        .map_err(|e| Error::Corrupt(format!("stored agreement state is not valid: {e}")))
}

/// The stored state of `id` (inside the caller's transaction, or alone).
pub(crate) async fn load<S: Store>(
    store: &mut S,
    id: &InstanceId,
) -> Result<Option<Persisted>, Error> {
    let key = AgreementKey::of(id)?;
    match store.agreement_row(&key).await? {
        None => Ok(None),
        Some((decided, json)) => {
            let state = parse_state(&json)?;
            if state.decision.as_ref().map(|d| d.root) != decided {
                return Err(Error::Corrupt(format!(
                    "agreement state of {} disagrees with its decided root column",
                    describe(id)
                )));
            }
            Ok(Some(state))
        }
    }
}

/// Stores `state` for `id` inside the caller's transaction, keeping a stored decision (see the
/// module's invariant).
pub(crate) async fn store<S: Store>(
    store: &mut S,
    id: &InstanceId,
    state: &Persisted,
) -> Result<(), Error> {
    let key = AgreementKey::of(id)?;
    let mut state = state.clone();
    if let Some(stored) = load(store, id).await? {
        if let Some(kept) = stored.decision {
            if let Some(new) = &state.decision {
                if new.root != kept.root {
                    return Err(Error::DecisionConflict {
                        instance: describe(id),
                        stored: kept.root,
                        requested: new.root,
                    });
                }
            }
            state.decision = Some(kept);
        }
    }
    let decided: Option<Root> = state.decision.as_ref().map(|d| d.root);
    let json = serde_json::to_string(&state)
        .map_err(|e| Error::Corrupt(format!("agreement state cannot be serialized: {e}")))?;
    store.put_agreement_row(&key, decided, &json).await
}

/// Deletes old agreement instances (see the module's pruning rule) inside the caller's
/// transaction; `validators` are the registered history keys and ids.
pub(crate) async fn prune<S: Store>(
    store: &mut S,
    validators: &[(PublicKeyBytes, ValidatorId)],
    epochs_to_keep: u64,
    slots_per_epoch: u64,
) -> Result<(), Error> {
    let keep = epochs_to_keep.max(1);
    let ids: std::collections::HashMap<PublicKeyBytes, ValidatorId> =
        validators.iter().copied().collect();
    for (pubkey, duty, newest) in store.agreement_newest().await? {
        let window = if duty == DUTY_BLOCK {
            keep.saturating_mul(slots_per_epoch.max(1))
        } else {
            keep
        };
        let mut floor = newest.saturating_sub(window).saturating_add(1);
        if let Some(&id) = ids.get(&pubkey) {
            let wm = store.watermark(id).await?;
            let history_floor = if duty == DUTY_BLOCK {
                wm.slot
            } else {
                wm.target
            };
            floor = floor.max(history_floor.unwrap_or(0));
        }
        store.delete_agreement_below(&pubkey, duty, floor).await?;
    }
    Ok(())
}
