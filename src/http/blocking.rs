//! The bridge from async handlers to CPU-bound BLS work: a rayon pool with one thread per core,
//! and a oneshot channel back to the awaiting task, so that signing, combining and verifying
//! never run on the async reactor.

use super::ApiError;

/// A pool for CPU-bound work awaited from handlers.
pub struct BlockingPool {
    pool: rayon::ThreadPool,
    /// What the pool runs, for the error when a task is lost (`signing`, `combine`).
    what: &'static str,
}

impl std::fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingPool")
            .field("what", &self.what)
            .field("threads", &self.pool.current_num_threads())
            .finish()
    }
}

impl BlockingPool {
    /// One thread per core, named `{thread_prefix}-{i}`; `what` names the work in errors.
    ///
    /// # Errors
    /// When the threads cannot be created.
    pub fn new(
        thread_prefix: &'static str,
        what: &'static str,
    ) -> Result<Self, rayon::ThreadPoolBuildError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(num_cpus::get().max(1))
            .thread_name(move |i| format!("{thread_prefix}-{i}"))
            .build()?;
        Ok(Self { pool, what })
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
        self.pool.spawn(move || {
            let _ = tx.send(f());
        });
        rx.await
            .map_err(|_| ApiError::Internal(format!("{} task dropped", self.what)))
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
}
