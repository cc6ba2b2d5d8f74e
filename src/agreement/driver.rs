//! Runs the consensus instances of a node: creates them on a sign request or on the first
//! message, restores them from storage after a restart, drives their timers, persists what the
//! engine asks before sending, delivers decisions to the requests waiting for them, and forgets
//! decided or stale instances (storage keeps the decisions).
//!
//! Concurrency: the instance map is one `std::sync::Mutex` held only to look up or insert a
//! slot, never across an `.await`. Each slot has its own async mutex that serialises the calls
//! on that instance, including the durable store of its state and the hand-off of its messages
//! to the transport, so the stored state never goes backwards. Every engine step runs in its
//! own task, so a sign request that gives up (timeout, client gone) never interrupts a step
//! between the engine call and the store.
//!
//! Timers: one task keeps the earliest `next_deadline` of every live instance in an ordered set
//! and ticks the instances that are due; the same task sweeps the map every second.
//!
//! Invariants: `persisted()` is durable before any message of the same engine call leaves; a
//! request learns a decision only after it is durable; a decision found in storage is answered
//! as is (it was checked before it was stored); an instance is evicted only while nothing else
//! holds it, so two engines never run for one instance.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::auth::Roster;
use super::engine::{Instance, Rejected};
use super::types::{Body, Duty, InstanceId, Output, Persisted, Root, SignedMessage, Timing};
use crate::bls::PublicKeyBytes;

/// Default length of round 1 (`--agreement-round-ms`).
pub const DEFAULT_ROUND_MS: u64 = 200;
/// Default time a sign request waits for a decision (`--agreement-timeout-ms`); below the
/// combiner's default 2 s deadline.
pub const DEFAULT_TIMEOUT_MS: u64 = 1500;
/// Longest round, in multiples of round 1.
const MAX_ROUND_FACTOR: u64 = 16;
/// How long a decided instance stays in memory (peers that lag get the decision from it; after
/// that it is read back from storage on demand).
pub const KEEP_DECIDED: Duration = Duration::from_secs(30);
/// How long an undecided instance nobody waits for stays in memory.
pub const INSTANCE_LIFE: Duration = Duration::from_secs(120);
/// Instances in memory above which messages for new instances are dropped.
pub const MAX_INSTANCES: usize = 200_000;
/// Engine steps queued or running above which incoming messages are dropped.
const MAX_PENDING_STEPS: usize = 100_000;
/// How often the map is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Durable storage of instance state (the slashing database).
pub trait Store: Send + Sync + 'static {
    /// The stored state of an instance, if any.
    fn load(&self, id: InstanceId) -> BoxFuture<'static, Result<Option<Persisted>, String>>;
    /// Stores the state of an instance durably (the decision, once stored, never changes).
    fn save(&self, id: InstanceId, state: Persisted) -> BoxFuture<'static, Result<(), String>>;
}

impl Store for crate::slashing::SlashingDb {
    fn load(&self, id: InstanceId) -> BoxFuture<'static, Result<Option<Persisted>, String>> {
        let db = self.clone();
        Box::pin(async move { db.agreement_state(&id).await.map_err(|e| e.to_string()) })
    }

    fn save(&self, id: InstanceId, state: Persisted) -> BoxFuture<'static, Result<(), String>> {
        let db = self.clone();
        Box::pin(async move {
            db.store_agreement_state(&id, &state)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Hands messages to the other members (never blocks).
pub trait Transport: Send + Sync + 'static {
    /// Queues `msg` for the operators `to` (cluster.json indices); `signers` are the operators
    /// whose signatures it carries (their certificates go with it).
    fn send(&self, to: &[usize], msg: &SignedMessage, signers: &[usize]);

    /// The `nth` smallest (from 1) measured round trip to the operators `to`, if that many
    /// are measured.
    fn round_trip(&self, _to: &[usize], _nth: usize) -> Option<Duration> {
        None
    }

    /// Whether the operator `op` is unreachable now (its latest post failed and none has
    /// succeeded since).
    fn unreachable(&self, _op: usize) -> bool {
        false
    }
}

/// Why a sign request got no decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgreementError {
    /// No decision within the timeout.
    #[error("no agreement within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// Reading or storing the instance state failed.
    #[error("agreement state storage: {0}")]
    Storage(String),
    /// This node holds no share of the validator (nothing to agree on).
    #[error("validator {0} is not one this node holds a share of")]
    NotAMember(PublicKeyBytes),
    /// Too much is going on (instance or step limits).
    #[error("agreement overloaded")]
    Overloaded,
}

/// Why an engine step failed.
#[derive(Debug)]
enum StepError {
    Agreement(AgreementError),
    Rejected(Rejected),
}

impl From<AgreementError> for StepError {
    fn from(e: AgreementError) -> Self {
        Self::Agreement(e)
    }
}

/// Driver settings.
#[derive(Debug, Clone, Copy)]
pub struct DriverConfig {
    /// Round timers.
    pub timing: Timing,
    /// How long a sign request waits for a decision.
    pub timeout: Duration,
}

impl DriverConfig {
    /// Rounds of `round_ms` (doubling up to 16×) and a request timeout of `timeout_ms`.
    pub fn new(round_ms: u64, timeout_ms: u64) -> Self {
        let round_ms = round_ms.max(1);
        Self {
            timing: Timing {
                round_ms,
                max_round_ms: round_ms.saturating_mul(MAX_ROUND_FACTOR),
            },
            timeout: Duration::from_millis(timeout_ms.max(1)),
        }
    }
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self::new(DEFAULT_ROUND_MS, DEFAULT_TIMEOUT_MS)
    }
}

/// What an engine step does.
enum Step {
    Propose(Root),
    Receive(SignedMessage),
    Tick,
}

const NOT_DECIDED: u64 = u64::MAX;

/// One instance in memory.
struct Slot {
    /// None until loaded from storage (or created) by the first step.
    engine: tokio::sync::Mutex<Option<Instance>>,
    decided: watch::Sender<Option<Root>>,
    created_ms: u64,
    decided_ms: AtomicU64,
}

impl Slot {
    fn mark_decided(&self, root: Root, now_ms: u64) {
        self.decided.send_if_modified(|d| {
            if d.is_none() {
                *d = Some(root);
                true
            } else {
                false
            }
        });
        let _ = self.decided_ms.compare_exchange(
            NOT_DECIDED,
            now_ms,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

#[derive(Default)]
struct Timers {
    queue: BTreeSet<(u64, InstanceId)>,
    at: HashMap<InstanceId, u64>,
}

struct Shared {
    roster: Arc<Roster>,
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    config: DriverConfig,
    epoch: Instant,
    slots: Mutex<HashMap<InstanceId, Arc<Slot>>>,
    timers: Mutex<Timers>,
    wake: Notify,
    pending_steps: AtomicUsize,
}

/// The node's agreement driver (cheap to clone).
#[derive(Clone)]
pub struct Driver {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("config", &self.shared.config)
            .field("instances", &self.instances())
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver for the validators of `roster`, storing in `store`, sending through
    /// `transport`. Call [`Driver::spawn_timers`] to run the timers.
    pub fn new(
        roster: Arc<Roster>,
        store: Arc<dyn Store>,
        transport: Arc<dyn Transport>,
        config: DriverConfig,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                roster,
                store,
                transport,
                config,
                epoch: Instant::now(),
                slots: Mutex::new(HashMap::new()),
                timers: Mutex::new(Timers::default()),
                wake: Notify::new(),
                pending_steps: AtomicUsize::new(0),
            }),
        }
    }

    /// The roster (members, key ring).
    pub fn roster(&self) -> &Arc<Roster> {
        &self.shared.roster
    }

    /// The settings.
    pub fn config(&self) -> DriverConfig {
        self.shared.config
    }

    /// Instances in memory.
    pub fn instances(&self) -> usize {
        self.shared.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Agrees with the other members on one root for `duty` of `validator` (group key),
    /// proposing `root`; returns the decided root (durable when this returns), which may differ
    /// from `root`.
    ///
    /// # Errors
    /// [`AgreementError::Timeout`] when no decision came within the timeout (the instance
    /// goes on); [`AgreementError::Storage`]; [`AgreementError::NotAMember`].
    pub async fn agree(
        &self,
        validator: PublicKeyBytes,
        duty: Duty,
        root: Root,
    ) -> Result<Root, AgreementError> {
        let started = Instant::now();
        let timeout = self.shared.config.timeout;
        let id = InstanceId { validator, duty };
        if self.shared.roster.members(&validator).is_none() {
            return Err(AgreementError::NotAMember(validator));
        }
        let slot = self.shared.slot(id, false)?;
        let mut decided = slot.decided.subscribe();
        if let Some(r) = *decided.borrow_and_update() {
            return Ok(r);
        }
        let step = tokio::spawn(
            self.shared
                .clone()
                .step(id, slot.clone(), Step::Propose(root)),
        );
        let wait = async {
            match step.await {
                Ok(Err(StepError::Agreement(e))) => return Err(e),
                Ok(Err(StepError::Rejected(_))) | Ok(Ok(())) => {}
                Err(e) => return Err(AgreementError::Storage(format!("agreement step: {e}"))),
            }
            match decided.wait_for(Option::is_some).await {
                Ok(r) => (*r).ok_or_else(|| AgreementError::Storage("decision lost".into())),
                Err(_) => Err(AgreementError::Storage("instance dropped".into())),
            }
        };
        match tokio::time::timeout_at(started + timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(AgreementError::Timeout(timeout)),
        }
    }

    /// Takes a message from another member (already checked to come from the member it names);
    /// runs in the background. Returns false when it was dropped for overload.
    pub fn deliver(&self, msg: SignedMessage) -> bool {
        let shared = &self.shared;
        if shared.pending_steps.load(Ordering::Relaxed) >= MAX_PENDING_STEPS {
            crate::metrics::global().record_agreement_refused("overloaded");
            return false;
        }
        let id = msg.message.instance;
        let slot = match shared.slot(id, true) {
            Ok(s) => s,
            Err(_) => {
                crate::metrics::global().record_agreement_refused("overloaded");
                return false;
            }
        };
        let from = msg.message.from;
        let task = shared.clone().step(id, slot, Step::Receive(msg));
        tokio::spawn(async move {
            match task.await {
                Ok(()) => {}
                Err(StepError::Rejected(r)) => {
                    let reason = match r {
                        Rejected::BadSignature => "bad_signature",
                        Rejected::NotAMember => "not_a_member",
                        Rejected::WrongInstance => "wrong_instance",
                        Rejected::Invalid(_) => "invalid",
                    };
                    crate::metrics::global().record_agreement_refused(reason);
                    tracing::debug!(validator = %id.validator, duty = ?id.duty, from, reason = %r, "agreement message refused");
                }
                Err(StepError::Agreement(e)) => {
                    tracing::warn!(validator = %id.validator, duty = ?id.duty, error = %e, "agreement message not processed");
                }
            }
        });
        true
    }

    /// Runs the timers and the sweep until the returned task is aborted.
    pub fn spawn_timers(&self) -> tokio::task::JoinHandle<()> {
        let shared = self.shared.clone();
        tokio::spawn(async move { shared.timer_loop().await })
    }
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The slot of `id`, created when missing (refused for a message when the map is full).
    fn slot(&self, id: InstanceId, from_message: bool) -> Result<Arc<Slot>, AgreementError> {
        let mut slots = self
            .slots
            .lock()
            .map_err(|_| AgreementError::Storage("instance map poisoned".into()))?;
        if let Some(s) = slots.get(&id) {
            return Ok(s.clone());
        }
        if from_message && slots.len() >= MAX_INSTANCES {
            return Err(AgreementError::Overloaded);
        }
        let slot = Arc::new(Slot {
            engine: tokio::sync::Mutex::new(None),
            decided: watch::Sender::new(None),
            created_ms: self.now_ms(),
            decided_ms: AtomicU64::new(NOT_DECIDED),
        });
        slots.insert(id, slot.clone());
        Ok(slot)
    }

    /// One engine call on one instance: load or create it, call the engine, store its state,
    /// hand its messages to the transport, publish its decision, reschedule its timer.
    async fn step(
        self: Arc<Self>,
        id: InstanceId,
        slot: Arc<Slot>,
        step: Step,
    ) -> Result<(), StepError> {
        self.pending_steps.fetch_add(1, Ordering::Relaxed);
        let result = self.step_inner(id, &slot, step).await;
        self.pending_steps.fetch_sub(1, Ordering::Relaxed);
        result
    }

    async fn step_inner(&self, id: InstanceId, slot: &Slot, step: Step) -> Result<(), StepError> {
        let mut guard = slot.engine.lock().await;
        if guard.is_none() {
            let members = self
                .roster
                .members(&id.validator)
                .ok_or(AgreementError::NotAMember(id.validator))?;
            let auth = self
                .roster
                .authenticator(&id.validator)
                .ok_or(AgreementError::NotAMember(id.validator))?;
            let stored = self.store.load(id).await.map_err(AgreementError::Storage)?;
            let now = self.now_ms();
            let (timing, round_one) = self.timing_for(&id.validator, members.quorum);
            // This node's own durable decision counts even when the engine cannot check its
            // commits again yet (after a restart the peers' certificates come back with their
            // next messages): it was stored only after it was checked or reached here.
            let stored_decision = stored
                .as_ref()
                .and_then(|p| p.decision.as_ref())
                .map(|d| d.root);
            let mut instance = match stored {
                Some(p) => Instance::restore(id, members, timing, auth, p, now),
                None => Instance::new(id, members, timing, auth, now),
            };
            instance.lengthen_round_one(round_one);
            if let Some(root) = instance.decision().map(|d| d.root).or(stored_decision) {
                slot.mark_decided(root, now);
            }
            *guard = Some(instance);
        }
        let Some(instance) = guard.as_mut() else {
            return Ok(());
        };
        instance.set_unreachable(self.unreachable_members(&id.validator));
        instance.set_round_trips(self.member_round_trips(&id.validator));
        let now = self.now_ms();
        let outputs = match step {
            Step::Propose(root) => instance.propose(root, now),
            Step::Receive(msg) => instance.receive(msg, now).map_err(StepError::Rejected)?,
            Step::Tick => match instance.next_deadline() {
                Some(d) if d <= now => instance.tick(now),
                _ => Vec::new(),
            },
        };
        let deadline = instance.next_deadline();
        if !outputs.is_empty() {
            let state = instance.persisted();
            if let Err(e) = self.store.save(id, state).await {
                tracing::error!(validator = %id.validator, duty = ?id.duty, error = %e, "storing agreement state failed; its messages are not sent");
                self.schedule(id, deadline);
                return Err(AgreementError::Storage(e).into());
            }
            let recipients = self.recipients(&id.validator);
            for output in outputs {
                match output {
                    Output::Send(msg) => {
                        let signers = self.signers(&id.validator, &msg);
                        self.transport.send(&recipients, &msg, &signers);
                    }
                    Output::SendTo(members, msg) => {
                        let to: Vec<usize> = members
                            .iter()
                            .filter_map(|&m| self.roster.operator_of(&id.validator, usize::from(m)))
                            .collect();
                        let signers = self.signers(&id.validator, &msg);
                        self.transport.send(&to, &msg, &signers);
                    }
                    Output::Decided(d) => {
                        tracing::debug!(validator = %id.validator, duty = ?id.duty, round = d.round, root = %hex::encode(d.root), "agreement decided");
                        slot.mark_decided(d.root, self.now_ms());
                    }
                }
            }
        }
        drop(guard);
        self.schedule(id, deadline);
        Ok(())
    }

    /// Round timers of a new instance, and how long its round 1 may last while uncontested.
    /// Round 1 lasts at least twice the measured round trip to the (Q-1)-th nearest other
    /// member (the fast path needs a prepare and a commit to cross, after requests that reach
    /// the members at different times), never below `--agreement-round-ms`: at most a third of
    /// the request timeout ordinarily (so that round 2 still fits when clients race), at most
    /// two thirds while every round-1 prepare names one root
    /// ([`Instance::lengthen_round_one`]). Round 1 is the one that decides within the timeout
    /// over long links, and under a burst its messages queue behind each other: cut at a third
    /// of the timeout it ended before the prepares came in and sent every instance into round
    /// 2 (a cold burst of 200 at 80 ms in the WAN test bed: 13 signed with round 1 at a third
    /// of the timeout, 42 with the uncontested round 1 longer; README, "WAN test bed").
    fn timing_for(&self, validator: &PublicKeyBytes, quorum: usize) -> (Timing, u64) {
        let configured = self.config.timing;
        let Some(rtt) = self
            .transport
            .round_trip(&self.recipients(validator), quorum.saturating_sub(1))
        else {
            return (configured, configured.round_ms);
        };
        let twice = 2 * ms(rtt);
        let timeout = ms(self.config.timeout);
        let round_ms = twice.min(timeout / 3).max(configured.round_ms);
        let uncontested = twice.min(timeout * 2 / 3).max(round_ms);
        (
            Timing {
                round_ms,
                max_round_ms: configured.max_round_ms.max(round_ms),
            },
            uncontested,
        )
    }

    /// Member indices of a validator whose operators the transport cannot reach now.
    fn unreachable_members(&self, validator: &PublicKeyBytes) -> Vec<u16> {
        let Some(v) = self.roster.validator(validator) else {
            return Vec::new();
        };
        v.members
            .iter()
            .enumerate()
            .filter(|&(_, &op)| self.transport.unreachable(op))
            .filter_map(|(m, _)| u16::try_from(m).ok())
            .collect()
    }

    /// Per member of a validator (by member index), the measured round trip to its operator
    /// in ms, if measured.
    fn member_round_trips(&self, validator: &PublicKeyBytes) -> Vec<Option<u64>> {
        let Some(v) = self.roster.validator(validator) else {
            return Vec::new();
        };
        v.members
            .iter()
            .map(|&op| self.transport.round_trip(&[op], 1).map(ms))
            .collect()
    }

    /// The other members of a validator (operator indices).
    fn recipients(&self, validator: &PublicKeyBytes) -> Vec<usize> {
        let me = self.roster.ring().me();
        self.roster
            .validator(validator)
            .map(|v| v.members.iter().copied().filter(|&o| o != me).collect())
            .unwrap_or_default()
    }

    /// The operators whose signatures `msg` carries (itself and nested messages).
    fn signers(&self, validator: &PublicKeyBytes, msg: &SignedMessage) -> Vec<usize> {
        let mut members = Vec::new();
        collect_signers(msg, &mut members);
        members.sort_unstable();
        members.dedup();
        members
            .into_iter()
            .filter_map(|m| self.roster.operator_of(validator, usize::from(m)))
            .collect()
    }

    fn schedule(&self, id: InstanceId, deadline: Option<u64>) {
        let Ok(mut timers) = self.timers.lock() else {
            return;
        };
        if let Some(old) = timers.at.remove(&id) {
            timers.queue.remove(&(old, id));
        }
        if let Some(d) = deadline {
            let earliest = timers.queue.first().is_none_or(|(first, _)| d < *first);
            timers.queue.insert((d, id));
            timers.at.insert(id, d);
            if earliest {
                self.wake.notify_one();
            }
        }
    }

    async fn timer_loop(self: Arc<Self>) {
        let mut next_sweep = self.now_ms() + ms(SWEEP_EVERY);
        loop {
            let next = self
                .timers
                .lock()
                .ok()
                .and_then(|t| t.queue.first().map(|(d, _)| *d))
                .unwrap_or(u64::MAX)
                .min(next_sweep);
            let at = self.epoch + Duration::from_millis(next);
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = self.wake.notified() => {}
            }
            let now = self.now_ms();
            let due: Vec<InstanceId> = match self.timers.lock() {
                Ok(mut t) => {
                    let mut due = Vec::new();
                    while let Some(&(d, id)) = t.queue.first() {
                        if d > now {
                            break;
                        }
                        t.queue.remove(&(d, id));
                        t.at.remove(&id);
                        due.push(id);
                    }
                    due
                }
                Err(_) => return,
            };
            for id in due {
                let slot = self.slots.lock().ok().and_then(|s| s.get(&id).cloned());
                if let Some(slot) = slot {
                    let task = self.clone().step(id, slot, Step::Tick);
                    tokio::spawn(async move {
                        if let Err(StepError::Agreement(e)) = task.await {
                            tracing::warn!(error = %e, "agreement timer step failed");
                        }
                    });
                }
            }
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + ms(SWEEP_EVERY);
            }
        }
    }

    /// Forgets instances nothing holds that decided more than [`KEEP_DECIDED`] ago or were
    /// created more than [`INSTANCE_LIFE`] ago.
    fn sweep(&self, now: u64) {
        let mut evicted = Vec::new();
        if let Ok(mut slots) = self.slots.lock() {
            slots.retain(|id, slot| {
                let decided = slot.decided_ms.load(Ordering::Acquire);
                let expired = if decided == NOT_DECIDED {
                    now.saturating_sub(slot.created_ms) > ms(INSTANCE_LIFE)
                } else {
                    now.saturating_sub(decided) > ms(KEEP_DECIDED)
                };
                // The map's own reference only: no step, waiter or timer task holds it.
                let keep = !expired || Arc::strong_count(slot) > 1;
                if !keep {
                    evicted.push(*id);
                }
                keep
            });
        }
        if evicted.is_empty() {
            return;
        }
        if let Ok(mut timers) = self.timers.lock() {
            for id in &evicted {
                if let Some(d) = timers.at.remove(id) {
                    timers.queue.remove(&(d, *id));
                }
            }
        }
        tracing::debug!(evicted = evicted.len(), "agreement instances forgotten");
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Member indices of the signers of `msg` and of every message nested in it.
pub fn collect_signers(msg: &SignedMessage, out: &mut Vec<u16>) {
    out.push(msg.message.from);
    let nested: &[SignedMessage] = match &msg.message.body {
        Body::RoundChange { proof, .. } => proof,
        Body::Proposal { justification, .. } => justification,
        Body::Decided { commits, .. } => commits,
        Body::Prepare { .. } | Body::Commit { .. } => &[],
    };
    for m in nested {
        collect_signers(m, out);
    }
}

/// The duty a slashable message is for.
pub fn duty_of(msg: crate::slashing::SlashableMessage) -> Duty {
    match msg {
        crate::slashing::SlashableMessage::Block { slot } => Duty::Block { slot },
        crate::slashing::SlashableMessage::Attestation { target_epoch, .. } => {
            Duty::Attestation { target_epoch }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::agreement::auth::{KeyRing, NodeIdentity};
    use crate::cluster::{ClusterDefinition, Operator};
    use crate::tls::{DevPki, Fingerprint};

    /// In-memory storage; `fail` makes every call fail.
    #[derive(Default)]
    struct MemStore {
        states: Mutex<HashMap<InstanceId, Persisted>>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Store for Arc<MemStore> {
        fn load(&self, id: InstanceId) -> BoxFuture<'static, Result<Option<Persisted>, String>> {
            let this = self.clone();
            Box::pin(async move {
                if this.fail.load(Ordering::Relaxed) {
                    return Err("disk on fire".into());
                }
                Ok(this.states.lock().expect("lock").get(&id).cloned())
            })
        }

        fn save(&self, id: InstanceId, state: Persisted) -> BoxFuture<'static, Result<(), String>> {
            let this = self.clone();
            Box::pin(async move {
                if this.fail.load(Ordering::Relaxed) {
                    return Err("disk on fire".into());
                }
                this.states.lock().expect("lock").insert(id, state);
                Ok(())
            })
        }
    }

    /// Delivers to the drivers of the same network (by operator index) that are up.
    #[derive(Default)]
    struct Net {
        drivers: Mutex<Vec<Option<Driver>>>,
    }

    struct Link(Arc<Net>);

    impl Transport for Link {
        fn send(&self, to: &[usize], msg: &SignedMessage, _signers: &[usize]) {
            let drivers = self.0.drivers.lock().expect("lock").clone();
            for &op in to {
                if let Some(Some(d)) = drivers.get(op) {
                    d.deliver(msg.clone());
                }
            }
        }
    }

    struct World {
        _dir: tempfile::TempDir,
        definition: ClusterDefinition,
        pki: DevPki,
        allowed: BTreeMap<String, Fingerprint>,
        certs: Vec<Vec<u8>>,
        net: Arc<Net>,
        stores: Vec<Arc<MemStore>>,
    }

    const OPS: [&str; 4] = ["a", "b", "c", "d"];

    fn world() -> World {
        let dir = tempfile::tempdir().expect("tmp");
        let clients: Vec<String> = OPS.iter().map(|o| format!("{o}-client")).collect();
        let refs: Vec<&str> = clients.iter().map(String::as_str).collect();
        let pki = DevPki::generate(dir.path(), &[], &refs).expect("pki");
        let ops: Vec<Operator> = OPS
            .iter()
            .map(|n| Operator::new(*n, format!("https://{n}:9000")))
            .collect();
        let keys = vec![crate::keys::interop::interop_secret_key(0)];
        let (definition, _) = crate::cluster::split_keys(&keys, 3, &ops).expect("split");
        let allowed = OPS
            .iter()
            .map(|o| {
                let id = pki.identity(&format!("{o}-client")).expect("id");
                ((*o).to_owned(), id.fingerprint)
            })
            .collect();
        let certs = OPS
            .iter()
            .map(|o| {
                let id = pki.identity(&format!("{o}-client")).expect("id");
                crate::tls::load_certs(&id.cert).expect("cert")[0]
                    .as_ref()
                    .to_vec()
            })
            .collect();
        World {
            _dir: dir,
            definition,
            pki,
            allowed,
            certs,
            net: Arc::new(Net::default()),
            stores: (0..4).map(|_| Arc::new(MemStore::default())).collect(),
        }
    }

    impl World {
        /// Driver of operator `i` (all peers' certificates known), joined to the network.
        fn driver(&self, i: usize, config: DriverConfig) -> Driver {
            self.driver_with(i, config, true)
        }

        /// As [`World::driver`]; without `learn`, the peers' certificates are not known yet
        /// (as after a restart).
        fn driver_with(&self, i: usize, config: DriverConfig, learn: bool) -> Driver {
            let id = self
                .pki
                .identity(&format!("{}-client", OPS[i]))
                .expect("id");
            let identity = NodeIdentity::load(&id.cert, &id.key).expect("identity");
            let ring = Arc::new(
                KeyRing::new(&self.definition, OPS[i], &self.allowed, identity).expect("ring"),
            );
            if learn {
                assert_eq!(ring.learn(self.certs.iter().map(Vec::as_slice)), 0);
            }
            let roster = Arc::new(Roster::new(&self.definition, ring));
            let driver = Driver::new(
                roster,
                Arc::new(self.stores[i].clone()),
                Arc::new(Link(self.net.clone())),
                config,
            );
            driver.spawn_timers();
            let mut drivers = self.net.drivers.lock().expect("lock");
            drivers.resize(4, None);
            drivers[i] = Some(driver.clone());
            driver
        }

        fn group(&self) -> PublicKeyBytes {
            self.definition.validators()[0].group_pubkey.bytes()
        }
    }

    /// Sends nothing; reports fixed round trips to the peers.
    struct Rtts(Vec<Duration>);

    impl Transport for Rtts {
        fn send(&self, _to: &[usize], _msg: &SignedMessage, _signers: &[usize]) {}

        fn round_trip(&self, to: &[usize], nth: usize) -> Option<Duration> {
            let mut v: Vec<Duration> = to.iter().filter_map(|&o| self.0.get(o).copied()).collect();
            v.sort_unstable();
            v.get(nth.checked_sub(1)?).copied()
        }
    }

    /// Round 1 lasts twice the round trip to the quorum's farthest peer (the second nearest
    /// of three for 3-of-4), never less than `--agreement-round-ms`, at most a third of the
    /// request timeout, or two thirds while uncontested; without measurements, the
    /// configured length.
    #[test]
    fn round_one_follows_the_measured_round_trips() {
        let w = world();
        let ms = Duration::from_millis;
        let timing = |rtts: Vec<Duration>| {
            let id = w.pki.identity("a-client").expect("id");
            let identity = NodeIdentity::load(&id.cert, &id.key).expect("identity");
            let ring =
                Arc::new(KeyRing::new(&w.definition, "a", &w.allowed, identity).expect("ring"));
            let roster = Arc::new(Roster::new(&w.definition, ring));
            let driver = Driver::new(
                roster,
                Arc::new(w.stores[0].clone()),
                Arc::new(Rtts(rtts)),
                DriverConfig::new(200, 1500),
            );
            let (t, uncontested) = driver.shared.timing_for(&w.group(), 3);
            (t.round_ms, t.max_round_ms, uncontested)
        };
        // Operator 0 is this node (never measured).
        let loopback = timing(vec![ms(0), ms(1), ms(2), ms(1)]);
        assert_eq!(loopback, (200, 3200, 200));
        let wan = timing(vec![ms(0), ms(100), ms(180), ms(320)]);
        assert_eq!(wan, (360, 3200, 360));
        let far = timing(vec![ms(0), ms(300), ms(400), ms(500)]);
        assert_eq!(far.0, 500, "capped at a third of the 1.5 s timeout");
        assert_eq!(far.2, 800, "uncontested: twice the round trip");
        let farther = timing(vec![ms(0), ms(600), ms(700), ms(800)]);
        assert_eq!(
            (farther.0, farther.2),
            (500, 1000),
            "capped at a third, and two thirds uncontested"
        );
        let unmeasured = timing(Vec::new());
        assert_eq!(unmeasured, (200, 3200, 200));
    }

    /// The engine is told each member's round trip by member index, from its operator's
    /// measurement (a far leader's rounds are left early on it).
    #[test]
    fn members_round_trips_come_from_their_operators() {
        let w = world();
        let id = w.pki.identity("a-client").expect("id");
        let identity = NodeIdentity::load(&id.cert, &id.key).expect("identity");
        let ring = Arc::new(KeyRing::new(&w.definition, "a", &w.allowed, identity).expect("ring"));
        let roster = Arc::new(Roster::new(&w.definition, ring));
        let members = roster
            .validator(&w.group())
            .expect("validator")
            .members
            .clone();
        let rtts = vec![
            Duration::from_millis(0),
            Duration::from_millis(7),
            Duration::from_millis(30),
            Duration::from_millis(500),
        ];
        let driver = Driver::new(
            roster,
            Arc::new(w.stores[0].clone()),
            Arc::new(Rtts(rtts)),
            DriverConfig::new(200, 1500),
        );
        let got = driver.shared.member_round_trips(&w.group());
        let want: Vec<Option<u64>> = members
            .iter()
            .map(|&op| Some([0, 7, 30, 500][op]))
            .collect();
        assert_eq!(got, want);
        let unknown = PublicKeyBytes([0x11; 48]);
        assert!(driver.shared.member_round_trips(&unknown).is_empty());
    }

    fn patient() -> DriverConfig {
        DriverConfig::new(20, 20_000)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn split_proposals_end_in_one_durable_decision_for_everyone() {
        let w = world();
        let drivers: Vec<Driver> = (0..4).map(|i| w.driver(i, patient())).collect();
        let group = w.group();
        for target in 0..20u64 {
            let duty = Duty::Attestation {
                target_epoch: target,
            };
            let roots = [[1u8; 32], [1; 32], [2; 32], [2; 32]];
            let decided = futures::future::join_all(
                drivers
                    .iter()
                    .zip(roots)
                    .map(|(d, r)| d.agree(group, duty, r)),
            )
            .await;
            let first = decided[0].clone().expect("decided");
            assert!(first == [1; 32] || first == [2; 32]);
            for (i, d) in decided.iter().enumerate() {
                assert_eq!(d.as_ref().ok(), Some(&first), "node {i}, target {target}");
                // Durable before the request learnt it.
                let stored = w.stores[i]
                    .states
                    .lock()
                    .expect("lock")
                    .get(&InstanceId {
                        validator: group,
                        duty,
                    })
                    .and_then(|p| p.decision.clone())
                    .map(|d| d.root);
                assert_eq!(stored, Some(first), "node {i} stored the decision");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_node_answers_from_storage_and_a_lonely_one_times_out() {
        let w = world();
        let drivers: Vec<Driver> = (0..4).map(|i| w.driver(i, patient())).collect();
        let group = w.group();
        let duty = Duty::Block { slot: 9 };
        let decided =
            futures::future::join_all(drivers.iter().map(|d| d.agree(group, duty, [5; 32]))).await;
        assert!(decided.iter().all(|d| d == &Ok([5; 32])));
        // Node a "restarts" with its storage, cut off from the others and without their
        // certificates: it keeps the decision.
        w.net.drivers.lock().expect("lock").clear();
        drop(drivers);
        let restarted = w.driver_with(0, DriverConfig::new(20, 300), false);
        w.net.drivers.lock().expect("lock").clear();
        assert_eq!(restarted.agree(group, duty, [6; 32]).await, Ok([5; 32]));
        // A new duty with nobody to talk to: no decision, a timeout.
        let other = Duty::Block { slot: 10 };
        assert_eq!(
            restarted.agree(group, other, [6; 32]).await,
            Err(AgreementError::Timeout(Duration::from_millis(300)))
        );
        // Storage failing: the request says so.
        w.stores[0].fail.store(true, Ordering::Relaxed);
        let third = Duty::Block { slot: 11 };
        assert!(matches!(
            restarted.agree(group, third, [6; 32]).await,
            Err(AgreementError::Storage(_))
        ));
        // Not a validator of the cluster.
        let stranger = PublicKeyBytes([9; 48]);
        assert_eq!(
            restarted.agree(stranger, third, [6; 32]).await,
            Err(AgreementError::NotAMember(stranger))
        );
    }

    /// A batch carrying a message whose signer this node holds no certificate of (as after a
    /// restart, once the peers stopped sending certificates it had accepted) is refused as a
    /// whole with "certificates needed", nothing of it delivered; the same batch with the
    /// certificate is taken.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_signed_by_an_unknown_certificate_is_refused_until_it_comes_with_it() {
        use crate::agreement::types::{Body, Message};
        use crate::agreement::wire::{Batch, BatchError, Inbound};
        let w = world();
        let a = w.driver(0, patient());
        let b = w.driver_with(1, patient(), false);
        let group = w.group();
        let member = w.definition.validators()[0]
            .shares
            .iter()
            .position(|s| s.operator == "a")
            .expect("a holds a share");
        let message = Message {
            instance: InstanceId {
                validator: group,
                duty: Duty::Attestation { target_epoch: 3 },
            },
            round: 1,
            from: u16::try_from(member).expect("member"),
            body: Body::Prepare { root: [4; 32] },
        };
        let auth = a.roster().authenticator(&group).expect("auth");
        let signature = auth.sign(&message.signing_bytes(&a.roster().domain()));
        let msg = SignedMessage { message, signature };
        let inbound = Inbound::new(b.clone(), "0x01".into());
        let batch = |certificates: Vec<String>| Batch {
            cluster_hash: "0x01".into(),
            operator: "a".into(),
            certificates,
            messages: vec![msg.clone()],
        };
        assert_eq!(
            inbound
                .accept("a", batch(Vec::new()))
                .map_err(|e| e.reason()),
            Err(BatchError::CertificatesNeeded("a".into()).reason())
        );
        assert_eq!(
            b.instances(),
            0,
            "nothing of the refused batch was delivered"
        );
        let cert = format!("0x{}", hex::encode(&w.certs[0]));
        assert_eq!(inbound.accept("a", batch(vec![cert])), Ok(1));
        // Known from now on: the next batch needs no certificate.
        assert_eq!(inbound.accept("a", batch(Vec::new())), Ok(1));
    }
}
