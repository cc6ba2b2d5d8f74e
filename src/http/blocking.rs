//! The bridge from async handlers to CPU-bound BLS work: one thread per core taking jobs from a
//! shared queue, and a oneshot channel back to the awaiting task, so that signing, combining and
//! verifying never run on the async reactor.
//!
//! An idle thread sleeps on a condition variable and is woken only when a job arrives and no
//! thread is awake to take it; a busy thread takes the next job without any system call. (A
//! work-stealing pool such as rayon's spins with `sched_yield` before sleeping, which under a
//! stream of short jobs burns CPU time the signatures need.)
//!
//! A producer whose own work comes in batches that get cheaper the larger they are (the
//! slashing writer: one transaction and one fsync per batch) can follow the pool's backlog
//! through a [`PoolLoad`]: it holds its batch open while the pool has work queued and hands it
//! over when the pool is about to run out.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::Instant;

use super::ApiError;

/// Work for the pool: computed on a pool thread, then delivered (its result sent to the awaiting
/// task, which wakes the async runtime). The two steps are apart so that a busy thread can
/// deliver several results at once (see [`BlockingPool::holding_results`]).
trait Task: Send {
    fn compute(&mut self);
    fn deliver(self: Box<Self>);
}

type Job = Box<dyn Task>;

/// A closure's task: its result waits in `out` between the two steps.
struct Call<F, T> {
    f: Option<F>,
    out: Option<T>,
    reply: Option<tokio::sync::oneshot::Sender<T>>,
}

impl<F: FnOnce() -> T + Send, T: Send> Task for Call<F, T> {
    fn compute(&mut self) {
        if let Some(f) = self.f.take() {
            self.out = Some(f());
        }
    }

    fn deliver(mut self: Box<Self>) {
        if let (Some(out), Some(reply)) = (self.out.take(), self.reply.take()) {
            let _ = reply.send(out);
        }
    }
}

/// What a pool thread gets from the queue.
enum Next {
    /// A job, and how many stay queued after it.
    Job(Job, usize),
    /// Nothing queued, for a thread that holds results: it delivers them before it sleeps.
    Empty,
    /// The pool was dropped and the queue is empty.
    Closed,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Threads waiting on the condition variable.
    sleeping: usize,
    /// Of those, how many were notified and have not woken yet.
    notified: usize,
    /// Set when the pool is dropped: threads exit once the queue is empty.
    closed: bool,
    /// Producers waiting in [`PoolLoad::wait_until_short`].
    short_waiters: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Signalled when the queue gets short while a producer waits for that.
    short: Condvar,
    /// A queue of at most this many jobs is short: the threads will soon need more work.
    short_len: usize,
    /// Results a thread may hold while the queue is long (1: each is delivered at once).
    hold: usize,
}

impl Shared {
    /// More jobs queued than [`Shared::short_len`], in a pool that still runs.
    fn is_long(&self, q: &Queue) -> bool {
        q.jobs.len() > self.short_len && !q.closed
    }

    /// The next job; a thread that `holds` results gets [`Next::Empty`] instead of sleeping.
    fn next(&self, holds: bool) -> Next {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(job) = q.jobs.pop_front() {
                if q.short_waiters > 0 && q.jobs.len() <= self.short_len {
                    self.short.notify_all();
                }
                return Next::Job(job, q.jobs.len());
            }
            if holds {
                return Next::Empty;
            }
            if q.closed {
                return Next::Closed;
            }
            q.sleeping += 1;
            q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            q.sleeping -= 1;
            q.notified = q.notified.saturating_sub(1);
        }
    }
}

/// A pool for CPU-bound work awaited from handlers.
pub struct BlockingPool {
    shared: Arc<Shared>,
    threads: usize,
    /// What the pool runs, for the error when a task is lost (`signing`, `combine`).
    what: &'static str,
}

impl std::fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingPool")
            .field("what", &self.what)
            .field("threads", &self.threads)
            .finish()
    }
}

impl BlockingPool {
    /// One thread per core, named `{thread_prefix}-{i}`; `what` names the work in errors.
    ///
    /// # Errors
    /// When the threads cannot be created.
    pub fn new(thread_prefix: &'static str, what: &'static str) -> std::io::Result<Self> {
        Self::holding_results(thread_prefix, what, 1)
    }

    /// Like [`BlockingPool::new`], but while more jobs are queued than the pool has threads, a
    /// thread delivers its results `hold` at a time (or as soon as the queue gets short). Each
    /// delivery may wake the async runtime, and on a machine whose cores are all signing every
    /// wake-up preempts a signature: under saturation this trades up to `hold - 1` job
    /// durations of latency (requests then wait in the queue far longer anyway) for that many
    /// fewer wake-ups. Below saturation every result is delivered at once.
    ///
    /// # Errors
    /// When the threads cannot be created.
    pub fn holding_results(
        thread_prefix: &'static str,
        what: &'static str,
        hold: usize,
    ) -> std::io::Result<Self> {
        Self::start(thread_prefix, what, num_cpus::get().max(1), hold)
    }

    fn start(
        thread_prefix: &'static str,
        what: &'static str,
        threads: usize,
        hold: usize,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            wake: Condvar::new(),
            short: Condvar::new(),
            short_len: threads,
            hold: hold.max(1),
        });
        let pool = Self {
            shared,
            threads,
            what,
        };
        for i in 0..threads {
            let shared = pool.shared.clone();
            // On failure `pool` drops here, which stops the threads already started.
            std::thread::Builder::new()
                .name(format!("{thread_prefix}-{i}"))
                .spawn(move || work(&shared))?;
        }
        Ok(pool)
    }

    /// A handle on this pool's backlog for a producer that batches its own work.
    pub fn load(&self) -> PoolLoad {
        PoolLoad {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Runs `f` on the pool and awaits its result.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the task ended without a result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn(Box::new(Call {
            f: Some(f),
            out: None,
            reply: Some(tx),
        }));
        rx.await
            .map_err(|_| ApiError::Internal(format!("{} task dropped", self.what)))
    }

    fn spawn(&self, job: Job) {
        let mut q = self
            .shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        q.jobs.push_back(job);
        // Wake one sleeping thread unless one was woken for an earlier job and has not taken
        // it yet; busy threads take the next job themselves, without a system call.
        let wake = q.sleeping > q.notified;
        if wake {
            q.notified += 1;
        }
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

/// A pool thread's loop.
fn work(shared: &Shared) {
    let mut held: Vec<Job> = Vec::with_capacity(shared.hold);
    loop {
        match shared.next(!held.is_empty()) {
            Next::Job(mut job, queued) => {
                // A panicking job loses only its own result (the awaiting task gets
                // `ApiError::Internal` when the job is dropped); the thread goes on.
                let computed =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.compute()));
                if computed.is_ok() {
                    held.push(job);
                }
                if queued <= shared.short_len || held.len() >= shared.hold {
                    held.drain(..).for_each(Task::deliver);
                }
            }
            Next::Empty => held.drain(..).for_each(Task::deliver),
            Next::Closed => return,
        }
    }
}

impl Drop for BlockingPool {
    fn drop(&mut self) {
        let mut q = self
            .shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        q.closed = true;
        drop(q);
        self.shared.wake.notify_all();
        self.shared.short.notify_all();
    }
}

/// How much work waits for a [`BlockingPool`], seen from a producer that would rather hold its
/// own work back while the pool is busy (see the module documentation). It does not keep the
/// pool alive.
#[derive(Clone)]
pub struct PoolLoad {
    shared: Weak<Shared>,
}

impl std::fmt::Debug for PoolLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolLoad").finish_non_exhaustive()
    }
}

impl PoolLoad {
    /// Whether more jobs wait than the pool has threads (false once the pool is gone).
    pub fn is_long(&self) -> bool {
        self.shared.upgrade().is_some_and(|shared| {
            let q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            shared.is_long(&q)
        })
    }

    /// Blocks the calling thread until the pool's queue is short (at most one job per thread
    /// waits, so the threads will need more work within about one job's time), the pool is
    /// gone, or `deadline` passes. Returns at once when the queue is short already.
    pub fn wait_until_short(&self, deadline: Instant) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        while shared.is_long(&q) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            q.short_waiters += 1;
            q = shared
                .short
                .wait_timeout(q, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            q.short_waiters -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn work_runs_on_the_pool_not_on_the_reactor() {
        let pool = BlockingPool::new("test-pool", "test").expect("pool");
        let reactor = std::thread::current().id();
        let (name, id) = pool
            .run(|| {
                let me = std::thread::current();
                (me.name().map(str::to_owned), me.id())
            })
            .await
            .expect("result");
        assert_ne!(id, reactor);
        assert!(
            name.as_deref().is_some_and(|n| n.starts_with("test-pool-")),
            "{name:?}"
        );
        assert_eq!(pool.run(|| 6 * 7).await.expect("result"), 42);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_job_fails_alone_and_the_pool_goes_on() {
        let pool = BlockingPool::new("test-pool", "test").expect("pool");
        let lost = pool.run(|| -> u8 { panic!("job panics") }).await;
        assert!(
            matches!(&lost, Err(ApiError::Internal(m)) if m == "test task dropped"),
            "{lost:?}"
        );
        assert_eq!(pool.run(|| 1 + 1).await.expect("result"), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_job_runs_and_all_threads_work_at_once() {
        let pool = std::sync::Arc::new(BlockingPool::new("test-pool", "test").expect("pool"));
        let threads = num_cpus::get().max(1);
        // Each job waits until `threads` jobs have started: this only finishes if one job runs
        // on every thread at the same time (a sleeping thread that is never woken hangs it).
        let started = std::sync::Arc::new(std::sync::Barrier::new(threads));
        let mut waiting = Vec::new();
        for _ in 0..threads {
            let (pool, started) = (pool.clone(), started.clone());
            waiting.push(tokio::spawn(async move {
                pool.run(move || {
                    started.wait();
                    std::thread::current().id()
                })
                .await
            }));
        }
        let mut ids = std::collections::HashSet::new();
        for w in waiting {
            let id = tokio::time::timeout(std::time::Duration::from_secs(30), w)
                .await
                .expect("every thread took a job")
                .expect("join")
                .expect("result");
            ids.insert(id);
        }
        assert_eq!(ids.len(), threads);
        // Many more jobs than threads, from many tasks: every one answers.
        let mut all = Vec::new();
        for i in 0..2_000u64 {
            let pool = pool.clone();
            all.push(tokio::spawn(async move { pool.run(move || i * 2).await }));
        }
        for (i, h) in all.into_iter().enumerate() {
            assert_eq!(h.await.expect("join").expect("result"), i as u64 * 2);
        }
    }

    #[test]
    fn a_producer_waits_for_a_short_queue_only_while_the_pool_exists() {
        let pool = BlockingPool::new("test-pool-load", "test").expect("pool");
        let load = pool.load();
        let forever = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        // Idle: short at once.
        assert!(!load.is_long());
        load.wait_until_short(forever);
        // Busy: every thread held, as many jobs again queued.
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().expect("gate");
        for _ in 0..2 * pool.threads + 1 {
            let gate = gate.clone();
            pool.spawn(Box::new(Call {
                f: Some(move || drop(gate.lock())),
                out: None,
                reply: None,
            }));
        }
        assert!(load.is_long());
        let waiter = std::thread::spawn(move || {
            load.wait_until_short(forever);
            load.is_long()
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!waiter.is_finished(), "returned while the queue was long");
        // Dropping the pool (its threads finish the queue first) lets the producer go.
        drop(pool);
        drop(held);
        assert!(
            !waiter.join().expect("waiter"),
            "the pool is gone: not long"
        );
    }

    /// A job for [`BlockingPool::run`] that says when it started and waits for `go`.
    fn gated(
        value: u32,
    ) -> (
        impl FnOnce() -> u32 + Send + 'static,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (started_tx, started) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let job = move || {
            let _ = started_tx.send(());
            let _ = go_rx.recv();
            value
        };
        (job, started, go)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_busy_thread_hands_its_results_back_together() {
        let pool = Arc::new(BlockingPool::start("test-pool-hold", "test", 1, 2).expect("pool"));
        let run = |f: Box<dyn FnOnce() -> u32 + Send>| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(f).await.expect("result") })
        };
        let (x_job, x_started, x_go) = gated(1);
        let (b_job, _, b_go) = gated(3);
        let x = run(Box::new(x_job));
        tokio::task::yield_now().await;
        x_started
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the thread took x");
        // The thread holds x; a, b, c, d queue behind it (more than its one thread).
        let a = run(Box::new(|| 2));
        let b = run(Box::new(b_job));
        let c = run(Box::new(|| 4));
        let d = run(Box::new(|| 5));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while pool.shared.queue.lock().expect("queue").jobs.len() < 4 {
            assert!(std::time::Instant::now() < deadline, "jobs not queued");
            tokio::task::yield_now().await;
        }
        x_go.send(()).expect("x waits");
        // x was taken from a short queue: its result comes at once. a is done next while three
        // jobs still wait, so it is held while b (gated) runs.
        assert_eq!(x.await.expect("join"), 1);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            !a.is_finished(),
            "a was handed back alone while the queue was long"
        );
        b_go.send(()).expect("b waits");
        for (job, value) in [(a, 2), (b, 3), (c, 4), (d, 5)] {
            assert_eq!(job.await.expect("join"), value);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_holding_pool_answers_every_job() {
        // Threads holding results never sleep on them: with many short jobs from many tasks
        // (queues long and short in turn), every one answers.
        let pool =
            Arc::new(BlockingPool::holding_results("test-pool-hold", "test", 8).expect("pool"));
        let mut all = Vec::new();
        for i in 0..5_000u64 {
            let pool = pool.clone();
            all.push(tokio::spawn(async move { pool.run(move || i + 1).await }));
            if i % 97 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for (i, h) in all.into_iter().enumerate() {
            let got = tokio::time::timeout(std::time::Duration::from_secs(60), h)
                .await
                .expect("answered")
                .expect("join")
                .expect("result");
            assert_eq!(got, i as u64 + 1);
        }
        let lost = pool.run(|| -> u8 { panic!("job panics") }).await;
        assert!(matches!(lost, Err(ApiError::Internal(_))), "{lost:?}");
    }

    #[test]
    fn dropping_the_pool_stops_its_threads() {
        let pool = BlockingPool::new("test-pool-drop", "test").expect("pool");
        let shared = std::sync::Arc::downgrade(&pool.shared);
        drop(pool);
        // Each thread holds the shared queue until it exits.
        let start = std::time::Instant::now();
        while shared.upgrade().is_some() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "threads did not exit"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
