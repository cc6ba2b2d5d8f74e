//! Per-node health as the combiner sees it: healthy, or backed off after consecutive transport
//! failures.
//!
//! - A transport failure is a request that got no HTTP answer: connection refused or reset,
//!   TLS failure, connect or request timeout, connection closed before the answer. After
//!   [`HealthSettings::failures_to_back_off`] of them in a row the node is *backed off*: sign
//!   requests are no longer sent to it (see the selection rule in `combine_from_nodes`), and a
//!   probe (`GET /upcheck` over the same mutual-TLS client) runs after
//!   [`HealthSettings::probe_initial`], doubling up to [`HealthSettings::probe_max`].
//! - Any HTTP answer (a partial, a 412 refusal, an error status) or a successful probe ends the
//!   streak and lets a backed-off node back in at once. An error status does not back a node
//!   off: the node is reachable, and the answer is about the request or the node's own state.
//! - A failure of a request that was sent before the node last came back is stale (it says
//!   nothing about the node now) and does not count towards the next back-off.
//!
//! State changes are logged once each (the caller logs the [`Transition`] returned); the
//! counters behind `dvsigner_combiner_node_up` and `dvsigner_combiner_node_skipped_total` live
//! here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Back-off and probe settings (CLI: `--node-backoff-failures`, `--node-probe-initial-ms`,
/// `--node-probe-max-ms`, `--node-down-summary-secs`).
#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    /// Consecutive transport failures that back a node off (at least 1).
    pub failures_to_back_off: u32,
    /// Wait before the first probe of a backed-off node.
    pub probe_initial: Duration,
    /// Longest wait between probes (the wait doubles after each failed probe).
    pub probe_max: Duration,
    /// How often a summary line is logged while any node is backed off.
    pub summary_every: Duration,
}

/// Default consecutive transport failures after which a node is backed off.
pub const DEFAULT_NODE_BACKOFF_FAILURES: u32 = 3;
/// Default wait before the first probe of a backed-off node, in milliseconds.
pub const DEFAULT_NODE_PROBE_INITIAL_MS: u64 = 500;
/// Default longest wait between probes of a backed-off node, in milliseconds.
pub const DEFAULT_NODE_PROBE_MAX_MS: u64 = 10_000;
/// Default seconds between summary lines per backed-off node.
pub const DEFAULT_NODE_DOWN_SUMMARY_SECS: u64 = 60;

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            failures_to_back_off: DEFAULT_NODE_BACKOFF_FAILURES,
            probe_initial: Duration::from_millis(DEFAULT_NODE_PROBE_INITIAL_MS),
            probe_max: Duration::from_millis(DEFAULT_NODE_PROBE_MAX_MS),
            summary_every: Duration::from_secs(DEFAULT_NODE_DOWN_SUMMARY_SECS),
        }
    }
}

/// What a recorded outcome changed (to be logged once by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Nothing to log.
    None,
    /// The node was backed off: `failures` consecutive transport failures, the latest `cause`.
    WentDown {
        /// Consecutive transport failures.
        failures: u32,
        /// The latest failure.
        cause: String,
        /// Identifies this back-off period (for its probe loop).
        generation: u64,
    },
    /// A backed-off node answered (or its probe succeeded).
    CameBack {
        /// How long it was backed off.
        downtime: Duration,
        /// Requests not sent to it meanwhile.
        skipped: u64,
    },
    /// A healthy node answered with an error status after answering normally.
    StartedErroring(String),
    /// A node that answered with error statuses answered normally again.
    StoppedErroring,
}

#[derive(Debug)]
struct Down {
    since: Instant,
    since_wall: SystemTime,
    failures: u32,
    cause: String,
    next_probe: Instant,
    wait: Duration,
    skipped_before: u64,
    generation: u64,
}

#[derive(Debug, Default)]
struct State {
    consecutive: u32,
    down: Option<Down>,
    back_at: Option<Instant>,
    erroring: bool,
    generations: u64,
}

/// One node's health.
#[derive(Debug, Default)]
pub struct NodeHealth {
    state: Mutex<State>,
    backed_off: AtomicBool,
    skipped: AtomicU64,
}

/// What the periodic summary says about a backed-off node.
#[derive(Debug, Clone)]
pub struct DownSummary {
    /// How long it has been backed off.
    pub down_for: Duration,
    /// Requests not sent to it since.
    pub skipped: u64,
    /// The latest failure (request or probe).
    pub cause: String,
    /// Consecutive failures so far.
    pub failures: u32,
}

impl NodeHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere (every update is complete).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether requests are not being sent to this node.
    pub fn is_backed_off(&self) -> bool {
        self.backed_off.load(Ordering::Relaxed)
    }

    /// Requests not sent to this node because it was backed off (ever).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Counts one request not sent to this node.
    pub fn count_skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// A request sent at `sent` got no HTTP answer.
    pub fn record_transport_failure(
        &self,
        sent: Instant,
        cause: &str,
        settings: &HealthSettings,
        now: Instant,
    ) -> Transition {
        let mut s = self.lock();
        if s.back_at.is_some_and(|back| sent < back) {
            return Transition::None;
        }
        s.consecutive = s.consecutive.saturating_add(1);
        if let Some(d) = s.down.as_mut() {
            d.cause = cause.to_owned();
            return Transition::None;
        }
        if s.consecutive < settings.failures_to_back_off.max(1) {
            return Transition::None;
        }
        s.generations += 1;
        let generation = s.generations;
        let failures = s.consecutive;
        s.down = Some(Down {
            since: now,
            since_wall: SystemTime::now(),
            failures,
            cause: cause.to_owned(),
            next_probe: now + settings.probe_initial,
            wait: settings.probe_initial,
            skipped_before: self.skipped(),
            generation,
        });
        self.backed_off.store(true, Ordering::Relaxed);
        Transition::WentDown {
            failures,
            cause: cause.to_owned(),
            generation,
        }
    }

    /// The node answered over HTTP (or a probe succeeded). `error` is the description of an
    /// error status, `None` for a partial, a refusal or a successful probe.
    pub fn record_answer(&self, error: Option<&str>, now: Instant) -> Transition {
        let mut s = self.lock();
        s.consecutive = 0;
        if let Some(d) = s.down.take() {
            s.back_at = Some(now);
            s.erroring = error.is_some();
            self.backed_off.store(false, Ordering::Relaxed);
            return Transition::CameBack {
                downtime: now.saturating_duration_since(d.since),
                skipped: self.skipped().saturating_sub(d.skipped_before),
            };
        }
        match (error, s.erroring) {
            (Some(e), false) => {
                s.erroring = true;
                Transition::StartedErroring(e.to_owned())
            }
            (None, true) => {
                s.erroring = false;
                Transition::StoppedErroring
            }
            _ => Transition::None,
        }
    }

    /// When the probe of back-off period `generation` is due; `None` once that period ended.
    pub fn probe_due(&self, generation: u64) -> Option<Instant> {
        let s = self.lock();
        s.down
            .as_ref()
            .filter(|d| d.generation == generation)
            .map(|d| d.next_probe)
    }

    /// A probe failed with `cause`: the wait until the next one doubles (up to the maximum).
    pub fn record_probe_failure(&self, cause: &str, settings: &HealthSettings, now: Instant) {
        let mut s = self.lock();
        s.consecutive = s.consecutive.saturating_add(1);
        if let Some(d) = s.down.as_mut() {
            d.wait = (d.wait * 2).min(settings.probe_max.max(settings.probe_initial));
            d.next_probe = now + d.wait;
            d.cause = cause.to_owned();
        }
    }

    /// The 503 cause of a request not sent to this node, or `None` when it is not backed off:
    /// "backed off since 12:00:01 UTC after 3 consecutive failures: connection refused (...);
    /// next probe in 2 s".
    pub fn describe_backed_off(&self, now: Instant) -> Option<String> {
        let s = self.lock();
        let d = s.down.as_ref()?;
        let next = d.next_probe.saturating_duration_since(now);
        Some(format!(
            "backed off since {} after {} consecutive failures: {}; next probe in {}",
            wall_clock_utc(d.since_wall),
            d.failures,
            d.cause,
            human_duration(next),
        ))
    }

    /// What the periodic summary says, or `None` when the node is not backed off.
    pub fn summary(&self, now: Instant) -> Option<DownSummary> {
        let s = self.lock();
        let d = s.down.as_ref()?;
        Some(DownSummary {
            down_for: now.saturating_duration_since(d.since),
            skipped: self.skipped().saturating_sub(d.skipped_before),
            cause: d.cause.clone(),
            failures: s.consecutive,
        })
    }
}

/// `t` as "HH:MM:SS UTC".
pub fn wall_clock_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        (day % 3600) / 60,
        day % 60
    )
}

/// A duration for people: "350 ms", "2 s", "3m12s", "2h05m".
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let secs = d.as_secs_f64().round() as u64;
    if secs < 60 {
        format!("{secs} s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HealthSettings {
        HealthSettings {
            failures_to_back_off: 3,
            probe_initial: Duration::from_millis(500),
            probe_max: Duration::from_secs(2),
            summary_every: Duration::from_secs(60),
        }
    }

    #[test]
    fn backs_off_after_k_transport_failures_and_comes_back_on_any_answer() {
        let h = NodeHealth::default();
        let s = settings();
        let t0 = Instant::now();
        assert_eq!(
            h.record_transport_failure(t0, "refused", &s, t0),
            Transition::None
        );
        // An answer in between resets the streak.
        assert_eq!(h.record_answer(None, t0), Transition::None);
        for _ in 0..2 {
            assert_eq!(
                h.record_transport_failure(t0, "refused", &s, t0),
                Transition::None
            );
        }
        assert!(!h.is_backed_off());
        let went = h.record_transport_failure(t0, "connection refused", &s, t0);
        assert!(
            matches!(&went, Transition::WentDown { failures: 3, cause, .. } if cause == "connection refused"),
            "{went:?}"
        );
        assert!(h.is_backed_off());
        // Further failures while down change nothing visible (no second "down").
        assert_eq!(
            h.record_transport_failure(t0, "reset", &s, t0),
            Transition::None
        );
        h.count_skip();
        h.count_skip();
        let why = h.describe_backed_off(t0).expect("backed off");
        assert!(
            why.starts_with("backed off since ")
                && why.contains(" UTC after 3 consecutive failures: reset; next probe in 500 ms"),
            "{why}"
        );
        let later = t0 + Duration::from_secs(192);
        let sum = h.summary(later).expect("down");
        assert_eq!((sum.down_for, sum.skipped), (Duration::from_secs(192), 2));
        assert_eq!(
            h.record_answer(Some("HTTP 500"), later),
            Transition::CameBack {
                downtime: Duration::from_secs(192),
                skipped: 2
            }
        );
        assert!(!h.is_backed_off() && h.describe_backed_off(later).is_none());
        // A failure of a request sent before the node came back is stale.
        assert_eq!(
            h.record_transport_failure(t0, "refused", &s, later),
            Transition::None
        );
        for _ in 0..2 {
            h.record_transport_failure(later, "refused", &s, later);
        }
        assert!(!h.is_backed_off(), "stale failures counted");
    }

    #[test]
    fn probes_back_off_exponentially_up_to_the_maximum() {
        let h = NodeHealth::default();
        let s = settings();
        let t0 = Instant::now();
        let mut generation = 0;
        for _ in 0..3 {
            if let Transition::WentDown { generation: g, .. } =
                h.record_transport_failure(t0, "x", &s, t0)
            {
                generation = g;
            }
        }
        assert_eq!(
            h.probe_due(generation),
            Some(t0 + Duration::from_millis(500))
        );
        assert_eq!(h.probe_due(generation + 1), None);
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..4 {
            h.record_probe_failure("y", &s, now);
            let due = h.probe_due(generation).expect("still down");
            waits.push(due - now);
            now = due;
        }
        assert_eq!(
            waits,
            [1000, 2000, 2000, 2000].map(Duration::from_millis).to_vec()
        );
        assert!(matches!(
            h.record_answer(None, now),
            Transition::CameBack { .. }
        ));
        assert_eq!(h.probe_due(generation), None);
    }

    #[test]
    fn error_statuses_are_logged_once_per_streak_and_never_back_off() {
        let h = NodeHealth::default();
        let t0 = Instant::now();
        assert_eq!(
            h.record_answer(Some("HTTP 500"), t0),
            Transition::StartedErroring("HTTP 500".into())
        );
        for _ in 0..10 {
            assert_eq!(h.record_answer(Some("HTTP 500"), t0), Transition::None);
        }
        assert!(!h.is_backed_off());
        assert_eq!(h.record_answer(None, t0), Transition::StoppedErroring);
    }

    #[test]
    fn durations_and_clock_read_well() {
        assert_eq!(human_duration(Duration::from_millis(350)), "350 ms");
        assert_eq!(human_duration(Duration::from_millis(2_400)), "2 s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(human_duration(Duration::from_secs(7_500)), "2h05m");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 12 * 3600 + 61);
        assert_eq!(wall_clock_utc(t), "12:01:01 UTC");
    }
}
