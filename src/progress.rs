//! Progress of long work: done/total counters shared with the workers, and reporters that say
//! how far along the work is every [`interval`] (default 10 s, `DVSIGNER_PROGRESS_INTERVAL_MS`
//! overrides it): log lines with structured fields in a server (key loading at start and on
//! `/reload`), and on a command-line tool's terminal a progress bar when stderr is a TTY, plain
//! periodic lines otherwise.
//!
//! Invariants: workers only do atomic adds; reporters run on their own thread and stop (joined)
//! when their handle drops; nothing here sees what is being processed, only counts.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

/// Environment variable overriding the reporting interval, in milliseconds.
pub const INTERVAL_ENV: &str = "DVSIGNER_PROGRESS_INTERVAL_MS";

/// Default reporting interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The reporting interval: [`INTERVAL_ENV`] when it holds a positive number of milliseconds,
/// otherwise [`DEFAULT_INTERVAL`].
pub fn interval() -> Duration {
    std::env::var(INTERVAL_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_INTERVAL, Duration::from_millis)
}

/// Counters of one piece of long work.
#[derive(Debug)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    started: Instant,
    gauges: Option<(Gauge, Gauge)>,
}

/// A reading of a [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Items finished.
    pub done: u64,
    /// Items known so far.
    pub total: u64,
    /// Time since the work started.
    pub elapsed: Duration,
    /// Items per second so far (0 before the first).
    pub per_second: f64,
    /// Seconds left at the rate so far (`None` before the first item).
    pub eta_seconds: Option<u64>,
}

impl Progress {
    /// New counters at 0/`total`.
    pub fn new(total: u64) -> Self {
        Self {
            done: AtomicU64::new(0),
            total: AtomicU64::new(total),
            started: Instant::now(),
            gauges: None,
        }
    }

    /// New counters that also set `total_gauge` and `done_gauge` (metrics) as they move.
    pub fn with_gauges(total: u64, total_gauge: Gauge, done_gauge: Gauge) -> Self {
        total_gauge.set(i64::try_from(total).unwrap_or(i64::MAX));
        done_gauge.set(0);
        Self {
            gauges: Some((total_gauge, done_gauge)),
            ..Self::new(total)
        }
    }

    /// More items to do (work whose size is discovered as it goes).
    pub fn add_total(&self, n: u64) {
        let total = self.total.fetch_add(n, Ordering::Relaxed) + n;
        if let Some((gauge, _)) = &self.gauges {
            gauge.set(i64::try_from(total).unwrap_or(i64::MAX));
        }
    }

    /// `n` more items finished.
    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some((_, gauge)) = &self.gauges {
            gauge.set(i64::try_from(done).unwrap_or(i64::MAX));
        }
    }

    /// The counters now, with the rate and the estimated time left.
    pub fn snapshot(&self) -> Snapshot {
        let done = self.done.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed).max(done);
        let elapsed = self.started.elapsed();
        let secs = elapsed.as_secs_f64();
        let per_second = if done == 0 || secs == 0.0 {
            0.0
        } else {
            done as f64 / secs
        };
        let eta_seconds =
            (per_second > 0.0).then(|| ((total - done) as f64 / per_second).ceil() as u64);
        Snapshot {
            done,
            total,
            elapsed,
            per_second,
            eta_seconds,
        }
    }
}

impl Snapshot {
    /// `3/10 (1.5/s, ETA 5 s)`, the form of the plain lines.
    pub fn describe(&self, unit: &str) -> String {
        let eta = self
            .eta_seconds
            .map_or_else(|| "ETA unknown".to_owned(), |s| format!("ETA {s} s"));
        format!(
            "{}/{} ({:.1} {unit}/s, {eta}, {} s elapsed)",
            self.done,
            self.total,
            self.per_second,
            self.elapsed.as_secs()
        )
    }
}

/// Calls a report function every interval on its own thread until dropped.
pub struct Reporter {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    /// Starts reporting `progress` every `every` (first report after one interval).
    pub fn spawn(
        progress: Arc<Progress>,
        every: Duration,
        report: impl Fn(&Snapshot) + Send + 'static,
    ) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let (lock, cvar) = &*signal;
                let Ok(mut stopped) = lock.lock() else {
                    return;
                };
                loop {
                    let deadline = Instant::now() + every;
                    // Wait out the interval, waking early only to stop.
                    while !*stopped {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match cvar.wait_timeout(stopped, left) {
                            Ok((guard, _)) => stopped = guard,
                            Err(_) => return,
                        }
                    }
                    if *stopped {
                        return;
                    }
                    report(&progress.snapshot());
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.stop;
        if let Ok(mut stopped) = lock.lock() {
            *stopped = true;
        }
        cvar.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Progress of a command-line tool on stderr: an `indicatif` bar on a terminal, otherwise a
/// plain line every [`interval`] and one when the work ends.
pub struct TermProgress {
    label: String,
    unit: &'static str,
    progress: Arc<Progress>,
    bar: Option<indicatif::ProgressBar>,
    reporter: Option<Reporter>,
}

impl TermProgress {
    /// Starts showing `label` for `total` items of `unit` (e.g. `keystores`); `total` 0 means
    /// unknown (a spinner with the elapsed time).
    pub fn start(label: &str, unit: &'static str, total: u64) -> Self {
        let progress = Arc::new(Progress::new(total));
        let (bar, reporter) = if std::io::stderr().is_terminal() {
            let bar = if total == 0 {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar
            } else {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:30}] {pos}/{len} ({per_sec}, ETA {eta})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar
            };
            bar.set_message(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            (Some(bar), None)
        } else {
            let name = label.to_owned();
            let reporter = Reporter::spawn(Arc::clone(&progress), interval(), move |s| {
                if s.total == 0 {
                    eprintln!("{name}: working, {} s elapsed", s.elapsed.as_secs());
                } else {
                    eprintln!("{name}: {}", s.describe(unit));
                }
            });
            (None, Some(reporter))
        };
        Self {
            label: label.to_owned(),
            unit,
            progress,
            bar,
            reporter,
        }
    }

    /// `n` more items finished.
    pub fn inc(&self, n: u64) {
        self.progress.inc(n);
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Ends the display: clears the bar, or prints the final plain line.
    pub fn finish(mut self) {
        self.reporter.take();
        let s = self.progress.snapshot();
        match self.bar.take() {
            Some(bar) => bar.finish_and_clear(),
            None if s.total == 0 => {
                eprintln!("{}: done in {} s", self.label, s.elapsed.as_secs())
            }
            None => eprintln!("{}: done, {}", self.label, s.describe(self.unit)),
        }
    }
}

impl Drop for TermProgress {
    fn drop(&mut self) {
        self.reporter.take();
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_rate_and_eta() {
        let p = Progress::new(10);
        assert_eq!(p.snapshot().eta_seconds, None);
        p.inc(5);
        std::thread::sleep(Duration::from_millis(20));
        let s = p.snapshot();
        assert_eq!((s.done, s.total), (5, 10));
        assert!(s.per_second > 0.0);
        assert!(s.eta_seconds.is_some());
        p.add_total(5);
        assert_eq!(p.snapshot().total, 15);
    }

    #[test]
    fn gauges_follow_the_counters() {
        let (total, done) = (Gauge::default(), Gauge::default());
        let p = Progress::with_gauges(4, total.clone(), done.clone());
        p.add_total(2);
        p.inc(3);
        assert_eq!((total.get(), done.get()), (6, 3));
    }

    #[test]
    fn reporter_reports_periodically_and_stops_when_dropped() {
        let p = Arc::new(Progress::new(3));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let reporter = Reporter::spawn(Arc::clone(&p), Duration::from_millis(10), move |s| {
            if let Ok(mut v) = sink.lock() {
                v.push(s.done);
            }
        });
        p.inc(1);
        let start = Instant::now();
        while seen.lock().map(|v| v.len()).unwrap_or(0) < 2 {
            assert!(start.elapsed() < Duration::from_secs(10), "no reports");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(reporter);
        let n = seen.lock().map(|v| v.len()).unwrap_or(0);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(seen.lock().map(|v| v.len()).unwrap_or(0), n);
    }
}
