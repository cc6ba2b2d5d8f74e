//! Progress of long work: done/total counters shared with the workers, and reporters that say
//! how far along the work is every [`interval`] (default 10 s, `DVSIGNER_PROGRESS_INTERVAL_MS`
//! overrides it): log lines with structured fields in a server (key loading at start and on
//! `/reload`), and on a command-line tool's terminal a progress bar when stderr is a TTY, plain
//! periodic lines otherwise.
//!
//! Invariants: workers only do atomic adds; reporters run on their own thread and stop (joined)
//! when their handle drops; nothing here sees what is being processed, only counts.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Whether plain progress lines go to the log (one record each) instead of straight to stderr.
static LINES_AS_LOG: AtomicBool = AtomicBool::new(false);

/// Sends the plain (non-terminal) progress lines of [`TermProgress`] through `tracing` as INFO
/// records instead of writing them to stderr, so a process logging JSON (`--log-format json`)
/// keeps one JSON object per line. Set once by the binary before any work starts.
pub fn lines_as_log(on: bool) {
    LINES_AS_LOG.store(on, Ordering::Relaxed);
}

/// Writes one plain progress line (see [`lines_as_log`]).
fn plain_line(line: &str) {
    if LINES_AS_LOG.load(Ordering::Relaxed) {
        tracing::info!(target: "dvsigner::progress", "{line}");
    } else {
        eprintln!("{line}");
    }
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

    /// Items known so far, as set (without raising it to `done` as [`Progress::snapshot`] does):
    /// 0 while the size of the work is not known.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Items finished so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
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
///
/// The counters may be advanced through [`TermProgress::inc`] or by another thread holding
/// [`TermProgress::counter`] (e.g. a database writer): the bar follows the counters (polled
/// every 100 ms), turning from a spinner into a bar once a total is known. An optional second
/// count ([`TermProgress::start_counting_also`], e.g. records besides validators) is appended
/// to each line as `, D/T unit` (or `, D unit` while its total is 0).
pub struct TermProgress {
    label: String,
    unit: &'static str,
    progress: Arc<Progress>,
    also: Option<(&'static str, Arc<Progress>)>,
    bar: Option<indicatif::ProgressBar>,
    reporter: Option<Reporter>,
}

/// How often a bar reads counters advanced by other threads.
const BAR_POLL: Duration = Duration::from_millis(100);

/// `, 12/30 records` (or `, 12 records` while the total is unknown).
fn describe_also(also: Option<&(&'static str, Arc<Progress>)>) -> String {
    match also {
        None => String::new(),
        Some((unit, p)) => match (p.done(), p.total()) {
            (done, 0) => format!(", {done} {unit}"),
            (done, total) => format!(", {done}/{} {unit}", total.max(done)),
        },
    }
}

/// A bar's message: `label (12/30 records)`, or `label` without a second count.
fn bar_message(label: &str, also: Option<&(&'static str, Arc<Progress>)>) -> String {
    match describe_also(also).strip_prefix(", ") {
        Some(count) => format!("{label} ({count})"),
        None => label.to_owned(),
    }
}

fn bar_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, ETA {eta})")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl TermProgress {
    /// Starts showing `label` for `total` items of `unit` (e.g. `keystores`); `total` 0 means
    /// unknown (a spinner with the elapsed time until [`Progress::add_total`] sets one).
    pub fn start(label: &str, unit: &'static str, total: u64) -> Self {
        Self::start_inner(label, unit, total, None)
    }

    /// As [`TermProgress::start`], also showing a second count of `also_unit` (see
    /// [`TermProgress::also_counter`]).
    pub fn start_counting_also(
        label: &str,
        unit: &'static str,
        total: u64,
        also_unit: &'static str,
    ) -> Self {
        Self::start_inner(
            label,
            unit,
            total,
            Some((also_unit, Arc::new(Progress::new(0)))),
        )
    }

    fn start_inner(
        label: &str,
        unit: &'static str,
        total: u64,
        also: Option<(&'static str, Arc<Progress>)>,
    ) -> Self {
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
                bar.set_style(bar_style());
                bar
            };
            bar.set_message(bar_message(label, also.as_ref()));
            bar.enable_steady_tick(Duration::from_millis(200));
            let (polled, name, also) = (bar.clone(), label.to_owned(), also.clone());
            let sync = Reporter::spawn(Arc::clone(&progress), BAR_POLL, move |s| {
                if s.total > 0 && polled.length() != Some(s.total) {
                    if polled.length().is_none() {
                        polled.set_style(bar_style());
                    }
                    polled.set_length(s.total);
                }
                polled.set_position(s.done);
                if also.is_some() {
                    polled.set_message(bar_message(&name, also.as_ref()));
                }
            });
            (Some(bar), Some(sync))
        } else {
            let (name, also) = (label.to_owned(), also.clone());
            let reporter = Reporter::spawn(Arc::clone(&progress), interval(), move |s| {
                let also = describe_also(also.as_ref());
                if s.total == 0 {
                    plain_line(&format!(
                        "{name}: working, {} s elapsed{also}",
                        s.elapsed.as_secs()
                    ));
                } else {
                    plain_line(&format!("{name}: {}{also}", s.describe(unit)));
                }
            });
            (None, Some(reporter))
        };
        Self {
            label: label.to_owned(),
            unit,
            progress,
            also,
            bar,
            reporter,
        }
    }

    /// The counters, for a worker on another thread to advance (and to set the total of work
    /// whose size it discovers).
    pub fn counter(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// The second count's counters, when started with
    /// [`TermProgress::start_counting_also`].
    pub fn also_counter(&self) -> Option<Arc<Progress>> {
        self.also.as_ref().map(|(_, p)| Arc::clone(p))
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
        let also = describe_also(self.also.as_ref());
        match self.bar.take() {
            Some(bar) => bar.finish_and_clear(),
            None if s.total == 0 => plain_line(&format!(
                "{}: done in {} s{also}",
                self.label,
                s.elapsed.as_secs()
            )),
            None => plain_line(&format!(
                "{}: done, {}{also}",
                self.label,
                s.describe(self.unit)
            )),
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
    fn second_count_shows_its_total_only_once_known() {
        let also = ("records", Arc::new(Progress::new(0)));
        also.1.inc(7);
        assert_eq!(describe_also(Some(&also)), ", 7 records");
        assert_eq!(bar_message("export", Some(&also)), "export (7 records)");
        also.1.add_total(30);
        assert_eq!(describe_also(Some(&also)), ", 7/30 records");
        assert_eq!(describe_also(None), "");
        assert_eq!(bar_message("split", None), "split");
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
