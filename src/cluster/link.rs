//! The pure bookkeeping behind cluster sync's peer links, with time passed in so it is tested
//! without a network:
//!
//! - [`Window`]: which records a pull must cover (lowest slot, lowest target epoch).
//! - [`PeerLink`]: per peer, the notice outbox and the contact state. The outbox is ONE window
//!   (the lowest slot and target epoch stored here and not yet announced to that peer), so it has
//!   a constant size however long the peer is away: notices that could not be delivered merge
//!   into it and it is re-sent, with exponential back-off and jitter, until the peer answers.
//!   With nothing to announce the link sends an empty notice (a heartbeat) when the peer has not
//!   answered for [`PROBE_INTERVAL`]; every answer (any HTTP status) is contact.
//! - [`ContactGate`]: a ready node that reaches fewer than `required` peers for longer than the
//!   grace closes its gate for slashable duties; when enough peers answer again it pulls from
//!   all of them at once and reopens only after full pulls started after contact returned were
//!   merged from `min_peers` peers.
//!
//! Invariants: at most one request per peer is in flight (the link loop awaits each attempt);
//! after a failure the next attempt waits `backoff(failures)` (250 ms doubling, capped at
//! [`BACKOFF_MAX`], each wait drawn in its upper half); a pending window is only ever widened
//! until a delivery succeeds, never dropped on a transport failure.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::slashing::SlashableMessage;

/// How long a link gathers newly stored records before it notifies the peer (one notice per
/// peer per window, however many requests were signed).
pub const NOTICE_DEBOUNCE: Duration = Duration::from_millis(250);

/// A heartbeat goes to a peer that has not answered for this long.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// First back-off after a failed attempt.
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);

/// Longest back-off between two attempts to one peer.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The records a pull must cover: blocks at or above `min_slot`, attestations with target at
/// or above `min_target_epoch` (`None`: none of that kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Lowest block slot to cover.
    pub min_slot: Option<u64>,
    /// Lowest attestation target epoch to cover.
    pub min_target_epoch: Option<u64>,
}

impl Window {
    /// Widens `self` to also cover `other`.
    pub fn widen(&mut self, other: Window) {
        fn min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        self.min_slot = min(self.min_slot, other.min_slot);
        self.min_target_epoch = min(self.min_target_epoch, other.min_target_epoch);
    }

    /// The window of one stored record.
    pub fn of(msg: SlashableMessage) -> Self {
        match msg {
            SlashableMessage::Block { slot } => Self {
                min_slot: Some(slot),
                min_target_epoch: None,
            },
            SlashableMessage::Attestation { target_epoch, .. } => Self {
                min_slot: None,
                min_target_epoch: Some(target_epoch),
            },
        }
    }
}

/// The back-off before attempt `failures + 1`: `BACKOFF_BASE * 2^(failures-1)` capped at
/// [`BACKOFF_MAX`], scaled by `jitter` in `[0.5, 1.0]` (values outside are clamped).
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let full = BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX);
    full.mul_f64(jitter.clamp(0.5, 1.0))
}

/// What a link should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send a notice for this window (taken out of the outbox).
    Notice(Window),
    /// Send a heartbeat (an empty notice).
    Probe,
}

/// One peer's outbox and contact state.
#[derive(Debug, Clone, Default)]
pub struct PeerLink {
    /// Records not yet announced to the peer.
    pending: Option<Window>,
    /// Whether `pending` already failed at least once (its delivery is a re-send).
    pending_failed: bool,
    /// Failed attempts in a row (notices and heartbeats).
    failures_in_row: u32,
    /// No attempt before this (back-off after a failure).
    retry_at: Option<Instant>,
    /// No notice before this (debounce after the first new record).
    debounce_until: Option<Instant>,
    /// Last time the peer answered anything.
    last_contact: Option<Instant>,
    /// Last attempt started (notice or heartbeat).
    last_attempt: Option<Instant>,
}

/// What an attempt's outcome means for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A heartbeat was answered.
    Probe,
    /// A notice was delivered on its first attempt.
    First,
    /// A notice was delivered after earlier attempts failed.
    Resent,
}

impl PeerLink {
    /// Notes new records to announce.
    pub fn record(&mut self, now: Instant, w: Window) {
        if self.pending.is_none() {
            self.debounce_until = Some(now + NOTICE_DEBOUNCE);
        }
        self.pending.get_or_insert_with(Window::default).widen(w);
    }

    /// Whether notices are waiting for delivery.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The action due at `now`, if any (a notice is taken out of the outbox; hand it back with
    /// [`PeerLink::failed`] when it could not be delivered).
    pub fn due(&mut self, now: Instant) -> Option<Action> {
        if self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        if self.pending.is_some() {
            if self.debounce_until.is_some_and(|t| now < t) {
                return None;
            }
            self.last_attempt = Some(now);
            return self.pending.take().map(Action::Notice);
        }
        let quiet_since = match (self.last_contact, self.last_attempt) {
            (Some(c), Some(a)) => Some(c.max(a)),
            (c, a) => c.or(a),
        };
        if quiet_since.is_some_and(|t| now < t + PROBE_INTERVAL) {
            return None;
        }
        self.last_attempt = Some(now);
        Some(Action::Probe)
    }

    /// When [`PeerLink::due`] may next return an action (`now` or later).
    pub fn next_wake(&self, now: Instant) -> Instant {
        let mut at = self.retry_at.unwrap_or(now).max(now);
        if self.pending.is_some() {
            at = at.max(self.debounce_until.unwrap_or(now));
        } else {
            let quiet = match (self.last_contact, self.last_attempt) {
                (Some(c), Some(a)) => Some(c.max(a)),
                (c, a) => c.or(a),
            };
            at = at.max(quiet.map_or(now, |t| t + PROBE_INTERVAL));
        }
        at
    }

    /// The peer answered (any HTTP status): contact, back-off reset. `notice` is whether the
    /// attempt carried a window (then it is consumed).
    pub fn answered(&mut self, now: Instant, notice: bool) -> Delivery {
        self.last_contact = Some(now);
        self.failures_in_row = 0;
        self.retry_at = None;
        if !notice {
            return Delivery::Probe;
        }
        let resent = std::mem::take(&mut self.pending_failed);
        // Records stored while the notice was in flight keep their own flag state: they were
        // never attempted.
        if resent {
            Delivery::Resent
        } else {
            Delivery::First
        }
    }

    /// The attempt got no answer: the window (if any) goes back into the outbox and the next
    /// attempt waits the back-off (`jitter` in `[0.5, 1.0]`).
    pub fn failed(&mut self, now: Instant, window: Option<Window>, jitter: f64) {
        if let Some(w) = window {
            self.pending.get_or_insert_with(Window::default).widen(w);
            self.pending_failed = true;
        }
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        self.retry_at = Some(now + backoff(self.failures_in_row, jitter));
    }

    /// Whether the peer answered within `grace` before `now`.
    pub fn reachable(&self, now: Instant, grace: Duration) -> bool {
        self.last_contact
            .is_some_and(|t| now.saturating_duration_since(t) <= grace)
    }

    /// Last time the peer answered.
    pub fn last_contact(&self) -> Option<Instant> {
        self.last_contact
    }

    /// Notes contact made outside the link loop (a history page answered).
    pub fn contact(&mut self, now: Instant) {
        if self.last_contact.is_none_or(|t| t < now) {
            self.last_contact = Some(now);
        }
    }
}

/// What changed when the gate was evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing.
    None,
    /// Contact lost: the gate for slashable duties closed.
    Lost,
    /// Enough peers answer again: pull from all of them now.
    Returned,
}

/// The contact gate for slashable duties (see the module documentation).
#[derive(Debug, Clone)]
pub struct ContactGate {
    required: usize,
    grace: Duration,
    lost_since: Option<Instant>,
    returned_at: Option<Instant>,
    caught_up_from: BTreeSet<String>,
    reachable: usize,
    losses: u64,
    last_recovery: Option<Duration>,
}

impl ContactGate {
    /// A gate that closes when fewer than `required` peers answered within `grace`
    /// (`grace == 0` or `required == 0`: never).
    pub fn new(required: usize, grace: Duration) -> Self {
        Self {
            required,
            grace,
            lost_since: None,
            returned_at: None,
            caught_up_from: BTreeSet::new(),
            reachable: 0,
            losses: 0,
            last_recovery: None,
        }
    }

    /// Re-evaluates with `reachable` peers answering within the grace at `now`.
    pub fn evaluate(&mut self, now: Instant, reachable: usize) -> Transition {
        self.reachable = reachable;
        if self.grace.is_zero() || self.required == 0 {
            return Transition::None;
        }
        let enough = reachable >= self.required;
        match (self.lost_since, self.returned_at) {
            (None, _) if !enough => {
                self.lost_since = Some(now);
                self.returned_at = None;
                self.caught_up_from.clear();
                self.losses += 1;
                Transition::Lost
            }
            (Some(_), None) if enough => {
                self.returned_at = Some(now);
                self.caught_up_from.clear();
                Transition::Returned
            }
            (Some(_), Some(_)) if !enough => {
                // Lost again while catching up: pulls started before count no more.
                self.returned_at = None;
                self.caught_up_from.clear();
                Transition::None
            }
            _ => Transition::None,
        }
    }

    /// A full pull from `peer` that started at `started` was merged at `now`; returns the time
    /// from contact return to reopening when this reopened the gate.
    pub fn merged(
        &mut self,
        peer: &str,
        started: Instant,
        min_peers: usize,
        now: Instant,
    ) -> Option<Duration> {
        let returned = self.returned_at?;
        if started < returned {
            return None;
        }
        self.caught_up_from.insert(peer.to_owned());
        if self.caught_up_from.len() < min_peers {
            return None;
        }
        let took = now.saturating_duration_since(returned);
        self.lost_since = None;
        self.returned_at = None;
        self.caught_up_from.clear();
        self.last_recovery = Some(took);
        Some(took)
    }

    /// Whether the gate is closed.
    pub fn closed(&self) -> bool {
        self.lost_since.is_some()
    }

    /// Whether contact returned and the node is catching up.
    pub fn catching_up(&self) -> bool {
        self.returned_at.is_some()
    }

    /// Why slashable duties are refused, while the gate is closed.
    pub fn reason(&self, now: Instant, min_peers: usize) -> Option<String> {
        let since = self.lost_since?;
        let secs = now.saturating_duration_since(since).as_secs();
        Some(if self.returned_at.is_some() {
            format!(
                "cluster history sync: contact with peers returned; catching up (full pulls merged from {} of the {} peers required) before signing slashable duties again",
                self.caught_up_from.len(),
                min_peers
            )
        } else {
            format!(
                "cluster history sync: lost contact with peers for {secs} s ({} of the {} required answered within {} ms); slashable duties are refused until it caught up",
                self.reachable,
                self.required,
                self.grace.as_millis()
            )
        })
    }

    /// Contact losses since start.
    pub fn losses(&self) -> u64 {
        self.losses
    }

    /// Time from contact return to reopening, of the last recovery.
    pub fn last_recovery(&self) -> Option<Duration> {
        self.last_recovery
    }

    /// Peers required within the grace.
    pub fn required(&self) -> usize {
        self.required
    }

    /// The grace.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Peers that answered within the grace at the last evaluation.
    pub fn reachable(&self) -> usize {
        self.reachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn att(t: u64) -> Window {
        Window::of(SlashableMessage::Attestation {
            source_epoch: 0,
            target_epoch: t,
        })
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_in_the_upper_half() {
        assert_eq!(backoff(1, 1.0), ms(250));
        assert_eq!(backoff(2, 1.0), ms(500));
        assert_eq!(backoff(3, 1.0), ms(1000));
        assert_eq!(backoff(4, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(1000, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(3, 0.5), ms(500));
        assert_eq!(backoff(3, 0.0), ms(500), "jitter clamped to 0.5");
        assert_eq!(backoff(3, 7.0), ms(1000), "jitter clamped to 1.0");
    }

    #[test]
    fn undelivered_notices_merge_into_one_window_and_are_resent_after_backoff() {
        let t0 = Instant::now();
        let mut l = PeerLink::default();
        l.answered(t0, false);
        l.record(t0, att(10));
        assert_eq!(l.due(t0), None, "debounced");
        assert_eq!(l.next_wake(t0), t0 + NOTICE_DEBOUNCE);
        let t1 = t0 + NOTICE_DEBOUNCE;
        let Some(Action::Notice(w)) = l.due(t1) else {
            panic!("notice due")
        };
        assert_eq!(w, att(10));
        assert!(!l.has_pending(), "taken out while in flight");
        // Stored while in flight, then the attempt fails: both are pending, as one window.
        l.record(t1, att(12));
        l.failed(t1 + ms(100), Some(w), 1.0);
        assert!(l.has_pending());
        let retry = t1 + ms(100) + ms(250);
        assert_eq!(l.due(retry - ms(1)), None, "back-off");
        assert_eq!(l.next_wake(t1 + ms(100)), retry);
        // Thousands of records while away: still one window, the lowest of each kind.
        for t in 13..5000 {
            l.record(retry, att(t));
        }
        l.record(retry, Window::of(SlashableMessage::Block { slot: 77 }));
        let Some(Action::Notice(w)) = l.due(retry) else {
            panic!("re-send due")
        };
        assert_eq!(
            w,
            Window {
                min_slot: Some(77),
                min_target_epoch: Some(10)
            }
        );
        // Second failure: the back-off doubles.
        l.failed(retry, Some(w), 1.0);
        assert_eq!(l.due(retry + ms(499)), None);
        let Some(Action::Notice(w2)) = l.due(retry + ms(500)) else {
            panic!("second re-send due")
        };
        assert_eq!(w2, w);
        assert_eq!(l.answered(retry + ms(600), true), Delivery::Resent);
        assert!(!l.has_pending());
        // The next notice is a first delivery again.
        l.record(retry + ms(700), att(6000));
        let t = retry + ms(700) + NOTICE_DEBOUNCE;
        assert!(matches!(l.due(t), Some(Action::Notice(_))));
        assert_eq!(l.answered(t, true), Delivery::First);
    }

    #[test]
    fn heartbeats_only_when_quiet_and_one_attempt_at_a_time() {
        let t0 = Instant::now();
        let mut l = PeerLink::default();
        assert_eq!(l.due(t0), Some(Action::Probe), "never heard of: probe now");
        assert_eq!(l.due(t0), None, "attempt in flight counts as activity");
        l.answered(t0 + ms(10), false);
        assert_eq!(l.due(t0 + ms(900)), None);
        assert_eq!(l.next_wake(t0 + ms(900)), t0 + ms(10) + PROBE_INTERVAL);
        assert_eq!(l.due(t0 + ms(1010)), Some(Action::Probe));
        // Unreachable: failures back off up to the cap, never faster.
        let mut now = t0 + ms(1010);
        let mut attempts = 1;
        for _ in 0..20 {
            l.failed(now, None, 1.0);
            now = l.next_wake(now);
            assert_eq!(l.due(now), Some(Action::Probe));
            attempts += 1;
        }
        assert_eq!(attempts, 21);
        assert!(now - (t0 + ms(1010)) >= BACKOFF_MAX * 16, "{:?}", now - t0);
        assert!(!l.reachable(now, Duration::from_secs(3)));
        l.answered(now, false);
        assert!(l.reachable(now + Duration::from_secs(3), Duration::from_secs(3)));
        assert!(!l.reachable(now + ms(3001), Duration::from_secs(3)));
    }

    #[test]
    fn gate_closes_on_lost_contact_and_reopens_only_after_fresh_full_pulls() {
        let t0 = Instant::now();
        let mut g = ContactGate::new(2, Duration::from_secs(3));
        assert_eq!(g.evaluate(t0, 3), Transition::None);
        assert!(!g.closed());
        assert_eq!(g.evaluate(t0 + ms(100), 2), Transition::None);
        assert_eq!(g.evaluate(t0 + ms(200), 1), Transition::Lost);
        assert!(g.closed());
        assert!(g.reason(t0, 2).expect("closed").contains("lost contact"));
        assert_eq!(g.evaluate(t0 + ms(300), 0), Transition::None);
        // A pull merged while contact is still lost does not count.
        assert_eq!(g.merged("node-a", t0 + ms(250), 2, t0 + ms(400)), None);
        assert_eq!(g.evaluate(t0 + ms(1000), 2), Transition::Returned);
        assert!(g.catching_up());
        // Pulls started before contact returned do not count either.
        assert_eq!(g.merged("node-a", t0 + ms(999), 2, t0 + ms(1100)), None);
        assert_eq!(g.merged("node-a", t0 + ms(1000), 2, t0 + ms(1200)), None);
        assert!(g.closed());
        assert!(g.reason(t0, 2).expect("closed").contains("catching up"));
        // The same peer twice is still one peer.
        assert_eq!(g.merged("node-a", t0 + ms(1001), 2, t0 + ms(1250)), None);
        assert_eq!(
            g.merged("node-b", t0 + ms(1000), 2, t0 + ms(1300)),
            Some(ms(300))
        );
        assert!(!g.closed());
        assert_eq!(g.last_recovery(), Some(ms(300)));
        assert_eq!(g.losses(), 1);
        // Flapping while catching up restarts the catch-up.
        assert_eq!(g.evaluate(t0 + ms(2000), 0), Transition::Lost);
        assert_eq!(g.evaluate(t0 + ms(2100), 2), Transition::Returned);
        assert_eq!(g.merged("node-a", t0 + ms(2100), 2, t0 + ms(2200)), None);
        assert_eq!(g.evaluate(t0 + ms(2300), 1), Transition::None);
        assert!(!g.catching_up());
        assert_eq!(g.evaluate(t0 + ms(2400), 2), Transition::Returned);
        assert_eq!(g.merged("node-b", t0 + ms(2400), 2, t0 + ms(2500)), None);
        assert!(g.closed(), "node-a's pull was before the second return");
        assert_eq!(g.losses(), 2);
    }

    #[test]
    fn gate_disabled_by_zero_grace_or_zero_required() {
        let t0 = Instant::now();
        let mut g = ContactGate::new(2, Duration::ZERO);
        assert_eq!(g.evaluate(t0, 0), Transition::None);
        assert!(!g.closed());
        let mut g = ContactGate::new(0, Duration::from_secs(3));
        assert_eq!(g.evaluate(t0, 0), Transition::None);
        assert!(!g.closed());
    }
}
